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
class Limitation:
    """Something a backend or an implementation does not support, and why.

    Declared once, on :attr:`seqops.Backend.limitations` or
    :attr:`Implementation.limitations`; each field left ``None`` matches anything. The
    conformance suite turns a backend's limitations into skips (with the reason), checks
    that an implementation really declines the calls its limitations name, and the support
    table of the docs (``seqops conformance --support-table``) is generated from them.

    Parameters
    ----------
    reason
        Why, in a few words (``"marray has no linalg extension"``).
    op
        A public op name (``"kl_mvn"``).
    dtype
        A floating dtype name (``"float16"``).
    device
        A device label (``"cpu"``, ``"cuda:0"``) or its kind (``"cuda"`` matches every
        ``cuda:N``).
    transformation
        A conformance transformation (``"grad"``, ``"jit"``, ``"vmap"``, ``"compile"``).

    Examples
    --------
    >>> from seqops import Limitation
    >>> no_half = Limitation("no half-precision kernels", dtype="float16")
    >>> no_half.matches(op="lstm", dtype="float16", device="cpu", transformation="eager")
    True
    >>> no_half.matches(op="lstm", dtype="float32", device="cpu", transformation="eager")
    False
    """

    reason: str
    op: str | None = None
    dtype: str | None = None
    device: str | None = None
    transformation: str | None = None

    def matches(self, *, op: str, dtype: str, device: str, transformation: str) -> bool:
        """Whether this limitation covers a call of ``op`` in ``dtype`` on ``device``
        (a label such as ``"cuda:0"``) under ``transformation``."""
        return (
            self.op in (None, op)
            and self.dtype in (None, dtype)
            and self.device in (None, device, device.split(":")[0])
            and self.transformation in (None, transformation)
        )

    def scope(self) -> str:
        """What it covers, e.g. ``"kl_mvn, float16"``, or ``"everything"``."""
        fields = (self.op, self.dtype, self.device, self.transformation)
        return ", ".join(f for f in fields if f is not None) or "everything"


def find_limitation(
    limitations: Sequence[Limitation], *, op: str, dtype: str, device: str, transformation: str
) -> Limitation | None:
    """The first of ``limitations`` that covers the call, else ``None``."""
    return next(
        (
            lim
            for lim in limitations
            if lim.matches(op=op, dtype=dtype, device=device, transformation=transformation)
        ),
        None,
    )


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
    limitations
        What ``decline`` always refuses, declared (dtypes, devices, ops): documentation
        that the conformance suite checks (the implementation must decline those calls) and
        turns into the support table of the docs. ``decline`` stays the rule at run time.
    """

    name: str
    fn: Callable[..., Any]
    decline: Callable[..., str | None] | None = None
    limitations: tuple[Limitation, ...] = ()


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
