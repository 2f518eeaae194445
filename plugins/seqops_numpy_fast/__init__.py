"""Fast paths on the NumPy backend, where a NumPy formula beats the portable one.

- ``silu``: ``x / (1 + exp(-x))`` with the overflow warning silenced (``exp(-x)`` is ``inf``
  for ``x < -88`` in float32, where the result rounds to ``-0.0``; the true value is below the
  smallest normal float32). The portable form, written for autograd (``exp(-|x|)`` and a
  ``where``, no overflow in the value nor in its gradient), took 3.3x as long; NumPy has no
  autograd to protect. Half precision is computed in float32 and rounded once, as the contract.
- ``filter_logits`` and ``sample_logits`` with ``top_k`` (top-p needs the sorted cumulative
  probabilities: declined to the portable path, as is a filter without ``top_k``): the
  ``k``-th largest of each row by one ``numpy.partition`` of the logits (the portable path
  partitions ``-z``: two more passes), NaN ranked below every number as there (a row holding
  one is redone the portable way). The filter writes ``-inf`` and the kept logits into the
  partition's buffer with ``np.copyto(where=)`` (0.4 ms at 64 x 32000 where ``np.where``
  took 1.2 ms): the portable values to the bit, 0.72-0.77x of the plain NumPy formula where
  the portable path took 1.09-1.17x. The sampler finds the kept tokens with
  ``np.flatnonzero`` of the comparison (0.22 ms; ``np.argpartition`` took 2.6 ms, the 2-D
  ``np.nonzero`` 2.5 ms) and draws Gumbel noise for those ``k`` per row only (unless a row
  has ties with its ``k``-th value, or fewer than ``k`` numbers: then over every kept token,
  from draws over the whole vocabulary): 0.71-0.82x of ``argpartition`` and a draw over its ``k``
  (the previous argpartition sampler: 1.01-1.06x). The contract's distribution, the same
  tokens for the same ``rng``, but not the portable path's tokens (the same ``rng`` gives the
  same result with the same implementation).

- The in-place paths: the portable formulas, the same operations in the same order (so the
  same values, to the bit; tested), written into arrays the implementation made itself
  (``out=``, ``+=``), never into the caller's. Fewer temporaries keep the working set in
  the cache (no page faults either way in the table's rows: the allocator recycles freed
  blocks). Ratios to the plain NumPy formula, portable before / numpy-fast after, paired in
  one process (``bench/ops_table.py`` rows, float32, four to five runs each):

  - ``scaled_dot_product_attention``: the ``(..., L, S)`` logits biased, masked (``np.copyto``
    of ``-inf``, not ``np.where``), shifted and exponentiated in one array where the portable
    path made five: 6.3 ms against 9.5 ms (the plain formula with the mask added as ``-100``:
    8.3 ms) at Swin's 2 x 64 windows x 3 heads of 49 tokens. The composites dispatching it
    gain: ``window_attention`` 1.02-1.05 / 0.99-1.01, ``transformer_decoder_layer``
    1.03-1.15 / 0.97-1.05. Dropout (the portable path draws the multipliers) and scores over
    the attention memory budget (the tiled path) are declined. (Window attention's
    projections as single 2-D GEMMs of the ``(B·nW·N, C)`` tokens, not one GEMM per window:
    1.6-2.1x, OpenBLAS's two threads contending with the machine's other load, where the
    per-window GEMMs run on one.)
  - ``rnn``: ``hs`` allocated once as ``xs @ w_ih + b``, each step adding ``h @ w_hh`` (one
    reused temporary) into ``hs[t]`` and applying the nonlinearity there: no per-step arrays,
    stack or namespace lookup (the portable scan's ~45 µs of 0.85 ms at T=32, B=16, H=256):
    0.83-0.87x of the plain loop with ``OPENBLAS_NUM_THREADS=1``; with OpenBLAS's two threads
    it swings 0.4-2.7x under the machine's other load (1.06-1.09 / 0.95-1.00 when quiet).
    ``rnn_cell``: the sums into the first product, 1.00-1.08 / 1.02-1.04: both sides are
    their two products; the rest is the validation's ~4 µs of 0.3 ms.
  - ``reparameterize``: the normal draws made in the compute dtype by
    ``Generator.standard_normal(dtype=)`` itself (float32: 4.05 ms at 128 x 4096, where the
    float64 draws and cast took 4.39 ms), the product and the sum written into them: 1.12-1.15
    / 1.00-1.02 (the draws are 95% of either). float64 draws the portable path's numbers,
    float32 other numbers from the same ``rng`` (the same result with this implementation).
  - ``softmax``, ``kl_normal_normal``, ``gaussian_log_likelihood``: one array of the
    broadcast shape (two for the KL) where the portable path made three, nine and six:
    1.03-1.12 / 0.90-1.01, 0.98-1.10 / 0.94-1.05 and 1.02-1.08 / 0.94-1.01.

- ``apply_rotary``: torch-rotary's form (``x · cos + swap(x) · sin`` with the signed ``sin``
  laid out once at the rotated width, one row per position; the same products and sums as
  the portable path, to the bit) with the sum in place: 0.72x of Hugging Face's
  ``rotate_half`` form in NumPy, where the portable path (half-width temporaries for each
  product, a concatenation) took 1.04-1.37x. Half precision is declined (the portable path
  rotates it in float32 and rounds once). An implementation with ``out=`` ufuncs into
  strided halves of one output was slower (1.26x: inner loops of d/2 elements).

- ``shifted_window_mask``: the portable construction with the region labels (0..8) compared
  as int8: the ``(nW, N, N)`` comparison on 8-bit lanes is 5x faster than on the default
  integers (0.27 ms against 1.56 for the bool mask of 128 × 128, window 16, shift 8). Under
  ``jax.jit`` int8 labels made XLA's fused loop slower (1.6x against 1.1x), and torch compares
  int64 as fast (0.98x): hence NumPy only.

Not here: ``window_partition``, ``window_reverse`` and ``cyclic_shift``, whose portable forms
are NumPy's own reshape-and-transpose copy and ``np.roll``, the plain formulas themselves
(1.00-1.08 in the table, as the plain formula against itself: 0.98-1.07; other copy loops,
``np.copyto`` either way or one slice per window row, ran within 3% of them).

``python bench/run.py --only ops_table`` prints their ratios to the plain NumPy formulas.
Importing this module imports nothing but seqops (NumPy is loaded when a NumPy array arrives).
"""

from __future__ import annotations

import math
from typing import Any

import seqops

HALF_ROTARY = "half precision: the portable path rotates in float32 and rounds once"
TOP_P = "top_p < 1: the nucleus needs a sorted cumulative sum (the portable path)"
NO_TOP_K = "no top_k: nothing to partition (the portable path, over the whole vocabulary)"
DROPOUT = "dropout_p > 0: the portable path draws the keep multipliers"
OVER_BUDGET = "the (L, S) scores exceed the attention memory budget: the tiled path"

# NumPy's functions, looked up on the first call.
_K: dict[str, Any] = {}


def _load() -> dict[str, Any]:
    import numpy as np

    _K.update(
        np=np,
        native=frozenset((np.dtype(np.float32), np.dtype(np.float64))),
        float32=np.dtype(np.float32),
        tiny=float(np.finfo(np.float32).tiny),
        below_one=1.0 - float(np.finfo(np.float32).eps) / 2,  # see seqops' gumbel_argmax
    )
    return _K


@seqops.hookimpl
def seqops_implementations(backend: seqops.Backend) -> list[seqops.Implementation] | None:
    if backend.name != "numpy":
        return None
    ops = seqops.ops
    return [
        seqops.Implementation(ops.silu, "numpy-silu", silu),
        seqops.Implementation(ops.apply_rotary, "numpy-rotary", apply_rotary, decline=decline_apply_rotary),
        seqops.Implementation(ops.shifted_window_mask, "numpy-shifted-window-mask", shifted_window_mask),
        seqops.Implementation(ops.sample_logits, "numpy-topk-sample", sample_logits, decline=decline_top_k),
        seqops.Implementation(ops.filter_logits, "numpy-topk-filter", filter_logits, decline=decline_top_k),
        seqops.Implementation(ops.softmax, "numpy-softmax", softmax),
        seqops.Implementation(
            ops.scaled_dot_product_attention,
            "numpy-attention",
            scaled_dot_product_attention,
            decline=decline_scaled_dot_product_attention,
        ),
        seqops.Implementation(ops.rnn_cell, "numpy-rnn-cell", rnn_cell),
        seqops.Implementation(ops.rnn, "numpy-rnn", rnn),
        seqops.Implementation(ops.reparameterize, "numpy-reparameterize", reparameterize),
        seqops.Implementation(ops.kl_normal_normal, "numpy-kl-normal-normal", kl_normal_normal),
        seqops.Implementation(
            ops.gaussian_log_likelihood, "numpy-gaussian-log-likelihood", gaussian_log_likelihood
        ),
    ]


def silu(backend: seqops.Backend, x: Any, /) -> Any:
    k = _K or _load()
    np = k["np"]
    z = x if x.dtype in k["native"] else x.astype(k["float32"])
    with np.errstate(over="ignore"):
        out = z / (1.0 + np.exp(-z))
    return out if out.dtype == x.dtype else out.astype(x.dtype)


def decline_top_k(
    backend: seqops.Backend, logits: Any, /, *, top_k: int | None, top_p: float | None, **_: Any
) -> str | None:
    """The calls of ``filter_logits`` and ``sample_logits`` the top-k paths take."""
    if top_p is not None and top_p < 1.0:
        return TOP_P
    if top_k is None:
        return NO_TOP_K
    return None


def sample_logits(
    backend: seqops.Backend,
    logits: Any,
    /,
    *,
    rng: Any,
    temperature: float,
    top_k: int,
    top_p: float | None,
    min_tokens_to_keep: int,
) -> Any:
    """Token ids ``(...)`` drawn from ``softmax`` over the top-k of ``logits (..., V)``."""
    k = _K or _load()
    np = k["np"]
    z = _scaled(np, k, logits, temperature)
    vocab = z.shape[-1]
    kth = min(max(top_k, min_tokens_to_keep), vocab)
    part, threshold = _kth_largest(np, z, kth)
    keep = z >= threshold  # (..., V), the portable filter's support
    if z.dtype != logits.dtype:  # the portable filter returns the dtype of logits
        z = z.astype(logits.dtype).astype(k["float32"])
    rows = math.prod(z.shape[:-1])
    # The kept positions in row-major order (np.flatnonzero: 0.22 ms at 64 x 32000, where
    # np.argpartition took 2.6 ms and the 2-D np.nonzero 2.5 ms).
    flat = np.flatnonzero(keep)
    candidates = flat.reshape(rows, kth) if flat.size == rows * kth else None
    if candidates is not None and (candidates // vocab == np.arange(rows)[:, None]).all():
        ids = (candidates % vocab).reshape(*z.shape[:-1], kth)  # exactly kth per row, no ties
        values = np.take_along_axis(z, ids, axis=-1)
    else:  # ties with the kth value, or a row of fewer than kth numbers (NaN): every kept token
        values, ids = _filled(np, part, z, keep), None
    uniform = backend.random_uniform(rng, values.shape, dtype=z.dtype, device=None)
    gumbel = -np.log(-np.log(np.clip(uniform, k["tiny"], k["below_one"])))
    best = np.argmax(values + gumbel, axis=-1)
    return best if ids is None else np.take_along_axis(ids, best[..., None], axis=-1)[..., 0]


def filter_logits(
    backend: seqops.Backend,
    logits: Any,
    /,
    *,
    temperature: float,
    top_k: int,
    top_p: float | None,
    min_tokens_to_keep: int,
) -> Any:
    """``logits (..., V) / temperature`` with ``-inf`` below the k-th largest of each row: the
    portable values, to the bit, in the partition's buffer (a new array, the output)."""
    k = _K or _load()
    np = k["np"]
    z = _scaled(np, k, logits, temperature)
    part, threshold = _kth_largest(np, z, min(max(top_k, min_tokens_to_keep), z.shape[-1]))
    out = _filled(np, part, z, z >= threshold)
    return out if out.dtype == logits.dtype else out.astype(logits.dtype)


def _scaled(np: Any, k: dict[str, Any], logits: Any, temperature: float) -> Any:
    """``logits / temperature`` in the compute dtype (float32 for half types), as the portable filter."""
    z = logits if logits.dtype in k["native"] else logits.astype(k["float32"])
    return z if temperature == 1.0 else z / temperature


def _kth_largest(np: Any, z: Any, kth: int) -> tuple[Any, Any]:
    """``(np.partition(z, V - kth), threshold)`` for ``z (..., V)``: the partitioned copy and the
    ``kth``-th largest of each row ``(..., 1)``, ties counted and NaN ranked below every number,
    as the portable path's partition of ``-z`` (``np.partition`` ranks NaN above every
    number: a row holding one has it among its ``kth`` largest there, and is redone)."""
    vocab = z.shape[-1]
    part = np.partition(z, vocab - kth, axis=-1)
    threshold = part[..., vocab - kth : vocab - kth + 1]
    nan = np.isnan(part[..., vocab - kth :]).any(axis=-1, keepdims=True)  # (..., 1)
    if nan.any():
        threshold = np.where(nan, -np.partition(-z, kth - 1, axis=-1)[..., kth - 1 : kth], threshold)
    return part, threshold.copy()  # not a view of part, which the caller overwrites


def _filled(np: Any, out: Any, z: Any, keep: Any) -> Any:
    """``out`` (an array of ``z``'s shape and dtype the caller owns) holding ``z`` where ``keep``
    and ``-inf`` elsewhere: the portable ``where(keep, z, -inf)``."""
    out.fill(-math.inf)
    np.copyto(out, z, where=keep)
    return out


def decline_apply_rotary(backend: seqops.Backend, x: Any, positions: Any, /, **_: Any) -> str | None:
    return None if x.dtype in (_K or _load())["native"] else HALF_ROTARY


def apply_rotary(
    backend: seqops.Backend, x: Any, positions: Any, /, *, base: float, layout: str, rotary_dim: int
) -> Any:
    np = (_K or _load())["np"]
    dtype, half = x.dtype, rotary_dim // 2
    exponents = np.arange(0, rotary_dim, 2, dtype=dtype)
    inv_freq = 1.0 / (base ** (exponents / rotary_dim))  # (d/2,), as the portable path
    angles = positions.astype(dtype)[..., None] * inv_freq  # (..., L, d/2)
    cos, sin = np.cos(angles), np.sin(angles)
    rotated = x[..., :rotary_dim]
    if layout == "halves":  # pairs (i, i + d/2): (x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin)
        cos_d, sin_d = np.concatenate((cos, cos), -1), np.concatenate((-sin, sin), -1)
        swapped = np.concatenate((rotated[..., half:], rotated[..., :half]), -1)
    else:  # pairs (2i, 2i + 1)
        cos_d = np.stack((cos, cos), -1).reshape(*cos.shape[:-1], rotary_dim)
        sin_d = np.stack((-sin, sin), -1).reshape(*sin.shape[:-1], rotary_dim)
        swapped = rotated.reshape(*rotated.shape[:-1], half, 2)[..., ::-1].reshape(rotated.shape)
    out = rotated * cos_d  # (..., L, d): positions may broadcast x's batch dims
    out += swapped * sin_d  # x1 cos + x2 (-sin): the portable x1 cos - x2 sin, to the bit
    if rotary_dim == x.shape[-1]:
        return out
    passed = np.broadcast_to(x[..., rotary_dim:], (*out.shape[:-1], x.shape[-1] - rotary_dim))
    return np.concatenate((out, passed), -1)


SWIN_MASK_VALUE = -100.0  # Swin's additive value between two regions (the portable path's)


def shifted_window_mask(
    backend: seqops.Backend,
    height: int,
    width: int,
    window_size: int,
    shift_size: int,
    /,
    *,
    as_bias: bool,
    dtype: Any,
    device: Any,
) -> Any:
    np = (_K or _load())["np"]
    ws = window_size

    def labels(size: int) -> Any:  # 0 for [0, -ws), 1 for [-ws, -shift), 2 after (Swin's slices)
        at = np.arange(size)
        if shift_size == 0:  # one region
            return np.zeros(size, dtype=np.int8)
        return (at >= size - ws).astype(np.int8) + (at >= size - shift_size).astype(np.int8)

    cnt = labels(height)[:, None] * np.int8(3) + labels(width)[None, :]  # (H, W), Swin's `cnt`
    windows = cnt.reshape(height // ws, ws, width // ws, ws).transpose(0, 2, 1, 3).reshape(-1, ws * ws)
    mask = windows[:, :, None] == windows[:, None, :]  # (nW, N, N), windows in raster order
    if not as_bias:
        return mask
    # 0 where True, -100 elsewhere, written once (as the portable path's select): the arithmetic
    # form ``(float(mask) - 1) · 100``, three passes over the (nW, N, N) floats, took 1.26x of it
    return np.where(mask, np.zeros((), dtype), np.full((), SWIN_MASK_VALUE, dtype))


def softmax(backend: seqops.Backend, x: Any, /, *, axis: int) -> Any:
    """``exp(x - max) / sum`` along ``axis`` of ``x (...)``, the portable formula with one
    temporary (the shifted ``x``, exponentiated and normalised in place) instead of three."""
    k = _K or _load()
    np = k["np"]
    if x.shape[axis] == 0:  # an empty axis has no max: nothing to normalise (as the portable path)
        return x
    z = x if x.dtype in k["native"] else x.astype(k["float32"])
    top = z.max(axis=axis, keepdims=True)
    np.copyto(top, 0.0, where=~np.isfinite(top))  # a row whose max is not finite is shifted by 0
    e = np.subtract(z, top, out=z if z is not x else None)
    np.exp(e, out=e)
    e /= e.sum(axis=axis, keepdims=True)
    return e if e.dtype == x.dtype else e.astype(x.dtype)


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


def rnn_cell(
    backend: seqops.Backend, x: Any, h: Any, w_ih: Any, w_hh: Any, b: Any, /, *, nonlinearity: str
) -> Any:
    """``act(x @ w_ih + h @ w_hh + b)`` of ``x (..., I)``, ``h (..., H)``: the portable sums in
    the same order, into the first product (two temporaries fewer)."""
    k = _K or _load()
    np = k["np"]
    dtype = x.dtype
    ct = dtype if dtype in k["native"] else k["float32"]
    x, h, w_ih, w_hh = (a.astype(ct, copy=False) for a in (x, h, w_ih, w_hh))
    pre = np.matmul(x, w_ih)
    pre += np.matmul(h, w_hh)
    if b is not None:
        pre += b.astype(ct, copy=False)
    _activate(np, pre, nonlinearity)
    return pre.astype(dtype, copy=False)


def rnn(
    backend: seqops.Backend, xs: Any, h0: Any, w_ih: Any, w_hh: Any, b: Any, /, *, nonlinearity: str
) -> Any:
    """``(hs (T, ..., H), h_T)`` of an Elman RNN over ``xs (T, ..., I)`` from ``h0 (..., H)``.

    ``hs`` is allocated once as ``xs @ w_ih + b``; step ``t`` adds ``h @ w_hh`` (one reused
    temporary) into ``hs[t]`` and applies the nonlinearity there: no per-step arrays, no
    stack, no namespace lookup per step (the portable scan's overhead, ~45 µs of 0.85 ms at
    T=32, B=16, H=256). The same sums as the portable path, in the same order.
    """
    k = _K or _load()
    np = k["np"]
    dtype = xs.dtype
    hidden = w_hh.shape[0]
    if xs.shape[0] == 0:  # no step: empty outputs, h0 itself
        return np.zeros((0, *xs.shape[1:-1], hidden), dtype=dtype), h0
    ct = dtype if dtype in k["native"] else k["float32"]
    xs, h, w_ih, w_hh = (a.astype(ct, copy=False) for a in (xs, h0, w_ih, w_hh))
    hs = np.matmul(xs, w_ih)  # (T, ..., H)
    if b is not None:
        hs += b.astype(ct, copy=False)
    recurrent = np.empty(hs.shape[1:], dtype=ct)  # h @ w_hh of the step
    for t in range(hs.shape[0]):
        np.matmul(h, w_hh, out=recurrent)
        h = hs[t]
        h += recurrent
        _activate(np, h, nonlinearity)
    # h_T a copy: the portable h_T does not share memory with hs
    return hs.astype(dtype, copy=False), h.astype(dtype, copy=True)


def _activate(np: Any, pre: Any, nonlinearity: str) -> None:
    """The RNN's nonlinearity applied to ``pre`` in place (``relu``: IEEE ``maximum``, NaN kept)."""
    if nonlinearity == "relu":
        np.maximum(pre, 0.0, out=pre)
    else:
        np.tanh(pre, out=pre)


def reparameterize(
    backend: seqops.Backend, mu: Any, log_var: Any, /, *, rng: Any, eps: Any, shape: tuple[int, ...]
) -> Any:
    """``mu + exp(log_var / 2) * eps`` of the broadcast ``shape``, in ``mu``'s dtype.

    The product and the sum are written into the array of draws (or, with ``eps`` given, of
    ``exp(log_var / 2)``): one temporary where the portable path made three. The draws are
    made in the compute dtype (float32 for float32 and half types) by ``Generator.standard_normal``
    itself: the portable path's float64 draws and cast took 0.35 ms more at 128 x 4096.
    float64 draws the portable path's numbers; float32 other numbers from the same ``rng``
    (the contract: the same ``rng`` gives the same result with the same implementation).
    """
    k = _K or _load()
    np = k["np"]
    dtype = mu.dtype
    if eps is None:
        seqops.check_rng(rng, np.random.Generator, backend.name)
        generator = np.random.default_rng(rng) if isinstance(rng, int) else rng
        ct = dtype if dtype in k["native"] else k["float32"]
        z = generator.standard_normal(dtype=ct, out=np.empty(shape, dtype=ct)).astype(dtype, copy=False)
        spread = np.multiply(log_var, 0.5, out=np.empty(log_var.shape, dtype=dtype))
        np.exp(spread, out=spread)
        z *= spread
    else:
        z = np.multiply(log_var, 0.5, out=np.empty(shape, dtype=dtype))
        np.exp(z, out=z)
        z *= eps
    z += mu
    return z


def kl_normal_normal(
    backend: seqops.Backend, mu_q: Any, log_var_q: Any, mu_p: Any, log_var_p: Any, /, *, axis: tuple[int, ...]
) -> Any:
    """``½ Σ (expm1(r) − r + ((mu_q − mu_p) · exp(−lv_p/2))²)`` over ``axis``, ``r = lv_q − lv_p``:
    the portable terms, to the bit, in two arrays of the broadcast shape and one of
    ``log_var_p``'s where the portable path made nine."""
    k = _K or _load()
    np = k["np"]
    mq, lq, mp, lp = _up(k, mu_q, log_var_q, mu_p, log_var_p)
    shape = np.broadcast_shapes(mq.shape, lq.shape, mp.shape, lp.shape)
    r = np.subtract(lq, lp, out=np.empty(shape, dtype=mq.dtype))
    terms = np.expm1(r)
    terms -= r
    z = np.subtract(mq, mp, out=r)  # the mean difference in units of σp
    z *= _inverse_sigma(np, lp)
    z *= z
    terms += z
    return (0.5 * terms.sum(axis=axis)).astype(mu_q.dtype, copy=False)


def gaussian_log_likelihood(
    backend: seqops.Backend, x: Any, mean: Any, log_var: Any, /, *, axis: tuple[int, ...]
) -> Any:
    """``Σ −½(log 2π + log_var + ((x − mean) · exp(−log_var/2))²)`` over ``axis``: the portable
    terms, to the bit, in one array of the broadcast shape and one of ``log_var``'s where the
    portable path made six."""
    k = _K or _load()
    np = k["np"]
    xs, ms, lv = _up(k, x, mean, log_var)
    shape = np.broadcast_shapes(xs.shape, ms.shape, lv.shape)
    z = np.subtract(xs, ms, out=np.empty(shape, dtype=xs.dtype))  # the standardized residual
    z *= _inverse_sigma(np, lv)
    z *= z
    z += lv
    count = math.prod(shape[a] for a in axis)  # the constant added once, as the portable path
    return (-0.5 * (z.sum(axis=axis) + count * LOG_2PI)).astype(x.dtype, copy=False)


LOG_2PI = math.log(2.0 * math.pi)


def _up(k: dict[str, Any], *arrays: Any) -> list[Any]:
    """The arrays in the compute dtype of the first (float32 for half types), uncopied if native."""
    ct = arrays[0].dtype if arrays[0].dtype in k["native"] else k["float32"]
    return [a.astype(ct, copy=False) for a in arrays]


def _inverse_sigma(np: Any, log_var: Any) -> Any:
    """``exp(-0.5 · log_var)`` (the portable product, in that order) in one new array of its shape."""
    out = np.multiply(log_var, -0.5, out=np.empty(log_var.shape, dtype=log_var.dtype))
    return np.exp(out, out=out)
