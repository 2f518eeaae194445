"""Peer tests: the attention family against the frameworks' own ops on the same inputs.

* ``scaled_dot_product_attention`` vs ``torch.nn.functional.scaled_dot_product_attention``
  and ``jax.nn.dot_product_attention``;
* ``multi_head_attention`` vs ``torch.nn.MultiheadAttention`` (through
  ``seqops.convert.mha_params_from_torch``);
* ``transformer_encoder_layer`` vs ``torch.nn.TransformerEncoderLayer`` (through
  ``seqops.convert.encoder_layer_params_from_torch``);
* ``layer_norm``, ``feed_forward``, ``softmax`` and ``log_softmax`` vs torch and JAX;
* every op keeps the library, device and dtype of its inputs on every registered backend.

Conventions to keep in mind when reading the comparisons:

* our ``mask`` is True = attend (as torch SDPA and JAX); torch ``MultiheadAttention`` and
  ``TransformerEncoderLayer`` take ``attn_mask``/``src_mask`` and ``key_padding_mask`` as
  True = *ignore*, so they get ``~mask``;
* our layout is ``(B, N, T, H)`` (heads before time, as torch); JAX's is ``(B, T, N, H)``.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_kept
from seqops_conformance import references as ref

import seqops

B, H, L, S, E, EV = 2, 4, 5, 6, 8, 3  # batch, heads, queries, keys, key width, value width
D, NUM_HEADS, FF = 8, 2, 16  # model width, MHA heads, feed-forward width


@pytest.fixture
def rng():
    return np.random.default_rng(20240611)


def _random_mask(rng, shape, *, p=0.35):
    """Bool mask (True = attend) with every row keeping at least key 0 allowed."""
    mask = rng.random(shape) > p
    mask[..., 0] = True
    return mask


def _sdpa_inputs(rng, *, kv_heads=H):
    q = rng.standard_normal((B, H, L, E))
    k = rng.standard_normal((B, kv_heads, S, E))
    v = rng.standard_normal((B, kv_heads, S, EV))
    return q, k, v


def _causal(q_len, kv_len):
    return np.tril(np.ones((q_len, kv_len), dtype=bool))


# Each case: (name, builder(rng) -> kwargs of numpy arrays and options). ``mask`` and
# ``bias`` are always given in our convention; the peers translate them.
def _case_options(rng, name):
    opts: dict = {}
    if name in ("mask", "mask_bias", "mask_causal", "mask_bias_causal", "fully_masked"):
        opts["mask"] = _random_mask(rng, (B, 1, L, S))
    if name in ("bias", "mask_bias", "bias_causal", "mask_bias_causal"):
        opts["bias"] = rng.standard_normal((1, H, L, S))
    if name.endswith("causal"):
        opts["is_causal"] = True
    if name == "scale":
        opts["scale"] = 0.37
    if name == "fully_masked":
        opts["mask"][0, 0, 2, :] = False  # query 2 of batch 0 sees no key (every head)
        opts["mask"][1, 0, 4, :] = False
    return opts


SDPA_CASES = [
    "plain",
    "mask",
    "bias",
    "mask_bias",
    "causal",
    "mask_causal",
    "bias_causal",
    "mask_bias_causal",
    "scale",
    "gqa",
    "fully_masked",
]


def _allowed(opts, q_len=L, kv_len=S):
    """The combined boolean mask (True = attend) of ``mask`` and ``is_causal``, or None."""
    allowed = opts.get("mask")
    if opts.get("is_causal"):
        causal = _causal(q_len, kv_len)
        allowed = causal if allowed is None else np.logical_and(allowed, causal)
    return allowed


# --------------------------------------------------------------------------------------
# scaled_dot_product_attention vs torch
# --------------------------------------------------------------------------------------


def _torch_sdpa(torch, q, k, v, opts, *, enable_gqa=False):
    """torch SDPA on our options; torch refuses attn_mask with is_causal, so combine them."""
    import torch.nn.functional as F

    allowed = _allowed(opts)
    bias = opts.get("bias")
    attn_mask = None
    if bias is not None:
        b = torch.tensor(bias, dtype=q.dtype)
        if allowed is not None:
            b = b.masked_fill(~torch.tensor(allowed), float("-inf"))
        attn_mask = b
    elif allowed is not None:
        attn_mask = torch.tensor(allowed)
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=attn_mask, scale=opts.get("scale"), enable_gqa=enable_gqa
    )


def _ours_torch(torch, q, k, v, opts, *, enable_gqa=False):
    kw = {}
    if "mask" in opts:
        kw["mask"] = torch.tensor(opts["mask"])
    if "bias" in opts:
        kw["bias"] = torch.tensor(opts["bias"], dtype=q.dtype)
    return seqops.scaled_dot_product_attention(
        q, k, v, is_causal=opts.get("is_causal", False), scale=opts.get("scale"), enable_gqa=enable_gqa, **kw
    )


@pytest.mark.parametrize("dtype_name,rtol,atol", [("float32", 1e-5, 1e-6), ("float64", 1e-12, 1e-13)])
@pytest.mark.parametrize("case", SDPA_CASES)
def test_sdpa_vs_torch(torch, rng, case, dtype_name, rtol, atol):
    dtype = getattr(torch, dtype_name)
    gqa = case == "gqa"
    qn, kn, vn = _sdpa_inputs(rng, kv_heads=2 if gqa else H)
    opts = _case_options(rng, case)
    q, k, v = (torch.tensor(a, dtype=dtype) for a in (qn, kn, vn))
    ours = _ours_torch(torch, q, k, v, opts, enable_gqa=gqa)
    theirs = _torch_sdpa(torch, q, k, v, opts, enable_gqa=gqa)
    assert isinstance(ours, torch.Tensor) and ours.dtype == dtype and ours.shape == (B, H, L, EV)
    torch.testing.assert_close(ours, theirs, rtol=rtol, atol=atol)
    if case == "fully_masked":
        # both return zeros on a query row with no allowed key (never NaN)
        for out in (ours, theirs):
            assert torch.all(out[0, :, 2] == 0) and torch.all(out[1, :, 4] == 0)
            assert torch.isfinite(out).all()
    # and both agree with the float64 reference
    expected, _ = ref.scaled_dot_product_attention(
        qn,
        kn,
        vn,
        mask=opts.get("mask"),
        bias=opts.get("bias"),
        is_causal=opts.get("is_causal", False),
        scale=opts.get("scale"),
        enable_gqa=gqa,
    )
    np.testing.assert_allclose(ours.numpy(), expected, rtol=max(rtol, 1e-12), atol=max(atol, 1e-12) * 10)


@pytest.mark.parametrize("dtype_name,tol", [("float16", 5e-3), ("bfloat16", 3e-2)])
@pytest.mark.parametrize("case", ["plain", "mask_bias_causal", "gqa", "fully_masked"])
def test_sdpa_vs_torch_half(torch, rng, case, dtype_name, tol):
    """Half inputs: our output keeps the dtype and is close to torch's (loose tolerance)."""
    dtype = getattr(torch, dtype_name)
    gqa = case == "gqa"
    qn, kn, vn = _sdpa_inputs(rng, kv_heads=2 if gqa else H)
    opts = _case_options(rng, case)
    q, k, v = (torch.tensor(a, dtype=dtype) for a in (qn, kn, vn))
    ours = _ours_torch(torch, q, k, v, opts, enable_gqa=gqa)
    theirs = _torch_sdpa(torch, q, k, v, opts, enable_gqa=gqa)
    assert ours.dtype == dtype and theirs.dtype == dtype
    torch.testing.assert_close(ours.float(), theirs.float(), rtol=tol, atol=tol)
    # logits and softmax run in float32: ours is within a half-precision rounding of the
    # float64 reference computed on the same (rounded) inputs
    expected, _ = ref.scaled_dot_product_attention(
        q.double().numpy(),
        k.double().numpy(),
        v.double().numpy(),
        mask=opts.get("mask"),
        bias=None if "bias" not in opts else torch.tensor(opts["bias"], dtype=dtype).double().numpy(),
        is_causal=opts.get("is_causal", False),
        enable_gqa=gqa,
    )
    np.testing.assert_allclose(ours.float().numpy(), expected, rtol=tol, atol=tol)


def test_sdpa_causal_is_top_left_like_torch(torch, rng):
    """L != S: torch's is_causal and ours both use top-left alignment (query i sees j <= i)."""
    import torch.nn.functional as F

    for q_len, kv_len in ((3, 6), (6, 3)):
        q = torch.tensor(rng.standard_normal((2, q_len, 4)))
        k = torch.tensor(rng.standard_normal((2, kv_len, 4)))
        v = torch.tensor(rng.standard_normal((2, kv_len, 4)))
        torch.testing.assert_close(
            seqops.scaled_dot_product_attention(q, k, v, is_causal=True),
            F.scaled_dot_product_attention(q, k, v, is_causal=True),
        )


def test_sdpa_weights_vs_reference(torch, rng):
    qn, kn, vn = _sdpa_inputs(rng)
    opts = _case_options(rng, "mask_bias_causal")
    q, k, v = (torch.tensor(a) for a in (qn, kn, vn))
    out, weights = seqops.scaled_dot_product_attention(
        q,
        k,
        v,
        mask=torch.tensor(opts["mask"]),
        bias=torch.tensor(opts["bias"]),
        is_causal=True,
        return_weights=True,
    )
    expected_out, expected_w = ref.scaled_dot_product_attention(
        qn, kn, vn, mask=opts["mask"], bias=opts["bias"], is_causal=True
    )
    np.testing.assert_allclose(out.numpy(), expected_out, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(weights.numpy(), expected_w, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------------------
# scaled_dot_product_attention vs jax.nn.dot_product_attention
# --------------------------------------------------------------------------------------
#
# jax.nn.dot_product_attention takes (B, T, N, H); ours is (B, N, T, H): swap axes -2/-3.
# JAX always runs the softmax in float32 (``_dot_product_attention_core`` casts the
# logits), even for float64 inputs, so float64 only agrees to float32 accuracy.


def _to_jax_layout(jnp, a):
    return jnp.swapaxes(a, -2, -3)


def _jax_sdpa(jax, q, k, v, opts):
    """jax.nn.dot_product_attention on our-layout arrays, returned in our layout."""
    jnp = jax.numpy
    dtype = q.dtype
    mask = opts.get("mask")
    bias = opts.get("bias")
    out = jax.nn.dot_product_attention(
        _to_jax_layout(jnp, q),
        _to_jax_layout(jnp, k),
        _to_jax_layout(jnp, v),
        bias=None if bias is None else jnp.asarray(bias, dtype=dtype),
        mask=None if mask is None else jnp.asarray(mask),
        scale=opts.get("scale"),
        is_causal=opts.get("is_causal", False),
    )
    return _to_jax_layout(jnp, out)


def _ours_jax(jax, q, k, v, opts, *, enable_gqa=False):
    jnp = jax.numpy
    kw = {}
    if "mask" in opts:
        kw["mask"] = jnp.asarray(opts["mask"])
    if "bias" in opts:
        kw["bias"] = jnp.asarray(opts["bias"], dtype=q.dtype)
    return seqops.scaled_dot_product_attention(
        q, k, v, is_causal=opts.get("is_causal", False), scale=opts.get("scale"), enable_gqa=enable_gqa, **kw
    )


@pytest.mark.parametrize("dtype_name,tol", [("float32", 2e-5), ("float64", 2e-6)])
@pytest.mark.parametrize("case", [c for c in SDPA_CASES if c != "fully_masked"])
def test_sdpa_vs_jax(jax, rng, case, dtype_name, tol):
    jnp = jax.numpy
    dtype = getattr(jnp, dtype_name)
    gqa = case == "gqa"  # JAX supports fewer kv heads natively (query head h -> kv head h // (N/K))
    qn, kn, vn = _sdpa_inputs(rng, kv_heads=2 if gqa else H)
    # JAX needs E == Ev (one head width H); use v of width E here.
    vn = rng.standard_normal(vn.shape[:-1] + (E,))
    opts = _case_options(rng, case)
    q, k, v = (jnp.asarray(a, dtype=dtype) for a in (qn, kn, vn))
    ours = _ours_jax(jax, q, k, v, opts, enable_gqa=gqa)
    theirs = _jax_sdpa(jax, q, k, v, opts)
    assert isinstance(ours, jax.Array) and ours.dtype == dtype and ours.shape == (B, H, L, E)
    np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), rtol=tol, atol=tol)


def test_sdpa_jax_fully_masked_rows_differ(jax, rng):
    """Documented difference: on a query row with **no allowed key** JAX does not return zeros.

    ``jax.nn.dot_product_attention`` replaces masked logits with a large finite negative
    number (``-0.7 * finfo(float32).max``) instead of ``-inf``. On a fully masked row all
    logits are then equal, the softmax is uniform, and the output is the **mean of v over
    all keys** (of the row's kv head). seqops follows torch and returns **zeros** there
    (API.md: "A query row with no allowed key returns zeros"). With an additive ``-inf``
    bias row instead of a mask, JAX returns NaN; seqops still returns zeros.
    """
    jnp = jax.numpy
    qn, kn, vn = _sdpa_inputs(rng)
    vn = rng.standard_normal(vn.shape[:-1] + (E,))
    opts = _case_options(rng, "fully_masked")  # rows (b=0, i=2) and (b=1, i=4) fully masked
    q, k, v = (jnp.asarray(a) for a in (qn, kn, vn))
    ours = np.asarray(_ours_jax(jax, q, k, v, opts))
    theirs = np.asarray(_jax_sdpa(jax, q, k, v, opts))
    mean_v = vn.mean(axis=-2)  # (B, H, E): the uniform average over the S keys
    for b, i in ((0, 2), (1, 4)):
        np.testing.assert_array_equal(ours[b, :, i], 0.0)
        np.testing.assert_allclose(theirs[b, :, i], mean_v[b], rtol=1e-6, atol=1e-6)
        assert not np.allclose(theirs[b, :, i], 0.0)
    # every other row agrees
    rows = np.ones((B, L), dtype=bool)
    rows[0, 2] = rows[1, 4] = False
    np.testing.assert_allclose(
        ours.transpose(0, 2, 1, 3)[rows], theirs.transpose(0, 2, 1, 3)[rows], rtol=2e-6, atol=2e-6
    )

    # additive -inf bias on a whole row: JAX gives NaN, ours zeros
    bias = np.zeros((1, 1, L, S))
    bias[..., 3, :] = -np.inf
    jb = jnp.asarray(bias)
    ours = np.asarray(seqops.scaled_dot_product_attention(q, k, v, bias=jb))
    theirs = np.asarray(
        _to_jax_layout(
            jnp,
            jax.nn.dot_product_attention(
                _to_jax_layout(jnp, q), _to_jax_layout(jnp, k), _to_jax_layout(jnp, v), bias=jb
            ),
        )
    )
    np.testing.assert_array_equal(ours[:, :, 3], 0.0)
    assert np.isnan(theirs[:, :, 3]).all()


def test_sdpa_vs_jax_gqa_grouping(jax, rng):
    """JAX's native GQA groups query heads the same way as torch repeat_interleave."""
    jnp = jax.numpy
    q = rng.standard_normal((1, 6, 3, 4))
    k = rng.standard_normal((1, 2, 5, 4))
    v = rng.standard_normal((1, 2, 5, 4))
    ours = seqops.scaled_dot_product_attention(*(jnp.asarray(a) for a in (q, k, v)), enable_gqa=True)
    theirs = _jax_sdpa(jax, *(jnp.asarray(a) for a in (q, k, v)), {})
    np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), rtol=2e-6, atol=2e-6)
    expected = ref.scaled_dot_product_attention(q, np.repeat(k, 3, axis=1), np.repeat(v, 3, axis=1))[0]
    np.testing.assert_allclose(np.asarray(ours), expected, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------------------
# multi_head_attention vs torch.nn.MultiheadAttention
# --------------------------------------------------------------------------------------


def _torch_mha(torch, rng, dtype, *, bias=True):
    m = torch.nn.MultiheadAttention(D, NUM_HEADS, batch_first=True, bias=bias, dtype=dtype).eval()
    with torch.no_grad():
        for p in m.parameters():  # torch initialises the biases to zero: randomise everything
            p.copy_(torch.tensor(rng.standard_normal(tuple(p.shape)) * 0.4, dtype=dtype))
    params = seqops.convert.mha_params_from_torch(
        m.in_proj_weight.detach(),
        None if m.in_proj_bias is None else m.in_proj_bias.detach(),
        m.out_proj.weight.detach(),
        None if m.out_proj.bias is None else m.out_proj.bias.detach(),
    )
    return m, params


MHA_CASES = ["plain", "kpm", "mask2d", "mask_per_head_kpm", "causal_kpm", "no_bias_kpm"]


@pytest.mark.parametrize("need_weights", [False, True])
@pytest.mark.parametrize("dtype_name,rtol,atol", [("float32", 1e-5, 1e-5), ("float64", 1e-12, 1e-12)])
@pytest.mark.parametrize("case", MHA_CASES)
def test_mha_vs_torch(torch, rng, case, dtype_name, rtol, atol, need_weights):
    dtype = getattr(torch, dtype_name)
    m, params = _torch_mha(torch, rng, dtype, bias=not case.startswith("no_bias"))
    if case.startswith("no_bias"):
        assert m.in_proj_bias is None and m.out_proj.bias is None
        assert params.b_q is None and params.b_o is None
    # cross-attention with L != S (self-attention when causal, as torch needs L == S there)
    s = L if "causal" in case else S
    query = torch.tensor(rng.standard_normal((B, L, D)), dtype=dtype)
    key = torch.tensor(rng.standard_normal((B, s, D)), dtype=dtype)
    value = torch.tensor(rng.standard_normal((B, s, D)), dtype=dtype)

    ours_kw: dict = {}
    theirs_kw: dict = {}
    if "kpm" in case:
        kpm = np.ones((B, s), dtype=bool)  # True = real token; key 0 always real
        kpm[0, -2:] = False
        kpm[1, -1] = False
        ours_kw["key_padding_mask"] = torch.tensor(kpm)
        theirs_kw["key_padding_mask"] = torch.tensor(~kpm)  # torch: True = ignore
    if case == "mask2d":
        mask = _random_mask(rng, (L, s))
        ours_kw["mask"] = torch.tensor(mask)
        theirs_kw["attn_mask"] = torch.tensor(~mask)  # torch MHA: True = not allowed
    if case == "mask_per_head_kpm":
        mask = _random_mask(rng, (B, NUM_HEADS, L, s))
        ours_kw["mask"] = torch.tensor(mask)
        theirs_kw["attn_mask"] = torch.tensor(~mask).reshape(B * NUM_HEADS, L, s)
    if "causal" in case:
        ours_kw["is_causal"] = True
        theirs_kw["attn_mask"] = torch.tensor(~_causal(L, s))
        theirs_kw["is_causal"] = True

    ours = seqops.multi_head_attention(
        query, key, value, params, num_heads=NUM_HEADS, need_weights=need_weights, **ours_kw
    )
    # grad mode on: torch takes its reference (non fast-path) implementation
    out, weights = m(query, key, value, need_weights=need_weights, average_attn_weights=False, **theirs_kw)
    if need_weights:
        ours_out, ours_w = ours
        assert ours_w.shape == (B, NUM_HEADS, L, s) and ours_w.dtype == dtype
        torch.testing.assert_close(ours_w, weights.detach(), rtol=rtol, atol=atol)
    else:
        ours_out = ours
        assert weights is None
    assert isinstance(ours_out, torch.Tensor) and ours_out.dtype == dtype and ours_out.shape == (B, L, D)
    torch.testing.assert_close(ours_out, out.detach(), rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype_name,tol", [("float32", 1e-5), ("float64", 1e-12)])
def test_mha_vs_torch_fast_path(torch, rng, dtype_name, tol):
    """Self-attention in eval + no_grad runs torch's fused fast path; same result."""
    dtype = getattr(torch, dtype_name)
    m, params = _torch_mha(torch, rng, dtype)
    x = torch.tensor(rng.standard_normal((B, L, D)), dtype=dtype)
    kpm = np.ones((B, L), dtype=bool)
    kpm[1, -2:] = False
    with torch.no_grad():
        out, _ = m(x, x, x, key_padding_mask=torch.tensor(~kpm), need_weights=False)
        ours = seqops.multi_head_attention(
            x, x, x, params, num_heads=NUM_HEADS, key_padding_mask=torch.tensor(kpm)
        )
    torch.testing.assert_close(ours, out, rtol=tol, atol=tol)


# --------------------------------------------------------------------------------------
# transformer_encoder_layer vs torch.nn.TransformerEncoderLayer
# --------------------------------------------------------------------------------------


def _torch_encoder_layer(torch, rng, dtype, *, norm_first, activation):
    layer = torch.nn.TransformerEncoderLayer(
        D,
        NUM_HEADS,
        dim_feedforward=FF,
        dropout=0.0,
        activation=activation,
        batch_first=True,
        norm_first=norm_first,
        dtype=dtype,
    ).eval()
    with torch.no_grad():  # torch initialises biases to 0 and norm weights to 1: randomise
        for name, p in layer.named_parameters():
            noise = torch.tensor(rng.standard_normal(tuple(p.shape)), dtype=dtype)
            p.copy_(1.0 + 0.3 * noise if name.startswith("norm") and name.endswith("weight") else 0.4 * noise)
    params = seqops.convert.encoder_layer_params_from_torch(layer.state_dict())
    return layer, params


@pytest.mark.parametrize("dtype_name,tol", [("float32", 2e-5), ("float64", 1e-11)])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("norm_first", [False, True], ids=["post_norm", "pre_norm"])
@pytest.mark.parametrize("masks", ["kpm", "kpm_mask", "kpm_causal"])
def test_encoder_layer_vs_torch(torch, rng, norm_first, activation, dtype_name, tol, masks):
    dtype = getattr(torch, dtype_name)
    layer, params = _torch_encoder_layer(torch, rng, dtype, norm_first=norm_first, activation=activation)
    x = torch.tensor(rng.standard_normal((B, L, D)), dtype=dtype)
    kpm = np.ones((B, L), dtype=bool)  # no fully padded sequence
    kpm[0, -2:] = False
    kpm[1, -1] = False
    ours_kw: dict = {"key_padding_mask": torch.tensor(kpm)}
    theirs_kw: dict = {"src_key_padding_mask": torch.tensor(~kpm)}
    if masks == "kpm_mask":
        mask = _random_mask(rng, (L, L))
        ours_kw["mask"] = torch.tensor(mask)
        theirs_kw["src_mask"] = torch.tensor(~mask)
    if masks == "kpm_causal":
        ours_kw["is_causal"] = True
        theirs_kw["src_mask"] = torch.tensor(~_causal(L, L))
        theirs_kw["is_causal"] = True
    ours = seqops.transformer_encoder_layer(
        x, params, num_heads=NUM_HEADS, norm_first=norm_first, activation=activation, **ours_kw
    )
    theirs = layer(x, **theirs_kw).detach()  # grad mode on: torch's non fast-path code
    assert isinstance(ours, torch.Tensor) and ours.dtype == dtype and ours.shape == (B, L, D)
    torch.testing.assert_close(ours, theirs, rtol=tol, atol=tol)
    expected = ref.transformer_encoder_layer(
        x.double().numpy(),
        _params_to_numpy(params),
        NUM_HEADS,
        norm_first=norm_first,
        activation=activation,
        mask=ours_kw["mask"].numpy() if "mask" in ours_kw else None,
        key_padding_mask=kpm,
        is_causal=ours_kw.get("is_causal", False),
    )
    np.testing.assert_allclose(ours.double().numpy(), expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("norm_first", [False, True], ids=["post_norm", "pre_norm"])
def test_encoder_layer_vs_torch_fast_path(torch, rng, norm_first):
    """eval + no_grad takes torch's fused encoder fast path (no fully padded sequence here)."""
    layer, params = _torch_encoder_layer(torch, rng, torch.float32, norm_first=norm_first, activation="gelu")
    x = torch.tensor(rng.standard_normal((B, L, D)), dtype=torch.float32)
    kpm = np.ones((B, L), dtype=bool)
    kpm[1, -2:] = False
    with torch.no_grad():
        theirs = layer(x, src_key_padding_mask=torch.tensor(~kpm))
        ours = seqops.transformer_encoder_layer(
            x,
            params,
            num_heads=NUM_HEADS,
            norm_first=norm_first,
            activation="gelu",
            key_padding_mask=torch.tensor(kpm),
        )
    torch.testing.assert_close(ours, theirs, rtol=2e-5, atol=2e-5)


def _params_to_numpy(params):
    """An EncoderLayerParams/MHAParams pytree of torch tensors as float64 NumPy arrays."""

    def conv(a):
        return None if a is None else a.detach().double().numpy()

    attn = seqops.MHAParams(*(conv(a) for a in params.attn))
    return seqops.EncoderLayerParams(attn, *(conv(a) for a in params[1:]))


# --------------------------------------------------------------------------------------
# layer_norm, feed_forward, softmax, log_softmax
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("dtype_name,tol", [("float32", 1e-5), ("float64", 1e-12)])
def test_layer_norm_vs_torch(torch, rng, affine, dtype_name, tol):
    import torch.nn.functional as F

    dtype = getattr(torch, dtype_name)
    x = torch.tensor(rng.standard_normal((3, 4, D)) * 3 + 1, dtype=dtype)
    w = torch.tensor(rng.standard_normal(D), dtype=dtype) if affine else None
    b = torch.tensor(rng.standard_normal(D), dtype=dtype) if affine else None
    for eps in (1e-5, 1e-2):
        ours = seqops.layer_norm(x, w, b, eps=eps)
        assert ours.dtype == dtype
        torch.testing.assert_close(ours, F.layer_norm(x, (D,), w, b, eps=eps), rtol=tol, atol=tol)


@pytest.mark.parametrize("activation,approximate", [("relu", None), ("gelu", "none"), ("gelu_tanh", "tanh")])
@pytest.mark.parametrize("dtype_name,tol", [("float32", 1e-5), ("float64", 1e-12)])
def test_feed_forward_vs_torch(torch, rng, activation, approximate, dtype_name, tol):
    import torch.nn.functional as F

    dtype = getattr(torch, dtype_name)
    x = torch.tensor(rng.standard_normal((3, 4, D)) * 2, dtype=dtype)
    w1 = torch.tensor(rng.standard_normal((D, FF)) * 0.5, dtype=dtype)
    b1 = torch.tensor(rng.standard_normal(FF), dtype=dtype)
    w2 = torch.tensor(rng.standard_normal((FF, D)) * 0.5, dtype=dtype)
    b2 = torch.tensor(rng.standard_normal(D), dtype=dtype)
    hidden = x @ w1 + b1
    act = F.relu(hidden) if approximate is None else F.gelu(hidden, approximate=approximate)
    theirs = act @ w2 + b2
    ours = seqops.feed_forward(x, w1, b1, w2, b2, activation=activation)
    assert ours.dtype == dtype
    torch.testing.assert_close(ours, theirs, rtol=tol, atol=tol)
    # without biases
    theirs = (F.relu(x @ w1) if approximate is None else F.gelu(x @ w1, approximate=approximate)) @ w2
    torch.testing.assert_close(
        seqops.feed_forward(x, w1, None, w2, None, activation=activation), theirs, rtol=tol, atol=tol
    )


def _softmax_inputs(rng):
    x = rng.standard_normal((3, 4, 5)) * 4
    x[0, 0] += 1000.0  # large finite values stay stable
    x[1, 1, :] = [-1e4, 0.0, 1e4, 1e4, -50.0]
    return x


@pytest.mark.parametrize("axis", [-1, 0, 1])
@pytest.mark.parametrize("dtype_name,tol", [("float32", 1e-6), ("float64", 1e-14)])
def test_softmax_vs_torch(torch, rng, axis, dtype_name, tol):
    dtype = getattr(torch, dtype_name)
    x = torch.tensor(_softmax_inputs(rng), dtype=dtype)
    torch.testing.assert_close(seqops.softmax(x, axis=axis), torch.softmax(x, dim=axis), rtol=tol, atol=tol)
    torch.testing.assert_close(
        seqops.log_softmax(x, axis=axis), torch.log_softmax(x, dim=axis), rtol=tol, atol=tol * 10
    )


@pytest.mark.parametrize("axis", [-1, 0, 1])
@pytest.mark.parametrize("dtype_name,tol", [("float32", 1e-6), ("float64", 1e-14)])
def test_softmax_vs_jax(jax, rng, axis, dtype_name, tol):
    jnp = jax.numpy
    dtype = getattr(jnp, dtype_name)
    x = jnp.asarray(_softmax_inputs(rng), dtype=dtype)
    ours, ours_log = seqops.softmax(x, axis=axis), seqops.log_softmax(x, axis=axis)
    assert isinstance(ours, jax.Array) and ours.dtype == dtype and ours_log.dtype == dtype
    np.testing.assert_allclose(np.asarray(ours), np.asarray(jax.nn.softmax(x, axis=axis)), rtol=tol, atol=tol)
    np.testing.assert_allclose(
        np.asarray(ours_log), np.asarray(jax.nn.log_softmax(x, axis=axis)), rtol=tol, atol=tol * 10
    )


# --------------------------------------------------------------------------------------
# every backend: library, device and dtype are kept
# --------------------------------------------------------------------------------------

# Half types: inputs are rounded to the dtype, then compared to the float64 reference on
# the original values, so the tolerance covers input rounding plus the computation.
_TOLERANCE = {"float64": 1e-10, "float32": 2e-5, "float16": 2e-2, "bfloat16": 1e-1}


@pytest.mark.parametrize("dtype_name", ["float16", "bfloat16", "float32", "float64"])
def test_every_backend_keeps_library_device_dtype(backend, rng, dtype_name):
    dtypes = backend.floating_dtypes()
    if dtype_name not in dtypes:
        pytest.skip(f"backend {backend.name!r} has no {dtype_name}")
    dtype = dtypes[dtype_name]
    xp = backend.namespace()
    tol = _TOLERANCE[dtype_name]

    def arr(a):
        return backend.from_numpy(np.asarray(a), dtype=dtype)

    def boolean(a):
        return backend.from_numpy(np.asarray(a), dtype=xp.bool)

    def close(out, expected):
        np.testing.assert_allclose(backend.to_numpy(out).astype(np.float64), expected, rtol=tol, atol=tol)

    # sdpa with mask + bias + causal
    qn, kn, vn = (rng.standard_normal((2, 2, 3, 4)) for _ in range(3))
    mn = _random_mask(rng, (2, 1, 3, 3))
    bn = rng.standard_normal((1, 2, 3, 3))
    q, k, v = arr(qn), arr(kn), arr(vn)
    out = seqops.scaled_dot_product_attention(q, k, v, mask=boolean(mn), bias=arr(bn), is_causal=True)
    assert_kept(backend, out, q, dtype)
    close(out, ref.scaled_dot_product_attention(qn, kn, vn, mask=mn, bias=bn, is_causal=True)[0])

    # mha with key padding and weights
    x_np = rng.standard_normal((2, 3, D))
    pn = seqops.MHAParams(
        *(rng.standard_normal((D, D)) * 0.4 for _ in range(4)),
        *(rng.standard_normal(D) * 0.4 for _ in range(4)),
    )
    kpm = np.array([[True, True, False], [True, True, True]])
    x = arr(x_np)
    params = seqops.MHAParams(*(arr(a) for a in pn))
    out, weights = seqops.multi_head_attention(
        x, x, x, params, num_heads=NUM_HEADS, key_padding_mask=boolean(kpm), need_weights=True
    )
    assert_kept(backend, out, x, dtype)
    assert_kept(backend, weights, x, dtype)
    expected, expected_w = ref.multi_head_attention(x_np, x_np, x_np, pn, NUM_HEADS, key_padding_mask=kpm)
    close(out, expected)
    close(weights, expected_w)

    # encoder layer
    en = seqops.EncoderLayerParams(
        pn,
        rng.standard_normal((D, FF)) * 0.4,
        rng.standard_normal(FF) * 0.4,
        rng.standard_normal((FF, D)) * 0.4,
        rng.standard_normal(D) * 0.4,
        1 + 0.3 * rng.standard_normal(D),
        rng.standard_normal(D) * 0.3,
        1 + 0.3 * rng.standard_normal(D),
        rng.standard_normal(D) * 0.3,
    )
    ep = seqops.EncoderLayerParams(params, *(arr(a) for a in en[1:]))
    out = seqops.transformer_encoder_layer(
        x, ep, num_heads=NUM_HEADS, activation="gelu", key_padding_mask=boolean(kpm)
    )
    assert_kept(backend, out, x, dtype)
    close(out, ref.transformer_encoder_layer(x_np, en, NUM_HEADS, activation="gelu", key_padding_mask=kpm))

    # layer norm, softmax, log_softmax
    out = seqops.layer_norm(x, ep.norm1_weight, ep.norm1_bias)
    assert_kept(backend, out, x, dtype)
    close(out, ref.layer_norm(x_np, en.norm1_weight, en.norm1_bias))
    for fn, reference in ((seqops.softmax, ref.softmax), (seqops.log_softmax, ref.log_softmax)):
        out = fn(x, axis=1)
        assert_kept(backend, out, x, dtype)
        close(out, reference(x_np, axis=1))
