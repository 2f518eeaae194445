"""The :class:`Case` record, the registry :data:`CASES` and the input helpers shared by the families."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import seqops

_DECLARED = frozenset(op.name for op in seqops.declared_ops())


class _Like:
    """Placeholder for ``like=``: the runner substitutes an array of the backend under test."""

    def __repr__(self) -> str:
        return "LIKE"


LIKE = _Like()


Inputs = tuple[tuple[Any, ...], dict[str, Any]]


Build = Callable[[np.random.Generator], Inputs]


@dataclass(frozen=True)
class Case:
    """One conformance case of one public op.

    Attributes
    ----------
    op : str
        A declared op (``seqops.ops.<op>``), whose public function ``seqops.<op>`` is checked;
        an undeclared name fails when the case is made.
    name : str
        What the case exercises; unique within ``op``.
    build : callable
        ``build(rng) -> (args, kwargs)`` with float64 NumPy arrays.
    reference : callable
        ``reference(*args, **kwargs)``, the expected outputs nested as the op nests them
        (tuples, lists, dicts; ``None`` where the op returns ``None``): float64 arrays or
        Python floats, or bool and integer arrays for exact outputs.
    compare : {"close", "in_support"}
        ``"close"``: each output against the reference output (floating within the
        dtype's tolerance, boolean and integer exactly). ``"in_support"``: the op returns
        integer token ids ``(...)`` and the reference a boolean support ``(..., V)``; every
        id must be a token of the support (an exact check, for sampling).
    grad : bool
        Also check the gradient (the ``"grad"`` transformation, see
        :mod:`seqops_conformance.grad`) on the backends with autodiff.
    exact : bool
        Floating outputs must equal the reference exactly (tolerance 0): data movement
        (patches, windows, shifts) and 0/1 or 0/-100 masks, which no rounding may touch.
    traced : bool
        Also checked under the traced transformations (``jit``, ``vmap``, ``compile``);
        ``False`` where the contract makes the eager result depend on values read on the
        host (``decode`` stopping once every row has ended runs every step under a trace).
    call : callable, optional
        What is checked instead of ``seqops.<op>``: a composition of public ops (e.g.
        ``elbo`` of a decoder of ``reparameterize``), with the same argument conventions
        as an op. It may have an ``implementation(*args, **kwargs) -> str`` method naming
        what ran (reported like ``seqops.explain(...).chosen``).
    """

    op: str
    name: str
    build: Build
    reference: Callable[..., Any]
    compare: str = "close"
    grad: bool = False
    exact: bool = False
    call: Callable[..., Any] | None = None
    traced: bool = True

    def __post_init__(self) -> None:
        if self.op not in _DECLARED:  # a typo fails when the cases load, naming it
            known = ", ".join(sorted(_DECLARED))
            msg = f"case {self.name!r} of an unknown op {self.op!r}; declared ops: {known}"
            raise ValueError(msg)

    @property
    def id(self) -> str:
        return f"{self.op}[{self.name}]"

    @property
    def function(self) -> Callable[..., Any]:
        """What the case calls: :attr:`call`, else the public ``seqops.<op>``."""
        return self.call if self.call is not None else getattr(seqops, self.op)

    def implementation(self, *args: Any, **kwargs: Any) -> str:
        """Which implementation runs for these (backend) arguments."""
        if self.call is None:
            return str(seqops.explain(self.function, *args, **kwargs).chosen)
        named = getattr(self.call, "implementation", None)
        return str(named(*args, **kwargs)) if named is not None else "composition"

    def inputs(self, seed: int = 0) -> Inputs:
        """The case's float64 inputs, always the same for the same id and ``seed``
        (a non-negative integer)."""
        return self.build(np.random.default_rng(zlib.crc32(self.id.encode()) + (seed << 32)))


def _normal(rng: np.random.Generator, *shape: int, scale: float = 0.5) -> np.ndarray:
    return scale * rng.standard_normal(shape)


def _bools(rng: np.random.Generator, *shape: int, p: float = 0.7) -> np.ndarray:
    return rng.random(shape) < p


def _fixed(args: tuple[Any, ...], kwargs: dict[str, Any], rng: np.random.Generator) -> Inputs:
    """Build function of a case whose inputs are not random."""
    return args, dict(kwargs)


def _single(fn: Callable[..., np.ndarray]) -> Callable[..., tuple[np.ndarray, ...]]:
    return lambda *args, **kwargs: (fn(*args, **kwargs),)


CASES: list[Case] = []


def _add(
    op: str,
    builds: Mapping[str, Build],
    reference: Callable[..., Any],
    *,
    grad: Sequence[str] = (),
    compare: str = "close",
    exact: bool = False,
    eager_only: Sequence[str] = (),
) -> None:
    """Register one case of ``op`` per ``{name: build}`` entry; the cases named in
    ``grad`` also get gradient checks, those in ``eager_only`` no traced transformation."""
    unknown = (set(grad) | set(eager_only)) - set(builds)
    assert not unknown, f"options of unknown {op} cases {unknown}"
    CASES.extend(
        Case(
            op,
            name,
            build,
            reference,
            compare=compare,
            grad=name in grad,
            exact=exact,
            traced=name not in eager_only,
        )
        for name, build in builds.items()
    )


def _linear_weights(rng, d_in, d_out, bias=True):
    w = rng.standard_normal((d_in, d_out)) / np.sqrt(d_in)
    return w, (_normal(rng, d_out, scale=0.1) if bias else None)


def _arrays(*shapes_and_rng, **options):
    """Inputs: one normal array per shape (``partial(_arrays, *shapes)``, then ``rng``)."""
    *shapes, rng = shapes_and_rng
    return tuple(_normal(rng, *shape, scale=1.0) for shape in shapes), options
