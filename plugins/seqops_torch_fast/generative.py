"""The log-likelihoods and the IWAE bound on torch's fused kernels.

- ``bernoulli_log_likelihood``: ``-binary_cross_entropy_with_logits(logits, x, reduction="none")``
  (torch's fused ``softplus(l) - x·l``, stable for any logit) summed over ``axis``, on the
  broadcast views of ``x`` and ``logits``.
- ``gaussian_log_likelihood``: torch has no kernel for it (``gaussian_nll_loss`` clamps the
  variance); the contract's stable form ``z² + log_var`` with ``z = (x − mean)·exp(−log_var/2)``
  in four kernels (``addcmul`` for ``z·z + log_var``, the exponential in place on its own
  temporary), the constant added once to the sums. The portable formula takes six passes:
  1.12-1.16x of the plain formula a torch user writes (512 x 2048, float32).
- ``kl_normal_standard`` and ``kl_normal_normal``: the contract's forms (``expm1(r) − r`` and the
  mean difference in units of ``σp``, module docstring of ``seqops._agnostic.generative``) with
  ``addcmul`` for ``… + z·z``: one pass less than the portable formula, whose ratio to the
  plain formula moved between 0.83 and 1.21 from run to run (512 x 2048, float32).
- ``iwae_bound``: ``torch.logsumexp`` of the log-weights minus ``log K``: one fused reduction
  (the largest log-weight taken out, an infinite one by 0, as the contract's), where the
  portable formula takes six passes (1.10-1.15x of ``torch.logsumexp``, 256 x 4096). Declined
  under autodiff: torch's derivative, ``exp(log w − result)``, rounds ``result`` at its own
  magnitude (float32 log-weights near -1e4 gave importance weights summing to 1 ± 4e-4; the
  portable path's, from the shifted weights, to 1 ± 1e-6). No samples (``K = 0``) is declined
  too: the portable path gives its NaN.

Half precision runs on float32 copies, cast back once (the contract's compute dtype).
"""

from __future__ import annotations

import math
from typing import Any

import seqops

from ._functorch import differentiated

_K: dict[str, Any] = {}


def _load() -> dict[str, Any]:
    import torch

    _K.update(
        bce=torch.nn.functional.binary_cross_entropy_with_logits,
        addcmul=torch.addcmul,
        expm1=torch.expm1,
        logsumexp=torch.logsumexp,
        broadcast=torch.broadcast_tensors,
        float32=torch.float32,
        native=frozenset((torch.float32, torch.float64)),
    )
    return _K


def implementations() -> list[seqops.Implementation]:
    ops = seqops.ops
    return [
        seqops.Implementation(
            ops.bernoulli_log_likelihood, "torch-bce-with-logits", bernoulli_log_likelihood
        ),
        seqops.Implementation(
            ops.gaussian_log_likelihood, "torch-gaussian-log-likelihood", gaussian_log_likelihood
        ),
        seqops.Implementation(ops.kl_normal_standard, "torch-kl-normal-standard", kl_normal_standard),
        seqops.Implementation(ops.kl_normal_normal, "torch-kl-normal-normal", kl_normal_normal),
        seqops.Implementation(ops.iwae_bound, "torch-logsumexp-iwae", iwae_bound, decline=decline_iwae_bound),
    ]


NO_SAMPLES = "no samples (K = 0): left to the portable path, which gives its NaN"
DIFFERENTIATED = (
    "under autodiff: torch.logsumexp's derivative exp(x - result) loses float32 precision at "
    "log-weights of large magnitude (the portable path's does not)"
)
_LOG_2PI = math.log(2.0 * math.pi)


def bernoulli_log_likelihood(
    backend: seqops.Backend, x: Any, logits: Any, /, *, axis: tuple[int, ...]
) -> Any:
    k = _K or _load()
    dtype = logits.dtype
    if dtype not in k["native"]:
        x, logits = x.to(k["float32"]), logits.to(k["float32"])
    if x.shape != logits.shape:
        x, logits = k["broadcast"](x, logits)
    terms = k["bce"](logits, x, reduction="none")  # -(x·l - softplus(l))
    # torch's sum over dim=() would reduce every axis: no axis is no sum
    return (-terms if not axis else -terms.sum(axis)).to(dtype)


def gaussian_log_likelihood(
    backend: seqops.Backend, x: Any, mean: Any, log_var: Any, /, *, axis: tuple[int, ...]
) -> Any:
    k = _K or _load()
    dtype = x.dtype
    if dtype not in k["native"]:
        x, mean, log_var = x.to(k["float32"]), mean.to(k["float32"]), log_var.to(k["float32"])
    # exp_ in place on the product's own output: autograd keeps exp's result, and the
    # product's backward does not need its output
    z = (x - mean) * log_var.mul(-0.5).exp_()  # the standardized residual, broadcast
    terms = k["addcmul"](log_var, z, z)  # z² + log_var
    if not axis:
        return (-0.5 * (terms + _LOG_2PI)).to(dtype)
    count = 1  # the entries summed (a loop: Dynamo does not trace a generator)
    for a in axis:
        count *= terms.shape[a]
    return (-0.5 * (terms.sum(axis) + count * _LOG_2PI)).to(dtype)


def _summed(terms: Any, axis: tuple[int, ...]) -> Any:
    """``terms`` summed over ``axis``; none for ``()`` (torch's ``sum(())`` reduces every axis)."""
    return terms.sum(axis) if axis else terms


def kl_normal_standard(backend: seqops.Backend, mu: Any, log_var: Any, /, *, axis: tuple[int, ...]) -> Any:
    k = _K or _load()
    dtype = mu.dtype
    if dtype not in k["native"]:
        mu, log_var = mu.to(k["float32"]), log_var.to(k["float32"])
    # not expm1(...).sub_(...): expm1's derivative reads its output
    terms = k["addcmul"](k["expm1"](log_var) - log_var, mu, mu)  # expm1(lv) − lv + mu²
    return (0.5 * _summed(terms, axis)).to(dtype)


def kl_normal_normal(
    backend: seqops.Backend,
    mu_q: Any,
    log_var_q: Any,
    mu_p: Any,
    log_var_p: Any,
    /,
    *,
    axis: tuple[int, ...],
) -> Any:
    k = _K or _load()
    dtype = mu_q.dtype
    if dtype not in k["native"]:
        mu_q, log_var_q, mu_p, log_var_p = (t.to(k["float32"]) for t in (mu_q, log_var_q, mu_p, log_var_p))
    r = log_var_q - log_var_p
    z = (mu_q - mu_p) * log_var_p.mul(-0.5).exp_()  # the mean difference in units of σp
    terms = k["addcmul"](k["expm1"](r) - r, z, z)
    return (0.5 * _summed(terms, axis)).to(dtype)


def decline_iwae_bound(
    backend: seqops.Backend, log_p_x_given_z: Any, log_p_z: Any, log_q_z: Any, /, *, axis: int
) -> str | None:
    if differentiated(log_p_x_given_z, log_p_z, log_q_z):
        return DIFFERENTIATED
    # K = 0 when one input has no sample along ``axis`` (negative, validated to broadcast): not
    # torch.broadcast_shapes, whose Python reference implementation took ~0.1 ms a call
    for t in (log_p_x_given_z, log_p_z, log_q_z):  # a loop: Dynamo does not trace a generator
        if t.ndim >= -axis and t.shape[axis] == 0:
            return NO_SAMPLES
    return None


def iwae_bound(
    backend: seqops.Backend, log_p_x_given_z: Any, log_p_z: Any, log_q_z: Any, /, *, axis: int
) -> Any:
    k = _K or _load()
    dtype = log_p_x_given_z.dtype
    if dtype not in k["native"]:
        log_p_x_given_z, log_p_z, log_q_z = (t.to(k["float32"]) for t in (log_p_x_given_z, log_p_z, log_q_z))
    log_w = log_p_x_given_z + log_p_z - log_q_z  # (..., K, ...), the samples along axis
    return (k["logsumexp"](log_w, axis) - math.log(log_w.shape[axis])).to(dtype)
