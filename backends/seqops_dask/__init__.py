"""The Dask backend: ``dask.array`` through array-api-compat, lazily, for data larger than
memory and for clusters (``dask.distributed``).

What an op returns is a lazy Dask array chunked like its input; no op computes anything
during the call (the conformance suite counts computations per call and fails on any:
:meth:`DaskBackend.computations`). Value checks that would read an array (targets in range,
a positive definite covariance, a finite gradient norm) are skipped, as under ``jax.jit``
(:attr:`seqops.Backend.lazy`); the values then come out NaN as documented for traced calls.

- **Chunks**: the blocks are NumPy arrays (or CuPy's: the block library's seqops backend runs
  the blockwise recurrences). Size-based choices (plain or tiled attention) are judged on the
  largest chunk (:meth:`DaskBackend.local_shape`), so attention over a large array runs the
  plain path per chunk.
- **Recurrences** (``rnn``, ``lstm``, ``gru``) run the whole time loop inside each batch chunk
  (:mod:`seqops_dask.blockwise`): a few tasks per chunk whatever ``T``, instead of a graph that
  grows with every step.
- **Random draws** follow the chunks of the data they go with (``like=``), one seed per chunk
  drawn from ``rng``.
- **NumPy arrays beside Dask ones** (weights, masks) are accepted, as Dask's own operations
  accept them (:meth:`DaskBackend.accepts`).
- **Unknown chunk sizes** (``nan`` after boolean indexing): ops that need a size raise a
  ``ValueError`` that says to call ``compute_chunk_sizes()``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import array_api_compat

import seqops
from seqops import Backend, Limitation, check_rng, hookimpl


class DaskBackend(Backend):
    name = "dask"
    library = "dask"
    lazy = True
    limitations = (Limitation("Dask has no autodiff", transformation="grad"),)

    def owns(self, x: object, /) -> bool:
        return array_api_compat.is_dask_array(x)  # looks in sys.modules: imports nothing

    def accepts(self, x: object, /) -> bool:
        """NumPy arrays join Dask arrays in one call, as in Dask's own operations."""
        return array_api_compat.is_numpy_array(x)

    def namespace(self) -> Any:
        found = _NAMESPACE.get("xp")
        if found is None:
            import array_api_compat.dask.array

            found = _NAMESPACE["xp"] = _Namespace(array_api_compat.dask.array)
        return found

    def versions(self) -> dict[str, str]:
        import dask

        return {"dask": str(dask.__version__)}

    def floating_dtypes(self, device: Any = None) -> dict[str, Any]:
        import numpy as np

        # float16 blocks compute as NumPy's do (array-api-compat's info lists only 32 and 64)
        return {"float16": np.float16, "float32": np.float32, "float64": np.float64}

    #: Which axes :meth:`from_numpy` cuts in two chunks: ``"first"`` or ``"all"`` (the tests
    #: run the conformance suite both ways).
    split: str = "first"

    def from_numpy(self, a: Any, /, *, dtype: Any, device: Any = None) -> Any:
        """``a`` as a Dask array, its first axis (or every axis: :attr:`split`) in two chunks
        where it has two entries or more, so that every op meets a chunked input."""
        import dask.array as da
        import numpy as np

        a = np.asarray(a).astype(dtype, copy=False)
        cut = range(a.ndim) if self.split == "all" else range(min(1, a.ndim))
        chunks = tuple(max(1, math.ceil(n / 2)) if i in cut else max(1, n) for i, n in enumerate(a.shape))
        return da.from_array(a, chunks=chunks)

    def to_numpy(self, x: Any, /) -> Any:
        import numpy as np

        found = np.asarray(x.compute() if self.owns(x) else x)
        return found.astype(np.float32) if found.dtype == np.float16 else found

    def local_shape(self, x: Any, /) -> tuple[Any, ...]:
        """The shape of the largest chunk (``None`` for a size Dask does not know)."""
        chunks = getattr(x, "chunks", None)
        if chunks is None:  # a NumPy array beside Dask ones
            return tuple(x.shape)
        return tuple(None if any(math.isnan(c) for c in axis) else max(axis, default=0) for axis in chunks)

    @property
    def solve_lower(self) -> Any:  # type: ignore[override]
        return _solve_lower

    @property
    def erf(self) -> Any:  # type: ignore[override]
        """The blocks' backend's native ``erf`` (NumPy's: SciPy's, where installed) per chunk,
        or ``None`` (the portable formula)."""
        import numpy as np

        block_erf = getattr(_backend_of(np.empty(0)), "erf", None)
        if block_erf is None:
            return None
        return lambda x: x.map_blocks(block_erf, dtype=x.dtype, meta=x._meta)

    def check_sizes(self, x: Any, name: str, /) -> None:
        shape = getattr(x, "shape", ())
        if any(n != n for n in shape):  # nan: a chunk of unknown length
            msg = (
                f"{name} has unknown sizes {tuple(shape)} (Dask chunks of unknown length, as after "
                "boolean indexing); call its compute_chunk_sizes() first (it computes the chunk "
                "lengths, once)"
            )
            raise ValueError(msg)

    # -- randomness -------------------------------------------------------------------
    def _seed(self, rng: Any) -> Any:
        import numpy as np

        check_rng(rng, np.random.Generator, self.name)
        return rng if isinstance(rng, int) else rng.integers(2**63)

    def _draw(self, kind: str, rng: Any, shape: tuple[int, ...], dtype: Any, like: Any) -> Any:
        """Draws of ``shape`` chunked like ``like`` (the data they go with) where their
        shapes agree axis by axis from the right, each chunk from its own seed of ``rng``."""
        import dask.array as da
        import numpy as np

        chunks = _chunks_like(shape, like)
        state = da.random.default_rng(np.random.default_rng(self._seed(rng)))
        draws = (
            state.random(shape, chunks=chunks)
            if kind == "uniform"
            else state.standard_normal(shape, chunks=chunks)
        )
        return draws.astype(dtype)

    def random_uniform(
        self, rng: Any, shape: tuple[int, ...], /, *, dtype: Any, device: Any, like: Any = None
    ) -> Any:
        return self._draw("uniform", rng, shape, dtype, like)

    def random_normal(
        self, rng: Any, shape: tuple[int, ...], /, *, dtype: Any, device: Any, like: Any = None
    ) -> Any:
        return self._draw("normal", rng, shape, dtype, like)

    # -- computations -----------------------------------------------------------------
    @contextlib.contextmanager
    def computations(self) -> Iterator[list[str]]:
        """Counts the graphs computed inside the ``with`` block (``len`` of the list yielded,
        one entry per computation naming its keys), through any of Dask's local schedulers."""
        from dask.callbacks import Callback

        found: list[str] = []

        class _Count(Callback):  # type: ignore[misc]
            def _start(self, dsk: Any) -> None:
                found.append(f"{len(dsk)} tasks")

        with _Count():
            yield found


_NAMESPACE: dict[str, Any] = {}


class _Namespace:
    """array-api-compat's Dask namespace, completed where Dask falls short:

    - ``reshape``, ``max`` and ``min`` of arrays holding no element are made directly (Dask
      builds them, then fails when computing them: ``reduce()`` of an empty chunk list, the max
      of an empty chunk). The result's shape, or the error, is NumPy's for an empty array of the
      same shape; its value is no value, so a lazy ``zeros`` of that shape is exact.
    - ``take_along_axis`` (which Dask lacks) along the last axis, per chunk of the other axes:
      ``cross_entropy``'s gather of the target logit, instead of a one-hot product over the
      vocabulary.
    - ``linalg.cholesky`` of a batch of matrices, per chunk (Dask factors 2-D arrays only).

    Everything else is array-api-compat's."""

    def __init__(self, xp: Any) -> None:
        self._xp = xp
        self.__name__ = xp.__name__  # array_api_compat.is_dask_namespace still answers True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._xp, name)

    @property
    def linalg(self) -> Any:
        return _Linalg(self._xp.linalg)

    def _empty_result(self, x: Any, numpy_fn: str, *args: Any, **kwargs: Any) -> Any:
        import numpy as np

        shape = getattr(np, numpy_fn)(np.empty(x.shape, dtype=x.dtype), *args, **kwargs).shape
        return self._xp.zeros(shape, dtype=x.dtype)

    def reshape(self, x: Any, /, shape: tuple[int, ...], **kwargs: Any) -> Any:
        if _is_empty(x) or 0 in shape:
            return self._empty_result(x, "reshape", shape)
        return self._xp.reshape(x, shape, **kwargs)

    def take_along_axis(self, x: Any, indices: Any, /, *, axis: int = -1) -> Any:
        import dask.array as da

        if axis not in (-1, x.ndim - 1) or indices.ndim != x.ndim:
            msg = "seqops' Dask take_along_axis gathers along the last axis of equal-rank arrays only"
            raise NotImplementedError(msg)
        lead = tuple(f"b{i}" for i in range(x.ndim - 1))
        x, indices = x.rechunk({x.ndim - 1: -1}), da.asarray(indices).rechunk({x.ndim - 1: -1})
        return da.blockwise(
            _block_take, (*lead, "K"), x, (*lead, "C"), indices, (*lead, "K"),
            dtype=x.dtype, meta=x._meta, concatenate=True,
        )  # fmt: skip

    def max(self, x: Any, /, *, axis: Any = None, keepdims: bool = False) -> Any:
        if _is_empty(x):
            return self._empty_result(x, "max", axis=axis, keepdims=keepdims)
        return self._xp.max(x, axis=axis, keepdims=keepdims)

    def min(self, x: Any, /, *, axis: Any = None, keepdims: bool = False) -> Any:
        if _is_empty(x):
            return self._empty_result(x, "min", axis=axis, keepdims=keepdims)
        return self._xp.min(x, axis=axis, keepdims=keepdims)


class _Linalg:
    """Dask's linalg with a batched ``cholesky`` (Dask factors 2-D arrays only): each chunk of
    the batch is factored by its blocks' own library, the matrix axes in one chunk."""

    def __init__(self, linalg: Any) -> None:
        self._linalg = linalg

    def __getattr__(self, name: str) -> Any:
        return getattr(self._linalg, name)

    def cholesky(self, x: Any, /, *, upper: bool = False) -> Any:
        if x.ndim == 2:
            return self._linalg.cholesky(x, upper=upper)
        x = x.rechunk({x.ndim - 2: -1, x.ndim - 1: -1})
        return x.map_blocks(_block_cholesky, upper, dtype=x.dtype, meta=x._meta)


def _block_take(x: Any, indices: Any) -> Any:
    return array_api_compat.array_namespace(x).take_along_axis(x, indices, axis=-1)


def _backend_of(block: Any) -> seqops.Backend | None:
    """The registered backend, Dask's aside, whose arrays ``block`` is (NumPy's, CuPy's): its
    native ``erf``, ``cholesky`` and ``solve_lower`` serve the blocks."""
    return next((b for b, _ in seqops.backends() if b.name != "dask" and b.owns(block)), None)


def _block_cholesky(block: Any, upper: bool) -> Any:
    xp = array_api_compat.array_namespace(block)
    native = getattr(_backend_of(block), "cholesky", None)
    factor = xp.linalg.cholesky(block) if native is None else native(block)
    return xp.matrix_transpose(factor) if upper else factor


def _solve_lower(a: Any, b: Any) -> Any:
    """``a⁻¹ b`` for lower-triangular ``a (..., k, k)`` and ``b (..., k, n)``, per batch chunk
    (Dask's ``solve`` is 2-D only)."""
    import dask.array as da

    lead = tuple(f"b{i}" for i in range(a.ndim - 2))
    a = a.rechunk({a.ndim - 2: -1, a.ndim - 1: -1})
    b = b.rechunk({b.ndim - 2: -1, b.ndim - 1: -1})
    return da.blockwise(
        _block_solve_lower, (*lead, "K", "N"), a, (*lead, "K", "J"), b, (*lead, "J", "N"),
        dtype=b.dtype, meta=b._meta, concatenate=True,
    )  # fmt: skip


def _block_solve_lower(a: Any, b: Any) -> Any:
    native = getattr(_backend_of(a), "solve_lower", None)
    return array_api_compat.array_namespace(a, b).linalg.solve(a, b) if native is None else native(a, b)


def _is_empty(x: Any) -> bool:
    return 0 in tuple(x.shape)


def _chunks_like(shape: tuple[int, ...], like: Any) -> Any:
    """Chunks for an array of ``shape`` following ``like``'s where the sizes match (aligned
    from the right, as broadcasting aligns), whole elsewhere."""
    if like is None or getattr(like, "chunks", None) is None:
        return "auto"
    theirs = list(like.chunks)[::-1]
    return tuple(
        (theirs[i] if i < len(theirs) and sum(theirs[i]) == n else (n,)) for i, n in enumerate(shape[::-1])
    )[::-1]


@hookimpl
def seqops_backends() -> list[Backend]:
    return [DaskBackend()]


@hookimpl
def seqops_implementations(backend: Backend) -> list[Any]:
    if backend.name != "dask":
        return []
    from seqops_dask.blockwise import implementations

    return implementations()
