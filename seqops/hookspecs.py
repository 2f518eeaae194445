"""Hook specifications: the whole contract between seqops and its plugins.

Two entry-point groups load plugins (modules or objects implementing these hooks):

``seqops.backends``
    Modules implementing :func:`seqops_backends` (NumPy, PyTorch, JAX, CuPy,
    array-api-strict are built in and registered this way, exactly like a third party's).
``seqops.plugins``
    Modules implementing :func:`seqops_implementations`: fast paths for some ops on some
    backends (fused native kernels).

Mark implementations with :data:`seqops.hookimpl`. A third-party plugin whose module fails
to import, or whose hook raises, is quarantined: unregistered with a
:class:`seqops.SeqopsPluginWarning` naming it; it never breaks ``import seqops`` nor another
plugin. One whose ``decline`` raises loses that implementation for that op only. The
plugins shipped with seqops are never quarantined: an exception there is a bug, and it
propagates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from seqops.contract import Backend, Implementation

PROJECT = "seqops"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def seqops_backends() -> Sequence[Backend]:
    """Return the :class:`seqops.Backend` instances this plugin provides.

    Called once, when seqops first needs its backends. Not ``firstresult``: every plugin's
    backends are collected. When two backends own the same array type, the one registered
    later wins, so a third-party backend can override a built-in one; built-in backends
    are ``trylast``.
    """


@hookspec
def seqops_implementations(backend: Backend) -> Sequence[Implementation] | None:
    """Return the implementations this plugin offers on ``backend`` (any ops, each
    :class:`seqops.Implementation` naming its op), best first, or ``None``.

    Called for every registered backend when the plugin is registered (and again whenever
    plugins or backends change), never on the hot path: it must be cheap and must not
    import the backend's library (look up native functions when ``fn`` first runs).
    Each implementation's ``fn`` and ``decline`` are checked then against its op's
    contract (:mod:`seqops.ops`); one that does not match is refused with a warning.
    Not ``firstresult``: the implementations of all plugins are asked in hook order, and
    the first whose ``decline`` returns ``None`` runs. The built-in portable
    implementations are a ``trylast`` plugin accepting every call, the last resort.
    """
