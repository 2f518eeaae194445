"""The NumPy backend (CPU, float16/32/64; NumPy ``Generator`` randomness)."""

from __future__ import annotations

from typing import Any

import array_api_compat

from seqops import Backend, check_rng, hookimpl


class NumpyBackend(Backend):
    name = "numpy"
    library = "numpy"

    def owns(self, x: object, /) -> bool:
        return array_api_compat.is_numpy_array(x)

    def namespace(self) -> Any:
        import array_api_compat.numpy

        return array_api_compat.numpy

    def floating_dtypes(self, device: Any = None) -> dict[str, Any]:
        import numpy as np

        return {"float16": np.float16, "float32": np.float32, "float64": np.float64}

    def _generator(self, rng: Any) -> Any:
        import numpy as np

        check_rng(rng, np.random.Generator, self.name)
        return np.random.default_rng(rng) if isinstance(rng, int) else rng

    def random_uniform(self, rng: Any, shape: tuple[int, ...], /, *, dtype: Any, device: Any) -> Any:
        draws = self._generator(rng).random(shape, dtype="float64")
        return draws.astype(dtype, copy=False)

    def random_normal(self, rng: Any, shape: tuple[int, ...], /, *, dtype: Any, device: Any) -> Any:
        draws = self._generator(rng).standard_normal(shape, dtype="float64")
        return draws.astype(dtype, copy=False)


@hookimpl(trylast=True)
def seqops_backends() -> list[Backend]:
    return [NumpyBackend()]
