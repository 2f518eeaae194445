"""Swin stage pieces: ``patch_merging`` and ``window_attention`` on sizes that are not multiples
of the window.

* ``patch_merging`` vs Hugging Face's ``SwinPatchMerging`` (tiny, random weights, no download),
  even and odd sizes, float32 and float64, values and torch autograd gradients; vs API.md's
  formula written in NumPy; vs the conformance reference on every backend (dtype kept); it
  dispatches ``layer_norm`` (a fast path of the norm reaches it);
* padded ``window_attention`` vs Hugging Face's ``SwinLayer`` (its norm replaced by the
  identity and its MLP zeroed, so ``out - x`` is the attention of ``x``), shifted and not;
  vs pad → ``window_attention`` on the padded map → crop, written with public ops;
* ``torch.compile(fullgraph=True)`` and ``jax.jit`` of both on odd sizes; bad input.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pytest
from conftest import assert_kept
from seqops_conformance import references as ref

import seqops


@pytest.fixture
def rng():
    return np.random.default_rng(2021)


@pytest.fixture(scope="module")
def hf_swin():
    pytest.importorskip("torch", reason="torch is not installed")
    return pytest.importorskip(
        "transformers.models.swin.modeling_swin", reason="transformers is not installed"
    )


def _randomize(torch, module, scale=0.5):
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=generator, dtype=p.dtype) * scale)
    return module


def _swin_formula(x, weight, norm_weight, norm_bias, eps):
    """API.md's patch merging in NumPy: pad, Swin's concat, layer norm over 4C, ``@ weight``."""
    b, h, w, c = x.shape
    x = np.pad(x, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))
    x = np.concatenate([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
    y = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps)
    if norm_weight is not None:
        y = y * norm_weight
    if norm_bias is not None:
        y = y + norm_bias
    return y @ weight


SIZES = [(4, 6), (5, 7), (6, 3), (3, 8), (1, 1), (2, 2)]


# --------------------------------------------------------------------------------------
# patch merging: peers
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype_name", ["float32", "float64"])
@pytest.mark.parametrize("size", SIZES, ids=str)
def test_patch_merging_vs_hugging_face(hf_swin, size, dtype_name):
    import torch

    dtype = getattr(torch, dtype_name)
    c, (h, w) = 3, size
    m = _randomize(torch, hf_swin.SwinPatchMerging(c).to(dtype))
    x = torch.randn(2, h, w, c, dtype=dtype, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        theirs = m(x.reshape(2, h * w, c), (h, w))  # HF: (B, H·W, C) and the sizes
        ours = seqops.patch_merging(x, m.reduction.weight.T, m.norm.weight, m.norm.bias, eps=m.norm.eps)
    assert ours.shape == (2, math.ceil(h / 2), math.ceil(w / 2), 2 * c) and ours.dtype == dtype
    tol = {"rtol": 1e-12, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-5}
    torch.testing.assert_close(ours.reshape(theirs.shape), theirs, **tol)


def test_patch_merging_gradients_vs_hugging_face(hf_swin):
    import torch

    c, h, w = 4, 5, 7
    m = _randomize(torch, hf_swin.SwinPatchMerging(c).double())
    x = torch.randn(2, h, w, c, dtype=torch.float64, requires_grad=True)
    cotangent = torch.randn(2, 3 * 4, 2 * c, dtype=torch.float64)
    theirs = torch.autograd.grad(
        (m(x.reshape(2, h * w, c), (h, w)) * cotangent).sum(),
        [x, m.reduction.weight, m.norm.weight, m.norm.bias],
    )
    leaves = [
        t.detach().clone().requires_grad_() for t in (x, m.reduction.weight.T, m.norm.weight, m.norm.bias)
    ]
    out = seqops.patch_merging(*leaves)
    ours = torch.autograd.grad((out.reshape(cotangent.shape) * cotangent).sum(), leaves)
    for a, b in zip(ours, (theirs[0], theirs[1].T, theirs[2], theirs[3]), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("affine", ["both", "weight", "none"])
@pytest.mark.parametrize("size", SIZES, ids=str)
def test_patch_merging_is_the_api_formula(rng, size, affine):
    x = rng.standard_normal((2, *size, 3))
    weight = rng.standard_normal((12, 5))
    gamma = rng.standard_normal(12) if affine != "none" else None
    beta = rng.standard_normal(12) if affine == "both" else None
    got = seqops.patch_merging(x, weight, gamma, beta, eps=1e-3)
    np.testing.assert_allclose(got, _swin_formula(x, weight, gamma, beta, 1e-3), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        got, ref.patch_merging(x, weight, gamma, beta, eps=1e-3), rtol=1e-12, atol=1e-12
    )


def test_patch_merging_order_by_hand():
    """Each pixel's value is its (row, column); the 4 merged slots read Swin's order."""
    h, w = 3, 5
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    x = np.stack([rows, cols], -1)[None].astype(np.float64) + 1.0  # (1, H, W, 2), 0 means padding
    # gather with weight = identity after a norm that keeps relative order: read back before the norm
    merged = _swin_formula(x, np.eye(8), None, None, 0.0)
    assert merged.shape == (1, 2, 3, 8)
    np.testing.assert_allclose(seqops.patch_merging(x, np.eye(8), eps=0.0), merged, rtol=1e-12, atol=1e-12)
    # token (1, 2) holds pixels (2, 4), (3, 4)=pad, (2, 5)=pad, (3, 5)=pad
    token = np.concatenate([x[0, 2, 4], np.zeros(2), np.zeros(2), np.zeros(2)])
    want = (token - token.mean()) / token.std()
    np.testing.assert_allclose(seqops.patch_merging(x, np.eye(8), eps=0.0)[0, 1, 2], want, rtol=1e-12)


def test_patch_merging_dispatches_layer_norm(rng):
    assert seqops.ops.patch_merging.parts == (seqops.ops.layer_norm,)
    calls: list[tuple[int, ...]] = []

    def norm(backend: Any, x: Any, weight: Any, bias: Any, /, *, eps: float) -> Any:
        calls.append(tuple(x.shape))
        return np.full(x.shape, 1.0)  # a recognisable "norm"

    class Plugin:
        @seqops.hookimpl
        def seqops_implementations(self, backend: seqops.Backend) -> list[seqops.Implementation] | None:
            if backend.name != "numpy":
                return None
            return [seqops.Implementation(seqops.ops.layer_norm, "recording-norm", norm)]

    x, weight = rng.standard_normal((2, 5, 7, 3)), rng.standard_normal((12, 6))
    name = seqops.register_plugin(Plugin(), name="recording-norm")
    try:
        out = seqops.patch_merging(x, weight)
    finally:
        seqops.unregister_plugin(name)
    assert calls == [(2, 3, 4, 12)]
    np.testing.assert_allclose(out, np.broadcast_to(weight.sum(0), out.shape), rtol=1e-12)


# --------------------------------------------------------------------------------------
# patch merging: every backend
# --------------------------------------------------------------------------------------

_TOLERANCE = {"float64": 1e-11, "float32": 2e-5, "float16": 3e-2, "bfloat16": 2e-1}


@pytest.mark.parametrize("dtype_name", ["float16", "float32", "float64"])
def test_patch_merging_every_backend_keeps_library_device_dtype(backend, rng, dtype_name):
    dtypes = backend.floating_dtypes()
    if dtype_name not in dtypes:
        pytest.skip(f"backend {backend.name!r} has no {dtype_name}")
    dtype, tol = dtypes[dtype_name], _TOLERANCE[dtype_name]
    raw = (
        rng.standard_normal((2, 5, 7, 3)),
        rng.standard_normal((12, 6)) / 4,
        1 + rng.standard_normal(12) / 5,
        rng.standard_normal(12) / 5,
    )
    args = [backend.from_numpy(a, dtype=dtype) for a in raw]
    out = seqops.patch_merging(*args)
    assert_kept(backend, out, args[0], dtype)
    assert tuple(out.shape) == (2, 3, 4, 6)
    np.testing.assert_allclose(
        backend.to_numpy(out).astype(np.float64), ref.patch_merging(*raw), rtol=tol, atol=tol
    )


# --------------------------------------------------------------------------------------
# window attention on sizes that are not multiples of the window
# --------------------------------------------------------------------------------------


def _mha_params_of(attention):
    """seqops.MHAParams of Hugging Face's ``SwinAttention`` (nn.Linear weights are (out, in))."""
    return seqops.MHAParams(
        *(
            p.weight.T.detach()
            for p in (attention.q_proj, attention.k_proj, attention.v_proj, attention.o_proj)
        ),
        *(
            None if p.bias is None else p.bias.detach()
            for p in (attention.q_proj, attention.k_proj, attention.v_proj, attention.o_proj)
        ),
    )


# (H, W, window, shift): min(H, W) > window, or HF shrinks its window to the map
HF_CASES = [(5, 7, 4, 2), (6, 9, 4, 0), (9, 5, 3, 1), (7, 10, 3, 2), (8, 8, 4, 2), (10, 6, 4, 0)]


@pytest.mark.parametrize("qkv_bias", [True, False], ids=["qkv_bias", "no_qkv_bias"])
@pytest.mark.parametrize("h,w,ws,shift", HF_CASES)
def test_padded_window_attention_vs_hugging_face_swin_layer(hf_swin, h, w, ws, shift, qkv_bias):
    import torch

    c, heads = 8, 2
    config = hf_swin.SwinConfig(
        embed_dim=c, window_size=ws, qkv_bias=qkv_bias, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0, drop_path_rate=0.0,
    )  # fmt: skip
    # "sdpa" keeps float64 (HF's eager attention takes its softmax in float32)
    config._attn_implementation = "sdpa"
    layer = hf_swin.SwinLayer(config, dim=c, input_resolution=(h, w), num_heads=heads, shift_size=shift)
    layer = _randomize(torch, layer.double().eval())
    with torch.no_grad():  # out = x + attention(x): no norm before it, a zero MLP after
        layer.mlp.fc2.weight.zero_()
        layer.mlp.fc2.bias.zero_()
    layer.layernorm_before = torch.nn.Identity()
    x = torch.randn(2, h, w, c, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        out, _ = layer(x.reshape(2, h * w, c), (h, w))
        assert (layer.window_size, layer.shift_size) == (ws, shift)  # HF did not shrink them
        theirs = (out - x.reshape(2, h * w, c)).reshape(2, h, w, c)
        ours = seqops.window_attention(
            x,
            _mha_params_of(layer.attention),
            num_heads=heads,
            window_size=ws,
            shift_size=shift,
            relative_bias_table=layer.attention.relative_position_bias.relative_position_bias_table.detach(),
        )
    assert ours.shape == (2, h, w, c)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)


def _params(rng, c=6, d_out=5):
    return seqops.MHAParams(
        *(rng.standard_normal((c, c)) / math.sqrt(c) for _ in range(3)),
        rng.standard_normal((c, d_out)) / math.sqrt(c),
        *(rng.standard_normal(c) * 0.3 for _ in range(3)),
        rng.standard_normal(d_out) * 0.3,
    )


@pytest.mark.parametrize(
    "h,w,ws,shift", [(5, 7, 2, 1), (3, 5, 4, 2), (7, 4, 3, 0), (1, 1, 2, 1), (6, 5, 3, 2)]
)
def test_padded_window_attention_is_pad_attend_crop(rng, h, w, ws, shift):
    """Equal to zero-padding with NumPy, window attention on the padded map, cropping."""
    x, params = rng.standard_normal((2, h, w, 6)), _params(rng)
    table = rng.standard_normal(((2 * ws - 1) ** 2, 2))
    options = {"num_heads": 2, "window_size": ws, "shift_size": shift, "relative_bias_table": table}
    out = seqops.window_attention(x, params, **options)
    padded = np.pad(x, ((0, 0), (0, -h % ws), (0, -w % ws), (0, 0)))
    whole = seqops.window_attention(padded, params, **options)
    assert out.shape == (2, h, w, 5)
    np.testing.assert_allclose(out, whole[:, :h, :w], rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(
        out, ref.window_attention(x, params, 2, ws, shift, table), rtol=1e-12, atol=1e-12
    )


def test_padded_tokens_take_part_unmasked(rng):
    """One real pixel in a 2 × 2 window: it attends to itself and to the 3 padded tokens
    (keys ``b_k``, values ``b_v``), as in Hugging Face; masked padding would give its own value."""
    x, params = rng.standard_normal((1, 1, 1, 6)), _params(rng)
    out = seqops.window_attention(x, params, num_heads=2, window_size=2)[0, 0, 0]
    tokens = np.concatenate([x[0, 0], np.zeros((3, 6))])  # (4, C): the pixel, then the padding
    q, k, v = (tokens @ w + b for w, b in zip(params[:3], params[4:7], strict=True))
    heads = []
    for h in range(2):
        part = slice(3 * h, 3 * (h + 1))
        logits = q[0, part] @ k[:, part].T / math.sqrt(3)
        weights = np.exp(logits - logits.max())
        heads.append(weights / weights.sum() @ v[:, part])
    np.testing.assert_allclose(out, np.concatenate(heads) @ params.w_o + params.b_o, rtol=1e-12, atol=1e-12)
    alone = v[0] @ params.w_o + params.b_o  # what masking the padding would give
    assert np.abs(out - alone).max() > 1e-3
    # windows stay apart: in a 3 x 3 map, a change in the (complete) first window moves only it
    x = rng.standard_normal((1, 3, 3, 6))
    y = x.copy()
    y[0, 0, 0] += 1.0
    changed = np.any(
        seqops.window_attention(y, params, num_heads=2, window_size=2)
        != seqops.window_attention(x, params, num_heads=2, window_size=2),
        axis=-1,
    )[0]
    assert changed.tolist() == [[True, True, False], [True, True, False], [False, False, False]]


@pytest.mark.parametrize("dtype_name", ["float16", "float32", "float64"])
def test_padded_window_attention_every_backend(backend, rng, dtype_name):
    dtypes = backend.floating_dtypes()
    if dtype_name not in dtypes:
        pytest.skip(f"backend {backend.name!r} has no {dtype_name}")
    dtype, tol = dtypes[dtype_name], _TOLERANCE[dtype_name]
    x, params = rng.standard_normal((2, 5, 7, 6)), _params(rng)
    table = rng.standard_normal((25, 2))
    out = seqops.window_attention(
        backend.from_numpy(x, dtype=dtype),
        seqops.MHAParams(*(backend.from_numpy(p, dtype=dtype) for p in params)),
        num_heads=2,
        window_size=3,
        shift_size=1,
        relative_bias_table=backend.from_numpy(table, dtype=dtype),
    )
    assert_kept(backend, out, backend.from_numpy(x, dtype=dtype), dtype)
    np.testing.assert_allclose(
        backend.to_numpy(out).astype(np.float64),
        ref.window_attention(x, params, 2, 3, 1, table),
        rtol=tol,
        atol=tol,
    )


# --------------------------------------------------------------------------------------
# traced: jax.jit, torch.compile(fullgraph=True)
# --------------------------------------------------------------------------------------


def test_jax_jit_on_odd_sizes(jax, rng):
    jnp = jax.numpy
    x, params = jnp.asarray(rng.standard_normal((2, 5, 7, 6))), _params(rng)
    params = seqops.MHAParams(*(jnp.asarray(p) for p in params))
    weight = jnp.asarray(rng.standard_normal((20, 4)))  # 4 · D_out

    def f(x):
        attended = seqops.window_attention(x, params, num_heads=2, window_size=3, shift_size=1)
        return seqops.patch_merging(attended, weight)

    np.testing.assert_allclose(np.asarray(jax.jit(f)(x)), np.asarray(f(x)), rtol=1e-12, atol=1e-12)


# array-api-compat's lru_cache-wrapped helpers make Dynamo warn (harmless, not seqops' code).
@pytest.mark.filterwarnings("ignore:Dynamo detected a call to a `functools.lru_cache`")
def test_torch_compile_fullgraph_on_odd_sizes(torch, rng):
    x = torch.tensor(rng.standard_normal((2, 5, 7, 6)), dtype=torch.float32)
    params = seqops.MHAParams(*(torch.tensor(p, dtype=torch.float32) for p in _params(rng)))
    weight, gamma = (torch.tensor(rng.standard_normal(s), dtype=torch.float32) for s in ((20, 4), (20,)))

    def f(x: Any) -> Any:
        attended = seqops.window_attention(x, params, num_heads=2, window_size=3, shift_size=1)
        return seqops.patch_merging(attended, weight, gamma)

    f(x)  # fill the implementation caches outside the trace
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x), f(x), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------


def _z(*shape, dtype=np.float32):
    return np.zeros(shape, dtype=dtype)


BAD_INPUTS = [
    (
        "ndim",
        lambda: seqops.patch_merging(_z(5, 7, 3), _z(12, 6)),
        ValueError,
        "`x` must have 4 dimensions (B, H, W, C); got shape (5, 7, 3)",
    ),
    (
        "weight",
        lambda: seqops.patch_merging(_z(2, 5, 7, 3), _z(6, 12)),
        ValueError,
        "`weight` must have shape (4C, D_out) = (12, D_out) for `x` of shape (2, 5, 7, 3); got (6, 12)",
    ),
    (
        "weight_1d",
        lambda: seqops.patch_merging(_z(2, 5, 7, 3), _z(12)),
        ValueError,
        "`weight` must have shape (4C, D_out)",
    ),
    (
        "norm_weight",
        lambda: seqops.patch_merging(_z(2, 4, 4, 3), _z(12, 6), _z(3)),
        ValueError,
        "`norm_weight` must have shape (12,); got (3,)",
    ),
    (
        "norm_bias",
        lambda: seqops.patch_merging(_z(2, 4, 4, 3), _z(12, 6), None, _z(4, 3)),
        ValueError,
        "`norm_bias` must have shape (12,); got (4, 3)",
    ),
    (
        "dtype",
        lambda: seqops.patch_merging(_z(2, 4, 4, 3), _z(12, 6, dtype=np.float64)),
        TypeError,
        "`x` and `weight` must share one dtype; got x float32, weight float64",
    ),
    (
        "integer",
        lambda: seqops.patch_merging(np.zeros((2, 4, 4, 3), dtype=np.int64), _z(12, 6)),
        TypeError,
        "`x` must be a real floating array; got dtype int64",
    ),
    (
        "eps_bool",
        lambda: seqops.patch_merging(_z(2, 4, 4, 3), _z(12, 6), eps=True),
        TypeError,
        "eps must be a Python number; got bool",
    ),
    (
        "eps_negative",
        lambda: seqops.patch_merging(_z(2, 4, 4, 3), _z(12, 6), eps=-1.0),
        ValueError,
        "eps must be >= 0; got -1.0",
    ),
    (
        "eps_nan",
        lambda: seqops.patch_merging(_z(2, 4, 4, 3), _z(12, 6), eps=float("nan")),
        ValueError,
        "eps must be >= 0; got nan",
    ),
    (
        "window_attention_ndim",
        lambda: seqops.window_attention(
            _z(5, 7, 4), seqops.MHAParams(*(_z(4, 4) for _ in range(4))), num_heads=2, window_size=3
        ),
        ValueError,
        "`x` must have 4 dimensions (B, H, W, C); got shape (5, 7, 4)",
    ),
]


@pytest.mark.parametrize("call,error,message", [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_messages(call, error, message):
    with pytest.raises(error, match=re.escape(message)):
        call()


def test_mixed_libraries_are_named(torch):
    with pytest.raises(TypeError, match="`x` is torch .* but `weight` is numpy"):
        seqops.patch_merging(torch.zeros(1, 2, 2, 1), _z(4, 2))
