"""Cases of the losses: cross-entropy and autoregressive log-likelihood."""

from __future__ import annotations

from functools import partial

import array_api_compat
import numpy as np

import seqops
from seqops_conformance.cases._base import CASES, Case, _add, _normal
from seqops_conformance.references import losses as ref

# Batch 3, 5 positions, a vocabulary (or class count) of 10, shared by the losses and decoding.
_N, _L, _V = 3, 5, 10


def _class_logits(rng, *, axis=-1, ignore=None, scale=2.0, shape=(_N, _L, _V), **options):
    """Logits ``(N, L, V)`` of the given scale (``(N, V, L)`` for ``axis=1``) and targets
    ``(N, L)``; the targets at the positions of the ``ignore`` mask are
    ``options["ignore_index"]``."""
    logits = _normal(rng, *shape, scale=scale)
    targets = rng.integers(0, shape[-1], shape[:-1])
    if ignore is not None:
        targets[np.asarray(ignore)] = options["ignore_index"]
    kwargs = dict(options)
    if axis != -1:
        logits = np.moveaxis(logits, -1, axis).copy()
        kwargs["axis"] = axis
    if kwargs.get("weight") is True:
        kwargs["weight"] = rng.uniform(0.5, 2.0, _V)
    return (logits, targets), kwargs


_IGNORED = [[False, True, False, False, True], [False] * 5, [True, False, False, False, False]]


_add(
    "cross_entropy",
    {
        "mean": _class_logits,
        "sum": partial(_class_logits, reduction="sum"),
        "none": partial(_class_logits, reduction="none"),
        "axis=1 (torch layout)": partial(_class_logits, axis=1),
        "axis=1 none": partial(_class_logits, axis=1, reduction="none"),
        "weight": partial(_class_logits, weight=True),
        "ignore_index": partial(_class_logits, ignore=_IGNORED, ignore_index=-100),
        "label_smoothing": partial(_class_logits, label_smoothing=0.1),
        "weight ignore smoothing sum": partial(
            _class_logits, weight=True, ignore=_IGNORED, ignore_index=7, label_smoothing=0.2, reduction="sum"
        ),
        "weight ignore smoothing none axis=1": partial(
            _class_logits,
            axis=1,
            weight=True,
            ignore=_IGNORED,
            ignore_index=-1,
            label_smoothing=0.2,
            reduction="none",
        ),
        "weight ignore smoothing mean": partial(
            _class_logits, weight=True, ignore=_IGNORED, ignore_index=-1, label_smoothing=0.3
        ),
        "logits ±1e4 none": partial(_class_logits, scale=5e3, reduction="none"),
        "edge: empty batch none": partial(_class_logits, shape=(0, _L, _V), reduction="none"),
        "edge: empty batch sum": partial(_class_logits, shape=(0, _L, _V), reduction="sum"),
        "edge: V=1": partial(_class_logits, shape=(_N, _L, 1), reduction="none"),
        "edge: V=1 smoothing mean": partial(_class_logits, shape=(_N, _L, 1), label_smoothing=0.2),
    },
    ref.cross_entropy,
    grad=("mean", "weight ignore smoothing none axis=1", "weight ignore smoothing mean"),
)


class _IsNan:
    """``isnan(seqops.<op>(...))``: checks a result defined as NaN (the comparison of
    floating outputs does not match NaN with NaN)."""

    def __init__(self, op):
        self.op = op

    def __call__(self, *args, **kwargs):
        out = getattr(seqops, self.op)(*args, **kwargs)
        return array_api_compat.array_namespace(out).isnan(out)

    def implementation(self, *args, **kwargs):
        return str(seqops.explain(getattr(seqops, self.op), *args, **kwargs).chosen)


# A mean over no target is 0/0 (torch's NaN): defined as NaN here too.
CASES.append(
    Case(
        "cross_entropy",
        "edge: empty batch mean",
        partial(_class_logits, shape=(0, _L, _V)),
        lambda *args, **kwargs: np.array(True),
        call=_IsNan("cross_entropy"),
    )
)


def _sequence_logits(rng, *, lead=(_N,), axis=-1, length=_L, vocabulary=_V):
    logits = _normal(rng, *lead, length, vocabulary, scale=2.0)
    targets = rng.integers(0, vocabulary, (*lead, length))
    if axis == -1:
        return (logits, targets), {}
    return (np.moveaxis(logits, -1, axis).copy(), targets), {"axis": axis}


_add(
    "autoregressive_log_likelihood",
    {
        "batch": _sequence_logits,
        "vocabulary axis 1": partial(_sequence_logits, axis=1),
        "batch dims (2,3)": partial(_sequence_logits, lead=(2, 3)),
        "edge: empty batch": partial(_sequence_logits, lead=(0,)),
        "edge: L=0": partial(_sequence_logits, length=0),
        "edge: V=1": partial(_sequence_logits, vocabulary=1),
    },
    ref.autoregressive_log_likelihood,
    grad=("batch", "vocabulary axis 1"),
)
