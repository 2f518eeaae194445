"""Whether a call runs inside ``torch.func.vmap`` (kernels without a batching rule decline it)."""

from __future__ import annotations

from typing import Any


def vmapped(*tensors: Any) -> bool:
    """Whether one of ``tensors`` is batched by ``torch.func.vmap``. Outside every functorch
    transform (the common call) one look at the interpreter stack answers; the per-tensor check
    runs only inside one. Never asked while Dynamo traces: it cannot trace the check, and a
    compiled graph holds no batched tensor."""
    import torch

    if torch.compiler.is_compiling() or torch._C._functorch.peek_interpreter_stack() is None:
        return False
    functorch = torch._C._functorch
    return any(functorch.is_batchedtensor(x) for x in tensors if x is not None)
