"""Built-in implementations of the losses: cross-entropy, autoregressive log-likelihood."""

from __future__ import annotations

from typing import Any

from seqops import ops
from seqops._agnostic import losses
from seqops._builtin._table import implement
from seqops._lib.placement import helper_device
from seqops._lib.typing import Array
from seqops.contract import Backend


@implement(ops.cross_entropy)
def cross_entropy(
    backend: Backend,
    logits: Array,
    targets: Array,
    /,
    *,
    weight: Array | None,
    ignore_index: int | None,
    label_smoothing: float,
    reduction: str,
) -> Array:
    return losses.cross_entropy(
        backend.namespace(),
        logits,
        targets,
        device=helper_device(logits),
        weight=weight,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
        reduction=reduction,
    )


@implement(ops.autoregressive_log_likelihood)
def autoregressive_log_likelihood(backend: Backend, logits: Array, targets: Array, /) -> Any:
    return losses.autoregressive_log_likelihood(
        backend.namespace(), logits, targets, device=helper_device(logits)
    )
