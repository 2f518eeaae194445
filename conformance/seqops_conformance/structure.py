"""Nested arguments and outputs: tuples (named too), lists and dicts of arrays and other values.

The cases pass such structures to the ops (LSTM states, ``MHAParams``, gradient lists) and
the ops return them; the checks walk them to convert inputs, to pull the floating inputs out
as the primals of a transformation (:func:`template`, :func:`fill`) and to match outputs
with references (:func:`flatten`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def map_structure(fn: Callable[[Any], Any], value: Any) -> Any:
    """``fn`` applied to each entry of a tuple, named tuple, list or dict (one level;
    ``fn`` recurses), the container rebuilt; any other value unchanged."""
    if isinstance(value, tuple):
        converted = [fn(v) for v in value]
        return type(value)(*converted) if hasattr(value, "_fields") else tuple(converted)
    if isinstance(value, list):
        return [fn(v) for v in value]
    if isinstance(value, dict):
        return {k: fn(v) for k, v in value.items()}
    return value


def flatten(value: Any) -> list[Any]:
    """The leaves of nested tuples, lists and dicts (dict values in order), ``None`` kept:
    how the outputs of an op and of its reference are matched one to one."""
    if isinstance(value, (tuple, list)):
        return [leaf for v in value for leaf in flatten(v)]
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in flatten(v)]
    return [value]


def fingerprint(value: Any) -> bytes:
    """Bytes identifying NumPy inputs, so equal (rounded) inputs share one reference."""
    if isinstance(value, np.ndarray):
        return value.dtype.str.encode() + repr(value.shape).encode() + value.tobytes()
    if isinstance(value, dict):
        return b"{" + b",".join(k.encode() + b":" + fingerprint(v) for k, v in value.items()) + b"}"
    if isinstance(value, (tuple, list)):
        return b"(" + b",".join(fingerprint(v) for v in value) + b")"
    return repr(value).encode()


class Leaf:
    """Placeholder for the ``index``-th floating input in a case's argument structure."""

    def __init__(self, index: int) -> None:
        self.index = index


def template(value: Any) -> tuple[Any, list[np.ndarray], list[str]]:
    """``value`` with each floating NumPy array replaced by a :class:`Leaf` (one per
    distinct array object: an array passed twice, as ``query`` and ``key``, is one input),
    the arrays in order, and their paths (``[0][3].w_q``)."""
    leaves: list[np.ndarray] = []
    paths: list[str] = []
    seen: dict[int, int] = {}

    def walk(v: Any, path: str) -> Any:
        if isinstance(v, np.ndarray) and v.dtype.kind == "f":
            if id(v) not in seen:
                seen[id(v)] = len(leaves)
                leaves.append(v)
                paths.append(path)
            return Leaf(seen[id(v)])
        if isinstance(v, tuple) and hasattr(v, "_fields"):
            return type(v)(*(walk(x, f"{path}.{name}") for name, x in zip(v._fields, v, strict=True)))
        if isinstance(v, (tuple, list)):
            items = [walk(x, f"{path}[{i}]") for i, x in enumerate(v)]
            return items if isinstance(v, list) else tuple(items)
        if isinstance(v, dict):
            return {k: walk(x, f"{path}[{k!r}]") for k, x in v.items()}
        return v

    return walk(value, ""), leaves, paths


def fill(structure: Any, values: Sequence[Any]) -> Any:
    """The ``structure`` of :func:`template` with each :class:`Leaf` replaced by its value."""
    if isinstance(structure, Leaf):
        return values[structure.index]
    return map_structure(lambda v: fill(v, values), structure)


def take(value: Any, index: int) -> Any:
    """Entry ``index`` of the leading axis of every array of nested outputs (``None`` kept):
    one batch element of a ``vmap``-ed result."""
    if value is None:
        return None
    if isinstance(value, (tuple, list, dict)):
        return map_structure(lambda v: take(v, index), value)
    return value[index, ...]
