"""seqops.diagnostics: gradient flow through the recurrent cells, and `seqops demo gradient-flow`.

The autodiff results (torch autograd, jax.vjp through seqops' cells) are checked against
independent float64 NumPy computations: the analytic Jacobian product of the tanh RNN and
central differences of a loop-level LSTM.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from seqops.cli import main
from seqops.diagnostics import gradient_flow

AUTODIFF = ["torch", "jax"]


def _need(backend: str) -> None:
    pytest.importorskip(backend, reason=f"{backend} is not installed")


def _small_problem(gates: int, *, steps: int = 9, hidden: int = 5, size_in: int = 3, batch: int = 2):
    """Weights large enough that the Jacobians are far from both 0 and the identity."""
    rng = np.random.default_rng(42)
    w_ih = rng.normal(0.0, 0.8, (size_in, gates * hidden))
    w_hh = rng.normal(0.0, 0.6, (hidden, gates * hidden))
    b = rng.normal(0.0, 0.3, gates * hidden)
    xs = rng.standard_normal((steps, batch, size_in))
    return (w_ih, w_hh, b), xs


def _rnn_reference(w_ih, w_hh, b, xs, *, transpose: bool = True) -> np.ndarray:
    """mean_b ‖∂h_T/∂h_{T-d}‖_F from ∂h_{t+1}/∂h_t = diag(1 - h_{t+1}²) · w_hhᵀ (x @ w convention).

    ``transpose=False`` is the wrong orientation, to show the comparison can tell them apart.
    """
    steps, batch, _ = xs.shape
    hidden = w_hh.shape[0]
    h = np.zeros((batch, hidden))
    steps_jac = []  # steps_jac[t]: (B, H, H), ∂h_{t+1}/∂h_t per example
    for t in range(steps):
        h = np.tanh(xs[t] @ w_ih + h @ w_hh + b)
        w = w_hh.T if transpose else w_hh
        steps_jac.append((1.0 - h**2)[:, :, None] * w[None])
    flow = np.empty(steps)
    jac = np.broadcast_to(np.eye(hidden), (batch, hidden, hidden))  # ∂h_T/∂h_T
    for d in range(steps):
        flow[d] = np.linalg.norm(jac, axis=(1, 2)).mean()
        jac = jac @ steps_jac[steps - 1 - d]  # ∂h_T/∂h_{k-1} = ∂h_T/∂h_k · ∂h_k/∂h_{k-1}
    return flow


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _lstm_step(x, h, c, w_ih, w_hh, b):
    """One loop-level LSTM step, gates i, f, o, g."""
    hidden = h.shape[-1]
    z = x @ w_ih + h @ w_hh + b
    i, f, o = (_sigmoid(z[..., j * hidden : (j + 1) * hidden]) for j in range(3))
    c = f * c + i * np.tanh(z[..., 3 * hidden :])
    return o * np.tanh(c), c


def _lstm_from(k: int, h: np.ndarray, c: np.ndarray, w_ih, w_hh, b, xs) -> np.ndarray:
    """h_T of the LSTM started from the state (h, c) after step k."""
    for t in range(k, xs.shape[0]):
        h, c = _lstm_step(xs[t], h, c, w_ih, w_hh, b)
    return h


def _lstm_reference(w_ih, w_hh, b, xs, *, delta: float = 1e-6) -> np.ndarray:
    """mean_b ‖∂h_T/∂(h_k, c_k)‖_F by central differences, in float64."""
    steps, batch, _ = xs.shape
    hidden = w_hh.shape[0]
    states = [(np.zeros((batch, hidden)), np.zeros((batch, hidden)))]  # states[k] = (h_k, c_k)
    for t in range(steps):
        states.append(_lstm_step(xs[t], *states[-1], w_ih, w_hh, b))
    flow = np.empty(steps)
    for d in range(steps):
        k = steps - d
        s = np.concatenate(states[k], axis=-1)  # (B, 2H)
        jac = np.empty((batch, hidden, 2 * hidden))
        for j in range(2 * hidden):
            e = np.zeros_like(s)
            e[:, j] = delta
            plus, minus = s + e, s - e
            up = _lstm_from(k, plus[:, :hidden], plus[:, hidden:], w_ih, w_hh, b, xs)
            down = _lstm_from(k, minus[:, :hidden], minus[:, hidden:], w_ih, w_hh, b, xs)
            jac[:, :, j] = (up - down) / (2 * delta)
        flow[d] = np.linalg.norm(jac, axis=(1, 2)).mean()
    return flow


@pytest.mark.parametrize("backend", AUTODIFF)
def test_rnn_matches_analytic_jacobian_product(backend: str) -> None:
    _need(backend)
    weights, xs = _small_problem(1)
    flow = gradient_flow("rnn", weights=weights, inputs=xs, backend=backend)
    expected = _rnn_reference(*weights, xs)
    assert flow.shape == (xs.shape[0],) and flow.dtype == np.float64
    np.testing.assert_allclose(flow, expected, rtol=1e-12, atol=0)
    # The check has teeth: the other orientation (diag(1 - h²) · w_hh) gives other numbers.
    assert not np.allclose(flow, _rnn_reference(*weights, xs, transpose=False), rtol=1e-3)


@pytest.mark.parametrize("backend", AUTODIFF)
def test_lstm_matches_finite_differences(backend: str) -> None:
    _need(backend)
    weights, xs = _small_problem(4, steps=7, hidden=3, size_in=2)
    flow = gradient_flow("lstm", weights=weights, inputs=xs, backend=backend)
    np.testing.assert_allclose(flow, _lstm_reference(*weights, xs), rtol=1e-6)


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_torch_and_jax_agree(cell: str) -> None:
    _need("torch")
    _need("jax")
    import jax

    with jax.enable_x64(False):  # gradient_flow computes in float64 whatever the global setting
        by_jax = gradient_flow(cell, steps=60, batch=2, backend="jax", rng=3)
    by_torch = gradient_flow(cell, steps=60, batch=2, backend="torch", rng=3)
    np.testing.assert_allclose(by_torch, by_jax, rtol=1e-10, atol=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rnn_gradient_vanishes_and_lstm_gradient_survives(seed: int) -> None:
    _need("torch")
    rnn = gradient_flow("rnn", steps=51, rng=seed)
    lstm = gradient_flow("lstm", steps=51, rng=seed)
    no_forget_bias = gradient_flow("lstm", steps=51, rng=seed, forget_bias=0.0)
    # measured: RNN 5e-16 .. 4e-13 of flow[0] after 50 steps, LSTM 1e-5 .. 3e-4
    assert rnn[50] / rnn[0] < 1e-10
    assert lstm[50] / lstm[0] > 1e-6
    assert lstm[50] > 1e6 * rnn[50]
    assert no_forget_bias[50] < lstm[50]  # the +1 forget-gate bias keeps the carousel going


def test_state_blocks_and_distance_zero() -> None:
    _need("torch")
    hidden = 6
    state, h, c = (gradient_flow("lstm", steps=20, hidden_size=hidden, wrt=w) for w in ("state", "h", "c"))
    np.testing.assert_allclose(state**2, h**2 + c**2, rtol=1e-12)  # batch of 1: Frobenius of [A B]
    assert state[0] == pytest.approx(np.sqrt(hidden)) and c[0] == 0.0  # J_T selects h_T
    rnn = gradient_flow("rnn", steps=5, hidden_size=hidden)
    assert rnn[0] == pytest.approx(np.sqrt(hidden))
    np.testing.assert_array_equal(rnn, gradient_flow("rnn", steps=5, hidden_size=hidden, wrt="h"))


def test_weights_of_any_library() -> None:
    torch = pytest.importorskip("torch", reason="torch is not installed")
    weights, xs = _small_problem(1)
    as_torch = tuple(torch.tensor(w, requires_grad=True) for w in weights)
    np.testing.assert_array_equal(
        gradient_flow("rnn", weights=as_torch, inputs=torch.tensor(xs)),
        gradient_flow("rnn", weights=weights, inputs=xs),
    )
    no_bias = gradient_flow("rnn", weights=(weights[0], weights[1], None), inputs=xs)
    np.testing.assert_allclose(no_bias, _rnn_reference(weights[0], weights[1], 0.0, xs), rtol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"cell": "gru"}, ValueError, r"cell must be one of \('rnn', 'lstm'\); got 'gru'"),
        (
            {"backend": "numpy"},
            ValueError,
            r"gradient_flow needs an autodiff backend \(torch or jax\); got 'numpy'",
        ),
        ({"backend": "tensorflow"}, ValueError, r"unknown backend 'tensorflow'; registered: .*numpy"),
        ({"wrt": "c"}, ValueError, r"wrt must be one of \('state', 'h'\) for cell 'rnn'; got 'c'"),
        ({"steps": 0}, ValueError, r"steps must be a positive integer; got 0"),
        (
            {"weights": (np.ones((2, 4)), np.ones((4, 16)), None)},
            ValueError,
            r"`w_hh` must have shape \(H, H\) .*\(4, 16\)",
        ),
        ({"weights": np.ones(3)}, TypeError, r"weights must be a tuple \(w_ih, w_hh, b\); got ndarray"),
        (
            {"inputs": np.ones((4, 1, 3))},
            ValueError,
            r"inputs must have shape \(T, B, I\) .* I = 8; got \(4, 1, 3\)",
        ),
    ],
)
def test_bad_input(kwargs: dict, error: type[Exception], match: str) -> None:
    cell = kwargs.pop("cell", "rnn")
    with pytest.raises(error, match=match):
        gradient_flow(cell, **kwargs)


def test_demo_writes_a_png(tmp_path, capsys) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib is not installed (pip install seqops[plot])")
    _need("torch")
    out = tmp_path / "flow.png"
    assert main(["demo", "gradient-flow", "--out", str(out), "--steps", "20", "--hidden-size", "8"]) == 0
    assert out.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and out.stat().st_size > 10_000
    assert str(out) in capsys.readouterr().out


def test_demo_without_matplotlib_says_what_to_install(tmp_path, monkeypatch, capsys) -> None:
    for name in ("matplotlib", "matplotlib.figure"):
        monkeypatch.setitem(sys.modules, name, None)  # makes `import matplotlib` fail
    assert main(["demo", "gradient-flow", "--out", str(tmp_path / "flow.png")]) == 1
    assert "pip install seqops[plot]" in capsys.readouterr().err
    assert not (tmp_path / "flow.png").exists()


def test_demo_bad_usage(tmp_path, capsys) -> None:
    assert main(["demo", "gradient-flow", "--out", str(tmp_path / "f.png"), "--steps", "0"]) == 2
    assert "steps must be a positive integer" in capsys.readouterr().err
    assert main(["demo", "gradient-flow", "--out", str(tmp_path / "f.png"), "--backend", "numpy"]) == 2
