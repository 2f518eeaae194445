"""Traced transformations: the ``"jit"``, ``"vmap"`` and ``"compile"`` checks.

The floating inputs of a case become the arguments of a function calling the op (boolean
and integer arrays, seeds and options stay constants of it, like the configuration of a
model), and that function is transformed by the host framework (:data:`DRIVERS`):

``jit``
    ``jax.jit``: the op traced and compiled by XLA, whose fusions may round differently.
``vmap``
    ``jax.vmap`` (under ``jax.jit``, as models use it) over a batch of two: the case's
    inputs and those of the next seed, stacked along a new leading axis; each batch
    element is compared with its own reference.
``compile``
    ``torch.compile`` (TorchDynamo + inductor, or the backend named by the environment
    variable ``SEQOPS_CONFORMANCE_COMPILE_BACKEND``), the cache reset per case. Off by
    default (``seqops conformance --transformation compile``): inductor compiles each case
    for seconds.
``sharded``
    JAX inputs sharded over a mesh of 8 devices, run eagerly and under ``jax.jit``, with
    the output shardings and the compiled HLO checked too (:mod:`seqops_conformance.sharding`;
    off by default: it needs ``XLA_FLAGS=--xla_force_host_platform_device_count=8`` on a CPU).

The outputs are judged exactly as the eager ones (:func:`seqops_conformance.runner.judge`):
same tolerances, and they must keep the library, dtype and device. Another backend's
transformation is one more entry of :data:`DRIVERS`.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

import seqops
from seqops_conformance.cases import Case
from seqops_conformance.report import Result
from seqops_conformance.structure import fill, take, template

Transform = Callable[[Callable[..., Any]], Callable[..., Any]]


def _jax_jit(f: Callable[..., Any]) -> Callable[..., Any]:
    import jax

    return jax.jit(f)  # type: ignore[no-any-return]


def _jax_vmap(f: Callable[..., Any]) -> Callable[..., Any]:
    import jax

    return jax.jit(jax.vmap(f))  # type: ignore[no-any-return]


def _torch_compile(f: Callable[..., Any]) -> Callable[..., Any]:
    import torch

    torch._dynamo.reset()  # a fresh cache per case: no recompilation limit, no reuse
    backend = os.environ.get("SEQOPS_CONFORMANCE_COMPILE_BACKEND", "inductor")
    compiled = torch.compile(f, backend=backend)

    def run(*args: Any) -> Any:
        with warnings.catch_warnings():
            # array-api-compat's lru_cache'd type checks, traced through: harmless, one per case
            warnings.filterwarnings("ignore", message="Dynamo detected a call to a `functools.lru_cache`")
            return compiled(*args)

    return run


DRIVERS: dict[str, dict[str, Transform]] = {
    "jit": {"jax": _jax_jit},
    "vmap": {"jax": _jax_vmap},
    "compile": {"torch": _torch_compile},
    "sharded": {"jax": _jax_jit},  # inputs sharded first: seqops_conformance.sharding
}
"""Transformation -> backend name -> ``transform(f) -> transformed f``."""


def applies(transformation: str, backend: seqops.Backend) -> bool:
    """Whether ``transformation`` has a driver for ``backend``."""
    return backend.name in DRIVERS[transformation]


def coverage_note(transformations: list[str], backends: set[str]) -> str:
    """The report's note on where the traced transformations ran."""
    parts = []
    for t in transformations:
        on = sorted(backends & set(DRIVERS[t]))
        parts.append(f"{t} on {', '.join(on) or 'no backend of this run'}")
    return (
        "traced transformations (the floating inputs traced, the outputs judged as the eager ones): "
        + "; ".join(parts)
        + f" (drivers: {', '.join(f'{t} on {sorted(DRIVERS[t])}' for t in transformations)})"
    )


def vmap_skip(
    inputs: tuple[tuple[Any, ...], dict[str, Any]],
    other_inputs: Callable[[], tuple[tuple[Any, ...], dict[str, Any]]],
) -> str | None:
    """Why ``vmap`` has nothing to check on these inputs (no floating input to batch over, or
    another seed's inputs of other shapes), else ``None``."""
    leaves = template(inputs)[1]
    if not leaves:
        return "no floating input to batch over"
    if [a.shape for a in template(other_inputs())[1]] != [a.shape for a in leaves]:
        return "the inputs of another seed have other shapes"
    return None


def check(
    case: Case,
    inputs: tuple[tuple[Any, ...], dict[str, Any]],
    backend: seqops.Backend,
    device: Any,
    dtype_name: str,
    dtype: Any,
    references: dict[tuple[Any, ...], Any],
    transformation: str,
    other_inputs: Callable[[], tuple[tuple[Any, ...], dict[str, Any]]],
) -> Result:
    """Check ``case`` under ``transformation`` on one backend, device and dtype.

    ``other_inputs()`` builds the case's inputs of another seed, the second batch element
    of ``vmap``.
    """
    from seqops_conformance.runner import _Converter, _label, judge
    from seqops_conformance.tolerances import tolerance

    if transformation == "sharded":
        from seqops_conformance import sharding

        return sharding.check(case, inputs, backend, device, dtype_name, dtype, references)
    like = backend.from_numpy(np.zeros(1), dtype=dtype, device=device)
    where = backend.device(like)
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
        transformation=transformation,
    )
    structure, leaves, _ = template(inputs)
    to_backend = _Converter(backend, device, dtype, like)
    batches = [leaves]
    if transformation == "vmap":
        reason = vmap_skip(inputs, other_inputs)
        if reason is not None:
            result.status, result.message = "skip", reason
            return result
        batches.append(template(other_inputs())[1])
    try:
        b_structure = to_backend(structure)
        primals = [[to_backend(leaf) for leaf in batch] for batch in batches]
        b_args, b_kwargs = fill(b_structure, primals[0])
        result.implementation = case.implementation(*b_args, **b_kwargs)
    except Exception as exc:  # noqa: BLE001 - any error is a failed check, not a crash
        result.message = f"raised {type(exc).__name__}: {exc}"
        return result

    def f(*p: Any) -> Any:
        args, kwargs = fill(b_structure, p)
        return case.function(*args, **kwargs)

    transformed = DRIVERS[transformation][backend.name](f)
    try:
        if transformation == "vmap":
            xp = backend.namespace()
            stacked = [xp.stack(pair) for pair in zip(*primals, strict=True)]
            out = transformed(*stacked)
            outs = [take(out, i) for i in range(len(batches))]
        else:
            outs = [transformed(*primals[0])]
    except Exception as exc:  # noqa: BLE001 - any error is a failed check, not a crash
        result.message = f"{transformation} raised {type(exc).__name__}: {exc}"
        return result
    elements = []
    for batch, out in zip(primals, outs, strict=True):
        args, kwargs = fill(b_structure, batch)
        elements.append(dataclasses.replace(result))
        judge(elements[-1], case, backend, args, kwargs, out, dtype, where, references)
    errors = [e.error for e in elements]
    result.tolerance = elements[0].tolerance
    result.error = None if None in errors else max(e for e in errors if e is not None)
    result.status = "pass" if all(e.status == "pass" for e in elements) else "fail"
    prefix = (lambda i: f"batch element {i}: ") if len(elements) > 1 else (lambda i: "")
    result.message = "; ".join(prefix(i) + e.message for i, e in enumerate(elements) if e.message)
    return result
