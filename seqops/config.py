"""Settings of the library, in one place: the attention memory budget and its tile sizes.

The built-in implementations read them when they run (so a change applies to the next
call); plugins that materialise scores in chunks size them by
:func:`attention_memory_budget` too.
"""

from __future__ import annotations

import os

from seqops._lib import validate as check

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
