"""Float64 references of the recurrent family: Elman RNN, LSTM and GRU, one explicit step at a time."""

import math

import numpy as np


def _sigmoid(z):
    """Logistic function via the identity ``sigmoid(z) = (1 + tanh(z / 2)) / 2`` (no overflow)."""
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def rnn_cell(x, h, w_ih, w_hh, b=None, nonlinearity="tanh"):
    """One Elman RNN step, ``h' = act(x @ w_ih + h @ w_hh + b)``.

    Parameters
    ----------
    x : array_like, shape (..., I)
    h : array_like, shape (..., H)
    w_ih : array_like, shape (I, H)
    w_hh : array_like, shape (H, H)
    b : array_like, shape (H,), optional
    nonlinearity : {"tanh", "relu"}

    Returns
    -------
    ndarray, float64, shape (..., H)
    """
    x, h = np.asarray(x, dtype=np.float64), np.asarray(h, dtype=np.float64)
    w_ih, w_hh = np.asarray(w_ih, dtype=np.float64), np.asarray(w_hh, dtype=np.float64)
    out = np.empty(h.shape, dtype=np.float64)
    for idx in np.ndindex(h.shape[:-1]):
        for j in range(h.shape[-1]):
            pre = math.fsum(x[idx] * w_ih[:, j]) + math.fsum(h[idx] * w_hh[:, j])
            if b is not None:
                pre += float(b[j])
            out[idx + (j,)] = math.tanh(pre) if nonlinearity == "tanh" else max(pre, 0.0)
    return out


def rnn(xs, h0, w_ih, w_hh, b=None, nonlinearity="tanh"):
    """Elman RNN over a time-major sequence ``xs (T, ..., I)`` from ``h0 (..., H)``.

    Returns
    -------
    hs : ndarray, float64, shape (T, ..., H)
    h_T : ndarray, float64, shape (..., H)
    """
    xs, h = np.asarray(xs, dtype=np.float64), np.asarray(h0, dtype=np.float64)
    hs = []
    for t in range(xs.shape[0]):
        h = rnn_cell(xs[t], h, w_ih, w_hh, b, nonlinearity=nonlinearity)
        hs.append(h)
    return np.array(hs, dtype=np.float64).reshape((len(hs), *h.shape)), h


def lstm_cell(x, state, w_ih, w_hh, b=None):
    """One LSTM step; gates packed **i, f, o, g** along the last axis of the weights.

    With ``z = x @ w_ih + h @ w_hh + b`` and ``H`` the hidden size::

        i = sigmoid(z[0:H]);  f = sigmoid(z[H:2H]);  o = sigmoid(z[2H:3H]);  g = tanh(z[3H:4H])
        c' = f * c + i * g;   h' = o * tanh(c')

    Parameters
    ----------
    x : array_like, shape (..., I)
    state : pair (h, c) of array_like, each (..., H)
    w_ih : array_like, shape (I, 4H)
    w_hh : array_like, shape (H, 4H)
    b : array_like, shape (4H,), optional

    Returns
    -------
    (h_new, c_new) : ndarrays, float64, shape (..., H)
    """
    x = np.asarray(x, dtype=np.float64)
    h, c = (np.asarray(s, dtype=np.float64) for s in state)
    w_ih, w_hh = np.asarray(w_ih, dtype=np.float64), np.asarray(w_hh, dtype=np.float64)
    hidden = h.shape[-1]
    bias = np.zeros(4 * hidden) if b is None else np.asarray(b, dtype=np.float64)
    h_new, c_new = np.empty_like(h), np.empty_like(c)
    for idx in np.ndindex(h.shape[:-1]):
        z = x[idx] @ w_ih + h[idx] @ w_hh + bias  # (4H,)
        i = _sigmoid(z[0:hidden])
        f = _sigmoid(z[hidden : 2 * hidden])
        o = _sigmoid(z[2 * hidden : 3 * hidden])
        g = np.tanh(z[3 * hidden : 4 * hidden])
        c_new[idx] = f * c[idx] + i * g
        h_new[idx] = o * np.tanh(c_new[idx])
    return h_new, c_new


def lstm(xs, state, w_ih, w_hh, b=None):
    """LSTM over a time-major sequence ``xs (T, ..., I)`` from ``state = (h0, c0)``.

    Returns
    -------
    hs : ndarray, float64, shape (T, ..., H)
    (h_T, c_T) : ndarrays, float64, shape (..., H)
    """
    xs = np.asarray(xs, dtype=np.float64)
    h, c = (np.asarray(s, dtype=np.float64) for s in state)
    hs = []
    for t in range(xs.shape[0]):
        h, c = lstm_cell(xs[t], (h, c), w_ih, w_hh, b)
        hs.append(h)
    return np.array(hs, dtype=np.float64).reshape((len(hs), *h.shape)), (h, c)


def gru_cell(x, h, w_ih, w_hh, b_ih=None, b_hh=None):
    """One GRU step (``torch.nn.GRUCell``), one hidden unit at a time; gates **r, z, n**.

    For unit ``j`` of ``H``, with ``a_g = Σ_i x_i w_ih[i, gH + j] + b_ih[gH + j]`` and
    ``c_g = Σ_k h_k w_hh[k, gH + j] + b_hh[gH + j]`` (``g`` = 0, 1, 2 for r, z, n)::

        r = sigmoid(a_0 + c_0);  z = sigmoid(a_1 + c_1);  n = tanh(a_2 + r * c_2)
        h'_j = (1 - z) * n + z * h_j

    Parameters
    ----------
    x : array_like, shape (..., I)
    h : array_like, shape (..., H)
    w_ih : array_like, shape (I, 3H)
    w_hh : array_like, shape (H, 3H)
    b_ih, b_hh : array_like, shape (3H,), optional (zero when None)

    Returns
    -------
    ndarray, float64, shape (..., H)
    """
    x, h = np.asarray(x, dtype=np.float64), np.asarray(h, dtype=np.float64)
    w_ih, w_hh = np.asarray(w_ih, dtype=np.float64), np.asarray(w_hh, dtype=np.float64)
    hidden = h.shape[-1]
    b_i = [0.0] * (3 * hidden) if b_ih is None else [float(v) for v in np.asarray(b_ih, dtype=np.float64)]
    b_h = [0.0] * (3 * hidden) if b_hh is None else [float(v) for v in np.asarray(b_hh, dtype=np.float64)]
    out = np.empty(h.shape, dtype=np.float64)
    for idx in np.ndindex(h.shape[:-1]):
        for j in range(hidden):
            a = [math.fsum(x[idx] * w_ih[:, g * hidden + j]) + b_i[g * hidden + j] for g in range(3)]
            c = [math.fsum(h[idx] * w_hh[:, g * hidden + j]) + b_h[g * hidden + j] for g in range(3)]
            r, z = float(_sigmoid(a[0] + c[0])), float(_sigmoid(a[1] + c[1]))
            n = math.tanh(a[2] + r * c[2])
            out[idx + (j,)] = (1.0 - z) * n + z * float(h[idx + (j,)])
    return out


def gru(xs, h0, w_ih, w_hh, b_ih=None, b_hh=None):
    """GRU over a time-major sequence ``xs (T, ..., I)`` from ``h0 (..., H)``.

    Returns
    -------
    hs : ndarray, float64, shape (T, ..., H)
    h_T : ndarray, float64, shape (..., H)
    """
    xs, h = np.asarray(xs, dtype=np.float64), np.asarray(h0, dtype=np.float64)
    hs = []
    for t in range(xs.shape[0]):
        h = gru_cell(xs[t], h, w_ih, w_hh, b_ih, b_hh)
        hs.append(h)
    return np.array(hs, dtype=np.float64).reshape((len(hs), *h.shape)), h
