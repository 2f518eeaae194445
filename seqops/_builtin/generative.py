"""Built-in implementations of the VAE family: reparameterization, Gaussian KLs, likelihoods,
the IWAE bound, and the ELBO over its dispatched parts.

What the standard lacks comes from the backend: Gaussian noise (``random_normal``) and the
reading of a value for the eager positive-definiteness error of ``kl_mvn``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from seqops import ops
from seqops._agnostic import generative
from seqops._agnostic.activations import compute_dtype
from seqops._builtin._table import implement, namespaced
from seqops._lib import validate as check
from seqops._lib.placement import helper_device
from seqops._lib.typing import Array
from seqops._lib.values import concrete_bool
from seqops.contract import Backend


@implement(ops.reparameterize)
def reparameterize(
    backend: Backend, mu: Array, log_var: Array, /, *, rng: Any, eps: Array | None, shape: tuple[int, ...]
) -> Array:
    xp = backend.namespace()
    if eps is None:
        dtype = compute_dtype(xp, mu.dtype)
        eps = backend.random_normal(rng, shape, dtype=dtype, device=helper_device(mu), like=mu)
        eps = xp.astype(eps, mu.dtype, copy=False)
    return generative.reparameterize(xp, mu, log_var, eps)


namespaced(ops.kl_normal_standard, generative.kl_normal_standard)
namespaced(ops.kl_normal_normal, generative.kl_normal_normal)
namespaced(ops.gaussian_log_likelihood, generative.gaussian_log_likelihood)
namespaced(ops.bernoulli_log_likelihood, generative.bernoulli_log_likelihood)
namespaced(ops.iwae_bound, generative.iwae_bound)


@implement(ops.kl_mvn)
def kl_mvn(
    backend: Backend, mu_q: Array, cov_q: Array, mu_p: Array, cov_p: Array, /, *, lead: tuple[int, ...]
) -> Array:
    xp = backend.namespace()
    linalg = getattr(xp, "linalg", None)
    if not all(hasattr(linalg, f) for f in ("cholesky", "solve", "diagonal")):
        msg = (
            f"kl_mvn needs the Array API linalg extension (cholesky, solve, diagonal), which the "
            f"namespace of backend {backend.name!r} lacks"
        )
        raise NotImplementedError(msg)
    dtype = compute_dtype(xp, mu_q.dtype)
    k = mu_q.shape[-1]

    def wide(x: Array, shape: tuple[int, ...]) -> Array:
        return xp.broadcast_to(xp.astype(x, dtype, copy=False), shape)

    # Each covariance as a power of two times a matrix of diagonal ~1 (extreme scales). The
    # exponents come from the inputs (torch's abs keeps its input for the backward pass), the
    # matrices from one stack of both, divided in place (one copy of the covariances; a new
    # array where the library has no in-place operators, as JAX) and factorized in one call:
    # XLA's CPU backend can deadlock running two LAPACK custom calls at once (jax 0.10).
    covs = (wide(cov_q, (*lead, k, k)), wide(cov_p, (*lead, k, k)))
    exponents = xp.stack([generative.scale_exponent(xp, cov) for cov in covs])  # (2, ...)
    units = xp.stack(covs)  # (2, ..., k, k)
    units *= (2.0 ** (-exponents))[..., None, None]
    # indexing, not unstack: array-api-compat's moveaxis has no torch.func.vmap batching rule
    unit_q, unit_p = units[0, ...], units[1, ...]
    exponent_q, exponent_p = exponents[0, ...], exponents[1, ...]
    try:
        chols = _factor(backend)(units)
    except Exception:
        # a library's LinAlgError: the covariance that fails alone is named; if neither does,
        # the error was not theirs, and it surfaces as it is
        _cholesky(backend, "cov_q", unit_q)
        _cholesky(backend, "cov_p", unit_p)
        raise
    chol_q, chol_p = chols[0, ...], chols[1, ...]
    _check_factor(backend, "cov_q", unit_q, chol_q)
    _check_factor(backend, "cov_p", unit_p, chol_p)
    mean_q, mean_p = wide(mu_q, (*lead, k)), wide(mu_p, (*lead, k))
    kl = generative.kl_mvn_cholesky(
        xp, mean_q, chol_q, mean_p, chol_p, exponent_q=exponent_q, exponent_p=exponent_p,
        solve_lower=backend.solve_lower,
    )  # fmt: skip
    return xp.astype(kl, mu_q.dtype, copy=False)


def _cholesky(backend: Backend, name: str, cov: Array) -> Array:
    """Lower Cholesky factor of ``cov (..., k, k)``; ``ValueError`` naming ``name`` where the
    library raises its ``LinAlgError`` (NumPy, SciPy and torch; JAX returns NaN:
    :func:`_check_factor`). Any other error is not about the matrix: it surfaces as it is."""
    try:
        chol = _factor(backend)(cov)
    except Exception as exc:
        # each library has its own LinAlgError (NumPy's a ValueError, torch's a RuntimeError)
        if not any(cls.__name__.endswith("LinAlgError") for cls in type(exc).__mro__):
            raise
        msg = f"`{name}` of shape {check.shape_of(cov)} is not positive definite (Cholesky failed: {exc})"
        raise ValueError(msg) from exc
    return chol


def _factor(backend: Backend) -> Callable[[Array], Array]:
    """The backend's native batched Cholesky, else its namespace's."""
    return backend.cholesky or backend.namespace().linalg.cholesky


def _check_factor(backend: Backend, name: str, cov: Array, chol: Array) -> None:
    """``ValueError`` naming ``name`` where ``chol`` has a non-positive (or NaN: JAX's answer to a
    matrix that is not positive definite) diagonal entry; read only when not tracing."""
    xp = backend.namespace()
    bad = ~(xp.linalg.diagonal(chol) > 0.0)  # NaN compares False: caught too
    if concrete_bool(backend, xp.any(bad)):
        where = backend.to_numpy(xp.any(bad, axis=-1))
        entries = zip(*where.nonzero(), strict=True) if where.ndim else ()
        shown = [tuple(int(i) for i in idx) for idx in entries]
        detail = f" (batch entries {shown[:5]})" if shown else ""
        msg = f"`{name}` of shape {check.shape_of(cov)} is not positive definite{detail}"
        raise ValueError(msg)


@implement(ops.elbo)
def elbo(
    backend: Backend,
    x: Array,
    recon: tuple[Array, ...],
    mu: Array,
    log_var: Array,
    /,
    *,
    likelihood: str,
    axis: tuple[int, ...],
    reduction: str,
) -> Array:
    xp = backend.namespace()
    if likelihood == "gaussian":
        ll = ops.gaussian_log_likelihood.dispatch(backend, x, recon[0], recon[1], axis=axis)
    else:
        ll = ops.bernoulli_log_likelihood.dispatch(backend, x, recon[0], axis=axis)
    kl = ops.kl_normal_standard.dispatch(backend, mu, log_var, axis=(-1,))
    return generative.reduce(xp, ll - xp.astype(kl, ll.dtype, copy=False), reduction=reduction)
