"""Type aliases used across seqops (one place, so signatures read the same everywhere)."""

from __future__ import annotations

from typing import Any, TypeAlias

#: An array of any Array API library (NumPy, CuPy, PyTorch, JAX, array-api-strict, ...).
Array: TypeAlias = Any
#: An Array API namespace, as returned by ``array_api_compat.array_namespace``.
Namespace: TypeAlias = Any
#: A device object of the array's own library.
Device: TypeAlias = Any
#: A dtype object of the array's own library.
DType: TypeAlias = Any

__all__ = ["Array", "DType", "Device", "Namespace"]
