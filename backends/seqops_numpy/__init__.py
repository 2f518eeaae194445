"""The NumPy backend (CPU, float16/32/64; NumPy ``Generator`` randomness).

Where SciPy is installed (the ``scipy`` extra; never required), ``erf`` is
``scipy.special.erf`` (GELU's exact form: ~9x faster than the portable fdlibm formula on
NumPy), imported on the first use.
"""

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

    def random_uniform(
        self, rng: Any, shape: tuple[int, ...], /, *, dtype: Any, device: Any, like: Any = None
    ) -> Any:
        draws = self._generator(rng).random(shape, dtype="float64")
        return draws.astype(dtype, copy=False)

    def random_normal(
        self, rng: Any, shape: tuple[int, ...], /, *, dtype: Any, device: Any, like: Any = None
    ) -> Any:
        draws = self._generator(rng).standard_normal(shape, dtype="float64")
        return draws.astype(dtype, copy=False)

    @property
    def erf(self) -> Any:  # type: ignore[override]
        """``scipy.special.erf`` when SciPy is importable, else ``None`` (the portable formula)."""
        found = _SCIPY_ERF.get("erf", _UNKNOWN)
        return _find_scipy_erf() if found is _UNKNOWN else found

    def versions(self) -> dict[str, str]:
        found = super().versions()
        if self.erf is not None:
            import scipy

            found["scipy"] = str(scipy.__version__)
        return found


_UNKNOWN = object()
_SCIPY_ERF: dict[str, Any] = {}  # "erf" -> scipy.special.erf or None, found once (a failed import is slow)


def _find_scipy_erf() -> Any:
    try:
        from scipy.special import erf
    except ImportError:
        erf = None
    _SCIPY_ERF["erf"] = erf
    return erf


@hookimpl(trylast=True)
def seqops_backends() -> list[Backend]:
    return [NumpyBackend()]
