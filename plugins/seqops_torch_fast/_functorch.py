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
    checks = _CHECKS or _lookup()
    if checks[0]() or checks[1]() is None:
        return False
    functorch = checks[2]
    for x in tensors:
        while x is not None and functorch.is_functorch_wrapped_tensor(x):
            if functorch.is_batchedtensor(x):
                return True
            x = functorch.get_unwrapped(x)
    return False


# ``torch.compiler.is_compiling``, ``peek_interpreter_stack`` and ``torch._C._functorch``,
# looked up on the first call (the import and the attribute chains cost ~0.2 µs a call).
_CHECKS: list[Any] = []


def _lookup() -> list[Any]:
    import torch

    functorch = torch._C._functorch
    _CHECKS[:] = [torch.compiler.is_compiling, functorch.peek_interpreter_stack, functorch]
    return _CHECKS
