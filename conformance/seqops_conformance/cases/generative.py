"""Cases of the VAE family: reparameterize, KL divergences, likelihoods, IWAE bound, ELBO."""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np

import seqops
from seqops_conformance.cases._base import CASES, Case, _add, _arrays, _normal, _single
from seqops_conformance.references import generative as ref

# Batch 3, latent 4, data 6.
_LAT, _DATA = (3, 4), (3, 6)


def _reparameterize(rng, *, log_var=_LAT):
    return (_normal(rng, *_LAT, scale=1.0), _normal(rng, *log_var)), {"eps": _normal(rng, *_LAT, scale=1.0)}


_add(
    "reparameterize",
    {"given eps": _reparameterize, "log_var broadcast (4,)": partial(_reparameterize, log_var=(4,))},
    _single(ref.reparameterize),
    grad=("given eps",),
)


_add(
    "kl_normal_standard",
    {
        "axis -1": partial(_arrays, _LAT, _LAT),
        "axis (0, 1)": partial(_arrays, _LAT, _LAT, axis=(0, 1)),
    },
    _single(ref.kl_normal_standard),
    grad=("axis -1",),
)


_add(
    "kl_normal_normal",
    {
        "axis -1": partial(_arrays, _LAT, _LAT, _LAT, _LAT),
        "axis 0": partial(_arrays, _LAT, _LAT, _LAT, _LAT, axis=0),
    },
    _single(ref.kl_normal_normal),
    grad=("axis -1",),
)


def _spd(rng, *lead, k=4):
    """Well-conditioned SPD covariances ``A Aᵀ / k + 0.5 I`` (eigenvalues in ~[0.5, 3])."""
    a = rng.standard_normal((*lead, k, k))
    return a @ np.swapaxes(a, -1, -2) / k + 0.5 * np.eye(k)


def _kl_mvn(rng, *, broadcast=False):
    mu_q, cov_q = _normal(rng, *_LAT, scale=1.0), _spd(rng, 3)
    lead = () if broadcast else (3,)
    return (mu_q, cov_q, _normal(rng, *lead, 4, scale=1.0), _spd(rng, *lead)), {}


_add(
    "kl_mvn",
    {"batched": _kl_mvn, "p broadcast": partial(_kl_mvn, broadcast=True)},
    _single(ref.kl_mvn),
    grad=("batched",),
)


_add(
    "gaussian_log_likelihood",
    {
        "axis -1": partial(_arrays, _DATA, _DATA, _DATA),
        "log_var broadcast (6,) axis (0, 1)": partial(_arrays, _DATA, _DATA, (6,), axis=(0, 1)),
    },
    _single(ref.gaussian_log_likelihood),
    grad=("axis -1",),
)


def _binary(rng, shape):
    return (rng.random(shape) < 0.5).astype(np.float64)


def _bernoulli(rng, *, large=False):
    x = _binary(rng, _DATA)
    if not large:
        return (x, _normal(rng, *_DATA, scale=2.0)), {}
    # |logits| = 1e4 (exact in float16, 9984 in bfloat16): confident right answers give
    # log-likelihood ~0, confident wrong ones ~-1e4; no overflow to inf or NaN allowed.
    sign = np.where(rng.random(_DATA) < 0.7, 2.0 * x - 1.0, 1.0 - 2.0 * x)
    logits = 1e4 * sign
    logits[0] = _normal(rng, 6, scale=2.0)  # one ordinary row beside the saturated ones
    return (x, logits), {}


_add(
    "bernoulli_log_likelihood",
    {"binary": _bernoulli, "logits ±1e4": partial(_bernoulli, large=True)},
    _single(ref.bernoulli_log_likelihood),
    # Not "logits ±1e4": a step of 1e-6 · 1e4 is 1e-2, and the log-sigmoid is flat there.
    grad=("binary",),
)


def _iwae(rng, *, shapes=((5, 3), (5, 3), (5, 3)), offset=0.0, **options):
    """Log-densities of ``K = 5`` samples (axis 0) for a batch of 3; ``offset`` shifts
    ``log p(x|z)`` (a log-likelihood of many data dimensions is large and negative)."""
    log_px, log_pz, log_qz = (_normal(rng, *shape, scale=1.0) for shape in shapes)
    return (offset + log_px, log_pz, log_qz), options


_add(
    "iwae_bound",
    {
        "axis 0": _iwae,
        "axis -1 log_p_z broadcast (5,)": partial(_iwae, shapes=((3, 5), (5,), (3, 5)), axis=-1),
        "K=1 (the ELBO estimate)": partial(_iwae, shapes=((1, 3), (1, 3), (1, 3))),
        # exp(-3000) underflows every dtype: only the shifted log-sum-exp stays finite.
        "log-weights near -3000": partial(_iwae, offset=-3000.0),
    },
    _single(ref.iwae_bound),
    grad=("axis 0", "axis -1 log_p_z broadcast (5,)"),
)


def _elbo(rng, *, likelihood="bernoulli", **options):
    x = _binary(rng, _DATA) if likelihood == "bernoulli" else _normal(rng, *_DATA, scale=1.0)
    recon = _normal(rng, *_DATA, scale=2.0)
    if likelihood == "gaussian":
        recon = (recon, _normal(rng, *_DATA))
    mu, log_var = _normal(rng, *_LAT, scale=1.0), _normal(rng, *_LAT)
    return (x, recon, mu, log_var), {"likelihood": likelihood, **options}


_add(
    "elbo",
    {
        "bernoulli": _elbo,
        "gaussian": partial(_elbo, likelihood="gaussian"),
        "bernoulli mean": partial(_elbo, reduction="mean"),
        "gaussian sum": partial(_elbo, likelihood="gaussian", reduction="sum"),
    },
    _single(ref.elbo),
    # The gradient checks of elbo are those of its composition with reparameterize (below).
)


class _ElboOfReparameterize:
    """``elbo(x, decoder(reparameterize(mu, log_var, eps=eps)), mu, log_var)`` with a linear
    decoder ``z @ w_dec`` (the logits, or the mean beside a fixed ``dec_log_var``): the VAE
    training objective, so its gradient reaches ``mu`` and ``log_var`` along both paths
    (through ``z`` and through the KL)."""

    def _recon(self, z: Any, w_dec: Any, dec_log_var: Any) -> Any:
        mean = z @ w_dec
        return mean if dec_log_var is None else (mean, dec_log_var)

    def __call__(
        self, x: Any, w_dec: Any, dec_log_var: Any, mu: Any, log_var: Any, /, *, eps: Any, **options: Any
    ) -> Any:
        z = seqops.reparameterize(mu, log_var, eps=eps)
        return seqops.elbo(x, self._recon(z, w_dec, dec_log_var), mu, log_var, **options)

    def implementation(
        self, x: Any, w_dec: Any, dec_log_var: Any, mu: Any, log_var: Any, /, *, eps: Any, **options: Any
    ) -> str:
        z = seqops.reparameterize(mu, log_var, eps=eps)
        recon = self._recon(z, w_dec, dec_log_var)
        names = {
            seqops.explain(seqops.reparameterize, mu, log_var, eps=eps).chosen,
            seqops.explain(seqops.elbo, x, recon, mu, log_var, **options).chosen,
        }
        return " + ".join(sorted(names))


def _elbo_of_reparameterize(rng, *, likelihood="bernoulli", **options):
    x = _binary(rng, _DATA) if likelihood == "bernoulli" else _normal(rng, *_DATA, scale=1.0)
    w_dec = rng.standard_normal((4, 6))
    dec_log_var = _normal(rng, *_DATA) if likelihood == "gaussian" else None
    mu, log_var = _normal(rng, *_LAT, scale=1.0), _normal(rng, *_LAT)
    eps = _normal(rng, *_LAT, scale=1.0)
    return (x, w_dec, dec_log_var, mu, log_var), {"eps": eps, "likelihood": likelihood, **options}


def _ref_elbo_of_reparameterize(x, w_dec, dec_log_var, mu, log_var, *, eps, **options):
    z = ref.reparameterize(mu, log_var, eps)
    recon = z @ w_dec if dec_log_var is None else (z @ w_dec, dec_log_var)
    return (ref.elbo(x, recon, mu, log_var, **options),)


# Gradient checks with respect to mu and log_var (and x, w_dec, eps) of the composition on
# torch and JAX, against finite differences of the float64 reference composition.
CASES.extend(
    Case(
        "elbo",
        name,
        partial(_elbo_of_reparameterize, **options),
        _ref_elbo_of_reparameterize,
        grad=True,
        call=_ElboOfReparameterize(),
    )
    for name, options in (
        ("of reparameterize bernoulli", {}),
        ("of reparameterize gaussian mean", {"likelihood": "gaussian", "reduction": "mean"}),
    )
)
