"""Attention family: scaled dot-product and multi-head attention, masks, positional encodings."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from seqops import ops
from seqops._dispatch import (
    creation_backend,
    creation_device,
    creation_float_dtype,
    public,
    resolve,
)
from seqops._lib import validate as check
from seqops._lib.typing import Array, Device, DType
from seqops.contract import Backend


@public(ops.scaled_dot_product_attention)
def scaled_dot_product_attention(
    q: Array,
    k: Array,
    v: Array,
    /,
    *,
    mask: Array | None = None,
    bias: Array | None = None,
    is_causal: bool = False,
    scale: float | None = None,
    dropout_p: float = 0.0,
    rng: Any = None,
    enable_gqa: bool = False,
    return_weights: bool = False,
) -> Any:
    """Scaled dot-product attention, ``softmax(q kᵀ · scale + bias, mask) @ v``.

    Parameters
    ----------
    q : array, shape ``(..., L, E)``
        Queries; heads, if any, are a leading dimension (``(batch, heads, L, E)``).
    k : array, shape ``(..., S, E)``
        Keys, same dtype as ``q``.
    v : array, shape ``(..., S, Ev)``
        Values, same dtype as ``q``. Leading dimensions of ``q``, ``k``, ``v`` broadcast.
    mask : bool array broadcastable to ``(..., L, S)``, optional
        **True = attend.**
    bias : float array broadcastable to ``(..., L, S)``, optional
        Added to the logits (``-inf`` entries act as a mask). Same dtype as ``q``.
    is_causal : bool
        Query ``i`` attends keys ``j <= i`` (top-left alignment, as torch and JAX).
        ``mask``, ``bias`` and ``is_causal`` combine.
    scale : float, optional
        Multiplies the logits; default ``1 / sqrt(E)``.
    dropout_p : float
        Dropout probability on the attention weights; ``> 0`` needs ``rng``.
    rng : int or native generator/key, optional
        Randomness for dropout (see *Randomness* in the README).
    enable_gqa : bool
        Grouped-query attention: ``k``/``v`` may have fewer heads (dim -3) than ``q``;
        query head ``h`` uses key/value head ``h // (Hq // Hkv)``.
    return_weights : bool
        Also return the attention weights ``(..., L, S)`` (after dropout).

    Notes
    -----
    Memory: when no fast path (plugin) takes the call and the ``(..., L, S)`` scores would
    take more than the memory budget (256 MiB by default; the environment variable
    ``SEQOPS_ATTENTION_MEMORY_BUDGET`` in bytes, or :func:`seqops.set_attention_memory_budget`),
    the portable path runs the tiled online softmax (implementation ``"portable-tiled"``,
    FlashAttention's recurrence) whose peak memory is ``O(batch·heads·L·tile)``. A budget of
    0 asks for it on every call. ``return_weights=True`` always uses the plain path; with
    ``dropout_p > 0`` the dropout multiplier is drawn whole, as on the plain path (the same
    draws), so only the scores are tiled.

    Returns
    -------
    out : array, shape ``(..., L, Ev)``
        Same library, device and dtype as ``q``. A query row with no allowed key gives
        zeros (and zero weights), never NaN. Half-precision inputs compute the logits
        and softmax in float32.

    Examples
    --------
    >>> import numpy as np, seqops
    >>> q = np.ones((2, 3, 4), dtype=np.float32)
    >>> seqops.scaled_dot_product_attention(q, q, q, is_causal=True).shape
    (2, 3, 4)
    """
    backend = resolve(q, k, v, mask, bias, names=_SDPA_NAMES)
    # The hot path (a decoding step calls this per token): cheap tests of the common, valid
    # call; anything else (including every error) goes through the full checks, which raise
    # the detailed messages. Whole shapes are compared first: slicing a torch.Size costs
    # ~0.1 µs.
    dtype, q_shape, k_shape, v_shape = q.dtype, q.shape, k.shape, v.shape
    if not (
        k.dtype == dtype
        and v.dtype == dtype
        and (bias is None or bias.dtype == dtype)
        and check.is_floating(backend, dtype)
        and (mask is None or check.is_bool(backend, mask.dtype))
        and len(q_shape) >= (3 if enable_gqa else 2)
        and (q_shape == k_shape or (q_shape[-1] == k_shape[-1] and q_shape[:-2] == k_shape[:-2]))
        and (k_shape == v_shape or (k_shape[-2] == v_shape[-2] and k_shape[:-2] == v_shape[:-2]))
    ):
        lead = _check_sdpa_inputs(backend.namespace(), q, k, v, mask, bias, enable_gqa)
    elif mask is not None or bias is not None:
        lead = q_shape[:-2]  # equal leading dims (with GQA: equal heads too)
    if mask is not None or bias is not None:
        target = (*lead, q_shape[-2], k_shape[-2])
        check.broadcast_to_target("mask", mask, target, "(..., L, S)")
        check.broadcast_to_target("bias", bias, target, "(..., L, S)")
    scale = 1.0 / math.sqrt(q_shape[-1]) if scale is None else check.number("scale", scale)
    if dropout_p != 0.0 or type(dropout_p) is not float:
        dropout_p = _check_dropout(dropout_p, rng)
    return ops.scaled_dot_product_attention.dispatch(
        backend,
        q,
        k,
        v,
        mask=mask,
        bias=bias,
        is_causal=bool(is_causal),
        scale=scale,
        dropout_p=dropout_p,
        rng=rng,
        enable_gqa=bool(enable_gqa),
        return_weights=bool(return_weights),
    )


_SDPA_NAMES = ("q", "k", "v", "mask", "bias")


def _check_sdpa_inputs(
    xp: Any, q: Array, k: Array, v: Array, mask: Array | None, bias: Array | None, enable_gqa: bool
) -> tuple[int, ...]:
    """Every check of the attention inputs (raising the detailed errors); the leading dims."""
    check.require_floating(xp, q=q, k=k, v=v, bias=bias)
    check.require_same_dtype(q=q, k=k, v=v, bias=bias)
    check.require_bool(xp, "mask", mask, "True = attend; pass additive float masks as bias=")
    for name, x, layout in (("q", q, "(..., L, E)"), ("k", k, "(..., S, E)"), ("v", v, "(..., S, Ev)")):
        check.require_ndim(name, x, 3 if enable_gqa else 2, layout)
    if q.shape[-1] != k.shape[-1]:
        msg = (
            f"q (..., L, E) and k (..., S, E) must have the same feature size E; "
            f"got q {check.shape_of(q)} and k {check.shape_of(k)}"
        )
        raise ValueError(msg)
    if k.shape[-2] != v.shape[-2]:
        msg = (
            f"k (..., S, E) and v (..., S, Ev) must have the same length S; "
            f"got k {check.shape_of(k)} and v {check.shape_of(v)}"
        )
        raise ValueError(msg)
    k_lead, v_lead = check.shape_of(k)[:-2], check.shape_of(v)[:-2]
    if enable_gqa:
        heads_q, heads_kv = q.shape[-3], k.shape[-3]
        if v.shape[-3] != heads_kv or heads_q % heads_kv != 0:
            msg = (
                "with enable_gqa=True, k and v must have the same number of heads (dim -3) and "
                f"it must divide the query heads; got q {check.shape_of(q)}, k {check.shape_of(k)}, "
                f"v {check.shape_of(v)}"
            )
            raise ValueError(msg)
        k_lead, v_lead = (*k_lead[:-1], heads_q), (*v_lead[:-1], heads_q)
    lead = check.broadcast_shapes(
        {"q": check.shape_of(q)[:-2], "k": k_lead, "v": v_lead},
        "the leading (batch, head) dimensions of q, k and v",
    )
    return lead


@public(ops.causal_mask)
def causal_mask(
    q_len: int,
    kv_len: int | None = None,
    /,
    *,
    align: str = "top_left",
    like: Array | None = None,
    backend: str | Backend | None = None,
    device: Device | None = None,
) -> Array:
    """Boolean causal mask, **True = attend**.

    Parameters
    ----------
    q_len, kv_len : int
        Number of queries and keys (``kv_len`` defaults to ``q_len``).
    align : {"top_left", "bottom_right"}
        ``"top_left"``: query ``i`` sees keys ``j <= i``. ``"bottom_right"``: query ``i``
        is position ``kv_len - q_len + i`` (decoding with a KV cache).
    like, backend, device
        Library and device of the result: those of ``like``, else ``backend`` (a name),
        else the default backend (NumPy, or the one chosen with :func:`seqops.use`).

    Returns
    -------
    mask : bool array, shape ``(q_len, kv_len)``

    Examples
    --------
    >>> import seqops
    >>> seqops.causal_mask(2, 3, align="bottom_right").tolist()
    [[True, True, False], [True, True, True]]
    """
    q_len = check.integer("q_len", q_len)
    kv_len = q_len if kv_len is None else check.integer("kv_len", kv_len)
    check.require_choice("align", align, ("top_left", "bottom_right"))
    chosen = creation_backend(like, backend)
    device = creation_device(chosen, like, device)
    return ops.causal_mask.dispatch(chosen, q_len, kv_len, align=align, device=device)


@public(ops.padding_mask)
def padding_mask(lengths: Array, /, max_len: int) -> Array:
    """Boolean padding mask, **True = real token**.

    Parameters
    ----------
    lengths : integer array, shape ``(batch,)`` (any shape ``(...)`` works)
        Number of real tokens of each sequence.
    max_len : int
        Padded length.

    Returns
    -------
    mask : bool array, shape ``(batch, max_len)``
        ``mask[b, t] = t < lengths[b]``, in the library and device of ``lengths``.

    Examples
    --------
    >>> import numpy as np, seqops
    >>> seqops.padding_mask(np.array([1, 3]), 3).tolist()
    [[True, False, False], [True, True, True]]
    """
    backend = resolve(lengths, names=("lengths",))
    check.require_integer(backend.namespace(), "lengths", lengths)
    return ops.padding_mask.dispatch(backend, lengths, max_len=check.integer("max_len", max_len))


@public(ops.sinusoidal_positional_encoding)
def sinusoidal_positional_encoding(
    num_positions: int,
    d_model: int,
    /,
    *,
    base: float = 10000.0,
    layout: str = "interleaved",
    positions: Array | None = None,
    dtype: DType | None = None,
    like: Array | None = None,
    backend: str | Backend | None = None,
    device: Device | None = None,
) -> Array:
    """Sinusoidal positional encodings of "Attention Is All You Need".

    ``PE[p, 2i] = sin(p / base^(2i/d))``, ``PE[p, 2i+1] = cos(p / base^(2i/d))``.

    Parameters
    ----------
    num_positions, d_model : int
        Rows and (even) width of the table.
    base : float
        Wavelength base.
    layout : {"interleaved", "halves"}
        ``"halves"`` puts all sines first, then all cosines (same frequencies).
    positions : integer array, shape ``(num_positions,)``, optional
        Positions to encode instead of ``0 .. num_positions-1``; its library and device
        are used.
    dtype : dtype, optional
        Default: the dtype of ``like`` if floating, else the library's default float.
    like, backend, device
        As in :func:`causal_mask`.

    Returns
    -------
    pe : array, shape ``(num_positions, d_model)``
        The angles are computed in float64 where the backend has it, then cast.

    Examples
    --------
    >>> import seqops
    >>> seqops.sinusoidal_positional_encoding(4, 6).shape
    (4, 6)
    """
    num_positions = check.integer("num_positions", num_positions)
    d_model = check.integer("d_model", d_model)
    if d_model % 2:
        msg = f"d_model must be even (sine/cosine pairs); got d_model={d_model}"
        raise ValueError(msg)
    check.require_choice("layout", layout, ("interleaved", "halves"))
    if positions is not None:
        chosen = resolve(positions, like, names=("positions", "like"))
        check.require_integer(chosen.namespace(), "positions", positions)
        check.require_shape("positions", positions, (num_positions,))
        device = chosen.device(positions)
    else:
        chosen = creation_backend(like, backend)
        device = creation_device(chosen, like, device)
    dtype = creation_float_dtype(chosen, like, device, dtype)
    return ops.sinusoidal_positional_encoding.dispatch(
        chosen,
        num_positions,
        d_model,
        base=float(base),
        layout=layout,
        positions=positions,
        dtype=dtype,
        device=device,
    )


class MHAParams(NamedTuple):
    """Multi-head attention parameters, weights ``(D_in, D_out)`` applied as ``x @ w``.

    A NamedTuple, so it is a JAX pytree and a plain tuple to ``torch.compile``.
    Build it from ``torch.nn.MultiheadAttention`` with
    :func:`seqops.convert.mha_params_from_torch`.
    """

    w_q: Array  # (D_q, D)
    w_k: Array  # (D_k, D)
    w_v: Array  # (D_v, D_vo)
    w_o: Array  # (D_vo, D_out)
    b_q: Array | None = None  # (D,)
    b_k: Array | None = None  # (D,)
    b_v: Array | None = None  # (D_vo,)
    b_o: Array | None = None  # (D_out,)


@public(ops.multi_head_attention)
def multi_head_attention(
    query: Array,
    key: Array,
    value: Array,
    /,
    params: MHAParams,
    *,
    num_heads: int,
    mask: Array | None = None,
    key_padding_mask: Array | None = None,
    is_causal: bool = False,
    dropout_p: float = 0.0,
    rng: Any = None,
    need_weights: bool = False,
) -> Any:
    """Multi-head attention: project, attend per head, concatenate, project out.

    Parameters
    ----------
    query : array, shape ``(..., L, D_q)``
    key : array, shape ``(..., S, D_k)``
    value : array, shape ``(..., S, D_v)``
    params : MHAParams
        ``w_q (D_q, D)``, ``w_k (D_k, D)``, ``w_v (D_v, D_vo)``, ``w_o (D_vo, D_out)`` and
        optional biases; all of ``query``'s dtype. Head ``h`` uses columns
        ``h*D/H:(h+1)*D/H`` of the projections.
    num_heads : int
        Must divide ``D`` and ``D_vo``.
    mask : bool array broadcastable to ``(..., num_heads, L, S)``, optional
        **True = attend**; an ``(L, S)`` mask applies to every batch element and head.
    key_padding_mask : bool array, shape ``(..., S)``, optional
        **True = real token** (torch's ``key_padding_mask`` is the opposite).
    is_causal : bool
        Top-left causal masking, combined with the masks.
    dropout_p, rng
        Dropout on the attention weights, as in :func:`scaled_dot_product_attention`.
    need_weights : bool
        Also return the per-head weights ``(..., num_heads, L, S)``.

    Returns
    -------
    out : array, shape ``(..., L, D_out)``

    Examples
    --------
    >>> import numpy as np, seqops
    >>> w = np.eye(8, dtype=np.float32)
    >>> x = np.ones((2, 5, 8), dtype=np.float32)
    >>> p = seqops.MHAParams(w, w, w, w)
    >>> seqops.multi_head_attention(x, x, x, p, num_heads=2).shape
    (2, 5, 8)
    """
    backend = resolve(query, key, value, *params, mask, key_padding_mask, names=_MHA_NAMES)
    xp = backend.namespace()
    _check_mha(xp, query, key, value, params, num_heads)
    check.require_bool(xp, "mask", mask, "True = attend")
    check.require_bool(xp, "key_padding_mask", key_padding_mask, "True = real token")
    lead = check.broadcast_shapes(
        {
            "query": check.shape_of(query)[:-2],
            "key": check.shape_of(key)[:-2],
            "value": check.shape_of(value)[:-2],
        },
        "the leading (batch) dimensions of query, key and value",
    )
    length, source = query.shape[-2], key.shape[-2]
    check.broadcast_to_target("mask", mask, (*lead, num_heads, length, source), "(..., num_heads, L, S)")
    check.broadcast_to_target("key_padding_mask", key_padding_mask, (*lead, source), "(..., S)")
    dropout_p = _check_dropout(dropout_p, rng)
    return ops.multi_head_attention.dispatch(
        backend,
        query,
        key,
        value,
        params,
        num_heads=num_heads,
        mask=mask,
        key_padding_mask=key_padding_mask,
        is_causal=bool(is_causal),
        dropout_p=dropout_p,
        rng=rng,
        need_weights=bool(need_weights),
    )


_MHA_NAMES = (
    "query",
    "key",
    "value",
    *(f"params.{f}" for f in MHAParams._fields),
    "mask",
    "key_padding_mask",
)


def _check_mha(xp: Any, query: Array, key: Array, value: Array, params: Any, num_heads: int) -> None:
    """Shapes and dtypes of multi-head attention inputs and parameters."""
    if not isinstance(params, MHAParams):
        msg = f"params must be a seqops.MHAParams; got {type(params).__name__}"
        raise TypeError(msg)
    named = {"query": query, "key": key, "value": value}
    named |= {f"params.{f}": getattr(params, f) for f in MHAParams._fields}
    check.require_floating(xp, **named)
    check.require_same_dtype(**named)
    for name, x in (("query", query), ("key", key), ("value", value)):
        check.require_ndim(name, x, 2, "(..., length, features)")
    for name in ("w_q", "w_k", "w_v", "w_o"):
        check.require_ndim(f"params.{name}", getattr(params, name), 2, "(D_in, D_out)")
    width, value_width = params.w_q.shape[1], params.w_v.shape[1]
    expected = {
        "w_q": (query.shape[-1], width),
        "w_k": (key.shape[-1], width),
        "w_v": (value.shape[-1], value_width),
        "w_o": (value_width, params.w_o.shape[1]),
        "b_q": (width,),
        "b_k": (width,),
        "b_v": (value_width,),
        "b_o": (params.w_o.shape[1],),
    }
    for name, shape in expected.items():
        check.require_shape(f"params.{name}", getattr(params, name), shape)
    if key.shape[-2] != value.shape[-2]:
        msg = (
            f"key and value must have the same length S; "
            f"got key {check.shape_of(key)} and value {check.shape_of(value)}"
        )
        raise ValueError(msg)
    heads = check.integer("num_heads", num_heads)
    if heads == 0 or width % heads or value_width % heads:
        msg = (
            f"num_heads={num_heads} must divide the projected widths; got D={width} "
            f"(params.w_q {check.shape_of(params.w_q)}) and D_vo={value_width} "
            f"(params.w_v {check.shape_of(params.w_v)})"
        )
        raise ValueError(msg)


def _check_dropout(dropout_p: float, rng: Any) -> float:
    """``dropout_p`` checked, as a float."""
    p = check.number("dropout_p", dropout_p)
    if not 0.0 <= p < 1.0:
        msg = f"dropout_p must be in [0, 1); got {dropout_p}"
        raise ValueError(msg)
    if p > 0.0 and rng is None:
        msg = f"dropout_p={dropout_p} > 0 needs rng= (an integer seed or the backend's generator/key)"
        raise ValueError(msg)
    return p
