"""The PixelCNN masked convolution on ``torch.nn.functional.conv2d``.

``masked_conv2d``: ``conv2d(x, weight * mask, bias, padding=(kh // 2, kw // 2))``, the mask
of :func:`seqops.pixelcnn_mask` built with torch operations (stride 1, "same" padding for
the odd kernel sizes the contract admits). Half precision is computed on float32 copies and
cast back once, as the contract says.
"""

from __future__ import annotations

from typing import Any

import seqops

EMPTY = "an empty input or output (a size 0): the portable path returns the empty result"
UNKNOWN_SIZE = "an unknown size"

_K: dict[str, Any] = {}
# The masks (bool) by weight shape, mask type, groups and device: building one is ~12 small
# torch operations, ~10% of a (8, 16, 32, 32) convolution on a CPU. A few dozen at most.
_MASKS: dict[tuple[Any, ...], Any] = {}


def _load() -> dict[str, Any]:
    import torch

    _K.update(
        conv2d=torch.nn.functional.conv2d,
        arange=torch.arange,
        compiling=torch.compiler.is_compiling,
        float32=torch.float32,
        native=frozenset((torch.float32, torch.float64)),
    )
    return _K


def implementations() -> list[seqops.Implementation]:
    return [
        seqops.Implementation(
            seqops.ops.masked_conv2d, "torch-masked-conv2d", masked_conv2d, decline=decline_masked_conv2d
        )
    ]


def decline_masked_conv2d(
    backend: seqops.Backend, x: Any, weight: Any, bias: Any, /, *, mask_type: str, color_groups: int
) -> str | None:
    sizes = (*x.shape, weight.shape[0])
    if not all(isinstance(s, int) for s in sizes):
        return UNKNOWN_SIZE
    if 0 in sizes:
        return EMPTY
    return None


def _mask(weight: Any, mask_type: str, color_groups: int, k: dict[str, Any]) -> Any:
    """:func:`seqops.pixelcnn_mask` for ``weight (out, in, kh, kw)``, as a bool tensor."""
    out_channels, in_channels, kh, kw = weight.shape
    arange = k["arange"]
    device = weight.device
    rows = arange(kh, device=device)[:, None]
    cols = arange(kw, device=device)[None, :]
    before = (rows < kh // 2) | ((rows == kh // 2) & (cols < kw // 2))  # (kh, kw)
    centre = (rows == kh // 2) & (cols == kw // 2)
    out_group = arange(out_channels, device=device) // (out_channels // color_groups)
    in_group = arange(in_channels, device=device) // (in_channels // color_groups)
    sees = (
        out_group[:, None] > in_group[None, :]
        if mask_type == "A"
        else out_group[:, None] >= in_group[None, :]
    )
    return before | (centre & sees[:, :, None, None])  # (out, in, kh, kw)


def masked_conv2d(
    backend: seqops.Backend, x: Any, weight: Any, bias: Any, /, *, mask_type: str, color_groups: int
) -> Any:
    k = _K or _load()
    dtype = weight.dtype
    if x.dtype not in k["native"]:
        f32 = k["float32"]
        x, weight, bias = x.to(f32), weight.to(f32), None if bias is None else bias.to(f32)
    if k["compiling"]():  # a traced graph builds it (a tensor made while tracing is not kept)
        keep = _mask(weight, mask_type, color_groups, k)
    else:
        key = (tuple(weight.shape), mask_type, color_groups, weight.device)
        keep = _MASKS.get(key)
        if keep is None:
            if len(_MASKS) >= 64:
                _MASKS.clear()
            keep = _MASKS[key] = _mask(weight, mask_type, color_groups, k)
    kh, kw = weight.shape[-2:]
    out = k["conv2d"](x, weight * keep, bias, 1, (kh // 2, kw // 2))
    return out.to(dtype)
