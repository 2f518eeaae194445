"""The examples in the README and in docstrings run and say what they print."""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import seqops

README = Path(__file__).parents[1] / "README.md"
# Every public module, plus the private ones whose docstrings show public functions.
MODULES = ["seqops", "seqops._dispatch", "seqops._plugins"] + [
    f"seqops.{m.name}" for m in pkgutil.iter_modules(seqops.__path__) if not m.name.startswith("_")
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    for library in sorted(set(re.findall(r">>> import (torch|jax)\b", inspect.getsource(module)))):
        pytest.importorskip(library)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def _python_blocks() -> list[str]:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    return [b for b in blocks if "seqops_mylib" not in b]  # the plugin skeleton is a template


@pytest.mark.parametrize("block", _python_blocks(), ids=lambda b: b.splitlines()[0][:40])
def test_readme_examples_run(block: str) -> None:
    for library in re.findall(r"^import (torch|jax)", block, re.M):
        pytest.importorskip(library)
    exec(compile(block, str(README), "exec"), {})
