"""PixelCNN masks and masked convolution, VAE reparameterization, KL divergences and
likelihoods, in pure Array API code.

Convolution is not in the standard: ``masked_conv2d`` pads with concatenated zeros and
multiplies a stack of the ``kh·kw`` shifted views (im2col) with the flattened weight.
Triangular solves are not in the standard either: ``kl_mvn`` uses ``xp.linalg.solve`` on
the Cholesky factors (LU on a triangular matrix: stable, only slower than a dedicated solve).
Half-precision inputs are computed in float32 and returned in their own dtype.
"""

from __future__ import annotations

import math

from seqops._agnostic.activations import compute_dtype
from seqops._lib.typing import Array, Device, DType, Namespace


def pixelcnn_mask(
    xp: Namespace,
    kernel_size: tuple[int, int],
    in_channels: int,
    out_channels: int,
    /,
    *,
    mask_type: str,
    color_groups: int,
    dtype: DType,
    device: Device,
) -> Array:
    """The 0/1 mask ``(out, in, kh, kw)`` of a PixelCNN convolution (odd kernel sizes).

    Taps before the centre in raster order are kept; the centre tap keeps output group
    ``j`` → input group ``i`` iff ``i < j`` (type A) or ``i <= j`` (type B).
    """
    kh, kw = kernel_size
    rows = xp.arange(kh, device=device)[:, None]  # (kh, 1)
    cols = xp.arange(kw, device=device)[None, :]  # (1, kw)
    before = (rows < kh // 2) | ((rows == kh // 2) & (cols < kw // 2))  # (kh, kw)
    centre = (rows == kh // 2) & (cols == kw // 2)
    # Contiguous groups: channel c of n belongs to group c // (n / groups).
    out_group = xp.arange(out_channels, device=device) // (out_channels // color_groups)
    in_group = xp.arange(in_channels, device=device) // (in_channels // color_groups)
    if mask_type == "A":
        sees = out_group[:, None] > in_group[None, :]  # (out, in)
    else:
        sees = out_group[:, None] >= in_group[None, :]
    keep = before | (centre & sees[:, :, None, None])  # (out, in, kh, kw)
    return xp.astype(keep, dtype)


def masked_conv2d(
    xp: Namespace, x: Array, weight: Array, bias: Array | None, /, *, mask: Array, device: Device
) -> Array:
    """Stride-1, "same"-padded cross-correlation (as ``torch.nn.functional.conv2d``) with
    ``weight * mask``: ``x (B, C, H, W)``, ``weight (O, C, kh, kw)`` → ``(B, O, H, W)``."""
    dtype = compute_dtype(xp, x.dtype)
    x = xp.astype(x, dtype, copy=False)
    w = xp.astype(weight, dtype, copy=False) * xp.astype(mask, dtype, copy=False)
    batch, channels, height, width = x.shape
    out_channels, _, kh, kw = w.shape
    ph, pw = kh // 2, kw // 2
    if ph:
        rows = xp.zeros((batch, channels, ph, width), dtype=dtype, device=device)
        x = xp.concat([rows, x, rows], axis=2)
    if pw:
        cols = xp.zeros((batch, channels, height + 2 * ph, pw), dtype=dtype, device=device)
        x = xp.concat([cols, x, cols], axis=3)
    # (B, C, kh·kw, H, W): tap (r, c) in row-major order, as weight.reshape(O, C, kh·kw)
    taps = [x[:, :, r : r + height, c : c + width] for r in range(kh) for c in range(kw)]
    patches = xp.stack(taps, axis=2)
    patches = xp.permute_dims(patches, (0, 3, 4, 1, 2))  # (B, H, W, C, kh·kw)
    patches = xp.reshape(patches, (batch, height, width, channels * kh * kw))
    out = patches @ xp.matrix_transpose(xp.reshape(w, (out_channels, channels * kh * kw)))  # (B, H, W, O)
    out = xp.permute_dims(out, (0, 3, 1, 2))  # (B, O, H, W)
    if bias is not None:
        out = out + xp.astype(bias, dtype, copy=False)[:, None, None]
    return xp.astype(out, weight.dtype, copy=False)


def reparameterize(xp: Namespace, mu: Array, log_var: Array, eps: Array, /) -> Array:
    """``mu + exp(log_var / 2) * eps`` (differentiable in ``mu`` and ``log_var``)."""
    return mu + xp.exp(0.5 * log_var) * eps


def _up(xp: Namespace, *arrays: Array) -> list[Array]:
    dtype = compute_dtype(xp, arrays[0].dtype)
    return [xp.astype(a, dtype, copy=False) for a in arrays]


def kl_normal_standard(xp: Namespace, mu: Array, log_var: Array, /, *, axis: tuple[int, ...]) -> Array:
    """``KL(N(mu, exp(log_var)) || N(0, 1))`` summed over ``axis``."""
    m, lv = _up(xp, mu, log_var)
    kl = 0.5 * xp.sum(xp.exp(lv) + m * m - 1.0 - lv, axis=axis)
    return xp.astype(kl, mu.dtype, copy=False)


def kl_normal_normal(
    xp: Namespace, mu_q: Array, log_var_q: Array, mu_p: Array, log_var_p: Array, /, *, axis: tuple[int, ...]
) -> Array:
    """``KL(N(mu_q, σq²) || N(mu_p, σp²))`` of diagonal Gaussians, summed over ``axis``."""
    mq, lq, mp, lp = _up(xp, mu_q, log_var_q, mu_p, log_var_p)
    d = mq - mp
    terms = lp - lq + xp.exp(lq - lp) + d * d * xp.exp(-lp) - 1.0
    return xp.astype(0.5 * xp.sum(terms, axis=axis), mu_q.dtype, copy=False)


def log_det_cholesky(xp: Namespace, chol: Array, /) -> Array:
    """``log |Σ| = 2 Σ log diag(L)`` of ``Σ = L Lᵀ``: ``(..., k, k)`` → ``(...)``."""
    return 2.0 * xp.sum(xp.log(xp.linalg.diagonal(chol)), axis=-1)


def kl_mvn_cholesky(xp: Namespace, mu_q: Array, chol_q: Array, mu_p: Array, chol_p: Array, /) -> Array:
    """``KL(N(mu_q, Lq Lqᵀ) || N(mu_p, Lp Lpᵀ))`` from the Cholesky factors.

    ``tr(Σp⁻¹Σq) = ‖Lp⁻¹Lq‖²_F`` and ``(μp−μq)ᵀΣp⁻¹(μp−μq) = ‖Lp⁻¹(μp−μq)‖²``; the
    arrays are already broadcast to ``(..., k)`` and ``(..., k, k)``, in the compute dtype.
    """
    k = mu_q.shape[-1]
    a = xp.linalg.solve(chol_p, chol_q)  # (..., k, k)
    y = xp.linalg.solve(chol_p, (mu_p - mu_q)[..., None])  # (..., k, 1)
    trace = xp.sum(a * a, axis=(-2, -1))
    mahalanobis = xp.sum(y * y, axis=(-2, -1))
    log_ratio = log_det_cholesky(xp, chol_p) - log_det_cholesky(xp, chol_q)
    return 0.5 * (trace + mahalanobis - k + log_ratio)


def softplus(xp: Namespace, x: Array, /) -> Array:
    """``log(1 + exp(x))`` without overflow: ``max(x, 0) + log1p(exp(-|x|))``.

    Written with ``where`` so that the gradient at 0 is exactly ``sigmoid(0) = 1/2`` (the
    ``x <= 0`` branch) and ``torch.compile(fullgraph=True)`` traces it (``maximum`` with a
    Python scalar does not).
    """
    positive = x > 0.0
    return xp.where(positive, x, 0.0) + xp.log1p(xp.exp(xp.where(positive, -x, x)))


def bernoulli_log_likelihood(xp: Namespace, x: Array, logits: Array, /, *, axis: tuple[int, ...]) -> Array:
    """``Σ x·l − softplus(l)`` over ``axis`` (``x`` may be any value in [0, 1])."""
    xs, ls = _up(xp, x, logits)
    return xp.astype(xp.sum(xs * ls - softplus(xp, ls), axis=axis), logits.dtype, copy=False)


def gaussian_log_likelihood(
    xp: Namespace, x: Array, mean: Array, log_var: Array, /, *, axis: tuple[int, ...]
) -> Array:
    """``Σ −½(log 2π + log_var + (x − mean)² / exp(log_var))`` over ``axis``."""
    xs, ms, lv = _up(xp, x, mean, log_var)
    d = xs - ms
    terms = math.log(2.0 * math.pi) + lv + d * d * xp.exp(-lv)
    return xp.astype(-0.5 * xp.sum(terms, axis=axis), x.dtype, copy=False)


def iwae_bound(
    xp: Namespace, log_p_x_given_z: Array, log_p_z: Array, log_q_z: Array, /, *, axis: int
) -> Array:
    """``log mean_k exp(log w_k)`` over ``axis``, ``log w = log p(x|z) + log p(z) − log q(z|x)``.

    The largest log-weight is taken out of the sum (``m + log mean exp(log w − m)``), so the
    exponentials lie in ``(0, 1]`` with at least one equal to 1: no finite log-weight
    overflows, and they cannot all underflow. A row whose largest log-weight is not finite
    (all ``-inf``) is shifted by 0 and gives ``-inf``.
    """
    a, b, c = _up(xp, log_p_x_given_z, log_p_z, log_q_z)
    log_w = a + b - c  # the broadcast shape, samples along axis
    top = xp.max(log_w, axis=axis, keepdims=True)
    top = xp.where(xp.isfinite(top), top, 0.0)
    bound = xp.log(xp.mean(xp.exp(log_w - top), axis=axis)) + xp.squeeze(top, axis=axis)
    return xp.astype(bound, log_p_x_given_z.dtype, copy=False)


def reduce(xp: Namespace, values: Array, /, *, reduction: str) -> Array:
    """``"none"``, ``"sum"`` or ``"mean"`` over every axis."""
    if reduction == "sum":
        return xp.sum(values)
    if reduction == "mean":
        return xp.mean(values)
    return values
