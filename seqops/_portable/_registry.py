"""The table of portable factories: ``op name -> factory(backend) -> implementation``."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from seqops._lib.backend import Backend
from seqops.hookspecs import Implementation

Factory = Callable[[Backend], Callable[..., Any]]
FACTORIES: dict[str, Factory] = {}
# Portable variants asked before the plain implementation of an op (each may decline).
VARIANTS: dict[str, list[Callable[[Backend], Implementation]]] = {}


def portable(op: str) -> Callable[[Factory], Factory]:
    """Register the decorated factory as the portable implementation of ``op``."""

    def register(factory: Factory) -> Factory:
        FACTORIES[op] = factory
        return factory

    return register


def on_namespace(op: str, fn: Callable[..., Any]) -> None:
    """Register ``fn(xp, *args, **kwargs)``, which needs nothing from the backend but ``xp``."""
    FACTORIES[op] = lambda backend: functools.partial(fn, backend.namespace())


def variant(op: str) -> Callable[[Callable[[Backend], Implementation]], Callable[[Backend], Implementation]]:
    """Register a factory of a portable :class:`Implementation` asked before ``op``'s plain one."""

    def register(factory: Callable[[Backend], Implementation]) -> Callable[[Backend], Implementation]:
        VARIANTS.setdefault(op, []).append(factory)
        return factory

    return register
