"""Reading array values on the host, for the few checks that need values, when possible.

The checks of :mod:`seqops._lib.validate` look only at shapes and dtypes. A few errors
(class targets out of range, a non-finite gradient norm) depend on values: those are
checked eagerly, and skipped where values cannot be read because the array is being
traced (``jax.jit``, ``jax.vmap``, ``torch.compile``, ``torch.func`` transforms) or lazy
(a :attr:`seqops.Backend.lazy` backend such as Dask, where a read would compute the graph).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from seqops._lib.typing import Array

if TYPE_CHECKING:
    from seqops.contract import Backend


def concrete_bool(backend: Backend, x: Array) -> bool | None:
    """``bool(x)`` of a 0-d boolean array of ``backend``, or ``None`` when its value cannot be
    read now (traced) or must not be (a lazy backend: reading would compute the graph)."""
    if backend.lazy:
        return None
    torch = sys.modules.get("torch")
    # bool() would break a torch.compile graph (an error with fullgraph=True): do not try.
    if torch is not None and torch.compiler.is_compiling():
        return None
    try:
        return bool(x)
    except Exception:  # noqa: BLE001 - each tracer raises its own error type on a host read
        return None
