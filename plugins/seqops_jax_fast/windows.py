"""``window_attention`` on JAX, CPU: Swin's (shifted) window attention written whole, its
softmax in a form that XLA's CPU compiler fuses with both products into one kernel.

The portable composite dispatches the portable attention, whose guards for a query without
an allowed key are selects (a maximum that is not finite shifts by 0, a row sum of 0
divides by 1). XLA:CPU fuses no select into its YNNPACK kernels: scores, mask, maximum,
exponentials, sums and the product with the values ran as 8 kernels, 1.12-1.24x of Swin's
own code under ``jax.jit`` (2 × 56 × 56 × 96, 3 heads, window 7, shift 3, float32:
``bench/ops_table.py``). Here both guards are ``maximum``s, exact: ``max(m, finfo.min)``
shifts a row without an allowed key (``m = -inf``) by a finite value, its exponentials
are still 0, and ``max(total, finfo.tiny)`` changes only ``total = 0`` (where the maximum
is finite its own term is ``exp(0) = 1``), so no tie moves a gradient. The shift is out of
the gradient (``stop_gradient``, as ``jax.nn.softmax``): the softmax does not depend on it.
The mask stays a select on the scaled, biased scores, one kernel before the fused rest,
so that a NaN or ``+inf`` score of an excluded key stays out
(docs/errors-and-edge-cases.md): 0.90-0.96x. Adding it as ``-inf`` instead fused that
kernel too (0.82x) but let an excluded NaN score reach every query of its window. Against
the composite over the portable attention: 0.82x at ``ws = 7``, 0.60x at 12, 0.38x at 16,
0.89x at 32 (B = 2, 2-3 heads).

The region mask and the relative position index are built with NumPy from the static
sizes (``seqops.shifted_window_mask``, ``seqops.relative_position_index``): constants of
the trace, as Swin's buffers are. Half precision computes the scores and the softmax in
float32 (the portable rule), the projections in its own dtype. Declined: off the CPU (not
measured there; the composite dispatches its attention, cuDNN's where it qualifies),
scores beyond the attention memory budget (the composite's attention is tiled there),
empty and symbolic sizes.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import seqops

from ._shapes import SYMBOLIC, on_cpu, static

OFF_CPU = "not measured off the CPU: the composite dispatches its attention (cuDNN where it qualifies)"
OVER_BUDGET = "the scores exceed the attention memory budget: the composite tiles its attention"
EMPTY = "an empty batch, feature or head size: left to the portable path"

_HALF = ("float16", "bfloat16")


def decline_window_attention(
    backend: seqops.Backend, x: Any, params: Any, /, *, num_heads: int, window_size: int, **_: Any
) -> str | None:
    if not on_cpu():
        return OFF_CPU
    # judged on what one shard holds, as the portable attention's choice of its tiled path
    shape = tuple(backend.local_shape(x))
    sizes = (*shape, *(size for w in params if w is not None for size in w.shape))
    if not static(*sizes):
        return SYMBOLIC
    if 0 in sizes:
        return EMPTY
    b, h, w, _ = shape
    windows = b * -(-h // window_size) * -(-w // window_size)
    if not seqops.score_matrices_fit(backend, windows * num_heads, window_size**2, window_size**2, x.dtype):
        return OVER_BUDGET
    return None


@functools.lru_cache(maxsize=64)
def regions(height: int, width: int, window_size: int, shift_size: int) -> Any:
    """The bool ``(nW, 1, ws², ws²)`` shifted-window mask of a padded map, as NumPy."""
    import numpy as np

    mask = np.asarray(seqops.shifted_window_mask(height, width, window_size, shift_size, backend="numpy"))
    mask = mask[:, None]
    mask.setflags(write=False)
    return mask


@functools.lru_cache(maxsize=64)
def relative_index(window_size: int) -> Any:
    """The flat ``(ws⁴,)`` relative position index of a window, as NumPy."""
    import numpy as np

    index = np.asarray(seqops.relative_position_index(window_size, backend="numpy")).reshape(-1)
    index.setflags(write=False)
    return index


def window_attention(
    backend: seqops.Backend,
    x: Any,
    params: Any,
    /,
    *,
    num_heads: int,
    window_size: int,
    shift_size: int,
    relative_bias_table: Any,
) -> Any:
    """``x (B, H, W, C)`` -> ``(B, H, W, D_out)``, the steps of the portable composite."""
    import jax
    import jax.numpy as jnp

    ws, n = window_size, window_size * window_size
    b, height, width, _ = x.shape
    pad_h, pad_w = (-height) % ws, (-width) % ws
    if pad_h or pad_w:  # zero rows at the bottom, columns at the right (Hugging Face's maybe_pad)
        x = jnp.pad(x, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)))
    h, w = height + pad_h, width + pad_w
    rows, cols = h // ws, w // ws
    if shift_size:
        x = jnp.roll(x, (-shift_size, -shift_size), axis=(1, 2))
    windows = jnp.reshape(x, (b, rows, ws, cols, ws, x.shape[-1]))
    windows = jnp.reshape(jnp.transpose(windows, (0, 1, 3, 2, 4, 5)), (b, rows * cols, n, x.shape[-1]))

    def heads(weight: Any, bias: Any) -> Any:
        # (B, nW, N, C) -> (B, nW, heads, N, d), in the compute dtype
        y = windows @ weight if bias is None else windows @ weight + bias
        y = jnp.swapaxes(jnp.reshape(y, (*y.shape[:-1], num_heads, y.shape[-1] // num_heads)), -2, -3)
        return y.astype(jnp.float32) if y.dtype.name in _HALF else y

    q, k, v = heads(params.w_q, params.b_q), heads(params.w_k, params.b_k), heads(params.w_v, params.b_v)
    scores = (q @ jnp.swapaxes(k, -1, -2)) * (1.0 / math.sqrt(q.shape[-1]))  # (B, nW, heads, N, N)
    if relative_bias_table is not None:
        bias = jnp.reshape(jnp.take(relative_bias_table, relative_index(ws), axis=0), (n, n, num_heads))
        scores = scores + jnp.transpose(bias, (2, 0, 1)).astype(scores.dtype)  # (heads, N, N)
    if shift_size:
        scores = jnp.where(regions(h, w, ws, shift_size), scores, -jnp.inf)
    info = jnp.finfo(scores.dtype)
    top = jax.lax.stop_gradient(jnp.maximum(jnp.max(scores, axis=-1, keepdims=True), info.min))
    e = jnp.exp(scores - top)
    total = jnp.maximum(jnp.sum(e, axis=-1, keepdims=True), info.tiny)
    attended = ((e @ v) / total).astype(x.dtype)  # (B, nW, heads, N, dv)
    merged = jnp.swapaxes(attended, -2, -3)  # (B, nW, N, heads, dv)
    merged = jnp.reshape(merged, (*merged.shape[:-2], num_heads * merged.shape[-1]))
    out = merged @ params.w_o if params.b_o is None else merged @ params.w_o + params.b_o
    out = jnp.reshape(out, (b, rows, cols, ws, ws, out.shape[-1]))
    out = jnp.reshape(jnp.transpose(out, (0, 1, 3, 2, 4, 5)), (b, h, w, out.shape[-1]))
    if shift_size:
        out = jnp.roll(out, (shift_size, shift_size), axis=(1, 2))
    return out if (h, w) == (height, width) else out[:, :height, :width, :]
