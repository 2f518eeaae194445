"""Built-in implementations of decoding: greedy choice, the logits filter, sampling over the
dispatched filter, and the decoding loop over the dispatched choice (greedy or sampled)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from seqops import ops
from seqops._agnostic import decoding
from seqops._agnostic.activations import compute_dtype
from seqops._builtin._table import implement, namespaced
from seqops._lib.placement import helper_device
from seqops._lib.typing import Array
from seqops._lib.values import concrete_bool
from seqops.contract import Backend

namespaced(ops.greedy, decoding.greedy)


@implement(ops.filter_logits)
def filter_logits(
    backend: Backend,
    logits: Array,
    /,
    *,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    min_tokens_to_keep: int,
) -> Array:
    xp = backend.namespace()
    filtered = decoding.filter_logits(
        xp, logits, device=helper_device(logits), temperature=temperature, top_k=top_k, top_p=top_p,
        min_tokens_to_keep=min_tokens_to_keep,
    )  # fmt: skip
    return xp.astype(filtered, logits.dtype, copy=False)  # computed in float32 for half types


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
    device = helper_device(logits)
    # Dispatched, so a fast path of the filter reaches sampling. It returns the dtype of
    # logits; the Gumbel noise is added in the compute dtype (float32 for half types).
    filtered = ops.filter_logits.dispatch(
        backend, logits, temperature=temperature, top_k=top_k, top_p=top_p,
        min_tokens_to_keep=min_tokens_to_keep,
    )  # fmt: skip
    filtered = xp.astype(filtered, compute_dtype(xp, filtered.dtype), copy=False)
    uniform = backend.random_uniform(
        rng, tuple(filtered.shape), dtype=filtered.dtype, device=device, like=filtered
    )
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
    eos_token_id: tuple[int, ...] | None,
    pad_token_id: int | None,
    prompt: Array | None,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    min_tokens_to_keep: int,
) -> Array:
    xp = backend.namespace()
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

    def all_finished(finished: Array) -> bool:
        # read eagerly (one host read per step, as generate does); never while tracing
        return concrete_bool(backend, xp.all(finished)) is True

    return decoding.decode(
        xp,
        step,
        state,
        first_tokens,
        max_new_tokens=max_new_tokens,
        choose=choose,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
        prompt=prompt,
        all_finished=all_finished,
        device=helper_device(first_tokens),
    )
