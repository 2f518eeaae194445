"""``reparameterize``, ``kl_normal_normal`` and ``gaussian_log_likelihood``, in-place paths
(the package docstring).

- ``reparameterize``: the normal draws made in the compute dtype by
  ``Generator.standard_normal(dtype=)`` itself (float32: 4.05 ms at 128 x 4096, where the
  float64 draws and cast took 4.39 ms), the product and the sum written into them: 1.12-1.15
  / 1.00-1.02 (the draws are 95% of either). float64 draws the portable path's numbers,
  float32 other numbers from the same ``rng`` (the same result with this implementation).
- ``kl_normal_normal``, ``gaussian_log_likelihood``: two arrays and one of the broadcast shape
  where the portable path made nine and six: 0.98-1.10 / 0.94-1.05 and 1.02-1.08 / 0.94-1.01.
"""

from __future__ import annotations

import math
from typing import Any

import seqops

from ._kernels import _K, _load


def implementations() -> list[seqops.Implementation]:
    ops = seqops.ops
    return [
        seqops.Implementation(ops.reparameterize, "numpy-reparameterize", reparameterize),
        seqops.Implementation(ops.kl_normal_normal, "numpy-kl-normal-normal", kl_normal_normal),
        seqops.Implementation(
            ops.gaussian_log_likelihood, "numpy-gaussian-log-likelihood", gaussian_log_likelihood
        ),
    ]


def reparameterize(
    backend: seqops.Backend, mu: Any, log_var: Any, /, *, rng: Any, eps: Any, shape: tuple[int, ...]
) -> Any:
    """``mu + exp(log_var / 2) * eps`` of the broadcast ``shape``, in ``mu``'s dtype.

    The product and the sum are written into the array of draws (or, with ``eps`` given, of
    ``exp(log_var / 2)``): one temporary where the portable path made three. The draws are
    made in the compute dtype (float32 for float32 and half types) by ``Generator.standard_normal``
    itself: the portable path's float64 draws and cast took 0.35 ms more at 128 x 4096.
    float64 draws the portable path's numbers; float32 other numbers from the same ``rng``
    (the contract: the same ``rng`` gives the same result with the same implementation).
    """
    k = _K or _load()
    np = k["np"]
    dtype = mu.dtype
    if eps is None:
        seqops.check_rng(rng, np.random.Generator, backend.name)
        generator = np.random.default_rng(rng) if isinstance(rng, int) else rng
        ct = dtype if dtype in k["native"] else k["float32"]
        z = generator.standard_normal(dtype=ct, out=np.empty(shape, dtype=ct)).astype(dtype, copy=False)
        spread = np.multiply(log_var, 0.5, out=np.empty(log_var.shape, dtype=dtype))
        np.exp(spread, out=spread)
        z *= spread
    else:
        z = np.multiply(log_var, 0.5, out=np.empty(shape, dtype=dtype))
        np.exp(z, out=z)
        z *= eps
    z += mu
    return z


def kl_normal_normal(
    backend: seqops.Backend, mu_q: Any, log_var_q: Any, mu_p: Any, log_var_p: Any, /, *, axis: tuple[int, ...]
) -> Any:
    """``½ Σ (expm1(r) − r + ((mu_q − mu_p) · exp(−lv_p/2))²)`` over ``axis``, ``r = lv_q − lv_p``:
    the portable terms, to the bit, in two arrays of the broadcast shape and one of
    ``log_var_p``'s where the portable path made nine."""
    k = _K or _load()
    np = k["np"]
    mq, lq, mp, lp = _up(k, mu_q, log_var_q, mu_p, log_var_p)
    shape = np.broadcast_shapes(mq.shape, lq.shape, mp.shape, lp.shape)
    r = np.subtract(lq, lp, out=np.empty(shape, dtype=mq.dtype))
    terms = np.expm1(r)
    terms -= r
    z = np.subtract(mq, mp, out=r)  # the mean difference in units of σp
    z *= _inverse_sigma(np, lp)
    z *= z
    terms += z
    return (0.5 * terms.sum(axis=axis)).astype(mu_q.dtype, copy=False)


def gaussian_log_likelihood(
    backend: seqops.Backend, x: Any, mean: Any, log_var: Any, /, *, axis: tuple[int, ...]
) -> Any:
    """``Σ −½(log 2π + log_var + ((x − mean) · exp(−log_var/2))²)`` over ``axis``: the portable
    terms, to the bit, in one array of the broadcast shape and one of ``log_var``'s where the
    portable path made six."""
    k = _K or _load()
    np = k["np"]
    xs, ms, lv = _up(k, x, mean, log_var)
    shape = np.broadcast_shapes(xs.shape, ms.shape, lv.shape)
    z = np.subtract(xs, ms, out=np.empty(shape, dtype=xs.dtype))  # the standardized residual
    z *= _inverse_sigma(np, lv)
    z *= z
    z += lv
    count = math.prod(shape[a] for a in axis)  # the constant added once, as the portable path
    return (-0.5 * (z.sum(axis=axis) + count * LOG_2PI)).astype(x.dtype, copy=False)


LOG_2PI = math.log(2.0 * math.pi)


def _up(k: dict[str, Any], *arrays: Any) -> list[Any]:
    """The arrays in the compute dtype of the first (float32 for half types), uncopied if native."""
    ct = arrays[0].dtype if arrays[0].dtype in k["native"] else k["float32"]
    return [a.astype(ct, copy=False) for a in arrays]


def _inverse_sigma(np: Any, log_var: Any) -> Any:
    """``exp(-0.5 · log_var)`` (the portable product, in that order) in one new array of its shape."""
    out = np.multiply(log_var, -0.5, out=np.empty(log_var.shape, dtype=log_var.dtype))
    return np.exp(out, out=out)
