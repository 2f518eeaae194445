"""Conformance suite for seqops: float64 references and cross-backend checks.

The names below are imported on first use (PEP 562), so that importing the package — as
pytest does for the ``pytest11`` entry point ``seqops_conformance.pytest_plugin`` in every
project installed beside seqops — imports neither seqops nor NumPy.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "CASES": "seqops_conformance.cases",
    "Report": "seqops_conformance.report",
    "TRANSFORMATIONS": "seqops_conformance.runner",
    "run": "seqops_conformance.runner",
    "GRADIENT_TOLERANCES": "seqops_conformance.tolerances",
    "TOLERANCES": "seqops_conformance.tolerances",
}

__all__ = ["CASES", "GRADIENT_TOLERANCES", "TOLERANCES", "TRANSFORMATIONS", "Report", "run"]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'seqops_conformance' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
