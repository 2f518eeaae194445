"""Portable factories of the attention family (softmax, masks, encodings, attention, blocks)."""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable
from typing import Any

from seqops._agnostic import activations, attention, special, transformer
from seqops._lib.backend import Backend
from seqops._lib.typing import Array
from seqops._lib.validate import broadcast
from seqops._portable._registry import on_namespace, portable, variant
from seqops.hookspecs import Implementation

DEFAULT_MEMORY_BUDGET = 256 * 2**20
"""Bytes the ``(..., L, S)`` attention scores may take before the tiled path is chosen."""


class TiledSettings:
    """When the memory-efficient (tiled) attention runs, and its tile sizes.

    ``budget`` is read from ``SEQOPS_ATTENTION_MEMORY_BUDGET`` (bytes) at import and set with
    :func:`seqops.set_attention_memory_budget`. ``key_tile`` keys are visited at a time;
    queries are taken in blocks sized so that one block's scores take about ``tile_bytes``.
    """

    def __init__(self) -> None:
        self.budget = self.default_budget()
        self.key_tile = 512
        self.tile_bytes = 32 * 2**20

    @staticmethod
    def default_budget() -> int:
        raw = os.environ.get("SEQOPS_ATTENTION_MEMORY_BUDGET", "").strip()
        return int(raw) if raw else DEFAULT_MEMORY_BUDGET


TILED = TiledSettings()


def _dropout_keep(backend: Backend, rng: Any, p: float, shape: tuple[int, ...], like: Array) -> Array:
    """Dropout multipliers (0 or ``1/(1-p)``) of ``shape``, computed in ``like``'s compute dtype."""
    xp = backend.namespace()
    dtype = activations.compute_dtype(xp, like.dtype)
    u = backend.random_uniform(rng, shape, dtype=dtype, device=backend.device(like))
    return xp.astype(u >= p, dtype) * (1.0 / (1.0 - p))


def _keep_for(backend: Backend, q: Array, k: Array, v: Array, p: float, rng: Any, enable_gqa: bool) -> Array:
    """The dropout multiplier of attention weights ``(..., L, S)``."""

    # leading dims of q, k, v broadcast (kv heads widened by GQA)
    def lead(a: Array) -> tuple[int, ...]:
        return (*a.shape[:-3], q.shape[-3]) if enable_gqa else tuple(a.shape[:-2])

    shape = (*broadcast(tuple(q.shape[:-2]), lead(k), lead(v)), q.shape[-2], k.shape[-2])
    return _dropout_keep(backend, rng, p, shape, q)


def activation_fn(backend: Backend, name: str) -> Callable[[Array], Array]:
    xp = backend.namespace()
    if name == "relu":
        return functools.partial(activations.relu, xp)
    if name == "gelu_tanh":
        return functools.partial(activations.gelu_tanh, xp)
    erf = backend.erf or functools.partial(special.erf, xp)
    return functools.partial(activations.gelu, xp, erf=erf)


on_namespace("softmax", activations.softmax)
on_namespace("log_softmax", activations.log_softmax)


@portable("causal_mask")
def _causal_mask(backend: Backend) -> Callable[..., Any]:
    xp = backend.namespace()

    def run(q_len: int, kv_len: int, /, *, align: str, device: Any) -> Array:
        offset = 0 if align == "top_left" else kv_len - q_len
        return attention.causal_mask(xp, q_len, kv_len, offset=offset, device=device)

    return run


on_namespace("padding_mask", attention.padding_mask)


@portable("sinusoidal_positional_encoding")
def _positional_encoding(backend: Backend) -> Callable[..., Any]:
    xp = backend.namespace()

    def run(
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
        # Angles p * base^(-2i/d) lose digits in float32 for large p: use float64 if present.
        wide = backend.floating_dtypes(device).get("float64", xp.float32)
        if positions is None:
            angles_at = xp.arange(num_positions, dtype=wide, device=device)
        else:
            angles_at = xp.astype(positions, wide)
        return attention.sinusoidal_positional_encoding(
            xp, angles_at, d_model, base=base, layout=layout, dtype=dtype
        )

    return run


@portable("scaled_dot_product_attention")
def _sdpa(backend: Backend) -> Callable[..., Any]:
    xp = backend.namespace()

    def run(q: Array, k: Array, v: Array, /, *, dropout_p: float, rng: Any, **options: Any) -> Any:
        keep = None
        if dropout_p > 0.0:
            keep = _keep_for(backend, q, k, v, dropout_p, rng, options["enable_gqa"])
        return attention.scaled_dot_product_attention(xp, q, k, v, keep=keep, **options)

    return run


def _score_rows(q: Array, k: Array, v: Array, enable_gqa: bool) -> int:
    """``prod(batch dims)``: how many ``(L, S)`` score matrices the call computes."""
    qs, ks, vs = tuple(q.shape[:-2]), tuple(k.shape[:-2]), tuple(v.shape[:-2])
    if qs == ks == vs:
        return math.prod(qs)
    if enable_gqa:
        ks, vs = (*ks[:-1], qs[-1]), (*vs[:-1], qs[-1])
    return math.prod(broadcast(qs, ks, vs))


_FITS = "the (L, S) scores fit the memory budget"


def _fits(xp: Any, rows: int, q_len: int, kv_len: int, dtype: Any) -> bool:
    """Whether ``rows`` score matrices ``(L, S)`` (in the compute dtype) fit the budget."""
    size = 8 if dtype == xp.float64 else 4
    return rows * q_len * kv_len * size <= TILED.budget


def _tiled(xp: Any, rows: int, kv_len: int, dtype: Any) -> Callable[..., Array]:
    """The tiled attention for ``rows`` score matrices over ``kv_len`` keys, its query
    blocks sized so that one block's scores take about ``TILED.tile_bytes``."""
    size = 8 if dtype == xp.float64 else 4
    key_tile = min(TILED.key_tile, kv_len)
    query_tile = max(1, TILED.tile_bytes // (size * max(1, rows) * max(1, key_tile)))
    return functools.partial(
        attention.tiled_scaled_dot_product_attention, key_tile=key_tile, query_tile=query_tile
    )


@variant("scaled_dot_product_attention")
def _sdpa_tiled(backend: Backend) -> Implementation:
    xp = backend.namespace()
    plain = _sdpa(backend)

    def decline(
        q: Array, k: Array, v: Array, /, *, enable_gqa: bool, return_weights: bool, **_: Any
    ) -> str | None:
        if return_weights:
            return "return_weights=True needs the whole (L, S) weights"
        if _fits(xp, _score_rows(q, k, v, enable_gqa), q.shape[-2], k.shape[-2], q.dtype):
            return _FITS
        return None

    def run(
        q: Array, k: Array, v: Array, /, *, dropout_p: float, rng: Any, return_weights: bool, **options: Any
    ) -> Any:
        if return_weights:  # declined above; still correct when called directly
            return plain(q, k, v, dropout_p=dropout_p, rng=rng, return_weights=True, **options)
        keep = None
        if dropout_p > 0.0:
            # The same draws as the plain path (one (..., L, S) multiplier, sliced per tile).
            keep = _keep_for(backend, q, k, v, dropout_p, rng, options["enable_gqa"])
        tiled = _tiled(xp, _score_rows(q, k, v, options["enable_gqa"]), k.shape[-2], q.dtype)
        return tiled(xp, q, k, v, keep=keep, **options)

    return Implementation("portable-tiled", run, decline)


@portable("multi_head_attention")
def _mha(backend: Backend) -> Callable[..., Any]:
    return _mha_with(backend, tiled=False)


def _mha_with(backend: Backend, *, tiled: bool) -> Callable[..., Any]:
    """The portable multi-head attention, its per-head attention plain or tiled."""
    xp = backend.namespace()

    def run(
        query: Array,
        key: Array,
        value: Array,
        params: Any,
        /,
        *,
        num_heads: int,
        dropout_p: float,
        rng: Any,
        **options: Any,
    ) -> Any:
        lead = broadcast(tuple(query.shape[:-2]), tuple(key.shape[:-2]), tuple(value.shape[:-2]))
        keep = None
        if dropout_p > 0.0:
            keep = _dropout_keep(
                backend, rng, dropout_p, (*lead, num_heads, query.shape[-2], key.shape[-2]), query
            )
        attend = None
        if tiled and not options["need_weights"]:
            attend = _tiled(xp, math.prod(lead) * num_heads, key.shape[-2], query.dtype)
        return attention.multi_head_attention(
            xp, query, key, value, params, num_heads=num_heads, keep=keep, attend=attend, **options
        )

    return run


@variant("multi_head_attention")
def _mha_tiled(backend: Backend) -> Implementation:
    xp = backend.namespace()

    def decline(
        query: Array,
        key: Array,
        value: Array,
        params: Any,
        /,
        *,
        num_heads: int,
        need_weights: bool,
        **_: Any,
    ) -> str | None:
        if need_weights:
            return "need_weights=True needs the whole (L, S) weights"
        lead = broadcast(tuple(query.shape[:-2]), tuple(key.shape[:-2]), tuple(value.shape[:-2]))
        if _fits(xp, math.prod(lead) * num_heads, query.shape[-2], key.shape[-2], query.dtype):
            return _FITS
        return None

    return Implementation("portable-tiled", _mha_with(backend, tiled=True), decline)


on_namespace("layer_norm", transformer.layer_norm)


@portable("feed_forward")
def _feed_forward(backend: Backend) -> Callable[..., Any]:
    xp = backend.namespace()

    def run(
        x: Array, w1: Array, b1: Array | None, w2: Array, b2: Array | None, /, *, activation: str
    ) -> Array:
        return transformer.feed_forward(xp, x, w1, b1, w2, b2, activation=activation_fn(backend, activation))

    return run


@portable("transformer_encoder_layer")
def _encoder_layer(backend: Backend) -> Callable[..., Any]:
    xp = backend.namespace()

    def run(x: Array, params: Any, /, *, activation: str, **options: Any) -> Array:
        return transformer.transformer_encoder_layer(
            xp, x, params, activation=activation_fn(backend, activation), **options
        )

    return run


@variant("transformer_encoder_layer")
def _encoder_layer_tiled(backend: Backend) -> Implementation:
    xp = backend.namespace()

    def rows(x: Array, num_heads: int) -> int:
        return math.prod(tuple(x.shape[:-2])) * num_heads

    def decline(x: Array, params: Any, /, *, num_heads: int, **_: Any) -> str | None:
        return _FITS if _fits(xp, rows(x, num_heads), x.shape[-2], x.shape[-2], x.dtype) else None

    def run(x: Array, params: Any, /, *, activation: str, **options: Any) -> Array:
        attend = _tiled(xp, rows(x, options["num_heads"]), x.shape[-2], x.dtype)
        return transformer.transformer_encoder_layer(
            xp, x, params, activation=activation_fn(backend, activation), attend=attend, **options
        )

    return Implementation("portable-tiled", run, decline)
