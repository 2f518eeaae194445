"""Vision family: ViT patches and embeddings, Swin windows, masks and window attention (pure Array API).

Layouts follow the references: images ``(B, C, H, W)`` for ViT (timm/Hugging Face), feature
maps ``(B, H, W, C)`` for Swin (microsoft/Swin-Transformer ``window_partition``).
Sizes are already validated by the public layer (divisibility included, where required: the
window attention and the patch merging pad any size themselves).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import array_api_extra as xpx

from seqops._agnostic.attention import linear, merge_heads, split_heads
from seqops._lib.placement import helper_device
from seqops._lib.typing import Array, Device, DType, Namespace

# Swin's additive mask value between two different regions of a shifted window.
SWIN_MASK_VALUE = -100.0


def patchify(xp: Namespace, images: Array, /, patch_size: int, *, channels_last: bool) -> Array:
    """``(B, C, H, W)`` (or ``(B, H, W, C)``) -> ``(B, N, C·p·p)``, each patch flattened (C, ph, pw)."""
    p = patch_size
    if channels_last:
        b, h, w, c = images.shape
        x = xp.reshape(images, (b, h // p, p, w // p, p, c))  # (B, Hp, ph, Wp, pw, C)
        x = xp.permute_dims(x, (0, 1, 3, 5, 2, 4))  # (B, Hp, Wp, C, ph, pw)
    else:
        b, c, h, w = images.shape
        x = xp.reshape(images, (b, c, h // p, p, w // p, p))  # (B, C, Hp, ph, Wp, pw)
        x = xp.permute_dims(x, (0, 2, 4, 1, 3, 5))  # (B, Hp, Wp, C, ph, pw)
    return xp.reshape(x, (b, (h // p) * (w // p), c * p * p))


def unpatchify(
    xp: Namespace,
    patches: Array,
    /,
    patch_size: int,
    image_size: tuple[int, int],
    *,
    channels: int,
    channels_last: bool,
) -> Array:
    """The inverse of :func:`patchify`: ``(B, N, C·p·p)`` -> ``(B, C, H, W)`` (or ``(B, H, W, C)``)."""
    p, (h, w), c = patch_size, image_size, channels
    b = patches.shape[0]
    x = xp.reshape(patches, (b, h // p, w // p, c, p, p))  # (B, Hp, Wp, C, ph, pw)
    if channels_last:
        x = xp.permute_dims(x, (0, 1, 4, 2, 5, 3))  # (B, Hp, ph, Wp, pw, C)
        return xp.reshape(x, (b, h, w, c))
    x = xp.permute_dims(x, (0, 3, 1, 4, 2, 5))  # (B, C, Hp, ph, Wp, pw)
    return xp.reshape(x, (b, c, h, w))


def vit_embed(
    xp: Namespace,
    images: Array,
    /,
    w_patch: Array,
    b_patch: Array | None,
    cls_token: Array,
    pos_embed: Array,
    *,
    patch_size: int,
) -> Array:
    """Patch projection, class token at index 0, positional embedding: ``(B, 1+N, D)``."""
    tokens = linear(xp, patchify(xp, images, patch_size, channels_last=False), w_patch, b_patch)
    b, _, d = tokens.shape
    cls = xp.broadcast_to(xp.reshape(cls_token, (1, 1, d)), (b, 1, d))
    return xp.concat((cls, tokens), axis=1) + pos_embed


def window_partition(xp: Namespace, x: Array, /, window_size: int) -> Array:
    """``(B, H, W, C)`` -> ``(B·nW, ws, ws, C)``, windows in raster order within each image."""
    ws = window_size
    b, h, w, c = x.shape
    x = xp.reshape(x, (b, h // ws, ws, w // ws, ws, c))  # (B, nH, ws, nW_w, ws, C)
    x = xp.permute_dims(x, (0, 1, 3, 2, 4, 5))  # (B, nH, nW_w, ws, ws, C)
    return xp.reshape(x, (b * (h // ws) * (w // ws), ws, ws, c))


def window_reverse(xp: Namespace, windows: Array, /, window_size: int, height: int, width: int) -> Array:
    """The inverse of :func:`window_partition`: ``(B·nW, ws, ws, C)`` -> ``(B, H, W, C)``."""
    ws = window_size
    rows, cols = height // ws, width // ws
    b, c = windows.shape[0] // (rows * cols), windows.shape[-1]
    x = xp.reshape(windows, (b, rows, cols, ws, ws, c))
    x = xp.permute_dims(x, (0, 1, 3, 2, 4, 5))  # (B, nH, ws, nW_w, ws, C)
    return xp.reshape(x, (b, height, width, c))


def cyclic_shift(xp: Namespace, x: Array, /, shift: int) -> Array:
    """Roll ``(B, H, W, C)`` by ``(-shift, -shift)`` over H and W (``torch.roll`` semantics)."""
    return xp.roll(x, shift=(-shift, -shift), axis=(1, 2))


def _pad_bottom_right(xp: Namespace, x: Array, multiple: int) -> Array:
    """``(B, H, W, C)`` with zero rows at the bottom and zero columns at the right up to
    multiples of ``multiple`` (Hugging Face's ``maybe_pad``); ``x`` itself when none are needed."""
    _, h, w, _ = x.shape
    pad_h, pad_w = (-h) % multiple, (-w) % multiple
    if not (pad_h or pad_w):
        return x
    if 0 in tuple(x.shape):  # an empty batch: Dask's assignment into an empty array fails
        b, c, dev = x.shape[0], x.shape[-1], helper_device(x)
        x = xp.concat([x, xp.zeros((b, pad_h, w, c), dtype=x.dtype, device=dev)], axis=1)
        return xp.concat([x, xp.zeros((b, h + pad_h, pad_w, c), dtype=x.dtype, device=dev)], axis=2)
    return xpx.pad(x, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), xp=xp)


def _region_labels(xp: Namespace, size: int, window_size: int, shift_size: int, device: Device) -> Array:
    """Swin's slice label of each row (column): 0 for ``[0, -ws)``, 1 for ``[-ws, -s)``, 2 after."""
    at = xp.arange(size, device=device)
    if shift_size == 0:  # one region: no mask (Swin builds none)
        return xp.zeros_like(at)
    return xp.astype(at >= size - window_size, at.dtype) + xp.astype(at >= size - shift_size, at.dtype)


def shifted_window_mask(
    xp: Namespace,
    height: int,
    width: int,
    /,
    window_size: int,
    shift_size: int,
    *,
    as_bias: bool,
    dtype: DType | None,
    device: Device,
) -> Array:
    """Bool ``(nW, ws², ws²)``, True where two tokens of a window share a region (or 0/-100 bias)."""
    rows = _region_labels(xp, height, window_size, shift_size, device)
    cols = _region_labels(xp, width, window_size, shift_size, device)
    labels = rows[:, None] * 3 + cols[None, :]  # (H, W), Swin's `cnt`
    n = window_size * window_size
    windows = window_partition(xp, labels[None, :, :, None], window_size)  # (nW, ws, ws, 1)
    windows = xp.reshape(windows, (windows.shape[0], n))
    mask = windows[:, :, None] == windows[:, None, :]  # (nW, N, N)
    if not as_bias:
        return mask
    # 0 where True, -100 elsewhere, as one select: under jax.jit the arithmetic form
    # ``(float(mask) - 1) * 100`` (a convert, an add and a multiply per entry) took 1.20x of
    # Swin's ``(labels != labels) * -100.0`` (128 × 128, window 16, shift 8).
    zero = xp.zeros((), dtype=dtype, device=device)
    return xp.where(mask, zero, xp.full((), SWIN_MASK_VALUE, dtype=dtype, device=device))


def relative_position_index(xp: Namespace, window_size: int, /, *, device: Device) -> Array:
    """Int ``(ws², ws²)``: ``(dh + ws - 1)·(2ws - 1) + (dw + ws - 1)`` for ``d = pos_i - pos_j``."""
    ws = window_size
    at = xp.arange(ws, device=device)
    # Row and column of each token of the window, stacked as Swin builds them: under jax.jit
    # XLA materializes the stacked (2, ws²) first; ``at // ws, at % ws`` (or a reshaped
    # broadcast) were fused into the (ws², ws²) result, their index arithmetic (division,
    # sign corrections) redone for each entry: 1.3-1.5x of Swin's construction.
    flat = xp.reshape(xp.stack(xp.meshgrid(at, at, indexing="ij")), (2, ws * ws))
    rel = flat[:, :, None] - flat[:, None, :] + (ws - 1)  # (2, ws², ws²): dh and dw, shifted
    return rel[0, ...] * (2 * ws - 1) + rel[1, ...]


def window_attention(
    xp: Namespace,
    x: Array,
    /,
    params: Any,
    *,
    num_heads: int,
    window_size: int,
    shift_size: int,
    relative_bias_table: Array | None,
    attend: Callable[..., Array],
) -> Array:
    """Swin (shifted) window multi-head self-attention of ``x (B, H, W, C)`` -> ``(B, H, W, D_out)``;
    ``attend(q, k, v, *, mask, bias, is_causal, scale, return_weights)`` is the per-head
    attention (``seqops.scaled_dot_product_attention``'s contract, dispatched).

    Memory and time are linear in the number of windows: logits are ``(B, nW, heads, N, N)``
    with ``N = ws²``. A size that is not a multiple of ``ws`` is zero-padded at the bottom and
    right first and cropped at the end; the shifted-window mask is the padded map's and the
    padded tokens stay unmasked (Hugging Face's ``SwinLayer``).
    """
    ws, n = window_size, window_size * window_size
    height, width = x.shape[1], x.shape[2]
    x = _pad_bottom_right(xp, x, ws)
    b, h, w, _ = x.shape  # the padded size
    device = helper_device(x)
    if shift_size:
        x = cyclic_shift(xp, x, shift_size)
    windows = window_partition(xp, x, ws)  # (B·nW, ws, ws, C)
    num_windows = (h // ws) * (w // ws)  # not windows.shape[0] // b: the batch may be empty
    windows = xp.reshape(windows, (b, num_windows, n, windows.shape[-1]))  # (B, nW, N, C)
    q = split_heads(xp, linear(xp, windows, params.w_q, params.b_q), num_heads)
    k = split_heads(xp, linear(xp, windows, params.w_k, params.b_k), num_heads)
    v = split_heads(xp, linear(xp, windows, params.w_v, params.b_v), num_heads)
    mask = None
    if shift_size:
        # (nW, N, N) -> (nW, 1, N, N): the same regions for every image and head
        mask = shifted_window_mask(xp, h, w, ws, shift_size, as_bias=False, dtype=None, device=device)
        mask = mask[:, None, :, :]
    bias = None
    if relative_bias_table is not None:
        index = xp.reshape(relative_position_index(xp, ws, device=device), (n * n,))
        bias = xp.reshape(xp.take(relative_bias_table, index, axis=0), (n, n, num_heads))
        bias = xp.permute_dims(bias, (2, 0, 1))  # (heads, N, N)
    scale = 1.0 / math.sqrt(q.shape[-1]) if q.shape[-1] else 1.0  # head_dim 0: every score is 0
    attended = attend(q, k, v, mask=mask, bias=bias, is_causal=False, scale=scale, return_weights=False)
    # (B, nW, heads, N, dv)
    out = linear(xp, merge_heads(xp, attended), params.w_o, params.b_o)
    out = xp.reshape(out, (b * num_windows, ws, ws, out.shape[-1]))  # not -1: B may be 0
    out = window_reverse(xp, out, ws, h, w)  # (B, Hp, Wp, D_out)
    if shift_size:
        out = cyclic_shift(xp, out, -shift_size)
    return out if (h, w) == (height, width) else out[:, :height, :width, :]  # (B, H, W, D_out)


def patch_merging(xp: Namespace, x: Array, /, weight: Array, *, norm: Callable[[Array], Array]) -> Array:
    """Swin's patch merging of ``x (B, H, W, C)`` -> ``(B, ⌈H/2⌉, ⌈W/2⌉, D_out)``: the 2 × 2
    neighbourhood of each output token in Swin's order (row offset fastest), ``norm`` over
    its ``4C`` features (the dispatched layer norm, its parameters bound), then ``@ weight``."""
    x = _pad_bottom_right(xp, x, 2)
    # Swin's concat order [(0,0), (1,0), (0,1), (1,1)] (row offset fastest), as Swin's strided
    # slices: under jax.jit the reshape-and-transpose form (same values) took 1.3x, XLA fusing
    # the layer norm's reductions less well over the transpose.
    b, h, w, c = x.shape
    if h and w:
        parts = (x[:, 0::2, 0::2, :], x[:, 1::2, 0::2, :], x[:, 0::2, 1::2, :], x[:, 1::2, 1::2, :])
        x = xp.concat(parts, axis=-1)
    else:  # nothing to merge (a start of 1 on an empty axis is not portable)
        x = xp.reshape(x, (b, h // 2, w // 2, 4 * c))
    return xp.matmul(norm(x), weight)  # (B, H/2, W/2, 4C) normalized, projected
