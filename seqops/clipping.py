"""Gradient clipping over a container of arrays: by global norm and by value."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from seqops import ops
from seqops._dispatch import creation_backend, public, resolve
from seqops._lib import validate as check
from seqops._lib.typing import Array, TreeT
from seqops._lib.values import concrete_bool


@public(ops.clip_grad_norm)
def clip_grad_norm(
    grads: TreeT,
    /,
    max_norm: float,
    *,
    norm_type: float = 2.0,
    eps: float = 1e-6,
    error_if_nonfinite: bool = False,
) -> tuple[TreeT, Array]:
    """Scale gradients so that their global norm is at most ``max_norm`` (torch semantics).

    ``total_norm`` is the ``norm_type``-norm of the per-array norms (the norm of all
    entries as one vector), and every array is multiplied by
    ``min(max_norm / (total_norm + eps), 1)``, as ``torch.nn.utils.clip_grad_norm_``
    (whose ``eps`` is fixed at ``1e-6``). Unlike torch, nothing is modified in place.

    Parameters
    ----------
    grads : list, tuple or dict of arrays, nested or not (a pytree)
        ``None`` entries are kept as ``None``. All arrays of one library (and device);
        dtypes may differ.
    max_norm : float >= 0
        The largest global norm kept: above it, every array is scaled down.
    norm_type : float > 0 or ``math.inf``
        ``inf`` is the largest absolute entry.
    eps : float >= 0
        Added to ``total_norm`` in the scale factor (torch's fixed ``1e-6``).
    error_if_nonfinite : bool
        Raise ``RuntimeError`` if ``total_norm`` is NaN or infinite. This reads the value,
        so it is not possible under ``jax.jit`` or ``torch.compile``: there it raises a
        ``RuntimeError`` saying so (check ``isfinite(total_norm)`` yourself instead).
        Without it, a non-finite norm gives NaN or zero gradients, as torch.

    Returns
    -------
    clipped : same container type as ``grads``
        New arrays, each in its own dtype (half precision scaled in float32).
    total_norm : 0-d array
        Library and device of the gradients; their dtype (if they share one, else the
        widest compute dtype). With no array at all (empty, or only ``None``) it is 0.0 as
        a 0-d array of the default backend (NumPy unless :func:`seqops.use` says otherwise)
        in its default float dtype, as torch returns ``tensor(0.)``.

    Examples
    --------
    >>> import numpy as np, seqops
    >>> grads = {"w": np.array([3.0, 4.0]), "b": None}
    >>> clipped, norm = seqops.clip_grad_norm(grads, 1.0)
    >>> float(norm), np.round(clipped["w"], 6).tolist(), clipped["b"]
    (5.0, [0.6, 0.8], None)
    """
    arrays = _entries(grads)
    max_norm = check.number("max_norm", max_norm)
    if not max_norm >= 0.0:
        msg = f"max_norm must be >= 0; got {max_norm}"
        raise ValueError(msg)
    p = check.number("norm_type", norm_type)
    if not p > 0.0:
        msg = f"norm_type must be > 0 or inf; got {norm_type}"
        raise ValueError(msg)
    eps = check.number("eps", eps, minimum=0.0)
    present = [a for a in arrays if a is not None]
    if not present:
        backend = creation_backend(None, None)
        zero = backend.namespace().asarray(
            0.0, dtype=backend.default_float_dtype(), device=backend.default_device()
        )
        return _rebuild(grads, arrays), zero
    backend = _backend_of(grads, arrays, present)
    clipped, total = ops.clip_grad_norm.dispatch(backend, present, max_norm=max_norm, norm_type=p, eps=eps)
    if check.flag("error_if_nonfinite", error_if_nonfinite):
        finite = concrete_bool(backend, backend.namespace().all(backend.namespace().isfinite(total)))
        if finite is None:
            msg = (
                "error_if_nonfinite=True reads the total norm, which is impossible while tracing "
                "(jax.jit, torch.compile); pass error_if_nonfinite=False and test isfinite(total_norm)"
            )
            raise RuntimeError(msg)
        if not finite:
            msg = (
                f"the total norm of order {p} of the gradients is non-finite ({float(total)}), so "
                "they cannot be clipped; pass error_if_nonfinite=False to scale them anyway"
            )
            raise RuntimeError(msg)
    return _rebuild(grads, _refill(arrays, clipped)), total


@public(ops.clip_grad_value)
def clip_grad_value(grads: TreeT, /, clip_value: float) -> TreeT:
    """Clamp every gradient entry to ``[-clip_value, clip_value]`` (``clip_grad_value_``, no mutation).

    Parameters
    ----------
    grads : list, tuple or dict of arrays, nested or not (a pytree)
        ``None`` entries are kept; all arrays of one library.
    clip_value : float >= 0
        The largest absolute value kept.

    Returns
    -------
    clipped : same container type as ``grads``, arrays in their own dtypes

    Examples
    --------
    >>> import numpy as np, seqops
    >>> seqops.clip_grad_value([np.array([-3.0, 0.5, 2.0]), None], 1.0)[0].tolist()
    [-1.0, 0.5, 1.0]
    """
    arrays = _entries(grads)
    clip_value = check.number("clip_value", clip_value)
    if not clip_value >= 0.0:
        msg = f"clip_value must be >= 0; got {clip_value}"
        raise ValueError(msg)
    present = [a for a in arrays if a is not None]
    if not present:
        return _rebuild(grads, arrays)
    backend = _backend_of(grads, arrays, present)
    clipped = ops.clip_grad_value.dispatch(backend, present, clip_value=clip_value)
    return _rebuild(grads, _refill(arrays, clipped))


def _backend_of(grads: Any, arrays: list[Any], present: list[Any]) -> Any:
    """The one backend of the ``present`` leaves, all real floating; the errors name the leaf
    (``grads['layer'][0]``: the names are built only then, a call's common case never needs them)."""
    try:
        backend = resolve(*present, required=len(present))
        if all(check.is_floating(backend, a.dtype) for a in present):
            return backend
    except TypeError:
        pass
    names = [name for name, a in zip(_names(grads), arrays, strict=True) if a is not None]
    backend = resolve(*present, names=tuple(names), required=len(present))  # raises, naming it
    check.require_floating(backend.namespace(), **dict(zip(names, present, strict=True)))
    return backend  # not reached: one of the two raised


def _refill(arrays: list[Any], clipped: list[Any]) -> list[Any]:
    """``arrays`` with its non-``None`` entries replaced, in order, by ``clipped``."""
    done = iter(clipped)
    return [None if a is None else next(done) for a in arrays]


def _entries(grads: Any) -> list[Any]:
    """The leaves of a (nested) list, tuple or dict, in order: a pytree of arrays, as JAX and
    Flax hold parameters (names for messages: :func:`_names`)."""
    if not isinstance(grads, (dict, list, tuple)):
        msg = f"grads must be a list, tuple or dict of arrays; got {type(grads).__name__}"
        raise TypeError(msg)
    values = grads.values() if isinstance(grads, dict) else grads
    if not any(isinstance(v, (dict, list, tuple)) for v in values):  # flat: the common case
        return list(values)
    return [leaf for v in values for leaf in (_entries(v) if isinstance(v, (dict, list, tuple)) else [v])]


def _names(grads: Any, name: str = "grads") -> list[str]:
    """The names of :func:`_entries`' leaves, for messages (``grads['layer'][0]``)."""
    if isinstance(grads, dict):
        items: Any = ((f"{name}[{key!r}]", value) for key, value in grads.items())
    else:
        items = ((f"{name}[{i}]", value) for i, value in enumerate(grads))
    return [
        n for label, v in items for n in (_names(v, label) if isinstance(v, (dict, list, tuple)) else [label])
    ]


def _rebuild(grads: Any, values: list[Any]) -> Any:
    """New containers of the types of ``grads`` (nested as it is) holding ``values``, its
    leaves in :func:`_entries`' order (the input is untouched)."""
    return _build(grads, iter(values))


def _build(tree: Any, leaves: Iterator[Any]) -> Any:
    # A module function, not a closure that calls itself: such a closure is a reference cycle
    # (the function and its cell), which would keep ``leaves``, and so every clipped array,
    # alive until the cyclic garbage collector runs, long after the caller dropped them.
    if type(tree) is dict:  # the plain containers without copy.copy, which Dynamo cannot trace
        return {key: _build(value, leaves) for key, value in tree.items()}
    if type(tree) is list:
        return [_build(value, leaves) for value in tree]
    if isinstance(tree, dict):
        out = copy.copy(tree)  # keeps dict subclasses (OrderedDict, defaultdict's factory)
        for key in tree:
            out[key] = _build(tree[key], leaves)
        return out
    if isinstance(tree, tuple):
        items = [_build(value, leaves) for value in tree]
        if hasattr(tree, "_fields"):  # a NamedTuple
            return type(tree)._make(items)  # type: ignore[attr-defined]
        return type(tree)(items)
    if isinstance(tree, list):
        out_list = copy.copy(tree)
        out_list[:] = [_build(value, leaves) for value in tree]
        return out_list
    return next(leaves)
