"""Portable factories of the generative family (PixelCNN, VAE), part of the built-in plugin.

What the standard lacks comes from the backend: Gaussian noise (``random_normal``) and the
reading of a value for the eager positive-definiteness error of ``kl_mvn``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from seqops._agnostic import generative
from seqops._agnostic.activations import compute_dtype
from seqops._lib import validate as check
from seqops._lib.backend import Backend
from seqops._lib.typing import Array
from seqops._lib.values import concrete_bool
from seqops._portable._registry import portable


@portable("pixelcnn_mask")
def _pixelcnn_mask(backend: Backend) -> Callable[..., Any]:
    xp = backend.namespace()

    def run(kernel_size: tuple[int, int], in_channels: int, out_channels: int, /, **options: Any) -> Array:
        return generative.pixelcnn_mask(xp, kernel_size, in_channels, out_channels, **options)

    return run


@portable("masked_conv2d")
def _masked_conv2d(backend: Backend) -> Callable[..., Any]:
    xp = backend.namespace()

    def run(x: Array, weight: Array, bias: Array | None, /, *, mask_type: str, color_groups: int) -> Array:
        out_channels, in_channels, kh, kw = weight.shape
        device = backend.device(x)
        mask = generative.pixelcnn_mask(
            xp,
            (kh, kw),
            in_channels,
            out_channels,
            mask_type=mask_type,
            color_groups=color_groups,
            dtype=weight.dtype,
            device=device,
        )
        return generative.masked_conv2d(xp, x, weight, bias, mask=mask, device=device)

    return run


@portable("reparameterize")
def _reparameterize(backend: Backend) -> Callable[..., Any]:
    xp = backend.namespace()

    def run(mu: Array, log_var: Array, /, *, rng: Any, eps: Array | None, shape: tuple[int, ...]) -> Array:
        if eps is None:
            dtype = compute_dtype(xp, mu.dtype)
            eps = backend.random_normal(rng, shape, dtype=dtype, device=backend.device(mu))
            eps = xp.astype(eps, mu.dtype, copy=False)
        return generative.reparameterize(xp, mu, log_var, eps)

    return run


def _plain(op: str) -> None:
    """Register a factory that passes the namespace to ``generative.<op>``."""

    def factory(backend: Backend) -> Callable[..., Any]:
        xp = backend.namespace()
        fn = getattr(generative, op)

        def run(*arrays: Array, **options: Any) -> Array:
            return fn(xp, *arrays, **options)  # type: ignore[no-any-return]

        return run

    portable(op)(factory)


for _op in ("kl_normal_standard", "kl_normal_normal", "gaussian_log_likelihood", "bernoulli_log_likelihood"):
    _plain(_op)


@portable("kl_mvn")
def _kl_mvn(backend: Backend) -> Callable[..., Any]:
    xp = backend.namespace()

    def run(mu_q: Array, cov_q: Array, mu_p: Array, cov_p: Array, /, *, lead: tuple[int, ...]) -> Array:
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

        chol_q = _cholesky(backend, "cov_q", wide(cov_q, (*lead, k, k)))
        chol_p = _cholesky(backend, "cov_p", wide(cov_p, (*lead, k, k)))
        kl = generative.kl_mvn_cholesky(xp, wide(mu_q, (*lead, k)), chol_q, wide(mu_p, (*lead, k)), chol_p)
        return xp.astype(kl, mu_q.dtype, copy=False)

    return run


def _cholesky(backend: Backend, name: str, cov: Array) -> Array:
    """Lower Cholesky factor of ``cov (..., k, k)``; ``ValueError`` if not positive definite.

    NumPy and torch raise their own errors; JAX returns NaN, read here when not tracing.
    """
    xp = backend.namespace()
    try:
        chol = xp.linalg.cholesky(cov)
    except Exception as exc:  # noqa: BLE001 - each library raises its own LinAlgError
        msg = f"`{name}` of shape {check.shape_of(cov)} is not positive definite (Cholesky failed: {exc})"
        raise ValueError(msg) from exc
    bad = ~(xp.linalg.diagonal(chol) > 0.0)  # NaN compares False: caught too
    if concrete_bool(xp.any(bad)):
        where = backend.to_numpy(xp.any(bad, axis=-1))
        entries = zip(*where.nonzero(), strict=True) if where.ndim else ()
        shown = [tuple(int(i) for i in idx) for idx in entries]
        detail = f" (batch entries {shown[:5]})" if shown else ""
        msg = f"`{name}` of shape {check.shape_of(cov)} is not positive definite{detail}"
        raise ValueError(msg)
    return chol


@portable("elbo")
def _elbo(backend: Backend) -> Callable[..., Any]:
    xp = backend.namespace()

    def run(
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
        if likelihood == "gaussian":
            ll = generative.gaussian_log_likelihood(xp, x, recon[0], recon[1], axis=axis)
        else:
            ll = generative.bernoulli_log_likelihood(xp, x, recon[0], axis=axis)
        kl = generative.kl_normal_standard(xp, mu, log_var, axis=(-1,))
        return generative.reduce(xp, ll - xp.astype(kl, ll.dtype, copy=False), reduction=reduction)

    return run
