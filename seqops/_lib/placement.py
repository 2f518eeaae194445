"""Where seqops creates the helper arrays an op needs beside its inputs.

Masks, positions, one-hot or gather indices and zero states are made with ``device=`` of
the input they meet. For an array in one memory that is its device. A JAX array sharded
over several devices answers its *sharding* as its ``device`` (``x.device`` is a
``NamedSharding``): a helper made there would be cut along the input's axes whatever its
own shape, which fails (a 1-D ``arange`` over a 2-D mesh) or shards it wrongly (a causal
mask split on both of its axes like the batch axis of the input). Such helpers are made
with ``device=None`` instead: JAX places them uncommitted and moves them where XLA
chooses when they meet the sharded input (replicated, or sharded as the computation
needs), eagerly as under ``jax.jit``. No framework is imported here.
"""

from __future__ import annotations

import array_api_compat

from seqops._lib.typing import Array, Device


def helper_device(x: Array, /) -> Device | None:
    """The ``device=`` for a helper array created to meet ``x``: the device of ``x``, or
    ``None`` (the library's default placement, uncommitted on JAX) when ``x`` is spread
    over several devices (its device is a placement with a ``device_set`` of more than one
    device: a sharded JAX array). Under ``jax.jit`` a tracer has no device: ``None`` too."""
    device = array_api_compat.device(x)
    spread = getattr(device, "device_set", None)
    if spread is not None and len(spread) > 1:
        return None
    return device


__all__ = ["helper_device"]
