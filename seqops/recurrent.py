"""Recurrent family: Elman RNN, LSTM and GRU cells and time-major sequences.

Weights are applied as ``x @ w`` with ``w (in, out)``. LSTM gates are packed **i, f, o, g**
(torch and keras use i, f, g, o: convert with :mod:`seqops.convert`); GRU gates **r, z, n**
as torch's (keras packs z, r, h). Sequences loop over time through the backend's ``scan``
hook, so ``jax.jit`` compiles one step, not ``T``.
"""

from __future__ import annotations

from typing import Any

from seqops import ops
from seqops._dispatch import public, resolve
from seqops._lib import validate as check
from seqops._lib.typing import Array, ArrayT, Namespace

NONLINEARITIES = ("tanh", "relu")


@public(ops.rnn_cell)
def rnn_cell(
    x: ArrayT,
    h: Array,
    /,
    w_ih: Array,
    w_hh: Array,
    b: Array | None = None,
    *,
    nonlinearity: str = "tanh",
) -> ArrayT:
    """One Elman RNN step, ``h' = act(x @ w_ih + h @ w_hh + b)``.

    Parameters
    ----------
    x : array, shape ``(..., I)``
        Input of this step.
    h : array, shape ``(..., H)``
        Previous hidden state, same leading (batch) dimensions as ``x``.
    w_ih : array, shape ``(I, H)``
        Input-to-hidden weight, applied as ``x @ w_ih`` (torch's ``weight_ih.T``).
    w_hh : array, shape ``(H, H)``
        Hidden-to-hidden weight, applied as ``h @ w_hh`` (torch's ``weight_hh.T``).
    b : array, shape ``(H,)``, optional
        One bias (torch's ``bias_ih + bias_hh``). All arrays share ``x``'s dtype.
    nonlinearity : {"tanh", "relu"}
        Applied to the sum of the two products and the bias.

    Returns
    -------
    h_new : array, shape ``(..., H)``
        Same library, device and dtype as ``x`` (half precision computes in float32).

    Examples
    --------
    >>> import numpy as np, seqops
    >>> x, h = np.ones((2, 3)), np.zeros((2, 4))
    >>> seqops.rnn_cell(x, h, np.full((3, 4), 0.1), np.eye(4)).round(4).tolist()[0]
    [0.2913, 0.2913, 0.2913, 0.2913]
    """
    backend = resolve(x, h, w_ih, w_hh, b, names=("x", "h", "w_ih", "w_hh", "b"), required=4)
    check.require_choice("nonlinearity", nonlinearity, NONLINEARITIES)
    _check_step(backend.namespace(), "x", x, {"h": h}, w_ih, w_hh, {"b": b}, gates=1)
    return ops.rnn_cell.dispatch(backend, x, h, w_ih, w_hh, b, nonlinearity=nonlinearity)


@public(ops.rnn)
def rnn(
    xs: ArrayT,
    h0: Array,
    /,
    w_ih: Array,
    w_hh: Array,
    b: Array | None = None,
    *,
    nonlinearity: str = "tanh",
) -> tuple[ArrayT, ArrayT]:
    """An Elman RNN over a time-major sequence: :func:`rnn_cell` at every step.

    Parameters
    ----------
    xs : array, shape ``(T, ..., I)``
        Inputs, time first (torch's ``batch_first=False``).
    h0 : array, shape ``(..., H)``
        Initial hidden state; its leading dimensions are ``xs.shape[1:-1]``.
    w_ih : array, shape ``(I, H)``
        Input-to-hidden weight, as in :func:`rnn_cell`.
    w_hh : array, shape ``(H, H)``
        Hidden-to-hidden weight, as in :func:`rnn_cell`.
    b : array, shape ``(H,)``, optional
        One bias, as in :func:`rnn_cell`.
    nonlinearity : {"tanh", "relu"}
        As in :func:`rnn_cell`.

    Returns
    -------
    hs : array, shape ``(T, ..., H)``
        The hidden state after every step (``hs[-1]`` is ``h_T``).
    h_T : array, shape ``(..., H)``
        The final hidden state (``h0`` itself when ``T = 0``).

    Examples
    --------
    >>> import numpy as np, seqops
    >>> xs, h0 = np.ones((5, 2, 3)), np.zeros((2, 4))
    >>> hs, h_last = seqops.rnn(xs, h0, np.full((3, 4), 0.1), np.eye(4) * 0.5)
    >>> hs.shape, h_last.shape
    ((5, 2, 4), (2, 4))
    """
    backend = resolve(xs, h0, w_ih, w_hh, b, names=("xs", "h0", "w_ih", "w_hh", "b"), required=4)
    check.require_choice("nonlinearity", nonlinearity, NONLINEARITIES)
    _check_sequence(backend.namespace(), xs, {"h0": h0}, w_ih, w_hh, {"b": b}, gates=1)
    return ops.rnn.dispatch(backend, xs, h0, w_ih, w_hh, b, nonlinearity=nonlinearity)


@public(ops.lstm_cell)
def lstm_cell(
    x: ArrayT,
    state: tuple[Array, Array],
    /,
    w_ih: Array,
    w_hh: Array,
    b: Array | None = None,
) -> tuple[ArrayT, ArrayT]:
    """One LSTM step, gates packed **i, f, o, g**.

    ``[i, f, o, g] = x @ w_ih + h @ w_hh + b``; ``i, f, o`` pass a sigmoid and ``g`` a
    tanh; ``c' = f * c + i * g`` and ``h' = o * tanh(c')``.

    Parameters
    ----------
    x : array, shape ``(..., I)``
        Input of this step.
    state : pair of arrays ``(h, c)``, each of shape ``(..., H)``
        Hidden and cell state (flax's carry is ``(c, h)``: swap it).
    w_ih : array, shape ``(I, 4H)``
        Columns ``[0, H)`` feed the input gate, ``[H, 2H)`` the forget gate, ``[2H, 3H)``
        the output gate and ``[3H, 4H)`` the candidate ``g``.
    w_hh : array, shape ``(H, 4H)``
        Hidden-to-gates weight, applied as ``h @ w_hh``, columns in the same gate order.
    b : array, shape ``(4H,)``, optional
        One bias (torch's ``bias_ih + bias_hh``). All arrays share ``x``'s dtype.

    Returns
    -------
    (h_new, c_new) : pair of arrays, shape ``(..., H)``
        Same library, device and dtype as ``x`` (half precision computes in float32).

    Examples
    --------
    >>> import numpy as np, seqops
    >>> x, h = np.ones((2, 3)), np.zeros((2, 4))
    >>> h1, c1 = seqops.lstm_cell(x, (h, h), np.full((3, 16), 0.1), np.zeros((4, 16)))
    >>> h1.shape, float(c1[0, 0].round(4))
    ((2, 4), 0.1673)
    """
    backend, (h, c) = _lstm_state(x, state, w_ih, w_hh, b, "x", ("h", "c"))
    _check_step(backend.namespace(), "x", x, {"h": h, "c": c}, w_ih, w_hh, {"b": b}, gates=4)
    return ops.lstm_cell.dispatch(backend, x, (h, c), w_ih, w_hh, b)


@public(ops.lstm)
def lstm(
    xs: ArrayT,
    state: tuple[Array, Array],
    /,
    w_ih: Array,
    w_hh: Array,
    b: Array | None = None,
) -> tuple[ArrayT, tuple[ArrayT, ArrayT]]:
    """An LSTM over a time-major sequence: :func:`lstm_cell` at every step.

    ``xs @ w_ih`` is computed for all steps in one product; the recurrence runs through
    the backend's ``scan`` (``jax.lax.scan`` on JAX: ``jit`` does not unroll it).

    Parameters
    ----------
    xs : array, shape ``(T, ..., I)``
        Inputs, time first (torch's ``batch_first=False``).
    state : pair of arrays ``(h0, c0)``, each of shape ``(..., H)``
        Initial state; leading dimensions ``xs.shape[1:-1]``.
    w_ih : array, shape ``(I, 4H)``
        Input-to-gates weight, gates i, f, o, g, as in :func:`lstm_cell`.
    w_hh : array, shape ``(H, 4H)``
        Hidden-to-gates weight, as in :func:`lstm_cell`.
    b : array, shape ``(4H,)``, optional
        One bias, as in :func:`lstm_cell`.

    Returns
    -------
    hs : array, shape ``(T, ..., H)``
        The hidden state after every step.
    (h_T, c_T) : pair of arrays, shape ``(..., H)``
        The final state (the initial one when ``T = 0``). Half precision carries the
        state in float32 between steps and returns the input dtype.

    Examples
    --------
    >>> import numpy as np, seqops
    >>> xs, h0 = np.ones((7, 2, 3)), np.zeros((2, 4))
    >>> hs, (h_last, c_last) = seqops.lstm(xs, (h0, h0), np.zeros((3, 16)), np.zeros((4, 16)))
    >>> hs.shape, c_last.shape
    ((7, 2, 4), (2, 4))
    """
    backend, (h0, c0) = _lstm_state(xs, state, w_ih, w_hh, b, "xs", ("h0", "c0"))
    _check_sequence(backend.namespace(), xs, {"h0": h0, "c0": c0}, w_ih, w_hh, {"b": b}, gates=4)
    return ops.lstm.dispatch(backend, xs, (h0, c0), w_ih, w_hh, b)


@public(ops.gru_cell)
def gru_cell(
    x: ArrayT,
    h: Array,
    /,
    w_ih: Array,
    w_hh: Array,
    b_ih: Array | None = None,
    b_hh: Array | None = None,
) -> ArrayT:
    """One GRU step, ``torch.nn.GRUCell``'s: gates packed **r, z, n**.

    With ``[r_i, z_i, n_i] = x @ w_ih + b_ih`` and ``[r_h, z_h, n_h] = h @ w_hh + b_hh``:
    ``r = sigmoid(r_i + r_h)``, ``z = sigmoid(z_i + z_h)``, ``n = tanh(n_i + r * n_h)``
    and ``h' = (1 - z) * n + z * h``. Two biases, as torch's, because ``b_hh``'s n block
    is scaled by ``r``.

    Parameters
    ----------
    x : array, shape ``(..., I)``
        Input of this step.
    h : array, shape ``(..., H)``
        Previous hidden state, same leading (batch) dimensions as ``x``.
    w_ih : array, shape ``(I, 3H)``
        Columns ``[0, H)`` feed the reset gate r, ``[H, 2H)`` the update gate z and
        ``[2H, 3H)`` the candidate n (torch's ``weight_ih.T``).
    w_hh : array, shape ``(H, 3H)``
        Hidden-to-gates weight, applied as ``h @ w_hh``, columns in the same gate order
        (torch's ``weight_hh.T``).
    b_ih, b_hh : array, shape ``(3H,)``, optional
        Input-side and hidden-side biases; a missing one is zero. All arrays share
        ``x``'s dtype.

    Returns
    -------
    h_new : array, shape ``(..., H)``
        Same library, device and dtype as ``x`` (half precision computes in float32).

    Examples
    --------
    >>> import numpy as np, seqops
    >>> x, h = np.ones((2, 3)), np.zeros((2, 4))
    >>> h1 = seqops.gru_cell(x, h, np.full((3, 12), 0.1), np.zeros((4, 12)))
    >>> h1.shape, float(h1[0, 0].round(4))
    ((2, 4), 0.124)
    """
    names = ("x", "h", "w_ih", "w_hh", "b_ih", "b_hh")
    backend = resolve(x, h, w_ih, w_hh, b_ih, b_hh, names=names, required=4)
    _check_step(backend.namespace(), "x", x, {"h": h}, w_ih, w_hh, {"b_ih": b_ih, "b_hh": b_hh}, gates=3)
    return ops.gru_cell.dispatch(backend, x, h, w_ih, w_hh, b_ih, b_hh)


@public(ops.gru)
def gru(
    xs: ArrayT,
    h0: Array,
    /,
    w_ih: Array,
    w_hh: Array,
    b_ih: Array | None = None,
    b_hh: Array | None = None,
) -> tuple[ArrayT, ArrayT]:
    """A GRU over a time-major sequence: :func:`gru_cell` at every step (``torch.nn.GRU``).

    ``xs @ w_ih + b_ih`` is computed for all steps in one product; the recurrence runs
    through the backend's ``scan`` (``jax.lax.scan`` on JAX: ``jit`` does not unroll it).

    Parameters
    ----------
    xs : array, shape ``(T, ..., I)``
        Inputs, time first (torch's ``batch_first=False``).
    h0 : array, shape ``(..., H)``
        Initial hidden state; its leading dimensions are ``xs.shape[1:-1]`` (torch's
        ``h_0 (1, B, H)`` is ``h_0[0]``).
    w_ih : array, shape ``(I, 3H)``
        Input-to-gates weight, gates r, z, n, as in :func:`gru_cell`.
    w_hh : array, shape ``(H, 3H)``
        Hidden-to-gates weight, as in :func:`gru_cell`.
    b_ih, b_hh : array, shape ``(3H,)``, optional
        Input-side and hidden-side biases, as in :func:`gru_cell`.

    Returns
    -------
    hs : array, shape ``(T, ..., H)``
        The hidden state after every step (``hs[-1]`` is ``h_T``).
    h_T : array, shape ``(..., H)``
        The final hidden state (``h0`` itself when ``T = 0``). Half precision carries the
        state in float32 between steps and returns the input dtype.

    Examples
    --------
    >>> import numpy as np, seqops
    >>> xs, h0 = np.ones((7, 2, 3)), np.zeros((2, 4))
    >>> hs, h_last = seqops.gru(xs, h0, np.full((3, 12), 0.1), np.zeros((4, 12)))
    >>> hs.shape, h_last.shape, float(h_last[0, 0].round(4))
    ((7, 2, 4), (2, 4), 0.2853)
    """
    names = ("xs", "h0", "w_ih", "w_hh", "b_ih", "b_hh")
    backend = resolve(xs, h0, w_ih, w_hh, b_ih, b_hh, names=names, required=4)
    _check_sequence(backend.namespace(), xs, {"h0": h0}, w_ih, w_hh, {"b_ih": b_ih, "b_hh": b_hh}, gates=3)
    return ops.gru.dispatch(backend, xs, h0, w_ih, w_hh, b_ih, b_hh)


def _lstm_state(
    x: Array, state: Any, w_ih: Array, w_hh: Array, b: Array | None, x_name: str, names: tuple[str, str]
) -> tuple[Any, tuple[Array, Array]]:
    """The backend and the unpacked ``(h, c)`` of an LSTM call."""
    if not isinstance(state, (tuple, list)) or len(state) != 2:
        msg = f"`state` must be a pair ({names[0]}, {names[1]}) of arrays; got {type(state).__name__}"
        raise TypeError(msg)
    h, c = state
    arrays = (x, h, c, w_ih, w_hh, b)
    return resolve(*arrays, names=(x_name, *names, "w_ih", "w_hh", "b"), required=5), (h, c)


def _check_sequence(
    xp: Namespace,
    xs: Array,
    states: dict[str, Array],
    w_ih: Array,
    w_hh: Array,
    biases: dict[str, Array | None],
    *,
    gates: int,
) -> None:
    check.require_ndim("xs", xs, 2, "(T, ..., I)")
    _check_step(xp, "xs", xs, states, w_ih, w_hh, biases, gates=gates, batch=check.shape_of(xs)[1:-1])


def _check_step(
    xp: Namespace,
    x_name: str,
    x: Array,
    states: dict[str, Array],
    w_ih: Array,
    w_hh: Array,
    biases: dict[str, Array | None],
    *,
    gates: int,
    batch: tuple[int, ...] | None = None,
) -> None:
    """Dtypes and shapes of a cell (or sequence) input, its state and its weights.

    ``gates`` is 1 for the RNN, 3 for the GRU and 4 for the LSTM; ``biases`` names each
    ``(gates·H,)`` bias (``b``, or the GRU's ``b_ih`` and ``b_hh``). The hidden size ``H``
    is read from ``w_hh``, ``I`` from ``w_ih``; each other array is checked against them.
    """
    named = {x_name: x, **states, "w_ih": w_ih, "w_hh": w_hh, **biases}
    check.require_floating(xp, **named)
    check.require_same_dtype(**named)
    check.require_ndim(x_name, x, 1, "(..., I)")
    (h_name, h), *others = states.items()
    check.require_ndim(h_name, h, 1, "(..., H)")
    for name, s in others:
        if check.shape_of(s) != check.shape_of(h):
            msg = (
                f"`{name}` of shape {check.shape_of(s)} must have the shape of `{h_name}` {check.shape_of(h)}"
            )
            raise ValueError(msg)
    # The weights define the cell: H from w_hh (H, gates·H), I from w_ih, then the input and
    # state against them, so that the error names the array that disagrees.
    k = "" if gates == 1 else str(gates)
    size_in, w_hh_shape, w_ih_shape = x.shape[-1], check.shape_of(w_hh), check.shape_of(w_ih)
    if len(w_hh_shape) != 2 or w_hh_shape[1] != gates * w_hh_shape[0]:
        expected = (h.shape[-1], gates * h.shape[-1])
        msg = f"`w_hh` must have shape (H, {k}H) = {expected}; got {w_hh_shape}"
        raise ValueError(msg)
    hidden = w_hh_shape[0]
    if len(w_ih_shape) != 2 or w_ih_shape[1] != gates * hidden:
        msg = f"`w_ih` must have shape (I, {k}H) = {(size_in, gates * hidden)}; got {w_ih_shape}"
        raise ValueError(msg)
    if size_in != w_ih_shape[0]:
        msg = f"`{x_name}` has {size_in} input features but `w_ih` {w_ih_shape} takes I = {w_ih_shape[0]}"
        raise ValueError(msg)
    if h.shape[-1] != hidden:
        got = check.shape_of(h)
        msg = f"`{h_name}` must have H = {hidden} features (from `w_hh` {w_hh_shape}); got shape {got}"
        raise ValueError(msg)
    for name in biases:
        b = named[name]
        if b is not None and check.shape_of(b) != (gates * hidden,):
            msg = f"`{name}` must have shape ({k}H,) = ({gates * hidden},); got {check.shape_of(b)}"
            raise ValueError(msg)
    batch = check.shape_of(x)[:-1] if batch is None else batch
    if check.shape_of(h)[:-1] != batch:
        msg = f"`{h_name}` of shape {check.shape_of(h)} does not match {x_name}'s batch {batch}"
        raise ValueError(msg)
