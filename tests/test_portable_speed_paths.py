"""The portable paths made faster (issue 13, items 2 and 3, and the NumPy erf of item 1).

* ``validate.broadcast_to_target``: the in-place size comparison accepts exactly what
  ``broadcast(shape, target) == target`` accepts, raises the same messages, and holds no
  state (a shape accepted for one target is refused for another).
* ``_agnostic.losses.pick``: ``take_along_axis`` (one-hot where a namespace lacks it).
* ``_agnostic.decoding.kth_largest``: top-k thresholds without a sort, ties counted.
* The NumPy backend's ``erf``: ``scipy.special.erf`` where SciPy imports, else the portable one.

``python tests/test_portable_speed_paths.py`` prints the benchmark ratios (same process,
interleaved rounds).
"""

from __future__ import annotations

import itertools
import math
import re
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import array_api_compat.numpy as cnp
import numpy as np
import pytest

import seqops
from seqops._agnostic import decoding, losses
from seqops._lib import validate as check


# -- broadcast_to_target ---------------------------------------------------------------------------
def _broadcasts(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    """The rule before the fast check: the broadcast of both is ``target`` itself."""
    try:
        return check.broadcast(shape, target) == target
    except ValueError:
        return False


SIZES = (1, 2, 3)
SHAPES = [s for n in range(4) for s in itertools.product(SIZES, repeat=n)]
TARGETS = [(2, 3), (1, 3), (2, 1, 3), (3, 2, 2), (2, 3, 1, 3)]


@pytest.mark.parametrize("target", TARGETS, ids=str)
def test_broadcast_to_target_accepts_exactly_what_broadcasting_accepts(target: tuple[int, ...]) -> None:
    for shape in [*SHAPES, (1, 1, 1, 1, 3), (2, 2, 3, 1, 3)]:
        x = np.empty(shape, dtype=bool)
        if _broadcasts(shape, target):
            check.broadcast_to_target("mask", x, target, "(..., L, S)")
        else:
            message = f"`mask` of shape {shape} does not broadcast to (..., L, S) = {target}"
            with pytest.raises(ValueError, match=re.escape(message)):
                check.broadcast_to_target("mask", x, target, "(..., L, S)")


def test_broadcast_to_target_on_torch_sizes(torch: Any) -> None:
    target = (2, 3, 4, 5)
    for shape in [(4, 5), (2, 1, 1, 5), (1, 3, 4, 1), (5,), (2, 3, 4, 5)]:
        check.broadcast_to_target("mask", torch.zeros(shape, dtype=torch.bool), target, "(..., L, S)")
    for shape in [(4, 4), (3, 1, 1, 5), (1, 2, 3, 4, 5), (2, 3, 4, 6)]:
        with pytest.raises(ValueError, match=re.escape(f"of shape {shape} does not broadcast")):
            check.broadcast_to_target("mask", torch.zeros(shape, dtype=torch.bool), target, "(..., L, S)")


@pytest.mark.parametrize("library", ["numpy", "torch"])
def test_a_mask_accepted_before_is_refused_with_other_dims(library: str) -> None:
    """Nothing is remembered: the same mask shape is judged again against each call's dims."""
    if library == "torch":
        torch = pytest.importorskip("torch")
        make: Callable[..., Any] = lambda *s, dtype=float: torch.ones(  # noqa: E731
            s, dtype=torch.bool if dtype is bool else torch.float32
        )
    else:
        make = lambda *s, dtype=float: np.ones(s, dtype=dtype if dtype is bool else np.float32)  # noqa: E731
    padding, square = make(2, 1, 1, 8, dtype=bool), make(8, 8, dtype=bool)
    for _ in range(3):  # valid, several times
        q = make(2, 4, 8, 16)
        assert tuple(seqops.scaled_dot_product_attention(q, q, q, mask=padding).shape) == (2, 4, 8, 16)
        assert tuple(seqops.scaled_dot_product_attention(q, q, q, mask=square).shape) == (2, 4, 8, 16)
    q3 = make(3, 4, 8, 16)  # another batch: the (2, 1, 1, 8) padding mask no longer fits
    with pytest.raises(
        ValueError,
        match=re.escape("`mask` of shape (2, 1, 1, 8) does not broadcast to (..., L, S) = (3, 4, 8, 8)"),
    ):
        seqops.scaled_dot_product_attention(q3, q3, q3, mask=padding)
    q7 = make(2, 4, 7, 16)  # another length: the (8, 8) mask no longer fits
    with pytest.raises(
        ValueError, match=re.escape("`mask` of shape (8, 8) does not broadcast to (..., L, S) = (2, 4, 7, 7)")
    ):
        seqops.scaled_dot_product_attention(q7, q7, q7, mask=square)
    with pytest.raises(
        ValueError,
        match=re.escape("`bias` of shape (2, 1, 1, 8) does not broadcast to (..., L, S) = (3, 4, 8, 8)"),
    ):
        seqops.scaled_dot_product_attention(q3, q3, q3, bias=make(2, 1, 1, 8))
    # and the valid call is still accepted afterwards
    q = make(2, 4, 8, 16)
    assert tuple(seqops.scaled_dot_product_attention(q, q, q, mask=padding).shape) == (2, 4, 8, 16)


def test_symbolic_dims_are_checked_as_before(jax: Any) -> None:
    from jax import export

    (b,) = export.symbolic_shape("b")
    spec = jax.ShapeDtypeStruct((b, 2, 8, 8), np.float32)
    attend = jax.jit(lambda q, m: seqops.scaled_dot_product_attention(q, q, q, mask=m))
    for shape in [(b, 1, 1, 8), (b, 1, 8, 8), (8, 8), (b, 2, 8, 8)]:
        exported = export.export(attend)(spec, jax.ShapeDtypeStruct(shape, np.bool_))
        assert str(exported.out_avals[0].shape) == "(b, 2, 8, 8)"
    with pytest.raises(ValueError, match=re.escape("`mask` of shape (b, 1, 1, 7) does not broadcast")):
        export.export(attend)(spec, jax.ShapeDtypeStruct((b, 1, 1, 7), np.bool_))


# -- pick: take_along_axis -------------------------------------------------------------------------
class _WithoutTakeAlongAxis:
    """A namespace that lacks ``take_along_axis`` (as older ones do)."""

    def __init__(self, xp: Any) -> None:
        self._xp = xp

    def __getattr__(self, name: str) -> Any:
        if name == "take_along_axis":
            raise AttributeError(name)
        return getattr(self._xp, name)


def _pick_cases(rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    values = rng.standard_normal((3, 4, 7))
    targets = rng.integers(-2, 9, (3, 4))  # some out of [0, 7): picked as 0
    weight = rng.standard_normal(7)
    return [(values, targets), (weight, targets), (values[0, 0], np.asarray(3))]


def test_pick_gathers_as_the_one_hot_product(backend: seqops.Backend, xp: Any) -> None:
    rng = np.random.default_rng(0)
    assert hasattr(xp, "take_along_axis")
    device = backend.default_device()
    for values, targets in _pick_cases(rng):
        v = backend.from_numpy(values, dtype=backend.floating_dtypes()["float32"])
        for int_dtype in ("int32", "int64"):
            t = backend.from_numpy(np.asarray(targets), dtype=getattr(xp, int_dtype))
            if values.ndim > 1:
                safe = np.clip(targets, 0, values.shape[-1] - 1)
                expected = np.take_along_axis(values, safe[..., None], axis=-1)[..., 0]
            else:
                expected = values[np.clip(targets, 0, values.shape[-1] - 1)]
            expected = np.where((targets >= 0) & (targets < values.shape[-1]), expected, 0.0)
            got = backend.to_numpy(losses.pick(xp, v, t, device=device))
            one_hot = backend.to_numpy(losses.pick(_WithoutTakeAlongAxis(xp), v, t, device=device))
            np.testing.assert_allclose(got, expected, rtol=1e-6, atol=0)
            np.testing.assert_array_equal(got, one_hot)


def test_cross_entropy_without_take_along_axis_is_the_same() -> None:
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((6, 11))
    targets = rng.integers(0, 11, 6)
    targets[2] = -100
    weight = rng.random(11) + 0.5
    kw = {
        "weight": weight,
        "ignore_index": -100,
        "label_smoothing": 0.1,
        "reduction": "none",
        "device": "cpu",
    }
    a = losses.cross_entropy(cnp, logits, targets, **kw)
    b = losses.cross_entropy(_WithoutTakeAlongAxis(cnp), logits, targets, **kw)
    np.testing.assert_array_equal(a, b)
    torch = pytest.importorskip("torch")
    ref = torch.nn.functional.cross_entropy(
        torch.from_numpy(logits), torch.from_numpy(targets), weight=torch.from_numpy(weight),
        ignore_index=-100, label_smoothing=0.1, reduction="none",
    )  # fmt: skip
    np.testing.assert_allclose(a, ref.numpy(), rtol=1e-13, atol=1e-15)


def test_cross_entropy_large_logits_and_inf() -> None:
    """The loss is lse - z_t (no log-softmax array): still exact far from 0 and with -inf logits."""
    torch = pytest.importorskip("torch")
    logits = np.array([[1e4, 1e4 - 3.0, -np.inf, 0.0], [-1e4, -1e4 + 2.0, 5.0, -np.inf]])
    targets = np.array([1, 0])
    for smoothing in (0.0, 0.2):
        got = seqops.cross_entropy(logits, targets, reduction="none", label_smoothing=smoothing)
        ref = torch.nn.functional.cross_entropy(
            torch.from_numpy(logits), torch.from_numpy(targets), reduction="none", label_smoothing=smoothing
        )
        np.testing.assert_allclose(got, ref.numpy(), rtol=1e-12)


# -- kth_largest: top-k without a sort -------------------------------------------------------------
def _logits_with_ties(rng: np.random.Generator) -> np.ndarray:
    x = np.round(rng.standard_normal((5, 3, 40)), 1)  # many ties
    x[0, 0, :4] = 9.0  # a 4-way tie at the top
    x[1, 1, :] = 0.5  # a constant row
    return x


@pytest.mark.parametrize("k", [1, 2, 5, 39, 40])
def test_kth_largest_is_the_sorted_value(backend: seqops.Backend, xp: Any, k: int) -> None:
    x = _logits_with_ties(np.random.default_rng(k))
    expected = np.sort(x, axis=-1)[..., x.shape[-1] - k : x.shape[-1] - k + 1]
    for name in ("float32", "float64"):
        dtype = backend.floating_dtypes().get(name)
        if dtype is None:
            continue
        got = backend.to_numpy(decoding.kth_largest(xp, backend.from_numpy(x, dtype=dtype), k))
        np.testing.assert_array_equal(got, expected.astype(got.dtype))


def test_kth_largest_under_jit(jax: Any) -> None:
    import jax.numpy as jnp

    x = _logits_with_ties(np.random.default_rng(0)).astype(np.float32)
    got = jax.jit(lambda a: decoding.kth_largest(jnp, a, 5))(jnp.asarray(x))
    np.testing.assert_array_equal(np.asarray(got), np.sort(x, axis=-1)[..., 35:36])
    kw = {"temperature": 0.7, "top_k": 4, "top_p": None, "min_tokens_to_keep": 1, "device": None}
    filtered = jax.jit(lambda a: decoding.filter_logits(jnp, a, **kw))(jnp.asarray(x))
    expected = decoding.filter_logits(cnp, x, **{**kw, "device": "cpu"})
    np.testing.assert_array_equal(np.isfinite(filtered), np.isfinite(expected))  # the same tokens kept
    np.testing.assert_allclose(np.asarray(filtered), expected, rtol=3e-7)  # XLA divides by 0.7 its own way


def test_top_k_alone_keeps_ties_and_matches_the_sort_path(backend: seqops.Backend, xp: Any) -> None:
    """top_k alone takes kth_largest; with top_p = 1.0 too; the sort path (top_p < 1 but
    keeping everything) gives the same tokens."""
    x = _logits_with_ties(np.random.default_rng(3))
    a = backend.from_numpy(x, dtype=backend.floating_dtypes()["float32"])
    device = backend.default_device()
    for top_k, keep in [(1, 1), (3, 1), (2, 6), (50, 1)]:
        base = {"temperature": 1.0, "top_k": top_k, "min_tokens_to_keep": keep, "device": device}
        alone = backend.to_numpy(decoding.filter_logits(xp, a, top_p=None, **base))
        with_one = backend.to_numpy(decoding.filter_logits(xp, a, top_p=1.0, **base))
        sorted_path = backend.to_numpy(decoding.filter_logits(xp, a, top_p=1.0 - 1e-12, **base))
        k = min(max(top_k, keep), x.shape[-1])
        threshold = np.sort(x.astype(np.float32), axis=-1)[..., -k:][..., :1]
        expected = np.where(x.astype(np.float32) >= threshold, x.astype(np.float32), -np.inf)
        np.testing.assert_array_equal(alone, expected)
        np.testing.assert_array_equal(with_one, expected)
        np.testing.assert_array_equal(sorted_path, expected)
    # the 4-way tie at the top survives top_k=1
    kept = backend.to_numpy(
        decoding.filter_logits(xp, a, top_p=None, **{**base, "top_k": 1, "min_tokens_to_keep": 1})
    )
    assert np.isfinite(kept[0, 0]).sum() == 4


def test_public_filter_logits_top_k_on_numpy_has_no_sort(monkeypatch: pytest.MonkeyPatch) -> None:
    """On NumPy the top-k threshold is a partition: the public call never reaches ``xp.sort``."""
    x = _logits_with_ties(np.random.default_rng(4)).astype(np.float32)
    expected = seqops.filter_logits(x, top_k=3)

    def no_sort(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("sorted")

    monkeypatch.setattr(cnp, "sort", no_sort)
    np.testing.assert_array_equal(seqops.filter_logits(x, top_k=3), expected)
    with pytest.raises(AssertionError, match="sorted"):  # top-p still sorts
        seqops.filter_logits(x, top_k=3, top_p=0.9)


# -- NumPy erf --------------------------------------------------------------------------------------
def _numpy_backend() -> Any:
    return next(b for b, _ in seqops.backends() if b.name == "numpy")


def test_numpy_erf_is_scipy_where_installed() -> None:
    special = pytest.importorskip("scipy.special")
    backend = _numpy_backend()
    assert backend.erf is special.erf
    assert "scipy" in backend.versions()
    x = np.linspace(-7, 7, 2001)
    np.testing.assert_allclose(backend.erf(x), [math.erf(t) for t in x], rtol=1e-14, atol=1e-15)
    assert backend.erf(x.astype(np.float32)).dtype == np.float32


def test_numpy_backend_without_scipy_uses_the_portable_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    import seqops_numpy

    x = np.linspace(-4, 4, 101, dtype=np.float32)
    mu, cov = _gaussians(np.float64)
    with_scipy = seqops.gelu(x), seqops.kl_mvn(mu[0], cov[0], mu[1], cov[1])
    monkeypatch.setitem(sys.modules, "scipy.special", None)  # import fails
    monkeypatch.setattr(seqops_numpy, "_SCIPY", {})
    backend = _numpy_backend()
    assert backend.erf is None and backend.cholesky is None and backend.solve_lower is None
    assert backend.erf is None  # remembered: the import is tried once
    assert "scipy" not in backend.versions()
    np.testing.assert_allclose(seqops.gelu(x), with_scipy[0], rtol=2e-7, atol=1e-7)
    np.testing.assert_allclose(seqops.kl_mvn(mu[0], cov[0], mu[1], cov[1]), with_scipy[1], rtol=1e-12)


def _gaussians(dtype: Any, batch: int = 5, k: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Means ``(2, batch, k)`` and well-conditioned covariances ``(2, batch, k, k)``."""
    rng = np.random.default_rng(3)
    a = rng.standard_normal((2, batch, k, k)) / math.sqrt(k)
    cov = a @ a.swapaxes(-1, -2) + np.eye(k)
    return rng.standard_normal((2, batch, k)).astype(dtype), cov.astype(dtype)


def test_numpy_cholesky_and_triangular_solve_are_scipy_batched_ones() -> None:
    pytest.importorskip("scipy", minversion="1.15")
    backend = _numpy_backend()
    for dtype, rtol in ((np.float64, 1e-12), (np.float32, 2e-6)):
        _, cov = _gaussians(dtype)
        lower = backend.cholesky(cov)
        assert lower.dtype == dtype and lower.shape == cov.shape
        np.testing.assert_allclose(lower, np.linalg.cholesky(cov), rtol=rtol, atol=rtol)
        assert not np.triu(lower, 1).any()  # the upper triangle zeroed
        b = np.ones((*cov.shape[:-1], 3), dtype)
        np.testing.assert_allclose(backend.solve_lower(lower, b), np.linalg.solve(lower, b), rtol=rtol * 10)
    # empty batches (SciPy refuses them) and what is not positive definite, NaN included
    assert backend.cholesky(np.zeros((0, 3, 3))).shape == (0, 3, 3)
    assert backend.solve_lower(np.zeros((0, 3, 3)), np.zeros((0, 3, 2))).shape == (0, 3, 2)
    with pytest.raises(np.linalg.LinAlgError):
        backend.cholesky(-np.eye(3)[None])
    nan = np.full((3, 3), np.nan)
    np.testing.assert_array_equal(backend.cholesky(nan[None]), np.linalg.cholesky(nan[None]))  # NaN, no error
    for bad in (-np.eye(3), nan):
        with pytest.raises(ValueError, match="is not positive definite"):
            seqops.kl_mvn(np.zeros(3), bad, np.zeros(3), np.eye(3))
    # NaN in the right-hand side propagates, as through the general solve
    out = backend.solve_lower(np.eye(3)[None], np.full((1, 3, 1), np.nan))
    assert np.isnan(out).all()


def test_scipy_is_imported_only_when_erf_is_asked_for() -> None:
    import subprocess

    code = (
        "import sys, numpy as np, seqops, seqops_numpy\n"
        "seqops.softmax(np.ones(3)); seqops.gelu(np.ones(3), approximate='tanh')\n"
        "print('scipy' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


# -- the benchmark (python tests/test_portable_speed_paths.py) --------------------------------------
def _interleaved(fns: dict[str, Callable[[], Any]], *, rounds: int, number: int) -> dict[str, float]:
    """Median ms per call of each, timed in interleaved rounds (same process)."""
    for f in fns.values():
        f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, f in fns.items():
            start = time.perf_counter()
            for _ in range(number):
                f()
            times[name].append((time.perf_counter() - start) / number * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def _paired_us(a: Callable[[], Any], b: Callable[[], Any], *, rounds: int = 41, number: int = 1000) -> float:
    """Median over rounds of time(a) - time(b), µs per call."""
    for _ in range(number):
        a(), b()
    diffs = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(number):
            a()
        mid = time.perf_counter()
        for _ in range(number):
            b()
        diffs.append(((mid - start) - (time.perf_counter() - mid)) / number * 1e6)
    return statistics.median(diffs)


def _bench() -> None:
    import array_api_compat.torch as ctorch
    import jax
    import jax.numpy as jnp
    import scipy.special
    import seqops_numpy
    import torch

    torch.set_num_threads(1)
    q = torch.randn(2, 2, 8, 8)
    sdpa = torch.nn.functional.scaled_dot_product_attention
    ours = seqops.scaled_dot_product_attention
    print("attention 2x2x8x8 torch CPU, seqops - torch SDPA with the same mask (paired, µs):")
    print(f"  no mask          {_paired_us(lambda: ours(q, q, q), lambda: sdpa(q, q, q)):5.2f}")
    for name, mask in [
        ("mask (L, S)", torch.rand(8, 8) > 0.3),
        ("pad (B, 1, 1, S)", torch.rand(2, 1, 1, 8) > 0.3),
    ]:
        mask[..., 0] = True
        extra = _paired_us(lambda m=mask: ours(q, q, q, mask=m), lambda m=mask: sdpa(q, q, q, attn_mask=m))
        print(f"  {name:16s} {extra:5.2f}")
    torch.set_num_threads(2)

    rng = np.random.default_rng(0)
    x = rng.standard_normal((512, 32000)).astype(np.float32)
    t = rng.integers(0, 32000, 512)
    kw = {"weight": None, "ignore_index": -100, "label_smoothing": 0.0, "reduction": "mean"}

    def plain_ce() -> Any:
        m = x.max(-1, keepdims=True)
        return (np.log(np.exp(x - m).sum(-1)) + m[:, 0] - x[np.arange(512), t]).mean()

    xt, tt = torch.from_numpy(x), torch.from_numpy(t)
    r = _interleaved(
        {
            "numpy": lambda: losses.cross_entropy(cnp, x, t, device="cpu", **kw),
            "plain numpy": plain_ce,
            "torch portable": lambda: losses.cross_entropy(ctorch, xt, tt, device=xt.device, **kw),
            "F.cross_entropy": lambda: torch.nn.functional.cross_entropy(xt, tt),
        },
        rounds=7,
        number=2,
    )
    print(
        f"cross_entropy 512x32000 portable math: NumPy / plain NumPy {r['numpy'] / r['plain numpy']:.2f}, "
        f"torch / F.cross_entropy {r['torch portable'] / r['F.cross_entropy']:.2f}"
    )

    logits = rng.standard_normal((64, 32000)).astype(np.float32)
    fk = {"temperature": 1.0, "top_k": 50, "top_p": None, "min_tokens_to_keep": 1}
    lt, lj = torch.from_numpy(logits), jnp.asarray(logits)
    jitted = jax.jit(lambda a: decoding.filter_logits(jnp, a, device=None, **fk))
    sort_np = lambda: np.sort(logits, axis=-1, kind="stable")  # noqa: E731
    r = _interleaved(
        {
            "numpy": lambda: decoding.filter_logits(cnp, logits, device="cpu", **fk),
            "numpy sort": sort_np,
            "torch": lambda: decoding.filter_logits(ctorch, lt, device=lt.device, **fk),
            "torch sort": lambda: torch.sort(lt, dim=-1, stable=True),
            "torch.topk": lambda: torch.topk(lt, 50, dim=-1),
            "jax jit": lambda: jitted(lj).block_until_ready(),
        },
        rounds=7,
        number=3,
    )
    print(
        f"filter_logits(top_k=50) 64x32000 portable math: NumPy {r['numpy']:.2f} ms (the stable sort alone "
        f"{r['numpy sort']:.2f}), torch {r['torch']:.2f} ms (sort {r['torch sort']:.2f}, torch.topk "
        f"{r['torch.topk']:.2f}), JAX jit {r['jax jit']:.2f} ms"
    )

    for rows in (64, 512):
        s = rng.standard_normal((rows, 32000)).astype(np.float32)

        def plain_softmax(s: Any = s) -> Any:
            e = np.exp(s - s.max(-1, keepdims=True))
            return e / e.sum(-1, keepdims=True)

        def plain_log_softmax(s: Any = s) -> Any:
            z = s - s.max(-1, keepdims=True)
            return z - np.log(np.exp(z).sum(-1, keepdims=True))

        r = _interleaved(
            {
                "softmax": lambda s=s: seqops.softmax(s),
                "plain softmax": plain_softmax,
                "log_softmax": lambda s=s: seqops.log_softmax(s),
                "plain log_softmax": plain_log_softmax,
            },
            rounds=9,
            number=3,
        )
        print(
            f"portable {rows}x32000 float32 on NumPy / plain NumPy: softmax {r['softmax'] / r['plain softmax']:.3f}, "
            f"log_softmax {r['log_softmax'] / r['plain log_softmax']:.3f}"
        )

    g = rng.standard_normal((64, 128, 1024)).astype(np.float32)

    def portable_gelu() -> Any:
        seqops_numpy._SCIPY["erf"] = None
        try:
            return seqops.gelu(g)
        finally:
            seqops_numpy._SCIPY["erf"] = scipy.special.erf

    def plain_gelu() -> Any:
        return 0.5 * g * (1.0 + scipy.special.erf(g * np.float32(1 / math.sqrt(2))))

    r = _interleaved(
        {"seqops": lambda: seqops.gelu(g), "portable erf": portable_gelu, "plain": plain_gelu},
        rounds=7,
        number=2,
    )
    print(
        f"gelu (64,128,1024) float32 NumPy: seqops / plain NumPy+SciPy {r['seqops'] / r['plain']:.3f}, "
        f"portable erf / plain {r['portable erf'] / r['plain']:.2f}"
    )


if __name__ == "__main__":
    _bench()
