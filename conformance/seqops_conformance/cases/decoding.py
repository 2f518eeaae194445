"""Cases of decoding: greedy, filter_logits, sample_logits and decode."""

from __future__ import annotations

from functools import partial

import array_api_compat
import numpy as np

from seqops_conformance.cases._base import _add, _fixed
from seqops_conformance.cases.losses import _L, _N, _V
from seqops_conformance.references import decoding as ref


def _distinct_logits(rng, *lead, vocabulary=_V):
    """Logits ``(*lead, V)`` whose entries in a row differ by >= 0.3 (a permutation of
    ``0.5 * arange(V)`` plus noise < 0.2): no ties in any dtype (bfloat16 spacing <= 1/16
    below 8), so the greedy choice does not depend on rounding."""
    perm = np.argsort(rng.random((*lead, vocabulary)), axis=-1)
    return 0.5 * perm - 2.0 + rng.uniform(0.0, 0.2, (*lead, vocabulary))


def _greedy(lead, rng, vocabulary=_V):
    return (_distinct_logits(rng, *lead, vocabulary=vocabulary),), {}


_add(
    "greedy",
    {
        "rows": partial(_greedy, (_N, _L)),
        "one row": partial(_greedy, ()),
        # Exactly representable in every dtype: the first of equal maxima (API.md).
        "ties: first maximum": partial(
            _fixed, (np.array([[1.0, 3.0, 3.0, 0.0], [-1.0, -1.0, -1.0, -1.0], [0.5, 0.25, 0.5, 0.5]]),), {}
        ),
        "edge: empty batch": partial(_greedy, (0, _L)),
        "edge: V=1": partial(_greedy, (_N, _L), vocabulary=1),
    },
    ref.greedy,
)


def _filter(rng, *, lead=(_N, _L), vocabulary=_V, **options):
    return (_distinct_logits(rng, *lead, vocabulary=vocabulary),), options


_add(
    "filter_logits",
    {
        "no filter": _filter,
        "temperature 0.7": partial(_filter, temperature=0.7),
        "top_k=4": partial(_filter, top_k=4),
        "top_p=0.7 temperature 0.8": partial(_filter, top_p=0.7, temperature=0.8),
        "top_k=4 top_p=0.7 temperature 1.3": partial(_filter, top_k=4, top_p=0.7, temperature=1.3),
        "top_p=0.5 min_tokens_to_keep=2": partial(_filter, top_p=0.5, min_tokens_to_keep=2),
        "top_k=1 min_tokens_to_keep=3": partial(_filter, top_k=1, min_tokens_to_keep=3),
        # Ties with the k-th value are all kept (k=2: row 0 keeps 3, 3; row 1 its four equal
        # logits; row 2 keeps 2, 0.5, 0.5), exactly representable in every dtype. Top-p keeps
        # a group of equal logits whole (probabilities 2/5, 1/5, 1/5, 1/5 and top_p=0.5: the
        # mass above each 1/5 is 2/5 < 0.5, so all four stay, where Hugging Face keeps two).
        "ties: top_k=2": partial(
            _fixed,
            (np.array([[1.0, 3.0, 3.0, 0.0], [-1.0, -1.0, -1.0, -1.0], [0.5, 0.25, 0.5, 2.0]]),),
            {"top_k": 2},
        ),
        "ties: top_p=0.5": partial(
            _fixed, (np.array([[np.log(2.0), 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]),), {"top_p": 0.5}
        ),
        "edge: empty batch top_k=4 top_p=0.7": partial(_filter, lead=(0, _L), top_k=4, top_p=0.7),
        # One token: it is kept whatever the filter.
        "edge: V=1 top_k=1 top_p=0.5": partial(_filter, vocabulary=1, top_k=1, top_p=0.5, temperature=0.7),
        "edge: V=1 top_k=4": partial(_filter, vocabulary=1, top_k=4),
    },
    ref.filter_logits,
)


def _sample(rng, *, lead=(_N, _L), vocabulary=_V, **options):
    return (_distinct_logits(rng, *lead, vocabulary=vocabulary),), {"rng": 0, **options}


def _ref_greedy_sample(logits, **options):
    return ref.greedy(logits)


# Sampling is random: the conformance checks what is deterministic about it. top_k=1 keeps
# one token, so the draw is the greedy choice; otherwise every drawn id must be in the
# support that temperature, top-k and top-p leave (15 draws per case and backend).
_add(
    "sample_logits",
    {
        "top_k=1 temperature 0.5 is greedy": partial(_sample, top_k=1, temperature=0.5),
        "edge: empty batch top_k=1": partial(_sample, lead=(0, _L), top_k=1),
        "edge: empty batch": partial(_sample, lead=(0, _L)),
        # One token: every draw is token 0.
        "edge: V=1": partial(_sample, vocabulary=1),
        "edge: V=1 top_k=4": partial(_sample, vocabulary=1, top_k=4),
        "edge: V=1 top_p=0.5": partial(_sample, vocabulary=1, top_p=0.5),
    },
    _ref_greedy_sample,
)


def _ref_support(logits, *, rng, **options):
    return ref.sampling_support(logits, **options)


_add(
    "sample_logits",
    {
        "support top_k=4 top_p=0.7 temperature 0.8": partial(_sample, top_k=4, top_p=0.7, temperature=0.8),
        "support top_p=0.5 min_tokens_to_keep=2": partial(_sample, top_p=0.5, min_tokens_to_keep=2),
    },
    _ref_support,
    compare="in_support",
)


def _transition_step(tokens, table):
    """A fixed bigram model: the next-token logits are the rows ``table[tokens]``; the
    state is the table itself (so the runner converts it to the backend and dtype)."""
    xp = array_api_compat.array_namespace(table)
    return xp.take(table, tokens, axis=0), table


def _decode(generator, /, *, rows=4, vocabulary=_V, max_new_tokens=6, **options):
    """Decoding 6 tokens for 4 rows from a random bigram table (``options`` may hold the
    op's own ``rng=``, hence the name of the generator)."""
    table = _distinct_logits(generator, vocabulary, vocabulary=vocabulary)
    return (_transition_step, table, generator.integers(0, vocabulary, (rows,))), {
        "max_new_tokens": max_new_tokens,
        **options,
    }


def _ref_decode(
    step, state, first_tokens, *, max_new_tokens, eos_token_id=None, pad_token_id=None, prompt=None, **options
):
    """A hand loop, as Hugging Face's ``generate``: feed back ``greedy(step(tokens))``; after an
    eos, a row emits ``pad_token_id`` (default the first eos); stop once every row is done."""
    eos = [] if eos_token_id is None else list(np.atleast_1d(eos_token_id))
    pad = eos[0] if pad_token_id is None and eos else pad_token_id
    tokens, out = np.asarray(first_tokens), []
    done = np.zeros(tokens.shape, dtype=bool)
    for _ in range(max_new_tokens):
        logits, state = step(tokens, state)
        tokens = np.where(done, pad if eos else 0, ref.greedy(logits))
        done |= np.isin(tokens, eos)
        out.append(tokens)
        if eos and done.all():
            break
    ids = np.stack(out, axis=-1) if out else np.zeros((*tokens.shape, 0), dtype=tokens.dtype)
    return ids if prompt is None else np.concatenate([np.asarray(prompt), ids], axis=-1)


_add(
    "decode",
    {
        "greedy bigram": _decode,
        "eos": partial(_decode, eos_token_id=3),
        "eos list, pad, prompt": partial(
            _decode, eos_token_id=[3, 5], pad_token_id=0, prompt=np.array([[1, 2]] * 4)
        ),
        "all rows end early": partial(_decode, eos_token_id=list(range(_V)), pad_token_id=1),
        "edge: empty batch": partial(_decode, rows=0),
        # No row to end: eagerly the loop stops after one step, as every row has ended.
        "edge: empty batch eos": partial(_decode, rows=0, eos_token_id=3),
        "edge: max_new_tokens=0": partial(_decode, max_new_tokens=0, prompt=np.array([[1, 2]] * 4)),
        "edge: V=1": partial(_decode, vocabulary=1),
    },
    _ref_decode,
    # Eagerly the loop stops once every row has ended; under a trace every step runs.
    eager_only=("eos list, pad, prompt", "all rows end early", "edge: empty batch eos"),
)
