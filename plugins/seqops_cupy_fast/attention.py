"""``cupy-attention``: scaled dot-product attention on CuPy with tensor-core GEMMs and one fused
softmax kernel.

The portable path on CuPy launches a dozen kernels over the ``(..., L, S)`` scores (scale, bias,
mask, max, subtract, exp, sum, divide, casts), each a full pass through GPU memory, and its
products run in float32 for half inputs. Here, per chunk of (leading index, query rows):

1. ``scores = scale · q kᵀ`` — one strided-batched cuBLAS GEMM (``cublasGemmStridedBatchedEx``)
   reading ``q``, ``k`` in their dtype and writing float32 (float64 for float64), accumulating in
   float32 on tensor cores for float16 (``CUBLAS_COMPUTE_32F``; float32 inputs use the pedantic
   compute type, so never TF32);
2. one kernel per row (``_SOFTMAX``): adds ``bias``, applies ``mask`` and top-left causality by
   index (no ``(L, S)`` mask is built), softmax in float32/float64, zeros on a row with no allowed
   key, weights written in the input dtype (in place for float32/float64);
3. ``out = weights @ v`` — a second strided-batched GEMM writing straight into the output.

Chunks are sized so that the scores of one chunk fit :func:`seqops.attention_memory_budget`, the
budget the portable tiled path follows. Half inputs round the weights to float16 before the second
product, as GPU attention kernels do (the portable path keeps them in float32: differences are
within the float16 tolerance). Declined: dropout (drawn from seqops' rng on the portable path),
``return_weights``, empty sizes, dtypes other than float16/32/64.

Status: written without a GPU (none was lent to the session that wrote it), so never run here.
The kernel source is compiled by ``nvcc`` for sm_90 in the tests where ``nvcc`` exists, and the
cuBLAS enum values are checked against the CUDA headers; ``bench/gpu.sh`` runs the conformance
suite on CuPy (this implementation beside ``portable``) and the ``gpu_attn_cupy`` benchmark.
"""

from __future__ import annotations

import math
from typing import Any

import seqops

DROPOUT = "dropout: the portable path draws the dropout mask from seqops' rng"
WEIGHTS = "return_weights=True: the fused kernel keeps the weights of one chunk at a time"
EMPTY = "an empty query, key, value or feature dimension"

# cuBLAS and CUDA enum values (cublas_api.h, library_types.h; checked by the tests against the
# headers where the CUDA toolkit is installed).
CUBLAS_OP_N, CUBLAS_OP_T = 0, 1
CUDA_R_16F, CUDA_R_32F, CUDA_R_64F = 2, 0, 1
CUBLAS_COMPUTE_32F, CUBLAS_COMPUTE_32F_PEDANTIC, CUBLAS_COMPUTE_64F = 68, 69, 70
CUBLAS_GEMM_DEFAULT = -1

THREADS = 256  # per block (SEQOPS_THREADS in the kernel): one block per score row

_SOFTMAX = r"""
#include <cuda_fp16.h>

#define SEQOPS_THREADS 256  // threads per block: THREADS in Python

__device__ __forceinline__ float to_acc(float x) { return x; }
__device__ __forceinline__ float to_acc(__half x) { return __half2float(x); }
__device__ __forceinline__ double to_acc(double x) { return x; }
__device__ __forceinline__ void store(float* p, float x) { *p = x; }
__device__ __forceinline__ void store(__half* p, float x) { *p = __float2half_rn(x); }
__device__ __forceinline__ void store(double* p, double x) { *p = x; }
__device__ __forceinline__ float exp_acc(float x) { return expf(x); }
__device__ __forceinline__ double exp_acc(double x) { return exp(x); }
__device__ __forceinline__ float larger(float a, float b) { return fmaxf(a, b); }
__device__ __forceinline__ double larger(double a, double b) { return fmax(a, b); }
template <typename A> __device__ __forceinline__ A minus_infinity();
template <> __device__ __forceinline__ float minus_infinity<float>() { return -__int_as_float(0x7f800000); }
template <> __device__ __forceinline__ double minus_infinity<double>() {
    return -__longlong_as_double(0x7ff0000000000000LL);
}

// The maximum (IS_MAX) or the sum of v over the block; every thread gets it. blockDim.x is a
// multiple of 32 and at most 1024; partial holds 32 values.
template <typename A, bool IS_MAX>
__device__ A block_reduce(A v, A* partial) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    for (int offset = 16; offset > 0; offset >>= 1) {
        const A other = __shfl_xor_sync(0xffffffffu, v, offset);
        v = IS_MAX ? larger(v, other) : v + other;
    }
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    v = lane < warps ? partial[lane] : (IS_MAX ? minus_infinity<A>() : A(0));
    for (int offset = 16; offset > 0; offset >>= 1) {
        const A other = __shfl_xor_sync(0xffffffffu, v, offset);
        v = IS_MAX ? larger(v, other) : v + other;
    }
    __syncthreads();  // partial is reused by the next reduction
    return v;
}

// One block of SEQOPS_THREADS threads per row of scores (rows, S) = (chunk lead indices x query rows, keys).
// Row r is lead index n0 + r / rows_per_lead and query l = r0 + r % rows_per_lead.
// mask (bool bytes) and bias (T) are broadcast views read through element strides:
// meta = [mask stride of l, of s, bias stride of l, of s, then per lead dim: size, mask
// stride, bias stride]. weights may alias scores (then T is A).
template <typename T, typename A>
__device__ void softmax_rows(
    const A* scores, T* weights, const unsigned char* __restrict__ mask, const T* __restrict__ bias,
    const long long* __restrict__ meta, const int lead_ndim, const long long rows_per_lead,
    const long long n0, const long long r0, const long long S, const int has_mask, const int has_bias,
    const int causal) {
    __shared__ A partial[32];
    const long long row = blockIdx.x;
    const long long l = r0 + row % rows_per_lead;
    long long rest = n0 + row / rows_per_lead;
    long long mask_at = l * meta[0], bias_at = l * meta[2];
    for (int d = lead_ndim - 1; d >= 0; --d) {
        const long long size = meta[4 + 3 * d];
        const long long i = rest % size;
        rest /= size;
        mask_at += i * meta[5 + 3 * d];
        bias_at += i * meta[6 + 3 * d];
    }
    const long long mask_step = meta[1], bias_step = meta[3];
    const long long keys = causal ? (l + 1 < S ? l + 1 : S) : S;  // keys j < keys pass causality
    const A* x = scores + row * S;
    T* w = weights + row * S;

    A top = minus_infinity<A>();
    for (long long j = threadIdx.x; j < keys; j += blockDim.x) {
        if (has_mask && !mask[mask_at + j * mask_step]) continue;
        const A logit = x[j] + (has_bias ? to_acc(bias[bias_at + j * bias_step]) : A(0));
        top = larger(top, logit);
    }
    top = block_reduce<A, true>(top, partial);
    const bool none = top == minus_infinity<A>();  // no allowed key: a row of zeros

    A total = 0;
    for (long long j = threadIdx.x; j < keys && !none; j += blockDim.x) {
        if (has_mask && !mask[mask_at + j * mask_step]) continue;
        const A logit = x[j] + (has_bias ? to_acc(bias[bias_at + j * bias_step]) : A(0));
        total += exp_acc(logit - top);
    }
    total = block_reduce<A, false>(total, partial);

    for (long long j = threadIdx.x; j < S; j += blockDim.x) {
        A p = 0;
        if (!none && j < keys && (!has_mask || mask[mask_at + j * mask_step])) {
            const A logit = x[j] + (has_bias ? to_acc(bias[bias_at + j * bias_step]) : A(0));
            p = exp_acc(logit - top) / total;
        }
        store(w + j, p);
    }
}

#define SEQOPS_SOFTMAX_ROWS(NAME, T, A)                                                            \
    extern "C" __global__ void __launch_bounds__(SEQOPS_THREADS) NAME(                              \
        const A* scores, T* weights, const unsigned char* mask, const T* bias, const long long* meta, \
        const int lead_ndim, const long long rows_per_lead, const long long n0, const long long r0, \
        const long long S, const int has_mask, const int has_bias, const int causal) {             \
        softmax_rows<T, A>(scores, weights, mask, bias, meta, lead_ndim, rows_per_lead, n0, r0, S, \
                           has_mask, has_bias, causal);                                            \
    }

SEQOPS_SOFTMAX_ROWS(seqops_softmax_rows_float16, __half, float)
SEQOPS_SOFTMAX_ROWS(seqops_softmax_rows_float32, float, float)
SEQOPS_SOFTMAX_ROWS(seqops_softmax_rows_float64, double, double)
"""

KERNELS = ("seqops_softmax_rows_float16", "seqops_softmax_rows_float32", "seqops_softmax_rows_float64")

_module: Any = None


def _kernel(dtype_name: str) -> Any:
    """The softmax kernel for ``dtype_name`` (the module is compiled once, on first use)."""
    global _module  # noqa: PLW0603 - compiled once per process
    if _module is None:
        import cupy

        _module = cupy.RawModule(code=_SOFTMAX, options=("--std=c++17",))
    return _module.get_function(f"seqops_softmax_rows_{dtype_name}")


def decline_sdpa(
    backend: Any, q: Any, k: Any, v: Any, /, *, dropout_p: float, return_weights: bool, **_: Any
) -> str | None:
    if return_weights:
        return WEIGHTS
    if dropout_p > 0.0:
        return DROPOUT
    if q.dtype.name not in ("float16", "float32", "float64"):
        return f"dtype {q.dtype.name}: the fused softmax kernel exists for float16, float32 and float64"
    if 0 in (*q.shape, *k.shape, *v.shape):
        return EMPTY
    return None


def sdpa(
    backend: Any,
    q: Any,
    k: Any,
    v: Any,
    /,
    *,
    mask: Any,
    bias: Any,
    is_causal: bool,
    scale: float,
    enable_gqa: bool,
    **_: Any,
) -> Any:
    """:func:`seqops.scaled_dot_product_attention` on CuPy arrays ``q (..., L, E)``,
    ``k (..., S, E)``, ``v (..., S, Ev)``: the output ``(..., L, Ev)`` in ``q``'s dtype."""
    import cupy

    if enable_gqa and k.shape[-3] != q.shape[-3]:
        group = q.shape[-3] // k.shape[-3]  # query head h reads key/value head h // group
        k, v = cupy.repeat(k, group, axis=-3), cupy.repeat(v, group, axis=-3)
    return attention(
        cupy, _cublas_gemm, _launch_softmax, q, k, v, mask=mask, bias=bias, is_causal=is_causal, scale=scale
    )


def attention(
    xp: Any,
    gemm: Any,
    softmax: Any,
    q: Any,
    k: Any,
    v: Any,
    /,
    *,
    mask: Any,
    bias: Any,
    is_causal: bool,
    scale: float,
) -> Any:
    """The chunked plan of the module docstring on namespace ``xp``: CuPy with cuBLAS and the
    kernel; NumPy in the tests, with a column-major GEMM and the kernel's rows written in NumPy,
    so that the index arithmetic below is checked without a GPU.

    ``gemm(transa, transb, m, n, k, alpha, a, a_at, lda, stride_a, b, b_at, ldb, stride_b, c,
    c_at, ldc, stride_c, batch)`` is ``cublasGemmStridedBatchedEx`` (column-major, ``beta = 0``)
    on C-contiguous arrays, ``*_at`` being element offsets; ``softmax(blocks, args)`` launches
    ``_SOFTMAX`` for ``q``'s dtype with ``blocks`` rows and the kernel's arguments ``args``.
    ``k``, ``v`` have as many heads as ``q`` (grouped-query ones are repeated by the caller).
    """
    dtype = q.dtype
    q_len, kv_len, width, v_width = q.shape[-2], k.shape[-2], q.shape[-1], v.shape[-1]
    lead = _broadcast(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    count = math.prod(lead)

    def flat(x: Any, rows: int, cols: int) -> Any:  # (count, rows, cols), C-contiguous
        return xp.reshape(xp.ascontiguousarray(xp.broadcast_to(x, (*lead, rows, cols))), (count, rows, cols))

    q3, k3, v3 = flat(q, q_len, width), flat(k, kv_len, width), flat(v, kv_len, v_width)
    out = xp.empty((count, q_len, v_width), dtype=dtype)

    # float32 scores for half inputs (weights rounded to the input dtype), else in place
    scores_dtype = xp.float64 if dtype == xp.float64 else xp.float32
    in_place = scores_dtype == dtype
    per_row = kv_len * (xp.dtype(scores_dtype).itemsize + (0 if in_place else dtype.itemsize))
    rows_fit = max(1, seqops.attention_memory_budget() // per_row)  # at least one row at a time
    heads_per_chunk = max(1, min(count, rows_fit // q_len))  # whole (L, S) matrices if they fit
    rows_per_chunk = min(q_len, rows_fit)
    scores = xp.empty(heads_per_chunk * rows_per_chunk * kv_len, dtype=scores_dtype)
    weights = scores if in_place else xp.empty(scores.size, dtype=dtype)
    meta, mask_view, bias_view = _mask_meta(xp, mask, bias, lead, q_len, kv_len, dtype)
    flags = (int(mask is not None), int(bias is not None), int(bool(is_causal)))

    for n0 in range(0, count, heads_per_chunk):
        heads = min(heads_per_chunk, count - n0)
        for r0 in range(0, q_len, rows_per_chunk):
            rows = min(rows_per_chunk, q_len - r0)
            # scores (heads, rows, S) = scale · q[n0:, r0:r0+rows] @ k[n0:]ᵀ; column-major:
            # scoresᵀ (S, rows) = (k stored as (E, S))ᵀ · (q stored as (E, rows)).
            gemm(
                CUBLAS_OP_T, CUBLAS_OP_N, kv_len, rows, width, scale,
                k3, n0 * kv_len * width, width, kv_len * width,
                q3, (n0 * q_len + r0) * width, width, q_len * width,
                scores, 0, kv_len, rows * kv_len,
                heads,
            )  # fmt: skip
            softmax(
                heads * rows,
                (scores, weights, mask_view, bias_view, meta, len(lead), rows, n0, r0, kv_len, *flags),
            )
            # out[n0:, r0:r0+rows] (heads, rows, Ev) = weights @ v[n0:]; column-major:
            # outᵀ (Ev, rows) = (v stored as (Ev, S)) · (weights stored as (S, rows)).
            gemm(
                CUBLAS_OP_N, CUBLAS_OP_N, v_width, rows, kv_len, 1.0,
                v3, n0 * kv_len * v_width, v_width, kv_len * v_width,
                weights, 0, kv_len, rows * kv_len,
                out, (n0 * q_len + r0) * v_width, v_width, q_len * v_width,
                heads,
            )  # fmt: skip
    return xp.reshape(out, (*lead, q_len, v_width))


def _broadcast(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    import numpy as np

    return tuple(np.broadcast_shapes(*shapes))


def _mask_meta(
    xp: Any, mask: Any, bias: Any, lead: tuple[int, ...], q_len: int, kv_len: int, dtype: Any
) -> tuple[Any, Any, Any]:
    """The kernel's ``meta`` (int64 element strides, see ``_SOFTMAX``) and the mask and bias
    views broadcast to ``(*lead, L, S)`` without copying (one-element stand-ins when absent)."""
    target = (*lead, q_len, kv_len)

    def view(x: Any, stand_in: Any) -> tuple[Any, tuple[int, ...]]:
        if x is None:
            return stand_in, (0,) * len(target)
        wide = xp.broadcast_to(x, target)
        return wide, tuple(s // wide.itemsize for s in wide.strides)

    mask_view, mask_strides = view(mask, xp.ones(1, dtype=xp.bool_))
    bias_view, bias_strides = view(bias, xp.zeros(1, dtype=dtype))
    meta = [mask_strides[-2], mask_strides[-1], bias_strides[-2], bias_strides[-1]]
    for d, size in enumerate(lead):
        meta += [size, mask_strides[d], bias_strides[d]]
    return xp.asarray(meta, dtype=xp.int64), mask_view, bias_view


# -- CuPy launchers -------------------------------------------------------------------------
_CUDA_TYPES = {"float16": CUDA_R_16F, "float32": CUDA_R_32F, "float64": CUDA_R_64F}


def _cublas_gemm(
    transa: int, transb: int, m: int, n: int, k: int, alpha: float,
    a: Any, a_at: int, lda: int, stride_a: int,
    b: Any, b_at: int, ldb: int, stride_b: int,
    c: Any, c_at: int, ldc: int, stride_c: int,
    batch: int,
) -> None:  # fmt: skip
    """``cublasGemmStridedBatchedEx`` with ``beta = 0``; compute type from ``a``'s dtype:
    float64 for float64, float32 (pedantic: never TF32) for float32, float32 for float16."""
    import cupy
    import numpy as np
    from cupy.cuda import cublas

    if a.dtype == np.float64:
        compute, scalar = CUBLAS_COMPUTE_64F, "float64"
    else:
        compute = CUBLAS_COMPUTE_32F_PEDANTIC if a.dtype == np.float32 else CUBLAS_COMPUTE_32F
        scalar = "float32"
    alpha_host, zero = np.array(alpha, dtype=scalar), np.array(0, dtype=scalar)
    cublas.gemmStridedBatchedEx(
        cupy.cuda.device.get_cublas_handle(), transa, transb, m, n, k,
        alpha_host.ctypes.data,
        a.data.ptr + a_at * a.itemsize, _CUDA_TYPES[a.dtype.name], lda, stride_a,
        b.data.ptr + b_at * b.itemsize, _CUDA_TYPES[b.dtype.name], ldb, stride_b,
        zero.ctypes.data,
        c.data.ptr + c_at * c.itemsize, _CUDA_TYPES[c.dtype.name], ldc, stride_c,
        batch, compute, CUBLAS_GEMM_DEFAULT,
    )  # fmt: skip


def _launch_softmax(blocks: int, args: tuple[Any, ...]) -> None:
    import numpy as np

    scores, weights, mask, bias, meta, lead_ndim, rows, n0, r0, kv_len, has_mask, has_bias, causal = args
    _kernel(weights.dtype.name)(
        (blocks,),
        (THREADS,),
        (
            scores, weights, mask, bias, meta, np.int32(lead_ndim),
            np.int64(rows), np.int64(n0), np.int64(r0), np.int64(kv_len),
            np.int32(has_mask), np.int32(has_bias), np.int32(causal),
        ),
    )  # fmt: skip
