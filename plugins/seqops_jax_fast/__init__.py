"""Fast paths on the JAX backend.

- ``scaled_dot_product_attention``: ``jax.nn.dot_product_attention``, as two
  implementations asked in this order: ``jax-cudnn-attention`` (``implementation="cudnn"``,
  cuDNN's flash attention) where the call qualifies — a CUDA GPU, float16/bfloat16, a head
  dim that is a multiple of 8 and at most 128 (256 from compute capability 9.0), even
  sequence lengths when there is a mask or bias (cuDNN's rule for the backward pass), equal
  lengths when causal — and ``jax-dot-product-attention`` (``implementation="xla"``,
  explicitly) otherwise; ``seqops.explain`` shows why cuDNN was not taken.
- ``sample_logits`` with ``top_k`` (``decoding.py``): ``lax.top_k`` and ``k`` draws a row,
  ties exact under ``jax.jit``: 1.03x of ``lax.top_k`` + ``jax.random.categorical`` against
  7.2x for the portable draw over the whole vocabulary.
- ``masked_conv2d`` (``conv.py``): one ``lax.conv_general_dilated`` with the masked weight,
  ~0.93x of calling it directly against 4.5x for the portable im2col (jitted, CPU), so
  accepted everywhere.
- ``softmax``/``log_softmax`` (``activations.py``): ``jax.nn.softmax``/``jax.nn.log_softmax``,
  the same kernels (against 1.03-1.18x and 1.12-1.39x for the portable math, whose select
  guarding a non-finite row maximum XLA's CPU compiler fuses into no YNNPACK kernel: a pass
  more), accepted everywhere.
- ``window_attention`` (``windows.py``), on CPU: the whole composite in ``jax.numpy``, its
  softmax guarded by ``maximum``s (exact) so that XLA fuses it with both products: 0.90-0.96x
  of Swin's own code against 1.12-1.24x for the composite over the portable attention
  (2 × 56 × 56 × 96, window 7, shift 3).

Measured and not kept (``bench/jax_fast.py`` and ``bench/ops_table.py`` print the jitted
ratios): the portable ``layer_norm``, ``rms_norm``, the activations, ``cross_entropy`` (a
``take_along_axis`` gather) and top-k ``filter_logits`` (a ``lax.top_k`` selection) already
run within 1.10x of ``jax.nn``/``lax`` under ``jax.jit`` on CPU, and a fast path compiled to
the same kernels; so does ``iwae_bound`` (the kernels of ``jax.scipy.special.logsumexp``:
0.97-1.06x, the spread of timing one function against a copy of itself here).
``gaussian_log_likelihood`` (1.07-1.19x) gets no fast path: its gap is a constant, ``-0.5``,
that XLA shares between the per-entry kernel and the final scaling and then passes to the
YNNPACK kernel as an operand; it belongs to the portable formula (any form that does not
repeat the constant: 0.95-1.03x). ``windows.py``'s ``maximum`` guards tried in the portable
masked softmax (the attention's softmax and value product then one kernel) took the
``scaled_dot_product_attention`` row of ``bench/ops_table.py`` (B=2 H=8 L=S=1024 E=64)
from 0.85x to 1.46x of its plain ``jnp`` attention: not proposed.
``cross_entropy`` and ``autoregressive_log_likelihood`` (1.03-1.17x of ``jax.nn.log_softmax``
and a ``take_along_axis``) and ``apply_rotary`` (1.09-1.12x of Hugging Face's rotate-half
code) get no fast path either: their gaps were in the portable formulas, fixed there (the
losses pick ``x[t] - shift`` instead of reading a materialized ``x - shift``, whose guard, a
select, XLA split from the maximum: two passes over the logits instead of four, 0.33-0.42x;
the rotation as ``x·cos + rotate_half(x)·sin`` over repeated angles, the same values: 1.01-1.03x).
The ``log_softmax`` cell (1.06-1.31x, keras 1.04-1.33x, then 0.99 / 1.00x) compiles to the
very kernels of ``jax.nn.log_softmax``: two jitted copies of ``jax.nn.log_softmax`` timed
against each other read 0.80-1.46x while another process loaded this 2-core machine,
0.94-1.08x when it was quiet.
``rnn_cell`` (1.16-1.18x in two full runs, 0.92-1.06x in three more) compiles to the same
kernels as the plain step.

The attention takes ``(B, T, N, H)`` arrays: the heads axis of ``(..., N, L, E)`` inputs
(dim -3) is its ``N`` (moved there by a transpose, never folded into ``B``: a heads-sharded
input stays sharded, with no all-gather), the dims before it are broadcast and flattened to
``B`` (a no-op for one batch dim; 2-D inputs get ``B = N = 1``). Where it differs from the
contract it is corrected or declined:

- a query row with no allowed key gives the mean of ``v`` there (it masks with a large
  finite negative): the plugin zeroes such rows (``where``, exact and cheap); ``-inf`` bias
  entries are turned into mask entries first so that nothing in it sees an infinity;
- float64 logits are computed in float32 (error ~1e-7): declined;
- no dropout, no weights, values as wide as the keys only: declined otherwise;
- on CPU it is declined: there the jitted portable path is faster (55.6 ms against 110 ms,
  B=2 H=8 N=1024 D=64 fp32, ``bench/results/cpu-2026-12-01.md``). ``ACCEPT_ON_CPU = True``
  (for tests and for measuring) lifts that rule for the XLA implementation; float16 then
  runs eagerly only: under ``jax.jit`` XLA's CPU ``dot_general`` rejects the F16_F16_F32
  precision ``jax.nn.dot_product_attention`` asks for (JAX 0.10).

Importing this package does not import JAX.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Literal

import seqops

from . import activations, conv, decoding, windows
from ._shapes import SYMBOLIC, on_cpu, static

DROPOUT = "dropout with an explicit rng: jax.nn.dot_product_attention has no dropout"
WEIGHTS = "return_weights=True: jax.nn.dot_product_attention does not return the weights"
FLOAT64 = "float64: jax.nn.dot_product_attention computes the logits in float32 (error ~1e-7)"
VALUE_WIDTH = "values of another width than the keys (Ev != E)"
EMPTY = "an empty batch, query or key sequence or feature axis: left to the portable path"
ON_CPU = "on CPU the jitted portable attention is faster than jax.nn.dot_product_attention"

CUDNN_NO_GPU = "cuDNN attention needs a CUDA GPU"
CUDNN_DTYPE = "cuDNN attention takes float16/bfloat16 only"
CUDNN_ODD_LENGTH = "cuDNN attention with a mask or bias needs even sequence lengths (its backward pass)"
CUDNN_CAUSAL_LENGTHS = "cuDNN's causal mask is not checked for L != S: XLA keeps the top-left alignment"

#: Accept calls on the CPU backend too (off: measured slower there).
ACCEPT_ON_CPU = False


@seqops.hookimpl
def seqops_implementations(backend: seqops.Backend) -> list[seqops.Implementation] | None:
    if backend.name != "jax":
        return None
    limitations = [seqops.Limitation(FLOAT64, dtype="float64")]
    if not ACCEPT_ON_CPU:
        limitations.append(seqops.Limitation(ON_CPU, device="cpu"))

    cudnn_limitations = (
        seqops.Limitation(CUDNN_NO_GPU, device="cpu"),
        seqops.Limitation(CUDNN_DTYPE, dtype="float32"),
        seqops.Limitation(CUDNN_DTYPE, dtype="float64"),
    )
    ops = seqops.ops
    return [
        seqops.Implementation(
            ops.scaled_dot_product_attention,
            "jax-cudnn-attention",
            sdpa_cudnn,
            decline=decline_cudnn,
            limitations=cudnn_limitations,
        ),
        seqops.Implementation(
            ops.scaled_dot_product_attention,
            "jax-dot-product-attention",
            sdpa,
            decline=decline_sdpa,
            limitations=tuple(limitations),
        ),
        seqops.Implementation(
            ops.masked_conv2d,
            "jax-conv-general-dilated",
            conv.masked_conv2d,
            decline=conv.decline_masked_conv2d,
        ),
        seqops.Implementation(
            ops.sample_logits,
            "jax-topk-sample",
            decoding.sample_logits,
            decline=decoding.decline_sample_logits,
        ),
        seqops.Implementation(ops.softmax, "jax-nn-softmax", activations.softmax),
        seqops.Implementation(ops.log_softmax, "jax-nn-log-softmax", activations.log_softmax),
        seqops.Implementation(
            ops.window_attention,
            "jax-fused-window-attention",
            windows.window_attention,
            decline=windows.decline_window_attention,
            limitations=(seqops.Limitation(windows.OFF_CPU, device="cuda"),),
        ),
    ]


@functools.cache
def _cuda_capability() -> tuple[int, ...] | None:
    """The compute capability of the default CUDA device, ``None`` when JAX runs elsewhere
    (CPU, TPU, ROCm). Tests replace this predicate to check the GPU branch on a CPU."""
    import jax

    if jax.default_backend() != "gpu":
        return None
    device = jax.devices()[0]
    if "cuda" not in getattr(device.client, "platform_version", "").lower():
        return None
    capability = getattr(device, "compute_capability", None)
    try:
        return tuple(int(part) for part in str(capability).split("."))
    except ValueError:
        return None


_HALF_AND_SINGLE = ("float16", "bfloat16", "float32")
_HALF = ("float16", "bfloat16")


def decline_sdpa(
    backend: seqops.Backend, q: Any, k: Any, v: Any, /, *, dropout_p: float, return_weights: bool, **_: Any
) -> str | None:
    if return_weights:
        return WEIGHTS
    if not ACCEPT_ON_CPU and on_cpu():
        return ON_CPU
    return _unsupported(q, k, v, dropout_p)


def _unsupported(q: Any, k: Any, v: Any, dropout_p: float) -> str | None:
    """What neither implementation of jax.nn.dot_product_attention computes per contract."""
    if dropout_p > 0.0:
        return DROPOUT
    if q.dtype.name == "float64":
        return FLOAT64
    if q.dtype.name not in _HALF_AND_SINGLE:
        return f"dtype {q.dtype} is not one jax.nn.dot_product_attention computes"
    if v.shape[-1] != q.shape[-1]:
        return VALUE_WIDTH
    if 0 in (*q.shape, *k.shape, *v.shape):  # jax.nn.dot_product_attention (cuDNN above all) on no data
        return EMPTY
    return None


def decline_cudnn(
    backend: seqops.Backend,
    q: Any,
    k: Any,
    v: Any,
    /,
    *,
    mask: Any,
    bias: Any,
    is_causal: bool,
    dropout_p: float,
    return_weights: bool,
    **_: Any,
) -> str | None:
    """``None`` where cuDNN's flash attention computes the call (the conditions of
    ``jax._src.cudnn.fused_attention_stablehlo.check_is_flash_attention`` for fp16/bf16),
    else why not; the XLA implementation is asked next."""
    if return_weights:
        return WEIGHTS
    capability = _cuda_capability()
    if capability is None:
        return CUDNN_NO_GPU
    reason = _unsupported(q, k, v, dropout_p)
    if reason is not None:
        return reason
    if q.dtype.name not in _HALF:
        return CUDNN_DTYPE
    head, length, source = q.shape[-1], q.shape[-2], k.shape[-2]
    if not static(head, length, source):
        return SYMBOLIC
    head_max = 256 if capability >= (9, 0) else 128
    if head > head_max or head % 8:
        return f"cuDNN attention needs a head dim that is a multiple of 8 and <= {head_max}, not {head}"
    if (mask is not None or bias is not None) and (length % 2 or source % 2):
        return CUDNN_ODD_LENGTH
    if is_causal and length != source:
        return CUDNN_CAUSAL_LENGTHS
    return None


def sdpa(
    backend: seqops.Backend,
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
    """``jax.nn.dot_product_attention(..., implementation="xla")``."""
    return _attention(q, k, v, mask, bias, is_causal, scale, enable_gqa, "xla")


def sdpa_cudnn(
    backend: seqops.Backend,
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
    """``jax.nn.dot_product_attention(..., implementation="cudnn")``."""
    return _attention(q, k, v, mask, bias, is_causal, scale, enable_gqa, "cudnn")


def _attention(
    q: Any,
    k: Any,
    v: Any,
    mask: Any,
    bias: Any,
    is_causal: bool,
    scale: float,
    enable_gqa: bool,
    implementation: Literal["xla", "cudnn"],
) -> Any:
    import jax
    import jax.numpy as jnp

    # The heads axis (dim -3) stays jax's N axis: folding it into B would cost an all-gather
    # of a heads-sharded input and lose its sharding. Only the dims before it are flattened
    # into B (a no-op for one batch dim). Without GQA, q, k, v broadcast to one head count.
    if enable_gqa:
        lead = tuple(jnp.broadcast_shapes(q.shape[:-3], k.shape[:-3], v.shape[:-3]))
        heads, kv_heads = q.shape[-3], k.shape[-3]
        outer: tuple[int, ...] = (*lead, heads)
    else:
        outer = tuple(jnp.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2]))
        lead, heads = (outer[:-1], outer[-1]) if outer else ((), 1)
        kv_heads = heads
    batch = math.prod(lead)
    length, source = q.shape[-2], k.shape[-2]

    def to_btnh(x: Any, n: int) -> Any:
        # (*lead, [n,] T, H) -> (B, T, n, H)
        x = jnp.broadcast_to(x, (*lead, n, x.shape[-2], x.shape[-1]))
        return jnp.swapaxes(jnp.reshape(x, (batch, n, x.shape[-2], x.shape[-1])), 1, 2)

    def to_bnts(x: Any) -> Any:
        # mask/bias broadcastable to (*lead, N, L, S) -> (B, N, L, S)
        x = jnp.broadcast_to(x, (*lead, heads, length, source))
        return jnp.reshape(x, (batch, heads, length, source))

    allowed = None if mask is None else to_bnts(mask)
    if bias is not None:
        bias = to_bnts(bias)
        finite = bias > -jnp.inf  # -inf bias entries act as a mask (contract)
        allowed = finite if allowed is None else allowed & finite
        bias = jnp.where(allowed, bias, jnp.zeros((), bias.dtype))
    out = jax.nn.dot_product_attention(
        to_btnh(q, heads),
        to_btnh(k, kv_heads),
        to_btnh(v, kv_heads),
        bias=bias,
        mask=allowed,
        scale=scale,
        is_causal=is_causal,
        implementation=implementation,
    )  # (B, L, N, E)
    if allowed is not None:
        if is_causal:
            allowed = allowed & jnp.tril(jnp.ones((length, source), dtype=bool))
        # rows with no allowed key: zeros, not jax's mean of v
        row_ok = jnp.swapaxes(jnp.any(allowed, axis=-1), 1, 2)[..., None]  # (B, L, N, 1)
        out = jnp.where(row_ok, out, jnp.zeros((), out.dtype))
    out = jnp.swapaxes(out, 1, 2)  # (B, N, L, E)
    return jnp.reshape(out, (*outer, length, out.shape[-1]))
