"""Cases of the recurrent family: RNN, LSTM and GRU cells and sequences."""

from __future__ import annotations

from functools import partial

import numpy as np

from seqops_conformance.cases._base import _add, _normal
from seqops_conformance.references import recurrent as ref

# T = 5 steps, batch 2, input 3, hidden 4 (H <= 8), shared by the cells and the sequences.
_T, _B, _I, _H = 5, 2, 3, 4


def _recurrent_weights(rng, gates, bias=True):
    """``w_ih (I, gates*H)``, ``w_hh (H, gates*H)``, ``b``: scaled by ``1/sqrt(fan_in)``."""
    w_ih = rng.standard_normal((_I, gates * _H)) / np.sqrt(_I)
    w_hh = rng.standard_normal((_H, gates * _H)) / np.sqrt(_H)
    return w_ih, w_hh, (_normal(rng, gates * _H, scale=0.2) if bias else None)


def _rnn(rng, *, steps=None, lead=(_B,), bias=True, **options):
    """``rnn_cell`` inputs when ``steps`` is None, else ``rnn`` inputs of ``steps`` steps."""
    x = _normal(rng, *(() if steps is None else (steps,)), *lead, _I, scale=1.0)
    h = _normal(rng, *lead, _H)
    return (x, h, *_recurrent_weights(rng, 1, bias)), options


def _lstm(rng, *, steps=None, lead=(_B,), bias=True):
    """``lstm_cell`` inputs when ``steps`` is None, else ``lstm`` inputs."""
    x = _normal(rng, *(() if steps is None else (steps,)), *lead, _I, scale=1.0)
    state = (_normal(rng, *lead, _H), _normal(rng, *lead, _H))
    return (x, state, *_recurrent_weights(rng, 4, bias)), {}


_add(
    "rnn_cell",
    {
        "tanh": _rnn,
        "relu": partial(_rnn, nonlinearity="relu"),
        "tanh no bias": partial(_rnn, bias=False),
        "unbatched": partial(_rnn, lead=()),
        "edge: empty batch": partial(_rnn, lead=(0,)),
    },
    ref.rnn_cell,
)


_add(
    "rnn",
    {
        "tanh": partial(_rnn, steps=_T),
        "relu": partial(_rnn, steps=_T, nonlinearity="relu"),
        "batch dims (2,3)": partial(_rnn, steps=_T, lead=(2, 3)),
        "T=1": partial(_rnn, steps=1),
        "edge: T=0": partial(_rnn, steps=0),
        "edge: empty batch": partial(_rnn, steps=_T, lead=(0,)),
        "edge: T=0 empty batch": partial(_rnn, steps=0, lead=(0,)),
    },
    ref.rnn,
    grad=("relu", "batch dims (2,3)", "T=1"),
)


_add(
    "lstm_cell",
    {
        "bias": _lstm,
        "no bias": partial(_lstm, bias=False),
        "edge: empty batch": partial(_lstm, lead=(0,)),
    },
    ref.lstm_cell,
)


_add(
    "lstm",
    {
        "bias": partial(_lstm, steps=_T),
        "no bias": partial(_lstm, steps=_T, bias=False),
        "batch dims (2,3)": partial(_lstm, steps=_T, lead=(2, 3)),
        "T=1": partial(_lstm, steps=1),
        "edge: T=0": partial(_lstm, steps=0),
        "edge: empty batch": partial(_lstm, steps=_T, lead=(0,)),
    },
    ref.lstm,
    grad=("bias",),
)


def _gru(rng, *, steps=None, lead=(_B,), b_ih=True, b_hh=True):
    """``gru_cell`` inputs when ``steps`` is None, else ``gru`` inputs; either bias may be absent."""
    x = _normal(rng, *(() if steps is None else (steps,)), *lead, _I, scale=1.0)
    h = _normal(rng, *lead, _H)
    w_ih, w_hh, bias_ih = _recurrent_weights(rng, 3, b_ih)
    bias_hh = _normal(rng, 3 * _H, scale=0.2) if b_hh else None
    return (x, h, w_ih, w_hh, bias_ih, bias_hh), {}


_add(
    "gru_cell",
    {
        "biases": _gru,
        "no biases": partial(_gru, b_ih=False, b_hh=False),
        "b_hh only": partial(_gru, b_ih=False),
        "unbatched": partial(_gru, lead=()),
        "edge: empty batch": partial(_gru, lead=(0,)),
    },
    ref.gru_cell,
    grad=("biases",),
)


_add(
    "gru",
    {
        "biases": partial(_gru, steps=_T),
        "no biases": partial(_gru, steps=_T, b_ih=False, b_hh=False),
        "b_ih only": partial(_gru, steps=_T, b_hh=False),
        "batch dims (2,3)": partial(_gru, steps=_T, lead=(2, 3)),
        "unbatched": partial(_gru, steps=_T, lead=()),
        "T=1": partial(_gru, steps=1),
        "edge: T=0": partial(_gru, steps=0),
        "edge: empty batch": partial(_gru, steps=_T, lead=(0,)),
    },
    ref.gru,
    grad=("biases", "batch dims (2,3)", "T=1"),
)
