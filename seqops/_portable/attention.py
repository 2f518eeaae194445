"""Portable factories of the attention family (softmax, masks, encodings, attention, blocks)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from seqops._agnostic import activations, attention, special, transformer
from seqops._lib.backend import Backend
from seqops._lib.typing import Array
from seqops._lib.validate import broadcast
from seqops._portable._registry import on_namespace, portable


def _dropout_keep(backend: Backend, rng: Any, p: float, shape: tuple[int, ...], like: Array) -> Array:
    """Dropout multipliers (0 or ``1/(1-p)``) of ``shape``, computed in ``like``'s compute dtype."""
    xp = backend.namespace()
    dtype = activations.compute_dtype(xp, like.dtype)
    u = backend.random_uniform(rng, shape, dtype=dtype, device=backend.device(like))
    return xp.astype(u >= p, dtype) * (1.0 / (1.0 - p))


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
            # weights (..., L, S): leading dims of q, k, v broadcast (kv heads widened by GQA)
            def lead(a: Array) -> tuple[int, ...]:
                return (*a.shape[:-3], q.shape[-3]) if options["enable_gqa"] else tuple(a.shape[:-2])

            shape = (*broadcast(tuple(q.shape[:-2]), lead(k), lead(v)), q.shape[-2], k.shape[-2])
            keep = _dropout_keep(backend, rng, dropout_p, shape, q)
        return attention.scaled_dot_product_attention(xp, q, k, v, keep=keep, **options)

    return run


@portable("multi_head_attention")
def _mha(backend: Backend) -> Callable[..., Any]:
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
        keep = None
        if dropout_p > 0.0:
            lead = broadcast(tuple(query.shape[:-2]), tuple(key.shape[:-2]), tuple(value.shape[:-2]))
            keep = _dropout_keep(
                backend, rng, dropout_p, (*lead, num_heads, query.shape[-2], key.shape[-2]), query
            )
        return attention.multi_head_attention(
            xp, query, key, value, params, num_heads=num_heads, keep=keep, **options
        )

    return run


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
