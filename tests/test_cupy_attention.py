"""``cupy-attention`` (plugins/seqops_cupy_fast/attention.py) without and with a GPU.

Without a GPU: the chunked plan (:func:`attention`) runs on NumPy with a column-major GEMM that
checks cuBLAS's rules (leading dimensions, bounds) and the kernel's rows written in NumPy from
its ``meta``, against an independent float64 attention; the kernel source compiles with
``nvcc`` for sm_90 where ``nvcc`` exists; the enum values match the CUDA headers. With a GPU:
the plugin against the portable path and its declines.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from seqops_cupy_fast import attention as plan

import seqops

rng = np.random.default_rng(11)
TOL = {
    "float16": {"rtol": 1e-2, "atol": 2e-3},
    "float32": {"rtol": 1e-5, "atol": 1e-6},
    "float64": {"rtol": 1e-12, "atol": 1e-13},
}


def _colmajor(flat: np.ndarray, at: int, rows: int, cols: int, ld: int) -> np.ndarray:
    """The column-major ``(rows, cols)`` matrix with leading dimension ``ld`` at element ``at``."""
    assert at >= 0 and at + (rows - 1) + (cols - 1) * ld < flat.size, "reads or writes out of bounds"
    return np.lib.stride_tricks.as_strided(
        flat[at:], shape=(rows, cols), strides=(flat.itemsize, ld * flat.itemsize)
    )


def numpy_gemm(
    transa: int, transb: int, m: int, n: int, k: int, alpha: float,
    a: np.ndarray, a_at: int, lda: int, stride_a: int,
    b: np.ndarray, b_at: int, ldb: int, stride_b: int,
    c: np.ndarray, c_at: int, ldc: int, stride_c: int,
    batch: int,
) -> None:  # fmt: skip
    """``cublasGemmStridedBatchedEx`` (``beta = 0``) on C-contiguous NumPy arrays, in float64."""
    assert a.flags.c_contiguous and b.flags.c_contiguous and c.flags.c_contiguous
    assert lda >= max(1, k if transa else m), "cuBLAS: lda >= rows of A as stored"
    assert ldb >= max(1, n if transb else k), "cuBLAS: ldb >= rows of B as stored"
    assert ldc >= max(1, m), "cuBLAS: ldc >= m"
    a_flat, b_flat, c_flat = a.reshape(-1), b.reshape(-1), c.reshape(-1)
    for i in range(batch):
        op_a = _colmajor(a_flat, a_at + i * stride_a, *((k, m) if transa else (m, k)), lda)
        op_b = _colmajor(b_flat, b_at + i * stride_b, *((n, k) if transb else (k, n)), ldb)
        op_a, op_b = (op_a.T if transa else op_a), (op_b.T if transb else op_b)
        product = alpha * (op_a.astype(np.float64) @ op_b.astype(np.float64))
        _colmajor(c_flat, c_at + i * stride_c, m, n, ldc)[...] = product.astype(c.dtype)


def _row(view: np.ndarray, at: int, step: int, size: int) -> np.ndarray:
    """``size`` elements of ``view``'s memory from element ``at`` by ``step``: the kernel's reads."""
    item = view.itemsize
    return np.lib.stride_tricks.as_strided(view, shape=(2, size), strides=(at * item, step * item))[1]


def numpy_softmax(blocks: int, args: tuple[Any, ...]) -> None:
    """What each block of ``_SOFTMAX`` does to its row, from the same arguments."""
    (
        scores,
        weights,
        mask,
        bias,
        meta,
        lead_ndim,
        rows_per_lead,
        n0,
        r0,
        kv_len,
        has_mask,
        has_bias,
        causal,
    ) = args
    acc = scores.dtype
    meta = [int(m) for m in meta]
    for row in range(blocks):
        query = r0 + row % rows_per_lead
        rest = n0 + row // rows_per_lead
        mask_at, bias_at = query * meta[0], query * meta[2]
        for d in reversed(range(lead_ndim)):
            size = meta[4 + 3 * d]
            mask_at += rest % size * meta[5 + 3 * d]
            bias_at += rest % size * meta[6 + 3 * d]
            rest //= size
        logits = scores[row * kv_len : (row + 1) * kv_len].astype(acc)
        if has_bias:
            logits = logits + _row(bias, bias_at, meta[3], kv_len).astype(acc)
        allowed = np.arange(kv_len) < (min(query + 1, kv_len) if causal else kv_len)
        if has_mask:
            allowed &= _row(mask, mask_at, meta[1], kv_len)
        p = np.zeros(kv_len, dtype=acc)
        if allowed.any() and logits[allowed].max() > -np.inf:
            e = np.exp(logits[allowed] - logits[allowed].max())
            p[allowed] = e / e.sum()
        weights[row * kv_len : (row + 1) * kv_len] = p.astype(weights.dtype)


def reference(q: Any, k: Any, v: Any, mask: Any, bias: Any, is_causal: bool, scale: float) -> np.ndarray:
    """float64 attention written directly: masked rows give zeros."""
    q, k, v = (np.asarray(x, dtype=np.float64) for x in (q, k, v))
    logits = q @ np.swapaxes(k, -1, -2) * scale
    if bias is not None:
        logits = logits + np.asarray(bias, dtype=np.float64)
    allowed = np.ones(logits.shape, dtype=bool)
    if mask is not None:
        allowed = allowed & mask
    if is_causal:
        allowed = allowed & np.tril(np.ones(logits.shape[-2:], dtype=bool))
    logits = np.where(allowed, logits, -np.inf)
    top = logits.max(axis=-1, keepdims=True)
    e = np.where(allowed, np.exp(logits - np.where(np.isfinite(top), top, 0.0)), 0.0)
    total = e.sum(axis=-1, keepdims=True)
    return (e / np.where(total > 0, total, 1.0)) @ v


@pytest.fixture
def budget() -> Iterator[Any]:
    old = seqops.attention_memory_budget()
    yield seqops.set_attention_memory_budget
    seqops.set_attention_memory_budget(old)


CASES = {
    # name: (q lead, k/v lead, L, S, mask shape or None, bias shape or None, causal)
    "no-lead": ((), (), 5, 7, None, None, False),
    "heads-mask-bias-causal": ((2, 3), (2, 3), 5, 7, (2, 1, 5, 7), (5, 7), True),
    "more-queries-than-keys": ((2,), (2,), 7, 5, None, (2, 7, 5), True),
    "broadcast-kv-and-mask": ((2, 2, 3), (1, 2, 3), 4, 6, (1, 2, 1, 4, 6), None, False),
    "padding-mask": ((3, 2), (3, 2), 4, 9, (3, 1, 1, 9), None, False),
}
BUDGETS = {"one-chunk": 2**30, "two-heads": 2 * 7 * 9 * 6, "row-blocks": 3 * 9 * 4, "one-row": 0}


@pytest.mark.parametrize("dtype_name", ["float16", "float32", "float64"])
@pytest.mark.parametrize("budget_name", BUDGETS)
@pytest.mark.parametrize("case", CASES)
def test_the_chunked_plan_computes_attention(
    case: str, budget_name: str, dtype_name: str, budget: Any
) -> None:
    q_lead, kv_lead, q_len, kv_len, mask_shape, bias_shape, causal = CASES[case]
    dtype = np.dtype(dtype_name)
    q = rng.standard_normal((*q_lead, q_len, 8)).astype(dtype)
    k = rng.standard_normal((*kv_lead, kv_len, 8)).astype(dtype)
    v = rng.standard_normal((*kv_lead, kv_len, 3)).astype(dtype)
    mask = None if mask_shape is None else rng.random(mask_shape) > 0.3
    if mask is not None:
        mask[(0,) * (mask.ndim - 2)] = False  # queries with no allowed key: zeros
    bias = None if bias_shape is None else rng.standard_normal(bias_shape).astype(dtype)
    budget(BUDGETS[budget_name])
    out = plan.attention(
        np, numpy_gemm, numpy_softmax, q, k, v, mask=mask, bias=bias, is_causal=causal, scale=0.4
    )
    expected = reference(q, k, v, mask, bias, causal, 0.4)
    assert out.dtype == dtype and out.shape == expected.shape
    np.testing.assert_allclose(out.astype(np.float64), expected, **TOL[dtype_name])
    if mask is not None:
        assert not out[(0,) * (out.ndim - 2)].any()


def test_the_kernel_threads_match_its_launch_bounds() -> None:
    assert f"#define SEQOPS_THREADS {plan.THREADS} " in plan._SOFTMAX
    assert plan.THREADS % 32 == 0 and plan.THREADS <= 1024


def _nvcc() -> str:
    found = shutil.which("nvcc")
    if found is None:
        pytest.skip("nvcc (the CUDA toolkit's compiler) is not installed")
    return found


def test_the_softmax_kernel_compiles_for_sm90_without_spills(tmp_path: Path) -> None:
    source = tmp_path / "softmax.cu"
    source.write_text(plan._SOFTMAX)
    done = subprocess.run(
        [
            _nvcc(),
            "-arch=sm_90",
            "-std=c++17",
            "-cubin",
            "-Xptxas",
            "-v",
            "-o",
            str(tmp_path / "k.cubin"),
            str(source),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for name in plan.KERNELS:
        assert f"Compiling entry function '{name}'" in done.stderr
    assert "bytes spill stores" in done.stderr
    assert not re.search(r"[1-9]\d* bytes spill stores", done.stderr), done.stderr


def _cuda_include() -> Path:
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root and (Path(root) / "include" / "library_types.h").exists():
            return Path(root) / "include"
    pytest.skip("no CUDA headers (library_types.h) found under CUDA_HOME, CUDA_PATH or /usr/local/cuda")


def _enum_value(header: Path, name: str) -> int:
    found = re.search(rf"\b{name}\s*=\s*(-?\d+)", header.read_text())
    assert found, f"{name} not in {header}"
    return int(found.group(1))


def test_the_data_type_values_match_the_cuda_headers() -> None:
    header = _cuda_include() / "library_types.h"
    for name in ("CUDA_R_16F", "CUDA_R_32F", "CUDA_R_64F"):
        assert getattr(plan, name) == _enum_value(header, name), name


def test_the_cublas_values_match_the_cublas_header() -> None:
    header = _cuda_include() / "cublas_api.h"
    if not header.exists():
        pytest.skip(f"no cuBLAS header at {header} (the CUDA toolkit here has no cuBLAS)")
    for name in ("CUBLAS_OP_N", "CUBLAS_OP_T", "CUBLAS_COMPUTE_32F", "CUBLAS_COMPUTE_32F_PEDANTIC"):
        assert getattr(plan, name) == _enum_value(header, name), name
    assert plan.CUBLAS_COMPUTE_64F == _enum_value(header, "CUBLAS_COMPUTE_64F")
    assert plan.CUBLAS_GEMM_DEFAULT == _enum_value(header, "CUBLAS_GEMM_DEFAULT")


# -- on a GPU ----------------------------------------------------------------------------------


@pytest.fixture
def cupy() -> Any:
    availability = dict((b.name, ok) for b, ok in seqops.backends())["cupy"]
    if not availability:
        pytest.skip(f"backend 'cupy' unavailable: {availability.reason}")
    if seqops.registry.pm.get_plugin("cupy-fast") is None:
        pytest.skip("plugin 'cupy-fast' is not loaded (disabled or not installed)")
    import cupy

    return cupy


@pytest.mark.parametrize("dtype_name", ["float16", "float32", "float64"])
@pytest.mark.parametrize("budget_name", ["one-chunk", "row-blocks"])
@pytest.mark.parametrize("case", CASES)
def test_cupy_attention_matches_the_reference(
    cupy, case: str, budget_name: str, dtype_name: str, budget
) -> None:
    q_lead, kv_lead, q_len, kv_len, mask_shape, bias_shape, causal = CASES[case]
    dtype = np.dtype(dtype_name)
    host = [
        rng.standard_normal((*q_lead, q_len, 8)).astype(dtype),
        rng.standard_normal((*kv_lead, kv_len, 8)).astype(dtype),
        rng.standard_normal((*kv_lead, kv_len, 3)).astype(dtype),
    ]
    mask = None if mask_shape is None else rng.random(mask_shape) > 0.3
    bias = None if bias_shape is None else rng.standard_normal(bias_shape).astype(dtype)
    q, k, v = (cupy.asarray(x) for x in host)
    options = {
        "mask": None if mask is None else cupy.asarray(mask),
        "bias": None if bias is None else cupy.asarray(bias),
        "is_causal": causal,
        "scale": 0.4,
    }
    budget(BUDGETS[budget_name])
    assert seqops.explain(seqops.scaled_dot_product_attention, q, k, v, **options).chosen == "cupy-attention"
    out = seqops.scaled_dot_product_attention(q, k, v, **options)
    assert isinstance(out, cupy.ndarray) and out.dtype == dtype
    expected = reference(*host, mask, bias, causal, 0.4)
    np.testing.assert_allclose(cupy.asnumpy(out).astype(np.float64), expected, **TOL[dtype_name])


def test_cupy_attention_with_grouped_queries(cupy) -> None:
    q = cupy.asarray(rng.standard_normal((2, 4, 5, 8)), dtype=cupy.float32)
    k = cupy.asarray(rng.standard_normal((2, 2, 6, 8)), dtype=cupy.float32)
    v = cupy.asarray(rng.standard_normal((2, 2, 6, 8)), dtype=cupy.float32)
    out = seqops.scaled_dot_product_attention(q, k, v, enable_gqa=True, is_causal=True)
    k_full, v_full = (np.repeat(cupy.asnumpy(x), 2, axis=-3) for x in (k, v))
    expected = reference(cupy.asnumpy(q), k_full, v_full, None, None, True, 8**-0.5)
    np.testing.assert_allclose(cupy.asnumpy(out), expected, **TOL["float32"])


def test_cupy_attention_declines_with_reasons(cupy) -> None:
    q = cupy.ones((2, 3, 4), dtype=cupy.float32)
    for options, reason in (
        ({"return_weights": True}, plan.WEIGHTS),
        ({"dropout_p": 0.5, "rng": 0}, plan.DROPOUT),
    ):
        explanation = seqops.explain(seqops.scaled_dot_product_attention, q, q, q, **options)
        assert explanation.chosen != "cupy-attention" and reason in str(explanation)
    explanation = seqops.explain(seqops.scaled_dot_product_attention, q[:, :0], q, q)
    assert plan.EMPTY in str(explanation)
