"""Built-in implementations of the PixelCNN masks and masked convolution."""

from __future__ import annotations

from seqops import ops
from seqops._agnostic import generative
from seqops._builtin._table import implement, namespaced
from seqops._lib.placement import helper_device
from seqops._lib.typing import Array
from seqops.contract import Backend

namespaced(ops.pixelcnn_mask, generative.pixelcnn_mask)


@implement(ops.masked_conv2d)
def masked_conv2d(
    backend: Backend, x: Array, weight: Array, bias: Array | None, /, *, mask_type: str, color_groups: int
) -> Array:
    xp = backend.namespace()
    out_channels, in_channels, kh, kw = weight.shape
    device = helper_device(x)
    mask = generative.pixelcnn_mask(
        xp, (kh, kw), in_channels, out_channels, mask_type=mask_type, color_groups=color_groups,
        dtype=weight.dtype, device=device,
    )  # fmt: skip
    return generative.masked_conv2d(xp, x, weight, bias, mask=mask, device=device)
