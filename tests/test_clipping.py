"""Gradient clipping: ``clip_grad_norm`` and ``clip_grad_value``.

* peers: equal to ``torch.nn.utils.clip_grad_norm_`` / ``clip_grad_value_`` on the same
  gradients (norms 2, 1, 3, inf; below, at and above the limit; non-finite norms), while
  the inputs stay unchanged (torch clips in place, we return new arrays);
* containers: list, tuple, NamedTuple, dict (``None`` entries kept), rebuilt, never mutated;
* every backend keeps library, dtype and device and matches the float64 reference;
* ``jax.jit`` works without host reads; ``error_if_nonfinite`` under jit is a clear error.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import pytest
from seqops_conformance import references as ref

import seqops
import seqops.clipping

SHAPES = [(3, 4), (5,), (), (2, 0), (2, 2, 3)]


def _grads(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape) for shape in SHAPES]


def _norm(grads, p):
    flat = np.concatenate([g.ravel() for g in grads])
    return float(np.max(np.abs(flat))) if p == math.inf else float(np.sum(np.abs(flat) ** p) ** (1 / p))


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
@pytest.mark.parametrize("where", ["below", "at", "above"])
@pytest.mark.parametrize("dtype_name,rtol", [("float32", 1e-6), ("float64", 1e-14)])
def test_clip_grad_norm_vs_torch(torch, norm_type, where, dtype_name, rtol):
    dtype = getattr(torch, dtype_name)
    raw = _grads()
    if norm_type == math.inf:  # torch refuses the inf-norm of an empty tensor; ours is 0
        raw = [g for g in raw if g.size]
    total = _norm(raw, norm_type)
    max_norm = {"below": total * 2.0, "at": total, "above": total / 3.0}[where]
    ours_in = [torch.tensor(g, dtype=dtype) for g in raw]
    before = [g.clone() for g in ours_in]
    params = [torch.nn.Parameter(torch.zeros(g.shape, dtype=dtype)) for g in raw]
    for p, g in zip(params, ours_in, strict=True):
        p.grad = g.clone()
    expected_norm = torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type=norm_type)
    clipped, norm = seqops.clip_grad_norm(ours_in, max_norm, norm_type=norm_type)
    assert isinstance(clipped, list) and norm.dtype == dtype and norm.shape == ()
    torch.testing.assert_close(norm, expected_norm, rtol=rtol, atol=0.0)
    for got, p in zip(clipped, params, strict=True):
        assert got.dtype == dtype
        torch.testing.assert_close(got, p.grad, rtol=rtol, atol=rtol)
    for g, b in zip(ours_in, before, strict=True):
        assert torch.equal(g, b)  # inputs unchanged
    if where == "below":
        for got, g in zip(clipped, ours_in, strict=True):
            assert torch.equal(got, g)  # coef clamped to exactly 1
    # the independent float64 reference
    ref_clipped, ref_norm = ref.clip_grad_norm(raw, max_norm, norm_type)
    assert float(norm) == pytest.approx(ref_norm, rel=max(rtol, 1e-12) * 10)
    for got, want in zip(clipped, ref_clipped, strict=True):
        np.testing.assert_allclose(got.numpy(), want, rtol=max(rtol, 1e-12) * 10, atol=1e-6)


@pytest.mark.parametrize("bad", [math.inf, math.nan])
def test_non_finite_norm_as_torch(torch, bad):
    raw = _grads()
    raw[0][1, 1] = bad
    params = [torch.nn.Parameter(torch.zeros(g.shape, dtype=torch.float64)) for g in raw]
    for p, g in zip(params, raw, strict=True):
        p.grad = torch.tensor(g)
    expected_norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
    clipped, norm = seqops.clip_grad_norm([torch.tensor(g) for g in raw], 1.0)
    torch.testing.assert_close(norm, expected_norm, equal_nan=True)
    for got, p in zip(clipped, params, strict=True):
        torch.testing.assert_close(got, p.grad, equal_nan=True)
    with pytest.raises(RuntimeError, match=r"total norm of order 2.0 of the gradients is non-finite"):
        seqops.clip_grad_norm([torch.tensor(g) for g in raw], 1.0, error_if_nonfinite=True)


def test_clip_grad_value_vs_torch(torch):
    raw = _grads(1)
    params = [torch.nn.Parameter(torch.zeros(g.shape, dtype=torch.float64)) for g in raw]
    for p, g in zip(params, raw, strict=True):
        p.grad = torch.tensor(g)
    torch.nn.utils.clip_grad_value_(params, 0.5)
    inputs = [torch.tensor(g) for g in raw]
    clipped = seqops.clip_grad_value(inputs, 0.5)
    for got, p, g, r in zip(clipped, params, inputs, raw, strict=True):
        assert torch.equal(got, p.grad)
        assert np.array_equal(g.numpy(), r)  # unchanged
    for got, want in zip(clipped, ref.clip_grad_value(raw, 0.5), strict=True):
        np.testing.assert_array_equal(got.numpy(), want)


class Grads(NamedTuple):
    w: object
    b: object


@pytest.mark.parametrize("kind", ["list", "tuple", "namedtuple", "dict"])
def test_containers_rebuilt_not_mutated(kind):
    w, b = np.array([3.0, 4.0]), np.array([0.0])
    grads = {
        "list": [w, None, b],
        "tuple": (w, None, b),
        "namedtuple": Grads(w, b),
        "dict": {"w": w, "skip": None, "b": b},
    }[kind]
    snapshot = list(grads.values()) if isinstance(grads, dict) else list(grads)
    clipped, norm = seqops.clip_grad_norm(grads, 1.0)
    assert type(clipped) is type(grads) and clipped is not grads
    assert float(norm) == 5.0
    values = list(clipped.values()) if isinstance(clipped, dict) else list(clipped)
    assert [v is None for v in values] == [v is None for v in snapshot]
    np.testing.assert_allclose(values[0], [0.6, 0.8], rtol=1e-6)
    now = list(grads.values()) if isinstance(grads, dict) else list(grads)
    assert all(a is b for a, b in zip(now, snapshot, strict=True))
    np.testing.assert_array_equal(w, [3.0, 4.0])
    by_value = seqops.clip_grad_value(grads, 3.5)
    assert type(by_value) is type(grads)
    first = list(by_value.values())[0] if isinstance(by_value, dict) else by_value[0]
    np.testing.assert_array_equal(first, [3.0, 3.5])


def test_nothing_to_clip():
    for empty in ([], (), {}, [None, None]):
        clipped, norm = seqops.clip_grad_norm(empty, 1.0)
        assert clipped == empty and type(clipped) is type(empty)
        assert isinstance(norm, np.ndarray) and norm.shape == () and norm.dtype == np.float64 and norm == 0.0
    assert seqops.clip_grad_value([None], 1.0) == [None]


def test_mixed_dtypes(torch):
    g32, g64 = torch.tensor([3.0], dtype=torch.float32), torch.tensor([4.0], dtype=torch.float64)
    (c32, c64), norm = seqops.clip_grad_norm([g32, g64], 1.0)
    assert c32.dtype == torch.float32 and c64.dtype == torch.float64 and norm.dtype == torch.float64
    assert float(norm) == 5.0


@pytest.mark.parametrize("dtype_name", ["float32", "float64"])
def test_every_backend(backend, dtype_name):
    dtype = backend.floating_dtypes()[dtype_name]
    raw = _grads(2)
    arrays = {f"g{i}": backend.from_numpy(g, dtype=dtype) for i, g in enumerate(raw)}
    clipped, norm = seqops.clip_grad_norm(arrays, 1.5, norm_type=2.0)
    ref_clipped, ref_norm = ref.clip_grad_norm(raw, 1.5)
    tol = {"float32": 1e-5, "float64": 1e-12}[dtype_name]
    for out in (norm, *clipped.values()):
        assert backend.owns(out) and out.dtype == dtype
        assert backend.device(out) == backend.device(arrays["g0"])
    np.testing.assert_allclose(backend.to_numpy(norm), ref_norm, rtol=tol)
    for got, want in zip(clipped.values(), ref_clipped, strict=True):
        np.testing.assert_allclose(backend.to_numpy(got), want, rtol=tol, atol=tol)
    by_value = seqops.clip_grad_value(list(arrays.values()), 0.3)
    for got, want in zip(by_value, ref.clip_grad_value(raw, 0.3), strict=True):
        assert backend.owns(got) and got.dtype == dtype
        np.testing.assert_allclose(backend.to_numpy(got), want, rtol=tol, atol=tol)


def test_half_precision(torch):
    g = torch.tensor([300.0, 400.0], dtype=torch.float16)
    (clipped,), norm = seqops.clip_grad_norm([g], 1.0)
    assert clipped.dtype == torch.float16 and norm.dtype == torch.float16
    torch.testing.assert_close(clipped.float(), torch.tensor([0.6, 0.8]), rtol=1e-3, atol=1e-3)


def test_jax_jit(jax):
    import jax.numpy as jnp

    grads = {"w": jnp.asarray(_grads()[0]), "b": jnp.asarray(_grads()[1]), "none": None}
    eager = seqops.clip_grad_norm(grads, 0.5, norm_type=math.inf)
    jitted = jax.jit(lambda g: seqops.clip_grad_norm(g, 0.5, norm_type=math.inf))(grads)
    np.testing.assert_allclose(jitted[1], eager[1], rtol=1e-12)
    for key in ("w", "b"):
        np.testing.assert_allclose(jitted[0][key], eager[0][key], rtol=1e-12)
    assert jitted[0]["none"] is None
    with pytest.raises(
        RuntimeError, match=r"error_if_nonfinite=True reads the total norm, which is impossible while tracing"
    ):
        jax.jit(lambda g: seqops.clip_grad_norm(g, 0.5, error_if_nonfinite=True))(grads)
    # eagerly it is checked (and finite here)
    seqops.clip_grad_norm(grads, 0.5, error_if_nonfinite=True)


@pytest.mark.filterwarnings("ignore:Dynamo detected a call to a `functools.lru_cache`")
def test_torch_compile_fullgraph(torch):
    grads = [torch.tensor(g) for g in _grads()]

    def clip(gs):
        return seqops.clip_grad_norm(gs, 0.5)

    torch._dynamo.reset()
    compiled = torch.compile(clip, fullgraph=True, backend="aot_eager")
    (got, norm), (want, want_norm) = compiled(grads), clip(grads)
    torch.testing.assert_close(norm, want_norm)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b)
    torch._dynamo.reset()


@pytest.mark.parametrize(
    "call,error,pattern",
    [
        (lambda: seqops.clip_grad_norm([np.ones(2)], -1.0), ValueError, r"max_norm must be >= 0; got -1.0"),
        (
            lambda: seqops.clip_grad_norm([np.ones(2)], 1.0, norm_type=0),
            ValueError,
            r"norm_type must be > 0 or inf; got 0",
        ),
        (
            lambda: seqops.clip_grad_norm([np.ones(2)], 1.0, norm_type="fro"),
            TypeError,
            r"norm_type must be a Python number; got str",
        ),
        (lambda: seqops.clip_grad_norm([np.ones(2)], 1.0, eps=-1e-3), ValueError, r"eps must be >= 0"),
        (
            lambda: seqops.clip_grad_norm(np.ones(2), 1.0),
            TypeError,
            r"grads must be a list, tuple or dict of arrays; got ndarray",
        ),
        (
            lambda: seqops.clip_grad_norm({"w": np.ones(2, dtype=int)}, 1.0),
            TypeError,
            r"`grads\['w'\]` must be a real floating array; got dtype int",
        ),
        (
            lambda: seqops.clip_grad_value([np.ones(2)], -0.5),
            ValueError,
            r"clip_value must be >= 0; got -0.5",
        ),
    ],
)
def test_bad_input(call, error, pattern):
    with pytest.raises(error, match=pattern):
        call()


def test_mixed_libraries(torch):
    with pytest.raises(TypeError, match=r"`grads\[0\]` is numpy .* but `grads\[2\]` is torch"):
        seqops.clip_grad_norm([np.ones(2), None, torch.ones(2)], 1.0)


def test_empty_arrays_count_as_zero_norm():
    (empty, g), norm = seqops.clip_grad_norm(
        [np.zeros((2, 0)), np.array([-3.0, 1.0])], 6.0, norm_type=math.inf
    )
    assert float(norm) == 3.0 and empty.shape == (2, 0)
    np.testing.assert_array_equal(g, [-3.0, 1.0])


def test_nested_pytrees_are_clipped_as_one_vector() -> None:
    """Parameters as JAX and Flax hold them: dicts of dicts, lists and tuples (NamedTuples too),
    with ``None`` leaves; the structure comes back, the norm is over every leaf."""
    rng = np.random.default_rng(3)
    a, b, c = rng.standard_normal((2, 3)), rng.standard_normal(4), rng.standard_normal(1)
    grads = {"encoder": {"w": a, "layers": [b, None]}, "head": (c,)}
    clipped, total = seqops.clip_grad_norm(grads, 1.0)
    norm = np.sqrt(sum(float((x**2).sum()) for x in (a, b, c)))
    np.testing.assert_allclose(total, norm, rtol=1e-12)
    scale = 1.0 / (norm + 1e-6)
    assert clipped["encoder"]["layers"][1] is None and isinstance(clipped["head"], tuple)
    for got, x in (
        (clipped["encoder"]["w"], a),
        (clipped["encoder"]["layers"][0], b),
        (clipped["head"][0], c),
    ):
        np.testing.assert_allclose(got, x * scale, rtol=1e-12)
    values = seqops.clip_grad_value(grads, 0.1)
    assert np.abs(values["encoder"]["w"]).max() <= 0.1 and values["encoder"]["layers"][1] is None
    with pytest.raises(TypeError, match=r"`grads\['encoder'\]\['layers'\]\[1\]` must be an array"):
        seqops.clip_grad_norm({"encoder": {"layers": [b, 2.0]}}, 1.0)
    jax = pytest.importorskip("jax")
    jitted, jtotal = jax.jit(lambda g: seqops.clip_grad_norm(g, 1.0))(jax.tree.map(jax.numpy.asarray, grads))
    np.testing.assert_allclose(np.asarray(jtotal), norm, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(jitted["head"][0]), c * scale, rtol=1e-5)
