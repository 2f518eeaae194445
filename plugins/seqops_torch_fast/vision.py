"""The ViT patch embedding as torch's convolution with stride = patch (float32/float64), or
the projection and its bias in one ``torch.addmm`` (other dtypes).

The portable ``vit_embed`` flattens the patches (a copy of the images) and runs
``patches @ w_patch + b_patch``: 1.58x of ``F.conv2d`` with stride = patch on this CPU
(``bench/ops_table.py``'s row, ViT-B/16 on 8 × 3 × 224², float32, two threads; oneDNN's
convolution runs near peak, the GEMM on the copied patches does not), and one ``addmm``
on the same patches 1.54x. Here ``w_patch (C·p·p, D)`` is laid out once per call as the
convolution's ``(D, C, p, p)`` weight (a 768 × 768 copy, against the 4.8 MB of patches the
portable path copies) and ``F.conv2d`` adds the bias: 1.03-1.08x. Half precision keeps the
``addmm`` form (torch's CPU convolutions do not all take it). A call without a class token
or positions is declined (the portable path).

``shifted_window_mask``'s additive form is one ``torch.where`` from the bool mask: the
portable ``(float(mask) - 1) · 100`` (three passes; NumPy elides its temporaries, torch
allocates each) took 1.2-1.4x of Swin's ``(labels differ) · -100`` on torch, ``where`` 0.5x
of it. The bool mask is built as the portable path builds it (region labels, windows in
raster order, int8 labels compared).
"""

from __future__ import annotations

from typing import Any

import seqops

NO_TOKEN = "no class token or no positional embedding: the portable path"

_K: dict[str, Any] = {}


def _load() -> dict[str, Any]:
    import torch

    _K.update(
        torch=torch,
        addmm=torch.addmm,
        cat=torch.cat,
        conv2d=torch.nn.functional.conv2d,
        convolved=frozenset((torch.float32, torch.float64)),
    )
    return _K


def implementations() -> list[seqops.Implementation]:
    return [
        seqops.Implementation(seqops.ops.vit_embed, "torch-vit-embed", vit_embed, decline=decline_vit_embed),
        seqops.Implementation(
            seqops.ops.shifted_window_mask, "torch-shifted-window-mask", shifted_window_mask
        ),
    ]


def decline_vit_embed(
    backend: seqops.Backend,
    images: Any,
    w_patch: Any,
    b_patch: Any,
    cls_token: Any,
    pos_embed: Any,
    /,
    *,
    patch_size: int,
) -> str | None:
    return NO_TOKEN if cls_token is None or pos_embed is None else None


def vit_embed(
    backend: seqops.Backend,
    images: Any,
    w_patch: Any,
    b_patch: Any,
    cls_token: Any,
    pos_embed: Any,
    /,
    *,
    patch_size: int,
) -> Any:
    k = _K or _load()
    p = patch_size
    b, c, h, w = images.shape
    n, d = (h // p) * (w // p), w_patch.shape[-1]
    if images.dtype in k["convolved"]:
        # rows of w_patch are the patch features flattened (C, ph, pw), as patchify's
        weight = w_patch.reshape(c, p, p, d).permute(3, 0, 1, 2).contiguous()  # (D, C, p, p)
        tokens = k["conv2d"](images, weight, b_patch, stride=p).reshape(b, d, n).transpose(1, 2)
    else:
        x = images.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)  # (B, Hp, Wp, C, ph, pw)
        patches = x.reshape(b * n, c * p * p)  # each patch flattened (C, ph, pw), as the portable path
        flat = patches @ w_patch if b_patch is None else k["addmm"](b_patch, patches, w_patch)
        tokens = flat.reshape(b, n, d)
    cls = cls_token.reshape(1, 1, d).expand(b, 1, d)
    return k["cat"]((cls, tokens), 1) + pos_embed


SWIN_MASK_VALUE = -100.0  # Swin's additive value between two regions (the portable path's)


def shifted_window_mask(
    backend: seqops.Backend,
    height: int,
    width: int,
    window_size: int,
    shift_size: int,
    /,
    *,
    as_bias: bool,
    dtype: Any,
    device: Any,
) -> Any:
    torch = (_K or _load())["torch"]
    ws = window_size

    def labels(size: int) -> Any:  # 0 for [0, -ws), 1 for [-ws, -shift), 2 after (Swin's slices)
        at = torch.arange(size, device=device)
        if shift_size == 0:  # one region
            return torch.zeros_like(at)
        return (at >= size - ws).to(at.dtype) + (at >= size - shift_size).to(at.dtype)

    cnt = labels(height)[:, None] * 3 + labels(width)[None, :]  # (H, W), Swin's `cnt`
    windows = cnt.reshape(height // ws, ws, width // ws, ws).permute(0, 2, 1, 3).reshape(-1, ws * ws)
    windows = windows.to(torch.int8)  # (nW, N) in raster order, labels 0..8
    mask = windows[:, :, None] == windows[:, None, :]  # (nW, N, N)
    if not as_bias:
        return mask
    zero = torch.zeros((), dtype=dtype, device=device)
    return torch.where(mask, zero, torch.full((), SWIN_MASK_VALUE, dtype=dtype, device=device))
