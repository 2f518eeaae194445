"""The jax-fast plugin's fast paths beyond the XLA attention: ``masked_conv2d`` through
``lax.conv_general_dilated``, the cuDNN/XLA choice of ``jax.nn.dot_product_attention``
(checked with a stubbed "on a CUDA GPU" predicate: no GPU here), ``softmax``/``log_softmax``
through ``jax.nn``, the fused window attention, and the portable losses and rotate-half rotary
as written for XLA's CPU fusion (their values on non-finite rows; what they compile to
is the benchmarks' business: bench/ops_table.py).
Tiny shapes: eager JAX compiles per shape."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import seqops

jax = pytest.importorskip("jax")
jnp = jax.numpy

if seqops.registry.pm.get_plugin("jax-fast") is None:
    pytest.skip("plugin 'jax-fast' is not loaded (disabled or not installed)", allow_module_level=True)

import seqops_jax_fast  # noqa: E402
from _sampling import check_top_k_draws  # noqa: E402
from seqops_conformance.references import vision as vision_ref  # noqa: E402
from seqops_jax_fast import conv, windows  # noqa: E402

BACKEND = next(backend for backend, _ in seqops.backends() if backend.name == "jax")
CONV = "jax-conv-general-dilated"
CUDNN = "jax-cudnn-attention"
XLA = "jax-dot-product-attention"
TOL = {
    "float64": {"rtol": 1e-12, "atol": 1e-12},
    "float32": {"rtol": 1e-5, "atol": 1e-5},
    "float16": {"rtol": 2e-3, "atol": 2e-3},
    "bfloat16": {"rtol": 1e-2, "atol": 1e-2},
}
rng = np.random.default_rng(13)


@contextlib.contextmanager
def without_plugin() -> Iterator[None]:
    plugin = seqops.registry.pm.get_plugin("jax-fast")
    seqops.unregister_plugin("jax-fast")
    try:
        yield
    finally:
        seqops.register_plugin(plugin, name="jax-fast")


def _close(actual: Any, expected: Any, dtype_name: str) -> None:
    assert actual.dtype == expected.dtype
    tol = TOL[dtype_name]
    np.testing.assert_allclose(
        np.asarray(actual, dtype=np.float64),
        np.asarray(expected, dtype=np.float64),
        rtol=tol["rtol"],
        atol=tol["atol"],
    )


def _normal(shape: tuple[int, ...], dtype: Any) -> Any:
    return jnp.asarray(rng.standard_normal(shape), dtype=dtype)


# -- masked_conv2d ------------------------------------------------------------------------


@pytest.mark.parametrize("dtype_name", ["float32", "float64", "float16", "bfloat16"])
@pytest.mark.parametrize(
    ("mask_type", "groups", "kernel", "with_bias"),
    [("A", 1, (3, 3), True), ("B", 3, (5, 3), False), ("A", 3, (1, 1), True)],
)
def test_masked_conv2d_matches_portable(
    dtype_name: str, mask_type: str, groups: int, kernel: tuple[int, int], with_bias: bool
) -> None:
    dtype = getattr(jnp, dtype_name)
    x = _normal((2, 3, 5, 4), dtype)
    w = _normal((6, 3, *kernel), dtype)
    b = _normal((6,), dtype) if with_bias else None
    options: dict[str, Any] = {"mask_type": mask_type, "color_groups": groups}
    assert seqops.explain(seqops.masked_conv2d, x, w, b, **options).chosen == CONV
    out = seqops.masked_conv2d(x, w, b, **options)
    with without_plugin():
        expected = seqops.masked_conv2d(x, w, b, **options)
    assert out.shape == (2, 6, 5, 4)
    _close(out, expected, dtype_name)


def test_masked_conv2d_under_jit_and_grad() -> None:
    x, w, b = (
        _normal((1, 3, 4, 4), jnp.float64),
        _normal((3, 3, 3, 3), jnp.float64),
        _normal((3,), jnp.float64),
    )

    def loss(x: Any, w: Any, b: Any) -> Any:
        return jnp.sum(jnp.sin(seqops.masked_conv2d(x, w, b, mask_type="B", color_groups=3)))

    value, grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))(x, w, b)
    with without_plugin():
        expected_value, expected_grads = jax.value_and_grad(loss, argnums=(0, 1, 2))(x, w, b)
    _close(value, expected_value, "float64")
    for a, e in zip(grads, expected_grads, strict=True):
        _close(a, e, "float64")
    # masked taps get no gradient: the weight enters only through the mask
    keep = conv.pixelcnn_keep(3, 3, 3, 3, "B", 3)
    assert bool(jnp.all(jnp.where(keep, 0.0, grads[1]) == 0))


def test_masked_conv2d_declines_empty_sizes() -> None:
    x, w = jnp.ones((0, 2, 3, 3), jnp.float32), jnp.ones((2, 2, 3, 3), jnp.float32)
    explanation = seqops.explain(seqops.masked_conv2d, x, w)
    assert explanation.chosen != CONV and conv.EMPTY in str(explanation)


def test_masked_conv2d_declines_symbolic_shapes_under_export() -> None:
    (batch,) = jax.export.symbolic_shape("b")
    spec_x = jax.ShapeDtypeStruct((batch, 2, 4, 4), jnp.float32)
    spec_w = jax.ShapeDtypeStruct((2, 2, 3, 3), jnp.float32)
    assert (
        conv.decline_masked_conv2d(BACKEND, spec_x, spec_w, None, mask_type="A", color_groups=1)
        == conv.SYMBOLIC
    )

    seen: list[str | None] = []

    def f(x: Any, w: Any) -> Any:
        seen.append(seqops.explain(seqops.masked_conv2d, x, w).chosen)
        return seqops.masked_conv2d(x, w)

    exported = jax.export.export(jax.jit(f))(spec_x, spec_w)
    assert seen == ["portable"] and exported.out_avals[0].shape[1:] == (2, 4, 4)


def test_pixelcnn_keep_is_the_public_mask() -> None:
    for kernel, cin, cout, mask_type, groups in [((3, 5), 6, 3, "A", 3), ((5, 5), 2, 4, "B", 1)]:
        expected = seqops.pixelcnn_mask(
            kernel, cin, cout, mask_type=mask_type, color_groups=groups, dtype=jnp.float32
        )
        np.testing.assert_array_equal(
            conv.pixelcnn_keep(*kernel, cin, cout, mask_type, groups), np.asarray(expected) == 1
        )


# -- attention: cuDNN where it qualifies, XLA otherwise ------------------------------------


@pytest.fixture
def on_gpu(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Pretend JAX runs on a CUDA GPU of compute capability 9.0 (a stub: nothing is run there)."""
    monkeypatch.setattr(seqops_jax_fast, "_cuda_capability", lambda: (9, 0))
    monkeypatch.setattr(seqops_jax_fast, "on_cpu", lambda: False)
    return monkeypatch


def _qkv(length: int, source: int, head: int, dtype: Any) -> tuple[Any, Any, Any]:
    q = jnp.ones((2, length, head), dtype)
    k = jnp.ones((2, source, head), dtype)
    return q, k, k


@pytest.mark.parametrize("dtype_name", ["float16", "bfloat16"])
def test_cudnn_is_chosen_where_the_call_qualifies(on_gpu: Any, dtype_name: str) -> None:
    q, k, v = _qkv(4, 6, 64, getattr(jnp, dtype_name))
    f = seqops.scaled_dot_product_attention
    assert seqops.explain(f, q, k, v).chosen == CUDNN
    assert seqops.explain(f, q, k, v, mask=jnp.ones((4, 6), bool)).chosen == CUDNN
    q, k, v = _qkv(6, 6, 256, getattr(jnp, dtype_name))  # Hopper: head dim up to 256
    assert seqops.explain(f, q, k, v, is_causal=True).chosen == CUDNN


@pytest.mark.parametrize(
    ("length", "source", "head", "dtype_name", "options", "capability", "reason"),
    [
        (4, 4, 64, "float32", {}, (9, 0), seqops_jax_fast.CUDNN_DTYPE),
        (4, 4, 74, "float16", {}, (9, 0), "a multiple of 8 and <= 256, not 74"),
        (4, 4, 160, "float16", {}, (8, 0), "a multiple of 8 and <= 128, not 160"),
        (5, 4, 64, "float16", {"mask": jnp.ones((5, 4), bool)}, (9, 0), seqops_jax_fast.CUDNN_ODD_LENGTH),
        (
            4,
            3,
            64,
            "bfloat16",
            {"bias": jnp.zeros((4, 3), jnp.bfloat16)},
            (9, 0),
            seqops_jax_fast.CUDNN_ODD_LENGTH,
        ),
        (4, 6, 64, "float16", {"is_causal": True}, (9, 0), seqops_jax_fast.CUDNN_CAUSAL_LENGTHS),
        (4, 4, 64, "float16", {}, None, seqops_jax_fast.CUDNN_NO_GPU),
    ],
)
def test_xla_is_chosen_otherwise_with_the_reason(
    on_gpu: Any,
    length: int,
    source: int,
    head: int,
    dtype_name: str,
    options: dict[str, Any],
    capability: tuple[int, int] | None,
    reason: str,
) -> None:
    on_gpu.setattr(seqops_jax_fast, "_cuda_capability", lambda: capability)
    q, k, v = _qkv(length, source, head, getattr(jnp, dtype_name))
    explanation = seqops.explain(seqops.scaled_dot_product_attention, q, k, v, **options)
    assert explanation.chosen == XLA and reason in str(explanation)


def test_both_decline_what_neither_computes(on_gpu: Any) -> None:
    q, k, v = _qkv(4, 4, 64, jnp.float16)
    f = seqops.scaled_dot_product_attention
    explanation = seqops.explain(f, q, k, v, dropout_p=0.5, rng=1)
    assert explanation.chosen not in (CUDNN, XLA) and str(explanation).count(seqops_jax_fast.DROPOUT) == 2
    explanation = seqops.explain(f, q, k, v, return_weights=True)
    assert explanation.chosen not in (CUDNN, XLA) and str(explanation).count(seqops_jax_fast.WEIGHTS) == 2


def test_on_this_cpu_cudnn_declines_with_its_reason() -> None:
    if jax.default_backend() != "cpu":
        pytest.skip(f"JAX runs on {jax.default_backend()}")
    q, k, v = _qkv(4, 4, 64, jnp.float16)
    explanation = seqops.explain(seqops.scaled_dot_product_attention, q, k, v)
    assert seqops_jax_fast.CUDNN_NO_GPU in str(explanation) and explanation.chosen not in (CUDNN, XLA)


def test_each_requests_its_implementation_explicitly(on_gpu: Any) -> None:
    requested: list[str | None] = []
    native = jax.nn.dot_product_attention

    def spy(*args: Any, implementation: str | None = None, **kwargs: Any) -> Any:
        requested.append(implementation)
        return native(*args, implementation="xla", **kwargs)  # the CPU computes XLA's

    on_gpu.setattr(jax.nn, "dot_product_attention", spy)
    q, k, v = _qkv(4, 4, 8, jnp.float32)  # float32: cuDNN declines, XLA runs
    out = seqops.scaled_dot_product_attention(q, k, v)
    q16, k16, v16 = _qkv(4, 4, 8, jnp.float16)
    options: dict[str, Any] = dict(mask=None, bias=None, is_causal=False, scale=8**-0.5, enable_gqa=False)
    out16 = seqops_jax_fast.sdpa_cudnn(BACKEND, q16, k16, v16, **options)
    assert requested == ["xla", "cudnn"]
    np.testing.assert_allclose(np.asarray(out), 1.0)
    np.testing.assert_allclose(np.asarray(out16, dtype=np.float32), 1.0)


def test_declines_answer_on_symbolic_shapes(on_gpu: Any) -> None:
    (length,) = jax.export.symbolic_shape("l")
    q = jax.ShapeDtypeStruct((2, length, 64), jnp.float16)
    k = jax.ShapeDtypeStruct((2, 4, 64), jnp.float16)
    options: dict[str, Any] = dict(mask=None, bias=None, is_causal=False, dropout_p=0.0, return_weights=False)
    assert seqops_jax_fast.decline_cudnn(BACKEND, q, k, k, **options) == seqops_jax_fast.SYMBOLIC
    assert seqops_jax_fast.decline_sdpa(BACKEND, q, k, k, **options) is None


# -- top-k sampling -------------------------------------------------------------------------------
@pytest.mark.parametrize("ties", [False, True])
def test_jitted_top_k_sampling_draws_the_distribution(ties: bool) -> None:
    """jax-topk-sample under ``jax.jit`` (the tie branch chosen by ``lax.cond``): the contract's
    distribution from ``k`` draws a row, every kept token when ties reach beyond the k-th."""
    row = (2.0 * np.random.default_rng(1).standard_normal(300)).astype(np.float32)
    if ties:
        row[:10] = 9.0
    batch = jnp.broadcast_to(jnp.asarray(row), (20000, 300))
    for kwargs in ({"top_k": 5}, {"top_k": 40, "temperature": 0.8}):
        assert seqops.explain(seqops.sample_logits, batch, rng=0, **kwargs).chosen == "jax-topk-sample"
        draw = jax.jit(lambda logits, key: seqops.sample_logits(logits, rng=key, **kwargs))  # noqa: B023
        check_top_k_draws(
            lambda logits, seed: draw(logits, jax.random.key(seed)),  # noqa: B023
            np.asarray,
            row,
            batch,
            **kwargs,
        )


def test_top_k_sampling_eagerly_under_vmap_and_at_the_edges() -> None:
    logits = jnp.asarray(rng.standard_normal((3, 4, 9)), dtype=jnp.float32)
    keys = jax.random.split(jax.random.key(0), 3)
    drawn = jax.vmap(lambda z, key: seqops.sample_logits(z, rng=key, top_k=2))(logits, keys)
    top2 = np.argsort(np.asarray(logits), axis=-1)[..., -2:]
    assert drawn.shape == (3, 4) and (np.asarray(drawn)[..., None] == top2).any(-1).all()
    assert int(seqops.sample_logits(jnp.float32([0.0, 5.0, -jnp.inf]), rng=1, top_k=10)) in (0, 1)  # k > V
    assert int(seqops.sample_logits(jnp.float32([-jnp.inf, 2.0, -jnp.inf]), rng=1, top_k=2)) == 1  # -inf ties
    half = logits.astype(jnp.bfloat16)  # rounding makes ties: top_k=1 keeps every maximal token
    drawn = np.asarray(seqops.sample_logits(half, rng=2, top_k=1))
    values = np.asarray(half, np.float32)
    np.testing.assert_array_equal(np.take_along_axis(values, drawn[..., None], -1)[..., 0], values.max(-1))
    explanation = seqops.explain(seqops.sample_logits, logits, rng=0, top_k=3, top_p=0.5)
    assert dict(explanation.decisions)["jax-topk-sample (plugin 'jax-fast')"].endswith(
        seqops_jax_fast.decoding.TOP_P
    )


# -- softmax / log_softmax: jax.nn ------------------------------------------------------------
SOFTMAX = {"softmax": "jax-nn-softmax", "log_softmax": "jax-nn-log-softmax"}


def _log_softmax64(x: Any, axis: int) -> np.ndarray:
    """``x - log Σ exp(x)`` in float64 by ``logaddexp.reduce`` (no maximum taken out)."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(invalid="ignore"):  # the NaN and the all -inf rows
        return x - np.logaddexp.reduce(x, axis=axis, keepdims=True)


def _softmax_input(dtype: Any) -> Any:
    """``(3, 5, 4)`` normals: along the last axis row ``(0, 1)`` all ``-inf``, row ``(0, 2)``
    with a NaN, row ``(1, 0)`` with one ``-inf``; large logits (±30) elsewhere."""
    x = 10.0 * rng.standard_normal((3, 5, 4))
    x[0, 1] = -np.inf
    x[0, 2, 2] = np.nan
    x[1, 0, 1] = -np.inf
    return jnp.asarray(x, dtype=dtype)


@pytest.mark.parametrize("dtype_name", ["float32", "float64", "float16", "bfloat16"])
@pytest.mark.parametrize("axis", [-1, 0])
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_softmax_matches_a_float64_reference(op: str, axis: int, dtype_name: str) -> None:
    dtype = getattr(jnp, dtype_name)
    x = _softmax_input(dtype)
    public = getattr(seqops, op)
    assert seqops.explain(public, x, axis=axis).chosen == SOFTMAX[op]
    out = public(x, axis=axis)
    expected = _log_softmax64(np.asarray(x, dtype=np.float64), axis)  # from the rounded input
    if op == "softmax":
        expected = np.exp(expected)
    # NaN where the reference has it (the NaN row, the all -inf row), and nowhere else
    np.testing.assert_array_equal(np.isnan(np.asarray(out, dtype=np.float64)), np.isnan(expected))
    _close(out, jnp.asarray(expected).astype(dtype), dtype_name)
    with without_plugin():
        portable = public(x, axis=axis)
    _close(out, portable, dtype_name)


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_softmax_of_a_row_with_inf_is_nan_as_the_reference(op: str) -> None:
    """``+inf - +inf``: every entry of the row is NaN, as in the float64 conformance reference
    (the portable path keeps the finite entries at 0 / -inf)."""
    out = getattr(seqops, op)(jnp.asarray([[jnp.inf, 0.0, 1.0], [0.0, 1.0, 2.0]]))
    assert bool(jnp.all(jnp.isnan(out[0]))) and bool(jnp.all(jnp.isfinite(out[1])))


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_softmax_under_jit_and_grad_and_on_empty_sizes(op: str) -> None:
    public = getattr(seqops, op)
    x = _normal((4, 7), jnp.float64)

    def loss(x: Any) -> Any:
        return jnp.sum(jnp.sin(public(x, axis=0)))

    value, grad = jax.jit(jax.value_and_grad(loss))(x)
    with without_plugin():
        expected_value, expected_grad = jax.value_and_grad(loss)(x)
    _close(value, expected_value, "float64")
    _close(grad, expected_grad, "float64")
    for shape, axis in (((3, 0), -1), ((0, 4), -1), ((0, 4), 0)):
        empty = jnp.zeros(shape, jnp.float32)
        assert seqops.explain(public, empty, axis=axis).chosen == SOFTMAX[op]
        out = public(empty, axis=axis)
        assert out.shape == shape and out.dtype == jnp.float32


# -- window attention -----------------------------------------------------------------------------
WINDOWS = "jax-fused-window-attention"


def _swin(
    dtype: Any, *, size: tuple[int, int] = (8, 8), ws: int = 4, heads: int = 2, biases: bool = True
) -> tuple[Any, seqops.MHAParams, Any]:
    """``x (2, H, W, 6)``, parameters ``6 -> 6`` (``w_o`` to 5), a relative bias table."""
    c = 6
    weights = [_normal((c, c), dtype) * 0.4 for _ in range(3)] + [_normal((c, 5), dtype) * 0.4]
    bias_vectors = [_normal((c,), dtype) * 0.1 for _ in range(3)] + [_normal((5,), dtype) * 0.1]
    params = seqops.MHAParams(*weights, *(bias_vectors if biases else [None] * 4))
    table = _normal(((2 * ws - 1) ** 2, heads), dtype)
    return _normal((2, *size, c), dtype), params, table


def _as64(params: seqops.MHAParams) -> seqops.MHAParams:
    return seqops.MHAParams(*(None if w is None else np.asarray(w, np.float64) for w in params))


@pytest.mark.parametrize("dtype_name", ["float32", "float64", "float16", "bfloat16"])
@pytest.mark.parametrize(
    ("size", "ws", "shift", "with_table", "biases"),
    [
        ((8, 8), 4, 2, True, True),  # SW-MSA with the relative bias
        ((7, 9), 4, 1, True, False),  # padded to 8 × 12, no projection biases
        ((6, 6), 3, 0, False, True),  # W-MSA, no mask
        ((5, 5), 1, 0, True, True),  # one token a window: the output is the projected value
    ],
)
def test_window_attention_matches_the_reference(
    dtype_name: str, size: tuple[int, int], ws: int, shift: int, with_table: bool, biases: bool
) -> None:
    dtype = getattr(jnp, dtype_name)
    x, params, table = _swin(dtype, size=size, ws=ws, biases=biases)
    table = table if with_table else None
    options: dict[str, Any] = dict(num_heads=2, window_size=ws, shift_size=shift, relative_bias_table=table)
    assert seqops.explain(seqops.window_attention, x, params, **options).chosen == WINDOWS
    out = seqops.window_attention(x, params, **options)
    assert out.shape == (2, *size, 5)
    expected = vision_ref.window_attention(
        np.asarray(x, np.float64),
        _as64(params),
        2,
        ws,
        shift,
        None if table is None else np.asarray(table, np.float64),
    )
    # half precision rounds the projections and the attended values too (as the portable path)
    tol = {"float16": 2e-2, "bfloat16": 1e-1}.get(dtype_name, TOL[dtype_name]["rtol"])
    np.testing.assert_allclose(np.asarray(out, np.float64), expected, rtol=tol, atol=tol)
    with without_plugin():
        portable = seqops.window_attention(x, params, **options)
    _close(out, portable, dtype_name)


def test_window_attention_keeps_excluded_nan_scores_and_empty_rows_out() -> None:
    """A NaN score reaches only the queries that attend it (the mask is a select, not an
    added -inf); a query whose every allowed key has a -inf bias gives zeros before ``w_o``."""
    x, params, table = _swin(jnp.float32)
    # a NaN bias two rows apart (head 0): in the bottom windows of the shifted map rows
    # 0-1 and 2-3 are different regions, so every such pair there is masked out
    index = np.asarray(seqops.relative_position_index(4))
    table = table.at[index[8, 0], 0].set(jnp.nan)  # token (2, 0) to token (0, 0)
    options: dict[str, Any] = dict(num_heads=2, window_size=4, shift_size=2, relative_bias_table=table)
    out = np.asarray(seqops.window_attention(x, params, **options), dtype=np.float64)
    expected = vision_ref.window_attention(
        np.asarray(x, np.float64), _as64(params), 2, 4, 2, np.asarray(table, np.float64)
    )
    nan = np.isnan(out)
    np.testing.assert_array_equal(nan, np.isnan(expected))
    assert nan.any() and not nan.all()
    np.testing.assert_allclose(out[~nan], expected[~nan], rtol=1e-5, atol=1e-5)

    # head 0 sees no key at all: its half of the attended features is 0
    blocked = table.at[:, 0].set(-jnp.inf)
    out = seqops.window_attention(x, params, **{**options, "relative_bias_table": blocked})
    expected = vision_ref.window_attention(
        np.asarray(x, np.float64), _as64(params), 2, 4, 2, np.asarray(blocked, np.float64)
    )
    _close(out, jnp.asarray(expected, jnp.float32), "float32")


def test_window_attention_under_jit_and_grad() -> None:
    x, params, table = _swin(jnp.float64, size=(6, 7), ws=3)

    def loss(x: Any, params: Any, table: Any) -> Any:
        out = seqops.window_attention(
            x, params, num_heads=2, window_size=3, shift_size=1, relative_bias_table=table
        )
        return jnp.sum(jnp.sin(out))

    value, grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))(x, params, table)
    with without_plugin():
        expected_value, expected_grads = jax.value_and_grad(loss, argnums=(0, 1, 2))(x, params, table)
    _close(value, expected_value, "float64")
    for a, e in zip(jax.tree.leaves(grads), jax.tree.leaves(expected_grads), strict=True):
        _close(a, e, "float64")


def test_window_attention_declines_with_its_reasons(monkeypatch: pytest.MonkeyPatch) -> None:
    x, params, table = _swin(jnp.float32)
    options: dict[str, Any] = dict(num_heads=2, window_size=4, shift_size=2, relative_bias_table=table)

    def reason(x: Any) -> str:
        explanation = seqops.explain(seqops.window_attention, x, params, **options)
        assert explanation.chosen == "portable"
        return dict(explanation.decisions)[f"{WINDOWS} (plugin 'jax-fast')"]

    assert reason(x[:0]).endswith(windows.EMPTY)
    old = seqops.set_attention_memory_budget(2 * 4 * 2 * 16 * 16 * 4 - 1)  # one byte short
    try:
        assert reason(x).endswith(windows.OVER_BUDGET)
    finally:
        seqops.set_attention_memory_budget(old)
    (batch,) = jax.export.symbolic_shape("b")
    spec = jax.ShapeDtypeStruct((batch, 8, 8, 6), jnp.float32)
    assert (
        windows.decline_window_attention(BACKEND, spec, params, num_heads=2, window_size=4)
        == windows.SYMBOLIC
    )
    monkeypatch.setattr(windows, "on_cpu", lambda: False)
    assert reason(x).endswith(windows.OFF_CPU)


# -- the portable losses and rotary under jax.jit (written for XLA's CPU fusion) -------------------
def _nll64(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``-log softmax(x)[t]`` per row, float64, as ``logsumexp - x_t`` (finite-maximum rows only)."""
    return np.logaddexp.reduce(x, axis=-1) - np.take_along_axis(x, t[..., None], axis=-1)[..., 0]


def _loss_rows() -> tuple[Any, Any, np.ndarray]:
    """``(6, 5)`` logits and targets, with the non-finite rows' per-contract losses written out:
    row 1 all ``-inf`` (NaN), row 2 a ``+inf`` picked elsewhere (``+inf``: its probability
    is 0), row 3 that ``+inf`` picked (``inf - inf``: NaN), row 4 a NaN (NaN), row 5 a
    ``-inf`` picked in a finite row (``+inf``); row 0 large finite logits."""
    x = 30.0 * rng.standard_normal((6, 5))
    t = np.array([3, 0, 1, 2, 4, 0])
    x[1] = -np.inf
    x[2, 2] = x[3, 2] = np.inf
    x[4, 1] = np.nan
    x[5, 0] = -np.inf
    expected = np.full(6, np.nan)
    expected[0] = _nll64(x[:1], t[:1])[0]
    expected[2] = expected[5] = np.inf
    return x, t, expected


@pytest.mark.parametrize("dtype_name", ["float32", "float64"])
def test_losses_under_jit_keep_the_non_finite_rows(dtype_name: str) -> None:
    """``cross_entropy`` and ``autoregressive_log_likelihood`` pick ``x[t] - shift`` instead of
    reading a materialized ``x - shift`` (one kernel fewer under ``jax.jit``): the same values,
    non-finite rows included, eager and jitted."""
    dtype = getattr(jnp, dtype_name)
    x64, t64, expected = _loss_rows()
    x, t = jnp.asarray(x64, dtype=dtype), jnp.asarray(t64)

    def losses(x: Any, t: Any) -> tuple[Any, Any]:
        per_token = seqops.cross_entropy(x, t, reduction="none")
        return per_token, seqops.autoregressive_log_likelihood(x[None], t[None])

    for run in (losses, jax.jit(losses)):
        per_token, ll = run(x, t)
        got = np.asarray(per_token, dtype=np.float64)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
        np.testing.assert_array_equal(got[np.isinf(expected)], expected[np.isinf(expected)])
        tol = TOL[dtype_name]
        np.testing.assert_allclose(got[0], expected[0], rtol=tol["rtol"], atol=tol["atol"])
        assert ll.shape == (1,) and bool(jnp.isnan(ll[0]))  # NaN rows sum to NaN
        finite = [0, 2, 5]  # -inf, -inf and a finite log-probability: -inf
        _, ll_finite = run(x[jnp.asarray(finite)], t[jnp.asarray(finite)])
        assert float(ll_finite[0]) == -np.inf


def test_losses_under_jit_agree_with_jax_nn_and_keep_gradients() -> None:
    x64 = 4.0 * rng.standard_normal((2, 3, 7))
    t = jnp.asarray(rng.integers(0, 7, (2, 3)))
    x = jnp.asarray(x64)

    def reference(x: Any) -> Any:  # jax's own log-softmax, then the pick
        return jnp.take_along_axis(jax.nn.log_softmax(x, axis=-1), t[..., None], axis=-1)[..., 0].sum(-1)

    for smoothing in (0.0, 0.2):
        ce = jax.jit(lambda x, s=smoothing: seqops.cross_entropy(x, t, label_smoothing=s, reduction="sum"))
        lp = jax.nn.log_softmax(x, axis=-1)
        expected = -(0.8 if smoothing else 1.0) * reference(x).sum() - (smoothing / 7) * lp.sum()
        _close(ce(x), expected, "float64")
    ll = jax.jit(seqops.autoregressive_log_likelihood)
    _close(ll(x, t), reference(x), "float64")
    _close(
        jax.jit(jax.grad(lambda x: ll(x, t).sum()))(x), jax.grad(lambda x: reference(x).sum())(x), "float64"
    )
    for shape in ((0, 3, 7), (2, 0, 7)):  # empty batch and empty time axis
        out = ll(jnp.zeros(shape), jnp.zeros(shape[:-1], jnp.int32))
        assert out.shape == shape[:-2] and bool(jnp.all(out == 0.0))


def _rotate_half64(x: np.ndarray, positions: np.ndarray, rotary_dim: int, base: float) -> np.ndarray:
    """Pairs ``(i, i + d/2)`` as complex numbers times ``e^{i·angle}``, float64."""
    half = rotary_dim // 2
    inv = base ** (-np.arange(half) * 2.0 / rotary_dim)
    turn = np.exp(1j * positions[..., None].astype(np.float64) * inv)  # (..., L, d/2)
    z = (x[..., :half] + 1j * x[..., half:rotary_dim]) * turn
    return np.concatenate([z.real, z.imag, x[..., rotary_dim:]], axis=-1)


@pytest.mark.parametrize("dtype_name", ["float32", "float64", "bfloat16"])
@pytest.mark.parametrize(("length", "rotary_dim"), [(5, 8), (5, 4), (0, 8)])
def test_rotate_half_rotary_under_jit_matches_complex_rotation(
    dtype_name: str, length: int, rotary_dim: int
) -> None:
    """The halves layout as ``x·cos + rotate_half(x)·sin`` over repeated angles (Hugging
    Face's form, fused as theirs by XLA): against a complex rotation, with batched positions,
    a partial rotary dim and an empty sequence."""
    dtype = getattr(jnp, dtype_name)
    x = jnp.asarray(rng.standard_normal((2, 3, length, 8)), dtype=dtype)
    positions = jnp.asarray(rng.integers(0, 4096, (2, 1, length)))
    rotate = jax.jit(lambda x, p: seqops.apply_rotary(x, p, rotary_dim=rotary_dim))
    out = rotate(x, positions)
    expected = _rotate_half64(np.asarray(x, np.float64), np.asarray(positions), rotary_dim, 10000.0)
    assert out.shape == x.shape
    # angles up to 4096 rad in float32: their rounding (~2e-4 rad) bounds the agreement
    tol = {"float32": 1e-3, "float64": 1e-10, "bfloat16": 3e-2}[dtype_name]
    np.testing.assert_allclose(np.asarray(out, np.float64), expected, rtol=tol, atol=tol)
    grad = jax.jit(jax.grad(lambda x: jnp.sum(jnp.sin(rotate(x, positions)))))(x)
    assert grad.shape == x.shape and bool(jnp.all(jnp.isfinite(grad)))
