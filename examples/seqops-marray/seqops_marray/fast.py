"""A fast path for ``seqops.softmax`` on the marray backend: one NumPy pass over ``.data``.

The portable softmax runs on marray's namespace, where every operation also computes a
mask (and a reduction first copies the data to fill the masked entries). When nothing is
masked, all of that is wasted: this implementation computes the softmax with NumPy on the
data alone and wraps the result back in an MArray. When some entry is masked it declines,
with the reason, and the portable path (which propagates masks) runs instead::

    >>> import numpy as np, marray, seqops
    >>> mxp = marray.masked_namespace(np)
    >>> print(seqops.explain(seqops.softmax, mxp.asarray(np.ones((2, 3)))))  # doctest: +SKIP
    softmax on backend 'marray': runs 'marray-softmax'
      marray-softmax (plugin 'marray-fast'): accepts: runs
      portable: would accept, not reached

This module is registered under the ``seqops.plugins`` entry point. seqops calls
:func:`seqops_implementations` once per registered backend when the plugin is registered,
checks each implementation's ``fn`` and ``decline`` against its op's contract
(``seqops.ops.softmax``: ``(backend, x, /, *, axis)``), then asks ``decline`` on each call.
The arguments arrive validated (``x`` is a floating MArray of this backend, ``axis`` is in
range), so nothing is re-checked here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import seqops

MASKED = "some entries of x are masked: the portable softmax propagates the mask"


@seqops.hookimpl
def seqops_implementations(backend: seqops.Backend) -> list[seqops.Implementation] | None:
    """The ``seqops_implementations`` hook: ``marray-softmax`` for ``softmax`` on marray."""
    if backend.name != "marray":
        return None
    return [seqops.Implementation(seqops.ops.softmax, "marray-softmax", softmax, decline=decline)]


def decline(backend: seqops.Backend, x: Any, /, *, axis: int) -> str | None:
    """Why :func:`softmax` declines ``softmax(x, axis=axis)``: when any entry of ``x`` is
    masked (the answer must then carry marray's mask rules); ``None`` (accept) otherwise."""
    return MASKED if np.any(x.mask) else None


def softmax(backend: seqops.Backend, x: Any, /, *, axis: int) -> Any:
    """``exp(x) / sum(exp(x))`` along ``axis``, computed with NumPy on ``x.data``.

    Parameters
    ----------
    backend : seqops.Backend
        The marray backend (unused: NumPy computes on the data directly).
    x : MArray, shape ``(...)``, float32 or float64, nothing masked
    axis : int
        In range for ``x`` (seqops has checked it).

    Returns
    -------
    MArray, same shape, dtype and class as ``x``
        With a copy of the mask of ``x`` (all ``False``: :func:`decline` saw to that).
    """
    data = x.data
    # Subtract the max so that exp cannot overflow; a row whose max is not finite (all
    # -inf, or holding +inf or NaN) is not shifted, as in the portable path. `initial`
    # makes an empty row's max -inf instead of an error.
    peak = np.max(data, axis=axis, keepdims=True, initial=-np.inf)
    e = np.exp(data - np.where(np.isfinite(peak), peak, 0))
    out = e / np.sum(e, axis=axis, keepdims=True)
    # conformance-mutation-point: tests/test_conformance_product.py puts a bug here
    # type(x): the caller's own MArray class (each masked_namespace call makes one; the
    # portable path returns the backend namespace's class, equally owned by the backend).
    # The mask is copied: marray's in-place operators write to it, so sharing it would let
    # an update of the output change the input.
    return type(x)(out, x.mask.copy())
