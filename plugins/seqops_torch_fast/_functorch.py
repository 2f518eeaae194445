"""Whether a call runs inside ``torch.func.vmap`` (kernels without a batching rule decline it)."""

from __future__ import annotations

from typing import Any


def vmapped(*tensors: Any) -> bool:
    """Whether one of ``tensors`` is batched by ``torch.func.vmap``, at any level: inside
    ``vmap(grad(f))`` (per-example gradients) the tensors ``f`` sees are grad wrappers of
    batched tensors, so each wrapper is unwrapped down to the plain tensor. Outside every
    functorch transform (the common call) one look at the interpreter stack answers; the
    per-tensor check runs only inside one. Never asked while Dynamo traces: it cannot trace
    the check, and a compiled graph holds no batched tensor."""
    import torch

    if torch.compiler.is_compiling() or torch._C._functorch.peek_interpreter_stack() is None:
        return False
    functorch = torch._C._functorch
    for x in tensors:
        while x is not None and functorch.is_functorch_wrapped_tensor(x):
            if functorch.is_batchedtensor(x):
                return True
            x = functorch.get_unwrapped(x)
    return False
