"""Portable factories of the recurrent family (cells and sequences through ``backend.scan``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from seqops._agnostic import recurrent
from seqops._lib.backend import Backend
from seqops._portable._registry import on_namespace, portable

on_namespace("rnn_cell", recurrent.rnn_cell)
on_namespace("lstm_cell", recurrent.lstm_cell)


# The closures call `backend.scan` when they run rather than holding the bound method:
# the cache entry may be created while torch.compile traces, and Dynamo cannot rebuild a
# bound method of a backend object created inside the trace.
@portable("rnn")
def _rnn(backend: Backend) -> Callable[..., Any]:
    xp = backend.namespace()

    def run(*args: Any, **options: Any) -> Any:
        return recurrent.rnn(xp, *args, scan=backend.scan, **options)

    return run


@portable("lstm")
def _lstm(backend: Backend) -> Callable[..., Any]:
    xp = backend.namespace()

    def run(*args: Any, **options: Any) -> Any:
        return recurrent.lstm(xp, *args, scan=backend.scan, **options)

    return run
