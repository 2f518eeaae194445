"""Float64 references of the activations family: softmax and log-softmax."""

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
    for idx in np.ndindex(x.shape[:-1]):
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
    for idx in np.ndindex(x.shape[:-1]):
        shifted = x[idx] - np.max(x[idx])
        out[idx] = shifted - math.log(math.fsum(np.exp(shifted)))
    return np.moveaxis(out, -1, axis)
