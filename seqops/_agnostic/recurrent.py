"""Elman RNN, LSTM and GRU cells and sequences (pure Array API).

Weights are applied as ``x @ w`` with ``w (in, out)``. LSTM gates are packed in the order
**i, f, o, g** along the last axis of ``w_ih (I, 4H)``, ``w_hh (H, 4H)`` and ``b (4H,)``, so
the three sigmoid gates are one contiguous slice; GRU gates **r, z, n** (torch's order, the
two sigmoid gates first) in ``w_ih (I, 3H)``, ``w_hh (H, 3H)``, ``b_ih``/``b_hh (3H,)``.
Sequences are time-major and looped by the ``scan`` the backend supplies (``jax.lax.scan``
on JAX, a Python loop elsewhere).

Half-precision inputs compute in float32, carry the state in float32 from step to step
and return their own dtype.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import array_api_compat

from seqops._agnostic.activations import compute_dtype, relu
from seqops._agnostic.attention import linear
from seqops._lib.placement import helper_device
from seqops._lib.typing import Array, Namespace

Scan = Callable[[Callable[[Any, Array], tuple[Any, Array]], Any, Array], tuple[Any, Array]]


def sigmoid(xp: Namespace, x: Array, /) -> Array:
    """``1 / (1 + exp(-x))`` as ``tanh(x/2)/2 + 1/2``: no overflow anywhere (nor in the
    gradient), three elementwise kernels (the ``exp(-|x|)`` and ``where`` form took six, and was
    28x slower on NumPy: 967 µs against 34 µs at 64 x 1536 float32). Its absolute error is a
    few ulps of 1 (6e-8 in float32): a gate below ~1e-8 rounds to 0, which no state update
    can tell (the gates multiply values of order 1); not for outputs of their own (``silu``
    keeps the other form)."""
    return 0.5 * xp.tanh(0.5 * x) + 0.5


def _activation(xp: Namespace, nonlinearity: str) -> Callable[[Array], Array]:
    return functools.partial(relu, xp) if nonlinearity == "relu" else xp.tanh


def _cast(xp: Namespace, dtype: Any, *arrays: Array | None) -> list[Array | None]:
    return [None if a is None else xp.astype(a, dtype, copy=False) for a in arrays]


def _lstm_update(xp: Namespace, gates: Array, c: Array) -> tuple[Array, Array]:
    """``(h', c')`` from the pre-activations ``gates (..., 4H)`` (order i, f, o, g) and ``c``."""
    hidden = c.shape[-1]
    ifo = sigmoid(xp, gates[..., : 3 * hidden])  # (..., 3H): input, forget, output gates
    g = xp.tanh(gates[..., 3 * hidden :])
    c_new = ifo[..., hidden : 2 * hidden] * c + ifo[..., :hidden] * g
    return ifo[..., 2 * hidden :] * xp.tanh(c_new), c_new


def _gru_update(xp: Namespace, gi: Array, gh: Array, h: Array) -> Array:
    """``h'`` from ``gi = x @ w_ih + b_ih`` and ``gh = h @ w_hh + b_hh`` (both ``(..., 3H)``,
    order r, z, n) and ``h``."""
    hidden = h.shape[-1]
    rz = sigmoid(xp, gi[..., : 2 * hidden] + gh[..., : 2 * hidden])  # (..., 2H): reset, update
    n = xp.tanh(gi[..., 2 * hidden :] + rz[..., :hidden] * gh[..., 2 * hidden :])
    return n + rz[..., hidden:] * (h - n)  # (1 - z) * n + z * h


def rnn_cell(
    xp: Namespace,
    x: Array,
    h: Array,
    w_ih: Array,
    w_hh: Array,
    b: Array | None,
    /,
    *,
    nonlinearity: str,
) -> Array:
    """``act(x @ w_ih + h @ w_hh + b)``; see :func:`seqops.rnn_cell`."""
    dtype = x.dtype
    x, h, w_ih, w_hh, b = _cast(xp, compute_dtype(xp, dtype), x, h, w_ih, w_hh, b)
    pre = xp.matmul(x, w_ih) + xp.matmul(h, w_hh)
    if b is not None:
        pre = pre + b
    return xp.astype(_activation(xp, nonlinearity)(pre), dtype, copy=False)


def lstm_cell(
    xp: Namespace,
    x: Array,
    state: tuple[Array, Array],
    w_ih: Array,
    w_hh: Array,
    b: Array | None,
    /,
) -> tuple[Array, Array]:
    """One LSTM step, ``(h', c')``; see :func:`seqops.lstm_cell`."""
    dtype = x.dtype
    x, h, c, w_ih, w_hh, b = _cast(xp, compute_dtype(xp, dtype), x, *state, w_ih, w_hh, b)
    gates = xp.matmul(x, w_ih) + xp.matmul(h, w_hh)  # (..., 4H)
    if b is not None:
        gates = gates + b
    h_new, c_new = _lstm_update(xp, gates, c)
    return xp.astype(h_new, dtype, copy=False), xp.astype(c_new, dtype, copy=False)


def gru_cell(
    xp: Namespace,
    x: Array,
    h: Array,
    w_ih: Array,
    w_hh: Array,
    b_ih: Array | None,
    b_hh: Array | None,
    /,
) -> Array:
    """One GRU step, ``h'``; see :func:`seqops.gru_cell`."""
    dtype = x.dtype
    x, h, w_ih, w_hh, b_ih, b_hh = _cast(xp, compute_dtype(xp, dtype), x, h, w_ih, w_hh, b_ih, b_hh)
    h_new = _gru_update(xp, linear(xp, x, w_ih, b_ih), linear(xp, h, w_hh, b_hh), h)
    return xp.astype(h_new, dtype, copy=False)


# Scan steps are module-level functions that carry ``w_hh`` (unchanged) with the state: a
# fresh closure per call would make an eager ``jax.lax.scan`` retrace and recompile on every
# call (~60 ms), while a stable function hits JAX's trace cache (~0.3 ms).
RnnCarry = tuple[Array, Array]  # (h, w_hh)
LstmCarry = tuple[Array, Array, Array]  # (h, c, w_hh)
GruCarry = tuple[Array, Array, Array]  # (h, w_hh, b_hh)


def _tanh_rnn_step(carry: RnnCarry, xw_t: Array) -> tuple[RnnCarry, Array]:
    h, w_hh = carry
    xp = array_api_compat.array_namespace(h)
    h = xp.tanh(xw_t + xp.matmul(h, w_hh))
    return (h, w_hh), h


def _relu_rnn_step(carry: RnnCarry, xw_t: Array) -> tuple[RnnCarry, Array]:
    h, w_hh = carry
    xp = array_api_compat.array_namespace(h)
    h = relu(xp, xw_t + xp.matmul(h, w_hh))
    return (h, w_hh), h


def _lstm_step(carry: LstmCarry, xw_t: Array) -> tuple[LstmCarry, Array]:
    h, c, w_hh = carry
    xp = array_api_compat.array_namespace(h)
    h, c = _lstm_update(xp, xw_t + xp.matmul(h, w_hh), c)
    return (h, c, w_hh), h


def _gru_step(carry: GruCarry, xw_t: Array) -> tuple[GruCarry, Array]:
    h, w_hh, b_hh = carry
    xp = array_api_compat.array_namespace(h)
    h = _gru_update(xp, xw_t, xp.matmul(h, w_hh) + b_hh, h)
    return (h, w_hh, b_hh), h


def _gru_step_no_hidden_bias(carry: RnnCarry, xw_t: Array) -> tuple[RnnCarry, Array]:
    h, w_hh = carry
    xp = array_api_compat.array_namespace(h)
    h = _gru_update(xp, xw_t, xp.matmul(h, w_hh), h)
    return (h, w_hh), h


def _empty_outputs(xp: Namespace, xs: Array, hidden: int) -> Array:
    """``hs`` of a sequence of length 0: shape ``(0, ..., H)``."""
    shape = (0, *xs.shape[1:-1], hidden)
    return xp.zeros(shape, dtype=xs.dtype, device=helper_device(xs))


def rnn(
    xp: Namespace,
    xs: Array,
    h0: Array,
    w_ih: Array,
    w_hh: Array,
    b: Array | None,
    /,
    *,
    nonlinearity: str,
    scan: Scan,
) -> tuple[Array, Array]:
    """``(hs, h_T)`` of an Elman RNN over the leading (time) axis; see :func:`seqops.rnn`."""
    dtype = xs.dtype
    if xs.shape[0] == 0:  # the Python-loop scan has nothing to stack
        return _empty_outputs(xp, xs, h0.shape[-1]), h0
    xs, h0, w_ih, w_hh, b = _cast(xp, compute_dtype(xp, dtype), xs, h0, w_ih, w_hh, b)
    step = _relu_rnn_step if nonlinearity == "relu" else _tanh_rnn_step
    (h_last, _), hs = scan(step, (h0, w_hh), linear(xp, xs, w_ih, b))
    return xp.astype(hs, dtype, copy=False), xp.astype(h_last, dtype, copy=False)


def lstm(
    xp: Namespace,
    xs: Array,
    state: tuple[Array, Array],
    w_ih: Array,
    w_hh: Array,
    b: Array | None,
    /,
    *,
    scan: Scan,
) -> tuple[Array, tuple[Array, Array]]:
    """``(hs, (h_T, c_T))`` of an LSTM over the leading (time) axis; see :func:`seqops.lstm`."""
    dtype = xs.dtype
    if xs.shape[0] == 0:
        return _empty_outputs(xp, xs, state[0].shape[-1]), (state[0], state[1])
    xs, h0, c0, w_ih, w_hh, b = _cast(xp, compute_dtype(xp, dtype), xs, *state, w_ih, w_hh, b)

    (h_last, c_last, _), hs = scan(_lstm_step, (h0, c0, w_hh), linear(xp, xs, w_ih, b))
    h_last, c_last, hs = (xp.astype(a, dtype, copy=False) for a in (h_last, c_last, hs))
    return hs, (h_last, c_last)


def gru(
    xp: Namespace,
    xs: Array,
    h0: Array,
    w_ih: Array,
    w_hh: Array,
    b_ih: Array | None,
    b_hh: Array | None,
    /,
    *,
    scan: Scan,
) -> tuple[Array, Array]:
    """``(hs, h_T)`` of a GRU over the leading (time) axis; see :func:`seqops.gru`."""
    dtype = xs.dtype
    if xs.shape[0] == 0:
        return _empty_outputs(xp, xs, h0.shape[-1]), h0
    xs, h0, w_ih, w_hh, b_ih, b_hh = _cast(xp, compute_dtype(xp, dtype), xs, h0, w_ih, w_hh, b_ih, b_hh)
    xw = linear(xp, xs, w_ih, b_ih)  # (T, ..., 3H): every step's input side in one product
    # b_hh rides in the carry: its n block is scaled by r, so it cannot join xw
    if b_hh is None:
        (h_last, _), hs = scan(_gru_step_no_hidden_bias, (h0, w_hh), xw)
    else:
        (h_last, _, _), hs = scan(_gru_step, (h0, w_hh, b_hh), xw)
    return xp.astype(hs, dtype, copy=False), xp.astype(h_last, dtype, copy=False)
