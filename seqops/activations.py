"""Softmax and log-softmax (stable for any finite input); the activations ReLU, SiLU and GELU."""

from __future__ import annotations

from seqops import ops
from seqops._dispatch import public, resolve
from seqops._lib import validate as check
from seqops._lib.typing import Array, ArrayT
from seqops.contract import Backend


def _check(x: Array, axis: int) -> object:
    backend = resolve(x, names=("x",))
    check.require_floating(backend.namespace(), x=x)
    if type(axis) is not int:
        axis = check.integer("axis", axis, minimum=None)
    if not -x.ndim <= axis < max(x.ndim, 1):
        msg = f"axis {axis} is out of range for x of shape {check.shape_of(x)}"
        raise ValueError(msg)
    return backend


@public(ops.softmax)
def softmax(x: ArrayT, /, *, axis: int = -1) -> ArrayT:
    """``exp(x) / sum(exp(x))`` along ``axis``.

    Parameters
    ----------
    x : array, shape ``(...)``, real floating
        The logits; any finite value (the maximum along ``axis`` is subtracted first).
    axis : int
        The axis normalised, in ``[-x.ndim, x.ndim)``; the last by default.

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
def log_softmax(x: ArrayT, /, *, axis: int = -1) -> ArrayT:
    """``x - log(sum(exp(x)))`` along ``axis``, without overflow or underflow to ``-inf``.

    Parameters
    ----------
    x : array, shape ``(...)``, real floating
        The logits.
    axis : int
        The axis normalised, in ``[-x.ndim, x.ndim)``; the last by default.

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


def _check_elementwise(x: Array) -> Backend:
    backend = resolve(x, names=("x",))
    check.require_floating(backend.namespace(), x=x)
    return backend


@public(ops.relu)
def relu(x: ArrayT, /) -> ArrayT:
    """The rectified linear unit ``max(x, 0)``, elementwise.

    Parameters
    ----------
    x : array, shape ``(...)``, real floating
        The input; NaN stays NaN.

    Returns
    -------
    array, same shape and dtype as ``x``

    Examples
    --------
    >>> import numpy as np, seqops
    >>> seqops.relu(np.array([-2.0, 0.0, 3.0])).tolist()
    [0.0, 0.0, 3.0]
    """
    return ops.relu.dispatch(_check_elementwise(x), x)


@public(ops.silu)
def silu(x: ArrayT, /) -> ArrayT:
    """SiLU (swish) ``x · sigmoid(x)``, elementwise (= ``torch.nn.functional.silu``).

    Never overflows: ``sigmoid`` is computed from ``exp(-|x|)``.

    Parameters
    ----------
    x : array, shape ``(...)``, real floating
        The input.

    Returns
    -------
    array, same shape and dtype as ``x``
        Half precision is computed in float32.

    Examples
    --------
    >>> import numpy as np, seqops
    >>> seqops.silu(np.array([-1000.0, 0.0, 1000.0])).tolist()
    [-0.0, 0.0, 1000.0]
    """
    return ops.silu.dispatch(_check_elementwise(x), x)


@public(ops.gelu)
def gelu(x: ArrayT, /, *, approximate: str = "none") -> ArrayT:
    """GELU ``x Φ(x)``, elementwise (= ``torch.nn.functional.gelu``).

    Parameters
    ----------
    x : array, shape ``(...)``, real floating
        The input.
    approximate : {"none", "tanh"}
        ``"none"``: the exact form ``x/2 (1 + erf(x/√2))``, with the backend's native
        ``erf`` where it has one (a portable ``erf`` accurate to float64 otherwise);
        ``"tanh"``: ``x/2 (1 + tanh(√(2/π) (x + 0.044715 x³)))``.
        (``jax.nn.gelu`` defaults to the tanh form: its ``approximate=False`` is ours
        ``"none"``.)

    Returns
    -------
    array, same shape and dtype as ``x``
        Half precision is computed in float32.

    Examples
    --------
    >>> import numpy as np, seqops
    >>> seqops.gelu(np.array([-1.0, 0.0, 1.0])).round(4).tolist()
    [-0.1587, 0.0, 0.8413]
    >>> seqops.gelu(np.array([1.0]), approximate="tanh").round(4).tolist()
    [0.8412]
    """
    backend = _check_elementwise(x)
    check.require_choice("approximate", approximate, ("none", "tanh"))
    return ops.gelu.dispatch(backend, x, approximate=approximate)
