"""Token choice for decoding: greedy, temperature / top-k / top-p filtering, sampling.

Pure Array API code over the last (vocabulary) axis. Random draws come in as arrays
(the backend makes them); the decoding loop calls back into the user's step function.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import array_api_compat
import array_api_extra as xpx

from seqops._agnostic.activations import compute_dtype, softmax
from seqops._lib.typing import Array, Device, Namespace


def greedy(xp: Namespace, logits: Array, /) -> Array:
    """``argmax`` over the last axis (the first of equal maxima)."""
    return xp.argmax(logits, axis=-1)


def filter_logits(
    xp: Namespace,
    logits: Array,
    /,
    *,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    min_tokens_to_keep: int,
    device: Device,
) -> Array:
    """``logits / temperature`` with the tokens top-k and top-p drop set to ``-inf``.

    In the compute dtype (float32 for half types). Both filters keep or drop tokens of
    equal logits together, so the result does not depend on the order of ties.

    * top-k: keep every logit ``>=`` the ``k``-th largest, ``k = min(max(top_k,
      min_tokens_to_keep), V)`` (Hugging Face ``TopKLogitsWarper``); alone, without a sort
      (:func:`kth_largest`).
    * top-p, on the softmax of what top-k kept: with the tokens sorted by increasing
      logit and ``cum`` the running sum of their probabilities (Hugging Face's order of
      summation), a token is dropped iff ``cum`` at the last token of equal logit is
      ``<= 1 - top_p``, i.e. iff the mass of the strictly more probable tokens is
      ``>= top_p``; the ``min_tokens_to_keep`` most probable tokens are always kept.
    """
    z = xp.astype(logits, compute_dtype(xp, logits.dtype), copy=False)
    if temperature != 1.0:
        z = z / temperature
    if top_k is None and (top_p is None or top_p >= 1.0):
        return z
    vocab = z.shape[-1]
    if top_k is not None and (top_p is None or top_p >= 1.0):  # top-k alone: no sort
        k = min(max(top_k, min_tokens_to_keep), vocab)
        return xp.where(z >= kth_largest(xp, z, k), z, -math.inf)
    ascending = xp.sort(z, axis=-1)  # (..., V)
    if top_k is not None:
        k = min(max(top_k, min_tokens_to_keep), vocab)
        threshold = ascending[..., vocab - k : vocab - k + 1]  # the k-th largest, (..., 1)
        # Still ascending: what top-k drops is a prefix.
        ascending = xp.where(ascending >= threshold, ascending, -math.inf)
    if top_p is not None and top_p < 1.0:
        cum = xp.cumulative_sum(softmax(xp, ascending), axis=-1)  # (..., V)
        position = xp.arange(vocab, device=device)
        kept = (cum > 1.0 - top_p) | (position >= vocab - min_tokens_to_keep)
        # kept is a suffix of the sorted order; its first logit is the threshold, and every
        # token equal to it (a tie split by the sort) is kept too.
        threshold = xp.min(xp.where(kept, ascending, math.inf), axis=-1, keepdims=True)
    return xp.where(z >= threshold, z, -math.inf)


def kth_largest(xp: Namespace, x: Array, k: int, /) -> Array:
    """The ``k``-th largest entry of each row (last axis) counting ties, ``(..., 1)``; ``1 <= k <= V``.

    The same value as ``sort(x)[..., V - k]`` (a tie at the ``k``-th place gives that value)
    without the ``O(V log V)`` sort where ``array_api_extra.partition`` delegates to a native
    selection (NumPy, CuPy: introselect, ``O(V)``; JAX: ``lax.top_k`` of ``k``). Other
    namespaces sort: array-api-extra's generic partition is slower than a sort there (torch's
    own ``topk`` is the torch-fast plugin's ``torch-topk``).
    """
    if (
        array_api_compat.is_numpy_namespace(xp)
        or array_api_compat.is_cupy_namespace(xp)
        or array_api_compat.is_jax_namespace(xp)
    ):
        return -xpx.partition(-x, k - 1, axis=-1, xp=xp)[..., k - 1 : k]
    vocab = x.shape[-1]
    return xp.sort(x, axis=-1)[..., vocab - k : vocab - k + 1]


def gumbel_argmax(xp: Namespace, filtered: Array, uniform: Array, /) -> Array:
    """Sample ``softmax(filtered)`` by the Gumbel-max trick from uniform draws in ``[0, 1)``.

    The draws are clipped into the open interval: a 0 would give ``-inf`` noise, and a draw
    that rounded up to 1 (a float64 draw cast to float32) ``+inf``, which added to a removed
    token's ``-inf`` is NaN, and ``argmax`` would pick it."""
    info = xp.finfo(uniform.dtype)
    gumbel = -xp.log(-xp.log(xp.clip(uniform, info.smallest_normal, 1.0 - info.eps / 2)))
    return xp.argmax(filtered + xp.astype(gumbel, filtered.dtype, copy=False), axis=-1)


def decode(
    xp: Namespace,
    step: Callable[[Array, Any], tuple[Array, Any]],
    state: Any,
    first_tokens: Array,
    /,
    *,
    max_new_tokens: int,
    choose: Callable[[Array, int], Array],
    eos_token_id: tuple[int, ...] | None,
    pad_token_id: int | None,
    prompt: Array | None,
    all_finished: Callable[[Array], bool],
    device: Device,
) -> Array:
    """Run ``step`` up to ``max_new_tokens`` times, feeding back the chosen tokens.

    ``choose(logits, t)`` picks the tokens of step ``t``. Once a row has chosen one of
    ``eos_token_id``, its later tokens are ``pad_token_id`` (still fed to ``step``: shapes
    stay fixed); the loop stops early when ``all_finished(finished)`` says every row is
    done (it answers ``False`` while tracing, so a trace runs every step). A Python loop:
    the step function may change the shapes in its state (a growing cache); ``jax.jit``
    unrolls it. ``prompt (..., P)``, if given, is put in front of the result.
    """
    tokens = first_tokens
    finished = None
    generated = []
    for t in range(max_new_tokens):
        logits, state = step(tokens, state)
        tokens = xp.astype(choose(logits, t), first_tokens.dtype)
        if eos_token_id is not None:
            if finished is not None:
                tokens = xp.where(
                    finished, xp.asarray(pad_token_id, dtype=tokens.dtype, device=device), tokens
                )
            ended = tokens == eos_token_id[0]
            for other in eos_token_id[1:]:
                ended = xp.logical_or(ended, tokens == other)
            finished = ended if finished is None else xp.logical_or(finished, ended)
        generated.append(tokens)
        if finished is not None and t + 1 < max_new_tokens and all_finished(finished):
            break
    if generated:
        out = xp.stack(generated, axis=-1)
    else:
        out = xp.zeros((*first_tokens.shape, 0), dtype=first_tokens.dtype, device=device)
    return out if prompt is None else xp.concat([xp.astype(prompt, out.dtype), out], axis=-1)
