"""Portable factories of language modelling: losses, decoding, gradient clipping."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from seqops._agnostic import clipping, decoding, losses
from seqops._lib.backend import Backend
from seqops._lib.typing import Array
from seqops._portable._registry import on_namespace, portable


@portable("cross_entropy")
def _cross_entropy(backend: Backend) -> Callable[..., Any]:
    xp = backend.namespace()

    def run(logits: Array, targets: Array, /, **options: Any) -> Array:
        return losses.cross_entropy(xp, logits, targets, device=backend.device(logits), **options)

    return run


@portable("autoregressive_log_likelihood")
def _log_likelihood(backend: Backend) -> Callable[..., Any]:
    xp = backend.namespace()

    def run(logits: Array, targets: Array, /) -> Array:
        return losses.autoregressive_log_likelihood(xp, logits, targets, device=backend.device(logits))

    return run


on_namespace("greedy", decoding.greedy)


@portable("sample_logits")
def _sample_logits(backend: Backend) -> Callable[..., Any]:
    xp = backend.namespace()

    def run(logits: Array, /, *, rng: Any, **options: Any) -> Array:
        device = backend.device(logits)
        filtered = decoding.filter_logits(xp, logits, device=device, **options)
        uniform = backend.random_uniform(rng, tuple(filtered.shape), dtype=filtered.dtype, device=device)
        return decoding.gumbel_argmax(xp, filtered, uniform)

    return run


@portable("decode")
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


on_namespace("clip_grad_norm", clipping.clip_grad_norm)
on_namespace("clip_grad_value", clipping.clip_grad_value)
