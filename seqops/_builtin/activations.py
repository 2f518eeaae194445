"""Built-in implementations of softmax, log-softmax and the activations (ReLU, SiLU, GELU).

The activations run in float32 for half-precision inputs (one rounding of the output, as
torch's kernels). The feed-forward blocks call them through :func:`dispatched_activation`,
so a fast path of an activation reaches them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from seqops import ops
from seqops._agnostic import activations, special
from seqops._agnostic.activations import compute_dtype
from seqops._builtin._table import implement, namespaced
from seqops._lib.typing import Array
from seqops.contract import Backend

namespaced(ops.softmax, activations.softmax)
namespaced(ops.log_softmax, activations.log_softmax)
namespaced(ops.relu, activations.relu)  # exact in every dtype


def activation_fn(backend: Backend, name: str) -> Callable[[Array], Array]:
    """The math of the activation called ``name`` (``"relu"``, ``"silu"``, ``"gelu"``, the exact
    erf form with the backend's native ``erf`` when it has one, or ``"gelu_tanh"``), computing
    in the dtype of its input."""
    xp = backend.namespace()
    if name == "relu":
        return functools.partial(activations.relu, xp)
    if name in ("silu", "swish"):
        return functools.partial(activations.silu, xp)
    if name == "gelu_tanh":
        return functools.partial(activations.gelu_tanh, xp)
    erf = backend.erf or functools.partial(special.erf, xp)
    return functools.partial(activations.gelu, xp, erf=erf)


def _in_compute_dtype(backend: Backend, name: str, x: Array) -> Array:
    xp = backend.namespace()
    y = activation_fn(backend, name)(xp.astype(x, compute_dtype(xp, x.dtype), copy=False))
    return xp.astype(y, x.dtype, copy=False)


@implement(ops.silu)
def silu(backend: Backend, x: Array, /) -> Array:
    return _in_compute_dtype(backend, "silu", x)


@implement(ops.gelu)
def gelu(backend: Backend, x: Array, /, *, approximate: str) -> Array:
    return _in_compute_dtype(backend, "gelu" if approximate == "none" else "gelu_tanh", x)


def dispatched_activation(backend: Backend, name: str) -> Callable[[Array], Array]:
    """The activation called ``name`` (as :func:`activation_fn`) as a dispatch of its op."""
    if name == "relu":
        return functools.partial(ops.relu.dispatch, backend)
    if name in ("silu", "swish"):  # the public functions resolve the alias; composites may not
        return functools.partial(ops.silu.dispatch, backend)
    approximate = "none" if name == "gelu" else "tanh"
    return functools.partial(ops.gelu.dispatch, backend, approximate=approximate)
