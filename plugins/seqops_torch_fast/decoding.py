"""The top-k logits filter and top-k sampling on ``torch.topk``.

- ``filter_logits`` with ``top_k`` (and no top-p): the ``k``-th largest value of each row
  from ``torch.topk`` (no full sort), every logit ``>=`` it kept (ties with the ``k``-th value
  are all kept, as the contract says), the others ``-inf``.
- ``sample_logits`` with ``top_k``: a Gumbel-max draw over the ``k`` tokens ``torch.topk``
  returns, from ``k`` uniform draws per row (drawing over the whole vocabulary, as the
  portable path does, took 3.6x the time of ``torch.topk`` + ``torch.multinomial``), unless a
  row has ties with its ``k``-th value (then over every kept token, from draws over the whole
  vocabulary). The same distribution as the portable path, and the same tokens for the same
  ``rng``, but not the portable path's tokens (the contract: the same ``rng`` gives the same
  result with the same implementation). Finding ties reads one boolean: declined while traced
  (``torch.compile``, ``torch.func``) and on meta tensors, where the portable sampling runs over
  this filter.

Top-p needs the sorted cumulative probabilities: declined to the portable path.
"""

from __future__ import annotations

import math
from typing import Any

import seqops

TOP_P = "top_p < 1: the nucleus needs a sorted cumulative sum (the portable path)"
UNKNOWN_SIZE = "an unknown vocabulary size"
NO_TOP_K = "no top_k: nothing for torch.topk to do (the portable sampling runs over the filter)"
TRACED = "traced (torch.compile or a torch.func transform): the tie check reads a value"
META = "meta tensors: the tie check reads a value, which they do not have"

_K: dict[str, Any] = {}


def _load() -> dict[str, Any]:
    import torch

    _K.update(
        topk=torch.topk,
        where=torch.where,
        log=torch.log,
        compiling=torch.compiler.is_compiling,
        wrapped=torch._C._functorch.is_functorch_wrapped_tensor,
        tiny=torch.finfo(torch.float32).tiny,
        below_one=1.0 - torch.finfo(torch.float32).eps / 2,  # draws kept in (0, 1): see gumbel_argmax
        float32=torch.float32,
        native=frozenset((torch.float32, torch.float64)),
    )
    return _K


def implementations() -> list[seqops.Implementation]:
    return [
        seqops.Implementation(
            seqops.ops.filter_logits, "torch-topk", filter_logits, decline=decline_filter_logits
        ),
        seqops.Implementation(
            seqops.ops.sample_logits, "torch-topk-sample", sample_logits, decline=decline_sample_logits
        ),
    ]


def decline_filter_logits(
    backend: seqops.Backend,
    logits: Any,
    /,
    *,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    min_tokens_to_keep: int,
) -> str | None:
    if top_p is not None and top_p < 1.0:
        return TOP_P
    if not isinstance(logits.shape[-1], int):
        return UNKNOWN_SIZE
    return None


def filter_logits(
    backend: seqops.Backend,
    logits: Any,
    /,
    *,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    min_tokens_to_keep: int,
) -> Any:
    k = _K or _load()
    dtype = logits.dtype
    z = logits if dtype in k["native"] else logits.to(k["float32"])
    if temperature != 1.0:
        z = z / temperature
    if top_k is not None:
        vocab = z.shape[-1]
        kth = min(max(top_k, min_tokens_to_keep), vocab)
        threshold = k["topk"](z, kth, -1, True, True).values[..., -1:]  # the k-th largest, (..., 1)
        z = k["where"](z >= threshold, z, -math.inf)  # NaN dropped too, as the portable path
    return z if z.dtype == dtype else z.to(dtype)


def decline_sample_logits(
    backend: seqops.Backend,
    logits: Any,
    /,
    *,
    rng: Any,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    min_tokens_to_keep: int,
) -> str | None:
    if top_p is not None and top_p < 1.0:
        return TOP_P
    if top_k is None:
        return NO_TOP_K
    if not isinstance(logits.shape[-1], int):
        return UNKNOWN_SIZE
    k = _K or _load()
    if k["compiling"]() or k["wrapped"](logits):
        return TRACED
    if logits.is_meta:
        return META
    return None


def sample_logits(
    backend: seqops.Backend,
    logits: Any,
    /,
    *,
    rng: Any,
    temperature: float,
    top_k: int,
    top_p: float | None,
    min_tokens_to_keep: int,
) -> Any:
    k = _K or _load()
    native = logits.dtype in k["native"]
    z = logits if native else logits.to(k["float32"])
    if temperature != 1.0:
        z = z / temperature
    if not native:
        z = z.to(logits.dtype).to(k["float32"])  # the portable filter returns the dtype of logits
    vocab = z.shape[-1]
    kth = min(max(top_k, min_tokens_to_keep), vocab)
    # the k + 1 largest, descending: a row has ties beyond its k-th value iff the (k+1)-th equals it
    values, ids = k["topk"](z, min(kth + 1, vocab), -1, True, True)
    log = k["log"]
    if kth < vocab and bool((values[..., kth] == values[..., kth - 1]).any()):  # every kept token
        threshold = values[..., kth - 1 : kth]
        uniform = backend.random_uniform(rng, tuple(z.shape), dtype=z.dtype, device=z.device)
        gumbel = -log(-log(uniform.clamp(k["tiny"], k["below_one"])))
        return k["where"](z >= threshold, z, -math.inf).add(gumbel).argmax(-1)
    values, ids = values[..., :kth], ids[..., :kth]
    uniform = backend.random_uniform(rng, tuple(values.shape), dtype=z.dtype, device=z.device)
    gumbel = -log(-log(uniform.clamp(k["tiny"], k["below_one"])))
    return ids.gather(-1, (values + gumbel).argmax(-1, keepdim=True))[..., 0]
