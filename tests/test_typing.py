"""The typed API: a type checker sees the array type flow through the public functions (a
``torch.Tensor`` in gives a ``torch.Tensor`` out, a NumPy array an array of its dtype), the
overloads of the options that change what comes back, and the signatures that ``public()`` keeps.

mypy (and pyright, where installed) checks ``tests/typing_example.py``; its ``reveal_type`` lines
say what each must reveal. A cold mypy run takes ~30 s on two cores (torch's stubs).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "tests" / "typing_example.py"


def _expected() -> tuple[dict[int, str], set[int]]:
    """The revealed type each ``reveal_type`` line expects, and the lines that must be errors."""
    revealed, errors = {}, set()
    for number, line in enumerate(EXAMPLE.read_text().splitlines(), start=1):
        if line.startswith("reveal_type("):
            revealed[number] = line.rsplit("# -> ", 1)[1].strip()
        elif line.endswith("# expect-error"):
            errors.add(number)
    assert len(revealed) >= 10 and errors
    return revealed, errors


def _normalized(type_: str) -> str:
    """One spelling for mypy's and pyright's: module prefixes dropped (``torch._tensor.Tensor``
    is ``Tensor``), a NamedTuple by its name, NumPy's float32 as ``float32``."""
    type_ = re.sub(r"tuple\[[^\[\]]*, fallback=([\w.]+)\]", r"\1", type_)
    type_ = re.sub(r"\b(?:\w+\.)+(?=\w)", "", type_)
    return type_.replace("floating[_32Bit]", "float32")


def test_mypy_sees_the_array_type_flow_through(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    pytest.importorskip("torch")
    config = tmp_path / "mypy.ini"
    config.write_text("[mypy]\nignore_missing_imports = True\nfollow_imports = silent\n")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(config), "--cache-dir", str(tmp_path / "cache"),
         "--no-error-summary", "--hide-error-context", str(EXAMPLE.relative_to(ROOT))],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    revealed, errors = {}, set()
    for line in result.stdout.splitlines():
        found = re.match(r".*typing_example\.py:(\d+): (note|error): (.*)", line)
        if found is None:
            continue
        number, kind, message = int(found[1]), found[2], found[3]
        shown = re.fullmatch(r'Revealed type is "(.*)"', message)
        if shown:
            revealed[number] = _normalized(shown[1])
        elif kind == "error":
            errors.add(number)
    expected_revealed, expected_errors = _expected()
    assert revealed == expected_revealed, result.stdout + result.stderr
    assert errors == expected_errors, result.stdout + result.stderr


def test_pyright_sees_the_array_type_flow_through(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    try:
        version = subprocess.run(
            [sys.executable, "-m", "pyright", "--version"], capture_output=True, text=True, timeout=300
        )
    except subprocess.TimeoutExpired:
        pytest.skip("pyright did not start within 300 s (it fetches node at its first run)")
    if version.returncode != 0:
        pytest.skip(
            f"pyright is not usable here (pip install 'pyright[nodejs]'): {version.stderr.strip()[-300:]}"
        )
    config = tmp_path / "pyrightconfig.json"
    config.write_text(json.dumps({"extraPaths": [str(ROOT)]}))
    result = subprocess.run(
        [sys.executable, "-m", "pyright", "--outputjson", "--pythonpath", sys.executable, "-p", str(config),
         str(EXAMPLE)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    report = json.loads(result.stdout)
    revealed, errors = {}, set()
    for diagnostic in report["generalDiagnostics"]:
        number = diagnostic["range"]["start"]["line"] + 1
        shown = re.fullmatch(r'Type of ".*" is "(.*)"', diagnostic["message"], re.S)
        if diagnostic["severity"] == "information" and shown:
            revealed[number] = _normalized(shown[1])
        elif diagnostic["severity"] == "error":
            errors.add(number)
    expected_revealed, expected_errors = _expected()
    assert revealed == expected_revealed, result.stdout
    assert errors == expected_errors, result.stdout
