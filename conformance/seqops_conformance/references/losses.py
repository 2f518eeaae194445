"""Float64 references of the losses: cross-entropy and autoregressive log-likelihood."""

import math

import numpy as np


def _log_softmax_row(row):
    """Log-probabilities of one 1-D row of logits, float64, with ``math.fsum``."""
    row = np.asarray(row, dtype=np.float64)
    top = np.max(row)
    return row - top - math.log(math.fsum(np.exp(row - top)))


def cross_entropy(
    logits, targets, axis=-1, weight=None, ignore_index=None, label_smoothing=0.0, reduction="mean"
):
    """torch's cross-entropy with class targets, one target at a time.

    ``loss = (1-ε)·w[t]·(-log p_t) + ε/C·Σ_c w[c]·(-log p_c)``, 0 for ``t == ignore_index``;
    ``"mean"`` divides the sum by ``Σ w[t]`` over the targets that are not ignored.

    Parameters
    ----------
    logits : array_like, shape ``(..., C, ...)`` with the classes on ``axis``
    targets : array_like of int, ``logits.shape`` without ``axis``
    weight : array_like, shape ``(C,)``, optional

    Returns
    -------
    float (``"mean"``, ``"sum"``) or ndarray of ``targets.shape`` (``"none"``)
    """
    logits = np.moveaxis(np.asarray(logits, dtype=np.float64), axis, -1)
    targets = np.asarray(targets)
    num_classes = logits.shape[-1]
    w = np.ones(num_classes) if weight is None else np.asarray(weight, dtype=np.float64)
    if targets.shape != logits.shape[:-1]:
        raise ValueError("targets must have the shape of logits without the class axis")
    losses = np.zeros(targets.shape)
    weights = []
    for idx in np.ndindex(targets.shape):
        t = int(targets[idx])
        if ignore_index is not None and t == ignore_index:
            continue
        if not 0 <= t < num_classes:
            raise ValueError(f"target {t} out of range [0, {num_classes})")
        logp = _log_softmax_row(logits[idx])
        smooth = math.fsum(-w[c] * logp[c] for c in range(num_classes))
        losses[idx] = (1.0 - label_smoothing) * w[t] * -logp[t] + label_smoothing / num_classes * smooth
        weights.append(w[t])
    if reduction == "none":
        return losses
    total = math.fsum(losses.ravel())
    if reduction == "sum":
        return total
    denominator = math.fsum(weights)
    return total / denominator if denominator else math.nan


def autoregressive_log_likelihood(logits, targets, axis=-1):
    """``Σ_t log softmax(logits[..., t, :])[targets[..., t]]``: ``(..., T, V)`` → ``(...)``.

    ``logits[..., t, :]`` predicts ``targets[..., t]`` (targets already shifted).
    """
    logits = np.moveaxis(np.asarray(logits, dtype=np.float64), axis, -1)
    targets = np.asarray(targets)
    out = np.zeros(targets.shape[:-1])
    for idx in np.ndindex(out.shape):
        terms = []
        for t in range(targets.shape[-1]):
            token = int(targets[idx + (t,)])
            if not 0 <= token < logits.shape[-1]:
                raise ValueError(f"target {token} out of range [0, {logits.shape[-1]})")
            terms.append(_log_softmax_row(logits[idx + (t,)])[token])
        out[idx] = math.fsum(terms)
    return out
