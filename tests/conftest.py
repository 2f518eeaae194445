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


@pytest.fixture(scope="session")
def torch():
    """The torch module, or a skip saying it is not installed."""
    return pytest.importorskip("torch", reason="torch is not installed")


@pytest.fixture(scope="session")
def jax():
    """The jax module with float64 enabled, or a skip saying why not."""
    jax = pytest.importorskip("jax", reason="jax is not installed")
    if not jax.config.jax_enable_x64:
        pytest.skip("float64 checks need JAX_ENABLE_X64=1 (set here before jax loads)")
    return jax


def assert_kept(backend: seqops.Backend, out: object, like: object, dtype: object) -> None:
    """`out` is an array of `backend`, of `dtype`, on the device of `like`."""
    assert backend.owns(out), f"{backend.name}: result is a {type(out).__module__}.{type(out).__qualname__}"
    assert out.dtype == dtype, f"{backend.name}: dtype {out.dtype} != {dtype}"  # type: ignore[attr-defined]
    assert backend.device(out) == backend.device(like)
