"""Cases of PixelCNN: the mask and the masked convolution."""

from __future__ import annotations

from functools import partial

import numpy as np

from seqops_conformance.cases._base import LIKE, _add, _fixed, _normal, _single
from seqops_conformance.references import pixelcnn as ref

_add(
    "pixelcnn_mask",
    {
        f"{kernel} {cin}->{cout} {kind}" + (f" color_groups={groups}" if groups > 1 else ""): partial(
            _fixed, (kernel, cin, cout), {"mask_type": kind, "color_groups": groups, "like": LIKE}
        )
        for kernel, cin, cout, kind, groups in (
            (3, 2, 4, "A", 1),
            (3, 2, 4, "B", 1),
            ((3, 5), 6, 3, "A", 3),
            ((3, 5), 6, 3, "B", 3),
        )
    }
    | {
        "edge: 0 channels": partial(_fixed, (3, 0, 0), {"like": LIKE}),
        "edge: in_channels=0 color_groups=3": partial(
            _fixed, (3, 0, 3), {"mask_type": "B", "color_groups": 3, "like": LIKE}
        ),
        "edge: 1x1 kernel A": partial(_fixed, (1, 2, 3), {"like": LIKE}),
        "edge: 1x1 kernel B": partial(_fixed, (1, 2, 3), {"mask_type": "B", "like": LIKE}),
    },
    _single(ref.pixelcnn_mask),
    exact=True,
)


def _masked_conv(rng, *, bias=True, shape=(2, 6, 4, 5), **options):
    x = _normal(rng, *shape, scale=1.0)
    weight = rng.standard_normal((6, 6, 3, 3)) / np.sqrt(6 * 9)
    return (x, weight, _normal(rng, 6, scale=0.2) if bias else None), options


_add(
    "masked_conv2d",
    {
        "A": partial(_masked_conv, mask_type="A"),
        "B no bias": partial(_masked_conv, mask_type="B", bias=False),
        "A color_groups=3": partial(_masked_conv, mask_type="A", color_groups=3),
        "edge: empty batch": partial(_masked_conv, shape=(0, 6, 4, 5)),
        "edge: H=0": partial(_masked_conv, mask_type="B", shape=(2, 6, 0, 5)),
    },
    _single(ref.masked_conv2d),
    grad=("A color_groups=3",),
)
