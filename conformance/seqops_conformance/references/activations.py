"""Float64 references of the activations family: softmax, log-softmax, ReLU, SiLU and GELU."""

import math

import numpy as np


def softmax(x, axis=-1):
    """Softmax along one axis, stable for any finite input.

    Parameters
    ----------
    x : array_like
        Input of any shape.
    axis : int, default -1
        Axis along which the probabilities sum to one.

    Returns
    -------
    ndarray, float64
        Same shape as ``x``.
    """
    x = np.moveaxis(np.asarray(x, dtype=np.float64), axis, -1)
    out = np.empty_like(x)
    for idx in np.ndindex(x.shape[:-1]) if x.shape[-1] else ():  # an empty axis: nothing to do
        row = x[idx]
        e = np.exp(row - np.max(row))
        out[idx] = e / math.fsum(e)
    return np.moveaxis(out, -1, axis)


def log_softmax(x, axis=-1):
    """Log-softmax along one axis, stable for any finite input.

    Computed as ``x - max - log(sum(exp(x - max)))`` per row.

    Parameters
    ----------
    x : array_like
        Input of any shape.
    axis : int, default -1
        Axis along which to normalise.

    Returns
    -------
    ndarray, float64
        Same shape as ``x``.
    """
    x = np.moveaxis(np.asarray(x, dtype=np.float64), axis, -1)
    out = np.empty_like(x)
    for idx in np.ndindex(x.shape[:-1]) if x.shape[-1] else ():
        shifted = x[idx] - np.max(x[idx])
        out[idx] = shifted - math.log(math.fsum(np.exp(shifted)))
    return np.moveaxis(out, -1, axis)


def _elementwise(fn, x):
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    for idx in np.ndindex(x.shape):
        out[idx] = fn(float(x[idx]))
    return out


def relu(x):
    """``max(x, 0)`` element by element; NaN stays NaN (as IEEE ``maximum`` and every framework)."""
    return _elementwise(lambda v: v if v > 0.0 or v != v else 0.0, x)


def _silu(v):
    # x / (1 + e^-x), with e^-x taken from the side that cannot overflow.
    if v >= 0.0:
        return v / (1.0 + math.exp(-v))
    e = math.exp(v)
    return v * e / (1.0 + e)


def silu(x):
    """``x / (1 + exp(-x))`` element by element (``math.exp``, never overflowing)."""
    return _elementwise(_silu, x)


def gelu(x, approximate="none"):
    """``x Φ(x)`` with ``Φ(x) = erfc(-x/√2) / 2`` (``math.erfc``), or the tanh form
    ``x/2 (1 + tanh(√(2/π) (x + 0.044715 x³)))`` when ``approximate="tanh"``."""
    if approximate == "tanh":
        c = math.sqrt(2.0 / math.pi)
        return _elementwise(lambda v: 0.5 * v * (1.0 + math.tanh(c * (v + 0.044715 * v**3))), x)
    if approximate != "none":
        raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
    return _elementwise(lambda v: v * 0.5 * math.erfc(-v / math.sqrt(2.0)), x)
