"""PixelCNN masks and masked convolution, VAE reparameterization, KL divergences and
likelihoods, in pure Array API code.

Convolution is not in the standard: ``masked_conv2d`` pads with concatenated zeros and
multiplies a stack of the ``kh·kw`` shifted views (im2col) with the flattened weight.
Triangular solves are not in the standard either: ``kl_mvn`` uses the backend's
``solve_lower`` where it has one, else ``xp.linalg.solve`` on the Cholesky factors (LU on a
triangular matrix: stable, only slower than a dedicated solve).
Half-precision inputs are computed in float32 and returned in their own dtype.

Extreme log-variances: no formula forms ``0 · inf`` (NaN) where the exact value is finite.
A squared distance over a variance is ``((x − m) · exp(−lv/2))²``, not ``(x − m)² · exp(−lv)``:
at ``x = m`` it is 0 for any ``lv`` down to −176 in float32 (``exp(88)`` is the largest
finite exponential there), and it overflows only where the exact value does. The variance
ratio of two normals enters as ``expm1(r) − r`` with ``r = lv_q − lv_p`` (exact 0 at
``r = 0``, no cancellation against the ``− 1``), so ``kl_normal_normal(m, lv, m, lv)`` is 0
for any finite ``lv``. The same forms keep the autodiff gradients finite: every factor of
a product stays finite wherever the exact gradient is.
"""

from __future__ import annotations

import math
from collections.abc import Callable

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
    centre = (kh // 2) * kw + kw // 2  # the centre tap's raster index: the taps before it are kept
    pair = (out_channels, in_channels)
    if color_groups == 1:
        # The centre tap is the same for every channel pair (kept by type B, not by A): one
        # (kh·kw) row of taps, tiled (one pass writing the mask, C-contiguous: 0.33-0.66x of
        # ones and two slice writes, where the concatenation below took 0.9-1.3x; a copy of the
        # broadcast row took as long, but NumPy lays that copy out with the taps outermost).
        taps = xp.arange(kh * kw, device=device)
        row = xp.astype(taps <= centre if mask_type == "B" else taps < centre, dtype)
        return xp.reshape(xp.tile(row, (*pair, 1)), (*pair, kh, kw))
    # Contiguous groups: channel c of n belongs to group c // (n / groups).
    out_group = xp.arange(out_channels, device=device) // (out_channels // color_groups)
    in_group = xp.arange(in_channels, device=device) // (in_channels // color_groups)
    if mask_type == "A":
        sees = out_group[:, None] > in_group[None, :]  # (out, in)
    else:
        sees = out_group[:, None] >= in_group[None, :]
    # Taps in raster order: ones, the centre tap, zeros (out, in, kh·kw), written in one pass
    # (ones and zeros broadcast, not allocated): the bool (out, in, kh, kw) broadcasts and a
    # cast to dtype took 2-40x the time of torch.ones and two slice writes.
    after = kh * kw - centre - 1
    ones = xp.broadcast_to(xp.ones((1, 1, centre), dtype=dtype, device=device), (*pair, centre))
    zeros = xp.broadcast_to(xp.zeros((1, 1, after), dtype=dtype, device=device), (*pair, after))
    taps = xp.concat((ones, xp.astype(sees, dtype)[:, :, None], zeros), axis=-1)
    return xp.reshape(taps, (*pair, kh, kw))


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
    """``KL(N(mu, exp(log_var)) || N(0, 1))`` summed over ``axis``:
    ``½ Σ (expm1(lv) − lv + mu²)`` (``exp(lv) − 1 − lv`` without cancellation near 0)."""
    m, lv = _up(xp, mu, log_var)
    kl = 0.5 * xp.sum((xp.expm1(lv) - lv) + m * m, axis=axis)
    return xp.astype(kl, mu.dtype, copy=False)


def kl_normal_normal(
    xp: Namespace, mu_q: Array, log_var_q: Array, mu_p: Array, log_var_p: Array, /, *, axis: tuple[int, ...]
) -> Array:
    """``KL(N(mu_q, σq²) || N(mu_p, σp²))`` of diagonal Gaussians, summed over ``axis``:
    ``½ Σ (expm1(r) − r + ((mu_q − mu_p) · exp(−lv_p/2))²)`` with ``r = lv_q − lv_p``.

    That is ``lv_p − lv_q + exp(lv_q − lv_p) − 1 + (mu_q − mu_p)² / exp(lv_p)`` written so that
    equal arguments give exactly 0 and no ``0 · inf`` arises (module docstring).
    """
    mq, lq, mp, lp = _up(xp, mu_q, log_var_q, mu_p, log_var_p)
    r = lq - lp
    z = (mq - mp) * xp.exp(-0.5 * lp)  # the mean difference in units of σp
    terms = (xp.expm1(r) - r) + z * z
    return xp.astype(0.5 * xp.sum(terms, axis=axis), mu_q.dtype, copy=False)


def log_det_cholesky(xp: Namespace, chol: Array, /) -> Array:
    """``log |Σ| = 2 Σ log diag(L)`` of ``Σ = L Lᵀ``: ``(..., k, k)`` → ``(...)``."""
    return 2.0 * xp.sum(xp.log(xp.linalg.diagonal(chol)), axis=-1)


def scale_exponent(xp: Namespace, cov: Array, /) -> Array:
    """``e (...)``, integer-valued: ``2^e`` is the power of two nearest the mean absolute
    diagonal of ``cov (..., k, k)``.

    ``cov / 2^e`` is a matrix of diagonal ~1 whatever the scale of ``cov`` (``e^±80`` in
    float32): its Cholesky factorization has no products of factors in the subnormal range
    and no overflow in the backward pass, and ``2^e`` enters the KL in closed form
    (:func:`kl_mvn_cholesky`). A power of two divides exactly, and through the ``round`` no
    gradient reaches ``e``: the KL does not depend on how ``cov`` is split (its derivative
    in ``e`` at fixed ``cov`` is 0), and the path through ``e`` would multiply a gradient of
    order ``1/Σ`` by ``Σ`` before dividing by ``2^e``, overflowing float32 (inf − inf). The
    absolute value keeps a matrix with a negative diagonal negative (not positive definite)
    after the division; an all-zero diagonal gives NaN, which the factorization check
    rejects too.
    """
    return xp.round(xp.log2(xp.mean(xp.abs(xp.linalg.diagonal(cov)), axis=-1)))


def kl_mvn_cholesky(
    xp: Namespace,
    mu_q: Array,
    chol_q: Array,
    mu_p: Array,
    chol_p: Array,
    /,
    *,
    exponent_q: Array,
    exponent_p: Array,
    solve_lower: Callable[[Array, Array], Array] | None = None,
) -> Array:
    """``KL(N(mu_q, Σq) || N(mu_p, Σp))`` with ``Σ = 2^e L Lᵀ`` (:func:`scale_exponent`).

    ``tr(Σp⁻¹Σq) = 2^{eq − ep} ‖Lp⁻¹Lq‖²_F``, ``(μp−μq)ᵀΣp⁻¹(μp−μq) = ‖2^{−ep/2} Lp⁻¹(μp−μq)‖²``
    and ``ln|Σp|/|Σq| = k (ep − eq) ln 2 + ln|LpLpᵀ| − ln|LqLqᵀ|``: the scales never meet the
    factors in a product that could overflow or underflow where the KL does not, and the
    ratio of the scales is an exact power of two (``exp`` of a rounded ``(eq − ep) ln 2``
    would carry its relative error times ``|eq − ep| ln 2``: 2.4e-6 at ``e^40`` in float32).
    The arrays are already broadcast to ``(..., k)``, ``(..., k, k)`` and ``(...)``, in the
    compute dtype. ``solve_lower(a, b)`` solves the triangular systems (``xp.linalg.solve`` if
    ``None``).
    """
    k = mu_q.shape[-1]
    solve = xp.linalg.solve if solve_lower is None else solve_lower
    # one solve for both right-hand sides (see the stacked Cholesky of the caller)
    solved = solve(chol_p, xp.concat([chol_q, (mu_p - mu_q)[..., None]], axis=-1))  # (..., k, k + 1)
    a, y = solved[..., :k], solved[..., k]  # (..., k, k), (..., k)
    y = y * (2.0 ** (-0.5 * exponent_p))[..., None]
    trace = xp.sum(a * a, axis=(-2, -1)) * 2.0 ** (exponent_q - exponent_p)
    mahalanobis = xp.sum(y * y, axis=-1)
    log_ratio = (k * math.log(2.0)) * (exponent_p - exponent_q)
    log_ratio = log_ratio + (log_det_cholesky(xp, chol_p) - log_det_cholesky(xp, chol_q))
    return 0.5 * (trace + mahalanobis - k + log_ratio)


def bernoulli_log_likelihood(xp: Namespace, x: Array, logits: Array, /, *, axis: tuple[int, ...]) -> Array:
    """``Σ x·l − softplus(l)`` over ``axis`` (``x`` may be any value in [0, 1]).

    Computed as ``(x·l − max(l, 0)) − log1p(exp(−|l|))``, the first part as ``(x − 1)·l``
    where ``l > 0``: at ``x = 1, l = 20`` the term is ``−2.1e-9`` rather than the ``0`` that
    ``20 − softplus(20)`` rounds to in float32, and no term overflows for any finite ``l``
    (``l = ±1e4`` gives 0 or ``−1e4``). The ``where`` keeps the gradient at ``l = 0``
    exactly ``x − ½``. Infinite logits are outside the contract (NaN, as in torch).
    """
    xs, ls = _up(xp, x, logits)
    positive = ls > 0.0
    linear = xp.where(positive, (xs - 1.0) * ls, xs * ls)  # x·l − max(l, 0)
    tail = xp.log1p(xp.exp(xp.where(positive, -ls, ls)))  # log1p(exp(−|l|)) in (0, log 2]
    return xp.astype(xp.sum(linear - tail, axis=axis), logits.dtype, copy=False)


def gaussian_log_likelihood(
    xp: Namespace, x: Array, mean: Array, log_var: Array, /, *, axis: tuple[int, ...]
) -> Array:
    """``Σ −½(log 2π + log_var + (x − mean)² / exp(log_var))`` over ``axis``, the last term
    as ``((x − mean) · exp(−log_var/2))²`` (0 at ``x = mean`` for any ``log_var``; module
    docstring)."""
    xs, ms, lv = _up(xp, x, mean, log_var)
    z = (xs - ms) * xp.exp(-0.5 * lv)  # the standardized residual
    terms = z * z + lv
    count = math.prod(terms.shape[a] for a in axis)  # the entries summed
    if isinstance(count, int):  # the constant added once, not per entry (a pass less: ~10%)
        # -(0.5 * ...), not -0.5 * ...: XLA shares a -0.5 between the kernels and passes it to the
        # fused one as an operand (~12% of the op, jitted on CPU); the same bits either way
        return xp.astype(-(0.5 * (xp.sum(terms, axis=axis) + count * _LOG_2PI)), x.dtype, copy=False)
    # a symbolic or unknown size (a traced shape, a lazy array's NaN): the constant per entry
    return xp.astype(-(0.5 * xp.sum(terms + _LOG_2PI, axis=axis)), x.dtype, copy=False)


_LOG_2PI = math.log(2.0 * math.pi)


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
    if 0 in tuple(log_w.shape):  # no max to take out (and Dask fails on the max of an empty batch)
        return xp.astype(xp.log(xp.mean(xp.exp(log_w), axis=axis)), log_p_x_given_z.dtype, copy=False)
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
