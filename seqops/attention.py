"""Attention family: scaled dot-product and multi-head attention, masks, positional encodings."""

from __future__ import annotations

import math
from typing import Any, Literal, NamedTuple, overload

from seqops import ops
from seqops._dispatch import (
    creation_backend,
    creation_device,
    creation_float_dtype,
    public,
    resolve,
)
from seqops._lib import validate as check
from seqops._lib.placement import helper_device
from seqops._lib.typing import Array, ArrayT, Device, DType
from seqops._lib.validate import broadcast_to_target, is_bool, is_floating
from seqops._lib.values import concrete_bool
from seqops.contract import Backend


@overload
def scaled_dot_product_attention(
    q: ArrayT,
    k: Array,
    v: Array,
    /,
    *,
    mask: Array | None = ...,
    bias: Array | None = ...,
    is_causal: bool = ...,
    scale: float | None = ...,
    dropout_p: float = ...,
    rng: Any = ...,
    enable_gqa: bool = ...,
    return_weights: Literal[False] = ...,
) -> ArrayT: ...


@overload
def scaled_dot_product_attention(
    q: ArrayT,
    k: Array,
    v: Array,
    /,
    *,
    mask: Array | None = ...,
    bias: Array | None = ...,
    is_causal: bool = ...,
    scale: float | None = ...,
    dropout_p: float = ...,
    rng: Any = ...,
    enable_gqa: bool = ...,
    return_weights: Literal[True],
) -> tuple[ArrayT, ArrayT]: ...


@overload
def scaled_dot_product_attention(
    q: ArrayT,
    k: Array,
    v: Array,
    /,
    *,
    mask: Array | None = ...,
    bias: Array | None = ...,
    is_causal: bool = ...,
    scale: float | None = ...,
    dropout_p: float = ...,
    rng: Any = ...,
    enable_gqa: bool = ...,
    return_weights: bool = ...,
) -> ArrayT | tuple[ArrayT, ArrayT]: ...


@public(ops.scaled_dot_product_attention)
def scaled_dot_product_attention(
    q: ArrayT,
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
) -> ArrayT | tuple[ArrayT, ArrayT]:
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
        Multiplies the logits; default ``1 / sqrt(E)`` (1.0 for ``E = 0``, where every score is 0
        and the output is the mean of ``v``: docs/errors-and-edge-cases.md).
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
    backend = resolve(q, k, v, mask, bias, names=_SDPA_NAMES, required=3)
    # The hot path (a decoding step calls this per token): cheap tests of the common, valid
    # call; anything else (including every error) goes through the full checks, which raise
    # the detailed messages. Whole shapes are compared first: slicing a torch.Size costs
    # ~0.1 µs.
    dtype, q_shape, k_shape, v_shape = q.dtype, q.shape, k.shape, v.shape
    if not (
        k.dtype == dtype
        and v.dtype == dtype
        and (bias is None or bias.dtype == dtype)
        and is_floating(backend, dtype)
        and (mask is None or is_bool(backend, mask.dtype))
        and len(q_shape) >= (3 if enable_gqa else 2)
        and (q_shape == k_shape or (q_shape[-1] == k_shape[-1] and q_shape[:-2] == k_shape[:-2]))
        and (k_shape == v_shape or (k_shape[-2] == v_shape[-2] and k_shape[:-2] == v_shape[:-2]))
    ):
        lead = _check_sdpa_inputs(backend.namespace(), q, k, v, mask, bias, enable_gqa)
        target = (*lead, q_shape[-2], k_shape[-2])
    elif mask is not None or bias is not None:
        # equal leading dims (with GQA: equal heads too): (..., L, S) is q's shape, E -> S
        target = q_shape
    if mask is not None:
        broadcast_to_target("mask", mask, target, "(..., L, S)", last=k_shape[-2])
    if bias is not None:
        broadcast_to_target("bias", bias, target, "(..., L, S)", last=k_shape[-2])
    if scale is None:  # E = 0: every score is 0 whatever the scale (docs/errors-and-edge-cases.md)
        width = q_shape[-1]
        scale = 1.0 / _sqrt(width) if width else 1.0
    else:
        scale = check.number("scale", scale)
    if dropout_p != 0.0 or type(dropout_p) is not float or rng is not None:
        dropout_p = _check_dropout(dropout_p, rng)
    if type(is_causal) is not bool or type(enable_gqa) is not bool or type(return_weights) is not bool:
        _check_flags(is_causal=is_causal, enable_gqa=enable_gqa, return_weights=return_weights)
    return _dispatch_sdpa(
        backend,
        q,
        k,
        v,
        mask=mask,
        bias=bias,
        is_causal=is_causal,  # checked above: True or False (no truthiness), no bool() to pay
        scale=scale,
        dropout_p=dropout_p,
        rng=rng,
        enable_gqa=enable_gqa,
        return_weights=return_weights,
    )


_SDPA_NAMES = ("q", "k", "v", "mask", "bias")
# The hot path's functions bound once (a module attribute costs ~0.02 µs a lookup; a tiny
# attention's overhead is ~3 µs): the dispatcher, set once when the op is declared.
_dispatch_sdpa, _sqrt = ops.scaled_dot_product_attention.dispatch, math.sqrt


def _default_scale(width: int) -> float:
    """The default logit scale ``1 / sqrt(width)``; 1.0 for ``width = 0`` (every score is then
    0 whatever the scale, so attention averages the values: docs/errors-and-edge-cases.md)."""
    return 1.0 / math.sqrt(width) if width else 1.0


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
    like : array, optional
        The result takes the library and the device of ``like`` (not with ``backend``).
    backend : str or Backend, optional
        Without ``like``, the backend of the result (a name or a :class:`seqops.Backend`);
        by default NumPy, or the one chosen with :func:`seqops.use`.
    device : device, optional
        A device of the result's library; by default that of ``like``, else the backend's
        default device.

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
    like : array, optional
        As in :func:`seqops.causal_mask`: the result takes its library and device.
    backend : str or Backend, optional
        As in :func:`seqops.causal_mask`: the backend of the result without ``like``.
    device : device, optional
        As in :func:`seqops.causal_mask`: the device of the result.

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
        device = helper_device(positions)
    else:
        chosen = creation_backend(like, backend)
        device = creation_device(chosen, like, device)
    dtype = creation_float_dtype(chosen, like, device, dtype)
    return ops.sinusoidal_positional_encoding.dispatch(
        chosen,
        num_positions,
        d_model,
        base=check.number("base", base, positive=True),
        layout=layout,
        positions=positions,
        dtype=dtype,
        device=device,
    )


ROTARY_LAYOUTS = ("halves", "interleaved")


class Rotary(NamedTuple):
    """The options of rotary position embeddings (:func:`apply_rotary`), for
    :func:`multi_head_attention`'s ``rotary=``.

    Examples
    --------
    >>> import seqops
    >>> seqops.Rotary(base=500000.0)
    Rotary(base=500000.0, layout='halves', rotary_dim=None)
    """

    base: float = 10000.0
    layout: str = "halves"
    rotary_dim: int | None = None


@public(ops.apply_rotary)
def apply_rotary(
    x: ArrayT,
    positions: Array,
    /,
    *,
    base: float = 10000.0,
    layout: str = "halves",
    rotary_dim: int | None = None,
) -> ArrayT:
    """Rotary position embeddings (RoPE, Su et al. 2021): rotate feature pairs of ``x`` by
    angles proportional to their positions.

    Pair ``p`` of the first ``d = rotary_dim or E`` features turns by ``positions ·
    base^(-2p/d)``; the features past ``d`` pass through unchanged (GPT-NeoX, Phi).

    Parameters
    ----------
    x : array, shape ``(..., L, E)``, real floating
        Queries or keys; heads, if any, are a leading dimension (``(batch, heads, L, E)``).
    positions : integer array, broadcastable to ``(..., L)``
        The position of each of the ``L`` rows; may start anywhere (cached decoding:
        ``arange(L) + cache_length``). A ``(L,)`` vector applies to every batch element
        and head; for ``(batch, heads, L, E)`` queries, per-sequence positions are
        ``(batch, 1, L)``.
    base : float
        Wavelength base (Llama 2: 10000, Llama 3: 500000).
    layout : {"halves", "interleaved"}
        ``"halves"`` pairs feature ``i`` with ``i + d/2`` (Hugging Face's ``rotate_half``:
        Llama, Mistral, Qwen, GPT-NeoX); ``"interleaved"`` pairs ``2i`` with ``2i + 1``
        (GPT-J, the RoFormer paper).
    rotary_dim : int, optional
        How many leading features rotate (even, at most ``E``); default all of them.

    Returns
    -------
    array, shape of ``x`` and its dtype
        The angles and the rotation are computed in float32 (float64 for float64 input).

    Examples
    --------
    >>> import numpy as np, seqops
    >>> x = np.array([[1.0, 0.0]])  # one position, one pair
    >>> np.round(seqops.apply_rotary(x, np.array([1]), base=1.0), 4).tolist()  # a turn of 1 radian
    [[0.5403, 0.8415]]
    """
    backend = resolve(x, positions, names=("x", "positions"), required=2)
    xp = backend.namespace()
    check.require_floating(xp, x=x)
    check.require_integer(xp, "positions", positions)
    check.require_ndim("x", x, 1, "(..., L, E)")
    check.broadcast_to_target("positions", positions, check.shape_of(x)[:-1], "(..., L)")
    check.require_choice("layout", layout, ROTARY_LAYOUTS)
    return ops.apply_rotary.dispatch(
        backend,
        x,
        positions,
        base=check.number("base", base, positive=True),
        layout=layout,
        rotary_dim=_rotary_dim(rotary_dim, x.shape[-1], "x"),
    )


def _rotary_dim(rotary_dim: object, width: int, name: str) -> int:
    """``rotary_dim`` checked against the feature width of ``name`` (``width`` if None)."""
    d = width if rotary_dim is None else check.integer("rotary_dim", rotary_dim)
    if d % 2 or d > width:
        msg = f"rotary_dim must be even and at most the feature size {width} of `{name}`; got {d}"
        raise ValueError(msg)
    return d


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


class KVCache(NamedTuple):
    """The keys and values a decoder has attended to, for :func:`multi_head_attention`'s
    ``kv_cache=``: a fixed-size buffer and how much of it is filled.

    ``keys (..., num_kv_heads, max_len, head_dim)`` and ``values (..., num_kv_heads, max_len,
    value_head_dim)`` hold the projected (and rotated) keys and values of positions
    ``[0, length)``; ``length`` is a Python int or a 0-d integer array (so a jitted decoding
    step can take it as an input and trace once). A NamedTuple: a JAX pytree. Make an empty
    one with :func:`kv_cache_init`.
    """

    keys: Array
    values: Array
    length: Any = 0


def kv_cache_init(
    batch_shape: tuple[int, ...],
    num_kv_heads: int,
    max_len: int,
    head_dim: int,
    /,
    *,
    value_head_dim: int | None = None,
    dtype: DType | None = None,
    like: Array | None = None,
    backend: str | Backend | None = None,
    device: Device | None = None,
) -> KVCache:
    """An empty :class:`KVCache`: zeros of ``(*batch_shape, num_kv_heads, max_len, head_dim)``
    and length 0.

    Parameters
    ----------
    batch_shape : tuple of int
        The leading (batch) dimensions of the queries, e.g. ``(B,)``.
    num_kv_heads, max_len, head_dim : int
        Key/value heads, positions the cache holds, features per head.
    value_head_dim : int, optional
        Features per value head (default ``head_dim``).
    dtype : dtype, optional
        The queries' dtype (default: that of ``like`` if floating, else the default float).
    like : array, optional
        As in :func:`seqops.causal_mask`: the result takes its library and device.
    backend : str or Backend, optional
        As in :func:`seqops.causal_mask`: the backend of the result without ``like``.
    device : device, optional
        As in :func:`seqops.causal_mask`: the device of the result.

    Returns
    -------
    KVCache

    Examples
    --------
    >>> import seqops
    >>> cache = seqops.kv_cache_init((2,), 4, 16, 8)
    >>> cache.keys.shape, cache.length
    ((2, 4, 16, 8), 0)
    """
    if not isinstance(batch_shape, tuple):
        msg = f"batch_shape must be a tuple of ints; got {type(batch_shape).__name__}"
        raise TypeError(msg)
    lead = tuple(check.integer(f"batch_shape[{i}]", n) for i, n in enumerate(batch_shape))
    heads = check.integer("num_kv_heads", num_kv_heads, minimum=1)
    size = check.integer("max_len", max_len)
    width = check.integer("head_dim", head_dim, minimum=1)
    value_width = (
        width if value_head_dim is None else check.integer("value_head_dim", value_head_dim, minimum=1)
    )
    chosen = creation_backend(like, backend)
    device = creation_device(chosen, like, device)
    dtype = creation_float_dtype(chosen, like, device, dtype)
    xp = chosen.namespace()
    keys = xp.zeros((*lead, heads, size, width), dtype=dtype, device=device)
    values = xp.zeros((*lead, heads, size, value_width), dtype=dtype, device=device)
    return KVCache(keys, values, 0)


@overload
def multi_head_attention(
    query: ArrayT,
    key: Array,
    value: Array,
    /,
    params: MHAParams,
    *,
    num_heads: int,
    mask: Array | None = ...,
    key_padding_mask: Array | None = ...,
    is_causal: bool = ...,
    dropout_p: float = ...,
    rng: Any = ...,
    need_weights: Literal[False] = ...,
    scale: float | None = ...,
    bias: Array | None = ...,
    num_kv_heads: int | None = ...,
    rotary: Rotary | None = ...,
    positions: Array | None = ...,
    kv_cache: None = ...,
) -> ArrayT: ...


@overload
def multi_head_attention(
    query: ArrayT,
    key: Array,
    value: Array,
    /,
    params: MHAParams,
    *,
    num_heads: int,
    mask: Array | None = ...,
    key_padding_mask: Array | None = ...,
    is_causal: bool = ...,
    dropout_p: float = ...,
    rng: Any = ...,
    need_weights: Literal[True],
    scale: float | None = ...,
    bias: Array | None = ...,
    num_kv_heads: int | None = ...,
    rotary: Rotary | None = ...,
    positions: Array | None = ...,
    kv_cache: None = ...,
) -> tuple[ArrayT, ArrayT]: ...


@overload
def multi_head_attention(
    query: ArrayT,
    key: Array,
    value: Array,
    /,
    params: MHAParams,
    *,
    num_heads: int,
    mask: Array | None = ...,
    key_padding_mask: Array | None = ...,
    is_causal: bool = ...,
    dropout_p: float = ...,
    rng: Any = ...,
    need_weights: bool = ...,
    scale: float | None = ...,
    bias: Array | None = ...,
    num_kv_heads: int | None = ...,
    rotary: Rotary | None = ...,
    positions: Array | None = ...,
    kv_cache: None = ...,
) -> ArrayT | tuple[ArrayT, ArrayT]: ...


@overload
def multi_head_attention(
    query: ArrayT,
    key: Array,
    value: Array,
    /,
    params: MHAParams,
    *,
    num_heads: int,
    mask: Array | None = ...,
    key_padding_mask: Array | None = ...,
    is_causal: bool = ...,
    dropout_p: float = ...,
    rng: Any = ...,
    need_weights: Literal[False] = ...,
    scale: float | None = ...,
    bias: Array | None = ...,
    num_kv_heads: int | None = ...,
    rotary: Rotary | None = ...,
    positions: Array | None = ...,
    kv_cache: KVCache,
) -> tuple[ArrayT, KVCache]: ...


@public(ops.multi_head_attention)
def multi_head_attention(
    query: ArrayT,
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
    scale: float | None = None,
    bias: Array | None = None,
    num_kv_heads: int | None = None,
    rotary: Rotary | None = None,
    positions: Array | None = None,
    kv_cache: KVCache | None = None,
) -> ArrayT | tuple[ArrayT, ArrayT] | tuple[ArrayT, KVCache]:
    """Multi-head attention: project, attend per head, concatenate, project out.

    Parameters
    ----------
    query : array, shape ``(..., L, D_q)``
        The inputs of the queries, projected by ``w_q``.
    key : array, shape ``(..., S, D_k)``
        The inputs of the keys, projected by ``w_k``.
    value : array, shape ``(..., S, D_v)``
        The inputs of the values, projected by ``w_v``.
    params : MHAParams
        ``w_q (D_q, D)``, ``w_k (D_k, D_kv)``, ``w_v (D_v, D_vo)``, ``w_o (H·dv, D_out)`` and
        optional biases; all of ``query``'s dtype. Head ``h`` uses columns
        ``h·dh:(h+1)·dh`` of the projections, ``dh = D / num_heads``.
    num_heads : int
        Query heads ``H``; divides ``D``.
    mask : bool array broadcastable to ``(..., num_heads, L, S)``, optional
        **True = attend**; an ``(L, S)`` mask applies to every batch element and head.
    key_padding_mask : bool array, shape ``(..., S)``, optional
        **True = real token** (torch's ``key_padding_mask`` is the opposite).
    is_causal : bool
        Top-left causal masking, combined with the masks (with a cache: query ``i`` sees
        the cached positions and the new keys ``j <= i``).
    dropout_p : float
        Dropout probability on the attention weights, as in
        :func:`scaled_dot_product_attention`; ``> 0`` needs ``rng``.
    rng : int or native generator/key, optional
        Randomness for dropout, as in :func:`scaled_dot_product_attention`.
    need_weights : bool
        Also return the per-head weights ``(..., num_heads, L, S)`` (not with ``kv_cache``).
    scale : float, optional
        Multiplies the logits; default ``1 / sqrt(dh)`` (GPT-2's per-layer scaling, T5's 1; 1.0
        for ``dh = 0``).
    bias : float array broadcastable to ``(..., num_heads, L, S)``, optional
        Added to the logits (T5's relative position bias, ALiBi); ``-inf`` entries mask.
    num_kv_heads : int, optional
        Grouped-query attention: ``w_k``/``w_v`` produce ``num_kv_heads`` heads
        (``D_kv = num_kv_heads · dh``, ``D_vo = num_kv_heads · dv``); query head ``h`` uses
        key/value head ``h // (num_heads // num_kv_heads)``. Default ``num_heads``.
    rotary : Rotary, optional
        Rotate queries and keys after projection (and before caching) at ``positions``
        (:func:`apply_rotary`); self-attention only (``S == L``).
    positions : integer array broadcastable to ``(..., L)``, optional
        Positions of the queries for ``rotary``; default ``arange(L)`` plus the cache length.
    kv_cache : KVCache, optional
        With a cache, the projected keys and values of this call are written at positions
        ``[length, length + S)`` of its buffers, the queries attend to positions
        ``< length + S``, and the call returns ``(out, new_cache)`` whose length is
        ``length + S``. Shapes never change, so a jitted decoding step traces once. Masks and
        ``bias`` then cover the cache: ``S`` reads ``max_len`` above.

    Returns
    -------
    out : array, shape ``(..., L, D_out)``
        Or ``(out, weights)`` with ``need_weights``, ``(out, new_cache)`` with ``kv_cache``.

    Examples
    --------
    >>> import numpy as np, seqops
    >>> w = np.eye(8, dtype=np.float32)
    >>> x = np.ones((2, 5, 8), dtype=np.float32)
    >>> p = seqops.MHAParams(w, w, w, w)
    >>> seqops.multi_head_attention(x, x, x, p, num_heads=2).shape
    (2, 5, 8)
    >>> cache = seqops.kv_cache_init((2,), 2, 16, 4, like=x)  # a decoding step
    >>> out, cache = seqops.multi_head_attention(x[:, :1], x[:, :1], x[:, :1], p, num_heads=2, kv_cache=cache)
    >>> out.shape, cache.length
    ((2, 1, 8), 1)
    """
    if kv_cache is not None and not isinstance(kv_cache, KVCache):
        msg = f"kv_cache must be a seqops.KVCache (see seqops.kv_cache_init); got {type(kv_cache).__name__}"
        raise TypeError(msg)
    cache_arrays = () if kv_cache is None else (kv_cache.keys, kv_cache.values)
    backend = resolve(
        query, key, value, *params, mask, key_padding_mask, bias, positions, *cache_arrays,
        names=_MHA_ALL_NAMES, required=7,  # query, key, value, w_q, w_k, w_v, w_o
    )  # fmt: skip
    xp = backend.namespace()
    kv_heads = _check_mha(xp, query, key, value, params, num_heads, num_kv_heads)
    check.require_bool(xp, "mask", mask, "True = attend")
    check.require_bool(xp, "key_padding_mask", key_padding_mask, "True = real token")
    if bias is not None:
        check.require_floating(xp, bias=bias)
        check.require_same_dtype(query=query, bias=bias)
    lead = check.broadcast_shapes(
        {
            "query": check.shape_of(query)[:-2],
            "key": check.shape_of(key)[:-2],
            "value": check.shape_of(value)[:-2],
        },
        "the leading (batch) dimensions of query, key and value",
    )
    length, source = query.shape[-2], key.shape[-2]
    head_dim = params.w_q.shape[1] // num_heads
    if kv_cache is not None:
        source = _check_cache(
            backend, kv_cache, lead, kv_heads, head_dim, params.w_v.shape[1] // kv_heads, query, key
        )
        if need_weights:
            msg = "need_weights=True is not supported with kv_cache (pass kv_cache=None to get the weights)"
            raise ValueError(msg)
    target = (*lead, num_heads, length, source)
    check.broadcast_to_target("mask", mask, target, "(..., num_heads, L, S)")
    check.broadcast_to_target("bias", bias, target, "(..., num_heads, L, S)")
    check.broadcast_to_target("key_padding_mask", key_padding_mask, (*lead, source), "(..., S)")
    if rotary is not None:
        rotary = _check_rotary(rotary, head_dim, length, key.shape[-2])
    if positions is not None:
        if rotary is None:
            msg = "positions= applies to rotary embeddings: pass rotary=seqops.Rotary(...) too"
            raise ValueError(msg)
        check.require_integer(xp, "positions", positions)
        check.broadcast_to_target("positions", positions, (*lead, length), "(..., L)")
    dropout_p = _check_dropout(dropout_p, rng)
    _check_flags(is_causal=is_causal, need_weights=need_weights)
    return ops.multi_head_attention.dispatch(
        backend,
        query,
        key,
        value,
        params,
        num_heads=num_heads,
        mask=mask,
        key_padding_mask=key_padding_mask,
        is_causal=is_causal,
        dropout_p=dropout_p,
        rng=rng,
        need_weights=need_weights,
        scale=_default_scale(head_dim) if scale is None else check.number("scale", scale),
        bias=bias,
        num_kv_heads=kv_heads,
        rotary=rotary,
        positions=positions,
        kv_cache=kv_cache,
    )


_MHA_NAMES = (
    "query",
    "key",
    "value",
    *(f"params.{f}" for f in MHAParams._fields),
    "mask",
    "key_padding_mask",
)
_MHA_ALL_NAMES = (*_MHA_NAMES, "bias", "positions", "kv_cache.keys", "kv_cache.values")


def _check_rotary(rotary: object, head_dim: int, length: int, source: int) -> Rotary:
    """``rotary`` with its ``rotary_dim`` resolved against the head size."""
    if not isinstance(rotary, Rotary):
        msg = f"rotary must be a seqops.Rotary; got {type(rotary).__name__}"
        raise TypeError(msg)
    if source != length:
        msg = f"rotary embeddings apply to self-attention: key length {source} != query length {length}"
        raise ValueError(msg)
    check.require_choice("rotary.layout", rotary.layout, ROTARY_LAYOUTS)
    base = check.number("rotary.base", rotary.base, positive=True)
    return Rotary(base, rotary.layout, _rotary_dim(rotary.rotary_dim, head_dim, "the heads (head_dim)"))


def _check_cache(
    backend: Backend,
    cache: object,
    lead: tuple[int, ...],
    heads: int,
    head_dim: int,
    value_dim: int,
    query: Array,
    key: Array,
) -> int:
    """Shapes, dtype and room of a :class:`KVCache`; returns ``max_len``."""
    if not isinstance(cache, KVCache):
        msg = f"kv_cache must be a seqops.KVCache; got {type(cache).__name__}"
        raise TypeError(msg)
    check.require_same_dtype(query=query, **{"kv_cache.keys": cache.keys, "kv_cache.values": cache.values})
    check.require_ndim("kv_cache.keys", cache.keys, 3, "(..., num_kv_heads, max_len, head_dim)")
    size = cache.keys.shape[-2]
    check.require_shape("kv_cache.keys", cache.keys, (*lead, heads, size, head_dim))
    check.require_shape("kv_cache.values", cache.values, (*lead, heads, size, value_dim))
    filled = cache.length
    if isinstance(filled, int) and not isinstance(filled, bool):
        check.integer("kv_cache.length", filled)
        room = filled + key.shape[-2] <= size
    else:
        if getattr(filled, "ndim", None) != 0 or not backend.namespace().isdtype(filled.dtype, "integral"):
            msg = f"kv_cache.length must be a Python int or a 0-d integer array; got {filled!r}"
            raise TypeError(msg)
        room = concrete_bool(backend, filled + key.shape[-2] <= size)  # None while tracing
    if room is False:
        msg = (
            f"the cache is full: length {filled} + {key.shape[-2]} new keys > max_len {size} "
            f"(kv_cache.keys {check.shape_of(cache.keys)})"
        )
        raise ValueError(msg)
    return size


def _check_mha(
    xp: Any,
    query: Array,
    key: Array,
    value: Array,
    params: Any,
    num_heads: int,
    num_kv_heads: int | None = None,
    *,
    prefix: str = "params.",
) -> int:
    """Shapes and dtypes of multi-head attention inputs and parameters (named ``prefix`` + field,
    e.g. ``params.attn.w_q`` in a layer); the key/value heads."""
    if not isinstance(params, MHAParams):
        msg = f"{prefix.rstrip('.')} must be a seqops.MHAParams; got {type(params).__name__}"
        raise TypeError(msg)
    named = {"query": query, "key": key, "value": value}
    named |= {f"{prefix}{f}": getattr(params, f) for f in MHAParams._fields}
    check.require_floating(xp, **named)
    check.require_same_dtype(**named)
    for name, x in (("query", query), ("key", key), ("value", value)):
        check.require_ndim(name, x, 2, "(..., length, features)")
    for name in ("w_q", "w_k", "w_v", "w_o"):
        check.require_ndim(f"{prefix}{name}", getattr(params, name), 2, "(D_in, D_out)")
    heads = check.integer("num_heads", num_heads, minimum=1)
    kv_heads = heads if num_kv_heads is None else check.integer("num_kv_heads", num_kv_heads, minimum=1)
    width, value_width = params.w_q.shape[1], params.w_v.shape[1]
    if width % heads or heads % kv_heads or value_width % kv_heads:
        msg = (
            f"num_heads={num_heads} must divide the query width D={width} ({prefix}w_q "
            f"{check.shape_of(params.w_q)}), and num_kv_heads={kv_heads} must divide num_heads and "
            f"the value width D_vo={value_width} ({prefix}w_v {check.shape_of(params.w_v)})"
        )
        raise ValueError(msg)
    head_dim, value_head_dim = width // heads, value_width // kv_heads
    expected = {
        "w_q": (query.shape[-1], width),
        "w_k": (key.shape[-1], kv_heads * head_dim),
        "w_v": (value.shape[-1], value_width),
        "w_o": (heads * value_head_dim, params.w_o.shape[1]),
        "b_q": (width,),
        "b_k": (kv_heads * head_dim,),
        "b_v": (value_width,),
        "b_o": (params.w_o.shape[1],),
    }
    for name, shape in expected.items():
        check.require_shape(f"{prefix}{name}", getattr(params, name), shape)
    if key.shape[-2] != value.shape[-2]:
        msg = (
            f"key and value must have the same length S; "
            f"got key {check.shape_of(key)} and value {check.shape_of(value)}"
        )
        raise ValueError(msg)
    return kv_heads


def _check_flags(**flags: object) -> None:
    for name, value in flags.items():
        check.flag(name, value)


def _check_dropout(dropout_p: float, rng: Any) -> float:
    """``dropout_p`` checked, as a float."""
    p = check.number("dropout_p", dropout_p)
    if not 0.0 <= p < 1.0:
        msg = f"dropout_p must be in [0, 1); got {dropout_p}"
        raise ValueError(msg)
    if p > 0.0 and rng is None:
        msg = f"dropout_p={dropout_p} > 0 needs rng= (an integer seed or the backend's generator/key)"
        raise ValueError(msg)
    if p == 0.0:  # not drawn from: checked here (else the backend checks it when drawing)
        check.rng(rng)
    return p
