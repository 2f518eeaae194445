"""Built-in implementations of the vision family (ViT patching, Swin windows), the window
attention over the dispatched attention and the patch merging over the dispatched layer norm."""

from __future__ import annotations

import functools
from typing import Any

from seqops import ops
from seqops._agnostic import vision
from seqops._builtin._table import implement, namespaced
from seqops._lib.typing import Array
from seqops.contract import Backend

namespaced(ops.patchify, vision.patchify)
namespaced(ops.unpatchify, vision.unpatchify)
namespaced(ops.vit_embed, vision.vit_embed)
namespaced(ops.window_partition, vision.window_partition)
namespaced(ops.window_reverse, vision.window_reverse)
namespaced(ops.cyclic_shift, vision.cyclic_shift)
namespaced(ops.shifted_window_mask, vision.shifted_window_mask)
namespaced(ops.relative_position_index, vision.relative_position_index)


@implement(ops.window_attention)
def window_attention(
    backend: Backend,
    x: Array,
    params: Any,
    /,
    *,
    num_heads: int,
    window_size: int,
    shift_size: int,
    relative_bias_table: Array | None,
) -> Array:
    attend = functools.partial(
        ops.scaled_dot_product_attention.dispatch, backend, dropout_p=0.0, rng=None, enable_gqa=False
    )
    return vision.window_attention(
        backend.namespace(),
        x,
        params,
        num_heads=num_heads,
        window_size=window_size,
        shift_size=shift_size,
        relative_bias_table=relative_bias_table,
        attend=attend,
    )


@implement(ops.patch_merging)
def patch_merging(
    backend: Backend,
    x: Array,
    weight: Array,
    norm_weight: Array | None,
    norm_bias: Array | None,
    /,
    *,
    eps: float,
) -> Array:
    def norm(merged: Array) -> Array:
        return ops.layer_norm.dispatch(backend, merged, norm_weight, norm_bias, eps=eps)

    return vision.patch_merging(backend.namespace(), x, weight, norm=norm)
