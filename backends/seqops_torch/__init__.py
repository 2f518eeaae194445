"""The PyTorch backend (CPU and CUDA; all float dtypes; ``torch.Generator`` randomness)."""

from __future__ import annotations

import types
from typing import Any

import array_api_compat

from seqops import Backend, check_rng, hookimpl

_NAMESPACE: Any = None


def _namespace() -> Any:
    """array-api-compat's torch namespace (a copy of the module, same name and functions) with
    ``moveaxis`` as ``torch.movedim``, the same op: torch has no ``torch.func.vmap`` batching
    rule for its alias ``aten::moveaxis.int``, so every op moving an axis failed under vmap.
    Built on the first eager call (Dynamo cannot trace making a module; until then a compiled
    graph uses array-api-compat's own, whose ``moveaxis`` compiles)."""
    global _NAMESPACE  # noqa: PLW0603 - built once, on first use
    import array_api_compat.torch
    import torch

    if torch.compiler.is_compiling():
        return array_api_compat.torch
    namespace = types.ModuleType(array_api_compat.torch.__name__)
    namespace.__dict__.update(vars(array_api_compat.torch))
    namespace.moveaxis = torch.movedim  # type: ignore[attr-defined]
    _NAMESPACE = namespace
    return namespace


class TorchBackend(Backend):
    name = "torch"
    library = "torch"

    def owns(self, x: object, /) -> bool:
        return array_api_compat.is_torch_array(x)

    def namespace(self) -> Any:
        return _NAMESPACE or _namespace()

    def devices(self) -> list[Any]:
        import torch

        cuda = [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
        return [torch.device("cpu"), *cuda]

    def floating_dtypes(self, device: Any = None) -> dict[str, Any]:
        import torch

        return {
            "float16": torch.float16,
            "bfloat16": torch.bfloat16,
            "float32": torch.float32,
            "float64": torch.float64,
        }

    def to_numpy(self, x: Any, /) -> Any:
        import torch

        x = x.detach().cpu()
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        return x.numpy()

    def _generator(self, rng: Any, device: Any) -> Any:
        import torch

        check_rng(rng, torch.Generator, self.name)
        if isinstance(rng, int):
            if getattr(device, "type", device) == "meta":  # no generator there, nor values to draw
                return None
            return torch.Generator(device=device).manual_seed(rng)
        return rng

    def random_uniform(
        self, rng: Any, shape: tuple[int, ...], /, *, dtype: Any, device: Any, like: Any = None
    ) -> Any:
        import torch

        generator = self._generator(rng, device)
        return torch.rand(shape, generator=generator, dtype=torch.float32, device=device).to(dtype)

    def random_normal(
        self, rng: Any, shape: tuple[int, ...], /, *, dtype: Any, device: Any, like: Any = None
    ) -> Any:
        import torch

        generator = self._generator(rng, device)
        return torch.randn(shape, generator=generator, dtype=torch.float32, device=device).to(dtype)

    @property
    def erf(self) -> Any:  # type: ignore[override]
        import torch

        return torch.special.erf

    @property
    def solve_lower(self) -> Any:  # type: ignore[override]
        return _solve_lower


def _solve_lower(a: Any, b: Any) -> Any:
    import torch

    return torch.linalg.solve_triangular(a, b, upper=False)


@hookimpl(trylast=True)
def seqops_backends() -> list[Backend]:
    return [TorchBackend()]
