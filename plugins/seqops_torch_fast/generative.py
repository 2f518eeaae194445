"""The Bernoulli log-likelihood on ``torch.nn.functional.binary_cross_entropy_with_logits``.

``bernoulli_log_likelihood``: ``-binary_cross_entropy_with_logits(logits, x, reduction="none")``
(torch's fused ``softplus(l) - x·l``, stable for any logit) summed over ``axis``, on the
broadcast views of ``x`` and ``logits``; half precision on float32 copies, cast back once.
``gaussian_log_likelihood`` has no torch kernel (``gaussian_nll_loss`` clamps the variance):
the portable formula is what torch would run.
"""

from __future__ import annotations

from typing import Any

import seqops

_K: dict[str, Any] = {}


def _load() -> dict[str, Any]:
    import torch

    _K.update(
        bce=torch.nn.functional.binary_cross_entropy_with_logits,
        broadcast=torch.broadcast_tensors,
        float32=torch.float32,
        native=frozenset((torch.float32, torch.float64)),
    )
    return _K


def implementations() -> list[seqops.Implementation]:
    return [
        seqops.Implementation(
            seqops.ops.bernoulli_log_likelihood, "torch-bce-with-logits", bernoulli_log_likelihood
        )
    ]


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
