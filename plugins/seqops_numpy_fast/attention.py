"""``scaled_dot_product_attention`` with its scores in one array, an in-place path (the
package docstring).

The ``(..., L, S)`` logits biased, masked (``np.copyto`` of ``-inf``, not ``np.where``),
shifted and exponentiated in one array where the portable path made five: 6.3 ms against
9.5 ms (the plain formula with the mask added as ``-100``: 8.3 ms) at Swin's 2 x 64 windows x
3 heads of 49 tokens. The composites dispatching it gain: ``window_attention`` 1.02-1.05 /
0.99-1.01, ``transformer_decoder_layer`` 1.03-1.15 / 0.97-1.05. Dropout (the portable path
draws the multipliers) and scores over the attention memory budget (the tiled path) are
declined. (Window attention's projections as single 2-D GEMMs of the ``(B·nW·N, C)`` tokens,
not one GEMM per window: 1.6-2.1x, OpenBLAS's two threads contending with the machine's other
load, where the per-window GEMMs run on one.)
"""

from __future__ import annotations

import math
from typing import Any

import seqops

from ._kernels import _K, _load

DROPOUT = "dropout_p > 0: the portable path draws the keep multipliers"
OVER_BUDGET = "the (L, S) scores exceed the attention memory budget: the tiled path"


def implementations() -> list[seqops.Implementation]:
    ops = seqops.ops
    return [
        seqops.Implementation(
            ops.scaled_dot_product_attention,
            "numpy-attention",
            scaled_dot_product_attention,
            decline=decline_scaled_dot_product_attention,
        ),
    ]


def decline_scaled_dot_product_attention(
    backend: seqops.Backend,
    q: Any,
    k: Any,
    v: Any,
    /,
    *,
    dropout_p: float,
    enable_gqa: bool,
    return_weights: bool,
    **_: Any,
) -> str | None:
    if dropout_p > 0.0:
        return DROPOUT
    if return_weights:  # the tiled path cannot return the weights: the plain one runs
        return None
    # the rule by which the portable path takes its tiled attention
    return None if seqops.attention_scores_fit(backend, q, k, v, enable_gqa=enable_gqa) else OVER_BUDGET


def scaled_dot_product_attention(
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
    dropout_p: float,
    rng: Any,
    enable_gqa: bool,
    return_weights: bool,
) -> Any:
    """``softmax(q kᵀ · scale + bias, masked) @ v`` of ``q (..., L, E)``, ``k (..., S, E)``,
    ``v (..., S, Ev)``: the portable formula with the ``(..., L, S)`` logits biased, masked,
    shifted and exponentiated in place (one score-sized array where the portable path made
    five, and the mask written with ``np.copyto(where=)`` rather than ``np.where``)."""
    kk = _K or _load()
    np = kk["np"]
    dtype = q.dtype
    ct = dtype if dtype in kk["native"] else kk["float32"]
    q, k, v = (a.astype(ct, copy=False) for a in (q, k, v))
    if enable_gqa and k.shape[-3] != q.shape[-3]:  # query head h reads kv head h // group
        group = q.shape[-3] // k.shape[-3]
        k, v = np.repeat(k, group, axis=-3), np.repeat(v, group, axis=-3)
    logits = np.matmul(q * scale, np.swapaxes(k, -1, -2))  # (..., L, S)
    if bias is not None:
        logits = _add_into(np, logits, bias.astype(ct, copy=False))
    allowed = mask
    if is_causal:  # key j <= query i
        causal = np.arange(q.shape[-2])[:, None] >= np.arange(k.shape[-2])[None, :]
        allowed = causal if allowed is None else np.logical_and(allowed, causal)
    if allowed is not None:
        if np.broadcast_shapes(logits.shape, allowed.shape) == logits.shape:
            np.copyto(logits, -math.inf, where=~allowed)
        else:  # the mask widens the scores
            logits = np.where(allowed, logits, -math.inf)
    if logits.size:  # the shift (no max of an empty row)
        top = logits.max(axis=-1, keepdims=True)
        np.copyto(top, 0.0, where=~np.isfinite(top))  # a row with no allowed key is shifted by 0
        logits -= top
    e = np.exp(logits, out=logits)
    total = e.sum(axis=-1, keepdims=True)
    np.copyto(total, 1.0, where=total == 0)  # such a row gives zeros
    if return_weights:
        e /= total
        return np.matmul(e, v).astype(dtype, copy=False), e.astype(dtype, copy=False)
    out = np.matmul(e, v)  # the division on (..., L, Ev), not on the scores
    out /= total
    return out.astype(dtype, copy=False)


def _add_into(np: Any, a: Any, b: Any) -> Any:
    """``a + b``, written into ``a`` (an array the caller owns) when ``b`` broadcasts to its shape."""
    if np.broadcast_shapes(a.shape, b.shape) != a.shape:
        return a + b
    a += b
    return a
