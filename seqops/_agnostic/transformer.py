"""Transformer block pieces: layer norm, feed-forward, the encoder layer (pure Array API)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from seqops._agnostic.activations import compute_dtype
from seqops._agnostic.attention import linear, multi_head_attention
from seqops._lib.typing import Array, Namespace

Activation = Callable[[Array], Array]


def layer_norm(xp: Namespace, x: Array, /, weight: Array | None, bias: Array | None, *, eps: float) -> Array:
    """Normalise the last axis to mean 0, (biased) variance 1, then scale and shift."""
    dtype = x.dtype
    x = xp.astype(x, compute_dtype(xp, dtype), copy=False)
    centred = x - xp.mean(x, axis=-1, keepdims=True)
    var = xp.mean(centred * centred, axis=-1, keepdims=True)
    y = centred / xp.sqrt(var + eps)
    if weight is not None:
        y = y * xp.astype(weight, y.dtype, copy=False)
    if bias is not None:
        y = y + xp.astype(bias, y.dtype, copy=False)
    return xp.astype(y, dtype, copy=False)


def feed_forward(
    xp: Namespace,
    x: Array,
    /,
    w1: Array,
    b1: Array | None,
    w2: Array,
    b2: Array | None,
    *,
    activation: Activation,
) -> Array:
    """``activation(x @ w1 + b1) @ w2 + b2``."""
    return linear(xp, activation(linear(xp, x, w1, b1)), w2, b2)


def transformer_encoder_layer(
    xp: Namespace,
    x: Array,
    /,
    params: Any,
    *,
    num_heads: int,
    norm_first: bool,
    activation: Activation,
    mask: Array | None,
    key_padding_mask: Array | None,
    is_causal: bool,
    eps: float,
    attend: Callable[..., Array] | None = None,
) -> Array:
    """Self-attention and feed-forward sublayers with residuals, post-norm or pre-norm;
    ``attend`` computes the per-head attention (see :func:`multi_head_attention`)."""

    def self_attention(h: Array) -> Array:
        return multi_head_attention(
            xp,
            h,
            h,
            h,
            params.attn,
            num_heads=num_heads,
            mask=mask,
            key_padding_mask=key_padding_mask,
            is_causal=is_causal,
            attend=attend,
        )

    def ffn(h: Array) -> Array:
        return feed_forward(xp, h, params.w1, params.b1, params.w2, params.b2, activation=activation)

    def norm1(h: Array) -> Array:
        return layer_norm(xp, h, params.norm1_weight, params.norm1_bias, eps=eps)

    def norm2(h: Array) -> Array:
        return layer_norm(xp, h, params.norm2_weight, params.norm2_bias, eps=eps)

    if norm_first:
        x = x + self_attention(norm1(x))
        return x + ffn(norm2(x))
    x = norm1(x + self_attention(x))
    return norm2(x + ffn(x))
