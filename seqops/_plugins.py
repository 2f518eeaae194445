"""The one plugin manager: entry-point loading, quarantine, and the cached registries.

Environment variables, read when ``import seqops`` loads the plugins:

``SEQOPS_DISABLE_PLUGIN_AUTOLOAD=1``
    Do not load the ``seqops.plugins`` entry points (fast paths); the portable
    implementations run. Backends still load: without them no array can be handled.
``SEQOPS_DISABLE_PLUGINS=name,...``
    Do not load the named entry points of either group (a fast path, or a backend).

The caches below are plain dicts filled on first use, without locks: filling one twice
is harmless (same result), and the hot path must stay traceable by ``torch.compile``
(Dynamo cannot enter a lock nor trace pluggy's registration machinery, so the entry
points are loaded eagerly at import, where nothing is being traced).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from importlib.metadata import entry_points
from typing import Any

import pluggy

from seqops import hookspecs
from seqops._lib.backend import Backend
from seqops.hookspecs import Implementation

BACKEND_GROUP = "seqops.backends"
PLUGIN_GROUP = "seqops.plugins"

Candidate = tuple[str, Implementation]


class SeqopsPluginWarning(UserWarning):
    """A plugin failed to load or raised inside a hook and was quarantined."""


class _Registry:
    def __init__(self) -> None:
        self._pm: pluggy.PluginManager | None = None
        self._backends: tuple[Backend, ...] | None = None
        #: ``(op, backend name)`` -> what :meth:`implementations` returns; read directly by
        #: the dispatcher's hot path (a method call costs ~0.1 µs there).
        self.implementations_cache: dict[tuple[str, str], tuple[Candidate, ...]] = {}
        #: array type -> its backend (jax tracer types included); read by ``resolve``.
        self.backend_of_type_cache: dict[type, Backend] = {}
        self.quarantined: dict[str, str] = {}

    # -- loading ----------------------------------------------------------------------
    @property
    def pm(self) -> pluggy.PluginManager:
        if self._pm is None:
            self._pm = self._load()
        return self._pm

    def _load(self) -> pluggy.PluginManager:
        from seqops import _portable

        pm = pluggy.PluginManager(hookspecs.PROJECT)
        pm.add_hookspecs(hookspecs)
        pm.register(_portable, name="portable")
        disabled = {n.strip() for n in os.environ.get("SEQOPS_DISABLE_PLUGINS", "").split(",")}
        groups = [BACKEND_GROUP]
        if os.environ.get("SEQOPS_DISABLE_PLUGIN_AUTOLOAD", "") in ("", "0"):
            groups.append(PLUGIN_GROUP)
        for group in groups:
            for ep in entry_points(group=group):
                if ep.name in disabled or pm.has_plugin(ep.name):
                    continue
                try:
                    plugin = ep.load()
                except Exception as exc:  # noqa: BLE001 - any import failure quarantines
                    self._quarantine(None, ep.name, f"failed to import {ep.value!r}: {exc!r}")
                    continue
                pm.register(plugin, name=ep.name)
        return pm

    def _quarantine(self, pm: pluggy.PluginManager | None, name: str, why: str) -> None:
        self.quarantined[name] = why
        if pm is not None and pm.has_plugin(name):
            pm.unregister(name=name)
        self._invalidate()
        warnings.warn(f"seqops plugin {name!r} quarantined: {why}", SeqopsPluginWarning, stacklevel=3)

    def _invalidate(self) -> None:
        self._backends = None
        # Cleared in place: the dispatchers hold these dicts.
        self.implementations_cache.clear()
        self.backend_of_type_cache.clear()

    def _each_hookimpl(self, hook_name: str) -> Iterator[tuple[str, Any]]:
        """Yield ``(plugin name, hook function)`` in pluggy call order (LIFO, tryfirst first)."""
        for impl in reversed(getattr(self.pm.hook, hook_name).get_hookimpls()):
            yield impl.plugin_name, impl.function

    # -- public registry API ----------------------------------------------------------
    def register(self, plugin: object, name: str | None = None) -> str:
        registered = self.pm.register(plugin, name=name)
        self._invalidate()
        if registered is None:
            msg = f"plugin {name!r} is already registered or blocked"
            raise ValueError(msg)
        return registered

    def unregister(self, name: str) -> None:
        self.pm.unregister(name=name)
        self._invalidate()

    def backends(self) -> tuple[Backend, ...]:
        """Every registered backend, highest precedence first."""
        if self._backends is None:
            found: list[Backend] = []
            for plugin, fn in list(self._each_hookimpl("seqops_backends")):
                try:
                    result = list(fn())
                    for backend in result:
                        if not isinstance(backend, Backend):
                            msg = f"seqops_backends returned {backend!r}, not a seqops.Backend"
                            raise TypeError(msg)
                except Exception as exc:  # noqa: BLE001 - a broken plugin is quarantined
                    self._quarantine(self.pm, plugin, f"seqops_backends raised {exc!r}")
                    continue
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

    def implementations(self, op: str, backend: Backend) -> tuple[Candidate, ...]:
        """``(plugin name, implementation)`` pairs for ``op`` on ``backend``, in asking order."""
        key = (op, backend.name)
        candidates = self.implementations_cache.get(key)
        if candidates is None:
            found: list[Candidate] = []
            for plugin, fn in list(self._each_hookimpl("seqops_implementations")):
                try:
                    result = list(fn(op=op, backend=backend) or ())
                    for impl in result:
                        if not isinstance(impl, Implementation):
                            msg = f"returned {impl!r}, not a seqops.Implementation"
                            raise TypeError(msg)
                except Exception as exc:  # noqa: BLE001 - a broken plugin is quarantined
                    self._quarantine(self.pm, plugin, f"seqops_implementations raised {exc!r}")
                    continue
                found.extend((plugin, impl) for impl in result)
            candidates = self.implementations_cache[key] = tuple(found)
        return candidates

    def quarantine(self, plugin: str, why: str) -> None:
        """Unregister ``plugin`` with a warning (its hook or ``decline`` misbehaved)."""
        self._quarantine(self.pm, plugin, why)


registry = _Registry()
