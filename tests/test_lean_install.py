"""A lean install (issue 16): the core dependencies are exactly what ``import seqops`` needs.

``import seqops`` and an op call import nothing of an extra — in particular not rich and its
pygments and markdown-it, which only the command line uses (the ``cli`` extra) — and every
core dependency is imported by them (none is there for a later import only). Without rich,
``seqops info`` and ``seqops conformance`` work and print the same in plain text."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from seqops_conformance import run

import seqops

ROOT = Path(__file__).resolve().parents[1]
tomllib = pytest.importorskip("tomllib")  # Python 3.11+
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

CLI_ONLY = ("rich", "pygments", "markdown_it", "mdurl")
"""rich and what it imports: the ``cli`` extra, for the command line and its report only."""

BLOCK_RICH = "import sys; sys.modules['rich'] = None\n"
"""Prelude of a subprocess that behaves as if rich were not installed (``import rich``, and so
every ``from rich... import``, raises :class:`ImportError`)."""

IMPORT_AND_CALL = (
    "import json, sys, numpy as np, seqops\n"
    "out = seqops.softmax(np.array([[0.0, 0.0], [0.0, 1000.0]], dtype=np.float32), axis=-1)\n"
    "tops = sorted({m.split('.')[0] for m, v in sys.modules.items() if v is not None})\n"
    "print(json.dumps({'out': out.tolist(), 'modules': tops}))\n"
)


def _name(requirement: str) -> str:
    """The normalized distribution name of a requirement: ``array-api-extra>=0.9.1`` ->
    ``array-api-extra``, ``seqops[cli]`` -> ``seqops``."""
    return re.split(r"[\s<>=!~;\[(]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _python(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter outside the checkout (so that nothing is found
    through the current directory)."""
    return subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )  # fmt: skip


def _imported(tmp_path: Path, prelude: str = "") -> dict:
    done = _python(prelude + IMPORT_AND_CALL, tmp_path)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.splitlines()[-1])
    assert found["out"] == [[0.5, 0.5], [0.0, 1.0]]  # the op really ran
    return found


def _modules_of(distributions: set[str]) -> set[str]:
    """The top-level modules the installed ``distributions`` provide."""
    import importlib.metadata

    return {
        module
        for module, names in importlib.metadata.packages_distributions().items()
        if any(_name(n) in distributions for n in names)
    }


def test_import_seqops_and_an_op_call_import_neither_rich_nor_pygments_nor_markdown_it(tmp_path) -> None:
    modules = set(_imported(tmp_path)["modules"])
    assert "seqops" in modules and "numpy" in modules
    assert modules.isdisjoint(CLI_ONLY), sorted(modules & set(CLI_ONLY))


def test_import_seqops_imports_no_module_of_any_extra(tmp_path) -> None:
    extras = {
        _name(r) for reqs in PROJECT["optional-dependencies"].values() for r in reqs if _name(r) != "seqops"
    }
    assert {"rich", "torch", "jax", "matplotlib", "scipy"} <= extras  # what this test guards
    modules = set(_imported(tmp_path)["modules"])
    assert not modules & _modules_of(extras), sorted(modules & _modules_of(extras))


def test_every_core_dependency_is_imported_by_import_seqops(tmp_path) -> None:
    """A core dependency that ``import seqops`` and an op call do not import belongs in an
    extra (as rich did before issue 16)."""
    core = {_name(r) for r in PROJECT["dependencies"]}
    assert "rich" not in core
    modules = set(_imported(tmp_path)["modules"])
    unused = {d for d in core if not _modules_of({d}) & modules}
    assert not unused, f"core dependencies that `import seqops` does not import: {sorted(unused)}"


def test_the_cli_extra_holds_rich_and_the_test_extra_uses_it() -> None:
    extras = PROJECT["optional-dependencies"]
    assert {_name(r) for r in extras["cli"]} == {"rich"}
    assert "seqops[cli]" in extras["test"] and any("cli" in r for r in extras["all"])


def test_without_rich_import_seqops_still_works(tmp_path) -> None:
    assert set(_imported(tmp_path, BLOCK_RICH)["modules"]).isdisjoint(CLI_ONLY)


def test_without_rich_seqops_info_and_conformance_print_plain_text(tmp_path) -> None:
    report = tmp_path / "r.md"
    code = BLOCK_RICH + (
        "from seqops.cli import main\n"
        "status = main(['info'])\n"
        f"status += main(['conformance', '--backend', 'numpy', '--op', 'softmax', '--report', {str(report)!r}])\n"
        "assert sys.modules['rich'] is None, 'rich was imported'\n"
        "sys.exit(status)\n"
    )
    done = _python(code, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert f"seqops {seqops.__version__}\nbackends:\n" in out and "  numpy: numpy " in out
    assert re.search(r"^op / transformation, implementation +dtype +numpy$", out, re.M), out
    assert re.search(r"^  eager portable +float64 +\d\.\de-\d\d$", out, re.M), out
    assert re.search(r"^conformance: 1 backend, 1 op, \d+ checks .*, 0 failed", out, re.M), out
    assert f"coverage: 1 op passed / 1 run / {len(seqops.declared_ops())} total" in out
    assert "[" not in out.split("backends:")[0]  # no rich markup left in the text
    assert re.search(r"conformance: \d+/\d+ checks?, 0 failed", done.stderr)  # progress lines
    assert report.read_text().startswith("# seqops conformance")


def test_the_plain_table_shows_what_the_rich_table_shows(capsys) -> None:
    from rich.console import Console

    report = run(backends=["numpy"], ops=["softmax", "causal_mask"], progress=False)
    report.print_plain()
    plain = capsys.readouterr().out
    rich_out = io.StringIO()
    report.print(Console(file=rich_out, width=200, color_system=None))
    number = re.compile(r"(?<![\w.])(?:\d\.\de[-+]\d\d|0|✗ \S+|skip|·)(?![\w.])")
    table = plain[: plain.index("note:")]
    assert number.findall(table) == number.findall(rich_out.getvalue()[: rich_out.getvalue().index("note:")])
    assert len(number.findall(table)) == len(report.cells()) > 0
    for line in (report.summary_line(), report.coverage_line(), *(f"note: {n}" for n in report.notes)):
        assert line in plain.splitlines()
    assert plain.splitlines()[0] == "worst error (normwise relative)"
