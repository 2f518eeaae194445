"""Property-based tests (Hypothesis) of every op family: invariants that hold for any input.

Each test draws a seed and small shapes, builds its inputs with a NumPy ``Generator`` and runs
on NumPy and array-api-strict (the portable code, with no fast path); torch joins where it is
cheap (its fast paths: ``torch-sdpa``, ``torch-rotary``, ``torch-lstm``, ...). Inputs are
float64 unless a test says otherwise, values bounded (no NaN), and the comparisons are made in
NumPy float64.

The ``seqops-ci`` profile (bounded, derandomized, no example database) is loaded unless
``HYPOTHESIS_PROFILE`` names another one.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import seqops

settings.register_profile(
    "seqops-ci",
    max_examples=25,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
# A local stress run (HYPOTHESIS_PROFILE=seqops-thorough): more, random examples, still no database.
settings.register_profile(
    "seqops-thorough",
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "seqops-ci"))

EXACT = {"rtol": 1e-10, "atol": 1e-12}  # float64, where the invariant is exact

seeds = st.integers(0, 2**32 - 1)
sizes = st.integers(1, 5)


# -- libraries ------------------------------------------------------------------------------------
class Lib:
    """One array library: ``asarray`` from NumPy, ``numpy`` back, and its float64 dtype."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.module: Any = np if name == "numpy" else _import_or_skip(name)
        self.float64 = self.module.float64

    def asarray(self, a: Any) -> Any:
        a = np.asarray(a)
        if self.name == "numpy":
            return a.copy()
        if self.name == "torch":
            return self.module.from_numpy(np.ascontiguousarray(a).copy())
        return self.module.asarray(a)

    def numpy(self, a: Any) -> np.ndarray:
        if hasattr(a, "detach"):  # torch
            return a.detach().cpu().numpy()
        return np.asarray(a)

    def __repr__(self) -> str:
        return self.name


def _import_or_skip(name: str) -> Any:
    try:
        return __import__(name)
    except ImportError as error:
        pytest.skip(f"{name} is not installed ({error})")


CORE = ["numpy", "array_api_strict"]
WITH_TORCH = [*CORE, "torch"]


@pytest.fixture(scope="module", params=CORE)
def lib(request: pytest.FixtureRequest) -> Lib:
    """NumPy and array-api-strict."""
    return Lib(request.param)


@pytest.fixture(scope="module", params=WITH_TORCH)
def tlib(request: pytest.FixtureRequest) -> Lib:
    """NumPy, array-api-strict and torch (skipped with the reason when torch is missing)."""
    return Lib(request.param)


def _shape(
    data: st.DataObject, ndim_min: int = 1, ndim_max: int = 3, lo: int = 1, hi: int = 5
) -> tuple[int, ...]:
    ndim = data.draw(st.integers(ndim_min, ndim_max), label="ndim")
    return tuple(data.draw(st.lists(st.integers(lo, hi), min_size=ndim, max_size=ndim), label="shape"))


def _close(got: Any, expected: Any, **tol: float) -> None:
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), **(tol or EXACT))


# -- softmax / log_softmax ------------------------------------------------------------------------
@given(data=st.data(), seed=seeds, dtype=st.sampled_from(["float64", "float32"]))
def test_softmax_rows_sum_to_one(tlib: Lib, data: st.DataObject, seed: int, dtype: str) -> None:
    """softmax along any axis lies in [0, 1] and sums to 1 there; so does exp(log_softmax)."""
    shape = _shape(data, lo=0)
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    x = np.random.default_rng(seed).uniform(-5, 5, shape).astype(dtype)
    tol = EXACT if dtype == "float64" else {"rtol": 2e-6, "atol": 2e-6}
    p = tlib.numpy(seqops.softmax(tlib.asarray(x), axis=axis))
    lp = tlib.numpy(seqops.log_softmax(tlib.asarray(x), axis=axis))
    assert p.shape == lp.shape == shape and p.dtype == lp.dtype == x.dtype
    p, lp = p.astype(np.float64), lp.astype(np.float64)
    assert np.all((p >= 0) & (p <= 1 + tol["rtol"]))
    if shape[axis]:  # an empty axis has nothing to sum
        ones = np.ones(shape[: axis % len(shape)] + shape[axis % len(shape) + 1 :])
        _close(p.sum(axis=axis), ones, **tol)
        _close(np.exp(lp).sum(axis=axis), ones, **tol)


@given(data=st.data(), seed=seeds)
def test_softmax_is_invariant_to_a_constant_per_row(tlib: Lib, data: st.DataObject, seed: int) -> None:
    """softmax(x + c) == softmax(x) and log_softmax(x + c) == log_softmax(x) for a constant c
    per row, however large (|c| up to 1000: exp(x + c) alone overflows or underflows)."""
    shape = _shape(data)
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    rng = np.random.default_rng(seed)
    x = rng.uniform(-5, 5, shape)
    c = rng.uniform(-1000, 1000, tuple(1 if i == axis % len(shape) else n for i, n in enumerate(shape)))
    for op in (seqops.softmax, seqops.log_softmax):
        got = tlib.numpy(op(tlib.asarray(x + c), axis=axis))
        _close(got, tlib.numpy(op(tlib.asarray(x), axis=axis)), rtol=1e-10, atol=1e-10)


# -- attention ------------------------------------------------------------------------------------
def _qkv(
    data: st.DataObject, seed: int, batch: tuple[int, ...] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.random.Generator]:
    """q (..., L, E), k (..., S, E), v (..., S, Ev) and the generator that made them."""
    batch = _shape(data, ndim_min=0, ndim_max=2, hi=3) if batch is None else batch
    length = data.draw(st.integers(1, 5), label="L")
    keys = data.draw(sizes, label="S")
    e, ev = data.draw(sizes, label="E"), data.draw(sizes, label="Ev")
    rng = np.random.default_rng(seed)
    q = rng.uniform(-2, 2, (*batch, length, e))
    k = rng.uniform(-2, 2, (*batch, keys, e))
    v = rng.uniform(-5, 5, (*batch, keys, ev))
    return q, k, v, rng


@given(data=st.data(), seed=seeds, with_bias=st.booleans())
def test_attention_masking_keys_equals_dropping_them(
    tlib: Lib, data: st.DataObject, seed: int, with_bias: bool
) -> None:
    """Masking keys out (bool mask False) gives the attention over the other keys alone, with
    their values (and their bias columns); at least one key kept."""
    q, k, v, rng = _qkv(data, seed)
    keep = rng.random((1, k.shape[-2])) < 0.6  # (1, S): the same keys for every query
    keep[0, rng.integers(k.shape[-2])] = True
    bias = rng.uniform(-3, 3, (q.shape[-2], k.shape[-2])) if with_bias else None
    t = tlib.asarray
    masked = seqops.scaled_dot_product_attention(
        t(q), t(k), t(v), mask=t(keep), bias=None if bias is None else t(bias)
    )
    dropped = seqops.scaled_dot_product_attention(
        t(q), t(k[..., keep[0], :]), t(v[..., keep[0], :]), bias=None if bias is None else t(bias[:, keep[0]])
    )
    _close(tlib.numpy(masked), tlib.numpy(dropped))


@pytest.mark.parametrize("name", [*CORE, "torch"])
@given(data=st.data(), seed=seeds, as_bias=st.booleans())
def test_attention_a_mask_of_shape_s_equals_the_mask_of_shape_1_s(
    name: str, data: st.DataObject, seed: int, as_bias: bool
) -> None:
    """A key mask (or bias) of shape (S,) broadcasts like (1, S): same output (4-D q, k, v)."""
    lib = Lib(name)
    batch = (data.draw(sizes, label="B"), data.draw(sizes, label="H"))
    q, k, v, rng = _qkv(data, seed, batch)
    keep = rng.random(k.shape[-2]) < 0.6
    keep[rng.integers(k.shape[-2])] = True
    key = "bias" if as_bias else "mask"
    value = np.where(keep, 0.0, -np.inf) if as_bias else keep
    t = lib.asarray
    flat = seqops.scaled_dot_product_attention(t(q), t(k), t(v), **{key: t(value)})
    rows = seqops.scaled_dot_product_attention(t(q), t(k), t(v), **{key: t(value[None, :])})
    _close(lib.numpy(flat), lib.numpy(rows))


@given(data=st.data(), seed=seeds)
def test_attention_dropping_every_key_equals_masking_every_key(
    lib: Lib, data: st.DataObject, seed: int
) -> None:
    """Masking every key gives zeros (the contract); dropping every key (S = 0) gives the same
    zeros (found by this test: the plain portable path raised on the max over the empty key axis)."""
    q, k, v, _ = _qkv(data, seed)
    t = lib.asarray
    masked = seqops.scaled_dot_product_attention(t(q), t(k), t(v), mask=t(np.zeros(k.shape[-2], bool)))
    _close(lib.numpy(masked), np.zeros((*q.shape[:-1], v.shape[-1])))
    dropped = seqops.scaled_dot_product_attention(t(q), t(k[..., :0, :]), t(v[..., :0, :]))
    _close(lib.numpy(dropped), lib.numpy(masked))


@given(data=st.data(), seed=seeds, with_mask=st.booleans(), with_bias=st.booleans())
def test_attention_is_invariant_to_permuting_keys_with_their_values(
    tlib: Lib, data: st.DataObject, seed: int, with_mask: bool, with_bias: bool
) -> None:
    """Permuting the keys together with their values (and the mask and bias columns) leaves
    the output unchanged (rows with no allowed key stay zeros)."""
    q, k, v, rng = _qkv(data, seed)
    length, keys = q.shape[-2], k.shape[-2]
    perm = rng.permutation(keys)
    mask = rng.random((length, keys)) < 0.7 if with_mask else None
    bias = rng.uniform(-3, 3, (length, keys)) if with_bias else None

    def attend(k: np.ndarray, v: np.ndarray, mask: Any, bias: Any) -> np.ndarray:
        t = tlib.asarray
        out = seqops.scaled_dot_product_attention(
            t(q), t(k), t(v), mask=None if mask is None else t(mask), bias=None if bias is None else t(bias)
        )
        return tlib.numpy(out)

    permuted = attend(
        k[..., perm, :], v[..., perm, :],
        None if mask is None else mask[:, perm], None if bias is None else bias[:, perm],
    )  # fmt: skip
    _close(permuted, attend(k, v, mask, bias))


@given(data=st.data(), seed=seeds, with_mask=st.booleans(), is_causal=st.booleans())
def test_attention_is_equivariant_to_permuting_queries(
    tlib: Lib, data: st.DataObject, seed: int, with_mask: bool, is_causal: bool
) -> None:
    """Permuting the queries (and the rows of the mask) permutes the output rows the same way.
    With is_causal the causal mask is given explicitly (its rows permuted too)."""
    q, k, v, rng = _qkv(data, seed)
    length, keys = q.shape[-2], k.shape[-2]
    perm = rng.permutation(length)
    mask = rng.random((length, keys)) < 0.7 if with_mask else np.ones((length, keys), bool)
    if is_causal:
        mask = mask & np.tri(length, keys, dtype=bool)
    t = tlib.asarray
    out = tlib.numpy(seqops.scaled_dot_product_attention(t(q), t(k), t(v), mask=t(mask)))
    permuted = seqops.scaled_dot_product_attention(t(q[..., perm, :]), t(k), t(v), mask=t(mask[perm]))
    _close(tlib.numpy(permuted), out[..., perm, :])


@given(data=st.data(), seed=seeds)
def test_causal_attention_of_a_prefix_is_the_prefix_of_causal_attention(
    tlib: Lib, data: st.DataObject, seed: int
) -> None:
    """Causal self-attention over the first p positions equals the first p rows of causal
    attention over the whole sequence (a query never sees a later key); p = 0 included."""
    q, _, _, rng = _qkv(data, seed)
    length = q.shape[-2]
    k = rng.uniform(-2, 2, q.shape)  # self-attention: S = L
    v = rng.uniform(-5, 5, (*q.shape[:-1], data.draw(sizes, label="Ev")))
    p = data.draw(st.integers(0, length), label="prefix")
    t = tlib.asarray
    full = tlib.numpy(seqops.scaled_dot_product_attention(t(q), t(k), t(v), is_causal=True))
    prefix = seqops.scaled_dot_product_attention(
        t(q[..., :p, :]), t(k[..., :p, :]), t(v[..., :p, :]), is_causal=True
    )
    _close(tlib.numpy(prefix), full[..., :p, :])


# -- positional encodings -------------------------------------------------------------------------
@given(
    num_positions=st.integers(0, 6),
    half=st.integers(1, 6),
    base=st.floats(2.0, 1e6),
    layout=st.sampled_from(["interleaved", "halves"]),
    custom=st.booleans(),
    seed=seeds,
)
def test_sinusoidal_encodings_are_bounded_by_one(
    tlib: Lib, num_positions: int, half: int, base: float, layout: str, custom: bool, seed: int
) -> None:
    """Every sinusoidal encoding lies in [-1, 1], at any (also negative or huge) position."""
    like = tlib.asarray(np.zeros(1))
    options: dict[str, Any] = {"base": base, "layout": layout, "like": like, "dtype": tlib.float64}
    if custom:
        positions = np.random.default_rng(seed).integers(-(10**6), 10**6, num_positions)
        options["positions"] = tlib.asarray(positions)
    pe = tlib.numpy(seqops.sinusoidal_positional_encoding(num_positions, 2 * half, **options))
    assert pe.shape == (num_positions, 2 * half)
    assert np.all(np.abs(pe) <= 1.0 + 1e-12)


# -- rotary ---------------------------------------------------------------------------------------
def _rotary_case(data: st.DataObject) -> tuple[int, dict[str, Any]]:
    e = 2 * data.draw(st.integers(1, 4), label="E/2")
    rotary_dim = data.draw(
        st.one_of(st.none(), st.integers(1, e // 2).map(lambda n: 2 * n)), label="rotary_dim"
    )
    options = {
        "base": data.draw(st.sampled_from([1.0, 100.0, 10000.0, 500000.0]), label="base"),
        "layout": data.draw(st.sampled_from(["halves", "interleaved"]), label="layout"),
        "rotary_dim": rotary_dim,
    }
    return e, options


@given(data=st.data(), seed=seeds)
def test_rotary_keeps_the_norm_of_each_vector(tlib: Lib, data: st.DataObject, seed: int) -> None:
    """apply_rotary is a rotation: the norm of each feature vector is unchanged."""
    e, options = _rotary_case(data)
    batch = _shape(data, ndim_min=0, ndim_max=2, hi=3)
    length = data.draw(sizes, label="L")
    rng = np.random.default_rng(seed)
    x = rng.uniform(-5, 5, (*batch, length, e))
    positions = rng.integers(-1000, 1000, length)
    out = tlib.numpy(seqops.apply_rotary(tlib.asarray(x), tlib.asarray(positions), **options))
    _close(np.linalg.norm(out, axis=-1), np.linalg.norm(x, axis=-1))


@given(data=st.data(), seed=seeds, offset=st.integers(-10_000, 10_000))
def test_rotary_dot_products_depend_only_on_the_position_difference(
    tlib: Lib, data: st.DataObject, seed: int, offset: int
) -> None:
    """q·k after rotation depends on the positions only through their difference: shifting the
    positions of both q and k by the same offset leaves every dot product unchanged."""
    e, options = _rotary_case(data)
    length, keys = data.draw(sizes, label="L"), data.draw(sizes, label="S")
    rng = np.random.default_rng(seed)
    q, k = rng.uniform(-2, 2, (length, e)), rng.uniform(-2, 2, (keys, e))
    pq, pk = rng.integers(-1000, 1000, length), rng.integers(-1000, 1000, keys)

    def scores(shift: int) -> np.ndarray:
        rq = seqops.apply_rotary(tlib.asarray(q), tlib.asarray(pq + shift), **options)
        rk = seqops.apply_rotary(tlib.asarray(k), tlib.asarray(pk + shift), **options)
        return tlib.numpy(rq) @ tlib.numpy(rk).T

    _close(scores(offset), scores(0), rtol=1e-9, atol=1e-9)


# -- KL divergences -------------------------------------------------------------------------------
def _spd(rng: np.random.Generator, lead: tuple[int, ...], k: int) -> np.ndarray:
    a = rng.uniform(-1.5, 1.5, (*lead, k, k))
    return a @ np.swapaxes(a, -1, -2) + 0.3 * np.eye(k)


@given(data=st.data(), seed=seeds)
def test_kl_divergences_are_nonnegative(lib: Lib, data: st.DataObject, seed: int) -> None:
    """kl_normal_standard, kl_normal_normal and kl_mvn are >= 0 (up to rounding)."""
    shape = _shape(data)
    rng = np.random.default_rng(seed)
    t = lib.asarray
    mu, lv = rng.uniform(-5, 5, shape), rng.uniform(-5, 5, shape)
    mu_p, lv_p = rng.uniform(-5, 5, shape), rng.uniform(-5, 5, shape)
    assert np.all(lib.numpy(seqops.kl_normal_standard(t(mu), t(lv))) >= -1e-10)
    assert np.all(lib.numpy(seqops.kl_normal_normal(t(mu), t(lv), t(mu_p), t(lv_p))) >= -1e-10)
    lead, k = shape[:-1], shape[-1]
    kl = seqops.kl_mvn(t(mu), t(_spd(rng, lead, k)), t(mu_p), t(_spd(rng, lead, k)))
    assert np.all(lib.numpy(kl) >= -1e-9)


@given(data=st.data(), seed=seeds)
def test_kl_of_a_distribution_to_itself_is_zero(lib: Lib, data: st.DataObject, seed: int) -> None:
    """KL(p || p) = 0: kl_normal_normal(q, q), kl_mvn(q, q), and kl_normal_standard of N(0, 1)."""
    shape = _shape(data)
    rng = np.random.default_rng(seed)
    t = lib.asarray
    mu, lv = rng.uniform(-5, 5, shape), rng.uniform(-5, 5, shape)
    zeros = np.zeros(shape[:-1])
    _close(lib.numpy(seqops.kl_normal_standard(t(np.zeros(shape)), t(np.zeros(shape)))), zeros)
    _close(lib.numpy(seqops.kl_normal_normal(t(mu), t(lv), t(mu), t(lv))), zeros, atol=1e-10)
    cov = _spd(rng, shape[:-1], shape[-1])
    _close(lib.numpy(seqops.kl_mvn(t(mu), t(cov), t(mu), t(cov))), zeros, atol=1e-9)


@given(data=st.data(), seed=seeds)
def test_kl_normal_standard_is_kl_normal_normal_to_the_standard_normal(
    lib: Lib, data: st.DataObject, seed: int
) -> None:
    """kl_normal_standard(mu, log_var) == kl_normal_normal(mu, log_var, 0, 0)."""
    shape = _shape(data)
    rng = np.random.default_rng(seed)
    t = lib.asarray
    mu, lv = rng.uniform(-5, 5, shape), rng.uniform(-5, 5, shape)
    zero = np.zeros(shape)
    _close(
        lib.numpy(seqops.kl_normal_standard(t(mu), t(lv))),
        lib.numpy(seqops.kl_normal_normal(t(mu), t(lv), t(zero), t(zero))),
    )


# -- gradient clipping ----------------------------------------------------------------------------
def _grads(data: st.DataObject, seed: int) -> list[np.ndarray | None]:
    count = data.draw(st.integers(1, 4), label="count")
    rng = np.random.default_rng(seed)
    grads: list[np.ndarray | None] = []
    for _ in range(count):
        if data.draw(st.integers(0, 5), label="none?") == 0:
            grads.append(None)
        else:
            scale = 10.0 ** rng.uniform(-2, 2)
            grads.append(rng.uniform(-1, 1, _shape(data, ndim_min=0, ndim_max=2, lo=0)) * scale)
    return grads


def _global_norm(grads: list[np.ndarray | None], norm_type: float) -> float:
    flat = np.concatenate([np.ravel(g) for g in grads if g is not None] + [np.zeros(0)])
    if flat.size == 0:
        return 0.0
    if norm_type == math.inf:
        return float(np.max(np.abs(flat)))
    return float(np.sum(np.abs(flat) ** norm_type) ** (1.0 / norm_type))


norm_types = st.sampled_from([1.0, 2.0, 3.0, math.inf])


@given(data=st.data(), seed=seeds, max_norm=st.floats(0.0, 10.0), norm_type=norm_types)
def test_clip_grad_norm_bounds_the_global_norm(
    tlib: Lib, data: st.DataObject, seed: int, max_norm: float, norm_type: float
) -> None:
    """After clip_grad_norm the global norm of the gradients is <= max_norm (up to rounding);
    total_norm is the norm before clipping; None entries stay None."""
    grads = _grads(data, seed)
    clipped, total = seqops.clip_grad_norm(
        [None if g is None else tlib.asarray(g) for g in grads], max_norm, norm_type=norm_type
    )
    assert [c is None for c in clipped] == [g is None for g in grads]
    after = [None if c is None else tlib.numpy(c) for c in clipped]
    assert _global_norm(after, norm_type) <= max_norm * (1 + 1e-10) + 1e-12
    _close(tlib.numpy(total), _global_norm(grads, norm_type))


@given(data=st.data(), seed=seeds, factor=st.floats(1.0, 10.0), norm_type=norm_types)
def test_clip_grad_norm_leaves_gradients_within_the_norm_unchanged(
    tlib: Lib, data: st.DataObject, seed: int, factor: float, norm_type: float
) -> None:
    """When the global norm is already below max_norm (max_norm >= total_norm + eps), every
    gradient comes back unchanged."""
    grads = _grads(data, seed)
    max_norm = (_global_norm(grads, norm_type) + 1e-6) * factor * (1 + 1e-9)
    clipped, _ = seqops.clip_grad_norm(
        [None if g is None else tlib.asarray(g) for g in grads], max_norm, norm_type=norm_type
    )
    for g, c in zip(grads, clipped, strict=True):
        if g is None:
            assert c is None
        else:
            np.testing.assert_array_equal(tlib.numpy(c), g)


@given(data=st.data(), seed=seeds, clip_value=st.floats(0.0, 5.0))
def test_clip_grad_value_puts_every_entry_within_the_bound(
    tlib: Lib, data: st.DataObject, seed: int, clip_value: float
) -> None:
    """After clip_grad_value every entry lies in [-v, v]; entries already inside are unchanged,
    the others become ±v."""
    grads = _grads(data, seed)
    clipped = seqops.clip_grad_value([None if g is None else tlib.asarray(g) for g in grads], clip_value)
    for g, c in zip(grads, clipped, strict=True):
        if g is None:
            assert c is None
            continue
        out = tlib.numpy(c)
        assert np.all(np.abs(out) <= clip_value)
        np.testing.assert_array_equal(out, np.clip(g, -clip_value, clip_value))


# -- round trips ----------------------------------------------------------------------------------
@given(
    batch=st.integers(0, 3), channels=sizes, patch=st.integers(1, 3),
    rows=st.integers(1, 3), cols=st.integers(1, 3), seed=seeds,
)  # fmt: skip
def test_unpatchify_inverts_patchify(
    lib: Lib, batch: int, channels: int, patch: int, rows: int, cols: int, seed: int
) -> None:
    """unpatchify(patchify(images)) is images, in both layouts (channels first and last)."""
    h, w = rows * patch, cols * patch
    for channels_last in (False, True):
        shape = (batch, h, w, channels) if channels_last else (batch, channels, h, w)
        images = np.random.default_rng(seed).uniform(-5, 5, shape)
        patches = seqops.patchify(lib.asarray(images), patch, channels_last=channels_last)
        assert patches.shape == (batch, rows * cols, channels * patch * patch)
        back = seqops.unpatchify(patches, patch, (h, w), channels=channels, channels_last=channels_last)
        np.testing.assert_array_equal(lib.numpy(back), images)


@given(
    batch=st.integers(1, 3), window=st.integers(1, 3), rows=st.integers(1, 3),
    cols=st.integers(1, 3), channels=sizes, seed=seeds,
)  # fmt: skip
def test_window_reverse_inverts_window_partition(
    lib: Lib, batch: int, window: int, rows: int, cols: int, channels: int, seed: int
) -> None:
    """window_reverse(window_partition(x)) is x."""
    h, w = rows * window, cols * window
    x = np.random.default_rng(seed).uniform(-5, 5, (batch, h, w, channels))
    windows = seqops.window_partition(lib.asarray(x), window)
    assert windows.shape == (batch * rows * cols, window, window, channels)
    np.testing.assert_array_equal(lib.numpy(seqops.window_reverse(windows, window, h, w)), x)


@given(
    shape=st.tuples(st.integers(1, 2), sizes, sizes, st.integers(1, 2)), shift=st.integers(-7, 7), seed=seeds
)
def test_cyclic_shift_by_minus_s_undoes_cyclic_shift_by_s(
    lib: Lib, shape: tuple[int, int, int, int], shift: int, seed: int
) -> None:
    """cyclic_shift(cyclic_shift(x, s), -s) is x."""
    x = np.random.default_rng(seed).uniform(-5, 5, shape)
    back = seqops.cyclic_shift(seqops.cyclic_shift(lib.asarray(x), shift), -shift)
    np.testing.assert_array_equal(lib.numpy(back), x)


CONVERTERS = {
    "lstm-torch": ("lstm", 4, lambda c, w: c.lstm_weights_from_torch(*c.lstm_weights_to_torch(*w))),
    "lstm-keras": ("lstm", 4, lambda c, w: c.lstm_weights_from_keras(*c.lstm_weights_to_keras(*w))),
    "lstm-flax": ("lstm", 4, lambda c, w: c.lstm_weights_from_flax(c.lstm_weights_to_flax(*w))),
    "gru-torch": ("gru", 3, lambda c, w: c.gru_weights_from_torch(*c.gru_weights_to_torch(*w))),
    "gru-keras": ("gru", 3, lambda c, w: c.gru_weights_from_keras(*c.gru_weights_to_keras(*w))),
    "gru-flax": ("gru", 3, lambda c, w: c.gru_weights_from_flax(c.gru_weights_to_flax(*w))),
    "rnn-torch": ("rnn", 1, lambda c, w: c.rnn_weights_from_torch(*c.rnn_weights_to_torch(*w))),
}


@given(inputs=sizes, hidden=sizes, with_bias=st.booleans(), seed=seeds)
def test_recurrent_weight_converters_round_trip(
    lib: Lib, inputs: int, hidden: int, with_bias: bool, seed: int
) -> None:
    """seqops weights -> torch / keras / flax layout -> seqops weights is the identity, for each
    LSTM, GRU and RNN converter pair (flax: a missing bias comes back as zeros; for the flax GRU,
    whose r and z hidden biases merge into the input ones, the kernels and the cell outputs)."""
    rng = np.random.default_rng(seed)
    t = lib.asarray
    for which, (kind, gates, round_trip) in CONVERTERS.items():
        w_ih, w_hh = (
            rng.uniform(-1, 1, (inputs, gates * hidden)),
            rng.uniform(-1, 1, (hidden, gates * hidden)),
        )
        biases = [
            rng.uniform(-1, 1, gates * hidden) if with_bias else None
            for _ in range(2 if kind == "gru" else 1)
        ]
        weights = [w_ih, w_hh, *biases]
        back = round_trip(seqops.convert, [None if w is None else t(w) for w in weights])
        assert len(back) == len(weights), which
        for w, b in zip(weights, back, strict=True):
            if w is None and which.endswith("flax"):  # flax's cells always have their biases
                np.testing.assert_array_equal(lib.numpy(b), np.zeros(gates * hidden), err_msg=which)
            elif w is None:
                assert b is None, which
            elif which != "gru-flax" or w.ndim == 2:
                np.testing.assert_array_equal(lib.numpy(b), w, err_msg=which)
        if which == "gru-flax":
            x, h = rng.uniform(-1, 1, (2, inputs)), rng.uniform(-1, 1, (2, hidden))
            expected = seqops.gru_cell(t(x), t(h), *(None if w is None else t(w) for w in weights))
            _close(lib.numpy(seqops.gru_cell(t(x), t(h), *back)), lib.numpy(expected))


# -- recurrent sequences = repeated cells ---------------------------------------------------------
def _recurrent_case(
    data: st.DataObject, seed: int, gates: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.random.Generator]:
    steps = data.draw(st.integers(0, 5), label="T")
    batch = _shape(data, ndim_min=0, ndim_max=2, hi=3)
    inputs, hidden = data.draw(sizes, label="I"), data.draw(sizes, label="H")
    rng = np.random.default_rng(seed)
    xs = rng.uniform(-2, 2, (steps, *batch, inputs))
    h0 = rng.uniform(-1, 1, (*batch, hidden))
    w_ih = rng.uniform(-1, 1, (inputs, gates * hidden))
    w_hh = rng.uniform(-1, 1, (hidden, gates * hidden))
    return xs, h0, w_ih, w_hh, rng


@given(data=st.data(), seed=seeds, with_bias=st.booleans())
def test_lstm_over_t_steps_equals_t_lstm_cell_calls(
    tlib: Lib, data: st.DataObject, seed: int, with_bias: bool
) -> None:
    """lstm over T time steps equals T calls of lstm_cell (outputs and final state; T = 0
    gives no outputs and the initial state)."""
    xs, h0, w_ih, w_hh, rng = _recurrent_case(data, seed, 4)
    c0 = rng.uniform(-1, 1, h0.shape)
    b = rng.uniform(-1, 1, w_ih.shape[-1]) if with_bias else None
    t = tlib.asarray
    weights = (t(w_ih), t(w_hh), None if b is None else t(b))
    hs, (h_last, c_last) = seqops.lstm(t(xs), (t(h0), t(c0)), *weights)
    h, c, expected = t(h0), t(c0), []
    for x in xs:
        h, c = seqops.lstm_cell(t(x), (h, c), *weights)
        expected.append(tlib.numpy(h))
    assert tlib.numpy(hs).shape == (*xs.shape[:-1], h0.shape[-1])
    if expected:
        _close(tlib.numpy(hs), np.stack(expected))
    _close(tlib.numpy(h_last), tlib.numpy(h))
    _close(tlib.numpy(c_last), tlib.numpy(c))


@given(data=st.data(), seed=seeds, biases=st.sampled_from(["none", "ih", "hh", "both"]))
def test_gru_over_t_steps_equals_t_gru_cell_calls(
    tlib: Lib, data: st.DataObject, seed: int, biases: str
) -> None:
    """gru over T time steps equals T calls of gru_cell (outputs and final state)."""
    xs, h0, w_ih, w_hh, rng = _recurrent_case(data, seed, 3)
    t = tlib.asarray
    b_ih = t(rng.uniform(-1, 1, w_ih.shape[-1])) if biases in ("ih", "both") else None
    b_hh = t(rng.uniform(-1, 1, w_ih.shape[-1])) if biases in ("hh", "both") else None
    hs, h_last = seqops.gru(t(xs), t(h0), t(w_ih), t(w_hh), b_ih, b_hh)
    h, expected = t(h0), []
    for x in xs:
        h = seqops.gru_cell(t(x), h, t(w_ih), t(w_hh), b_ih, b_hh)
        expected.append(tlib.numpy(h))
    assert tlib.numpy(hs).shape == (*xs.shape[:-1], h0.shape[-1])
    if expected:
        _close(tlib.numpy(hs), np.stack(expected))
    _close(tlib.numpy(h_last), tlib.numpy(h))


@given(data=st.data(), seed=seeds, with_bias=st.booleans(), nonlinearity=st.sampled_from(["tanh", "relu"]))
def test_rnn_over_t_steps_equals_t_rnn_cell_calls(
    tlib: Lib, data: st.DataObject, seed: int, with_bias: bool, nonlinearity: str
) -> None:
    """rnn over T time steps equals T calls of rnn_cell, for tanh and relu."""
    xs, h0, w_ih, w_hh, rng = _recurrent_case(data, seed, 1)
    t = tlib.asarray
    b = t(rng.uniform(-1, 1, w_ih.shape[-1])) if with_bias else None
    hs, h_last = seqops.rnn(t(xs), t(h0), t(w_ih), t(w_hh), b, nonlinearity=nonlinearity)
    h, expected = t(h0), []
    for x in xs:
        h = seqops.rnn_cell(t(x), h, t(w_ih), t(w_hh), b, nonlinearity=nonlinearity)
        expected.append(tlib.numpy(h))
    assert tlib.numpy(hs).shape == (*xs.shape[:-1], h0.shape[-1])
    if expected:
        _close(tlib.numpy(hs), np.stack(expected))
    _close(tlib.numpy(h_last), tlib.numpy(h))


# -- KV cache -------------------------------------------------------------------------------------
@given(
    data=st.data(), seed=seeds,
    heads=st.sampled_from([(1, 1), (2, 1), (2, 2), (4, 2), (3, 1)]),
    with_bias=st.booleans(), with_rotary=st.booleans(),
)  # fmt: skip
def test_kv_cached_decoding_equals_the_full_causal_pass(
    tlib: Lib, data: st.DataObject, seed: int, heads: tuple[int, int], with_bias: bool, with_rotary: bool
) -> None:
    """A prefill of P tokens then one token at a time through multi_head_attention with a
    KVCache (kv_cache_init) gives the same outputs as one causal call over the sequence."""
    num_heads, num_kv_heads = heads
    head_dim = 2 * data.draw(st.integers(1, 2), label="head_dim/2")
    batch = _shape(data, ndim_min=1, ndim_max=1, hi=2)
    length = data.draw(st.integers(1, 6), label="L")
    prompt = data.draw(st.integers(0, length), label="P")
    max_len = length + data.draw(st.integers(0, 2), label="spare")
    width = data.draw(sizes, label="D")
    rng = np.random.default_rng(seed)

    def w(i: int, o: int) -> np.ndarray:
        return rng.uniform(-1, 1, (i, o)) / math.sqrt(i)

    def b(o: int) -> np.ndarray | None:
        return rng.uniform(-0.5, 0.5, o) if with_bias else None

    kv = num_kv_heads * head_dim
    arrays = [w(width, num_heads * head_dim), w(width, kv), w(width, kv), w(num_heads * head_dim, width)]
    arrays += [b(num_heads * head_dim), b(kv), b(kv), b(width)]
    params = seqops.MHAParams(*(None if a is None else tlib.asarray(a) for a in arrays))
    options: dict[str, Any] = {"num_heads": num_heads, "num_kv_heads": num_kv_heads, "is_causal": True}
    if with_rotary:
        options["rotary"] = seqops.Rotary(
            base=data.draw(st.sampled_from([10.0, 10000.0]), label="base"),
            layout=data.draw(st.sampled_from(["halves", "interleaved"]), label="layout"),
        )
    x = rng.uniform(-2, 2, (*batch, length, width))
    t = tlib.asarray
    full = tlib.numpy(seqops.multi_head_attention(t(x), t(x), t(x), params, **options))
    cache = seqops.kv_cache_init(batch, num_kv_heads, max_len, head_dim, like=t(x))
    chunks = [x[..., :prompt, :]] + [x[..., i : i + 1, :] for i in range(prompt, length)]
    outs = []
    for chunk in chunks:
        out, cache = seqops.multi_head_attention(
            t(chunk), t(chunk), t(chunk), params, kv_cache=cache, **options
        )
        outs.append(tlib.numpy(out))
    assert int(cache.length) == length
    _close(np.concatenate(outs, axis=-2), full)


# -- decoding -------------------------------------------------------------------------------------
def _logits(data: st.DataObject, seed: int, ties: bool) -> np.ndarray:
    shape = _shape(data, ndim_min=1, ndim_max=3, hi=6)
    rng = np.random.default_rng(seed)
    if ties:  # few distinct values: many equal logits
        return rng.integers(-2, 3, shape).astype(np.float64)
    return rng.uniform(-5, 5, shape)


@given(data=st.data(), seed=seeds, ties=st.booleans())
def test_greedy_is_argmax(lib: Lib, data: st.DataObject, seed: int, ties: bool) -> None:
    """greedy(logits) is argmax over the last axis, the first of equal maxima."""
    logits = _logits(data, seed, ties)
    np.testing.assert_array_equal(lib.numpy(seqops.greedy(lib.asarray(logits))), np.argmax(logits, axis=-1))


@given(data=st.data(), seed=seeds, temperature=st.floats(0.05, 100.0), rng=seeds)
def test_sample_logits_with_top_k_1_is_greedy(
    tlib: Lib, data: st.DataObject, seed: int, temperature: float, rng: int
) -> None:
    """sample_logits(top_k=1) picks the argmax (greedy) whatever the temperature and the draw
    (distinct logits: with a tie at the top, top-k keeps the whole tie)."""
    logits = _logits(data, seed, ties=False)
    assume(all(len(set(row)) == len(row) for row in logits.reshape(-1, logits.shape[-1])))
    x = tlib.asarray(logits)
    ids = seqops.sample_logits(x, rng=rng, temperature=temperature, top_k=1)
    np.testing.assert_array_equal(tlib.numpy(ids), tlib.numpy(seqops.greedy(x)))


def _filter_options(data: st.DataObject, vocab: int) -> dict[str, Any]:
    return {
        "temperature": data.draw(st.sampled_from([1.0, 0.5, 3.0]), label="temperature"),
        "top_k": data.draw(st.one_of(st.none(), st.integers(1, vocab + 2)), label="top_k"),
        "top_p": data.draw(st.one_of(st.none(), st.floats(0.01, 1.0)), label="top_p"),
        "min_tokens_to_keep": data.draw(st.integers(1, vocab + 2), label="min_tokens_to_keep"),
    }


@given(data=st.data(), seed=seeds, ties=st.booleans())
def test_filter_logits_keeps_at_least_min_tokens_to_keep(
    lib: Lib, data: st.DataObject, seed: int, ties: bool
) -> None:
    """filter_logits keeps at least min(min_tokens_to_keep, V) tokens per row, whatever
    top_k / top_p; kept tokens keep logits / temperature."""
    logits = _logits(data, seed, ties)
    options = _filter_options(data, logits.shape[-1])
    out = lib.numpy(seqops.filter_logits(lib.asarray(logits), **options))
    kept = np.isfinite(out)
    assert np.all(kept.sum(axis=-1) >= min(options["min_tokens_to_keep"], logits.shape[-1]))
    assert np.all(np.isneginf(out[~kept]))
    _close(out[kept], (logits / options["temperature"])[kept])


@given(data=st.data(), seed=seeds, ties=st.booleans())
def test_filter_logits_keeps_the_top_k_set(lib: Lib, data: st.DataObject, seed: int, ties: bool) -> None:
    """With top_k alone filter_logits keeps exactly the tokens whose logit is >= the k-th
    largest (ties included, k = min(max(top_k, min_tokens_to_keep), V)); with top_p too, a
    subset of that set."""
    logits = _logits(data, seed, ties)
    vocab = logits.shape[-1]
    options = _filter_options(data, vocab)
    top_k = options["top_k"] = options["top_k"] or data.draw(st.integers(1, vocab), label="k")
    k = min(max(top_k, options["min_tokens_to_keep"]), vocab)
    top_set = logits >= np.sort(logits, axis=-1)[..., vocab - k : vocab - k + 1]
    kept = np.isfinite(lib.numpy(seqops.filter_logits(lib.asarray(logits), **options)))
    if options["top_p"] is None or options["top_p"] >= 1.0:
        np.testing.assert_array_equal(kept, top_set)
    else:
        assert np.all(top_set[kept])


# -- losses and norms -----------------------------------------------------------------------------
@given(data=st.data(), seed=seeds, weighted=st.booleans())
def test_cross_entropy_is_the_mean_negative_log_softmax_at_the_targets(
    tlib: Lib, data: st.DataObject, seed: int, weighted: bool
) -> None:
    """cross_entropy (mean, any class axis, optional class weight) equals the (weighted) mean
    over the targets of -log softmax(logits)[target], written here in float64 NumPy; with
    reduction="none", each term."""
    lead = _shape(data, ndim_min=1, ndim_max=3, hi=4)
    classes = data.draw(st.integers(1, 6), label="C")
    axis = data.draw(st.integers(-len(lead) - 1, len(lead)), label="axis")
    rng = np.random.default_rng(seed)
    logits_last = rng.uniform(-5, 5, (*lead, classes))
    targets = rng.integers(0, classes, lead)
    weight = rng.uniform(0.1, 2.0, classes) if weighted else np.ones(classes)
    shifted = logits_last - logits_last.max(axis=-1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    nll = -np.take_along_axis(log_p, targets[..., None], axis=-1)[..., 0]
    w_t = weight[targets]
    logits = np.moveaxis(logits_last, -1, axis)
    t = tlib.asarray
    options = {"axis": axis, "weight": t(weight) if weighted else None}
    got = tlib.numpy(seqops.cross_entropy(t(logits), t(targets), **options))
    _close(got, np.sum(w_t * nll) / np.sum(w_t))
    each = tlib.numpy(seqops.cross_entropy(t(logits), t(targets), reduction="none", **options))
    _close(each, w_t * nll)


@given(data=st.data(), seed=seeds)
def test_layer_norm_rows_have_zero_mean_and_unit_variance(tlib: Lib, data: st.DataObject, seed: int) -> None:
    """layer_norm without affine (weight 1, bias 0) and eps = 0 gives each row (last axis)
    mean 0 and (biased) variance 1; the same with explicit ones / zeros."""
    shape = (*_shape(data, ndim_min=0, ndim_max=2), data.draw(st.integers(2, 6), label="E"))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 10.0 ** rng.uniform(-2, 2) + rng.uniform(-5, 5)
    assume(np.all(x.var(axis=-1) > 1e-6))
    t = tlib.asarray
    for y in (
        seqops.layer_norm(t(x), eps=0.0),
        seqops.layer_norm(t(x), t(np.ones(shape[-1])), t(np.zeros(shape[-1])), eps=0.0),
    ):
        y = tlib.numpy(y)
        _close(y.mean(axis=-1), np.zeros(shape[:-1]), atol=1e-9)
        _close(y.var(axis=-1), np.ones(shape[:-1]), rtol=1e-9)


@given(data=st.data(), seed=seeds)
def test_rms_norm_rows_have_unit_rms(tlib: Lib, data: st.DataObject, seed: int) -> None:
    """rms_norm (weight 1, eps = 0) gives each row (last axis) a root mean square of 1."""
    shape = _shape(data)
    rng = np.random.default_rng(seed)
    x = rng.uniform(-5, 5, shape) * 10.0 ** rng.uniform(-2, 2)
    assume(np.all(np.mean(x * x, axis=-1) > 1e-8))
    t = tlib.asarray
    for y in (seqops.rms_norm(t(x), eps=0.0), seqops.rms_norm(t(x), t(np.ones(shape[-1])), eps=0.0)):
        _close(np.sqrt(np.mean(tlib.numpy(y) ** 2, axis=-1)), np.ones(shape[:-1]), rtol=1e-9)
