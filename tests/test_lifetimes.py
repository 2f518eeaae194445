"""Results are freed as soon as the caller drops them: no reference cycle inside seqops keeps
them (or their inputs' copies) for the cyclic garbage collector. Such a cycle held every clipped
gradient of `clip_grad_norm` and `clip_grad_value` (a recursive closure in the container
rebuild) until a collection, a step's gradients more per training step; on a GPU, memory the
caching allocator cannot reuse. Checked on every conformance case with every implementation
that accepts it, with the collector off."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import numpy as np
import pytest
from seqops_conformance import runner
from seqops_conformance.cases import CASES
from seqops_conformance.structure import flatten

import seqops

BACKENDS = {backend.name: (backend, ok) for backend, ok in seqops.backends()}


@pytest.fixture
def collector_off() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.mark.parametrize("name", ["numpy", "torch", "jax"])
def test_every_result_is_freed_when_the_caller_drops_it(name: str, collector_off: None) -> None:
    # the libraries whose arrays take weak references (array-api-strict's and Dask's do not)
    backend, availability = BACKENDS[name]
    if not availability:
        pytest.skip(f"backend {name!r} unavailable: {availability.reason}")
    xp = backend.namespace()
    target = runner.Target(backend, backend.default_device(), "float32", xp.float32)
    kept: dict[str, list[str]] = {}
    checked = 0
    for case in CASES:
        args, kwargs = runner._backend_inputs(case.build(np.random.default_rng(0)), target)
        inputs = [id(x) for x in flatten((args, kwargs))]
        for implementation, run_it in runner.implementations(case, args, kwargs):
            if name == "jax" and implementation.startswith("portable"):
                continue  # the code NumPy and torch ran (eager JAX takes 100 s for all of it)
            out = run_it()
            refs = [_weak(x) for x in flatten(out) if backend.owns(x) and id(x) not in inputs]
            refs = [ref for ref in refs if ref is not None]
            del out
            checked += bool(refs)
            if any(ref() is not None for ref in refs):
                kept.setdefault(f"{case.op} via {implementation}", []).append(case.name)
    assert checked > (0 if name == "jax" else len(CASES))  # (NumPy, torch: many cases twice or more)
    assert not kept, kept


def _weak(x: object) -> weakref.ref[object] | None:
    try:
        return weakref.ref(x)
    except TypeError:  # a NumPy scalar (the 0-d result of a reduction) takes none
        return None
