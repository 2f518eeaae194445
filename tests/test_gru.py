"""The GRU: ``gru_cell``, ``gru``, their converters and the ``torch-gru`` fast path.

* peers: ``torch.nn.GRUCell``/``GRU`` (float32 and float64, with and without biases, batch
  shapes ``(B,)``, ``()`` and ``(2, 3)``) through ``seqops.convert`` both ways, with the
  ``torch-gru`` fast path and without it; flax's ``GRUCell`` and keras' ``GRU`` where
  installed, else hand-written transcriptions of their formulas (below);
* gradients: torch autograd of ``torch.nn.GRU`` against ours (fast and portable), and
  torch / ``jax.grad`` against central finite differences of the float64 reference;
* JAX: ``jit`` runs one ``lax.scan`` and eager calls reuse one module-level step;
* every backend keeps library, device and dtype (half precision carries float32);
  ``T = 0``; bad input messages.

Our gate order is torch's, **r, z, n**; keras packs z, r, h with a ``(2, 3H)`` bias.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from conftest import assert_kept
from seqops_conformance import references as ref

import seqops
from seqops import convert

T, B, D_IN, H = 5, 2, 3, 4  # steps, batch, input size, hidden size
BATCHES = [(B,), (), (2, 3)]
FD_STEP = 1e-5
_TORCH_TOL = {"float32": {"rtol": 1e-5, "atol": 1e-6}, "float64": {"rtol": 1e-12, "atol": 1e-13}}


@pytest.fixture
def rng():
    return np.random.default_rng(2014)


def _weights(rng, size_in=D_IN, hidden=H, *, scale=0.5):
    """``(w_ih (I, 3H), w_hh (H, 3H), b_ih (3H,), b_hh (3H,))`` in seqops' layout, float64."""
    return (
        rng.standard_normal((size_in, 3 * hidden)) * scale,
        rng.standard_normal((hidden, 3 * hidden)) * scale,
        rng.standard_normal(3 * hidden) * scale,
        rng.standard_normal(3 * hidden) * scale,
    )


def _randomize(torch, module, rng):
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.tensor(rng.standard_normal(tuple(p.shape)) * 0.5, dtype=p.dtype))
    return module


def _detached(*tensors):
    return tuple(None if t is None else t.detach() for t in tensors)


@pytest.fixture
def torch_fast(torch):
    if seqops.registry.pm.get_plugin("torch-fast") is None:
        pytest.skip("plugin 'torch-fast' is not loaded")
    return torch


class _Portable:
    """``with _Portable():`` runs the block with the torch-fast plugin unregistered."""

    def __enter__(self) -> None:
        self.plugin = seqops.registry.pm.get_plugin("torch-fast")
        if self.plugin is not None:
            seqops.unregister_plugin("torch-fast")

    def __exit__(self, *exc: object) -> None:
        if self.plugin is not None:
            seqops.register_plugin(self.plugin, name="torch-fast")


# --------------------------------------------------------------------------------------
# peers: torch.nn.GRUCell and torch.nn.GRU
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch", BATCHES, ids=str)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("dtype_name", ["float32", "float64"])
def test_gru_cell_vs_torch(torch, rng, dtype_name, bias, batch):
    dtype = getattr(torch, dtype_name)
    m = _randomize(torch, torch.nn.GRUCell(D_IN, H, bias=bias, dtype=dtype), rng)
    w = convert.gru_weights_from_torch(*_detached(m.weight_ih, m.weight_hh, m.bias_ih, m.bias_hh))
    assert (w[2] is None) == (w[3] is None) == (not bias)
    x = torch.tensor(rng.standard_normal((*batch, D_IN)), dtype=dtype)
    h = torch.tensor(rng.standard_normal((*batch, H)), dtype=dtype)
    with torch.no_grad():
        flat = len(batch) > 1  # GRUCell takes (B, I) or (I,)
        want = m(x.reshape(-1, D_IN), h.reshape(-1, H)).reshape(*batch, H) if flat else m(x, h)
        got = seqops.gru_cell(x, h, *w)
    assert isinstance(got, torch.Tensor) and got.dtype == dtype and got.shape == (*batch, H)
    torch.testing.assert_close(got, want, **_TORCH_TOL[dtype_name])


def _torch_gru_run(torch, m, xs, h0, batch):
    """``torch.nn.GRU`` on our time-major ``xs (T, ..., I)`` and ``h0 (..., H)``."""
    if len(batch) == 0:  # unbatched: (T, I), h0 (1, H)
        out, h_last = m(xs, h0[None])
        return out, h_last[0]
    size = int(np.prod(batch))
    out, h_last = m(xs.reshape(xs.shape[0], size, D_IN), h0.reshape(1, size, H))
    return out.reshape(xs.shape[0], *batch, H), h_last[0].reshape(*batch, H)


@pytest.mark.parametrize("implementation", ["torch-gru", "portable"])
@pytest.mark.parametrize("batch", BATCHES, ids=str)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("dtype_name", ["float32", "float64"])
def test_gru_vs_torch(torch_fast, rng, dtype_name, bias, batch, implementation):
    torch = torch_fast
    dtype = getattr(torch, dtype_name)
    m = _randomize(torch, torch.nn.GRU(D_IN, H, bias=bias, dtype=dtype), rng)
    w = convert.gru_weights_from_torch(
        *_detached(m.weight_ih_l0, m.weight_hh_l0, *((m.bias_ih_l0, m.bias_hh_l0) if bias else (None, None)))
    )
    xs = torch.tensor(rng.standard_normal((T, *batch, D_IN)), dtype=dtype)
    h0 = torch.tensor(rng.standard_normal((*batch, H)), dtype=dtype)
    with torch.no_grad():
        want, want_h = _torch_gru_run(torch, m, xs, h0, batch)
        if implementation == "portable":
            with _Portable():
                assert seqops.explain(seqops.gru, xs, h0, *w).chosen == "portable"
                hs, h_last = seqops.gru(xs, h0, *w)
        else:
            assert seqops.explain(seqops.gru, xs, h0, *w).chosen == "torch-gru"
            hs, h_last = seqops.gru(xs, h0, *w)
    assert hs.dtype == dtype and hs.shape == (T, *batch, H) and h_last.shape == (*batch, H)
    torch.testing.assert_close(hs, want, **_TORCH_TOL[dtype_name])
    torch.testing.assert_close(h_last, want_h, **_TORCH_TOL[dtype_name])
    expected, exp_h = ref.gru(
        xs.double().numpy(), h0.double().numpy(), *(None if a is None else a.double() for a in w)
    )
    np.testing.assert_allclose(hs.double().numpy(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h_last.double().numpy(), exp_h, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("given", ["both", "b_ih", "b_hh"])
def test_gru_weights_to_torch_drive_torch(torch_fast, rng, given):
    """Our weights, exported with ``gru_weights_to_torch``, make torch's GRU compute ours;
    a single bias becomes a zero partner (torch has both or neither)."""
    torch = torch_fast
    w_ih, w_hh, b_ih, b_hh = _weights(rng)
    b_ih, b_hh = (b_ih if given != "b_hh" else None), (b_hh if given != "b_ih" else None)
    m = torch.nn.GRU(D_IN, H, dtype=torch.float64)
    exported = convert.gru_weights_to_torch(
        *(None if a is None else torch.tensor(a) for a in (w_ih, w_hh, b_ih, b_hh))
    )
    with torch.no_grad():
        for p, a in zip((m.weight_ih_l0, m.weight_hh_l0, m.bias_ih_l0, m.bias_hh_l0), exported, strict=True):
            p.copy_(a)
        xs, h0 = rng.standard_normal((T, B, D_IN)), rng.standard_normal((B, H))
        want, want_h = m(torch.tensor(xs), torch.tensor(h0)[None])
        for run in ("fast", "portable"):
            txs, th0 = torch.tensor(xs), torch.tensor(h0)
            tw = [None if a is None else torch.tensor(a) for a in (w_ih, w_hh, b_ih, b_hh)]
            if run == "portable":
                with _Portable():
                    hs, h_last = seqops.gru(txs, th0, *tw)
            else:
                hs, h_last = seqops.gru(txs, th0, *tw)
            np.testing.assert_allclose(hs.numpy(), want.numpy(), rtol=1e-12, atol=1e-13)
            np.testing.assert_allclose(h_last.numpy(), want_h[0].numpy(), rtol=1e-12, atol=1e-13)
    hs, _ = seqops.gru(xs, h0, w_ih, w_hh, b_ih, b_hh)  # and NumPy
    np.testing.assert_allclose(hs, want.numpy(), rtol=1e-12, atol=1e-13)


# --------------------------------------------------------------------------------------
# gradients
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("implementation", ["torch-gru", "portable"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
def test_gradients_vs_torch_autograd(torch_fast, rng, bias, implementation):
    """d(loss)/d(every input) of ours equals autograd through ``torch.nn.GRU``."""
    torch = torch_fast
    m = _randomize(torch, torch.nn.GRU(D_IN, H, bias=bias, dtype=torch.float64), rng)
    xs = torch.tensor(rng.standard_normal((T, B, D_IN)), requires_grad=True)
    h0 = torch.tensor(rng.standard_normal((B, H)), requires_grad=True)
    weights = torch.tensor(rng.standard_normal((T, B, H))), torch.tensor(rng.standard_normal((B, H)))
    out, h_last = m(xs, h0[None])
    theirs = torch.autograd.grad(
        (out * weights[0]).sum() + (h_last[0] * weights[1]).sum(), [xs, h0, *m.parameters()]
    )

    torch_params = [m.weight_ih_l0, m.weight_hh_l0, *((m.bias_ih_l0, m.bias_hh_l0) if bias else ())]
    leaves = [p.detach().clone().requires_grad_() for p in torch_params]
    ours_w = convert.gru_weights_from_torch(*leaves, *(() if bias else (None, None)))  # differentiable
    x2, h2 = xs.detach().clone().requires_grad_(), h0.detach().clone().requires_grad_()
    if implementation == "portable":
        with _Portable():
            hs, h_t = seqops.gru(x2, h2, *ours_w)
    else:
        assert seqops.explain(seqops.gru, x2, h2, *ours_w).chosen == "torch-gru"
        hs, h_t = seqops.gru(x2, h2, *ours_w)
    ours = torch.autograd.grad((hs * weights[0]).sum() + (h_t * weights[1]).sum(), [x2, h2, *leaves])
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-12)


def test_gru_cell_gradients_vs_torch_autograd(torch, rng):
    m = _randomize(torch, torch.nn.GRUCell(D_IN, H, dtype=torch.float64), rng)
    x = torch.tensor(rng.standard_normal((B, D_IN)), requires_grad=True)
    h = torch.tensor(rng.standard_normal((B, H)), requires_grad=True)
    v = torch.tensor(rng.standard_normal((B, H)))
    theirs = torch.autograd.grad((m(x, h) * v).sum(), [x, h, *m.parameters()])
    leaves = [p.detach().clone().requires_grad_() for p in (m.weight_ih, m.weight_hh, m.bias_ih, m.bias_hh)]
    ours = torch.autograd.grad(
        (seqops.gru_cell(x, h, *convert.gru_weights_from_torch(*leaves)) * v).sum(), [x, h, *leaves]
    )
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-12)


def _fd_check(rng, grads, point, loss_np):
    for _ in range(3):
        direction = [rng.standard_normal(np.shape(p)) for p in point]
        analytic = sum(float(np.sum(g * d)) for g, d in zip(grads, direction, strict=True))
        plus = [p + FD_STEP * d for p, d in zip(point, direction, strict=True)]
        minus = [p - FD_STEP * d for p, d in zip(point, direction, strict=True)]
        numeric = (loss_np(plus) - loss_np(minus)) / (2 * FD_STEP)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


def _bptt_point(rng):
    point = [rng.standard_normal((T, B, D_IN)), rng.standard_normal((B, H)), *_weights(rng)]
    return point, (rng.standard_normal((T, B, H)), rng.standard_normal((B, H)))


def _loss(gru, point, weights, total):
    hs, h_last = gru(*point)
    return total(hs * weights[0]) + total(h_last * weights[1])


def test_jax_bptt_vs_reference_fd(jax, rng):
    jnp = jax.numpy
    point, weights = _bptt_point(rng)
    wj = [jnp.asarray(w) for w in weights]
    grads = jax.jit(jax.grad(lambda p: _loss(seqops.gru, p, wj, jnp.sum)))([jnp.asarray(p) for p in point])
    _fd_check(rng, [np.asarray(g) for g in grads], point, lambda p: float(_loss(ref.gru, p, weights, np.sum)))


def test_torch_bptt_vs_reference_fd(torch, rng):
    point, weights = _bptt_point(rng)
    leaves = [torch.tensor(p, requires_grad=True) for p in point]
    loss = _loss(seqops.gru, leaves, [torch.tensor(w) for w in weights], torch.sum)
    grads = [g.numpy() for g in torch.autograd.grad(loss, leaves)]
    _fd_check(rng, grads, point, lambda p: float(_loss(ref.gru, p, weights, np.sum)))


# --------------------------------------------------------------------------------------
# keras and flax: their formulas written out (and the libraries themselves where installed)
# --------------------------------------------------------------------------------------


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _keras_gru_cell(x, h, kernel, recurrent_kernel, bias):
    """keras ``GRUCell.call`` with ``reset_after=True`` (keras/src/layers/rnn/gru.py, the
    ``implementation=2`` branch): gate blocks z, r, h; ``bias[0]`` input side, ``bias[1]``
    recurrent side."""
    units = recurrent_kernel.shape[0]
    matrix_x = x @ kernel + (0.0 if bias is None else bias[0])
    x_z, x_r, x_h = matrix_x[..., :units], matrix_x[..., units : 2 * units], matrix_x[..., 2 * units :]
    matrix_inner = h @ recurrent_kernel + (0.0 if bias is None else bias[1])
    rec_z, rec_r, rec_h = (matrix_inner[..., k * units : (k + 1) * units] for k in range(3))
    z, r = _sigmoid(x_z + rec_z), _sigmoid(x_r + rec_r)
    hh = np.tanh(x_h + r * rec_h)
    return z * h + (1 - z) * hh


def _flax_gru_cell(params, h, x):
    """``flax.linen.GRUCell.__call__`` (flax/linen/recurrent.py): one Dense per gate, ``ir``,
    ``iz``, ``in`` with bias, ``hr``, ``hz`` without, ``hn`` with."""

    def dense(name, v):
        p = params[name]
        return v @ p["kernel"] + p.get("bias", 0.0)

    r = _sigmoid(dense("ir", x) + dense("hr", h))
    z = _sigmoid(dense("iz", x) + dense("hz", h))
    n = np.tanh(dense("in", x) + r * dense("hn", h))
    return (1.0 - z) * n + z * h


def test_keras_converters_vs_the_keras_formula(rng):
    x, h = rng.standard_normal((B, D_IN)), rng.standard_normal((B, H))
    kernel, recurrent = rng.standard_normal((D_IN, 3 * H)), rng.standard_normal((H, 3 * H))
    bias = rng.standard_normal((2, 3 * H))
    for b in (bias, None):
        want = _keras_gru_cell(x, h, kernel, recurrent, b)
        got = seqops.gru_cell(x, h, *convert.gru_weights_from_keras(kernel, recurrent, b))
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)
    # ours -> keras drives the keras formula
    w = _weights(rng)
    np.testing.assert_allclose(
        _keras_gru_cell(x, h, *convert.gru_weights_to_keras(*w)),
        seqops.gru_cell(x, h, *w),
        rtol=1e-12,
        atol=1e-13,
    )
    # a single bias: keras' (2, 3H) gets a zero row
    k, r, b2 = convert.gru_weights_to_keras(w[0], w[1], None, w[3])
    np.testing.assert_array_equal(b2[0], 0.0)
    np.testing.assert_allclose(
        _keras_gru_cell(x, h, k, r, b2), seqops.gru_cell(x, h, w[0], w[1], None, w[3]), rtol=1e-12, atol=1e-13
    )


def test_flax_converters_vs_the_flax_formula(rng):
    x, h = rng.standard_normal((B, D_IN)), rng.standard_normal((B, H))
    params = {
        f"i{g}": {"kernel": rng.standard_normal((D_IN, H)), "bias": rng.standard_normal(H)} for g in "rzn"
    }
    params |= {"hr": {"kernel": rng.standard_normal((H, H))}, "hz": {"kernel": rng.standard_normal((H, H))}}
    params["hn"] = {"kernel": rng.standard_normal((H, H)), "bias": rng.standard_normal(H)}
    want = _flax_gru_cell(params, h, x)
    np.testing.assert_allclose(
        seqops.gru_cell(x, h, *convert.gru_weights_from_flax({"params": params})),
        want,
        rtol=1e-12,
        atol=1e-13,
    )
    w = _weights(rng)
    to_flax = convert.gru_weights_to_flax(*w)
    assert sorted(to_flax) == ["hn", "hr", "hz", "in", "ir", "iz"]
    assert "bias" not in to_flax["hr"] and "bias" not in to_flax["hz"]
    np.testing.assert_allclose(
        _flax_gru_cell(to_flax, h, x), seqops.gru_cell(x, h, *w), rtol=1e-12, atol=1e-13
    )
    np.testing.assert_allclose(
        _flax_gru_cell(convert.gru_weights_to_flax(w[0], w[1]), h, x),
        seqops.gru_cell(x, h, w[0], w[1]),
        rtol=1e-12,
        atol=1e-13,
    )


def test_gru_vs_keras(rng):
    keras = pytest.importorskip("keras")  # the reason names what failed: keras, or its backend
    w = tuple(a.astype(np.float32) for a in _weights(rng))
    layer = keras.layers.GRU(H, return_sequences=True, return_state=True, reset_after=True)
    xs = rng.standard_normal((B, T, D_IN)).astype(np.float32)  # keras is batch-major
    layer(xs)
    layer.set_weights(list(convert.gru_weights_to_keras(*w)))
    seq, want_h = (keras.ops.convert_to_numpy(a) for a in layer(xs))
    hs, h_last = seqops.gru(np.swapaxes(xs, 0, 1), np.zeros((B, H), np.float32), *w)
    np.testing.assert_allclose(np.swapaxes(hs, 0, 1), seq, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(h_last, want_h, rtol=1e-5, atol=1e-5)
    for got, want in zip(convert.gru_weights_from_keras(*layer.get_weights()), w, strict=True):
        np.testing.assert_array_equal(got, want)


def test_gru_cell_vs_flax(jax, rng):
    nn = pytest.importorskip("flax.linen", reason="flax is not installed (the formula test above stands in)")
    jnp = jax.numpy
    cell = nn.GRUCell(features=H, param_dtype=jnp.float64)
    x, h = jnp.asarray(rng.standard_normal((B, D_IN))), jnp.asarray(rng.standard_normal((B, H)))
    variables = cell.init(jax.random.key(0), h, x)
    params = jax.tree_util.tree_map(
        lambda a: jnp.asarray(rng.standard_normal(a.shape)) * 0.5, variables["params"]
    )
    want, _ = cell.apply({"params": params}, h, x)
    got = seqops.gru_cell(x, h, *convert.gru_weights_from_flax(params))
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-12, atol=1e-13)
    w = tuple(jnp.asarray(a) for a in _weights(rng))
    want, _ = cell.apply({"params": convert.gru_weights_to_flax(*w)}, h, x)
    np.testing.assert_allclose(
        np.asarray(seqops.gru_cell(x, h, *w)), np.asarray(want), rtol=1e-12, atol=1e-13
    )


# --------------------------------------------------------------------------------------
# converters: round trips, the gate layout by hand, bad shapes
# --------------------------------------------------------------------------------------


def _equal(backend, got, want):
    assert backend.owns(got)
    np.testing.assert_array_equal(backend.to_numpy(got), backend.to_numpy(want))


def test_converter_round_trips_are_exact(backend, rng):
    dtype = backend.floating_dtypes()["float32"]
    w = tuple(backend.from_numpy(a, dtype=dtype) for a in _weights(rng))
    for there, back in (
        (convert.gru_weights_to_torch, convert.gru_weights_from_torch),
        (convert.gru_weights_to_keras, convert.gru_weights_from_keras),
    ):
        for got, want in zip(back(*there(*w)), w, strict=True):
            _equal(backend, got, want)
        assert back(*there(*w[:2]))[2:] == (None, None)
    # flax keeps only the sums of the r and z biases: the cell is the same, the n blocks exact
    w_ih, w_hh, b_ih, b_hh = convert.gru_weights_from_flax(convert.gru_weights_to_flax(*w))
    _equal(backend, w_ih, w[0])
    _equal(backend, w_hh, w[1])
    xp = backend.namespace()
    _equal(backend, b_ih[2 * H :], w[2][2 * H :])
    _equal(backend, b_hh[2 * H :], w[3][2 * H :])
    _equal(backend, (b_ih + b_hh)[: 2 * H], (w[2] + w[3])[: 2 * H])
    _equal(backend, b_hh[: 2 * H], xp.zeros_like(b_hh[: 2 * H]))


def test_converter_round_trips_from_the_framework_side(rng):
    torch_side = (
        rng.standard_normal((3 * H, D_IN)),
        rng.standard_normal((3 * H, H)),
        rng.standard_normal(3 * H),
        rng.standard_normal(3 * H),
    )
    for got, want in zip(
        convert.gru_weights_to_torch(*convert.gru_weights_from_torch(*torch_side)), torch_side, strict=True
    ):
        np.testing.assert_array_equal(got, want)
    keras_side = (
        rng.standard_normal((D_IN, 3 * H)),
        rng.standard_normal((H, 3 * H)),
        rng.standard_normal((2, 3 * H)),
    )
    for got, want in zip(
        convert.gru_weights_to_keras(*convert.gru_weights_from_keras(*keras_side)), keras_side, strict=True
    ):
        np.testing.assert_array_equal(got, want)
    flax = {
        f"i{g}": {"kernel": rng.standard_normal((D_IN, H)), "bias": rng.standard_normal(H)} for g in "rzn"
    }
    flax |= {f"h{g}": {"kernel": rng.standard_normal((H, H))} for g in "rz"}
    flax["hn"] = {"kernel": rng.standard_normal((H, H)), "bias": rng.standard_normal(H)}
    back = convert.gru_weights_to_flax(*convert.gru_weights_from_flax(flax))
    assert {k: sorted(v) for k, v in back.items()} == {k: sorted(v) for k, v in flax.items()}
    for name, leaves in flax.items():
        for leaf, value in leaves.items():
            np.testing.assert_array_equal(back[name][leaf], value)


def _blocks(w, n=3):
    width = w.shape[-1] // n
    return [float(np.unique(w[..., k * width : (k + 1) * width]).item()) for k in range(n)]


def test_converters_move_gate_blocks_by_hand():
    """Fill each framework gate block with its gate's id; ours must read r, z, n."""
    gate = {"r": 0.0, "z": 1.0, "n": 2.0}
    ours = [0.0, 1.0, 2.0]

    def packed(order, block, axis):
        return np.concatenate([np.full(block, gate[g]) for g in order], axis=axis)

    w_ih, w_hh, b_ih, b_hh = convert.gru_weights_from_torch(
        packed("rzn", (H, D_IN), 0), packed("rzn", (H, H), 0), packed("rzn", (H,), 0), packed("rzn", (H,), 0)
    )
    assert _blocks(w_ih) == _blocks(w_hh) == _blocks(b_ih) == _blocks(b_hh) == ours
    assert w_ih.shape == (D_IN, 3 * H)
    # keras: z, r, h (h is our n), bias rows input / recurrent
    bias = np.stack([packed("zrn", (H,), 0), packed("zrn", (H,), 0) + 10.0])
    w_ih, w_hh, b_ih, b_hh = convert.gru_weights_from_keras(
        packed("zrn", (D_IN, H), 1), packed("zrn", (H, H), 1), bias
    )
    assert _blocks(w_ih) == _blocks(w_hh) == _blocks(b_ih) == ours
    assert _blocks(b_hh) == [10.0, 11.0, 12.0]
    assert _blocks(convert.gru_weights_to_keras(w_ih, w_hh, b_ih, b_hh)[0]) == [1.0, 0.0, 2.0]
    flax = {f"i{g}": {"kernel": np.full((D_IN, H), v), "bias": np.full(H, v)} for g, v in gate.items()}
    flax |= {f"h{g}": {"kernel": np.full((H, H), v)} for g, v in gate.items()}
    flax["hn"]["bias"] = np.full(H, 7.0)
    w_ih, w_hh, b_ih, b_hh = convert.gru_weights_from_flax(flax)
    assert _blocks(w_ih) == _blocks(w_hh) == _blocks(b_ih) == ours
    assert _blocks(b_hh) == [0.0, 0.0, 7.0]


def test_converter_bad_shapes():
    with pytest.raises(ValueError, match=re.escape("weight_hh must have shape (3H, H); got (11, 4)")):
        convert.gru_weights_from_torch(np.zeros((12, 3)), np.zeros((11, 4)))
    with pytest.raises(ValueError, match=re.escape("bias_ih must have shape (3H,) = (12,); got (16,)")):
        convert.gru_weights_from_torch(np.zeros((12, 3)), np.zeros((12, 4)), np.zeros(16))
    with pytest.raises(ValueError, match=re.escape("b_hh must have shape (3H,) = (12,); got (4,)")):
        convert.gru_weights_to_torch(np.zeros((3, 12)), np.zeros((4, 12)), None, np.zeros(4))
    with pytest.raises(ValueError, match=re.escape("w_ih must have shape (I, 3H) = (3, 12); got (3, 16)")):
        convert.gru_weights_to_keras(np.zeros((3, 16)), np.zeros((4, 12)))
    with pytest.raises(ValueError, match="keras' reset_after=False GRU"):
        convert.gru_weights_from_keras(np.zeros((3, 12)), np.zeros((4, 12)), np.zeros(12))
    with pytest.raises(ValueError, match=re.escape("bias must have shape (2, 3H) = (2, 12); got (3, 12)")):
        convert.gru_weights_from_keras(np.zeros((3, 12)), np.zeros((4, 12)), np.zeros((3, 12)))
    with pytest.raises(KeyError, match="flax GRUCell params lack"):
        convert.gru_weights_from_flax({"ir": {"kernel": np.zeros((3, 4))}})


# --------------------------------------------------------------------------------------
# math: the reference, cells vs sequences, batch dims
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch", BATCHES, ids=str)
def test_sequence_is_a_loop_of_cells_and_matches_the_reference(rng, batch):
    xs, h0 = rng.standard_normal((T, *batch, D_IN)), rng.standard_normal((*batch, H))
    w = _weights(rng)
    hs, h_last = seqops.gru(xs, h0, *w)
    h = h0
    for t in range(T):
        h = seqops.gru_cell(xs[t], h, *w)
        np.testing.assert_allclose(hs[t], h, rtol=1e-13, atol=1e-14)
    np.testing.assert_array_equal(h_last, hs[-1])
    expected, exp_h = ref.gru(xs, h0, *w)
    np.testing.assert_allclose(hs, expected, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(h_last, exp_h, rtol=1e-12, atol=1e-13)


def test_the_hidden_n_bias_is_scaled_by_the_reset_gate(rng):
    """Moving ``b_hh``'s n block into ``b_ih`` changes the result (it sits inside ``r * (...)``),
    moving its r and z blocks does not."""
    x, h = rng.standard_normal((B, D_IN)), rng.standard_normal((B, H))
    w_ih, w_hh, b_ih, b_hh = _weights(rng)
    base = seqops.gru_cell(x, h, w_ih, w_hh, b_ih, b_hh)
    rz = np.concatenate([b_hh[: 2 * H], np.zeros(H)])
    np.testing.assert_allclose(
        seqops.gru_cell(x, h, w_ih, w_hh, b_ih + rz, b_hh - rz), base, rtol=1e-13, atol=1e-14
    )
    n = b_hh - rz
    assert not np.allclose(seqops.gru_cell(x, h, w_ih, w_hh, b_ih + n, b_hh - n), base)


# --------------------------------------------------------------------------------------
# JAX: one scan under jit, one step function eagerly
# --------------------------------------------------------------------------------------


def test_jax_jit_is_one_scan_whatever_the_length(jax, rng):
    jnp = jax.numpy
    w = [jnp.asarray(a, dtype=jnp.float32) for a in _weights(rng)]
    h0 = jnp.zeros((B, H), dtype=jnp.float32)

    def f(xs):
        hs, h_last = seqops.gru(xs, h0, *w)
        return jnp.sum(hs) + jnp.sum(h_last)

    short, long = (jax.make_jaxpr(f)(jnp.zeros((n, B, D_IN), dtype=jnp.float32)) for n in (10, 1000))
    assert "scan" in {eqn.primitive.name for eqn in long.jaxpr.eqns}
    assert len(long.jaxpr.eqns) == len(short.jaxpr.eqns)


def test_jax_eager_calls_reuse_one_step_function(jax, rng, monkeypatch):
    """The scan's step is a module-level function (a fresh closure would retrace each call)."""
    backend = dict((b.name, b) for b, _ in seqops.backends())["jax"]
    seen = []
    real = backend.scan

    def recording(step, carry, xs):
        seen.append(step)
        return real(step, carry, xs)

    monkeypatch.setattr(backend, "scan", recording)
    jnp = jax.numpy
    w = [jnp.asarray(a) for a in _weights(rng)]
    for _ in range(2):
        seqops.gru(jnp.asarray(rng.standard_normal((T, B, D_IN))), jnp.zeros((B, H)), *w)
        seqops.gru(jnp.asarray(rng.standard_normal((T, B, D_IN))), jnp.zeros((B, H)), *w[:3], None)
    assert len(seen) == 4 and seen[0] is seen[2] and seen[1] is seen[3]
    assert all(step.__qualname__ == step.__name__ for step in seen)  # module level, not nested


def test_jax_jit_and_vmap_match_eager(jax, rng):
    jnp = jax.numpy
    xs, h0 = jnp.asarray(rng.standard_normal((T, B, D_IN))), jnp.asarray(rng.standard_normal((B, H)))
    w = [jnp.asarray(a) for a in _weights(rng)]

    def run(xs, h0):
        return seqops.gru(xs, h0, *w)

    eager = run(xs, h0)
    for got in (jax.jit(run)(xs, h0), jax.vmap(run, in_axes=(1, 0), out_axes=(1, 0))(xs, h0)):
        for a, b in zip(got, eager, strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-13)


# --------------------------------------------------------------------------------------
# every backend: library, device and dtype kept; the reference matched; T = 0
# --------------------------------------------------------------------------------------

_TOLERANCE = {"float64": 1e-12, "float32": 2e-5, "float16": 2e-2, "bfloat16": 1e-1}


@pytest.mark.parametrize("dtype_name", ["float16", "bfloat16", "float32", "float64"])
def test_every_backend_keeps_library_device_dtype(backend, rng, dtype_name):
    dtypes = backend.floating_dtypes()
    if dtype_name not in dtypes:
        pytest.skip(f"backend {backend.name!r} has no {dtype_name}")
    dtype, tol = dtypes[dtype_name], _TOLERANCE[dtype_name]

    def arr(a):
        return backend.from_numpy(np.asarray(a), dtype=dtype)

    xs_np, h_np = rng.standard_normal((T, B, D_IN)), rng.standard_normal((B, H))
    w = _weights(rng)
    xs, h = arr(xs_np), arr(h_np)
    hs, h_last = seqops.gru(xs, h, *map(arr, w))
    expected, exp_h = ref.gru(xs_np, h_np, *w)
    for out, want in ((hs, expected), (h_last, exp_h)):
        assert_kept(backend, out, xs, dtype)
        np.testing.assert_allclose(backend.to_numpy(out).astype(np.float64), want, rtol=tol, atol=tol)
    out = seqops.gru_cell(xs[0, ...], h, *map(arr, w[:2]))  # no biases
    assert_kept(backend, out, xs, dtype)
    np.testing.assert_allclose(
        backend.to_numpy(out).astype(np.float64), ref.gru_cell(xs_np[0], h_np, *w[:2]), rtol=tol, atol=tol
    )


def test_empty_sequence_returns_the_initial_state(backend, rng):
    dtype = backend.floating_dtypes()["float32"]

    def arr(a):
        return backend.from_numpy(np.asarray(a), dtype=dtype)

    xs, h = arr(np.zeros((0, B, D_IN))), arr(rng.standard_normal((B, H)))
    hs, h_last = seqops.gru(xs, h, *map(arr, _weights(rng)))
    assert tuple(hs.shape) == (0, B, H)
    assert_kept(backend, hs, xs, dtype)
    _equal(backend, h_last, h)


# --------------------------------------------------------------------------------------
# torch-gru: chosen, declines with reasons, compiles
# --------------------------------------------------------------------------------------


def test_explain_shows_torch_gru_on_torch_and_portable_elsewhere(torch_fast, rng):
    torch = torch_fast
    w = [torch.tensor(a) for a in _weights(rng)]
    xs, h0 = torch.zeros(T, B, D_IN, dtype=torch.float64), torch.zeros(B, H, dtype=torch.float64)
    explanation = seqops.explain(seqops.gru, xs, h0, *w)
    assert explanation.op == "gru" and explanation.chosen == "torch-gru"
    assert "torch-gru" in str(explanation)
    assert seqops.explain(seqops.gru, xs.numpy(), h0.numpy(), *(a.numpy() for a in w)).chosen == "portable"
    # the cell runs torch.gru_cell (measured 3.4x faster than the portable step at B=64, H=512)
    assert seqops.explain(seqops.gru_cell, xs[0], h0, *w).chosen == "torch-gru-cell"


def test_torch_gru_declines_with_reasons(torch_fast, rng):
    torch = torch_fast
    w = _weights(rng)

    def case(dtype, steps, batch):
        return (
            torch.zeros(steps, *batch, D_IN, dtype=dtype),
            torch.zeros(*batch, H, dtype=dtype),
            *(torch.tensor(a, dtype=dtype) for a in w),
        )

    for args, reason in (
        (case(torch.bfloat16, T, (B,)), "half precision"),
        (case(torch.float16, T, (B,)), "half precision"),
        (case(torch.float32, 0, (B,)), "empty sequence"),
        (case(torch.float32, T, (0,)), "empty batch"),
    ):
        explanation = seqops.explain(seqops.gru, *args)
        assert explanation.chosen == "portable" and reason in str(explanation), str(explanation)
        hs, h_last = seqops.gru(*args)
        assert hs.dtype == args[0].dtype and tuple(hs.shape) == (*args[0].shape[:-1], H)


def test_torch_gru_is_declared_in_the_support_table(torch_fast):
    from seqops_conformance.support import support_table

    table = support_table()
    assert "| torch-gru | torch-fast | torch | gru | half precision" in table
    (row,) = [line for line in table.splitlines() if line.startswith("| gru |")]
    assert row.endswith("| ✓ (torch-gru) |"), row  # the torch column, last


# array-api-compat's lru_cache-wrapped helpers make Dynamo warn (harmless, not seqops' code).
@pytest.mark.filterwarnings("ignore:Dynamo detected a call to a `functools.lru_cache`")
def test_torch_compile_fullgraph_through_torch_gru(torch_fast, rng):
    torch = torch_fast
    w = [torch.tensor(a, dtype=torch.float32) for a in _weights(rng)]
    xs, h0 = torch.randn(T, B, D_IN), torch.zeros(B, H)

    def f(xs: Any, h0: Any) -> Any:
        return seqops.gru(xs, h0, *w)

    assert seqops.explain(seqops.gru, xs, h0, *w).chosen == "torch-gru"
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    for a, e in zip(compiled(xs, h0), f(xs, h0), strict=True):
        torch.testing.assert_close(a, e, rtol=1e-6, atol=1e-6)


def test_torch_compile_of_portable_gru_from_a_cold_cache(torch, tmp_path):
    script = tmp_path / "cold_gru.py"
    script.write_text(
        "import torch, seqops\n"
        "def f(xs, h, w_ih, w_hh, b_hh):\n"
        "    return seqops.gru(xs, h, w_ih, w_hh, None, b_hh)[0]\n"
        "xs, h = torch.randn(5, 2, 3), torch.zeros(2, 4)\n"
        "w_ih, w_hh, b_hh = torch.randn(3, 12), torch.randn(4, 12), torch.randn(12)\n"
        "out = torch.compile(f, fullgraph=True, backend='aot_eager')(xs, h, w_ih, w_hh, b_hh)\n"
        "assert seqops.explain(seqops.gru, xs, h, w_ih, w_hh, None, b_hh).chosen == 'portable'\n"
        "torch.testing.assert_close(out, f(xs, h, w_ih, w_hh, b_hh))\n"
        "print('OK')\n"
    )
    env = dict(os.environ, SEQOPS_DISABLE_PLUGINS="torch-fast", PYTHONWARNINGS="ignore")
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]


# --------------------------------------------------------------------------------------
# the conformance suite catches the classic GRU mistakes
# --------------------------------------------------------------------------------------


def _wrong_gru(mistake):
    """A NumPy 'fast path' for ``gru`` with one classic mistake."""

    def fn(backend, xs, h0, w_ih, w_hh, b_ih, b_hh, /):
        b_i = np.zeros(w_ih.shape[1]) if b_ih is None else b_ih
        b_h = np.zeros(w_hh.shape[1]) if b_hh is None else b_hh
        h, hs, n_h = h0, [np.zeros((0, *h0.shape), dtype=h0.dtype)], h0.shape[-1]
        for x in xs:
            gi, gh = x @ w_ih + b_i, h @ w_hh
            r, z = (
                _sigmoid(
                    gi[..., k * n_h : (k + 1) * n_h]
                    + gh[..., k * n_h : (k + 1) * n_h]
                    + b_h[k * n_h : (k + 1) * n_h]
                )
                for k in range(2)
            )
            if mistake == "b_hn outside r":  # one summed bias, as the LSTM's
                n = np.tanh(gi[..., 2 * n_h :] + b_h[2 * n_h :] + r * gh[..., 2 * n_h :])
            else:
                n = np.tanh(gi[..., 2 * n_h :] + r * (gh[..., 2 * n_h :] + b_h[2 * n_h :]))
            h = z * n + (1 - z) * h if mistake == "z swapped" else (1 - z) * n + z * h
            hs.append(h[None])
        return np.concatenate(hs).astype(xs.dtype), h.astype(xs.dtype)

    class Plugin:
        @seqops.hookimpl
        def seqops_implementations(self, backend):
            if backend.name != "numpy":
                return None
            return [seqops.Implementation(seqops.ops.gru, "wrong-gru", fn)]

    return Plugin()


@pytest.mark.parametrize("mistake", ["b_hn outside r", "z swapped"])
def test_conformance_catches_wrong_grus(mistake):
    from seqops_conformance import CASES, run

    name = seqops.register_plugin(_wrong_gru(mistake), name="wrong-gru")
    try:
        report = run(backends=["numpy"], ops=["gru"], dtypes=["float64"], progress=False)
    finally:
        seqops.unregister_plugin(name)
    cases = {c.id for c in CASES if c.op == "gru" and "T=0" not in c.name and "empty" not in c.name}
    if mistake == "b_hn outside r":  # only where there is a hidden bias
        cases = {c for c in cases if "no biases" not in c and "b_ih only" not in c}
    assert {r.case for r in report.failures} == cases
    assert all(r.implementation == "wrong-gru" for r in report.failures)


# --------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------


def _z(*shape, dtype=np.float32):
    return np.zeros(shape, dtype=dtype)


BAD_INPUTS = [
    (
        "w_ih",
        lambda: seqops.gru_cell(_z(2, 8), _z(2, 16), _z(8, 64), _z(16, 48)),
        ValueError,
        "`w_ih` must have shape (I, 3H) = (8, 48); got (8, 64)",
    ),
    (
        "w_hh",
        lambda: seqops.gru(_z(5, 2, 8), _z(2, 16), _z(8, 48), _z(48, 16)),
        ValueError,
        "`w_hh` must have shape (H, 3H) = (16, 48); got (48, 16)",
    ),
    (
        "b_ih",
        lambda: seqops.gru_cell(_z(2, 8), _z(2, 16), _z(8, 48), _z(16, 48), _z(16)),
        ValueError,
        "`b_ih` must have shape (3H,) = (48,); got (16,)",
    ),
    (
        "b_hh",
        lambda: seqops.gru(_z(5, 2, 8), _z(2, 16), _z(8, 48), _z(16, 48), None, _z(64)),
        ValueError,
        "`b_hh` must have shape (3H,) = (48,); got (64,)",
    ),
    (
        "cell_batch",
        lambda: seqops.gru_cell(_z(2, 8), _z(3, 16), _z(8, 48), _z(16, 48)),
        ValueError,
        "`h` of shape (3, 16) does not match x's batch (2,)",
    ),
    (
        "sequence_batch",
        lambda: seqops.gru(_z(5, 2, 8), _z(16), _z(8, 48), _z(16, 48)),
        ValueError,
        "`h0` of shape (16,) does not match xs's batch (2,)",
    ),
    (
        "xs_ndim",
        lambda: seqops.gru(_z(8), _z(16), _z(8, 48), _z(16, 48)),
        ValueError,
        "`xs` must have at least 2 dimensions (T, ..., I); got shape (8,)",
    ),
    (
        "dtype",
        lambda: seqops.gru(_z(5, 2, 8), _z(2, 16), _z(8, 48), _z(16, 48), None, _z(48, dtype=np.float64)),
        TypeError,
        "must share one dtype; got xs float32, h0 float32, w_ih float32, w_hh float32, b_hh float64",
    ),
    (
        "integer",
        lambda: seqops.gru_cell(np.zeros((2, 8), dtype=np.int64), _z(2, 16), _z(8, 48), _z(16, 48)),
        TypeError,
        "`x` must be a real floating array; got dtype int64",
    ),
]


@pytest.mark.parametrize("call,error,message", [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_messages(call, error, message):
    with pytest.raises(error, match=re.escape(message)):
        call()


def test_mixed_libraries_are_refused(torch):
    with pytest.raises(TypeError, match="different libraries"):
        seqops.gru_cell(torch.zeros(2, 8), _z(2, 16), _z(8, 48), _z(16, 48))
