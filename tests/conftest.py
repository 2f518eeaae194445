"""Shared fixtures: one `backend` parameter per registered backend, skipped with the reason
when its library is missing or has no device."""

from __future__ import annotations

import os

import pytest

# float64 is part of every backend's contract; JAX only has it with x64 enabled.
os.environ.setdefault("JAX_ENABLE_X64", "1")

import seqops  # noqa: E402

BACKENDS = {backend.name: (backend, ok) for backend, ok in seqops.backends()}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> seqops.Backend:
    """Each registered backend; unavailable ones skip with their reason."""
    chosen, availability = BACKENDS[request.param]
    if not availability:
        pytest.skip(f"backend {chosen.name!r} unavailable: {availability.reason}")
    return chosen


@pytest.fixture
def xp(backend: seqops.Backend):
    """The Array API namespace of `backend`."""
    return backend.namespace()
