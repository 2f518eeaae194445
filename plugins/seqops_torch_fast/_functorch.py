"""Whether a call runs inside ``torch.func.vmap`` (kernels without a batching rule decline it),
or under any automatic differentiation (kernels whose derivative is less accurate than the
contract's decline that)."""

from __future__ import annotations

from typing import Any


def vmapped(*tensors: Any) -> bool:
    """Whether one of ``tensors`` is batched by ``torch.func.vmap``, at any level: inside
    ``vmap(grad(f))`` (per-example gradients) the tensors ``f`` sees are grad wrappers of
    batched tensors, so each wrapper is unwrapped down to the plain tensor. Outside every
    functorch transform (the common call) one C call answers (40 ns; Dynamo traces it); the
    per-tensor check runs only inside one, and never while Dynamo traces: it cannot trace the
    check, and a compiled graph holds no batched tensor."""
    checks = _CHECKS or _lookup()
    if not checks[1]() or checks[0]():
        return False
    functorch = checks[2]
    for x in tensors:
        while x is not None and functorch.is_functorch_wrapped_tensor(x):
            if functorch.is_batchedtensor(x):
                return True
            x = functorch.get_unwrapped(x)
    return False


def differentiated(*tensors: Any) -> bool:
    """Whether autodiff may differentiate through ``tensors``: reverse mode (gradients enabled
    and one of them requires grad, eagerly or while compiled), forward mode (a dual level of
    ``torch.autograd.forward_ad`` is open) or a ``torch.func`` transform (``grad``, ``vjp``,
    ``jvp``...; ``vmap`` too, which the check of an active transform does not tell apart)."""
    checks = _CHECKS or _lookup()
    torch = checks[3]
    if torch.is_grad_enabled():
        for t in tensors:  # a loop, not any(generator): Dynamo traces loops
            if t is not None and t.requires_grad:
                return True
    if checks[0]():  # compiling: no functorch level nor dual level is traced
        return False
    return checks[1]() or checks[4]._current_level >= 0


# ``torch.compiler.is_compiling``, whether a functorch transform is active, ``torch._C._functorch``,
# ``torch`` and ``forward_ad``, looked up on the first call (the import and the attribute chains
# cost ~0.2 µs a call).
_CHECKS: list[Any] = []


def _lookup() -> list[Any]:
    import torch
    import torch.autograd.forward_ad

    functorch = torch._C._functorch
    _CHECKS[:] = [
        torch.compiler.is_compiling,
        torch._C._are_functorch_transforms_active,  # True inside any torch.func transform
        functorch,
        torch,
        torch.autograd.forward_ad,  # its _current_level: -1 while no dual level is open
    ]
    return _CHECKS
