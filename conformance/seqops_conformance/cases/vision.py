"""Cases of the vision family: ViT patches and embedding, Swin windows, window attention and patch merging."""

from __future__ import annotations

from functools import partial
from typing import Any

from seqops_conformance.cases._base import LIKE, _add, _arrays, _fixed, _linear_weights, _normal, _single
from seqops_conformance.cases.attention import _mha_params
from seqops_conformance.references import vision as ref

# One image shape for the whole family: batch 2, 3 channels, 4 x 6 pixels, patches and
# windows of 2 (6 patches or windows per image); window attention on 8 features.
_IMG = (2, 3, 4, 6)


_HWC = (2, 4, 6, 3)


_add(
    "patchify",
    {
        "p=2": partial(_arrays, _IMG, patch_size=2),
        "channels_last": partial(_arrays, _HWC, patch_size=2, channels_last=True),
        "edge: empty batch": partial(_arrays, (0, 3, 4, 6), patch_size=2),
        "edge: H=0": partial(_arrays, (2, 3, 0, 6), patch_size=2),
    },
    _single(ref.patchify),
    exact=True,
)


def _unpatchify(rng, batch=2, **options):
    return (_normal(rng, batch, 6, 12, scale=1.0), 2, (4, 6)), options


_add(
    "unpatchify",
    {
        "(H, W)": _unpatchify,
        "channels_last channels=3": partial(_unpatchify, channels=3, channels_last=True),
        "edge: empty batch": partial(_unpatchify, batch=0),
    },
    _single(ref.unpatchify),
    exact=True,
)


def _vit(rng, *, bias=True, batch=2):
    w, b = _linear_weights(rng, 12, 8, bias)
    cls, pos = _normal(rng, 8), _normal(rng, 7, 8)
    return (_normal(rng, batch, *_IMG[1:], scale=1.0), w, b, cls, pos), {"patch_size": 2}


_add(
    "vit_embed",
    {"bias": _vit, "no bias": partial(_vit, bias=False), "edge: empty batch": partial(_vit, batch=0)},
    _single(ref.vit_embed),
    grad=("bias",),
)


_add(
    "window_partition",
    {
        "ws=2": lambda rng: ((_normal(rng, *_HWC, scale=1.0), 2), {}),
        "edge: empty batch": lambda rng: ((_normal(rng, 0, 4, 6, 3, scale=1.0), 2), {}),
    },
    _single(ref.window_partition),
    exact=True,
)


_add(
    "window_reverse",
    {
        "ws=2": lambda rng: ((_normal(rng, 12, 2, 2, 3, scale=1.0), 2, 4, 6), {}),
        "edge: empty batch": lambda rng: ((_normal(rng, 0, 2, 2, 3, scale=1.0), 2, 4, 6), {}),
    },
    _single(ref.window_reverse),
    exact=True,
)


_add(
    "cyclic_shift",
    {
        f"shift {shift}": (lambda s: lambda rng: ((_normal(rng, *_HWC, scale=1.0), s), {}))(shift)
        for shift in (1, -1, 3)
    }
    | {"edge: empty batch": lambda rng: ((_normal(rng, 0, 4, 6, 3, scale=1.0), 1), {})},
    _single(ref.cyclic_shift),
    exact=True,
)


_add(
    "shifted_window_mask",
    {
        f"{h}x{w} ws={ws} shift={s}{' as_bias' if bias else ''}": partial(
            _fixed, (h, w, ws, s), {"as_bias": bias, "like": LIKE}
        )
        for h, w, ws, s, bias in (
            (4, 6, 2, 1, False),
            (4, 6, 2, 1, True),
            (6, 6, 3, 2, True),
            (4, 6, 2, 0, False),
        )
    }
    | {
        # The smallest sizes (a height or width of 0 is a ValueError): one window, windows of 1.
        "edge: one window 2x2 ws=2 shift=1": partial(_fixed, (2, 2, 2, 1), {"like": LIKE}),
        "edge: ws=1 3x2 shift=0 as_bias": partial(_fixed, (3, 2, 1, 0), {"as_bias": True, "like": LIKE}),
    },
    _single(ref.shifted_window_mask),
    exact=True,
)


_add(
    "relative_position_index",
    {f"ws={ws}": partial(_fixed, (ws,), {"like": LIKE}) for ws in (2, 3)}
    | {"edge: ws=1": partial(_fixed, (1,), {"like": LIKE})},
    _single(ref.relative_position_index),
)


def _window_attention(rng, *, shift=0, table=False, bias=True, size=(4, 6), ws=2, batch=2):
    x = _normal(rng, batch, *size, 8, scale=1.0)
    params = _mha_params(rng, 8, 8, 8, 8, 8, bias)
    kwargs: dict[str, Any] = {"num_heads": 2, "window_size": ws, "shift_size": shift}
    if table:
        kwargs["relative_bias_table"] = _normal(rng, (2 * ws - 1) ** 2, 2, scale=1.0)
    return (x, params), kwargs


_add(
    "window_attention",
    {
        "W-MSA no biases": partial(_window_attention, bias=False),
        "SW-MSA shift 1 relative bias": partial(_window_attention, shift=1, table=True),
        # 5 x 7 with windows of 3: padded to 6 x 9 (Hugging Face's SwinLayer), then cropped
        "W-MSA padded 5x7 ws=3": partial(_window_attention, size=(5, 7), ws=3),
        "SW-MSA padded 5x7 ws=3 shift 1 relative bias": partial(
            _window_attention, size=(5, 7), ws=3, shift=1, table=True
        ),
        "edge: empty batch": partial(_window_attention, batch=0),
        "edge: empty batch SW-MSA padded relative bias": partial(
            _window_attention, batch=0, size=(5, 7), ws=3, shift=1, table=True
        ),
    },
    _single(ref.window_attention),
    grad=("SW-MSA shift 1 relative bias", "SW-MSA padded 5x7 ws=3 shift 1 relative bias"),
)


def _patch_merging(rng, *, size=(4, 6), norm_weight=True, norm_bias=True, batch=2, **options):
    """``x (2, H, W, 3)``, the reduction ``(12, 6)`` (Swin's 4C -> 2C) and the norm's affine."""
    x = _normal(rng, batch, *size, 3, scale=1.0)
    weight, _ = _linear_weights(rng, 12, 6, bias=False)
    gamma = 1.0 + _normal(rng, 12, scale=0.2) if norm_weight else None
    beta = _normal(rng, 12, scale=0.2) if norm_bias else None
    return (x, weight, gamma, beta), options


_add(
    "patch_merging",
    {
        "norm affine": _patch_merging,
        "no norm affine": partial(_patch_merging, norm_weight=False, norm_bias=False),
        "norm weight only eps 1e-3": partial(_patch_merging, norm_bias=False, eps=1e-3),
        "odd 5x7 (zero-padded)": partial(_patch_merging, size=(5, 7)),
        "1x1 (zero-padded)": partial(_patch_merging, size=(1, 1)),
        "edge: empty batch": partial(_patch_merging, batch=0),
        "edge: H=0": partial(_patch_merging, size=(0, 6)),
    },
    _single(ref.patch_merging),
    grad=("norm affine", "odd 5x7 (zero-padded)"),
)
