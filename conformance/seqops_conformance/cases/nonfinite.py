"""Cases with NaN in the inputs (issue 14: non-finite inputs give the same visible result on
every implementation): NaN stays visible where the float64 reference has it, in the same
entries, and nowhere else (the comparison matches NaN with NaN, see
:func:`seqops_conformance.tolerances.error`). One module across families: these cases share
one rule, "a NaN input row is a NaN output row", rather than a family's layout."""

from __future__ import annotations

import numpy as np

from seqops_conformance.cases._base import _add, _normal, _single
from seqops_conformance.cases.attention import _ref_sdpa
from seqops_conformance.references import activations as act
from seqops_conformance.references import losses as losses
from seqops_conformance.references import transformer as tf


def _rows(rng, *shape):
    """Normals of ``shape`` with one NaN in row 1 (and row 0 untouched)."""
    x = _normal(rng, *shape, scale=1.0)
    x[(1,) * (len(shape) - 1) + (2,)] = np.nan
    return x


def _one(rng):
    return (_rows(rng, 3, 6),), {}


for _op, _reference in (
    ("softmax", act.softmax),
    ("log_softmax", act.log_softmax),
    ("relu", act.relu),
    ("silu", act.silu),
    ("gelu", act.gelu),
    ("layer_norm", tf.layer_norm),
    ("rms_norm", tf.rms_norm),
):
    _add(_op, {"nonfinite: a NaN in row 1": _one}, _single(_reference))


def _sdpa_nan_query(rng, **options):
    q = _rows(rng, 2, 5, 8)  # query row (0, 1) holds a NaN: its output row is NaN
    return (q, _normal(rng, 2, 7, 8), _normal(rng, 2, 7, 6)), options


def _sdpa_nan_key(rng):
    k = _rows(rng, 2, 7, 8)  # key (0, 1): every query of batch 0 sees it (no mask)
    return (_normal(rng, 2, 5, 8), k, _normal(rng, 2, 7, 6)), {}


def _sdpa_excluded_nan_key(rng, **options):
    """A NaN in key (0, 3): the queries that exclude it (mask or causality) are finite, the
    ones attending it NaN (torch adds its mask as -inf to a NaN score: torch-sdpa cleans it)."""
    k = _normal(rng, 2, 7, 8)
    k[0, 3, 2] = np.nan
    if not options:  # rows 0-2 exclude key 3, rows 3-4 attend it
        mask = np.ones((5, 7), dtype=bool)
        mask[:3, 3] = False
        options = {"mask": mask}
    return (_normal(rng, 2, 5, 8), k, _normal(rng, 2, 7, 6)), options


# Not a case: a NaN in a *value* the mask excludes makes every row NaN (its weight of 0 times
# NaN is NaN, in torch's and JAX's attention too; docs/errors-and-edge-cases.md).


_add(
    "scaled_dot_product_attention",
    {
        "nonfinite: NaN query row": _sdpa_nan_query,
        "nonfinite: NaN query row causal": lambda rng: _sdpa_nan_query(rng, is_causal=True),
        "nonfinite: NaN key": _sdpa_nan_key,
        "nonfinite: NaN key the mask excludes": _sdpa_excluded_nan_key,
        "nonfinite: NaN key causality excludes": lambda rng: _sdpa_excluded_nan_key(rng, is_causal=True),
    },
    _ref_sdpa,
)


def _cross_entropy_nan(rng):
    logits = _rows(rng, 4, 6)  # example 1 has a NaN logit: its loss is NaN
    return (logits, rng.integers(0, 6, (4,))), {"reduction": "none"}


_add("cross_entropy", {"nonfinite: a NaN logit": _cross_entropy_nan}, _single(losses.cross_entropy))
