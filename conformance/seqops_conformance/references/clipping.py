"""Float64 references of gradient clipping by norm and by value."""

import math

import numpy as np


def _vector_norm(values, norm_type):
    a = np.abs(np.asarray(values, dtype=np.float64).ravel())
    if a.size == 0:
        return 0.0
    if norm_type == math.inf:
        return float(max(a))
    return math.fsum(a**norm_type) ** (1.0 / norm_type)


def clip_grad_norm(grads, max_norm, norm_type=2.0, eps=1e-6):
    """torch's ``clip_grad_norm_`` on a list of arrays (``None`` kept), without mutation.

    ``total = norm([norm(g) for g in grads])``; each ``g`` times
    ``min(max_norm / (total + eps), 1)``.

    Returns
    -------
    (list of ndarray or None, float)
    """
    present = [np.asarray(g, dtype=np.float64) for g in grads if g is not None]
    total = _vector_norm([_vector_norm(g, norm_type) for g in present], norm_type)
    coef = min(max_norm / (total + eps), 1.0)
    clipped = [None if g is None else np.asarray(g, dtype=np.float64) * coef for g in grads]
    return clipped, total


def clip_grad_value(grads, clip_value):
    """Each entry of each array clamped to ``[-clip_value, clip_value]`` (``None`` kept)."""
    out = []
    for g in grads:
        if g is None:
            out.append(None)
            continue
        g = np.asarray(g, dtype=np.float64)
        out.append(np.array([min(max(v, -clip_value), clip_value) for v in g.ravel()]).reshape(g.shape))
    return out
