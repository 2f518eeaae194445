"""Backend resolution and implementation choice: the hot path of every public call."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import linecache
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from seqops._lib.placement import helper_device
from seqops._lib.typing import Array, Device, DType
from seqops._lib.validate import dtype_name
from seqops._op import DECLARED, Op, as_op
from seqops._plugins import registry
from seqops.contract import Backend, Implementation

F = TypeVar("F", bound=Callable[..., Any])

_BACKEND_OF_TYPE = registry.backend_of_type_cache  # cleared in place by the registry

_default_backend: contextvars.ContextVar[str] = contextvars.ContextVar(
    "seqops_default_backend", default="numpy"
)


def resolve(*arrays: object, names: tuple[str, ...] = (), required: int | tuple[int, ...] = 1) -> Backend:
    """The backend of the arrays among ``arrays``.

    The arguments ``required`` counts first (or whose indices it lists) must be arrays; the
    others may also be ``None`` (optional arguments not given). A number or a list is never
    taken for an array. ``names`` labels the
    arguments in error messages. Raises ``TypeError`` naming the argument when a required one
    is ``None``, when an argument is a number or a list, when an array belongs to no backend, or when
    arrays of two libraries are mixed (unless one backend accepts the other's arrays,
    :meth:`seqops.Backend.accepts`: then the accepting backend is the call's).
    """
    # Hot path: every array given is of one already-seen type (the cache is by type), and no
    # required one is None (a required None of a cached type's call reaches the full check).
    # One loop, requiredness asked of the Nones only: ~0.1 µs less on attention's five.
    kind = type(arrays[0]) if arrays else type(None)
    backend = _BACKEND_OF_TYPE.get(kind)
    if backend is not None:
        i = 0
        for x in arrays:
            if type(x) is not kind and (
                x is not None or (i < required if isinstance(required, int) else i in required)
            ):
                break
            i += 1
        else:
            return backend if not backend.lazy else _known_sizes(backend, arrays, names)
    found: Backend | None = None
    found_at = 0
    needed = range(required) if isinstance(required, int) else required
    for i, x in enumerate(arrays):
        if x is None and i not in needed:
            continue
        if x is None or isinstance(x, (bool, int, float, complex, list, tuple)):
            raise TypeError(_not_an_array(names, i, x))
        backend = registry.backend_of(x)
        if backend is None and registry.backend_of(getattr(x, "value", None)) is not None:
            raise _Variable  # a Keras / Flax NNX variable: public() calls again with its .value
        if backend is None:
            known = ", ".join(b.name for b in registry.backends())
            msg = (
                f"{_label(names, i)} is a {type(x).__module__}.{type(x).__qualname__}, which no "
                f"seqops backend handles (registered backends: {known})"
            )
            raise TypeError(msg)
        if found is None or (backend is not found and backend.accepts(arrays[found_at])):
            found, found_at = backend, i  # (Dask takes NumPy arrays beside its own: Backend.accepts)
        elif backend is not found and not found.accepts(x):
            msg = (
                f"arrays from different libraries in one call: {_label(names, found_at)} is "
                f"{found.library} ({type(arrays[found_at]).__qualname__}) but {_label(names, i)} "
                f"is {backend.library} ({type(x).__qualname__}); convert them to one library first"
            )
            raise TypeError(msg)
    if found is None:
        msg = "expected at least one array argument"
        raise TypeError(msg)
    return found if not found.lazy else _known_sizes(found, arrays, names)


def _known_sizes(backend: Backend, arrays: tuple[object, ...], names: tuple[str, ...]) -> Backend:
    """``backend``, after :meth:`Backend.check_sizes` of each of ``arrays`` (a lazy backend's
    arrays may not know their sizes: Dask's after boolean indexing)."""
    for i, x in enumerate(arrays):
        if x is not None:
            backend.check_sizes(x, _label(names, i))
    return backend


def _not_an_array(names: tuple[str, ...], i: int, x: object) -> str:
    libraries = ", ".join(sorted({b.library for b in registry.backends()}))
    got = "None" if x is None else f"a {type(x).__qualname__} ({x!r:.40})"
    hint = " (convert it with your library's asarray)" if isinstance(x, (list, tuple)) else ""
    return f"{_label(names, i)} must be an array of a seqops backend's library ({libraries}); got {got}{hint}"


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
    """``device`` if given (checked by making a 0-d array there: ``TypeError`` naming it if the
    backend's library refuses it), else the device of ``like``, else the backend's default."""
    if device is None:
        return helper_device(like) if like is not None else backend.default_device()
    try:
        backend.namespace().asarray(0, device=device)
    except Exception as refused:  # noqa: BLE001 - each library refuses a bad device its own way
        msg = f"device must be a device of backend {backend.name!r}; got {device!r} ({refused})"
        raise TypeError(msg) from None
    return device


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
    try:
        floating = xp.isdtype(dtype, "real floating")
    except (TypeError, ValueError, AttributeError):  # not a dtype of this library at all
        msg = f"dtype must be a real floating dtype of backend {backend.name!r}; got {dtype!r}"
        raise TypeError(msg) from None
    if not floating:
        msg = f"dtype must be a real floating dtype; got {dtype_name(dtype)}"
        raise TypeError(msg)
    return dtype


@contextlib.contextmanager
def use(name: str) -> Iterator[Backend]:
    """Make ``name`` the default backend of creation functions inside a ``with`` block.

    The creation functions (:func:`seqops.causal_mask`, the encodings and masks) called
    without ``like=`` or ``backend=`` build their arrays with it; the previous default is
    restored on leaving the block (per thread and async context).

    Parameters
    ----------
    name : str
        A registered backend's name (``"numpy"``, ``"torch"``, ``"jax"``, ...).

    Yields
    ------
    Backend
        The backend called ``name``.

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


Dispatched = tuple[Op, Backend, tuple[Any, ...], dict[str, Any]]
"""What a public function hands its op's dispatcher: op, backend, validated args and kwargs."""
_Handler = Callable[[Op, Backend, tuple[Any, ...], dict[str, Any]], Any]


class _Intercepted(Exception):  # noqa: N818 - control flow, never escapes _dispatched()
    def __init__(self, dispatched: Dispatched) -> None:
        self.dispatched = dispatched


# Threads whose calls are intercepted (explain(), candidates()), with what runs instead.
# A plain global, not a ContextVar: torch.compile must trace the dispatchers.
_INTERCEPTED: dict[int, _Handler] = {}


# The dispatch loop, written once and compiled per op from its declared contract, so that
# every argument is passed by name at each hop (building and unpacking a ``**kwargs`` dict
# costs ~0.2 µs a hop for attention's eight keywords). Its own names start with ``_``
# (contract parameters may not). Built-in declines raise only on a bug, and the registry
# wraps a third party's so that one raising quarantines it and declines: no try here.
_LOOP = """\
def {function}(_backend, {parameters}):
    if _INTERCEPTED and _get_ident() in _INTERCEPTED:
        return _INTERCEPTED[_get_ident()](_op, _backend, ({positional}), {{{keywords}}})
    for _impl in _cache.get(_backend.name) or _registry.implementations(_op, _backend):
        if _impl.decline is None or _impl.decline(_backend, {forward}) is None:
            return _impl.fn(_backend, {forward})
    raise NotImplementedError(f"no implementation of {{_op.name!r}} for backend {{_backend.name!r}}")
"""


def _compiled(source: str, filename: str, namespace: dict[str, Any], name: str) -> Any:
    """The function ``name`` that ``source`` (one of our templates) defines in ``namespace``,
    its source in ``linecache`` under ``filename`` so that tracebacks show its lines."""
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(compile(source, filename, "exec"), namespace)  # noqa: S102 - our own template
    return namespace[name]


def declare(stub: Callable[..., Any], *, parts: tuple[Op, ...] = ()) -> Op:
    """Declare the op whose contract is ``stub``'s signature and docstring, with its
    dispatcher compiled from that signature (see :class:`seqops._op.Op`)."""
    op = Op(stub, parts)
    if op.name in DECLARED:
        msg = f"op {op.name!r} is declared twice"
        raise ValueError(msg)
    for name in (*op.positional, *op.keywords):
        if name.startswith("_"):
            msg = f"op {op.name!r}: parameter {name!r} may not start with '_'"
            raise ValueError(msg)
    function = f"dispatch_{op.name}"
    parameters = [*op.positional, "/"] if op.positional else []
    parameters += ["*", *op.keywords] if op.keywords else []
    source = _LOOP.format(
        function=function,
        parameters=", ".join(parameters) or "/",
        positional="".join(f"{name}, " for name in op.positional),
        keywords=", ".join(f"{name!r}: {name}" for name in op.keywords),
        forward=", ".join((*op.positional, *(f"{name}={name}" for name in op.keywords))),
    )
    namespace: dict[str, Any] = {
        "_INTERCEPTED": _INTERCEPTED,
        "_get_ident": threading.get_ident,
        "_cache": op.cache,  # cleared and refilled in place by the registry
        "_registry": registry,
        "_op": op,
    }
    dispatch = _compiled(source, f"<seqops dispatch {op.name}>", namespace, function)
    dispatch.__module__ = __name__
    dispatch.__qualname__ = function
    dispatch.__doc__ = f"Dispatch {op.name!r}: ``{function}{op.signature}``."
    op.dispatch = dispatch
    DECLARED[op.name] = op
    return op


def declared_ops() -> tuple[Op, ...]:
    """Every declared op, in declaration order (see :mod:`seqops.ops`).

    Returns
    -------
    tuple of Op
        Each op's ``name``, contract ``signature``, ``doc``, ``parts`` and public
        ``function``.

    Examples
    --------
    >>> import seqops
    >>> seqops.ops.scaled_dot_product_attention in seqops.declared_ops()
    True
    """
    return tuple(DECLARED.values())


def implementations(op: Op | str, backend: Backend | str, /) -> tuple[Implementation, ...]:
    """The implementations offered for ``op`` on ``backend`` (a :class:`seqops.Backend` or
    its name), in the order a call asks them; each names its plugin.

    Parameters
    ----------
    op : Op or str
        A declared op (``seqops.ops.softmax``) or its name.
    backend : Backend or str
        A registered backend or its name.

    Returns
    -------
    tuple of Implementation
        In asking order; the built-in ``portable`` last.

    Examples
    --------
    >>> import seqops
    >>> [(i.name, i.plugin) for i in seqops.implementations("softmax", "numpy")]
    [('numpy-softmax', 'numpy-fast'), ('portable', 'portable')]
    """
    chosen = backend if isinstance(backend, Backend) else backend_named(backend)
    return registry.implementations(as_op(op), chosen)


def _explain(op: Op, backend: Backend, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Explanation:
    explanation = Explanation(op=op.name, backend=backend.name)
    for impl in registry.implementations(op, backend):
        reason = impl.decline(backend, *args, **kwargs) if impl.decline is not None else None
        label = impl.name if impl.name == impl.plugin else f"{impl.name} (plugin {impl.plugin!r})"
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

    ``fn`` is a public seqops function (or its name). The arguments are validated exactly
    as in a real call (bad input raises the same error) but nothing is computed. For a
    composite (``multi_head_attention``), this is the composite's own choice; its parts are
    chosen when it runs.

    Parameters
    ----------
    fn : callable or str
        A public seqops function, a declared op or an op's name.
    *args : object
        The positional arguments of the call.
    **kwargs : object
        The keyword arguments of the call.

    Returns
    -------
    Explanation
        The op, the backend, the implementation ``chosen`` and each implementation's
        decision; printed, the choice and then one line per implementation.

    Examples
    --------
    >>> import numpy as np, seqops
    >>> q = np.ones((2, 4, 8), dtype=np.float32)
    >>> print(seqops.explain(seqops.scaled_dot_product_attention, q, q, q))
    scaled_dot_product_attention on backend 'numpy': runs 'numpy-attention'
      numpy-attention (plugin 'numpy-fast'): accepts: runs
      portable-tiled (plugin 'portable'): declines: the (L, S) scores fit the memory budget
      portable: would accept, not reached
    """
    return _explain(*_dispatched(fn, args, kwargs))


def candidates(fn: Any, /, *args: Any, **kwargs: Any) -> list[tuple[str, Callable[[], Any]]]:
    """Every implementation that accepts ``fn(*args, **kwargs)``, in asking order (the
    first is the one a call runs), each with a callable making the call with it.

    The arguments are validated as in a real call (bad input raises the same error) and
    each candidate's ``decline`` is asked with the validated arguments; nothing is
    computed until a returned callable is called. That callable runs ``fn`` again, the
    dispatch of its op going to that implementation whatever precedes it (other ops it
    dispatches, such as a composite's parts, are chosen as usual). For checking every fast
    path against the others (the conformance suite).

    Parameters
    ----------
    fn : callable or str
        A public seqops function, a declared op or an op's name.
    *args : object
        The positional arguments of the call.
    **kwargs : object
        The keyword arguments of the call.

    Returns
    -------
    list of (str, callable)
        Each accepting implementation's name and a callable without arguments that makes
        the call with it.

    Examples
    --------
    >>> import numpy as np, seqops
    >>> q = np.ones((2, 4, 8), dtype=np.float32)
    >>> [name for name, _ in seqops.candidates(seqops.scaled_dot_product_attention, q, q, q)]
    ['numpy-attention', 'portable']
    """
    op, backend, v_args, v_kwargs = _dispatched(fn, args, kwargs)
    found: list[tuple[str, Callable[[], Any]]] = []
    for impl in registry.implementations(op, backend):
        if impl.decline is None or impl.decline(backend, *v_args, **v_kwargs) is None:
            found.append((impl.name, _forcing(fn, args, kwargs, op, impl.fn)))
    return found


def _forcing(
    fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any], op: Op, impl: Callable[..., Any]
) -> Callable[[], Any]:
    """A callable running ``fn(*args, **kwargs)`` with every dispatch of ``op`` going to
    ``impl``."""

    def handler(op_: Op, backend: Backend, a: tuple[Any, ...], kw: dict[str, Any]) -> Any:
        if op_ is op:
            return impl(backend, *a, **kw)
        tid = threading.get_ident()
        del _INTERCEPTED[tid]
        try:
            return op_.dispatch(backend, *a, **kw)
        finally:
            _INTERCEPTED[tid] = handler

    def run() -> Any:
        return _intercepting(handler, _resolve(fn), args, kwargs)

    return run


def _resolve(fn: Any) -> Any:
    """The public function of ``fn``: itself, or that of a declared op or op name."""
    if isinstance(fn, (str, Op)):
        return as_op(fn).function
    return fn


class _Variable(TypeError):
    """Raised by :func:`resolve` for a variable object holding a backend's array as ``.value``
    (``keras.Variable``, Flax NNX's ``Param``): the public function is called once more with
    every such object replaced by its ``.value``. Never escapes a public function."""


def _values(x: Any) -> Any:
    """``x`` with every variable (an object whose ``.value`` a backend owns) replaced by its
    ``.value``, inside tuples (named too), lists and dicts as well."""
    if isinstance(x, (list, tuple)):
        items = [_values(v) for v in x]
        return type(x)._make(items) if hasattr(x, "_fields") else type(x)(items)  # type: ignore[union-attr]
    if isinstance(x, dict):
        return {k: _values(v) for k, v in x.items()}
    if x is None or registry.backend_of(x) is not None:
        return x
    inner = getattr(x, "value", None)
    return inner if registry.backend_of(inner) is not None else x


# The public wrapper, compiled per function from its own signature as the dispatcher is:
# ``*args, **kwargs`` forwarding builds and unpacks a dict (~0.1 µs with a mask given).
_PUBLIC = """\
def {function}({parameters}):
    try:
        return _fn({forward})
    except _Variable:
        return _fn(*_values(({positional})), **_values({{{keywords}}}))
"""


def public(op: Op) -> Callable[[F], F]:
    """Make the decorated function ``op``'s public function (``op.function``), the one
    :func:`explain`, :func:`candidates` and the conformance suite call. Arrays held by
    variables (``keras.Variable``, Flax NNX ``Param``: an object whose ``.value`` is a backend's
    array) are accepted as they are: the first call's backend resolution raises on one, and the
    function runs again on the ``.value`` of each (no cost for plain arrays)."""

    def mark(fn: F) -> F:
        params = list(inspect.signature(fn).parameters.values())
        namespace: dict[str, Any] = {"_fn": fn, "_Variable": _Variable, "_values": _values}
        parameters, positional, keywords, forward = [], [], [], []
        for i, p in enumerate(params):
            if p.kind is p.VAR_POSITIONAL or p.kind is p.VAR_KEYWORD:
                msg = f"public function {fn.__name__!r}: no *args or **kwargs (its op's contract names each)"
                raise TypeError(msg)
            if p.kind is p.KEYWORD_ONLY and (not i or params[i - 1].kind is not p.KEYWORD_ONLY):
                parameters.append("*")
            default = ""
            if p.default is not p.empty:
                namespace[f"_default_{p.name}"] = p.default
                default = f"=_default_{p.name}"
            parameters.append(p.name + default)
            if p.kind is p.POSITIONAL_ONLY and (i + 1 == len(params) or params[i + 1].kind is not p.kind):
                parameters.append("/")
            if p.kind is p.KEYWORD_ONLY:
                keywords.append(f"{p.name!r}: {p.name}")
                forward.append(f"{p.name}={p.name}")
            else:
                positional.append(f"{p.name}, ")
                forward.append(p.name)
        source = _PUBLIC.format(
            function=fn.__name__,
            parameters=", ".join(parameters),
            positional="".join(positional),
            keywords=", ".join(keywords),
            forward=", ".join(forward),
        )
        wrapper = _compiled(source, f"<seqops public {fn.__name__}>", namespace, fn.__name__)
        call = functools.wraps(fn)(wrapper)
        op.function = call
        return call  # type: ignore[return-value]

    return mark


def _intercepting(handler: _Handler, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``fn(*args, **kwargs)`` with this thread's dispatches going to ``handler``."""
    tid = threading.get_ident()
    previous = _INTERCEPTED.get(tid)
    _INTERCEPTED[tid] = handler
    try:
        return fn(*args, **kwargs)
    finally:
        if previous is None:
            _INTERCEPTED.pop(tid, None)
        else:
            _INTERCEPTED[tid] = previous


def _stop(op: Op, backend: Backend, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    raise _Intercepted((op, backend, args, kwargs))


def _dispatched(fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Dispatched:
    """The op, backend and validated arguments ``fn(*args, **kwargs)`` dispatches with,
    validating as a real call does and computing nothing."""
    fn = _resolve(fn)
    try:
        _intercepting(_stop, fn, args, kwargs)
    except _Intercepted as done:
        return done.dispatched
    msg = f"{getattr(fn, '__name__', fn)!r} is not a dispatched seqops op"
    raise TypeError(msg)
