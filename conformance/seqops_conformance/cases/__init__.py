"""The conformance cases: inputs for every public op and the reference each is checked against.

A :class:`Case` builds float64 NumPy inputs (``args``, ``kwargs`` of the public call) from
a generator seeded by its id, so every backend and dtype sees the same values. The
runner casts floating arrays to the dtype under test, keeps boolean and integer arrays,
converts the entries of tuples, lists and dicts (LSTM states, ``MHAParams``, gradient
containers) and replaces :data:`LIKE` by an array of the backend, device and dtype under
test; anything else (a seed, the step function of ``decode``) passes unchanged. The
reference is then called with the same arguments, converted back to NumPy (``like``
dropped), and returns the expected outputs.

Cases marked ``exact`` (data movement: patches, windows, shifts; 0/1 and 0/-100 masks)
have tolerance 0 even for floating outputs. A case may check a composition of public ops
instead of one op (``call``): ``elbo`` of a linear decoder of ``reparameterize`` with a
given ``eps``, whose gradient with respect to ``mu`` and ``log_var`` takes both paths.

Random ops are checked on what is deterministic about them: ``sample_logits`` with
``top_k=1`` must be :func:`seqops.greedy`, and every id it draws must lie in the support
that temperature, top-k and top-p leave (``compare="in_support"``). Cases marked ``grad``
also get gradient checks on the backends with autodiff.

Sizes stay small (lengths and widths <= 16) and random inputs are normals of scale 0.5 to
2 (weights scaled by ``1/sqrt(fan_in)``), so half precision is exercised without overflow.

The cases live in one module per op family, named like the library's; importing this package
registers them all, in this order.
"""

from __future__ import annotations

from seqops_conformance.cases._base import CASES, LIKE, Build, Case, Inputs

# Each family module registers its cases when imported: this order is the order of CASES and OPS.
# isort: off
from seqops_conformance.cases import attention  # noqa: F401
from seqops_conformance.cases import activations  # noqa: F401
from seqops_conformance.cases import transformer  # noqa: F401
from seqops_conformance.cases import recurrent  # noqa: F401
from seqops_conformance.cases import losses  # noqa: F401
from seqops_conformance.cases import decoding  # noqa: F401
from seqops_conformance.cases import clipping  # noqa: F401
from seqops_conformance.cases import vision  # noqa: F401
from seqops_conformance.cases import pixelcnn  # noqa: F401
from seqops_conformance.cases import generative  # noqa: F401
from seqops_conformance.cases import nonfinite  # noqa: F401  (NaN inputs, across families)
# isort: on

OPS: tuple[str, ...] = tuple(dict.fromkeys(case.op for case in CASES))
"""Every op with cases, in registry order."""

__all__ = ["CASES", "LIKE", "OPS", "Build", "Case", "Inputs"]
