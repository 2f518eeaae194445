"""A frequency check for the samplers of the fast paths (shared by the torch and NumPy tests).

A fast sampler need not draw the portable path's tokens (the contract: the same ``rng`` gives
the same result with the same implementation), only the same distribution: ``check_top_k_draws``
samples one row of logits ``n`` times in one batched call and compares the frequency of every
token with its probability, computed here in float64 from the logits (top-k keeps ties at the
k-th value), to within five standard deviations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def top_k_probabilities(row: np.ndarray, top_k: int, temperature: float = 1.0) -> np.ndarray:
    """``softmax(row / temperature)`` over the tokens ``>=`` the ``top_k``-th largest, 0 elsewhere."""
    z = np.asarray(row, dtype=np.float64) / temperature
    kept = z >= np.sort(z)[-top_k]
    p = np.where(kept, np.exp(z - z.max()), 0.0)
    return p / p.sum()


def check_top_k_draws(
    sample: Callable[[Any, int], Any], to_numpy: Callable[[Any], np.ndarray], row: np.ndarray, batch: Any,
    *, top_k: int, temperature: float = 1.0,
) -> None:  # fmt: skip
    """``sample(batch, seed)`` draws one token per row of ``batch`` (``n`` copies of ``row``)."""
    first = to_numpy(sample(batch, 0))
    np.testing.assert_array_equal(to_numpy(sample(batch, 0)), first)  # the same rng, the same tokens
    assert not np.array_equal(to_numpy(sample(batch, 1)), first)
    p = top_k_probabilities(row, top_k, temperature)
    n = first.shape[0]
    assert set(np.unique(first)) <= set(np.flatnonzero(p))  # only kept tokens
    frequency = np.bincount(first, minlength=p.shape[0]) / n
    sigma = np.sqrt(p * (1 - p) / n)
    np.testing.assert_array_less(np.abs(frequency - p), 5 * sigma + 1e-12)
