"""Check mode (``SEQOPS_CHECK_PLUGINS=1`` / ``set_check_plugins``): every fast-path call is
compared with the portable path and a disagreement raises, naming the implementation."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

import seqops
from seqops._checking import PluginDisagreement
from seqops._plugins import checking_plugins, set_check_plugins


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    z = x.astype(np.float32)
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


class Wrong:
    """NumPy fast paths that are wrong on purpose: softmax scaled by ``factor``, greedy
    returning the argmin, a reparameterize ignoring the noise, a sampler past the vocabulary."""

    def __init__(self, factor: float = 1.01, dtype: Any = None) -> None:
        self.factor, self.dtype, self.calls = factor, dtype, 0

    def softmax(self, backend: seqops.Backend, x: Any, /, *, axis: int) -> Any:
        self.calls += 1
        xp = backend.namespace()
        z = xp.astype(x, xp.float32)
        e = xp.exp(z - xp.max(z, axis=axis, keepdims=True))
        return xp.astype(e / xp.sum(e, axis=axis, keepdims=True) * self.factor, self.dtype or x.dtype)

    @staticmethod
    def greedy(backend: seqops.Backend, logits: Any, /) -> Any:
        return np.argmin(logits, axis=-1)

    @staticmethod
    def reparameterize(backend: seqops.Backend, mu: Any, log_var: Any, /, **_: Any) -> Any:
        return np.broadcast_to(mu + 0 * log_var, _["shape"]).copy()

    @staticmethod
    def sample_logits(backend: seqops.Backend, logits: Any, /, **_: Any) -> Any:
        return np.full(logits.shape[:-1], logits.shape[-1])

    @seqops.hookimpl
    def seqops_implementations(self, backend: seqops.Backend) -> list[seqops.Implementation] | None:
        if backend.name not in ("numpy", "jax", "torch"):
            return None
        ops = seqops.ops
        found = [seqops.Implementation(ops.softmax, "wrong-softmax", self.softmax)]
        if backend.name == "numpy":
            found += [
                seqops.Implementation(ops.greedy, "wrong-greedy", self.greedy),
                seqops.Implementation(ops.reparameterize, "wrong-reparameterize", self.reparameterize),
                seqops.Implementation(ops.sample_logits, "wrong-sample", self.sample_logits),
            ]
        return found


@pytest.fixture
def wrong():
    plugin = Wrong()
    name = seqops.register_plugin(plugin, name="wrong")
    yield plugin
    seqops.unregister_plugin(name)


@pytest.fixture
def check_mode():
    old = set_check_plugins(True)
    yield
    set_check_plugins(old)


X = np.random.default_rng(0).standard_normal((3, 7)).astype(np.float32)


def test_a_wrong_fast_path_raises_naming_it(wrong: Wrong, check_mode: None) -> None:
    with pytest.raises(PluginDisagreement) as raised:
        seqops.softmax(X)
    message = str(raised.value)
    assert "'softmax' on backend 'numpy'" in message
    assert "implementation 'wrong-softmax' of plugin 'wrong'" in message
    assert "float32 normwise relative error 0.01 > tolerance 1e-05" in message
    e = raised.value
    assert isinstance(e, AssertionError)
    assert (e.op, e.implementation, e.plugin, e.backend, e.dtype) == (
        "softmax",
        "wrong-softmax",
        "wrong",
        "numpy",
        "float32",
    )
    assert e.error == pytest.approx(0.01, rel=1e-4) and e.tolerance == 1e-5
    assert wrong.calls == 1


def test_check_mode_off_returns_the_wrong_result_unchecked(wrong: Wrong) -> None:
    assert not checking_plugins()
    np.testing.assert_allclose(seqops.softmax(X), _softmax(X, -1) * 1.01, rtol=1e-6)
    assert not hasattr(seqops.implementations("softmax", "numpy")[0].fn, "__wrapped__")


def test_switching_rebuilds_the_tables(wrong: Wrong) -> None:
    assert set_check_plugins(True) is False
    try:
        first, *_, portable = seqops.implementations("softmax", "numpy")  # numpy-softmax between
        assert first.fn.__wrapped__ == wrong.softmax  # the fast path, wrapped
        assert not hasattr(portable.fn, "__wrapped__")  # the reference itself is not
        assert seqops.ops.softmax.mismatch(first.fn) is None  # the contract's signature kept
    finally:
        assert set_check_plugins(None) is True  # back to the environment's default: off
    assert seqops.implementations("softmax", "numpy")[0].fn == wrong.softmax


def test_half_precision_uses_the_half_tolerance(wrong: Wrong, check_mode: None) -> None:
    wrong.factor = 1.001  # an error of 1e-3: within float16's 1e-2, far beyond float32's 1e-5
    seqops.softmax(X.astype(np.float16))
    with pytest.raises(PluginDisagreement, match=r"float32 normwise relative error 0.001 > tolerance 1e-05"):
        seqops.softmax(X)
    wrong.factor = 1.05
    with pytest.raises(
        PluginDisagreement, match=r"float16 normwise relative error 0.05\d* > tolerance 0.01"
    ) as raised:
        seqops.softmax(X.astype(np.float16))
    assert raised.value.dtype == "float16" and raised.value.tolerance == 1e-2


def test_another_dtype_is_a_disagreement(wrong: Wrong, check_mode: None) -> None:
    wrong.factor, wrong.dtype = 1.0, np.float64
    with pytest.raises(
        PluginDisagreement, match=r"it returns shape \(3, 7\) float64; the portable path \(3, 7\) float32"
    ):
        seqops.softmax(X)


def test_integer_outputs_must_be_equal(wrong: Wrong, check_mode: None) -> None:
    with pytest.raises(
        PluginDisagreement, match="'wrong-greedy'.*int64 fraction of entries differing 1 > tolerance 0"
    ):
        seqops.greedy(X)


def test_random_draws_are_not_compared_but_given_noise_is(wrong: Wrong, check_mode: None) -> None:
    mu, log_var = X[0], X[1]
    seqops.reparameterize(mu, log_var, rng=0)  # two implementations need not draw alike
    eps = np.ones_like(mu)
    with pytest.raises(PluginDisagreement, match="'wrong-reparameterize'"):
        seqops.reparameterize(mu, log_var, eps=eps)


def test_sampled_tokens_are_checked_for_validity(wrong: Wrong, check_mode: None) -> None:
    with pytest.raises(PluginDisagreement, match=r"'wrong-sample'.*token ids outside \[0, 7\): 7..7"):
        seqops.sample_logits(X, rng=0)
    seqops.unregister_plugin("wrong")
    try:
        assert [i.name for i in seqops.implementations("sample_logits", "numpy")][0] == "numpy-topk-sample"
        assert seqops.sample_logits(X, rng=0, top_k=2).shape == (3,)  # numpy-fast's sampler is valid
    finally:
        seqops.register_plugin(wrong, name="wrong")


def test_correct_fast_paths_pass_silently(check_mode: None, torch: Any) -> None:
    assert seqops.explain(seqops.silu, X).chosen == "numpy-silu"
    np.testing.assert_allclose(seqops.silu(X), X / (1 + np.exp(-X)), rtol=1e-6)
    t = torch.from_numpy(X)
    for dtype in (torch.float32, torch.float16, torch.float64):
        assert seqops.explain(seqops.softmax, t.to(dtype)).chosen == "torch-softmax"
        seqops.softmax(t.to(dtype))
    # nested outputs: torch-lstm returns (ys, (h, c))
    rng = np.random.default_rng(1)
    xs, w_ih, w_hh = (
        torch.from_numpy(rng.standard_normal(s).astype(np.float32)) for s in ((5, 2, 3), (3, 16), (4, 16))
    )
    state = (torch.zeros(2, 4), torch.zeros(2, 4))
    assert seqops.explain(seqops.lstm, xs, state, w_ih, w_hh, None).chosen == "torch-lstm"
    seqops.lstm(xs, state, w_ih, w_hh, None)


def test_traced_calls_are_not_compared(jax: Any, torch: Any) -> None:
    plugin = Wrong()
    seqops.register_plugin(plugin, name="wrong")
    old = set_check_plugins(True)
    try:
        x, t = jax.numpy.asarray(X), torch.from_numpy(X)
        for library, array in (("jax", x), ("torch", t)):
            assert seqops.explain(seqops.softmax, array).chosen == "wrong-softmax"
            with pytest.raises(PluginDisagreement, match=f"'softmax' on backend '{library}'"):
                seqops.softmax(array)
        # tracers and wrapped tensors: the values cannot be read, the result comes back unchecked
        traced = [
            jax.jit(seqops.softmax)(x),
            jax.vmap(seqops.softmax)(x),
            torch.func.vmap(seqops.softmax)(t),
            torch.compile(seqops.softmax, backend="aot_eager", fullgraph=True)(t),
        ]
        for out in traced:
            np.testing.assert_allclose(np.asarray(out), _softmax(X, -1) * 1.01, rtol=1e-6)
    finally:
        torch._dynamo.reset()  # no compiled frame of the wrong plugin outlives the test
        set_check_plugins(old)
        seqops.unregister_plugin("wrong")


@pytest.mark.parametrize(("value", "on"), [("1", True), ("0", False), (None, False)])
def test_the_environment_variable_turns_it_on(value: str | None, on: bool) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SEQOPS_CHECK_PLUGINS"}
    if value is not None:
        env["SEQOPS_CHECK_PLUGINS"] = value
    code = (
        "import seqops\n"
        "from seqops._plugins import checking_plugins\n"
        "fn = seqops.implementations('silu', 'numpy')[0].fn\n"
        "print(checking_plugins(), hasattr(fn, '__wrapped__'))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.split() == [str(on), str(on)]
