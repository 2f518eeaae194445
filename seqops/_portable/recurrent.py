"""Portable factories of the recurrent family (cells and sequences through ``backend.scan``)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from seqops._agnostic import recurrent
from seqops._lib.backend import Backend
from seqops._portable._registry import on_namespace, portable

on_namespace("rnn_cell", recurrent.rnn_cell)
on_namespace("lstm_cell", recurrent.lstm_cell)


@portable("rnn")
def _rnn(backend: Backend) -> Callable[..., Any]:
    return functools.partial(recurrent.rnn, backend.namespace(), scan=backend.scan)


@portable("lstm")
def _lstm(backend: Backend) -> Callable[..., Any]:
    return functools.partial(recurrent.lstm, backend.namespace(), scan=backend.scan)
