"""Type aliases used across seqops (one place, so signatures read the same everywhere)."""

from __future__ import annotations

from typing import Any, TypeAlias, TypeVar

#: An array of any Array API library (NumPy, CuPy, PyTorch, JAX, array-api-strict, ...).
Array: TypeAlias = Any
#: The array type of a public op's main input, which its output shares: a type checker sees a
#: ``torch.Tensor`` in give a ``torch.Tensor`` out, and a NumPy array give an array of its dtype
#: (with the input's shape parameter, even where the op changes the number of dimensions). Ops
#: whose output has another dtype (indices, masks) and creation functions return ``Array``.
#: Bound to ``Any`` so that the ops' own code may read any attribute of it.
ArrayT = TypeVar("ArrayT", bound=Any)
#: A container of arrays (a pytree) whose structure an op returns unchanged.
TreeT = TypeVar("TreeT")
#: An Array API namespace, as returned by ``array_api_compat.array_namespace``.
Namespace: TypeAlias = Any
#: A device object of the array's own library.
Device: TypeAlias = Any
#: A dtype object of the array's own library.
DType: TypeAlias = Any

__all__ = ["Array", "ArrayT", "DType", "Device", "Namespace", "TreeT"]
