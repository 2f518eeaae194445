"""Input checks of the public layer, with messages that name the arguments and shapes.

All checks look only at shapes and dtypes, which are static under ``jax.jit`` and
``torch.compile``, so they never read array values.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import TYPE_CHECKING

from seqops._lib.typing import Array, DType, Namespace

if TYPE_CHECKING:
    from seqops.contract import Backend


def dtype_name(dtype: DType) -> str:
    """``float32`` for NumPy, torch, JAX and array-api-strict dtypes alike."""
    return str(dtype).rsplit(".", 1)[-1].removeprefix("dtype('").removesuffix("')")


def shape_of(x: Array) -> tuple[int, ...]:
    return tuple(x.shape)


def broadcast(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    """The broadcast of ``shapes`` by the standard's rules (``ValueError`` if none exists).

    Shapes are Python tuples, so no namespace is needed (``xpx.broadcast_shapes`` is
    deprecated in favour of ``xp.broadcast_shapes``, which older namespaces lack).
    """
    if shapes and shapes.count(shapes[0]) == len(shapes):  # one shape, the common case: no sets
        return tuple(shapes[0])
    ndim = max([0, *map(len, shapes)])  # (Dynamo cannot trace max(generator, default=))
    result = []
    for sizes in zip(*((1,) * (ndim - len(s)) + tuple(s) for s in shapes), strict=True):
        wide = {n for n in sizes if n != 1}
        if len(wide) > 1:
            msg = f"shapes {shapes} do not broadcast"
            raise ValueError(msg)
        result.append(wide.pop() if wide else 1)
    return tuple(result)


# kind -> type(dtype) -> {dtype: bool}. A dtype's kind is the same in every library (float32
# is floating in all). One table per dtype type: torch.compile traces this lookup, and Dynamo
# cannot compare a torch dtype with a NumPy one as keys of one dict.
_KIND_CACHE: dict[str, dict[type, dict[DType, bool]]] = {"real floating": {}, "bool": {}}
_FLOATING, _BOOL = _KIND_CACHE["real floating"], _KIND_CACHE["bool"]
_NONE: dict[DType, bool] = {}  # the table of a dtype type not seen yet (never written)


def is_floating(backend: Backend, dtype: DType) -> bool:
    """``isdtype(dtype, "real floating")`` in ``backend``'s namespace, cached (a hot path)."""
    known = _FLOATING.get(type(dtype), _NONE).get(dtype)
    return _learn_kind(backend, dtype, "real floating") if known is None else known


def is_bool(backend: Backend, dtype: DType) -> bool:
    """``isdtype(dtype, "bool")`` in ``backend``'s namespace, cached (a hot path)."""
    known = _BOOL.get(type(dtype), _NONE).get(dtype)
    return _learn_kind(backend, dtype, "bool") if known is None else known


def _learn_kind(backend: Backend, dtype: DType, kind: str) -> bool:
    return _is_kind(backend.namespace(), dtype, kind)


def _is_kind(xp: Namespace, dtype: DType, kind: str) -> bool:
    """``xp.isdtype(dtype, kind)``, cached like :func:`is_floating` (dict lookups on a hit)."""
    known = _KIND_CACHE[kind].get(type(dtype), {}).get(dtype)
    if known is None:
        known = bool(xp.isdtype(dtype, kind))
        _KIND_CACHE[kind].setdefault(type(dtype), {})[dtype] = known
    return known


def require_floating(xp: Namespace, **arrays: Array | None) -> None:
    for name, x in arrays.items():
        if x is not None and not _is_kind(xp, x.dtype, "real floating"):
            msg = f"`{name}` must be a real floating array; got dtype {dtype_name(x.dtype)}"
            raise TypeError(msg)


def require_same_dtype(**arrays: Array | None) -> DType:
    """Check every given array has one dtype (no silent promotion) and return it."""
    given = {name: x for name, x in arrays.items() if x is not None}
    dtypes = {name: x.dtype for name, x in given.items()}
    first = next(iter(dtypes.values()))
    if any(d != first for d in dtypes.values()):
        listed = ", ".join(f"{name} {dtype_name(d)}" for name, d in dtypes.items())
        msg = f"{_names(list(given))} must share one dtype; got {listed}"
        raise TypeError(msg)
    return first


def require_bool(xp: Namespace, name: str, x: Array | None, meaning: str) -> None:
    if x is not None and not _is_kind(xp, x.dtype, "bool"):
        msg = f"`{name}` must be a boolean array ({meaning}); got dtype {dtype_name(x.dtype)}"
        raise TypeError(msg)


def require_integer(xp: Namespace, name: str, x: Array) -> None:
    if not xp.isdtype(x.dtype, "integral"):
        msg = f"`{name}` must be an integer array; got dtype {dtype_name(x.dtype)}"
        raise TypeError(msg)


def require_ndim(name: str, x: Array, min_ndim: int, layout: str) -> None:
    if x.ndim < min_ndim:
        msg = f"`{name}` must have at least {min_ndim} dimensions {layout}; got shape {shape_of(x)}"
        raise ValueError(msg)


def require_shape(name: str, x: Array | None, shape: tuple[int, ...]) -> None:
    if x is not None and shape_of(x) != shape:
        msg = f"`{name}` must have shape {shape}; got {shape_of(x)}"
        raise ValueError(msg)


def broadcast_to_target(
    name: str, x: Array | None, target: tuple[int, ...], layout: str, *, last: int | None = None
) -> None:
    """Check ``x`` broadcasts to ``target`` without enlarging it; with ``last``, to ``target``
    with its last size replaced by ``last`` (attention's ``(..., L, S)`` from the queries'
    ``(..., L, E)`` shape: slicing and rebuilding a torch.Size costs ~0.2 µs).

    A hot path (every attention mask): the valid call is recognised by comparing sizes in
    place, ~0.2 µs on a torch mask against ~3 µs for :func:`broadcast` (sets, a tuple per
    axis). No cache: nothing to hash, so symbolic sizes (``jax.export``, Dynamo's dynamic
    shapes) are compared exactly as :func:`broadcast` compares them, and nothing seen
    before can accept another call. Anything else takes the full check, which raises.
    """
    if x is None:
        return
    shape = x.shape  # on torch a torch.Size: indexed, never sliced (slicing builds another)
    if last is None and shape == target:
        return
    n = len(target)
    i = n - len(shape)
    if i >= 0:
        n -= 1  # the position of ``last``
        for size in shape:
            if size != 1 and size != (target[i] if last is None or i < n else last):
                break
            i += 1
        else:
            return
    if last is not None:
        target = (*target[:-1], last)
    try:
        result = broadcast(shape_of(x), target)
    except ValueError:
        result = None
    if result != target:
        msg = f"`{name}` of shape {shape_of(x)} does not broadcast to {layout} = {target}"
        raise ValueError(msg)


def broadcast_shapes(named: dict[str, tuple[int, ...]], what: str | None = None) -> tuple[int, ...]:
    """Broadcast the given shapes, or raise a ``ValueError`` naming each of them (``what``
    they are; by default "the shapes of" their names)."""
    try:
        return broadcast(*named.values())
    except ValueError:
        what = f"the shapes of {', '.join(named)}" if what is None else what
        listed = ", ".join(f"{name} {shape}" for name, shape in named.items())
        msg = f"{what} do not broadcast: {listed}"
        raise ValueError(msg) from None


def require_choice(name: str, value: object, choices: Sequence[object]) -> None:
    if value not in choices:
        msg = f"`{name}` must be one of {', '.join(map(repr, choices))}; got {value!r}"
        raise ValueError(msg)


def _names(names: list[str]) -> str:
    quoted = [f"`{n}`" for n in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


# -- scalar options: one set of rules (a bool is neither an int nor a number) ------------------
def integer(name: str, value: object, *, minimum: int | None = 0) -> int:
    """``value`` as an ``int`` (anything with ``__index__`` but a bool), ``>= minimum``
    unless ``minimum`` is ``None``; ``TypeError``/``ValueError`` naming ``name`` otherwise."""
    if isinstance(value, bool):
        msg = f"{name} must be an integer; got bool"
        raise TypeError(msg)
    try:
        n = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        msg = f"{name} must be an integer; got {type(value).__name__}"
        raise TypeError(msg) from None
    if minimum is not None and n < minimum:
        msg = (
            f"{name} must be non-negative; got {n}"
            if minimum == 0
            else f"{name} must be >= {minimum}; got {n}"
        )
        raise ValueError(msg)
    return n


def number(name: str, value: object, *, minimum: float | None = None, positive: bool = False) -> float:
    """``value`` (a Python int or float, not a bool) as a ``float``, ``>= minimum`` or ``> 0``
    if asked; ``TypeError``/``ValueError`` naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        msg = f"{name} must be a Python number; got {type(value).__name__}"
        raise TypeError(msg)
    x = float(value)
    if positive and not x > 0.0:
        msg = f"{name} must be > 0; got {value}"
        raise ValueError(msg)
    if minimum is not None and not x >= minimum:
        msg = f"{name} must be >= {minimum:g}; got {value}"
        raise ValueError(msg)
    return x


def flag(name: str, value: object) -> bool:
    """``value`` if it is a ``bool``; ``TypeError`` naming ``name`` otherwise (no truthiness)."""
    if value is True or value is False:
        return value  # type: ignore[return-value]
    msg = f"{name} must be True or False; got {type(value).__name__}"
    raise TypeError(msg)


def rng(value: object) -> None:
    """``TypeError`` unless ``value`` is ``None``, an integer seed or a library's generator or
    key (an object of a type outside Python's builtins; the backend checks which, when it draws)."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return
    if isinstance(value, bool) or type(value).__module__ == "builtins":
        msg = f"rng must be an integer seed or the backend's generator or key; got {type(value).__name__}"
        raise TypeError(msg)
