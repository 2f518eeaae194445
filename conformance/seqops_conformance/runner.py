"""Run every case on every available backend × device × dtype and collect a :class:`Report`."""

from __future__ import annotations

import contextlib
import datetime
import platform
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import seqops
from seqops_conformance.cases import CASES, LIKE, OPS, Case
from seqops_conformance.report import Report, Result
from seqops_conformance.tolerances import TOLERANCES, error, tolerance


def run(
    backends: Sequence[str] | None = None,
    devices: Sequence[str] | None = None,
    dtypes: Sequence[str] | None = None,
    ops: Sequence[str] | None = None,
    progress: bool = True,
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

    Returns
    -------
    Report

    Raises
    ------
    ValueError
        For an unknown backend, dtype or op name.
    """
    registered = {backend.name: (backend, ok) for backend, ok in seqops.backends()}
    _require_known("backend", backends, registered)
    _require_known("dtype", dtypes, TOLERANCES)
    _require_known("op", ops, OPS)
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
        references: dict[tuple[str, bytes], tuple[np.ndarray, ...]] = {}
        inputs = {case.id: case.inputs() for case in cases}
        with _progress(progress, len(plan) * len(cases)) as advance:
            for backend, device, dtype_name, dtype in plan:
                for case in cases:
                    report.results.append(
                        _check(case, inputs[case.id], backend, device, dtype_name, dtype, references)
                    )
                    advance(f"{backend.name} {dtype_name} {case.op}")
    return report


def _check(
    case: Case,
    inputs: tuple[tuple[Any, ...], dict[str, Any]],
    backend: seqops.Backend,
    device: Any,
    dtype_name: str,
    dtype: Any,
    references: dict[tuple[str, bytes], tuple[np.ndarray, ...]],
) -> Result:
    """Run ``case`` on one backend, device and dtype and compare with the reference."""
    like = backend.from_numpy(np.zeros(1), dtype=dtype, device=device)
    where = backend.device(like)
    result = Result(
        backend.name, _label(where), dtype_name, case.op, case.id, "", None, tolerance(dtype_name), "fail"
    )
    if dtype_name in case.unsupported:
        result.status, result.message = "skip", case.unsupported[dtype_name]
        return result
    args, kwargs = inputs
    fn = getattr(seqops, case.op)
    try:
        to_backend = _Converter(backend, device, dtype, like)
        b_args, b_kwargs = to_backend(args), {k: to_backend(v) for k, v in kwargs.items()}
        result.implementation = seqops.explain(fn, *b_args, **b_kwargs).chosen
        out = fn(*b_args, **b_kwargs)
    except Exception as exc:  # noqa: BLE001 - any error is a failed check, not a crash
        result.message = f"raised {type(exc).__name__}: {exc}"
        return result
    # The reference sees the inputs as rounded to the dtype under test.
    r_args = _to_numpy(backend, b_args)
    r_kwargs = {k: _to_numpy(backend, v) for k, v in b_kwargs.items() if k != "like"}
    key = (case.id, _fingerprint((r_args, r_kwargs)))
    if key not in references:
        references[key] = case.reference(*r_args, **r_kwargs)
    expected = references[key]
    outs = out if isinstance(out, tuple) else (out,)
    if len(outs) != len(expected):
        result.message = f"returned {len(outs)} outputs, expected {len(expected)}"
        return result
    # Boolean outputs (masks) must be exact; all outputs of an op are of one kind.
    if all(ref.dtype == np.bool_ for ref in expected):
        result.tolerance = 0.0
    errors, problems = _compare(backend, outs, expected, dtype, where)
    comparable = len(errors) == len(outs) and all(np.isfinite(errors))
    result.error = max(errors) if comparable else None
    if not problems and result.error is not None and result.error <= result.tolerance:
        result.status = "pass"
    result.message = "; ".join(problems)
    return result


def _compare(
    backend: seqops.Backend, outs: tuple[Any, ...], expected: tuple[np.ndarray, ...], dtype: Any, where: Any
) -> tuple[list[float], list[str]]:
    """The error of each comparable output, and every way the outputs break the contract
    (library, dtype, device, shape, non-finite values)."""
    bool_dtype = backend.namespace().bool
    errors, problems = [], []
    for i, (o, ref) in enumerate(zip(outs, expected, strict=True)):
        label = f"output {i}" if len(outs) > 1 else "output"
        if not backend.owns(o):
            problems.append(
                f"{label} is a {type(o).__module__}.{type(o).__qualname__}, not a {backend.name} array"
            )
            continue
        want = bool_dtype if ref.dtype == np.bool_ else dtype
        if o.dtype != want:
            problems.append(f"{label} has dtype {o.dtype}, expected {want}")
        if backend.device(o) != where:
            problems.append(f"{label} is on device {_label(backend.device(o))}, expected {_label(where)}")
        if tuple(o.shape) != ref.shape:
            problems.append(f"{label} has shape {tuple(o.shape)}, expected {ref.shape}")
            continue
        errors.append(error(backend.to_numpy(o), ref))
        if not np.isfinite(errors[-1]):
            problems.append(f"{label} is not finite where the reference is, or the reverse")
    return errors, problems


class _Converter:
    """NumPy inputs -> backend arrays: floating arrays in the dtype under test, bool and
    integer arrays kept, parameter tuples converted field by field, ``LIKE`` replaced."""

    def __init__(self, backend: seqops.Backend, device: Any, dtype: Any, like: Any) -> None:
        self.backend, self.device, self.like = backend, device, like
        xp = backend.namespace()
        self.kinds = {"b": xp.bool, "i": xp.int64, "f": dtype}

    def __call__(self, value: Any) -> Any:
        if value is LIKE:
            return self.like
        if isinstance(value, np.ndarray):
            return self.backend.from_numpy(value, dtype=self.kinds[value.dtype.kind], device=self.device)
        if isinstance(value, tuple):
            converted = [self(v) for v in value]
            return type(value)(*converted) if hasattr(value, "_fields") else tuple(converted)
        return value


def _to_numpy(backend: seqops.Backend, value: Any) -> Any:
    """Backend inputs -> NumPy (floating as float64) for the reference, structure kept."""
    if backend.owns(value):
        a = np.asarray(backend.to_numpy(value))
        return a.astype(np.float64) if a.dtype.kind == "f" else a
    if isinstance(value, tuple):
        converted = [_to_numpy(backend, v) for v in value]
        return type(value)(*converted) if hasattr(value, "_fields") else tuple(converted)
    return value


def _fingerprint(value: Any) -> bytes:
    """Bytes identifying the (rounded) inputs, so equal inputs share one reference."""
    if isinstance(value, np.ndarray):
        return value.dtype.str.encode() + repr(value.shape).encode() + value.tobytes()
    if isinstance(value, dict):
        return b"{" + b",".join(k.encode() + b":" + _fingerprint(v) for k, v in value.items()) + b"}"
    if isinstance(value, tuple):
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
