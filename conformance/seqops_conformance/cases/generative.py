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


# Extreme log-variances (issue 14). Every case runs in float16 too (computed in float32,
# returned in float16, max 65504): the outputs stay below ~5e4, so large positive
# log-variances appear only where they do not reach the output through exp(log_var), and
# very negative ones only beside equal means (a residual over e^-40 overflows float16).
# Their gradients are checked in tests/test_extremes.py against autodiff of
# torch.distributions: here the step is h = 1e-6·max|x| = 1e-4, and a central difference of
# (h·e^50)² is meaningless. Only reparameterize's extreme case is gradient-checked here
# (float64 error 3.9e-10, as the ordinary cases); kl_normal_standard's would be 3.2e-9, the
# truncation error h²·e^10/6 of the difference, not a property of the op.
_LOG_VARS = np.array([[-100.0, -80.0, -40.0, -10.0], [0.0, 10.0, -80.0, 5.0], [-40.0, -10.0, 10.0, 0.0]])


def _reparameterize_extreme(rng):
    (mu, _), options = _reparameterize(rng)
    return (mu, _LOG_VARS), options


_add(
    "reparameterize",
    {
        "given eps": _reparameterize,
        "log_var broadcast (4,)": partial(_reparameterize, log_var=(4,)),
        "log_var -100..10": _reparameterize_extreme,
    },
    _single(ref.reparameterize),
    grad=("given eps", "log_var -100..10"),
)


_add(
    "kl_normal_standard",
    {
        "axis -1": partial(_arrays, _LAT, _LAT),
        "axis (0, 1)": partial(_arrays, _LAT, _LAT, axis=(0, 1)),
        "log_var -100..10": lambda rng: ((_normal(rng, *_LAT, scale=1.0), _LOG_VARS), {}),
    },
    _single(ref.kl_normal_standard),
    grad=("axis -1",),
)


def _kl_normal_normal_extreme(rng):
    """Row 0: equal log-variances -100, -80, -40, 80 and equal means (KL 0: the 0·inf of
    issue 14); row 1: log-variance differences of ±10 at -80, -10, 10 and 80; row 2: q
    much narrower than p (e^-80 against e^80, e^-40 against e^10)."""
    log_var_q = np.array(
        [[-100.0, -80.0, -40.0, 80.0], [-80.0, -10.0, 10.0, 80.0], [-80.0, -40.0, 0.0, 40.0]]
    )
    log_var_p = np.array([[-100.0, -80.0, -40.0, 80.0], [-70.0, -20.0, 0.0, 70.0], [80.0, 10.0, 0.0, 40.0]])
    mu_p = _normal(rng, *_LAT, scale=1.0)
    # mean differences only where exp(-log_var_p) cannot overflow float16: 0.1 at e^-20, ~1 above
    diff = np.where(log_var_p > -20.0, _normal(rng, *_LAT, scale=1.0), 0.0)
    diff = np.where(log_var_p == -20.0, 1e-4, diff)
    return (mu_p + diff, log_var_q, mu_p, log_var_p), {}


_add(
    "kl_normal_normal",
    {
        "axis -1": partial(_arrays, _LAT, _LAT, _LAT, _LAT),
        "axis 0": partial(_arrays, _LAT, _LAT, _LAT, _LAT, axis=0),
        "log_var -100..80": _kl_normal_normal_extreme,
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


def _kl_mvn_scaled(rng):
    """Covariances scaled by 1e-3 and 1e3 (the most float16 holds with its 11-bit significand
    and range 6e-5..65504): q narrow and p wide, both narrow (means 0.1 apart), both wide.
    The scale-free Cholesky factors (``scale_exponent``) see the same matrices in each row."""
    mu_q = _normal(rng, *_LAT, scale=1.0)
    mu_p = mu_q + np.array([[1.0], [0.1], [1.0]]) * _normal(rng, *_LAT, scale=1.0)
    scale_q, scale_p = np.array([1e-3, 1e-3, 1e3]), np.array([1e3, 1e-3, 1e3])
    return (mu_q, scale_q[:, None, None] * _spd(rng, 3), mu_p, scale_p[:, None, None] * _spd(rng, 3)), {}


_add(
    "kl_mvn",
    {
        "batched": _kl_mvn,
        "p broadcast": partial(_kl_mvn, broadcast=True),
        "scales 1e-3 and 1e3": _kl_mvn_scaled,
    },
    _single(ref.kl_mvn),
    grad=("batched",),
)


_DEC_LOG_VARS = np.array(
    [
        [-100.0, -80.0, -40.0, -10.0, 0.0, 10.0],
        [80.0, 40.0, 20.0, 80.0, -80.0, 0.0],
        [0.0, -2.0, 2.0, 0.5, -1.0, 1.0],
    ]
)


def _gaussian_extreme(rng):
    """Decoder log-variances from -100 to 80: the residual is 0 where the log-variance is
    -40 or below (``gaussian_log_likelihood(m, m, -100) = 49.08``, NaN before issue 14), 0.1 at
    -10 (0.01·e^10 = 220), of order 1 elsewhere."""
    mean = _normal(rng, *_DATA, scale=1.0)
    residual = np.where(_DEC_LOG_VARS <= -40.0, 0.0, _normal(rng, *_DATA, scale=1.0))
    residual = np.where(_DEC_LOG_VARS == -10.0, 0.1, residual)
    return (mean + residual, mean, _DEC_LOG_VARS), {}


_add(
    "gaussian_log_likelihood",
    {
        "axis -1": partial(_arrays, _DATA, _DATA, _DATA),
        "log_var broadcast (6,) axis (0, 1)": partial(_arrays, _DATA, _DATA, (6,), axis=(0, 1)),
        "log_var -100..80": _gaussian_extreme,
    },
    _single(ref.gaussian_log_likelihood),
    grad=("axis -1",),
)


def _binary(rng, shape):
    return (rng.random(shape) < 0.5).astype(np.float64)


def _bernoulli(rng, *, large=False, soft=False):
    x = rng.random(_DATA) if soft else _binary(rng, _DATA)
    if soft:
        # targets in (0, 1) against saturated logits: (x − 1)·1e4 or x·(−1e4), plus ±30 and 0
        logits = np.array([1e4, -1e4, 30.0, -30.0, 0.0, 1e4]) * np.where(rng.random(_DATA) < 0.5, 1.0, -1.0)
        return (x, logits), {}
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
    {
        "binary": _bernoulli,
        "logits ±1e4": partial(_bernoulli, large=True),
        "soft targets, logits ±1e4": partial(_bernoulli, soft=True),
    },
    _single(ref.bernoulli_log_likelihood),
    # Not "logits ±1e4": a step of 1e-6 · 1e4 is 1e-2, and the log-sigmoid is flat there.
    grad=("binary",),
)


def _iwae(rng, *, shapes=((5, 3), (5, 3), (5, 3)), offset=0.0, **options):
    """Log-densities of ``K = 5`` samples (axis 0) for a batch of 3; ``offset`` shifts
    ``log p(x|z)`` (a log-likelihood of many data dimensions is large and negative)."""
    log_px, log_pz, log_qz = (_normal(rng, *shape, scale=1.0) for shape in shapes)
    return (offset + log_px, log_pz, log_qz), options


def _iwae_spread(rng):
    """One row whose log-weights span [-1e4, 0] (all but the largest underflow after the
    shift), one near -1e4 and one ordinary."""
    (log_px, log_pz, log_qz), options = _iwae(rng)
    log_px = log_px + np.stack([np.linspace(-1e4, 0.0, 5), np.full(5, -1e4), np.zeros(5)], axis=1)
    return (log_px, log_pz, log_qz), options


_add(
    "iwae_bound",
    {
        "axis 0": _iwae,
        "axis -1 log_p_z broadcast (5,)": partial(_iwae, shapes=((3, 5), (5,), (3, 5)), axis=-1),
        "K=1 (the ELBO estimate)": partial(_iwae, shapes=((1, 3), (1, 3), (1, 3))),
        # exp(-3000) underflows every dtype: only the shifted log-sum-exp stays finite.
        "log-weights near -3000": partial(_iwae, offset=-3000.0),
        # exp(3000) overflows every dtype: the shift takes the largest log-weight out first.
        "log-weights near +3000": partial(_iwae, offset=3000.0),
        "log-weights spread over 1e4": _iwae_spread,
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


def _elbo_extreme(rng, *, likelihood="gaussian"):
    """Decoder log-variances -100..80 (``_gaussian_extreme``) or logits ±1e4, and latent
    log-variances -100..10 (``_LOG_VARS``)."""
    if likelihood == "gaussian":
        (x, mean, log_var), _ = _gaussian_extreme(rng)
        recon = (mean, log_var)
    else:
        (x, recon), _ = _bernoulli(rng, large=True)
    mu = _normal(rng, *_LAT, scale=1.0)
    return (x, recon, mu, _LOG_VARS), {"likelihood": likelihood}


_add(
    "elbo",
    {
        "bernoulli": _elbo,
        "gaussian": partial(_elbo, likelihood="gaussian"),
        "bernoulli mean": partial(_elbo, reduction="mean"),
        "gaussian sum": partial(_elbo, likelihood="gaussian", reduction="sum"),
        "gaussian log_var -100..80": _elbo_extreme,
        "bernoulli logits ±1e4, latent log_var -100..10": partial(_elbo_extreme, likelihood="bernoulli"),
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


# -- edge sizes (issue 14): an empty batch for every op, and an empty latent/data axis where an
# op sums over one (the sum of nothing is 0). Listed in docs/errors-and-edge-cases.md.
def _empty_kl_mvn(rng):
    return (np.zeros((0, 4)), np.zeros((0, 4, 4)), np.zeros((0, 4)), np.zeros((0, 4, 4))), {}


def _empty_elbo(rng):
    return (np.zeros((0, 6)), np.zeros((0, 6)), np.zeros((0, 4)), np.zeros((0, 4))), {}


_add(
    "reparameterize",
    {"edge: empty batch": lambda rng: ((np.zeros((0, 4)), np.zeros((0, 4))), {"eps": np.zeros((0, 4))})},
    _single(ref.reparameterize),
)
for _op, _reference, _count in (
    ("kl_normal_standard", ref.kl_normal_standard, 2),
    ("kl_normal_normal", ref.kl_normal_normal, 4),
    ("gaussian_log_likelihood", ref.gaussian_log_likelihood, 3),
    ("bernoulli_log_likelihood", ref.bernoulli_log_likelihood, 2),
):
    _add(
        _op,
        {
            "edge: empty batch": partial(_arrays, *[(0, 4)] * _count),
            "edge: empty axis": partial(_arrays, *[(3, 0)] * _count),
        },
        _single(_reference),
    )
_add("kl_mvn", {"edge: empty batch": _empty_kl_mvn}, _single(ref.kl_mvn))
_add(
    "iwae_bound",
    {"edge: empty batch": partial(_iwae, shapes=((5, 0), (5, 0), (5, 0)))},
    _single(ref.iwae_bound),
)
_add(
    "elbo",
    {
        "edge: empty batch": _empty_elbo,
        "edge: empty batch sum": lambda rng: (_empty_elbo(rng)[0], {"reduction": "sum"}),
    },
    _single(ref.elbo),
)
