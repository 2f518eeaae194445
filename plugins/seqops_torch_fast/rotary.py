"""Rotary position embeddings in one fused multiply-add: ``x · cos + rot(x) · sin``.

The portable ``apply_rotary`` computes the two halves of each pair separately (four products,
two sums and a concatenation of half-width tensors); here the angles' ``cos`` and signed
``sin`` are laid out once at the width of the rotated features (``(..., L, d)``, small: one
row per position), the features are swapped within their pairs by one concatenation
(``"halves"``) or one reshape and flip (``"interleaved"``), and ``torch.addcmul`` gives the
result: 0.59x of Hugging Face's ``rotate_half`` form against 1.02x for the portable path
(``bench/ops_table.py``'s row, 2 × 8 × 1024 × 64, float32). The angles are computed as the
portable path computes them (float32, float64 for float64 input), half precision is rotated
in float32 and rounded once. Every call is accepted.
"""

from __future__ import annotations

from typing import Any

import seqops

_K: dict[str, Any] = {}


def _load() -> dict[str, Any]:
    import torch

    _K.update(
        addcmul=torch.addcmul,
        cat=torch.cat,
        stack=torch.stack,
        arange=torch.arange,
        float32=torch.float32,
        float64=torch.float64,
    )
    return _K


def implementations() -> list[seqops.Implementation]:
    return [seqops.Implementation(seqops.ops.apply_rotary, "torch-rotary", apply_rotary)]


def apply_rotary(
    backend: seqops.Backend, x: Any, positions: Any, /, *, base: float, layout: str, rotary_dim: int
) -> Any:
    k = _K or _load()
    dtype = x.dtype
    angle_dtype = k["float64"] if dtype == k["float64"] else k["float32"]
    half = rotary_dim // 2
    exponents = k["arange"](0, rotary_dim, 2, dtype=angle_dtype, device=x.device)
    inv_freq = 1.0 / (base ** (exponents / rotary_dim))  # (d/2,)
    angles = positions.to(angle_dtype)[..., None] * inv_freq  # (..., L, d/2)
    cos, sin = angles.cos(), angles.sin()
    rotated = x[..., :rotary_dim].to(angle_dtype)
    if layout == "halves":  # pairs (i, i + d/2): (x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin)
        cos_d, sin_d = k["cat"]((cos, cos), -1), k["cat"]((-sin, sin), -1)
        swapped = k["cat"]((rotated[..., half:], rotated[..., :half]), -1)
    else:  # pairs (2i, 2i + 1)
        cos_d = k["stack"]((cos, cos), -1).flatten(-2)
        sin_d = k["stack"]((-sin, sin), -1).flatten(-2)
        swapped = rotated.unflatten(-1, (half, 2)).flip(-1).flatten(-2)
    out = k["addcmul"](rotated * cos_d, swapped, sin_d).to(dtype)
    if rotary_dim == x.shape[-1]:
        return out
    passed = x[..., rotary_dim:].expand(*out.shape[:-1], x.shape[-1] - rotary_dim)
    return k["cat"]((out, passed), -1)
