"""The JAX backend (CPU, GPU, TPU; ``lax.scan`` for loops; PRNG-key randomness).

float64 exists only when ``jax_enable_x64`` is on, as in JAX itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import array_api_compat

from seqops import Backend, hookimpl


class JaxBackend(Backend):
    name = "jax"
    library = "jax"

    def owns(self, x: object, /) -> bool:
        return array_api_compat.is_jax_array(x)

    def versions(self) -> dict[str, str]:
        import jax
        import jaxlib

        return {"jax": jax.__version__, "jaxlib": jaxlib.__version__}

    def namespace(self) -> Any:
        import jax.numpy

        return jax.numpy

    def default_device(self) -> Any:
        # The namespace info answers None ("JAX's default"); name the device itself.
        import jax

        configured = jax.config.jax_default_device
        if configured is None or isinstance(configured, str):
            return jax.devices(configured)[0]
        return configured

    def devices(self) -> list[Any]:
        import jax

        return list(jax.devices())

    def floating_dtypes(self, device: Any = None) -> dict[str, Any]:
        import jax
        import jax.numpy as jnp

        dtypes = {"float16": jnp.float16, "bfloat16": jnp.bfloat16, "float32": jnp.float32}
        if jax.config.jax_enable_x64:
            dtypes["float64"] = jnp.float64
        return dtypes

    def from_numpy(self, a: Any, /, *, dtype: Any, device: Any = None) -> Any:
        import jax
        import jax.numpy as jnp

        x = jnp.asarray(a, dtype=dtype)
        return x if device is None else jax.device_put(x, device)

    def to_numpy(self, x: Any, /) -> Any:
        import jax.numpy as jnp
        import numpy as np

        if x.dtype in (jnp.float16, jnp.bfloat16):
            x = x.astype(jnp.float32)
        return np.asarray(x)

    def _key(self, rng: Any) -> Any:
        import jax

        if isinstance(rng, int) and not isinstance(rng, bool):
            return jax.random.key(rng)
        if isinstance(rng, jax.Array):
            return rng
        msg = f"rng for backend 'jax' must be an integer seed or a JAX PRNG key; got {type(rng).__name__}"
        raise TypeError(msg)

    def random_uniform(
        self, rng: Any, shape: tuple[int, ...], /, *, dtype: Any, device: Any, like: Any = None
    ) -> Any:
        import jax

        return jax.random.uniform(self._key(rng), shape, dtype=dtype)

    def random_normal(
        self, rng: Any, shape: tuple[int, ...], /, *, dtype: Any, device: Any, like: Any = None
    ) -> Any:
        import jax

        return jax.random.normal(self._key(rng), shape, dtype=dtype)

    def split_rng(self, rng: Any, n: int, /) -> list[Any]:
        import jax

        keys = jax.random.split(self._key(rng), n)
        return [keys[i] for i in range(n)]

    def scan(self, step: Callable[[Any, Any], tuple[Any, Any]], carry: Any, xs: Any, /) -> tuple[Any, Any]:
        import jax

        return jax.lax.scan(step, carry, xs)

    def local_shape(self, x: Any, /) -> tuple[Any, ...]:
        # One device's shard of a sharded array. A tracer (jax.jit) has no .sharding: its
        # type carries one (explicit mesh axes), else it is unknown and the global shape
        # stands. Symbolic sizes (jax.export) are returned as they are.
        import jax

        shape = tuple(x.shape)
        try:
            sharding = x.sharding if isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer) else None
            if sharding is None:
                sharding = jax.typeof(x).sharding
            return tuple(sharding.shard_shape(shape))
        except Exception:  # noqa: BLE001 - no sharding known (or a symbolic size): the whole array
            return shape

    @property
    def erf(self) -> Any:  # type: ignore[override]
        import jax

        return jax.lax.erf

    @property
    def solve_lower(self) -> Any:  # type: ignore[override]
        import functools

        import jax

        return functools.partial(jax.scipy.linalg.solve_triangular, lower=True)


@hookimpl(trylast=True)
def seqops_backends() -> list[Backend]:
    return [JaxBackend()]
