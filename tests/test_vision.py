"""Vision family: ViT patches and embedding, Swin windows, masks and window attention.

* ``patchify`` + projection vs ``torch.nn.functional.conv2d`` with kernel = stride = patch
  size (timm's ``PatchEmbed``), and ``vit_embed`` vs conv + class token + positions;
* round trips: ``unpatchify∘patchify``, ``window_reverse∘window_partition``,
  ``cyclic_shift(-s)∘cyclic_shift(s)``;
* ``window_partition``, ``window_reverse``, ``shifted_window_mask(as_bias=True)``,
  ``relative_position_index`` and ``window_attention`` vs a NumPy transcription of the
  official microsoft/Swin-Transformer code (``models/swin_transformer.py``) written below;
* ``window_attention`` without shift or bias is ``multi_head_attention`` on each window;
* every backend keeps library, device and dtype; bad input gives messages naming the sizes.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from seqops_conformance import references as ref

import seqops

SWIN_CASES = [(4, 4, 2, 1), (8, 12, 4, 2), (14, 14, 7, 3), (6, 9, 3, 1), (7, 7, 7, 3), (8, 8, 4, 0)]


@pytest.fixture
def rng():
    return np.random.default_rng(20261126)


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch", reason="torch is not installed")


# --------------------------------------------------------------------------------------
# The official Swin code (microsoft/Swin-Transformer models/swin_transformer.py) in NumPy
# --------------------------------------------------------------------------------------


def _swin_window_partition(x, window_size):
    b, h, w, c = x.shape
    x = x.reshape(b, h // window_size, window_size, w // window_size, window_size, c)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(-1, window_size, window_size, c)


def _swin_window_reverse(windows, window_size, h, w):
    b = int(windows.shape[0] / (h * w / window_size / window_size))
    x = windows.reshape(b, h // window_size, w // window_size, window_size, window_size, -1)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, h, w, -1)


def _swin_attn_mask(h, w, window_size, shift_size):
    """SwinTransformerBlock.__init__'s attn_mask (it builds none for shift_size 0)."""
    if shift_size == 0:
        return np.zeros(((h // window_size) * (w // window_size), window_size**2, window_size**2))
    img_mask = np.zeros((1, h, w, 1))
    slices = (slice(0, -window_size), slice(-window_size, -shift_size), slice(-shift_size, None))
    cnt = 0
    for hs in slices:
        for ws in slices:
            img_mask[:, hs, ws, :] = cnt
            cnt += 1
    mask_windows = _swin_window_partition(img_mask, window_size).reshape(-1, window_size * window_size)
    attn_mask = mask_windows[:, None, :] - mask_windows[:, :, None]
    return np.where(attn_mask != 0, -100.0, 0.0)


def _swin_relative_position_index(window_size):
    coords = np.stack(np.meshgrid(np.arange(window_size), np.arange(window_size), indexing="ij"))
    coords_flatten = coords.reshape(2, -1)
    relative_coords = (coords_flatten[:, :, None] - coords_flatten[:, None, :]).transpose(1, 2, 0).copy()
    relative_coords[:, :, 0] += window_size - 1
    relative_coords[:, :, 1] += window_size - 1
    relative_coords[:, :, 0] *= 2 * window_size - 1
    return relative_coords.sum(-1)


def _swin_attention(x, qkv_w, qkv_b, proj_w, proj_b, table, num_heads, window_size, shift_size):
    """SwinTransformerBlock.forward around WindowAttention.forward (no norm, residual, MLP)."""
    b, h, w, c = x.shape
    shifted = np.roll(x, (-shift_size, -shift_size), axis=(1, 2)) if shift_size else x
    windows = _swin_window_partition(shifted, window_size).reshape(-1, window_size**2, c)
    b_, n, _ = windows.shape
    qkv = (windows @ qkv_w.T + qkv_b).reshape(b_, n, 3, num_heads, c // num_heads).transpose(2, 0, 3, 1, 4)
    q, k, v = qkv[0] * (c // num_heads) ** -0.5, qkv[1], qkv[2]
    attn = q @ k.swapaxes(-2, -1)
    bias = table[_swin_relative_position_index(window_size).reshape(-1)].reshape(n, n, -1)
    attn = attn + bias.transpose(2, 0, 1)[None]
    if shift_size:
        mask = _swin_attn_mask(h, w, window_size, shift_size)
        nw = mask.shape[0]
        attn = (attn.reshape(b_ // nw, nw, num_heads, n, n) + mask[None, :, None]).reshape(
            -1, num_heads, n, n
        )
    attn = np.exp(attn - attn.max(-1, keepdims=True))
    attn = attn / attn.sum(-1, keepdims=True)
    out = (attn @ v).transpose(0, 2, 1, 3).reshape(b_, n, c) @ proj_w.T + proj_b
    out = _swin_window_reverse(out.reshape(-1, window_size, window_size, c), window_size, h, w)
    return np.roll(out, (shift_size, shift_size), axis=(1, 2)) if shift_size else out


# --------------------------------------------------------------------------------------
# ViT
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape,p", [((2, 3, 8, 12), 4), ((1, 1, 6, 6), 3), ((2, 2, 5, 10), 5), ((1, 3, 4, 4), 1)]
)
def test_patch_projection_equals_conv2d(torch, rng, shape, p):
    import torch.nn.functional as F

    b, c, h, w = shape
    d = 7
    images = torch.tensor(rng.standard_normal(shape))
    weight = torch.tensor(rng.standard_normal((d, c, p, p)))
    bias = torch.tensor(rng.standard_normal(d))
    theirs = F.conv2d(images, weight, bias, stride=p).flatten(2).transpose(1, 2)  # (B, N, D)
    w_patch = weight.reshape(d, -1).T  # (C·p·p, D)
    patches = seqops.patchify(images, p)
    assert isinstance(patches, torch.Tensor) and patches.shape == (b, (h // p) * (w // p), c * p * p)
    torch.testing.assert_close(patches @ w_patch + bias, theirs, rtol=1e-12, atol=1e-12)
    # channels_last keeps the (C, ph, pw) order: the same weights serve both layouts
    last = seqops.patchify(images.permute(0, 2, 3, 1), p, channels_last=True)
    torch.testing.assert_close(last, patches, rtol=0, atol=0)
    np.testing.assert_array_equal(patches.numpy(), ref.patchify(images.numpy(), p))

    # vit_embed: class token at index 0, then the positional embedding
    cls = torch.tensor(rng.standard_normal(d))
    pos = torch.tensor(rng.standard_normal((1 + patches.shape[1], d)))
    out = seqops.vit_embed(images, w_patch, bias, cls, pos, patch_size=p)
    expected = torch.cat([cls.expand(b, 1, d), theirs], dim=1) + pos
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(
        seqops.vit_embed(images, w_patch, None, cls, pos, patch_size=p),
        torch.cat([cls.expand(b, 1, d), theirs - bias], dim=1) + pos,
    )


@settings(max_examples=25, deadline=None)
@given(
    b=st.integers(1, 2),
    c=st.integers(1, 3),
    rows=st.integers(1, 3),
    cols=st.integers(1, 3),
    p=st.integers(1, 4),
    channels_last=st.booleans(),
    infer_channels=st.booleans(),
)
def test_unpatchify_inverts_patchify(b, c, rows, cols, p, channels_last, infer_channels):
    h, w = rows * p, cols * p
    shape = (b, h, w, c) if channels_last else (b, c, h, w)
    images = np.arange(np.prod(shape)).reshape(shape)
    patches = seqops.patchify(images, p, channels_last=channels_last)
    assert patches.shape == (b, rows * cols, c * p * p)
    size = h if h == w and infer_channels else (h, w)
    back = seqops.unpatchify(
        patches, p, size, channels=None if infer_channels else c, channels_last=channels_last
    )
    np.testing.assert_array_equal(back, images)


# --------------------------------------------------------------------------------------
# Swin
# --------------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    b=st.integers(1, 2),
    c=st.integers(1, 3),
    rows=st.integers(1, 3),
    cols=st.integers(1, 3),
    ws=st.integers(1, 4),
    shift=st.integers(-5, 5),
)
def test_window_round_trips(b, c, rows, cols, ws, shift):
    h, w = rows * ws, cols * ws
    x = np.arange(b * h * w * c).reshape(b, h, w, c)
    windows = seqops.window_partition(x, ws)
    np.testing.assert_array_equal(windows, _swin_window_partition(x, ws))
    np.testing.assert_array_equal(seqops.window_reverse(windows, ws, h, w), x)
    np.testing.assert_array_equal(
        seqops.window_reverse(windows, ws, h, w), _swin_window_reverse(windows, ws, h, w)
    )
    shifted = seqops.cyclic_shift(x, shift)
    np.testing.assert_array_equal(shifted, np.roll(x, (-shift, -shift), axis=(1, 2)))
    np.testing.assert_array_equal(seqops.cyclic_shift(shifted, -shift), x)


@pytest.mark.parametrize("h,w,ws,shift", SWIN_CASES)
def test_masks_and_index_equal_official_swin(h, w, ws, shift):
    bias = seqops.shifted_window_mask(h, w, ws, shift, as_bias=True)
    assert bias.dtype == np.float64 and bias.shape == ((h // ws) * (w // ws), ws * ws, ws * ws)
    np.testing.assert_array_equal(bias, _swin_attn_mask(h, w, ws, shift))
    mask = seqops.shifted_window_mask(h, w, ws, shift)
    assert mask.dtype == np.bool_
    np.testing.assert_array_equal(mask, _swin_attn_mask(h, w, ws, shift) == 0)
    np.testing.assert_array_equal(mask, ref.shifted_window_mask(h, w, ws, shift))
    index = seqops.relative_position_index(ws)
    assert np.issubdtype(index.dtype, np.integer) and index.shape == (ws * ws, ws * ws)
    np.testing.assert_array_equal(index, _swin_relative_position_index(ws))
    np.testing.assert_array_equal(index, ref.relative_position_index(ws))


def _swin_weights(rng, c, num_heads, ws, *, qkv_bias=True):
    qkv_w = rng.standard_normal((3 * c, c)) * 0.4
    qkv_b = rng.standard_normal(3 * c) * 0.4 if qkv_bias else np.zeros(3 * c)
    proj_w, proj_b = rng.standard_normal((c, c)) * 0.4, rng.standard_normal(c) * 0.4
    table = rng.standard_normal(((2 * ws - 1) ** 2, num_heads))
    # Swin's qkv linear (weight (3C, C)) and proj as MHAParams, as the docstring says
    params = seqops.MHAParams(
        qkv_w[:c].T,
        qkv_w[c : 2 * c].T,
        qkv_w[2 * c :].T,
        proj_w.T,
        qkv_b[:c] if qkv_bias else None,
        qkv_b[c : 2 * c] if qkv_bias else None,
        qkv_b[2 * c :] if qkv_bias else None,
        proj_b,
    )
    return (qkv_w, qkv_b, proj_w, proj_b, table), params


@pytest.mark.parametrize("h,w,ws,shift", SWIN_CASES)
def test_window_attention_equals_official_swin(rng, h, w, ws, shift):
    c, num_heads = 6, 2
    raw, params = _swin_weights(rng, c, num_heads, ws, qkv_bias=shift != 1)
    x = rng.standard_normal((2, h, w, c))
    out = seqops.window_attention(
        x, params, num_heads=num_heads, window_size=ws, shift_size=shift, relative_bias_table=raw[-1]
    )
    assert out.shape == (2, h, w, c) and out.dtype == np.float64
    np.testing.assert_allclose(out, _swin_attention(x, *raw, num_heads, ws, shift), rtol=1e-12, atol=1e-12)
    expected = ref.window_attention(x, params, num_heads, ws, shift, raw[-1])
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


def test_window_attention_without_shift_is_mha_per_window(rng):
    b, h, w, c, ws, num_heads = 2, 6, 9, 4, 3, 2
    x = rng.standard_normal((b, h, w, c))
    params = seqops.MHAParams(
        *(rng.standard_normal((c, c)) for _ in range(3)),
        rng.standard_normal((c, 5)),
        *(rng.standard_normal(c) for _ in range(3)),
        rng.standard_normal(5),
    )
    out = seqops.window_attention(x, params, num_heads=num_heads, window_size=ws)
    windows = seqops.window_partition(x, ws).reshape(-1, ws * ws, c)  # (B·nW, N, C)
    each = seqops.multi_head_attention(windows, windows, windows, params, num_heads=num_heads)
    np.testing.assert_allclose(
        seqops.window_partition(out, ws).reshape(-1, ws * ws, 5), each, rtol=1e-12, atol=1e-12
    )
    # one window per image is plain multi-head self-attention over all pixels
    whole = seqops.window_attention(x[:, :3, :3], params, num_heads=num_heads, window_size=3)
    tokens = x[:, :3, :3].reshape(b, 9, c)
    np.testing.assert_allclose(
        whole.reshape(b, 9, 5),
        seqops.multi_head_attention(tokens, tokens, tokens, params, num_heads=num_heads),
        rtol=1e-12,
        atol=1e-12,
    )


def test_window_attention_is_local(rng):
    """Changing one window's pixels changes only that window's outputs (no shift)."""
    c = 4
    _, params = _swin_weights(rng, c, 2, 2)
    x = rng.standard_normal((1, 4, 4, c))
    y = x.copy()
    y[0, 2:, :2] += 1.0  # window 2 (bottom left)
    ox = seqops.window_attention(x, params, num_heads=2, window_size=2)
    oy = seqops.window_attention(y, params, num_heads=2, window_size=2)
    changed = np.any(ox != oy, axis=-1)[0]
    expected = np.zeros((4, 4), dtype=bool)
    expected[2:, :2] = True
    np.testing.assert_array_equal(changed, expected)


# --------------------------------------------------------------------------------------
# every backend: library, device and dtype are kept
# --------------------------------------------------------------------------------------

_TOLERANCE = {"float64": 1e-10, "float32": 2e-5, "float16": 2e-2, "bfloat16": 1e-1}


def _check_kept(backend, out, like, dtype):
    assert backend.owns(out), f"{backend.name}: result is a {type(out).__module__}.{type(out).__qualname__}"
    assert out.dtype == dtype, f"{backend.name}: dtype {out.dtype} != {dtype}"
    assert backend.device(out) == backend.device(like)


@pytest.mark.parametrize("dtype_name", ["float16", "float32", "float64"])
def test_every_backend_keeps_library_device_dtype(backend, rng, dtype_name):
    dtypes = backend.floating_dtypes()
    if dtype_name not in dtypes:
        pytest.skip(f"backend {backend.name!r} has no {dtype_name}")
    dtype = dtypes[dtype_name]
    xp = backend.namespace()
    tol = _TOLERANCE[dtype_name]

    def arr(a):
        return backend.from_numpy(np.asarray(a), dtype=dtype)

    def close(out, expected, exact=False):
        got = backend.to_numpy(out).astype(np.float64)
        if exact:
            np.testing.assert_array_equal(got, expected)
        else:
            np.testing.assert_allclose(got, expected, rtol=tol, atol=tol)

    # ViT: values are exactly representable, so data movement must be exact
    images_np = rng.integers(-8, 8, (2, 3, 4, 6)).astype(np.float64)
    images = arr(images_np)
    patches = seqops.patchify(images, 2)
    _check_kept(backend, patches, images, dtype)
    close(patches, ref.patchify(images_np, 2), exact=True)
    last = seqops.patchify(arr(images_np.transpose(0, 2, 3, 1)), 2, channels_last=True)
    close(last, ref.patchify(images_np, 2), exact=True)
    back = seqops.unpatchify(patches, 2, (4, 6))
    _check_kept(backend, back, images, dtype)
    close(back, images_np, exact=True)
    close(
        seqops.unpatchify(patches, 2, (4, 6), channels_last=True), images_np.transpose(0, 2, 3, 1), exact=True
    )
    w_np, b_np = rng.standard_normal((12, 5)) * 0.3, rng.standard_normal(5)
    cls_np, pos_np = rng.standard_normal(5), rng.standard_normal((7, 5))
    out = seqops.vit_embed(images, arr(w_np), arr(b_np), arr(cls_np), arr(pos_np), patch_size=2)
    _check_kept(backend, out, images, dtype)
    expected = np.concatenate(
        [np.broadcast_to(cls_np, (2, 1, 5)), ref.patchify(images_np, 2) @ w_np + b_np], 1
    )
    np.testing.assert_allclose(
        backend.to_numpy(out).astype(np.float64), expected + pos_np, rtol=10 * tol, atol=10 * tol
    )

    # Swin windows and shifts
    x_np = rng.integers(-8, 8, (2, 4, 6, 4)).astype(np.float64)
    x = arr(x_np)
    windows = seqops.window_partition(x, 2)
    _check_kept(backend, windows, x, dtype)
    close(windows, ref.window_partition(x_np, 2), exact=True)
    merged = seqops.window_reverse(windows, 2, 4, 6)
    _check_kept(backend, merged, x, dtype)
    close(merged, x_np, exact=True)
    shifted = seqops.cyclic_shift(x, 1)
    _check_kept(backend, shifted, x, dtype)
    close(shifted, np.roll(x_np, (-1, -1), axis=(1, 2)), exact=True)

    # masks: like= gives library, device and (for the bias) dtype
    mask = seqops.shifted_window_mask(4, 6, 2, 1, like=x)
    _check_kept(backend, mask, x, xp.bool)
    np.testing.assert_array_equal(backend.to_numpy(mask), ref.shifted_window_mask(4, 6, 2, 1))
    bias = seqops.shifted_window_mask(4, 6, 2, 1, as_bias=True, like=x)
    _check_kept(backend, bias, x, dtype)
    close(bias, ref.shifted_window_mask(4, 6, 2, 1, as_bias=True), exact=True)
    assert not np.signbit(backend.to_numpy(bias)).any(axis=None, where=backend.to_numpy(mask))  # +0.0
    default = seqops.shifted_window_mask(4, 6, 2, 1, as_bias=True, backend=backend.name)
    assert backend.owns(default) and default.dtype == backend.default_float_dtype()
    index = seqops.relative_position_index(3, like=x)
    assert backend.owns(index) and xp.isdtype(index.dtype, "integral")
    assert backend.device(index) == backend.device(x)
    np.testing.assert_array_equal(backend.to_numpy(index), ref.relative_position_index(3))
    assert backend.owns(seqops.relative_position_index(2, backend=backend.name))

    # window attention, shifted, with the relative position bias
    f_np = rng.standard_normal((2, 4, 6, 4))
    raw, params_np = _swin_weights(rng, 4, 2, 2)
    params = seqops.MHAParams(*(arr(a) for a in params_np))
    f = arr(f_np)
    out = seqops.window_attention(
        f, params, num_heads=2, window_size=2, shift_size=1, relative_bias_table=arr(raw[-1])
    )
    _check_kept(backend, out, f, dtype)
    close(out, ref.window_attention(f_np, params_np, 2, 2, 1, raw[-1]))


# --------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------


def _params(c=4, d=4):
    eye = np.eye(c, d)
    return seqops.MHAParams(eye, eye, eye, np.eye(d))


@pytest.mark.parametrize(
    "call,error,message",
    [
        (
            lambda: seqops.patchify(np.zeros((1, 3, 30, 32)), 8),
            ValueError,
            r"image height 30 is not divisible by patch_size 8 \(shape \(1, 3, 30, 32\)\)",
        ),
        (
            lambda: seqops.patchify(np.zeros((1, 30, 30, 3)), 8, channels_last=True),
            ValueError,
            "image height 30 is not divisible by patch_size 8",
        ),
        (
            lambda: seqops.patchify(np.zeros((1, 3, 32, 30)), 8),
            ValueError,
            "image width 30 is not divisible by patch_size 8",
        ),
        (
            lambda: seqops.patchify(np.zeros((3, 32, 32)), 8),
            ValueError,
            r"`images` must have 4 dimensions \(B, C, H, W\); got shape \(3, 32, 32\)",
        ),
        (lambda: seqops.patchify(np.zeros((1, 3, 8, 8)), 0), ValueError, "patch_size must be positive"),
        (
            lambda: seqops.patchify(np.zeros((1, 3, 8, 8)), 2.0),
            TypeError,
            "patch_size must be an integer; got float",
        ),
        (
            lambda: seqops.unpatchify(np.zeros((1, 4, 12)), 2, (4, 6)),
            ValueError,
            r"`patches` must have shape \(B, N, C·p·p\) = \(B, 6, 12\)",
        ),
        (
            lambda: seqops.unpatchify(np.zeros((1, 4, 12)), 2, 5),
            ValueError,
            "image height 5 is not divisible by patch_size 2",
        ),
        (
            lambda: seqops.unpatchify(np.zeros((1, 4, 12)), 2, (4, 4, 4)),
            ValueError,
            "image_size must be an int or a pair",
        ),
        (
            lambda: seqops.vit_embed(
                np.zeros((1, 3, 4, 4)),
                np.zeros((12, 5)),
                None,
                np.zeros((1, 1, 5)),
                np.zeros((5, 5)),
                patch_size=2,
            ),
            ValueError,
            r"`cls_token` must have shape \(5,\); got \(1, 1, 5\)",
        ),
        (
            lambda: seqops.vit_embed(
                np.zeros((1, 3, 4, 4)), np.zeros((12, 5)), None, np.zeros(5), np.zeros((4, 5)), patch_size=2
            ),
            ValueError,
            r"`pos_embed` must have shape \(5, 5\); got \(4, 5\)",
        ),
        (
            lambda: seqops.vit_embed(
                np.zeros((1, 3, 4, 4)), np.zeros((27, 5)), None, np.zeros(5), np.zeros((5, 5)), patch_size=2
            ),
            ValueError,
            r"`w_patch` must have shape \(12, 5\); got \(27, 5\)",
        ),
        (
            lambda: seqops.vit_embed(
                np.zeros((1, 3, 4, 4)),
                np.zeros((12, 5), np.float32),
                None,
                np.zeros(5),
                np.zeros((5, 5)),
                patch_size=2,
            ),
            TypeError,
            "must share one dtype",
        ),
        (
            lambda: seqops.window_partition(np.zeros((1, 14, 15, 2)), 7),
            ValueError,
            r"image width 15 is not divisible by window_size 7 \(shape \(1, 14, 15, 2\)\)",
        ),
        (
            lambda: seqops.window_reverse(np.zeros((3, 2, 2, 1)), 2, 4, 4),
            ValueError,
            r"nW = 4 windows of size 2 for height 4 and width 4; got \(3, 2, 2, 1\)",
        ),
        (
            lambda: seqops.window_reverse(np.zeros((4, 2, 2, 1)), 2, 5, 4),
            ValueError,
            "image height 5 is not divisible by window_size 2",
        ),
        (
            lambda: seqops.cyclic_shift(np.zeros((4, 4, 1)), 1),
            ValueError,
            r"`x` must have 4 dimensions \(B, H, W, C\)",
        ),
        (lambda: seqops.cyclic_shift(np.zeros((1, 4, 4, 1)), 1.5), TypeError, "shift must be an integer"),
        (
            lambda: seqops.shifted_window_mask(8, 8, 4, 4),
            ValueError,
            r"shift_size must be in \[0, window_size\) = \[0, 4\); got 4",
        ),
        (
            lambda: seqops.shifted_window_mask(8, 8, 4, -1),
            ValueError,
            r"shift_size must be in \[0, window_size\) = \[0, 4\); got -1",
        ),
        (
            lambda: seqops.shifted_window_mask(9, 8, 4, 1),
            ValueError,
            "image height 9 is not divisible by window_size 4",
        ),
        (lambda: seqops.relative_position_index(0), ValueError, "window_size must be positive"),
        (
            lambda: seqops.window_attention(
                np.zeros((1, 4, 4, 4)), _params(), num_heads=2, window_size=2, shift_size=2
            ),
            ValueError,
            r"shift_size must be in \[0, window_size\) = \[0, 2\); got 2",
        ),
        (  # any size is padded (tests/test_patch_merging.py); the map must still be 4-D
            lambda: seqops.window_attention(np.zeros((6, 4, 4)), _params(), num_heads=2, window_size=4),
            ValueError,
            r"`x` must have 4 dimensions \(B, H, W, C\); got shape \(6, 4, 4\)",
        ),
        (
            lambda: seqops.window_attention(
                np.zeros((1, 4, 4, 4), dtype=int), _params(), num_heads=2, window_size=2
            ),
            TypeError,
            "`x` must be a real floating array; got dtype int64",
        ),
        (
            lambda: seqops.window_attention(np.zeros((1, 4, 4, 4)), _params(), num_heads=3, window_size=2),
            ValueError,
            "num_heads=3 must divide the query width D=4",
        ),
        (
            lambda: seqops.window_attention(
                np.zeros((1, 4, 4, 4)), _params(5, 4), num_heads=2, window_size=2
            ),
            ValueError,
            r"`params.w_q` must have shape \(4, 4\); got \(5, 4\)",
        ),
        (
            lambda: seqops.window_attention(
                np.zeros((1, 4, 4, 4)), tuple(_params()), num_heads=2, window_size=2
            ),
            TypeError,
            "params must be a seqops.MHAParams",
        ),
        (
            lambda: seqops.window_attention(
                np.zeros((1, 4, 4, 4)),
                _params(),
                num_heads=2,
                window_size=2,
                relative_bias_table=np.zeros((9, 4)),
            ),
            ValueError,
            r"`relative_bias_table` must have shape \(9, 2\); got \(9, 4\)",
        ),
        (
            lambda: seqops.window_attention(
                np.zeros((1, 4, 4, 4)),
                _params(),
                num_heads=2,
                window_size=2,
                relative_bias_table=np.zeros((9, 2), np.float32),
            ),
            TypeError,
            "`x` and `relative_bias_table` must share one dtype",
        ),
    ],
)
def test_bad_input_messages(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_mixed_libraries_are_named(torch):
    x = torch.zeros((1, 4, 4, 4), dtype=torch.float64)
    with pytest.raises(TypeError, match="`x` is torch .* but `relative_bias_table` is numpy"):
        seqops.window_attention(
            x,
            seqops.MHAParams(*(torch.eye(4, dtype=torch.float64) for _ in range(4))),
            num_heads=2,
            window_size=2,
            relative_bias_table=np.zeros((9, 2)),
        )
