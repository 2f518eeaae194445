"""Transformer block pieces: layer norm, feed-forward network, the encoder layer."""

from __future__ import annotations

from typing import NamedTuple

from seqops import ops
from seqops._dispatch import public, resolve
from seqops._lib import validate as check
from seqops._lib.typing import Array
from seqops.attention import MHAParams, _check_mha

ACTIVATIONS = ("relu", "gelu", "gelu_tanh")


@public(ops.layer_norm)
def layer_norm(
    x: Array, /, weight: Array | None = None, bias: Array | None = None, *, eps: float = 1e-5
) -> Array:
    """Layer normalisation over the last axis (biased variance, as torch).

    Parameters
    ----------
    x : array, shape ``(..., D)``
    weight, bias : array, shape ``(D,)``, optional
        Elementwise scale and shift, same dtype as ``x``.
    eps : float
        Added to the variance.

    Returns
    -------
    y : array, shape ``(..., D)``
        ``(x - mean) / sqrt(var + eps) * weight + bias``; half precision is normalised in
        float32.

    Examples
    --------
    >>> import numpy as np, seqops
    >>> seqops.layer_norm(np.array([[1.0, 3.0]])).round(3).tolist()
    [[-1.0, 1.0]]
    """
    backend = resolve(x, weight, bias, names=("x", "weight", "bias"))
    xp = backend.namespace()
    check.require_floating(xp, x=x, weight=weight, bias=bias)
    check.require_same_dtype(x=x, weight=weight, bias=bias)
    check.require_ndim("x", x, 1, "(..., D)")
    check.require_shape("weight", weight, (x.shape[-1],))
    check.require_shape("bias", bias, (x.shape[-1],))
    return ops.layer_norm.dispatch(backend, x, weight, bias, eps=float(eps))


@public(ops.feed_forward)
def feed_forward(
    x: Array,
    /,
    w1: Array,
    b1: Array | None,
    w2: Array,
    b2: Array | None,
    *,
    activation: str = "relu",
) -> Array:
    """Position-wise feed-forward network ``activation(x @ w1 + b1) @ w2 + b2``.

    Parameters
    ----------
    x : array, shape ``(..., D)``
    w1 : array, shape ``(D, F)``;  b1 : array, shape ``(F,)`` or None
    w2 : array, shape ``(F, D_out)``;  b2 : array, shape ``(D_out,)`` or None
    activation : {"relu", "gelu", "gelu_tanh"}
        ``"gelu"`` is the exact erf form, ``"gelu_tanh"`` the tanh approximation.

    Returns
    -------
    y : array, shape ``(..., D_out)``

    Examples
    --------
    >>> import numpy as np, seqops
    >>> x, w = np.ones((3, 4)), np.eye(4)
    >>> seqops.feed_forward(x, w, None, w, None, activation="gelu").shape
    (3, 4)
    """
    backend = resolve(x, w1, b1, w2, b2, names=("x", "w1", "b1", "w2", "b2"))
    _check_ffn(backend.namespace(), x, w1, b1, w2, b2, activation)
    return ops.feed_forward.dispatch(backend, x, w1, b1, w2, b2, activation=activation)


def _check_ffn(
    xp: object,
    x: Array,
    w1: Array,
    b1: Array | None,
    w2: Array,
    b2: Array | None,
    activation: str,
    prefix: str = "",
) -> None:
    names = {f"{prefix}{n}": a for n, a in (("w1", w1), ("b1", b1), ("w2", w2), ("b2", b2))}
    check.require_floating(xp, x=x, **names)
    check.require_same_dtype(x=x, **names)
    check.require_choice("activation", activation, ACTIVATIONS)
    check.require_ndim("x", x, 1, "(..., D)")
    check.require_ndim(f"{prefix}w1", w1, 2, "(D, F)")
    check.require_ndim(f"{prefix}w2", w2, 2, "(F, D_out)")
    check.require_shape(f"{prefix}w1", w1, (x.shape[-1], w1.shape[1]))
    check.require_shape(f"{prefix}b1", b1, (w1.shape[1],))
    check.require_shape(f"{prefix}w2", w2, (w1.shape[1], w2.shape[1]))
    check.require_shape(f"{prefix}b2", b2, (w2.shape[1],))


class EncoderLayerParams(NamedTuple):
    """Parameters of :func:`transformer_encoder_layer` (a JAX pytree).

    Build it from ``torch.nn.TransformerEncoderLayer.state_dict()`` with
    :func:`seqops.convert.encoder_layer_params_from_torch`.
    """

    attn: MHAParams  # self-attention, D -> D
    w1: Array  # (D, F)
    b1: Array | None  # (F,)
    w2: Array  # (F, D)
    b2: Array | None  # (D,)
    norm1_weight: Array | None = None  # (D,)
    norm1_bias: Array | None = None  # (D,)
    norm2_weight: Array | None = None  # (D,)
    norm2_bias: Array | None = None  # (D,)


@public(ops.transformer_encoder_layer)
def transformer_encoder_layer(
    x: Array,
    /,
    params: EncoderLayerParams,
    *,
    num_heads: int,
    norm_first: bool = False,
    activation: str = "relu",
    mask: Array | None = None,
    key_padding_mask: Array | None = None,
    is_causal: bool = False,
    eps: float = 1e-5,
) -> Array:
    """A transformer encoder layer, as ``torch.nn.TransformerEncoderLayer`` with dropout 0.

    Post-norm (default): ``x = norm1(x + attn(x)); x = norm2(x + ffn(x))``.
    Pre-norm (``norm_first=True``): ``x = x + attn(norm1(x)); x = x + ffn(norm2(x))``.

    Parameters
    ----------
    x : array, shape ``(..., L, D)``
    params : EncoderLayerParams
    num_heads : int
        Attention heads; must divide ``D``.
    norm_first, activation, eps
        As above; ``activation`` is one of ``"relu"``, ``"gelu"``, ``"gelu_tanh"``.
    mask, key_padding_mask, is_causal
        As in :func:`multi_head_attention` (**True = attend / real token**).

    Returns
    -------
    y : array, shape ``(..., L, D)``

    Examples
    --------
    >>> import numpy as np, seqops
    >>> d, f = 4, 8
    >>> eye = np.eye(d)
    >>> p = seqops.EncoderLayerParams(seqops.MHAParams(eye, eye, eye, eye),
    ...                               np.ones((d, f)), None, np.ones((f, d)), None)
    >>> seqops.transformer_encoder_layer(np.ones((2, 3, d)), p, num_heads=2).shape
    (2, 3, 4)
    """
    if not isinstance(params, EncoderLayerParams):
        msg = f"params must be a seqops.EncoderLayerParams; got {type(params).__name__}"
        raise TypeError(msg)
    arrays = (x, *params.attn, *params[1:], mask, key_padding_mask)
    backend = resolve(*arrays, names=_ENCODER_NAMES)
    xp = backend.namespace()
    _check_mha(xp, x, x, x, params.attn, num_heads)
    width = x.shape[-1]
    if params.attn.w_o.shape[1] != width:
        msg = (
            f"params.attn.w_o must map back to the model width {width}; "
            f"got shape {check.shape_of(params.attn.w_o)}"
        )
        raise ValueError(msg)
    _check_ffn(xp, x, params.w1, params.b1, params.w2, params.b2, activation, prefix="params.")
    norms = {f: getattr(params, f) for f in EncoderLayerParams._fields[5:]}
    check.require_same_dtype(x=x, **norms)
    for name, a in norms.items():
        check.require_shape(f"params.{name}", a, (width,))
    check.require_bool(xp, "mask", mask, "True = attend")
    check.require_bool(xp, "key_padding_mask", key_padding_mask, "True = real token")
    lead, length = check.shape_of(x)[:-2], x.shape[-2]
    check.broadcast_to_target(
        "mask", mask, (*lead, check.integer("num_heads", num_heads), length, length), "(..., num_heads, L, L)"
    )
    check.broadcast_to_target("key_padding_mask", key_padding_mask, (*lead, length), "(..., L)")
    return ops.transformer_encoder_layer.dispatch(
        backend,
        x,
        params,
        num_heads=num_heads,
        norm_first=bool(norm_first),
        activation=activation,
        mask=mask,
        key_padding_mask=key_padding_mask,
        is_causal=bool(is_causal),
        eps=float(eps),
    )


_ENCODER_NAMES = (
    "x",
    *(f"params.attn.{f}" for f in MHAParams._fields),
    *(f"params.{f}" for f in EncoderLayerParams._fields[1:]),
    "mask",
    "key_padding_mask",
)
