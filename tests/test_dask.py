"""The Dask backend (issue 15): lazy results chunked like the inputs, no computation during a
call, recurrences blockwise per batch chunk, size choices on chunks, NumPy beside Dask, a
clear error for unknown sizes, and the whole conformance suite on Dask."""

from __future__ import annotations

import numpy as np
import pytest

import seqops

da = pytest.importorskip("dask.array", reason="dask is not installed (the 'dask' extra)")

from seqops_conformance import run  # noqa: E402

DASK = dict((b.name, b) for b, _ in seqops.backends())["dask"]


def _rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(scope="module")
def report():
    # float32 here and float64 with every axis chunked below: the two runs take 3.4 of the
    # suite's 15 minutes with every dtype in both. Dask computes each chunk with NumPy, whose
    # dtypes the NumPy run checks; `seqops conformance` (the README's main job) runs all of them.
    return run(backends=["dask"], dtypes=["float32"], progress=False)


def test_every_op_conforms_on_dask_without_computing_during_the_call(report) -> None:
    # the runner fails a check whose call computed a graph (DaskBackend.computations)
    failed = [f"{r.case} via {r.implementation}: {r.message}" for r in report.results if r.status == "fail"]
    assert not failed, "\n".join(failed[:20])
    ran = {r.op for r in report.results if r.status == "pass"}
    declared = {op.name for op in seqops.declared_ops()}
    assert ran == declared, declared - ran
    blockwise = {r.implementation for r in report.results if r.implementation.startswith("dask-")}
    assert blockwise == {"dask-blockwise-rnn", "dask-blockwise-lstm", "dask-blockwise-gru"}


def test_every_op_conforms_with_every_axis_chunked(monkeypatch) -> None:
    monkeypatch.setattr(DASK, "split", "all")  # matrices, heads, features cut in two chunks too
    found = run(backends=["dask"], dtypes=["float64"], progress=False)
    failed = [f"{r.case} via {r.implementation}: {r.message}" for r in found.results if r.status == "fail"]
    assert not failed, "\n".join(failed[:20])
    assert {r.op for r in found.results if r.status == "pass"} == {op.name for op in seqops.declared_ops()}


def test_the_runner_counts_a_computation_during_the_call() -> None:
    x = da.ones((4, 3), chunks=2)
    with DASK.computations() as computed:
        seqops.softmax(x)
    assert computed == []
    with DASK.computations() as computed:
        float(x.sum())  # what an eager value check would do
    assert len(computed) == 1


def test_value_checks_do_not_force_a_lazy_array() -> None:
    logits = da.from_array(_rng().standard_normal((8, 5)), chunks=4)
    targets = da.from_array(np.array([0, 1, 2, 3, 4, 0, 1, 9]), chunks=4)  # 9 is out of range
    cov = da.from_array(np.stack([np.eye(3), -np.eye(3)]), chunks=1)  # the second is not PD
    mu = da.zeros((2, 3), chunks=1)
    with DASK.computations() as computed:
        loss = seqops.cross_entropy(logits, targets, reduction="none")
        ll = seqops.autoregressive_log_likelihood(logits[None], targets[None])
        kl = seqops.kl_mvn(mu, cov, mu, cov)
        clipped, norm = seqops.clip_grad_norm([logits], 1.0)
    assert computed == []
    assert isinstance(loss, da.Array) and isinstance(ll, da.Array) and isinstance(kl, da.Array)
    # as under jax.jit: the out-of-range target gives NaN, computed when asked for
    assert np.isnan(loss.compute()[-1]) and np.isfinite(loss.compute()[:-1]).all()


def test_results_are_chunked_like_the_inputs() -> None:
    x = da.from_array(_rng().standard_normal((6, 4, 8)).astype(np.float32), chunks=(2, 4, 8))
    out = seqops.scaled_dot_product_attention(x, x, x, is_causal=True)
    assert out.chunks == x.chunks
    assert seqops.layer_norm(x).chunks == x.chunks


def test_random_draws_follow_the_chunks_of_their_data() -> None:
    mu = da.zeros((6, 4), chunks=(2, 4), dtype=np.float32)
    z = seqops.reparameterize(mu, mu, rng=0)
    assert z.chunks == mu.chunks
    again = seqops.reparameterize(mu, mu, rng=0)
    np.testing.assert_array_equal(z.compute(), again.compute())  # the same rng, the same draws
    assert np.std(
        seqops.reparameterize(
            da.zeros((4000, 4), chunks=1000), da.zeros((4000, 4), chunks=1000), rng=1
        ).compute()
    ) == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize("name", ["rnn", "lstm", "gru"])
def test_recurrences_run_the_time_loop_inside_each_batch_chunk(name: str) -> None:
    steps, batch, width, hidden = 1000, 8, 3, 4
    gates = {"rnn": 1, "lstm": 4, "gru": 3}[name]
    rng = _rng()
    xs = rng.standard_normal((steps, batch, width)).astype(np.float32)
    h0 = rng.standard_normal((batch, hidden)).astype(np.float32)
    w_ih = 0.3 * rng.standard_normal((width, gates * hidden)).astype(np.float32)
    w_hh = 0.3 * rng.standard_normal((hidden, gates * hidden)).astype(np.float32)
    fn = getattr(seqops, name)
    state = (h0, h0) if name == "lstm" else h0
    lazy_state = (
        (da.from_array(h0, chunks=(2, hidden)),) * 2
        if name == "lstm"
        else da.from_array(h0, chunks=(2, hidden))
    )
    lazy = fn(da.from_array(xs, chunks=(steps, 2, width)), lazy_state, w_ih, w_hh)  # NumPy weights
    hs = lazy[0]
    assert len(hs.__dask_graph__()) < 40  # 4 batch chunks: a few tasks each, whatever T
    expected = fn(xs, state, w_ih, w_hh)
    np.testing.assert_allclose(hs.compute(), expected[0], rtol=1e-5, atol=1e-5)
    final = lazy[1][1] if name == "lstm" else lazy[1]
    np.testing.assert_allclose(
        final.compute(), expected[1][1] if name == "lstm" else expected[1], rtol=1e-5, atol=1e-5
    )


def test_attention_judges_the_memory_budget_on_one_chunk() -> None:
    # 4 GiB of lazy input in 32 MiB chunks: per chunk the scores fit, so the plain path
    x = da.zeros((16384, 1024, 64), chunks=(32, 1024, 64), dtype=np.float32)
    explained = seqops.explain(seqops.scaled_dot_product_attention, x, x, x, is_causal=True)
    assert explained.chosen == "portable", explained
    # the same problem in one chunk would not fit: the tiled path
    whole = da.zeros((64, 1024, 1024), chunks=-1, dtype=np.float32)
    old = seqops.set_attention_memory_budget(2**20)
    try:
        assert (
            seqops.explain(seqops.scaled_dot_product_attention, whole, whole, whole).chosen
            == "portable-tiled"
        )
    finally:
        seqops.set_attention_memory_budget(old)


def test_numpy_arrays_join_dask_arrays_but_no_other_library_does() -> None:
    x = da.from_array(_rng().standard_normal((4, 5, 8)), chunks=2)
    mask = np.tril(np.ones((5, 5), dtype=bool))
    out = seqops.scaled_dot_product_attention(x, x, x, mask=mask)
    assert isinstance(out, da.Array)
    np.testing.assert_allclose(
        out.compute(), seqops.scaled_dot_product_attention(x.compute(), x.compute(), x.compute(), mask=mask)
    )
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="different libraries"):
        seqops.scaled_dot_product_attention(x, x, torch.zeros(4, 5, 8, dtype=torch.float64))


def test_unknown_chunk_sizes_say_what_to_call() -> None:
    x = da.from_array(_rng().standard_normal((10, 6)), chunks=5)
    unknown = x[x[:, 0] > -10]
    with pytest.raises(ValueError, match=r"`logits` has unknown sizes \(nan, 6\).*compute_chunk_sizes\(\)"):
        seqops.cross_entropy(unknown, da.zeros(10, dtype=int, chunks=5))
    known = unknown.compute_chunk_sizes()
    np.testing.assert_allclose(seqops.softmax(known).compute(), seqops.softmax(x.compute()))
