"""The table of portable factories: ``op name -> factory(backend) -> implementation``."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from seqops._lib.backend import Backend

Factory = Callable[[Backend], Callable[..., Any]]
FACTORIES: dict[str, Factory] = {}


def portable(op: str) -> Callable[[Factory], Factory]:
    """Register the decorated factory as the portable implementation of ``op``."""

    def register(factory: Factory) -> Factory:
        FACTORIES[op] = factory
        return factory

    return register


def on_namespace(op: str, fn: Callable[..., Any]) -> None:
    """Register ``fn(xp, *args, **kwargs)``, which needs nothing from the backend but ``xp``."""
    FACTORIES[op] = lambda backend: functools.partial(fn, backend.namespace())
