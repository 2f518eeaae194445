"""Float64 references of the vision family: ViT patches and embedding, Swin windows, window
attention and patch merging."""

import math

import numpy as np

from seqops_conformance.references.attention import _linear, scaled_dot_product_attention


def patchify(images, patch_size, channels_last=False):
    """ViT patches, one element at a time: ``(B, C, H, W)`` → ``(B, N, C·p·p)``.

    ``out[b, r·(W/p) + c, ch·p² + i·p + j] = images[b, ch, r·p + i, c·p + j]``: patches in
    raster order, each flattened (C, ph, pw). ``channels_last=True`` reads ``(B, H, W, C)``
    and keeps the same (C, ph, pw) order.
    """
    x = np.asarray(images, dtype=np.float64)
    if channels_last:
        x = np.moveaxis(x, -1, 1)
    batch, channels, height, width = x.shape
    p = patch_size
    if height % p or width % p:
        raise ValueError(f"image size ({height}, {width}) not divisible by patch_size {p}")
    cols = width // p
    out = np.zeros((batch, (height // p) * cols, channels * p * p))
    for b, r, c, ch, i, j in np.ndindex(batch, height // p, cols, channels, p, p):
        out[b, r * cols + c, ch * p * p + i * p + j] = x[b, ch, r * p + i, c * p + j]
    return out


def window_partition(x, window_size):
    """Swin windows, one element at a time: ``(B, H, W, C)`` → ``(B·nW, ws, ws, C)``.

    ``out[b·nW + r·(W/ws) + c, i, j] = x[b, r·ws + i, c·ws + j]``.
    """
    x = np.asarray(x, dtype=np.float64)
    batch, height, width, channels = x.shape
    ws = window_size
    rows, cols = height // ws, width // ws
    out = np.zeros((batch * rows * cols, ws, ws, channels))
    for b, r, c, i, j in np.ndindex(batch, rows, cols, ws, ws):
        out[(b * rows + r) * cols + c, i, j] = x[b, r * ws + i, c * ws + j]
    return out


def _swin_region(position, size, window_size, shift_size):
    """Swin's slice label of a row (column) of the shifted map: ``[0,-ws)``, ``[-ws,-s)``, ``[-s,size)``."""
    if shift_size == 0 or position < size - window_size:
        return 0
    return 1 if position < size - shift_size else 2


def shifted_window_mask(height, width, window_size, shift_size, as_bias=False):
    """Swin's shifted-window mask, one pair of tokens at a time.

    Token ``t`` of window ``(r, c)`` is the shifted-map pixel ``(r·ws + t // ws, c·ws + t % ws)``;
    two tokens may attend each other iff their (row, column) region labels agree.

    Returns
    -------
    ndarray of bool, shape ``(nW, ws², ws²)`` (True = attend), or float64 0 / -100.0
    with ``as_bias=True``.
    """
    ws = window_size
    rows, cols = height // ws, width // ws
    n = ws * ws
    mask = np.zeros((rows * cols, n, n), dtype=bool)
    for r, c, s, t in np.ndindex(rows, cols, n, n):
        label = []
        for token in (s, t):
            y, x = r * ws + token // ws, c * ws + token % ws
            label.append((_swin_region(y, height, ws, shift_size), _swin_region(x, width, ws, shift_size)))
        mask[r * cols + c, s, t] = label[0] == label[1]
    return np.where(mask, 0.0, -100.0) if as_bias else mask


def relative_position_index(window_size):
    """Swin's relative position index: ``(Δh + ws - 1)·(2ws - 1) + (Δw + ws - 1)``, int ``(ws², ws²)``."""
    ws = window_size
    n = ws * ws
    out = np.zeros((n, n), dtype=np.int64)
    for s, t in np.ndindex(n, n):
        dh, dw = s // ws - t // ws, s % ws - t % ws
        out[s, t] = (dh + ws - 1) * (2 * ws - 1) + (dw + ws - 1)
    return out


def window_attention(x, params, num_heads, window_size, shift_size=0, relative_bias_table=None):
    """Swin (shifted) window self-attention, one window and one head at a time.

    A size that is not a multiple of ``ws`` is first zero-padded at the bottom and right to
    ``(Hp, Wp)`` (Hugging Face's ``SwinLayer.maybe_pad``); everything below runs on the
    padded map, whose padded pixels stay unmasked, and the output is cropped to ``(H, W)``.

    Window ``(r, c)`` of image ``b`` holds the pixels ``((r·ws + i + shift) % Hp,
    (c·ws + j + shift) % Wp)`` (the cyclic shift); each head attends within the window
    (:func:`scaled_dot_product_attention`, scale ``1/sqrt(head_dim)``) with the
    :func:`shifted_window_mask` of ``(Hp, Wp)`` when ``shift_size > 0`` and the bias
    ``table[relative_position_index[s, t], head]``; the output goes back to the same pixels.

    Returns
    -------
    ndarray, float64, shape ``(B, H, W, D_out)``
    """
    x = np.asarray(x, dtype=np.float64)
    batch, rows, cols, channels = x.shape
    ws = window_size
    height, width = -(-rows // ws) * ws, -(-cols // ws) * ws  # rounded up to multiples of ws
    padded = np.zeros((batch, height, width, channels))
    padded[:, :rows, :cols] = x
    x = padded
    n = ws * ws
    allowed = shifted_window_mask(height, width, ws, shift_size) if shift_size else None
    index = relative_position_index(ws)
    table = None if relative_bias_table is None else np.asarray(relative_bias_table, dtype=np.float64)
    out = np.zeros((batch, height, width, np.shape(params.w_o)[-1]))
    for b, r, c in np.ndindex(batch, height // ws, width // ws):
        pixels = [
            ((r * ws + t // ws + shift_size) % height, (c * ws + t % ws + shift_size) % width)
            for t in range(n)
        ]
        tokens = np.array([x[b, y, z] for y, z in pixels])  # (N, C)
        q = _linear(tokens, params.w_q, params.b_q)
        k = _linear(tokens, params.w_k, params.b_k)
        v = _linear(tokens, params.w_v, params.b_v)
        dh, dv = q.shape[-1] // num_heads, v.shape[-1] // num_heads
        heads = []
        for h in range(num_heads):
            bias = None
            if table is not None:
                bias = np.array([[table[index[s, t], h] for t in range(n)] for s in range(n)])
            mask = None if allowed is None else allowed[r * (width // ws) + c]
            o, _ = scaled_dot_product_attention(
                q[:, h * dh : (h + 1) * dh],
                k[:, h * dh : (h + 1) * dh],
                v[:, h * dv : (h + 1) * dv],
                mask=mask,
                bias=bias,
                scale=1.0 / math.sqrt(dh) if dh else 1.0,
            )
            heads.append(o)
        projected = _linear(np.concatenate(heads, axis=-1), params.w_o, params.b_o)
        for t, (y, z) in enumerate(pixels):
            out[b, y, z] = projected[t]
    return out[:, :rows, :cols]


def patch_merging(x, weight, norm_weight=None, norm_bias=None, eps=1e-5):
    """Swin's patch merging, one output token at a time: ``(B, H, W, C)`` → ``(B, ⌈H/2⌉, ⌈W/2⌉, D_out)``.

    Token ``(i, j)`` lists the pixels ``(2i + dr, 2j + dc)`` for ``(dr, dc)`` = (0, 0),
    (1, 0), (0, 1), (1, 1) (Swin's order), a pixel past the edge reading zeros; the ``4C``
    values are normalised with their mean and biased variance (``math.fsum``), scaled by
    ``norm_weight`` and shifted by ``norm_bias`` when given, then ``Σ_f v_f · weight[f, d]``.
    """
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(weight, dtype=np.float64)
    gamma = None if norm_weight is None else np.asarray(norm_weight, dtype=np.float64)
    beta = None if norm_bias is None else np.asarray(norm_bias, dtype=np.float64)
    batch, height, width, channels = x.shape
    out_h, out_w = (height + 1) // 2, (width + 1) // 2
    out = np.zeros((batch, out_h, out_w, w.shape[1]))
    for b, i, j in np.ndindex(batch, out_h, out_w):
        values = []
        for dr, dc in ((0, 0), (1, 0), (0, 1), (1, 1)):
            y, z = 2 * i + dr, 2 * j + dc
            inside = y < height and z < width
            values.extend(float(x[b, y, z, ch]) if inside else 0.0 for ch in range(channels))
        mean = math.fsum(values) / len(values)
        var = math.fsum((v - mean) ** 2 for v in values) / len(values)
        normed = [(v - mean) / math.sqrt(var + eps) for v in values]
        if gamma is not None:
            normed = [v * float(g) for v, g in zip(normed, gamma, strict=True)]
        if beta is not None:
            normed = [v + float(s) for v, s in zip(normed, beta, strict=True)]
        for d in range(w.shape[1]):
            out[b, i, j, d] = math.fsum(v * float(w[f, d]) for f, v in enumerate(normed))
    return out


# -- vision: the inverses, the cyclic shift and the ViT embedding ---------------------------


def unpatchify(patches, patch_size, image_size, channels=None, channels_last=False):
    """Images from ViT patches, one element at a time: ``(B, N, C·p·p)`` → ``(B, C, H, W)``.

    ``out[b, ch, r·p + i, c·p + j] = patches[b, r·(W/p) + c, ch·p² + i·p + j]``;
    ``channels_last=True`` returns ``(B, H, W, C)``.
    """
    patches = np.asarray(patches, dtype=np.float64)
    p = patch_size
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    channels = patches.shape[-1] // (p * p) if channels is None else channels
    batch, cols = patches.shape[0], width // p
    out = np.zeros((batch, channels, height, width))
    for b, r, c, ch, i, j in np.ndindex(batch, height // p, cols, channels, p, p):
        out[b, ch, r * p + i, c * p + j] = patches[b, r * cols + c, ch * p * p + i * p + j]
    return np.moveaxis(out, 1, -1) if channels_last else out


def window_reverse(windows, window_size, height, width):
    """Swin's window merge, one element at a time: ``(B·nW, ws, ws, C)`` → ``(B, H, W, C)``.

    ``out[b, r·ws + i, c·ws + j] = windows[b·nW + r·(W/ws) + c, i, j]``.
    """
    windows = np.asarray(windows, dtype=np.float64)
    ws = window_size
    rows, cols = height // ws, width // ws
    batch = windows.shape[0] // (rows * cols)
    out = np.zeros((batch, height, width, windows.shape[-1]))
    for b, r, c, i, j in np.ndindex(batch, rows, cols, ws, ws):
        out[b, r * ws + i, c * ws + j] = windows[(b * rows + r) * cols + c, i, j]
    return out


def cyclic_shift(x, shift):
    """``out[b, y, z] = x[b, (y + shift) % H, (z + shift) % W]``: content moves up and left."""
    x = np.asarray(x, dtype=np.float64)
    batch, height, width, _ = x.shape
    out = np.zeros(x.shape)
    for b, y, z in np.ndindex(batch, height, width):
        out[b, y, z] = x[b, (y + shift) % height, (z + shift) % width]
    return out


def vit_embed(images, w_patch, b_patch, cls_token, pos_embed, patch_size):
    """ViT embedding, one token and feature at a time (``math.fsum``).

    ``out[b, 0] = cls_token + pos_embed[0]``; ``out[b, 1 + n, d] = Σ_f patches[b, n, f]
    · w_patch[f, d] + b_patch[d] + pos_embed[1 + n, d]`` with :func:`patchify`'s patches.
    """
    patches = patchify(images, patch_size)
    w = np.asarray(w_patch, dtype=np.float64)
    cls, pos = (np.asarray(a, dtype=np.float64) for a in (cls_token, pos_embed))
    batch, n_patches, features = patches.shape
    dim = w.shape[1]
    out = np.zeros((batch, 1 + n_patches, dim))
    for b, d in np.ndindex(batch, dim):
        out[b, 0, d] = cls[d] + pos[0, d]
        for n in range(n_patches):
            terms = [patches[b, n, f] * w[f, d] for f in range(features)]
            if b_patch is not None:
                terms.append(float(b_patch[d]))
            out[b, 1 + n, d] = math.fsum(terms) + pos[1 + n, d]
    return out
