"""The conformance suite's pytest plugin costs nothing when unused (issue 16): in a bare project,
without a ``--seqops-*`` option, pytest loads it (entry point ``pytest11``) but imports no
seqops module and no array library."""

from __future__ import annotations

import subprocess
import sys


def test_an_unrelated_pytest_run_imports_no_seqops_module_and_no_framework(tmp_path) -> None:
    (tmp_path / "test_bare.py").write_text(
        "import sys\n"
        "def test_modules():\n"
        "    roots = {'seqops', 'numpy', 'torch', 'jax', 'cupy', 'array_api_strict', 'rich'}\n"
        "    print('LOADED', sorted(m for m in sys.modules if m.split('.')[0] in roots))\n"
        "    print('PLUGIN', 'seqops_conformance.pytest_plugin' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "test_bare.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PLUGIN True" in done.stdout  # the plugin is installed and loaded ...
    assert "LOADED []" in done.stdout, done.stdout  # ... and imported nothing


def test_the_package_names_still_resolve() -> None:
    import seqops_conformance

    assert seqops_conformance.CASES and "float32" in seqops_conformance.TOLERANCES
    assert callable(seqops_conformance.run) and "run" in dir(seqops_conformance)
