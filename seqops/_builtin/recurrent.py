"""Built-in implementations of the recurrent family (RNN, LSTM, GRU): cells, and sequences
through the backend's ``scan`` (``lax.scan`` on JAX, so ``jit`` does not unroll the time loop)."""

from __future__ import annotations

from typing import Any

from seqops import ops
from seqops._agnostic import recurrent
from seqops._builtin._table import implement, namespaced
from seqops._lib.typing import Array
from seqops.contract import Backend

namespaced(ops.rnn_cell, recurrent.rnn_cell)
namespaced(ops.lstm_cell, recurrent.lstm_cell)
namespaced(ops.gru_cell, recurrent.gru_cell)


@implement(ops.rnn)
def rnn(
    backend: Backend, xs: Array, h0: Array, w_ih: Array, w_hh: Array, b: Array | None, /, *, nonlinearity: str
) -> Any:
    return recurrent.rnn(
        backend.namespace(), xs, h0, w_ih, w_hh, b, scan=backend.scan, nonlinearity=nonlinearity
    )


@implement(ops.lstm)
def lstm(backend: Backend, xs: Array, state: Any, w_ih: Array, w_hh: Array, b: Array | None, /) -> Any:
    return recurrent.lstm(backend.namespace(), xs, state, w_ih, w_hh, b, scan=backend.scan)


@implement(ops.gru)
def gru(
    backend: Backend,
    xs: Array,
    h0: Array,
    w_ih: Array,
    w_hh: Array,
    b_ih: Array | None,
    b_hh: Array | None,
    /,
) -> Any:
    return recurrent.gru(backend.namespace(), xs, h0, w_ih, w_hh, b_ih, b_hh, scan=backend.scan)
