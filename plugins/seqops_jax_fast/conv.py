"""``masked_conv2d`` on JAX: one ``lax.conv_general_dilated`` (NCHW, OIHW, stride 1, zero
"same" padding ``k // 2``) with the PixelCNN-masked weight, instead of the portable im2col.

The mask is built with NumPy from the static shapes (a constant of the trace) and applied
with ``where`` (exact). Half-precision inputs are convolved with float32 accumulation
(``preferred_element_type``): a product of two half values is exact in float32, so this is
the portable "computed in float32" result, rounded once to the input dtype.
"""

from __future__ import annotations

import functools
from typing import Any

import seqops

from ._shapes import SYMBOLIC, static

EMPTY = "an empty batch, channel or image size: left to the portable path"


def decline_masked_conv2d(backend: seqops.Backend, x: Any, weight: Any, bias: Any, /, **_: Any) -> str | None:
    if not static(*x.shape, *weight.shape):
        return SYMBOLIC
    if 0 in x.shape or 0 in weight.shape:
        return EMPTY
    return None


@functools.lru_cache(maxsize=64)
def pixelcnn_keep(kh: int, kw: int, cin: int, cout: int, mask_type: str, color_groups: int) -> Any:
    """The bool mask ``(out, in, kh, kw)`` of ``seqops.pixelcnn_mask`` as a NumPy array."""
    import numpy as np

    rows = np.arange(kh)[:, None]
    cols = np.arange(kw)[None, :]
    before = (rows < kh // 2) | ((rows == kh // 2) & (cols < kw // 2))
    centre = (rows == kh // 2) & (cols == kw // 2)
    out_group = np.arange(cout) // (cout // color_groups)
    in_group = np.arange(cin) // (cin // color_groups)
    sees = (
        out_group[:, None] > in_group[None, :]
        if mask_type == "A"
        else out_group[:, None] >= in_group[None, :]
    )
    keep = before | (centre & sees[:, :, None, None])
    keep.setflags(write=False)
    return keep


def masked_conv2d(
    backend: seqops.Backend, x: Any, weight: Any, bias: Any, /, *, mask_type: str, color_groups: int
) -> Any:
    import jax
    import jax.numpy as jnp

    cout, cin, kh, kw = weight.shape
    keep = pixelcnn_keep(kh, kw, cin, cout, mask_type, color_groups)
    w = jnp.where(keep, weight, jnp.zeros((), weight.dtype)).astype(x.dtype)
    out = jax.lax.conv_general_dilated(
        x,
        w,
        window_strides=(1, 1),
        padding=((kh // 2, kh // 2), (kw // 2, kw // 2)),
        dimension_numbers=("NCHW", "OIHW", "NCHW"),
        preferred_element_type=jnp.float64 if x.dtype == jnp.float64 else jnp.float32,
    )
    if bias is not None:
        out = out + bias.astype(out.dtype)[:, None, None]
    return out.astype(weight.dtype)
