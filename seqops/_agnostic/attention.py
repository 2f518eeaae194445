"""Scaled dot-product and multi-head attention, masks and positional encodings (pure Array API).

Shapes follow ``torch.nn.functional.scaled_dot_product_attention``: heads are a leading
dimension, ``q (..., L, E)``, ``k (..., S, E)``, ``v (..., S, Ev)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from seqops._agnostic.activations import compute_dtype, masked_softmax, masked_softmax_parts
from seqops._lib.placement import helper_device
from seqops._lib.typing import Array, Device, DType, Namespace
from seqops._lib.validate import broadcast


def causal_mask(xp: Namespace, q_len: int, kv_len: int, /, *, offset: int, device: Device) -> Array:
    """Bool ``(q_len, kv_len)``, True where key ``j <= i + offset`` (query ``i``)."""
    rows = xp.arange(q_len, device=device)[:, None] + offset
    return rows >= xp.arange(kv_len, device=device)[None, :]


def padding_mask(xp: Namespace, lengths: Array, /, max_len: int) -> Array:
    """Bool ``(*lengths.shape, max_len)``, True at positions ``< length`` (real tokens)."""
    positions = xp.arange(max_len, dtype=lengths.dtype, device=helper_device(lengths))
    return positions < lengths[..., None]


def sinusoidal_positional_encoding(
    xp: Namespace, positions: Array, d_model: int, /, *, base: float, layout: str, dtype: DType
) -> Array:
    """``(P, d_model)`` encodings of float ``positions (P,)``, computed in ``positions.dtype``."""
    # frequencies base^(-2i/d) for i < d/2; angles (P, d/2)
    exponents = xp.arange(0, d_model, 2, dtype=positions.dtype, device=helper_device(positions))
    inv_freq = xp.exp(exponents * (-math.log(base) / d_model if d_model else 0.0))  # d_model = 0: (0,)
    angles = positions[:, None] * inv_freq[None, :]
    sin, cos = xp.sin(angles), xp.cos(angles)
    if layout == "interleaved":
        pe = xp.reshape(xp.stack((sin, cos), axis=-1), (positions.shape[0], d_model))
    else:
        pe = xp.concat((sin, cos), axis=-1)
    return xp.astype(pe, dtype)


def scaled_dot_product_attention(
    xp: Namespace,
    q: Array,
    k: Array,
    v: Array,
    /,
    *,
    mask: Array | None,
    bias: Array | None,
    is_causal: bool,
    scale: float,
    enable_gqa: bool,
    keep: Array | None = None,
    return_weights: bool = False,
) -> Any:
    """``softmax(q kᵀ · scale + bias, masked) @ v``; see :func:`seqops.scaled_dot_product_attention`.

    ``keep`` is the dropout multiplier (0 or ``1/(1-p)``) broadcastable to ``(..., L, S)``.
    Half-precision inputs compute logits and softmax in float32.
    """
    dtype = q.dtype
    ct = compute_dtype(xp, dtype)
    q, k, v = (xp.astype(a, ct, copy=False) for a in (q, k, v))
    if enable_gqa and k.shape[-3] != q.shape[-3]:
        # (..., Hkv, S, E) -> (..., Hq, S, E); query head h reads kv head h // group
        group = q.shape[-3] // k.shape[-3]
        k, v = xp.repeat(k, group, axis=-3), xp.repeat(v, group, axis=-3)
    logits = xp.matmul(q * scale, xp.matrix_transpose(k))  # (..., L, S)
    if bias is not None:
        logits = logits + xp.astype(bias, ct, copy=False)
    allowed = mask
    if is_causal:
        causal = causal_mask(xp, q.shape[-2], k.shape[-2], offset=0, device=helper_device(q))
        allowed = causal if allowed is None else xp.logical_and(allowed, causal)
    if return_weights:
        weights = masked_softmax(xp, logits, allowed)
        if keep is not None:
            weights = weights * xp.astype(keep, ct, copy=False)
        return xp.astype(xp.matmul(weights, v), dtype, copy=False), xp.astype(weights, dtype, copy=False)
    # softmax(x) @ v = (exp(x - m) @ v) / sum: the division runs on (L, Ev), not on (L, S)
    e, total = masked_softmax_parts(xp, logits, allowed)
    if keep is not None:
        e = e * xp.astype(keep, ct, copy=False)
    return xp.astype(xp.matmul(e, v) / total, dtype, copy=False)


def _tile(a: Array | None, start: int, stop: int, axis: int) -> Array | None:
    """``a[..., start:stop]`` along ``axis`` (-1 or -2), unless ``a`` broadcasts along it."""
    if a is None or a.ndim < -axis or a.shape[axis] == 1:
        return a
    return a[..., start:stop] if axis == -1 else a[..., start:stop, :]


def _zeros_out(xp: Namespace, q: Array, v: Array, rows: int, dtype: DType) -> Array:
    shape = (*broadcast(tuple(q.shape[:-2]), tuple(v.shape[:-2])), rows, v.shape[-1])
    return xp.zeros(shape, dtype=dtype, device=helper_device(q))


def tiled_scaled_dot_product_attention(
    xp: Namespace,
    q: Array,
    k: Array,
    v: Array,
    /,
    *,
    mask: Array | None,
    bias: Array | None,
    is_causal: bool,
    scale: float,
    enable_gqa: bool,
    keep: Array | None = None,
    key_tile: int = 512,
    query_tile: int | None = None,
) -> Array:
    """Memory-efficient :func:`scaled_dot_product_attention`: the tiled online softmax.

    FlashAttention's recurrence (Rabe & Staats 2021, "Self-attention does not need O(n²)
    memory"): for each block of ``query_tile`` queries, the keys and values are visited in
    static slices of ``key_tile``, keeping per query row the running maximum ``m`` of the
    logits, the running sum ``l`` of ``exp(logit - m)`` and the accumulator ``acc`` of
    ``exp(logit - m) @ v``, rescaled by ``exp(m_old - m_new)`` when the maximum grows. Only
    ``(..., query_tile, key_tile)`` logits exist at a time, so the peak memory is
    ``O(B·H·query_tile·key_tile)`` instead of ``O(B·H·L·S)``. Same semantics as the plain
    path: ``mask``, ``bias`` and ``is_causal`` combine, GQA, a row with no allowed key gives
    zeros with finite gradients (``m = -inf`` rows are shifted by 0 and ``l = 0`` is
    guarded), half-precision inputs compute in float32. ``keep`` (the dropout multiplier,
    broadcastable to ``(..., L, S)``) is sliced per tile and scales the numerator only, as
    in the plain path. The loops are Python loops over static slices (unrolled by
    ``jax.jit``).
    """
    dtype = q.dtype
    ct = compute_dtype(xp, dtype)
    q, k, v = (xp.astype(a, ct, copy=False) for a in (q, k, v))
    if enable_gqa and k.shape[-3] != q.shape[-3]:
        group = q.shape[-3] // k.shape[-3]
        k, v = xp.repeat(k, group, axis=-3), xp.repeat(v, group, axis=-3)
    if bias is not None:
        bias = xp.astype(bias, ct, copy=False)
    if keep is not None:
        keep = xp.astype(keep, ct, copy=False)
    device = helper_device(q)
    q_len, kv_len = q.shape[-2], k.shape[-2]
    key_tile = max(1, min(key_tile, kv_len))
    query_tile = q_len if query_tile is None else max(1, min(query_tile, q_len))
    q = q * scale
    kt = xp.matrix_transpose(k)
    outputs = []
    for q0 in range(0, q_len, query_tile):
        q1 = min(q0 + query_tile, q_len)
        qb = q[..., q0:q1, :]
        mask_q, bias_q, keep_q = (_tile(a, q0, q1, -2) for a in (mask, bias, keep))
        m: Any = -math.inf  # running max (..., Lq, 1), -inf until a key is allowed
        total: Any = 0.0  # running sum of exp(logit - m)
        acc: Any = 0.0  # running exp(logit - m) @ v
        for s0 in range(0, kv_len, key_tile):
            s1 = min(s0 + key_tile, kv_len)
            if is_causal and s0 > q1 - 1:
                break  # every later key is in the future of every query of this block
            logits = xp.matmul(qb, kt[..., s0:s1])  # (..., Lq, T)
            bias_t = _tile(bias_q, s0, s1, -1)
            if bias_t is not None:
                logits = logits + bias_t
            allowed = _tile(mask_q, s0, s1, -1)
            if is_causal and s1 - 1 > q0:  # some key of the tile follows some query
                causal = causal_mask(xp, q1 - q0, s1 - s0, offset=q0 - s0, device=device)
                allowed = causal if allowed is None else xp.logical_and(allowed, causal)
            if allowed is not None:
                logits = xp.where(allowed, logits, -math.inf)
            m_new = xp.max(logits, axis=-1, keepdims=True)
            if not isinstance(m, float):
                m_new = xp.maximum(m, m_new)
            shift = xp.where(xp.isfinite(m_new), m_new, 0.0)  # fully masked so far: shift by 0
            p = xp.exp(logits - shift)
            keep_t = _tile(keep_q, s0, s1, -1)
            pv = xp.matmul(p if keep_t is None else p * keep_t, v[..., s0:s1, :])
            if isinstance(m, float):  # first tile: nothing to rescale
                total, acc = xp.sum(p, axis=-1, keepdims=True), pv
            else:
                alpha = xp.exp(m - shift)
                total = alpha * total + xp.sum(p, axis=-1, keepdims=True)
                acc = alpha * acc + pv
            m = m_new
        if isinstance(acc, float):  # no key at all (S = 0)
            outputs.append(_zeros_out(xp, qb, v, q1 - q0, ct))
        else:
            outputs.append(acc / xp.where(total == 0, 1.0, total))
    if not outputs:  # L = 0
        return xp.astype(_zeros_out(xp, q, v, 0, ct), dtype, copy=False)
    out = outputs[0] if len(outputs) == 1 else xp.concat(outputs, axis=-2)
    return xp.astype(out, dtype, copy=False)


def split_heads(xp: Namespace, x: Array, num_heads: int, /) -> Array:
    """``(..., L, D)`` -> ``(..., H, L, D // H)``; head ``h`` is columns ``h*dh:(h+1)*dh``."""
    *lead, length, width = x.shape
    x = xp.reshape(x, (*lead, length, num_heads, width // num_heads))
    return xp.moveaxis(x, -2, -3)


def merge_heads(xp: Namespace, x: Array, /) -> Array:
    """``(..., H, L, dh)`` -> ``(..., L, H * dh)``, the inverse of :func:`split_heads`."""
    x = xp.moveaxis(x, -3, -2)
    *lead, length, heads, head_dim = x.shape
    return xp.reshape(x, (*lead, length, heads * head_dim))


def linear(xp: Namespace, x: Array, w: Array, b: Array | None, /) -> Array:
    """``x @ w + b`` with ``w (D_in, D_out)``."""
    y = xp.matmul(x, w)
    return y if b is None else y + b


def multi_head_attention(
    xp: Namespace,
    query: Array,
    key: Array,
    value: Array,
    /,
    params: Any,
    *,
    num_heads: int,
    num_kv_heads: int,
    mask: Array | None,
    key_padding_mask: Array | None,
    is_causal: bool,
    scale: float,
    bias: Array | None,
    need_weights: bool,
    attend: Callable[..., Any],
    rotate: Callable[[Array], Array] | None = None,
    cache: tuple[Array, Array, Any] | None = None,
) -> Any:
    """Project, attend per head, merge and project out; see :func:`seqops.multi_head_attention`.

    ``attend(q, k, v, *, mask, bias, is_causal, scale, enable_gqa, return_weights)`` computes
    the per-head attention (``seqops.scaled_dot_product_attention``'s contract, dispatched);
    ``rotate`` turns the projected queries and keys ``(..., heads, L, dh)`` (rotary
    embeddings); with ``cache = (keys, values, length)`` the new keys and values are written
    into it and ``(out, (keys, values, length + S))`` is returned.
    """
    q = split_heads(xp, linear(xp, query, params.w_q, params.b_q), num_heads)  # (..., H, L, dh)
    k = split_heads(xp, linear(xp, key, params.w_k, params.b_k), num_kv_heads)  # (..., Hkv, S, dh)
    v = split_heads(xp, linear(xp, value, params.w_v, params.b_v), num_kv_heads)  # (..., Hkv, S, dv)
    if rotate is not None:
        q, k = rotate(q), rotate(k)
    allowed = mask
    updated = None
    if cache is not None:
        keys, values, length = cache
        new = k.shape[-2]
        k, v = write_cache(xp, keys, k, length), write_cache(xp, values, v, length)  # (..., Hkv, M, d)
        updated = (k, v, length + new)
        # query i sits at position length + i: it sees the filled positions, causally or not
        seen = cache_mask(xp, q.shape[-2], k.shape[-2], length, new, is_causal, helper_device(k))
        allowed = seen if allowed is None else xp.logical_and(allowed, seen)
        is_causal = False
    if key_padding_mask is not None:
        # (..., 1, 1, S); a 0-d one broadcasts as it is
        kpm = key_padding_mask[..., None, None, :] if key_padding_mask.ndim else key_padding_mask
        allowed = kpm if allowed is None else xp.logical_and(allowed, kpm)
    attended = attend(
        q, k, v, mask=allowed, bias=bias, is_causal=is_causal, scale=scale,
        enable_gqa=num_kv_heads != num_heads, return_weights=need_weights,
    )  # fmt: skip
    heads, weights = attended if need_weights else (attended, None)
    out = linear(xp, merge_heads(xp, heads), params.w_o, params.b_o)
    if updated is not None:
        return out, updated
    return (out, weights) if need_weights else out


def write_cache(xp: Namespace, buffer: Array, new: Array, length: Any) -> Array:
    """``buffer (..., M, d)`` with ``new (..., S, d)`` written at rows ``[length, length + S)``,
    by a gather and a ``where`` (no in-place update, so it traces, differentiates and works
    with ``length`` a traced 0-d array); rows past ``M`` are dropped."""
    size, count = buffer.shape[-2], new.shape[-2]
    if count == 0:
        return buffer
    offset = xp.arange(size, device=helper_device(buffer)) - length  # (M,)
    inside = xp.logical_and(offset >= 0, offset < count)
    gathered = xp.take(new, xp.clip(offset, 0, count - 1), axis=-2)  # (..., M, d)
    return xp.where(inside[:, None], gathered, buffer)


def cache_mask(
    xp: Namespace, q_len: int, size: int, length: Any, new: int, is_causal: bool, device: Device
) -> Array:
    """``(L, M)``: query ``i`` (at position ``length + i``) may see key position ``j``."""
    j = xp.arange(size, device=device)[None, :]
    seen = j < length + new
    if is_causal:
        seen = xp.logical_and(seen, j <= length + xp.arange(q_len, device=device)[:, None])
    return xp.broadcast_to(seen, (q_len, size))


def apply_rotary(
    xp: Namespace, x: Array, positions: Array, /, *, base: float, layout: str, rotary_dim: int
) -> Array:
    """Rotate the first ``rotary_dim`` features of ``x (..., L, E)`` by the angles
    ``positions (..., L) · base^(-2i/rotary_dim)``; see :func:`seqops.apply_rotary`."""
    dtype = x.dtype
    angle_dtype = xp.float64 if dtype == xp.float64 else xp.float32  # at least float32
    half = rotary_dim // 2
    exponents = xp.arange(0, rotary_dim, 2, dtype=angle_dtype, device=helper_device(x))
    inv_freq = 1.0 / (base ** (exponents / rotary_dim))  # (d/2,)
    angles = xp.astype(positions, angle_dtype)[..., None] * inv_freq  # (..., L, d/2)
    rotated = xp.astype(x[..., :rotary_dim], angle_dtype)
    if layout == "halves":  # pairs (i, i + d/2): Hugging Face's rotate_half
        # x·cos + rotate_half(x)·sin over angles repeated on both halves: the values of
        # [x1·cos - x2·sin, x2·cos + x1·sin] (a + (-b) is a - b, exactly), one product
        # pair per output entry. Under jax.jit XLA:CPU runs it as Hugging Face's code; the
        # halves computed apart and concatenated ran 1.08-1.12x of that (B=2 H=8 L=1024 E=64).
        angles = xp.concat([angles, angles], axis=-1)
        cos, sin = xp.cos(angles), xp.sin(angles)
        x1, x2 = rotated[..., :half], rotated[..., half:]
        out = rotated * cos + xp.concat([-x2, x1], axis=-1) * sin
    else:  # pairs (2i, 2i + 1): GPT-J, the RoFormer paper
        cos, sin = xp.cos(angles), xp.sin(angles)
        x1, x2 = rotated[..., 0::2], rotated[..., 1::2]
        pairs = xp.stack([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)  # (..., L, d/2, 2)
        out = xp.reshape(pairs, (*pairs.shape[:-2], rotary_dim))
    out = xp.astype(out, dtype, copy=False)
    if rotary_dim == x.shape[-1]:
        return out
    passed = xp.broadcast_to(x[..., rotary_dim:], (*out.shape[:-1], x.shape[-1] - rotary_dim))
    return xp.concat([out, passed], axis=-1)
