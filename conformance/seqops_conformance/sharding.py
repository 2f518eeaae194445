"""The ``"sharded"`` transformation: JAX arrays sharded over a mesh of 8 devices.

Run where JAX has at least :data:`DEVICES` devices; on a CPU, set
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` before JAX is imported. Elsewhere each
check is skipped with that reason.

How a case is sharded (:class:`Layout`)
    The batch size ``B`` is the leading size of the case's first array argument (the second
    for the ``(T, B, F)`` sequences of ``rnn``/``lstm``/``gru``; :data:`BATCH_ARG` names
    another argument); a 1-D floating first array, a 2-D query of the attention layers or a
    2-D sequence of the recurrent ones is unbatched (skipped). Every input array whose
    leading size is ``B`` (floating, integer and boolean: states, masks, targets, lengths) is
    tiled along that axis so that the mesh divides it (cases use ``B = 2`` or ``3``; the
    reference is recomputed on the tiled inputs, so the values stay judged) and sharded over
    the mesh axis ``"batch"`` there. The arrays of :data:`HEADS` ops broadcast from the
    right, ``(..., B, H, L, E)``: their batch and (even) heads axes are found that way, and
    the heads axis is sharded over ``"heads"``: the mesh is ``(batch 4, heads 2)`` for them,
    ``(batch 8, heads 1)`` otherwise. Weights are replicated over the mesh, and ``like=``
    is an array sharded over ``"batch"``. The mesh axes are ``Auto`` (XLA's sharding
    propagation): JAX 0.10's explicit axes (``jax.make_mesh``'s default there) reject
    reshapes and gathers that portable code cannot annotate with ``out_sharding=``
    (``docs/internals.md``). Zero-size inputs or outputs are skipped: JAX 0.10 cannot read
    back a sharded zero-size array.

What is checked, eagerly and under ``jax.jit`` (inputs sharded as above)
    - the values, against the float64 reference (the eager tolerances) and against the same
      call on the unsharded inputs;
    - the output shardings: an output with an axis of size ``B`` holds ``B / batch`` of it
      per device (still sharded on the batch axis), and 4-D outputs of :data:`HEADS` ops
      ``H / 2`` heads; outputs of creation functions (masks, encodings) made ``like=`` a
      sharded array are not cut like it (a replicated placement);
    - the compiled HLO of the jitted call (``jax.jit(f).lower(...).compile().as_text()``)
      has no ``all-gather`` nor ``all-to-all``: a batch- or heads-sharded input is never
      gathered onto one device (reductions over the batch, an ``all-reduce``, are allowed;
      the gathers known in :data:`GATHERS` are reported in the message, with the reason).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np

import seqops
from seqops_conformance.cases import LIKE, Case
from seqops_conformance.report import Result

DEVICES = 8
"""Devices of the mesh."""

HEADS = frozenset({"scaled_dot_product_attention", "apply_rotary"})
"""Ops whose 4-D inputs are ``(B, H, L, E)``: sharded over heads too."""

TIME_MAJOR = frozenset({"rnn", "lstm", "gru"})
"""Ops whose sequence input is ``(T, B, F)``: the batch is its second axis."""

SEQUENCES = frozenset({"multi_head_attention", "transformer_encoder_layer", "transformer_decoder_layer"})
"""Ops whose first input is ``([B,] L, E)``: a 2-D one is unbatched (its rows are positions)."""

WINDOWS = frozenset({"window_reverse"})
"""Ops whose batch axis holds ``B * nW`` windows: tiled as many times as the mesh has batch
devices, so that whole images divide over them."""

GATHERS = {
    op: "known: lax.top_k, under array-api-extra's partition, is a TopK custom call that XLA's "
    "SPMD partitioner does not split on CPU, so the logits are gathered"
    for op in ("filter_logits", "sample_logits")
}
"""Ops whose compiled HLO is known to gather a sharded input, with the reason: reported in
the check's message instead of failing it."""

BATCH_ARG = {"decode": 2}
"""Ops whose batch is not their first array argument: the index of the argument that has it
(``decode(step, table, tokens)``: the start tokens)."""

COLLECTIVES = re.compile(r"\b(all-gather|all-to-all)(-start)?\(")
"""What must not appear in the compiled HLO of a sharded call."""

UNBATCHED = "the case has no batch axis to shard (an unbatched input)"
EMPTY = (
    "a zero-size input: JAX 0.10 cannot read back a sharded zero-size array "
    "(each shard holds the whole empty array)"
)


def unavailable() -> str | None:
    """Why the sharded checks cannot run in this process, or ``None``."""
    import jax

    n = jax.device_count()
    if n < DEVICES:
        return (
            f"needs {DEVICES} JAX devices, this process has {n} "
            f"(set XLA_FLAGS=--xla_force_host_platform_device_count={DEVICES} before JAX is imported)"
        )
    return None


def _arrays(value: Any) -> list[np.ndarray]:
    out: list[np.ndarray] = []

    def walk(v: Any) -> None:
        if isinstance(v, np.ndarray):
            out.append(v)
        elif isinstance(v, (tuple, list)):
            for x in v:
                walk(x)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)

    walk(value)
    return out


class Layout:
    """Where the batch (and heads) axis of each input array of a case is.

    The case's first positional array (``first``) sets the sizes: its batch axis is axis 0
    (axis 1 for the ``(T, B, F)`` sequences of :data:`TIME_MAJOR` ops; none when it is 1-D,
    unless it is integer, as ``padding_mask``'s lengths). Another array has its batch axis
    at 0 where its leading size is the batch size (at 1 for a sequence of a time-major op).
    The arrays of :data:`HEADS` ops broadcast from the right like ``(..., B, H, L, E)``:
    their batch and heads axes are aligned on ``first``'s from the last axis, and their
    integer arrays (positions) are replicated."""

    def __init__(self, case: Case, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.op = case.op
        first = next(iter(_arrays(args[BATCH_ARG.get(case.op, 0) :])), None)
        self.ndim = 0 if first is None else first.ndim
        self.batch_at: int | None = None  # in first
        self.heads_at: int | None = None
        if first is not None:
            if case.op in HEADS:
                gqa = bool(kwargs.get("enable_gqa", False))
                if first.ndim >= 4 or (first.ndim == 3 and not gqa):
                    self.batch_at = first.ndim - (4 if first.ndim >= 4 else 3)
                if first.ndim >= 4 or (first.ndim == 3 and gqa):
                    self.heads_at = first.ndim - 3
            elif case.op in TIME_MAJOR:
                self.batch_at = 1 if first.ndim >= 3 else None
            elif case.op in SEQUENCES:
                self.batch_at = 0 if first.ndim >= 3 else None
            elif first.ndim >= 2 or first.dtype.kind in "iu":
                self.batch_at = 0
        self.size = None if first is None or self.batch_at is None else int(first.shape[self.batch_at])
        self.heads = any(self.heads_axis(a) is not None for a in _arrays((args, kwargs)))

    def batch_axis(self, a: np.ndarray, size: int | None = None) -> int | None:
        """The batch axis of ``a`` (``size``: the batch size, the case's by default)."""
        size = self.size if size is None else size
        if size is None or a.ndim == 0:
            return None
        if self.op in HEADS:
            if self.batch_at is None:
                return None
            # integer positions (..., L) broadcast against the input's (..., L) without E
            axis = a.ndim - self.ndim + self.batch_at + (a.dtype.kind in "iu")
        elif self.op in TIME_MAJOR and a.ndim == self.ndim:
            axis = 1
        else:
            axis = 0
        return axis if 0 <= axis < a.ndim and a.shape[axis] == size else None

    def heads_axis(self, a: np.ndarray) -> int | None:
        """The heads axis of ``a`` (an even size: sharded over 2 devices), if any."""
        if self.op not in HEADS or self.heads_at is None or a.dtype.kind in "iu":
            return None
        axis = a.ndim - self.ndim + self.heads_at
        ok = 0 <= axis < a.ndim and a.shape[axis] % 2 == 0 and a.shape[axis] > 0
        return axis if ok else None


def _map(fn: Callable[[Any], Any], value: Any, leaf: Callable[[Any], bool] | None = None) -> Any:
    """``fn`` on every NumPy array and ``LIKE`` (or every value ``leaf`` accepts) of nested
    tuples, lists and dicts, the structure and dict order kept."""
    if (value is LIKE or isinstance(value, np.ndarray)) if leaf is None else leaf(value):
        return fn(value)
    if isinstance(value, tuple):
        items = [_map(fn, v, leaf) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else tuple(items)
    if isinstance(value, list):
        return [_map(fn, v, leaf) for v in value]
    if isinstance(value, dict):
        return {k: _map(fn, v, leaf) for k, v in value.items()}
    return value


def check(
    case: Case,
    inputs: tuple[tuple[Any, ...], dict[str, Any]],
    backend: seqops.Backend,
    device: Any,
    dtype_name: str,
    dtype: Any,
    references: dict[tuple[Any, ...], Any],
) -> Result:
    """Check ``case`` with sharded inputs, eagerly and under ``jax.jit`` (module docstring)."""
    import jax
    from jax.sharding import AxisType, NamedSharding
    from jax.sharding import PartitionSpec as P

    from seqops_conformance.runner import _Converter, _disagreement, _host, _label, judge
    from seqops_conformance.tolerances import tolerance

    where = backend.default_device()
    result = Result(
        backend.name,
        _label(where),
        dtype_name,
        case.op,
        case.id,
        "",
        None,
        tolerance(dtype_name),
        "fail",
        transformation="sharded",
    )
    reason = unavailable()
    if reason is not None:
        result.status, result.message = "skip", reason
        return result
    args, kwargs = inputs
    layout = Layout(case, args, kwargs)
    size = layout.size
    creation = not _arrays(inputs)  # masks and encodings: only like= is an array
    if size is None and not layout.heads and not creation:
        result.status, result.message = "skip", UNBATCHED
        return result
    if any(a.size == 0 for a in _arrays(inputs)):
        result.status, result.message = "skip", EMPTY
        return result
    heads = layout.heads
    n_batch, n_heads = (4, 2) if heads else (DEVICES, 1)
    mesh = jax.make_mesh((n_batch, n_heads), ("batch", "heads"), axis_types=(AxisType.Auto,) * 2)
    tiles = 1 if not size else (n_batch if case.op in WINDOWS else math.lcm(size, n_batch) // size)
    tiled = None if size is None else size * tiles

    def place(a: Any) -> Any:
        """``a`` tiled along its batch axis, with the sharding it gets."""
        if a is LIKE:
            return a, None
        axes: list[str | None] = [None] * a.ndim
        batch, head = layout.batch_axis(a), layout.heads_axis(a)
        if batch is not None:
            axes[batch] = "batch"
            a = np.repeat(a, tiles, axis=batch) if tiles > 1 else a
        if head is not None and head != batch:
            axes[head] = "heads"
        return a, NamedSharding(mesh, P(*axes))

    def shard(a: Any) -> Any:
        tiled_a, sharding = place(a)
        return to_sharded(a) if a is LIKE else jax.device_put(plain(tiled_a), sharding)

    like = backend.from_numpy(np.zeros(DEVICES), dtype=dtype)
    plain = _Converter(backend, None, dtype, like)
    sharded_like = jax.device_put(like, NamedSharding(mesh, P("batch")))
    to_sharded = _Converter(backend, None, dtype, sharded_like)
    try:
        b_args, b_kwargs = _map(lambda a: plain(place(a)[0]), inputs)
        s_args, s_kwargs = _map(shard, inputs)
        result.implementation = case.implementation(*s_args, **s_kwargs)
        base = case.function(*b_args, **b_kwargs)
    except Exception as exc:  # noqa: BLE001 - any error is a failed check, not a crash
        result.message = f"raised {type(exc).__name__}: {exc}"
        return result

    # every array (integer and boolean too) an argument of the jitted function, so that its
    # sharding is an input sharding; the rest (options, callables) stays a constant of it
    is_array = lambda a: isinstance(a, jax.Array)  # noqa: E731
    arrays: list[Any] = []

    def slot(a: Any) -> _Slot:
        arrays.append(a)
        return _Slot(len(arrays) - 1)

    slots = _map(slot, (s_args, s_kwargs), is_array)

    def f(*values: Any) -> Any:
        a, k = _map(lambda slot: values[slot.index], slots, lambda v: isinstance(v, _Slot))
        return case.function(*a, **k)

    problems: list[str] = []
    notes: list[str] = []
    errors: list[float] = []
    for mode in ("eager", "jit"):
        try:
            if mode == "eager":
                out = case.function(*s_args, **s_kwargs)
            else:
                compiled = jax.jit(f).lower(*arrays).compile()
                out = compiled(*arrays)
                found = sorted({m.group(1) for m in COLLECTIVES.finditer(compiled.as_text() or "")})
                if found and case.op in GATHERS:
                    notes.append(f"jit: the compiled HLO has {' and '.join(found)} ({GATHERS[case.op]})")
                elif found:
                    problems.append(f"jit: the compiled HLO has {' and '.join(found)}")
        except Exception as exc:  # noqa: BLE001 - any error is a failed check, not a crash
            problems.append(f"{mode} raised {type(exc).__name__}: {exc}")
            errors.append(math.inf)
            continue
        if any(getattr(leaf, "size", 1) == 0 for leaf in jax.tree_util.tree_leaves(out)):
            result.status, result.message = "skip", EMPTY.replace("input", "output")
            return result
        found = _placement(out, tiled, heads, creation, n_batch, case.op)
        problems += [f"{mode}: {p}" for p in found]
        # judged on one device: the placement was checked above
        local = _map(lambda a: jax.device_put(a, where), out, is_array)
        element = dataclasses.replace(result)
        judge(element, case, backend, b_args, b_kwargs, local, dtype, where, references)
        if element.message:
            problems.append(f"{mode}: {element.message}")
        if element.status != "pass":
            errors.append(math.inf if element.error is None else element.error)
            result.tolerance = element.tolerance
            continue
        result.tolerance = element.tolerance
        errors.append(element.error or 0.0)
        gap = _disagreement(_host(backend, _ordered(local, base)), _host(backend, base))
        if gap is None or gap > result.tolerance:
            problems.append(f"{mode}: differs from the unsharded call by {gap}")
    result.error = max(errors) if errors and all(math.isfinite(e) for e in errors) else None
    result.status = "pass" if not problems and result.error is not None else "fail"
    result.message = "; ".join(problems + notes)
    return result


def _ordered(out: Any, like: Any) -> Any:
    """``out`` with its dicts in the key order of ``like``'s (``jax.jit`` sorts them)."""
    if isinstance(out, dict) and isinstance(like, dict) and out.keys() == like.keys():
        return {k: _ordered(out[k], like[k]) for k in like}
    if isinstance(out, (tuple, list)) and isinstance(like, (tuple, list)) and len(out) == len(like):
        items = [_ordered(o, x) for o, x in zip(out, like, strict=True)]
        return type(out)(*items) if hasattr(out, "_fields") else type(out)(items)
    return out


class _Slot:
    """Placeholder for the ``index``-th array argument of the jitted call."""

    def __init__(self, index: int) -> None:
        self.index = index


def _placement(out: Any, tiled: int | None, heads: bool, creation: bool, n_batch: int, op: str) -> list[str]:
    """How the outputs' shardings differ from what the module docstring says."""
    import jax

    problems = []
    for i, leaf in enumerate(jax.tree_util.tree_leaves(out)):
        if not isinstance(leaf, jax.Array) or leaf.ndim == 0:
            continue
        shard = tuple(leaf.sharding.shard_shape(leaf.shape))
        if creation:
            if shard != tuple(leaf.shape):
                problems.append(f"output {i} {tuple(leaf.shape)} is cut into {shard} like the like= array")
            continue
        axis = next((a for a, n in enumerate(leaf.shape) if n == tiled), None) if tiled else None
        if axis is not None and tiled is not None and shard[axis] != tiled // n_batch:
            problems.append(
                f"output {i} {tuple(leaf.shape)} holds {shard} per device: not sharded on batch axis {axis}"
            )
        cut = leaf.ndim == 4 and leaf.shape[1] % 2 == 0 and shard[1] != leaf.shape[1] // 2
        if heads and op in HEADS and cut:
            problems.append(f"output {i} {tuple(leaf.shape)} holds {shard} per device: not sharded on heads")
    return problems
