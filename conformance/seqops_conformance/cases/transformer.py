"""Cases of the transformer family: layer norm, feed-forward, multi-head attention, encoder layer."""

from __future__ import annotations

from functools import partial

import numpy as np

import seqops
from seqops_conformance.cases._base import _add, _bools, _linear_weights, _normal, _single
from seqops_conformance.cases.attention import _mha_params
from seqops_conformance.references import transformer as ref


def _layer_norm(rng, *, weight=True, bias=True, offset=0.0, eps=None, constant_rows=()):
    """Inputs ``(3, 5, 16)``; the rows indexed by ``constant_rows`` are constant (zero
    variance: the output is the bias, ``eps`` keeps it finite)."""
    x = offset + _normal(rng, 3, 5, 16, scale=1.0)
    for row in constant_rows:
        x[row] = offset + 0.5
    kwargs = {} if eps is None else {"eps": eps}
    w = 1.0 + _normal(rng, 16, scale=0.2) if weight else None
    b = _normal(rng, 16, scale=0.2) if bias else None
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
    },
    _single(ref.layer_norm),
    grad=("affine", "offset mean eps"),
)


def _feed_forward(rng, *, activation, biases=(True, True)):
    w1, b1 = _linear_weights(rng, 8, 16, biases[0])
    w2, b2 = _linear_weights(rng, 16, 6, biases[1])
    return (_normal(rng, 2, 5, 8, scale=1.0), w1, b1, w2, b2), {"activation": activation}


_add(
    "feed_forward",
    {
        "relu": partial(_feed_forward, activation="relu"),
        "gelu": partial(_feed_forward, activation="gelu"),
        "gelu_tanh": partial(_feed_forward, activation="gelu_tanh"),
        "gelu no biases": partial(_feed_forward, activation="gelu", biases=(False, False)),
        "relu b1 only": partial(_feed_forward, activation="relu", biases=(True, False)),
    },
    _single(ref.feed_forward),
    grad=("gelu", "gelu_tanh"),
)


# -- the encoder layer --------------------------------------------------------------------------


def _encoder(rng, *, length=6, norm_affine=True, mask=False, padding=None, **options):
    x = _normal(rng, 2, length, 8, scale=1.0)
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
    },
    _single(ref.transformer_encoder_layer),
    # Pre-norm with GELU; the pieces of the post-norm layer have their own gradient checks.
    grad=("norm_first gelu",),
)
