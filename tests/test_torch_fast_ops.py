"""torch-fast's pointwise ops, losses, masked convolution and top-k (``plugins/seqops_torch_fast``):
``seqops.explain`` picks them on typical calls and gives the reason on the declined ones, their
results equal the portable path's, and ``torch.func.vmap`` reaches the recurrent ops (declined by
torch-lstm/-rnn/-gru: their kernels have no batching rule)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from _sampling import check_top_k_draws

import seqops

torch = pytest.importorskip("torch")
fast = pytest.importorskip("seqops_torch_fast")

DTYPES = ("float64", "float32", "float16", "bfloat16")
TOL = {
    "float64": {"rtol": 1e-12, "atol": 1e-12},
    "float32": {"rtol": 2e-5, "atol": 2e-6},
    "float16": {"rtol": 2e-3, "atol": 2e-3},  # one rounding of the output apart
    "bfloat16": {"rtol": 1.6e-2, "atol": 1.6e-2},
}


@contextlib.contextmanager
def portable() -> Iterator[None]:
    """The block without torch-fast (the portable path)."""
    plugin = seqops.registry.pm.get_plugin("torch-fast")
    if plugin is None:
        pytest.skip("torch-fast is not loaded")
    seqops.unregister_plugin("torch-fast")
    try:
        yield
    finally:
        seqops.register_plugin(plugin, name="torch-fast")


def runs(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> str:
    """The implementation ``seqops.explain`` says runs the call."""
    return seqops.explain(fn, *args, **kwargs).chosen  # type: ignore[no-any-return]


def reason(fn: Callable[..., Any], name: str, *args: Any, **kwargs: Any) -> str | None:
    """Why implementation ``name`` declines the call (None if it accepts)."""
    explanation = seqops.explain(fn, *args, **kwargs)
    for candidate, decision in explanation.decisions:
        if candidate.split(" (")[0] == name:
            return decision.removeprefix("declines: ") if decision.startswith("declines: ") else None
    raise AssertionError(f"{name} not offered: {explanation}")


def same_as_portable(fn: Callable[..., Any], *args: Any, dtype: str = "float32", **kwargs: Any) -> None:
    out = fn(*args, **kwargs)
    with portable():
        expected = fn(*args, **kwargs)
    assert out.dtype == expected.dtype and out.shape == expected.shape
    torch.testing.assert_close(out.double(), expected.double(), equal_nan=True, **TOL[dtype])


def _randn(*shape: int, dtype: str = "float32", scale: float = 1.0) -> Any:
    g = torch.Generator().manual_seed(sum(shape) + len(shape))
    return (scale * torch.randn(*shape, generator=g, dtype=torch.float64)).to(getattr(torch, dtype))


# -- softmax, activations, norms --------------------------------------------------------------
POINTWISE: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = {
    "torch-softmax": (seqops.softmax, {}),
    "torch-log-softmax": (seqops.log_softmax, {"axis": 0}),
    "torch-relu": (seqops.relu, {}),
    "torch-silu": (seqops.silu, {}),
    "torch-gelu": (seqops.gelu, {}),
    "torch-gelu tanh": (seqops.gelu, {"approximate": "tanh"}),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", POINTWISE)
def test_pointwise_runs_natively_and_equals_portable(name: str, dtype: str) -> None:
    fn, kwargs = POINTWISE[name]
    x = _randn(6, 33, dtype=dtype, scale=3.0)
    assert runs(fn, x, **kwargs) == name.split()[0]
    same_as_portable(fn, x, dtype=dtype, **kwargs)


@pytest.mark.parametrize("shape", [(0, 5), ()])
@pytest.mark.parametrize("fn", [seqops.softmax, seqops.log_softmax])
def test_softmax_empty_and_0d(fn: Callable[..., Any], shape: tuple[int, ...]) -> None:
    x = _randn(*shape) if shape else torch.tensor(0.5)
    same_as_portable(fn, x, axis=-1 if shape else 0)
    # An empty softmax axis: the empty result (the portable path raises there on torch: amax
    # of an empty axis, reported).
    assert fn(torch.zeros(4, 0)).shape == (4, 0)


def test_softmax_large_and_masked_rows() -> None:
    x = torch.tensor([[1e4, 1e4 - 1.0, -1e4], [-math.inf, 0.0, 1.0], [-math.inf] * 3], dtype=torch.float32)
    same_as_portable(seqops.softmax, x)
    same_as_portable(seqops.log_softmax, x)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("affine", [True, False])
def test_norms_equal_portable(dtype: str, affine: bool) -> None:
    x = _randn(3, 4, 64, dtype=dtype, scale=2.0) + 1.0
    w = _randn(64, dtype=dtype) if affine else None
    b = _randn(64, dtype=dtype) if affine else None
    assert runs(seqops.layer_norm, x, w, b) == "torch-layer-norm"
    assert runs(seqops.rms_norm, x, w) == "torch-rms-norm"
    same_as_portable(seqops.layer_norm, x, w, b, dtype=dtype, eps=1e-5)
    same_as_portable(seqops.rms_norm, x, w, dtype=dtype, eps=1e-6)
    same_as_portable(seqops.layer_norm, x[:0], w, b, dtype=dtype)  # an empty batch


def test_norms_decline_an_empty_axis() -> None:
    x = torch.zeros(3, 0)
    assert reason(seqops.layer_norm, "torch-layer-norm", x) == fast.pointwise.EMPTY_AXIS
    assert reason(seqops.rms_norm, "torch-rms-norm", x) == fast.pointwise.EMPTY_AXIS


def test_feed_forward_reaches_the_fast_activation(monkeypatch: pytest.MonkeyPatch) -> None:
    x, w1, w2 = _randn(2, 5, 8), _randn(8, 16), _randn(16, 8)
    seqops.gelu(x)  # torch's kernels looked up
    calls: list[int] = []
    native = fast.pointwise._K["gelu"]

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return native(*args, **kwargs)

    monkeypatch.setitem(fast.pointwise._K, "gelu", counted)
    same_as_portable(seqops.feed_forward, x, w1, None, w2, None, activation="gelu")
    assert calls == [1]


# -- losses ---------------------------------------------------------------------------------
def _classes(*lead: int, classes: int = 11) -> tuple[Any, Any]:
    g = torch.Generator().manual_seed(3)
    return _randn(*lead, classes, scale=2.0), torch.randint(0, classes, lead, generator=g)


CE_OPTIONS = [
    {},
    {"reduction": "sum"},
    {"reduction": "none"},
    {"weight": True},
    {"ignore_index": 2},
    {"ignore_index": -1, "label_smoothing": 0.2, "weight": True},
    {"ignore_index": -1, "label_smoothing": 0.3, "weight": True, "reduction": "none"},
    {"ignore_index": 3, "label_smoothing": 0.1, "reduction": "sum", "weight": True},
]


@pytest.mark.parametrize("options", CE_OPTIONS, ids=str)
@pytest.mark.parametrize("lead", [(7,), (3, 5), ()], ids=str)
def test_cross_entropy_equals_portable(lead: tuple[int, ...], options: dict[str, Any]) -> None:
    logits, targets = _classes(*lead)
    if "ignore_index" in options and lead:
        targets.view(-1)[::3] = options["ignore_index"]
    kwargs = dict(options)
    if kwargs.get("weight"):
        kwargs["weight"] = torch.rand(11, generator=torch.Generator().manual_seed(1)) + 0.5
    assert runs(seqops.cross_entropy, logits, targets, **kwargs) == "torch-cross-entropy"
    same_as_portable(seqops.cross_entropy, logits, targets, **kwargs)


def test_cross_entropy_class_axis_1_half_and_int32_targets() -> None:
    logits, targets = _classes(2, 6)
    torch_layout = logits.movedim(-1, 1).contiguous()  # (N, C, L)
    same_as_portable(seqops.cross_entropy, torch_layout, targets, axis=1, reduction="none")
    same_as_portable(seqops.cross_entropy, torch_layout, targets.to(torch.int32), axis=1)
    for dtype in ("float16", "bfloat16"):
        same_as_portable(seqops.cross_entropy, logits.to(getattr(torch, dtype)), targets, dtype=dtype)


def test_cross_entropy_all_ignored_and_empty_give_the_portable_nan() -> None:
    logits, targets = _classes(4)
    ignored = torch.full((4,), 5)
    for reduction in ("mean", "sum", "none"):
        same_as_portable(seqops.cross_entropy, logits, ignored, ignore_index=5, reduction=reduction)
        same_as_portable(seqops.cross_entropy, logits[:0], targets[:0], reduction=reduction)
    assert math.isnan(float(seqops.cross_entropy(logits, ignored, ignore_index=5)))


def test_cross_entropy_unread_targets_out_of_range_give_nan() -> None:
    # What the public layer cannot check (torch.func, torch.compile below) arrives: NaN, as portable.
    logits, targets = _classes(2, 4)
    targets[1, 1] = 11
    for reduction in ("mean", "none"):
        for fn in (seqops.cross_entropy, seqops.autoregressive_log_likelihood):
            kwargs = {"reduction": reduction} if fn is seqops.cross_entropy else {}
            if kwargs or reduction == "mean":
                out = torch.func.vmap(lambda x, t, fn=fn, kwargs=kwargs: fn(x, t, **kwargs))(logits, targets)
                assert torch.isnan(out[1]).any() and not torch.isnan(out[0]).any()
    with pytest.raises(ValueError, match="out-of-range"):
        seqops.cross_entropy(logits, targets)


def test_cross_entropy_declines_a_weight_that_requires_grad() -> None:
    logits, targets = _classes(4)
    weight = torch.ones(11, requires_grad=True)
    assert reason(seqops.cross_entropy, "torch-cross-entropy", logits, targets, weight=weight) == (
        fast.losses.WEIGHT_GRAD
    )
    grad = torch.func.grad(lambda w: seqops.cross_entropy(logits, targets, weight=w))(torch.ones(11))
    assert grad.shape == (11,)
    # (the public layer cannot take such an ignore_index on torch today: asked directly)
    declined = fast.losses.decline_cross_entropy(
        None, logits, targets, weight=None, ignore_index=2**70, label_smoothing=0.0, reduction="mean"
    )
    assert declined == fast.losses.IGNORE_RANGE


@pytest.mark.parametrize("dtype", DTYPES)
def test_autoregressive_log_likelihood_equals_portable(dtype: str) -> None:
    logits, targets = _classes(2, 3, 5)
    logits = logits.to(getattr(torch, dtype))
    assert runs(seqops.autoregressive_log_likelihood, logits, targets) == "torch-log-likelihood"
    same_as_portable(seqops.autoregressive_log_likelihood, logits, targets, dtype=dtype)
    same_as_portable(seqops.autoregressive_log_likelihood, logits[:, :, :0], targets[:, :, :0], dtype=dtype)


# -- masked convolution ------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("mask_type", "groups", "kernel"), [("A", 1, (5, 5)), ("B", 3, (3, 5)), ("A", 3, (1, 3))]
)
def test_masked_conv2d_equals_portable(
    dtype: str, mask_type: str, groups: int, kernel: tuple[int, int]
) -> None:
    x, w, b = _randn(2, 6, 7, 8, dtype=dtype), _randn(9, 6, *kernel, dtype=dtype), _randn(9, dtype=dtype)
    assert (
        runs(seqops.masked_conv2d, x, w, b, mask_type=mask_type, color_groups=groups) == "torch-masked-conv2d"
    )
    same_as_portable(seqops.masked_conv2d, x, w, b, dtype=dtype, mask_type=mask_type, color_groups=groups)
    same_as_portable(seqops.masked_conv2d, x, w, None, dtype=dtype, mask_type=mask_type, color_groups=groups)


def test_masked_conv2d_declines_empty() -> None:
    x, w = torch.zeros(0, 3, 4, 4), torch.zeros(2, 3, 3, 3)
    assert reason(seqops.masked_conv2d, "torch-masked-conv2d", x, w, None) == fast.conv.EMPTY
    same_as_portable(seqops.masked_conv2d, x, w, None)


# -- Bernoulli log-likelihood -------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_bernoulli_log_likelihood_equals_portable(dtype: str) -> None:
    logits = _randn(3, 4, 5, dtype=dtype, scale=4.0)
    x = torch.rand(3, 4, 5, generator=torch.Generator().manual_seed(2)).to(logits.dtype)
    assert runs(seqops.bernoulli_log_likelihood, x, logits) == "torch-bce-with-logits"
    for axis in (-1, (1, 2), ()):
        same_as_portable(seqops.bernoulli_log_likelihood, x, logits, dtype=dtype, axis=axis)
    same_as_portable(seqops.bernoulli_log_likelihood, x[:1], logits, dtype=dtype)  # broadcast
    same_as_portable(seqops.bernoulli_log_likelihood, x[:0], logits[:0], dtype=dtype)  # empty


# -- Gaussian log-likelihood, IWAE bound ---------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_gaussian_log_likelihood_runs_natively_and_matches_torch_distributions(dtype: str) -> None:
    # (_randn seeds by shape: the flips keep equal shapes from giving equal arrays)
    x, mean, log_var = (
        _randn(3, 4, 5, dtype=dtype),
        _randn(3, 4, 5, dtype=dtype).flip(-1),
        _randn(4, 5, dtype=dtype),
    )
    assert runs(seqops.gaussian_log_likelihood, x, mean, log_var) == "torch-gaussian-log-likelihood"
    normal = torch.distributions.Normal(mean.double(), (0.5 * log_var.double()).exp())
    for axis in (-1, (1, 2), ()):
        out = seqops.gaussian_log_likelihood(x, mean, log_var, axis=axis)
        dims = (axis,) if isinstance(axis, int) else axis
        lp = normal.log_prob(x.double())
        expected = lp.sum(dims) if dims else lp
        assert out.dtype == x.dtype
        torch.testing.assert_close(out.double(), expected, **TOL[dtype])
        same_as_portable(seqops.gaussian_log_likelihood, x, mean, log_var, dtype=dtype, axis=axis)
    same_as_portable(seqops.gaussian_log_likelihood, x[:0], mean[:0], log_var, dtype=dtype)  # empty


def test_gaussian_log_likelihood_is_exact_at_the_mean_for_any_variance() -> None:
    x = _randn(2, 6)
    log_var = torch.tensor([-100.0, -40.0, 0.0, 40.0, 80.0, 0.5]).expand(2, 6)
    out = seqops.gaussian_log_likelihood(x, x, log_var, axis=())
    torch.testing.assert_close(out, -0.5 * (math.log(2 * math.pi) + log_var))  # (x - mean)² = 0 exactly
    grads = torch.autograd.functional.jacobian(
        lambda lv: seqops.gaussian_log_likelihood(x, x, lv, axis=()).sum(), log_var.clone()
    )
    torch.testing.assert_close(grads, torch.full_like(log_var, -0.5))


@pytest.mark.parametrize("dtype", DTYPES)
def test_gaussian_kls_run_natively_and_match_torch_distributions(dtype: str) -> None:
    mq, lq = _randn(3, 4, 5, dtype=dtype), _randn(3, 4, 5, dtype=dtype, scale=0.5).flip(0)
    mp, lp = _randn(4, 5, dtype=dtype), _randn(4, 5, dtype=dtype, scale=0.5).flip(1)
    assert runs(seqops.kl_normal_standard, mq, lq) == "torch-kl-normal-standard"
    assert runs(seqops.kl_normal_normal, mq, lq, mp, lp) == "torch-kl-normal-normal"
    normal = torch.distributions.Normal
    q = normal(mq.double(), (0.5 * lq.double()).exp())
    per_entry = {
        seqops.kl_normal_standard: (torch.distributions.kl_divergence(q, normal(0.0, 1.0)), (mq, lq)),
        seqops.kl_normal_normal: (
            torch.distributions.kl_divergence(q, normal(mp.double(), (0.5 * lp.double()).exp())),
            (mq, lq, mp, lp),
        ),
    }
    for fn, (kl, args) in per_entry.items():
        for axis in (-1, (1, 2), ()):
            dims = (axis,) if isinstance(axis, int) else axis
            out = fn(*args, axis=axis)
            assert out.dtype == mq.dtype
            torch.testing.assert_close(out.double(), kl.sum(dims) if dims else kl, **TOL[dtype])
            same_as_portable(fn, *args, dtype=dtype, axis=axis)
    # equal arguments: exactly 0, whatever the variance
    lv = torch.tensor([-80.0, -1e-4, 0.0, 1e-4, 30.0]).to(mq.dtype)
    assert (seqops.kl_normal_normal(lv, lv, lv, lv, axis=()) == 0).all()
    assert (seqops.kl_normal_standard(torch.zeros_like(lv), torch.zeros_like(lv), axis=()) == 0).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_iwae_bound_runs_logsumexp_and_matches_a_float64_formula(dtype: str) -> None:
    a, b, c = (
        _randn(7, 5, dtype=dtype, scale=20.0),
        _randn(7, 1, dtype=dtype),
        _randn(7, 5, dtype=dtype).flip(0),
    )
    assert runs(seqops.iwae_bound, a, b, c) == "torch-logsumexp-iwae"
    log_w = (a.double() + b.double() - c.double()).numpy()
    top = log_w.max(0)
    expected = top + np.log(np.exp(log_w - top).mean(0))  # the max-shifted mean, in NumPy
    out = seqops.iwae_bound(a, b, c)
    assert out.dtype == a.dtype and out.shape == (5,)
    torch.testing.assert_close(out.double(), torch.from_numpy(expected), **TOL[dtype])
    same_as_portable(seqops.iwae_bound, a, b, c, dtype=dtype, axis=-1)


def test_iwae_bound_infinite_log_weights_and_no_samples() -> None:
    inf = math.inf
    a = torch.tensor([[-inf, -inf, 1.0, inf], [-inf, 2.0, 3.0, inf]])  # columns: all -inf, ..., +inf
    zero = torch.zeros_like(a)
    out = seqops.iwae_bound(a, zero, zero)
    expected = torch.tensor([-inf, 2.0 + math.log(0.5), 3.0 + math.log((1 + math.exp(-2.0)) / 2), inf])
    torch.testing.assert_close(out, expected.float())
    assert torch.isnan(seqops.iwae_bound(torch.tensor([[math.nan], [0.0]]), zero[:, :1], zero[:, :1])).all()
    empty = torch.zeros(0, 3)
    assert (
        reason(seqops.iwae_bound, "torch-logsumexp-iwae", empty, empty, empty) == fast.generative.NO_SAMPLES
    )
    assert torch.isnan(seqops.iwae_bound(empty, empty, empty)).all()  # the portable path's NaN, (3,)


def test_iwae_bound_declines_every_kind_of_autodiff() -> None:
    """torch.logsumexp's derivative rounds the bound at its own magnitude; the portable path's
    does not (tests/test_iwae.py, log-weights near -1e4 in float32)."""
    a, b, c = _randn(6, 3), _randn(6, 3).flip(0), _randn(6, 3).flip(1)
    why = fast.generative.DIFFERENTIATED
    assert reason(seqops.iwae_bound, "torch-logsumexp-iwae", a.requires_grad_(), b, c) == why
    with torch.no_grad():
        assert reason(seqops.iwae_bound, "torch-logsumexp-iwae", a, b, c) is None
    a = a.detach()
    seen: list[str] = []

    def record(x: Any) -> Any:
        seen.append(runs(seqops.iwae_bound, x, b, c))
        return seqops.iwae_bound(x, b, c).sum()

    torch.func.grad(record)(a)
    torch.func.jvp(record, (a,), (torch.ones_like(a),))
    with torch.autograd.forward_ad.dual_level():
        record(torch.autograd.forward_ad.make_dual(a, torch.ones_like(a)))
    assert seen == ["portable"] * 3
    assert runs(seqops.iwae_bound, a, b, c) == "torch-logsumexp-iwae"


# -- top-k filter and sampling ----------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_filter_logits_top_k_equals_portable(dtype: str) -> None:
    logits = _randn(3, 4, 40, dtype=dtype, scale=2.0)
    logits[0, 0, :5] = 7.0  # ties at the k-th value: all kept
    for kwargs in ({"top_k": 4}, {"top_k": 3, "temperature": 0.7}, {"top_k": 1, "min_tokens_to_keep": 6}, {}):
        assert runs(seqops.filter_logits, logits, **kwargs) == "torch-topk"
        same_as_portable(seqops.filter_logits, logits, dtype=dtype, **kwargs)
    assert int((seqops.filter_logits(logits, top_k=2)[0, 0] > -math.inf).sum()) == 5
    assert reason(seqops.filter_logits, "torch-topk", logits, top_p=0.5) == fast.decoding.TOP_P


@pytest.mark.parametrize("dtype", ("float32", "float16"))
@pytest.mark.parametrize("ties", [False, True])
def test_sample_logits_top_k_draws_the_distribution(dtype: str, ties: bool) -> None:
    """torch-topk-sample draws k uniforms a row (over the whole vocabulary when a row has ties
    beyond its k-th value): the distribution of the contract, not the portable path's tokens."""
    row = _randn(1, 300, dtype="float64", scale=2.0)[0]
    if ties:
        row[:10] = 9.0  # ties beyond k = 5: all ten kept, equally likely
    row = row.to(getattr(torch, dtype)).double()  # exactly representable in dtype
    batch = row.to(getattr(torch, dtype)).expand(20000, -1)
    for kwargs in ({"top_k": 5}, {"top_k": 40, "temperature": 0.8}):
        assert runs(seqops.sample_logits, batch, rng=0, **kwargs) == "torch-topk-sample"
        check_top_k_draws(
            lambda logits, seed: seqops.sample_logits(logits, rng=seed, **kwargs),  # noqa: B023
            lambda t: t.numpy(), row.numpy(), batch, **kwargs,
        )  # fmt: skip
    assert reason(seqops.sample_logits, "torch-topk-sample", batch, rng=0) == fast.decoding.NO_TOP_K
    assert reason(seqops.sample_logits, "torch-topk-sample", batch, rng=0, top_p=0.9) == fast.decoding.TOP_P


# -- torch.func.vmap ----------------------------------------------------------------------------
def test_vmap_of_the_recurrent_ops_declines_their_kernels() -> None:
    t, b, i, h = 4, 2, 3, 5
    xs, h0, c0 = _randn(3, t, b, i), _randn(3, b, h), _randn(3, b, h)
    w_ih, w_hh, bias = _randn(i, 4 * h), _randn(h, 4 * h), _randn(4 * h)

    def lstm(x: Any, h: Any, c: Any) -> Any:
        assert reason(seqops.lstm, "torch-lstm", x, (h, c), w_ih, w_hh, bias) == fast.VMAPPED
        return seqops.lstm(x, (h, c), w_ih, w_hh, bias)[0]

    batched = torch.func.vmap(lstm)(xs, h0, c0)
    for n in range(3):
        torch.testing.assert_close(batched[n], seqops.lstm(xs[n], (h0[n], c0[n]), w_ih, w_hh, bias)[0])
    w3 = _randn(i, 3 * h), _randn(h, 3 * h)
    gru = torch.func.vmap(lambda x, h: seqops.gru(x, h, *w3)[0])(xs, h0)
    torch.testing.assert_close(gru[1], seqops.gru(xs[1], h0[1], *w3)[0])
    w1 = _randn(i, h), _randn(h, h)
    rnn = torch.func.vmap(lambda x, h: seqops.rnn(x, h, *w1)[0])(xs, h0)
    torch.testing.assert_close(rnn[2], seqops.rnn(xs[2], h0[2], *w1)[0])


def test_vmap_through_the_other_fast_paths() -> None:
    x = _randn(3, 4, 11)
    targets = torch.randint(0, 11, (4,))
    cases: list[tuple[Callable[[Any], Any], str]] = [
        (seqops.softmax, "torch-softmax"),
        (lambda v: seqops.layer_norm(v), "torch-layer-norm"),
        (lambda v: seqops.cross_entropy(v, targets, label_smoothing=0.1), "torch-cross-entropy"),
        (lambda v: seqops.filter_logits(v, top_k=3), "torch-topk"),
    ]
    for fn, _name in cases:
        batched = torch.func.vmap(fn)(x)
        torch.testing.assert_close(batched[2], fn(x[2]))


# -- torch.compile ------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:Dynamo detected a call to a `functools.lru_cache`")
def test_torch_compile_fullgraph_through_the_fast_paths() -> None:
    def fn(x: Any, t: Any, w: Any, img: Any, cw: Any) -> Any:
        return (
            seqops.softmax(x) + seqops.log_softmax(x, axis=0),
            seqops.cross_entropy(x, t, weight=w, label_smoothing=0.1, ignore_index=2),
            seqops.cross_entropy(x, t, reduction="none"),
            seqops.layer_norm(x) + seqops.rms_norm(x) + seqops.gelu(x) + seqops.silu(x) + seqops.relu(x),
            seqops.filter_logits(x, top_k=3),
            seqops.autoregressive_log_likelihood(x[None], t[None]),
            seqops.masked_conv2d(img, cw, None),
            seqops.gaussian_log_likelihood(x, x.flip(0), x),
            seqops.kl_normal_normal(x, x.flip(0), x.flip(1), x) + seqops.kl_normal_standard(x, x.flip(1)),
            seqops.iwae_bound(x, x, x.flip(1)),
        )

    x, t, w = _randn(6, 11), torch.randint(0, 11, (6,)), torch.rand(11)
    img, cw = _randn(2, 3, 5, 5), _randn(4, 3, 3, 3)
    torch._dynamo.reset()
    try:
        compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
        for got, want in zip(compiled(x, t, w, img, cw), fn(x, t, w, img, cw), strict=True):
            torch.testing.assert_close(got, want)
        # Targets the public layer cannot read while tracing: NaN, as the portable path.
        t[1] = 11
        loss = torch.compile(
            lambda x, t: seqops.cross_entropy(x, t, reduction="none"), fullgraph=True, backend="aot_eager"
        )
        out = loss(x, t)
        assert torch.isnan(out[1]) and not torch.isnan(out[0])
    finally:
        torch._dynamo.reset()


# -- rotary -------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["halves", "interleaved"])
def test_apply_rotary_equals_portable(dtype: str, layout: str) -> None:
    x = _randn(2, 3, 7, 10, dtype=dtype)
    for positions, rotary_dim in (
        (torch.arange(7), None),
        (torch.arange(7) + 100, 6),
        (torch.arange(14).view(2, 1, 7), 4),
    ):
        kwargs = {"layout": layout, "rotary_dim": rotary_dim}
        assert runs(seqops.apply_rotary, x, positions, **kwargs) == "torch-rotary"
        same_as_portable(seqops.apply_rotary, x, positions, dtype=dtype, **kwargs)
    same_as_portable(seqops.apply_rotary, x[:0], torch.arange(7), dtype=dtype, layout=layout)  # empty batch


def test_apply_rotary_gradient_equals_portable() -> None:
    x = _randn(2, 4, 5, 8, dtype="float64").requires_grad_()
    cotangent = _randn(2, 4, 5, 8, dtype="float64")
    for layout in ("halves", "interleaved"):
        (grad,) = torch.autograd.grad(
            (seqops.apply_rotary(x, torch.arange(5), layout=layout) * cotangent).sum(), x
        )
        with portable():
            out = seqops.apply_rotary(x, torch.arange(5), layout=layout)
            (expected,) = torch.autograd.grad((out * cotangent).sum(), x)
        torch.testing.assert_close(grad, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "kwargs", [{}, {"is_causal": True}, {"mask": "windows"}, {"bias": "heads"}, {"enable_gqa": True}]
)
def test_sdpa_folds_the_middle_dims_into_the_heads(kwargs: dict[str, Any], monkeypatch) -> None:
    """(B, windows, H, N, d) runs torch's 4-D kernels with the windows folded into the heads:
    the values of the portable path, a NaN query row kept NaN (the fused kernel drops it),
    masks and biases broadcast, GQA's head groups kept."""
    import seqops_torch_fast

    ranks: list[int] = []
    kernel = torch.nn.functional.scaled_dot_product_attention
    seqops.scaled_dot_product_attention(*(_randn(1, 2, 8),) * 3)  # the plugin looks its kernel up
    monkeypatch.setattr(
        seqops_torch_fast, "_SDPA", lambda q, *a, **k: ranks.append(q.ndim) or kernel(q, *a, **k)
    )
    q, k, v = _randn(2, 3, 4, 5, 8), _randn(2, 3, 4, 7, 8), _randn(1, 3, 4, 7, 6)  # v broadcasts
    if kwargs.get("enable_gqa"):  # 4 query heads over 2 key/value heads
        k, v = k[:, :, :2], v[:, :, :2]
    q[1, 2, 0, 3, 1] = math.nan
    if "mask" in kwargs:
        kwargs = {"mask": torch.rand(3, 1, 5, 7, generator=torch.Generator().manual_seed(1)) > 0.3}
    if "bias" in kwargs:
        kwargs = {"bias": _randn(4, 5, 7)}
    assert runs(seqops.scaled_dot_product_attention, q, k, v, **kwargs) == "torch-sdpa"
    out = seqops.scaled_dot_product_attention(q, k, v, **kwargs)
    with portable():
        expected = seqops.scaled_dot_product_attention(q, k, v, **kwargs)
    assert out.shape == expected.shape == (2, 3, 4, 5, 6) and ranks == [4]  # torch's kernel saw 4-D
    assert torch.equal(out.isnan(), expected.isnan()) and bool(out[1, 2, 0, 3].isnan().all())
    torch.testing.assert_close(out.nan_to_num(), expected.nan_to_num())


# -- non-finite inputs --------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs", [{}, {"is_causal": True}, {"scale": 0.3}])
def test_sdpa_keeps_nan_query_rows_visible(kwargs: dict[str, Any]) -> None:
    """torch's fused kernel without a mask gives zeros on a NaN query row; torch-sdpa gives
    NaN there, as the portable path, and nothing else changes."""
    q, k, v = _randn(2, 3, 5, 8), _randn(2, 3, 6, 8), _randn(2, 3, 6, 8)
    q[0, 1, 2, 3] = math.nan
    assert runs(seqops.scaled_dot_product_attention, q, k, v, **kwargs) == "torch-sdpa"
    out = seqops.scaled_dot_product_attention(q, k, v, **kwargs)
    with portable():
        expected = seqops.scaled_dot_product_attention(q, k, v, **kwargs)
    assert torch.equal(out.isnan(), expected.isnan()) and bool(out[0, 1, 2].isnan().all())
    torch.testing.assert_close(out.nan_to_num(), expected.nan_to_num())
    empty = seqops.scaled_dot_product_attention(q, k[..., :0, :], v[..., :0, :])  # no key: zeros
    assert torch.equal(empty, torch.zeros_like(empty))


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16"])
@pytest.mark.parametrize("lead", [(), (2,), (1, 1), (2, 3), (2, 1, 3)])
def test_sdpa_without_a_key_gives_zeros_on_every_rank_and_dtype(dtype: str, lead: tuple[int, ...]) -> None:
    # API.md: a query with no key gives zeros, NaN in q or not. torch's kernels for ranks below
    # 4 give NaN on every row when q holds a NaN and S = 0, so torch-sdpa's common call must
    # test k's size.
    q, k = _randn(*lead, 4, 8, dtype=dtype), _randn(*lead, 0, 8, dtype=dtype)
    for nan in (False, True):
        if nan:
            q[..., 1, 2] = math.nan
        assert runs(seqops.scaled_dot_product_attention, q, k, k) == "torch-sdpa"
        out = seqops.scaled_dot_product_attention(q, k, k)
        assert out.shape == (*lead, 4, 8) and torch.equal(out, torch.zeros_like(out)), (lead, nan)


# -- recurrent cells --------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("batch", [(), (5,), (2, 3)])
def test_rnn_and_gru_cells_equal_portable(dtype: str, batch: tuple[int, ...]) -> None:
    i, h = 6, 4
    x, state = _randn(*batch, i, dtype=dtype), _randn(*batch, h, dtype=dtype)
    w1, w2, b = _randn(i, h, dtype=dtype), _randn(h, h, dtype=dtype), _randn(h, dtype=dtype)
    for nonlinearity, bias in (("tanh", b), ("relu", None)):
        assert runs(seqops.rnn_cell, x, state, w1, w2, bias, nonlinearity=nonlinearity) == "torch-rnn-cell"
        same_as_portable(seqops.rnn_cell, x, state, w1, w2, bias, dtype=dtype, nonlinearity=nonlinearity)
    g1, g2, gb = _randn(i, 3 * h, dtype=dtype), _randn(h, 3 * h, dtype=dtype), _randn(3 * h, dtype=dtype)
    for b_ih, b_hh in ((gb, 2 * gb), (None, gb), (gb, None), (None, None)):
        assert runs(seqops.gru_cell, x, state, g1, g2, b_ih, b_hh) == "torch-gru-cell"
        same_as_portable(seqops.gru_cell, x, state, g1, g2, b_ih, b_hh, dtype=dtype)
    l1, l2, lb = _randn(i, 4 * h, dtype=dtype), _randn(h, 4 * h, dtype=dtype), _randn(4 * h, dtype=dtype)
    c = _randn(*batch, h, dtype=dtype)
    for bias in (lb, None):
        assert runs(seqops.lstm_cell, x, (state, c), l1, l2, bias) == "torch-lstm-cell"
        out = seqops.lstm_cell(x, (state, c), l1, l2, bias)
        with portable():
            expected = seqops.lstm_cell(x, (state, c), l1, l2, bias)
        for a, b in zip(out, expected, strict=True):
            torch.testing.assert_close(a, b, **TOL[dtype])
            assert a.is_contiguous()  # laid out as the state, not as the gates' column slices


def test_lstm_cell_in_place_product_keeps_gradients_jvp_and_vmap() -> None:
    # torch-lstm-cell adds the second product in place (addmm_), out of place under vmap.
    x, h, c = _randn(3, 6, dtype="float64"), _randn(3, 4, dtype="float64"), _randn(3, 4, dtype="float64")
    w1, w2, b = _randn(6, 16, dtype="float64"), _randn(4, 16, dtype="float64"), _randn(16, dtype="float64")

    def step(x: Any, h: Any, w2: Any) -> Any:
        new_h, new_c = seqops.lstm_cell(x, (h, c), w1, w2, b)
        return new_h.sum() + (new_c**2).sum()

    args = (x.requires_grad_(), h.requires_grad_(), w2.requires_grad_())
    assert runs(seqops.lstm_cell, x, (h, c), w1, w2, b) == "torch-lstm-cell"
    grads = torch.autograd.grad(step(*args), args)
    tangents = tuple(torch.ones_like(a) for a in args)
    detached = tuple(a.detach() for a in args)
    jvp = torch.func.jvp(step, detached, tangents)[1]
    with portable():
        expected = torch.autograd.grad(step(*args), args)
        expected_jvp = torch.func.jvp(step, detached, tangents)[1]
    for got, want in zip((*grads, jvp), (*expected, expected_jvp), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    # h batched, x not: the first product is not batched, so adding a batched one to it in
    # place is what vmap cannot do
    hs = torch.stack([h.detach(), h.detach() + 1])
    batched = torch.func.vmap(lambda h: seqops.lstm_cell(x.detach(), (h, c), w1, w2.detach(), b)[1])(hs)
    torch.testing.assert_close(batched[1], seqops.lstm_cell(x.detach(), (hs[1], c), w1, w2.detach(), b)[1])


def test_cells_decline_half_precision_and_empty_batches_and_keep_gradients() -> None:
    x, h = _randn(3, 6, dtype="float16"), _randn(3, 4, dtype="float16")
    w1, w2 = _randn(6, 12, dtype="float16"), _randn(4, 12, dtype="float16")
    assert reason(seqops.gru_cell, "torch-gru-cell", x, h, w1, w2) == fast.cells.HALF
    assert reason(
        seqops.gru_cell, "torch-gru-cell", x[:0].float(), h[:0].float(), w1.float(), w2.float()
    ) == (fast.cells.EMPTY_BATCH)
    x, h = _randn(3, 6, dtype="float64").requires_grad_(), _randn(3, 4, dtype="float64")
    w1, w2 = _randn(6, 12, dtype="float64").requires_grad_(), _randn(4, 12, dtype="float64")
    grads = torch.autograd.grad(seqops.gru_cell(x, h, w1, w2).sum(), (x, w1))
    with portable():
        expected = torch.autograd.grad(seqops.gru_cell(x, h, w1, w2).sum(), (x, w1))
    for a, b in zip(grads, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    batched = torch.func.vmap(lambda x: seqops.gru_cell(x, h, w1, w2))(x.detach()[None].expand(2, 3, 6))
    torch.testing.assert_close(batched[1], seqops.gru_cell(x.detach(), h, w1, w2))


# -- window attention -------------------------------------------------------------------------
def _window_inputs(
    b: int,
    h: int,
    w: int,
    heads: int,
    ws: int,
    *,
    dtype: str = "float32",
    bias: bool = True,
    rel: bool = True,
) -> tuple[Any, Any, Any]:
    c = 4 * heads
    weights = [_randn(c, c, dtype=dtype, scale=1 / math.sqrt(c)) for _ in range(4)]
    biases = [_randn(c + i, dtype=dtype, scale=0.1)[:c] if bias else None for i in range(4)]
    table = _randn((2 * ws - 1) ** 2, heads, dtype=dtype) if rel else None
    return _randn(b, h, w, c, dtype=dtype), seqops.MHAParams(*weights, *biases), table


def _swin_reference(x: Any, p: Any, heads: int, ws: int, shift: int, table: Any) -> Any:
    """Float64, token by token: pad, roll, each window's attention (scores over the tokens of the
    same region only, as Swin's slices label them), roll back, crop."""
    x, p = x.double(), seqops.MHAParams(*(t if t is None else t.double() for t in p))
    b, height, width, c = x.shape
    hp, wp = -(-height // ws) * ws, -(-width // ws) * ws
    x = torch.nn.functional.pad(x, (0, 0, 0, wp - width, 0, hp - height)).roll((-shift, -shift), (1, 2))

    def label(i: int, size: int) -> int:
        return 0 if not shift else int(i >= size - ws) + int(i >= size - shift)

    def lin(t: Any, wt: Any, bt: Any) -> Any:
        return t @ wt + (0 if bt is None else bt)

    q, k, v = lin(x, p.w_q, p.b_q), lin(x, p.w_k, p.b_k), lin(x, p.w_v, p.b_v)
    d = q.shape[-1] // heads
    out = torch.zeros(b, hp, wp, q.shape[-1], dtype=torch.float64)
    for r0 in range(0, hp, ws):
        for c0 in range(0, wp, ws):
            cells = [(r0 + i, c0 + j) for i in range(ws) for j in range(ws)]
            for i1, j1 in cells:
                for h in range(heads):
                    sl = slice(h * d, (h + 1) * d)
                    scores, keep = [], []
                    for i2, j2 in cells:
                        if (label(i1, hp), label(j1, wp)) != (label(i2, hp), label(j2, wp)):
                            continue
                        s = (q[:, i1, j1, sl] * k[:, i2, j2, sl]).sum(-1) / math.sqrt(d)
                        if table is not None:
                            di, dj = (i1 - r0) - (i2 - r0) + ws - 1, (j1 - c0) - (j2 - c0) + ws - 1
                            s = s + table[di * (2 * ws - 1) + dj, h].double()
                        scores.append(s)
                        keep.append(v[:, i2, j2, sl])
                    weights = torch.softmax(torch.stack(scores, -1), -1)  # (B, kept)
                    out[:, i1, j1, sl] = (weights[..., None] * torch.stack(keep, 1)).sum(1)
    out = lin(out, p.w_o, p.b_o).roll((shift, shift), (1, 2))
    return out[:, :height, :width]


WINDOW_CASES = [  # (B, H, W, heads, ws, shift, biases, table)
    (2, 6, 6, 2, 3, 1, True, True),
    (2, 5, 7, 2, 3, 1, True, True),  # padded to 6 x 9
    (1, 5, 7, 2, 3, 0, False, False),  # padded, no shift, no biases, no relative bias
    (2, 4, 6, 3, 2, 0, True, True),
    (3, 7, 5, 2, 3, 2, False, False),  # padded, shifted, no relative bias
]


@pytest.mark.parametrize("case", WINDOW_CASES, ids=str)
def test_window_attention_matches_the_portable_path_and_swin(case: tuple[Any, ...]) -> None:
    b, h, w, heads, ws, shift, bias, table = case
    x, p, rel = _window_inputs(b, h, w, heads, ws, bias=bias, rel=table)
    kw = {"num_heads": heads, "window_size": ws, "shift_size": shift, "relative_bias_table": rel}
    assert runs(seqops.window_attention, x, p, **kw) == "torch-window-attention"
    same_as_portable(seqops.window_attention, x, p, **kw)
    expected = _swin_reference(x, p, heads, ws, shift, rel)
    torch.testing.assert_close(seqops.window_attention(x, p, **kw).double(), expected, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("dtype", ["float64", "float16", "bfloat16"])
def test_window_attention_in_every_dtype(dtype: str) -> None:
    x, p, rel = _window_inputs(2, 5, 7, 2, 3, dtype=dtype)
    kw = {"num_heads": 2, "window_size": 3, "shift_size": 1, "relative_bias_table": rel}
    assert runs(seqops.window_attention, x, p, **kw) == "torch-window-attention"
    same_as_portable(seqops.window_attention, x, p, dtype=dtype, **kw)
    if dtype == "float64":
        out = seqops.window_attention(x, p, **kw)
        torch.testing.assert_close(out, _swin_reference(x, p, 2, 3, 1, rel), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("value", ["nan", "inf"])
@pytest.mark.parametrize("shift", [0, 1])
def test_window_attention_keeps_an_excluded_nonfinite_key_out(value: str, shift: int) -> None:
    x, p, rel = _window_inputs(2, 6, 6, 2, 3)
    # a key of +-inf (or NaN: inf - inf) at token (0, 0) whose value and query stay finite (a
    # non-finite value reaches its whole window: 0 * NaN); after the roll by -1 it sits at
    # (5, 5), alone in its region, which the rest of its window excludes
    w_q, w_k, w_v = p.w_q.clone(), p.w_k.clone(), p.w_v.clone()
    w_q[1:3], w_v[1:3], w_k[1:3] = 0.0, 0.0, 1e10
    x[0, 0, 0, 1:3] = torch.tensor([1e30, -1e30 if value == "nan" else 1e30])
    p = p._replace(w_q=w_q, w_k=w_k, w_v=w_v)
    kw = {"num_heads": 2, "window_size": 3, "shift_size": shift, "relative_bias_table": rel}
    out = seqops.window_attention(x, p, **kw)
    with portable():
        expected = seqops.window_attention(x, p, **kw)
    assert torch.equal(out.isnan(), expected.isnan())
    torch.testing.assert_close(out, expected, equal_nan=True, **TOL["float32"])
    assert out[1].isfinite().all()
    if shift:  # the tokens of its window in other regions are finite
        assert out[0, 4:, 4:].isfinite().all()


@pytest.mark.parametrize("table", [True, False])
def test_window_attention_gradients_match_the_portable_path(table: bool) -> None:
    x, p, rel = _window_inputs(2, 5, 7, 2, 3, dtype="float64", rel=table)
    leaves = [t.requires_grad_() for t in (x, *p, *([rel] if table else []))]
    kw = {"num_heads": 2, "window_size": 3, "shift_size": 1, "relative_bias_table": rel}
    grads = torch.autograd.grad(seqops.window_attention(x, p, **kw).square().sum(), leaves)
    with portable():
        expected = torch.autograd.grad(seqops.window_attention(x, p, **kw).square().sum(), leaves)
    for a, b in zip(grads, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_window_attention_declines_vmap_empty_sizes_and_over_budget() -> None:
    x, p, rel = _window_inputs(2, 6, 6, 2, 3)
    kw = {"num_heads": 2, "window_size": 3, "shift_size": 1, "relative_bias_table": rel}
    name = "torch-window-attention"
    assert reason(seqops.window_attention, name, x[:0], p, **kw) == fast.windows.EMPTY
    old = seqops.set_attention_memory_budget(2 * 4 * 2 * 81 * 4 - 1)
    try:
        assert reason(seqops.window_attention, name, x, p, **kw) == fast.windows.OVER_BUDGET
    finally:
        seqops.set_attention_memory_budget(old)
    seen: list[str | None] = []

    def f(x: Any) -> Any:
        seen.append(reason(seqops.window_attention, name, x, p, **kw))
        return seqops.window_attention(x, p, **kw)

    batched = torch.func.vmap(f)(torch.stack([x, x + 1]))
    assert seen == [fast.windows.VMAPPED]
    torch.testing.assert_close(batched[1], seqops.window_attention(x + 1, p, **kw), **TOL["float32"])


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_window_attention_with_a_nonfinite_relative_bias_is_the_portable_result(value: float) -> None:
    x, p, rel = _window_inputs(2, 6, 6, 2, 3)
    rel[0, 1] = value  # offset (-2, -2): pairs of the region-split windows too
    kw = {"num_heads": 2, "window_size": 3, "shift_size": 1, "relative_bias_table": rel}
    out = seqops.window_attention(x, p, **kw)
    with portable():
        expected = seqops.window_attention(x, p, **kw)
    assert torch.equal(out.isnan(), expected.isnan()) and expected.isfinite().any()
    torch.testing.assert_close(out, expected, equal_nan=True, **TOL["float32"])


@pytest.mark.parametrize("table", [True, False])
def test_window_attention_keeps_a_nan_query_row_nan(table: bool) -> None:
    # a NaN query (inf - inf) at token (2, 1) whose key and value stay finite: its row only is NaN
    # (torch's kernel without a mask gives zeros there)
    x, p, rel = _window_inputs(2, 6, 6, 2, 3, rel=table)
    w_q, w_k, w_v = p.w_q.clone(), p.w_k.clone(), p.w_v.clone()
    w_q[1:3], w_k[1:3], w_v[1:3] = 1e10, 0.0, 0.0
    x[0, 2, 1, 1:3] = torch.tensor([1e30, -1e30])
    p = p._replace(w_q=w_q, w_k=w_k, w_v=w_v)
    kw = {"num_heads": 2, "window_size": 3, "shift_size": 0, "relative_bias_table": rel}
    assert runs(seqops.window_attention, x, p, **kw) == "torch-window-attention"
    out = seqops.window_attention(x, p, **kw)
    assert out[0, 2, 1].isnan().all() and out.isnan().sum() == out.shape[-1]
    same_as_portable(seqops.window_attention, x, p, **kw)
