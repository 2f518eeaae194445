"""Fast path on the JAX backend: ``jax.nn.dot_product_attention`` (cuDNN on GPU where it
applies, XLA otherwise) for ``scaled_dot_product_attention``.

It takes ``(B, T, N, H)`` arrays, so ``(..., L, E)`` inputs are broadcast over their leading
dimensions, flattened to ``B`` and moved to its layout (heads are dim -3 with
``enable_gqa``, else ``N = 1``). Where it differs from the contract it is corrected or
declined:

- a query row with no allowed key gives the mean of ``v`` there (it masks with a large
  finite negative): the plugin zeroes such rows (``where``, exact and cheap); ``-inf`` bias
  entries are turned into mask entries first so that nothing in it sees an infinity;
- float64 logits are computed in float32 (error ~1e-7): declined;
- no dropout, no weights, values as wide as the keys only: declined otherwise;
- on CPU it is declined: there the jitted portable path is faster (55.6 ms against 110 ms,
  B=2 H=8 N=1024 D=64 fp32, ``bench/results/cpu-2026-11-26.md``). ``ACCEPT_ON_CPU = True``
  (for tests and for measuring) lifts that rule.

Importing this module does not import JAX.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import seqops

DROPOUT = "dropout with an explicit rng: jax.nn.dot_product_attention has no dropout"
WEIGHTS = "return_weights=True: jax.nn.dot_product_attention does not return the weights"
FLOAT64 = "float64: jax.nn.dot_product_attention computes the logits in float32 (error ~1e-7)"
VALUE_WIDTH = "values of another width than the keys (Ev != E)"
EMPTY = "an empty query or key sequence"
ON_CPU = "on CPU the jitted portable attention is faster than jax.nn.dot_product_attention"

#: Accept calls on the CPU backend too (off: measured slower there).
ACCEPT_ON_CPU = False


@seqops.hookimpl
def seqops_implementations(backend: seqops.Backend) -> list[seqops.Implementation] | None:
    if backend.name != "jax":
        return None
    limitations = [seqops.Limitation(FLOAT64, dtype="float64")]
    if not ACCEPT_ON_CPU:
        limitations.append(seqops.Limitation(ON_CPU, device="cpu"))
    return [
        seqops.Implementation(
            seqops.ops.scaled_dot_product_attention,
            "jax-dot-product-attention",
            sdpa,
            decline=decline_sdpa,
            limitations=tuple(limitations),
        )
    ]


@functools.cache
def _on_cpu() -> bool:
    import jax

    return jax.default_backend() == "cpu"


_HALF_AND_SINGLE = ("float16", "bfloat16", "float32")


def decline_sdpa(
    backend: seqops.Backend, q: Any, k: Any, v: Any, /, *, dropout_p: float, return_weights: bool, **_: Any
) -> str | None:
    if return_weights:
        return WEIGHTS
    if not ACCEPT_ON_CPU and _on_cpu():
        return ON_CPU
    if dropout_p > 0.0:
        return DROPOUT
    if q.dtype.name == "float64":
        return FLOAT64
    if q.dtype.name not in _HALF_AND_SINGLE:
        return f"dtype {q.dtype} is not one jax.nn.dot_product_attention computes"
    if v.shape[-1] != q.shape[-1]:
        return VALUE_WIDTH
    if q.shape[-2] == 0 or k.shape[-2] == 0:
        return EMPTY
    return None


def sdpa(
    backend: seqops.Backend,
    q: Any,
    k: Any,
    v: Any,
    /,
    *,
    mask: Any,
    bias: Any,
    is_causal: bool,
    scale: float,
    enable_gqa: bool,
    **_: Any,
) -> Any:
    import jax
    import jax.numpy as jnp

    nd = 3 if enable_gqa else 2  # trailing dims that are not batch: ([N,] T, H)
    lead = tuple(jnp.broadcast_shapes(q.shape[:-nd], k.shape[:-nd], v.shape[:-nd]))
    batch = math.prod(lead)
    heads = q.shape[-3] if enable_gqa else 1
    length, source = q.shape[-2], k.shape[-2]

    def to_bthn(x: Any) -> Any:
        # (*lead, [N,] T, H) -> (B, T, N, H)
        n = x.shape[-3] if enable_gqa else 1
        x = jnp.broadcast_to(x, (*lead, *x.shape[x.ndim - nd :]))
        return jnp.swapaxes(jnp.reshape(x, (batch, n, x.shape[-2], x.shape[-1])), 1, 2)

    def to_bnts(x: Any) -> Any:
        # mask/bias broadcastable to (*lead, [N,] L, S) -> (B, N, L, S)
        target = (*lead, heads, length, source) if enable_gqa else (*lead, length, source)
        return jnp.reshape(jnp.broadcast_to(x, target), (batch, heads, length, source))

    allowed = None if mask is None else to_bnts(mask)
    if bias is not None:
        bias = to_bnts(bias)
        finite = bias > -jnp.inf  # -inf bias entries act as a mask (contract)
        allowed = finite if allowed is None else allowed & finite
        bias = jnp.where(allowed, bias, jnp.zeros((), bias.dtype))
    out = jax.nn.dot_product_attention(
        to_bthn(q), to_bthn(k), to_bthn(v), bias=bias, mask=allowed, scale=scale, is_causal=is_causal
    )  # (B, L, N, E)
    if allowed is not None:
        if is_causal:
            allowed = allowed & jnp.tril(jnp.ones((length, source), dtype=bool))
        # rows with no allowed key: zeros, not jax's mean of v
        row_ok = jnp.swapaxes(jnp.any(allowed, axis=-1), 1, 2)[..., None]  # (B, L, N, 1)
        out = jnp.where(row_ok, out, jnp.zeros((), out.dtype))
    out = jnp.swapaxes(out, 1, 2)  # (B, N, L, E)
    shape = (*lead, heads, length, out.shape[-1]) if enable_gqa else (*lead, length, out.shape[-1])
    return jnp.reshape(out, shape)
