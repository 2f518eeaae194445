"""The CuPy backend (NVIDIA GPUs). Without a CUDA device it reports itself unavailable."""

from __future__ import annotations

from typing import Any

import array_api_compat

from seqops import Availability, Backend, check_rng, hookimpl


class CupyBackend(Backend):
    name = "cupy"
    library = "cupy"

    def owns(self, x: object, /) -> bool:
        return array_api_compat.is_cupy_array(x)

    def availability(self) -> Availability:
        try:
            import cupy
        except ImportError as exc:
            return Availability(False, f"cupy is not installed ({exc})")
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:  # noqa: BLE001 - CUDA runtime errors have many types
            return Availability(False, f"no CUDA device ({exc})")
        if count == 0:
            return Availability(False, "no CUDA device")
        return Availability(True)

    def namespace(self) -> Any:
        import array_api_compat.cupy

        return array_api_compat.cupy

    def floating_dtypes(self, device: Any = None) -> dict[str, Any]:
        import cupy

        return {"float16": cupy.float16, "float32": cupy.float32, "float64": cupy.float64}

    def to_numpy(self, x: Any, /) -> Any:
        import cupy

        return cupy.asnumpy(x)

    def _generator(self, rng: Any) -> Any:
        import cupy

        check_rng(rng, cupy.random.Generator, self.name)
        return cupy.random.default_rng(rng) if isinstance(rng, int) else rng

    def random_uniform(
        self, rng: Any, shape: tuple[int, ...], /, *, dtype: Any, device: Any, like: Any = None
    ) -> Any:
        import cupy

        with cupy.cuda.Device(device.id if device is not None else None):
            return self._generator(rng).random(shape, dtype=cupy.float64).astype(dtype)

    def random_normal(
        self, rng: Any, shape: tuple[int, ...], /, *, dtype: Any, device: Any, like: Any = None
    ) -> Any:
        import cupy

        with cupy.cuda.Device(device.id if device is not None else None):
            return self._generator(rng).standard_normal(shape, dtype=cupy.float64).astype(dtype)

    @property
    def erf(self) -> Any:  # type: ignore[override]
        import cupyx.scipy.special

        return cupyx.scipy.special.erf


@hookimpl(trylast=True)
def seqops_backends() -> list[Backend]:
    return [CupyBackend()]
