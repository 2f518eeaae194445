"""The conformance suite as a product: declared limitations (skips, checked declines, the
generated support table), the traced transformations, seeds, the cross-backend agreement,
coverage, the heatmap, and the pytest plugin (run in a subprocess, as a backend author runs
it), including a third-party backend installed from ``examples/`` and a mutated copy of it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from seqops_conformance import CASES, run
from seqops_conformance.support import support_table

import seqops

ROOT = Path(__file__).resolve().parents[1]


def _registered(plugin: object, name: str):
    seqops.register_plugin(plugin, name=name)
    return name


# -- declared limitations -------------------------------------------------------------------


class _LimitedStrictBackend(seqops.Backend):
    """array-api-strict under another name (it wins over the built-in backend while
    registered, being registered later), declaring it cannot compute float64 softmax."""

    name = "limited-strict"
    library = "array_api_strict"
    limitations = (seqops.Limitation("no float64 softmax here", op="softmax", dtype="float64"),)

    def owns(self, x: object, /) -> bool:
        return type(x).__module__.startswith("array_api_strict.")

    def namespace(self):
        import array_api_strict

        return array_api_strict

    def to_numpy(self, x):
        return np.from_dlpack(x)


class _LimitedBackendPlugin:
    @seqops.hookimpl
    def seqops_backends(self):
        return [_LimitedStrictBackend()]


def test_a_backend_limitation_turns_into_skips_with_the_reason() -> None:
    pytest.importorskip("array_api_strict")
    name = _registered(_LimitedBackendPlugin(), "limited")
    try:
        report = run(backends=["limited-strict"], ops=["softmax", "log_softmax"], progress=False)
    finally:
        seqops.unregister_plugin(name)
    assert report.ok, [r.message for r in report.failures]
    skipped = [r for r in report.results if r.status == "skip"]
    assert skipped and {(r.op, r.dtype) for r in skipped} == {("softmax", "float64")}
    assert all(r.message == "declared by backend limited-strict: no float64 softmax here" for r in skipped)
    ran = {(r.op, r.dtype) for r in report.results if r.status == "pass"}
    assert ("softmax", "float32") in ran and ("log_softmax", "float64") in ran
    assert not any("not checked" in n for n in report.notes)


def _identity_softmax(backend, x, /, *, axis):
    return x


class _NumpySoftmaxPlugin:
    """Offers one softmax implementation on the numpy backend."""

    def __init__(self, name: str, function, **options) -> None:
        self.implementation = seqops.Implementation(seqops.ops.softmax, name, function, **options)

    @seqops.hookimpl
    def seqops_implementations(self, backend):
        return [self.implementation] if backend.name == "numpy" else None


def _softmax_report(plugin: _NumpySoftmaxPlugin):
    """The float32 softmax suite on numpy with ``plugin`` registered."""
    name = _registered(plugin, plugin.implementation.name)
    try:
        return run(backends=["numpy"], ops=["softmax"], dtypes=["float32"], progress=False)
    finally:
        seqops.unregister_plugin(name)


def _never(backend, x, /, *, axis):
    return "never"


def test_an_implementation_accepting_what_it_declares_unsupported_fails() -> None:
    # declares it does not support float32 softmax on numpy, yet accepts every call
    lie = seqops.Limitation("no float32", dtype="float32")
    report = _softmax_report(_NumpySoftmaxPlugin("liar", _identity_softmax, limitations=(lie,)))
    lies = [r for r in report.results if r.implementation == "liar"]
    assert lies and all(r.status == "fail" for r in lies)
    assert all("declares 'no float32' but accepted the call" in r.message for r in lies)
    assert {r.implementation for r in report.results if r.status == "pass"} == {"numpy-softmax", "portable"}


def _softmax_shifting_its_input(backend, x, /, *, axis):
    x -= x.max(axis=axis, keepdims=True)  # the right values, from an input shifted in place
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)


def test_an_implementation_writing_to_its_input_fails_though_its_values_are_right() -> None:
    report = _softmax_report(_NumpySoftmaxPlugin("writer", _softmax_shifting_its_input))
    writes = [r for r in report.results if r.implementation == "writer" and "edge:" not in r.case]
    assert len(writes) >= 4  # (the edge cases: an empty batch has nothing to write, ...)
    assert all(r.status == "fail" for r in writes)
    assert all(r.message == "left its input argument 0 changed (written in place or freed)" for r in writes)
    others = {r.implementation for r in report.results if r.status == "pass"}
    assert {"numpy-softmax", "portable"} <= others  # the shared inputs are checked call by call


def test_an_undeclared_implementation_that_declined_everything_is_noted() -> None:
    report = _softmax_report(_NumpySoftmaxPlugin("never", _identity_softmax, decline=_never))
    assert report.ok
    assert any("not checked" in n and "never (softmax)" in n for n in report.notes)


def test_the_committed_support_table_is_generated_from_the_declarations() -> None:
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    table = support_table()
    assert "| torch-lstm | torch-fast | torch | lstm | half precision" in table
    assert "[float16; bfloat16]" in table
    committed = (ROOT / "docs" / "support.md").read_text()
    assert committed == table, "docs/support.md is stale: seqops conformance --support-table docs/support.md"


# -- transformations, seeds, agreement, coverage, heatmap -----------------------------------


def test_traced_transformations_on_jax() -> None:
    pytest.importorskip("jax")
    ops = ["layer_norm", "clip_grad_norm", "causal_mask"]
    report = run(
        backends=["jax"], ops=ops, dtypes=["float32"], transformations=["jit", "vmap"], progress=False
    )
    assert report.ok, [(r.case, r.transformation, r.message) for r in report.failures]
    ran = {(r.op, r.transformation) for r in report.results if r.status == "pass"}
    assert ran == {(op, t) for op in ops for t in ("jit", "vmap")} - {("causal_mask", "vmap")}
    # causal_mask has no floating input to batch over: skipped, with the reason
    skip = [r for r in report.results if r.op == "causal_mask" and r.transformation == "vmap"]
    assert skip and all(r.status == "skip" and "no floating input" in r.message for r in skip)


def test_vmap_checks_each_batch_element_against_its_own_reference(monkeypatch) -> None:
    pytest.importorskip("jax")
    from seqops_conformance import transforms

    def vmap_then_swap(f):  # a wrong batching rule: element 0 gets element 1's result
        import jax

        return lambda *xs: jax.tree_util.tree_map(lambda y: y[::-1], jax.vmap(f)(*xs))

    monkeypatch.setitem(transforms.DRIVERS["vmap"], "jax", vmap_then_swap)
    report = run(
        backends=["jax"], ops=["softmax"], dtypes=["float32"], transformations=["vmap"], progress=False
    )
    assert report.failures and all(
        "batch element 0" in r.message or r.error > r.tolerance for r in report.failures
    )


def test_torch_compile_transformation_on_one_op() -> None:
    pytest.importorskip("torch")
    os.environ.setdefault("SEQOPS_CONFORMANCE_COMPILE_BACKEND", "aot_eager")  # inductor: seconds per case
    report = run(
        backends=["torch"], ops=["softmax"], dtypes=["float32"], transformations=["compile"], progress=False
    )
    assert report.ok and {r.transformation for r in report.results} == {"compile"}
    assert all(r.status == "pass" for r in report.results)


def test_a_seed_changes_the_inputs_not_the_verdict() -> None:
    case = next(c for c in CASES if c.op == "softmax")
    a, b = case.inputs(0), case.inputs(1)
    assert not np.array_equal(a[0][0], b[0][0]) and np.array_equal(a[0][0], case.inputs(0)[0][0])
    report = run(backends=["numpy"], ops=["softmax"], seed=7, progress=False)
    assert report.ok and report.metadata["seed"] == 7


def test_agreement_matrix_and_coverage_over_two_backends(tmp_path) -> None:
    report = run(
        backends=["numpy", "array_api_strict"],
        ops=["softmax", "causal_mask", "sample_logits"],
        progress=False,
    )
    pairs = {(a.op, a.dtype): a for a in report.agreement}
    assert {a.backends for a in report.agreement} == {("array_api_strict", "numpy")}
    assert ("softmax", "float32") in pairs and ("causal_mask", "float64") in pairs
    sampling = [c for c in CASES if c.op == "sample_logits" and c.compare == "in_support"]
    assert sampling and pairs["sample_logits", "float32"].cases == sum(  # draws differ by design
        c.op == "sample_logits" for c in CASES
    ) - len(sampling)
    assert pairs["softmax", "float32"].worst_disagreement < 1e-6
    assert pairs["causal_mask", "float32"].worst_disagreement == 0.0
    coverage = report.coverage()
    total = len(seqops.declared_ops())
    assert (coverage["ops_passed"], coverage["ops_run"], coverage["ops_total"]) == (3, 3, total)
    assert report.coverage_line() == f"coverage: 3 ops passed / 3 run / {total} total"
    report.to_json(tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["agreement"] and data["agreement"][0]["backends"] == ["array_api_strict", "numpy"]
    report.to_markdown(tmp_path / "r.md")
    assert "## Cross-backend agreement" in (tmp_path / "r.md").read_text()


def test_disagreement_between_backends_is_measured() -> None:
    from seqops_conformance.runner import agreement

    a, b = np.array([1.0, 2.0]), np.array([1.0, 2.2])
    found = agreement({("softmax[x]", "float32"): {"p@cpu": [a], "q@cpu": [b]}}, {"softmax[x]": "softmax"})
    assert [(x.op, x.backends, x.cases) for x in found] == [("softmax", ("p", "q"), 1)]
    assert found[0].worst_disagreement == pytest.approx(0.2 / 2.2)
    shape = agreement({("s", "f"): {"p@c": [a], "q@c": [a[:1]]}}, {"s": "softmax"})
    assert shape[0].worst_disagreement is None


def test_coverage_names_failed_and_unchecked_ops() -> None:
    from seqops_conformance.report import Report, Result

    report = Report(
        results=[
            Result("numpy", "cpu", "float32", "softmax", "softmax[a]", "portable", 0.0, 1e-5, "pass"),
            Result("numpy", "cpu", "float32", "lstm", "lstm[a]", "portable", 1.0, 1e-5, "fail"),
            Result("numpy", "cpu", "float32", "kl_mvn", "kl_mvn[a]", "", None, 1e-5, "skip"),
        ],
        ops_total=39,
    )
    assert (
        report.coverage_line()
        == "coverage: 1 op passed / 2 run / 39 total; failed: lstm; no check ran: kl_mvn"
    )


def test_heatmap_png(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    report = run(backends=["numpy"], ops=["softmax", "causal_mask"], progress=False)
    report.to_png(tmp_path / "h.png")
    assert (tmp_path / "h.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from seqops_conformance.heatmap import grid

    rows, columns, found = grid(report)
    assert rows == ["causal_mask", "softmax"] and columns[0] == "numpy\nfloat16"
    assert found["causal_mask", "numpy\nfloat32"] == (0.0, "pass")


# -- the pytest plugin ------------------------------------------------------------------------


def _pytest(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--pyargs", "seqops_conformance", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=600,
    )


def test_pytest_plugin_certifies_a_backend(tmp_path) -> None:
    skips = tmp_path / "skips.txt"
    skips.write_text("# comment\nfloat16-eager-portable-softmax[  # half softmax is tested elsewhere\n\n")
    xfails = tmp_path / "xfails.txt"
    xfails.write_text("float64-eager-portable-log_softmax[axis -1]\n")
    report = tmp_path / "r.json"
    done = _pytest(
        "--seqops-backend", "numpy", "--seqops-op", "softmax", "--seqops-op", "log_softmax",
        "--seqops-skips", str(skips), "--seqops-xfails", str(xfails), "--seqops-report", str(report),
        "-rsX", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "numpy-cpu-float32-eager-portable-softmax[" in done.stdout or "passed" in done.stdout
    assert "half softmax is tested elsewhere" in done.stdout  # the skip reason is printed
    assert "XPASS" in done.stdout  # an expected failure that passes is reported
    assert "coverage: 2 ops passed / 2 run / " in done.stdout
    data = json.loads(report.read_text())
    assert {r["op"] for r in data["results"]} == {"softmax", "log_softmax"}


def test_pytest_plugin_skips_an_unavailable_backend_with_the_reason(tmp_path) -> None:
    availability = dict((b.name, ok) for b, ok in seqops.backends())["cupy"]
    if availability:
        pytest.skip("cupy is available here")
    done = _pytest("--seqops-backend", "cupy", "-rs", cwd=tmp_path)
    assert done.returncode == 0 and "1 skipped" in done.stdout
    assert f"cupy: {availability.reason}" in done.stdout  # e.g. "cupy: no CUDA device"


def test_pytest_plugin_skips_what_cannot_run_here_with_the_reason(tmp_path) -> None:
    done = _pytest(
        "--seqops-backend", "numpy", "--seqops-device", "cuda:7", "--seqops-transformation", "grad", "-rs",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0 and "2 skipped" in done.stdout, done.stdout
    assert "numpy: none of the devices cuda:7 on this machine" in done.stdout
    assert "numpy: the suite has no grad driver for this backend" in done.stdout


def test_pytest_plugin_rejects_unknown_names(tmp_path) -> None:
    done = _pytest("--seqops-backend", "nope", cwd=tmp_path)
    assert done.returncode == 4 and "unknown backend 'nope'" in done.stderr


def _install(source: Path, target: Path) -> dict[str, str]:
    """pip-install ``source`` (and marray) into ``target``; the environment that sees it."""
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps"]
    try:  # build with this environment's setuptools when it has one (no download)
        import setuptools  # noqa: F401

        pip.append("--no-build-isolation")
    except ImportError:
        pass
    done = subprocess.run([*pip, "--target", str(target), str(source)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"pip install {source} failed:\n{done.stderr}")
    try:
        import marray  # noqa: F401
    except ImportError:
        done = subprocess.run(
            [*pip, "--target", str(target), "marray>=0.0.12"], capture_output=True, text=True
        )
        if done.returncode != 0:
            pytest.skip(f"marray could not be installed (no package index?): {done.stderr[-300:]}")
    return {"PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}


EXAMPLE = ROOT / "examples" / "seqops-marray"


def test_the_example_third_party_backend_passes_the_suite(tmp_path) -> None:
    env = _install(EXAMPLE, tmp_path / "site")
    skips = EXAMPLE / "conformance-skips.txt"  # the edge sizes marray masks (its README)
    done = _pytest(
        "--seqops-backend", "marray", "--seqops-skips", str(skips), "-q", "-rs", env=env, cwd=tmp_path
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert " failed" not in done.stdout.splitlines()[-1]
    assert "marray-softmax" in done.stdout or "passed" in done.stdout
    assert "declared by backend marray" in done.stdout  # kl_mvn, skipped with its reason


def test_a_wrong_variant_of_the_example_fails_naming_op_dtype_error_and_tolerance(tmp_path) -> None:
    wrong = tmp_path / "seqops-marray-wrong"
    shutil.copytree(EXAMPLE, wrong, ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__"))
    fast = wrong / "seqops_marray" / "fast.py"
    source = fast.read_text()
    marker = "# conformance-mutation-point"
    assert marker in source, "the example's fast path lost its mutation point"
    fast.write_text(source.replace(marker, "out = out * 1.01  # a softmax off by 1 %"))
    env = _install(wrong, tmp_path / "site")
    done = _pytest("--seqops-backend", "marray", "--seqops-op", "softmax", "-q", env=env, cwd=tmp_path)
    assert done.returncode == 1, done.stdout[-3000:]
    failures = [line for line in done.stdout.splitlines() if line.startswith("FAILED")]
    assert failures and all("marray-softmax" in line for line in failures)
    assert "op softmax, case softmax[" in done.stdout
    assert "dtype float32" in done.stdout and "dtype float64" in done.stdout
    assert "implementation marray-softmax" in done.stdout
    assert "worst error 1.0e-02, tolerance 1e-05" in done.stdout


def test_the_tolerance_table_of_the_docs_is_the_suites() -> None:
    from seqops_conformance import GRADIENT_TOLERANCES, TOLERANCES

    lines = (ROOT / "docs" / "certifying-your-backend.md").read_text().splitlines()
    for dtype, tol in TOLERANCES.items():
        row = next(line for line in lines if line.startswith(f"| {dtype} | "))
        _, roundoff, outputs, gradients, _ = (cell.strip() for cell in row.split("|")[1:-1])
        assert float(outputs) == tol
        assert float(roundoff) == pytest.approx(
            float(np.finfo(dtype).eps) / 2 if dtype != "bfloat16" else 2**-8, rel=0.05
        )
        grad = GRADIENT_TOLERANCES.get(dtype)
        assert gradients == "—" if grad is None else float(gradients) == grad
