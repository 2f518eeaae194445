"""Shape and platform helpers shared by the jax-fast implementations (JAX imported only
when asked for the platform)."""

from __future__ import annotations

import functools
from typing import Any

SYMBOLIC = "a size that is not a Python int (symbolic or unknown shape)"


def static(*sizes: Any) -> bool:
    """Whether every size is a concrete Python ``int`` (not a ``jax.export`` symbol)."""
    return all(type(size) is int for size in sizes)


@functools.cache
def on_cpu() -> bool:
    """Whether JAX's default backend is the CPU."""
    import jax

    return jax.default_backend() == "cpu"
