"""Softmax, log-softmax and the FFN activations, in pure Array API code.

Half-precision inputs (float16, bfloat16) are computed in float32 and returned in their
own dtype: reductions in half precision lose several digits.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from seqops._lib.typing import Array, DType, Namespace


def compute_dtype(xp: Namespace, dtype: DType) -> DType:
    """The dtype to compute in: float32 for half types, the dtype itself otherwise."""
    return dtype if dtype in (xp.float32, xp.float64) else xp.float32


def _stable_shift(xp: Namespace, x: Array, axis: int) -> Array:
    """``x - max(x)`` along ``axis``; a row whose max is not finite is shifted by 0 (and an
    empty array, which has nothing to shift, is returned as it is: an empty axis has no max,
    and Dask fails to compute the max of an empty batch)."""
    if 0 in tuple(x.shape):
        return x
    m = xp.max(x, axis=axis, keepdims=True)
    return x - xp.where(xp.isfinite(m), m, 0.0)


def softmax(xp: Namespace, x: Array, /, *, axis: int = -1) -> Array:
    """``exp(x) / sum(exp(x))`` along ``axis``; same shape and dtype as ``x``."""
    if x.ndim and x.shape[axis] == 0:  # an empty axis has no max: nothing to normalise
        return x
    z = _stable_shift(xp, xp.astype(x, compute_dtype(xp, x.dtype), copy=False), axis)
    e = xp.exp(z)
    return xp.astype(e / xp.sum(e, axis=axis, keepdims=True), x.dtype, copy=False)


def log_softmax(xp: Namespace, x: Array, /, *, axis: int = -1) -> Array:
    """``x - logsumexp(x)`` along ``axis``; same shape and dtype as ``x``."""
    if x.ndim and x.shape[axis] == 0:
        return x
    z = _stable_shift(xp, xp.astype(x, compute_dtype(xp, x.dtype), copy=False), axis)
    out = z - xp.log(xp.sum(xp.exp(z), axis=axis, keepdims=True))
    return xp.astype(out, x.dtype, copy=False)


def masked_softmax(xp: Namespace, logits: Array, allowed: Array | None, /) -> Array:
    """Softmax over the last axis of ``logits`` restricted to ``allowed`` (bool, broadcastable).

    A row with no allowed (or no finite) entry gives all-zero weights, never NaN, with
    finite gradients: the masked logits become ``-inf`` and the row sum is guarded.
    """
    e, total = masked_softmax_parts(xp, logits, allowed)
    return e / total


def masked_softmax_parts(xp: Namespace, logits: Array, allowed: Array | None, /) -> tuple[Array, Array]:
    """``(e, total)`` with ``masked_softmax(logits, allowed) == e / total``.

    ``e`` is the shifted exponential (0 where not allowed) and ``total`` its row sum, with
    rows that sum to 0 given 1. Dividing later (``(e @ v) / total``) saves a pass over ``e``.
    """
    if allowed is not None:
        logits = xp.where(allowed, logits, -math.inf)
    e = xp.exp(_stable_shift(xp, logits, -1))
    total = xp.sum(e, axis=-1, keepdims=True)
    return e, xp.where(total == 0, 1.0, total)


def relu(xp: Namespace, x: Array, /) -> Array:
    return xp.maximum(x, 0.0)


def silu(xp: Namespace, x: Array, /) -> Array:
    """SiLU (swish) ``x σ(x)``; ``σ`` from ``e = exp(-|x|) <= 1``, which never overflows (nor
    does its gradient): ``σ(x) = 1 / (1 + e)`` for ``x >= 0``, ``e / (1 + e)`` otherwise."""
    e = xp.exp(-xp.abs(x))
    return x * xp.where(x >= 0, 1.0, e) / (1.0 + e)


def gelu(xp: Namespace, x: Array, /, *, erf: Callable[[Array], Array]) -> Array:
    """Exact GELU ``x Φ(x) = x/2 (1 + erf(x/√2))``."""
    return 0.5 * x * (1.0 + erf(x * (1.0 / math.sqrt(2.0))))


def gelu_tanh(xp: Namespace, x: Array, /) -> Array:
    """The tanh approximation ``x/2 (1 + tanh(√(2/π) (x + 0.044715 x³)))``."""
    return 0.5 * x * (1.0 + xp.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)))
