"""The recurrent family: ``rnn_cell``, ``rnn``, ``lstm_cell``, ``lstm`` and their converters.

* peers: ``torch.nn.LSTMCell``/``LSTM``/``RNNCell``/``RNN`` through ``seqops.convert`` (both
  directions), flax's ``LSTMCell`` and keras' ``LSTM`` where installed;
* converters: exact round trips on every backend and a hand-built gate layout;
* backprop through time: torch autograd and ``jax.grad`` (float64) against central finite
  differences of the independent float64 reference (``seqops_conformance.references``);
* JAX: ``jit`` runs a real ``lax.scan`` (a 1,000-step LSTM compiles about as fast as a
  10-step one), ``vmap``;
* every backend keeps library, device and dtype and matches the reference; ``T = 0``; bad
  input messages.

Our gate order is **i, f, o, g**; torch packs i, f, g, o and keras i, f, c, o.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
from conftest import assert_kept
from seqops_conformance import references as ref

import seqops
from seqops import convert

T, B, D_IN, H = 5, 2, 3, 4  # steps, batch, input size, hidden size

FD_STEP = 1e-5  # central differences in float64: error ~ step**2 + eps / step ~ 1e-10
N_DIRECTIONS = 3


@pytest.fixture
def rng():
    return np.random.default_rng(1997)


def _lstm_weights(rng, size_in=D_IN, hidden=H, *, scale=0.5):
    """``(w_ih (I, 4H), w_hh (H, 4H), b (4H,))`` in seqops' layout, float64."""
    return (
        rng.standard_normal((size_in, 4 * hidden)) * scale,
        rng.standard_normal((hidden, 4 * hidden)) * scale,
        rng.standard_normal(4 * hidden) * scale,
    )


def _rnn_weights(rng, size_in=D_IN, hidden=H, *, scale=0.5):
    return (
        rng.standard_normal((size_in, hidden)) * scale,
        rng.standard_normal((hidden, hidden)) * scale,
        rng.standard_normal(hidden) * scale,
    )


def _randomize(torch, module, rng):
    """Overwrite every parameter of ``module`` with reproducible draws (biases included)."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.tensor(rng.standard_normal(tuple(p.shape)) * 0.5, dtype=p.dtype))
    return module


def _detached(*tensors):
    return tuple(None if t is None else t.detach() for t in tensors)


_TORCH_TOL = {"float32": {"rtol": 1e-5, "atol": 1e-6}, "float64": {"rtol": 1e-12, "atol": 1e-13}}


# --------------------------------------------------------------------------------------
# peers: torch
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("dtype_name", ["float32", "float64"])
def test_lstm_cell_vs_torch(torch, rng, dtype_name, bias):
    dtype = getattr(torch, dtype_name)
    m = _randomize(torch, torch.nn.LSTMCell(D_IN, H, bias=bias, dtype=dtype), rng)
    w_ih, w_hh, b = convert.lstm_weights_from_torch(
        *_detached(m.weight_ih, m.weight_hh, m.bias_ih, m.bias_hh)
    )
    assert (b is None) == (not bias)
    x, h, c = (torch.tensor(rng.standard_normal(s), dtype=dtype) for s in ((B, D_IN), (B, H), (B, H)))
    with torch.no_grad():
        want_h, want_c = m(x, (h, c))
        got_h, got_c = seqops.lstm_cell(x, (h, c), w_ih, w_hh, b)
    assert isinstance(got_h, torch.Tensor) and got_h.dtype == dtype and got_h.shape == (B, H)
    torch.testing.assert_close(got_h, want_h, **_TORCH_TOL[dtype_name])
    torch.testing.assert_close(got_c, want_c, **_TORCH_TOL[dtype_name])


@pytest.mark.parametrize("dtype_name", ["float32", "float64"])
def test_lstm_vs_torch(torch, rng, dtype_name):
    dtype = getattr(torch, dtype_name)
    m = _randomize(torch, torch.nn.LSTM(D_IN, H, num_layers=1, batch_first=False, dtype=dtype), rng)
    w = convert.lstm_weights_from_torch(
        *_detached(m.weight_ih_l0, m.weight_hh_l0, m.bias_ih_l0, m.bias_hh_l0)
    )
    xs = torch.tensor(rng.standard_normal((T, B, D_IN)), dtype=dtype)
    h0, c0 = (torch.tensor(rng.standard_normal((1, B, H)), dtype=dtype) for _ in range(2))
    with torch.no_grad():
        want, (want_h, want_c) = m(xs, (h0, c0))
        hs, (h_last, c_last) = seqops.lstm(xs, (h0[0], c0[0]), *w)
    assert hs.dtype == dtype and hs.shape == (T, B, H)
    tol = _TORCH_TOL[dtype_name]
    torch.testing.assert_close(hs, want, **tol)
    torch.testing.assert_close(h_last, want_h[0], **tol)
    torch.testing.assert_close(c_last, want_c[0], **tol)
    # and both agree with the float64 reference
    expected, (exp_h, exp_c) = ref.lstm(
        xs.double().numpy(), (h0[0].double(), c0[0].double()), *(a.double() for a in w)
    )
    np.testing.assert_allclose(
        hs.double().numpy(), expected, rtol=max(tol["rtol"], 1e-12), atol=tol["atol"] * 10
    )
    np.testing.assert_allclose(
        c_last.double().numpy(), exp_c, rtol=max(tol["rtol"], 1e-12), atol=tol["atol"] * 10
    )


def test_lstm_weights_to_torch_drive_torch(torch, rng):
    """Our weights, exported with ``lstm_weights_to_torch``, make torch's LSTM compute ours."""
    w = _lstm_weights(rng)
    m = torch.nn.LSTM(D_IN, H, dtype=torch.float64)
    with torch.no_grad():
        for p, a in zip(
            (m.weight_ih_l0, m.weight_hh_l0, m.bias_ih_l0, m.bias_hh_l0),
            convert.lstm_weights_to_torch(*(torch.tensor(a) for a in w)),
            strict=True,
        ):
            p.copy_(a)
    xs = rng.standard_normal((T, B, D_IN))
    h0, c0 = rng.standard_normal((B, H)), rng.standard_normal((B, H))
    with torch.no_grad():
        want, (want_h, want_c) = m(torch.tensor(xs), (torch.tensor(h0)[None], torch.tensor(c0)[None]))
    hs, (h_last, c_last) = seqops.lstm(xs, (h0, c0), *w)
    np.testing.assert_allclose(hs, want.numpy(), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(c_last, want_c[0].numpy(), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("dtype_name", ["float32", "float64"])
def test_rnn_cell_vs_torch(torch, rng, dtype_name, nonlinearity):
    dtype = getattr(torch, dtype_name)
    m = _randomize(torch, torch.nn.RNNCell(D_IN, H, nonlinearity=nonlinearity, dtype=dtype), rng)
    w = convert.rnn_weights_from_torch(*_detached(m.weight_ih, m.weight_hh, m.bias_ih, m.bias_hh))
    x, h = (torch.tensor(rng.standard_normal(s), dtype=dtype) for s in ((B, D_IN), (B, H)))
    with torch.no_grad():
        want = m(x, h)
        got = seqops.rnn_cell(x, h, *w, nonlinearity=nonlinearity)
    assert got.dtype == dtype and got.shape == (B, H)
    torch.testing.assert_close(got, want, **_TORCH_TOL[dtype_name])


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("dtype_name", ["float32", "float64"])
def test_rnn_vs_torch(torch, rng, dtype_name, nonlinearity):
    dtype = getattr(torch, dtype_name)
    m = _randomize(torch, torch.nn.RNN(D_IN, H, nonlinearity=nonlinearity, dtype=dtype), rng)
    w = convert.rnn_weights_from_torch(*_detached(m.weight_ih_l0, m.weight_hh_l0, m.bias_ih_l0, m.bias_hh_l0))
    xs = torch.tensor(rng.standard_normal((T, B, D_IN)), dtype=dtype)
    h0 = torch.tensor(rng.standard_normal((1, B, H)), dtype=dtype)
    with torch.no_grad():
        want, want_h = m(xs, h0)
        hs, h_last = seqops.rnn(xs, h0[0], *w, nonlinearity=nonlinearity)
    torch.testing.assert_close(hs, want, **_TORCH_TOL[dtype_name])
    torch.testing.assert_close(h_last, want_h[0], **_TORCH_TOL[dtype_name])
    expected, _ = ref.rnn(
        xs.double().numpy(), h0[0].double().numpy(), *(a.double() for a in w), nonlinearity=nonlinearity
    )
    np.testing.assert_allclose(hs.double().numpy(), expected, rtol=1e-5, atol=1e-6)


def test_rnn_weights_to_torch_drive_torch(torch, rng):
    w = _rnn_weights(rng)
    m = torch.nn.RNNCell(D_IN, H, dtype=torch.float64)
    with torch.no_grad():
        for p, a in zip(
            (m.weight_ih, m.weight_hh, m.bias_ih, m.bias_hh),
            convert.rnn_weights_to_torch(*(torch.tensor(a) for a in w)),
            strict=True,
        ):
            p.copy_(a)
    x, h = rng.standard_normal((B, D_IN)), rng.standard_normal((B, H))
    with torch.no_grad():
        want = m(torch.tensor(x), torch.tensor(h)).numpy()
    np.testing.assert_allclose(seqops.rnn_cell(x, h, *w), want, rtol=1e-12, atol=1e-13)


# --------------------------------------------------------------------------------------
# peers: flax and keras (only where installed)
# --------------------------------------------------------------------------------------


def test_lstm_cell_vs_flax(jax, rng):
    nn = pytest.importorskip("flax.linen", reason="flax is not installed")
    jnp = jax.numpy
    cell = nn.LSTMCell(features=H, param_dtype=jnp.float64)
    x = jnp.asarray(rng.standard_normal((B, D_IN)))
    h, c = jnp.asarray(rng.standard_normal((B, H))), jnp.asarray(rng.standard_normal((B, H)))
    variables = cell.init(jax.random.key(0), (c, h), x)
    # random biases too (flax initialises them to zero)
    params = jax.tree_util.tree_map(
        lambda a: jnp.asarray(rng.standard_normal(a.shape)) * 0.5, variables["params"]
    )
    (want_c, want_h), _ = cell.apply({"params": params}, (c, h), x)  # flax's carry is (c, h)
    got_h, got_c = seqops.lstm_cell(x, (h, c), *convert.lstm_weights_from_flax(params))
    np.testing.assert_allclose(np.asarray(got_h), np.asarray(want_h), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(np.asarray(got_c), np.asarray(want_c), rtol=1e-12, atol=1e-13)
    # and our weights, exported, drive flax's cell
    w = tuple(jnp.asarray(a) for a in _lstm_weights(rng))
    (want_c, want_h), _ = cell.apply({"params": convert.lstm_weights_to_flax(*w)}, (c, h), x)
    got_h, got_c = seqops.lstm_cell(x, (h, c), *w)
    np.testing.assert_allclose(np.asarray(got_h), np.asarray(want_h), rtol=1e-12, atol=1e-13)


def test_lstm_vs_keras(rng):
    keras = pytest.importorskip("keras")  # the reason names what failed: keras, or its backend
    w = tuple(a.astype(np.float32) for a in _lstm_weights(rng))
    layer = keras.layers.LSTM(H, return_sequences=True, return_state=True)
    xs = rng.standard_normal((B, T, D_IN)).astype(np.float32)  # keras is batch-major
    layer(xs)  # build
    layer.set_weights(list(convert.lstm_weights_to_keras(*w)))
    seq, want_h, want_c = (keras.ops.convert_to_numpy(a) for a in layer(xs))
    h0 = np.zeros((B, H), dtype=np.float32)
    hs, (h_last, c_last) = seqops.lstm(np.swapaxes(xs, 0, 1), (h0, h0), *w)
    np.testing.assert_allclose(np.swapaxes(hs, 0, 1), seq, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(c_last, want_c, rtol=1e-5, atol=1e-5)
    # and back: keras' own weights through lstm_weights_from_keras
    back = convert.lstm_weights_from_keras(*layer.get_weights())
    for got, want in zip(back, w, strict=True):
        np.testing.assert_array_equal(got, want)


# --------------------------------------------------------------------------------------
# converters: exact round trips and the gate layout
# --------------------------------------------------------------------------------------


def _on(backend, *arrays):
    dtype = backend.floating_dtypes()["float32"]
    return tuple(backend.from_numpy(np.asarray(a), dtype=dtype) for a in arrays)


def _equal(backend, got, want):
    assert backend.owns(got)
    np.testing.assert_array_equal(backend.to_numpy(got), backend.to_numpy(want))


def test_converter_round_trips_are_exact(backend, rng):
    """ours -> torch/keras/flax -> ours returns the very same arrays, on every backend."""
    w_ih, w_hh, b = _on(backend, *_lstm_weights(rng))
    for there, back in (
        (convert.lstm_weights_to_torch, convert.lstm_weights_from_torch),
        (convert.lstm_weights_to_keras, convert.lstm_weights_from_keras),
    ):
        for got, want in zip(back(*there(w_ih, w_hh, b)), (w_ih, w_hh, b), strict=True):
            _equal(backend, got, want)
    for got, want in zip(
        convert.lstm_weights_from_flax(convert.lstm_weights_to_flax(w_ih, w_hh, b)),
        (w_ih, w_hh, b),
        strict=True,
    ):
        _equal(backend, got, want)
    r_ih, r_hh, r_b = _on(backend, *_rnn_weights(rng))
    for got, want in zip(
        convert.rnn_weights_from_torch(*convert.rnn_weights_to_torch(r_ih, r_hh, r_b)),
        (r_ih, r_hh, r_b),
        strict=True,
    ):
        _equal(backend, got, want)
    # without a bias
    assert convert.lstm_weights_to_torch(w_ih, w_hh)[2:] == (None, None)
    assert convert.lstm_weights_from_torch(*convert.lstm_weights_to_torch(w_ih, w_hh))[2] is None
    assert convert.rnn_weights_from_torch(*convert.rnn_weights_to_torch(r_ih, r_hh))[2] is None


def test_converter_round_trips_from_the_framework_side(rng):
    """framework layout -> ours -> framework layout is exact (torch: the bias sum is kept)."""
    weight_ih, weight_hh = rng.standard_normal((4 * H, D_IN)), rng.standard_normal((4 * H, H))
    bias_ih, bias_hh = rng.standard_normal(4 * H), rng.standard_normal(4 * H)
    back = convert.lstm_weights_to_torch(
        *convert.lstm_weights_from_torch(weight_ih, weight_hh, bias_ih, bias_hh)
    )
    np.testing.assert_array_equal(back[0], weight_ih)
    np.testing.assert_array_equal(back[1], weight_hh)
    np.testing.assert_array_equal(back[2] + back[3], bias_ih + bias_hh)
    np.testing.assert_array_equal(back[3], 0.0)

    keras = (rng.standard_normal((D_IN, 4 * H)), rng.standard_normal((H, 4 * H)), rng.standard_normal(4 * H))
    for got, want in zip(
        convert.lstm_weights_to_keras(*convert.lstm_weights_from_keras(*keras)), keras, strict=True
    ):
        np.testing.assert_array_equal(got, want)

    flax = {f"i{g}": {"kernel": rng.standard_normal((D_IN, H))} for g in "ifgo"}
    flax |= {f"h{g}": {"kernel": rng.standard_normal((H, H)), "bias": rng.standard_normal(H)} for g in "ifgo"}
    back_flax = convert.lstm_weights_to_flax(*convert.lstm_weights_from_flax({"params": flax}))
    assert sorted(back_flax) == sorted(flax)
    for name, leaves in flax.items():
        assert sorted(back_flax[name]) == sorted(leaves)
        for leaf, value in leaves.items():
            np.testing.assert_array_equal(back_flax[name][leaf], value)

    rnn = (rng.standard_normal((H, D_IN)), rng.standard_normal((H, H)), rng.standard_normal(H), None)
    back_rnn = convert.rnn_weights_to_torch(*convert.rnn_weights_from_torch(*rnn))
    np.testing.assert_array_equal(back_rnn[0], rnn[0])
    np.testing.assert_array_equal(back_rnn[2], rnn[2])


def _blocks(w, n=4):
    """The gate id held by each of the ``n`` blocks of the last axis (blocks are constant)."""
    width = w.shape[-1] // n
    return [float(np.unique(w[..., k * width : (k + 1) * width]).item()) for k in range(n)]


def test_converters_move_gate_blocks_by_hand():
    """Fill each framework gate block with its gate's id; ours must read i, f, o, g."""
    gate_id = {"i": 0.0, "f": 1.0, "g": 2.0, "o": 3.0}
    ours = [gate_id[g] for g in "ifog"]

    def packed(order, shape_of_block, axis):
        return np.concatenate([np.full(shape_of_block, gate_id[g]) for g in order], axis=axis)

    # torch: rows i, f, g, o
    w_ih, w_hh, b = convert.lstm_weights_from_torch(
        packed("ifgo", (H, D_IN), 0), packed("ifgo", (H, H), 0), packed("ifgo", (H,), 0), np.zeros(4 * H)
    )
    assert _blocks(w_ih) == _blocks(w_hh) == _blocks(b) == ours
    assert w_ih.shape == (D_IN, 4 * H) and w_hh.shape == (H, 4 * H)
    # keras: columns i, f, c, o (c is our g)
    w_ih, w_hh, b = convert.lstm_weights_from_keras(
        packed("ifgo", (D_IN, H), 1), packed("ifgo", (H, H), 1), packed("ifgo", (H,), 0)
    )
    assert _blocks(w_ih) == _blocks(w_hh) == _blocks(b) == ours
    # flax: one Dense per gate
    flax = {f"i{g}": {"kernel": np.full((D_IN, H), v)} for g, v in gate_id.items()}
    flax |= {f"h{g}": {"kernel": np.full((H, H), v), "bias": np.full(H, v)} for g, v in gate_id.items()}
    w_ih, w_hh, b = convert.lstm_weights_from_flax(flax)
    assert _blocks(w_ih) == _blocks(w_hh) == _blocks(b) == ours
    # and the way back
    assert _blocks(convert.lstm_weights_to_torch(w_ih, w_hh, b)[0].T) == [0.0, 1.0, 2.0, 3.0]
    assert _blocks(convert.lstm_weights_to_keras(w_ih, w_hh, b)[0]) == [0.0, 1.0, 2.0, 3.0]
    to_flax = convert.lstm_weights_to_flax(w_ih, w_hh, b)
    assert {name: float(np.unique(p["kernel"]).item()) for name, p in to_flax.items()} == {
        f"{side}{g}": v for side in "ih" for g, v in gate_id.items()
    }


def test_converter_bad_shapes():
    with pytest.raises(ValueError, match=re.escape("weight_hh must have shape (4H, H); got (15, 4)")):
        convert.lstm_weights_from_torch(np.zeros((16, 3)), np.zeros((15, 4)))
    with pytest.raises(
        ValueError, match=re.escape("weight_ih must have shape (4H, I) = (16, 3); got (12, 3)")
    ):
        convert.lstm_weights_from_torch(np.zeros((12, 3)), np.zeros((16, 4)))
    with pytest.raises(ValueError, match=re.escape("bias_hh must have shape (4H,) = (16,); got (12,)")):
        convert.lstm_weights_from_torch(np.zeros((16, 3)), np.zeros((16, 4)), None, np.zeros(12))
    with pytest.raises(ValueError, match=re.escape("w_ih must have shape (I, 4H) = (3, 16); got (3, 12)")):
        convert.lstm_weights_to_keras(np.zeros((3, 12)), np.zeros((4, 16)))
    with pytest.raises(ValueError, match=re.escape("weight_hh must have shape (H, H); got (4, 5)")):
        convert.rnn_weights_from_torch(np.zeros((4, 3)), np.zeros((4, 5)))
    with pytest.raises(KeyError, match="lack"):
        convert.lstm_weights_from_flax({"ii": {"kernel": np.zeros((3, 4))}})


# --------------------------------------------------------------------------------------
# math: reference, layouts, consistency
# --------------------------------------------------------------------------------------


def test_sequences_equal_a_loop_of_cells(rng):
    xs = rng.standard_normal((T, B, D_IN))
    h0, c0 = rng.standard_normal((B, H)), rng.standard_normal((B, H))
    w = _lstm_weights(rng)
    hs, (h_last, c_last) = seqops.lstm(xs, (h0, c0), *w)
    h, c = h0, c0
    for t in range(T):
        h, c = seqops.lstm_cell(xs[t], (h, c), *w)
        np.testing.assert_allclose(hs[t], h, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(c_last, c, rtol=1e-13, atol=1e-14)
    r = _rnn_weights(rng)
    hs, h_last = seqops.rnn(xs, h0, *r, nonlinearity="relu")
    h = h0
    for t in range(T):
        h = seqops.rnn_cell(xs[t], h, *r, nonlinearity="relu")
        np.testing.assert_allclose(hs[t], h, rtol=1e-13, atol=1e-14)
    np.testing.assert_array_equal(h_last, hs[-1])


@pytest.mark.parametrize("batch", [(), (B,), (2, 3)], ids=["unbatched", "batch", "two_batch_dims"])
def test_any_leading_batch_dims_vs_reference(rng, batch):
    xs = rng.standard_normal((T, *batch, D_IN))
    h0, c0 = rng.standard_normal((*batch, H)), rng.standard_normal((*batch, H))
    w = _lstm_weights(rng)
    hs, (h_last, c_last) = seqops.lstm(xs, (h0, c0), *w)
    expected, (exp_h, exp_c) = ref.lstm(xs, (h0, c0), *w)
    assert hs.shape == (T, *batch, H)
    np.testing.assert_allclose(hs, expected, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(c_last, exp_c, rtol=1e-12, atol=1e-13)
    r = _rnn_weights(rng)
    hs, h_last = seqops.rnn(xs, h0, *r)
    np.testing.assert_allclose(hs, ref.rnn(xs, h0, *r)[0], rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(
        seqops.rnn_cell(xs[0], h0, *r, nonlinearity="relu"),
        ref.rnn_cell(xs[0], h0, *r, nonlinearity="relu"),
        rtol=1e-12,
        atol=1e-13,
    )


def test_saturated_gates_do_not_overflow(rng):
    """Huge pre-activations: no overflow warning, outputs finite and saturated like the reference."""
    xs = rng.standard_normal((T, B, D_IN)) * 1e4
    h0 = np.zeros((B, H))
    w = _lstm_weights(rng)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for dtype in (np.float64, np.float32, np.float16):
            cast = [a.astype(dtype) for a in (xs, h0, *w)]
            hs, (h_last, c_last) = seqops.lstm(cast[0], (cast[1], cast[1]), *cast[2:])
            assert hs.dtype == dtype and np.isfinite(hs).all() and np.isfinite(c_last).all()
        hs, (h_last, c_last) = seqops.lstm(xs, (h0, h0), *w)
    expected, (_, exp_c) = ref.lstm(xs, (h0, h0), *w)
    np.testing.assert_allclose(hs, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(c_last, exp_c, rtol=1e-12, atol=1e-12)
    # the gate sigmoid (tanh form) is within a few ulps of 1 absolutely, everywhere, with no
    # overflow; deep in the lower tail it rounds to 0 (a gate that no state update can tell)
    from seqops._agnostic.recurrent import sigmoid

    z = np.array([-745.0, -700.0, -40.0, -1.0, 0.0, 1.0, 40.0, 700.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = sigmoid(np, z)
    exact = np.array([math.exp(v) / (1.0 + math.exp(v)) if v < 0 else 1.0 / (1.0 + math.exp(-v)) for v in z])
    np.testing.assert_allclose(s, exact, rtol=0, atol=4 * np.finfo(np.float64).eps)
    assert s[4] == 0.5 and np.all(np.diff(s) >= 0)


# --------------------------------------------------------------------------------------
# backprop through time: torch autograd and jax.grad vs finite differences of the reference
# --------------------------------------------------------------------------------------


def _bptt_case(rng, kind):
    point = (
        rng.standard_normal((T, B, D_IN)),
        rng.standard_normal((B, H)),
        *(() if kind == "rnn" else (rng.standard_normal((B, H)),)),
        *(_rnn_weights(rng) if kind == "rnn" else _lstm_weights(rng)),
    )
    weights = (rng.standard_normal((T, B, H)), rng.standard_normal((B, H)))
    return point, weights


def _bptt_loss(kind, point, weights, *, lstm, rnn, total):
    """``sum(hs * W) + sum(last * V)``; ``last`` is c_T (LSTM) or h_T (RNN)."""
    if kind == "rnn":
        xs, h0, *w = point
        hs, last = rnn(xs, h0, *w)
    else:
        xs, h0, c0, *w = point
        hs, (_, last) = lstm(xs, (h0, c0), *w)
    return total(hs * weights[0]) + total(last * weights[1])


def _reference_loss(kind, weights):
    def loss(point):
        return float(_bptt_loss(kind, point, weights, lstm=ref.lstm, rnn=ref.rnn, total=np.sum))

    return loss


def _check_directional_derivatives(rng, grads, point, loss_np):
    """``<grad, d>`` equals the central difference of the reference loss along random ``d``."""
    for _ in range(N_DIRECTIONS):
        direction = [rng.standard_normal(np.shape(p)) for p in point]
        analytic = sum(float(np.sum(g * d)) for g, d in zip(grads, direction, strict=True))
        plus = [p + FD_STEP * d for p, d in zip(point, direction, strict=True)]
        minus = [p - FD_STEP * d for p, d in zip(point, direction, strict=True)]
        numeric = (loss_np(plus) - loss_np(minus)) / (2 * FD_STEP)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("kind", ["lstm", "rnn"])
def test_torch_bptt_vs_reference_fd(torch, rng, kind):
    point, weights = _bptt_case(rng, kind)
    leaves = [torch.tensor(p, requires_grad=True) for p in point]
    loss = _bptt_loss(
        kind, leaves, [torch.tensor(w) for w in weights], lstm=seqops.lstm, rnn=seqops.rnn, total=torch.sum
    )
    grads = [g.numpy() for g in torch.autograd.grad(loss, leaves)]
    _check_directional_derivatives(rng, grads, point, _reference_loss(kind, weights))


@pytest.mark.parametrize("kind", ["lstm", "rnn"])
def test_jax_bptt_vs_reference_fd(jax, rng, kind):
    jnp = jax.numpy
    point, weights = _bptt_case(rng, kind)
    wj = [jnp.asarray(w) for w in weights]

    def loss(p):
        return _bptt_loss(kind, p, wj, lstm=seqops.lstm, rnn=seqops.rnn, total=jnp.sum)

    grads = jax.jit(jax.grad(loss))([jnp.asarray(p) for p in point])
    grads = [np.asarray(g, dtype=np.float64) for g in grads]
    _check_directional_derivatives(rng, grads, point, _reference_loss(kind, weights))


# --------------------------------------------------------------------------------------
# JAX: a real scan under jit
# --------------------------------------------------------------------------------------


def _jax_lstm_loss(jax, rng):
    jnp = jax.numpy
    w = [jnp.asarray(a, dtype=jnp.float32) for a in _lstm_weights(rng)]
    zeros = jnp.zeros((B, H), dtype=jnp.float32)

    def f(xs):
        hs, (_, c_last) = seqops.lstm(xs, (zeros, zeros), *w)
        return jnp.sum(hs) + jnp.sum(c_last)

    return f


def test_jax_jit_compiles_a_scan_not_an_unrolled_loop(jax, rng):
    """A 1,000-step LSTM compiles in about the time of a 10-step one, from one scan."""
    jnp = jax.numpy
    f = _jax_lstm_loss(jax, rng)

    def xs(steps):
        return jnp.zeros((steps, B, D_IN), dtype=jnp.float32)

    def compile_seconds(steps):
        start = time.perf_counter()
        jax.jit(f).lower(xs(steps)).compile()
        return time.perf_counter() - start

    compile_seconds(3)  # warm JAX's own caches (first lowering of anything is slower)
    # distinct lengths, so no compilation cache answers; best of two each
    short = min(compile_seconds(10), compile_seconds(11))
    long = min(compile_seconds(1000), compile_seconds(1001))
    ratio = long / short
    print(f"jit compile: 10 steps {short:.3f} s, 1000 steps {long:.3f} s, ratio {ratio:.2f}")
    assert ratio < 5, f"1000-step compile {long:.3f} s vs 10-step {short:.3f} s"

    short_jaxpr, long_jaxpr = (jax.make_jaxpr(f)(xs(n)) for n in (10, 1000))
    assert "scan" in {eqn.primitive.name for eqn in long_jaxpr.jaxpr.eqns}
    assert len(long_jaxpr.jaxpr.eqns) == len(short_jaxpr.jaxpr.eqns)


def test_jax_jit_and_vmap_match_eager(jax, rng):
    jnp = jax.numpy
    xs = jnp.asarray(rng.standard_normal((T, B, D_IN)))
    h0, c0 = jnp.asarray(rng.standard_normal((B, H))), jnp.asarray(rng.standard_normal((B, H)))
    w = [jnp.asarray(a) for a in _lstm_weights(rng)]

    def run(xs, h0, c0):
        return seqops.lstm(xs, (h0, c0), *w)

    eager = run(xs, h0, c0)
    jitted = jax.jit(run)(xs, h0, c0)
    mapped = jax.vmap(run, in_axes=(1, 0, 0), out_axes=(1, 0))(xs, h0, c0)  # one sequence per call
    for got in (jitted, mapped):
        for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(eager), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-13)


# --------------------------------------------------------------------------------------
# every backend: library, device and dtype kept; the reference matched; T = 0
# --------------------------------------------------------------------------------------

# Half types: inputs are rounded, then compared to the float64 reference on the originals.
_TOLERANCE = {"float64": 1e-12, "float32": 2e-5, "float16": 2e-2, "bfloat16": 1e-1}


@pytest.mark.parametrize("dtype_name", ["float16", "bfloat16", "float32", "float64"])
def test_every_backend_keeps_library_device_dtype(backend, rng, dtype_name):
    dtypes = backend.floating_dtypes()
    if dtype_name not in dtypes:
        pytest.skip(f"backend {backend.name!r} has no {dtype_name}")
    dtype, tol = dtypes[dtype_name], _TOLERANCE[dtype_name]

    def arr(a):
        return backend.from_numpy(np.asarray(a), dtype=dtype)

    def close(out, expected):
        np.testing.assert_allclose(backend.to_numpy(out).astype(np.float64), expected, rtol=tol, atol=tol)

    xs_np, h_np, c_np = (
        rng.standard_normal((T, B, D_IN)),
        rng.standard_normal((B, H)),
        rng.standard_normal((B, H)),
    )
    lw, rw = _lstm_weights(rng), _rnn_weights(rng)
    xs, h, c = arr(xs_np), arr(h_np), arr(c_np)

    hs, (h_last, c_last) = seqops.lstm(xs, (h, c), *map(arr, lw))
    expected, (exp_h, exp_c) = ref.lstm(xs_np, (h_np, c_np), *lw)
    for out in (hs, h_last, c_last):
        assert_kept(backend, out, xs, dtype)
    close(hs, expected)
    close(h_last, exp_h)
    close(c_last, exp_c)

    out = seqops.lstm_cell(xs[0, ...], (h, c), *map(arr, lw))
    for got, want in zip(out, ref.lstm_cell(xs_np[0], (h_np, c_np), *lw), strict=True):
        assert_kept(backend, got, xs, dtype)
        close(got, want)

    for nonlinearity in ("tanh", "relu"):
        hs, h_last = seqops.rnn(xs, h, *map(arr, rw), nonlinearity=nonlinearity)
        assert_kept(backend, hs, xs, dtype)
        assert_kept(backend, h_last, xs, dtype)
        close(hs, ref.rnn(xs_np, h_np, *rw, nonlinearity=nonlinearity)[0])
        out = seqops.rnn_cell(xs[0, ...], h, *map(arr, rw[:2]), nonlinearity=nonlinearity)  # no bias
        assert_kept(backend, out, xs, dtype)
        close(out, ref.rnn_cell(xs_np[0], h_np, *rw[:2], nonlinearity=nonlinearity))


def test_empty_sequence_returns_the_initial_state(backend, rng):
    dtype = backend.floating_dtypes()["float32"]

    def arr(a):
        return backend.from_numpy(np.asarray(a), dtype=dtype)

    xs = arr(np.zeros((0, B, D_IN)))
    h, c = arr(rng.standard_normal((B, H))), arr(rng.standard_normal((B, H)))
    hs, (h_last, c_last) = seqops.lstm(xs, (h, c), *map(arr, _lstm_weights(rng)))
    assert tuple(hs.shape) == (0, B, H)
    assert_kept(backend, hs, xs, dtype)
    _equal(backend, h_last, h)
    _equal(backend, c_last, c)
    hs, h_last = seqops.rnn(xs, h, *map(arr, _rnn_weights(rng)))
    assert tuple(hs.shape) == (0, B, H)
    assert_kept(backend, hs, xs, dtype)
    _equal(backend, h_last, h)


def test_explain_names_the_portable_implementation(rng):
    xs, h = np.zeros((T, B, D_IN)), np.zeros((B, H))
    explanation = seqops.explain(seqops.lstm, xs, (h, h), *_lstm_weights(rng))
    assert explanation.op == "lstm" and explanation.chosen == "portable"


# --------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------


def _z(*shape, dtype=np.float32):
    return np.zeros(shape, dtype=dtype)


BAD_INPUTS = [
    (
        "lstm_w_ih",
        lambda: seqops.lstm_cell(_z(2, 8), (_z(2, 16), _z(2, 16)), _z(8, 60), _z(16, 64)),
        ValueError,
        "`w_ih` must have shape (I, 4H) = (8, 64); got (8, 60)",
    ),
    (
        "lstm_w_hh",
        lambda: seqops.lstm(_z(5, 2, 8), (_z(2, 16), _z(2, 16)), _z(8, 64), _z(64, 16)),
        ValueError,
        "`w_hh` must have shape (H, 4H) = (16, 64); got (64, 16)",
    ),
    (
        "lstm_b",
        lambda: seqops.lstm_cell(_z(2, 8), (_z(2, 16), _z(2, 16)), _z(8, 64), _z(16, 64), _z(16)),
        ValueError,
        "`b` must have shape (4H,) = (64,); got (16,)",
    ),
    (
        "rnn_w_ih",
        lambda: seqops.rnn_cell(_z(2, 8), _z(2, 16), _z(16, 8), _z(16, 16)),
        ValueError,
        "`w_ih` must have shape (I, H) = (8, 16); got (16, 8)",
    ),
    (
        "lstm_cell_batch",
        lambda: seqops.lstm_cell(_z(2, 8), (_z(3, 16), _z(3, 16)), _z(8, 64), _z(16, 64)),
        ValueError,
        "`h` of shape (3, 16) does not match x's batch (2,)",
    ),
    (
        "lstm_batch",
        lambda: seqops.lstm(_z(5, 2, 8), (_z(3, 16), _z(3, 16)), _z(8, 64), _z(16, 64)),
        ValueError,
        "`h0` of shape (3, 16) does not match xs's batch (2,)",
    ),
    (
        "rnn_batch",
        lambda: seqops.rnn(_z(5, 2, 8), _z(16), _z(8, 16), _z(16, 16)),
        ValueError,
        "`h0` of shape (16,) does not match xs's batch (2,)",
    ),
    (
        "c_shape",
        lambda: seqops.lstm_cell(_z(2, 8), (_z(2, 16), _z(2, 8)), _z(8, 64), _z(16, 64)),
        ValueError,
        "`c` of shape (2, 8) must have the shape of `h` (2, 16)",
    ),
    (
        "xs_ndim",
        lambda: seqops.rnn(_z(8), _z(16), _z(8, 16), _z(16, 16)),
        ValueError,
        "`xs` must have at least 2 dimensions (T, ..., I); got shape (8,)",
    ),
    (
        "dtype",
        lambda: seqops.lstm(_z(5, 2, 8), (_z(2, 16), _z(2, 16)), _z(8, 64, dtype=np.float64), _z(16, 64)),
        TypeError,
        "must share one dtype; got xs float32, h0 float32, c0 float32, w_ih float64, w_hh float32",
    ),
    (
        "integer",
        lambda: seqops.rnn(np.zeros((5, 2, 8), dtype=np.int64), _z(2, 16), _z(8, 16), _z(16, 16)),
        TypeError,
        "`xs` must be a real floating array; got dtype int64",
    ),
    (
        "nonlinearity",
        lambda: seqops.rnn_cell(_z(2, 8), _z(2, 16), _z(8, 16), _z(16, 16), nonlinearity="sigmoid"),
        ValueError,
        "`nonlinearity` must be one of 'tanh', 'relu'; got 'sigmoid'",
    ),
    (
        "state",
        lambda: seqops.lstm(_z(5, 2, 8), _z(2, 16), _z(8, 64), _z(16, 64)),
        TypeError,
        "`state` must be a pair (h0, c0) of arrays; got ndarray",
    ),
]


@pytest.mark.parametrize("call,error,message", [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_messages(call, error, message):
    with pytest.raises(error, match=re.escape(message)):
        call()


def test_mixed_libraries_are_refused(torch):
    with pytest.raises(TypeError, match="different libraries"):
        seqops.rnn_cell(torch.zeros(2, 8), _z(2, 16), _z(8, 16), _z(16, 16))


def test_torch_compile_of_portable_lstm_from_a_cold_cache(torch, tmp_path):
    """`torch.compile(fullgraph=True)` of the portable lstm when its implementation cache is
    filled during tracing (fresh process, fast path disabled)."""
    script = tmp_path / "cold_lstm.py"
    script.write_text(
        "import torch, seqops\n"
        "def f(xs, h, w_ih, w_hh):\n"
        "    return seqops.lstm(xs, (h, h), w_ih, w_hh)[0]\n"
        "xs, h = torch.randn(5, 2, 3), torch.zeros(2, 4)\n"
        "w_ih, w_hh = torch.randn(3, 16), torch.randn(4, 16)\n"
        "out = torch.compile(f, fullgraph=True, backend='aot_eager')(xs, h, w_ih, w_hh)\n"
        "assert seqops.explain(seqops.lstm, xs, (h, h), w_ih, w_hh).chosen == 'portable'\n"
        "torch.testing.assert_close(out, f(xs, h, w_ih, w_hh))\n"
        "print('OK')\n"
    )
    env = dict(os.environ, SEQOPS_DISABLE_PLUGINS="torch-fast", PYTHONWARNINGS="ignore")
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]
