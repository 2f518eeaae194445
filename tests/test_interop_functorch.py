"""Every op under ``torch.func.vmap`` and ``torch.func.grad`` (issue 14, item 6, "Interop").

The inputs are the conformance cases' (float64 NumPy, converted to torch: floating arrays to
float64 tensors, integer and boolean ones kept, ``LIKE`` a float64 tensor). For each case:

- ``vmap``: the case's floating inputs and those of the next seed, stacked along a new
  leading axis, through ``torch.func.vmap``; each batch element must equal the eager call on
  its own inputs. ``randomness="same"`` (torch refuses random draws under vmap otherwise):
  every element draws what an eager call with the same ``rng`` draws, so random ops are
  compared exactly too.
- ``grad``: ``torch.func.grad`` of the sum of every floating output with respect to every
  floating input must equal ``torch.autograd.grad`` of the same sum; and ``vmap(grad(...))``
  (per-example gradients) must equal ``grad`` per element.

Ops without floating inputs (creation functions) and ops returning only integers (token ids)
skip ``grad`` with the reason; functorch-batched tensors must be declined by any fast path
whose kernel has no batching rule (``plugins/seqops_torch_fast/_functorch.py``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed")

from seqops_conformance.cases import CASES, LIKE, Case  # noqa: E402
from seqops_conformance.structure import fill, flatten, map_structure, take, template  # noqa: E402

import seqops  # noqa: E402

# A fast path whose kernel has no batching rule must decline batched tensors (torch would
# warn of this fallback and loop over the batch): the warning fails the test.
pytestmark = pytest.mark.filterwarnings("error:There is a performance drop")

_KINDS = {"f": torch.float64, "i": torch.int64, "u": torch.int64, "b": torch.bool}


def _to_torch(value: Any) -> Any:
    """NumPy inputs -> torch (floating as float64), containers rebuilt, ``LIKE`` a float64 tensor."""
    if value is LIKE:
        return torch.zeros(1, dtype=torch.float64)
    if isinstance(value, np.ndarray):
        return torch.as_tensor(value).to(_KINDS[value.dtype.kind])
    return map_structure(_to_torch, value)


def _call(case: Case) -> tuple[Any, list[torch.Tensor]]:
    """``f(*primals) -> the tensors of the outputs`` (``None`` entries dropped: vmap takes
    tensors only) and the case's floating inputs as the primals."""
    structure, leaves, _ = template(case.inputs())
    structure = _to_torch(structure)

    def f(*primals: Any) -> list[Any]:
        args, kwargs = fill(structure, primals)
        return [o for o in flatten(case.function(*args, **kwargs)) if o is not None]

    return f, [torch.as_tensor(leaf) for leaf in leaves]


def _eager(f: Any, primals: list[torch.Tensor]) -> list[Any]:
    try:
        return f(*primals)
    except Exception as exc:  # noqa: BLE001 - an eager failure is the eager tests' concern
        pytest.skip(f"the eager call raises {type(exc).__name__}: {exc} (not an interop check)")


def _assert_same(got: Any, expected: Any, what: str) -> None:
    assert isinstance(got, torch.Tensor), f"{what}: a {type(got).__qualname__}, not a tensor"
    assert got.dtype == expected.dtype, f"{what}: dtype {got.dtype} != {expected.dtype}"
    torch.testing.assert_close(
        got, expected, rtol=1e-9, atol=1e-12, equal_nan=True, msg=lambda m: f"{what}: {m}"
    )


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_vmap_equals_per_element_calls(case: Case) -> None:
    if not case.traced:
        pytest.skip(
            "eagerly the result's length depends on values read on the host (decode stops once "
            "every row has ended); under vmap, as under any trace, every step runs (API.md)"
        )
    f, primals = _call(case)
    if not primals:
        pytest.skip("no floating input to batch over (a creation function)")
    other = [torch.as_tensor(leaf) for leaf in template(case.inputs(1))[1]]
    if [p.shape for p in other] != [p.shape for p in primals]:
        pytest.skip("the inputs of another seed have other shapes")
    expected = [_eager(f, primals), _eager(f, other)]
    stacked = [torch.stack(pair) for pair in zip(primals, other, strict=True)]
    batched = torch.func.vmap(f, randomness="same")(*stacked)
    for i, element in enumerate(expected):
        got = take(batched, i)
        assert len(got) == len(element)
        for j, (g, e) in enumerate(zip(got, element, strict=True)):
            _assert_same(g, e, f"batch element {i}, output {j}")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_func_grad_equals_autograd(case: Case) -> None:
    f, primals = _call(case)
    if not primals:
        pytest.skip("no floating input to differentiate (a creation function)")
    outputs = _eager(f, primals)
    if not any(isinstance(o, torch.Tensor) and o.is_floating_point() for o in outputs):
        pytest.skip("returns integers only (token ids): no gradient")

    def total(*p: Any) -> Any:
        return sum(o.sum() for o in f(*p) if isinstance(o, torch.Tensor) and o.is_floating_point())

    argnums = tuple(range(len(primals)))
    got = torch.func.grad(total, argnums=argnums)(*primals)
    leaves = [p.detach().clone().requires_grad_(True) for p in primals]
    value = total(*leaves)
    expected = (
        torch.autograd.grad(value, leaves, allow_unused=True) if value.requires_grad else [None] * len(leaves)
    )
    for i, (g, e) in enumerate(zip(got, expected, strict=True)):
        _assert_same(g, torch.zeros_like(primals[i]) if e is None else e, f"gradient of input {i}")


@pytest.mark.parametrize("case", [c for c in CASES if c.grad], ids=lambda c: c.id)
def test_vmap_of_grad_equals_per_element_gradients(case: Case) -> None:
    """``vmap(grad(f))``: inside, the tensors are grad wrappers of batched tensors (a fast path
    must see through them to decline). Over the cases the conformance run differentiates."""
    if not case.traced:
        pytest.skip("the eager result's length depends on values read on the host (see the vmap test)")
    f, primals = _call(case)
    if not primals:
        pytest.skip("no floating input to differentiate (a creation function)")
    other = [torch.as_tensor(leaf) for leaf in template(case.inputs(1))[1]]
    if [p.shape for p in other] != [p.shape for p in primals]:
        pytest.skip("the inputs of another seed have other shapes")
    outputs = _eager(f, primals)
    if not any(isinstance(o, torch.Tensor) and o.is_floating_point() for o in outputs):
        pytest.skip("returns integers only (token ids): no gradient")

    def total(*p: Any) -> Any:
        return sum(o.sum() for o in f(*p) if isinstance(o, torch.Tensor) and o.is_floating_point())

    grad = torch.func.grad(total, argnums=tuple(range(len(primals))))
    stacked = [torch.stack(pair) for pair in zip(primals, other, strict=True)]
    batched = torch.func.vmap(grad, randomness="same")(*stacked)
    for i, element in enumerate((primals, other)):
        for j, (g, e) in enumerate(zip(take(batched, i), grad(*element), strict=True)):
            _assert_same(g, e, f"batch element {i}, gradient of input {j}")


def test_random_ops_under_vmap_draw_as_eager_calls() -> None:
    """Dropout, reparameterization and sampling with an integer ``rng``: with
    ``randomness="same"`` each batch element is the eager call with that ``rng``; with
    ``"different"`` they run too (draws differ per element, shapes and dtypes kept)."""
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(2, 3, 5, 4, generator=gen, dtype=torch.float64)
    logits = torch.randn(2, 3, 7, generator=gen, dtype=torch.float64)
    calls = {
        "sdpa dropout": (seqops.scaled_dot_product_attention, q, dict(dropout_p=0.5, rng=3), 3),
        "reparameterize": (seqops.reparameterize, q, dict(rng=3), 2),
        "sample_logits top_k": (seqops.sample_logits, logits, dict(rng=3, top_k=3), 1),
        "sample_logits top_p": (seqops.sample_logits, logits, dict(rng=3, top_p=0.6), 1),
    }
    for name, (op, x, kwargs, arity) in calls.items():

        def fn(x: Any, op: Any = op, kwargs: dict[str, Any] = kwargs, arity: int = arity) -> Any:
            return op(*[x] * arity, **kwargs)

        same = torch.func.vmap(fn, randomness="same")(x)
        for i in range(x.shape[0]):
            # under vmap the portable path runs (a fast path may draw other, equally likely, values)
            portable = dict(seqops.candidates(op, *[x[i]] * arity, **kwargs))["portable"]
            _assert_same(same[i], portable(), f"{name}, element {i}")
        different = torch.func.vmap(fn, randomness="different")(x)
        assert different.shape == same.shape and different.dtype == same.dtype, name


def test_per_sample_gradients_vmap_of_grad() -> None:
    """``vmap(grad(loss))`` (per-example gradients, as in DP-SGD) through an encoder layer, an
    LSTM and the cross-entropy equals one ``torch.autograd.grad`` per example."""
    gen = torch.Generator().manual_seed(0)
    d, heads, vocab = 8, 2, 5

    def w(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen, dtype=torch.float64) / shape[0] ** 0.5

    def b(n: int) -> torch.Tensor:
        return 0.1 * torch.randn(n, generator=gen, dtype=torch.float64)

    # every field a tensor: torch.func.grad takes no None leaf
    attn = seqops.MHAParams(w(d, d), w(d, d), w(d, d), w(d, d), b(d), b(d), b(d), b(d))
    norms = (1.0 + b(d), b(d), 1.0 + b(d), b(d))
    layer = seqops.EncoderLayerParams(attn, w(d, 16), b(16), w(16, d), b(d), *norms)
    lstm = (w(d, 4 * d), w(d, 4 * d), w(4 * d))
    head = w(d, vocab)
    xs = torch.randn(3, 6, d, generator=gen, dtype=torch.float64)  # 3 examples of 6 tokens
    targets = torch.randint(0, vocab, (3, 6), generator=gen)

    def loss(params: Any, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        layer, lstm, head = params
        h = seqops.transformer_encoder_layer(x, layer, num_heads=heads, is_causal=True)
        zero = torch.zeros(d, dtype=x.dtype)
        hs, _ = seqops.lstm(h, (zero, zero), *lstm)  # the 6 tokens as time steps
        return seqops.cross_entropy(hs @ head, t)

    params = (layer, lstm, head)
    per_example = torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0, 0))(params, xs, targets)
    flat = flatten(per_example)
    for i in range(xs.shape[0]):
        leaves = [p.detach().clone().requires_grad_(True) for p in flatten(params)]
        rebuilt = _rebuild(params, iter(leaves))
        expected = torch.autograd.grad(loss(rebuilt, xs[i], targets[i]), leaves)
        for j, (g, e) in enumerate(zip(flat, expected, strict=True)):
            _assert_same(g[i], e, f"example {i}, parameter {j}")


def _rebuild(value: Any, leaves: Any) -> Any:
    """``value`` (nested tuples) with its tensors replaced, in order, by ``leaves``."""
    if isinstance(value, tuple):
        return map_structure(lambda v: _rebuild(v, leaves), value)
    return next(leaves)
