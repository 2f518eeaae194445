"""Cases of gradient clipping by norm and by value."""

from __future__ import annotations

import math
from functools import partial

from seqops_conformance.cases._base import _add, _normal
from seqops_conformance.references import clipping as ref


def _grads(rng, *, container=list, empty=False, **options):
    """Three gradients ``(3, 4)``, ``None`` and ``(5,)`` (global 2-norm about 4); ``(0, 4)``,
    ``None`` and ``(0,)`` when ``empty``."""
    arrays = [_normal(rng, 0 if empty else 3, 4, scale=1.0), None, _normal(rng, 0 if empty else 5, scale=1.0)]
    grads = dict(zip(("w", "skip", "b"), arrays, strict=True)) if container is dict else arrays
    return (grads,), options


def _ref_clip_norm(grads, max_norm, **options):
    values = list(grads.values()) if isinstance(grads, dict) else grads
    clipped, total = ref.clip_grad_norm(values, max_norm, **options)
    return (dict(zip(grads, clipped, strict=True)) if isinstance(grads, dict) else clipped), total


def _ref_clip_value(grads, clip_value):
    values = list(grads.values()) if isinstance(grads, dict) else grads
    clipped = ref.clip_grad_value(values, clip_value)
    return dict(zip(grads, clipped, strict=True)) if isinstance(grads, dict) else clipped


_add(
    "clip_grad_norm",
    {
        "norm 2 above": partial(_grads, max_norm=1.0),
        "norm 2 below": partial(_grads, max_norm=100.0),
        "norm 1 above": partial(_grads, max_norm=2.0, norm_type=1.0),
        "norm 1 below": partial(_grads, max_norm=100.0, norm_type=1.0),
        "norm inf above": partial(_grads, max_norm=0.5, norm_type=math.inf),
        "norm inf below": partial(_grads, max_norm=10.0, norm_type=math.inf),
        "norm 3 dict eps": partial(_grads, container=dict, max_norm=0.5, norm_type=3.0, eps=0.1),
        # No entry: the norm is 0 and the arrays come back unchanged (empty).
        "edge: empty arrays": partial(_grads, empty=True, max_norm=1.0),
        "edge: empty arrays norm inf": partial(_grads, empty=True, max_norm=1.0, norm_type=math.inf),
        "edge: empty arrays norm 1 dict": partial(
            _grads, container=dict, empty=True, max_norm=1.0, norm_type=1.0
        ),
    },
    _ref_clip_norm,
)


_add(
    "clip_grad_value",
    {
        "list": partial(_grads, clip_value=0.5),
        "dict": partial(_grads, container=dict, clip_value=1.0),
        "nothing clipped": partial(_grads, clip_value=10.0),
        "edge: empty arrays": partial(_grads, empty=True, clip_value=0.5),
    },
    _ref_clip_value,
)
