"""``silu``, ``softmax`` and ``log_softmax`` in NumPy.

- ``silu``: ``x / (1 + exp(-x))`` with the overflow warning silenced (``exp(-x)`` is ``inf``
  for ``x < -88`` in float32, where the result rounds to ``-0.0``; the true value is below the
  smallest normal float32). The portable form, written for autograd (``exp(-|x|)`` and a
  ``where``, no overflow in the value nor in its gradient), took 3.3x as long; NumPy has no
  autograd to protect. Half precision is computed in float32 and rounded once, as the contract.
- ``softmax``, an in-place path (the package docstring): one array of the broadcast shape
  where the portable path made three: 1.03-1.12 / 0.90-1.01.
- ``log_softmax``, an in-place path: two arrays where the portable path made three.
"""

from __future__ import annotations

from typing import Any

import seqops

from ._kernels import _K, _load


def implementations() -> list[seqops.Implementation]:
    ops = seqops.ops
    return [
        seqops.Implementation(ops.silu, "numpy-silu", silu),
        seqops.Implementation(ops.softmax, "numpy-softmax", softmax),
        seqops.Implementation(ops.log_softmax, "numpy-log-softmax", log_softmax),
    ]


def silu(backend: seqops.Backend, x: Any, /) -> Any:
    k = _K or _load()
    np = k["np"]
    z = x if x.dtype in k["native"] else x.astype(k["float32"])
    with np.errstate(over="ignore"):
        out = z / (1.0 + np.exp(-z))
    return out if out.dtype == x.dtype else out.astype(x.dtype)


def softmax(backend: seqops.Backend, x: Any, /, *, axis: int) -> Any:
    """``exp(x - max) / sum`` along ``axis`` of ``x (...)``, the portable formula with one
    temporary (the shifted ``x``, exponentiated and normalised in place) instead of three."""
    if x.shape[axis] == 0:  # an empty axis has no max: nothing to normalise (as the portable path)
        return x
    e = _shifted(x, axis)
    (_K or _load())["np"].exp(e, out=e)
    e /= e.sum(axis=axis, keepdims=True)
    return e if e.dtype == x.dtype else e.astype(x.dtype)


def log_softmax(backend: seqops.Backend, x: Any, /, *, axis: int) -> Any:
    """``x - max - log(sum(exp(x - max)))`` along ``axis`` of ``x (...)``, the portable formula
    with two temporaries (the shifted ``x``, from which the log-sum is subtracted in place, and
    its exponential) instead of three."""
    if x.shape[axis] == 0:  # as softmax
        return x
    np = (_K or _load())["np"]
    shifted = _shifted(x, axis)
    shifted -= np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
    return shifted if shifted.dtype == x.dtype else shifted.astype(x.dtype)


def _shifted(x: Any, axis: int) -> Any:
    """``x - max(x)`` along ``axis`` in the compute dtype (half precision in float32), a new
    array of our own to write into; a row whose max is not finite is shifted by 0."""
    k = _K or _load()
    np = k["np"]
    z = x if x.dtype in k["native"] else x.astype(k["float32"])
    top = z.max(axis=axis, keepdims=True)
    np.copyto(top, 0.0, where=~np.isfinite(top))
    return np.subtract(z, top, out=z if z is not x else None)
