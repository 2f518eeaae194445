"""Variational autoencoders: reparameterization, KL divergences, likelihoods, the ELBO and the
IWAE bound."""

from __future__ import annotations

import operator
from typing import Any

from seqops import ops
from seqops._dispatch import public, resolve
from seqops._lib import validate as check
from seqops._lib.typing import Array, ArrayT


@public(ops.reparameterize)
def reparameterize(mu: ArrayT, log_var: Array, /, *, rng: Any = None, eps: Array | None = None) -> ArrayT:
    """A differentiable draw ``z = mu + exp(log_var / 2) * eps`` from ``N(mu, exp(log_var))``.

    Parameters
    ----------
    mu, log_var : array, shape ``(..., Z)`` (any broadcastable shapes), real floating
        Mean and log-variance of a diagonal Gaussian.
    rng : int or native generator/key, optional
        Draws ``eps ~ N(0, I)`` (see *Randomness* in the README; a JAX key inside ``jit``).
    eps : array, optional
        The standard-normal noise itself, broadcastable to the shape of ``z``.
        Exactly one of ``rng`` and ``eps``.

    Returns
    -------
    z : array, the broadcast shape of ``mu`` and ``log_var``
        Dtype of ``mu``. Gradients flow to ``mu`` (``dz/dmu = 1``) and ``log_var``
        (``dz/dlog_var = exp(log_var / 2) * eps / 2``), never to the noise.

    Examples
    --------
    >>> import numpy as np, seqops
    >>> mu, log_var = np.zeros(3), np.log(np.full(3, 4.0))
    >>> seqops.reparameterize(mu, log_var, eps=np.array([1.0, -0.5, 0.0])).tolist()
    [2.0, -1.0, 0.0]
    >>> seqops.reparameterize(mu, log_var, rng=0).shape
    (3,)
    """
    backend = resolve(mu, log_var, eps, names=("mu", "log_var", "eps"), required=2)
    xp = backend.namespace()
    check.require_floating(xp, mu=mu, log_var=log_var, eps=eps)
    check.require_same_dtype(mu=mu, log_var=log_var, eps=eps)
    if (rng is None) == (eps is None):
        given = "both" if eps is not None else "neither"
        msg = (
            "pass exactly one of rng= (a seed or the backend's generator/key) and eps= (the noise); "
            f"got {given}"
        )
        raise ValueError(msg)
    shape = check.broadcast_shapes(
        {"mu": check.shape_of(mu), "log_var": check.shape_of(log_var)}, "the shapes of mu and log_var"
    )
    check.broadcast_to_target("eps", eps, shape, "the shape of mu and log_var")
    return ops.reparameterize.dispatch(backend, mu, log_var, rng=rng, eps=eps, shape=shape)  # type: ignore[no-any-return]


@public(ops.kl_normal_standard)
def kl_normal_standard(mu: ArrayT, log_var: Array, /, *, axis: int | tuple[int, ...] = -1) -> ArrayT:
    """``KL(N(mu, exp(log_var)) || N(0, I)) = ½ Σ (exp(log_var) + mu² − 1 − log_var)``.

    Parameters
    ----------
    mu, log_var : array, shape ``(..., Z)`` (broadcastable), real floating, one dtype
        Mean and log-variance of the diagonal Gaussian ``q``.
    axis : int or tuple of int
        The latent axes summed over (per example; no batch reduction).

    Returns
    -------
    kl : array, the broadcast shape without ``axis``
        Dtype of ``mu`` (half precision is computed in float32); ``>= 0``.

    Examples
    --------
    >>> import numpy as np, seqops
    >>> mu, log_var = np.array([[0.0, 0.0], [1.0, 0.0]]), np.zeros((2, 2))
    >>> seqops.kl_normal_standard(mu, log_var).tolist()
    [0.0, 0.5]
    """
    backend, shape = _resolve_floats(mu=mu, log_var=log_var)
    return ops.kl_normal_standard.dispatch(backend, mu, log_var, axis=_axes(axis, shape))  # type: ignore[no-any-return]


@public(ops.kl_normal_normal)
def kl_normal_normal(
    mu_q: ArrayT, log_var_q: Array, mu_p: Array, log_var_p: Array, /, *, axis: int | tuple[int, ...] = -1
) -> ArrayT:
    """``KL(q || p)`` of diagonal Gaussians, summed over ``axis``.

    ``½ Σ (log σp² − log σq² + (σq² + (μq − μp)²) / σp² − 1)``.

    Parameters
    ----------
    mu_q, log_var_q, mu_p, log_var_p : array, shape ``(..., Z)`` (broadcastable), one dtype
        Means and log-variances of ``q`` and ``p``; real floating.
    axis : int or tuple of int
        Axes summed over.

    Returns
    -------
    kl : array, the broadcast shape without ``axis``

    Examples
    --------
    >>> import numpy as np, seqops
    >>> z = np.zeros(2)
    >>> float(seqops.kl_normal_normal(z, z, np.ones(2), z))  # ½ Σ (μq − μp)²
    1.0
    """
    backend, shape = _resolve_floats(mu_q=mu_q, log_var_q=log_var_q, mu_p=mu_p, log_var_p=log_var_p)
    return ops.kl_normal_normal.dispatch(  # type: ignore[no-any-return]
        backend, mu_q, log_var_q, mu_p, log_var_p, axis=_axes(axis, shape)
    )


@public(ops.kl_mvn)
def kl_mvn(mu_q: ArrayT, cov_q: Array, mu_p: Array, cov_p: Array, /) -> ArrayT:
    """``KL(N(μq, Σq) || N(μp, Σp))`` of full-covariance Gaussians, via Cholesky factors.

    ``½ (tr(Σp⁻¹Σq) + (μp − μq)ᵀ Σp⁻¹ (μp − μq) − k + ln(|Σp| / |Σq|))``.

    Parameters
    ----------
    mu_q, mu_p : array, shape ``(..., k)``
        Means of ``q`` and ``p``.
    cov_q, cov_p : array, shape ``(..., k, k)``
        Symmetric positive-definite covariances (the lower triangle is read). Leading
        dimensions of all four broadcast. One real floating dtype.

    Returns
    -------
    kl : array, shape ``(...)``
        Dtype of ``mu_q`` (half precision is computed in float32).

    Raises
    ------
    ValueError
        For a covariance that is not positive definite, whenever values can be read. Under
        ``jax.jit`` (where they cannot, and JAX's Cholesky returns NaN) the KL is NaN.
    NotImplementedError
        On a backend whose namespace lacks the Array API ``linalg`` extension.

    Examples
    --------
    >>> import numpy as np, seqops
    >>> mu, cov = np.zeros(2), np.eye(2)
    >>> float(seqops.kl_mvn(mu, cov, mu, 2.0 * cov))  # ½ (1 − 2 + 2 ln 2)
    0.1931471805599453
    """
    backend = resolve(mu_q, cov_q, mu_p, cov_p, names=("mu_q", "cov_q", "mu_p", "cov_p"), required=4)
    xp = backend.namespace()
    check.require_floating(xp, mu_q=mu_q, cov_q=cov_q, mu_p=mu_p, cov_p=cov_p)
    check.require_same_dtype(mu_q=mu_q, cov_q=cov_q, mu_p=mu_p, cov_p=cov_p)
    for name, x, ndim, layout in (
        ("mu_q", mu_q, 1, "(..., k)"),
        ("cov_q", cov_q, 2, "(..., k, k)"),
        ("mu_p", mu_p, 1, "(..., k)"),
        ("cov_p", cov_p, 2, "(..., k, k)"),
    ):
        check.require_ndim(name, x, ndim, layout)
    k = mu_q.shape[-1]
    if any(s != k for s in (*cov_q.shape[-2:], mu_p.shape[-1], *cov_p.shape[-2:])):
        msg = (
            f"kl_mvn needs mu (..., k) and cov (..., k, k) of one size k; got mu_q {check.shape_of(mu_q)}, "
            f"cov_q {check.shape_of(cov_q)}, mu_p {check.shape_of(mu_p)}, cov_p {check.shape_of(cov_p)}"
        )
        raise ValueError(msg)
    lead = check.broadcast_shapes(
        {
            "mu_q": check.shape_of(mu_q)[:-1],
            "cov_q": check.shape_of(cov_q)[:-2],
            "mu_p": check.shape_of(mu_p)[:-1],
            "cov_p": check.shape_of(cov_p)[:-2],
        },
        "the leading (batch) dimensions of mu_q, cov_q, mu_p and cov_p",
    )
    return ops.kl_mvn.dispatch(backend, mu_q, cov_q, mu_p, cov_p, lead=lead)  # type: ignore[no-any-return]


@public(ops.gaussian_log_likelihood)
def gaussian_log_likelihood(
    x: ArrayT, mean: Array, log_var: Array, /, *, axis: int | tuple[int, ...] = -1
) -> ArrayT:
    """``log N(x; mean, exp(log_var)) = −½ Σ (log 2π + log_var + (x − mean)² / exp(log_var))``.

    Parameters
    ----------
    x, mean, log_var : array (broadcastable shapes), real floating, one dtype
        The data, and the mean and log-variance of the diagonal Gaussian.
    axis : int or tuple of int
        Axes summed over (the data dimensions of one example).

    Returns
    -------
    log_likelihood : array, the broadcast shape without ``axis``

    Examples
    --------
    >>> import numpy as np, seqops
    >>> round(float(seqops.gaussian_log_likelihood(np.zeros(1), np.zeros(1), np.zeros(1))), 6)
    -0.918939
    """
    backend, shape = _resolve_floats(x=x, mean=mean, log_var=log_var)
    return ops.gaussian_log_likelihood.dispatch(  # type: ignore[no-any-return]
        backend, x, mean, log_var, axis=_axes(axis, shape)
    )


@public(ops.bernoulli_log_likelihood)
def bernoulli_log_likelihood(x: ArrayT, logits: Array, /, *, axis: int | tuple[int, ...] = -1) -> ArrayT:
    """``log Bernoulli(x; sigmoid(logits)) = Σ x·l − softplus(l)``, stable for any finite ``l``.

    The negative of ``torch.nn.functional.binary_cross_entropy_with_logits`` summed over
    ``axis``; ``x`` may be any value in [0, 1] (binarized or continuous data).

    Parameters
    ----------
    x, logits : array (broadcastable shapes), real floating, one dtype
        The data (values in [0, 1]) and the logits of the Bernoulli probabilities.
    axis : int or tuple of int
        Axes summed over.

    Returns
    -------
    log_likelihood : array, the broadcast shape without ``axis``

    Examples
    --------
    >>> import numpy as np, seqops
    >>> seqops.bernoulli_log_likelihood(np.array([1.0, 0.0]), np.array([1e4, -1e4]), axis=0).tolist()
    0.0
    """
    backend, shape = _resolve_floats(x=x, logits=logits)
    return ops.bernoulli_log_likelihood.dispatch(backend, x, logits, axis=_axes(axis, shape))  # type: ignore[no-any-return]


@public(ops.iwae_bound)
def iwae_bound(log_p_x_given_z: ArrayT, log_p_z: Array, log_q_z: Array, /, *, axis: int = 0) -> ArrayT:
    """The importance-weighted bound ``log (1/K) Σ_k w_k`` on ``log p(x)`` (Burda et al., 2016).

    ``log w_k = log p(x|z_k) + log p(z_k) − log q(z_k|x)`` for ``K`` samples ``z_k ~ q(z|x)``
    along ``axis``. Its expectation is ``<= log p(x)``, rises with ``K`` and tends to
    ``log p(x)``; ``K = 1`` is the one-sample ELBO estimate. Computed as a log-sum-exp with
    the largest log-weight taken out, so it is stable in float32 for any finite log-weights.

    Parameters
    ----------
    log_p_x_given_z, log_p_z, log_q_z : array, real floating, one dtype
        Broadcastable to one shape ``(..., K, ...)``, the samples along ``axis`` (each term
        already summed over its data and latent dimensions).
    axis : int
        The sample axis of the broadcast shape.

    Returns
    -------
    bound : array, the broadcast shape without ``axis``
        Dtype of ``log_p_x_given_z`` (half precision is computed in float32). Maximise it
        (``-iwae_bound(...).mean()`` is the IWAE loss); gradients reach every input.

    Examples
    --------
    >>> import numpy as np, seqops
    >>> log_w = np.log(np.array([[1.0, 3.0]]))  # K = 2 samples of one x, along axis 1
    >>> zero = np.zeros((1, 2))
    >>> np.exp(seqops.iwae_bound(log_w, zero, zero, axis=1)).tolist()  # mean of the weights
    [2.0]
    >>> log_w = np.array([-1e4, -1e4 + np.log(3.0)])  # exp(log_w) underflows to 0: no matter
    >>> round(float(seqops.iwae_bound(log_w, np.zeros(2), np.zeros(2))), 6)  # -1e4 + log 2
    -9999.306853
    """
    backend, shape = _resolve_floats(log_p_x_given_z=log_p_x_given_z, log_p_z=log_p_z, log_q_z=log_q_z)
    if not shape:
        msg = "iwae_bound needs a sample axis: the broadcast shape of its inputs is ()"
        raise ValueError(msg)
    k = check.integer("axis", axis, minimum=None)
    if not -len(shape) <= k < len(shape):
        msg = f"axis {k} is out of range for the broadcast shape {shape} of the log-densities"
        raise ValueError(msg)
    return ops.iwae_bound.dispatch(  # type: ignore[no-any-return]
        backend, log_p_x_given_z, log_p_z, log_q_z, axis=k % len(shape) - len(shape)
    )


@public(ops.elbo)
def elbo(
    x: ArrayT,
    recon: Array | tuple[Array, Array],
    mu: Array,
    log_var: Array,
    /,
    *,
    likelihood: str = "bernoulli",
    axis: int | tuple[int, ...] = -1,
    reduction: str = "none",
) -> ArrayT:
    """The evidence lower bound ``E_q[log p(x|z)] − KL(q(z|x) || N(0, I))`` (to maximise).

    The expectation is the usual one-sample estimate: ``recon`` is the decoder's output
    for one ``z = reparameterize(mu, log_var, ...)``.

    Parameters
    ----------
    x : array, shape ``(B..., D...)``
        The data; ``axis`` names its data axes ``D...``.
    recon : array or (array, array)
        ``likelihood="bernoulli"``: the decoder's logits, shape of ``x``.
        ``likelihood="gaussian"``: a pair ``(mean, log_var)``, each broadcastable to ``x``.
    mu, log_var : array, shape ``(B..., Z)``
        The encoder's ``q(z|x)``; the KL sums the last axis.
    likelihood : {"bernoulli", "gaussian"}
    axis : int or tuple of int
        The data axes of ``x`` summed by the likelihood; the rest are the batch ``B...``.
    reduction : {"none", "mean", "sum"}
        Over the batch.

    Returns
    -------
    elbo : array, shape ``(B...)`` (``()`` with a reduction)
        Dtype of ``x``. Train by minimising ``-elbo(..., reduction="mean")``.

    Examples
    --------
    >>> import numpy as np, seqops
    >>> x, logits = np.array([[1.0, 0.0]]), np.array([[1e4, -1e4]])
    >>> seqops.elbo(x, logits, np.zeros((1, 3)), np.zeros((1, 3))).tolist()  # perfect fit, KL 0
    [0.0]
    """
    check.require_choice("likelihood", likelihood, ("bernoulli", "gaussian"))
    check.require_choice("reduction", reduction, ("none", "mean", "sum"))
    if likelihood == "gaussian":
        if not isinstance(recon, (tuple, list)) or len(recon) != 2:
            msg = f'likelihood="gaussian" needs recon=(mean, log_var); got {type(recon).__name__}'
            raise TypeError(msg)
        parts = {"recon[0] (mean)": recon[0], "recon[1] (log_var)": recon[1]}
    else:
        if isinstance(recon, (tuple, list)):
            msg = 'likelihood="bernoulli" needs recon = the logits (one array), not a tuple'
            raise TypeError(msg)
        parts = {"recon (logits)": recon}
    backend = resolve(
        x, *parts.values(), mu, log_var, names=("x", *parts, "mu", "log_var"), required=3 + len(parts)
    )
    xp = backend.namespace()
    named = {"x": x, **parts, "mu": mu, "log_var": log_var}
    check.require_floating(xp, **named)
    check.require_same_dtype(**named)
    for name, part in parts.items():
        check.broadcast_to_target(name, part, check.shape_of(x), "the shape of x")
    axes = _axes(axis, check.shape_of(x))
    batch = tuple(n for i, n in enumerate(check.shape_of(x)) if i not in axes)
    check.require_ndim("mu", mu, 1, "(B..., Z)")
    latent = check.broadcast_shapes(
        {"mu": check.shape_of(mu), "log_var": check.shape_of(log_var)}, "the shapes of mu and log_var"
    )
    if latent[:-1] != batch:
        msg = (
            f"mu/log_var (B..., Z) must have the batch dimensions of x without axis={axis}: x "
            f"{check.shape_of(x)} has batch {batch}; got mu {check.shape_of(mu)}, log_var "
            f"{check.shape_of(log_var)}"
        )
        raise ValueError(msg)
    return ops.elbo.dispatch(  # type: ignore[no-any-return]
        backend,
        x,
        tuple(parts.values()),
        mu,
        log_var,
        likelihood=likelihood,
        axis=axes,
        reduction=reduction,
    )


def _resolve_floats(**arrays: Array) -> tuple[Any, tuple[int, ...]]:
    """Backend of ``arrays`` (one library, one real floating dtype) and their broadcast shape."""
    backend = resolve(*arrays.values(), names=tuple(arrays), required=len(arrays))
    check.require_floating(backend.namespace(), **arrays)
    check.require_same_dtype(**arrays)
    shape = check.broadcast_shapes({name: check.shape_of(x) for name, x in arrays.items()})
    return backend, shape


def _axes(axis: object, shape: tuple[int, ...]) -> tuple[int, ...]:
    """``axis`` (an int or a tuple of ints) as sorted non-negative axes of ``shape``."""
    given = axis if isinstance(axis, tuple) else (axis,)
    axes = []
    for a in given:
        if isinstance(a, bool):
            msg = f"axis must be an int or a tuple of ints; got {axis!r}"
            raise TypeError(msg)
        try:
            i = operator.index(a)  # type: ignore[arg-type]
        except TypeError:
            msg = f"axis must be an int or a tuple of ints; got {axis!r}"
            raise TypeError(msg) from None
        if not -len(shape) <= i < len(shape):
            msg = f"axis {axis!r} is out of range for shape {shape}"
            raise ValueError(msg)
        axes.append(i % len(shape))
    if len(set(axes)) != len(axes):
        msg = f"axis {axis!r} repeats an axis"
        raise ValueError(msg)
    return tuple(sorted(axes))
