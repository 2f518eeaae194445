"""``clip_grad_norm`` and ``clip_grad_value`` on NumPy's own functions.

The portable formulas, the same operations in the same order (the same values, to the bit:
tested), without array-api-compat's wrappers between them and NumPy. Its ``clip`` checks
the bounds' types and shapes in Python and broadcasts them to the gradient's shape (5-8 µs a
call), and ``astype`` and ``sum`` add about a microsecond each: 0.1-0.2 ms of a 1.2 ms call
on ten 512 x 512 float32 gradients, once NumPy's memory is recycled (``bench/ops_table.py``'s
rows). NumPy's ``clip`` with Python-float bounds keeps the array's dtype (a Python float is
cast to it, NEP 50), as the portable path's bounds cast to it.
"""

from __future__ import annotations

import math
from typing import Any

import seqops

from ._kernels import _K, _load


def implementations() -> list[seqops.Implementation]:
    ops = seqops.ops
    return [
        seqops.Implementation(ops.clip_grad_norm, "numpy-clip-grad-norm", clip_grad_norm),
        seqops.Implementation(ops.clip_grad_value, "numpy-clip-grad-value", clip_grad_value),
    ]


def clip_grad_value(backend: seqops.Backend, grads: list[Any], /, *, clip_value: float) -> list[Any]:
    """Each gradient clamped to ``[-clip_value, clip_value]``, in its own dtype."""
    clip = (_K or _load())["np"].clip
    return [clip(g, -clip_value, clip_value) for g in grads]


def clip_grad_norm(
    backend: seqops.Backend, grads: list[Any], /, *, max_norm: float, norm_type: float, eps: float
) -> tuple[list[Any], Any]:
    """``(g * min(max_norm / (total + eps), 1) for g in grads), total``: ``total`` is the
    ``norm_type``-norm of the gradients' norms, each in its compute dtype (float32 for half
    precision), and every gradient is scaled in its compute dtype and rounded to its own."""
    k = _K or _load()
    np, native, f32 = k["np"], k["native"], k["float32"]
    wide = [g if g.dtype in native else g.astype(f32) for g in grads]
    norms = [_norm(np, w, norm_type) for w in wide]
    top = np.result_type(*norms)
    total = _norm(np, np.stack([n.astype(top, copy=False) for n in norms]), norm_type)
    coef = np.minimum(max_norm / (total + eps), 1.0)  # NaN stays NaN, as the portable clip
    pairs = zip(grads, wide, strict=True)
    clipped = [(w * coef.astype(w.dtype)).astype(g.dtype, copy=False) for g, w in pairs]
    out_dtype = grads[0].dtype if all(g.dtype == grads[0].dtype for g in grads) else top
    return clipped, total.astype(out_dtype, copy=False)


def _norm(np: Any, x: Any, p: float) -> Any:
    """The ``p``-norm of all entries of ``x`` (a NumPy scalar of its dtype); 0 when empty."""
    if x.size == 0:
        return x.dtype.type(0)
    if p == 2.0:
        return np.sqrt(np.sum(x * x))
    a = np.abs(x)
    if p == math.inf:
        return np.max(a)
    return np.sum(a) if p == 1.0 else np.sum(a**p) ** (1.0 / p)
