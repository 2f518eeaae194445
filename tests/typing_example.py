"""What a type checker sees of seqops: checked by ``tests/test_typing.py`` with mypy (and pyright),
never imported or run (pytest does not collect it).

Each ``reveal_type`` line ends with ``# -> `` and the type the test expects (module prefixes
dropped); ``expect-error`` marks a line the checker must reject, which it can only because the
public decorator keeps each function's signature.
"""

from __future__ import annotations

import numpy as np
import torch
from typing_extensions import reveal_type

import seqops

t = torch.ones(2, 4, 8)
a = np.ones((2, 4, 8), dtype=np.float32)
w_t = torch.eye(8)
flag: bool = bool(t.sum() > 0)

# fmt: off
# The array type flows from the input to the output.
reveal_type(seqops.scaled_dot_product_attention(t, t, t))  # -> Tensor
reveal_type(seqops.scaled_dot_product_attention(a, a, a, is_causal=True))  # -> ndarray[tuple[int, int, int], dtype[float32]]
reveal_type(seqops.softmax(t))  # -> Tensor
reveal_type(seqops.softmax(a, axis=-1))  # -> ndarray[tuple[int, int, int], dtype[float32]]
reveal_type(seqops.layer_norm(t))  # -> Tensor
reveal_type(seqops.cross_entropy(t, torch.zeros(2, 4, dtype=torch.long)))  # -> Tensor

# Options that change what comes back: overloads.
reveal_type(seqops.scaled_dot_product_attention(t, t, t, return_weights=True))  # -> tuple[Tensor, Tensor]
reveal_type(seqops.scaled_dot_product_attention(a, a, a, return_weights=False))  # -> ndarray[tuple[int, int, int], dtype[float32]]
reveal_type(seqops.scaled_dot_product_attention(t, t, t, return_weights=flag))  # -> Tensor | tuple[Tensor, Tensor]
params = seqops.MHAParams(w_t, w_t, w_t, w_t)
reveal_type(seqops.multi_head_attention(t, t, t, params, num_heads=2))  # -> Tensor
reveal_type(seqops.multi_head_attention(t, t, t, params, num_heads=2, need_weights=True))  # -> tuple[Tensor, Tensor]
cache = seqops.kv_cache_init((2,), 2, 16, 4, like=t)
reveal_type(seqops.multi_head_attention(t, t, t, params, num_heads=2, kv_cache=cache))  # -> tuple[Tensor, KVCache]
h = torch.zeros(2, 8)
reveal_type(seqops.lstm(t, (h, h), torch.ones(8, 32), torch.ones(8, 32)))  # -> tuple[Tensor, tuple[Tensor, Tensor]]
reveal_type(seqops.clip_grad_norm({"w": t}, 1.0))  # -> tuple[dict[str, Tensor], Any]
# fmt: on

# The public decorator keeps each function's signature.
seqops.softmax(t, axis="last")  # expect-error
seqops.scaled_dot_product_attention(t, t, t, is_causal=True, return_weight=True)  # expect-error
seqops.multi_head_attention(t, t, t, params, num_heads=2, need_weights=True, kv_cache=cache)  # expect-error
