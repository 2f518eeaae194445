"""Float64 references of decoding: the greedy choice, the support of sampling and the filtered
logits."""

import math

import numpy as np


def greedy(logits):
    """Index of the first maximum of each row of ``logits (..., V)``."""
    logits = np.asarray(logits, dtype=np.float64)
    out = np.zeros(logits.shape[:-1], dtype=np.int64)
    for idx in np.ndindex(out.shape):
        row = logits[idx]
        best = 0
        for v in range(1, row.shape[0]):
            if row[v] > row[best]:
                best = v
        out[idx] = best
    return out


def sampling_support(logits, temperature=1.0, top_k=None, top_p=None, min_tokens_to_keep=1):
    """Which tokens ``sample_logits`` may draw: bool ``(..., V)``, straight from the definitions.

    After ``logits / temperature``: top-k keeps token ``i`` iff fewer than
    ``max(top_k, min_tokens_to_keep)`` tokens have a strictly larger logit (ties with the
    k-th value kept); top-p then keeps ``i`` iff the probability mass (renormalised over
    what top-k kept) of the tokens with a strictly larger logit is ``< top_p``, or fewer
    than ``min_tokens_to_keep`` tokens have a strictly larger logit. Exact-boundary cases
    depend on rounding; this reference sums with ``math.fsum``.
    """
    logits = np.asarray(logits, dtype=np.float64) / temperature
    keep = np.ones(logits.shape, dtype=bool)
    for idx in np.ndindex(logits.shape[:-1]):
        row = logits[idx]
        vocab = row.shape[0]
        alive = [True] * vocab
        if top_k is not None:
            k = max(top_k, min_tokens_to_keep)
            for i in range(vocab):
                alive[i] = sum(1 for j in range(vocab) if row[j] > row[i]) < k
        if top_p is not None and top_p < 1.0:
            top = max(row[j] for j in range(vocab) if alive[j])
            e = [math.exp(row[j] - top) if alive[j] else 0.0 for j in range(vocab)]
            norm = math.fsum(e)
            p = [x / norm for x in e]
            survivors = list(alive)
            for i in range(vocab):
                if not alive[i]:
                    continue
                above = [j for j in range(vocab) if alive[j] and row[j] > row[i]]
                mass = math.fsum(p[j] for j in above)
                survivors[i] = mass < top_p or len(above) < min_tokens_to_keep
            alive = survivors
        keep[idx] = alive
    return keep


def filter_logits(logits, temperature=1.0, top_k=None, top_p=None, min_tokens_to_keep=1):
    """``logits / temperature`` where :func:`sampling_support` keeps a token, ``-inf`` elsewhere."""
    keep = sampling_support(
        logits, temperature=temperature, top_k=top_k, top_p=top_p, min_tokens_to_keep=min_tokens_to_keep
    )
    return np.where(keep, np.asarray(logits, dtype=np.float64) / temperature, -math.inf)
