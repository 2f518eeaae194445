"""The fast-path plugins in ``plugins/`` (torch-fast, jax-fast): which calls they accept
(``seqops.explain``), that they give the portable results within tolerance, the same
validation errors, gradients, and ``torch.compile``/``jax.jit``."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

import seqops

rng = np.random.default_rng(5)

TOL = {"float64": {"rtol": 1e-10, "atol": 1e-12}, "float32": {"rtol": 1e-5, "atol": 1e-6}}
HALF_TOL = {"rtol": 1e-2, "atol": 2e-2}


def _plugin_or_skip(name: str) -> object:
    plugin = seqops.registry.pm.get_plugin(name)
    if plugin is None:
        pytest.skip(f"plugin {name!r} is not loaded (disabled or not installed)")
    return plugin


@contextlib.contextmanager
def without(name: str) -> Iterator[None]:
    """Run the block with plugin ``name`` unregistered (the portable path), then restore it."""
    plugin = _plugin_or_skip(name)
    seqops.unregister_plugin(name)
    try:
        yield
    finally:
        seqops.register_plugin(plugin, name=name)


def _tol(dtype_name: str) -> dict[str, float]:
    return TOL.get(dtype_name, HALF_TOL)


def _close(actual: Any, expected: Any, dtype_name: str) -> None:
    tol = _tol(dtype_name)
    np.testing.assert_allclose(
        np.asarray(actual, dtype=np.float64),
        np.asarray(expected, dtype=np.float64),
        rtol=tol["rtol"],
        atol=tol["atol"],
    )


def _mask(*shape: int, full_row: bool = True) -> np.ndarray:
    m = rng.random(shape) > 0.4
    if full_row:
        m[..., 1, :] = False  # one query row with no allowed key
    return m


def _bias(*shape: int, minus_inf_row: bool = False) -> np.ndarray:
    b = rng.standard_normal(shape)
    if minus_inf_row:
        b[..., 2, :] = -np.inf
    return b


# name -> (q shape, k shape, v shape, options of numpy arrays / flags)
SDPA_CASES: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], dict[str, Any]]] = {
    "plain": ((2, 3, 5, 8), (2, 3, 7, 8), (2, 3, 7, 8), {}),
    "mask-full-row": ((2, 3, 5, 8), (2, 3, 7, 8), (2, 3, 7, 8), {"mask": _mask(5, 7)}),
    "mask-broadcast": ((2, 3, 5, 8), (2, 3, 7, 8), (2, 3, 7, 8), {"mask": _mask(2, 1, 5, 7)}),
    "bias": ((2, 3, 5, 8), (2, 3, 7, 8), (2, 3, 7, 8), {"bias": _bias(5, 7)}),
    "bias-minus-inf-row": ((2, 5, 8), (2, 7, 8), (2, 7, 8), {"bias": _bias(5, 7, minus_inf_row=True)}),
    "mask+bias": ((2, 3, 5, 8), (2, 3, 7, 8), (2, 3, 7, 8), {"mask": _mask(3, 5, 7), "bias": _bias(5, 7)}),
    "causal-L<S": ((2, 3, 5, 8), (2, 3, 7, 8), (2, 3, 7, 8), {"is_causal": True}),
    "causal-L>S": ((2, 7, 8), (2, 4, 8), (2, 4, 8), {"is_causal": True}),
    "causal+mask": ((2, 3, 5, 8), (2, 3, 7, 8), (2, 3, 7, 8), {"is_causal": True, "mask": _mask(5, 7)}),
    "causal+bias": ((2, 5, 8), (2, 7, 8), (2, 7, 8), {"is_causal": True, "bias": _bias(5, 7)}),
    "causal+mask+bias": (
        (2, 5, 8),
        (2, 7, 8),
        (2, 7, 8),
        {"is_causal": True, "mask": _mask(5, 7), "bias": _bias(2, 5, 7, minus_inf_row=True)},
    ),
    "gqa": ((2, 4, 5, 8), (2, 2, 7, 8), (2, 2, 7, 8), {"enable_gqa": True, "mask": _mask(4, 5, 7)}),
    "gqa-broadcast-causal": ((3, 4, 5, 8), (2, 7, 8), (2, 7, 8), {"enable_gqa": True, "is_causal": True}),
    "scale": ((2, 5, 8), (2, 7, 8), (2, 7, 8), {"scale": 0.3}),
    "2d": ((5, 8), (7, 8), (7, 8), {"mask": _mask(5, 7)}),
    "broadcast-lead": ((2, 3, 5, 8), (3, 7, 8), (1, 7, 8), {}),
}
WIDE_VALUE_CASE = ((2, 3, 5, 8), (2, 3, 7, 8), (2, 3, 7, 6), {"mask": _mask(5, 7)})


def _case_data(case: tuple[Any, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    qs, ks, vs, options = case
    q, k, v = (rng.standard_normal(s) for s in (qs, ks, vs))
    return q, k, v, options


def _convert(
    convert: Callable[[np.ndarray, Any], Any], dtype: Any, options: dict[str, Any]
) -> dict[str, Any]:
    out = dict(options)
    for name in ("mask", "bias"):
        if name in out:
            out[name] = convert(out[name], dtype if name == "bias" else None)
    return out


# -- torch --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def torch_fast():
    torch = pytest.importorskip("torch")
    _plugin_or_skip("torch-fast")
    return torch


def _torch_convert(torch: Any) -> Callable[[np.ndarray, Any], Any]:
    def convert(x: np.ndarray, dtype: Any) -> Any:
        return torch.from_numpy(x) if dtype is None else torch.from_numpy(x).to(dtype)

    return convert


def _torch_case(torch: Any, case: tuple[Any, ...], dtype: Any) -> tuple[Any, Any, Any, dict[str, Any]]:
    q, k, v, options = _case_data(case)
    convert = _torch_convert(torch)
    return (*(convert(a, dtype) for a in (q, k, v)), _convert(convert, dtype, options))  # type: ignore[return-value]


@pytest.mark.parametrize("dtype_name", ["float32", "float64"])
@pytest.mark.parametrize("case", sorted(SDPA_CASES))
def test_torch_sdpa_matches_portable(torch_fast, case: str, dtype_name: str) -> None:
    torch = torch_fast
    q, k, v, options = _torch_case(torch, SDPA_CASES[case], getattr(torch, dtype_name))
    out = _sdpa_against_portable("torch-fast", "torch-sdpa", q, k, v, options, dtype_name)
    if "mask-full-row" in case:
        assert torch.all(out[..., 1, :] == 0)


def _sdpa_against_portable(
    plugin: str, implementation: str, q: Any, k: Any, v: Any, options: dict[str, Any], dtype_name: str
) -> Any:
    """The fast path's attention (checked to be the one chosen), compared with the portable one."""
    f = seqops.scaled_dot_product_attention
    assert seqops.explain(f, q, k, v, **options).chosen == implementation
    out = f(q, k, v, **options)
    with without(plugin):
        expected = f(q, k, v, **options)
    assert out.dtype == q.dtype and out.shape == expected.shape
    _close(out, expected, dtype_name)
    return out


@pytest.mark.parametrize("dtype_name", ["float16", "bfloat16"])
@pytest.mark.parametrize("case", ["plain", "mask-full-row", "causal+mask+bias", "gqa"])
def test_torch_sdpa_half_precision(torch_fast, case: str, dtype_name: str) -> None:
    torch = torch_fast
    q, k, v, options = _torch_case(torch, SDPA_CASES[case], getattr(torch, dtype_name))
    f = seqops.scaled_dot_product_attention
    assert seqops.explain(f, q, k, v, **options).chosen == "torch-sdpa"
    out = f(q, k, v, **options)
    with without("torch-fast"):
        expected = f(q, k, v, **options)
    assert out.dtype == q.dtype
    _close(out.float(), expected.float(), dtype_name)


def test_torch_sdpa_value_width_differs(torch_fast) -> None:
    torch = torch_fast
    q, k, v, options = _torch_case(torch, WIDE_VALUE_CASE, torch.float32)
    out = seqops.scaled_dot_product_attention(q, k, v, **options)
    with without("torch-fast"):
        expected = seqops.scaled_dot_product_attention(q, k, v, **options)
    _close(out, expected, "float32")


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"return_weights": True}, "return_weights=True"),
        ({"dropout_p": 0.5, "rng": 1}, "dropout with an explicit rng"),
    ],
)
def test_torch_sdpa_declines_with_reason(torch_fast, options: dict[str, Any], reason: str) -> None:
    q = torch_fast.randn(2, 5, 8)
    explanation = seqops.explain(seqops.scaled_dot_product_attention, q, q, q, **options)
    assert explanation.chosen != "torch-sdpa"
    assert any(label.startswith("torch-sdpa") and reason in d for label, d in explanation.decisions)
    assert reason in str(explanation)


def test_torch_sdpa_gradients_match_portable(torch_fast) -> None:
    torch = torch_fast
    q, k, v, options = _torch_case(torch, SDPA_CASES["causal+mask+bias"], torch.float64)
    inputs = [q, k, v, options["bias"]]

    def grads() -> list[Any]:
        leaves = [x.detach().clone().requires_grad_() for x in inputs]
        opts = {**options, "bias": leaves[3]}
        out = seqops.scaled_dot_product_attention(*leaves[:3], **opts)
        return list(torch.autograd.grad((out * out).sum(), leaves))

    fast = grads()
    with without("torch-fast"):
        expected = grads()
    for a, b in zip(fast, expected, strict=True):
        assert torch.isfinite(a).all()
        _close(a, b, "float64")


def test_torch_bad_input_gets_the_portable_error(torch_fast) -> None:
    torch = torch_fast
    bad_calls = [
        ((torch.randn(2, 5, 8), torch.randn(2, 7, 6), torch.randn(2, 7, 6)), {}),
        ((torch.randn(2, 5, 8),) * 3, {"mask": torch.ones(5, 5)}),
        ((torch.randn(2, 5, 8),) * 3, {"bias": torch.ones(4, 5, 5)}),
        ((torch.randn(2, 4, 5, 8), torch.randn(2, 3, 5, 8), torch.randn(2, 3, 5, 8)), {"enable_gqa": True}),
    ]
    for args, options in bad_calls:
        with pytest.raises((TypeError, ValueError)) as fast:
            seqops.scaled_dot_product_attention(*args, **options)
        with without("torch-fast"), pytest.raises(type(fast.value)) as portable:
            seqops.scaled_dot_product_attention(*args, **options)
        assert str(fast.value) == str(portable.value)
    xs, h = torch.randn(3, 2, 4), torch.zeros(2, 5)
    with pytest.raises(ValueError) as fast:
        seqops.lstm(xs, (h, h), torch.randn(4, 16), torch.randn(5, 20))
    with without("torch-fast"), pytest.raises(ValueError) as portable:
        seqops.lstm(xs, (h, h), torch.randn(4, 16), torch.randn(5, 20))
    assert str(fast.value) == str(portable.value)


# array-api-compat's lru_cache-wrapped helpers make Dynamo warn (harmless, not seqops' code).
@pytest.mark.filterwarnings("ignore:Dynamo detected a call to a `functools.lru_cache`")
def test_torch_compile_fullgraph_through_the_plugin(torch_fast) -> None:
    torch = torch_fast
    q, k, v, options = _torch_case(torch, SDPA_CASES["causal+mask"], torch.float32)
    xs, h0, c0, w_ih, w_hh, b = _recurrent_inputs(torch, (2,), 4, torch.float32, True)

    def f(q: Any, k: Any, v: Any, mask: Any, xs: Any, h0: Any, c0: Any) -> tuple[Any, Any]:
        attended = seqops.scaled_dot_product_attention(q, k, v, mask=mask, is_causal=True)
        hs, _ = seqops.lstm(xs, (h0, c0), w_ih, w_hh, b)
        return attended, hs

    args = (q, k, v, options["mask"], xs, h0, c0)
    # explain() first: it fills the implementation cache outside the trace (the portable
    # lstm's cached partial holds a bound method of the backend, which Dynamo cannot rebuild).
    assert seqops.explain(
        seqops.scaled_dot_product_attention, *args[:3], mask=args[3], is_causal=True
    ).chosen == ("torch-sdpa")
    assert seqops.explain(seqops.lstm, xs, (h0, c0), w_ih, w_hh, b).chosen == "torch-lstm"
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    for a, e in zip(compiled(*args), f(*args), strict=True):
        _close(a, e, "float32")


def _mha_inputs(torch: Any, dtype: Any, biases: bool = True) -> tuple[Any, ...]:
    def t(*shape: int) -> Any:
        return torch.from_numpy(rng.standard_normal(shape) * 0.5).to(dtype)

    params = seqops.MHAParams(
        t(6, 8), t(5, 8), t(5, 12), t(12, 6), *((t(8), t(8), t(12), t(6)) if biases else ())
    )
    return t(2, 4, 6), t(2, 7, 5), t(2, 7, 5), params


@pytest.mark.parametrize("dtype_name", ["float32", "float64", "bfloat16"])
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"is_causal": True},
        {"mask": "mask"},
        {"key_padding_mask": "kpm"},
        {"mask": "mask", "key_padding_mask": "kpm", "is_causal": True},
    ],
    ids=["plain", "causal", "mask", "kpm", "all"],
)
def test_torch_mha_matches_portable(torch_fast, options: dict[str, Any], dtype_name: str) -> None:
    torch = torch_fast
    query, key, value, params = _mha_inputs(torch, getattr(torch, dtype_name))
    real = {
        "mask": torch.from_numpy(_mask(2, 1, 4, 7)),
        "kpm": torch.from_numpy(rng.random((2, 7)) > 0.3),
    }
    opts = {name: real.get(value, value) for name, value in options.items()}
    f = seqops.multi_head_attention
    assert seqops.explain(f, query, key, value, params, num_heads=2, **opts).chosen == "torch-mha-sdpa"
    out = f(query, key, value, params, num_heads=2, **opts)
    with without("torch-fast"):
        expected = f(query, key, value, params, num_heads=2, **opts)
    assert out.dtype == query.dtype
    _close(out.double(), expected.double(), dtype_name)


def test_torch_mha_declines_weights_and_dropout(torch_fast) -> None:
    query, key, value, params = _mha_inputs(torch_fast, torch_fast.float32, biases=False)
    f = seqops.multi_head_attention
    explanation = seqops.explain(f, query, key, value, params, num_heads=2, need_weights=True)
    assert explanation.chosen == "portable" and "need_weights=True" in str(explanation)
    explanation = seqops.explain(f, query, key, value, params, num_heads=2, dropout_p=0.1, rng=0)
    assert explanation.chosen == "portable" and "dropout with an explicit rng" in str(explanation)


def _recurrent_inputs(
    torch: Any, batch: tuple[int, ...], gates: int, dtype: Any, bias: bool
) -> tuple[Any, ...]:
    size_in, hidden = 3, 4

    def t(*shape: int) -> Any:
        return torch.from_numpy(rng.standard_normal(shape) * 0.5).to(dtype)

    return (
        t(6, *batch, size_in),
        t(*batch, hidden),
        t(*batch, hidden),
        t(size_in, gates * hidden),
        t(hidden, gates * hidden),
        t(gates * hidden) if bias else None,
    )


BATCHES = [(), (2,), (2, 3)]


@pytest.mark.parametrize("dtype_name", ["float32", "float64"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("batch", BATCHES, ids=str)
def test_torch_lstm_matches_portable(torch_fast, batch: tuple[int, ...], bias: bool, dtype_name: str) -> None:
    torch = torch_fast
    xs, h0, c0, w_ih, w_hh, b = _recurrent_inputs(torch, batch, 4, getattr(torch, dtype_name), bias)
    assert seqops.explain(seqops.lstm, xs, (h0, c0), w_ih, w_hh, b).chosen == "torch-lstm"
    hs, (h, c) = seqops.lstm(xs, (h0, c0), w_ih, w_hh, b)
    with without("torch-fast"):
        hs_p, (h_p, c_p) = seqops.lstm(xs, (h0, c0), w_ih, w_hh, b)
    for a, e in ((hs, hs_p), (h, h_p), (c, c_p)):
        assert a.shape == e.shape and a.dtype == e.dtype
        _close(a, e, dtype_name)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("batch", BATCHES, ids=str)
def test_torch_rnn_matches_portable(torch_fast, batch: tuple[int, ...], nonlinearity: str) -> None:
    torch = torch_fast
    xs, h0, _, w_ih, w_hh, b = _recurrent_inputs(torch, batch, 1, torch.float64, True)
    options = {"nonlinearity": nonlinearity}
    assert seqops.explain(seqops.rnn, xs, h0, w_ih, w_hh, b, **options).chosen == "torch-rnn"
    hs, h = seqops.rnn(xs, h0, w_ih, w_hh, b, **options)
    with without("torch-fast"):
        hs_p, h_p = seqops.rnn(xs, h0, w_ih, w_hh, b, **options)
    _close(hs, hs_p, "float64")
    _close(h, h_p, "float64")


def test_torch_recurrent_declines_with_reason(torch_fast) -> None:
    torch = torch_fast
    xs, h0, c0, w_ih, w_hh, b = _recurrent_inputs(torch, (2,), 4, torch.bfloat16, True)
    explanation = seqops.explain(seqops.lstm, xs, (h0, c0), w_ih, w_hh, b)
    assert explanation.chosen == "portable" and "half precision" in str(explanation)
    xs, h0, c0, w_ih, w_hh, b = _recurrent_inputs(torch, (2,), 4, torch.float32, True)
    explanation = seqops.explain(seqops.lstm, xs[:0], (h0, c0), w_ih, w_hh, b)
    assert explanation.chosen == "portable" and "empty sequence" in str(explanation)
    xs, h0, _, w_ih, w_hh, b = _recurrent_inputs(torch, (0,), 1, torch.float32, True)
    explanation = seqops.explain(seqops.rnn, xs, h0, w_ih, w_hh, b)
    assert explanation.chosen == "portable" and "empty batch" in str(explanation)


def test_torch_lstm_gradients_match_portable(torch_fast) -> None:
    torch = torch_fast
    inputs = _recurrent_inputs(torch, (2,), 4, torch.float64, True)

    def grads() -> list[Any]:
        xs, h0, c0, w_ih, w_hh, b = leaves = [x.detach().clone().requires_grad_() for x in inputs]
        hs, (h, c) = seqops.lstm(xs, (h0, c0), w_ih, w_hh, b)
        return list(torch.autograd.grad((hs * hs).sum() + (c * c).sum(), leaves))

    fast = grads()
    with without("torch-fast"):
        expected = grads()
    for a, e in zip(fast, expected, strict=True):
        _close(a, e, "float64")


# -- jax ----------------------------------------------------------------------------------


def test_jax_fast_path_declines_on_cpu_by_default() -> None:
    jax = pytest.importorskip("jax")
    _plugin_or_skip("jax-fast")
    if jax.default_backend() != "cpu":
        pytest.skip(f"JAX runs on {jax.default_backend()}, not CPU")
    q = jax.numpy.ones((2, 4, 8), dtype=jax.numpy.float32)
    explanation = seqops.explain(seqops.scaled_dot_product_attention, q, q, q)
    assert explanation.chosen == "portable" and "on CPU the jitted portable attention is faster" in str(
        explanation
    )


@pytest.fixture
def jax_fast(monkeypatch: pytest.MonkeyPatch):
    jax = pytest.importorskip("jax")
    _plugin_or_skip("jax-fast")
    import seqops_jax_fast

    monkeypatch.setattr(seqops_jax_fast, "ACCEPT_ON_CPU", True)  # declined on CPU by default
    return jax


def _jax_case(jnp: Any, case: tuple[Any, ...], dtype: Any) -> tuple[Any, Any, Any, dict[str, Any]]:
    q, k, v, options = _case_data(case)

    def convert(x: np.ndarray, dt: Any) -> Any:
        return jnp.asarray(x) if dt is None else jnp.asarray(x, dtype=dt)

    return (*(convert(a, dtype) for a in (q, k, v)), _convert(convert, dtype, options))  # type: ignore[return-value]


@pytest.mark.parametrize("dtype_name", ["float32", "float16"])
@pytest.mark.parametrize("case", sorted(SDPA_CASES))
def test_jax_sdpa_matches_portable(jax_fast, case: str, dtype_name: str) -> None:
    jnp = jax_fast.numpy
    q, k, v, options = _jax_case(jnp, SDPA_CASES[case], getattr(jnp, dtype_name))
    out = _sdpa_against_portable("jax-fast", "jax-dot-product-attention", q, k, v, options, dtype_name)
    if "full-row" in case:
        assert bool(jnp.all(out[..., 1, :] == 0))


@pytest.mark.parametrize(
    ("case", "options", "dtype_name", "reason"),
    [
        ("plain", {}, "float64", "float64"),
        ("plain", {"return_weights": True}, "float32", "return_weights=True"),
        ("plain", {"dropout_p": 0.5, "rng": 1}, "float32", "dropout with an explicit rng"),
        ("wide-value", {}, "float32", "Ev != E"),
    ],
)
def test_jax_sdpa_declines_with_reason(
    jax_fast, case: str, options: dict[str, Any], dtype_name: str, reason: str
) -> None:
    jnp = jax_fast.numpy
    data = WIDE_VALUE_CASE if case == "wide-value" else SDPA_CASES[case]
    q, k, v, opts = _jax_case(jnp, data, getattr(jnp, dtype_name))
    f = seqops.scaled_dot_product_attention
    explanation = seqops.explain(f, q, k, v, **opts, **options)
    assert explanation.chosen != "jax-dot-product-attention" and reason in str(explanation)


def test_jax_sdpa_under_jit_and_grad(jax_fast) -> None:
    jax, jnp = jax_fast, jax_fast.numpy
    q, k, v, options = _jax_case(jnp, SDPA_CASES["causal+mask+bias"], jnp.float32)

    def loss(q: Any, k: Any, v: Any, bias: Any) -> Any:
        out = seqops.scaled_dot_product_attention(q, k, v, **{**options, "bias": bias})
        return jnp.sum(out * out)

    args = (q, k, v, options["bias"])
    value = jax.jit(loss)(*args)
    grads = jax.grad(loss, argnums=(0, 1, 2, 3))(*args)
    with without("jax-fast"):
        expected_value = loss(*args)
        expected_grads = jax.grad(loss, argnums=(0, 1, 2, 3))(*args)
    _close(value, expected_value, "float32")
    for a, e in zip(grads, expected_grads, strict=True):
        assert bool(jnp.all(jnp.isfinite(a)))
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=1e-4, atol=1e-5)


def test_jax_bad_input_gets_the_portable_error(jax_fast) -> None:
    jnp = jax_fast.numpy
    q = jnp.ones((2, 5, 8), dtype=jnp.float32)
    with pytest.raises(ValueError) as fast:
        seqops.scaled_dot_product_attention(q, q, q, mask=jnp.ones((3, 5, 5), dtype=bool))
    with without("jax-fast"), pytest.raises(ValueError) as portable:
        seqops.scaled_dot_product_attention(q, q, q, mask=jnp.ones((3, 5, 5), dtype=bool))
    assert str(fast.value) == str(portable.value)


def test_disabling_the_plugins_by_environment_gives_the_portable_path(torch_fast, jax_fast) -> None:
    code = (
        "import jax.numpy as jnp, torch, seqops\n"
        "q, j = torch.ones(2, 3, 4), jnp.ones((2, 3, 4), dtype=jnp.float32)\n"
        "f = seqops.scaled_dot_product_attention\n"
        "print(seqops.explain(f, q, q, q).chosen, seqops.explain(f, j, j, j).chosen)\n"
    )
    env = {**os.environ, "SEQOPS_DISABLE_PLUGINS": "torch-fast,jax-fast"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.split() == ["portable", "portable"]


# -- CuPy (needs a CUDA device) ----------------------------------------------------------------


@pytest.fixture
def cupy_fast() -> Any:
    availability = dict((b.name, ok) for b, ok in seqops.backends())["cupy"]
    if not availability:
        pytest.skip(f"backend 'cupy' unavailable: {availability.reason}")
    _plugin_or_skip("cupy-fast")
    import cupy

    return cupy


def _cupy_recurrent_inputs(cupy: Any, batch: tuple[int, ...], dtype: Any, bias: bool) -> tuple[Any, ...]:
    size_in, hidden = 5, 6

    def c(*shape: int) -> Any:
        return cupy.asarray(rng.standard_normal(shape) * 0.5, dtype=dtype)

    return (
        c(7, *batch, size_in),
        c(*batch, hidden),
        c(*batch, hidden),
        c(size_in, 4 * hidden),
        c(hidden, 4 * hidden),
        c(4 * hidden) if bias else None,
    )


@pytest.mark.parametrize("dtype_name", ["float32", "float64"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("batch", BATCHES, ids=str)
def test_cupy_lstm_matches_portable(cupy_fast, batch: tuple[int, ...], bias: bool, dtype_name: str) -> None:
    cupy = cupy_fast
    xs, h0, c0, w_ih, w_hh, b = _cupy_recurrent_inputs(cupy, batch, getattr(cupy, dtype_name), bias)
    assert seqops.explain(seqops.lstm, xs, (h0, c0), w_ih, w_hh, b).chosen == "cupy-lstm"
    hs, (h, c) = seqops.lstm(xs, (h0, c0), w_ih, w_hh, b)
    with without("cupy-fast"):
        hs_p, (h_p, c_p) = seqops.lstm(xs, (h0, c0), w_ih, w_hh, b)
    for a, e in ((hs, hs_p), (h, h_p), (c, c_p)):
        assert isinstance(a, cupy.ndarray) and a.shape == e.shape and a.dtype == e.dtype
        np.testing.assert_allclose(cupy.asnumpy(a), cupy.asnumpy(e), **_tol(dtype_name))


def test_cupy_lstm_declines_with_reason(cupy_fast) -> None:
    cupy = cupy_fast
    xs, h0, c0, w_ih, w_hh, b = _cupy_recurrent_inputs(cupy, (2,), cupy.float16, True)
    explanation = seqops.explain(seqops.lstm, xs, (h0, c0), w_ih, w_hh, b)
    assert explanation.chosen == "portable" and "half precision" in str(explanation)
    xs, h0, c0, w_ih, w_hh, b = _cupy_recurrent_inputs(cupy, (2,), cupy.float32, True)
    explanation = seqops.explain(seqops.lstm, xs[:0], (h0, c0), w_ih, w_hh, b)
    assert explanation.chosen == "portable" and "empty sequence" in str(explanation)


def test_the_cupy_plugin_imports_without_cupy() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import sys, seqops_cupy_fast; print('cupy' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "False"
