"""Built-in implementations of the transformer blocks: layer norm, feed-forward, and the
encoder layer over its dispatched parts."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from seqops import ops
from seqops._agnostic import activations, special, transformer
from seqops._builtin._table import implement, namespaced
from seqops._lib.typing import Array
from seqops.contract import Backend

namespaced(ops.layer_norm, transformer.layer_norm)


def activation_fn(backend: Backend, name: str) -> Callable[[Array], Array]:
    """The activation called ``name``, with the backend's native ``erf`` for exact GELU."""
    xp = backend.namespace()
    if name == "relu":
        return functools.partial(activations.relu, xp)
    if name == "gelu_tanh":
        return functools.partial(activations.gelu_tanh, xp)
    erf = backend.erf or functools.partial(special.erf, xp)
    return functools.partial(activations.gelu, xp, erf=erf)


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
    return transformer.feed_forward(xp, x, w1, b1, w2, b2, activation=activation_fn(backend, activation))


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
) -> Array:
    # Every sublayer is dispatched, so fast paths of attention, MHA, layer norm and the
    # feed-forward all reach the encoder layer.
    def self_attention(h: Array) -> Array:
        return ops.multi_head_attention.dispatch(
            backend, h, h, h, params.attn, num_heads=num_heads, mask=mask, key_padding_mask=key_padding_mask,
            is_causal=is_causal, dropout_p=0.0, rng=None, need_weights=False,
        )  # fmt: skip

    def ffn(h: Array) -> Array:
        return ops.feed_forward.dispatch(
            backend, h, params.w1, params.b1, params.w2, params.b2, activation=activation
        )

    def norm1(h: Array) -> Array:
        return ops.layer_norm.dispatch(backend, h, params.norm1_weight, params.norm1_bias, eps=eps)

    def norm2(h: Array) -> Array:
        return ops.layer_norm.dispatch(backend, h, params.norm2_weight, params.norm2_bias, eps=eps)

    return transformer.transformer_encoder_layer(
        x, norm_first=norm_first, self_attention=self_attention, feed_forward=ffn, norm1=norm1, norm2=norm2
    )
