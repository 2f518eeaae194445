"""Shape helpers shared by the jax-fast implementations (no JAX import)."""

from __future__ import annotations

from typing import Any

SYMBOLIC = "a size that is not a Python int (symbolic or unknown shape)"


def static(*sizes: Any) -> bool:
    """Whether every size is a concrete Python ``int`` (not a ``jax.export`` symbol)."""
    return all(type(size) is int for size in sizes)
