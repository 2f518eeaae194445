"""Fast paths on the NumPy backend, where a NumPy formula beats the portable one.

- ``silu``: ``x / (1 + exp(-x))`` with the overflow warning silenced (``exp(-x)`` is ``inf``
  for ``x < -88`` in float32, where the result rounds to ``-0.0``; the true value is below the
  smallest normal float32). The portable form, written for autograd (``exp(-|x|)`` and a
  ``where``, no overflow in the value nor in its gradient), took 3.3x as long; NumPy has no
  autograd to protect. Half precision is computed in float32 and rounded once, as the contract.
- ``sample_logits`` with ``top_k``: the ``k`` largest logits of each row by
  ``numpy.argpartition`` (no full sort) and a Gumbel-max draw over them from ``k`` uniform
  draws per row (drawing over the whole vocabulary, as the portable path does, took 3.6x the
  time of ``argpartition`` and a draw over the ``k`` candidates), unless a row has ties with
  its ``k``-th value (then over every kept token, from draws over the whole vocabulary). The
  contract's distribution, and the same tokens for the same ``rng``, but not the portable
  path's tokens (the same ``rng`` gives the same result with the same implementation).
  Top-p needs the sorted cumulative probabilities: declined to the portable path.

- ``apply_rotary``: torch-rotary's form (``x · cos + swap(x) · sin`` with the signed ``sin``
  laid out once at the rotated width, one row per position; the same products and sums as
  the portable path, to the bit) with the sum in place: 0.72x of Hugging Face's
  ``rotate_half`` form in NumPy, where the portable path (half-width temporaries for each
  product, a concatenation) took 1.04-1.37x. Half precision is declined (the portable path
  rotates it in float32 and rounds once). An implementation with ``out=`` ufuncs into
  strided halves of one output was slower (1.26x: inner loops of d/2 elements).

- ``shifted_window_mask``: the portable construction with the region labels (0..8) compared
  as int8: the ``(nW, N, N)`` comparison on 8-bit lanes is 5x faster than on the default
  integers, 0.77x of Swin's int64 form where the portable path took 1.3x. (Under ``jax.jit``
  int8 labels made XLA's fused loop slower, 1.6x against 1.1x: hence NumPy only.)

``python bench/run.py --only ops_table`` prints their ratios to the plain NumPy formulas.
Importing this module imports nothing but seqops (NumPy is loaded when a NumPy array arrives).
"""

from __future__ import annotations

import math
from typing import Any

import seqops

HALF_ROTARY = "half precision: the portable path rotates in float32 and rounds once"
TOP_P = "top_p < 1: the nucleus needs a sorted cumulative sum (the portable path)"
NO_TOP_K = "no top_k: nothing for argpartition to do (the portable sampling runs over the filter)"

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
        seqops.Implementation(
            ops.sample_logits, "numpy-topk-sample", sample_logits, decline=decline_sample_logits
        ),
    ]


def silu(backend: seqops.Backend, x: Any, /) -> Any:
    k = _K or _load()
    np = k["np"]
    z = x if x.dtype in k["native"] else x.astype(k["float32"])
    with np.errstate(over="ignore"):
        out = z / (1.0 + np.exp(-z))
    return out if out.dtype == x.dtype else out.astype(x.dtype)


def decline_sample_logits(
    backend: seqops.Backend,
    logits: Any,
    /,
    *,
    rng: Any,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    min_tokens_to_keep: int,
) -> str | None:
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
    k = _K or _load()
    np = k["np"]
    native = logits.dtype in k["native"]
    z = logits if native else logits.astype(k["float32"])
    if temperature != 1.0:
        z = z / z.dtype.type(temperature)
    if not native:  # the portable filter returns the dtype of logits
        z = z.astype(logits.dtype).astype(k["float32"])
    vocab = z.shape[-1]
    kth = min(max(top_k, min_tokens_to_keep), vocab)
    pivot = vocab - kth - 1  # the (k+1)-th largest: a row has ties beyond its k-th value iff equal
    ids = np.argpartition(z, max(pivot, 0), axis=-1)[..., max(pivot, 0) :]
    values = np.take_along_axis(z, ids, axis=-1)
    if pivot >= 0:
        below, values, ids = values[..., 0], values[..., 1:], ids[..., 1:]  # the k largest, unordered
        threshold = values.min(axis=-1, keepdims=True)
        if (below == threshold[..., 0]).any():  # ties beyond the k-th: every kept token
            values, ids = np.where(z >= threshold, z, z.dtype.type(-math.inf)), None
    uniform = backend.random_uniform(rng, values.shape, dtype=z.dtype, device=None)
    gumbel = -np.log(-np.log(np.clip(uniform, k["tiny"], k["below_one"])))
    best = np.argmax(values + gumbel, axis=-1)
    return best if ids is None else np.take_along_axis(ids, best[..., None], axis=-1)[..., 0]


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
    return (mask.astype(dtype) - 1.0) * -SWIN_MASK_VALUE  # 0 where True, -100 elsewhere (in place)
