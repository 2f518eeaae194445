"""Gradient clipping on torch's kernels: ``clip_grad_norm`` through
``torch.nn.utils.get_total_norm`` (per-tensor ``vector_norm`` kernels, foreach where torch
has them) and one multiply per tensor, ``clip_grad_value`` through ``torch.clamp``.

The portable path measured 3.6x (norm) and 5.2x (value) of those calls on ten 512 x 512
float32 gradients (``bench/ops_table.py``): array-api-compat's ``clip`` for torch is written
in Python, and the norm of each tensor takes separate kernels. Half precision is declined for
the norm (torch's norm of a float16 tensor is computed and returned in float16; the contract
computes it in float32), and so are gradients of several dtypes (the total's dtype rule) and
an empty gradient under the infinity norm (torch has no identity for its max), and tensors
batched by ``torch.func.vmap`` (the foreach norm has no batching rule).
"""

from __future__ import annotations

from typing import Any

import seqops

from ._functorch import vmapped

HALF = "half precision: torch's norm of a float16/bfloat16 tensor is float16/bfloat16, the contract's float32"
MIXED = "gradients of several dtypes: the total norm's dtype is the portable path's rule"
EMPTY_INF = "an empty gradient with norm_type=inf: torch's foreach norm has no identity for max"
VMAPPED = "a tensor batched by torch.func.vmap: torch's foreach norm has no batching rule"

_K: dict[str, Any] = {}


def _load() -> dict[str, Any]:
    import torch

    _K.update(
        total_norm=torch.nn.utils.get_total_norm,
        clamp=torch.clamp,
        native=frozenset((torch.float32, torch.float64)),
    )
    return _K


def implementations() -> list[seqops.Implementation]:
    ops = seqops.ops
    return [
        seqops.Implementation(
            ops.clip_grad_norm, "torch-clip-grad-norm", clip_grad_norm, decline=decline_clip_grad_norm
        ),
        seqops.Implementation(ops.clip_grad_value, "torch-clip-grad-value", clip_grad_value),
    ]


def decline_clip_grad_norm(
    backend: seqops.Backend, grads: list[Any], /, *, max_norm: float, norm_type: float, eps: float
) -> str | None:
    native = (_K or _load())["native"]
    dtype = grads[0].dtype
    if dtype not in native:
        return HALF
    if any(g.dtype is not dtype for g in grads):
        return MIXED
    if norm_type == float("inf") and any(g.numel() == 0 for g in grads):
        return EMPTY_INF
    if vmapped(*grads):
        return VMAPPED
    return None


def clip_grad_norm(
    backend: seqops.Backend, grads: list[Any], /, *, max_norm: float, norm_type: float, eps: float
) -> Any:
    k = _K or _load()
    total = k["total_norm"](grads, norm_type)
    coef = (max_norm / (total + eps)).clamp(max=1.0)
    return [g * coef for g in grads], total


def clip_grad_value(backend: seqops.Backend, grads: list[Any], /, *, clip_value: float) -> Any:
    clamp = (_K or _load())["clamp"]
    return [clamp(g, -clip_value, clip_value) for g in grads]
