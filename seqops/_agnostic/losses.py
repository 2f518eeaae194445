"""Cross-entropy and sequence log-likelihood, in pure Array API code.

The class axis is the last one here (the public layer moves it). Targets are picked out
with ``take_along_axis`` (Array API 2024.12; a gather, differentiable in torch and JAX) of
the targets clipped into ``[0, C)``; a namespace without it gets a one-hot comparison (the
standard's oldest revision, ``O(N·C)`` more work). A target outside ``[0, C)`` (and not
ignored) gives NaN: the public layer raises an error for it first whenever the values can
be read, so NaN is what remains under ``jax.jit``, where they cannot.
"""

from __future__ import annotations

import math

from seqops._agnostic.activations import compute_dtype
from seqops._lib.typing import Array, Device, Namespace


def pick(xp: Namespace, values: Array, targets: Array, *, device: Device) -> Array:
    """``values[..., targets]``: ``values (..., C)``, integer ``targets (...)`` → ``(...)``.

    Entries whose target is outside ``[0, C)`` are 0.
    """
    if not hasattr(xp, "take_along_axis"):
        return pick_one_hot(xp, values, targets, device=device)
    num_classes = values.shape[-1]
    index = xp.clip(targets, 0, num_classes - 1)
    info = getattr(xp, "__array_namespace_info__", None)
    if info is not None:  # torch gathers with int64 indices only: its default indexing dtype
        index = xp.astype(index, info().default_dtypes(device=device)["indexing"], copy=False)
    if values.ndim == 1:  # a class weight (C,) picked by targets of any shape
        flat = xp.take(values, xp.reshape(index, (-1,)), axis=0)
        picked = xp.reshape(flat, targets.shape)
    else:
        picked = xp.take_along_axis(values, index[..., None], axis=-1)[..., 0]
    return xp.where(_in_range(targets, num_classes), picked, 0.0)


def pick_one_hot(xp: Namespace, values: Array, targets: Array, *, device: Device) -> Array:
    """:func:`pick` as a one-hot product (namespaces without ``take_along_axis``)."""
    classes = xp.arange(values.shape[-1], dtype=targets.dtype, device=device)
    hit = targets[..., None] == classes  # (..., C)
    return xp.sum(xp.where(hit, values, 0.0), axis=-1)


def _shift_logsumexp(xp: Namespace, x: Array) -> tuple[Array, Array]:
    """``(s, lse)`` with ``log_softmax(x) == (x - s[..., None]) - lse[..., None]`` over the
    last axis: ``s (...)`` is the row max, or 0 where it is not finite (:func:`log_softmax`'s
    shift), ``lse (...)`` the log of ``Σ exp(x - s)``.

    The losses pick ``x[t] - s`` (the same rounding as picking from ``x - s``) and build
    neither ``x - s`` nor ``x - s - lse`` as an array: under ``jax.jit`` XLA's CPU compiler
    then runs the shifted exponentials and their sum as one kernel reading ``x``, two passes
    over ``(..., C)`` in all; picking from a materialized ``x - s`` cost a third and a fourth
    (the guard, a select, splits the subtraction from the max: 1.09-1.17x of
    ``jax.nn.log_softmax`` and a ``take_along_axis``)."""
    if 0 in tuple(x.shape):  # an empty axis has no max (and Dask fails on an empty batch)
        s = xp.sum(x[..., :0], axis=-1)
    else:
        m = xp.max(x, axis=-1)
        s = xp.where(xp.isfinite(m), m, 0.0)
    return s, xp.log(xp.sum(xp.exp(x - s[..., None]), axis=-1))


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
    x = xp.astype(logits, dtype, copy=False)
    s, lse = _shift_logsumexp(xp, x)  # log p = (x - s) - lse
    valid = _in_range(targets, num_classes)
    bad = ~valid
    if ignore_index is not None:
        ignored = targets == ignore_index
        valid = valid & ~ignored
        bad = bad & ~ignored
    w = None if weight is None else xp.astype(weight, dtype, copy=False)  # (C,)
    # where(), not a product with a 0/1 mask: an ignored -inf log-probability must give 0.
    nll = xp.where(valid, lse - (pick(xp, x, targets, device=device) - s), 0.0)
    if w is None:
        target_weight = xp.astype(valid, dtype)
        loss = nll
    else:
        target_weight = xp.where(valid, pick(xp, w, targets, device=device), 0.0)
        loss = xp.where(valid, target_weight * nll, 0.0)
    if label_smoothing > 0.0:
        # -Σ_c w[c]·log p_c = Σ_c w[c]·(lse - z_c): two non-negative terms (z <= 0 <= lse, w >= 0).
        z = x - s[..., None]
        if w is None:
            smooth = num_classes * lse - xp.sum(z, axis=-1)
        else:
            smooth = xp.sum(w) * lse - xp.sum(z * w, axis=-1)
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
    x = xp.astype(logits, dtype, copy=False)
    s, lse = _shift_logsumexp(xp, x)  # log p = (x - s) - lse
    picked = (pick(xp, x, targets, device=device) - s) - lse  # (..., T)
    picked = xp.where(_in_range(targets, logits.shape[-1]), picked, math.nan)
    return xp.astype(xp.sum(picked, axis=-1), logits.dtype, copy=False)
