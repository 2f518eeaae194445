"""The command line as a person reads it: progress off a terminal, counts that agree with
the summary, plurals, a result table that fits 80 columns, a heatmap title inside its
figure, and a ``seqops info`` that imports no heavy framework and says what is inactive."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys

import pytest
from rich.console import Console
from seqops_conformance import runner
from seqops_conformance.report import Report, Result, _fmt

import seqops
from seqops.cli import _installed_version, main

PROGRESS = re.compile(r"conformance: (\d+)/(\d+) checks?, (\d+) failed(?:, (\d+) skipped)?, \d+s")


@pytest.fixture
def off_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """stderr as a pipe, whatever the environment says (rich honours these variables)."""
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)


# -- progress ---------------------------------------------------------------------------------


def test_progress_off_a_terminal_is_plain_lines_counting_what_the_summary_counts(
    off_a_terminal, monkeypatch, capsys
) -> None:
    monkeypatch.setattr(runner, "PROGRESS_INTERVAL", 0.0)  # a line after every case run
    # the attention runs portable and portable-tiled: more checks than case runs (lines)
    ops = ["scaled_dot_product_attention", "softmax"]
    report = runner.run(backends=["numpy"], ops=ops, dtypes=["float32"], transformations=["eager"])
    lines = capsys.readouterr().err.splitlines()
    found = [PROGRESS.fullmatch(line) for line in lines]
    assert lines and all(found), lines
    done = [int(m[1]) for m in found if m]
    assert done == sorted(done) and done[0] < done[-1]
    summary = report.summary()
    # the total, known from the first line on, is the number of checks the summary counts
    assert {int(m[2]) for m in found if m} == {summary["checks"]} and summary["checks"] > len(lines)
    last = found[-1]
    assert last is not None and int(last[1]) == summary["checks"]
    assert int(last[3]) == summary["failed"] and int(last[4] or 0) == summary["skipped"]
    assert f"{summary['checks']} checks" in report.summary_line()


def test_progress_total_is_known_from_the_first_line_under_traced_transformations(
    off_a_terminal, monkeypatch, capsys
) -> None:
    pytest.importorskip("jax")
    monkeypatch.setattr(runner, "PROGRESS_INTERVAL", 0.0)
    # vmap skips the creation functions (no floating input): their runs make no check
    ops = ["causal_mask", "softmax", "scaled_dot_product_attention"]
    report = runner.run(
        backends=["jax"], ops=ops, dtypes=["float32"], transformations=["eager", "jit", "vmap"]
    )
    found = [PROGRESS.fullmatch(line) for line in capsys.readouterr().err.splitlines()]
    assert found and all(found)
    summary = report.summary()
    assert {int(m[2]) for m in found if m} == {summary["checks"]} and summary["skipped"] > 0


def test_progress_off_a_terminal_is_one_line_at_the_end_of_a_short_run(off_a_terminal, capsys) -> None:
    report = runner.run(backends=["numpy"], ops=["softmax"], dtypes=["float32"], transformations=["eager"])
    (line,) = capsys.readouterr().err.splitlines()
    found = PROGRESS.fullmatch(line)
    assert found and found[1] == found[2] == str(report.summary()["checks"]), line


def test_progress_on_a_terminal_is_a_bar_with_the_same_counts(monkeypatch, capsys) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")
    report = runner.run(backends=["numpy"], ops=["softmax"], dtypes=["float32"], transformations=["eager"])
    err = capsys.readouterr().err
    assert not PROGRESS.search(err)  # no plain lines
    checks = report.summary()["checks"]
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", err)  # without the terminal's colour codes
    assert f"{checks}/{checks} checks, 0 failed" in plain


@pytest.mark.parametrize("terminal", [False, True])
def test_no_progress_silences_both(terminal, off_a_terminal, monkeypatch, capsys) -> None:
    if terminal:
        monkeypatch.setenv("FORCE_COLOR", "1")
    argv = ["conformance", "--backend", "numpy", "--op", "softmax", "--dtype", "float32", "--no-progress"]
    assert main(argv) == 0
    assert capsys.readouterr().err == ""


# -- plurals ----------------------------------------------------------------------------------


def _result(
    backend: str,
    op: str,
    transformation: str = "eager",
    *,
    device: str = "cpu",
    dtype: str = "float32",
    implementation: str = "portable",
    error: float = 1e-7,
    status: str = "pass",
) -> Result:
    return Result(
        backend, device, dtype, op, f"{op}[a]", implementation, error, 1e-5, status, "", transformation
    )


def test_counts_of_one_are_singular() -> None:
    report = Report(results=[_result("numpy", "softmax", "grad")], ops_total=1)
    assert report.summary_line().startswith("conformance: 1 backend, 1 op, 1 check (1 gradient; portable 1)")
    assert report.coverage_line() == "coverage: 1 op passed / 1 run / 1 total"


def test_counts_of_two_are_plural() -> None:
    report = Report(results=[_result("numpy", "softmax"), _result("torch", "relu", "grad")])
    assert report.summary_line().startswith("conformance: 2 backends, 2 ops, 2 checks (1 gradient;")
    assert report.coverage_line().startswith("coverage: 2 ops passed / 2 run")


# -- the table in 80 columns --------------------------------------------------------------------


def _wide_report() -> Report:
    """Six backend columns (torch on two devices), the longest op and implementation names,
    failures and the widest numbers."""
    results = []
    where = [("numpy", "cpu"), ("array_api_strict", "CPU_DEVICE"), ("torch", "cpu"), ("torch", "cuda:0")]
    where += [("jax", "cpu:0"), ("cupy", "cuda:0")]
    for i, (backend, device) in enumerate(where):
        for op, impl in [
            ("scaled_dot_product_attention", "jax-dot-product-attention"),
            ("transformer_decoder_layer", "portable over portable-tiled"),
        ]:
            for j, dtype in enumerate(["float64", "float32", "float16", "bfloat16"]):
                error = (8.7654321 + i + j) * 10.0 ** -(3 + 4 * j)
                status = "fail" if (i + j) % 5 == 0 else "pass"
                for transformation, implementation in [("eager", impl), ("grad", "portable")]:
                    results.append(
                        _result(
                            backend,
                            op,
                            transformation,
                            device=device,
                            dtype=dtype,
                            implementation=implementation,
                            error=error,
                            status=status,
                        )
                    )
    return Report(results=results)


def _render(report: Report, *, terminal: bool) -> str:
    """``report`` as printed in 80 columns, to a terminal or to a pipe."""
    out = io.StringIO()
    report.print(Console(file=out, width=80, force_terminal=terminal, color_system=None))
    return out.getvalue()


def test_the_table_fits_an_80_column_terminal_with_every_number_whole() -> None:
    report = _wide_report()
    text = _render(report, terminal=True)
    table = text[: text.index("FAIL")].splitlines()
    assert "…" not in text
    assert max(map(len, table)) <= 80
    assert "continued" in text  # six backend columns do not fit: the last go on to a second table
    numbers = re.findall(r"\d\.\de[-+]\d\d", "\n".join(table))
    cells = report.cells()
    assert sorted(numbers) == sorted(_fmt(c.worst_error) for c in cells)


def test_a_pipe_gets_the_whole_table_on_one() -> None:
    text = _render(_wide_report(), terminal=False)
    assert "…" not in text and "continued" not in text
    assert any("  grad portable " in line and line.count("e-") == 6 for line in text.splitlines())


# -- the heatmap --------------------------------------------------------------------------------


def test_the_heatmap_title_lies_inside_a_small_figure() -> None:
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt
    from seqops_conformance.heatmap import figure

    fig = figure(Report(results=[_result("numpy", "softmax")], ops_total=51))
    try:
        fig.canvas.draw()
        (title,) = fig.texts  # the suptitle
        text = title.get_text()
        assert text.startswith("seqops conformance: worst error per op") and "1 check, 0 failed" in text
        box, inside = title.get_window_extent(), fig.bbox
        assert inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0 and box.y1 <= inside.y1
        assert len(text.splitlines()) > 2  # wrapped: the figure of one column is narrower
    finally:
        plt.close(fig)


# -- seqops info --------------------------------------------------------------------------------


def test_info_imports_no_heavy_framework() -> None:
    code = (
        "import json, sys\n"
        "from seqops.cli import main\n"
        "status = main(['info'])\n"
        "print(json.dumps([status, sorted(m for m in ('torch', 'jax', 'cupy') if m in sys.modules)]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    *out, last = done.stdout.splitlines()
    assert json.loads(last) == [0, []]
    listed = {line.split(":")[0].strip() for line in out if line.startswith("  ") and ":" in line}
    assert {backend.name for backend, _ in seqops.backends()} <= listed
    for line in out:
        if line.startswith(("  torch: torch ", "  jax: jax ")):  # installed, not imported
            assert line.endswith("; devices: not queried (--devices)")


def test_info_lists_array_api_strict_default_device_only(capsys) -> None:
    pytest.importorskip("array_api_strict")
    for argv in (["info"], ["info", "--devices"]):
        assert main(argv) == 0
        (line,) = [x for x in capsys.readouterr().out.splitlines() if x.startswith("  array_api_strict: ")]
        assert line.endswith("; devices: CPU_DEVICE")


class _GhostBackend(seqops.Backend):
    name = "ghost"
    library = "seqops_test_ghost_library"  # not installed

    def owns(self, x: object, /) -> bool:
        return False


def _ghost_softmax(backend, x, /, *, axis):
    return x


class _GhostPlugins:
    """A backend whose library is missing, and a fast path for it only."""

    class Backends:
        @seqops.hookimpl
        def seqops_backends(self):
            return [_GhostBackend()]

    class Fast:
        @seqops.hookimpl
        def seqops_implementations(self, backend):
            if backend.name != "ghost":
                return None
            return [seqops.Implementation(seqops.ops.softmax, "ghost-softmax", _ghost_softmax)]


def test_info_marks_the_plugins_of_a_missing_library_inactive(capsys) -> None:
    names = [
        seqops.register_plugin(_GhostPlugins.Backends(), name="ghost"),
        seqops.register_plugin(_GhostPlugins.Fast(), name="ghost-fast"),
    ]
    try:
        assert main(["info"]) == 0
    finally:
        for name in names:
            seqops.unregister_plugin(name)
    out = capsys.readouterr().out.splitlines()
    missing = "seqops_test_ghost_library is not installed"
    assert f"  ghost: unavailable ({missing})" in out
    assert f"  ghost (Backends): inactive, {missing}" in out
    assert f"  ghost-fast (Fast): inactive, {missing}" in out
    assert not any(line.startswith("  portable (") and "inactive" in line for line in out)


def test_installed_versions_come_from_the_package_metadata() -> None:
    import importlib.metadata

    assert _installed_version("rich") == importlib.metadata.version("rich")
    assert _installed_version("_pytest") == importlib.metadata.version("pytest")  # another name
    assert _installed_version("seqops_test_ghost_library") == "version unknown"
