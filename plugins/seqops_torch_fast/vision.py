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

``shifted_window_mask`` has no fast path here: the portable construction, whose additive form
is one select, runs as fast on torch (0.96-1.07x of the int8-label form this module had).
"""

from __future__ import annotations

from typing import Any

import seqops

NO_TOKEN = "no class token or no positional embedding: the portable path"

_K: dict[str, Any] = {}


def _load() -> dict[str, Any]:
    import torch

    _K.update(
        addmm=torch.addmm,
        cat=torch.cat,
        conv2d=torch.nn.functional.conv2d,
        convolved=frozenset((torch.float32, torch.float64)),
    )
    return _K


def implementations() -> list[seqops.Implementation]:
    return [
        seqops.Implementation(seqops.ops.vit_embed, "torch-vit-embed", vit_embed, decline=decline_vit_embed),
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
