"""The one table of per-dtype tolerances and the error metric they bound.

Error metric
------------
Each output is compared with its float64 reference by the **normwise relative error in
the max norm**::

    error = max_i |out_i - ref_i| / max_i |ref_i|

(the absolute error ``max_i |out_i|`` when the reference is identically zero). It is the
error of the whole output relative to its scale, so a tiny softmax probability or a
log-probability far below the maximum does not turn a harmless rounding into a huge
elementwise ratio, while a systematic error (a 1 % scaling, a shifted causal diagonal, a
silent downcast) shows at once. A check passes when ``error <= TOLERANCES[dtype]``.

Outputs that are not floating (boolean masks, integer token ids) must match exactly;
their error is the fraction of entries that differ and their tolerance is 0.

Inputs are rounded to the dtype under test *before* the reference is computed (the
runner converts the backend inputs back to float64), so the tolerance measures the op,
not the rounding of its inputs.
"""

from __future__ import annotations

import numpy as np

# Each tolerance is c * u, with u = 2**-p the unit roundoff of the dtype (p significand
# bits, implicit bit included) and c a growth factor for what the cases compute: one
# rounding of the output (u), dot products and row sums over n <= 16 terms (gamma_n ~
# n*u worst case), exp/log/erf/tanh of a few ulp, and up to four chained stages
# (projections, attention, output projection, layer norm, whose 1/std amplifies the
# error of a row with small spread). The cases keep inputs O(1) and lengths <= 16.
TOLERANCES: dict[str, float] = {
    # u = 2**-53 ~ 1.1e-16. The analysis above gives ~1e-14 (observed <= 2e-15); 1e-10
    # leaves room for unlucky conditioning while still failing by orders of magnitude
    # any step silently computed in float32 (u = 6e-8): float64 must really be float64.
    "float64": 1e-10,
    # u = 2**-24 ~ 6.0e-8: c ~ 170 covers gamma_16 (1e-6) across the chained stages of
    # an encoder layer (observed <= 6e-7, layer norm of rows with mean 8), and a silent
    # float16/bfloat16 step (u >= 4.9e-4) fails.
    "float32": 1e-5,
    # u = 2**-11 ~ 4.9e-4: c ~ 20. Logits, softmax and normalisation run in float32 (the
    # contract), but the projections of a multi-stage op round to float16 between
    # stages: a handful of roundings of size u (observed <= 3.6u over 12 input seeds).
    "float16": 1e-2,
    # u = 2**-8 ~ 3.9e-3: the same handful of roundings (observed <= 4.8u over 12 seeds)
    # with c ~ 8 rather than 20, so that a systematic error of a few percent still fails.
    "bfloat16": 3e-2,
}


# Gradient checks (the "grad" transformation, seqops_conformance.grad)
# ---------------------------------------------------------------------------
# The autodiff vector-Jacobian product ``u^T J`` of the op (u a fixed random cotangent),
# contracted with 3 fixed random directions d per float input, against the central
# difference ``u . (f(x + h d) - f(x - h d)) / 2h`` of the float64 reference, at the inputs
# rounded to the dtype under test. The error is the normwise relative error of the vector
# of these directional derivatives (all inputs and directions of a case), as above.
#
# The finite differences carry their own error: truncation ~ h^2 |f^(3)| and cancellation
# ~ u64 |f| / h with h = 1e-6 max(1, max|x|) and u64 = 1.1e-16, i.e. ~1e-12 + ~1e-10
# relative to derivatives of order |f|. Observed on torch and JAX (CPU) over 32 cases of
# the 21 differentiable ops: float64 <= 3.4e-10, the same on both backends to two digits
# (the finite differences dominate); float32 <= 6.5e-7. The vision and generative cases
# (elbo through reparameterize included) stay inside that: float64 <= 2.2e-10 (elbo),
# float32 <= 5.0e-7 (kl_mvn, through the Cholesky factors).
GRADIENT_TOLERANCES: dict[str, float] = {
    # ~30x the finite-difference error observed; a backward pass silently computed in
    # float32 (observed 4e-8 to 6.5e-7) fails in almost every case.
    "float64": 1e-8,
    # As the float32 outputs: ~15x the worst observed, while a float16/bfloat16 step in the
    # backward pass (u >= 4.9e-4) or TF32 matmuls (u = 4.9e-4) fail.
    "float32": 1e-5,
    # float16 and bfloat16 are not gradient-checked: the ops compute half precision in
    # float32 and round inputs, outputs and the cotangent to u = 4.9e-4 (bfloat16 3.9e-3),
    # so the comparison would measure those roundings (amplified by the condition of the
    # op, e.g. 1/std in layer norm) rather than the backward pass, which is the float32
    # one already checked. The eager checks cover the half-precision forward.
}


def tolerance(dtype: str, transformation: str = "eager") -> float:
    """The tolerance of floating dtype ``dtype`` (by name, e.g. ``"float32"``), of the
    outputs (``transformation="eager"``) or of the gradients (``"grad"``).

    Raises
    ------
    KeyError
        If the dtype has no tolerance in :data:`TOLERANCES` (or :data:`GRADIENT_TOLERANCES`).
    """
    table = GRADIENT_TOLERANCES if transformation == "grad" else TOLERANCES
    try:
        return table[dtype]
    except KeyError:
        what = "gradient tolerance" if transformation == "grad" else "tolerance"
        msg = f"no conformance {what} for dtype {dtype!r}; known: {', '.join(table)}"
        raise KeyError(msg) from None


def error(out: np.ndarray, ref: np.ndarray) -> float:
    """The error of ``out`` against the reference ``ref`` (same shape), as defined above.

    Parameters
    ----------
    out : ndarray, shape ``(...)``
        The output under test, converted to NumPy.
    ref : ndarray, shape ``(...)``
        The float64 reference (or the exact boolean or integer expectation).

    Returns
    -------
    float
        The normwise relative error for floating outputs (``inf`` when ``out`` is not
        finite where ``ref`` is), the fraction of differing entries otherwise.
    """
    if ref.dtype.kind in "biu":
        return float(np.mean(out != ref)) if ref.size else 0.0
    if ref.size == 0:
        return 0.0
    out = out.astype(np.float64)
    if not np.array_equal(np.isfinite(out), np.isfinite(ref)):
        return float("inf")
    finite = np.isfinite(ref)
    # Non-finite reference entries (log-probabilities of -inf, NaN from a NaN input) must match exactly.
    if not np.array_equal(out[~finite], ref[~finite], equal_nan=True):  # NaN where the reference has NaN
        return float("inf")
    diff = float(np.max(np.abs(out[finite] - ref[finite]), initial=0.0))
    scale = float(np.max(np.abs(ref[finite]), initial=0.0))
    return diff / scale if scale > 0.0 else diff
