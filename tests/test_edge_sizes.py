"""The edge sizes (issue 14): an empty batch, L = 0, S = 0, E = 0, T = 0, a vocabulary of one give
the result docs/errors-and-edge-cases.md defines, the same on every backend and implementation.

The conformance cases named ``edge: ...`` are those results; the page's table lists them one row
per case, and this module keeps the two in step."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
from seqops_conformance import runner
from seqops_conformance.cases import CASES

import seqops

PAGE = Path(__file__).resolve().parents[1] / "docs" / "errors-and-edge-cases.md"
PREFIX = "edge: "
EDGE_CASES = [case for case in CASES if case.name.startswith(PREFIX)]
LIBRARIES = {"numpy": "numpy", "array_api_strict": "array_api_strict", "torch": "torch", "jax": "jax"}


def _table_rows() -> list[tuple[str, str, str]]:
    """``(op, edge case, result)`` of each row of the page's ``| op | edge case | result |`` table."""
    lines = PAGE.read_text().splitlines()
    start = lines.index("| op | edge case | result |")
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        assert len(cells) == 3, f"a row of three cells expected: {line!r}"
        rows.append((cells[0].strip("`"), cells[1], cells[2]))
    return rows


def test_the_page_lists_every_edge_case_and_no_other() -> None:
    rows = _table_rows()
    listed = [(op, PREFIX + name) for op, name, _ in rows]
    assert len(listed) == len(set(listed)), "a row is listed twice"
    cases = {(case.op, case.name) for case in EDGE_CASES}
    assert set(listed) - cases == set(), "rows without a conformance case"
    assert cases - set(listed) == set(), "edge cases missing from docs/errors-and-edge-cases.md"
    assert all(result for _, _, result in rows), "a row without its result"


def test_every_op_of_these_families_has_an_empty_batch_or_zero_size_case() -> None:
    """Each op with an edge case has one for no data at all: an empty batch, or (creation
    functions) a size of 0 or the smallest size."""
    by_op: dict[str, list[str]] = {}
    for case in EDGE_CASES:
        by_op.setdefault(case.op, []).append(case.name)
    empty = re.compile(r"empty|=0|0 channels|0 positions|ws=1|one window|1x1")
    lacking = [op for op, names in by_op.items() if not any(empty.search(name) for name in names)]
    assert not lacking


@pytest.mark.parametrize("backend", list(LIBRARIES))
def test_edge_cases_pass_on_every_implementation(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if importlib.util.find_spec(LIBRARIES[backend]) is None:
        pytest.skip(f"{LIBRARIES[backend]} is not installed")
    monkeypatch.setattr(runner, "CASES", EDGE_CASES)  # run() has no case filter: only these
    ops = list(dict.fromkeys(case.op for case in EDGE_CASES))
    # Eager JAX compiles every primitive per shape and dtype (~13 s a dtype here): float32 only,
    # eager and jitted; `seqops conformance --op OP` runs every dtype and transformation.
    jax = backend == "jax"
    report = runner.run(
        backends=[backend],
        ops=ops,
        progress=False,
        transformations=["eager", "jit"] if jax else ["eager"],
        dtypes=["float32"] if jax else None,
    )
    assert {result.case for result in report.results} == {case.id for case in EDGE_CASES}
    failed = [
        f"{r.case} {r.dtype} {r.implementation} {r.transformation}: {r.message}"
        for r in report.results
        if r.status == "fail"
    ]
    assert not failed, "\n".join(failed)
    assert any(r.status == "pass" for r in report.results)


def test_empty_mean_cross_entropy_is_nan_on_every_implementation() -> None:
    """The conformance case checks the dispatched implementation (it compares ``isnan``); here
    every implementation accepting the call, on every installed library."""
    logits, targets = np.zeros((0, 5, 10)), np.zeros((0, 5), dtype=np.int64)
    arrays = [(logits, targets)]
    if importlib.util.find_spec("torch") is not None:
        import torch

        arrays.append((torch.from_numpy(logits), torch.from_numpy(targets)))
    for x, t in arrays:
        found = seqops.candidates(seqops.cross_entropy, x, t)
        assert found
        for name, run_it in found:
            with np.errstate(invalid="ignore", divide="ignore"):
                out = run_it()
            assert bool(np.isnan(np.asarray(out))), name


def test_attention_fast_paths_decline_what_their_kernels_may_not_compute(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """jax.nn.dot_product_attention (cuDNN above all) is not asked about empty dimensions, nor
    torch's kernels off the CPU about a head dim of 0 (on the CPU they give the defined result,
    with the scale passed)."""
    if importlib.util.find_spec("jax") is not None:
        import jax.numpy as jnp
        import seqops_jax_fast

        monkeypatch.setattr(seqops_jax_fast, "ACCEPT_ON_CPU", True)
        for q, k, v in (((0, 5, 8), (0, 7, 8), (0, 7, 8)), ((2, 5, 0), (2, 7, 0), (2, 7, 0))):
            q_, k_, v_ = (jnp.zeros(shape, dtype=jnp.float32) for shape in (q, k, v))
            reason = seqops_jax_fast.decline_sdpa(None, q_, k_, v_, dropout_p=0.0, return_weights=False)
            assert reason == seqops_jax_fast.EMPTY
    if importlib.util.find_spec("torch") is not None:
        import seqops_torch_fast
        import torch

        q, k = torch.zeros(2, 5, 0), torch.zeros(2, 7, 0)
        values = torch.arange(42.0).reshape(2, 7, 3)
        sees = torch.ones(5, 7, dtype=torch.bool).tril()  # query i sees keys j <= i
        for kwargs, allowed in (({}, torch.ones(5, 7)), ({"is_causal": True}, sees), ({"mask": sees}, sees)):
            run = seqops.explain(seqops.scaled_dot_product_attention, q, k, values, **kwargs).chosen
            assert run == "torch-sdpa", kwargs
            out = seqops.scaled_dot_product_attention(q, k, values, **kwargs)
            # every score is 0: each query's output is the mean of the values it sees
            expected = (allowed.double() / allowed.double().sum(-1, keepdim=True)) @ values.double()
            torch.testing.assert_close(out.double(), expected, rtol=1e-6, atol=1e-6)  # float32
        meta = torch.zeros(2, 5, 0, device="meta")
        reason = seqops_torch_fast.decline_sdpa(
            None, meta, meta, meta, mask=None, bias=None, is_causal=False, scale=1.0, dropout_p=0.0,
            rng=None, enable_gqa=False, return_weights=False,
        )  # fmt: skip
        assert reason == seqops_torch_fast.NO_FEATURES_OFF_CPU


def test_zero_features_attention_is_the_mean_of_the_values() -> None:
    """E = 0: every score is 0 whatever the scale (1.0 by default there), so each query averages v."""
    v = np.arange(21.0).reshape(7, 3)
    for scale in (None, 0.5):
        out = seqops.scaled_dot_product_attention(np.zeros((5, 0)), np.zeros((7, 0)), v, scale=scale)
        np.testing.assert_allclose(out, np.broadcast_to(v.mean(0), (5, 3)))
    assert np.all(
        seqops.scaled_dot_product_attention(np.zeros((5, 8)), np.zeros((0, 8)), np.zeros((0, 3))) == 0
    )
