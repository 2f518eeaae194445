"""Hook specifications: the whole contract between seqops and its plugins.

Two entry-point groups load plugins (modules or objects implementing these hooks):

``seqops.backends``
    Modules implementing :func:`seqops_backends` (NumPy, PyTorch, JAX, CuPy,
    array-api-strict are built in and registered this way, exactly like a third party's).
``seqops.plugins``
    Modules implementing :func:`seqops_implementations`: fast paths for some ops on some
    backends (fused native kernels).

Mark implementations with :data:`seqops.hookimpl`. A plugin whose module fails to import,
or whose hook raises, is quarantined: unregistered with a :class:`seqops.SeqopsPluginWarning`
naming it; it never breaks ``import seqops`` nor another plugin.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from seqops._lib.backend import Backend

PROJECT = "seqops"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@dataclass(frozen=True)
class Implementation:
    """One way to compute one op on one backend.

    Parameters
    ----------
    name
        Shown by :func:`seqops.explain` and in conformance reports (``"portable"``,
        ``"torch-sdpa"``, ...).
    fn
        Called with exactly the arguments of the public function, after validation and
        with defaults resolved (e.g. ``scale`` is a float), and returns what it returns.
    decline
        Called with the same arguments before ``fn``; returns ``None`` to accept the call
        or a short reason to decline it (``"float64 is not supported by the flash kernel"``),
        in which case the next implementation is asked. ``None`` accepts every call.
    """

    name: str
    fn: Callable[..., Any]
    decline: Callable[..., str | None] | None = None


@hookspec
def seqops_backends() -> Sequence[Backend]:
    """Return the :class:`seqops.Backend` instances this plugin provides.

    Called once, when seqops first needs its backends. Not ``firstresult``: every plugin's
    backends are collected. When two backends own the same array type, the one registered
    later wins, so a third-party backend can override a built-in one; built-in backends
    are ``trylast``.
    """


@hookspec
def seqops_implementations(op: str, backend: Backend) -> Sequence[Implementation] | None:
    """Return the implementations of public op ``op`` (e.g. ``"scaled_dot_product_attention"``)
    that this plugin offers on ``backend``, best first, or ``None``.

    Called once per ``(op, backend)`` and cached, so a call pays only the ``decline``
    checks. Not ``firstresult``: the implementations of all plugins are tried in hook
    order, and the first whose ``decline`` returns ``None`` runs. (A ``firstresult`` hook
    called on every op would cost a pluggy dispatch per call; caching the candidates keeps
    the dispatch overhead to a few microseconds.) The portable implementation is
    registered as a ``trylast`` built-in plugin and accepts every call, so it is the last
    resort.
    """
