"""Run every case on every available backend × device × dtype and collect a :class:`Report`."""

from __future__ import annotations

import contextlib
import datetime
import math
import platform
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import seqops
from seqops._dispatch import candidates
from seqops._plugins import registry
from seqops_conformance.cases import CASES, LIKE, OPS, Case
from seqops_conformance.report import Report, Result
from seqops_conformance.tolerances import TOLERANCES, error, tolerance

TRANSFORMATIONS = ("eager", "grad")
"""The transformations a case is checked under: ``"eager"`` calls the op and compares its
outputs; ``"grad"`` compares its vector-Jacobian product (torch autograd, ``jax.vjp``) with
finite differences of the reference (:mod:`seqops_conformance.grad`)."""


def run(
    backends: Sequence[str] | None = None,
    devices: Sequence[str] | None = None,
    dtypes: Sequence[str] | None = None,
    ops: Sequence[str] | None = None,
    progress: bool = True,
    transformations: Sequence[str] | None = None,
) -> Report:
    """Check every case against its float64 reference on each backend, device and dtype.

    Each output must also keep the library (``backend.owns``), device and dtype of the
    inputs. JAX's float64 (``jax_enable_x64``) is switched on for the run and restored
    after it.

    Parameters
    ----------
    backends : sequence of str, optional
        Backend names; default every registered backend (unavailable ones are reported
        as skipped with the reason).
    devices : sequence of str, optional
        Device labels (e.g. ``"cpu"``, ``"cuda:0"``); default each backend's default
        device. A backend with none of them is skipped.
    dtypes : sequence of str, optional
        Dtype names; default every floating dtype each backend has on the device.
    ops : sequence of str, optional
        Public op names; default every op with cases.
    progress : bool
        Show a progress bar (only on a terminal).
    transformations : sequence of str, optional
        Among :data:`TRANSFORMATIONS`; default all. Gradient checks run on the cases
        marked ``grad`` of the backends with autodiff (:data:`seqops_conformance.grad.AUTODIFF`),
        in the dtypes of :data:`~seqops_conformance.tolerances.GRADIENT_TOLERANCES`.

    Returns
    -------
    Report

    Raises
    ------
    ValueError
        For an unknown backend, dtype, op or transformation name.
    """
    registered = {backend.name: (backend, ok) for backend, ok in seqops.backends()}
    _require_known("backend", backends, registered)
    _require_known("dtype", dtypes, TOLERANCES)
    _require_known("op", ops, OPS)
    _require_known("transformation", transformations, TRANSFORMATIONS)
    wanted = tuple(transformations or TRANSFORMATIONS)
    cases = [case for case in CASES if ops is None or case.op in ops]
    report = Report()
    with _jax_x64(backends, registered) as x64:
        report.metadata = _metadata(registered, x64)
        plan = []  # (backend, device, dtype name, dtype)
        for name in backends or sorted(registered):
            backend, availability = registered[name]
            if not availability:
                report.skipped_backends.append((name, availability.reason))
                continue
            chosen = _devices(backend, devices)
            if not chosen:
                report.skipped_backends.append(
                    (name, f"none of the devices {', '.join(devices or ())} on this machine")
                )
            for device in chosen:
                for dtype_name, dtype in backend.floating_dtypes(device).items():
                    if dtype_name in TOLERANCES and (dtypes is None or dtype_name in dtypes):
                        plan.append((backend, device, dtype_name, dtype))
        checks: list[tuple[Callable[..., Result | list[Result]], Case, tuple[Any, ...]]] = []
        for where in plan:
            if "eager" in wanted:
                checks += [(_check, case, where) for case in cases]
        if "grad" in wanted and any(case.grad for case in cases):
            from seqops_conformance import grad

            report.notes.append(grad.coverage_note({b.name for b, *_ in plan}))
            for where in plan:
                if grad.applies(where[0], where[2]):
                    checks += [(grad.check, case, where) for case in cases if case.grad]
        references: dict[tuple[Any, ...], Any] = {}
        inputs = {case.id: case.inputs() for case in cases}
        with _progress(progress, len(checks)) as advance:
            for check, case, (backend, device, dtype_name, dtype) in checks:
                done = check(case, inputs[case.id], backend, device, dtype_name, dtype, references)
                report.results.extend(done if isinstance(done, list) else [done])
                kind = "" if check is _check else " grad"
                advance(f"{backend.name} {dtype_name} {case.op}{kind}")
        if "eager" in wanted:
            report.notes += _unchecked(plan, cases, report.results)
    return report


def _check(
    case: Case,
    inputs: tuple[tuple[Any, ...], dict[str, Any]],
    backend: seqops.Backend,
    device: Any,
    dtype_name: str,
    dtype: Any,
    references: dict[tuple[Any, ...], Any],
) -> list[Result]:
    """Run ``case`` on one backend, device and dtype with every implementation that
    accepts the call (:func:`implementations`) and compare each with the reference."""
    like = backend.from_numpy(np.zeros(1), dtype=dtype, device=device)
    where = backend.device(like)

    def result(implementation: str = "") -> Result:
        return Result(
            backend.name,
            _label(where),
            dtype_name,
            case.op,
            case.id,
            implementation,
            None,
            tolerance(dtype_name),
            "fail",
        )

    if dtype_name in case.unsupported:
        skipped = result()
        skipped.status, skipped.message = "skip", case.unsupported[dtype_name]
        return [skipped]
    args, kwargs = inputs
    try:
        to_backend = _Converter(backend, device, dtype, like)
        b_args, b_kwargs = to_backend(args), {k: to_backend(v) for k, v in kwargs.items()}
        runs = implementations(case, b_args, b_kwargs)
    except Exception as exc:  # noqa: BLE001 - any error is a failed check, not a crash
        failed = result()
        failed.message = f"raised {type(exc).__name__}: {exc}"
        return [failed]
    results = []
    for name, run_it in runs:
        results.append(result(name))
        try:
            out = run_it()
        except Exception as exc:  # noqa: BLE001 - any error is a failed check, not a crash
            results[-1].message = f"raised {type(exc).__name__}: {exc}"
            continue
        _judge(results[-1], case, backend, b_args, b_kwargs, out, dtype, where, references)
    return results


def implementations(
    case: Case, b_args: tuple[Any, ...], b_kwargs: dict[str, Any]
) -> list[tuple[str, Callable[[], Any]]]:
    """Each implementation checked on ``case`` at these backend arguments, with a callable
    running the case with it: every one that accepts the call
    (:func:`seqops._dispatch.candidates`, the dispatched one first), and the memory-efficient
    ``portable-tiled`` attention forced by a memory budget of 0 when the default budget
    makes it decline. A composition of ops (``case.call``) runs as dispatched."""
    if case.call is not None:
        return [(case.implementation(*b_args, **b_kwargs), lambda: case.function(*b_args, **b_kwargs))]
    found = candidates(case.function, *b_args, **b_kwargs)
    old = seqops.set_attention_memory_budget(0)
    try:
        forced = candidates(case.function, *b_args, **b_kwargs)
    finally:
        seqops.set_attention_memory_budget(old)
    names = {name for name, _ in found}
    found += [(name, _with_no_budget(run_it)) for name, run_it in forced if name not in names]
    return found


def _with_no_budget(run_it: Callable[[], Any]) -> Callable[[], Any]:
    def run() -> Any:
        old = seqops.set_attention_memory_budget(0)
        try:
            return run_it()
        finally:
            seqops.set_attention_memory_budget(old)

    return run


def _judge(
    result: Result,
    case: Case,
    backend: seqops.Backend,
    b_args: tuple[Any, ...],
    b_kwargs: dict[str, Any],
    out: Any,
    dtype: Any,
    where: Any,
    references: dict[tuple[Any, ...], Any],
) -> None:
    """Compare ``out`` with the reference of ``case`` and fill ``result`` in."""
    # The reference sees the inputs as rounded to the dtype under test.
    expected = reference_outputs(case, backend, b_args, b_kwargs, references)
    # Exact outputs (masks, token ids, data movement) have tolerance 0.
    if case.exact or not any(r is not None and r.dtype.kind == "f" for r in flatten(expected)):
        result.tolerance = 0.0
    errors, problems = _compare(backend, out, expected, dtype, where, case.compare)
    # None when some output could not be compared (wrong type or shape, not finite).
    result.error = max(errors, default=0.0) if all(np.isfinite(errors)) else None
    if not problems and result.error is not None and result.error <= result.tolerance:
        result.status = "pass"
    result.message = "; ".join(problems)


def _unchecked(plan: list[tuple[Any, ...]], cases: list[Case], results: list[Result]) -> list[str]:
    """A note naming the registered implementations that declined every case they were
    offered (so were not checked), per backend."""
    seen = {(r.backend, r.op, r.implementation) for r in results}
    missed: dict[str, list[str]] = {}
    for backend in dict.fromkeys(where[0] for where in plan):
        for op in dict.fromkeys(case.op for case in cases):
            for _, impl in registry.implementations(op, backend):
                if (backend.name, op, impl.name) not in seen:
                    missed.setdefault(backend.name, []).append(f"{impl.name} ({op})")
    if not missed:
        return []
    listed = "; ".join(f"on {b}: {', '.join(names)}" for b, names in missed.items())
    return [f"implementations that declined every case here, so were not checked: {listed}"]


def reference_outputs(
    case: Case,
    backend: seqops.Backend,
    b_args: tuple[Any, ...],
    b_kwargs: dict[str, Any],
    references: dict[tuple[Any, ...], Any],
) -> Any:
    """The reference outputs of ``case`` (nested as the op nests them, leaves as arrays) at
    the backend inputs converted back to float64 (so rounded to the dtype under test),
    cached by the rounded inputs."""
    r_args = _to_numpy(backend, b_args)
    r_kwargs = {k: _to_numpy(backend, v) for k, v in b_kwargs.items() if k != "like"}
    key = (case.id, _fingerprint((r_args, r_kwargs)))
    if key not in references:
        references[key] = _as_arrays(case.reference(*r_args, **r_kwargs))
    return references[key]


def _as_arrays(value: Any) -> Any:
    """A reference output with every leaf an ndarray (a Python float becomes 0-d float64)."""
    if value is None or isinstance(value, np.ndarray):
        return value
    if isinstance(value, (tuple, list, dict)):
        return _map_structure(_as_arrays, value)
    return np.asarray(value)


def _pairs(out: Any, expected: Any) -> tuple[list[tuple[str, Any, np.ndarray | None]], list[str]]:
    """Each output leaf with its reference leaf and a label (``output``, ``output 1``,
    ``output 0['w']``), matched by the structure of the reference; and how the structure
    of the outputs differs from it."""
    outs = out if isinstance(out, tuple) else (out,)
    refs = expected if isinstance(expected, tuple) else (expected,)
    if len(outs) != len(refs):
        return [], [f"returned {len(outs)} outputs, expected {len(refs)}"]
    pairs: list[tuple[str, Any, np.ndarray | None]] = []
    problems: list[str] = []

    def pair(label: str, o: Any, r: Any) -> None:
        if isinstance(r, dict):
            if not isinstance(o, dict) or list(o) != list(r):
                problems.append(f"{label} is {_describe(o)}, expected a dict with keys {list(r)}")
                return
            for k in r:
                pair(f"{label}[{k!r}]", o[k], r[k])
        elif isinstance(r, (tuple, list)):
            if not isinstance(o, list if isinstance(r, list) else tuple) or len(o) != len(r):
                problems.append(f"{label} is {_describe(o)}, expected a {type(r).__name__} of {len(r)}")
                return
            for j, (oj, rj) in enumerate(zip(o, r, strict=True)):
                pair(f"{label}[{j}]", oj, rj)
        else:
            pairs.append((label, o, r))

    for i, (o, r) in enumerate(zip(outs, refs, strict=True)):
        pair("output" if len(refs) == 1 else f"output {i}", o, r)
    return pairs, problems


def _describe(value: Any) -> str:
    if value is None:
        return "None"
    if isinstance(value, (tuple, list, dict)):
        return f"a {type(value).__name__} of {len(value)}"
    return f"a {type(value).__module__}.{type(value).__qualname__}"


def _compare(
    backend: seqops.Backend,
    out: Any,
    expected: Any,
    dtype: Any,
    where: Any,
    compare: str = "close",
) -> tuple[list[float], list[str]]:
    """The error of each output leaf, and every way the outputs break the contract
    (structure, library, dtype, device, shape, non-finite values, ``None`` entries, exact
    outputs that differ). An error is ``inf`` where no comparison was possible."""
    xp = backend.namespace()
    pairs, problems = _pairs(out, expected)
    errors: list[float] = [math.inf] * len(problems)
    for label, o, ref in pairs:
        if ref is None or o is None:
            if ref is not None or o is not None:
                problems.append(
                    f"{label} is {_describe(o)}, expected {'None' if ref is None else 'an array'}"
                )
                errors.append(math.inf)
            continue
        if not backend.owns(o):
            problems.append(f"{label} is {_describe(o)}, not a {backend.name} array")
            errors.append(math.inf)
            continue
        support = compare == "in_support"
        shape = ref.shape[:-1] if support else ref.shape
        if support or ref.dtype.kind in "iu":
            if not xp.isdtype(o.dtype, "integral"):
                problems.append(f"{label} has dtype {o.dtype}, expected an integer dtype")
        else:
            want = xp.bool if ref.dtype == np.bool_ else dtype
            if o.dtype != want:
                problems.append(f"{label} has dtype {o.dtype}, expected {want}")
        if backend.device(o) != where:
            problems.append(f"{label} is on device {_label(backend.device(o))}, expected {_label(where)}")
        if tuple(o.shape) != shape:
            problems.append(f"{label} has shape {tuple(o.shape)}, expected {shape}")
            errors.append(math.inf)
            continue
        a = np.asarray(backend.to_numpy(o))
        if support:
            inside = _in_support(a, ref)
            errors.append(float(np.mean(~inside)) if inside.size else 0.0)
            if not inside.all():
                bad = np.argwhere(~inside)[0]
                problems.append(
                    f"{label}: {int((~inside).sum())} of {inside.size} ids outside the reference support "
                    f"(e.g. id {a[tuple(bad)]} at {tuple(int(j) for j in bad)})"
                )
            continue
        errors.append(error(a, ref))
        if ref.dtype.kind in "biu" and errors[-1] > 0.0:
            differ = int(np.sum(a != ref))
            problems.append(f"{label}: {differ} of {ref.size} entries differ from the exact reference")
        elif not np.isfinite(errors[-1]):
            problems.append(f"{label} is not finite where the reference is, or the reverse")
    return errors, problems


def _in_support(ids: np.ndarray, support: np.ndarray) -> np.ndarray:
    """Whether each id of ``ids (...)`` is a True entry of its row of ``support (..., V)``."""
    vocab = support.shape[-1]
    valid = (ids >= 0) & (ids < vocab)
    picked = np.take_along_axis(support, np.where(valid, ids, 0)[..., None].astype(np.intp), axis=-1)
    return valid & picked[..., 0]


class _Converter:
    """NumPy inputs -> backend arrays: floating arrays in the dtype under test, bool and
    integer arrays kept, tuples (named too), lists and dicts converted entry by entry,
    ``LIKE`` replaced, anything else unchanged."""

    def __init__(self, backend: seqops.Backend, device: Any, dtype: Any, like: Any) -> None:
        self.backend, self.device, self.like = backend, device, like
        xp = backend.namespace()
        self.kinds = {"b": xp.bool, "i": xp.int64, "f": dtype}

    def __call__(self, value: Any) -> Any:
        if value is LIKE:
            return self.like
        if isinstance(value, np.ndarray):
            return self.backend.from_numpy(value, dtype=self.kinds[value.dtype.kind], device=self.device)
        return _map_structure(self, value)


def _map_structure(fn: Any, value: Any) -> Any:
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


def _to_numpy(backend: seqops.Backend, value: Any) -> Any:
    """Backend inputs -> NumPy (floating as float64) for the reference, structure kept."""
    if backend.owns(value):
        a = np.asarray(backend.to_numpy(value))
        return a.astype(np.float64) if a.dtype.kind == "f" else a
    return _map_structure(lambda v: _to_numpy(backend, v), value)


def flatten(value: Any) -> list[Any]:
    """The leaves of nested tuples, lists and dicts (dict values in order), ``None`` kept:
    how the outputs of an op and of its reference are matched one to one."""
    if isinstance(value, (tuple, list)):
        return [leaf for v in value for leaf in flatten(v)]
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in flatten(v)]
    return [value]


def expected_outputs(reference_out: Any) -> list[np.ndarray | None]:
    """The flattened reference outputs as arrays (a Python float becomes a 0-d float64)."""
    return [None if r is None else np.asarray(r) for r in flatten(reference_out)]


def _fingerprint(value: Any) -> bytes:
    """Bytes identifying the (rounded) inputs, so equal inputs share one reference."""
    if isinstance(value, np.ndarray):
        return value.dtype.str.encode() + repr(value.shape).encode() + value.tobytes()
    if isinstance(value, dict):
        return b"{" + b",".join(k.encode() + b":" + _fingerprint(v) for k, v in value.items()) + b"}"
    if isinstance(value, (tuple, list)):
        return b"(" + b",".join(_fingerprint(v) for v in value) + b")"
    return repr(value).encode()


def _label(device: Any) -> str:
    """``cpu``, ``cuda:0``, ``CPU_DEVICE`` (array-api-strict's ``Device('CPU_DEVICE')``)."""
    text = str(device)
    match = re.fullmatch(r".*Device\('(.*)'\)", text)
    return match.group(1) if match else text


def _devices(backend: seqops.Backend, wanted: Sequence[str] | None) -> list[Any]:
    if wanted is None:
        return [backend.default_device()]
    return [d for d in backend.devices() if {_label(d), str(d), repr(d)} & set(wanted)]


def _require_known(kind: str, names: Iterable[str] | None, known: Iterable[str]) -> None:
    unknown = sorted(set(names or ()) - set(known))
    if unknown:
        msg = f"unknown {kind} {', '.join(map(repr, unknown))}; known: {', '.join(sorted(known))}"
        raise ValueError(msg)


@contextlib.contextmanager
def _jax_x64(backends: Sequence[str] | None, registered: dict[str, Any]) -> Iterator[bool | None]:
    """Enable JAX float64 for the run when JAX is one of the backends and installed."""
    if (
        (backends is not None and "jax" not in backends)
        or "jax" not in registered
        or not registered["jax"][1]
    ):
        yield None
        return
    import jax

    before = bool(jax.config.read("jax_enable_x64"))
    jax.config.update("jax_enable_x64", True)
    try:
        yield True
    finally:
        jax.config.update("jax_enable_x64", before)


def _metadata(registered: dict[str, Any], jax_x64: bool | None) -> dict[str, Any]:
    return {
        "seqops": seqops.__version__,
        "backends": {name: backend.versions() for name, (backend, ok) in sorted(registered.items()) if ok},
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "jax_x64": jax_x64,
    }


@contextlib.contextmanager
def _progress(enabled: bool, total: int) -> Iterator[Any]:
    """A rich progress bar on stderr (only on a terminal); yields ``advance(description)``."""
    console = Console(stderr=True)
    columns = (TextColumn("{task.description:<45}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(
        *columns, console=console, disable=not (enabled and console.is_terminal), transient=True
    ) as bar:
        task = bar.add_task("conformance", total=total)
        yield lambda description: bar.update(task, advance=1, description=description)
