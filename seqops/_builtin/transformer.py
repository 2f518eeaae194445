"""Built-in implementations of the transformer blocks: layer norm, feed-forward, and the
encoder layer over its dispatched parts."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from seqops import ops
from seqops._agnostic import transformer
from seqops._builtin._table import implement, namespaced
from seqops._builtin.activations import dispatched_activation
from seqops._lib.typing import Array
from seqops.contract import Backend

namespaced(ops.layer_norm, transformer.layer_norm)
namespaced(ops.rms_norm, transformer.rms_norm)


@implement(ops.feed_forward)
def feed_forward(
    backend: Backend,
    x: Array,
    w1: Array,
    b1: Array | None,
    w2: Array,
    b2: Array | None,
    /,
    *,
    activation: str,
) -> Array:
    xp = backend.namespace()
    act = dispatched_activation(backend, activation)  # a fast path of the activation reaches it
    return transformer.feed_forward(xp, x, w1, b1, w2, b2, activation=act)


@implement(ops.gated_feed_forward)
def gated_feed_forward(
    backend: Backend,
    x: Array,
    w_gate: Array,
    w_up: Array,
    w_down: Array,
    b_gate: Array | None,
    b_up: Array | None,
    b_down: Array | None,
    /,
    *,
    activation: str,
) -> Array:
    xp = backend.namespace()
    act = dispatched_activation(backend, activation)
    return transformer.gated_feed_forward(xp, x, w_gate, w_up, w_down, b_gate, b_up, b_down, activation=act)


@implement(ops.transformer_encoder_layer)
def transformer_encoder_layer(
    backend: Backend,
    x: Array,
    params: Any,
    /,
    *,
    num_heads: int,
    norm_first: bool,
    activation: str,
    mask: Array | None,
    key_padding_mask: Array | None,
    is_causal: bool,
    eps: float,
    scale: float | None,
) -> Array:
    # Every sublayer is dispatched, so fast paths of attention, MHA, layer norm and the
    # feed-forward all reach the encoder layer.
    attend = _attention(
        backend, params.attn, num_heads=num_heads, is_causal=is_causal, scale=scale, mask=mask,
        key_padding_mask=key_padding_mask,
    )  # fmt: skip

    ffn = _ffn(backend, params, activation)

    return transformer.transformer_encoder_layer(
        x,
        norm_first=norm_first,
        self_attention=lambda h: attend(h, h),
        feed_forward=ffn,
        norm1=_norm(backend, params.norm1_weight, params.norm1_bias, eps),
        norm2=_norm(backend, params.norm2_weight, params.norm2_bias, eps),
    )


def _attention(
    backend: Backend,
    params: Any,
    *,
    num_heads: int,
    is_causal: bool,
    scale: float | None,
    **masks: Array | None,
) -> Callable[[Array, Array], Array]:
    """``attend(h, memory)``: the dispatched multi-head attention of a layer's sublayer."""
    head_dim = params.w_q.shape[1] // num_heads
    # head_dim = 0: every score is 0 whatever the scale; 1.0 as seqops.multi_head_attention
    head_scale = (1.0 / math.sqrt(head_dim) if head_dim else 1.0) if scale is None else scale

    def attend(h: Array, memory: Array) -> Array:
        return ops.multi_head_attention.dispatch(
            backend, h, memory, memory, params, num_heads=num_heads, mask=masks["mask"],
            key_padding_mask=masks["key_padding_mask"], is_causal=is_causal, dropout_p=0.0, rng=None,
            need_weights=False, scale=head_scale, bias=None, num_kv_heads=num_heads, rotary=None,
            positions=None, kv_cache=None,
        )  # fmt: skip

    return attend


def _ffn(backend: Backend, params: Any, activation: str) -> Callable[[Array], Array]:
    """The dispatched feed-forward sublayer of a layer's parameters."""
    return lambda h: ops.feed_forward.dispatch(
        backend, h, params.w1, params.b1, params.w2, params.b2, activation=activation
    )


def _norm(backend: Backend, weight: Array | None, bias: Array | None, eps: float) -> Callable[[Array], Array]:
    return lambda h: ops.layer_norm.dispatch(backend, h, weight, bias, eps=eps)


@implement(ops.transformer_decoder_layer)
def transformer_decoder_layer(
    backend: Backend,
    x: Array,
    memory: Array,
    params: Any,
    /,
    *,
    num_heads: int,
    norm_first: bool,
    activation: str,
    mask: Array | None,
    key_padding_mask: Array | None,
    is_causal: bool,
    memory_mask: Array | None,
    memory_key_padding_mask: Array | None,
    scale: float | None,
    eps: float,
) -> Array:
    self_attend = _attention(
        backend, params.self_attn, num_heads=num_heads, is_causal=is_causal, scale=scale, mask=mask,
        key_padding_mask=key_padding_mask,
    )  # fmt: skip
    cross_attend = _attention(
        backend, params.cross_attn, num_heads=num_heads, is_causal=False, scale=scale, mask=memory_mask,
        key_padding_mask=memory_key_padding_mask,
    )  # fmt: skip

    ffn = _ffn(backend, params, activation)

    return transformer.transformer_decoder_layer(
        x,
        norm_first=norm_first,
        self_attention=lambda h: self_attend(h, h),
        cross_attention=lambda h: cross_attend(h, memory),
        feed_forward=ffn,
        norm1=_norm(backend, params.norm1_weight, params.norm1_bias, eps),
        norm2=_norm(backend, params.norm2_weight, params.norm2_bias, eps),
        norm3=_norm(backend, params.norm3_weight, params.norm3_bias, eps),
    )
