"""Converters between framework parameter conventions and seqops'.

Pure array code (each function works on the arrays of any library); no framework import.
seqops applies weights as ``x @ w`` with ``w (D_in, D_out)``; torch stores
``weight (D_out, D_in)`` and computes ``x @ weight.T``.
"""

from __future__ import annotations

from collections.abc import Mapping

import array_api_compat

from seqops._lib.typing import Array
from seqops.attention import MHAParams
from seqops.transformer import EncoderLayerParams


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
    out_proj_weight : array, shape ``(D, D)``
    out_proj_bias : array, shape ``(D,)`` or None

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


# -- recurrent family ---------------------------------------------------------------
#
# seqops packs LSTM gates i, f, o, g; torch (i, f, g, o) and keras (i, f, c, o) differ from
# it by swapping the last two blocks, a permutation that is its own inverse.
_SWAP_G_O = (0, 1, 3, 2)
_FLAX_GATES = ("i", "f", "o", "g")  # flax names each gate; listed in seqops' order


def _permute_gates(x: Array, order: tuple[int, ...] = _SWAP_G_O) -> Array:
    """Reorder the 4 equal blocks of the last axis: block ``j`` of the result is ``order[j]``."""
    xp = array_api_compat.array_namespace(x)
    n = x.shape[-1] // 4
    return xp.concat([x[..., k * n : (k + 1) * n] for k in order], axis=-1)


def _gate_blocks(x: Array) -> list[Array]:
    """The 4 blocks ``(..., H)`` of the last axis ``(..., 4H)``, in storage order."""
    n = x.shape[-1] // 4
    return [x[..., k * n : (k + 1) * n] for k in range(4)]


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
    w_hh : array, shape ``(H, 4H)``
    b : array, shape ``(4H,)``, optional

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
    recurrent_kernel : array, shape ``(H, 4H)``
    bias : array, shape ``(4H,)``, optional

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
    """``(kernel (I, 4H), recurrent_kernel (H, 4H), bias (4H,) or None)`` for keras' LSTM."""
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
        xp.zeros((hidden,), dtype=like.dtype, device=array_api_compat.device(like)) if v is None else v
        for v in biases
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
    w_hh : array, shape ``(H, 4H)``
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
        b = xp.zeros((w_hh.shape[-1],), dtype=w_hh.dtype, device=array_api_compat.device(w_hh))
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
    weight_hh : array, shape ``(H, H)``
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
    """``(weight_ih (H, I), weight_hh (H, H), bias_ih (H,), bias_hh = zeros)`` for torch's RNN.

    Both biases are None when ``b`` is None.
    """
    _check_packed(w_ih, w_hh, b, 1)
    bias_hh = None if b is None else array_api_compat.array_namespace(b).zeros_like(b)
    return _t(w_ih), _t(w_hh), b, bias_hh


__all__ = [
    "encoder_layer_params_from_torch",
    "lstm_weights_from_flax",
    "lstm_weights_from_keras",
    "lstm_weights_from_torch",
    "lstm_weights_to_flax",
    "lstm_weights_to_keras",
    "lstm_weights_to_torch",
    "mha_params_from_torch",
    "rnn_weights_from_torch",
    "rnn_weights_to_torch",
]
