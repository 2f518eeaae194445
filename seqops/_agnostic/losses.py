"""Cross-entropy and sequence log-likelihood, in pure Array API code.

The class axis is the last one here (the public layer moves it). Targets are picked out
with a one-hot comparison rather than a gather: it needs nothing beyond the standard's
oldest revision and differentiates everywhere. A target outside ``[0, C)`` (and not
ignored) gives NaN: the public layer raises an error for it first whenever the values can
be read, so NaN is what remains under ``jax.jit``, where they cannot.
"""

from __future__ import annotations

import math

from seqops._agnostic.activations import compute_dtype, log_softmax
from seqops._lib.typing import Array, Device, Namespace


def pick(xp: Namespace, values: Array, targets: Array, *, device: Device) -> Array:
    """``values[..., targets]``: ``values (..., C)``, integer ``targets (...)`` → ``(...)``.

    Entries whose target is outside ``[0, C)`` are 0.
    """
    classes = xp.arange(values.shape[-1], dtype=targets.dtype, device=device)
    hit = targets[..., None] == classes  # (..., C)
    return xp.sum(xp.where(hit, values, 0.0), axis=-1)


def _in_range(targets: Array, num_classes: int) -> Array:
    return (targets >= 0) & (targets < num_classes)


def cross_entropy(
    xp: Namespace,
    logits: Array,
    targets: Array,
    /,
    *,
    weight: Array | None,
    ignore_index: int | None,
    label_smoothing: float,
    reduction: str,
    device: Device,
) -> Array:
    """torch's cross-entropy with class targets; ``logits (..., C)``, ``targets (...)``.

    Per element ``(1-ε)·w[t]·(-log p_t) + ε/C·Σ_c w[c]·(-log p_c)`` (``w = 1`` without
    ``weight``), 0 for an ignored target; ``"mean"`` divides the sum by ``Σ w[t]`` over
    the targets that are not ignored, as torch does (NaN when every target is ignored).
    """
    dtype = compute_dtype(xp, logits.dtype)
    num_classes = logits.shape[-1]
    logp = log_softmax(xp, xp.astype(logits, dtype, copy=False))  # (..., C)
    valid = _in_range(targets, num_classes)
    bad = ~valid
    if ignore_index is not None:
        ignored = targets == ignore_index
        valid = valid & ~ignored
        bad = bad & ~ignored
    w = None if weight is None else xp.astype(weight, dtype, copy=False)  # (C,)
    # where(), not a product with a 0/1 mask: an ignored -inf log-probability must give 0.
    nll = xp.where(valid, -pick(xp, logp, targets, device=device), 0.0)
    if w is None:
        target_weight = xp.astype(valid, dtype)
        loss = nll
    else:
        target_weight = xp.where(valid, pick(xp, w, targets, device=device), 0.0)
        loss = xp.where(valid, target_weight * nll, 0.0)
    if label_smoothing > 0.0:
        smooth = -xp.sum(logp if w is None else logp * w, axis=-1)
        loss = (1.0 - label_smoothing) * loss + xp.where(valid, (label_smoothing / num_classes) * smooth, 0.0)
    loss = xp.where(bad, math.nan, loss)
    if reduction == "sum":
        loss = xp.sum(loss)
    elif reduction == "mean":
        loss = xp.sum(loss) / xp.sum(target_weight)
    return xp.astype(loss, logits.dtype, copy=False)


def autoregressive_log_likelihood(
    xp: Namespace, logits: Array, targets: Array, /, *, device: Device
) -> Array:
    """``Σ_t log softmax(logits[..., t, :])[targets[..., t]]``: ``(..., T, V)``, ``(..., T)`` → ``(...)``."""
    dtype = compute_dtype(xp, logits.dtype)
    logp = log_softmax(xp, xp.astype(logits, dtype, copy=False))  # (..., T, V)
    picked = pick(xp, logp, targets, device=device)  # (..., T)
    picked = xp.where(_in_range(targets, logits.shape[-1]), picked, math.nan)
    return xp.astype(xp.sum(picked, axis=-1), logits.dtype, copy=False)
