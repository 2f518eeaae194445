"""numpy-fast (``plugins/seqops_numpy_fast``): ``silu`` against a float64 reference at the
extremes, without NumPy warnings; top-k ``sample_logits`` drawing the contract's distribution
(not the portable path's tokens: see ``tests/_sampling.py``); the in-place paths (softmax,
top-k filter, attention, RNN, reparameterization, Gaussian KL and log-likelihood) against
float64 references written differently, the portable path (to the bit where the formula is
the same), and their awkward sizes and values (empty, ``-inf``, NaN, ties)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from _sampling import top_k_probabilities

import seqops

fast_attention = pytest.importorskip("seqops_numpy_fast.attention")
fast_decoding = pytest.importorskip("seqops_numpy_fast.decoding")


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
        first = seqops.sample_logits(batch, rng=0, **kwargs)
        np.testing.assert_array_equal(seqops.sample_logits(batch, rng=0, **kwargs), first)
        assert not np.array_equal(seqops.sample_logits(batch, rng=1, **kwargs), first)
        _check_frequencies(first, top_k_probabilities(row.astype(np.float64), **kwargs))


def _check_frequencies(tokens: np.ndarray, p: np.ndarray) -> None:
    """A chi-square test (p-value 1e-6) of the token counts against ``p``, the tokens expected
    fewer than 5 times pooled into one bin. Not ``_sampling.check_top_k_draws``' five sigmas per
    token: its normal bound fails where a count is expected below 1 (top_k=40, temperature 0.8:
    token 192 of p = 1.4e-5, expected 0.29 times in 20000 draws, drawn 3 times, a Poisson tail
    of 0.3% among ~30 such tokens); over 30 seeds the counts fit (chi-square 45.9, 39 dof)."""
    assert set(np.unique(tokens)) <= set(np.flatnonzero(p))  # only kept tokens
    counts, expected = np.bincount(tokens, minlength=p.shape[0]), p * tokens.shape[0]
    rare = expected < 5
    observed = np.append(counts[~rare], counts[rare].sum())
    expected = np.append(expected[~rare], expected[rare].sum())
    used = expected > 0
    chi2 = float((((observed - expected) ** 2)[used] / expected[used]).sum())
    dof = int(used.sum()) - 1
    z = 4.75  # the normal quantile of 1e-6; Wilson-Hilferty's cube-root approximation of chi-square
    assert chi2 < dof * (1 - 2 / (9 * dof) + z * math.sqrt(2 / (9 * dof))) ** 3, (chi2, dof)


def test_sample_logits_declines_what_it_does_not_compute() -> None:
    logits = np.zeros((2, 7), np.float32)
    decisions = dict(seqops.explain(seqops.sample_logits, logits, rng=0).decisions)
    assert decisions["numpy-topk-sample (plugin 'numpy-fast')"] == f"declines: {fast_decoding.NO_TOP_K}"
    decisions = dict(seqops.explain(seqops.sample_logits, logits, rng=0, top_k=3, top_p=0.5).decisions)
    assert decisions["numpy-topk-sample (plugin 'numpy-fast')"] == f"declines: {fast_decoding.TOP_P}"
    # a single row and top_k beyond the vocabulary
    assert seqops.sample_logits(np.float32([0.0, 5.0, -np.inf]), rng=0, top_k=10) in (0, 1)


# -- helpers for the in-place fast paths: the portable implementation and float64 references --
def _portable(op: str, *args, **kwargs):
    """``op`` computed by the built-in ``portable`` implementation on the NumPy backend."""
    portable = {i.name: i for i in seqops.implementations(op, "numpy")}["portable"]
    with seqops.use("numpy") as backend:
        return portable.fn(backend, *args, **kwargs)


def _untouched(*arrays):
    """Copies of ``arrays``, to check afterwards that a call did not write into them."""
    return [np.array(a, copy=True) for a in arrays]


def _same(got, arrays, copies) -> None:
    for a, c in zip(arrays, copies, strict=True):
        np.testing.assert_array_equal(a, c)


def _softmax_reference(x: np.ndarray, axis: int) -> np.ndarray:
    """Row by row in float64 with ``math.fsum``: ``exp(x - max) / sum`` over the finite max."""
    moved = np.moveaxis(np.asarray(x, np.float64), axis, -1)
    out = np.empty_like(moved)
    for idx in np.ndindex(moved.shape[:-1]):
        row = moved[idx]
        top = max(row)
        e = [math.exp(v - top) for v in row]
        out[idx] = [v / math.fsum(e) for v in e]
    return np.moveaxis(out, -1, axis)


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
def test_softmax_matches_a_float64_reference_and_the_portable_path(dtype: str) -> None:
    x = (3 * np.random.default_rng(0).standard_normal((5, 9))).astype(dtype)
    x[1, [0, 4]] = -np.inf  # masked entries: 0
    x[2] = -np.inf  # no finite entry: NaN (0 / 0), as the portable path
    x[3, 2] = np.nan  # a NaN row stays NaN
    x[4, 5] = np.inf  # +inf: shifted by 0, inf / inf
    copies = _untouched(x)
    with np.errstate(invalid="ignore"):  # the row without a finite entry: 0 / 0
        _check_softmax(x, dtype)
    _same([x], [x], copies)


def _check_softmax(x: np.ndarray, dtype: str) -> None:
    for axis in (-1, 0):
        assert _chosen(seqops.softmax, x, axis=axis) == "numpy-softmax"
        out = seqops.softmax(x, axis=axis)
        assert out.dtype == x.dtype and out.shape == x.shape
        np.testing.assert_array_equal(out, _portable("softmax", x, axis=axis))  # same formula, to the bit
    finite = x[[0, 1]]
    tol = {"float64": 1e-15, "float32": 3e-7, "float16": 2e-3}[dtype]
    ref = _softmax_reference(finite, -1)
    np.testing.assert_allclose(seqops.softmax(finite).astype(np.float64), ref, rtol=tol, atol=tol)
    assert np.isnan(seqops.softmax(x)[2:4]).all()


def test_softmax_of_empty_axes_and_batches() -> None:
    empty_axis = np.zeros((2, 0), np.float32)
    assert seqops.softmax(empty_axis) is empty_axis  # nothing to normalise, as the portable path
    assert seqops.softmax(np.zeros((0, 3), np.float32)).shape == (0, 3)
    np.testing.assert_array_equal(seqops.softmax(np.zeros(4, np.float32)), np.full(4, 0.25, np.float32))


def _filter_reference(z: np.ndarray, k: int) -> np.ndarray:
    """float64: token ``i`` kept iff fewer than ``k`` tokens exceed it (rows without NaN)."""
    z = np.asarray(z, np.float64)
    out = np.full_like(z, -np.inf)
    for idx in np.ndindex(z.shape[:-1]):
        row = z[idx]
        for i, v in enumerate(row):
            if np.sum(row > v) < k:
                out[idx + (i,)] = v
    return out


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
def test_filter_logits_top_k_matches_the_portable_path_and_a_reference(dtype: str) -> None:
    z = np.round(2 * np.random.default_rng(2).standard_normal((6, 40))).astype(dtype)  # many ties
    z[1, :30] = -np.inf  # ten numbers left
    z[2, [3, 17]] = np.nan  # the portable rule: NaN ranked below every number, removed
    z[3, :38] = np.nan  # fewer numbers than k: nothing kept
    z[4, :5] = np.inf
    copies = _untouched(z)
    for options in (
        {"top_k": 5},
        {"top_k": 5, "temperature": 0.7},
        {"top_k": 1, "min_tokens_to_keep": 3},
        {"top_k": 100},  # beyond the vocabulary: every number kept
        {"top_k": 4, "top_p": 1.0},
    ):
        assert _chosen(seqops.filter_logits, z, **options) == "numpy-topk-filter"
        out = seqops.filter_logits(z, **options)
        assert out.dtype == z.dtype and out.shape == z.shape
        full = {"temperature": 1.0, "top_p": None, "min_tokens_to_keep": 1, **options}
        np.testing.assert_array_equal(out, _portable("filter_logits", z, **full))
        k = min(max(full["top_k"], full["min_tokens_to_keep"]), z.shape[-1])
        compute = np.float32 if dtype == "float16" else dtype
        scaled = (z.astype(compute) / full["temperature"]).astype(dtype)
        numbers = ~np.isnan(z).any(-1)  # NaN rows: the portable path's rule, checked above
        if dtype != "float16" or full["temperature"] == 1.0:  # half: rounded after the filter
            np.testing.assert_array_equal(
                out[numbers].astype(np.float64), _filter_reference(scaled[numbers], k)
            )
    _same([z], [z], copies)


def test_filter_logits_of_one_row_an_empty_batch_and_what_it_declines() -> None:
    row = np.float32([0.0, 5.0, -np.inf, 5.0])
    np.testing.assert_array_equal(seqops.filter_logits(row, top_k=1), [-np.inf, 5.0, -np.inf, 5.0])
    assert seqops.filter_logits(np.zeros((0, 3, 7), np.float32), top_k=2).shape == (0, 3, 7)
    logits = np.zeros((2, 7), np.float32)
    decisions = dict(seqops.explain(seqops.filter_logits, logits, top_k=3, top_p=0.5).decisions)
    assert decisions["numpy-topk-filter (plugin 'numpy-fast')"] == f"declines: {fast_decoding.TOP_P}"
    decisions = dict(seqops.explain(seqops.filter_logits, logits, temperature=2.0).decisions)
    assert decisions["numpy-topk-filter (plugin 'numpy-fast')"] == f"declines: {fast_decoding.NO_TOP_K}"


def test_sample_logits_top_k_draws_only_kept_tokens_around_nan_and_empty_batches() -> None:
    logits = np.float32([[np.nan, 3.0, 1.0, 2.0, -np.inf], [np.nan, np.nan, np.nan, np.nan, 1.0]])
    tokens = np.stack([seqops.sample_logits(logits, rng=seed, top_k=2) for seed in range(200)])
    assert set(np.unique(tokens[:, 0])) == {1, 3}  # the NaN is removed, as by the portable filter
    # fewer numbers than top_k: every token removed, the portable draw's token 0
    assert (tokens[:, 1] == 0).all()
    assert seqops.sample_logits(np.zeros((0, 4, 9), np.float32), rng=0, top_k=3).shape == (0, 4)
    assert seqops.sample_logits(np.float16([[1.0, 2.0, 3.0]]), rng=0, top_k=1).tolist() == [2]


def _attention_reference(q, k, v, mask=None, bias=None, is_causal=False, scale=None):
    """float64 einsum form; a row with no allowed key gives zeros. Returns (out, weights)."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = np.einsum("...le,...se->...ls", q, k) * scale
    if bias is not None:
        s = s + np.asarray(bias, np.float64)
    allowed = np.ones(s.shape[-2:], bool) if mask is None else mask
    if is_causal:
        allowed = allowed & np.tri(q.shape[-2], k.shape[-2], dtype=bool)
    allowed = np.broadcast_to(allowed, np.broadcast_shapes(np.shape(allowed), s.shape))
    s = np.broadcast_to(s, allowed.shape)
    top = np.max(np.where(allowed, s, -np.inf), axis=-1, keepdims=True, initial=-np.inf)
    e = np.where(allowed, np.exp(s - np.where(np.isfinite(top), top, 0.0)), 0.0)
    total = e.sum(-1, keepdims=True)
    w = e / np.where(total == 0, 1.0, total)
    return np.einsum("...ls,...se->...le", w, v), w


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
def test_attention_matches_a_float64_reference(dtype: str) -> None:
    rng = np.random.default_rng(3)
    q, k, v = (rng.standard_normal(s).astype(dtype) for s in ((2, 3, 5, 8), (2, 3, 7, 8), (2, 3, 7, 6)))
    mask = rng.random((5, 7)) < 0.7
    mask[2] = False  # a query that sees no key: zeros
    bias = rng.standard_normal((3, 5, 7)).astype(dtype)
    copies = _untouched(q, k, v, mask, bias)
    tol = {"float64": 1e-13, "float32": 2e-6, "float16": 4e-3}[dtype]
    for options in ({}, {"mask": mask}, {"bias": bias, "is_causal": True}, {"mask": mask, "bias": bias}):
        assert _chosen(seqops.scaled_dot_product_attention, q, k, v, **options) == "numpy-attention"
        out = seqops.scaled_dot_product_attention(q, k, v, **options)
        assert out.dtype == q.dtype and out.shape == (2, 3, 5, 6)
        ref, weights = _attention_reference(q, k, v, **options)
        np.testing.assert_allclose(out.astype(np.float64), ref, rtol=tol, atol=tol)
        full = {"mask": None, "bias": None, "is_causal": False, "scale": 1 / math.sqrt(8), **options}
        full.update(dropout_p=0.0, rng=None, enable_gqa=False, return_weights=False)
        np.testing.assert_array_equal(out, _portable("scaled_dot_product_attention", q, k, v, **full))
        out, w = seqops.scaled_dot_product_attention(q, k, v, return_weights=True, **options)
        np.testing.assert_allclose(w.astype(np.float64), weights, rtol=tol, atol=tol)
    _same([q, k, v, mask, bias], [q, k, v, mask, bias], copies)
    assert not seqops.scaled_dot_product_attention(q, k, v, mask=mask)[:, :, 2].any()


def test_attention_widening_masks_gqa_empty_sizes_and_nan() -> None:
    rng = np.random.default_rng(4)
    q, k, v = (rng.standard_normal(s).astype(np.float32) for s in ((5, 8), (7, 8), (7, 6)))
    # A bias or mask wider than the scores (the public function refuses it; a composite may not)
    bias = rng.standard_normal((2, 3, 5, 7)).astype(np.float32)
    mask = rng.random((4, 1, 1, 7)) < 0.8
    options = {"is_causal": False, "scale": 1 / math.sqrt(8), "dropout_p": 0.0, "rng": None}
    options.update(enable_gqa=False, return_weights=False)
    with seqops.use("numpy") as backend:
        for widening in ({"bias": bias, "mask": None}, {"mask": mask, "bias": None}):
            out = fast_attention.scaled_dot_product_attention(backend, q, k, v, **widening, **options)
            np.testing.assert_allclose(out, _attention_reference(q, k, v, **widening)[0], atol=2e-6)
    q4, k2, v2 = (rng.standard_normal(s).astype(np.float32) for s in ((4, 5, 8), (2, 7, 8), (2, 7, 6)))
    ref, _ = _attention_reference(q4, np.repeat(k2, 2, 0), np.repeat(v2, 2, 0))
    out = seqops.scaled_dot_product_attention(q4, k2, v2, enable_gqa=True)
    np.testing.assert_allclose(out, ref, atol=2e-6)
    no_key = seqops.scaled_dot_product_attention(q, k[:0], v[:0])
    np.testing.assert_array_equal(no_key, np.zeros((5, 6), np.float32))
    assert seqops.scaled_dot_product_attention(q[:0], k, v).shape == (0, 6)
    q[1, 3] = np.nan
    out = seqops.scaled_dot_product_attention(q, k, v)
    assert np.isnan(out[1]).all() and np.isfinite(np.delete(out, 1, 0)).all()


def test_attention_declines_dropout_and_scores_over_the_budget() -> None:
    q = np.zeros((2, 4, 8), np.float32)
    decisions = dict(
        seqops.explain(seqops.scaled_dot_product_attention, q, q, q, dropout_p=0.5, rng=0).decisions
    )
    assert decisions["numpy-attention (plugin 'numpy-fast')"] == f"declines: {fast_attention.DROPOUT}"
    old = seqops.set_attention_memory_budget(2 * 4 * 4 * 4 - 1)  # one byte short of the scores
    try:
        assert _chosen(seqops.scaled_dot_product_attention, q, q, q) == "portable-tiled"
        decisions = dict(seqops.explain(seqops.scaled_dot_product_attention, q, q, q).decisions)
        assert decisions["numpy-attention (plugin 'numpy-fast')"] == f"declines: {fast_attention.OVER_BUDGET}"
        # the tiled path cannot return the weights: the in-place one does
        explained = seqops.explain(seqops.scaled_dot_product_attention, q, q, q, return_weights=True)
        assert explained.chosen == "numpy-attention"
    finally:
        seqops.set_attention_memory_budget(old)
    assert _chosen(seqops.scaled_dot_product_attention, q, q, q) == "numpy-attention"


def _rnn_reference(xs, h, w_ih, w_hh, b, nonlinearity):
    """float64 loop over time: ``act(x_t w_ih + h w_hh + b)``, with ``(hs, h_T)``."""
    act = (lambda a: np.maximum(a, 0.0)) if nonlinearity == "relu" else np.tanh
    xs, h, w_ih, w_hh = (np.asarray(a, np.float64) for a in (xs, h, w_ih, w_hh))
    bias = 0.0 if b is None else np.asarray(b, np.float64)
    hs = []
    for x in xs:
        h = act(np.einsum("...i,ih->...h", x, w_ih) + np.einsum("...g,gh->...h", h, w_hh) + bias)
        hs.append(h)
    return np.stack(hs), h


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_rnn_and_rnn_cell_match_a_float64_loop(dtype: str, nonlinearity: str) -> None:
    rng = np.random.default_rng(5)
    xs, h0 = rng.standard_normal((6, 3, 4)).astype(dtype), rng.standard_normal((3, 5)).astype(dtype)
    w_ih, w_hh = (
        (0.5 * rng.standard_normal((4, 5))).astype(dtype),
        (0.5 * rng.standard_normal((5, 5))).astype(dtype),
    )
    w_ih = (0.5 * rng.standard_normal((4, 5))).astype(dtype)
    copies = _untouched(xs, h0, w_ih, w_hh)
    tol = {"float64": 1e-13, "float32": 2e-6, "float16": 3e-3}[dtype]
    for b in (None, rng.standard_normal(5).astype(dtype)):
        assert _chosen(seqops.rnn, xs, h0, w_ih, w_hh, b, nonlinearity=nonlinearity) == "numpy-rnn"
        hs, h_last = seqops.rnn(xs, h0, w_ih, w_hh, b, nonlinearity=nonlinearity)
        ref_hs, ref_last = _rnn_reference(xs, h0, w_ih, w_hh, b, nonlinearity)
        assert hs.dtype == h_last.dtype == xs.dtype and hs.shape == (6, 3, 5)
        np.testing.assert_allclose(hs.astype(np.float64), ref_hs, rtol=tol, atol=tol)
        np.testing.assert_array_equal(h_last, hs[-1])
        portable = _portable("rnn", xs, h0, w_ih, w_hh, b, nonlinearity=nonlinearity)
        np.testing.assert_array_equal(hs, portable[0])  # the same sums in the same order
        assert not np.shares_memory(h_last, hs)  # as the portable h_T
        assert (
            _chosen(seqops.rnn_cell, xs[0], h0, w_ih, w_hh, b, nonlinearity=nonlinearity) == "numpy-rnn-cell"
        )
        cell = seqops.rnn_cell(xs[0], h0, w_ih, w_hh, b, nonlinearity=nonlinearity)
        assert cell.dtype == xs.dtype
        np.testing.assert_allclose(cell.astype(np.float64), ref_hs[0], rtol=tol, atol=tol)
    _same([xs, h0, w_ih, w_hh], [xs, h0, w_ih, w_hh], copies)


def test_rnn_of_no_step_no_batch_and_nan() -> None:
    h0, w_ih, w_hh = np.ones((2, 3), np.float32), np.ones((4, 3), np.float32), np.eye(3, dtype=np.float32)
    hs, h_last = seqops.rnn(np.zeros((0, 2, 4), np.float32), h0, w_ih, w_hh)
    assert hs.shape == (0, 2, 3) and h_last is h0  # h0 itself, as the portable path
    xs = np.random.default_rng(6).standard_normal((3, 4)).astype(np.float32)  # no batch dimension
    hs, _ = seqops.rnn(xs, h0[0], w_ih, w_hh)
    np.testing.assert_allclose(hs, _rnn_reference(xs, h0[0], w_ih, w_hh, None, "tanh")[0], atol=2e-6)
    xs[1, 0] = np.nan
    for nonlinearity in ("tanh", "relu"):  # NaN reaches every later state (relu keeps NaN)
        hs, _ = seqops.rnn(xs, h0[0], w_ih, w_hh, nonlinearity=nonlinearity)
        assert np.isfinite(hs[0]).all() and np.isnan(hs[1:]).all()


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
def test_reparameterize_with_eps_matches_a_float64_formula(dtype: str) -> None:
    rng = np.random.default_rng(7)
    mu, eps = rng.standard_normal((3, 4)).astype(dtype), rng.standard_normal((3, 4)).astype(dtype)
    copies = _untouched(mu, eps)
    tol = {"float64": 1e-15, "float32": 3e-7, "float16": 2e-3}[dtype]
    for log_var in (rng.standard_normal((3, 4)), rng.standard_normal(4), np.float64(0.3)):
        log_var = np.asarray(log_var).astype(dtype)
        assert _chosen(seqops.reparameterize, mu, log_var, eps=eps) == "numpy-reparameterize"
        z = seqops.reparameterize(mu, log_var, eps=eps)
        sigma = np.sqrt(np.exp(log_var.astype(np.float64)))
        assert z.dtype == mu.dtype and z.shape == (3, 4)
        np.testing.assert_allclose(
            z.astype(np.float64), mu + sigma * eps.astype(np.float64), rtol=tol, atol=tol
        )
        np.testing.assert_array_equal(
            z, _portable("reparameterize", mu, log_var, rng=None, eps=eps, shape=(3, 4))
        )
    z = seqops.reparameterize(mu[:1], np.full((2, 4), -np.inf, dtype), eps=eps[:1])  # sigma 0, widened
    np.testing.assert_array_equal(z, np.broadcast_to(mu[:1], (2, 4)))
    _same([mu, eps], [mu, eps], copies)


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
def test_reparameterize_draws_normals_with_the_given_moments(dtype: str) -> None:
    mu, log_var = np.array([1.0, -2.0], dtype), np.log(np.array([4.0, 0.25])).astype(dtype)
    wide = np.broadcast_to(mu, (50000, 2))
    z = seqops.reparameterize(wide, log_var, rng=np.random.default_rng(8))
    assert z.dtype == mu.dtype and z.shape == (50000, 2)
    z = z.astype(np.float64)
    np.testing.assert_allclose(z.mean(0), mu, atol=5 * 2 / math.sqrt(50000))
    np.testing.assert_allclose(z.std(0), [2.0, 0.5], rtol=0.02)
    np.testing.assert_array_equal(
        seqops.reparameterize(wide, log_var, rng=3), seqops.reparameterize(wide, log_var, rng=3)
    )
    assert np.shape(seqops.reparameterize(mu[..., 0], log_var[..., 0], rng=0)) == ()  # 0-d arrays
    if dtype == "float64":  # the portable path's draws: the same numbers
        np.testing.assert_array_equal(
            seqops.reparameterize(wide, log_var, rng=3),
            _portable("reparameterize", wide, log_var, rng=3, eps=None, shape=wide.shape),
        )
    with pytest.raises(TypeError, match="integer seed or a numpy.random"):
        seqops.reparameterize(mu, log_var, rng=1.5)


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
def test_gaussian_kl_and_log_likelihood_match_scipy_and_the_portable_path(dtype: str) -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(9)
    mq, mp, x = (rng.standard_normal((3, 5)).astype(dtype) for _ in range(3))
    lq, lp = (rng.standard_normal((3, 5)).astype(dtype) for _ in range(2))
    lp_row = rng.standard_normal(5).astype(dtype)  # broadcast
    copies = _untouched(mq, mp, x, lq, lp)
    tol = {"float64": 1e-13, "float32": 2e-6, "float16": 5e-3}[dtype]
    f64 = [a.astype(np.float64) for a in (mq, lq, mp, lp, x, lp_row)]
    for axis in ((-1,), (-2, -1)):
        assert _chosen(seqops.kl_normal_normal, mq, lq, mp, lp, axis=axis) == "numpy-kl-normal-normal"
        kl = seqops.kl_normal_normal(mq, lq, mp, lp, axis=axis)
        sq, sp = np.exp(f64[1] / 2), np.exp(f64[3] / 2)  # written as log(σp/σq) + (σq² + Δ²)/(2σp²) − ½
        ref = (np.log(sp / sq) + (sq**2 + (f64[0] - f64[2]) ** 2) / (2 * sp**2) - 0.5).sum(axis)
        np.testing.assert_allclose(np.asarray(kl, np.float64), ref, rtol=tol, atol=tol)
        np.testing.assert_array_equal(kl, _portable("kl_normal_normal", mq, lq, mp, lp, axis=axis))
        args = (x, mq, lp_row)
        assert _chosen(seqops.gaussian_log_likelihood, *args, axis=axis) == "numpy-gaussian-log-likelihood"
        ll = seqops.gaussian_log_likelihood(*args, axis=axis)
        ref = stats.norm.logpdf(f64[4], f64[0], np.exp(f64[5] / 2)).sum(axis)
        np.testing.assert_allclose(np.asarray(ll, np.float64), ref, rtol=tol, atol=tol)
        np.testing.assert_array_equal(ll, _portable("gaussian_log_likelihood", *args, axis=axis))
        assert np.asarray(kl).dtype == np.asarray(ll).dtype == mq.dtype
    _same([mq, mp, x, lq, lp], [mq, mp, x, lq, lp], copies)


def test_gaussian_kl_and_log_likelihood_at_equal_arguments_extremes_and_empty_sizes() -> None:
    m = np.float32([[0.5, -1.0, 2.0]])
    for lv in (-80.0, 0.0, 80.0):  # equal arguments: exactly 0 for any finite log-variance
        v = np.full((1, 3), lv, np.float32)
        assert seqops.kl_normal_normal(m, v, m, v).tolist() == [0.0]
        expected = -0.5 * 3 * (math.log(2 * math.pi) + lv)
        np.testing.assert_allclose(seqops.gaussian_log_likelihood(m, m, v), [expected], rtol=1e-6)
    empty = np.zeros((2, 0), np.float32)
    np.testing.assert_array_equal(seqops.kl_normal_normal(empty, empty, empty, empty), [0.0, 0.0])
    np.testing.assert_array_equal(seqops.gaussian_log_likelihood(empty, empty, empty), [0.0, 0.0])
    assert seqops.gaussian_log_likelihood(np.zeros((0, 3), np.float32), m, m).shape == (0,)
    nan = m.copy()
    nan[0, 1] = np.nan
    assert np.isnan(seqops.kl_normal_normal(nan, m, m, m)).all()
    assert np.isnan(seqops.gaussian_log_likelihood(m, m, nan)).all()


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize(("height", "width", "ws", "shift"), [(8, 8, 4, 2), (6, 9, 3, 1), (4, 4, 2, 0)])
def test_shifted_window_mask_equals_the_portable_path_to_the_bit(dtype, height, width, ws, shift) -> None:
    # numpy-shifted-window-mask: int8 labels, the bias as (mask - 1) * 100: +0.0, never -0.0
    assert (
        seqops.explain(seqops.shifted_window_mask, height, width, ws, shift).chosen
        == "numpy-shifted-window-mask"
    )
    for as_bias in (False, True):
        got = seqops.shifted_window_mask(height, width, ws, shift, as_bias=as_bias, like=np.zeros(1, dtype))
        want = _portable(
            "shifted_window_mask",
            height,
            width,
            ws,
            shift,
            as_bias=as_bias,
            dtype=np.dtype(dtype),
            device="cpu",
        )
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
        if as_bias:
            np.testing.assert_array_equal(np.signbit(got), np.signbit(want))


@pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf, 3.0])
def test_clip_grad_norm_equals_the_portable_path_to_the_bit_and_a_float64_norm(norm_type: float) -> None:
    rng = np.random.default_rng(11)
    mixed = [
        rng.standard_normal(s).astype(d)
        for s, d in (((5, 7), "float32"), ((9,), "float16"), ((2, 3), "float64"))
    ]
    cases = {
        "float32": [rng.standard_normal((6, 4)).astype(np.float32) for _ in range(3)],
        "mixed": mixed,
        "half": [rng.standard_normal(8).astype(np.float16), np.zeros((0, 3), np.float16)],
        "nan": [np.float32([1.0, np.nan]), np.float32([2.0])],
        "small": [np.float32([1e-3, -2e-3])],  # below max_norm: scaled by exactly 1
    }
    for name, grads in cases.items():
        copies = _untouched(*grads)
        assert _chosen(seqops.clip_grad_norm, grads, 1.0, norm_type=norm_type) == "numpy-clip-grad-norm"
        clipped, total = seqops.clip_grad_norm(grads, 1.0, norm_type=norm_type)
        want, want_total = _portable("clip_grad_norm", grads, max_norm=1.0, norm_type=norm_type, eps=1e-6)
        assert np.asarray(total).dtype == np.asarray(want_total).dtype and np.shape(total) == ()
        np.testing.assert_array_equal(total, want_total, err_msg=name)
        for got, exp, g in zip(clipped, want, grads, strict=True):
            assert got.dtype == exp.dtype == g.dtype and got.shape == g.shape
            np.testing.assert_array_equal(got, exp, err_msg=name)
        flat = np.concatenate([np.ravel(g).astype(np.float64) for g in grads])
        ref = np.linalg.norm(flat, ord=norm_type)  # NumPy's float64 norm of all entries
        np.testing.assert_allclose(float(total), ref, rtol=2e-3 if name == "half" else 2e-6)
        if name == "small":
            np.testing.assert_array_equal(clipped[0], grads[0])
        _same(grads, grads, copies)


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
def test_clip_grad_value_equals_the_portable_path_and_keeps_nan_and_dtype(dtype: str) -> None:
    g = np.array([-3.0, -0.25, -0.0, 0.0, 0.5, 7.0, np.nan, -np.inf, np.inf], dtype)
    grads = [g, g[::2].reshape(1, 5), np.zeros((0,), dtype)]
    copies = _untouched(*grads)
    for value in (0.5, 0.0, 1e4):
        assert _chosen(seqops.clip_grad_value, grads, value) == "numpy-clip-grad-value"
        got = seqops.clip_grad_value(grads, value)
        for a, b, src in zip(got, _portable("clip_grad_value", grads, clip_value=value), grads, strict=True):
            assert a.dtype == b.dtype == src.dtype and a.shape == src.shape
            np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(np.signbit(a), np.signbit(b))
        ref = np.where(np.isnan(g), np.nan, np.minimum(np.maximum(g.astype(np.float64), -value), value))
        np.testing.assert_array_equal(got[0].astype(np.float64), ref.astype(dtype).astype(np.float64))
    _same(grads, grads, copies)


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
def test_log_softmax_equals_the_portable_path_to_the_bit_and_a_float64_reference(dtype: str) -> None:
    x = (3 * np.random.default_rng(12).standard_normal((5, 9))).astype(dtype)
    x[1, [0, 4]] = -np.inf  # masked entries: -inf
    x[2] = -np.inf  # no finite entry: NaN, as the portable path
    x[3, 2] = np.nan  # a NaN row stays NaN
    x[4, 5] = np.inf  # +inf: shifted by 0
    copies = _untouched(x)
    with np.errstate(invalid="ignore", divide="ignore"):  # log 0 and inf - inf, as the portable path
        for axis in (-1, 0):
            assert _chosen(seqops.log_softmax, x, axis=axis) == "numpy-log-softmax"
            out = seqops.log_softmax(x, axis=axis)
            assert out.dtype == x.dtype and out.shape == x.shape
            np.testing.assert_array_equal(out, _portable("log_softmax", x, axis=axis))
        rows = seqops.log_softmax(x)
        assert np.isnan(rows[2:4]).all()  # no finite entry; a NaN
        assert np.isnan(rows[4, 5]) and (rows[4, np.arange(9) != 5] == -np.inf).all()  # inf - inf; the rest
    finite = x[[0, 1]]
    tol = {"float64": 1e-14, "float32": 1e-6, "float16": 4e-3}[dtype]
    with np.errstate(divide="ignore"):
        ref = np.log(_softmax_reference(finite, -1))  # log of the fsum reference: -inf where masked
    np.testing.assert_allclose(seqops.log_softmax(finite).astype(np.float64), ref, rtol=tol, atol=tol)
    _same([x], [x], copies)
    empty_axis = np.zeros((2, 0), np.float32)
    assert seqops.log_softmax(empty_axis) is empty_axis
    np.testing.assert_array_equal(
        seqops.log_softmax(np.zeros(4, np.float32)), np.full(4, -np.log(4), np.float32)
    )
