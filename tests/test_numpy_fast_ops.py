"""numpy-fast (``plugins/seqops_numpy_fast``): ``silu`` against a float64 reference at the
extremes, without NumPy warnings, and top-k ``sample_logits`` drawing the contract's
distribution (not the portable path's tokens: see ``tests/_sampling.py``)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from _sampling import check_top_k_draws

import seqops

fast = pytest.importorskip("seqops_numpy_fast")


def _chosen(fn, *args, **kwargs):
    return seqops.explain(fn, *args, **kwargs).chosen


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
def test_silu_matches_a_float64_reference_without_warnings(dtype: str) -> None:
    info = np.finfo(dtype)
    x = np.concatenate([
        np.linspace(-120, 120, 2001), [-1e4, -88.8, -87.0, -1e-30, 0.0, 1e-30, 30.0, 1e4], [info.min, info.max],
    ]).astype(dtype)  # fmt: skip
    expected = np.array([v / (1.0 + math.exp(-v)) if v > -700 else -0.0 for v in x.astype(np.float64)])
    assert _chosen(seqops.silu, x) == "numpy-silu"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = seqops.silu(x)
    assert out.dtype == x.dtype and out.shape == x.shape
    # one rounding of the output in float16, a few ulps in float32/64; in float32 the values
    # below 2.5e-37 (x < -88.7, where exp(-x) overflows) are -0.0, as torch's and JAX's silu
    atol = 2.5e-37 if dtype == "float32" else float(info.tiny)
    np.testing.assert_allclose(out.astype(np.float64), expected, rtol=4 * float(info.eps), atol=atol)
    assert np.signbit(seqops.silu(np.array([-1e4], dtype=dtype)))[0]  # -0.0, as the limit


def test_silu_of_an_empty_and_a_0d_array() -> None:
    assert seqops.silu(np.zeros((0, 3), np.float32)).shape == (0, 3)
    out = seqops.silu(np.array(1.0, np.float32))
    assert np.shape(out) == () and math.isclose(out, 1 / (1 + math.exp(-1)), rel_tol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("ties", [False, True])
def test_sample_logits_top_k_draws_the_distribution(dtype: str, ties: bool) -> None:
    row = (2.0 * np.random.default_rng(1).standard_normal(300)).astype(dtype)
    if ties:
        row[:10] = 9.0  # ties beyond k = 5: all ten kept, equally likely
    batch = np.broadcast_to(row, (20000, 300))
    for kwargs in ({"top_k": 5}, {"top_k": 40, "temperature": 0.8}):
        assert _chosen(seqops.sample_logits, batch, rng=0, **kwargs) == "numpy-topk-sample"
        check_top_k_draws(
            lambda logits, seed: seqops.sample_logits(logits, rng=seed, **kwargs),  # noqa: B023
            np.asarray, row.astype(np.float64), batch, **kwargs,
        )  # fmt: skip


def test_sample_logits_declines_what_it_does_not_compute() -> None:
    logits = np.zeros((2, 7), np.float32)
    decisions = dict(seqops.explain(seqops.sample_logits, logits, rng=0).decisions)
    assert decisions["numpy-topk-sample (plugin 'numpy-fast')"] == f"declines: {fast.NO_TOP_K}"
    decisions = dict(seqops.explain(seqops.sample_logits, logits, rng=0, top_k=3, top_p=0.5).decisions)
    assert decisions["numpy-topk-sample (plugin 'numpy-fast')"] == f"declines: {fast.TOP_P}"
    # a single row and top_k beyond the vocabulary
    assert seqops.sample_logits(np.float32([0.0, 5.0, -np.inf]), rng=0, top_k=10) in (0, 1)
