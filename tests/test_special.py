"""Tests for seqops._agnostic.special.erf against math.erf / torch.special.erf."""

import math

import numpy as np
import pytest

from seqops._agnostic.special import erf

# fdlibm interval boundaries (0x1.6db6ep+1 is the 1/0.35 split as fdlibm tests it).
_BOUNDARIES = [0.84375, 1.25, 2.857142857, float.fromhex("0x1.6db6ep+1"), 6.0]


def _grid(dtype):
    """Dense grid + tiny values + boundaries and their neighbours (+ and -)."""
    finfo = np.finfo(dtype)
    pts = [np.linspace(-7, 7, 20001)]
    pos = [
        1e-300,
        1e-310,
        5e-324,
        1e-20,
        1e-8,
        2.0**-28,
        1e-3,
        0.5,
        0.6174,
        3.0,
        3.9,
        4.0,
        5.9,
        27.0,
        28.0,
        1e10,
        1e300,
        float(finfo.tiny),
        float(finfo.smallest_subnormal),
        float(finfo.max),
    ]
    bnd = np.asarray(_BOUNDARIES, dtype=dtype)
    for direction in (-np.inf, np.inf):
        b = bnd
        for _ in range(3):
            b = np.nextafter(b, dtype(direction))
            pos.extend(float(v) for v in b)
    pos.extend(_BOUNDARIES)
    pos = np.asarray(pos, dtype=np.float64)
    pos = pos[pos <= float(finfo.max)]
    pts += [pos, -pos]
    return np.concatenate(pts).astype(dtype)


def _math_erf(x, dtype):
    return np.asarray([math.erf(float(v)) for v in x], dtype=np.float64).astype(dtype)


@pytest.fixture(params=["numpy", "array_api_strict"])
def xp(request):
    if request.param == "numpy":
        import array_api_compat.numpy as xp
    else:
        xp = pytest.importorskip("array_api_strict", reason="array_api_strict is not importable")
    return xp


def _to_numpy(a):
    return np.asarray(a)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_matches_math_erf(xp, dtype):
    x = _grid(dtype)
    xa = xp.asarray(x)
    y = erf(xp, xa)
    assert y.dtype == xa.dtype
    assert y.shape == xa.shape
    y = _to_numpy(y)
    ref = _math_erf(x, dtype)
    # distance in units of the reference's last place (spacing(0) = smallest
    # subnormal, so zeros must be exact up to that).
    ulps = np.abs(y.astype(np.float64) - ref.astype(np.float64)) / np.spacing(np.abs(ref)).astype(np.float64)
    assert ulps.max() <= 2.0, (x[np.argmax(ulps)], ulps.max())
    if dtype == np.float64:
        nz = ref != 0
        rel = np.abs(y[nz] - ref[nz]) / np.abs(ref[nz])
        assert rel.max() <= 1e-14
        near0 = np.abs(x) < 1e-3
        assert np.abs(y[near0] - ref[near0]).max() <= 1e-15


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_special_values(xp, dtype):
    x = np.asarray([0.0, -0.0, np.inf, -np.inf, np.nan, 1e30, -1e30], dtype=dtype)
    y = _to_numpy(erf(xp, xp.asarray(x)))
    assert y.dtype == dtype
    assert y[0] == 0 and not np.signbit(y[0])
    assert y[1] == 0 and np.signbit(y[1])
    np.testing.assert_array_equal(y[2:4], [1.0, -1.0])
    assert np.isnan(y[4])
    np.testing.assert_array_equal(y[5:], [1.0, -1.0])


def test_odd_and_shape(xp):
    x = np.linspace(-5, 5, 1200).reshape(3, 20, 20)
    y = erf(xp, xp.asarray(x))
    assert y.shape == (3, 20, 20)
    yp = _to_numpy(y)
    yn = _to_numpy(erf(xp, xp.asarray(-x)))
    np.testing.assert_array_equal(yn, -yp)


def test_rejects_non_float(xp):
    with pytest.raises(TypeError):
        erf(xp, xp.asarray([1, 2, 3]))


@pytest.mark.parametrize("dtype_name", ["float16", "bfloat16"])
def test_torch_half(dtype_name):
    torch = pytest.importorskip("torch")
    import array_api_compat.torch as xpt

    dtype = getattr(torch, dtype_name)
    x = torch.cat(
        [
            torch.linspace(-7, 7, 4001, dtype=torch.float32),
            torch.tensor([0.0, -0.0, 1e-7, -1e-7, 0.84375, 1.25, 2.857, 6.0]),
        ]
    ).to(dtype)
    y = erf(xpt, x)
    assert y.dtype == dtype
    ref = torch.special.erf(x.float()).to(dtype)
    diff = (y.float() - ref.float()).abs()
    tol = torch.finfo(dtype).eps * ref.float().abs() + torch.finfo(dtype).tiny
    assert bool((diff <= tol).all()), diff.max()
    assert bool(torch.signbit(y[x.numel() - 7]))  # erf(-0.0) == -0.0

    s = erf(xpt, torch.tensor([float("inf"), -float("inf"), float("nan")], dtype=dtype))
    assert s.dtype == dtype
    assert s[0].item() == 1.0 and s[1].item() == -1.0 and math.isnan(s[2].item())
