"""Each backend's own services: namespace, dtypes, devices, random draws, scan, erf."""

from __future__ import annotations

import math

import numpy as np
import pytest

import seqops


def test_namespace_dtypes_and_device(backend: seqops.Backend) -> None:
    dtypes = backend.floating_dtypes()
    assert {"float32", "float64"} <= set(dtypes)
    x = backend.from_numpy(np.arange(3.0), dtype=dtypes["float32"])
    assert backend.owns(x)
    assert x.dtype == dtypes["float32"]
    assert backend.device(x) == backend.default_device()
    assert backend.default_device() in backend.devices()
    assert not backend.owns(np.arange(3.0)) or backend.name == "numpy"
    np.testing.assert_array_equal(backend.to_numpy(x), [0.0, 1.0, 2.0])


@pytest.mark.parametrize("draw", ["random_uniform", "random_normal"])
def test_random_draws_are_reproducible(backend: seqops.Backend, draw: str) -> None:
    dtype = backend.floating_dtypes()["float32"]
    device = backend.default_device()
    sample = getattr(backend, draw)
    a = backend.to_numpy(sample(5, (1000,), dtype=dtype, device=device))
    b = backend.to_numpy(sample(5, (1000,), dtype=dtype, device=device))
    c = backend.to_numpy(sample(6, (1000,), dtype=dtype, device=device))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    if draw == "random_uniform":
        assert a.min() >= 0.0 and a.max() < 1.0 and abs(a.mean() - 0.5) < 0.05
    else:
        assert abs(a.mean()) < 0.1 and abs(a.std() - 1.0) < 0.1


def test_rng_of_the_wrong_kind_is_a_type_error(backend: seqops.Backend) -> None:
    dtype = backend.floating_dtypes()["float32"]
    with pytest.raises(TypeError, match="rng for backend .* must be an integer seed"):
        backend.random_uniform("seed", (2,), dtype=dtype, device=backend.default_device())


def test_scan_carries_and_stacks(backend: seqops.Backend) -> None:
    xp = backend.namespace()
    xs = backend.from_numpy(
        np.arange(1.0, 6.0)[:, None] * np.ones((5, 2)), dtype=backend.floating_dtypes()["float64"]
    )

    def step(carry, x):
        carry = carry + x
        return carry, carry * 2

    carry, ys = backend.scan(step, xp.zeros(2, dtype=xs.dtype), xs)
    np.testing.assert_array_equal(backend.to_numpy(carry), [15.0, 15.0])
    np.testing.assert_array_equal(backend.to_numpy(ys)[:, 0], 2 * np.cumsum(np.arange(1.0, 6.0)))


def test_jax_scan_is_lax_scan() -> None:
    """A jitted scan over 1000 steps traces the step once (no unrolling)."""
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    backend = next(b for b, _ in seqops.backends() if b.name == "jax")
    traced = []

    def step(carry, x):
        traced.append(1)
        return carry + x, carry

    run = jax.jit(lambda xs: backend.scan(step, jnp.zeros(()), xs))
    carry, ys = run(jnp.ones(1000))
    assert float(carry) == 1000.0 and ys.shape == (1000,)
    assert len(traced) == 1


def test_native_erf_when_offered(backend: seqops.Backend) -> None:
    if backend.erf is None:
        pytest.skip(f"backend {backend.name!r} offers no native erf: the portable formula is used")
    x = np.linspace(-4, 4, 101)
    out = backend.to_numpy(backend.erf(backend.from_numpy(x, dtype=backend.floating_dtypes()["float64"])))
    np.testing.assert_allclose(out, [math.erf(t) for t in x], rtol=1e-14, atol=1e-15)
