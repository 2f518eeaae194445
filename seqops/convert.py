"""Converters between framework parameter conventions and seqops'.

Pure array code (each function works on the arrays of any library); no framework import.
seqops applies weights as ``x @ w`` with ``w (D_in, D_out)``; torch stores
``weight (D_out, D_in)`` and computes ``x @ weight.T``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NamedTuple

import array_api_compat

from seqops._lib.placement import helper_device
from seqops._lib.typing import Array
from seqops.attention import MHAParams
from seqops.transformer import DecoderLayerParams, EncoderLayerParams


def _t(w: Array) -> Array:
    return array_api_compat.array_namespace(w).matrix_transpose(w)


def mha_params_from_torch(
    in_proj_weight: Array,
    in_proj_bias: Array | None,
    out_proj_weight: Array,
    out_proj_bias: Array | None,
) -> MHAParams:
    """:class:`MHAParams` from ``torch.nn.MultiheadAttention``'s packed parameters.

    Parameters
    ----------
    in_proj_weight : array, shape ``(3D, D)``
        Rows ``[0, D)`` project queries, ``[D, 2D)`` keys, ``[2D, 3D)`` values.
    in_proj_bias : array, shape ``(3D,)`` or None
        The biases of the three projections, in the same order (``None``: no biases).
    out_proj_weight : array, shape ``(D, D)``
        ``out_proj.weight``, transposed into ``w_o``.
    out_proj_bias : array, shape ``(D,)`` or None
        ``out_proj.bias``, or ``None``.

    Returns
    -------
    MHAParams
        ``w_q, w_k, w_v, w_o`` of shape ``(D, D)`` as ``x @ w``. Remember that torch's
        ``key_padding_mask`` is True = ignore: pass ``~mask`` to seqops.

    Examples
    --------
    >>> import numpy as np
    >>> p = mha_params_from_torch(np.zeros((6, 2)), None, np.eye(2), None)
    >>> p.w_q.shape, p.b_q is None
    ((2, 2), True)
    """
    width = in_proj_weight.shape[1]
    if in_proj_weight.shape != (3 * width, width):
        msg = f"in_proj_weight must have shape (3D, D); got {tuple(in_proj_weight.shape)}"
        raise ValueError(msg)
    w_q, w_k, w_v = (_t(in_proj_weight[i * width : (i + 1) * width, :]) for i in range(3))
    b_q = b_k = b_v = None
    if in_proj_bias is not None:
        b_q, b_k, b_v = (in_proj_bias[i * width : (i + 1) * width] for i in range(3))
    return MHAParams(w_q, w_k, w_v, _t(out_proj_weight), b_q, b_k, b_v, out_proj_bias)


def encoder_layer_params_from_torch(state_dict_arrays: Mapping[str, Array]) -> EncoderLayerParams:
    """:class:`EncoderLayerParams` from a ``torch.nn.TransformerEncoderLayer`` state dict.

    Parameters
    ----------
    state_dict_arrays : mapping of str to array
        The layer's ``state_dict()`` (keys ``self_attn.in_proj_weight``,
        ``self_attn.out_proj.weight``, ``linear1.weight``, ``norm1.weight``, ...), as
        tensors or converted to any library.

    Returns
    -------
    EncoderLayerParams
        Linear weights transposed to ``(D_in, D_out)``; missing biases become None.
    """
    sd = state_dict_arrays
    attn = mha_params_from_torch(
        sd["self_attn.in_proj_weight"],
        sd.get("self_attn.in_proj_bias"),
        sd["self_attn.out_proj.weight"],
        sd.get("self_attn.out_proj.bias"),
    )
    return EncoderLayerParams(
        attn=attn,
        w1=_t(sd["linear1.weight"]),
        b1=sd.get("linear1.bias"),
        w2=_t(sd["linear2.weight"]),
        b2=sd.get("linear2.bias"),
        norm1_weight=sd.get("norm1.weight"),
        norm1_bias=sd.get("norm1.bias"),
        norm2_weight=sd.get("norm2.weight"),
        norm2_bias=sd.get("norm2.bias"),
    )


def decoder_layer_params_from_torch(state_dict_arrays: Mapping[str, Array]) -> DecoderLayerParams:
    """:class:`DecoderLayerParams` from a ``torch.nn.TransformerDecoderLayer`` state dict.

    Parameters
    ----------
    state_dict_arrays : mapping of str to array
        The layer's ``state_dict()`` (keys ``self_attn.in_proj_weight``,
        ``multihead_attn.in_proj_weight``, ``linear1.weight``, ``norm1.weight``, ...), as
        tensors or converted to any library.

    Returns
    -------
    DecoderLayerParams
        Linear weights transposed to ``(D_in, D_out)``; missing biases become None. The
        cross-attention's packed projection needs a memory of the model width (torch's
        ``kdim``/``vdim`` layers keep separate ``k_proj_weight``/``v_proj_weight``: build
        their :class:`MHAParams` by hand).

    Examples
    --------
    >>> import numpy as np
    >>> sd = {f"{a}.in_proj_weight": np.zeros((6, 2)) for a in ("self_attn", "multihead_attn")}
    >>> sd |= {f"{a}.out_proj.weight": np.eye(2) for a in ("self_attn", "multihead_attn")}
    >>> sd |= {"linear1.weight": np.zeros((3, 2)), "linear2.weight": np.zeros((2, 3))}
    >>> decoder_layer_params_from_torch(sd).w1.shape
    (2, 3)
    """
    sd = state_dict_arrays

    def attention(prefix: str) -> MHAParams:
        return mha_params_from_torch(
            sd[f"{prefix}.in_proj_weight"],
            sd.get(f"{prefix}.in_proj_bias"),
            sd[f"{prefix}.out_proj.weight"],
            sd.get(f"{prefix}.out_proj.bias"),
        )

    return DecoderLayerParams(
        self_attn=attention("self_attn"),
        cross_attn=attention("multihead_attn"),
        w1=_t(sd["linear1.weight"]),
        b1=sd.get("linear1.bias"),
        w2=_t(sd["linear2.weight"]),
        b2=sd.get("linear2.bias"),
        **{f"norm{i}_{kind}": sd.get(f"norm{i}.{kind}") for i in (1, 2, 3) for kind in ("weight", "bias")},
    )


# -- recurrent family ---------------------------------------------------------------
#
# seqops packs LSTM gates i, f, o, g; torch (i, f, g, o) and keras (i, f, c, o) differ from
# it by swapping the last two blocks, a permutation that is its own inverse.
_SWAP_G_O = (0, 1, 3, 2)
_FLAX_GATES = ("i", "f", "o", "g")  # flax names each gate; listed in seqops' order


def _permute_gates(x: Array, order: tuple[int, ...] = _SWAP_G_O) -> Array:
    """Reorder the ``len(order)`` equal blocks of the last axis: block ``j`` of the result is
    ``order[j]``."""
    xp = array_api_compat.array_namespace(x)
    n = x.shape[-1] // len(order)
    return xp.concat([x[..., k * n : (k + 1) * n] for k in order], axis=-1)


def _gate_blocks(x: Array, count: int = 4) -> list[Array]:
    """The ``count`` blocks ``(..., H)`` of the last axis ``(..., count·H)``, in storage order."""
    n = x.shape[-1] // count
    return [x[..., k * n : (k + 1) * n] for k in range(count)]


def _require(name: str, x: Array | None, layout: str, shape: tuple[int, ...]) -> None:
    if x is not None and tuple(x.shape) != shape:
        msg = f"{name} must have shape {layout} = {shape}; got {tuple(x.shape)}"
        raise ValueError(msg)


def _sum_biases(a: Array | None, b: Array | None) -> Array | None:
    if a is None or b is None:
        return b if a is None else a
    return a + b


def _check_packed(w_ih: Array, w_hh: Array, b: Array | None, gates: int) -> None:
    """``w_ih (I, gH)``, ``w_hh (H, gH)``, ``b (gH,)`` in seqops' orientation."""
    if len(w_hh.shape) != 2:
        msg = f"w_hh must be 2-D (H, {gates if gates > 1 else ''}H); got {tuple(w_hh.shape)}"
        raise ValueError(msg)
    hidden, k = w_hh.shape[0], "" if gates == 1 else str(gates)
    _require("w_hh", w_hh, f"(H, {k}H)", (hidden, gates * hidden))
    if len(w_ih.shape) != 2:
        msg = f"w_ih must be 2-D (I, {k}H); got {tuple(w_ih.shape)}"
        raise ValueError(msg)
    _require("w_ih", w_ih, f"(I, {k}H)", (w_ih.shape[0], gates * hidden))
    _require("b", b, f"({k}H,)", (gates * hidden,))


def _check_torch(
    weight_ih: Array, weight_hh: Array, bias_ih: Array | None, bias_hh: Array | None, gates: int
) -> None:
    """torch's ``weight_ih (gH, I)``, ``weight_hh (gH, H)``, biases ``(gH,)``."""
    k = "" if gates == 1 else str(gates)
    if len(weight_hh.shape) != 2 or weight_hh.shape[0] != gates * weight_hh.shape[1]:
        msg = f"weight_hh must have shape ({k}H, H); got {tuple(weight_hh.shape)}"
        raise ValueError(msg)
    hidden = weight_hh.shape[1]
    if len(weight_ih.shape) != 2:
        msg = f"weight_ih must be 2-D ({k}H, I); got {tuple(weight_ih.shape)}"
        raise ValueError(msg)
    _require("weight_ih", weight_ih, f"({k}H, I)", (gates * hidden, weight_ih.shape[1]))
    _require("bias_ih", bias_ih, f"({k}H,)", (gates * hidden,))
    _require("bias_hh", bias_hh, f"({k}H,)", (gates * hidden,))


def lstm_weights_from_torch(
    weight_ih: Array,
    weight_hh: Array,
    bias_ih: Array | None = None,
    bias_hh: Array | None = None,
) -> tuple[Array, Array, Array | None]:
    """seqops LSTM weights from ``torch.nn.LSTM`` / ``torch.nn.LSTMCell`` parameters.

    Parameters
    ----------
    weight_ih : array, shape ``(4H, I)``
        torch's ``weight_ih`` (``weight_ih_l0`` of ``nn.LSTM``), gate rows i, f, g, o.
    weight_hh : array, shape ``(4H, H)``
        torch's ``weight_hh`` (``weight_hh_l0``), the same gate rows.
    bias_ih, bias_hh : array, shape ``(4H,)``, optional
        Summed into the one bias seqops uses.

    Returns
    -------
    w_ih : array, shape ``(I, 4H)``
    w_hh : array, shape ``(H, 4H)``
    b : array, shape ``(4H,)``, or None when both biases are None
        Gate columns i, f, o, g, applied as ``x @ w_ih``.

    Examples
    --------
    >>> import numpy as np
    >>> w_ih, w_hh, b = lstm_weights_from_torch(np.zeros((8, 3)), np.zeros((8, 2)))
    >>> w_ih.shape, w_hh.shape, b
    ((3, 8), (2, 8), None)
    """
    _check_torch(weight_ih, weight_hh, bias_ih, bias_hh, 4)
    b = _sum_biases(bias_ih, bias_hh)
    return (
        _permute_gates(_t(weight_ih)),
        _permute_gates(_t(weight_hh)),
        None if b is None else _permute_gates(b),
    )


def lstm_weights_to_torch(
    w_ih: Array, w_hh: Array, b: Array | None = None
) -> tuple[Array, Array, Array | None, Array | None]:
    """``torch.nn.LSTM`` parameters from seqops LSTM weights (inverse of the above).

    Parameters
    ----------
    w_ih : array, shape ``(I, 4H)``
        seqops' input-to-gates weight, gate columns i, f, o, g.
    w_hh : array, shape ``(H, 4H)``
        seqops' hidden-to-gates weight, the same gate columns.
    b : array, shape ``(4H,)``, optional
        seqops' one bias (``None``: both torch biases are ``None``).

    Returns
    -------
    weight_ih : array, shape ``(4H, I)``
    weight_hh : array, shape ``(4H, H)``
    bias_ih : array, shape ``(4H,)``, or None
        The whole bias.
    bias_hh : array, shape ``(4H,)``, or None
        Zeros (torch's two biases only ever act through their sum).
    """
    _check_packed(w_ih, w_hh, b, 4)
    bias_ih = None if b is None else _permute_gates(b)
    bias_hh = None if b is None else array_api_compat.array_namespace(b).zeros_like(bias_ih)
    return _t(_permute_gates(w_ih)), _t(_permute_gates(w_hh)), bias_ih, bias_hh


def lstm_weights_from_keras(
    kernel: Array, recurrent_kernel: Array, bias: Array | None = None
) -> tuple[Array, Array, Array | None]:
    """seqops LSTM weights from a ``keras.layers.LSTM`` / ``LSTMCell``.

    Keras already stores ``(in, out)`` kernels; only the gate blocks move (keras order
    i, f, c, o with ``c`` our ``g``). Keras' ``recurrent_activation`` must be the default
    sigmoid and ``activation`` tanh for the cells to agree.

    Parameters
    ----------
    kernel : array, shape ``(I, 4H)``
        Keras' input kernel, gate columns i, f, c, o.
    recurrent_kernel : array, shape ``(H, 4H)``
        Keras' recurrent kernel, the same gate columns.
    bias : array, shape ``(4H,)``, optional
        Keras' one bias (``use_bias=False``: ``None``).

    Returns
    -------
    w_ih : array, shape ``(I, 4H)``
    w_hh : array, shape ``(H, 4H)``
    b : array, shape ``(4H,)``, or None
    """
    _check_packed(kernel, recurrent_kernel, bias, 4)
    return (
        _permute_gates(kernel),
        _permute_gates(recurrent_kernel),
        None if bias is None else _permute_gates(bias),
    )


def lstm_weights_to_keras(
    w_ih: Array, w_hh: Array, b: Array | None = None
) -> tuple[Array, Array, Array | None]:
    """Keras LSTM weights from seqops LSTM weights (inverse of :func:`lstm_weights_from_keras`).

    Parameters
    ----------
    w_ih : array, shape ``(I, 4H)``
        seqops' input-to-gates weight, gate columns i, f, o, g.
    w_hh : array, shape ``(H, 4H)``
        seqops' hidden-to-gates weight, the same gate columns.
    b : array, shape ``(4H,)``, optional
        seqops' one bias.

    Returns
    -------
    kernel : array, shape ``(I, 4H)``
        Gate columns in keras' order i, f, c, o.
    recurrent_kernel : array, shape ``(H, 4H)``
        The same gate columns.
    bias : array, shape ``(4H,)``, or None
        ``None`` when ``b`` is.
    """
    _check_packed(w_ih, w_hh, b, 4)
    return _permute_gates(w_ih), _permute_gates(w_hh), None if b is None else _permute_gates(b)


def lstm_weights_from_flax(params: Mapping[str, Mapping[str, Array]]) -> tuple[Array, Array, Array]:
    """seqops LSTM weights from ``flax.linen.LSTMCell`` (or ``OptimizedLSTMCell``) params.

    Parameters
    ----------
    params : mapping
        ``{"ii": {"kernel": (I, H)}, "if": ..., "ig": ..., "io": ...,
        "hi": {"kernel": (H, H), "bias": (H,)}, "hf": ..., "hg": ..., "ho": ...}``; the
        ``variables`` of ``init`` (``{"params": {...}}``) are accepted too. An input-side
        ``bias``, absent in flax's cells, would be added to the hidden one.

    Returns
    -------
    w_ih : array, shape ``(I, 4H)``
    w_hh : array, shape ``(H, 4H)``
    b : array, shape ``(4H,)``
        Gate columns i, f, o, g. flax's carry is ``(c, h)``; seqops' state is ``(h, c)``.
    """
    if "params" in params and "hi" not in params:
        params = params["params"]
    missing = [f"{side}{g}" for side in "ih" for g in _FLAX_GATES if f"{side}{g}" not in params]
    if missing:
        msg = f"flax LSTMCell params lack {missing}; got keys {sorted(params)}"
        raise KeyError(msg)
    xp = array_api_compat.array_namespace(params["hi"]["kernel"])
    biases = [_sum_biases(params[f"i{g}"].get("bias"), params[f"h{g}"].get("bias")) for g in _FLAX_GATES]
    hidden = params["hi"]["kernel"].shape[-1]
    like = params["hi"]["kernel"]
    b = [
        xp.zeros((hidden,), dtype=like.dtype, device=helper_device(like)) if v is None else v for v in biases
    ]
    return (
        xp.concat([params[f"i{g}"]["kernel"] for g in _FLAX_GATES], axis=-1),
        xp.concat([params[f"h{g}"]["kernel"] for g in _FLAX_GATES], axis=-1),
        xp.concat(b, axis=-1),
    )


def lstm_weights_to_flax(w_ih: Array, w_hh: Array, b: Array | None = None) -> dict[str, dict[str, Array]]:
    """``flax.linen.LSTMCell`` params (the dict under ``"params"``) from seqops weights.

    Parameters
    ----------
    w_ih : array, shape ``(I, 4H)``
        seqops' input-to-gates weight, gate columns i, f, o, g: the ``ii``, ``if``, ``io``,
        ``ig`` kernels.
    w_hh : array, shape ``(H, 4H)``
        seqops' hidden-to-gates weight: the ``hi``, ``hf``, ``ho``, ``hg`` kernels.
    b : array, shape ``(4H,)``, optional
        Becomes the hidden-side biases (zeros when None); input kernels have no bias.

    Returns
    -------
    dict
        ``{"ii": {"kernel": (I, H)}, ..., "hi": {"kernel": (H, H), "bias": (H,)}, ...}``.
    """
    _check_packed(w_ih, w_hh, b, 4)
    if b is None:
        xp = array_api_compat.array_namespace(w_hh)
        b = xp.zeros((w_hh.shape[-1],), dtype=w_hh.dtype, device=helper_device(w_hh))
    params: dict[str, dict[str, Array]] = {}
    for g, ki, kh, bias in zip(
        _FLAX_GATES, _gate_blocks(w_ih), _gate_blocks(w_hh), _gate_blocks(b), strict=True
    ):
        params[f"i{g}"] = {"kernel": ki}
        params[f"h{g}"] = {"kernel": kh, "bias": bias}
    return params


def rnn_weights_from_torch(
    weight_ih: Array,
    weight_hh: Array,
    bias_ih: Array | None = None,
    bias_hh: Array | None = None,
) -> tuple[Array, Array, Array | None]:
    """seqops RNN weights from ``torch.nn.RNN`` / ``torch.nn.RNNCell`` parameters.

    Parameters
    ----------
    weight_ih : array, shape ``(H, I)``
        torch's ``weight_ih`` (``weight_ih_l0`` of ``nn.RNN``), transposed into ``w_ih``.
    weight_hh : array, shape ``(H, H)``
        torch's ``weight_hh`` (``weight_hh_l0``), transposed into ``w_hh``.
    bias_ih, bias_hh : array, shape ``(H,)``, optional
        Summed into one bias.

    Returns
    -------
    w_ih : array, shape ``(I, H)``
    w_hh : array, shape ``(H, H)``
    b : array, shape ``(H,)``, or None when both biases are None

    Examples
    --------
    >>> import numpy as np
    >>> w_ih, w_hh, b = rnn_weights_from_torch(np.zeros((4, 3)), np.eye(4), np.ones(4), np.ones(4))
    >>> w_ih.shape, b.tolist()
    ((3, 4), [2.0, 2.0, 2.0, 2.0])
    """
    _check_torch(weight_ih, weight_hh, bias_ih, bias_hh, 1)
    return _t(weight_ih), _t(weight_hh), _sum_biases(bias_ih, bias_hh)


def rnn_weights_to_torch(
    w_ih: Array, w_hh: Array, b: Array | None = None
) -> tuple[Array, Array, Array | None, Array | None]:
    """``torch.nn.RNN`` parameters from seqops RNN weights (inverse of the above).

    Parameters
    ----------
    w_ih : array, shape ``(I, H)``
        seqops' input-to-hidden weight.
    w_hh : array, shape ``(H, H)``
        seqops' hidden-to-hidden weight.
    b : array, shape ``(H,)``, optional
        seqops' one bias.

    Returns
    -------
    weight_ih : array, shape ``(H, I)``
    weight_hh : array, shape ``(H, H)``
    bias_ih : array, shape ``(H,)``, or None
        The whole bias; ``None`` when ``b`` is.
    bias_hh : array, shape ``(H,)``, or None
        Zeros (torch's two biases only act through their sum); ``None`` when ``b`` is.
    """
    _check_packed(w_ih, w_hh, b, 1)
    bias_hh = None if b is None else array_api_compat.array_namespace(b).zeros_like(b)
    return _t(w_ih), _t(w_hh), b, bias_hh


# seqops packs GRU gates r, z, n as torch does; keras packs z, r, h (its h is our n): the
# first two blocks swap, a permutation that is its own inverse. The GRU keeps two biases
# (b_hh's n block is scaled by r), so no converter sums them.
_SWAP_R_Z = (1, 0, 2)
_FLAX_GRU_GATES = ("r", "z", "n")  # flax names each gate; listed in seqops' order


def _check_gru(w_ih: Array, w_hh: Array, b_ih: Array | None, b_hh: Array | None) -> None:
    """``w_ih (I, 3H)``, ``w_hh (H, 3H)``, ``b_ih``/``b_hh (3H,)`` in seqops' orientation."""
    _check_packed(w_ih, w_hh, None, 3)
    hidden = w_hh.shape[0]
    _require("b_ih", b_ih, "(3H,)", (3 * hidden,))
    _require("b_hh", b_hh, "(3H,)", (3 * hidden,))


def _both_biases(b_ih: Array | None, b_hh: Array | None) -> tuple[Array | None, Array | None]:
    """Both biases, a missing one as zeros (frameworks keep both or neither); ``(None, None)`` stays."""
    if b_ih is None and b_hh is None:
        return None, None
    given = b_ih if b_ih is not None else b_hh
    zeros = array_api_compat.array_namespace(given).zeros_like(given)
    return (zeros if b_ih is None else b_ih), (zeros if b_hh is None else b_hh)


def gru_weights_from_torch(
    weight_ih: Array,
    weight_hh: Array,
    bias_ih: Array | None = None,
    bias_hh: Array | None = None,
) -> tuple[Array, Array, Array | None, Array | None]:
    """seqops GRU weights from ``torch.nn.GRU`` / ``torch.nn.GRUCell`` parameters.

    The gate order is the same (r, z, n); the weights are transposed.

    Parameters
    ----------
    weight_ih : array, shape ``(3H, I)``
        torch's ``weight_ih`` (``weight_ih_l0`` of ``nn.GRU``), gate rows r, z, n.
    weight_hh : array, shape ``(3H, H)``
        torch's ``weight_hh`` (``weight_hh_l0``), the same gate rows.
    bias_ih, bias_hh : array, shape ``(3H,)``, optional
        Kept apart (``bias_hh``'s n block is scaled by the reset gate).

    Returns
    -------
    w_ih : array, shape ``(I, 3H)``
    w_hh : array, shape ``(H, 3H)``
    b_ih, b_hh : array, shape ``(3H,)``, or None
        The biases as given.

    Examples
    --------
    >>> import numpy as np
    >>> w_ih, w_hh, b_ih, b_hh = gru_weights_from_torch(np.zeros((6, 3)), np.zeros((6, 2)))
    >>> w_ih.shape, w_hh.shape, b_ih, b_hh
    ((3, 6), (2, 6), None, None)
    """
    _check_torch(weight_ih, weight_hh, bias_ih, bias_hh, 3)
    return _t(weight_ih), _t(weight_hh), bias_ih, bias_hh


def gru_weights_to_torch(
    w_ih: Array, w_hh: Array, b_ih: Array | None = None, b_hh: Array | None = None
) -> tuple[Array, Array, Array | None, Array | None]:
    """``torch.nn.GRU`` parameters from seqops GRU weights (inverse of the above).

    Parameters
    ----------
    w_ih : array, shape ``(I, 3H)``
        seqops' input-to-gates weight, gate columns r, z, n.
    w_hh : array, shape ``(H, 3H)``
        seqops' hidden-to-gates weight, the same gate columns.
    b_ih, b_hh : array, shape ``(3H,)``, optional
        seqops' input-side and hidden-side biases.

    Returns
    -------
    weight_ih : array, shape ``(3H, I)``
    weight_hh : array, shape ``(3H, H)``
    bias_ih, bias_hh : array, shape ``(3H,)``, or None
        Both None when both biases are; a single missing one becomes zeros (a torch GRU
        has both biases or neither).
    """
    _check_gru(w_ih, w_hh, b_ih, b_hh)
    bias_ih, bias_hh = _both_biases(b_ih, b_hh)
    return _t(w_ih), _t(w_hh), bias_ih, bias_hh


def gru_weights_from_keras(
    kernel: Array, recurrent_kernel: Array, bias: Array | None = None
) -> tuple[Array, Array, Array | None, Array | None]:
    """seqops GRU weights from a ``keras.layers.GRU`` / ``GRUCell`` with ``reset_after=True``.

    Keras stores ``(in, out)`` kernels with gate blocks **z, r, h** (``h`` our ``n``) and,
    with ``reset_after=True`` (its default, the cuDNN-compatible GRU), a bias ``(2, 3H)``:
    row 0 on the input side, row 1 on the hidden side, inside ``r * (...)`` for ``h``.
    ``recurrent_activation`` must be the default sigmoid and ``activation`` tanh.

    Parameters
    ----------
    kernel : array, shape ``(I, 3H)``
        Keras' input kernel, gate columns z, r, h.
    recurrent_kernel : array, shape ``(H, 3H)``
        Keras' recurrent kernel, the same gate columns.
    bias : array, shape ``(2, 3H)``, optional
        ``(3H,)`` is keras' ``reset_after=False`` GRU (the reset gate applied before the
        recurrent product), a different cell: refused.

    Returns
    -------
    w_ih : array, shape ``(I, 3H)``
    w_hh : array, shape ``(H, 3H)``
    b_ih, b_hh : array, shape ``(3H,)``, or None
        Gate columns r, z, n.
    """
    _check_packed(kernel, recurrent_kernel, None, 3)
    w_ih, w_hh = _permute_gates(kernel, _SWAP_R_Z), _permute_gates(recurrent_kernel, _SWAP_R_Z)
    if bias is None:
        return w_ih, w_hh, None, None
    width = 3 * recurrent_kernel.shape[0]
    if tuple(bias.shape) == (width,):
        msg = (
            f"bias of shape (3H,) = ({width},) is keras' reset_after=False GRU, which applies the "
            "reset gate before the recurrent product: a different cell; use reset_after=True "
            "(bias (2, 3H))"
        )
        raise ValueError(msg)
    _require("bias", bias, "(2, 3H)", (2, width))
    return w_ih, w_hh, _permute_gates(bias[0, ...], _SWAP_R_Z), _permute_gates(bias[1, ...], _SWAP_R_Z)


def gru_weights_to_keras(
    w_ih: Array, w_hh: Array, b_ih: Array | None = None, b_hh: Array | None = None
) -> tuple[Array, Array, Array | None]:
    """Keras GRU weights (``reset_after=True``) from seqops GRU weights (inverse of
    :func:`gru_weights_from_keras`).

    Parameters
    ----------
    w_ih : array, shape ``(I, 3H)``
        seqops' input-to-gates weight, gate columns r, z, n.
    w_hh : array, shape ``(H, 3H)``
        seqops' hidden-to-gates weight, the same gate columns.
    b_ih, b_hh : array, shape ``(3H,)``, optional
        seqops' input-side and hidden-side biases; a single missing one becomes zeros.

    Returns
    -------
    kernel : array, shape ``(I, 3H)``
        Gate columns in keras' order z, r, h.
    recurrent_kernel : array, shape ``(H, 3H)``
        The same gate columns.
    bias : array, shape ``(2, 3H)``, or None
        Row 0 the input side, row 1 the hidden side; ``None`` when both biases are.
    """
    _check_gru(w_ih, w_hh, b_ih, b_hh)
    bias_ih, bias_hh = _both_biases(b_ih, b_hh)
    kernel, recurrent = _permute_gates(w_ih, _SWAP_R_Z), _permute_gates(w_hh, _SWAP_R_Z)
    if bias_ih is None or bias_hh is None:
        return kernel, recurrent, None
    xp = array_api_compat.array_namespace(bias_ih)
    bias = xp.stack([_permute_gates(bias_ih, _SWAP_R_Z), _permute_gates(bias_hh, _SWAP_R_Z)])  # (2, 3H)
    return kernel, recurrent, bias


def gru_weights_from_flax(
    params: Mapping[str, Mapping[str, Array]],
) -> tuple[Array, Array, Array, Array]:
    """seqops GRU weights from ``flax.linen.GRUCell`` params.

    flax computes ``r = σ(ir(x) + hr(h))``, ``z = σ(iz(x) + hz(h))``, ``n = tanh(in(x) +
    r * hn(h))`` with one ``Dense`` per gate: ``ir``, ``iz``, ``in`` with bias,
    ``hr``, ``hz`` without, ``hn`` with.

    Parameters
    ----------
    params : mapping
        ``{"ir": {"kernel": (I, H), "bias": (H,)}, "iz": ..., "in": ...,
        "hr": {"kernel": (H, H)}, "hz": ..., "hn": {"kernel": (H, H), "bias": (H,)}}``; the
        ``variables`` of ``init`` (``{"params": {...}}``) are accepted too. A missing
        ``bias`` is zero.

    Returns
    -------
    w_ih : array, shape ``(I, 3H)``
    w_hh : array, shape ``(H, 3H)``
    b_ih, b_hh : array, shape ``(3H,)``
        Gate columns r, z, n; the input biases in ``b_ih``, ``hn``'s (and any other
        hidden-side one) in ``b_hh``.
    """
    if "params" in params and "hr" not in params:
        params = params["params"]
    missing = [f"{side}{g}" for side in "ih" for g in _FLAX_GRU_GATES if f"{side}{g}" not in params]
    if missing:
        msg = f"flax GRUCell params lack {missing}; got keys {sorted(params)}"
        raise KeyError(msg)
    like = params["hr"]["kernel"]
    xp = array_api_compat.array_namespace(like)
    hidden = like.shape[-1]

    def bias(name: str) -> Array:
        found = params[name].get("bias")
        if found is not None:
            return found
        return xp.zeros((hidden,), dtype=like.dtype, device=helper_device(like))

    return (
        xp.concat([params[f"i{g}"]["kernel"] for g in _FLAX_GRU_GATES], axis=-1),
        xp.concat([params[f"h{g}"]["kernel"] for g in _FLAX_GRU_GATES], axis=-1),
        xp.concat([bias(f"i{g}") for g in _FLAX_GRU_GATES], axis=-1),
        xp.concat([bias(f"h{g}") for g in _FLAX_GRU_GATES], axis=-1),
    )


def gru_weights_to_flax(
    w_ih: Array, w_hh: Array, b_ih: Array | None = None, b_hh: Array | None = None
) -> dict[str, dict[str, Array]]:
    """``flax.linen.GRUCell`` params (the dict under ``"params"``) from seqops weights.

    Parameters
    ----------
    w_ih : array, shape ``(I, 3H)``
        seqops' input-to-gates weight, gate columns r, z, n: the ``ir``, ``iz``, ``in`` kernels.
    w_hh : array, shape ``(H, 3H)``
        seqops' hidden-to-gates weight: the ``hr``, ``hz``, ``hn`` kernels.
    b_ih, b_hh : array, shape ``(3H,)``, optional
        flax has no ``hr``/``hz`` bias: the r and z blocks of ``b_hh`` join ``ir``/``iz``'s
        (they only act through the sum); ``in`` gets ``b_ih``'s n block and ``hn``
        ``b_hh``'s. Missing biases are zeros.

    Returns
    -------
    dict
        ``{"ir": {"kernel": (I, H), "bias": (H,)}, "iz": ..., "in": ..., "hr": {"kernel": (H, H)},
        "hz": ..., "hn": {"kernel": (H, H), "bias": (H,)}}``.
    """
    _check_gru(w_ih, w_hh, b_ih, b_hh)
    xp = array_api_compat.array_namespace(w_hh)
    zeros = xp.zeros((w_hh.shape[-1],), dtype=w_hh.dtype, device=helper_device(w_hh))  # (3H,)
    bi = _gate_blocks(zeros if b_ih is None else b_ih, 3)
    bh = _gate_blocks(zeros if b_hh is None else b_hh, 3)
    ki, kh = _gate_blocks(w_ih, 3), _gate_blocks(w_hh, 3)
    return {
        "ir": {"kernel": ki[0], "bias": bi[0] + bh[0]},
        "iz": {"kernel": ki[1], "bias": bi[1] + bh[1]},
        "in": {"kernel": ki[2], "bias": bi[2]},
        "hr": {"kernel": kh[0]},
        "hz": {"kernel": kh[1]},
        "hn": {"kernel": kh[2], "bias": bh[2]},
    }


# -- Hugging Face transformers layers --------------------------------------------------------
#
# One function per family, all alike: ``<family>_..._params_from_hf(state_dict, prefix="")``
# reads the arrays of one layer by their Hugging Face key names, ``prefix + name``. The state
# dict may be the layer's own (``prefix=""``) or the whole model's (``prefix="layers.0."``;
# the trailing dot may be left out); its values may be torch tensors or arrays of any library
# (the results keep their library). ``nn.Linear`` weights ``(out, in)`` are transposed to
# seqops' ``(in, out)``; GPT-2's ``Conv1D`` weights already are ``(in, out)``. Missing biases
# become None. The options the state dict does not hold (heads, activation, eps, scale) come
# from the model's config; each docstring says which call the parameters are for.


class PreNormBlockParams(NamedTuple):
    """An RMS-norm pre-norm block (Llama's decoder layer, T5's block), composed from seqops ops::

        h = x + multi_head_attention(n, n, n, attn, ...)  # n = rms_norm(x, attn_norm)
        h = h + multi_head_attention(m, mem, mem, cross_attn, ...)  # m = rms_norm(h, cross_attn_norm)
        y = h + gated_feed_forward(rms_norm(h, ff_norm), w_gate, w_up, w_down, b_gate, b_up, b_down)

    The second line is for decoders only. With ``w_gate`` None the feed-forward is not gated:
    ``feed_forward(f, w_up, b_up, w_down, b_down, activation=...)`` (T5's ReLU
    ``DenseReluDense``). A NamedTuple: a JAX pytree.
    """

    attn: MHAParams  # self-attention, D -> D
    attn_norm: Array  # (D,) RMS norm weight before the self-attention
    w_gate: Array | None  # (D, F) or None (ungated feed-forward)
    w_up: Array  # (D, F)
    w_down: Array  # (F, D)
    ff_norm: Array  # (D,) RMS norm weight before the feed-forward
    b_gate: Array | None = None  # (F,)
    b_up: Array | None = None  # (F,)
    b_down: Array | None = None  # (D,)
    cross_attn: MHAParams | None = None  # decoders: queries D, keys/values D_mem -> D
    cross_attn_norm: Array | None = None  # (D,)
    relative_attention_bias: Array | None = None  # T5's first block: (num_buckets, heads)


def _prefixed(prefix: str) -> str:
    return prefix + "." if prefix and not prefix.endswith(".") else prefix


def _entry(sd: Mapping[str, Array], key: str) -> Array:
    if key not in sd:
        near = sorted(k for k in sd if k.startswith(key.rsplit(".", 2)[0]))[:8]
        msg = f"the state dict has no {key!r} (check the prefix); keys nearby: {near or sorted(sd)[:8]}"
        raise KeyError(msg)
    return sd[key]


def _linear(sd: Mapping[str, Array], name: str) -> tuple[Array, Array | None]:
    """``nn.Linear`` ``name``: its weight as ``(in, out)`` and its bias (or None)."""
    weight = _entry(sd, f"{name}.weight")
    if len(weight.shape) != 2:
        msg = f"{name}.weight must be 2-D (out, in); got shape {tuple(weight.shape)}"
        raise ValueError(msg)
    return _t(weight), sd.get(f"{name}.bias")


def _attention(sd: Mapping[str, Array], prefix: str, q: str, k: str, v: str, o: str) -> MHAParams:
    """:class:`MHAParams` from four ``nn.Linear`` named ``prefix + q`` (etc.)."""
    (w_q, b_q), (w_k, b_k), (w_v, b_v), (w_o, b_o) = (_linear(sd, prefix + n) for n in (q, k, v, o))
    return MHAParams(w_q, w_k, w_v, w_o, b_q, b_k, b_v, b_o)


def bert_layer_params_from_hf(state_dict: Mapping[str, Array], prefix: str = "") -> EncoderLayerParams:
    """:class:`EncoderLayerParams` of a Hugging Face ``BertLayer`` (RoBERTa's too).

    For :func:`seqops.transformer_encoder_layer` post-norm (the default ``norm_first=False``)
    with ``num_heads=config.num_attention_heads``, ``activation="gelu"`` (``config.hidden_act``;
    ``"gelu"`` is the exact form) and ``eps=config.layer_norm_eps``. HF's additive
    ``attention_mask`` becomes ``key_padding_mask`` (True = real token).

    Parameters
    ----------
    state_dict : mapping of str to array
        Keys ``prefix + "attention.self.query.weight"``, ``"attention.self.key.*"``,
        ``"attention.self.value.*"``, ``"attention.output.dense.*"``,
        ``"attention.output.LayerNorm.*"``, ``"intermediate.dense.*"``, ``"output.dense.*"``,
        ``"output.LayerNorm.*"``.
    prefix : str
        E.g. ``"encoder.layer.0."`` for the state dict of a ``BertModel``.

    Returns
    -------
    EncoderLayerParams

    Examples
    --------
    >>> import numpy as np
    >>> names = ["attention.self.query", "attention.self.key", "attention.self.value",
    ...          "attention.output.dense"]
    >>> sd = {f"{n}.weight": np.zeros((4, 4)) for n in names}
    >>> sd |= {"intermediate.dense.weight": np.zeros((16, 4)), "output.dense.weight": np.zeros((4, 16))}
    >>> p = bert_layer_params_from_hf(sd)
    >>> p.w1.shape, p.w2.shape, p.attn.b_q
    ((4, 16), (16, 4), None)
    """
    sd, pre = state_dict, _prefixed(prefix)
    w1, b1 = _linear(sd, f"{pre}intermediate.dense")
    w2, b2 = _linear(sd, f"{pre}output.dense")
    return EncoderLayerParams(
        attn=_attention(sd, f"{pre}attention.", "self.query", "self.key", "self.value", "output.dense"),
        w1=w1,
        b1=b1,
        w2=w2,
        b2=b2,
        norm1_weight=sd.get(f"{pre}attention.output.LayerNorm.weight"),
        norm1_bias=sd.get(f"{pre}attention.output.LayerNorm.bias"),
        norm2_weight=sd.get(f"{pre}output.LayerNorm.weight"),
        norm2_bias=sd.get(f"{pre}output.LayerNorm.bias"),
    )


def gpt2_block_params_from_hf(state_dict: Mapping[str, Array], prefix: str = "") -> EncoderLayerParams:
    """:class:`EncoderLayerParams` of a Hugging Face ``GPT2Block`` (self-attention only).

    GPT-2's block is a pre-norm causal encoder layer: :func:`seqops.transformer_encoder_layer`
    with ``norm_first=True, is_causal=True, activation="gelu_tanh"`` (``"gelu_new"``),
    ``eps=config.layer_norm_epsilon``, or composed as ``x + multi_head_attention(layer_norm(x,
    norm1_weight, norm1_bias), ..., is_causal=True)`` then ``x + feed_forward(layer_norm(x,
    norm2_weight, norm2_bias), ...)``. The default logit scale is GPT-2's; with
    ``config.scale_attn_by_inverse_layer_idx`` pass ``scale=head_dim ** -0.5 / (layer_idx + 1)``
    (``config.scale_attn_weights=False``: ``scale=1.0``). The cross-attention of
    ``add_cross_attention=True`` is not converted.

    Parameters
    ----------
    state_dict : mapping of str to array
        Keys ``prefix + "ln_1.*"``, ``"attn.c_attn.*"`` (``Conv1D``: weight ``(D, 3D)``, the
        query, key and value columns one after the other), ``"attn.c_proj.*"``, ``"ln_2.*"``,
        ``"mlp.c_fc.*"``, ``"mlp.c_proj.*"``.
    prefix : str
        E.g. ``"h.0."`` for the state dict of a ``GPT2Model``.

    Returns
    -------
    EncoderLayerParams
        ``Conv1D`` weights are used as they are (already ``(in, out)``).

    Examples
    --------
    >>> import numpy as np
    >>> sd = {"attn.c_attn.weight": np.zeros((4, 12)), "attn.c_attn.bias": np.zeros(12),
    ...       "attn.c_proj.weight": np.eye(4), "mlp.c_fc.weight": np.zeros((4, 16)),
    ...       "mlp.c_proj.weight": np.zeros((16, 4))}
    >>> p = gpt2_block_params_from_hf(sd)
    >>> p.attn.w_k.shape, p.attn.b_v.shape, p.attn.b_o
    ((4, 4), (4,), None)
    """
    sd, pre = state_dict, _prefixed(prefix)
    packed, packed_bias = _entry(sd, f"{pre}attn.c_attn.weight"), sd.get(f"{pre}attn.c_attn.bias")
    width = packed.shape[0]
    if tuple(packed.shape) != (width, 3 * width):
        msg = f"{pre}attn.c_attn.weight must have shape (D, 3D) (Conv1D: in, out); got {tuple(packed.shape)}"
        raise ValueError(msg)
    w_q, w_k, w_v = (packed[:, i * width : (i + 1) * width] for i in range(3))
    w_o, b_o = _entry(sd, f"{pre}attn.c_proj.weight"), sd.get(f"{pre}attn.c_proj.bias")
    b_q = b_k = b_v = None
    if packed_bias is not None:
        b_q, b_k, b_v = (packed_bias[i * width : (i + 1) * width] for i in range(3))
    return EncoderLayerParams(
        attn=MHAParams(w_q, w_k, w_v, w_o, b_q, b_k, b_v, b_o),
        w1=_entry(sd, f"{pre}mlp.c_fc.weight"),
        b1=sd.get(f"{pre}mlp.c_fc.bias"),
        w2=_entry(sd, f"{pre}mlp.c_proj.weight"),
        b2=sd.get(f"{pre}mlp.c_proj.bias"),
        norm1_weight=sd.get(f"{pre}ln_1.weight"),
        norm1_bias=sd.get(f"{pre}ln_1.bias"),
        norm2_weight=sd.get(f"{pre}ln_2.weight"),
        norm2_bias=sd.get(f"{pre}ln_2.bias"),
    )


_BART_ATTENTION = ("q_proj", "k_proj", "v_proj", "out_proj")


def bart_encoder_layer_params_from_hf(
    state_dict: Mapping[str, Array], prefix: str = ""
) -> EncoderLayerParams:
    """:class:`EncoderLayerParams` of a Hugging Face ``BartEncoderLayer`` (mBART's, Marian's,
    PLBart's alike).

    For :func:`seqops.transformer_encoder_layer` post-norm (``norm_first=False``; mBART is
    pre-norm: ``norm_first=True``) with ``num_heads=config.encoder_attention_heads``,
    ``activation=config.activation_function`` (``"gelu"``, the exact form) and the default
    ``eps=1e-5`` (Bart's ``nn.LayerNorm``).

    Parameters
    ----------
    state_dict : mapping of str to array
        Keys ``prefix + "self_attn.q_proj.*"`` (``k_proj``, ``v_proj``, ``out_proj``),
        ``"self_attn_layer_norm.*"``, ``"fc1.*"``, ``"fc2.*"``, ``"final_layer_norm.*"``.
    prefix : str
        E.g. ``"encoder.layers.0."`` for the state dict of a ``BartModel``.

    Returns
    -------
    EncoderLayerParams
    """
    sd, pre = state_dict, _prefixed(prefix)
    w1, b1 = _linear(sd, f"{pre}fc1")
    w2, b2 = _linear(sd, f"{pre}fc2")
    return EncoderLayerParams(
        attn=_attention(sd, f"{pre}self_attn.", *_BART_ATTENTION),
        w1=w1,
        b1=b1,
        w2=w2,
        b2=b2,
        norm1_weight=sd.get(f"{pre}self_attn_layer_norm.weight"),
        norm1_bias=sd.get(f"{pre}self_attn_layer_norm.bias"),
        norm2_weight=sd.get(f"{pre}final_layer_norm.weight"),
        norm2_bias=sd.get(f"{pre}final_layer_norm.bias"),
    )


def bart_decoder_layer_params_from_hf(
    state_dict: Mapping[str, Array], prefix: str = ""
) -> DecoderLayerParams:
    """:class:`DecoderLayerParams` of a Hugging Face ``BartDecoderLayer``.

    For :func:`seqops.transformer_decoder_layer` post-norm (``norm_first=False``), causal (its
    default ``is_causal=True``), ``num_heads=config.decoder_attention_heads``,
    ``activation=config.activation_function`` and the default ``eps=1e-5``; the encoder's
    ``attention_mask`` becomes ``memory_key_padding_mask`` (True = real token).

    Parameters
    ----------
    state_dict : mapping of str to array
        Keys ``prefix + "self_attn.*_proj.*"``, ``"self_attn_layer_norm.*"``,
        ``"encoder_attn.*_proj.*"``, ``"encoder_attn_layer_norm.*"``, ``"fc1.*"``, ``"fc2.*"``,
        ``"final_layer_norm.*"``.
    prefix : str
        E.g. ``"decoder.layers.0."`` for the state dict of a ``BartModel``.

    Returns
    -------
    DecoderLayerParams
        ``norm1`` is ``self_attn_layer_norm``, ``norm2`` ``encoder_attn_layer_norm``, ``norm3``
        ``final_layer_norm``.
    """
    sd, pre = state_dict, _prefixed(prefix)
    w1, b1 = _linear(sd, f"{pre}fc1")
    w2, b2 = _linear(sd, f"{pre}fc2")
    norms = ("self_attn_layer_norm", "encoder_attn_layer_norm", "final_layer_norm")
    return DecoderLayerParams(
        self_attn=_attention(sd, f"{pre}self_attn.", *_BART_ATTENTION),
        cross_attn=_attention(sd, f"{pre}encoder_attn.", *_BART_ATTENTION),
        w1=w1,
        b1=b1,
        w2=w2,
        b2=b2,
        **{
            f"norm{i}_{kind}": sd.get(f"{pre}{norm}.{kind}")
            for i, norm in enumerate(norms, 1)
            for kind in ("weight", "bias")
        },
    )


def llama_layer_params_from_hf(state_dict: Mapping[str, Array], prefix: str = "") -> PreNormBlockParams:
    """:class:`PreNormBlockParams` of a Hugging Face ``LlamaDecoderLayer`` (Mistral's, Qwen2's
    and other Llama-like layers with the same key names).

    The layer is ``h = x + multi_head_attention(n, n, n, attn, num_heads=config.num_attention_heads,
    num_kv_heads=config.num_key_value_heads, rotary=seqops.Rotary(base=rope_theta),
    is_causal=True)`` with ``n = rms_norm(x, attn_norm, eps=config.rms_norm_eps)``, then
    ``h + gated_feed_forward(rms_norm(h, ff_norm, eps=...), w_gate, w_up, w_down)`` (SwiGLU,
    ``config.hidden_act == "silu"``). ``rope_theta`` is ``config.rope_parameters["rope_theta"]``
    (transformers 5) for the default RoPE type; scaled RoPE variants are not covered.

    Parameters
    ----------
    state_dict : mapping of str to array
        Keys ``prefix + "self_attn.q_proj.weight"`` (``k_proj``, ``v_proj``, ``o_proj``; biases
        with ``config.attention_bias``), ``"mlp.gate_proj.weight"`` (``up_proj``, ``down_proj``;
        biases with ``config.mlp_bias``), ``"input_layernorm.weight"``,
        ``"post_attention_layernorm.weight"``.
    prefix : str
        E.g. ``"layers.0."`` for the state dict of a ``LlamaModel`` (``"model.layers.0."`` for
        ``LlamaForCausalLM``).

    Returns
    -------
    PreNormBlockParams
        ``attn.w_k``/``w_v`` are ``(D, num_kv_heads · head_dim)`` (grouped-query attention).

    Examples
    --------
    >>> import numpy as np
    >>> sd = {f"self_attn.{n}_proj.weight": np.zeros((8 if n in "kv" else 16, 16)) for n in "qkvo"}
    >>> sd |= {f"mlp.{n}_proj.weight": np.zeros((32, 16)) for n in ("gate", "up")}
    >>> sd |= {"mlp.down_proj.weight": np.zeros((16, 32)), "input_layernorm.weight": np.ones(16),
    ...        "post_attention_layernorm.weight": np.ones(16)}
    >>> p = llama_layer_params_from_hf(sd)
    >>> p.attn.w_k.shape, p.w_gate.shape, p.w_down.shape
    ((16, 8), (16, 32), (32, 16))
    """
    sd, pre = state_dict, _prefixed(prefix)
    w_gate, b_gate = _linear(sd, f"{pre}mlp.gate_proj")
    w_up, b_up = _linear(sd, f"{pre}mlp.up_proj")
    w_down, b_down = _linear(sd, f"{pre}mlp.down_proj")
    return PreNormBlockParams(
        attn=_attention(sd, f"{pre}self_attn.", "q_proj", "k_proj", "v_proj", "o_proj"),
        attn_norm=_entry(sd, f"{pre}input_layernorm.weight"),
        w_gate=w_gate,
        w_up=w_up,
        w_down=w_down,
        ff_norm=_entry(sd, f"{pre}post_attention_layernorm.weight"),
        b_gate=b_gate,
        b_up=b_up,
        b_down=b_down,
    )


def t5_block_params_from_hf(state_dict: Mapping[str, Array], prefix: str = "") -> PreNormBlockParams:
    """:class:`PreNormBlockParams` of a Hugging Face ``T5Block`` (encoder or decoder; T5 v1.1,
    mT5 and Flan-T5 alike).

    T5's attention has no biases and **no** ``1/sqrt(d)`` scaling (pass ``scale=1.0``), adds
    the relative position bias of the first block's ``relative_attention_bias`` to every
    block's self-attention (:func:`t5_relative_position_bias`, as ``bias=``), and its
    ``T5LayerNorm`` is :func:`seqops.rms_norm` with ``eps=config.layer_norm_epsilon``. The
    feed-forward is ``feed_forward(f, w_up, None, w_down, None, activation="relu")`` for T5's
    ``DenseReluDense`` (``w_gate`` None), ``gated_feed_forward(f, w_gate, w_up, w_down,
    activation="gelu_tanh")`` for the gated ``"gated-gelu"`` of T5 v1.1 (``wi_0`` is the gate,
    ``wi_1`` the linear part).

    Parameters
    ----------
    state_dict : mapping of str to array
        Keys ``prefix + "layer.0.SelfAttention.q.weight"`` (``k``, ``v``, ``o``;
        ``relative_attention_bias.weight`` in the first block), ``"layer.0.layer_norm.weight"``;
        decoders ``"layer.1.EncDecAttention.*"`` and ``"layer.1.layer_norm.weight"``; then the
        feed-forward ``"layer.{1|2}.DenseReluDense.wi.weight"`` (or ``wi_0``, ``wi_1``),
        ``"...DenseReluDense.wo.weight"``, ``"layer.{1|2}.layer_norm.weight"``.
    prefix : str
        E.g. ``"encoder.block.0."`` for the state dict of a ``T5Model`` or ``T5EncoderModel``.

    Returns
    -------
    PreNormBlockParams
        ``relative_attention_bias`` ``(num_buckets, heads)`` where the block has it, else None;
        ``cross_attn`` and ``cross_attn_norm`` for decoder blocks.

    Examples
    --------
    >>> import numpy as np
    >>> sd = {f"layer.0.SelfAttention.{n}.weight": np.zeros((12, 8) if n != "o" else (8, 12)) for n in "qkvo"}
    >>> sd |= {"layer.0.layer_norm.weight": np.ones(8), "layer.1.layer_norm.weight": np.ones(8),
    ...        "layer.1.DenseReluDense.wi.weight": np.zeros((32, 8)),
    ...        "layer.1.DenseReluDense.wo.weight": np.zeros((8, 32))}
    >>> p = t5_block_params_from_hf(sd)
    >>> p.attn.w_q.shape, p.w_gate, p.w_up.shape, p.cross_attn
    ((8, 12), None, (8, 32), None)
    """
    sd, pre = state_dict, _prefixed(prefix)
    decoder = f"{pre}layer.1.EncDecAttention.q.weight" in sd
    ff = f"{pre}layer.{2 if decoder else 1}."
    gated = f"{ff}DenseReluDense.wi_0.weight" in sd
    w_gate = _t(_entry(sd, f"{ff}DenseReluDense.wi_0.weight")) if gated else None
    w_up = _t(_entry(sd, f"{ff}DenseReluDense.{'wi_1' if gated else 'wi'}.weight"))
    return PreNormBlockParams(
        attn=_attention(sd, f"{pre}layer.0.SelfAttention.", "q", "k", "v", "o"),
        attn_norm=_entry(sd, f"{pre}layer.0.layer_norm.weight"),
        w_gate=w_gate,
        w_up=w_up,
        w_down=_t(_entry(sd, f"{ff}DenseReluDense.wo.weight")),
        ff_norm=_entry(sd, f"{ff}layer_norm.weight"),
        cross_attn=_attention(sd, f"{pre}layer.1.EncDecAttention.", "q", "k", "v", "o") if decoder else None,
        cross_attn_norm=_entry(sd, f"{pre}layer.1.layer_norm.weight") if decoder else None,
        relative_attention_bias=sd.get(f"{pre}layer.0.SelfAttention.relative_attention_bias.weight"),
    )


def t5_relative_position_bias(
    relative_attention_bias: Array,
    query_length: int,
    key_length: int,
    /,
    *,
    bidirectional: bool = True,
    num_buckets: int = 32,
    max_distance: int = 128,
    offset: int = 0,
) -> Array:
    """T5's relative position bias ``(heads, L, S)`` from its bucket table, for
    :func:`seqops.multi_head_attention`'s ``bias=`` (``T5Attention.compute_bias``).

    Query ``i`` (at position ``offset + i``) and key ``j`` fall in the bucket of the relative
    position ``j - offset - i``, by ``T5Attention._relative_position_bucket``: when
    ``bidirectional``, each direction has half the buckets; of a direction's ``n`` buckets,
    the first ``n / 2`` hold the exact distances ``0 .. n/2 - 1`` and the others logarithmic
    bins up to ``max_distance``, farther distances sharing the last. The logarithm is taken
    in float32 as Hugging Face does, so the buckets are the same.

    Parameters
    ----------
    relative_attention_bias : array, shape ``(num_buckets, heads)``
        The first block's ``layer.0.SelfAttention.relative_attention_bias.weight``
        (:attr:`PreNormBlockParams.relative_attention_bias`).
    query_length, key_length : int
        ``L`` and ``S``: the number of queries and of keys.
    bidirectional : bool
        True for the encoder, False for the decoder's causal self-attention
        (``not config.is_decoder``).
    num_buckets, max_distance : int
        ``config.relative_attention_num_buckets`` and ``config.relative_attention_max_distance``.
    offset : int or 0-d integer array
        Position of the first query (decoding with a cache: the number of cached tokens).

    Returns
    -------
    bias : array, shape ``(heads, query_length, key_length)``
        Library, device and dtype of ``relative_attention_bias``.

    Examples
    --------
    >>> import numpy as np
    >>> table = np.arange(32.0)[:, None]  # one head: the bias is the bucket number
    >>> t5_relative_position_bias(table, 3, 3)[0].tolist()  # j - i > 0 counts from bucket 16
    [[0.0, 17.0, 18.0], [1.0, 0.0, 17.0], [2.0, 1.0, 0.0]]
    """
    table = relative_attention_bias
    if len(table.shape) != 2:
        msg = f"relative_attention_bias must be 2-D (num_buckets, heads); got shape {tuple(table.shape)}"
        raise ValueError(msg)
    if table.shape[0] != num_buckets:
        msg = f"relative_attention_bias has {table.shape[0]} buckets (rows); num_buckets={num_buckets}"
        raise ValueError(msg)
    xp = array_api_compat.array_namespace(table)
    device = helper_device(table)
    keys, queries = xp.arange(key_length, device=device), xp.arange(query_length, device=device)
    relative = keys[None, :] - queries[:, None] - offset  # (L, S)
    if bidirectional:  # half the buckets for keys after the query
        num_buckets //= 2
        buckets = xp.astype(relative > 0, relative.dtype) * num_buckets
        distance = xp.abs(relative)
    else:  # keys after the query share bucket 0
        buckets = xp.zeros_like(relative)
        distance = xp.clip(-relative, min=0)
    exact = num_buckets // 2
    scaled = xp.log(xp.astype(xp.clip(distance, min=1), xp.float32) / exact)  # float32, as HF
    scaled = scaled / math.log(max_distance / exact) * (num_buckets - exact)
    large = xp.clip(exact + xp.astype(scaled, distance.dtype), max=num_buckets - 1)
    buckets = buckets + xp.where(distance < exact, distance, large)
    values = xp.take(table, xp.reshape(buckets, (-1,)), axis=0)  # (L·S, heads)
    values = xp.reshape(values, (query_length, key_length, table.shape[1]))
    return xp.permute_dims(values, (2, 0, 1))


__all__ = [
    "PreNormBlockParams",
    "bart_decoder_layer_params_from_hf",
    "bart_encoder_layer_params_from_hf",
    "bert_layer_params_from_hf",
    "decoder_layer_params_from_torch",
    "encoder_layer_params_from_torch",
    "gpt2_block_params_from_hf",
    "gru_weights_from_flax",
    "gru_weights_from_keras",
    "gru_weights_from_torch",
    "gru_weights_to_flax",
    "gru_weights_to_keras",
    "gru_weights_to_torch",
    "llama_layer_params_from_hf",
    "lstm_weights_from_flax",
    "lstm_weights_from_keras",
    "lstm_weights_from_torch",
    "lstm_weights_to_flax",
    "lstm_weights_to_keras",
    "lstm_weights_to_torch",
    "mha_params_from_torch",
    "rnn_weights_from_torch",
    "rnn_weights_to_torch",
    "t5_block_params_from_hf",
    "t5_relative_position_bias",
]
