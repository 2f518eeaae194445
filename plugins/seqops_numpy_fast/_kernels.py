"""NumPy's functions and dtypes, looked up on the first call of any implementation here
(importing the plugin does not import NumPy)."""

from __future__ import annotations

from typing import Any

# NumPy's functions, looked up on the first call.
_K: dict[str, Any] = {}


def _load() -> dict[str, Any]:
    import numpy as np

    _K.update(
        np=np,
        native=frozenset((np.dtype(np.float32), np.dtype(np.float64))),
        float32=np.dtype(np.float32),
        tiny=float(np.finfo(np.float32).tiny),
        below_one=1.0 - float(np.finfo(np.float32).eps) / 2,  # see seqops' gumbel_argmax
    )
    return _K
