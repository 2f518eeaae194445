"""The built-in plugin: the portable implementation of every op, asked last.

Each factory receives the backend and returns a function with the public op's signature
(after validation) that runs the pure Array API code of ``seqops._agnostic``. The backend
supplies what the standard lacks: random draws, native ``erf``, ``scan``, value reads.
One module per op family registers its factories in :mod:`seqops._portable._registry`.
"""

from __future__ import annotations

from seqops._lib.backend import Backend
from seqops._portable import attention, generative, language, recurrent, vision  # noqa: F401 - registration
from seqops._portable._registry import FACTORIES, VARIANTS
from seqops.hookspecs import Implementation, hookimpl


@hookimpl(trylast=True)
def seqops_implementations(op: str, backend: Backend) -> list[Implementation] | None:
    factory = FACTORIES.get(op)
    if factory is None:
        return None
    return [*(make(backend) for make in VARIANTS.get(op, ())), Implementation("portable", factory(backend))]
