"""Float64 references of the VAE family: reparameterization, KL divergences, likelihoods, ELBO,
IWAE bound."""

import math

import numpy as np


def reparameterize(mu, log_var, eps):
    """``mu + exp(log_var / 2) * eps``, element by element (broadcasting)."""
    mu, log_var, eps = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (mu, log_var, eps)))
    out = np.zeros(mu.shape)
    for idx in np.ndindex(mu.shape):
        out[idx] = mu[idx] + math.exp(log_var[idx] / 2.0) * eps[idx]
    return out


def _sum_over(values, axis):
    """``Σ`` of float64 ``values`` over ``axis`` (int or tuple), with ``math.fsum``."""
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    axes = tuple(a % values.ndim for a in axes)
    moved = np.moveaxis(values, axes, tuple(range(values.ndim - len(axes), values.ndim)))
    rest = moved.shape[: values.ndim - len(axes)]
    out = np.zeros(rest)
    for idx in np.ndindex(rest):
        out[idx] = math.fsum(moved[idx].ravel())
    return out


def _elementwise(fn, *arrays):
    arrays = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in arrays))
    out = np.zeros(arrays[0].shape)
    for idx in np.ndindex(out.shape):
        out[idx] = fn(*(float(a[idx]) for a in arrays))
    return out


def kl_normal_standard(mu, log_var, axis=-1):
    """``½ Σ (exp(lv) + mu² − 1 − lv)`` over ``axis``: KL(N(mu, e^lv) || N(0, 1))."""
    terms = _elementwise(lambda m, lv: 0.5 * (math.exp(lv) + m * m - 1.0 - lv), mu, log_var)
    return _sum_over(terms, axis)


def kl_normal_normal(mu_q, log_var_q, mu_p, log_var_p, axis=-1):
    """``½ Σ (lv_p − lv_q + (e^lv_q + (μq − μp)²) / e^lv_p − 1)`` over ``axis``."""

    def term(mq, lq, mp, lp):
        return 0.5 * (lp - lq + (math.exp(lq) + (mq - mp) ** 2) / math.exp(lp) - 1.0)

    return _sum_over(_elementwise(term, mu_q, log_var_q, mu_p, log_var_p), axis)


def kl_mvn(mu_q, cov_q, mu_p, cov_p):
    """``½(tr(Σp⁻¹Σq) + (μp−μq)ᵀΣp⁻¹(μp−μq) − k + ln|Σp|/|Σq|)`` per batch entry.

    Written with an explicit inverse and ``slogdet`` (no Cholesky, unlike seqops); a
    covariance that is not positive definite raises ``ValueError``.
    """
    mu_q, mu_p = (np.asarray(a, dtype=np.float64) for a in (mu_q, mu_p))
    cov_q, cov_p = (np.asarray(a, dtype=np.float64) for a in (cov_q, cov_p))
    k = mu_q.shape[-1]
    lead = np.broadcast_shapes(mu_q.shape[:-1], cov_q.shape[:-2], mu_p.shape[:-1], cov_p.shape[:-2])
    mu_q, mu_p = (np.broadcast_to(a, (*lead, k)) for a in (mu_q, mu_p))
    cov_q, cov_p = (np.broadcast_to(a, (*lead, k, k)) for a in (cov_q, cov_p))
    out = np.zeros(lead)
    for idx in np.ndindex(lead):
        sq, sp = cov_q[idx], cov_p[idx]
        for cov in (sq, sp):
            if np.any(np.linalg.eigvalsh(cov) <= 0.0):
                raise ValueError("covariance is not positive definite")
        inv_p = np.linalg.inv(sp)
        d = mu_p[idx] - mu_q[idx]
        trace = math.fsum((inv_p @ sq)[j, j] for j in range(k))
        maha = math.fsum(d[a] * inv_p[a, c] * d[c] for a in range(k) for c in range(k))
        log_ratio = np.linalg.slogdet(sp)[1] - np.linalg.slogdet(sq)[1]
        out[idx] = 0.5 * (trace + maha - k + log_ratio)
    return out


def gaussian_log_likelihood(x, mean, log_var, axis=-1):
    """``Σ −½(log 2π + lv + (x − mean)² / e^lv)`` over ``axis``."""

    def term(v, m, lv):
        return -0.5 * (math.log(2.0 * math.pi) + lv + (v - m) ** 2 / math.exp(lv))

    return _sum_over(_elementwise(term, x, mean, log_var), axis)


def bernoulli_log_likelihood(x, logits, axis=-1):
    """``Σ x·log σ(l) + (1 − x)·log(1 − σ(l))`` over ``axis``, with
    ``log σ(l) = −log1p(e^−l)`` for ``l ≥ 0`` and ``l − log1p(e^l)`` otherwise (no overflow)."""

    def log_sigmoid(v):
        return -math.log1p(math.exp(-v)) if v >= 0 else v - math.log1p(math.exp(v))

    def term(v, lg):
        return v * log_sigmoid(lg) + (1.0 - v) * log_sigmoid(-lg)

    return _sum_over(_elementwise(term, x, logits), axis)


def elbo(x, recon, mu, log_var, likelihood="bernoulli", axis=-1, reduction="none"):
    """``log p(x | z) − KL(N(mu, e^lv) || N(0, I))`` per example; the KL sums ``mu``'s last axis.

    ``recon``: the logits (``"bernoulli"``) or a pair ``(mean, log_var)`` (``"gaussian"``).
    """
    if likelihood == "gaussian":
        ll = gaussian_log_likelihood(x, recon[0], recon[1], axis=axis)
    else:
        ll = bernoulli_log_likelihood(x, recon, axis=axis)
    per_example = ll - kl_normal_standard(mu, log_var, axis=-1)
    if reduction == "sum":
        return math.fsum(per_example.ravel())
    if reduction == "mean":
        return math.fsum(per_example.ravel()) / per_example.size
    return per_example


def iwae_bound(log_p_x_given_z, log_p_z, log_q_z, axis=0):
    """``log (1/K) Σ_k exp(log w_k)`` over ``axis``, one slice at a time.

    ``log w_k = log p(x|z_k) + log p(z_k) − log q(z_k|x)``; per slice, with ``m`` the
    largest log-weight, ``m + log(fsum(exp(log w_k − m))) − log K``.
    """
    given = (log_p_x_given_z, log_p_z, log_q_z)
    arrays = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in given))
    moved = [np.moveaxis(a, axis, -1) for a in arrays]
    out = np.zeros(moved[0].shape[:-1])
    for idx in np.ndindex(out.shape):
        a, b, c = (m[idx] for m in moved)
        log_w = [float(a[k]) + float(b[k]) - float(c[k]) for k in range(a.shape[0])]
        top = max(log_w)
        if math.isinf(top) and top < 0:
            out[idx] = -math.inf
            continue
        out[idx] = top + math.log(math.fsum(math.exp(w - top) for w in log_w)) - math.log(len(log_w))
    return out
