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

``python bench/run.py --only ops_table`` prints their ratios to the plain NumPy formulas.
Importing this module imports nothing but seqops (NumPy is loaded when a NumPy array arrives).
"""

from __future__ import annotations

import math
from typing import Any

import seqops

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
