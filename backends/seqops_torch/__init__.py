"""The PyTorch backend (CPU and CUDA; all float dtypes; ``torch.Generator`` randomness)."""

from __future__ import annotations

from typing import Any

import array_api_compat

from seqops import Backend, check_rng, hookimpl


class TorchBackend(Backend):
    name = "torch"
    library = "torch"

    def owns(self, x: object, /) -> bool:
        return array_api_compat.is_torch_array(x)

    def namespace(self) -> Any:
        import array_api_compat.torch

        return array_api_compat.torch

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
            return torch.Generator(device=device).manual_seed(rng)
        return rng

    def random_uniform(self, rng: Any, shape: tuple[int, ...], /, *, dtype: Any, device: Any) -> Any:
        import torch

        generator = self._generator(rng, device)
        return torch.rand(shape, generator=generator, dtype=torch.float32, device=device).to(dtype)

    def random_normal(self, rng: Any, shape: tuple[int, ...], /, *, dtype: Any, device: Any) -> Any:
        import torch

        generator = self._generator(rng, device)
        return torch.randn(shape, generator=generator, dtype=torch.float32, device=device).to(dtype)

    @property
    def erf(self) -> Any:  # type: ignore[override]
        import torch

        return torch.special.erf


@hookimpl(trylast=True)
def seqops_backends() -> list[Backend]:
    return [TorchBackend()]
