"""Language-modelling losses: ``cross_entropy`` and ``autoregressive_log_likelihood``.

* peers: ``cross_entropy(..., axis=1)`` equals ``torch.nn.functional.cross_entropy`` for
  every combination of ``weight``, ``ignore_index`` and ``label_smoothing`` and every
  reduction (values and gradients); the log-likelihood equals a hand sum of
  ``log_softmax`` gathers;
* every backend: library, dtype and device kept, values equal the float64 references;
* targets out of range are a ``ValueError`` (not NaN) wherever values can be read, and
  NaN (never a silent number) under ``jax.jit``; non-integer targets a ``TypeError``.
"""

from __future__ import annotations

import numpy as np
import pytest
from seqops_conformance import references as ref

import seqops
import seqops.losses

N, C, D1 = 6, 5, 3  # batch, classes, an extra spatial dim (torch's (N, C, d1) layout)

CASES = {  # name: options, in our keywords
    "plain": {},
    "weight": {"weight": True},
    "ignore": {"ignore_index": -100},
    "ignore_in_range": {"ignore_index": 2},
    "smoothing": {"label_smoothing": 0.2},
    "weight_ignore": {"weight": True, "ignore_index": 2},
    "weight_smoothing": {"weight": True, "label_smoothing": 0.3},
    "weight_ignore_smoothing": {"weight": True, "ignore_index": -100, "label_smoothing": 0.15},
    "ignore_smoothing": {"ignore_index": 1, "label_smoothing": 1.0},
}


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def _inputs(rng, shape_targets, options):
    """NumPy logits with classes on axis 1, targets, weights; some targets set to ignore_index."""
    logits = rng.standard_normal((shape_targets[0], C, *shape_targets[1:])) * 2.0
    targets = rng.integers(0, C, size=shape_targets)
    if "ignore_index" in options:
        flat = targets.reshape(-1)
        flat[::3] = options["ignore_index"]
    weight = rng.uniform(0.2, 2.0, size=C) if options.get("weight") else None
    return logits, targets, weight


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("dtype_name,rtol", [("float32", 1e-5), ("float64", 1e-12)])
@pytest.mark.parametrize("extra_dim", [False, True], ids=["NC", "NCd"])
def test_cross_entropy_vs_torch(torch, rng, case, reduction, dtype_name, rtol, extra_dim):
    import torch.nn.functional as F

    options = CASES[case]
    logits, targets, weight = _inputs(rng, (N, D1) if extra_dim else (N,), options)
    dtype = getattr(torch, dtype_name)
    x = torch.tensor(logits, dtype=dtype, requires_grad=True)
    t = torch.tensor(targets)
    w = None if weight is None else torch.tensor(weight, dtype=dtype)
    torch_kw = {
        "weight": w,
        "ignore_index": options.get("ignore_index", -100),
        "label_smoothing": options.get("label_smoothing", 0.0),
        "reduction": reduction,
    }
    expected = F.cross_entropy(x, t, **torch_kw)
    ours = seqops.cross_entropy(
        x,
        t,
        axis=1,
        weight=w,
        ignore_index=options.get("ignore_index"),
        label_smoothing=options.get("label_smoothing", 0.0),
        reduction=reduction,
    )
    assert ours.dtype == dtype and ours.shape == expected.shape
    torch.testing.assert_close(ours, expected, rtol=rtol, atol=rtol)
    # gradients through the whole formula (the ignored targets get none)
    (g_ours,) = torch.autograd.grad(ours.sum(), x)
    (g_torch,) = torch.autograd.grad(expected.sum(), x)
    torch.testing.assert_close(g_ours, g_torch, rtol=rtol * 10, atol=rtol * 10)
    # and the independent float64 reference
    reference = ref.cross_entropy(
        logits,
        targets,
        axis=1,
        weight=weight,
        ignore_index=options.get("ignore_index"),
        label_smoothing=options.get("label_smoothing", 0.0),
        reduction=reduction,
    )
    np.testing.assert_allclose(
        ours.detach().numpy(),
        reference,
        rtol=max(rtol, 1e-12) * 10,
        atol=1e-5 if dtype_name == "float32" else 1e-12,
    )


def test_class_axis_last_by_default(torch, rng):
    import torch.nn.functional as F

    logits = torch.tensor(rng.standard_normal((N, D1, C)))
    targets = torch.tensor(rng.integers(0, C, size=(N, D1)))
    expected = F.cross_entropy(logits.movedim(-1, 1), targets, reduction="none")
    torch.testing.assert_close(seqops.cross_entropy(logits, targets, reduction="none"), expected)
    torch.testing.assert_close(
        seqops.cross_entropy(logits.movedim(-1, 0), targets, axis=0, reduction="none"), expected
    )


def test_every_target_ignored_mean_is_nan_as_torch(torch):
    import torch.nn.functional as F

    logits, targets = torch.zeros(2, 3), torch.tensor([1, 1])
    assert torch.isnan(F.cross_entropy(logits, targets, ignore_index=1))
    assert np.isnan(float(seqops.cross_entropy(logits, targets, ignore_index=1)))
    assert float(seqops.cross_entropy(logits, targets, ignore_index=1, reduction="sum")) == 0.0


def _same_library(backend, out, like):
    assert backend.owns(out)
    assert out.dtype == like.dtype
    assert backend.device(out) == backend.device(like)


@pytest.mark.parametrize("dtype_name", ["float32", "float64"])
def test_cross_entropy_every_backend(backend, rng, dtype_name):
    dtype = backend.floating_dtypes()[dtype_name]
    logits, targets, weight = _inputs(rng, (N, D1), {"weight": True, "ignore_index": 0})
    logits_last = np.moveaxis(logits, 1, -1)
    x = backend.from_numpy(logits_last, dtype=dtype)
    t = backend.namespace().asarray(targets)
    w = backend.from_numpy(weight, dtype=dtype)
    tol = {"float32": 1e-5, "float64": 1e-12}[dtype_name]
    for reduction in ("mean", "sum", "none"):
        out = seqops.cross_entropy(x, t, weight=w, ignore_index=0, label_smoothing=0.1, reduction=reduction)
        _same_library(backend, out, x)
        expected = ref.cross_entropy(
            logits_last, targets, weight=weight, ignore_index=0, label_smoothing=0.1, reduction=reduction
        )
        np.testing.assert_allclose(backend.to_numpy(out), expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype_name", ["float32", "float64"])
def test_log_likelihood_every_backend(backend, rng, dtype_name):
    dtype = backend.floating_dtypes()[dtype_name]
    logits = rng.standard_normal((2, 3, 7, C))  # (batch..., T, V)
    targets = rng.integers(0, C, size=(2, 3, 7))
    x = backend.from_numpy(logits, dtype=dtype)
    out = seqops.autoregressive_log_likelihood(x, backend.namespace().asarray(targets))
    _same_library(backend, out, x)
    assert tuple(out.shape) == (2, 3)
    tol = {"float32": 1e-5, "float64": 1e-12}[dtype_name]
    np.testing.assert_allclose(
        backend.to_numpy(out), ref.autoregressive_log_likelihood(logits, targets), rtol=tol, atol=tol
    )


def test_log_likelihood_is_a_sum_of_log_softmax_gathers(torch, rng):
    logits = torch.tensor(rng.standard_normal((4, 9, C)))
    targets = torch.tensor(rng.integers(0, C, size=(4, 9)))
    hand = torch.log_softmax(logits, -1).gather(-1, targets[..., None])[..., 0].sum(-1)
    torch.testing.assert_close(seqops.autoregressive_log_likelihood(logits, targets), hand)
    # the vocabulary on another axis
    torch.testing.assert_close(
        seqops.autoregressive_log_likelihood(logits.movedim(-1, 0), targets, axis=0), hand
    )
    # equals minus the summed per-token cross-entropy
    ce = seqops.cross_entropy(logits, targets, reduction="none").sum(-1)
    torch.testing.assert_close(-ce, hand)


def test_half_precision_computed_in_float32(torch, rng):
    logits = torch.tensor(rng.standard_normal((N, C)), dtype=torch.bfloat16)
    targets = torch.tensor(rng.integers(0, C, size=N))
    out = seqops.cross_entropy(logits, targets)
    assert out.dtype == torch.bfloat16
    expected = torch.nn.functional.cross_entropy(logits.float(), targets)
    torch.testing.assert_close(out.float(), expected, rtol=1e-2, atol=1e-2)


# -- jit / compile ---------------------------------------------------------------------


def test_jax_jit_and_grad(jax, rng):
    import jax.numpy as jnp

    logits = jnp.asarray(rng.standard_normal((N, C)))
    targets = jnp.asarray(rng.integers(0, C, size=N))

    def loss(x, t):
        return seqops.cross_entropy(x, t, label_smoothing=0.1)

    np.testing.assert_allclose(jax.jit(loss)(logits, targets), loss(logits, targets), rtol=1e-12)
    grad = jax.grad(loss)(logits, targets)  # targets are concrete under grad: still checked
    probs = jax.nn.softmax(logits, -1)
    expected = (probs - (0.9 * jax.nn.one_hot(targets, C) + 0.1 / C)) / N
    np.testing.assert_allclose(grad, expected, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="out-of-range"):
        jax.grad(loss)(logits, targets.at[0].set(C))


def test_out_of_range_under_jit_is_nan_not_a_silent_number(jax, rng):
    import jax.numpy as jnp

    logits = jnp.asarray(rng.standard_normal((N, C)))
    targets = jnp.asarray(rng.integers(0, C, size=N)).at[2].set(C + 3)
    per_target = jax.jit(lambda x, t: seqops.cross_entropy(x, t, reduction="none"))(logits, targets)
    assert np.isnan(per_target[2]) and np.isfinite(np.delete(np.asarray(per_target), 2)).all()
    assert np.isnan(jax.jit(seqops.cross_entropy)(logits, targets))
    assert np.isnan(jax.jit(seqops.autoregressive_log_likelihood)(logits[None], targets[None])).all()


# array-api-compat's lru_cache-wrapped helpers make Dynamo warn (harmless, not seqops' code).
@pytest.mark.filterwarnings("ignore:Dynamo detected a call to a `functools.lru_cache`")
def test_torch_compile_fullgraph(torch, rng):
    """No graph break: the eager range check of the targets is skipped while compiling."""
    logits = torch.tensor(rng.standard_normal((N, C)))
    targets = torch.tensor(rng.integers(0, C, size=N))

    def loss(x, t):
        return seqops.cross_entropy(x, t, ignore_index=0, label_smoothing=0.1)

    torch._dynamo.reset()
    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(logits, targets), loss(logits, targets))
    torch._dynamo.reset()


# -- bad input -------------------------------------------------------------------------


def test_out_of_range_targets_raise_on_every_backend(backend):
    xp = backend.namespace()
    logits = backend.from_numpy(np.zeros((4, 3)), dtype=backend.floating_dtypes()["float32"])
    bad = xp.asarray(np.array([0, 3, -1, 3]))
    if backend.lazy:  # reading the targets would compute the graph: NaN there, as under jax.jit
        losses = backend.to_numpy(seqops.cross_entropy(logits, bad, reduction="none"))
        np.testing.assert_array_equal(np.isnan(losses), [False, True, True, True])
        return
    with pytest.raises(ValueError, match=r"class indices in \[0, 3\); got 3 out-of-range value\(s\): -1, 3"):
        seqops.cross_entropy(logits, bad)
    with pytest.raises(ValueError, match=r"\[0, 3\) or ignore_index=-1; got 2 out-of-range value\(s\): 3"):
        seqops.cross_entropy(logits, bad, ignore_index=-1)
    with pytest.raises(ValueError, match=r"class indices in \[0, 3\)"):
        seqops.autoregressive_log_likelihood(logits[None, ...], bad[None, ...])
    # an ignored value out of range (torch's -100) is fine
    ok = xp.asarray(np.array([0, -100, 2, 1]))
    assert np.isfinite(backend.to_numpy(seqops.cross_entropy(logits, ok, ignore_index=-100)))


@pytest.mark.parametrize(
    "kwargs,error,pattern",
    [
        ({"targets": np.zeros(4)}, TypeError, r"`targets` must be an integer array; got dtype float64"),
        (
            {"targets": np.zeros(4, dtype=bool)},
            TypeError,
            r"`targets` must be an integer array; got dtype bool",
        ),
        (
            {"targets": np.zeros((4, 1), dtype=int)},
            ValueError,
            r"logits \(4, 3\) needs targets \(4,\); got \(4, 1\)",
        ),
        ({"axis": 2}, ValueError, r"axis 2 is out of range for logits of shape \(4, 3\)"),
        ({"weight": np.ones(4)}, ValueError, r"`weight` must have shape \(3,\); got \(4,\)"),
        (
            {"weight": np.ones(3, dtype=np.float32)},
            TypeError,
            r"must share one dtype; got logits float64, weight float32",
        ),
        ({"label_smoothing": 1.5}, ValueError, r"label_smoothing must be in \[0, 1\]; got 1.5"),
        (
            {"reduction": "batchmean"},
            ValueError,
            r"`reduction` must be one of 'mean', 'sum', 'none'; got 'batchmean'",
        ),
        ({"ignore_index": 1.0}, TypeError, r"ignore_index must be an integer; got float"),
        ({"logits": np.zeros((4, 3), dtype=int)}, TypeError, r"`logits` must be a real floating array"),
    ],
)
def test_cross_entropy_bad_input(kwargs, error, pattern):
    args = {"logits": np.zeros((4, 3)), "targets": np.zeros(4, dtype=int)}
    args.update(kwargs)
    logits, targets = args.pop("logits"), args.pop("targets")
    with pytest.raises(error, match=pattern):
        seqops.cross_entropy(logits, targets, **args)


def test_log_likelihood_bad_input():
    with pytest.raises(
        ValueError,
        match=r"targets` \(\.\.\., T\) must match logits .* got logits \(2, 5, 3\) \(vocabulary last\) and targets \(2, 4\)",
    ):
        seqops.autoregressive_log_likelihood(np.zeros((2, 5, 3)), np.zeros((2, 4), dtype=int))
    with pytest.raises(ValueError, match=r"at least 2 dimensions \(\.\.\., T, V\); got shape \(3,\)"):
        seqops.autoregressive_log_likelihood(np.zeros(3), np.zeros((), dtype=int))
    with pytest.raises(TypeError, match=r"`targets` must be an integer array"):
        seqops.autoregressive_log_likelihood(np.zeros((2, 3)), np.zeros(2))


def test_mixed_libraries(torch):
    with pytest.raises(TypeError, match=r"`logits` is numpy .* but `targets` is torch"):
        seqops.cross_entropy(np.zeros((2, 3)), torch.zeros(2, dtype=torch.int64))


def test_reference_matches_closed_form():
    logits = np.log(np.array([[0.5, 0.25, 0.25], [0.125, 0.375, 0.5]]))
    assert ref.cross_entropy(logits, np.array([0, 2])) == pytest.approx(-np.log(0.5))
    smooth = ref.cross_entropy(logits, np.array([0, 2]), label_smoothing=1.0, reduction="none")
    np.testing.assert_allclose(smooth, -np.log([[0.5, 0.25, 0.25], [0.125, 0.375, 0.5]]).mean(-1))
