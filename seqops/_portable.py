"""The built-in plugin: the portable implementation of every op, asked last.

Each factory receives the backend and returns a function with the public op's
signature (after validation) that runs the pure Array API code of ``seqops._agnostic``.
The backend supplies what the standard lacks: random draws, native ``erf``, ``scan``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from seqops._agnostic import (
    activations,
    attention,
    clipping,
    decoding,
    losses,
    recurrent,
    special,
    transformer,
)
from seqops._lib.backend import Backend
from seqops._lib.typing import Array
from seqops._lib.validate import broadcast
from seqops.hookspecs import Implementation, hookimpl

_FACTORIES: dict[str, Callable[[Backend], Callable[..., Any]]] = {}


def _portable(
    op: str,
) -> Callable[[Callable[[Backend], Callable[..., Any]]], Callable[[Backend], Callable[..., Any]]]:
    def register(factory: Callable[[Backend], Callable[..., Any]]) -> Callable[[Backend], Callable[..., Any]]:
        _FACTORIES[op] = factory
        return factory

    return register


@hookimpl(trylast=True)
def seqops_implementations(op: str, backend: Backend) -> list[Implementation] | None:
    factory = _FACTORIES.get(op)
    return None if factory is None else [Implementation("portable", factory(backend))]


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


@_portable("softmax")
def _softmax(backend: Backend) -> Callable[..., Any]:
    return functools.partial(activations.softmax, backend.namespace())


@_portable("log_softmax")
def _log_softmax(backend: Backend) -> Callable[..., Any]:
    return functools.partial(activations.log_softmax, backend.namespace())


@_portable("cross_entropy")
def _cross_entropy(backend: Backend) -> Callable[..., Any]:
    xp = backend.namespace()

    def run(logits: Array, targets: Array, /, **options: Any) -> Array:
        return losses.cross_entropy(xp, logits, targets, device=backend.device(logits), **options)

    return run


@_portable("autoregressive_log_likelihood")
def _log_likelihood(backend: Backend) -> Callable[..., Any]:
    xp = backend.namespace()

    def run(logits: Array, targets: Array, /) -> Array:
        return losses.autoregressive_log_likelihood(xp, logits, targets, device=backend.device(logits))

    return run


@_portable("greedy")
def _greedy(backend: Backend) -> Callable[..., Any]:
    return functools.partial(decoding.greedy, backend.namespace())


@_portable("sample_logits")
def _sample_logits(backend: Backend) -> Callable[..., Any]:
    xp = backend.namespace()

    def run(logits: Array, /, *, rng: Any, **options: Any) -> Array:
        device = backend.device(logits)
        filtered = decoding.filter_logits(xp, logits, device=device, **options)
        uniform = backend.random_uniform(rng, tuple(filtered.shape), dtype=filtered.dtype, device=device)
        return decoding.gumbel_argmax(xp, filtered, uniform)

    return run


@_portable("decode")
def _decode(backend: Backend) -> Callable[..., Any]:
    from seqops.decoding import check_step_logits

    xp = backend.namespace()
    sample = _sample_logits(backend)

    def run(
        step: Callable[..., Any],
        state: Any,
        first_tokens: Array,
        /,
        *,
        max_new_tokens: int,
        strategy: str,
        rng: Any,
        eos_token_id: int | None,
        **options: Any,
    ) -> Array:
        if strategy == "sample":
            rngs = backend.split_rng(rng, max_new_tokens)  # independent draws per step

            def choose(logits: Array, t: int) -> Array:
                return sample(logits, rng=rngs[t], **options)

        else:

            def choose(logits: Array, t: int) -> Array:
                return decoding.greedy(xp, logits)

        shape = tuple(first_tokens.shape)
        return decoding.decode(
            xp,
            step,
            state,
            first_tokens,
            max_new_tokens=max_new_tokens,
            choose=choose,
            eos_token_id=eos_token_id,
            check_logits=lambda logits, t: check_step_logits(logits, shape, backend, t),
            device=backend.device(first_tokens),
        )

    return run


@_portable("clip_grad_norm")
def _clip_grad_norm(backend: Backend) -> Callable[..., Any]:
    return functools.partial(clipping.clip_grad_norm, backend.namespace())


@_portable("clip_grad_value")
def _clip_grad_value(backend: Backend) -> Callable[..., Any]:
    return functools.partial(clipping.clip_grad_value, backend.namespace())


@_portable("causal_mask")
def _causal_mask(backend: Backend) -> Callable[..., Any]:
    xp = backend.namespace()

    def run(q_len: int, kv_len: int, /, *, align: str, device: Any) -> Array:
        offset = 0 if align == "top_left" else kv_len - q_len
        return attention.causal_mask(xp, q_len, kv_len, offset=offset, device=device)

    return run


@_portable("padding_mask")
def _padding_mask(backend: Backend) -> Callable[..., Any]:
    return functools.partial(attention.padding_mask, backend.namespace())


@_portable("sinusoidal_positional_encoding")
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


@_portable("scaled_dot_product_attention")
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


@_portable("multi_head_attention")
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


@_portable("layer_norm")
def _layer_norm(backend: Backend) -> Callable[..., Any]:
    return functools.partial(transformer.layer_norm, backend.namespace())


@_portable("feed_forward")
def _feed_forward(backend: Backend) -> Callable[..., Any]:
    xp = backend.namespace()

    def run(
        x: Array, w1: Array, b1: Array | None, w2: Array, b2: Array | None, /, *, activation: str
    ) -> Array:
        return transformer.feed_forward(xp, x, w1, b1, w2, b2, activation=activation_fn(backend, activation))

    return run


@_portable("transformer_encoder_layer")
def _encoder_layer(backend: Backend) -> Callable[..., Any]:
    xp = backend.namespace()

    def run(x: Array, params: Any, /, *, activation: str, **options: Any) -> Array:
        return transformer.transformer_encoder_layer(
            xp, x, params, activation=activation_fn(backend, activation), **options
        )

    return run


@_portable("rnn_cell")
def _rnn_cell(backend: Backend) -> Callable[..., Any]:
    return functools.partial(recurrent.rnn_cell, backend.namespace())


@_portable("lstm_cell")
def _lstm_cell(backend: Backend) -> Callable[..., Any]:
    return functools.partial(recurrent.lstm_cell, backend.namespace())


@_portable("rnn")
def _rnn(backend: Backend) -> Callable[..., Any]:
    return functools.partial(recurrent.rnn, backend.namespace(), scan=backend.scan)


@_portable("lstm")
def _lstm(backend: Backend) -> Callable[..., Any]:
    return functools.partial(recurrent.lstm, backend.namespace(), scan=backend.scan)
