"""Settings of the library, in one place: the attention memory budget and its tile sizes.

The built-in implementations read them when they run (so a change applies to the next
call); plugins that materialise scores in chunks size them by
:func:`attention_memory_budget` too.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any

from seqops._lib import validate as check

if TYPE_CHECKING:
    from seqops._lib.typing import Array, DType
    from seqops.contract import Backend

DEFAULT_MEMORY_BUDGET = 256 * 2**20
"""Bytes the ``(..., L, S)`` attention scores may take before the tiled path is chosen."""


def _default_budget() -> int:
    raw = os.environ.get("SEQOPS_ATTENTION_MEMORY_BUDGET", "").strip()
    return int(raw) if raw else DEFAULT_MEMORY_BUDGET


class _Attention:
    """``budget``: bytes of scores before the tiled attention runs (``SEQOPS_ATTENTION_MEMORY_BUDGET``
    at import, then :func:`set_attention_memory_budget`); ``key_tile`` keys are visited at a
    time; query blocks are sized so that one block's scores take about ``tile_bytes``."""

    budget = _default_budget()
    key_tile = 512
    tile_bytes = 32 * 2**20


ATTENTION = _Attention()


def attention_memory_budget() -> int:
    """The bytes the attention scores may take (see :func:`set_attention_memory_budget`).

    Returns
    -------
    int
        The budget in bytes; above it, attention runs the tiled path.

    Examples
    --------
    >>> import seqops
    >>> seqops.attention_memory_budget() >= 0
    True
    """
    return ATTENTION.budget


def set_attention_memory_budget(nbytes: int | None, /) -> int:
    """Set the bytes the attention scores may take before the tiled path runs; return the old value.

    ``None`` restores the default (``SEQOPS_ATTENTION_MEMORY_BUDGET``, else 256 MiB); ``0``
    makes :func:`seqops.scaled_dot_product_attention` use the memory-efficient tiled path
    whenever no fast path takes the call. The composites (:func:`seqops.multi_head_attention`,
    :func:`seqops.transformer_encoder_layer`, :func:`seqops.window_attention`) dispatch their
    attention, so they follow the same budget for their per-head scores.

    Parameters
    ----------
    nbytes : int >= 0 or None
        The new budget in bytes, or ``None`` for the default.

    Returns
    -------
    int
        The budget before the call.

    Examples
    --------
    >>> import numpy as np, seqops
    >>> old = seqops.set_attention_memory_budget(0)
    >>> q = np.ones((2, 4, 8), dtype=np.float32)
    >>> seqops.explain(seqops.scaled_dot_product_attention, q, q, q).chosen
    'portable-tiled'
    >>> _ = seqops.set_attention_memory_budget(old)
    """
    previous = ATTENTION.budget
    ATTENTION.budget = _default_budget() if nbytes is None else check.integer("nbytes", nbytes)
    return previous


def attention_scores_fit(
    backend: Backend, q: Array, k: Array, v: Array, /, *, enable_gqa: bool = False
) -> bool | None:
    """Whether the ``(..., L, S)`` scores of an attention over ``q``, ``k``, ``v`` fit the
    memory budget: the rule by which the portable path takes its plain or its tiled attention,
    for a fast path that materialises the scores to decline the calls beyond it by the same rule.

    Judged on what one chunk or shard holds (:meth:`seqops.Backend.local_shape`): 8 bytes a
    score for float64, 4 otherwise (half precision computes its scores in float32).

    Parameters
    ----------
    backend : Backend
        The call's backend (a ``decline`` receives it).
    q, k, v : array
        ``(..., L, E)``, ``(..., S, E)``, ``(..., S, Ev)``, as validated for the attention.
    enable_gqa : bool
        ``k`` and ``v`` with fewer heads (dim -3) than ``q``.

    Returns
    -------
    bool or None
        ``None`` when a size is not a known int (symbolic or dynamic: the plain path runs).

    Examples
    --------
    >>> import numpy as np, seqops
    >>> q = np.ones((2, 3, 16, 4), dtype=np.float32)  # 2 * 3 * 16 * 16 * 4 = 6144 bytes of scores
    >>> backend = dict((b.name, b) for b, _ in seqops.backends())["numpy"]
    >>> old = seqops.set_attention_memory_budget(6144)
    >>> seqops.attention_scores_fit(backend, q, q, q), seqops.set_attention_memory_budget(6143) == 6144
    (True, True)
    >>> seqops.attention_scores_fit(backend, q, q, q)
    False
    >>> _ = seqops.set_attention_memory_budget(old)
    """
    qs, ks, vs = backend.local_shape(q), backend.local_shape(k), backend.local_shape(v)
    rows = score_rows(qs, ks, vs, enable_gqa)
    if rows is None:
        return None
    return score_matrices_fit(backend, rows, qs[-2], ks[-2], q.dtype)


def score_matrices_fit(backend: Backend, count: int, length: int, source: int, dtype: DType, /) -> bool:
    """Whether ``count`` attention score matrices of ``(length, source)`` fit the memory budget:
    :func:`attention_scores_fit` for a fast path that knows its scores' sizes but holds no
    ``(..., L, E)`` arrays when it declines (a composite, such as Swin's window attention:
    ``windows · heads`` matrices of ``(ws², ws²)``). 8 bytes a score for float64, 4 otherwise.

    Parameters
    ----------
    backend : Backend
        The call's backend.
    count, length, source : int
        How many ``(L, S)`` matrices, ``L`` and ``S``.
    dtype : dtype
        The attention's dtype, of ``backend``'s library.

    Returns
    -------
    bool

    Examples
    --------
    >>> import numpy as np, seqops
    >>> backend = dict((b.name, b) for b, _ in seqops.backends())["numpy"]
    >>> old = seqops.set_attention_memory_budget(2 * 49 * 49 * 8)  # two (49, 49) float64 matrices
    >>> seqops.score_matrices_fit(backend, 2, 49, 49, np.dtype("float64"))
    True
    >>> seqops.score_matrices_fit(backend, 3, 49, 49, np.dtype("float64"))
    False
    >>> _ = seqops.set_attention_memory_budget(old)
    """
    return count * length * source * score_bytes(backend.namespace(), dtype) <= ATTENTION.budget


def score_rows(q: tuple[Any, ...], k: tuple[Any, ...], v: tuple[Any, ...], enable_gqa: bool) -> int | None:
    """``prod(batch dims)`` of the shapes of ``q``, ``k``, ``v``: how many ``(L, S)`` score
    matrices an attention computes, or ``None`` when a size is not a known int (symbolic,
    dynamic or unknown)."""
    qs, ks, vs = q[:-2], k[:-2], v[:-2]
    if not all(isinstance(d, int) for d in (*qs, *ks, *vs, q[-2], k[-2])):
        return None
    if enable_gqa:
        ks, vs = (*ks[:-1], qs[-1]), (*vs[:-1], qs[-1])
    return math.prod(check.broadcast(qs, ks, vs))


def score_bytes(xp: Any, dtype: Any) -> int:
    """Bytes of one score: 8 for float64, 4 otherwise (half precision scores in float32)."""
    return 8 if dtype == xp.float64 else 4
