"""The contract between seqops and its plugins: everything a backend or a fast path is
written against, and nothing else (plugins import only public names, from here or
``seqops``).

- :class:`Backend` (and :class:`Availability`): where arrays live. A backend knows one array
  library: how to recognise its arrays *without importing it*, its Array API namespace,
  devices and dtypes, how to turn an ``rng`` into native random draws (:func:`check_rng`),
  and how to loop over time (``scan``). A module implementing the ``seqops_backends`` hook
  returns instances of subclasses.
- :class:`Implementation`: one way to compute one declared op (:mod:`seqops.ops`) on a
  backend; a module implementing ``seqops_implementations`` returns them.
- :class:`Limitation`: what a backend or an implementation does not support, and why.
"""

from __future__ import annotations

import contextlib
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from seqops._lib.typing import Array, Device, DType, Namespace
from seqops._op import Op, as_op


@dataclass(frozen=True)
class Availability:
    """Whether a backend can run here and, if not, why (e.g. ``"no CUDA device"``)."""

    available: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.available


class Backend:
    """Base class of every backend, built-in or third-party.

    Subclasses set :attr:`name` (the name users pass as ``backend=``) and
    :attr:`library` (the import name of the array library) and implement :meth:`owns`,
    :meth:`namespace` and the random draws. Everything else has a default that follows
    the Array API standard.
    """

    #: The name users pass as ``backend=`` and see in reports.
    name: str = ""
    #: Import name of the array library (``"torch"``, ``"jax"``, ...).
    library: str = ""
    #: Whether reading a value computes a graph (Dask): the few value checks (targets in
    #: range, a finite gradient norm, positive definiteness, decoding's early stop) are then
    #: skipped, as under ``jax.jit``, so that no op computes behind the caller's back.
    lazy: bool = False
    #: What this backend does not support (ops, dtypes, devices, transformations), each
    #: with the reason: the conformance suite skips those checks and the docs' support
    #: table lists them (see :class:`seqops.Limitation`).
    limitations: tuple[Limitation, ...] = ()

    # -- identity -------------------------------------------------------------------
    def owns(self, x: object, /) -> bool:
        """Whether ``x`` is an array of this backend. Must not import the library."""
        raise NotImplementedError

    def availability(self) -> Availability:
        """Whether the library is importable and has a usable device, with the reason."""
        try:
            __import__(self.library)
        except ImportError as exc:
            return Availability(False, f"{self.library} is not installed ({exc})")
        return Availability(True)

    def versions(self) -> dict[str, str]:
        """Versions of the libraries this backend uses, for ``seqops info`` and reports."""
        module = __import__(self.library)
        return {self.library: str(getattr(module, "__version__", "unknown"))}

    def accepts(self, x: object, /) -> bool:
        """Whether ``x``, an array of another backend, may join this backend's arrays in one
        call (Dask takes NumPy weights and masks, as its own operations do). The default:
        never; mixing libraries is a ``TypeError``."""
        return False

    def check_sizes(self, x: Array, name: str, /) -> None:
        """Raise a ``ValueError`` naming argument ``name`` (and what to do) when a size of
        ``x`` is unknown. Called on the arguments of every op on a :attr:`lazy` backend; the
        default checks nothing."""

    def computations(self) -> contextlib.AbstractContextManager[list[str]]:
        """A context counting the computations the library runs inside it (one entry per
        computation): the conformance suite fails an op that computes during the call on a
        lazy backend. The default counts nothing (eager libraries compute as they go)."""
        return contextlib.nullcontext([])

    # -- namespace, devices, dtypes ---------------------------------------------------
    def namespace(self) -> Namespace:
        """The Array API namespace of this backend (array-api-compat's wrapper if any)."""
        raise NotImplementedError

    def device(self, x: Array, /) -> Device:
        """The device ``x`` lives on."""
        import array_api_compat

        return array_api_compat.device(x)

    def default_device(self) -> Device:
        """Where arrays are created when no ``device=`` or ``like=`` is given."""
        return self.namespace().__array_namespace_info__().default_device()

    def devices(self) -> list[Device]:
        """The devices this backend can place arrays on."""
        return list(self.namespace().__array_namespace_info__().devices())

    def floating_dtypes(self, device: Device | None = None) -> dict[str, DType]:
        """Real floating dtypes available on ``device``, by name (half types included)."""
        info = self.namespace().__array_namespace_info__()
        return dict(info.dtypes(device=device, kind="real floating"))

    def default_float_dtype(self, device: Device | None = None) -> DType:
        """The library's default real floating dtype."""
        info = self.namespace().__array_namespace_info__()
        return info.default_dtypes(device=device)["real floating"]

    # -- host transfer (conformance and tests only) -----------------------------------
    def from_numpy(self, a: Any, /, *, dtype: DType, device: Device | None = None) -> Array:
        """A backend array with the values of NumPy array ``a``, cast to ``dtype``."""
        return self.namespace().asarray(a, dtype=dtype, device=device)

    def to_numpy(self, x: Array, /) -> Any:
        """A NumPy copy of ``x`` (half types widened to float32), for comparisons."""
        import numpy as np

        return np.asarray(x)

    # -- randomness -------------------------------------------------------------------
    def random_uniform(
        self, rng: Any, shape: tuple[int, ...], /, *, dtype: DType, device: Device, like: Array | None = None
    ) -> Array:
        """Uniform draws in ``[0, 1)`` from ``rng`` (an integer seed or a native generator).

        ``like`` is the array the draws go with (attention's queries for a dropout mask, the
        means of a reparameterization), for backends that lay draws out like their data (Dask
        chunks them as ``like``); others ignore it."""
        raise NotImplementedError(f"backend {self.name!r} has no random numbers")

    def random_normal(
        self, rng: Any, shape: tuple[int, ...], /, *, dtype: DType, device: Device, like: Array | None = None
    ) -> Array:
        """Standard normal draws from ``rng`` (an integer seed or a native generator);
        ``like`` as for :meth:`random_uniform`."""
        raise NotImplementedError(f"backend {self.name!r} has no random numbers")

    def split_rng(self, rng: Any, n: int, /) -> list[Any]:
        """``n`` rngs for ``n`` successive, independent draws (one per decoding step, say).

        The same ``rng`` gives the same list. The default suits stateful generators
        (NumPy, torch, CuPy): an integer seed becomes ``n`` distinct integer seeds derived
        with NumPy's ``SeedSequence`` (no generator is created here, so the device is
        chosen by the draw), and a native generator is returned ``n`` times, so that each
        draw advances it. Key-based backends override this (JAX: ``jax.random.split``).
        """
        if isinstance(rng, int) and not isinstance(rng, bool):
            import numpy as np

            seeds = np.random.SeedSequence(rng % 2**64).generate_state(n, dtype=np.uint32)
            return [int(s) for s in seeds]
        return [rng] * n

    # -- control flow and functions beyond the standard -------------------------------
    def scan(
        self,
        step: Callable[[Any, Array], tuple[Any, Array]],
        carry: Any,
        xs: Array,
        /,
    ) -> tuple[Any, Array]:
        """``carry, ys = scan(step, carry, xs)`` over the leading axis of ``xs``.

        ``step(carry, x_t) -> (carry, y_t)``; ``ys`` stacks the ``y_t`` along a new
        leading axis. The default is a Python loop; JAX overrides it with ``lax.scan``.
        """
        xp = self.namespace()
        ys = []
        for t in range(operator.index(xs.shape[0])):
            carry, y = step(carry, xs[t, ...])
            ys.append(y)
        return carry, xp.stack(ys)

    def local_shape(self, x: Array, /) -> tuple[Any, ...]:
        """The shape of the largest piece of ``x`` that one worker or device holds at a time:
        what size-based choices (plain or tiled attention under the memory budget) are judged
        on. The default is ``x.shape`` (one array in one memory); Dask answers its largest
        chunk, JAX a shard of a sharded array. Sizes may be ``None`` or symbolic (unknown)."""
        return tuple(x.shape)

    #: Native elementwise ``erf`` (a callable on this backend's arrays), or ``None`` to
    #: use the portable formula of :mod:`seqops._agnostic.special`.
    erf: Callable[[Array], Array] | None = None

    #: Native batched lower Cholesky factor, ``cholesky(a)`` of ``a (..., k, k)`` (raising
    #: where a matrix is not positive definite, or giving NaN as JAX does), or ``None`` to use
    #: ``xp.linalg.cholesky``.
    cholesky: Callable[[Array], Array] | None = None

    #: Native batched solve of lower-triangular systems, ``solve_lower(a, b) = a⁻¹ b`` for
    #: ``a (..., k, k)`` and ``b (..., k, n)`` (``kl_mvn``'s Cholesky factors), or ``None`` to
    #: use ``xp.linalg.solve`` (an LU solve: the same result; on JAX's CPU backend a batched
    #: one is ~20x slower than a triangular solve).
    solve_lower: Callable[[Array, Array], Array] | None = None

    def __repr__(self) -> str:
        return f"<seqops backend {self.name!r}>"


def check_rng(rng: Any, native: type, backend: str) -> None:
    """Raise a ``TypeError`` unless ``rng`` is an integer seed or a ``native`` generator.

    For backends (in :meth:`Backend.random_uniform` and the other draws) to check the ``rng`` they
    receive; ``bool`` is refused although it is an ``int``.

    Parameters
    ----------
    rng : object
        The ``rng`` argument a user passed.
    native : type
        The library's generator type (``numpy.random.Generator``, ``torch.Generator``).
    backend : str
        The backend's name, for the message.
    """
    if isinstance(rng, bool) or not isinstance(rng, (int, native)):
        kind = f"{native.__module__}.{native.__qualname__}"
        msg = f"rng for backend {backend!r} must be an integer seed or a {kind}; got {type(rng).__name__}"
        raise TypeError(msg)


@dataclass(frozen=True)
class Limitation:
    """Something a backend or an implementation does not support, and why.

    Declared once, on :attr:`seqops.Backend.limitations` or
    :attr:`Implementation.limitations`; each field left ``None`` matches anything. The
    conformance suite turns a backend's limitations into skips (with the reason), checks
    that an implementation really declines the calls its limitations name, and the support
    table of the docs (``seqops conformance --support-table``) is generated from them.

    Parameters
    ----------
    reason : str
        Why, in a few words (``"marray has no linalg extension"``).
    op : Op or str, optional
        A declared op (``seqops.ops.kl_mvn``) or its name (``"kl_mvn"``); an unknown name
        is a ``ValueError``.
    dtype : str, optional
        A floating dtype name (``"float16"``).
    device : str, optional
        A device label (``"cpu"``, ``"cuda:0"``) or its kind (``"cuda"`` matches every
        ``cuda:N``).
    transformation : str, optional
        A conformance transformation (``"grad"``, ``"jit"``, ``"vmap"``, ``"compile"``).

    Examples
    --------
    >>> from seqops import Limitation
    >>> no_half = Limitation("no half-precision kernels", dtype="float16")
    >>> no_half.matches(op="lstm", dtype="float16", device="cpu", transformation="eager")
    True
    >>> no_half.matches(op="lstm", dtype="float32", device="cpu", transformation="eager")
    False
    """

    reason: str
    op: str | None = None
    dtype: str | None = None
    device: str | None = None
    transformation: str | None = None

    def __post_init__(self) -> None:
        if self.op is not None:  # an Op or a declared name; unknown names fail here, naming it
            object.__setattr__(self, "op", as_op(self.op).name)

    def matches(self, *, op: str, dtype: str, device: str, transformation: str) -> bool:
        """Whether this limitation covers a call of ``op`` in ``dtype`` on ``device``
        (a label such as ``"cuda:0"``) under ``transformation``."""
        return (
            self.op in (None, op)
            and self.dtype in (None, dtype)
            and self.device in (None, device, device.split(":")[0])
            and self.transformation in (None, transformation)
        )

    def scope(self) -> str:
        """What it covers, e.g. ``"kl_mvn, float16"``, or ``"everything"``."""
        fields = (self.op, self.dtype, self.device, self.transformation)
        return ", ".join(f for f in fields if f is not None) or "everything"


def find_limitation(
    limitations: Sequence[Limitation], *, op: str, dtype: str, device: str, transformation: str
) -> Limitation | None:
    """The first of ``limitations`` that covers the call, else ``None``.

    Parameters
    ----------
    limitations : sequence of Limitation
        Those of a backend or an implementation.
    op : str
        The name of a declared op.
    dtype : str
        A dtype name (``"float16"``).
    device : str
        A device label (``"cpu"``, ``"cuda:0"``).
    transformation : str
        A conformance transformation (``"eager"``, ``"grad"``, ``"jit"``, ``"vmap"``,
        ``"compile"``).

    Returns
    -------
    Limitation or None
        The first whose :meth:`Limitation.matches` is true for the call.
    """
    return next(
        (
            lim
            for lim in limitations
            if lim.matches(op=op, dtype=dtype, device=device, transformation=transformation)
        ),
        None,
    )


@dataclass(frozen=True)
class Implementation:
    """One way to compute one declared op on one backend.

    Parameters
    ----------
    op : Op or str
        The declared op (``seqops.ops.scaled_dot_product_attention``) or its name; an
        unknown name is a ``ValueError``.
    name : str
        Shown by :func:`seqops.explain` and in conformance reports (``"portable"``,
        ``"torch-sdpa"``, ...).
    fn : callable
        Called as the op's contract says (``op.signature``, documented in
        :mod:`seqops.ops`): the backend, then exactly the arguments of the public function
        after validation, with defaults resolved (e.g. ``scale`` is a float), the arrays
        positionally and the options by name. Returns what the public function returns.
    decline : callable, optional
        Called with the same arguments before ``fn``; returns ``None`` to accept the call
        or a short reason to decline it (``"float64 is not supported by the flash kernel"``),
        in which case the next implementation is asked. ``None`` accepts every call. It must
        answer without raising, on symbolic or unknown sizes too (JAX export, Keras
        functional models, torch dynamic shapes, Dask's unknown chunks): a third-party
        ``decline`` that raises is quarantined for this op.
    limitations : tuple of Limitation
        What ``decline`` always refuses, declared (dtypes, devices, ops): documentation
        that the conformance suite checks (the implementation must decline those calls) and
        turns into the support table of the docs. ``decline`` stays the rule at run time.
    plugin : str
        The name of the plugin that offered it (set by the registry).

    Notes
    -----
    ``fn`` and ``decline`` are checked against the op's contract when the plugin is
    registered; one that does not match is refused with a :class:`seqops.SeqopsPluginWarning`
    naming the plugin, the op and the parameter.
    """

    op: Op
    name: str
    fn: Callable[..., Any]
    decline: Callable[..., str | None] | None = None
    limitations: tuple[Limitation, ...] = ()
    plugin: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "op", as_op(self.op))
