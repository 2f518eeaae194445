"""Peer tests of the small "modern blocks" (issue 12) against the frameworks' own ops.

* ``rms_norm`` vs ``torch.nn.functional.rms_norm`` (float32, float64; float16/bfloat16 against
  torch computed in float32, then cast: the contract computes half precision in float32);
* ``relu``, ``silu``, ``gelu(approximate=...)`` vs ``torch.nn.functional`` and ``jax.nn``
  (``jax.nn.gelu`` defaults to the tanh form: its ``approximate=False`` is our ``"none"``), and
  ``feed_forward(activation="silu" | "swish")``;
* ``gated_feed_forward`` vs a hand-written torch SwiGLU/GeGLU (the Llama MLP formula
  ``down(act(gate(x)) * up(x))`` with ``torch.nn.Linear`` layers), outputs and gradients;
* ``filter_logits`` vs Hugging Face's ``TemperatureLogitsWarper``, ``TopKLogitsWarper``,
  ``TopPLogitsWarper`` chained in that order (skipped without ``transformers``): ties at the
  k-th value (both keep them all), top-p a few ulps either side of every probability-mass
  boundary (exactly the same tokens) and exactly at it (only the boundary token may differ:
  the last bit of the softmax differs between torch's kernel and ours), exact ties inside
  top-p (we keep a superset, as documented);
* the composites dispatch these ops (a fast path of an activation reaches the feed-forward
  blocks; one of ``filter_logits`` reaches ``sample_logits`` and ``decode``);
* validation: errors name the argument; ``filter_logits`` and ``sample_logits`` share one set
  of rules.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import assert_kept
from seqops_conformance import references as ref

import seqops

D, FF, D_OUT = 8, 16, 6


@pytest.fixture
def rng():
    return np.random.default_rng(20261212)


@pytest.fixture(scope="module")
def hf():
    """Hugging Face's three warpers chained (temperature → top-k → top-p) on a (rows, V)
    torch tensor, or a skip naming the reason."""
    try:
        from transformers.generation.logits_process import (
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )
    except Exception as exc:  # noqa: BLE001 - any import failure is a reason to skip
        pytest.skip(f"transformers is not importable ({type(exc).__name__}: {exc})")
    import torch

    def warp(scores, *, temperature=1.0, top_k=None, top_p=None, min_tokens_to_keep=1):
        ids = torch.zeros((scores.shape[0], 1), dtype=torch.long)
        scores = TemperatureLogitsWarper(temperature)(ids, scores.clone())
        if top_k is not None:
            scores = TopKLogitsWarper(top_k, min_tokens_to_keep=min_tokens_to_keep)(ids, scores)
        if top_p is not None:
            scores = TopPLogitsWarper(top_p, min_tokens_to_keep=min_tokens_to_keep)(ids, scores)
        return scores

    return warp


# -- rms_norm ------------------------------------------------------------------------------------
@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("dtype_name,tol", [("float32", 2e-6), ("float64", 1e-13)])
def test_rms_norm_vs_torch(torch, rng, affine, dtype_name, tol):
    F = torch.nn.functional
    dtype = getattr(torch, dtype_name)
    x = torch.tensor(rng.standard_normal((3, 4, D)) * 3 + 1, dtype=dtype)
    w = torch.tensor(1 + 0.2 * rng.standard_normal(D), dtype=dtype) if affine else None
    for eps in (1e-6, 1e-2, 0.0):
        ours = seqops.rms_norm(x, w, eps=eps)
        assert ours.dtype == dtype and ours.shape == x.shape
        torch.testing.assert_close(ours, F.rms_norm(x, (D,), w, eps), rtol=tol, atol=tol)
    # the default eps is Llama's 1e-6 (torch's default is the dtype's machine epsilon)
    torch.testing.assert_close(seqops.rms_norm(x, w), F.rms_norm(x, (D,), w, 1e-6), rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype_name", ["float16", "bfloat16"])
def test_rms_norm_half_is_torch_in_float32_then_cast(torch, rng, dtype_name):
    F = torch.nn.functional
    dtype = getattr(torch, dtype_name)
    x = torch.tensor(rng.standard_normal((4, 16, D)) * 3 + 1).to(dtype)
    w = torch.tensor(1 + 0.2 * rng.standard_normal(D)).to(dtype)
    ours = seqops.rms_norm(x, w)
    theirs = F.rms_norm(x.float(), (D,), w.float(), 1e-6).to(dtype)
    assert ours.dtype == dtype
    # Both are float32 results rounded once: at most one ulp apart (where the two float32
    # values straddle a rounding boundary), and equal almost everywhere.
    ulp = torch.finfo(dtype).eps
    torch.testing.assert_close(ours.float(), theirs.float(), rtol=ulp, atol=0.0)
    assert (ours == theirs).float().mean().item() > 0.9


def test_rms_norm_reference_and_zero_rows():
    x = np.array([[3.0, 4.0], [0.0, 0.0]])
    np.testing.assert_allclose(ref.rms_norm(x[:1], eps=0.0)[0], [3.0, 4.0] / np.sqrt(12.5))
    out = seqops.rms_norm(x)
    assert np.all(np.isfinite(out)) and np.all(out[1] == 0.0)  # eps keeps a zero row finite


def test_rms_norm_bad_input():
    x = np.ones((2, 4))
    with pytest.raises(ValueError, match=r"`weight` must have shape \(4,\); got \(3,\)"):
        seqops.rms_norm(x, np.ones(3))
    with pytest.raises(TypeError, match="eps must be a Python number; got bool"):
        seqops.rms_norm(x, eps=True)
    with pytest.raises(ValueError, match="eps must be >= 0; got -1.0"):
        seqops.rms_norm(x, eps=-1.0)
    with pytest.raises(TypeError, match="`x` must be a real floating array; got dtype int64"):
        seqops.rms_norm(np.ones((2, 4), dtype=np.int64))
    with pytest.raises(TypeError, match="`x` and `weight` must share one dtype"):
        seqops.rms_norm(x, np.ones(4, dtype=np.float32))
    with pytest.raises(ValueError, match=r"at least 1 dimensions \(\.\.\., E\); got shape \(\)"):
        seqops.rms_norm(np.ones(()))


# -- relu, silu, gelu ------------------------------------------------------------------------------
def _activation_inputs(rng):
    """A grid through the curved part, random normals, and large magnitudes (no overflow)."""
    grid = np.linspace(-8.0, 8.0, 97)
    large = np.array([-1e4, -300.0, -90.0, -30.0, 30.0, 90.0, 300.0, 1e4])
    return np.concatenate([grid, 2.0 * rng.standard_normal(31), large]).reshape(4, 34)


# (our call, torch's, jax's)
ACTIVATIONS = {
    "relu": (seqops.relu, lambda F, t: F.relu(t), lambda jnn, a: jnn.relu(a)),
    "silu": (seqops.silu, lambda F, t: F.silu(t), lambda jnn, a: jnn.silu(a)),
    "gelu": (seqops.gelu, lambda F, t: F.gelu(t), lambda jnn, a: jnn.gelu(a, approximate=False)),
    "gelu tanh": (
        lambda x: seqops.gelu(x, approximate="tanh"),
        lambda F, t: F.gelu(t, approximate="tanh"),
        lambda jnn, a: jnn.gelu(a, approximate=True),
    ),
}


@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("dtype_name,tol", [("float32", 2e-6), ("float64", 1e-13)])
def test_activations_vs_torch(torch, rng, name, dtype_name, tol):
    ours_fn, torch_fn, _ = ACTIVATIONS[name]
    dtype = getattr(torch, dtype_name)
    x = torch.tensor(_activation_inputs(rng), dtype=dtype)
    ours = ours_fn(x)
    assert isinstance(ours, torch.Tensor) and ours.dtype == dtype and torch.isfinite(ours).all()
    torch.testing.assert_close(ours, torch_fn(torch.nn.functional, x), rtol=tol, atol=tol)


@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("dtype_name", ["float16", "bfloat16"])
def test_activations_half_vs_torch_in_float32_then_cast(torch, rng, name, dtype_name):
    ours_fn, torch_fn, _ = ACTIVATIONS[name]
    dtype = getattr(torch, dtype_name)
    x = torch.tensor(_activation_inputs(rng)).to(dtype)
    ours = ours_fn(x)
    assert ours.dtype == dtype
    theirs = torch_fn(torch.nn.functional, x.float()).to(dtype)
    ulp = torch.finfo(dtype).eps
    torch.testing.assert_close(ours.float(), theirs.float(), rtol=ulp, atol=1e-6)


@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("dtype_name,tol", [("float32", 2e-6), ("float64", 1e-13)])
def test_activations_vs_jax(jax, rng, name, dtype_name, tol):
    ours_fn, _, jax_fn = ACTIVATIONS[name]
    jnp = jax.numpy
    dtype = getattr(jnp, dtype_name)
    x = jnp.asarray(_activation_inputs(rng), dtype=dtype)
    ours = ours_fn(x)
    assert isinstance(ours, jax.Array) and ours.dtype == dtype
    np.testing.assert_allclose(np.asarray(ours), np.asarray(jax_fn(jax.nn, x)), rtol=tol, atol=tol)


@pytest.mark.parametrize("name", ["silu", "gelu", "gelu tanh"])
def test_activation_gradients_vs_torch_autograd(torch, rng, name):
    """Finite everywhere (silu's sigmoid from exp(-|x|): no inf/inf at large |x|) and equal
    to torch's backward."""
    ours_fn, torch_fn, _ = ACTIVATIONS[name]
    x = torch.tensor(_activation_inputs(rng), dtype=torch.float64, requires_grad=True)
    (g_ours,) = torch.autograd.grad(ours_fn(x).sum(), x)
    (g_theirs,) = torch.autograd.grad(torch_fn(torch.nn.functional, x).sum(), x)
    assert torch.isfinite(g_ours).all()
    torch.testing.assert_close(g_ours, g_theirs, rtol=1e-12, atol=1e-12)


def test_activation_references_closed_forms():
    x = np.array([-2.0, 0.0, 1.5])
    np.testing.assert_allclose(ref.relu(x), [0.0, 0.0, 1.5])
    np.testing.assert_allclose(ref.silu(x), x / (1 + np.exp(-x)), rtol=1e-15)
    assert ref.silu(np.array([-1e4]))[0] == 0.0  # no overflow
    np.testing.assert_allclose(ref.gelu(np.array([1.0])), [0.8413447460685429], rtol=1e-15)


def test_activations_bad_input():
    with pytest.raises(ValueError, match="`approximate` must be one of 'none', 'tanh'; got 'erf'"):
        seqops.gelu(np.ones(3), approximate="erf")
    with pytest.raises(ValueError, match="`approximate` must be one of 'none', 'tanh'; got True"):
        seqops.gelu(np.ones(3), approximate=True)  # type: ignore[arg-type]
    for fn in (seqops.relu, seqops.silu, seqops.gelu):
        with pytest.raises(TypeError, match="`x` must be a real floating array; got dtype int64"):
            fn(np.ones(3, dtype=np.int64))


@pytest.mark.parametrize("activation", ["silu", "swish"])
@pytest.mark.parametrize("dtype_name,tol", [("float32", 1e-5), ("float64", 1e-12)])
def test_feed_forward_silu_vs_torch(torch, rng, activation, dtype_name, tol):
    F = torch.nn.functional
    dtype = getattr(torch, dtype_name)
    x = torch.tensor(rng.standard_normal((3, 4, D)) * 2, dtype=dtype)
    w1, w2 = (torch.tensor(rng.standard_normal(s) * 0.5, dtype=dtype) for s in ((D, FF), (FF, D)))
    b1, b2 = (torch.tensor(rng.standard_normal(n), dtype=dtype) for n in (FF, D))
    ours = seqops.feed_forward(x, w1, b1, w2, b2, activation=activation)
    torch.testing.assert_close(ours, F.silu(x @ w1 + b1) @ w2 + b2, rtol=tol, atol=tol)


# -- gated_feed_forward ------------------------------------------------------------------------------
class _GatedMLP:
    """The Llama MLP, ``down_proj(act_fn(gate_proj(x)) * up_proj(x))``, written out in torch."""

    def __init__(self, torch, act, *, bias, dtype, seed=0):
        torch.manual_seed(seed)
        linear = torch.nn.Linear
        self.gate_proj = linear(D, FF, bias=bias, dtype=dtype)
        self.up_proj = linear(D, FF, bias=bias, dtype=dtype)
        self.down_proj = linear(FF, D_OUT, bias=bias, dtype=dtype)
        self.act_fn = act

    def __call__(self, x):
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))

    def ours(self, x, activation):
        """Our call on the same weights (``torch.nn.Linear`` computes ``x @ weight.T + bias``)."""
        g, u, d = self.gate_proj, self.up_proj, self.down_proj
        return seqops.gated_feed_forward(
            x, g.weight.T, u.weight.T, d.weight.T, g.bias, u.bias, d.bias, activation=activation
        )

    def parameters(self):
        return [p for m in (self.gate_proj, self.up_proj, self.down_proj) for p in m.parameters()]


GATED = {
    # our activation name -> torch's activation (SwiGLU: Llama; GeGLU: T5 v1.1 exact, Gemma tanh)
    "silu": lambda F: F.silu,
    "swish": lambda F: F.silu,
    "gelu": lambda F: F.gelu,
    "gelu_tanh": lambda F: lambda t: F.gelu(t, approximate="tanh"),
    "relu": lambda F: F.relu,
}


@pytest.mark.parametrize("activation", GATED)
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("dtype_name,tol", [("float32", 1e-5), ("float64", 1e-12)])
def test_gated_feed_forward_vs_torch_mlp(torch, rng, activation, bias, dtype_name, tol):
    dtype = getattr(torch, dtype_name)
    mlp = _GatedMLP(torch, GATED[activation](torch.nn.functional), bias=bias, dtype=dtype)
    x = torch.tensor(rng.standard_normal((2, 5, D)), dtype=dtype)
    with torch.no_grad():
        ours, theirs = mlp.ours(x, activation), mlp(x)
    assert ours.dtype == dtype and ours.shape == (2, 5, D_OUT)
    torch.testing.assert_close(ours, theirs, rtol=tol, atol=tol)


def test_gated_feed_forward_default_is_swiglu_and_gradients_match_torch(torch, rng):
    F = torch.nn.functional
    mlp = _GatedMLP(torch, F.silu, bias=True, dtype=torch.float64)
    x = torch.tensor(rng.standard_normal((2, 5, D)), requires_grad=True)
    g, u, d = mlp.gate_proj, mlp.up_proj, mlp.down_proj
    ours = seqops.gated_feed_forward(x, g.weight.T, u.weight.T, d.weight.T, g.bias, u.bias, d.bias)
    cotangent = torch.tensor(rng.standard_normal((2, 5, D_OUT)))
    inputs = [x, *mlp.parameters()]
    grads_ours = torch.autograd.grad(ours, inputs, cotangent)
    grads_theirs = torch.autograd.grad(mlp(x), inputs, cotangent)
    for a, b in zip(grads_ours, grads_theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_gated_feed_forward_bad_input():
    x, wg, wd = np.ones((3, 4)), np.ones((4, 8)), np.ones((8, 5))
    with pytest.raises(ValueError, match=r"`w_up` must have shape \(4, 8\); got \(4, 7\)"):
        seqops.gated_feed_forward(x, wg, np.ones((4, 7)), wd)
    with pytest.raises(ValueError, match=r"`w_gate` must have shape \(4, 8\); got \(3, 8\)"):
        seqops.gated_feed_forward(x, np.ones((3, 8)), np.ones((3, 8)), wd)
    with pytest.raises(ValueError, match=r"`w_down` must have shape \(8, 5\); got \(7, 5\)"):
        seqops.gated_feed_forward(x, wg, wg, np.ones((7, 5)))
    with pytest.raises(ValueError, match=r"`b_up` must have shape \(8,\); got \(4,\)"):
        seqops.gated_feed_forward(x, wg, wg, wd, b_up=np.ones(4))
    with pytest.raises(ValueError, match=r"`b_down` must have shape \(5,\); got \(8,\)"):
        seqops.gated_feed_forward(x, wg, wg, wd, None, None, np.ones(8))
    with pytest.raises(ValueError, match=r"`w_gate` must have at least 2 dimensions \(D, F\)"):
        seqops.gated_feed_forward(x, np.ones(4), wg, wd)
    with pytest.raises(ValueError, match="`activation` must be one of .*; got 'swiglu'"):
        seqops.gated_feed_forward(x, wg, wg, wd, activation="swiglu")
    with pytest.raises(TypeError, match="must share one dtype"):
        seqops.gated_feed_forward(x, wg, wg.astype(np.float32), wd)


# -- the composites dispatch these ops -----------------------------------------------------------------
class _Recorder:
    """A NumPy "fast path" of one op that records its calls and computes the contract."""

    def __init__(self, op: Any, fn: Any) -> None:
        self.op, self.fn, self.calls = op, fn, 0

    def run(self, backend: Any, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.fn(*args, **kwargs)

    @seqops.hookimpl
    def seqops_implementations(self, backend: seqops.Backend) -> list[seqops.Implementation] | None:
        if backend.name != "numpy":
            return None
        return [seqops.Implementation(self.op, "recorder", self.run)]


def _silu_numpy(x):
    return x / (1.0 + np.exp(-x))


def test_an_activation_fast_path_reaches_the_feed_forward_blocks(rng):
    x, w1, w2 = rng.standard_normal((2, 3, D)), rng.standard_normal((D, FF)), rng.standard_normal((FF, D))
    calls = {
        "feed_forward": lambda: seqops.feed_forward(x, w1, None, w2, None, activation="swish"),
        "gated_feed_forward": lambda: seqops.gated_feed_forward(x, w1, w1, w2),
    }
    expected = {name: run() for name, run in calls.items()}
    recorder = _Recorder(seqops.ops.silu, _silu_numpy)
    name = seqops.register_plugin(recorder, name="silu-recorder")
    try:
        for op, run in calls.items():
            recorder.calls = 0
            np.testing.assert_allclose(run(), expected[op], rtol=1e-12, atol=1e-12)
            assert recorder.calls == 1, f"{op} did not dispatch silu"
        assert seqops.explain(seqops.silu, x).chosen == "recorder"
    finally:
        seqops.unregister_plugin(name)
    ops = seqops.ops
    assert ops.feed_forward.parts == ops.gated_feed_forward.parts == (ops.relu, ops.silu, ops.gelu)


def test_a_filter_fast_path_reaches_sampling_and_decoding(rng):
    logits = rng.standard_normal((4, 10))
    table = rng.standard_normal((10, 10))

    def filtered(logits, *, temperature, top_k, top_p, min_tokens_to_keep):
        # keeps token 3 only: every draw must then be 3
        out = np.full(logits.shape, -np.inf)
        out[..., 3] = 0.0
        return out

    recorder = _Recorder(seqops.ops.filter_logits, filtered)
    name = seqops.register_plugin(recorder, name="filter-recorder")
    try:
        # top_p: the portable sampling (numpy-fast draws top-k only itself)
        assert seqops.sample_logits(logits, rng=0, top_k=5, top_p=0.9).tolist() == [3, 3, 3, 3]
        assert recorder.calls == 1
        tokens = seqops.decode(
            lambda t, s: (table[t], s), None, np.array([0, 1]), max_new_tokens=3, strategy="sample", rng=0
        )
        assert tokens.tolist() == [[3, 3, 3], [3, 3, 3]] and recorder.calls == 4
    finally:
        seqops.unregister_plugin(name)
    assert seqops.ops.sample_logits.parts == (seqops.ops.filter_logits,)


# -- filter_logits vs Hugging Face ----------------------------------------------------------------------
def _kept(x):
    return np.isfinite(np.asarray(x))


def _assert_same_filter(torch, ours, theirs):
    """The same tokens kept, with the same (bitwise) values: both compute logits / temperature."""
    ours = torch.as_tensor(np.asarray(ours)) if not isinstance(ours, torch.Tensor) else ours
    assert torch.equal(torch.isfinite(ours), torch.isfinite(theirs))
    assert torch.equal(ours[torch.isfinite(ours)], theirs[torch.isfinite(theirs)])


@pytest.mark.parametrize("library", ["torch", "numpy"])
@pytest.mark.parametrize("temperature", [1.0, 0.5, 0.7, 2.0])
def test_filter_logits_top_k_ties_vs_hugging_face(torch, hf, library, temperature):
    """Small integers: many ties at the k-th value; both keep every tied token."""
    scores = torch.tensor(np.random.default_rng(5).integers(-3, 4, (16, 12)), dtype=torch.float32)
    logits = scores if library == "torch" else scores.numpy()
    for k in range(1, 13):
        for keep in (1, 3):
            options = {"temperature": temperature, "top_k": k, "min_tokens_to_keep": keep}
            ours = seqops.filter_logits(logits, **options)
            theirs = hf(scores, **options)
            _assert_same_filter(torch, ours, theirs)
            n = min(max(k, keep), scores.shape[-1])
            kth = torch.sort(scores, descending=True).values[:, n - 1 : n]
            assert torch.equal(torch.isfinite(theirs), scores >= kth)  # ties kept: often more than k
    assert (torch.isfinite(hf(scores, top_k=2)).sum(-1) > 2).any()


def _boundaries(torch, scores, temperature, top_k, min_tokens_to_keep):
    """For each row, ``1 - cum_j`` for every position j of HF's ascending cumulative
    probabilities (after temperature and top-k): the top-p values at which token j's fate flips."""
    z = scores / temperature
    if top_k is not None:
        kth = torch.topk(z, max(top_k, min_tokens_to_keep)).values[..., -1:]
        z = z.masked_fill(z < kth, -float("inf"))
    cum = torch.sort(z).values.softmax(-1).cumsum(-1)
    return [[1.0 - float(c) for c in row] for row in cum]


@pytest.mark.parametrize("library", ["torch", "numpy"])
@pytest.mark.parametrize(
    "options",
    [
        {"temperature": 1.0},
        {"temperature": 0.7},
        {"temperature": 1.3, "min_tokens_to_keep": 3},
        {"temperature": 0.8, "top_k": 7},
    ],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()),
)
def test_filter_logits_top_p_at_mass_boundaries_vs_hugging_face(torch, hf, library, options):
    """Continuous logits (no ties). A few ulps either side of each boundary ``1 - cum_j``:
    exactly Hugging Face's tokens and values. Exactly at it, the last bit of the two
    softmaxes decides, so only that boundary token may differ."""
    scores = torch.tensor(np.random.default_rng(11).standard_normal((12, 10)) * 2.0, dtype=torch.float32)
    temperature, top_k = options["temperature"], options.get("top_k")
    keep = options.get("min_tokens_to_keep", 1)
    delta = 8 * torch.finfo(torch.float32).eps  # 8 ulps of 1: far above the softmaxes' differences
    exact = 0
    for i, row_boundaries in enumerate(_boundaries(torch, scores, temperature, top_k, keep)):
        row = scores[i : i + 1]
        logits = row if library == "torch" else row.numpy()
        order = torch.argsort(row[0] / temperature)
        for j, boundary in enumerate(row_boundaries):
            for top_p in (boundary - delta, boundary + delta, boundary):
                if not 0.0 < top_p <= 1.0:
                    continue
                ours = seqops.filter_logits(logits, top_p=top_p, **options)
                theirs = hf(row, top_p=top_p, **options)
                if top_p != boundary:
                    _assert_same_filter(torch, ours, theirs)
                    continue
                differ = np.flatnonzero(_kept(ours)[0] != torch.isfinite(theirs)[0].numpy())
                assert set(differ.tolist()) <= {int(order[j])}
                exact += 1
    assert exact >= scores.shape[0] * (scores.shape[1] - 1)


@pytest.mark.parametrize("library", ["torch", "numpy"])
@pytest.mark.parametrize(
    "options",
    [
        {"top_p": 0.9},
        {"top_p": 0.3, "min_tokens_to_keep": 4},
        {"top_k": 20, "top_p": 0.8},
        {"top_k": 3, "top_p": 0.95, "temperature": 0.7},
        {"top_k": 8, "top_p": 0.6, "temperature": 2.5, "min_tokens_to_keep": 2},
        {"top_k": 1},
        {"temperature": 0.3},
    ],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()),
)
def test_filter_logits_chained_vs_hugging_face_on_random_logits(torch, hf, library, options):
    scores = torch.tensor(np.random.default_rng(3).standard_normal((64, 40)) * 2.0, dtype=torch.float32)
    logits = scores if library == "torch" else scores.numpy()
    _assert_same_filter(torch, seqops.filter_logits(logits, **options), hf(scores, **options))


def test_filter_logits_keeps_a_superset_of_hugging_face_on_exact_top_p_ties(torch, hf):
    """Probabilities 2/5, 1/5, 1/5, 1/5 and top_p=0.5: the mass above each 1/5 is 2/5 < 0.5,
    so we keep the tied group whole; Hugging Face's cumulative sum splits it (keeps one)."""
    scores = torch.tensor([[np.log(2.0), 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]], dtype=torch.float32)
    ours = torch.isfinite(seqops.filter_logits(scores, top_p=0.5))
    theirs = torch.isfinite(hf(scores, top_p=0.5))
    assert ours.all()
    assert theirs.sum().item() < ours.sum().item() and not (theirs & ~ours).any()


@pytest.mark.parametrize("dtype_name", ["float16", "bfloat16"])
def test_filter_logits_half_precision(torch, rng, dtype_name):
    """Filtered in float32 and returned in the input dtype: the float32 filter of the same
    (rounded) values, rounded once."""
    dtype = getattr(torch, dtype_name)
    logits = torch.tensor(rng.standard_normal((8, 30)) * 2).to(dtype)
    options = {"temperature": 0.7, "top_k": 10, "top_p": 0.8}
    ours = seqops.filter_logits(logits, **options)
    assert ours.dtype == dtype
    wide = seqops.filter_logits(logits.float(), **options)
    assert torch.equal(torch.isfinite(ours), torch.isfinite(wide))
    assert torch.equal(ours, wide.to(dtype))


def test_sample_logits_draws_from_filter_logits(rng):
    logits = rng.standard_normal((6, 20))
    options = {"temperature": 0.8, "top_k": 6, "top_p": 0.7}
    support = _kept(seqops.filter_logits(logits, **options))
    for seed in range(20):
        drawn = seqops.sample_logits(logits, rng=seed, **options)
        assert support[np.arange(6), drawn].all()


BAD_FILTER_OPTIONS = [
    (
        {"temperature": 0.0},
        ValueError,
        r"temperature must be > 0 \(use greedy\(\) for temperature 0\); got 0.0",
    ),
    ({"temperature": True}, TypeError, r"temperature must be a Python number; got bool"),
    ({"temperature": "hot"}, TypeError, r"temperature must be a Python number; got str"),
    ({"top_k": 0}, ValueError, r"top_k must be >= 1; got 0"),
    ({"top_k": True}, TypeError, r"top_k must be an integer; got bool"),
    ({"top_k": 2.0}, TypeError, r"top_k must be an integer; got float"),
    ({"top_p": 0.0}, ValueError, r"top_p must be in \(0, 1\]; got 0.0"),
    ({"top_p": 1.5}, ValueError, r"top_p must be in \(0, 1\]; got 1.5"),
    ({"top_p": False}, TypeError, r"top_p must be a Python number; got bool"),
    ({"min_tokens_to_keep": 0}, ValueError, r"min_tokens_to_keep must be >= 1; got 0"),
    ({"min_tokens_to_keep": True}, TypeError, r"min_tokens_to_keep must be an integer; got bool"),
]


@pytest.mark.parametrize("kwargs,error,pattern", BAD_FILTER_OPTIONS)
def test_filter_logits_and_sample_logits_share_their_validation(kwargs, error, pattern):
    logits = np.zeros((2, 5))
    with pytest.raises(error, match=pattern):
        seqops.filter_logits(logits, **kwargs)
    with pytest.raises(error, match=pattern):
        seqops.sample_logits(logits, rng=0, **kwargs)


def test_filter_logits_bad_logits():
    with pytest.raises(TypeError, match=r"`logits` must be a real floating array; got dtype int64"):
        seqops.filter_logits(np.zeros((2, 5), dtype=np.int64))
    with pytest.raises(ValueError, match=r"at least one token along the last axis; got shape \(2, 0\)"):
        seqops.filter_logits(np.zeros((2, 0)))
    with pytest.raises(ValueError, match=r"at least 1 dimensions \(\.\.\., V\); got shape \(\)"):
        seqops.filter_logits(np.zeros(()))


# -- every backend: library, device and dtype kept ------------------------------------------------------
@pytest.mark.parametrize("dtype_name,tol", [("float32", 2e-5), ("float64", 1e-10)])
def test_new_ops_keep_library_device_dtype(backend, rng, dtype_name, tol):
    dtypes = backend.floating_dtypes()
    if dtype_name not in dtypes:
        pytest.skip(f"backend {backend.name!r} has no {dtype_name}")
    dtype = dtypes[dtype_name]
    x, w, w_gate, w_down = (rng.standard_normal(s) for s in ((2, 3, D), (D,), (D, FF), (FF, D_OUT)))
    logits, log_w = rng.standard_normal((4, 10)), rng.standard_normal((5, 3))
    cases = {
        "rms_norm": (seqops.rms_norm, (x, w), {}, ref.rms_norm),
        "relu": (seqops.relu, (x,), {}, ref.relu),
        "silu": (seqops.silu, (x,), {}, ref.silu),
        "gelu": (seqops.gelu, (x,), {"approximate": "tanh"}, ref.gelu),
        "gated_feed_forward": (
            seqops.gated_feed_forward,
            (x, w_gate, w_gate, w_down),
            {},
            ref.gated_feed_forward,
        ),
        "filter_logits": (seqops.filter_logits, (logits,), {"top_k": 3, "top_p": 0.9}, ref.filter_logits),
        "iwae_bound": (seqops.iwae_bound, (log_w, log_w, -log_w), {}, ref.iwae_bound),
    }
    for name, (fn, args, kwargs, reference) in cases.items():
        inputs = [backend.from_numpy(a, dtype=dtype) for a in args]
        out = fn(*inputs, **kwargs)
        assert_kept(backend, out, inputs[0], dtype)
        expected = reference(*args, **kwargs)
        got = backend.to_numpy(out).astype(np.float64)
        np.testing.assert_array_equal(np.isfinite(got), np.isfinite(expected), err_msg=name)
        finite = np.isfinite(expected)
        np.testing.assert_allclose(got[finite], expected[finite], rtol=tol, atol=tol, err_msg=name)


@pytest.mark.parametrize("fn", ["softmax", "log_softmax"])
def test_softmax_over_an_empty_axis_is_empty(fn: str) -> None:
    import warnings

    x = np.zeros((3, 0), dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = getattr(seqops, fn)(x)
    assert out.shape == (3, 0) and out.dtype == np.float32
