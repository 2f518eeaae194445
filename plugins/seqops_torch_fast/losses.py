"""Cross-entropy and the autoregressive log-likelihood on torch's kernels.

- ``cross_entropy``: ``torch.nn.functional.cross_entropy`` (its fused log-softmax and NLL,
  weights, ``ignore_index``, label smoothing and reductions are the contract's formula) on
  ``(N, C)`` (or ``(N, C, ...)`` when the class axis was moved last by the public layer).
- ``autoregressive_log_likelihood``: ``torch.log_softmax`` and a ``gather`` of the targets.

Half precision is computed on a float32 copy and cast back once (torch would compute the
log-softmax in half precision). Targets outside ``[0, C)`` that are not ignored give NaN, as
the portable path: the public layer raises for them whenever it can read the values, so
they arrive only where it cannot (``torch.compile``, ``torch.func`` transforms); there (and
only there: a few operations on the targets) they are replaced by an ignored index before
torch sees them (torch would raise, or assert on a GPU) and their losses set to NaN.
"""

from __future__ import annotations

import math
from typing import Any

import seqops

EMPTY_CLASSES = "no classes (C = 0)"
IGNORE_RANGE = "an ignore_index that is not a 64-bit integer"
UNKNOWN_SIZE = "an unknown number of classes"
WEIGHT_GRAD = "a weight that requires grad: torch's nll_loss is not differentiable in weight"

_INT64 = (-(2**63), 2**63 - 1)
_K: dict[str, Any] = {}


def _load() -> dict[str, Any]:
    import torch

    _K.update(
        cross_entropy=torch.nn.functional.cross_entropy,
        log_softmax=torch.log_softmax,
        where=torch.where,
        compiling=torch.compiler.is_compiling,
        wrapped=torch._C._functorch.is_functorch_wrapped_tensor,
        int64=torch.int64,
        float32=torch.float32,
        native=frozenset((torch.float32, torch.float64)),
    )
    return _K


def implementations() -> list[seqops.Implementation]:
    ops = seqops.ops
    return [
        seqops.Implementation(
            ops.cross_entropy, "torch-cross-entropy", cross_entropy, decline=decline_cross_entropy
        ),
        seqops.Implementation(
            ops.autoregressive_log_likelihood,
            "torch-log-likelihood",
            autoregressive_log_likelihood,
            decline=decline_log_likelihood,
        ),
    ]


def _unread(targets: Any, k: dict[str, Any]) -> bool:
    """Whether the public layer could not read ``targets`` to raise for those out of range:
    while Dynamo traces, or inside a ``torch.func`` transform."""
    return k["compiling"]() or k["wrapped"](targets)  # type: ignore[no-any-return]


def _decline_classes(logits: Any) -> str | None:
    classes = logits.shape[-1]
    if not isinstance(classes, int):
        return UNKNOWN_SIZE
    if classes == 0:
        return EMPTY_CLASSES
    return None


def _differentiated(x: Any) -> bool:
    """Whether a gradient may be asked of ``x``: autograd, or a ``torch.func`` transform
    (a functorch-wrapped tensor: grad, vjp, jacrev, or vmap over them)."""
    if x.requires_grad:
        return True
    k = _K or _load()
    return not k["compiling"]() and k["wrapped"](x)  # type: ignore[no-any-return]


def decline_cross_entropy(
    backend: seqops.Backend,
    logits: Any,
    targets: Any,
    /,
    *,
    weight: Any,
    ignore_index: int | None,
    label_smoothing: float,
    reduction: str,
) -> str | None:
    if ignore_index is not None and not _INT64[0] <= ignore_index <= _INT64[1]:
        return IGNORE_RANGE
    if weight is not None and _differentiated(weight):
        return WEIGHT_GRAD
    return _decline_classes(logits)


def cross_entropy(
    backend: seqops.Backend,
    logits: Any,
    targets: Any,
    /,
    *,
    weight: Any,
    ignore_index: int | None,
    label_smoothing: float,
    reduction: str,
) -> Any:
    k = _K or _load()
    dtype = logits.dtype
    if dtype not in k["native"]:
        logits = logits.to(k["float32"])
        weight = None if weight is None else weight.to(k["float32"])
    classes = logits.shape[-1]
    t = targets.to(k["int64"])
    # Without ignore_index, -100 (torch's default) cannot be a valid target: nothing ignored.
    ignored = -100 if ignore_index is None else ignore_index
    bad = None
    if _unread(t, k):
        bad = (t < 0) | (t >= classes)
        if ignore_index is not None:
            bad = bad & (t != ignore_index)
        t = k["where"](bad, ignored, t)  # torch never sees an index it would refuse
    if logits.ndim > 2 and not logits.is_contiguous():
        # the public layer moved the class axis last: torch's (N, C, d1, ...) is a view
        loss = k["cross_entropy"](
            logits.movedim(-1, 1),
            t,
            weight,
            ignore_index=ignored,
            reduction=reduction,
            label_smoothing=label_smoothing,
        )
    else:
        loss = k["cross_entropy"](
            logits.reshape(-1, classes) if logits.ndim != 2 else logits,
            t.reshape(-1) if t.ndim != 1 else t,
            weight,
            ignore_index=ignored,
            reduction=reduction,
            label_smoothing=label_smoothing,
        )
        if reduction == "none":
            loss = loss.reshape(targets.shape)
    if bad is not None:
        loss = k["where"](bad if reduction == "none" else bad.any(), math.nan, loss)
    return loss.to(dtype)


def decline_log_likelihood(backend: seqops.Backend, logits: Any, targets: Any, /) -> str | None:
    return _decline_classes(logits)


def autoregressive_log_likelihood(backend: seqops.Backend, logits: Any, targets: Any, /) -> Any:
    k = _K or _load()
    dtype = logits.dtype
    logp = (
        k["log_softmax"](logits, -1)
        if dtype in k["native"]
        else k["log_softmax"](logits, -1, dtype=k["float32"])
    )
    t = targets.to(k["int64"])
    if not _unread(t, k):
        return logp.gather(-1, t[..., None])[..., 0].sum(-1).to(dtype)
    bad = (t < 0) | (t >= logits.shape[-1])
    picked = logp.gather(-1, k["where"](bad, 0, t)[..., None])[..., 0]  # (..., T)
    return k["where"](bad, math.nan, picked).sum(-1).to(dtype)
