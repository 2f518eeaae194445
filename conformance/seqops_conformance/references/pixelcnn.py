"""Float64 references of PixelCNN: the causal mask and the masked convolution."""

import math

import numpy as np


def pixelcnn_mask(kernel_size, in_channels, out_channels, mask_type="A", color_groups=1):
    """The PixelCNN mask ``(out, in, kh, kw)`` of 0.0/1.0, one entry at a time.

    A tap is kept iff it lies in a row above the centre, or in the centre row left of the
    centre; at the centre itself, output group ``j`` sees input group ``i`` iff ``i < j``
    (type A) or ``i <= j`` (type B), with contiguous groups of ``channels / color_groups``.
    """
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    ch, cw = kh // 2, kw // 2
    out = np.zeros((out_channels, in_channels, kh, kw))
    for o in range(out_channels):
        for i in range(in_channels):
            go = o // (out_channels // color_groups)
            gi = i // (in_channels // color_groups)
            for r in range(kh):
                for c in range(kw):
                    if r < ch or (r == ch and c < cw):
                        out[o, i, r, c] = 1.0
                    elif r == ch and c == cw:
                        out[o, i, r, c] = float(gi < go if mask_type == "A" else gi <= go)
    return out


def masked_conv2d(x, weight, bias=None, mask_type="A", color_groups=1):
    """Stride-1 zero-"same"-padded cross-correlation with ``weight * pixelcnn_mask``.

    ``out[b, o, h, w] = bias[o] + Σ_{i, r, c} (W·M)[o, i, r, c] · x[b, i, h + r - kh//2, w + c - kw//2]``
    (out-of-range pixels are 0); ``x (B, C, H, W)``, ``weight (O, C, kh, kw)`` → ``(B, O, H, W)``.
    """
    x = np.asarray(x, dtype=np.float64)
    weight = np.asarray(weight, dtype=np.float64)
    n_out, n_in, kh, kw = weight.shape
    w = weight * pixelcnn_mask((kh, kw), n_in, n_out, mask_type, color_groups)
    batch, _, height, width = x.shape
    out = np.zeros((batch, n_out, height, width))
    for b in range(batch):
        for o in range(n_out):
            for h in range(height):
                for v in range(width):
                    terms = [0.0 if bias is None else float(bias[o])]
                    for i in range(n_in):
                        for r in range(kh):
                            for c in range(kw):
                                y, z = h + r - kh // 2, v + c - kw // 2
                                if 0 <= y < height and 0 <= z < width:
                                    terms.append(w[o, i, r, c] * x[b, i, y, z])
                    out[b, o, h, v] = math.fsum(terms)
    return out
