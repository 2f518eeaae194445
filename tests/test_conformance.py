"""The conformance run: it passes on the fast backends, reports in every format, and catches
a deliberately wrong fast path (a mutation test of the suite itself)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import array_api_compat.numpy as npx
import numpy as np
import pytest
from seqops_conformance import CASES, TOLERANCES, Report, run
from seqops_conformance.tolerances import error

import seqops
from seqops._agnostic import activations, attention
from seqops.cli import main

FAST = ["numpy", "array_api_strict"]
ATTENTION_FAMILY = {
    "scaled_dot_product_attention",
    "causal_mask",
    "padding_mask",
    "sinusoidal_positional_encoding",
    "multi_head_attention",
    "layer_norm",
    "feed_forward",
    "transformer_encoder_layer",
    "softmax",
    "log_softmax",
}


@pytest.fixture(scope="module")
def report() -> Report:
    return run(backends=FAST, progress=False)


def test_fast_backends_conform(report: Report) -> None:
    assert report.ok, "\n".join(
        f"{r.case} {r.backend} {r.dtype}: {r.error} {r.message}" for r in report.failures
    )
    assert {r.backend for r in report.results} == set(FAST)
    assert {r.dtype for r in report.results} == {"float16", "float32", "float64"}


def test_every_attention_op_is_checked(report: Report) -> None:
    assert ATTENTION_FAMILY <= {case.op for case in CASES}
    assert ATTENTION_FAMILY <= {r.op for r in report.results if r.status == "pass"}


def test_results_name_the_implementation(report: Report) -> None:
    assert {r.implementation for r in report.results} == {"portable"}


def test_case_ids_are_unique_and_inputs_deterministic() -> None:
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids))
    case = next(c for c in CASES if c.op == "multi_head_attention")
    first, again = case.inputs(), case.inputs()
    np.testing.assert_array_equal(first[0][0], again[0][0])


def test_tolerances_cover_every_backend_dtype() -> None:
    for backend, ok in seqops.backends():
        if ok:
            assert set(backend.floating_dtypes(backend.default_device())) <= set(TOLERANCES)


def test_error_metric() -> None:
    ref = np.array([[1.0, -4.0], [0.0, 2.0]])
    assert error(ref + 0.04, ref) == pytest.approx(0.01)  # normwise: 0.04 / max|ref|
    assert error(np.zeros(3), np.zeros(3)) == 0.0
    assert error(np.array([0.0, 1e-3]), np.zeros(2)) == pytest.approx(1e-3)  # absolute for zero refs
    assert error(np.array([np.nan, 1.0]), np.array([0.5, 1.0])) == np.inf
    assert error(np.array([-np.inf, 1.0]), np.array([-np.inf, 1.0])) == 0.0
    assert error(np.array([True, False, True, True]), np.array([True, True, True, True])) == 0.25


def test_unknown_names_are_value_errors() -> None:
    with pytest.raises(ValueError, match="unknown backend 'nope'"):
        run(backends=["nope"], progress=False)
    with pytest.raises(ValueError, match="unknown op"):
        run(backends=["numpy"], ops=["softmx"], progress=False)


# -- command line ----------------------------------------------------------------------------


def test_cli_conformance_writes_reports(tmp_path, capsys) -> None:
    out_json, out_md = tmp_path / "c.json", tmp_path / "c.md"
    argv = ["conformance", "--backend", "numpy", "--op", "softmax", "--op", "causal_mask", "--no-progress"]
    assert main([*argv, "--report", str(out_json), "--report", str(out_md)]) == 0
    assert "0 failed" in capsys.readouterr().out
    data = json.loads(out_json.read_text())
    assert data["schema_version"] == 1
    assert data["summary"]["failed"] == 0 and data["summary"]["checks"] > 0
    assert {c["op"] for c in data["cells"]} == {"softmax", "causal_mask"}
    assert set(data["metadata"]) >= {"seqops", "backends", "platform", "python", "date", "jax_x64"}
    markdown = out_md.read_text()
    assert markdown.startswith("# seqops conformance")
    assert "| softmax | float32 |" in markdown


def test_cli_info_lists_backends_and_plugins(capsys) -> None:
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"seqops {seqops.__version__}" in out
    assert "numpy: numpy" in out and "portable" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["conformance", "--backend", "nope"],
        ["conformance", "--op", "softmx"],
        ["conformance", "--report", "out.png"],
        ["frobnicate"],
    ],
)
def test_cli_bad_usage_exits_2(argv, capsys) -> None:
    assert main([*argv, "--no-progress"] if argv[0] == "conformance" else argv) == 2


def test_cli_exits_1_when_nothing_ran(capsys) -> None:
    assert main(["conformance", "--backend", "numpy", "--device", "no-such-device", "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert "nothing was checked" in captured.err and "none of the devices" in captured.out


# -- mutation test: a wrong fast path must be caught -----------------------------------------


def _buggy_softmax(x, /, *, axis):
    """Off by 1 %."""
    return activations.softmax(npx, x, axis=axis) * 1.01


def _buggy_sdpa(q, k, v, /, *, mask, is_causal, dropout_p, rng, **options):
    """Causal alignment shifted by one: query i also sees key i + 1."""
    if is_causal:
        shifted = attention.causal_mask(npx, q.shape[-2], k.shape[-2], offset=1, device="cpu")
        mask = shifted if mask is None else npx.logical_and(mask, shifted)
    return attention.scaled_dot_product_attention(npx, q, k, v, mask=mask, is_causal=False, **options)


class _BuggyPlugin:
    @seqops.hookimpl
    def seqops_implementations(self, op, backend):
        if backend.name != "numpy":
            return None
        if op == "softmax":
            return [seqops.Implementation("buggy-softmax", _buggy_softmax)]
        if op == "scaled_dot_product_attention":
            return [seqops.Implementation("buggy-causal", _buggy_sdpa)]
        return None


@pytest.fixture
def buggy_plugin() -> Iterator[None]:
    name = seqops.register_plugin(_BuggyPlugin(), name="buggy")
    try:
        yield
    finally:
        seqops.unregister_plugin(name)


@pytest.mark.usefixtures("buggy_plugin")
def test_conformance_catches_wrong_fast_paths() -> None:
    ops = ["softmax", "scaled_dot_product_attention"]
    report = run(backends=["numpy"], ops=ops, progress=False)
    assert not report.ok
    softmax = [r for r in report.failures if r.op == "softmax"]
    assert {r.dtype for r in softmax} == {"float16", "float32", "float64"}
    assert all(r.implementation == "buggy-softmax" and r.error > r.tolerance for r in softmax)
    causal = {r.case for r in report.failures if r.op == "scaled_dot_product_attention"}
    assert causal == {c.id for c in CASES if c.op == "scaled_dot_product_attention" and "causal" in c.name}
    assert all(r.implementation == "buggy-causal" for r in report.results if r.op != "softmax")
    cells = {(c.op, c.dtype): c for c in report.cells()}
    assert cells["softmax", "float32"].status == "fail"
    assert cells["softmax", "float32"].implementations == ["buggy-softmax"]


def _other_device(x, /, *, axis):
    import array_api_strict

    out = activations.softmax(array_api_strict, x, axis=axis)
    return array_api_strict.asarray(out, device=array_api_strict.Device("device1"))


@pytest.mark.parametrize(
    ("backend", "fn", "complaint"),
    [
        (
            "numpy",
            lambda x, /, *, axis: activations.softmax(npx, x.astype("float64"), axis=axis),
            "dtype",
        ),
        (
            "numpy",
            lambda x, /, *, axis: activations.softmax(npx, x, axis=axis).tolist(),
            "not a numpy",
        ),
        ("array_api_strict", _other_device, "device"),
    ],
)
def test_conformance_checks_library_dtype_and_device(backend, fn, complaint) -> None:
    class Plugin:
        @seqops.hookimpl
        def seqops_implementations(self, op, backend):
            return [seqops.Implementation("contract-breaker", fn)] if op == "softmax" else None

    name = seqops.register_plugin(Plugin(), name="contract-breaker")
    try:
        report = run(backends=[backend], ops=["softmax"], dtypes=["float32"], progress=False)
    finally:
        seqops.unregister_plugin(name)
    assert report.failures and len(report.failures) == len(report.results)
    assert all(complaint in r.message for r in report.failures)


@pytest.mark.usefixtures("buggy_plugin")
def test_cli_exits_1_on_disagreement(tmp_path, capsys) -> None:
    out = tmp_path / "c.json"
    assert (
        main(["conformance", "--backend", "numpy", "--op", "softmax", "--no-progress", "--report", str(out)])
        == 1
    )
    assert "buggy-softmax" in capsys.readouterr().out
    failed = [r for r in json.loads(out.read_text())["results"] if r["status"] == "fail"]
    assert failed and all(r["implementation"] == "buggy-softmax" and r["op"] == "softmax" for r in failed)
