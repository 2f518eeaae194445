"""``window_attention`` on torch, CPU: Swin's (shifted) window attention written whole, around
one call of torch's fused CPU attention with no copy of the queries, keys or values.

The portable composite dispatches torch-sdpa on ``(B, nW, heads, N, d)`` heads, which folds
the windows into the heads axis (a copy of each of ``q``, ``k``, ``v`` and of the merged
output), with the roll and the partition before it (three copies) and the reverse and the roll
after (three more), the four biases added after their products, and the bias and the mask
combined by a ``torch.where`` over the folded axes: 1.13-1.24x of Swin's own code
(2 × 56 × 56 × 96, 3 heads, window 7, shift 3, float32, two threads: ``bench/ops_table.py``).

Here the tokens are gathered once (``index_select``: the padding aside, the roll and the
partition in one cached index), in the order ``(B, N, nW)``, the token of a window outermost.
Each projection is then one ``torch.addmm`` (its bias fused) of shape ``(B, N, nW, heads, d)``,
whose windows and heads merge into torch's heads axis as a view, ``(B, nW·heads, N, d)``; the
relative bias plus the cached ``0 / -inf`` region mask is one ``(1, nW·heads, N, N)`` float
mask a call, broadcast over the images without a copy. torch's kernel writes its output
``(B, N, nW·heads, d)``-contiguous: the merged heads are a view, the output projection one
``addmm``, and one more ``index_select`` (the reverse, the roll back and the crop in one
index) gives ``(B, H, W, D_out)``. On a loaded two-core machine 0.80-0.86x of Swin's code with
one thread (the composite 0.97-1.04x), 0.44-0.48x with two (the composite 0.96-0.99x).

Exact as the contract. The region mask is added as ``-inf``, so a key that is not finite (NaN
or ±inf: an excluded ``+inf`` score would be ``inf - inf``) or a relative bias that is not
finite would reach a query that excludes it. Eagerly on the CPU one sum of the keys' projection
(and of the small bias table) tells, and such a call runs its scores materialised, the mask a
select on them and the softmax guarded as the portable one. A query row with a NaN is NaN
(torch's kernel with a mask keeps it, so a mask of zeros is given when there is neither a bias
nor a shift). Half precision: torch's kernel computes the scores and the softmax in float32
(as torch-sdpa, which the composite dispatches); the projections are in the input's dtype.
Gradients flow through torch's kernel (the bias table's too, through the float mask).
Declined: off the CPU (not measured there), under ``torch.func.vmap`` (torch's fused attention
has no batching rule) and while ``torch.compile`` traces (the check of the keys reads a value),
scores beyond the attention memory budget (the composite's attention is tiled there), dtypes
torch's kernel does not compute, and empty sizes (a batch, a size, or a head of no feature).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import seqops

from ._functorch import vmapped

OFF_CPU = "not measured off the CPU: the composite dispatches torch-sdpa"
OVER_BUDGET = "the scores exceed the attention memory budget: the composite tiles its attention"
EMPTY = "an empty batch, feature or head size: left to the portable path"
VMAPPED = (
    "a tensor batched by torch.func.vmap: torch's fused attention kernels have no batching rule "
    "(torch would loop over the batch)"
)
TRACED = "traced by torch.compile: the check of the keys for NaN reads a value"

_K: dict[str, Any] = {}


def _load() -> dict[str, Any]:
    import torch

    _K.update(
        torch=torch,
        addmm=torch.addmm,
        sdpa=torch.nn.functional.scaled_dot_product_attention,
        compiling=torch.compiler.is_compiling,
        dtypes=frozenset((torch.float16, torch.bfloat16, torch.float32, torch.float64)),
    )
    return _K


def implementations() -> list[seqops.Implementation]:
    return [
        seqops.Implementation(
            seqops.ops.window_attention,
            "torch-window-attention",
            window_attention,
            decline=decline_window_attention,
        )
    ]


def decline_window_attention(
    backend: seqops.Backend,
    x: Any,
    params: Any,
    /,
    *,
    num_heads: int,
    window_size: int,
    shift_size: int,
    relative_bias_table: Any,
) -> str | None:
    k = _K or _load()
    if not x.is_cpu:
        return OFF_CPU
    if x.dtype not in k["dtypes"]:
        return f"dtype {x.dtype} is not one torch's attention kernels compute"
    if k["compiling"]():
        return TRACED
    sizes = (*x.shape, *(size for w in params if w is not None for size in w.shape))
    if 0 in sizes or params.w_q.shape[-1] < num_heads:
        return EMPTY
    if vmapped(x, *params, relative_bias_table):
        return VMAPPED
    b, h, w, _ = x.shape
    windows = b * -(-h // window_size) * -(-w // window_size)
    if not seqops.score_matrices_fit(backend, windows * num_heads, window_size**2, window_size**2, x.dtype):
        return OVER_BUDGET
    return None


@functools.lru_cache(maxsize=64)
def _indices(height: int, width: int, window_size: int, shift_size: int) -> tuple[Any, Any]:
    """The gather indices of a ``height × width`` map (padded to ``hp × wp``): ``into`` (B-free,
    ``(N·nW,)``) the rolled, partitioned token of each ``(n, window)`` in the padded map's
    raster order; ``back`` (``(height·width,)``) the row of ``(n, window)`` each output token
    reads after the roll back, the padding cropped. CPU int64 tensors (read-only use)."""
    torch = _K["torch"]
    with torch.inference_mode(False):  # cached: usable later under autograd too
        return _index_pair(torch, height, width, window_size, shift_size)


def _index_pair(torch: Any, height: int, width: int, window_size: int, shift_size: int) -> tuple[Any, Any]:
    ws = window_size
    hp, wp = -(-height // ws) * ws, -(-width // ws) * ws
    rows, cols = hp // ws, wp // ws
    # padded position (i, j) of window (r, c), token (a, b): i = r·ws + a, j = c·ws + b, read
    # from the unrolled map at ((i + s) mod hp, (j + s) mod wp)
    a = torch.arange(ws).view(ws, 1, 1, 1)
    bb = torch.arange(ws).view(1, ws, 1, 1)
    r = torch.arange(rows).view(1, 1, rows, 1)
    c = torch.arange(cols).view(1, 1, 1, cols)
    i = (r * ws + a + shift_size) % hp
    j = (c * ws + bb + shift_size) % wp
    into = (i * wp + j).reshape(-1)  # (N·nW,), order (a, b, r, c) = (n, window)
    # the inverse: padded position p = i·wp + j sits at row `slot[p]` of the (N·nW) order
    slot = torch.empty(hp * wp, dtype=torch.int64)
    slot[into] = torch.arange(hp * wp)
    back = slot.view(hp, wp)[:height, :width].reshape(-1)
    return into, back


@functools.lru_cache(maxsize=64)
def _regions(height: int, width: int, window_size: int, shift_size: int) -> Any:
    """The bool ``(nW, 1, N, N)`` shifted-window mask of the padded map (CPU)."""
    with _K["torch"].inference_mode(False):
        return seqops.shifted_window_mask(height, width, window_size, shift_size, backend="torch")[:, None]


@functools.lru_cache(maxsize=64)
def _additive(height: int, width: int, window_size: int, shift_size: int, dtype: Any) -> Any:
    """:func:`_regions` as ``0`` / ``-inf`` of ``dtype``."""
    torch = _K["torch"]
    with torch.inference_mode(False):
        zero = torch.zeros((), dtype=dtype)
        return torch.where(_regions(height, width, window_size, shift_size), zero, -math.inf)


@functools.lru_cache(maxsize=16)
def _relative_index(window_size: int) -> Any:
    """The flat ``(N²,)`` relative position index of a window (CPU)."""
    with _K["torch"].inference_mode(False):
        return seqops.relative_position_index(window_size, backend="torch").reshape(-1)


def _project(addmm: Any, rows: Any, weight: Any, bias: Any) -> Any:
    return rows @ weight if bias is None else addmm(bias, rows, weight)


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
    k = _K or _load()
    torch, addmm = k["torch"], k["addmm"]
    ws, n, heads = window_size, window_size * window_size, num_heads
    b, height, width, c = x.shape
    hp, wp = -(-height // ws) * ws, -(-width // ws) * ws
    num_windows = (hp // ws) * (wp // ws)
    if (hp, wp) != (height, width):  # zero rows at the bottom, columns at the right
        x = torch.nn.functional.pad(x, (0, 0, 0, wp - width, 0, hp - height))
    into, back = _indices(height, width, ws, shift_size)
    # index_select, not x[:, into]: 8x faster here (2 x 3136 x 96)
    tokens = x.reshape(b, hp * wp, c).index_select(1, into).view(b * n * num_windows, c)  # (B·N·nW, C)

    def split(y: Any) -> Any:  # (B·N·nW, heads·d) -> (B, nW·heads, N, d), a view
        return y.view(b, n, num_windows * heads, y.shape[-1] // heads).transpose(1, 2)

    q = split(_project(addmm, tokens, params.w_q, params.b_q))
    keys = _project(addmm, tokens, params.w_k, params.b_k)  # (B·N·nW, heads·d), contiguous
    kk = split(keys)
    v = split(_project(addmm, tokens, params.w_v, params.b_v))
    scale = 1.0 / math.sqrt(q.shape[-1])
    bias = None
    if relative_bias_table is not None:
        bias = relative_bias_table[_relative_index(ws)].view(n, n, heads).permute(2, 0, 1)  # (heads, N, N)
    if shift_size and not (_finite(keys) and (bias is None or _finite(relative_bias_table))):
        # a key (or a relative bias) that is not finite: an excluded one must stay out
        regions = _regions(hp, wp, ws, shift_size)
        attended = _materialised(torch, q, kk, v, regions, bias, scale, num_windows, heads)
    else:
        if shift_size:
            # finite biases: adding the 0 / -inf mask is the select (torch.where with the
            # broadcast bool mask took 25x the addition)
            additive = _additive(hp, wp, ws, shift_size, q.dtype)  # (nW, 1, N, N)
            allowed = additive if bias is None else bias + additive
            allowed = allowed.expand(num_windows, heads, n, n)
            mask = allowed.reshape(1, num_windows * heads, n, n)  # a view with a bias
        elif bias is not None:
            mask = bias.expand(num_windows, heads, n, n).reshape(1, num_windows * heads, n, n)
        else:
            mask = torch.zeros((1, 1, n, n), dtype=q.dtype)  # keeps NaN query rows NaN
        attended = k["sdpa"](q, kk, v, mask, scale=scale)  # (B, nW·heads, N, dv)
    merged = attended.transpose(1, 2).reshape(b * n * num_windows, heads * attended.shape[-1])
    out = _project(addmm, merged, params.w_o, params.b_o)  # (B·N·nW, D_out)
    out = out.view(b, n * num_windows, out.shape[-1]).index_select(1, back)  # (B, H·W, D_out)
    return out.view(b, height, width, out.shape[-1])


def _finite(x: Any) -> bool:
    """Whether the CPU tensor ``x`` holds only finite values: its sum is (a NaN or an infinity
    makes it NaN or infinite; an overflow of finite values only sends the call to the exact,
    slower path; half precision sums in float32). One vectorized pass, a third of
    ``aminmax``'s time; a contiguous ``x``."""
    torch = _K["torch"]
    wide = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    return math.isfinite(x.detach().sum(dtype=wide).item())


def _materialised(
    torch: Any, q: Any, k: Any, v: Any, regions: Any, bias: Any, scale: float, num_windows: int, heads: int
) -> Any:
    """The attention with its scores materialised: the region mask a select on the scaled, biased
    scores (a NaN or infinite score of an excluded key stays out), the softmax guarded as the
    portable one (a row without a finite maximum shifts by 0, a sum of 0 divides by 1)."""
    work = torch.float32 if q.dtype in (torch.float16, torch.bfloat16) else q.dtype
    b, _, n, d = q.shape
    q5, k5, v5 = (t.reshape(b, num_windows, heads, n, t.shape[-1]).to(work) for t in (q, k, v))
    scores = (q5 @ k5.transpose(-1, -2)) * scale  # (B, nW, heads, N, N)
    if bias is not None:
        scores = scores + bias.to(work)
    scores = torch.where(regions, scores, torch.full((), -math.inf, dtype=work))
    info = torch.finfo(work)
    top = scores.amax(-1, keepdim=True).detach().clamp(min=info.min)
    e = torch.exp(scores - top)
    total = e.sum(-1, keepdim=True).clamp(min=info.tiny)
    out = ((e @ v5) / total).to(q.dtype)  # (B, nW, heads, N, dv)
    return out.reshape(b, num_windows * heads, n, out.shape[-1])
