"""Softmax and log-softmax, stable for any finite input."""

from __future__ import annotations

from seqops import ops
from seqops._dispatch import public, resolve
from seqops._lib import validate as check
from seqops._lib.typing import Array


def _check(x: Array, axis: int) -> object:
    backend = resolve(x, names=("x",))
    check.require_floating(backend.namespace(), x=x)
    if not -x.ndim <= axis < max(x.ndim, 1):
        msg = f"axis {axis} is out of range for x of shape {check.shape_of(x)}"
        raise ValueError(msg)
    return backend


@public(ops.softmax)
def softmax(x: Array, /, *, axis: int = -1) -> Array:
    """``exp(x) / sum(exp(x))`` along ``axis``.

    Parameters
    ----------
    x : array, shape ``(...)``, real floating
    axis : int

    Returns
    -------
    array, same shape and dtype as ``x``
        Half precision is computed in float32.

    Examples
    --------
    >>> import numpy as np, seqops
    >>> seqops.softmax(np.array([0.0, 1000.0])).tolist()
    [0.0, 1.0]
    """
    return ops.softmax.dispatch(_check(x, axis), x, axis=axis)  # type: ignore[arg-type]


@public(ops.log_softmax)
def log_softmax(x: Array, /, *, axis: int = -1) -> Array:
    """``x - log(sum(exp(x)))`` along ``axis``, without overflow or underflow to ``-inf``.

    Parameters
    ----------
    x : array, shape ``(...)``, real floating
    axis : int

    Returns
    -------
    array, same shape and dtype as ``x``

    Examples
    --------
    >>> import numpy as np, seqops
    >>> seqops.log_softmax(np.array([0.0, 1000.0])).tolist()
    [-1000.0, 0.0]
    """
    return ops.log_softmax.dispatch(_check(x, axis), x, axis=axis)  # type: ignore[arg-type]
