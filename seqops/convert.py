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


__all__ = ["encoder_layer_params_from_torch", "mha_params_from_torch"]
