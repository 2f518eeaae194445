"""Checks of the float64 conformance references against closed forms and torch.

Run with ``PYTHONPATH=conformance``. The torch tests skip when torch is missing.
"""

import math
from types import SimpleNamespace

import numpy as np
import pytest
from seqops_conformance import references as ref

RTOL = 1e-10
ATOL = 1e-12


def close(actual, expected):
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# --- NumPy-only checks -----------------------------------------------------------------


def test_softmax_closed_form():
    close(ref.softmax([0.0, math.log(3.0)]), [0.25, 0.75])
    close(ref.log_softmax([1000.0, 1000.0]), [math.log(0.5)] * 2)


def test_softmax_axis(rng):
    x = rng.standard_normal((3, 4, 5))
    close(ref.softmax(x, axis=1), np.moveaxis(ref.softmax(np.moveaxis(x, 1, -1)), -1, 1))
    close(np.exp(ref.log_softmax(x, axis=0)), ref.softmax(x, axis=0))
    close(ref.softmax(x, axis=0).sum(axis=0), np.ones((4, 5)))


def test_causal_mask_literals():
    t, f = True, False
    np.testing.assert_array_equal(ref.causal_mask(3), [[t, f, f], [t, t, f], [t, t, t]])
    np.testing.assert_array_equal(ref.causal_mask(2, 4), [[t, f, f, f], [t, t, f, f]])
    np.testing.assert_array_equal(ref.causal_mask(2, 4, align="bottom_right"), [[t, t, t, f], [t, t, t, t]])
    np.testing.assert_array_equal(ref.causal_mask(3, align="bottom_right"), ref.causal_mask(3))
    with pytest.raises(ValueError):
        ref.causal_mask(2, align="centre")


def test_padding_mask_literal():
    t, f = True, False
    np.testing.assert_array_equal(ref.padding_mask([2, 0, 3], 3), [[t, t, f], [f, f, f], [t, t, t]])


def test_sinusoidal_closed_form():
    pe = ref.sinusoidal_positional_encoding(6, 4, base=10000.0)
    p = np.arange(6.0)
    close(pe[:, 0], np.sin(p))
    close(pe[:, 1], np.cos(p))
    close(pe[:, 2], np.sin(p / 100.0))
    close(pe[:, 3], np.cos(p / 100.0))


def test_sinusoidal_layouts_and_positions():
    inter = ref.sinusoidal_positional_encoding(5, 6, base=50.0)
    halves = ref.sinusoidal_positional_encoding(5, 6, base=50.0, layout="halves")
    close(halves, inter[:, [0, 2, 4, 1, 3, 5]])
    picked = ref.sinusoidal_positional_encoding(3, 6, base=50.0, positions=np.array([4, 0, 2]))
    close(picked, inter[[4, 0, 2]])
    with pytest.raises(ValueError):
        ref.sinusoidal_positional_encoding(3, 5)


def test_layer_norm_standardises(rng):
    x = rng.standard_normal((2, 3, 8)) * 4 + 1
    y = ref.layer_norm(x, eps=0.0)
    close(y.mean(axis=-1), np.zeros((2, 3)))
    close(y.var(axis=-1), np.ones((2, 3)))


def test_sdpa_zero_queries_average_values(rng):
    v = rng.standard_normal((5, 3))
    k = rng.standard_normal((5, 4))
    out, weights = ref.scaled_dot_product_attention(np.zeros((2, 4)), k, v)
    close(weights, np.full((2, 5), 0.2))
    close(out, np.broadcast_to(v.mean(axis=0), (2, 3)))


def test_sdpa_fully_masked_rows_are_zero(rng):
    q, k, v = rng.standard_normal((3, 4)), rng.standard_normal((5, 4)), rng.standard_normal((5, 2))
    mask = np.ones((3, 5), dtype=bool)
    mask[1] = False
    bias = np.zeros((3, 5))
    bias[2] = -np.inf
    out, weights = ref.scaled_dot_product_attention(q, k, v, mask=mask, bias=bias)
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(weights))
    close(out[1:], 0.0)
    close(weights[1:], 0.0)
    close(weights[0].sum(), 1.0)


def test_sdpa_gqa_matches_repeated_heads(rng):
    q = rng.standard_normal((2, 6, 3, 4))
    k, v = rng.standard_normal((2, 2, 5, 4)), rng.standard_normal((2, 2, 5, 3))
    got = ref.scaled_dot_product_attention(q, k, v, enable_gqa=True)
    want = ref.scaled_dot_product_attention(q, np.repeat(k, 3, axis=1), np.repeat(v, 3, axis=1))
    close(got[0], want[0])
    close(got[1], want[1])
    with pytest.raises(ValueError):
        ref.scaled_dot_product_attention(
            q, k[:, :1].repeat(4, axis=1), v[:, :1].repeat(4, axis=1), enable_gqa=True
        )


def test_mha_single_identity_head_is_sdpa(rng):
    d = 4
    eye = np.eye(d)
    params = SimpleNamespace(w_q=eye, w_k=eye, w_v=eye, w_o=eye, b_q=None, b_k=None, b_v=None, b_o=None)
    q, kv = rng.standard_normal((2, 3, d)), rng.standard_normal((2, 5, d))
    out, weights = ref.multi_head_attention(q, kv, kv, params, num_heads=1, is_causal=True)
    want_out, want_w = ref.scaled_dot_product_attention(q, kv, kv, is_causal=True)
    close(out, want_out)
    close(weights[:, 0], want_w)


def test_feed_forward_rejects_unknown_activation():
    with pytest.raises(ValueError):
        ref.feed_forward(np.ones((1, 2)), np.eye(2), None, np.eye(2), None, activation="swiglu")


# --- Peer checks against torch (float64) -----------------------------------------------


def t64(torch, x):
    return torch.as_tensor(np.asarray(x), dtype=torch.float64)


def torch_weights(torch, q, k, scale, float_mask=None):
    """Softmax of torch logits, the peer for the weights SDPA does not return."""
    logits = scale * q @ k.transpose(-2, -1)
    if float_mask is not None:
        logits = logits + float_mask
    return torch.softmax(logits, dim=-1)


def test_softmax_against_torch(torch, rng):
    x = rng.standard_normal((3, 4, 5)) * 30
    for axis in (-1, 0, 1):
        close(ref.softmax(x, axis=axis), torch.softmax(t64(torch, x), dim=axis).numpy())
        close(ref.log_softmax(x, axis=axis), torch.log_softmax(t64(torch, x), dim=axis).numpy())


def test_sdpa_plain_and_scale_against_torch(torch, rng):
    F = torch.nn.functional
    q, k = rng.standard_normal((2, 3, 4, 8)), rng.standard_normal((2, 3, 6, 8))
    v = rng.standard_normal((2, 3, 6, 5))
    tq, tk, tv = (t64(torch, a) for a in (q, k, v))
    for scale in (None, 0.3):
        out, weights = ref.scaled_dot_product_attention(q, k, v, scale=scale)
        close(out, F.scaled_dot_product_attention(tq, tk, tv, scale=scale).numpy())
        s = 1 / math.sqrt(8) if scale is None else scale
        close(weights, torch_weights(torch, tq, tk, s).numpy())


def test_sdpa_broadcast_leading_dims_against_torch(torch, rng):
    F = torch.nn.functional
    q, k = rng.standard_normal((2, 3, 4, 8)), rng.standard_normal((1, 3, 6, 8))
    v = rng.standard_normal((3, 6, 5))
    out, weights = ref.scaled_dot_product_attention(q, k, v)
    assert out.shape == (2, 3, 4, 5) and weights.shape == (2, 3, 4, 6)
    want = F.scaled_dot_product_attention(*(t64(torch, a) for a in (q, k, v)))
    close(out, want.numpy())


def test_sdpa_bool_mask_against_torch(torch, rng):
    F = torch.nn.functional
    q, k, v = (rng.standard_normal((2, 3, n, 4)) for n in (5, 6, 6))
    mask = rng.random((2, 1, 5, 6)) < 0.7
    mask[..., 0] = True  # keep every row attendable so torch's weights peer is finite
    out, weights = ref.scaled_dot_product_attention(q, k, v, mask=mask)
    tq, tk, tv = (t64(torch, a) for a in (q, k, v))
    tmask = torch.as_tensor(mask)
    close(out, F.scaled_dot_product_attention(tq, tk, tv, attn_mask=tmask).numpy())
    float_mask = torch.zeros(mask.shape, dtype=torch.float64).masked_fill(~tmask, -math.inf)
    close(weights, torch_weights(torch, tq, tk, 0.5, float_mask).numpy())


def test_sdpa_bias_against_torch(torch, rng):
    F = torch.nn.functional
    q, k, v = (rng.standard_normal((3, n, 4)) for n in (5, 6, 6))
    bias = rng.standard_normal((5, 6))
    out, weights = ref.scaled_dot_product_attention(q, k, v, bias=bias)
    tq, tk, tv, tb = (t64(torch, a) for a in (q, k, v, bias))
    close(out, F.scaled_dot_product_attention(tq, tk, tv, attn_mask=tb).numpy())
    close(weights, torch_weights(torch, tq, tk, 0.5, tb).numpy())


@pytest.mark.parametrize("q_len, kv_len", [(5, 5), (3, 6), (6, 3)])
def test_sdpa_is_causal_against_torch(torch, rng, q_len, kv_len):
    F = torch.nn.functional
    q, k, v = (rng.standard_normal((2, n, 4)) for n in (q_len, kv_len, kv_len))
    out, _ = ref.scaled_dot_product_attention(q, k, v, is_causal=True)
    want = F.scaled_dot_product_attention(*(t64(torch, a) for a in (q, k, v)), is_causal=True)
    close(out, want.numpy())


def test_sdpa_mask_bias_causal_combined_against_torch(torch, rng):
    # torch refuses attn_mask together with is_causal, so fold all three into one float mask.
    F = torch.nn.functional
    q, k, v = (rng.standard_normal((2, 6, 4)) for _ in range(3))
    mask = rng.random((6, 6)) < 0.6
    bias = rng.standard_normal((2, 6, 6))
    out, weights = ref.scaled_dot_product_attention(q, k, v, mask=mask, bias=bias, is_causal=True)
    allowed = mask & np.tril(np.ones((6, 6), dtype=bool))
    float_mask = t64(torch, np.where(allowed, bias, -np.inf))
    tq, tk, tv = (t64(torch, a) for a in (q, k, v))
    close(out, F.scaled_dot_product_attention(tq, tk, tv, attn_mask=float_mask).numpy())
    live = allowed.any(axis=-1)
    close(weights[:, live], torch_weights(torch, tq, tk, 0.5, float_mask).numpy()[:, live])
    close(weights[:, ~live], 0.0)


def test_sdpa_fully_masked_rows_against_torch(torch, rng):
    # torch 2.13 SDPA (CPU flash and math backends) returns zeros for such rows, as we do.
    F = torch.nn.functional
    backends = torch.nn.attention.SDPBackend
    q, k, v = (rng.standard_normal((1, 2, n, 4)) for n in (3, 5, 5))  # fused kernels need 4-D
    mask = np.ones((3, 5), dtype=bool)
    mask[1] = False
    out, weights = ref.scaled_dot_product_attention(q, k, v, mask=mask)
    tq, tk, tv = (t64(torch, a) for a in (q, k, v))
    for backend in (backends.MATH, backends.FLASH_ATTENTION):
        with torch.nn.attention.sdpa_kernel(backend):
            want = F.scaled_dot_product_attention(tq, tk, tv, attn_mask=torch.as_tensor(mask))
        close(out, want.numpy())
    close(out[..., 1, :], 0.0)
    close(weights[..., 1, :], 0.0)


def test_sdpa_gqa_against_torch(torch, rng):
    F = torch.nn.functional
    q = rng.standard_normal((2, 6, 3, 4))
    k, v = rng.standard_normal((2, 2, 5, 4)), rng.standard_normal((2, 2, 5, 3))
    out, _ = ref.scaled_dot_product_attention(q, k, v, enable_gqa=True, is_causal=True)
    want = F.scaled_dot_product_attention(
        *(t64(torch, a) for a in (q, k, v)), enable_gqa=True, is_causal=True
    )
    close(out, want.numpy())


def test_layer_norm_against_torch(torch, rng):
    F = torch.nn.functional
    x, w, b = rng.standard_normal((2, 3, 8)), rng.standard_normal(8), rng.standard_normal(8)
    tx = t64(torch, x)
    close(ref.layer_norm(x), F.layer_norm(tx, (8,)).numpy())
    close(
        ref.layer_norm(x, w, b, eps=1e-3),
        F.layer_norm(tx, (8,), t64(torch, w), t64(torch, b), eps=1e-3).numpy(),
    )


@pytest.mark.parametrize("activation", ["relu", "gelu", "gelu_tanh"])
def test_activations_against_torch(torch, activation):
    # Identity weights make feed_forward return the bare activation.
    F = torch.nn.functional
    x = np.linspace(-6.0, 6.0, 49)[None, :]
    eye = np.eye(49)
    got = ref.feed_forward(x, eye, None, eye, None, activation=activation)
    peers = {
        "relu": F.relu,
        "gelu": lambda t: F.gelu(t, approximate="none"),
        "gelu_tanh": lambda t: F.gelu(t, approximate="tanh"),
    }
    close(got, peers[activation](t64(torch, x)).numpy())


def test_feed_forward_against_torch(torch, rng):
    F = torch.nn.functional
    x = rng.standard_normal((2, 3, 4))
    w1, b1 = rng.standard_normal((4, 7)), rng.standard_normal(7)
    w2, b2 = rng.standard_normal((7, 5)), rng.standard_normal(5)
    tx, tw1, tb1, tw2, tb2 = (t64(torch, a) for a in (x, w1, b1, w2, b2))
    want = F.linear(F.gelu(F.linear(tx, tw1.T, tb1)), tw2.T, tb2)
    close(ref.feed_forward(x, w1, b1, w2, b2, activation="gelu"), want.numpy())
    close(ref.feed_forward(x, w1, None, w2, None), (F.relu(tx @ tw1) @ tw2).numpy())


def mha_params_from_module(mha):
    """Split torch's packed in_proj into (D_in, D_out) weights applied as ``x @ w``."""
    w_q, w_k, w_v = (w.detach().numpy().T for w in mha.in_proj_weight.chunk(3))
    b_q, b_k, b_v = (b.detach().numpy() for b in mha.in_proj_bias.chunk(3))
    return SimpleNamespace(
        w_q=w_q,
        w_k=w_k,
        w_v=w_v,
        b_q=b_q,
        b_k=b_k,
        b_v=b_v,
        w_o=mha.out_proj.weight.detach().numpy().T,
        b_o=mha.out_proj.bias.detach().numpy(),
    )


def make_mha(torch, d, num_heads):
    torch.manual_seed(0)
    mha = torch.nn.MultiheadAttention(d, num_heads, batch_first=True, dtype=torch.float64)
    with torch.no_grad():  # torch zero-initialises the biases; randomise them to test them
        mha.in_proj_bias.normal_()
        mha.out_proj.bias.normal_()
    return mha


def run_torch_mha(torch, mha, q, k, v, **kw):
    out, weights = mha(
        t64(torch, q), t64(torch, k), t64(torch, v), need_weights=True, average_attn_weights=False, **kw
    )
    return out.detach().numpy(), weights.detach().numpy()


def test_mha_cross_attention_against_torch(torch, rng):
    d, heads = 8, 2
    mha = make_mha(torch, d, heads)
    q, kv = rng.standard_normal((2, 3, d)), rng.standard_normal((2, 5, d))
    out, weights = ref.multi_head_attention(q, kv, kv, mha_params_from_module(mha), heads)
    want_out, want_w = run_torch_mha(torch, mha, q, kv, kv)
    assert weights.shape == (2, heads, 3, 5)
    close(out, want_out)
    close(weights, want_w)


def test_mha_masks_against_torch(torch, rng):
    d, heads, n = 12, 3, 5
    mha = make_mha(torch, d, heads)
    x = rng.standard_normal((2, n, d))
    mask = rng.random((n, n)) < 0.7
    mask[:, 0] = True  # every query keeps a real key, so torch stays finite
    kpm = ref.padding_mask([5, 3], n)
    out, weights = ref.multi_head_attention(
        x, x, x, mha_params_from_module(mha), heads, mask=mask, key_padding_mask=kpm
    )
    # torch: bool attn_mask and key_padding_mask are True = ignore, the opposite of ours.
    want_out, want_w = run_torch_mha(
        torch,
        mha,
        x,
        x,
        x,
        attn_mask=torch.as_tensor(~mask),
        key_padding_mask=torch.as_tensor(~kpm),
    )
    close(out, want_out)
    close(weights, want_w)


def test_mha_is_causal_against_torch(torch, rng):
    # torch MHA treats is_causal only as a hint about attn_mask, so it needs the mask too.
    d, heads, n = 8, 4, 5
    mha = make_mha(torch, d, heads)
    x = rng.standard_normal((2, n, d))
    out, weights = ref.multi_head_attention(x, x, x, mha_params_from_module(mha), heads, is_causal=True)
    ignore = torch.as_tensor(~ref.causal_mask(n))
    want_out, want_w = run_torch_mha(torch, mha, x, x, x, attn_mask=ignore, is_causal=True)
    close(out, want_out)
    close(weights, want_w)


def test_mha_fully_padded_sequence(torch, rng):
    # torch MHA with need_weights=True returns NaN here; ours gives zero weights and b_o.
    d, heads = 8, 2
    mha = make_mha(torch, d, heads)
    params = mha_params_from_module(mha)
    x = rng.standard_normal((2, 4, d))
    kpm = ref.padding_mask([4, 0], 4)
    out, weights = ref.multi_head_attention(x, x, x, params, heads, key_padding_mask=kpm)
    want_out, want_w = run_torch_mha(torch, mha, x, x, x, key_padding_mask=torch.as_tensor(~kpm))
    assert np.isnan(want_out[1]).all()
    close(out[0], want_out[0])
    close(weights[0], want_w[0])
    close(weights[1], 0.0)
    close(out[1], np.broadcast_to(params.b_o, (4, d)))


def encoder_params_from_module(layer):
    def arr(t):
        return t.detach().numpy()

    return SimpleNamespace(
        attn=mha_params_from_module(layer.self_attn),
        w1=arr(layer.linear1.weight).T,
        b1=arr(layer.linear1.bias),
        w2=arr(layer.linear2.weight).T,
        b2=arr(layer.linear2.bias),
        norm1_weight=arr(layer.norm1.weight),
        norm1_bias=arr(layer.norm1.bias),
        norm2_weight=arr(layer.norm2.weight),
        norm2_bias=arr(layer.norm2.bias),
    )


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_encoder_layer_against_torch(torch, rng, norm_first, activation):
    d, heads, n = 8, 2, 5
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(
        d,
        heads,
        dim_feedforward=16,
        dropout=0.0,
        activation=activation,
        batch_first=True,
        norm_first=norm_first,
        dtype=torch.float64,
    ).eval()
    with torch.no_grad():  # non-trivial norm affine and attention biases
        for p in (
            layer.norm1.weight,
            layer.norm1.bias,
            layer.norm2.weight,
            layer.norm2.bias,
            layer.self_attn.in_proj_bias,
            layer.self_attn.out_proj.bias,
        ):
            p.normal_()
    params = encoder_params_from_module(layer)
    x = rng.standard_normal((2, n, d))
    kpm = ref.padding_mask([5, 3], n)

    got = ref.transformer_encoder_layer(
        x, params, heads, norm_first=norm_first, activation=activation, key_padding_mask=kpm
    )
    want = layer(t64(torch, x), src_key_padding_mask=torch.as_tensor(~kpm))
    close(got, want.detach().numpy())

    got = ref.transformer_encoder_layer(
        x, params, heads, norm_first=norm_first, activation=activation, is_causal=True
    )
    ignore = torch.as_tensor(~ref.causal_mask(n))
    want = layer(t64(torch, x), src_mask=ignore, is_causal=True)
    close(got, want.detach().numpy())
