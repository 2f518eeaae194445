"""Stable formulas at the extremes (issue 14, item 4): the KLs, the log-likelihoods, ``elbo``,
``iwae_bound`` and ``reparameterize`` at log-variances ``|log_var| <= 80`` (and the -100 of
the report), on NumPy, torch and JAX in float32 and float64.

The references are ``torch.distributions`` (``Normal``, ``kl_divergence``,
``MultivariateNormal``) and ``binary_cross_entropy_with_logits``, evaluated in float64 at the
inputs *as rounded to the dtype under test* (so the comparison measures the op, not the
rounding of its inputs); gradients are float64 torch autograd of the same references.

Where the float64 reference is finite and representable in the dtype under test, the
result must be finite and within ``RTOL[dtype]`` of it, entry by entry (relative to the
entry, so a tiny KL next to a huge one is checked as strictly as the huge one). Where it is
not (``KL(N(0, e^80) || N(0, e^-80))`` overflows float32), no NaN: an overflow is ``±inf``.

Tolerances. float32 (u = 6.0e-8): each entry here is a handful of correctly or faithfully
rounded operations (a subtraction, ``exp``/``expm1`` of an exactly representable argument
-- its relative error does not grow with the argument -- a square, a few sums), i.e.
<= ~10u = 6e-7 where the terms do not cancel; the grid has little cancellation (the
log-variance differences are 0 or >= 10). Observed: <= 1.2e-6 for the outputs (the
``iwae_bound`` row whose bound, 0.076, is a difference of O(1) terms) and <= 3.5e-7 for the
gradients. RTOL 1e-5 (the conformance float32 tolerance) leaves ~10x room, while a 0·inf,
an overflow or a lost term fails by orders of magnitude. ``kl_mvn`` goes through Cholesky
factorizations and triangular solves of 3x3 matrices of condition < 4 scaled by e^±80:
observed <= 1.3e-6 (outputs) and 3.7e-6 (gradients), bounded by 2e-5 (~5x), which the
factorization of the unscaled e^-80 matrices (2.6e-5, before ``scale_exponent``) exceeds.
float64 (u = 1.1e-16): 1e-12 (observed <= 1e-13 beyond the reference's own error), so a
step silently computed in float32 fails.

Where torch's formula itself cancels (``½(v + t − 1 − log v)`` of a tiny KL; ``σ(30) − 1``),
its float64 rounding error enters as an absolute tolerance, and an independent closed form
(``½ (d/σ)²`` at equal variances) checks those entries relatively.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import seqops

torch = pytest.importorskip("torch", reason="the references are torch.distributions (torch is not installed)")
from torch.distributions import MultivariateNormal, Normal, kl_divergence  # noqa: E402

BACKENDS = {backend.name: (backend, ok) for backend, ok in seqops.backends()}
LIBS = ("numpy", "torch", "jax")
DTYPES = ("float32", "float64")
RTOL = {"float32": 1e-5, "float64": 1e-12}
MVN_RTOL = {"float32": 2e-5, "float64": 1e-12}

# The grid of the issue, and the -100 of the report (outside |log_var| <= 80, still finite).
LOG_VARS = (-100.0, -80.0, -40.0, -10.0, 0.0, 10.0, 40.0, 80.0)
# Mean differences: equal means (the 0·inf of the report), tiny, unit and large ones.
DIFFS = (0.0, 1e-3, 1.0, 30.0)
M = 0.3  # the mean all differences are taken from


@pytest.fixture(params=LIBS)
def lib(request: pytest.FixtureRequest) -> seqops.Backend:
    backend, availability = BACKENDS.get(request.param, (None, None))
    if backend is None or not availability:
        pytest.skip(
            f"backend {request.param!r} unavailable: {getattr(availability, 'reason', 'not registered')}"
        )
    return backend


@pytest.fixture(params=DTYPES)
def dtype(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _jax():
    jax = pytest.importorskip("jax", reason="jax is not installed")
    if not jax.config.jax_enable_x64:
        pytest.skip("the float64 checks need JAX_ENABLE_X64=1")
    return jax


def _rounded(a, dtype):
    """``a`` as the op sees it in ``dtype``, back in float64 (the reference's inputs)."""
    return np.asarray(a, dtype=np.float64).astype(dtype).astype(np.float64)


def _to(backend, a, dtype):
    return backend.from_numpy(np.asarray(a, dtype=np.float64), dtype=backend.floating_dtypes()[dtype])


def _t(a):
    if isinstance(a, torch.Tensor):  # already a float64 leaf (the gradient references)
        return a
    return torch.tensor(np.asarray(a, dtype=np.float64), dtype=torch.float64)


def _np(backend, x):
    return np.asarray(backend.to_numpy(x), dtype=np.float64)


def _assert_matches(out, ref, dtype, rtol=None, *, atol=0.0, overflow_nan=False, what=""):
    """``out`` finite and within ``rtol`` of ``ref`` (entry by entry, plus ``atol``, which may
    be an array: the reference's own rounding error, plus the smallest normal number of
    ``dtype``, below which precision is lost by design) wherever ``ref`` is finite and
    representable in ``dtype``; never NaN where ``ref`` is not NaN, unless ``overflow_nan``
    (gradients: one that overflows ``dtype`` may come out NaN, e.g. inf − inf in the
    backward pass of a Cholesky factorization)."""
    out, ref = np.broadcast_arrays(np.asarray(out, dtype=np.float64), np.asarray(ref, dtype=np.float64))
    atol = np.nan_to_num(np.asarray(atol, dtype=np.float64), posinf=0.0) + float(
        np.finfo(dtype).smallest_normal
    )
    atol = np.broadcast_to(atol, ref.shape)
    rtol = RTOL[dtype] if rtol is None else rtol
    nan = np.isnan(out) & ~np.isnan(ref)
    if overflow_nan:
        nan &= np.abs(ref) <= float(np.finfo(dtype).max)
    assert not nan.any(), (
        f"{what}: NaN at {np.argwhere(nan)[:5].tolist()} where the reference is {ref[nan][:5]}"
    )
    representable = np.isfinite(ref) & (np.abs(ref) <= float(np.finfo(dtype).max))
    bad = representable & ~np.isfinite(out)
    assert not bad.any(), f"{what}: {out[bad][:5]} where the reference is {ref[bad][:5]}"
    err = np.abs(out - ref)
    bad = representable & (err > rtol * np.abs(ref) + atol)
    worst = float(np.max(np.where(representable, err / np.maximum(np.abs(ref), 1e-300), 0.0), initial=0.0))
    assert not bad.any(), (
        f"{what}: {int(bad.sum())} entries off (worst relative error {worst:.3g}), "
        f"e.g. {out[bad][:3]} vs {ref[bad][:3]} at {np.argwhere(bad)[:3].tolist()}"
    )


# -- the grids ----------------------------------------------------------------------------


def _normal_normal_grid():
    """``(mu_q, log_var_q, mu_p, log_var_p)`` over every pair of log-variances and difference."""
    rows = [(M + d, lq, M, lp) for lq, lp in itertools.product(LOG_VARS, LOG_VARS) for d in DIFFS]
    return tuple(np.array(col)[:, None] for col in zip(*rows, strict=True))  # (N, 1) each


def _standard_grid():
    rows = [(m, lv) for lv in (*LOG_VARS, 100.0) for m in (0.0, M, 30.0)]
    return tuple(np.array(col)[:, None] for col in zip(*rows, strict=True))


def _gaussian_grid():
    """``(x, mean, log_var)``: residuals ``DIFFS`` (and their negatives) at every log-variance."""
    rows = [(M + s * d, M, lv) for lv in LOG_VARS for d in DIFFS for s in (1.0, -1.0)]
    return tuple(np.array(col)[:, None] for col in zip(*rows, strict=True))


def _ref_kl_normal_normal(mq, lq, mp, lp):
    q = Normal(_t(mq), torch.exp(_t(lq) / 2))
    p = Normal(_t(mp), torch.exp(_t(lp) / 2))
    return kl_divergence(q, p).sum(-1)


def _ref_kl_normal_standard(m, lv):
    return kl_divergence(Normal(_t(m), torch.exp(_t(lv) / 2)), Normal(0.0, 1.0)).sum(-1)


def _ref_gaussian(x, mean, lv):
    return Normal(_t(mean), torch.exp(_t(lv) / 2)).log_prob(_t(x)).sum(-1)


# torch's float64 KL is ``½(v + t − 1 − log v)`` with ``v`` the variance ratio and ``t`` the
# squared standardized difference: its rounding error is a few u64 of ``v + t + 1 + |log v|``,
# not of the result (``KL(N(0.3 + 1e-3, e^40) || N(0.3, e^40)) = 2.1e-24`` is 0 there, where
# seqops's difference form gets it right: see test_equal_variances_tiny_kl). That bound is
# the absolute part of the tolerance; the log-density's terms have no such cancellation.
_U64 = float(np.finfo(np.float64).eps)


def _err_kl(mq, lq, mp, lp):
    v, t = np.exp(lq - lp), (mq - mp) ** 2 * np.exp(-lp)
    return (8 * _U64 * 0.5 * (v + t + 1 + np.abs(lq - lp))).sum(-1)


def _err_kl_standard(m, lv):
    return _err_kl(m, lv, np.zeros_like(m), np.zeros_like(lv))


def _err_gaussian(x, mean, lv):
    return (8 * _U64 * 0.5 * ((x - mean) ** 2 * np.exp(-lv) + np.abs(lv) + 2)).sum(-1)


OPS = {
    "kl_normal_normal": (_normal_normal_grid, _ref_kl_normal_normal, _err_kl),
    "kl_normal_standard": (_standard_grid, _ref_kl_normal_standard, _err_kl_standard),
    "gaussian_log_likelihood": (_gaussian_grid, _ref_gaussian, _err_gaussian),
}


@pytest.mark.parametrize("op", sorted(OPS))
def test_diagonal_gaussians_at_extreme_log_variances(lib, dtype, op):
    """Each entry of the grid (one element summed per row): finite and close to
    torch.distributions wherever that is finite in ``dtype``. Includes the report:
    ``kl_normal_normal(m, -100, m, -100) = 0`` and ``gaussian_log_likelihood(m, m, -100) = 49.08``."""
    grid, reference, ref_error = OPS[op]
    args = grid()
    with np.errstate(over="ignore", invalid="ignore"):
        out = _np(lib, getattr(seqops, op)(*(_to(lib, a, dtype) for a in args)))
        rounded = [_rounded(a, dtype) for a in args]
        atol = ref_error(*rounded)
    _assert_matches(out, reference(*rounded).numpy(), dtype, atol=atol, what=f"{lib.name} {dtype} {op}")


def test_equal_variances_tiny_kl(lib, dtype):
    """``KL(N(m + d, σ²) || N(m, σ²)) = ½ (d/σ)²`` exactly, however small (2e-24 here, where
    ``½(v + t − 1 − log v)`` cancels to 0 in any precision)."""
    lv = np.array(LOG_VARS)
    d = np.array([1e-3, 30.0])[:, None] * np.ones_like(lv)
    mq, mp = _rounded(M + d, dtype), _rounded(np.full_like(d, M), dtype)
    lvs = lv * np.ones_like(d)
    with np.errstate(over="ignore", invalid="ignore"):
        out = _np(lib, seqops.kl_normal_normal(*(_to(lib, a[..., None], dtype) for a in (mq, lvs, mp, lvs))))
        ref = 0.5 * ((mq - mp) * np.exp(-lvs / 2)) ** 2
    _assert_matches(out, ref, dtype, what=f"{lib.name} {dtype} equal variances")


def test_the_reported_cases(lib, dtype):
    m = _to(lib, [0.7], dtype)
    lv = _to(lib, [-100.0], dtype)
    kl = float(_np(lib, seqops.kl_normal_normal(m, lv, m, lv))[()])
    ll = float(_np(lib, seqops.gaussian_log_likelihood(m, m, lv))[()])
    assert kl == 0.0
    assert ll == pytest.approx(-0.5 * (math.log(2 * math.pi) - 100.0), rel=RTOL[dtype])  # 49.0811


@pytest.mark.parametrize("op", sorted(OPS))
def test_sums_over_mixed_extremes(lib, dtype, op):
    """One row mixing every grid entry whose reference is finite in ``dtype``, summed over
    the axis: the sum of the reference terms, up to the rounding of a sum (relative to the
    sum of the magnitudes, as the log-likelihood terms have both signs)."""
    grid, reference, ref_error = OPS[op]
    args = [_rounded(a, dtype) for a in grid()]
    terms = reference(*args).numpy()
    with np.errstate(over="ignore"):
        slack = math.fsum(np.nan_to_num(ref_error(*args), posinf=0.0)[np.isfinite(terms)])
    keep = np.isfinite(terms) & (np.abs(terms) < 1e-3 * float(np.finfo(dtype).max))
    row = [a[keep].T for a in args]  # (1, n)
    with np.errstate(over="ignore", invalid="ignore"):
        out = float(_np(lib, getattr(seqops, op)(*(_to(lib, a, dtype) for a in row)))[0])
    expected = math.fsum(terms[keep])
    assert abs(out - expected) <= RTOL[dtype] * math.fsum(np.abs(terms[keep])) + slack, (out, expected)


# -- kl_mvn ---------------------------------------------------------------------------------


def _mvn_grid():
    """Diagonal-ish covariances ``e^lv S`` (S: diagonal 0.5..2 with small off-diagonal terms,
    condition < 4) for every pair of scales, means equal or one apart."""
    s_q = np.array([[1.0, 0.1, 0.05], [0.1, 0.5, -0.05], [0.05, -0.05, 2.0]])
    s_p = np.array([[1.5, -0.2, 0.0], [-0.2, 0.8, 0.1], [0.0, 0.1, 1.2]])
    mu_q, cov_q, mu_p, cov_p = [], [], [], []
    for lq, lp in itertools.product(LOG_VARS[1:], LOG_VARS[1:]):
        for d in (0.0, 1.0):
            mu_p.append(np.array([0.2, -0.1, 0.4]))
            mu_q.append(mu_p[-1] + d * np.array([1.0, -0.5, 0.25]))
            cov_q.append(math.exp(lq) * s_q)
            cov_p.append(math.exp(lp) * s_p)
    return tuple(np.stack(a) for a in (mu_q, cov_q, mu_p, cov_p))


def test_kl_mvn_at_extreme_scales(lib, dtype):
    args = _mvn_grid()
    with np.errstate(over="ignore"):  # KL(e^80 Sq || e^-80 Sp) overflows float32, as it must
        out = _np(lib, seqops.kl_mvn(*(_to(lib, a, dtype) for a in args)))
    mq, cq, mp, cp = (_t(_rounded(a, dtype)) for a in args)
    ref = kl_divergence(MultivariateNormal(mq, cq), MultivariateNormal(mp, cp)).numpy()
    _assert_matches(out, ref, dtype, MVN_RTOL[dtype], what=f"{lib.name} {dtype} kl_mvn")


# -- bernoulli_log_likelihood ---------------------------------------------------------------

LOGITS = (-1e4, -1e3, -30.0, -1.0, 0.0, 1.0, 30.0, 1e3, 1e4)


def _bernoulli_grid():
    rows = [(x, lg) for lg in LOGITS for x in (0.0, 1.0, 0.3)]
    return tuple(np.array(col)[:, None] for col in zip(*rows, strict=True))


def test_bernoulli_at_saturated_logits(lib, dtype):
    """Logits ``±1e4`` (and ``±1e3``, ``±30``) with targets 0, 1 and 0.3: finite and equal to
    torch's ``-binary_cross_entropy_with_logits`` in float64, for every implementation
    registered on the backend (``portable``, and torch-fast's fused kernel on torch). The
    ``atol`` covers float64 torch's own ``log(1 + e^-30)``, which is ``log1p`` to ~1e-16."""
    x, logits = _bernoulli_grid()
    xs, ls = _rounded(x, dtype), _rounded(logits, dtype)
    ref = (
        -torch.nn.functional.binary_cross_entropy_with_logits(_t(ls), _t(xs), reduction="none")
        .sum(-1)
        .numpy()
    )
    bx, bl = _to(lib, x, dtype), _to(lib, logits, dtype)
    _assert_matches(
        _np(lib, seqops.bernoulli_log_likelihood(bx, bl)), ref, dtype, atol=1e-12, what="dispatched"
    )
    for impl in seqops.implementations(seqops.ops.bernoulli_log_likelihood, lib):
        out = _np(lib, impl.fn(lib, bx, bl, axis=(-1,)))
        _assert_matches(out, ref, dtype, atol=1e-12, what=f"{lib.name} {dtype} {impl.name}")


# -- elbo, iwae_bound, reparameterize ---------------------------------------------------------


def test_elbo_at_extremes(lib, dtype):
    """Gaussian decoder with log-variances down to -100 (residual 0 there) and up to 80, latent
    log-variances over the grid; Bernoulli decoder with logits ``±1e4``."""
    rng = np.random.default_rng(14)
    lv_dec = np.array([[-100.0, -80.0, -40.0, 0.0, 40.0, 80.0], [-10.0, 0.0, 10.0, 40.0, 80.0, -80.0]])
    mean = rng.standard_normal(lv_dec.shape)
    x = np.where(lv_dec <= -40.0, mean, mean + rng.standard_normal(lv_dec.shape))
    mu = rng.standard_normal((2, 4))
    lv_lat = np.array([[-80.0, -40.0, -10.0, 0.0], [10.0, 40.0, -100.0, 0.0]])
    r = [_rounded(a, dtype) for a in (x, mean, lv_dec, mu, lv_lat)]
    kl = _ref_kl_normal_standard(r[3], r[4]).numpy()
    ref = _ref_gaussian(r[0], r[1], r[2]).numpy() - kl
    args = [_to(lib, a, dtype) for a in (x, mean, lv_dec, mu, lv_lat)]
    out = _np(lib, seqops.elbo(args[0], (args[1], args[2]), args[3], args[4], likelihood="gaussian"))
    _assert_matches(out, ref, dtype, what=f"{lib.name} {dtype} elbo gaussian")

    xb = (rng.random((2, 6)) < 0.5).astype(np.float64)
    logits = 1e4 * np.where(rng.random((2, 6)) < 0.5, 1.0, -1.0)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(_t(logits), _t(xb), reduction="none")
    ref = -bce.sum(-1).numpy() - kl
    out = _np(lib, seqops.elbo(_to(lib, xb, dtype), _to(lib, logits, dtype), args[3], args[4]))
    _assert_matches(out, ref, dtype, what=f"{lib.name} {dtype} elbo bernoulli")


def test_iwae_bound_at_extreme_log_weights(lib, dtype):
    """Log-weights near ``±1e4`` (and spread over 1e4 within a row): ``logsumexp − log K``."""
    rng = np.random.default_rng(4)
    log_px = np.stack(
        [1e4 + rng.standard_normal(5), -1e4 + rng.standard_normal(5), np.linspace(-1e4, 0.0, 5)], 1
    )
    log_pz, log_qz = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    r = [_t(_rounded(a, dtype)) for a in (log_px, log_pz, log_qz)]
    ref = (torch.logsumexp(r[0] + r[1] - r[2], 0) - math.log(5)).numpy()
    out = _np(lib, seqops.iwae_bound(*(_to(lib, a, dtype) for a in (log_px, log_pz, log_qz))))
    # The float32 log-weights near 1e4 are rounded sums (ulp(1e4) = 1e-3): rtol of the bound.
    _assert_matches(out, ref, dtype, what=f"{lib.name} {dtype} iwae_bound")


def test_reparameterize_at_extreme_log_variances(lib, dtype):
    lv = np.array(LOG_VARS)
    mu, eps = np.full_like(lv, M), np.linspace(-2.0, 2.0, lv.size)
    r = [_rounded(a, dtype) for a in (mu, lv, eps)]
    ref = r[0] + np.exp(r[1] / 2) * r[2]
    out = _np(lib, seqops.reparameterize(*(_to(lib, a, dtype) for a in (mu, lv)), eps=_to(lib, eps, dtype)))
    _assert_matches(out, ref, dtype, what=f"{lib.name} {dtype} reparameterize")


# -- gradients: torch autograd and jax.grad against float64 torch autograd of the references --


def _reparameterize_grid():
    lv = np.array(LOG_VARS)[:, None]
    return np.full_like(lv, M), lv, np.linspace(-2.0, 2.0, lv.size)[:, None]


GRAD_OPS = {
    "kl_normal_normal": (_normal_normal_grid, _ref_kl_normal_normal, lambda *a: seqops.kl_normal_normal(*a)),
    "kl_normal_standard": (_standard_grid, _ref_kl_normal_standard, lambda *a: seqops.kl_normal_standard(*a)),
    "gaussian_log_likelihood": (_gaussian_grid, _ref_gaussian, lambda *a: seqops.gaussian_log_likelihood(*a)),
    "bernoulli_log_likelihood": (
        _bernoulli_grid,
        lambda x, lg: -torch.nn.functional.binary_cross_entropy_with_logits(lg, x, reduction="none").sum(-1),
        lambda *a: seqops.bernoulli_log_likelihood(*a),
    ),
    "reparameterize": (
        _reparameterize_grid,
        lambda m, lv, e: (m + torch.exp(lv / 2) * e).sum(-1),
        lambda m, lv, e: seqops.reparameterize(m, lv, eps=e),
    ),
    "kl_mvn": (
        _mvn_grid,
        lambda mq, cq, mp, cp: kl_divergence(MultivariateNormal(mq, cq), MultivariateNormal(mp, cp)),
        lambda *a: seqops.kl_mvn(*a),
    ),
}


def _reference_grads(op, args, dtype):
    """Float64 gradients of the sum of the reference at the inputs rounded to ``dtype``, and
    whether each entry's forward value is finite in ``dtype`` (its row is checked then)."""
    _, reference, _ = GRAD_OPS[op]
    leaves = [_t(_rounded(a, dtype)).requires_grad_(True) for a in args]
    if op == "bernoulli_log_likelihood":
        x, lg = leaves
        values = reference(x, lg)
    else:
        values = reference(*leaves)
    values.sum().backward()
    grads = [leaf.grad.numpy() for leaf in leaves]
    if op == "kl_mvn":  # compare the symmetric part: libraries differ on the other half
        grads[1], grads[3] = (0.5 * (g + np.swapaxes(g, -1, -2)) for g in (grads[1], grads[3]))
    fmax = float(np.finfo(dtype).max)
    finite = np.isfinite(values.detach().numpy()) & (np.abs(values.detach().numpy()) < fmax)
    return grads, finite


def _lv_scales_normal_normal(mq, lq, mp, lp):
    z2, v = (mq - mp) ** 2 * np.exp(-lp), np.exp(lq - lp)
    return [0.0, 0.5 * (1 + v + z2), 0.0, 0.5 * (1 + v + z2)]


# Where a gradient is a difference of larger terms, its rounding error is a few u of those
# terms (e.g. d/dlv_p = ½(1 − e^r − z²) at r = −10, z ≈ 1 is −2.3e-5 with terms of 1, and
# the rounding of the inputs to float32 already moves z² by 1e-7): the magnitude of the terms,
# per argument, times 8u is the absolute part of the gradient tolerance. The Bernoulli
# gradients x − σ(l) lie in [−1, 1] and are such a difference (torch's fused kernel, and the
# float64 reference itself: σ(30) − 1 is 9.35e-14 to within 1e-16).
GRAD_SCALES = {
    "kl_normal_normal": _lv_scales_normal_normal,
    "kl_normal_standard": lambda m, lv: [0.0, 0.5 * (1 + np.exp(lv))],
    "gaussian_log_likelihood": lambda x, mean, lv: [0.0, 0.0, 0.5 * (1 + (x - mean) ** 2 * np.exp(-lv))],
    "bernoulli_log_likelihood": lambda x, lg: [1.0, 1.0],
}


def _check_grads(got, want, finite, args, dtype, op, where):
    """Each gradient against the reference's, on the rows (batch entries) whose forward value
    and whole gradient (all entries of that argument in that row: the symmetric matrix of
    ``kl_mvn``'s covariance gradient counts as one) are finite in ``dtype``. Elsewhere the
    exact gradient overflows: an entry of it may be representable only by cancellation of
    entries that are not (``d/dΣp`` of ``KL(e^10 Sq || e^-40 Sp)``: 1.8e37 next to 1e39),
    and comes out NaN from their inf − inf."""
    rtol = MVN_RTOL[dtype] if op == "kl_mvn" else RTOL[dtype]
    with np.errstate(over="ignore"):
        scales = GRAD_SCALES.get(op, lambda *a: [0.0] * len(a))(*(_rounded(a, dtype) for a in args))
    fmax = float(np.finfo(dtype).max)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        g = np.asarray(g, dtype=np.float64)
        if op == "kl_mvn" and i in (1, 3):
            g = 0.5 * (g + np.swapaxes(g, -1, -2))
        inner = tuple(range(finite.ndim, w.ndim))
        rows = finite & (np.max(np.abs(w), axis=inner) <= fmax) if inner else finite & (np.abs(w) <= fmax)
        rows = np.broadcast_to(rows.reshape(rows.shape + (1,) * len(inner)), w.shape)
        with np.errstate(over="ignore", invalid="ignore"):
            atol = 8 * float(np.finfo(dtype).eps) * np.asarray(scales[i], dtype=np.float64)
        _assert_matches(
            np.where(rows, g, 0.0),
            np.where(rows, w, 0.0),
            dtype,
            rtol,
            atol=np.where(rows, atol, 0.0),
            what=f"{where} {op} d/darg{i}",
        )


@pytest.mark.parametrize("op", sorted(GRAD_OPS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_torch_gradients_at_extremes(op, dtype):
    args = GRAD_OPS[op][0]()
    want, finite = _reference_grads(op, args, dtype)
    tdtype = getattr(torch, dtype)
    leaves = [torch.tensor(np.asarray(a), dtype=tdtype, requires_grad=True) for a in args]
    GRAD_OPS[op][2](*leaves).sum().backward()
    _check_grads([leaf.grad.numpy() for leaf in leaves], want, finite, args, dtype, op, f"torch {dtype}")


@pytest.mark.parametrize("op", sorted(GRAD_OPS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_jax_gradients_at_extremes(op, dtype):
    jax = _jax()
    import jax.numpy as jnp

    args = GRAD_OPS[op][0]()
    want, finite = _reference_grads(op, args, dtype)
    fn = GRAD_OPS[op][2]
    leaves = [jnp.asarray(np.asarray(a), dtype=dtype) for a in args]
    got = jax.grad(lambda *a: jnp.sum(fn(*a)), argnums=tuple(range(len(leaves))))(*leaves)
    _check_grads([np.asarray(g) for g in got], want, finite, args, dtype, op, f"jax {dtype}")
