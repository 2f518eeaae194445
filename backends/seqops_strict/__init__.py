"""The array-api-strict backend: the Array API standard and nothing more.

Every portable op must run here; that is how seqops proves its math is written once.
Random draws come from a NumPy ``Generator`` and are copied in (a test backend).
"""

from __future__ import annotations

from typing import Any

from seqops import Backend, check_rng, hookimpl


class StrictBackend(Backend):
    name = "array_api_strict"
    library = "array_api_strict"

    def owns(self, x: object, /) -> bool:
        return type(x).__module__.startswith("array_api_strict.")

    def namespace(self) -> Any:
        import array_api_strict

        return array_api_strict

    def to_numpy(self, x: Any, /) -> Any:
        import numpy as np

        return np.from_dlpack(x)

    def _draw(self, rng: Any, method: str, shape: tuple[int, ...], dtype: Any, device: Any) -> Any:
        import numpy as np

        check_rng(rng, np.random.Generator, self.name)
        generator = np.random.default_rng(rng) if isinstance(rng, int) else rng
        draws = getattr(generator, method)(shape)
        return self.namespace().asarray(draws, dtype=dtype, device=device)

    def random_uniform(
        self, rng: Any, shape: tuple[int, ...], /, *, dtype: Any, device: Any, like: Any = None
    ) -> Any:
        return self._draw(rng, "random", shape, dtype, device)

    def random_normal(
        self, rng: Any, shape: tuple[int, ...], /, *, dtype: Any, device: Any, like: Any = None
    ) -> Any:
        return self._draw(rng, "standard_normal", shape, dtype, device)


@hookimpl(trylast=True)
def seqops_backends() -> list[Backend]:
    return [StrictBackend()]
