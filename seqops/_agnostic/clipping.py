"""Gradient clipping by global norm and by value, in pure Array API code.

Norms of half-precision arrays are computed in float32; every clipped array keeps its dtype.
"""

from __future__ import annotations

import math

from seqops._agnostic.activations import compute_dtype
from seqops._lib.typing import Array, Namespace


def vector_norm(xp: Namespace, x: Array, norm_type: float, /) -> Array:
    """The ``norm_type``-norm of all entries of ``x`` (0-d, compute dtype); 0 when ``x`` is empty."""
    x = xp.astype(x, compute_dtype(xp, x.dtype), copy=False)
    if math.prod(x.shape) == 0:
        return xp.sum(x)  # 0, without a max over nothing
    if norm_type == 2.0:
        return xp.sqrt(xp.sum(x * x))  # no pass for abs (|x|² = x²)
    a = xp.abs(x)
    if norm_type == math.inf:
        return xp.max(a)
    if norm_type == 1.0:
        return xp.sum(a)
    return xp.sum(a**norm_type) ** (1.0 / norm_type)


def clip_grad_norm(
    xp: Namespace, grads: list[Array], /, *, max_norm: float, norm_type: float, eps: float
) -> tuple[list[Array], Array]:
    """torch's ``clip_grad_norm_`` without mutation: ``(scaled copies, total norm)``.

    ``total = norm([norm(g) for g in grads])`` and each ``g`` is multiplied by
    ``min(max_norm / (total + eps), 1)`` (always multiplied, as torch, so a non-finite
    total gives NaN or zero gradients rather than a branch on the value).
    """
    norms = [vector_norm(xp, g, norm_type) for g in grads]
    wide = xp.result_type(*(n.dtype for n in norms))
    total = vector_norm(xp, xp.stack([xp.astype(n, wide, copy=False) for n in norms]), norm_type)
    coef = xp.clip(max_norm / (total + eps), max=1.0)
    clipped = []
    for g in grads:
        dtype = compute_dtype(xp, g.dtype)  # the product in g's own precision, as torch
        scaled = xp.astype(g, dtype, copy=False) * xp.astype(coef, dtype, copy=False)
        clipped.append(xp.astype(scaled, g.dtype, copy=False))
    dtypes = {g.dtype for g in grads}
    out_dtype = grads[0].dtype if len(dtypes) == 1 else wide
    return clipped, xp.astype(total, out_dtype, copy=False)


def clip_grad_value(xp: Namespace, grads: list[Array], /, *, clip_value: float) -> list[Array]:
    """Each gradient clamped to ``[-clip_value, clip_value]``."""
    return [xp.clip(g, min=-clip_value, max=clip_value) for g in grads]
