"""The one plugin manager: entry-point loading, contract checks, quarantine, the tables.

Environment variables, read when ``import seqops`` loads the plugins:

``SEQOPS_DISABLE_PLUGIN_AUTOLOAD=1``
    Do not load the ``seqops.plugins`` entry points (fast paths); the portable
    implementations run. Backends still load: without them no array can be handled.
``SEQOPS_DISABLE_PLUGINS=name,...``
    Do not load the named entry points of either group (a fast path, or a backend).
``SEQOPS_CHECK_PLUGINS=1``
    Check mode (:mod:`seqops._checking`, then :func:`set_check_plugins`): every call a
    fast path accepts also runs the portable path, and a disagreement beyond the
    conformance tolerance raises :class:`seqops.PluginDisagreement`.

Failure policy. The plugins shipped with seqops (the built-in portable plugin and the
entry points of the ``seqops`` distribution) are never quarantined: an exception in them
is a bug and propagates. A third-party plugin whose module fails to import or whose hook
raises is unregistered with a :class:`SeqopsPluginWarning`; one whose ``decline`` raises
loses that implementation for that op only (warned once), and the call goes on to the
next implementation. An implementation whose ``fn`` or ``decline`` does not match its op's
contract is refused when its plugin is registered, with a warning naming the parameter.

The tables are filled eagerly whenever plugins change (registration happens at
``import seqops`` or by :func:`seqops.register_plugin`, never while tracing): each declared
op holds ``backend name -> implementations`` (``Op.cache``), read by its dispatcher. They
are plain dicts, cleared and refilled in place, since the compiled dispatchers hold them and
``torch.compile`` must trace their reads (Dynamo enters neither a lock nor pluggy).
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Any

import pluggy

from seqops import _checking, hookspecs
from seqops._op import DECLARED, Op, as_op
from seqops.contract import Backend, Implementation

BACKEND_GROUP = "seqops.backends"
PLUGIN_GROUP = "seqops.plugins"
OUR_DISTRIBUTION = "seqops"


class SeqopsPluginWarning(UserWarning):
    """A plugin failed to load, was refused, or raised and was quarantined."""


class _Registry:
    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self._backends: tuple[Backend, ...] | None = None
        #: plugin name -> the backends its hook returned (asked once, so that a backend object
        #: stays the same across registrations of other plugins)
        self._backends_of: dict[str, list[Backend]] = {}
        #: array type -> its backend (jax tracer types included); read by ``resolve``.
        self.backend_of_type_cache: dict[type, Backend] = {}
        #: plugin name -> why it was unregistered
        self.quarantined: dict[str, str] = {}
        #: (plugin, implementation name, op name) -> why it is no longer asked
        self.quarantined_implementations: dict[tuple[str, str, str], str] = {}
        self._ours: set[str] = set()
        self._warned: set[tuple[str, str, str]] = set()
        #: check mode: the fast paths' ``fn`` wrapped by ``_checking.checked`` in the tables
        self.checking = _check_default()

    # -- loading ----------------------------------------------------------------------
    def load(self, builtin: object) -> None:
        """Register the built-in plugin and the entry points (once, at ``import seqops``)."""
        self._ours.add("portable")
        self.pm.register(builtin, name="portable")
        disabled = {n.strip() for n in os.environ.get("SEQOPS_DISABLE_PLUGINS", "").split(",")}
        groups = [BACKEND_GROUP]
        if os.environ.get("SEQOPS_DISABLE_PLUGIN_AUTOLOAD", "") in ("", "0"):
            groups.append(PLUGIN_GROUP)
        for group in groups:
            for ep in entry_points(group=group):
                if ep.name in disabled or self.pm.has_plugin(ep.name):
                    continue
                dist = getattr(ep, "dist", None)
                ours = dist is not None and dist.name == OUR_DISTRIBUTION
                try:
                    plugin = ep.load()
                except Exception as exc:
                    if ours:
                        raise
                    self._quarantine(ep.name, f"failed to import {ep.value!r}: {exc!r}")
                    continue
                if ours:
                    self._ours.add(ep.name)
                    self.pm.register(plugin, name=ep.name)
                    continue
                try:
                    self.pm.register(plugin, name=ep.name)
                except Exception as exc:  # pluggy refuses a hook not matching its spec
                    self._quarantine(ep.name, f"refused by the plugin manager: {exc}")
        self.refresh()

    def is_ours(self, plugin: str) -> bool:
        """Whether ``plugin`` ships with seqops (never quarantined)."""
        return plugin in self._ours

    def _quarantine(self, name: str, why: str) -> None:
        self.quarantined[name] = why
        if self.pm.has_plugin(name):
            self.pm.unregister(name=name)
        warnings.warn(f"seqops plugin {name!r} quarantined: {why}", SeqopsPluginWarning, stacklevel=3)

    def _each_hookimpl(self, hook_name: str) -> Iterator[tuple[str, Any]]:
        """Yield ``(plugin name, hook function)`` in pluggy call order (LIFO, tryfirst first)."""
        for impl in reversed(getattr(self.pm.hook, hook_name).get_hookimpls()):
            yield impl.plugin_name, impl.function

    # -- changes ------------------------------------------------------------------------
    def register(self, plugin: object, name: str | None = None) -> str:
        registered = self.pm.register(plugin, name=name)
        if registered is None:
            msg = f"plugin {name!r} is already registered or blocked"
            raise ValueError(msg)
        self.refresh()
        return registered

    def unregister(self, name: str) -> None:
        self.pm.unregister(name=name)
        self.refresh()

    def refresh(self) -> None:
        """Rebuild every table (backends, then each op's implementations per backend)."""
        self._backends = None
        self.backend_of_type_cache.clear()
        for op in DECLARED.values():
            op.cache.clear()  # in place: the dispatchers hold these dicts
        for backend in self.backends():
            for op, found in self._collect(backend).items():
                op.cache[backend.name] = found

    # -- tables -----------------------------------------------------------------------
    def backends(self) -> tuple[Backend, ...]:
        """Every registered backend, highest precedence first."""
        if self._backends is None:
            found: list[Backend] = []
            hooks = list(self._each_hookimpl("seqops_backends"))
            self._backends_of = {p: b for p, b in self._backends_of.items() if p in dict(hooks)}
            for plugin, fn in hooks:
                result = self._backends_of.get(plugin)
                if result is None:
                    try:
                        result = list(fn())
                        for backend in result:
                            if not isinstance(backend, Backend):
                                msg = f"seqops_backends returned {backend!r}, not a seqops.Backend"
                                raise TypeError(msg)
                    except Exception as exc:
                        if self.is_ours(plugin):
                            raise
                        self._quarantine(plugin, f"seqops_backends raised {exc!r}")
                        continue
                    self._backends_of[plugin] = result
                found.extend(result)
            self._backends = tuple(found)
        return self._backends

    def backend_of(self, x: object) -> Backend | None:
        """The backend owning array ``x`` (cached by type; jax tracer types included)."""
        backend = self.backend_of_type_cache.get(type(x))
        if backend is None:
            backend = next((b for b in self.backends() if b.owns(x)), None)
            if backend is not None:
                self.backend_of_type_cache[type(x)] = backend
        return backend

    def implementations(self, op: Op | str, backend: Backend) -> tuple[Implementation, ...]:
        """The implementations of ``op`` on ``backend``, in asking order."""
        op = as_op(op)
        found = op.cache.get(backend.name)
        if found is None:  # a backend object that is not registered (passed as backend=)
            found = self._collect(backend).get(op, ())
        return found

    def _collect(self, backend: Backend) -> dict[Op, tuple[Implementation, ...]]:
        """Ask every plugin for its implementations on ``backend``, checking each."""
        found: dict[Op, list[Implementation]] = {}
        for plugin, hook in list(self._each_hookimpl("seqops_implementations")):
            try:
                result = list(hook(backend=backend) or ())
                for impl in result:
                    if not isinstance(impl, Implementation):
                        msg = f"returned {impl!r}, not a seqops.Implementation"
                        raise TypeError(msg)
            except Exception as exc:
                if self.is_ours(plugin):
                    raise
                self._quarantine(plugin, f"seqops_implementations raised {exc!r}")
                continue
            for impl in result:
                if (plugin, impl.name, impl.op.name) in self.quarantined_implementations:
                    continue
                if self._refused(plugin, impl):
                    continue
                impl = dataclasses.replace(impl, plugin=plugin)
                if not self.is_ours(plugin) and impl.decline is not None:
                    impl = dataclasses.replace(impl, decline=self._guarded(impl, impl.decline))
                found.setdefault(impl.op, []).append(impl)
        if self.checking:
            return {op: _checked(impls) for op, impls in found.items()}
        return {op: tuple(impls) for op, impls in found.items()}

    def _refused(self, plugin: str, impl: Implementation) -> bool:
        """Whether ``impl`` does not match its op's contract (warned once)."""
        for role, fn in (("fn", impl.fn), ("decline", impl.decline)):
            why = None if fn is None else impl.op.mismatch(fn)
            if why is None:
                continue
            key = (plugin, impl.name, impl.op.name)
            if key not in self._warned:
                self._warned.add(key)
                msg = (
                    f"seqops plugin {plugin!r}: implementation {impl.name!r} of {impl.op.name!r} "
                    f"refused: its {role} does not match the op's contract {impl.op.signature} "
                    f"({why})"
                )
                warnings.warn(msg, SeqopsPluginWarning, stacklevel=4)
            return True
        return False

    def _guarded(self, impl: Implementation, decline: Callable[..., str | None]) -> Callable[..., str | None]:
        """A third party's ``decline`` that quarantines ``impl`` for its op if it raises."""

        def guarded(*args: Any, **kwargs: Any) -> str | None:
            try:
                return decline(*args, **kwargs)
            except Exception as exc:
                why = f"its decline raised {exc!r}"
                self.quarantine_implementation(impl, why)
                return f"quarantined: {why}"

        return guarded

    def quarantine_implementation(self, impl: Implementation, why: str) -> None:
        """Stop asking ``impl`` for its op, on every backend, with a warning."""
        self.quarantined_implementations[(impl.plugin, impl.name, impl.op.name)] = why
        for name, found in list(impl.op.cache.items()):
            impl.op.cache[name] = tuple(i for i in found if (i.plugin, i.name) != (impl.plugin, impl.name))
        msg = (
            f"seqops plugin {impl.plugin!r}: implementation {impl.name!r} of {impl.op.name!r} "
            f"quarantined: {why}"
        )
        warnings.warn(msg, SeqopsPluginWarning, stacklevel=4)


def _checked(impls: list[Implementation]) -> tuple[Implementation, ...]:
    """Check mode: each fast path's ``fn`` compared with the built-in portable one."""
    portable = next((i for i in impls if (i.plugin, i.name) == ("portable", "portable")), None)
    if portable is None:
        return tuple(impls)
    return tuple(
        i if i.plugin == "portable" else dataclasses.replace(i, fn=_checking.checked(i, portable))
        for i in impls
    )


def _check_default() -> bool:
    return os.environ.get("SEQOPS_CHECK_PLUGINS", "").strip() not in ("", "0")


registry = _Registry()


def set_check_plugins(enabled: bool | None, /) -> bool:
    """Turn check mode on or off for the next calls; return the previous setting.

    In check mode every call that a fast path (an implementation of a plugin other than
    the built-in ``portable`` one) accepts also runs the portable implementation on the same
    arguments, and a result differing beyond the conformance tolerance of its dtype raises
    :class:`seqops.PluginDisagreement` naming the implementation and its plugin (random
    draws and traced calls are not compared: see :mod:`seqops._checking`). ``None``
    restores the default, ``SEQOPS_CHECK_PLUGINS`` (read at ``import seqops``; off when
    unset or ``0``). The implementation tables are rebuilt (plugins are asked again), so
    call it outside ``jax.jit`` and ``torch.compile``; off, the calls cost nothing more.

    Parameters
    ----------
    enabled : bool or None
        Check mode on (``True``) or off (``False``), or ``None`` for the default.

    Returns
    -------
    bool
        Whether check mode was on before the call.

    Examples
    --------
    >>> import numpy as np, seqops
    >>> old = seqops.set_check_plugins(True)
    >>> float(seqops.silu(np.zeros(3, dtype=np.float32))[0])  # numpy-silu, checked
    0.0
    >>> seqops.set_check_plugins(old)
    True
    """
    previous = registry.checking
    registry.checking = _check_default() if enabled is None else bool(enabled)
    if registry.checking != previous:
        registry.refresh()
    return previous


def checking_plugins() -> bool:
    """Whether check mode is on (see :func:`set_check_plugins`).

    Returns
    -------
    bool
        ``True`` when fast-path results are checked against the portable implementation.

    Examples
    --------
    >>> import seqops
    >>> seqops.checking_plugins()
    False
    """
    return registry.checking
