"""Transformer block pieces: layer and RMS norm, (gated) feed-forward networks, the encoder layer."""

from __future__ import annotations

from typing import NamedTuple

from seqops import ops
from seqops._dispatch import public, resolve
from seqops._lib import validate as check
from seqops._lib.typing import Array, ArrayT
from seqops.attention import MHAParams, _check_mha

ACTIVATIONS = ("relu", "gelu", "gelu_tanh", "silu", "swish")
"""The feed-forward activations; ``"swish"`` is another name of ``"silu"``."""


def _activation(activation: str) -> str:
    """``activation`` checked, with the alias ``"swish"`` resolved to ``"silu"``."""
    check.require_choice("activation", activation, ACTIVATIONS)
    return "silu" if activation == "swish" else activation


@public(ops.layer_norm)
def layer_norm(
    x: ArrayT, /, weight: Array | None = None, bias: Array | None = None, *, eps: float = 1e-5
) -> ArrayT:
    """Layer normalisation over the last axis (biased variance, as torch).

    Parameters
    ----------
    x : array, shape ``(..., D)``
        The input, normalised over its last axis.
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
    return ops.layer_norm.dispatch(backend, x, weight, bias, eps=check.number("eps", eps, minimum=0.0))


@public(ops.rms_norm)
def rms_norm(x: ArrayT, /, weight: Array | None = None, *, eps: float = 1e-6) -> ArrayT:
    """Root-mean-square normalisation over the last axis (Llama, T5): no centring, no bias.

    ``x / sqrt(mean(x², -1) + eps) * weight``, which is
    ``torch.nn.functional.rms_norm(x, (E,), weight, eps)`` given the same ``eps`` (torch's
    default is the machine epsilon of the dtype; ours, ``1e-6``, is Llama's).

    Parameters
    ----------
    x : array, shape ``(..., E)``, real floating
        The input, normalised over its last axis.
    weight : array, shape ``(E,)``, optional
        Elementwise scale, same dtype as ``x``.
    eps : float >= 0
        Added to the mean square.

    Returns
    -------
    y : array, shape ``(..., E)``
        Dtype of ``x``; half precision is normalised and scaled in float32, then rounded once.

    Examples
    --------
    >>> import numpy as np, seqops
    >>> seqops.rms_norm(np.array([[3.0, 4.0]]), eps=0.0).round(4).tolist()  # rms sqrt(12.5)
    [[0.8485, 1.1314]]
    >>> seqops.rms_norm(np.array([[3.0, 4.0]]), np.array([2.0, 0.5]), eps=0.0).round(4).tolist()
    [[1.6971, 0.5657]]
    """
    backend = resolve(x, weight, names=("x", "weight"))
    check.require_floating(backend.namespace(), x=x, weight=weight)
    check.require_same_dtype(x=x, weight=weight)
    check.require_ndim("x", x, 1, "(..., E)")
    check.require_shape("weight", weight, (x.shape[-1],))
    eps = check.number("eps", eps, minimum=0.0)
    return ops.rms_norm.dispatch(backend, x, weight, eps=eps)


@public(ops.feed_forward)
def feed_forward(
    x: ArrayT,
    /,
    w1: Array,
    b1: Array | None,
    w2: Array,
    b2: Array | None,
    *,
    activation: str = "relu",
) -> ArrayT:
    """Position-wise feed-forward network ``activation(x @ w1 + b1) @ w2 + b2``.

    Parameters
    ----------
    x : array, shape ``(..., D)``
        The input, same dtype as the weights.
    w1 : array, shape ``(D, F)``
        The first layer, applied as ``x @ w1`` (the transpose of a ``torch.nn.Linear`` weight).
    b1 : array, shape ``(F,)``, optional
        The first layer's bias (``None``: none).
    w2 : array, shape ``(F, D_out)``
        The second layer, applied to the activated hidden features.
    b2 : array, shape ``(D_out,)``, optional
        The second layer's bias (``None``: none).
    activation : {"relu", "gelu", "gelu_tanh", "silu", "swish"}
        ``"gelu"`` is the exact erf form, ``"gelu_tanh"`` the tanh approximation (see
        :func:`gelu`); ``"swish"`` is another name of ``"silu"`` (:func:`silu`).

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
    backend = resolve(x, w1, b1, w2, b2, names=("x", "w1", "b1", "w2", "b2"), required=(0, 1, 3))
    _check_ffn(backend.namespace(), x, w1, b1, w2, b2, activation)
    return ops.feed_forward.dispatch(backend, x, w1, b1, w2, b2, activation=_activation(activation))


@public(ops.gated_feed_forward)
def gated_feed_forward(
    x: ArrayT,
    /,
    w_gate: Array,
    w_up: Array,
    w_down: Array,
    b_gate: Array | None = None,
    b_up: Array | None = None,
    b_down: Array | None = None,
    *,
    activation: str = "silu",
) -> ArrayT:
    """Gated feed-forward network (GLU family): ``(act(x @ w_gate + b_gate) * (x @ w_up + b_up))
    @ w_down + b_down``.

    SwiGLU with ``"silu"`` (Llama's MLP: ``down(silu(gate(x)) * up(x))``, no biases), GeGLU
    with ``"gelu"`` or ``"gelu_tanh"`` (T5 v1.1, Gemma).

    Parameters
    ----------
    x : array, shape ``(..., D)``
        The input, same dtype as the weights.
    w_gate, w_up : array, shape ``(D, F)``
        Applied as ``x @ w`` (the transpose of a ``torch.nn.Linear`` weight).
    w_down : array, shape ``(F, D_out)``
        Applied to the gated hidden features ``act(x @ w_gate + b_gate) * (x @ w_up + b_up)``.
    b_gate, b_up : array, shape ``(F,)``, optional
        Biases of the gate and up projections (``None``: none).
    b_down : array, shape ``(D_out,)``, optional
        Bias of the down projection (``None``: none).
    activation : {"silu", "swish", "gelu", "gelu_tanh", "relu"}
        Applied to the gate, as in :func:`feed_forward`.

    Returns
    -------
    y : array, shape ``(..., D_out)``, dtype of ``x``

    Examples
    --------
    >>> import numpy as np, seqops
    >>> x, w = np.array([[1.0, -1.0]]), np.eye(2)
    >>> seqops.gated_feed_forward(x, w, 2.0 * w, w).round(4).tolist()  # silu(x) * 2x
    [[1.4621, 0.5379]]
    """
    names = ("x", "w_gate", "w_up", "w_down", "b_gate", "b_up", "b_down")
    backend = resolve(x, w_gate, w_up, w_down, b_gate, b_up, b_down, names=names, required=4)
    arrays = dict(zip(names, (x, w_gate, w_up, w_down, b_gate, b_up, b_down), strict=True))
    check.require_floating(backend.namespace(), **arrays)
    check.require_same_dtype(**arrays)
    act = _activation(activation)
    check.require_ndim("x", x, 1, "(..., D)")
    check.require_ndim("w_gate", w_gate, 2, "(D, F)")
    check.require_ndim("w_down", w_down, 2, "(F, D_out)")
    width, hidden = x.shape[-1], w_gate.shape[1]
    check.require_shape("w_gate", w_gate, (width, hidden))
    check.require_shape("w_up", w_up, (width, hidden))
    check.require_shape("w_down", w_down, (hidden, w_down.shape[1]))
    check.require_shape("b_gate", b_gate, (hidden,))
    check.require_shape("b_up", b_up, (hidden,))
    check.require_shape("b_down", b_down, (w_down.shape[1],))
    return ops.gated_feed_forward.dispatch(
        backend, x, w_gate, w_up, w_down, b_gate, b_up, b_down, activation=act
    )


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
    x: ArrayT,
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
    scale: float | None = None,
) -> ArrayT:
    """A transformer encoder layer, as ``torch.nn.TransformerEncoderLayer`` with dropout 0.

    Post-norm (default): ``x = norm1(x + attn(x)); x = norm2(x + ffn(x))``.
    Pre-norm (``norm_first=True``): ``x = x + attn(norm1(x)); x = x + ffn(norm2(x))``.

    Parameters
    ----------
    x : array, shape ``(..., L, D)``
        The input sequence.
    params : EncoderLayerParams
        The self-attention's :class:`MHAParams` (``D -> D``), the feed-forward's ``w1 (D, F)``,
        ``b1``, ``w2 (F, D)``, ``b2`` and the two norms' weights and biases ``(D,)`` (``None``:
        none); all of ``x``'s dtype.
    num_heads : int
        Attention heads; must divide ``D``.
    norm_first : bool
        Pre-norm instead of post-norm (see above).
    activation : {"relu", "gelu", "gelu_tanh", "silu", "swish"}
        Of the feed-forward, as in :func:`feed_forward`.
    mask : bool array broadcastable to ``(..., num_heads, L, L)``, optional
        Self-attention mask, **True = attend**, as in :func:`multi_head_attention`.
    key_padding_mask : bool array, shape ``(..., L)``, optional
        **True = real token** of ``x``.
    is_causal : bool
        Causal self-attention, combined with the masks.
    eps : float >= 0
        Added to the variance of both layer norms.
    scale : float, optional
        The attention's logit scale (default ``1 / sqrt(head_dim)``; GPT-2 scales per layer).

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
    backend = resolve(*arrays, names=_ENCODER_NAMES, required=_ENCODER_REQUIRED)
    xp = backend.namespace()
    _check_mha(xp, x, x, x, params.attn, num_heads, prefix="params.attn.")
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
        norm_first=check.flag("norm_first", norm_first),
        activation=activation,
        mask=mask,
        key_padding_mask=key_padding_mask,
        is_causal=check.flag("is_causal", is_causal),
        eps=check.number("eps", eps, minimum=0.0),
        scale=None if scale is None else check.number("scale", scale),
    )


_ENCODER_NAMES = (
    "x",
    *(f"params.attn.{f}" for f in MHAParams._fields),
    *(f"params.{f}" for f in EncoderLayerParams._fields[1:]),
    "mask",
    "key_padding_mask",
)
_REQUIRED_FIELDS = ("w_q", "w_k", "w_v", "w_o", "w1", "w2")  # the weights; biases and norms optional
_ENCODER_REQUIRED = tuple(
    i for i, name in enumerate(_ENCODER_NAMES) if i == 0 or name.rpartition(".")[2] in _REQUIRED_FIELDS
)


class DecoderLayerParams(NamedTuple):
    """Parameters of :func:`transformer_decoder_layer`, as in ``torch.nn.TransformerDecoderLayer``.

    Build it from ``torch.nn.TransformerDecoderLayer.state_dict()`` with
    :func:`seqops.convert.decoder_layer_params_from_torch`.
    """

    self_attn: MHAParams  # masked self-attention, D -> D
    cross_attn: MHAParams  # attention to the memory: queries D, keys/values D_mem -> D
    w1: Array  # (D, F)
    b1: Array | None  # (F,)
    w2: Array  # (F, D)
    b2: Array | None  # (D,)
    norm1_weight: Array | None = None  # (D,)
    norm1_bias: Array | None = None  # (D,)
    norm2_weight: Array | None = None  # (D,)
    norm2_bias: Array | None = None  # (D,)
    norm3_weight: Array | None = None  # (D,)
    norm3_bias: Array | None = None  # (D,)


@public(ops.transformer_decoder_layer)
def transformer_decoder_layer(
    x: ArrayT,
    memory: Array,
    /,
    params: DecoderLayerParams,
    *,
    num_heads: int,
    norm_first: bool = False,
    activation: str = "relu",
    mask: Array | None = None,
    key_padding_mask: Array | None = None,
    is_causal: bool = True,
    memory_mask: Array | None = None,
    memory_key_padding_mask: Array | None = None,
    scale: float | None = None,
    eps: float = 1e-5,
) -> ArrayT:
    """A transformer decoder layer, as ``torch.nn.TransformerDecoderLayer`` with dropout 0
    given a causal ``tgt_mask``.

    Post-norm (default): ``x = norm1(x + self_attn(x)); x = norm2(x + cross_attn(x, memory));
    x = norm3(x + ffn(x))``. Pre-norm (``norm_first=True``): ``x = x + self_attn(norm1(x));
    x = x + cross_attn(norm2(x), memory); x = x + ffn(norm3(x))``.

    Parameters
    ----------
    x : array, shape ``(..., L, D)``
        The target sequence.
    memory : array, shape ``(..., S, D_mem)``
        The encoder's output.
    params : DecoderLayerParams
        The self-attention's and the cross-attention's :class:`MHAParams`, the feed-forward's
        weights and biases and the three norms' weights and biases (see
        :class:`DecoderLayerParams`); all of ``x``'s dtype.
    num_heads : int
        Heads of both attentions; must divide ``D``.
    norm_first : bool
        Pre-norm instead of post-norm (see above).
    activation : {"relu", "gelu", "gelu_tanh", "silu", "swish"}
        Of the feed-forward, as in :func:`feed_forward`.
    eps : float >= 0
        Added to the variance of the three layer norms.
    mask : bool array broadcastable to ``(..., num_heads, L, L)``, optional
        Self-attention mask, **True = attend**; combined with causality.
    key_padding_mask : bool array, shape ``(..., L)``, optional
        **True = real token** of ``x``.
    is_causal : bool
        Causal self-attention (the default, unlike torch's layer, which needs a ``tgt_mask``);
        ``mask`` adds to it.
    memory_mask : bool array broadcastable to ``(..., num_heads, L, S)``, optional
        Cross-attention mask, **True = attend**.
    memory_key_padding_mask : bool array, shape ``(..., S)``, optional
        **True = real token** of ``memory``.
    scale : float, optional
        The logit scale of both attentions (default ``1 / sqrt(head_dim)``).

    Returns
    -------
    y : array, shape ``(..., L, D)``

    Examples
    --------
    >>> import numpy as np, seqops
    >>> d, f = 4, 8
    >>> eye = np.eye(d)
    >>> attn = seqops.MHAParams(eye, eye, eye, eye)
    >>> p = seqops.DecoderLayerParams(attn, attn, np.ones((d, f)), None, np.ones((f, d)), None)
    >>> seqops.transformer_decoder_layer(np.ones((2, 3, d)), np.ones((2, 5, d)), p, num_heads=2).shape
    (2, 3, 4)
    """
    if not isinstance(params, DecoderLayerParams):
        msg = f"params must be a seqops.DecoderLayerParams; got {type(params).__name__}"
        raise TypeError(msg)
    masks = (mask, key_padding_mask, memory_mask, memory_key_padding_mask)
    arrays = (x, memory, *params.self_attn, *params.cross_attn, *params[2:], *masks)
    backend = resolve(*arrays, names=_DECODER_NAMES, required=_DECODER_REQUIRED)
    xp = backend.namespace()
    _check_mha(xp, x, x, x, params.self_attn, num_heads, prefix="params.self_attn.")
    check.require_ndim("memory", memory, 2, "(..., S, D_mem)")
    _check_mha(xp, x, memory, memory, params.cross_attn, num_heads, prefix="params.cross_attn.")
    width = x.shape[-1]
    for name in ("self_attn", "cross_attn"):
        w_o = getattr(params, name).w_o
        if w_o.shape[1] != width:
            msg = (
                f"params.{name}.w_o must map back to the model width {width}; got shape {check.shape_of(w_o)}"
            )
            raise ValueError(msg)
    _check_ffn(xp, x, params.w1, params.b1, params.w2, params.b2, activation, prefix="params.")
    norms = {f: getattr(params, f) for f in DecoderLayerParams._fields[6:]}
    check.require_same_dtype(x=x, **norms)
    for name, a in norms.items():
        check.require_shape(f"params.{name}", a, (width,))
    for name, m, meaning in (
        ("mask", mask, "True = attend"),
        ("key_padding_mask", key_padding_mask, "True = real token"),
        ("memory_mask", memory_mask, "True = attend"),
        ("memory_key_padding_mask", memory_key_padding_mask, "True = real token"),
    ):
        check.require_bool(xp, name, m, meaning)
    lead = check.broadcast_shapes(
        {"x": check.shape_of(x)[:-2], "memory": check.shape_of(memory)[:-2]},
        "the leading (batch) dimensions of x and memory",
    )
    heads, length, source = check.integer("num_heads", num_heads), x.shape[-2], memory.shape[-2]
    check.broadcast_to_target("mask", mask, (*lead, heads, length, length), "(..., num_heads, L, L)")
    check.broadcast_to_target("key_padding_mask", key_padding_mask, (*lead, length), "(..., L)")
    check.broadcast_to_target(
        "memory_mask", memory_mask, (*lead, heads, length, source), "(..., num_heads, L, S)"
    )
    check.broadcast_to_target("memory_key_padding_mask", memory_key_padding_mask, (*lead, source), "(..., S)")
    return ops.transformer_decoder_layer.dispatch(
        backend,
        x,
        memory,
        params,
        num_heads=heads,
        norm_first=check.flag("norm_first", norm_first),
        activation=activation,
        mask=mask,
        key_padding_mask=key_padding_mask,
        is_causal=check.flag("is_causal", is_causal),
        memory_mask=memory_mask,
        memory_key_padding_mask=memory_key_padding_mask,
        scale=None if scale is None else check.number("scale", scale),
        eps=check.number("eps", eps, minimum=0.0),
    )


_DECODER_NAMES = (
    "x",
    "memory",
    *(f"params.self_attn.{f}" for f in MHAParams._fields),
    *(f"params.cross_attn.{f}" for f in MHAParams._fields),
    *(f"params.{f}" for f in DecoderLayerParams._fields[2:]),
    "mask",
    "key_padding_mask",
    "memory_mask",
    "memory_key_padding_mask",
)
_DECODER_REQUIRED = tuple(
    i for i, name in enumerate(_DECODER_NAMES) if i < 2 or name.rpartition(".")[2] in _REQUIRED_FIELDS
)
