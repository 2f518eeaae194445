"""Check mode: every fast-path call compared with the portable path (``SEQOPS_CHECK_PLUGINS=1``).

For backend authors. When check mode is on, the registry replaces the ``fn`` of every
implementation that a plugin other than the built-in ``portable`` one offers by
:func:`checked`'s wrapper when it builds the tables (at ``import seqops``, or when
:func:`seqops.set_check_plugins` changes the mode): the dispatchers are untouched, so check
mode off costs nothing. The wrapper runs the fast path, then the built-in ``portable``
implementation of the op (for attention the plain portable one, not ``portable-tiled``) on
the same arguments, converts both outputs to NumPy with the backend's ``to_numpy`` (nested
tuples, named tuples, lists and dicts are walked) and compares each array with the
conformance metric and tolerance of its dtype (``seqops_conformance.tolerances``, the one
table; integer and boolean outputs must be equal). A disagreement, or outputs of another
structure, shape or dtype, raises :class:`PluginDisagreement` naming the op, the
implementation, its plugin, the backend, the dtype, the error and the tolerance.

Not compared:

- calls that draw random numbers: an op with an ``rng`` given (``reparameterize``,
  attention with ``dropout_p > 0``, ``decode`` with ``strategy="sample"``), since two
  implementations need not draw alike. ``sample_logits`` is checked without the portable
  path: its tokens must be integer ids of the logits' leading shape, in ``[0, V)``, never at
  a logit of ``-inf``;
- traced calls (``torch.compile``, ``jax.jit``/``vmap``, ``torch.func`` transforms), whose
  values cannot be read: the fast path's result is returned unchecked (seen as an output
  that ``to_numpy`` cannot convert, or ``torch.compiler.is_compiling()``);
- floating outputs of a dtype without a conformance tolerance.

The portable path runs a second time on the same arguments, so an op calling back into
user code (``decode``'s ``step``) calls it twice.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

from seqops._lib.validate import dtype_name
from seqops.contract import Backend, Implementation


class PluginDisagreement(AssertionError):
    """In check mode, a fast path's result disagrees with the portable path's.

    Attributes ``op``, ``implementation``, ``plugin``, ``backend``, ``dtype`` (of the output
    compared), ``error`` and ``tolerance`` (the conformance metric and table) and ``where``
    (which output: ``"the output"``, ``"output [1].h"``).
    """

    def __init__(
        self,
        impl: Implementation,
        backend: Backend,
        where: str,
        why: str,
        *,
        dtype: str = "",
        error: float = float("nan"),
        tolerance: float = float("nan"),
    ) -> None:
        self.op = impl.op.name
        self.implementation = impl.name
        self.plugin = impl.plugin
        self.backend = backend.name
        self.dtype = dtype
        self.error = error
        self.tolerance = tolerance
        self.where = where
        super().__init__(
            f"check mode (SEQOPS_CHECK_PLUGINS): {self.op!r} on backend {self.backend!r}: implementation "
            f"{self.implementation!r} of plugin {self.plugin!r} disagrees with the portable path at "
            f"{where}: {why}"
        )


def checked(impl: Implementation, reference: Implementation) -> Callable[..., Any]:
    """``impl.fn`` running ``reference.fn`` (the portable path) beside it and comparing."""
    fast, portable, op = impl.fn, reference.fn, impl.op
    random = _RANDOM.get(op.name, _draws)
    validate = _VALIDITY.get(op.name)

    @functools.wraps(fast)  # keeps the signature the contract check reads
    def fn(backend: Backend, /, *args: Any, **kwargs: Any) -> Any:
        out = fast(backend, *args, **kwargs)
        if _compiling():
            return out
        if validate is not None:
            validate(impl, backend, out, args, kwargs)
        elif not random(kwargs):
            got = _on_host(backend, out)
            want = None if got is None else _on_host(backend, portable(backend, *args, **kwargs))
            if got is not None and want is not None:  # None: traced, the values cannot be read
                _compare(impl, backend, got, want)
        return out

    return fn


# -- what is not compared -------------------------------------------------------------------
def _draws(kwargs: dict[str, Any]) -> bool:
    """Whether the call draws random numbers: an ``rng`` is given."""
    return kwargs.get("rng") is not None


_RANDOM: dict[str, Callable[[dict[str, Any]], bool]] = {
    "scaled_dot_product_attention": lambda kw: kw["rng"] is not None and kw["dropout_p"] != 0,
    "multi_head_attention": lambda kw: kw["rng"] is not None and kw["dropout_p"] != 0,
    "decode": lambda kw: kw["rng"] is not None and kw["strategy"] != "greedy",
}
"""Ops whose calls draw only for some options (the others: whenever ``rng`` is given)."""


def _compiling() -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and bool(torch.compiler.is_compiling())


# -- host values ------------------------------------------------------------------------------
Leaf = tuple[str, Any, Any]  # where, the backend's value, its NumPy copy (None for non-arrays)


def _on_host(backend: Backend, value: Any) -> list[Leaf] | None:
    """The leaves of ``value`` with NumPy copies of its arrays, or ``None`` if one cannot be
    read (a tracer)."""
    leaves: list[Leaf] = []
    for where, leaf in _leaves(value, ""):
        if hasattr(leaf, "shape") and hasattr(leaf, "dtype"):
            try:
                leaves.append((where, leaf, backend.to_numpy(leaf)))
            except Exception:  # noqa: BLE001 - each tracer refuses a host read its own way
                return None
        else:
            leaves.append((where, leaf, None))
    return leaves


def _leaves(value: Any, where: str) -> list[tuple[str, Any]]:
    """``(where, leaf)`` of nested tuples (named ones by field), lists and dicts."""
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return [
            leaf
            for name, v in zip(value._fields, value, strict=True)
            for leaf in _leaves(v, f"{where}.{name}")
        ]
    if isinstance(value, (tuple, list)):
        return [leaf for i, v in enumerate(value) for leaf in _leaves(v, f"{where}[{i}]")]
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in _leaves(v, f"{where}[{k!r}]")]
    return [(where, value)]


def _label(where: str) -> str:
    return f"output {where}" if where else "the output"


# -- comparison -------------------------------------------------------------------------------
def _compare(impl: Implementation, backend: Backend, got: list[Leaf], want: list[Leaf]) -> None:
    import numpy as np
    from seqops_conformance.tolerances import TOLERANCES, error

    if [w for w, _, _ in got] != [w for w, _, _ in want]:
        paths = ", ".join(_label(w) for w, _, _ in got)
        expected = ", ".join(_label(w) for w, _, _ in want)
        raise PluginDisagreement(
            impl, backend, "the output", f"it returns {paths}; the portable path {expected}"
        )
    for (where, a, a_np), (_, b, b_np) in zip(got, want, strict=True):
        at = _label(where)
        if a_np is None or b_np is None:  # not arrays: None, numbers, strings
            if (a_np is None) != (b_np is None) or not _same_scalar(a, b):
                raise PluginDisagreement(impl, backend, at, f"it returns {a!r}; the portable path {b!r}")
            continue
        dtype = dtype_name(a.dtype)
        if tuple(a.shape) != tuple(b.shape) or dtype != dtype_name(b.dtype):
            expected = f"{tuple(b.shape)} {dtype_name(b.dtype)}"
            why = f"it returns shape {tuple(a.shape)} {dtype}; the portable path {expected}"
            raise PluginDisagreement(impl, backend, at, why, dtype=dtype)
        if b_np.dtype.kind in "biu":
            tol = 0.0
        elif b_np.dtype.kind == "f" and dtype in TOLERANCES:
            tol = TOLERANCES[dtype]
            a_np, b_np = np.array(a_np, dtype=np.float64), np.array(b_np, dtype=np.float64)
            both_nan = np.isnan(a_np) & np.isnan(b_np)  # NaN where the portable path has NaN agrees
            a_np[both_nan] = b_np[both_nan] = 0.0
        else:  # no tolerance for this dtype: not compared
            continue
        err = error(np.asarray(a_np), np.asarray(b_np))
        if not err <= tol:
            what = "fraction of entries differing" if tol == 0.0 else "normwise relative error"
            why = f"{dtype} {what} {err:.3g} > tolerance {tol:g}"
            raise PluginDisagreement(impl, backend, at, why, dtype=dtype, error=err, tolerance=tol)


def _same_scalar(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= 1e-10 * max(abs(a), abs(b)) or a == b
    return bool(a == b)


# -- ops checked by the validity of their output ------------------------------------------------
def _valid_tokens(
    impl: Implementation, backend: Backend, out: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    """``sample_logits``: integer ids of ``logits.shape[:-1]`` in ``[0, V)``, never at ``-inf``."""
    import numpy as np

    (logits,) = args
    got = _on_host(backend, out)
    want = _on_host(backend, logits)
    if got is None or want is None:
        return
    (_, tokens, ids), (_, _, z) = got[0], want[0]
    if (
        len(got) != 1
        or ids is None
        or tuple(tokens.shape) != tuple(logits.shape[:-1])
        or ids.dtype.kind not in "iu"
    ):
        what = f"shape {tuple(tokens.shape)} {dtype_name(tokens.dtype)}" if ids is not None else repr(out)
        why = f"it returns {what}; expected integer ids of shape {tuple(logits.shape[:-1])}"
        raise PluginDisagreement(impl, backend, "the output", why)
    vocab = z.shape[-1]
    if ids.size and (ids.min() < 0 or ids.max() >= vocab):
        why = f"token ids outside [0, {vocab}): {ids.min()}..{ids.max()}"
        raise PluginDisagreement(impl, backend, "the output", why, dtype=dtype_name(tokens.dtype))
    picked = np.take_along_axis(z, ids[..., None].astype(np.intp), axis=-1)
    if np.any(np.isneginf(picked)):
        why = "it samples a token whose logit is -inf"
        raise PluginDisagreement(impl, backend, "the output", why, dtype=dtype_name(tokens.dtype))


_VALIDITY: dict[str, Callable[[Implementation, Backend, Any, tuple[Any, ...], dict[str, Any]], None]] = {
    "sample_logits": _valid_tokens,
}
"""Ops whose fast path is checked by the validity of its output, not against the portable
path (random draws need not agree)."""
