"""``iwae_bound`` on a linear-Gaussian model whose evidence is known in closed form.

``z ~ N(0, 1)``, ``x | z ~ N(z, σ²)``, so ``p(x) = N(x; 0, 1 + σ²)`` and the posterior is
``N(x / (1 + σ²), σ² / (1 + σ²))``. The proposal ``q(z|x)`` is a Gaussian *different* from
the posterior (mean shifted by half a posterior standard deviation, variance 1.69 times
larger: wider than the posterior, so the importance weights have finite variance). With
samples drawn from ``q``, the IWAE bound (Burda et al., 2016) must

* lie below ``log p(x)`` on average (up to Monte-Carlo noise: means over many repeats),
* rise with the number of samples K (1, 10, 100, 1000),
* be within 0.05 nats of ``log p(x)`` at K = 1000,
* equal the single-sample ELBO estimate ``log p(x|z) + log p(z) − log q(z|x)`` at K = 1,
  whose mean is the closed-form ELBO.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from seqops_conformance import references as ref

import seqops

SIGMA2 = 0.8**2  # the likelihood's variance
KS = (1, 10, 100, 1000)
REPEATS = 4000  # independent draws of 1000 samples


def _log_normal(x, mean, var):
    return -0.5 * (np.log(2.0 * np.pi * var) + (x - mean) ** 2 / var)


def _model(x):
    """``log p(x)`` and the proposal ``(mean, var)`` for the observation ``x``."""
    post_mean, post_var = x / (1.0 + SIGMA2), SIGMA2 / (1.0 + SIGMA2)
    q_mean, q_var = post_mean + 0.5 * math.sqrt(post_var), 1.3**2 * post_var
    return float(_log_normal(x, 0.0, 1.0 + SIGMA2)), q_mean, q_var


def _log_densities(x, q_mean, q_var, z):
    """``(log p(x|z), log p(z), log q(z|x))`` of the samples ``z``."""
    return _log_normal(x, z, SIGMA2), _log_normal(z, 0.0, 1.0), _log_normal(z, q_mean, q_var)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("x", [-1.0, 0.5, 2.0])
def test_bound_is_below_log_evidence_rises_with_k_and_converges(x, seed):
    """Each repeat draws 1000 samples from q; the bound for K is averaged over the 1000 / K
    disjoint blocks of K of them (an unbiased estimate of E[bound_K], with the samples shared
    between the Ks, so the rise from one K to the next is measured on paired draws)."""
    log_px, q_mean, q_var = _model(x)
    rng = np.random.default_rng([seed, int(10 * x) + 100])
    z = q_mean + math.sqrt(q_var) * rng.standard_normal((KS[-1], REPEATS))  # samples along axis 0
    log_densities = _log_densities(x, q_mean, q_var, z)
    per_repeat = []  # (REPEATS,) per K
    for k in KS:
        blocks = [np.reshape(a, (KS[-1] // k, k, REPEATS)) for a in log_densities]  # (blocks, K, R)
        bound = seqops.iwae_bound(*blocks, axis=1)
        assert bound.shape == (KS[-1] // k, REPEATS)
        per_repeat.append(np.mean(bound, axis=0))
    means = [float(np.mean(b)) for b in per_repeat]
    for k, b, mean in zip(KS, per_repeat, means, strict=True):
        error = float(np.std(b)) / math.sqrt(REPEATS)
        assert mean <= log_px + 3.0 * error, f"K={k}: mean bound {mean} above log p(x) = {log_px}"
    for k, lo, hi in zip(KS[1:], per_repeat[:-1], per_repeat[1:], strict=True):
        rise = hi - lo  # paired: same samples
        assert np.mean(rise) > 5.0 * np.std(rise) / math.sqrt(REPEATS), f"the bound must rise with K (K={k})"
    assert abs(means[-1] - log_px) < 0.05
    # the gap shrinks roughly like 1/K (Burda et al.; Rainforth et al., 2018)
    gaps = [log_px - m for m in means]
    assert gaps[0] > gaps[1] > gaps[2] and gaps[0] > 5.0 * gaps[2]


def test_k1_is_the_single_sample_elbo_estimate():
    x = 0.5
    log_px, q_mean, q_var = _model(x)
    rng = np.random.default_rng(7)
    z = q_mean + math.sqrt(q_var) * rng.standard_normal((1, 20000))
    log_pxz, log_pz, log_qz = _log_densities(x, q_mean, q_var, z)
    bound = seqops.iwae_bound(log_pxz, log_pz, log_qz, axis=0)
    np.testing.assert_allclose(bound, (log_pxz + log_pz - log_qz)[0], rtol=1e-15, atol=1e-15)
    # its mean is the closed-form ELBO E_q[log p(x|z)] + E_q[log p(z)] + H(q) ...
    expected_sq = lambda m: (q_mean - m) ** 2 + q_var  # noqa: E731 - E_q[(z - m)^2]
    elbo = (
        -0.5 * (math.log(2 * math.pi * SIGMA2) + expected_sq(x) / SIGMA2)
        - 0.5 * (math.log(2 * math.pi) + expected_sq(0.0))
        + 0.5 * math.log(2 * math.pi * math.e * q_var)
    )
    assert abs(float(np.mean(bound)) - elbo) < 4.0 * float(np.std(bound)) / math.sqrt(bound.size)
    # ... which is log p(x) − KL(q || posterior) < log p(x)
    post_mean, post_var = x / (1.0 + SIGMA2), SIGMA2 / (1.0 + SIGMA2)
    kl = 0.5 * (math.log(post_var / q_var) + (q_var + (q_mean - post_mean) ** 2) / post_var - 1.0)
    assert elbo == pytest.approx(log_px - kl, abs=1e-12)
    # and seqops.elbo (Gaussian likelihood, the KL in closed form) has the same expectation
    z_flat = z.reshape(-1, 1)
    ours = seqops.elbo(
        np.full((z_flat.shape[0], 1), x),
        (z_flat, np.full_like(z_flat, math.log(SIGMA2))),
        np.full_like(z_flat, q_mean),
        np.full_like(z_flat, math.log(q_var)),
        likelihood="gaussian",
        reduction="mean",
    )
    assert abs(float(ours) - elbo) < 4.0 * float(np.std(bound)) / math.sqrt(bound.size)


def test_axis_and_broadcasting_follow_the_reference():
    rng = np.random.default_rng(3)
    log_pxz, log_qz = rng.standard_normal((2, 7, 3)), rng.standard_normal((2, 7, 3))
    log_pz = rng.standard_normal((7, 1))  # broadcast over the batch
    for axis in (1, -2):
        ours = seqops.iwae_bound(log_pxz, log_pz, log_qz, axis=axis)
        assert ours.shape == (2, 3)
        np.testing.assert_allclose(ours, ref.iwae_bound(log_pxz, log_pz, log_qz, axis=axis), rtol=1e-13)
    ours = seqops.iwae_bound(np.moveaxis(log_pxz, 1, -1), log_pz.T, np.moveaxis(log_qz, 1, -1), axis=-1)
    np.testing.assert_allclose(ours, seqops.iwae_bound(log_pxz, log_pz, log_qz, axis=1), rtol=1e-13)


@pytest.mark.parametrize("offset", [-1e4, -3e3, 80.0, 1e4])
def test_float32_is_stable_for_any_finite_log_weights(torch, offset):
    """exp(log w) under- or overflows float32 for all of these; the shifted log-sum-exp does not."""
    rng = np.random.default_rng(5)
    log_w = offset + rng.standard_normal((50, 4))
    zero = np.zeros_like(log_w)
    expected = ref.iwae_bound(log_w, zero, zero)
    args = [torch.tensor(a, dtype=torch.float32) for a in (log_w, zero, zero)]
    ours = seqops.iwae_bound(*args)
    assert ours.dtype == torch.float32 and torch.isfinite(ours).all()
    np.testing.assert_allclose(ours.numpy(), expected, rtol=2e-6)
    # gradients: the self-normalised importance weights softmax(log w) along the sample axis
    args[0].requires_grad_(True)
    (grad,) = torch.autograd.grad(seqops.iwae_bound(*args).sum(), args[0])
    assert torch.isfinite(grad).all()
    np.testing.assert_allclose(grad.sum(0).numpy(), np.ones(4), rtol=1e-5)


def test_all_minus_infinity_log_weights_give_minus_infinity():
    minus_inf = np.full((3, 2), -np.inf)
    with np.errstate(divide="ignore"):  # NumPy's log(0)
        out = seqops.iwae_bound(minus_inf, np.zeros((3, 2)), np.zeros((3, 2)))
    assert np.all(out == -np.inf)


def test_bad_input():
    a = np.zeros((4, 3))
    with pytest.raises(ValueError, match=r"axis 2 is out of range for the broadcast shape \(4, 3\)"):
        seqops.iwae_bound(a, a, a, axis=2)
    with pytest.raises(TypeError, match="axis must be an integer; got bool"):
        seqops.iwae_bound(a, a, a, axis=True)
    with pytest.raises(TypeError, match="axis must be an integer; got tuple"):
        seqops.iwae_bound(a, a, a, axis=(0,))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"needs a sample axis: the broadcast shape of its inputs is \(\)"):
        seqops.iwae_bound(np.zeros(()), np.zeros(()), np.zeros(()))
    with pytest.raises(ValueError, match=r"do not broadcast: log_p_x_given_z \(4, 3\), log_p_z \(5,\)"):
        seqops.iwae_bound(a, np.zeros(5), a)
    with pytest.raises(TypeError, match="must share one dtype"):
        seqops.iwae_bound(a, a.astype(np.float32), a)
    with pytest.raises(TypeError, match="`log_q_z` must be a real floating array; got dtype int64"):
        seqops.iwae_bound(a, a, a.astype(np.int64))
