"""Softmax, log-softmax, the activations and the norms on torch's kernels.

- ``softmax`` / ``log_softmax``: ``torch.softmax`` / ``torch.log_softmax``; half precision
  with ``dtype=torch.float32`` (computed in float32, as the contract), cast back once.
- ``relu`` / ``silu`` / ``gelu``: ``torch.nn.functional.relu`` / ``silu`` / ``gelu(approximate=)``.
  torch's elementwise kernels compute half precision in float32 and round once, as the contract.
- ``layer_norm`` / ``rms_norm``: ``torch.nn.functional.layer_norm`` / ``rms_norm``; half
  precision computed on a float32 copy (the contract's one rounding of the output).

Every dtype is computed (the public layer admits only real floating ones); nothing is
declined but an empty normalised axis.
"""

from __future__ import annotations

from typing import Any

import seqops

EMPTY_AXIS = "an empty normalised axis (E = 0): torch's norm kernels refuse it"

# torch's functions, looked up on the first call (module-level functions, one dict lookup).
_K: dict[str, Any] = {}


def _load() -> dict[str, Any]:
    import torch

    functional = torch.nn.functional
    _K.update(
        softmax=torch.softmax,
        log_softmax=torch.log_softmax,
        relu=functional.relu,
        silu=functional.silu,
        gelu=functional.gelu,
        layer_norm=functional.layer_norm,
        rms_norm=functional.rms_norm,
        float32=torch.float32,
        native=frozenset((torch.float32, torch.float64)),
    )
    return _K


def implementations() -> list[seqops.Implementation]:
    ops = seqops.ops
    return [
        seqops.Implementation(ops.softmax, "torch-softmax", softmax),
        seqops.Implementation(ops.log_softmax, "torch-log-softmax", log_softmax),
        seqops.Implementation(ops.relu, "torch-relu", relu),
        seqops.Implementation(ops.silu, "torch-silu", silu),
        seqops.Implementation(ops.gelu, "torch-gelu", gelu),
        seqops.Implementation(ops.layer_norm, "torch-layer-norm", layer_norm, decline=decline_norm),
        seqops.Implementation(ops.rms_norm, "torch-rms-norm", rms_norm, decline=decline_norm),
    ]


def softmax(backend: seqops.Backend, x: Any, /, *, axis: int) -> Any:
    k = _K or _load()
    if x.dtype in k["native"]:
        return k["softmax"](x, axis)
    return k["softmax"](x, axis, dtype=k["float32"]).to(x.dtype)


def log_softmax(backend: seqops.Backend, x: Any, /, *, axis: int) -> Any:
    k = _K or _load()
    if x.dtype in k["native"]:
        return k["log_softmax"](x, axis)
    return k["log_softmax"](x, axis, dtype=k["float32"]).to(x.dtype)


def relu(backend: seqops.Backend, x: Any, /) -> Any:
    return (_K or _load())["relu"](x)


def silu(backend: seqops.Backend, x: Any, /) -> Any:
    return (_K or _load())["silu"](x)


def gelu(backend: seqops.Backend, x: Any, /, *, approximate: str) -> Any:
    kernel = (_K or _load())["gelu"]
    return kernel(x) if approximate == "none" else kernel(x, approximate="tanh")


def decline_norm(backend: seqops.Backend, x: Any, *args: Any, eps: float) -> str | None:
    size = x.shape[-1] if x.ndim else None
    if not isinstance(size, int) or size == 0:
        return EMPTY_AXIS if size == 0 else "an unknown size of the normalised axis"
    return None


def layer_norm(backend: seqops.Backend, x: Any, weight: Any, bias: Any, /, *, eps: float) -> Any:
    k = _K or _load()
    if x.dtype in k["native"]:
        return k["layer_norm"](x, (x.shape[-1],), weight, bias, eps)
    f32 = k["float32"]
    y = k["layer_norm"](
        x.to(f32),
        (x.shape[-1],),
        None if weight is None else weight.to(f32),
        None if bias is None else bias.to(f32),
        eps,
    )
    return y.to(x.dtype)


def rms_norm(backend: seqops.Backend, x: Any, weight: Any, /, *, eps: float) -> Any:
    k = _K or _load()
    if x.dtype in k["native"]:
        return k["rms_norm"](x, (x.shape[-1],), weight, eps)
    f32 = k["float32"]
    y = k["rms_norm"](x.to(f32), (x.shape[-1],), None if weight is None else weight.to(f32), eps)
    return y.to(x.dtype)
