"""A seqops backend for `marray <https://github.com/mdhaber/marray>`_ arrays over NumPy.

marray adds a boolean mask to the arrays of any Array API library;
``marray.masked_namespace(numpy)`` is an Array API namespace whose arrays are ``MArray``
objects with a ``.data`` NumPy array and a ``.mask`` of the same shape (``True`` = masked,
i.e. missing). Because seqops ops are written once against the Array API, registering that
namespace is all it takes for every portable op to accept these arrays::

    import numpy as np, marray, seqops

    mxp = marray.masked_namespace(np)
    x = mxp.asarray(np.array([[1.0, 2.0, 3.0]]), mask=np.array([[False, False, True]]))
    seqops.softmax(x)  # the softmax of the unmasked entries; the masked one stays masked

This module is the backend, registered under the ``seqops.backends`` entry point; it uses
only seqops' public API (:class:`seqops.Backend`, :data:`seqops.hookimpl`,
:class:`seqops.Limitation`, the declared ops :mod:`seqops.ops`).

What to know:

- Only MArrays over NumPy are this backend's (``masked_namespace(torch)`` arrays are not:
  their data live elsewhere). Every ``masked_namespace(numpy)`` call creates a new
  ``MArray`` class; arrays of any of them are accepted, and results come back as arrays of
  this backend's own namespace, created once.
- CPU only, float32 and float64 (NumPy's Array API inspection lists no float16).
- marray has no ``linalg`` extension, so ``kl_mvn`` (a Cholesky factorisation and a
  triangular solve) is declared unsupported: see :attr:`MArrayBackend.limitations`.
- Masks follow marray's rules: an elementwise result is masked where an input entry is; a
  reduction (``sum``, ``max``, ``@``) skips masked entries and is masked only where *every*
  entry it reduces is (an empty reduction too). seqops' contract, which the conformance
  suite certifies, is the behaviour on unmasked arrays.
"""

from __future__ import annotations

import functools
from typing import Any

import seqops

__version__ = "0.1.0"

#: The reason shown for everything that needs ``xp.linalg``.
NO_LINALG = "marray has no linalg extension (cholesky, solve)"


@functools.cache
def _namespace() -> Any:
    """``marray.masked_namespace(numpy)``, created once (each call makes a new MArray class)."""
    import marray
    import numpy

    return marray.masked_namespace(numpy)


class MArrayBackend(seqops.Backend):
    """The ``"marray"`` backend: masked arrays over NumPy, on the CPU.

    Examples
    --------
    >>> import numpy as np, marray, seqops
    >>> mxp = marray.masked_namespace(np)
    >>> seqops.softmax(mxp.asarray(np.zeros(2))).data.tolist()
    [0.5, 0.5]
    """

    name = "marray"
    library = "marray"
    limitations = (seqops.Limitation(NO_LINALG, op=seqops.ops.kl_mvn),)

    # -- identity -------------------------------------------------------------------
    def owns(self, x: object, /) -> bool:
        """Whether ``x`` is an ``MArray`` over NumPy, checked without importing marray.

        marray's ``MArray`` classes are made inside ``masked_namespace``, so they are
        recognised by module and name, and their ``.data`` must be a NumPy array.
        """
        kind = type(x)
        return (
            kind.__module__ == "marray"
            and kind.__name__ == "MArray"
            and type(getattr(x, "data", None)).__module__ == "numpy"
        )

    def versions(self) -> dict[str, str]:
        """The versions of marray and of NumPy (which holds the data)."""
        import marray
        import numpy

        return {"marray": marray.__version__, "numpy": numpy.__version__}

    # -- namespace, devices, dtypes ---------------------------------------------------
    def namespace(self) -> Any:
        """``marray.masked_namespace(numpy)``, the same object on every call."""
        return _namespace()

    def device(self, x: Any, /) -> str:
        """The device of ``x``: ``"cpu"`` (the ``.device`` of its NumPy data)."""
        return str(x.device)

    def default_device(self) -> str:
        """``"cpu"``, as NumPy names it."""
        return "cpu"

    def devices(self) -> list[str]:
        """``["cpu"]``: NumPy arrays live in host memory only."""
        return ["cpu"]

    def floating_dtypes(self, device: Any = None) -> dict[str, Any]:
        """float32 and float64, by name (the dtypes of NumPy's Array API inspection)."""
        import numpy as np

        return {"float32": np.float32, "float64": np.float64}

    # -- host transfer (conformance and tests only) -----------------------------------
    def from_numpy(self, a: Any, /, *, dtype: Any, device: Any = None) -> Any:
        """An unmasked MArray holding a copy of NumPy array ``a`` (shape kept), cast to ``dtype``."""
        return self.namespace().asarray(a, dtype=dtype, device=device, copy=True)

    def to_numpy(self, x: Any, /) -> Any:
        """A NumPy copy of the data of ``x`` (same shape and dtype).

        Raises
        ------
        ValueError
            If any entry of ``x`` is masked: its data is then unspecified (marray computes
            it from whatever the masked inputs held), and silently returning it would make
            a comparison meaningless. The inputs of the conformance suite are never masked.
        """
        import numpy as np

        masked = int(np.count_nonzero(x.mask))
        if masked:
            msg = (
                f"cannot convert an MArray with {masked} masked entries of {x.size} to NumPy: "
                "the data under the mask is unspecified; fill it first (xp.where(x.mask, fill, x))"
            )
            raise ValueError(msg)
        return np.array(x.data, copy=True)

    # -- randomness -------------------------------------------------------------------
    def random_uniform(
        self, rng: Any, shape: tuple[int, ...], /, *, dtype: Any, device: Any, like: Any = None
    ) -> Any:
        """An unmasked MArray of shape ``shape`` of uniform draws in ``[0, 1)``.

        ``rng`` is an integer seed or a ``numpy.random.Generator`` (advanced by the draw).
        """
        draws = _generator(rng).random(shape, dtype="float64")
        return self.namespace().asarray(draws, dtype=dtype, device=device)

    def random_normal(
        self, rng: Any, shape: tuple[int, ...], /, *, dtype: Any, device: Any, like: Any = None
    ) -> Any:
        """An unmasked MArray of shape ``shape`` of standard normal draws.

        ``rng`` is an integer seed or a ``numpy.random.Generator`` (advanced by the draw).
        """
        draws = _generator(rng).standard_normal(shape, dtype="float64")
        return self.namespace().asarray(draws, dtype=dtype, device=device)


def _generator(rng: Any) -> Any:
    """The NumPy ``Generator`` of ``rng``: a new one for an integer seed, else ``rng`` itself.

    Raises
    ------
    TypeError
        If ``rng`` is neither an ``int`` (``bool`` excluded) nor a ``numpy.random.Generator``.
    """
    import numpy as np

    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, int) and not isinstance(rng, bool):
        return np.random.default_rng(rng)
    msg = (
        "rng for backend 'marray' must be an integer seed or a numpy.random.Generator; "
        f"got {type(rng).__name__}"
    )
    raise TypeError(msg)


@seqops.hookimpl
def seqops_backends() -> list[seqops.Backend]:
    """The ``seqops_backends`` hook: this package's one backend."""
    return [MArrayBackend()]
