"""Cases of softmax, log-softmax and the elementwise activations (ReLU, SiLU, GELU)."""

from __future__ import annotations

from functools import partial

from seqops_conformance.cases._base import _add, _normal, _single
from seqops_conformance.references import activations as ref


def _large_logits(rng):
    # Magnitudes ~1e4 (float16 max is 65504), each row with a near-tie at its maximum so
    # the probabilities are not just one-hot.
    x = rng.uniform(-1e4, 1e4, (4, 9))
    top = x.max(axis=-1)
    x[:, 0], x[:, 1] = top - 0.5, top - 2.0
    x[3] = -1e4 + _normal(rng, 9)
    return (x,), {}


def _logits(shape, axis, rng):
    return (_normal(rng, *shape, scale=2.0),), {"axis": axis}


for _op, _reference in (("softmax", ref.softmax), ("log_softmax", ref.log_softmax)):
    _add(
        _op,
        {
            "axis -1": partial(_logits, (4, 9), -1),
            "axis 0": partial(_logits, (5, 3, 4), 0),
            "axis 1 of 3": partial(_logits, (3, 6, 4), 1),
            "large magnitude": _large_logits,
            "edge: empty batch": partial(_logits, (0, 9), -1),
            "edge: empty axis": partial(_logits, (4, 0), -1),
            "edge: V=1": partial(_logits, (4, 1), -1),
        },
        _single(_reference),
        # Not "large magnitude": a step of 1e-6 relative to logits of 1e4 is 1e-2, far too
        # coarse for central differences of a softmax with a near-tie.
        grad=("axis 1 of 3",),
    )


# -- the elementwise activations ------------------------------------------------------------------
def _values(rng):
    # Normals of scale 2 on the (4, 9) shape of the softmax cases (shared compilations on JAX).
    return (_normal(rng, 4, 9, scale=2.0),), {}


def _empty(rng):
    return (_normal(rng, 0, 9),), {}


def _with(build, **options):
    def built(rng):
        args, kwargs = build(rng)
        return args, {**kwargs, **options}

    return built


_add(
    "relu",
    {"normal": _values, "large magnitude": _large_logits, "edge: empty batch": _empty},
    _single(ref.relu),
    grad=("normal",),
)
_add(
    "silu",
    # Large magnitudes: exp(-x) of x = -1e4 overflows a naive 1 / (1 + exp(-x)).
    {"normal": _values, "large magnitude": _large_logits, "edge: empty batch": _empty},
    _single(ref.silu),
    grad=("normal",),
)
_add(
    "gelu",
    {
        "exact": _values,
        "tanh": _with(_values, approximate="tanh"),
        "exact large magnitude": _large_logits,
        "tanh large magnitude": _with(_large_logits, approximate="tanh"),
        "edge: empty batch": _empty,
        "edge: empty batch tanh": _with(_empty, approximate="tanh"),
    },
    _single(ref.gelu),
    grad=("exact", "tanh"),
)
