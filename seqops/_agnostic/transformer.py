"""Transformer block pieces: layer norm, feed-forward, the encoder layer (pure Array API)."""

from __future__ import annotations

from collections.abc import Callable

from seqops._agnostic.activations import compute_dtype
from seqops._agnostic.attention import linear
from seqops._lib.typing import Array, Namespace

Activation = Callable[[Array], Array]


def layer_norm(xp: Namespace, x: Array, /, weight: Array | None, bias: Array | None, *, eps: float) -> Array:
    """Normalise the last axis to mean 0, (biased) variance 1, then scale and shift."""
    if x.shape[-1] == 0:  # nothing to normalise (and no mean: NumPy would warn)
        return x
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


def rms_norm(xp: Namespace, x: Array, /, weight: Array | None, *, eps: float) -> Array:
    """``x / sqrt(mean(x², -1) + eps) * weight`` over the last axis (no centring)."""
    if x.shape[-1] == 0:  # nothing to normalise (and no mean: NumPy would warn)
        return x
    dtype = x.dtype
    x = xp.astype(x, compute_dtype(xp, dtype), copy=False)
    y = x / xp.sqrt(xp.mean(x * x, axis=-1, keepdims=True) + eps)  # (..., E) / (..., 1)
    if weight is not None:
        y = y * xp.astype(weight, y.dtype, copy=False)
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


def gated_feed_forward(
    xp: Namespace,
    x: Array,
    /,
    w_gate: Array,
    w_up: Array,
    w_down: Array,
    b_gate: Array | None,
    b_up: Array | None,
    b_down: Array | None,
    *,
    activation: Activation,
) -> Array:
    """``(activation(x @ w_gate + b_gate) * (x @ w_up + b_up)) @ w_down + b_down`` (the GLU
    family: SwiGLU with SiLU, GeGLU with GELU)."""
    hidden = activation(linear(xp, x, w_gate, b_gate)) * linear(xp, x, w_up, b_up)  # (..., F)
    return linear(xp, hidden, w_down, b_down)


def transformer_encoder_layer(
    x: Array,
    /,
    *,
    norm_first: bool,
    self_attention: Activation,
    feed_forward: Activation,
    norm1: Activation,
    norm2: Activation,
) -> Array:
    """The encoder layer's wiring: self-attention and feed-forward sublayers with residuals,
    post-norm (``x = norm1(x + attn(x)); norm2(x + ffn(x))``) or pre-norm. The sublayers are
    given (the built-in implementation dispatches them: ``multi_head_attention``,
    ``feed_forward``, ``layer_norm``)."""
    if norm_first:
        x = x + self_attention(norm1(x))
        return x + feed_forward(norm2(x))
    x = norm1(x + self_attention(x))
    return norm2(x + feed_forward(x))


def transformer_decoder_layer(
    x: Array,
    /,
    *,
    norm_first: bool,
    self_attention: Activation,
    cross_attention: Activation,
    feed_forward: Activation,
    norm1: Activation,
    norm2: Activation,
    norm3: Activation,
) -> Array:
    """The decoder layer's wiring (torch's ``TransformerDecoderLayer``): masked self-attention,
    cross-attention to the memory and feed-forward, each with a residual, post-norm or
    pre-norm; the sublayers are given (dispatched by the built-in implementation)."""
    if norm_first:
        x = x + self_attention(norm1(x))
        x = x + cross_attention(norm2(x))
        return x + feed_forward(norm3(x))
    x = norm1(x + self_attention(x))
    x = norm2(x + cross_attention(x))
    return norm3(x + feed_forward(x))
