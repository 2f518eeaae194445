"""Built-in implementations of decoding: greedy choice, sampling, and the decoding loop over
the dispatched choice (greedy or sampled)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from seqops import ops
from seqops._agnostic import decoding
from seqops._builtin._table import implement, namespaced
from seqops._lib.typing import Array
from seqops.contract import Backend

namespaced(ops.greedy, decoding.greedy)


@implement(ops.sample_logits)
def sample_logits(
    backend: Backend,
    logits: Array,
    /,
    *,
    rng: Any,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    min_tokens_to_keep: int,
) -> Array:
    xp = backend.namespace()
    device = backend.device(logits)
    filtered = decoding.filter_logits(
        xp, logits, device=device, temperature=temperature, top_k=top_k, top_p=top_p,
        min_tokens_to_keep=min_tokens_to_keep,
    )  # fmt: skip
    uniform = backend.random_uniform(rng, tuple(filtered.shape), dtype=filtered.dtype, device=device)
    return decoding.gumbel_argmax(xp, filtered, uniform)


@implement(ops.decode)
def decode(
    backend: Backend,
    step: Callable[..., Any],
    state: Any,
    first_tokens: Array,
    /,
    *,
    max_new_tokens: int,
    strategy: str,
    rng: Any,
    eos_token_id: int | None,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    min_tokens_to_keep: int,
) -> Array:
    if strategy == "sample":
        rngs = backend.split_rng(rng, max_new_tokens)  # independent draws per step

        def choose(logits: Array, t: int) -> Array:
            return ops.sample_logits.dispatch(
                backend, logits, rng=rngs[t], temperature=temperature, top_k=top_k, top_p=top_p,
                min_tokens_to_keep=min_tokens_to_keep,
            )  # fmt: skip

    else:

        def choose(logits: Array, t: int) -> Array:
            return ops.greedy.dispatch(backend, logits)

    return decoding.decode(
        backend.namespace(),
        step,
        state,
        first_tokens,
        max_new_tokens=max_new_tokens,
        choose=choose,
        eos_token_id=eos_token_id,
        device=backend.device(first_tokens),
    )
