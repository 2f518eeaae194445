"""Gradient checks: the ``"grad"`` transformation of the conformance run.

For a case marked ``grad`` the runner calls :func:`check`, which

1. converts every floating input array of the case (arrays, parameter-tuple fields,
   keyword arrays such as ``bias`` or ``weight``; an array passed twice, as ``query`` and
   ``key`` of self-attention, is one input) to the backend and dtype under test;
2. takes the vector-Jacobian product of the public op with a fixed random cotangent ``u``
   (one per floating output) through the backend's autodiff (:data:`AUTODIFF`:
   ``torch.autograd.grad``, ``jax.vjp``), giving ``g_i = u^T ∂f/∂x_i`` for every input;
3. contracts each ``g_i`` with :data:`N_DIRECTIONS` fixed random directions ``d_i`` and
   compares these directional derivatives with central finite differences of the float64
   reference, ``u · (f(x_i + h d_i) - f(x_i - h d_i)) / 2h``, evaluated at the inputs
   rounded to the dtype under test (``h = FD_STEP · max(1, max|x_i|)``);
4. reports the normwise relative error of the vector of directional derivatives (all
   inputs and directions) against :data:`~seqops_conformance.tolerances.GRADIENT_TOLERANCES`,
   naming the input with the worst disagreement when the check fails.

Each input gets its own directions, so a wrong gradient of a single input (a bias, one
gate of a weight matrix) shows even when the others are right. Backends without autodiff
(NumPy, array-api-strict) and half-precision dtypes have no gradient checks; the report
notes it. The framework code is here, imported only when a gradient check runs; another
backend adds its autodiff to :data:`AUTODIFF`.
"""

from __future__ import annotations

import inspect
import math
import re
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np

import seqops
from seqops_conformance.cases import Case
from seqops_conformance.report import Result
from seqops_conformance.runner import _Converter, _label, expected_outputs
from seqops_conformance.structure import Leaf, fill, fingerprint, flatten, map_structure, template
from seqops_conformance.tolerances import GRADIENT_TOLERANCES, tolerance

FD_STEP = 1e-6
"""Central-difference step, relative to ``max(1, max|x|)`` of the perturbed input."""

N_DIRECTIONS = 3
"""Random directions per floating input."""

VJP = Callable[[Callable[..., list[Any]], list[Any], list[Any]], tuple[list[Any], list[Any]]]


def _torch_vjp(
    f: Callable[..., list[Any]], primals: list[Any], cotangents: list[Any]
) -> tuple[list[Any], list[Any]]:
    import torch

    primals = [p.detach().requires_grad_(True) for p in primals]
    outs = f(*primals)
    pairs = [(o, c) for o, c in zip(outs, cotangents, strict=True) if o.requires_grad]
    if not pairs:  # no output depends on the inputs
        return [o.detach() for o in outs], [None] * len(primals)
    grads = torch.autograd.grad(
        [o for o, _ in pairs], primals, grad_outputs=[c for _, c in pairs], allow_unused=True
    )
    return [o.detach() for o in outs], list(grads)


def _jax_vjp(
    f: Callable[..., list[Any]], primals: list[Any], cotangents: list[Any]
) -> tuple[list[Any], list[Any]]:
    # Under jax.jit: one compilation per case. Eagerly, JAX compiles every primitive of the
    # backward pass on its own, per shape and dtype: 1.5x the time over all the cases and
    # 3-5x on the first case of each op (measured on 2 CPU cores).
    import jax

    def vjp(primals: list[Any], cotangents: list[Any]) -> tuple[list[Any], list[Any]]:
        outs, pullback = jax.vjp(lambda *p: tuple(f(*p)), *primals)
        return list(outs), list(pullback(tuple(cotangents)))

    return jax.jit(vjp)(primals, cotangents)  # type: ignore[no-any-return]


AUTODIFF: dict[str, VJP] = {"torch": _torch_vjp, "jax": _jax_vjp}
"""Backend name -> ``vjp(f, primals, cotangents) -> (outputs, gradients)``: ``f`` maps the
primal arrays to the list of floating outputs; a gradient is ``None`` for an input no
output depends on."""


def applies(backend: seqops.Backend, dtype_name: str) -> bool:
    """Whether gradient checks run on ``backend`` in dtype ``dtype_name``."""
    return backend.name in AUTODIFF and dtype_name in GRADIENT_TOLERANCES


def coverage_note(backends: set[str]) -> str:
    """The report's note on what the gradient checks cover."""
    checked = sorted(backends & set(AUTODIFF))
    unchecked = sorted(backends - set(AUTODIFF))
    note = (
        f"gradients (transformation 'grad'): autodiff VJP against central finite differences of the "
        f"float64 reference, {N_DIRECTIONS} random directions per float input, in "
        f"{', '.join(GRADIENT_TOLERANCES)} on {', '.join(checked) or 'no backend of this run'}"
    )
    if unchecked:
        note += f"; not on {', '.join(unchecked)} (no autodiff)"
    return (
        note + "; not in float16/bfloat16 (the ops compute half precision in float32, so such a check "
        "would measure the rounding of inputs, outputs and cotangent, not the backward pass)"
    )


def check(
    case: Case,
    inputs: tuple[tuple[Any, ...], dict[str, Any]],
    backend: seqops.Backend,
    device: Any,
    dtype_name: str,
    dtype: Any,
    references: dict[tuple[Any, ...], Any],
) -> Result:
    """The gradient check of ``case`` on one backend, device and dtype (module docstring)."""
    like = backend.from_numpy(np.zeros(1), dtype=dtype, device=device)
    result = Result(
        backend.name,
        _label(backend.device(like)),
        dtype_name,
        case.op,
        case.id,
        "",
        None,
        tolerance(dtype_name, "grad"),
        "fail",
        transformation="grad",
    )
    structure, leaves, paths = template(inputs)
    fn = case.function
    names = [_pretty(path, fn) for path in paths]
    to_backend = _Converter(backend, device, dtype, like)
    try:
        b_template = to_backend(structure)  # integer and boolean arrays converted, leaves kept
        primals = [to_backend(leaf) for leaf in leaves]
        b_args, b_kwargs = fill(b_template, primals)
        result.implementation = case.implementation(*b_args, **b_kwargs)
    except Exception as exc:  # noqa: BLE001 - any error is a failed check, not a crash
        result.message = f"raised {type(exc).__name__}: {exc}"
        return result
    # The float64 point the backend sees: its inputs rounded to the dtype under test.
    rounded = [np.asarray(backend.to_numpy(p)).astype(np.float64) for p in primals]
    r_template = map_structure(lambda v: _numpy_constants(backend, v), b_template)
    r_args, r_kwargs = fill(r_template, rounded)
    r_kwargs = {k: v for k, v in r_kwargs.items() if k != "like"}
    expected = expected_outputs(case.reference(*r_args, **r_kwargs))
    floating = [i for i, r in enumerate(expected) if r is not None and r.dtype.kind == "f"]
    rng = np.random.default_rng(zlib.crc32(f"{case.id}/grad".encode()))
    cotangents = []
    for r in (expected[i] for i in floating):
        assert r is not None
        u = rng.standard_normal(r.shape)
        u[~np.isfinite(r)] = 0.0  # no derivative where the reference is infinite
        cotangents.append(backend.from_numpy(u, dtype=dtype, device=device))
    u_rounded = [np.asarray(backend.to_numpy(c)).astype(np.float64) for c in cotangents]
    # Zero along infinite entries (a bias of -inf): the op is constant there.
    directions = [
        [np.where(np.isfinite(x), rng.standard_normal(x.shape), 0.0) for _ in range(N_DIRECTIONS)]
        for x in rounded
    ]

    def f(*p: Any) -> list[Any]:
        args, kwargs = fill(b_template, p)
        outs = flatten(fn(*args, **kwargs))
        return [outs[i] for i in floating]

    try:
        _, grads = AUTODIFF[backend.name](f, primals, cotangents)
    except Exception as exc:  # noqa: BLE001
        result.message = f"autodiff raised {type(exc).__name__}: {exc}"
        return result
    gradients = [None if g is None else np.asarray(backend.to_numpy(g)).astype(np.float64) for g in grads]
    wrong = [
        f"{n} {g.shape}"
        for n, g, x in zip(names, gradients, rounded, strict=True)
        if g is not None and g.shape != x.shape
    ]
    if wrong:
        result.message = f"gradients of the wrong shape: {', '.join(wrong)}"
        return result
    autodiff = np.array(
        [
            [0.0 if g is None else _dot(g, d) for d in dirs]
            for g, dirs in zip(gradients, directions, strict=True)
        ]
    ).reshape(len(leaves), N_DIRECTIONS)
    key = ("grad", case.id, fingerprint((rounded, u_rounded)))
    if key not in references:
        references[key] = _finite_differences(case, r_template, rounded, floating, u_rounded, directions)
    numeric: np.ndarray = references[key]
    result.error, detail = _gradient_error(autodiff, numeric, names)
    if result.error is not None and result.error <= result.tolerance:
        result.status = "pass"
    else:
        result.message = detail
    return result


def _numpy_constants(backend: seqops.Backend, value: Any) -> Any:
    """Backend integer/boolean arrays back to NumPy for the reference; leaves kept."""
    if isinstance(value, Leaf):
        return value
    if backend.owns(value):
        return np.asarray(backend.to_numpy(value))
    return map_structure(lambda v: _numpy_constants(backend, v), value)


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """``Σ a·b`` in float64 with ``math.fsum``; NaN when a product is not finite (a NaN or
    infinite gradient entry, even where the direction is 0, e.g. at a bias of -inf)."""
    products = (a * b).ravel()
    return math.fsum(products) if np.all(np.isfinite(products)) else math.nan


def _finite_differences(
    case: Case,
    r_template: Any,
    rounded: list[np.ndarray],
    floating: list[int],
    cotangents: list[np.ndarray],
    directions: list[list[np.ndarray]],
) -> np.ndarray:
    """``u · (f(x_i + h d) - f(x_i - h d)) / 2h`` of the reference, per input ``i`` and
    direction ``d``: shape ``(inputs, N_DIRECTIONS)``."""
    out = np.zeros((len(rounded), N_DIRECTIONS))

    def evaluate(values: list[np.ndarray]) -> list[np.ndarray]:
        args, kwargs = fill(r_template, values)
        kwargs = {k: v for k, v in kwargs.items() if k != "like"}
        outs = expected_outputs(case.reference(*args, **kwargs))
        return [outs[i] for i in floating]  # type: ignore[misc]

    for i, x in enumerate(rounded):
        finite = np.max(np.abs(x[np.isfinite(x)]), initial=0.0)
        h = FD_STEP * max(1.0, float(finite))
        for k, d in enumerate(directions[i]):
            plus = evaluate([*rounded[:i], x + h * d, *rounded[i + 1 :]])
            minus = evaluate([*rounded[:i], x - h * d, *rounded[i + 1 :]])
            terms = []
            for u, p, m in zip(cotangents, plus, minus, strict=True):
                diff = np.where(u != 0.0, p - m, 0.0)  # u is 0 where the reference is infinite
                terms.append(math.fsum((u * diff).ravel()))
            out[i, k] = math.fsum(terms) / (2.0 * h)
    return out


def _gradient_error(autodiff: np.ndarray, numeric: np.ndarray, names: list[str]) -> tuple[float | None, str]:
    """Normwise relative error of the directional derivatives, and a message naming the
    worst input when the autodiff ones are not finite or disagree."""
    if autodiff.size == 0:
        return 0.0, ""
    if not np.all(np.isfinite(autodiff)):
        bad = sorted({names[i] for i in np.argwhere(~np.isfinite(autodiff))[:, 0]})
        return None, f"gradient not finite for {', '.join(bad)}"
    diff = np.abs(autodiff - numeric)
    scale = float(np.max(np.abs(numeric)))
    err = float(np.max(diff)) / scale if scale > 0.0 else float(np.max(diff))
    i, k = np.unravel_index(int(np.argmax(diff)), diff.shape)
    detail = (
        f"worst input {names[i]}: autodiff {autodiff[i, k]:.6g}, finite differences {numeric[i, k]:.6g} "
        f"(direction {k})"
    )
    return err, detail


def _pretty(path: str, fn: Callable[..., Any]) -> str:
    """``[0][3].w_q`` -> ``params.w_q``, ``[1]['bias']`` -> ``bias``: the input's name in
    the op's signature, for messages."""
    match = re.fullmatch(r"\[0\]\[(\d+)\](.*)", path)
    if match:
        positional = list(inspect.signature(fn).parameters)
        index = int(match.group(1))
        head = positional[index] if index < len(positional) else f"args[{index}]"
        return head + match.group(2)
    match = re.fullmatch(r"\[1\]\['([^']*)'\](.*)", path)
    return match.group(1) + match.group(2) if match else path
