"""``softmax`` and ``log_softmax`` on JAX: ``jax.nn.softmax`` and ``jax.nn.log_softmax``.

The portable math shifts each row by its maximum, or by 0 where that maximum is not finite
(``where(isfinite(m), m, 0)``). XLA's CPU compiler fuses no ``select`` into its YNNPACK
kernels, so the guard split the maximum from the shifted exponentials: one more pass over
the input, 1.03-1.18x of ``jax.nn.softmax`` and 1.12-1.39x of ``jax.nn.log_softmax`` under
``jax.jit`` (64 × 32000, float32, 2 cores; ``bench/ops_table.py``), where ``jax.nn`` runs
the maximum and the exponentials as one kernel. The guard changes nothing a softmax
returns: a row of ``-inf`` is NaN either way (``0 / 0``, or ``-inf - -inf``), and a row with
a ``+inf`` is NaN in every entry with ``jax.nn`` as in the float64 reference (the portable
path keeps its finite entries at 0). Half precision is computed in float32 (the portable
rule) and rounded once to its dtype.
"""

from __future__ import annotations

from typing import Any

import seqops

_HALF = ("float16", "bfloat16")


def softmax(backend: seqops.Backend, x: Any, /, *, axis: int) -> Any:
    import jax
    import jax.numpy as jnp

    if x.dtype.name in _HALF:
        return jax.nn.softmax(x.astype(jnp.float32), axis=axis).astype(x.dtype)
    return jax.nn.softmax(x, axis=axis)


def log_softmax(backend: seqops.Backend, x: Any, /, *, axis: int) -> Any:
    import jax
    import jax.numpy as jnp

    if x.dtype.name in _HALF:
        return jax.nn.log_softmax(x.astype(jnp.float32), axis=axis).astype(x.dtype)
    return jax.nn.log_softmax(x, axis=axis)
