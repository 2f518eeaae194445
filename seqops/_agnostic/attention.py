"""Scaled dot-product and multi-head attention, masks and positional encodings (pure Array API).

Shapes follow ``torch.nn.functional.scaled_dot_product_attention``: heads are a leading
dimension, ``q (..., L, E)``, ``k (..., S, E)``, ``v (..., S, Ev)``.
"""

from __future__ import annotations

import math
from typing import Any

import array_api_compat

from seqops._agnostic.activations import compute_dtype, masked_softmax
from seqops._lib.typing import Array, Device, DType, Namespace


def causal_mask(xp: Namespace, q_len: int, kv_len: int, /, *, offset: int, device: Device) -> Array:
    """Bool ``(q_len, kv_len)``, True where key ``j <= i + offset`` (query ``i``)."""
    rows = xp.arange(q_len, device=device)[:, None] + offset
    return rows >= xp.arange(kv_len, device=device)[None, :]


def padding_mask(xp: Namespace, lengths: Array, /, max_len: int) -> Array:
    """Bool ``(*lengths.shape, max_len)``, True at positions ``< length`` (real tokens)."""
    positions = xp.arange(max_len, dtype=lengths.dtype, device=array_api_compat.device(lengths))
    return positions < lengths[..., None]


def sinusoidal_positional_encoding(
    xp: Namespace, positions: Array, d_model: int, /, *, base: float, layout: str, dtype: DType
) -> Array:
    """``(P, d_model)`` encodings of float ``positions (P,)``, computed in ``positions.dtype``."""
    # frequencies base^(-2i/d) for i < d/2; angles (P, d/2)
    exponents = xp.arange(0, d_model, 2, dtype=positions.dtype, device=array_api_compat.device(positions))
    inv_freq = xp.exp(exponents * (-math.log(base) / d_model))
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
        causal = causal_mask(xp, q.shape[-2], k.shape[-2], offset=0, device=array_api_compat.device(q))
        allowed = causal if allowed is None else xp.logical_and(allowed, causal)
    weights = masked_softmax(xp, logits, allowed)
    if keep is not None:
        weights = weights * xp.astype(keep, ct, copy=False)
    out = xp.astype(xp.matmul(weights, v), dtype, copy=False)
    if return_weights:
        return out, xp.astype(weights, dtype, copy=False)
    return out


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
    mask: Array | None,
    key_padding_mask: Array | None,
    is_causal: bool,
    keep: Array | None = None,
    need_weights: bool = False,
) -> Any:
    """Project, attend per head, merge and project out; see :func:`seqops.multi_head_attention`."""
    q = split_heads(xp, linear(xp, query, params.w_q, params.b_q), num_heads)  # (..., H, L, dh)
    k = split_heads(xp, linear(xp, key, params.w_k, params.b_k), num_heads)  # (..., H, S, dh)
    v = split_heads(xp, linear(xp, value, params.w_v, params.b_v), num_heads)  # (..., H, S, dv)
    allowed = mask
    if key_padding_mask is not None:
        kpm = key_padding_mask[..., None, None, :]  # (..., 1, 1, S)
        allowed = kpm if allowed is None else xp.logical_and(allowed, kpm)
    attended = scaled_dot_product_attention(
        xp,
        q,
        k,
        v,
        mask=allowed,
        bias=None,
        is_causal=is_causal,
        scale=1.0 / math.sqrt(q.shape[-1]),
        enable_gqa=False,
        keep=keep,
        return_weights=need_weights,
    )
    heads, weights = attended if need_weights else (attended, None)
    out = linear(xp, merge_heads(xp, heads), params.w_o, params.b_o)
    return (out, weights) if need_weights else out
