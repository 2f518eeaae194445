"""The table of built-in implementations, filled by the family modules at import."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from seqops._op import Op
from seqops.contract import Backend, Implementation

#: op -> its built-in implementations, in asking order (variants such as the tiled
#: attention before the plain one, which accepts every call).
TABLE: dict[Op, list[Implementation]] = {}

F = Callable[..., Any]


def implement(
    op: Op, *, name: str = "portable", decline: Callable[..., str | None] | None = None, first: bool = False
) -> Callable[[F], F]:
    """Register the decorated function, with ``op``'s contract signature, as a built-in
    implementation of ``op`` (asked before the others of ``op`` when ``first``)."""

    def register(fn: F) -> F:
        impls = TABLE.setdefault(op, [])
        impl = Implementation(op, name, fn, decline)
        impls.insert(0, impl) if first else impls.append(impl)
        return fn

    return register


def namespaced(op: Op, math: Callable[..., Any]) -> None:
    """Register ``math(xp, *args, **kwargs)``, which needs nothing from the backend but its
    namespace, as ``op``'s portable implementation. Its signature (``xp`` read as
    ``backend``) is what the registry checks against the contract."""

    def run(backend: Backend, /, *args: Any, **kwargs: Any) -> Any:
        return math(backend.namespace(), *args, **kwargs)

    sig = inspect.signature(math)
    first, *rest = sig.parameters.values()
    run.__signature__ = sig.replace(parameters=[first.replace(name="backend"), *rest])  # type: ignore[attr-defined]
    run.__name__ = run.__qualname__ = op.name
    implement(op)(run)
