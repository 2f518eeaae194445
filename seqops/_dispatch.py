"""Backend resolution and implementation choice: the hot path of every public call."""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from seqops._lib.backend import Backend
from seqops._lib.typing import Array, Device, DType
from seqops._lib.validate import dtype_name
from seqops._plugins import registry

_default_backend: contextvars.ContextVar[str] = contextvars.ContextVar(
    "seqops_default_backend", default="numpy"
)


def resolve(*arrays: object, names: tuple[str, ...] = ()) -> Backend:
    """The backend of the arrays among ``arrays`` (``None`` and Python scalars are skipped).

    ``names`` labels the arguments in error messages. Raises ``TypeError`` when no array is
    given, when an array belongs to no backend, or when arrays of two libraries are mixed.
    """
    # Hot path: every array given is of one already-seen type (the cache is by type).
    kind = type(arrays[0]) if arrays else None
    backend = registry.cached_backend_of_type(kind)
    if backend is not None:
        for x in arrays:
            if x is not None and type(x) is not kind:
                break
        else:
            return backend
    found: Backend | None = None
    found_at = 0
    for i, x in enumerate(arrays):
        if x is None or isinstance(x, (bool, int, float, complex)):
            continue
        backend = registry.backend_of(x)
        if backend is None:
            known = ", ".join(b.name for b in registry.backends())
            msg = (
                f"{_label(names, i)} is a {type(x).__module__}.{type(x).__qualname__}, which no "
                f"seqops backend handles (registered backends: {known})"
            )
            raise TypeError(msg)
        if found is None:
            found, found_at = backend, i
        elif backend is not found:
            msg = (
                f"arrays from different libraries in one call: {_label(names, found_at)} is "
                f"{found.library} ({type(arrays[found_at]).__qualname__}) but {_label(names, i)} "
                f"is {backend.library} ({type(x).__qualname__}); convert them to one library first"
            )
            raise TypeError(msg)
    if found is None:
        msg = "expected at least one array argument"
        raise TypeError(msg)
    return found


def _label(names: tuple[str, ...], i: int) -> str:
    return f"`{names[i]}`" if i < len(names) else f"argument {i}"


def backend_named(name: str) -> Backend:
    """The registered backend called ``name`` (``ValueError`` listing the names otherwise)."""
    for backend in registry.backends():
        if backend.name == name:
            return backend
    known = ", ".join(b.name for b in registry.backends())
    msg = f"unknown backend {name!r}; registered backends: {known}"
    raise ValueError(msg)


def creation_backend(like: object, backend: str | Backend | None) -> Backend:
    """The backend a creation function (mask, encoding) builds its arrays with."""
    if like is not None and backend is not None:
        msg = "pass either like= or backend=, not both"
        raise TypeError(msg)
    if like is not None:
        return resolve(like, names=("like",))
    if isinstance(backend, Backend):
        return backend
    chosen = backend_named(backend if backend is not None else _default_backend.get())
    availability = chosen.availability()
    if not availability:
        msg = f"backend {chosen.name!r} is unavailable: {availability.reason}"
        raise RuntimeError(msg)
    return chosen


def creation_device(backend: Backend, like: Array | None, device: Device | None) -> Device:
    """``device`` if given, else the device of ``like``, else the backend's default device."""
    if device is not None:
        return device
    return backend.device(like) if like is not None else backend.default_device()


def creation_float_dtype(
    backend: Backend, like: Array | None, device: Device | None, dtype: DType | None = None
) -> DType:
    """The floating dtype a creation function makes: ``dtype`` if given (checked), else the
    dtype of ``like`` if floating, else the backend's default float."""
    xp = backend.namespace()
    if dtype is None:
        like_dtype = getattr(like, "dtype", None)
        if like_dtype is not None and xp.isdtype(like_dtype, "real floating"):
            return like_dtype
        return backend.default_float_dtype(device)
    if not xp.isdtype(dtype, "real floating"):
        msg = f"dtype must be a real floating dtype; got {dtype_name(dtype)}"
        raise TypeError(msg)
    return dtype


@contextlib.contextmanager
def use(name: str) -> Iterator[Backend]:
    """Make ``name`` the default backend of creation functions inside a ``with`` block.

    Examples
    --------
    >>> import seqops
    >>> with seqops.use("numpy"):
    ...     m = seqops.causal_mask(3)
    >>> m.shape
    (3, 3)
    """
    backend = backend_named(name)
    token = _default_backend.set(name)
    try:
        yield backend
    finally:
        _default_backend.reset(token)


# -- implementation choice ------------------------------------------------------------


@dataclass
class Explanation:
    """What :func:`seqops.explain` found: the backend and each candidate's decision."""

    op: str
    backend: str
    chosen: str = ""
    decisions: list[tuple[str, str]] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"{self.op} on backend {self.backend!r}: runs {self.chosen!r}"]
        lines += [f"  {name}: {decision}" for name, decision in self.decisions]
        return "\n".join(lines)


class _Explained(Exception):  # noqa: N818 - control flow, never escapes explain()
    def __init__(self, explanation: Explanation) -> None:
        self.explanation = explanation


# Threads inside explain(). A plain global, not a ContextVar: torch.compile must trace call().
_EXPLAINING: set[int] = set()


def call(op: str, backend: Backend, /, *args: Any, **kwargs: Any) -> Any:
    """Run the first implementation of ``op`` on ``backend`` that accepts the call."""
    if _EXPLAINING and threading.get_ident() in _EXPLAINING:
        raise _Explained(_explain(op, backend, args, kwargs))
    for plugin, impl in registry.implementations(op, backend):
        if impl.decline is not None:
            try:
                reason = impl.decline(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - a broken plugin is quarantined
                registry.quarantine(plugin, f"decline of {impl.name!r} raised {exc!r}")
                return call(op, backend, *args, **kwargs)
            if reason is not None:
                continue
        return impl.fn(*args, **kwargs)
    msg = f"no implementation of {op!r} for backend {backend.name!r}"
    raise NotImplementedError(msg)


def _explain(op: str, backend: Backend, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Explanation:
    explanation = Explanation(op=op, backend=backend.name)
    for plugin, impl in registry.implementations(op, backend):
        reason = impl.decline(*args, **kwargs) if impl.decline is not None else None
        label = impl.name if impl.name == plugin else f"{impl.name} (plugin {plugin!r})"
        if reason is not None:
            explanation.decisions.append((label, f"declines: {reason}"))
            continue
        if not explanation.chosen:
            explanation.chosen = impl.name
            explanation.decisions.append((label, "accepts: runs"))
        else:
            explanation.decisions.append((label, "would accept, not reached"))
    return explanation


def explain(fn: Any, /, *args: Any, **kwargs: Any) -> Explanation:
    """Which implementation ``fn(*args, **kwargs)`` would run, and why the others would not.

    The arguments are validated exactly as in a real call (bad input raises the same
    error) but nothing is computed.

    Examples
    --------
    >>> import numpy as np, seqops
    >>> q = np.ones((2, 4, 8), dtype=np.float32)
    >>> print(seqops.explain(seqops.scaled_dot_product_attention, q, q, q))
    scaled_dot_product_attention on backend 'numpy': runs 'portable'
      portable-tiled (plugin 'portable'): declines: the (L, S) scores fit the memory budget
      portable: accepts: runs
    """
    if isinstance(fn, str):
        import seqops

        fn = getattr(seqops, fn)
    _EXPLAINING.add(threading.get_ident())
    try:
        fn(*args, **kwargs)
    except _Explained as done:
        return done.explanation
    finally:
        _EXPLAINING.discard(threading.get_ident())
    msg = f"{getattr(fn, '__name__', fn)!r} is not a dispatched seqops op"
    raise TypeError(msg)
