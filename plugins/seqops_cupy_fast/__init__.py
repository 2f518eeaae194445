"""Fast paths on the CuPy backend: the LSTM gate update fused into one CUDA kernel
(``cupy-lstm``, this module) and attention as two tensor-core GEMMs around one fused softmax
kernel (``cupy-attention``, :mod:`seqops_cupy_fast.attention`).

Per step the portable ``lstm`` launches a product and about a dozen elementwise kernels
(gate slices, three sigmoids, two tanh, the products and sums of the cell update), which
leaves a GPU waiting on launches at the sizes of issue 5 (T=256, B=64, I=512, H=1024:
60 ms portable, target 20 ms). ``cupy-lstm`` computes ``xs @ w_ih + b`` for every step in
one product, then per step one cuBLAS product ``h @ w_hh`` (added in place) and **one**
``ElementwiseKernel`` for the whole gate update::

    i, f, o = sigmoid(z_i), sigmoid(z_f), sigmoid(z_o);  g = tanh(z_g)
    c' = f * c + i * g;  h' = o * tanh(c')

(gates i, f, o, g along the last axis, as the contract orders them). It declines half
precision (the contract carries the state in float32 between steps; the kernel would round it
to float16), an empty sequence and an empty batch, which the portable path handles.

Status: written without a GPU (none was lent to the session that wrote it), so never run;
``bench/gpu.sh`` runs the conformance suite on CuPy (this plugin beside ``portable``) and the
``gpu_lstm_cupy`` benchmark. Importing this module does not import CuPy.
"""

from __future__ import annotations

import math
from typing import Any

import seqops
from seqops_cupy_fast import attention

HALF = "half precision: the fused kernel would carry the state in float16, the contract in float32"
EMPTY_SEQUENCE = "an empty sequence (T = 0)"
EMPTY_BATCH = "an empty batch"

_GATES = r"""
const ptrdiff_t row = (i / H) * 4 * H;  // i = b * H + j: this element's row of z (B, 4H)
const ptrdiff_t j = i % H;
const T one = 1;
const T in_gate = one / (one + exp(-z[row + j]));
const T forget_gate = one / (one + exp(-z[row + H + j]));
const T out_gate = one / (one + exp(-z[row + 2 * H + j]));
const T candidate = tanh(z[row + 3 * H + j]);
c_new = forget_gate * c + in_gate * candidate;
h_new = out_gate * tanh(c_new);
"""


@seqops.hookimpl
def seqops_implementations(backend: seqops.Backend) -> list[seqops.Implementation] | None:
    if backend.name != "cupy":
        return None
    return [
        seqops.Implementation(
            seqops.ops.lstm,
            "cupy-lstm",
            lstm,
            decline=decline_lstm,
            limitations=(seqops.Limitation(HALF, dtype="float16"),),
        ),
        seqops.Implementation(
            seqops.ops.scaled_dot_product_attention,
            "cupy-attention",
            attention.sdpa,
            decline=attention.decline_sdpa,
        ),
    ]


def decline_lstm(backend: seqops.Backend, xs: Any, state: Any, *args: Any) -> str | None:
    if xs.dtype.itemsize < 4:
        return HALF
    if xs.shape[0] == 0:
        return EMPTY_SEQUENCE
    if state[0].size == 0:
        return EMPTY_BATCH
    return None


_kernel: Any = None


def _gate_kernel() -> Any:
    """The ``ElementwiseKernel`` ``(z (B, 4H) raw, c (B, H), H) -> (h', c')``, built once."""
    global _kernel
    if _kernel is None:
        import cupy

        _kernel = cupy.ElementwiseKernel(
            "raw T z, T c, int64 H", "T h_new, T c_new", _GATES, "seqops_lstm_gates"
        )
    return _kernel


def lstm(backend: seqops.Backend, xs: Any, state: Any, w_ih: Any, w_hh: Any, b: Any, /) -> Any:
    """:func:`seqops.lstm` on CuPy arrays ``xs (T, ..., I)``, ``state (h0, c0)`` of
    ``(..., H)``: the hidden states ``(T, ..., H)`` and the final ``(h_T, c_T)``."""
    import cupy

    h0, c0 = state
    steps, lead, hidden = xs.shape[0], tuple(xs.shape[1:-1]), w_hh.shape[0]
    batch = math.prod(lead)
    pre = xs.reshape(steps, batch, xs.shape[-1]) @ w_ih  # (T, B, 4H): every step's input product
    if b is not None:
        pre += b
    h = cupy.ascontiguousarray(h0.reshape(batch, hidden))
    c = cupy.ascontiguousarray(c0.reshape(batch, hidden))
    hs = cupy.empty((steps, batch, hidden), dtype=xs.dtype)
    gates = _gate_kernel()
    for t in range(steps):
        z = h @ w_hh  # (B, 4H), a new C-contiguous array
        z += pre[t]
        c_next = cupy.empty_like(c)
        gates(z, c, hidden, hs[t], c_next)
        h, c = hs[t], c_next
    return hs.reshape(steps, *lead, hidden), (h.reshape(*lead, hidden), c.reshape(*lead, hidden))
