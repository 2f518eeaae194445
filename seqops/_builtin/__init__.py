"""The built-in plugin ("portable"): an implementation of every declared op, asked last.

One module per op family (named like the public ``seqops/<family>.py``) holds module-level
functions with each op's contract signature (:mod:`seqops.ops`), which run the
framework-free math of :mod:`seqops._agnostic` with the namespace of the backend. The
backend supplies what the standard lacks: random draws, native ``erf``, ``scan``, value
reads. Composites (multi-head attention, the encoder layer, window attention, the
feed-forward blocks over their activation, sampling over the logits filter, decoding, the
ELBO) dispatch their parts through :mod:`seqops.ops`, so a fast path of a part reaches
every composite. The plain implementations accept every call; ``portable-tiled`` (the
memory-efficient attention) declines calls whose scores fit the memory budget.
"""

from __future__ import annotations

from seqops._builtin import (  # noqa: F401 - registration
    activations,
    attention,
    clipping,
    decoding,
    generative,
    losses,
    pixelcnn,
    recurrent,
    transformer,
    vision,
)
from seqops._builtin._table import TABLE
from seqops.contract import Backend, Implementation
from seqops.hookspecs import hookimpl


@hookimpl(trylast=True)
def seqops_implementations(backend: Backend) -> list[Implementation]:
    return [impl for impls in TABLE.values() for impl in impls]
