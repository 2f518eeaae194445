"""The memory-efficient (tiled online-softmax) attention equals the plain portable path.

The two portable implementations are called directly (as the dispatcher would, after
validation), so a fast-path plugin that takes the public call does not hide them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

import seqops
from seqops.config import ATTENTION as TILED

OP = "scaled_dot_product_attention"
rng = np.random.default_rng(5)


@pytest.fixture(autouse=True)
def small_tiles(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiles of 3 keys and blocks of a few queries, so every test crosses tile borders."""
    monkeypatch.setattr(TILED, "key_tile", 3)
    monkeypatch.setattr(TILED, "tile_bytes", 4 * 3 * 2 * 4 * 4)  # 4 queries of 2x4 heads, 3 keys


def portable_impls(backend: seqops.Backend) -> tuple[Any, Any]:
    found = {impl.name: impl for impl in seqops.implementations(OP, backend)}
    return found["portable-tiled"], found["portable"]


def options(**given: Any) -> dict[str, Any]:
    base = {
        "mask": None,
        "bias": None,
        "is_causal": False,
        "scale": 0.4,
        "dropout_p": 0.0,
        "rng": None,
        "enable_gqa": False,
        "return_weights": False,
    }
    return {**base, **given}


CASES = {
    "plain": {},
    "mask": {"mask": True},
    "bias": {"bias": True},
    "causal": {"is_causal": True},
    "causal_L<S": {"is_causal": True, "S": 11},
    "causal_L>S": {"is_causal": True, "S": 5},
    "mask_bias_causal": {"mask": True, "bias": True, "is_causal": True, "S": 10},
    "gqa": {"enable_gqa": True},
    "gqa_causal_mask": {"enable_gqa": True, "is_causal": True, "mask": True},
    "fully_masked_rows": {"mask": "rows"},
    "bias_minus_inf_rows": {"bias": "rows"},
}


def make_inputs(backend: seqops.Backend, dtype_name: str, case: dict[str, Any]) -> tuple[Any, ...]:
    L, S = 8, case.get("S", 8)  # noqa: N806
    heads_kv = 2 if case.get("enable_gqa") else 4
    dtype = backend.floating_dtypes()[dtype_name]
    q = backend.from_numpy(rng.standard_normal((2, 4, L, 6)), dtype=dtype)
    k = backend.from_numpy(rng.standard_normal((2, heads_kv, S, 6)), dtype=dtype)
    v = backend.from_numpy(rng.standard_normal((2, heads_kv, S, 5)), dtype=dtype)
    given: dict[str, Any] = {key: case[key] for key in ("is_causal", "enable_gqa") if key in case}
    if case.get("mask") is True:
        given["mask"] = backend.from_numpy(rng.random((2, 1, L, S)) > 0.4, dtype=backend.namespace().bool)
    elif case.get("mask") == "rows":
        allowed = rng.random((L, S)) > 0.3
        allowed[[1, 6]] = False
        given["mask"] = backend.from_numpy(allowed, dtype=backend.namespace().bool)
    if case.get("bias") is True:
        given["bias"] = backend.from_numpy(rng.standard_normal((4, L, S)), dtype=dtype)
    elif case.get("bias") == "rows":
        bias = rng.standard_normal((L, S))
        bias[[0, 5]] = -np.inf
        given["bias"] = backend.from_numpy(bias, dtype=dtype)
    return q, k, v, given


@pytest.mark.parametrize("name", sorted(CASES))
def test_tiled_equals_plain(backend: seqops.Backend, name: str) -> None:
    tiled, plain = portable_impls(backend)
    q, k, v, given = make_inputs(backend, "float32", CASES[name])
    got = backend.to_numpy(tiled.fn(backend, q, k, v, **options(**given)))
    want = backend.to_numpy(plain.fn(backend, q, k, v, **options(**given)))
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)
    if name in ("fully_masked_rows", "bias_minus_inf_rows"):
        rows = [1, 6] if name == "fully_masked_rows" else [0, 5]
        assert np.all(got[..., rows, :] == 0)


@pytest.mark.parametrize("dtype_name", ["float16", "bfloat16", "float64"])
def test_tiled_equals_plain_in_other_dtypes(backend: seqops.Backend, dtype_name: str) -> None:
    if dtype_name not in backend.floating_dtypes():
        pytest.skip(f"{backend.name} has no {dtype_name}")
    tiled, plain = portable_impls(backend)
    q, k, v, given = make_inputs(backend, dtype_name, CASES["mask_bias_causal"])
    got = tiled.fn(backend, q, k, v, **options(**given))
    assert got.dtype == q.dtype
    want = plain.fn(backend, q, k, v, **options(**given))
    tol = 1e-12 if dtype_name == "float64" else 2e-2
    np.testing.assert_allclose(
        backend.to_numpy(got).astype(np.float64), backend.to_numpy(want).astype(np.float64), atol=tol
    )


def test_tiled_dropout_uses_the_draws_of_the_plain_path(backend: seqops.Backend) -> None:
    tiled, plain = portable_impls(backend)
    q, k, v, given = make_inputs(backend, "float32", CASES["gqa_causal_mask"])
    kwargs = options(dropout_p=0.4, rng=11, **given)
    np.testing.assert_allclose(
        backend.to_numpy(tiled.fn(backend, q, k, v, **kwargs)),
        backend.to_numpy(plain.fn(backend, q, k, v, **kwargs)),
        rtol=2e-5,
        atol=2e-6,
    )


def test_torch_gradients_equal(torch: Any) -> None:
    backend = seqops.registry.backend_of(torch.zeros(1))
    tiled, plain = portable_impls(backend)
    q, k, v, given = make_inputs(backend, "float64", {"mask": "rows", "bias": True, "is_causal": True})
    grads = []
    for impl in (tiled, plain):
        leaves = [x.detach().clone().requires_grad_(True) for x in (q, k, v, given["bias"])]
        out = impl.fn(backend, *leaves[:3], **options(**{**given, "bias": leaves[3]}))
        grads.append(torch.autograd.grad((out * out).sum(), leaves))
    for got, want in zip(*grads, strict=True):
        assert torch.isfinite(got).all()
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-9, atol=1e-12)


def test_jax_gradients_equal_and_jit_works(jax: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TILED, "key_tile", 5)  # fewer, larger tiles: eager JAX pays per op
    monkeypatch.setattr(TILED, "tile_bytes", 8 * 5 * 2 * 4 * 5)  # two query blocks
    jnp = jax.numpy
    backend = seqops.registry.backend_of(jnp.zeros(1))
    tiled, plain = portable_impls(backend)
    q, k, v, given = make_inputs(backend, "float64", {"mask": "rows", "is_causal": True, "enable_gqa": True})

    def loss(impl: Any) -> Any:
        return lambda q, k, v: jnp.sum(impl.fn(backend, q, k, v, **options(**given)) ** 2)

    for got, want in zip(
        jax.jit(jax.grad(loss(tiled), argnums=(0, 1, 2)))(q, k, v),
        jax.jit(jax.grad(loss(plain), argnums=(0, 1, 2)))(q, k, v),
        strict=True,
    ):
        assert bool(jnp.isfinite(got).all())
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-9, atol=1e-12)
    jitted = jax.jit(lambda q, k, v: tiled.fn(backend, q, k, v, **options(**given)))
    np.testing.assert_allclose(
        np.asarray(jitted(q, k, v)), np.asarray(plain.fn(backend, q, k, v, **options(**given))), rtol=1e-9
    )


def test_the_budget_chooses_the_tiled_path(monkeypatch: pytest.MonkeyPatch) -> None:
    q = rng.standard_normal((2, 3, 16, 4)).astype(np.float32)  # scores: 2*3*16*16*4 = 6144 bytes
    sdpa = seqops.scaled_dot_product_attention
    old = seqops.set_attention_memory_budget(6144)
    try:
        assert seqops.explain(sdpa, q, q, q).chosen == "numpy-attention"  # numpy-fast, by the same rule
        assert "fit the memory budget" in str(seqops.explain(sdpa, q, q, q))
        seqops.set_attention_memory_budget(6143)
        assert seqops.explain(sdpa, q, q, q).chosen == "portable-tiled"
        np.testing.assert_allclose(sdpa(q, q, q, is_causal=True), _plain(q, is_causal=True), rtol=1e-5)
        explained = seqops.explain(sdpa, q, q, q, return_weights=True)
        assert explained.chosen == "numpy-attention" and "return_weights" in str(explained)
        seqops.set_attention_memory_budget(0)  # on request, for every call
        assert seqops.explain(sdpa, q[..., :1, :], q, q).chosen == "portable-tiled"
    finally:
        seqops.set_attention_memory_budget(old)
    assert seqops.set_attention_memory_budget(None) == old
    with pytest.raises(ValueError, match="nbytes must be non-negative"):
        seqops.set_attention_memory_budget(-1)


def _plain(q: np.ndarray, **kwargs: Any) -> np.ndarray:
    logits = q @ np.swapaxes(q, -1, -2) / math.sqrt(q.shape[-1])
    if kwargs.get("is_causal"):
        logits = np.where(np.tri(q.shape[-2], dtype=bool), logits, -np.inf)
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    return (weights / weights.sum(-1, keepdims=True)) @ q


def test_the_budget_default_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    old = seqops.attention_memory_budget()
    try:
        monkeypatch.setenv("SEQOPS_ATTENTION_MEMORY_BUDGET", "1234")
        seqops.set_attention_memory_budget(None)
        assert seqops.attention_memory_budget() == 1234
        monkeypatch.delenv("SEQOPS_ATTENTION_MEMORY_BUDGET")
        seqops.set_attention_memory_budget(None)
        assert seqops.attention_memory_budget() == 256 * 2**20
    finally:
        seqops.set_attention_memory_budget(old)


@pytest.mark.filterwarnings("ignore:Dynamo detected a call:UserWarning")  # array_api_compat's caches
def test_torch_compile_fullgraph_traces_the_tiled_path(torch: Any) -> None:
    backend = seqops.registry.backend_of(torch.zeros(1))
    tiled, plain = portable_impls(backend)
    q, k, v, given = make_inputs(backend, "float32", CASES["mask_bias_causal"])
    kwargs = options(**given)
    compiled = torch.compile(
        lambda q, k, v: tiled.fn(backend, q, k, v, **kwargs), fullgraph=True, backend="eager"
    )
    np.testing.assert_allclose(
        compiled(q, k, v).numpy(), plain.fn(backend, q, k, v, **kwargs).numpy(), rtol=2e-5, atol=2e-6
    )


def _mha_inputs(d: int = 8, heads: int = 2) -> tuple[np.ndarray, seqops.MHAParams]:
    x = rng.standard_normal((2, 9, d)).astype(np.float32)
    w = [(rng.standard_normal((d, d)) / math.sqrt(d)).astype(np.float32) for _ in range(4)]
    b = [(0.1 * rng.standard_normal(d)).astype(np.float32) for _ in range(4)]
    return x, seqops.MHAParams(w[0], w[1], w[2], w[3], b[0], b[1], b[2], b[3])


def test_multi_head_attention_and_the_encoder_layer_tile_over_the_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Over the budget, MHA and the encoder layer attend per head with the tiled path (their
    dispatched attention chooses it): the plain (L, S) attention is never called, and the
    results equal the plain ones."""
    from seqops._agnostic import attention

    x, params = _mha_inputs()
    mask = np.tri(9, dtype=bool)
    kpm = np.ones((2, 9), dtype=bool)
    kpm[1, 6:] = False
    layer = seqops.EncoderLayerParams(
        params,
        rng.standard_normal((8, 16)).astype(np.float32) / 3,
        None,
        rng.standard_normal((16, 8)).astype(np.float32) / 4,
        None,
    )
    mha = seqops.multi_head_attention
    enc = seqops.transformer_encoder_layer
    with seqops.use("numpy"):
        expected_mha = mha(x, x, x, params, num_heads=2, mask=mask, key_padding_mask=kpm)
        expected_enc = enc(x, layer, num_heads=2, key_padding_mask=kpm, is_causal=True)
    old = seqops.set_attention_memory_budget(0)
    try:

        def no_plain(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("the plain (L, S) attention ran")

        monkeypatch.setattr(attention, "scaled_dot_product_attention", no_plain)
        got_mha = mha(x, x, x, params, num_heads=2, mask=mask, key_padding_mask=kpm)
        got_enc = enc(x, layer, num_heads=2, key_padding_mask=kpm, is_causal=True)
    finally:
        seqops.set_attention_memory_budget(old)
    np.testing.assert_allclose(got_mha, expected_mha, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_enc, expected_enc, rtol=1e-5, atol=1e-5)
