"""Cases of the transformer family: layer and RMS norm, (gated) feed-forward, multi-head attention,
encoder layer."""

from __future__ import annotations

from functools import partial

import numpy as np

import seqops
from seqops_conformance.cases._base import _add, _bools, _linear_weights, _normal, _single
from seqops_conformance.cases.attention import _mha_params
from seqops_conformance.references import transformer as ref


def _layer_norm(rng, *, weight=True, bias=True, offset=0.0, eps=None, constant_rows=(), shape=(3, 5, 16)):
    """Inputs ``(3, 5, 16)``; the rows indexed by ``constant_rows`` are constant (zero
    variance: the output is the bias, ``eps`` keeps it finite)."""
    x = offset + _normal(rng, *shape, scale=1.0)
    for row in constant_rows:
        x[row] = offset + 0.5
    kwargs = {} if eps is None else {"eps": eps}
    w = 1.0 + _normal(rng, shape[-1], scale=0.2) if weight else None
    b = _normal(rng, shape[-1], scale=0.2) if bias else None
    return (x, w, b), kwargs


_add(
    "layer_norm",
    {
        "plain": partial(_layer_norm, weight=False, bias=False),
        "affine": _layer_norm,
        "weight only": partial(_layer_norm, bias=False),
        "bias only": partial(_layer_norm, weight=False),
        "offset mean eps": partial(_layer_norm, offset=8.0, eps=1e-3),
        "constant rows": partial(_layer_norm, constant_rows=((0, 1), (2, 4))),
        "edge: empty batch": partial(_layer_norm, shape=(0, 5, 16)),
        "edge: E=0": partial(_layer_norm, shape=(3, 5, 0)),
    },
    _single(ref.layer_norm),
    grad=("affine", "offset mean eps"),
)


def _rms_norm(rng, *, weight=True, offset=0.0, eps=None, zero_rows=(), shape=(3, 5, 16)):
    """Inputs ``(3, 5, 16)`` as layer norm's; the rows indexed by ``zero_rows`` are zero (mean
    square 0: the output is 0, ``eps`` keeps it finite)."""
    x = offset + _normal(rng, *shape, scale=1.0)
    for row in zero_rows:
        x[row] = 0.0
    kwargs = {} if eps is None else {"eps": eps}
    return (x, 1.0 + _normal(rng, shape[-1], scale=0.2) if weight else None), kwargs


_add(
    "rms_norm",
    {
        "plain": partial(_rms_norm, weight=False),
        "weight": _rms_norm,
        "offset mean eps": partial(_rms_norm, offset=8.0, eps=1e-3),
        "zero rows": partial(_rms_norm, zero_rows=((0, 1), (2, 4))),
        "edge: empty batch": partial(_rms_norm, shape=(0, 5, 16)),
        "edge: E=0": partial(_rms_norm, shape=(3, 5, 0)),
    },
    _single(ref.rms_norm),
    grad=("weight", "offset mean eps"),
)


def _feed_forward(rng, *, activation, biases=(True, True), batch=2):
    w1, b1 = _linear_weights(rng, 8, 16, biases[0])
    w2, b2 = _linear_weights(rng, 16, 6, biases[1])
    return (_normal(rng, batch, 5, 8, scale=1.0), w1, b1, w2, b2), {"activation": activation}


_add(
    "feed_forward",
    {
        "relu": partial(_feed_forward, activation="relu"),
        "gelu": partial(_feed_forward, activation="gelu"),
        "gelu_tanh": partial(_feed_forward, activation="gelu_tanh"),
        "gelu no biases": partial(_feed_forward, activation="gelu", biases=(False, False)),
        "relu b1 only": partial(_feed_forward, activation="relu", biases=(True, False)),
        "silu": partial(_feed_forward, activation="silu"),
        "swish (silu) no biases": partial(_feed_forward, activation="swish", biases=(False, False)),
        "edge: empty batch": partial(_feed_forward, activation="gelu", batch=0),
    },
    _single(ref.feed_forward),
    grad=("gelu", "gelu_tanh", "silu"),
)


def _gated_feed_forward(rng, *, biases=False, batch=2, **options):
    """The shapes of the feed-forward cases: ``x (2, 5, 8)``, ``F = 16``, ``D_out = 6``."""
    w_gate, b_gate = _linear_weights(rng, 8, 16, biases)
    w_up, b_up = _linear_weights(rng, 8, 16, biases)
    w_down, b_down = _linear_weights(rng, 16, 6, biases)
    x = _normal(rng, batch, 5, 8, scale=1.0)
    return (x, w_gate, w_up, w_down, b_gate, b_up, b_down), options


_add(
    "gated_feed_forward",
    {
        "swiglu (default, no biases)": _gated_feed_forward,
        "silu biases": partial(_gated_feed_forward, biases=True, activation="silu"),
        "swish": partial(_gated_feed_forward, activation="swish"),
        "geglu gelu biases": partial(_gated_feed_forward, biases=True, activation="gelu"),
        "geglu gelu_tanh": partial(_gated_feed_forward, activation="gelu_tanh"),
        "relu biases": partial(_gated_feed_forward, biases=True, activation="relu"),
        "edge: empty batch": partial(_gated_feed_forward, biases=True, batch=0),
    },
    _single(ref.gated_feed_forward),
    grad=("silu biases", "geglu gelu_tanh"),
)


# -- the encoder layer --------------------------------------------------------------------------


def _encoder(rng, *, length=6, norm_affine=True, mask=False, padding=None, batch=2, **options):
    x = _normal(rng, batch, length, 8, scale=1.0)
    attn = _mha_params(rng, 8, 8, 8, 8, 8)
    w1, b1 = _linear_weights(rng, 8, 16)
    w2, b2 = _linear_weights(rng, 16, 8)
    # norm1_weight, norm1_bias, norm2_weight, norm2_bias: weights near 1, biases near 0
    norms = [float(i % 2 == 0) + _normal(rng, 8, scale=0.2) for i in range(4 if norm_affine else 0)]
    params = seqops.EncoderLayerParams(attn, w1, b1, w2, b2, *norms)
    kwargs = {"num_heads": 2, **options}
    if mask:
        kwargs["mask"] = _bools(rng, length, length)
    if padding is not None:
        kwargs["key_padding_mask"] = np.arange(length) < np.array(padding)[:, None]
    return (x, params), kwargs


_add(
    "transformer_encoder_layer",
    {
        "post-norm relu": _encoder,
        "norm_first gelu": partial(_encoder, norm_first=True, activation="gelu"),
        "key padding": partial(_encoder, padding=[6, 3]),
        "causal gelu_tanh": partial(_encoder, is_causal=True, activation="gelu_tanh"),
        "mask norm_first": partial(_encoder, mask=True, norm_first=True),
        "no norm affine": partial(_encoder, norm_affine=False),
        "scale (GPT-2 per layer)": partial(_encoder, is_causal=True, scale=0.125),
        "edge: empty batch": partial(_encoder, batch=0),
        "edge: L=0": partial(_encoder, length=0, is_causal=True),
    },
    _single(ref.transformer_encoder_layer),
    # Pre-norm with GELU; the pieces of the post-norm layer have their own gradient checks.
    grad=("norm_first gelu",),
)


def _decoder(rng, *, length=5, source=7, norm_affine=True, mask=False, padding=False, batch=2, **options):
    """Self-attention over ``x (2, L, 8)``, cross-attention to a memory of width 10."""
    x = _normal(rng, batch, length, 8, scale=1.0)
    memory = _normal(rng, batch, source, 10, scale=1.0)
    self_attn = _mha_params(rng, 8, 8, 8, 8, 8)
    cross_attn = _mha_params(rng, 8, 10, 8, 8, 8)
    w1, b1 = _linear_weights(rng, 8, 16)
    w2, b2 = _linear_weights(rng, 16, 8)
    norms = [float(i % 2 == 0) + _normal(rng, 8, scale=0.2) for i in range(6 if norm_affine else 0)]
    params = seqops.DecoderLayerParams(self_attn, cross_attn, w1, b1, w2, b2, *norms)
    kwargs = {"num_heads": 2, **options}
    if mask:
        kwargs["mask"] = _bools(rng, length, length)
        kwargs["memory_mask"] = _bools(rng, 2, 1, length, source)
    if padding:
        kwargs["key_padding_mask"] = np.arange(length) < np.array([length, 3])[:, None]
        kwargs["memory_key_padding_mask"] = np.arange(source) < np.array([2, source])[:, None]
    return (x, memory, params), kwargs


_add(
    "transformer_decoder_layer",
    {
        "post-norm causal relu": _decoder,
        "norm_first gelu": partial(_decoder, norm_first=True, activation="gelu"),
        "masks and padding": partial(_decoder, mask=True, padding=True),
        "not causal, scale": partial(_decoder, is_causal=False, scale=0.3, norm_affine=False),
        "one step L=1": partial(_decoder, length=1),
        "edge: empty batch": partial(_decoder, batch=0),
        "edge: L=0": partial(_decoder, length=0),
        # No memory: the cross-attention adds its output projection's bias only.
        "edge: S=0": partial(_decoder, source=0),
    },
    _single(ref.transformer_decoder_layer),
    grad=("norm_first gelu", "masks and padding"),
)
