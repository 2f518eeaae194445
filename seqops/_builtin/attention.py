"""Built-in implementations of the attention family: masks, encodings, attention (plain and
tiled), multi-head attention over the dispatched attention."""

from __future__ import annotations

import functools
from typing import Any

from seqops import config, ops
from seqops._agnostic import activations, attention
from seqops._builtin._table import implement, namespaced
from seqops._lib.placement import helper_device
from seqops._lib.typing import Array
from seqops._lib.validate import broadcast
from seqops.contract import Backend

namespaced(ops.padding_mask, attention.padding_mask)


@implement(ops.causal_mask)
def causal_mask(backend: Backend, q_len: int, kv_len: int, /, *, align: str, device: Any) -> Array:
    offset = 0 if align == "top_left" else kv_len - q_len
    return attention.causal_mask(backend.namespace(), q_len, kv_len, offset=offset, device=device)


@implement(ops.sinusoidal_positional_encoding)
def sinusoidal_positional_encoding(
    backend: Backend,
    num_positions: int,
    d_model: int,
    /,
    *,
    base: float,
    layout: str,
    positions: Array | None,
    dtype: Any,
    device: Any,
) -> Array:
    xp = backend.namespace()
    # Angles p * base^(-2i/d) lose digits in float32 for large p: use float64 if present.
    wide = backend.floating_dtypes(device).get("float64", xp.float32)
    if positions is None:
        angles_at = xp.arange(num_positions, dtype=wide, device=device)
    else:
        angles_at = xp.astype(positions, wide)
    return attention.sinusoidal_positional_encoding(
        xp, angles_at, d_model, base=base, layout=layout, dtype=dtype
    )


def dropout_keep(backend: Backend, rng: Any, p: float, shape: tuple[int, ...], like: Array) -> Array:
    """Dropout multipliers (0 or ``1/(1-p)``) of ``shape``, computed in ``like``'s compute dtype."""
    xp = backend.namespace()
    dtype = activations.compute_dtype(xp, like.dtype)
    u = backend.random_uniform(rng, shape, dtype=dtype, device=helper_device(like), like=like)
    return xp.astype(u >= p, dtype) * (1.0 / (1.0 - p))


def _keep_for(backend: Backend, q: Array, k: Array, v: Array, p: float, rng: Any, enable_gqa: bool) -> Array:
    """The dropout multiplier of attention weights ``(..., L, S)``."""

    # leading dims of q, k, v broadcast (kv heads widened by GQA)
    def lead(a: Array) -> tuple[int, ...]:
        return (*a.shape[:-3], q.shape[-3]) if enable_gqa else tuple(a.shape[:-2])

    shape = (*broadcast(tuple(q.shape[:-2]), lead(k), lead(v)), q.shape[-2], k.shape[-2])
    return dropout_keep(backend, rng, p, shape, q)


@implement(ops.scaled_dot_product_attention, name="portable")
def scaled_dot_product_attention(
    backend: Backend,
    q: Array,
    k: Array,
    v: Array,
    /,
    *,
    mask: Array | None,
    bias: Array | None,
    is_causal: bool,
    scale: float,
    dropout_p: float,
    rng: Any,
    enable_gqa: bool,
    return_weights: bool,
) -> Any:
    keep = None
    if dropout_p > 0.0:
        keep = _keep_for(backend, q, k, v, dropout_p, rng, enable_gqa)
    return attention.scaled_dot_product_attention(
        backend.namespace(),
        q,
        k,
        v,
        mask=mask,
        bias=bias,
        is_causal=is_causal,
        scale=scale,
        enable_gqa=enable_gqa,
        return_weights=return_weights,
        keep=keep,
    )


FITS = "the (L, S) scores fit the memory budget"
UNKNOWN = "the sizes are not all known here (symbolic or dynamic): the plain path"


def _decline_tiled(
    backend: Backend, q: Array, k: Array, v: Array, /, *, enable_gqa: bool, return_weights: bool, **_: Any
) -> str | None:
    if return_weights:
        return "return_weights=True needs the whole (L, S) weights"
    fits = config.attention_scores_fit(backend, q, k, v, enable_gqa=enable_gqa)  # per chunk or shard
    if fits is None:
        return UNKNOWN
    return FITS if fits else None


@implement(ops.scaled_dot_product_attention, name="portable-tiled", decline=_decline_tiled, first=True)
def tiled_scaled_dot_product_attention(
    backend: Backend,
    q: Array,
    k: Array,
    v: Array,
    /,
    *,
    mask: Array | None,
    bias: Array | None,
    is_causal: bool,
    scale: float,
    dropout_p: float,
    rng: Any,
    enable_gqa: bool,
    return_weights: bool,
) -> Any:
    """The tiled online softmax (FlashAttention's recurrence) in O(rows · L · tile) memory,
    its query blocks sized so that one block's scores take about ``config`` tile bytes."""
    xp = backend.namespace()
    if return_weights:  # declined; still correct when called directly
        return scaled_dot_product_attention(
            backend, q, k, v, mask=mask, bias=bias, is_causal=is_causal, scale=scale,
            dropout_p=dropout_p, rng=rng, enable_gqa=enable_gqa, return_weights=True,
        )  # fmt: skip
    keep = None
    if dropout_p > 0.0:
        # The same draws as the plain path (one (..., L, S) multiplier, sliced per tile).
        keep = _keep_for(backend, q, k, v, dropout_p, rng, enable_gqa)
    rows = config.score_rows(tuple(q.shape), tuple(k.shape), tuple(v.shape), enable_gqa) or 1
    key_tile = min(config.ATTENTION.key_tile, k.shape[-2])
    size = config.score_bytes(xp, q.dtype)
    query_tile = max(1, config.ATTENTION.tile_bytes // (size * max(1, rows) * max(1, key_tile)))
    return attention.tiled_scaled_dot_product_attention(
        xp, q, k, v, mask=mask, bias=bias, is_causal=is_causal, scale=scale, enable_gqa=enable_gqa,
        keep=keep, key_tile=key_tile, query_tile=query_tile,
    )  # fmt: skip


@implement(ops.multi_head_attention)
def multi_head_attention(
    backend: Backend,
    query: Array,
    key: Array,
    value: Array,
    params: Any,
    /,
    *,
    num_heads: int,
    mask: Array | None,
    key_padding_mask: Array | None,
    is_causal: bool,
    dropout_p: float,
    rng: Any,
    need_weights: bool,
    scale: float,
    bias: Array | None,
    num_kv_heads: int,
    rotary: Any,
    positions: Array | None,
    kv_cache: Any,
) -> Any:
    # The per-head attention and the rotary embeddings are dispatched: a fast path (or the
    # tiled path) for either serves every composite built on it.
    xp = backend.namespace()
    attend = functools.partial(
        ops.scaled_dot_product_attention.dispatch, backend, dropout_p=dropout_p, rng=rng
    )
    filled = 0 if kv_cache is None else kv_cache.length
    rotate = None
    if rotary is not None:
        if positions is None:
            positions = xp.arange(query.shape[-2], device=helper_device(query)) + filled  # (L,)
        at = positions[..., None, :]  # (..., 1, L): the same positions for every head

        def rotate(t: Array) -> Array:
            return ops.apply_rotary.dispatch(
                backend, t, at, base=rotary.base, layout=rotary.layout, rotary_dim=rotary.rotary_dim
            )

    cache = None if kv_cache is None else (kv_cache.keys, kv_cache.values, filled)
    result = attention.multi_head_attention(
        xp,
        query,
        key,
        value,
        params,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        mask=mask,
        key_padding_mask=key_padding_mask,
        is_causal=is_causal,
        scale=scale,
        bias=bias,
        need_weights=need_weights,
        attend=attend,
        rotate=rotate,
        cache=cache,
    )
    if kv_cache is None:
        return result
    out, (keys, values, length) = result
    return out, type(kv_cache)(keys, values, length)


namespaced(ops.apply_rotary, attention.apply_rotary)
