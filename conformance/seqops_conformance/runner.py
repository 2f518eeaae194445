"""Run every case on every available backend × device × dtype and collect a :class:`Report`."""

from __future__ import annotations

import contextlib
import datetime
import functools
import math
import platform
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import seqops
from seqops import Limitation, find_limitation
from seqops_conformance.cases import CASES, LIKE, OPS, Case, Inputs
from seqops_conformance.report import Agreement, Report, Result, _plural
from seqops_conformance.structure import fingerprint, flatten, map_structure
from seqops_conformance.tolerances import TOLERANCES, error, tolerance

TRANSFORMATIONS = ("eager", "grad", "jit", "vmap", "compile", "sharded")
"""The transformations a case can be checked under: ``"eager"`` calls the op and compares
its outputs; ``"grad"`` compares its vector-Jacobian product (torch autograd, ``jax.vjp``)
with finite differences of the reference (:mod:`seqops_conformance.grad`); ``"jit"``
(``jax.jit``), ``"vmap"`` (``jax.vmap``) and ``"compile"`` (``torch.compile``) compare the
outputs of the transformed op (:mod:`seqops_conformance.transforms`); ``"sharded"`` runs JAX
inputs sharded over a mesh of 8 devices, eagerly and under ``jax.jit``
(:mod:`seqops_conformance.sharding`)."""

DEFAULT_TRANSFORMATIONS = ("eager", "grad", "jit", "vmap")
"""What :func:`run` checks unless told otherwise: all but ``"compile"``, whose inductor
compilations take seconds per case, and ``"sharded"``, which needs 8 JAX devices."""


@dataclass(frozen=True)
class Target:
    """Where checks run: one backend, device and floating dtype (by name and object)."""

    backend: seqops.Backend
    device: Any
    dtype_name: str
    dtype: Any

    @functools.cached_property
    def label(self) -> str:
        """The device as reports name it (``cpu``, ``cuda:0``, ``CPU_DEVICE``)."""
        like = self.backend.from_numpy(np.zeros(1), dtype=self.dtype, device=self.device)
        return _label(self.backend.device(like))


def run(
    backends: Sequence[str] | None = None,
    devices: Sequence[str] | None = None,
    dtypes: Sequence[str] | None = None,
    ops: Sequence[str] | None = None,
    progress: bool = True,
    transformations: Sequence[str] | None = None,
    seed: int = 0,
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
        Report progress on stderr (:func:`_progress`): a bar on a terminal, else a line
        every :data:`PROGRESS_INTERVAL` seconds and one at the end.
    transformations : sequence of str, optional
        Among :data:`TRANSFORMATIONS`; default :data:`DEFAULT_TRANSFORMATIONS`. Each runs
        where it has a driver (:func:`applies`).
    seed : int
        Seed of the case inputs (with the case id); 0 gives the inputs of the committed
        reports.

    Returns
    -------
    Report

    Raises
    ------
    ValueError
        For an unknown backend, dtype, op or transformation name, or a negative seed.
    """
    registered = {backend.name: (backend, ok) for backend, ok in seqops.backends()}
    _require_known("backend", backends, registered)
    _require_known("dtype", dtypes, TOLERANCES)
    _require_known("op", ops, OPS)
    _require_known("transformation", transformations, TRANSFORMATIONS)
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    wanted = [t for t in TRANSFORMATIONS if t in (transformations or DEFAULT_TRANSFORMATIONS)]
    cases = [case for case in CASES if ops is None or case.op in ops]
    report = Report()
    with _jax_x64(backends, registered) as x64:
        report.metadata = _metadata(registered, x64, seed)
        plan: list[Target] = []
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
                        plan.append(Target(backend, device, dtype_name, dtype))
        checks = [
            (case, target, t)
            for t in wanted
            for target in plan
            for case in cases
            if applies(case, target.backend, target.dtype_name, t)
        ]
        names = {target.backend.name for target in plan}
        if "grad" in wanted and any(case.grad for case in cases):
            from seqops_conformance import grad

            report.notes.append(grad.coverage_note(names))
        traced = [t for t in wanted if t in ("jit", "vmap", "compile", "sharded")]
        if traced:
            from seqops_conformance import transforms

            if any(transforms.applies(t, target.backend) for t in traced for target in plan):
                report.notes.append(transforms.coverage_note(traced, names))
        references: dict[tuple[Any, ...], Any] = {}
        outputs: dict[tuple[str, str], dict[str, list[np.ndarray | None]]] = {}
        expected = lambda: [expected_checks(*c, seed=seed) for c in checks]  # noqa: E731
        with _progress(progress, expected) as advance:
            for case, target, t in checks:
                found = check(case, target, t, seed=seed, references=references, outputs=outputs)
                report.results += found
                kind = "" if t == "eager" else f" {t}"
                advance(f"{target.backend.name} {target.dtype_name} {case.op}{kind}", found)
        if "eager" in wanted:
            report.notes += _unchecked(plan, cases, report.results)
        report.agreement = agreement(outputs, {case.id: case.op for case in cases})
        report.ops_total = len(seqops.declared_ops())
    return report


def agreement(
    outputs: dict[tuple[str, str], dict[str, list[np.ndarray | None]]], ops: dict[str, str]
) -> list[Agreement]:
    """The worst disagreement per op, dtype and pair of backends (:class:`Agreement`), from
    the outputs ``{(case id, dtype): {backend: flattened outputs}}`` recorded by :func:`check`."""
    where = {name for by_backend in outputs.values() for name in by_backend}
    devices = [name.split("@")[0] for name in where]
    # "numpy@cpu" -> "numpy" unless the backend ran on several devices
    short = {name: name if devices.count(name.split("@")[0]) > 1 else name.split("@")[0] for name in where}
    worst: dict[tuple[str, str, tuple[str, str]], list[float | None]] = {}
    for (case_id, dtype), by_backend in outputs.items():
        names = sorted(by_backend)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                key = (ops[case_id], dtype, (short[a], short[b]))
                worst.setdefault(key, []).append(_disagreement(by_backend[a], by_backend[b]))
    return [
        Agreement(op, dtype, pair, None if None in found else max(found, default=0.0), len(found))  # type: ignore[type-var]
        for (op, dtype, pair), found in worst.items()
    ]


def _disagreement(a: list[np.ndarray | None], b: list[np.ndarray | None]) -> float | None:
    """``max |a - b| / max(|a|, |b|)`` over matching floating outputs (the fraction of
    differing entries for exact ones); ``None`` when they cannot be compared (structure or
    shape differ, non-finite entries that differ; NaN matches NaN)."""
    if len(a) != len(b):
        return None
    worst = 0.0
    for x, y in zip(a, b, strict=True):
        if x is None or y is None:
            if (x is None) != (y is None):
                return None
            continue
        if x.shape != y.shape:
            return None
        if x.dtype.kind != "f" or y.dtype.kind != "f":
            worst = max(worst, float(np.mean(x != y)) if x.size else 0.0)
            continue
        finite = np.isfinite(x)
        same = np.array_equal(x[~finite], y[~finite], equal_nan=True)  # NaN where the other has NaN
        if not (np.array_equal(finite, np.isfinite(y)) and same):
            return None
        diff = float(np.max(np.abs(x[finite] - y[finite]), initial=0.0))
        scale = max(
            float(np.max(np.abs(x[finite]), initial=0.0)), float(np.max(np.abs(y[finite]), initial=0.0))
        )
        worst = max(worst, diff / scale if scale > 0.0 else diff)
    return worst


def applies(case: Case, backend: seqops.Backend, dtype_name: str, transformation: str) -> bool:
    """Whether ``case`` is checked under ``transformation`` on ``backend`` in ``dtype_name``:
    eager everywhere; gradients for the cases marked ``grad`` on the backends with autodiff
    in the dtypes with a gradient tolerance; traced transformations where they have a
    driver, for the cases whose result does not depend on values read eagerly
    (``Case.traced``). (Declared limitations are checked too, and reported as skips.)"""
    if transformation == "eager":
        return True
    if not case.traced and transformation != "grad":
        return False
    if transformation == "grad":
        from seqops_conformance import grad

        return case.grad and grad.applies(backend, dtype_name)
    from seqops_conformance import transforms

    return transforms.applies(transformation, backend)


def check(
    case: Case,
    target: Target,
    transformation: str = "eager",
    *,
    seed: int = 0,
    references: dict[tuple[Any, ...], Any] | None = None,
    outputs: dict[tuple[str, str], dict[str, list[np.ndarray | None]]] | None = None,
) -> list[Result]:
    """The results of ``case`` on ``target`` under ``transformation``: a skip with the
    reason where the backend declares a :class:`seqops.Limitation` covering it; eagerly,
    one result per implementation (:func:`implementations`); otherwise one result.

    ``references`` caches reference outputs across calls (by case and rounded inputs);
    ``outputs`` collects the eager outputs of the dispatched implementation as NumPy,
    ``{(case id, dtype): {backend: flattened outputs}}``, for :func:`agreement`.
    """
    backend, device, dtype_name, dtype = target.backend, target.device, target.dtype_name, target.dtype
    references = {} if references is None else references
    label = target.label
    declared = _declared(case, target, transformation)
    reason = None if declared is None else f"declared by backend {backend.name}: {declared.reason}"
    if reason is None and backend.lazy and not case.traced:
        reason = (
            f"backend {backend.name} is lazy: it never reads values on the host, so every step "
            "runs as under a trace, where this case's eager result reads them (Case.traced)"
        )
    if reason is not None:
        tol = tolerance(dtype_name, "grad" if transformation == "grad" else "eager")
        skipped = Result(backend.name, label, dtype_name, case.op, case.id, "", None, tol, "skip")
        skipped.transformation, skipped.message = transformation, reason
        return [skipped]
    inputs = case.inputs(seed)
    if transformation == "eager":
        record = None
        if outputs is not None and case.compare == "close":  # sampling draws differ by design
            sink = outputs.setdefault((case.id, dtype_name), {})

            def record(out: Any) -> None:
                sink[f"{backend.name}@{label}"] = _host(backend, out)

        return _check(case, inputs, backend, device, dtype_name, dtype, references, record)
    if transformation == "grad":
        from seqops_conformance import grad

        return [grad.check(case, inputs, backend, device, dtype_name, dtype, references)]
    from seqops_conformance import transforms

    return [
        transforms.check(
            case,
            inputs,
            backend,
            device,
            dtype_name,
            dtype,
            references,
            transformation,
            other_inputs=lambda: case.inputs(seed + 1),
        )
    ]


def _declared(case: Case, target: Target, transformation: str) -> Limitation | None:
    """The limitation ``target.backend`` declares that covers ``case`` there, if any."""
    return find_limitation(
        target.backend.limitations,
        op=case.op,
        dtype=target.dtype_name,
        device=target.label,
        transformation=transformation,
    )


def implementation_names(case: Case, target: Target, *, seed: int = 0) -> list[str]:
    """The implementations an eager :func:`check` of ``case`` on ``target`` reports, in its
    order: those whose declared limitations cover the call, then each one accepting it.
    Empty where the backend declares a limitation covering the case, or the inputs do not
    convert (the check reports either as one result)."""
    if _declared(case, target, "eager") is not None:
        return []
    try:
        b_args, b_kwargs = _backend_inputs(case.inputs(seed), target)
        accepting = [name for name, _ in implementations(case, b_args, b_kwargs)]
    except Exception:  # noqa: BLE001 - the check itself reports the error
        return []
    limited = list(_limited(case, target.backend, target.dtype_name, target.label))
    return limited + [name for name in accepting if name not in limited]


def expected_checks(case: Case, target: Target, transformation: str, *, seed: int = 0) -> int:
    """How many checks (results that are not skips) :func:`check` of ``case`` on ``target``
    under ``transformation`` reports, found without running the op: eagerly, one per
    implementation accepting the call (a declared limitation's too: it fails), else one.
    What the progress counts towards; the inputs are built and converted, the declines asked."""
    if _declared(case, target, transformation) is not None:
        return 0
    if target.backend.lazy and not case.traced:
        return 0
    if transformation == "vmap":
        from seqops_conformance import transforms

        return int(transforms.vmap_skip(case.inputs(seed), lambda: case.inputs(seed + 1)) is None)
    if transformation != "eager":
        return 1  # one result; a sharded check may still skip on what it finds (the total follows)
    try:
        b_args, b_kwargs = _backend_inputs(case.inputs(seed), target)
        return len(implementations(case, b_args, b_kwargs))
    except Exception:  # noqa: BLE001 - the check reports the error: one failed result
        return 1


def _backend_inputs(inputs: Inputs, target: Target) -> Inputs:
    """The case's NumPy inputs converted to ``target`` (:class:`_Converter`)."""
    backend = target.backend
    like = backend.from_numpy(np.zeros(1), dtype=target.dtype, device=target.device)
    to_backend = _Converter(backend, target.device, target.dtype, like)
    args, kwargs = inputs
    return to_backend(args), {k: to_backend(v) for k, v in kwargs.items()}


def _check(
    case: Case,
    inputs: Inputs,
    backend: seqops.Backend,
    device: Any,
    dtype_name: str,
    dtype: Any,
    references: dict[tuple[Any, ...], Any],
    record: Callable[[Any], None] | None = None,
) -> list[Result]:
    """Run ``case`` on one backend, device and dtype with every implementation that
    accepts the call (:func:`implementations`) and compare each with the reference. An
    implementation declaring a :class:`seqops.Limitation` that covers the call must decline
    it: it is reported as skipped with the reason, or failed if it accepted. ``record`` is
    given the outputs of the dispatched implementation."""
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

    try:
        b_args, b_kwargs = _backend_inputs(inputs, Target(backend, device, dtype_name, dtype))
        runs = implementations(case, b_args, b_kwargs)
    except Exception as exc:  # noqa: BLE001 - any error is a failed check, not a crash
        failed = result()
        failed.message = f"raised {type(exc).__name__}: {exc}"
        return [failed]
    results = []
    limited = _limited(case, backend, dtype_name, _label(where))
    for name, reason in limited.items():
        results.append(result(name))
        if name in dict(runs):
            results[-1].message = f"declares {reason!r} but accepted the call"
        else:
            results[-1].status, results[-1].message = "skip", f"declared by {name}: {reason}"
    for name, run_it in runs:
        if name in limited:
            continue
        results.append(result(name))
        before = _input_bytes(backend, b_args, b_kwargs)
        try:
            with backend.computations() as computed:  # a lazy backend must not compute here
                out = run_it()
        except Exception as exc:  # noqa: BLE001 - any error is a failed check, not a crash
            results[-1].message = f"raised {type(exc).__name__}: {exc}"
            continue
        written = [where for where, was in before.items() if _leaf_bytes(backend, was[0]) != was[1]]
        if written:
            which = f"input{'s' * (len(written) != 1)} {', '.join(written)}"
            results[-1].message = f"left its {which} changed (written in place or freed)"
            continue
        if computed:
            n, what = len(computed), ", ".join(computed)
            results[-1].message = f"computed {n} graph{'s' * (n != 1)} during the call ({what})"
            continue
        try:  # a lazy backend computes here, where its errors surface
            judge(results[-1], case, backend, b_args, b_kwargs, out, dtype, where, references)
        except Exception as exc:  # noqa: BLE001 - any error is a failed check, not a crash
            results[-1].message = f"raised {type(exc).__name__} computing the result: {exc}"
            continue
        if record is not None and name == runs[0][0]:
            record(out)
    return results


def _input_bytes(
    backend: seqops.Backend, b_args: tuple[Any, ...], b_kwargs: dict[str, Any]
) -> dict[str, tuple[Any, bytes | None]]:
    """Each input array of an eager (not lazy) backend, by where it is in the call, with its
    bytes on the host: what every implementation must leave as it found them (the reference
    is computed from these very arrays after the call). A lazy backend's arrays are graphs,
    never written in place, and reading them would compute them: none."""
    if backend.lazy:
        return {}
    named = [(f"argument {i}", v) for i, v in enumerate(b_args)] + list(b_kwargs.items())
    found = {}
    for where, value in named:
        leaves = [leaf for leaf in flatten(value) if leaf is not None and backend.owns(leaf)]
        for j, leaf in enumerate(leaves):
            found[where if len(leaves) == 1 else f"{where} (array {j})"] = (leaf, _leaf_bytes(backend, leaf))
    return found


def _leaf_bytes(backend: seqops.Backend, leaf: Any) -> bytes | None:
    """The array's bytes on the host; ``None`` where it cannot be read (a JAX buffer
    donated and deleted by the call)."""
    try:
        return np.ascontiguousarray(backend.to_numpy(leaf)).tobytes()
    except Exception:  # noqa: BLE001 - unreadable after the call is what this reports
        return None


def _host(backend: seqops.Backend, out: Any) -> list[np.ndarray | None]:
    """The flattened outputs as NumPy arrays (floating as float64), ``None`` kept; an
    output that is not an array of the backend becomes ``None``."""
    leaves: list[np.ndarray | None] = []
    for leaf in flatten(out):
        if leaf is None or not backend.owns(leaf):
            leaves.append(None)
            continue
        a = np.asarray(backend.to_numpy(leaf))
        leaves.append(a.astype(np.float64) if a.dtype.kind == "f" else a)
    return leaves


def _limited(case: Case, backend: seqops.Backend, dtype_name: str, device: str) -> dict[str, str]:
    """The registered implementations of ``case.op`` on ``backend`` whose declared
    limitations cover this dtype and device, with the reason (none for compositions)."""
    if case.call is not None:
        return {}
    found = {}
    for impl in seqops.implementations(case.op, backend):
        lim = find_limitation(
            impl.limitations, op=case.op, dtype=dtype_name, device=device, transformation="eager"
        )
        if lim is not None:
            found[impl.name] = lim.reason
    return found


def implementations(
    case: Case, b_args: tuple[Any, ...], b_kwargs: dict[str, Any]
) -> list[tuple[str, Callable[[], Any]]]:
    """Each implementation checked on ``case`` at these backend arguments, with a callable
    running the case with it: every one that accepts the call (:func:`seqops.candidates`,
    the dispatched one first), and the memory-efficient ``portable-tiled`` attention forced by
    a memory budget of 0 when the default budget makes it decline. A composite whose parts
    include the attention is also run over the tiled attention (``"portable over
    portable-tiled"``). A composition of ops (``case.call``) runs as dispatched."""
    if case.call is not None:
        return [(case.implementation(*b_args, **b_kwargs), lambda: case.function(*b_args, **b_kwargs))]
    found = seqops.candidates(case.function, *b_args, **b_kwargs)
    old = seqops.set_attention_memory_budget(0)
    try:
        forced = seqops.candidates(case.function, *b_args, **b_kwargs)
    finally:
        seqops.set_attention_memory_budget(old)
    names = {name for name, _ in found}
    found += [(name, _with_no_budget(run_it)) for name, run_it in forced if name not in names]
    if _attends(getattr(seqops.ops, case.op)):
        found += [
            (f"{name} over portable-tiled", _with_no_budget(run_it))
            for name, run_it in forced
            if name == "portable"
        ]
    return found


def _attends(op: Any) -> bool:
    """Whether ``op``'s built-in implementation dispatches the attention (through its parts)."""
    return any(part is seqops.ops.scaled_dot_product_attention or _attends(part) for part in op.parts)


def _with_no_budget(run_it: Callable[[], Any]) -> Callable[[], Any]:
    def run() -> Any:
        old = seqops.set_attention_memory_budget(0)
        try:
            return run_it()
        finally:
            seqops.set_attention_memory_budget(old)

    return run


def judge(
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
    """Compare ``out`` (computed from the backend arguments ``b_args``, ``b_kwargs``)
    with the reference of ``case`` and fill ``result`` in: error, tolerance, status and
    every way the outputs break the contract."""
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


def _unchecked(plan: list[Target], cases: list[Case], results: list[Result]) -> list[str]:
    """A note naming the registered implementations that declined every case they were
    offered (so were not checked), per backend."""
    seen = {(r.backend, r.op, r.implementation) for r in results}
    declared = {(r.backend, r.op) for r in results if r.status == "skip" and not r.implementation}
    missed: dict[str, list[str]] = {}
    for backend in dict.fromkeys(target.backend for target in plan):
        for op in dict.fromkeys(case.op for case in cases):
            for impl in seqops.implementations(op, backend):
                if (backend.name, op, impl.name) not in seen and (backend.name, op) not in declared:
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
    key = (case.id, fingerprint((r_args, r_kwargs)))
    if key not in references:
        references[key] = _as_arrays(case.reference(*r_args, **r_kwargs))
    return references[key]


def _as_arrays(value: Any) -> Any:
    """A reference output with every leaf an ndarray (a Python float becomes 0-d float64)."""
    if value is None or isinstance(value, np.ndarray):
        return value
    if isinstance(value, (tuple, list, dict)):
        return map_structure(_as_arrays, value)
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
            if not isinstance(o, dict) or set(o) != set(r):  # jax.jit sorts the keys
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
        return map_structure(self, value)


def _to_numpy(backend: seqops.Backend, value: Any) -> Any:
    """Backend inputs -> NumPy (floating as float64) for the reference, structure kept."""
    if backend.owns(value):
        a = np.asarray(backend.to_numpy(value))
        return a.astype(np.float64) if a.dtype.kind == "f" else a
    return map_structure(lambda v: _to_numpy(backend, v), value)


def expected_outputs(reference_out: Any) -> list[np.ndarray | None]:
    """The flattened reference outputs as arrays (a Python float becomes a 0-d float64)."""
    return [None if r is None else np.asarray(r) for r in flatten(reference_out)]


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


def _metadata(registered: dict[str, Any], jax_x64: bool | None, seed: int) -> dict[str, Any]:
    return {
        "seed": seed,
        "seqops": seqops.__version__,
        "backends": {name: backend.versions() for name, (backend, ok) in sorted(registered.items()) if ok},
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "jax_x64": jax_x64,
    }


#: Seconds between two progress lines where stderr is not a terminal.
PROGRESS_INTERVAL = 10.0


@contextlib.contextmanager
def _progress(
    enabled: bool, count_checks: Callable[[], list[int]]
) -> Iterator[Callable[[str, list[Result]], None]]:
    """Progress on stderr; yields ``advance(description, results)``, to call after each case
    run (a case on one backend, device and dtype under one transformation), in order, with
    its results.

    The total is the number of checks the run makes: ``count_checks()`` (asked once, before
    the first run) says how many each case run makes (:func:`expected_checks`), and should a
    run make another number (a check that skips on what it finds), the total follows it.
    Checks, failures and skips are counted as the summary counts them
    (:meth:`Report.summary`), so the last line reads the summary's count out of itself. On a
    terminal, with rich installed: a rich bar; otherwise a line such as ``conformance:
    731/964 checks, 3 failed, 2m10s`` every :data:`PROGRESS_INTERVAL` seconds and one at the
    end. Nothing when not ``enabled``.
    """
    if not enabled:
        yield lambda description, results: None
        return
    planned = count_checks()
    runs, total = len(planned), sum(planned)
    counts = dict.fromkeys(("runs", "checks", "failed", "skipped"), 0)

    def tally() -> str:
        found = f"{counts['failed']} failed"
        return found + (f", {counts['skipped']} skipped" if counts["skipped"] else "")

    def count(results: list[Result]) -> int:
        nonlocal total
        checked = 0
        for r in results:
            counts["skipped" if r.status == "skip" else "checks"] += 1
            checked += r.status != "skip"
            counts["failed"] += r.status == "fail"
        total += checked - planned[counts["runs"]]
        counts["runs"] += 1
        return checked

    try:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    except ImportError:  # seqops without the cli extra: the lines below, on a terminal too
        terminal = False
    else:
        console = Console(stderr=True)
        terminal = console.is_terminal
    if terminal:
        columns = (
            TextColumn("{task.description:<45}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("checks, {task.fields[tally]}"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task("conformance", total=total, tally=tally())

            def advance_bar(description: str, results: list[Result]) -> None:
                checked = count(results)
                bar.update(task, advance=checked, total=total, description=description, tally=tally())

            yield advance_bar
        return
    start = last = time.monotonic()

    def advance(description: str, results: list[Result]) -> None:
        nonlocal last
        count(results)
        now = time.monotonic()
        if counts["runs"] == runs or now - last >= PROGRESS_INTERVAL:
            last = now
            done = f"{counts['checks']}/{_plural(total, 'check')}"
            print(f"conformance: {done}, {tally()}, {_duration(now - start)}", file=sys.stderr, flush=True)

    yield advance


def _duration(seconds: float) -> str:
    """``9s``, ``2m10s``, ``1h02m``."""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"
