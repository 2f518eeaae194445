"""Peer tests: seqops compositions against Hugging Face ``transformers`` modules.

Every module is built from a tiny random config (nothing is downloaded), its parameters
redrawn from a seeded generator (so norms, biases and embeddings are not the trivial initial
ones), put in ``eval()`` mode, and its forward pass compared with the same computation written
with seqops ops, on torch tensors and on NumPy arrays converted from the same weights (the
parameters go through the ``seqops.convert.*_from_hf`` converters, by key name):

* ``apply_rotary`` = Llama's ``apply_rotary_pos_emb`` (``"halves"``) and GPT-J's
  ``rotate_every_two`` form (``"interleaved"``, partial ``rotary_dim``); GPT-J's attention;
* a ``LlamaModel`` (embedding, decoder layers, final norm) with GQA, rotary and SwiGLU, with
  right and left padding, and its KV-cache decoding; greedy ``seqops.decode`` = ``generate``;
* a ``T5EncoderModel`` (relative position bias, unscaled attention, RMS norm; ReLU and
  gated-GELU feed-forwards);
* one ``BertLayer``, ``GPT2Block``, ``BartEncoderLayer`` and ``BartDecoderLayer``.

Single layers run with ``attn_implementation="eager"`` and the additive masks their models
would pass them; the whole models build their own masks (eager and SDPA).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed")
transformers = pytest.importorskip("transformers", reason="transformers is not installed")

from transformers.models.gptj import modeling_gptj  # noqa: E402
from transformers.models.llama import modeling_llama  # noqa: E402

import seqops  # noqa: E402
from seqops import convert  # noqa: E402

LIBRARIES = ("torch", "numpy")
DTYPES = ("float32", "float64")
TOL = {"float32": {"rtol": 1e-5, "atol": 1e-5}, "float64": {"rtol": 1e-10, "atol": 1e-10}}
# Some float64 peers still compute a step in float32 (Llama's and GPT-J's rotary angles,
# T5LayerNorm's mean square): they agree with float64 seqops to ~1e-7, not to float64 precision.
ROUNDED_TO_FLOAT32 = {"float32": TOL["float32"], "float64": {"rtol": 1e-6, "atol": 1e-6}}
TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}
B, L, V = 2, 11, 50  # batch, sequence length, vocabulary


# -- helpers ------------------------------------------------------------------------------


def _randomize(module, seed: int):
    """Redraw every parameter: matrices ~ N(0, 1/fan_in), 1-D weights (norm scales) around 1,
    biases ~ N(0, 0.1²); then ``eval()``."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype)
            if p.ndim >= 2:
                p.copy_(noise / math.sqrt(p.shape[-1]))
            elif name.endswith("weight"):
                p.copy_(1.0 + 0.2 * noise)
            else:
                p.copy_(0.1 * noise)
    return module.eval()


def _build(cls, config, dtype: str, seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    module = cls(config, **kwargs)
    return _randomize(module.to(TORCH_DTYPES[dtype]), seed)


def _as(x, library: str):
    """A torch tensor as ``library``'s array (NumPy: a copy)."""
    if library == "torch" or not isinstance(x, torch.Tensor):
        return x
    return x.detach().cpu().numpy()


def _weights(module, library: str) -> dict:
    return {k: _as(v, library) for k, v in module.state_dict().items()}


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _check(got, want, library: str, dtype: str, tol: dict | None = None) -> None:
    """``got`` is an array of ``library`` of ``dtype`` close to ``want``."""
    kind = torch.Tensor if library == "torch" else np.ndarray
    assert isinstance(got, kind), type(got)
    assert str(got.dtype).endswith(dtype), got.dtype
    np.testing.assert_allclose(_numpy(got), _numpy(want), **(tol or TOL[dtype]))


def _random(shape, dtype: str, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen, dtype=torch.float64).to(TORCH_DTYPES[dtype])


def _additive(allowed, dtype: str):
    """HF's additive mask from a boolean one (True = attend): 0 or the dtype's minimum."""
    zero = torch.zeros((), dtype=TORCH_DTYPES[dtype])
    return torch.where(allowed, zero, torch.finfo(TORCH_DTYPES[dtype]).min)


def _causal(length: int):
    return torch.tril(torch.ones(length, length, dtype=torch.bool))


PADDING = {  # (B, L) attention masks, 1 = real token
    "none": None,
    "right": torch.tensor([[1] * L, [1] * 7 + [0] * (L - 7)]),
    "left": torch.tensor([[1] * L, [0] * 3 + [1] * (L - 3)]),
}


# -- rotary embeddings ----------------------------------------------------------------------


def _llama_config(**overrides):
    options = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": V,
        "max_position_embeddings": 64,
        "pad_token_id": 0,
        "bos_token_id": 1,
        "eos_token_id": 2,
    }
    return transformers.LlamaConfig(**(options | overrides))


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("theta", [10000.0, 500000.0])
def test_apply_rotary_halves_is_llama_apply_rotary_pos_emb(library, dtype, theta):
    config = _llama_config(rope_parameters={"rope_type": "default", "rope_theta": theta})
    head_dim = config.hidden_size // config.num_attention_heads
    q = _random((B, 4, L, head_dim), dtype)
    positions = torch.arange(L)[None, :] + torch.tensor([[0], [7]])  # row 1 starts at 7 (a cache)
    cos, sin = modeling_llama.LlamaRotaryEmbedding(config)(q, positions)
    want, _ = modeling_llama.apply_rotary_pos_emb(q, q, cos, sin)
    got = seqops.apply_rotary(_as(q, library), _as(positions[:, None, :], library), base=theta)
    _check(got, want, library, dtype, ROUNDED_TO_FLOAT32[dtype])


def _gptj_config(rotary_dim: int):
    return transformers.GPTJConfig(
        n_embd=32, n_head=4, n_layer=1, rotary_dim=rotary_dim, vocab_size=V, n_positions=64,
        bos_token_id=0, eos_token_id=0, attn_pdrop=0.0, resid_pdrop=0.0, embd_pdrop=0.0,
        attn_implementation="eager",
    )  # fmt: skip


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rotary_dim", [8, 4])  # the whole head, half of it
def test_apply_rotary_interleaved_is_gptj_rotate_every_two(library, dtype, rotary_dim):
    config = _gptj_config(rotary_dim)
    x = _random((B, L, 4, 8), dtype)  # GPT-J rotates (batch, L, heads, head_dim)
    positions = torch.arange(L)[None, :] + torch.tensor([[0], [5]])
    sin, cos = modeling_gptj.GPTJRotaryEmbedding(config)(x, positions)
    rotated = modeling_gptj.apply_rotary_pos_emb(x[..., :rotary_dim], sin, cos)
    want = torch.cat([rotated, x[..., rotary_dim:]], dim=-1).transpose(1, 2)  # (B, heads, L, hd)
    got = seqops.apply_rotary(
        _as(x.transpose(1, 2), library),
        _as(positions[:, None, :], library),
        layout="interleaved",
        rotary_dim=rotary_dim,
    )
    _check(got, want, library, dtype, ROUNDED_TO_FLOAT32[dtype])


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("rotary_dim", [8, 4])
def test_gptj_attention_is_multi_head_attention_with_interleaved_rotary(library, rotary_dim):
    dtype = "float32"
    config = _gptj_config(rotary_dim)
    attn = _build(modeling_gptj.GPTJAttention, config, dtype, layer_idx=0)
    x = _random((B, L, 32), dtype)
    positions = torch.arange(L)[None, :].expand(B, L)
    embeddings = modeling_gptj.GPTJRotaryEmbedding(config)(x, positions)
    with torch.no_grad():
        want, _ = attn(x, embeddings, attention_mask=_additive(_causal(L), dtype))
    sd = _weights(attn, library)
    params = seqops.MHAParams(*(sd[f"{n}.weight"].T for n in ("q_proj", "k_proj", "v_proj", "out_proj")))
    got = seqops.multi_head_attention(
        *(_as(x, library),) * 3,
        params,
        num_heads=4,
        is_causal=True,
        rotary=seqops.Rotary(layout="interleaved", rotary_dim=rotary_dim),
    )
    _check(got, want, library, dtype)


# -- Llama --------------------------------------------------------------------------------


def _llama_layer(x, p, config, *, key_padding_mask=None, kv_cache=None):
    """One ``LlamaDecoderLayer`` with seqops ops; ``(out, cache)`` with a cache."""
    eps, theta = config.rms_norm_eps, config.rope_parameters["rope_theta"]
    n = seqops.rms_norm(x, p.attn_norm, eps=eps)
    attended = seqops.multi_head_attention(
        n, n, n, p.attn,
        num_heads=config.num_attention_heads, num_kv_heads=config.num_key_value_heads,
        rotary=seqops.Rotary(base=theta), is_causal=True,
        key_padding_mask=key_padding_mask, kv_cache=kv_cache,
    )  # fmt: skip
    attended, cache = attended if kv_cache is not None else (attended, None)
    h = x + attended
    f = seqops.rms_norm(h, p.ff_norm, eps=eps)
    out = h + seqops.gated_feed_forward(f, p.w_gate, p.w_up, p.w_down, p.b_gate, p.b_up, p.b_down)
    return out, cache


def _llama_model(sd, ids, config, *, key_padding_mask=None, prefix=""):
    """``LlamaModel.forward(ids).last_hidden_state`` with seqops ops."""
    x = sd[f"{prefix}embed_tokens.weight"][ids]
    for i in range(config.num_hidden_layers):
        p = convert.llama_layer_params_from_hf(sd, f"{prefix}layers.{i}")
        x, _ = _llama_layer(x, p, config, key_padding_mask=key_padding_mask)
    return seqops.rms_norm(x, sd[f"{prefix}norm.weight"], eps=config.rms_norm_eps)


def _ids(seed: int = 3, shape=(B, L)):
    return torch.randint(3, V, shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("padding", list(PADDING))
@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_llama_model_forward(library, dtype, padding, implementation):
    if (implementation, padding, dtype) == ("eager", "left", "float64"):
        pytest.skip(
            "HF's eager LlamaModel returns NaN for every position of a left-padded float64 row "
            "(its fully masked padded queries give NaN, which the next layer's values spread)"
        )
    config = _llama_config(attn_implementation=implementation, rms_norm_eps=1e-5)
    model = _build(transformers.LlamaModel, config, dtype)
    ids, attention_mask = _ids(), PADDING[padding]
    with torch.no_grad():
        want = model(input_ids=ids, attention_mask=attention_mask).last_hidden_state
    real = None if attention_mask is None else _as(attention_mask.bool(), library)
    got = _llama_model(_weights(model, library), _as(ids, library), config, key_padding_mask=real)
    if padding == "left":  # padded queries that see no key: ours give zeros, HF's are unspecified
        rows = attention_mask.bool()
        got, want = _numpy(got)[_numpy(rows)], want[rows]
        np.testing.assert_allclose(got, _numpy(want), **ROUNDED_TO_FLOAT32[dtype])
        return
    _check(got, want, library, dtype, ROUNDED_TO_FLOAT32[dtype])


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("length_kind", ["int", "array"])
def test_llama_kv_cache_decoding_equals_the_full_causal_pass(library, length_kind):
    """Prefill ``P`` tokens, then one-token steps with ``kv_cache=``: each step's hidden state
    is the full pass's (HF's ``last_hidden_state``) at that position."""
    dtype, prefill = "float32", 5
    config = _llama_config(attn_implementation="eager")
    model = _build(transformers.LlamaModel, config, dtype)
    ids = _ids()
    with torch.no_grad():
        want = model(input_ids=ids).last_hidden_state
    sd, x_ids = _weights(model, library), _as(ids, library)
    head_dim = config.hidden_size // config.num_attention_heads
    layers = [convert.llama_layer_params_from_hf(sd, f"layers.{i}") for i in range(config.num_hidden_layers)]
    like = sd["norm.weight"]
    caches = []
    for _ in layers:
        cache = seqops.kv_cache_init((B,), config.num_key_value_heads, 16, head_dim, like=like)
        if length_kind == "array":
            cache = cache._replace(length=_as(torch.tensor(0), library))
        caches.append(cache)

    def run(tokens):
        x = sd["embed_tokens.weight"][tokens]
        for i, p in enumerate(layers):
            x, caches[i] = _llama_layer(x, p, config, kv_cache=caches[i])
        return seqops.rms_norm(x, sd["norm.weight"], eps=config.rms_norm_eps)

    outputs = [run(x_ids[:, :prefill])]
    outputs += [run(x_ids[:, t : t + 1]) for t in range(prefill, L)]
    assert int(caches[0].length) == L
    got = torch.cat([torch.as_tensor(_numpy(o)) for o in outputs], dim=1)
    assert all(isinstance(o, torch.Tensor if library == "torch" else np.ndarray) for o in outputs)
    np.testing.assert_allclose(_numpy(got), _numpy(want), **TOL[dtype])


@pytest.mark.parametrize("library", LIBRARIES)
def test_greedy_decode_with_a_kv_cache_is_llama_generate(library):
    """``seqops.decode`` (greedy) over a seqops Llama with a KV cache = HF ``generate``."""
    dtype, new = "float32", 6
    config = _llama_config(attn_implementation="eager")
    model = _build(transformers.LlamaForCausalLM, config, dtype)
    prompt = _ids(seed=5, shape=(B, 4))
    with torch.no_grad():
        want = model.generate(
            prompt, max_new_tokens=new, do_sample=False, attention_mask=torch.ones_like(prompt),
            eos_token_id=None, pad_token_id=0,
        )[:, prompt.shape[1] :]  # fmt: skip
    sd = _weights(model, library)
    layers = [
        convert.llama_layer_params_from_hf(sd, f"model.layers.{i}") for i in range(config.num_hidden_layers)
    ]
    head_dim = config.hidden_size // config.num_attention_heads
    like = sd["model.norm.weight"]
    caches = [seqops.kv_cache_init((B,), config.num_key_value_heads, 16, head_dim, like=like) for _ in layers]

    def forward(tokens, caches):  # tokens (B, T) -> logits of the last (B, V), caches
        x = sd["model.embed_tokens.weight"][tokens]
        caches = list(caches)
        for i, p in enumerate(layers):
            x, caches[i] = _llama_layer(x, p, config, kv_cache=caches[i])
        x = seqops.rms_norm(x[:, -1], sd["model.norm.weight"], eps=config.rms_norm_eps)
        return x @ sd["lm_head.weight"].T, caches

    x_prompt = _as(prompt, library)
    _, caches = forward(x_prompt[:, :-1], caches)  # the last prompt token is decode's first
    got = seqops.decode(
        lambda tokens, state: forward(tokens[:, None], state), caches, x_prompt[:, -1], max_new_tokens=new
    )
    assert isinstance(got, torch.Tensor if library == "torch" else np.ndarray)
    np.testing.assert_array_equal(_numpy(got), _numpy(want))


# -- T5 -----------------------------------------------------------------------------------


def _t5_config(feed_forward_proj: str, implementation: str):
    return transformers.T5Config(
        vocab_size=V, d_model=32, d_kv=6, d_ff=48, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, relative_attention_max_distance=20,
        feed_forward_proj=feed_forward_proj, dropout_rate=0.0, layer_norm_epsilon=1e-6,
        attn_implementation=implementation, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
    )  # fmt: skip


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize(("num_buckets", "max_distance"), [(32, 128), (8, 20)])
def test_t5_relative_position_bias_is_compute_bias(library, bidirectional, num_buckets, max_distance):
    """Every bucket, the logarithmic ones past ``max_distance`` included, and a query offset."""
    config = _t5_config("relu", "eager")
    config.relative_attention_num_buckets, config.relative_attention_max_distance = num_buckets, max_distance
    config.is_decoder = not bidirectional
    attn = _build(
        transformers.models.t5.modeling_t5.T5Attention, config, "float32", has_relative_attention_bias=True
    )
    table = _as(attn.relative_attention_bias.weight.detach(), library)
    for q_len, k_len, offset in ((300, 300, 0), (1, 310, 299), (5, 40, 7)):
        with torch.no_grad():
            want = attn.compute_bias(q_len, k_len, past_seen_tokens=offset)[0]
        got = convert.t5_relative_position_bias(
            table, q_len, k_len, bidirectional=bidirectional, num_buckets=num_buckets,
            max_distance=max_distance, offset=offset,
        )  # fmt: skip
        _check(got, want, library, "float32", {"rtol": 0, "atol": 0})


def _t5_encoder(sd, ids, config, *, key_padding_mask=None):
    """``T5EncoderModel.forward(ids).last_hidden_state`` with seqops ops."""
    eps, heads = config.layer_norm_epsilon, config.num_heads
    blocks = [convert.t5_block_params_from_hf(sd, f"encoder.block.{i}") for i in range(config.num_layers)]
    bias = convert.t5_relative_position_bias(
        blocks[0].relative_attention_bias, ids.shape[1], ids.shape[1],
        num_buckets=config.relative_attention_num_buckets, max_distance=config.relative_attention_max_distance,
    )  # fmt: skip
    x = sd["shared.weight"][ids]
    for p in blocks:
        n = seqops.rms_norm(x, p.attn_norm, eps=eps)
        x = x + seqops.multi_head_attention(
            n, n, n, p.attn, num_heads=heads, scale=1.0, bias=bias, key_padding_mask=key_padding_mask
        )
        f = seqops.rms_norm(x, p.ff_norm, eps=eps)
        if p.w_gate is None:  # "relu": T5DenseActDense
            x = x + seqops.feed_forward(f, p.w_up, None, p.w_down, None, activation=config.dense_act_fn)
        else:  # "gated-gelu": T5DenseGatedActDense, dense_act_fn "gelu_new" (the tanh form)
            x = x + seqops.gated_feed_forward(f, p.w_gate, p.w_up, p.w_down, activation="gelu_tanh")
    return seqops.rms_norm(x, sd["encoder.final_layer_norm.weight"], eps=eps)


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("feed_forward_proj", ["relu", "gated-gelu"])
@pytest.mark.parametrize("padding", ["none", "right"])
@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_t5_encoder_model_forward(library, dtype, feed_forward_proj, padding, implementation):
    config = _t5_config(feed_forward_proj, implementation)
    model = _build(transformers.T5EncoderModel, config, dtype)
    ids, attention_mask = _ids(), PADDING[padding]
    with torch.no_grad():
        want = model(input_ids=ids, attention_mask=attention_mask).last_hidden_state
    real = None if attention_mask is None else _as(attention_mask.bool(), library)
    got = _t5_encoder(_weights(model, library), _as(ids, library), config, key_padding_mask=real)
    _check(got, want, library, dtype, ROUNDED_TO_FLOAT32[dtype])


# -- BERT, GPT-2, Bart layers -----------------------------------------------------------------


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("padding", ["none", "right"])
def test_bert_layer_is_transformer_encoder_layer(library, dtype, padding):
    config = transformers.BertConfig(
        hidden_size=32, num_attention_heads=4, intermediate_size=64, hidden_act="gelu",
        layer_norm_eps=1e-12, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        attn_implementation="eager",
    )  # fmt: skip
    layer = _build(transformers.models.bert.modeling_bert.BertLayer, config, dtype)
    x, attention_mask = _random((B, L, 32), dtype), PADDING[padding]
    hf_mask = None if attention_mask is None else _additive(attention_mask.bool()[:, None, None, :], dtype)
    with torch.no_grad():
        want = layer(x, attention_mask=hf_mask)
    params = convert.bert_layer_params_from_hf(_weights(layer, library))
    got = seqops.transformer_encoder_layer(
        _as(x, library), params, num_heads=4, activation="gelu", eps=config.layer_norm_eps,
        key_padding_mask=None if attention_mask is None else _as(attention_mask.bool(), library),
    )  # fmt: skip
    _check(got, want, library, dtype)


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layer_idx", [0, 2])  # scale_attn_by_inverse_layer_idx: 1/(layer_idx+1)
def test_gpt2_block_is_a_pre_norm_causal_composition(library, dtype, layer_idx):
    config = transformers.GPT2Config(
        n_embd=32, n_head=4, n_layer=3, n_inner=None, vocab_size=V, n_positions=64,
        activation_function="gelu_new", layer_norm_epsilon=1e-5, resid_pdrop=0.0, embd_pdrop=0.0,
        attn_pdrop=0.0, scale_attn_by_inverse_layer_idx=True, bos_token_id=0, eos_token_id=0,
        attn_implementation="eager",
    )  # fmt: skip
    block = _build(transformers.models.gpt2.modeling_gpt2.GPT2Block, config, dtype, layer_idx=layer_idx)
    x = _random((B, L, 32), dtype)
    with torch.no_grad():
        want = block(x, attention_mask=_additive(_causal(L), dtype))
    p = convert.gpt2_block_params_from_hf(_weights(block, library), prefix="")
    scale = (32 // 4) ** -0.5 / (layer_idx + 1)
    eps = config.layer_norm_epsilon
    h = _as(x, library)
    n = seqops.layer_norm(h, p.norm1_weight, p.norm1_bias, eps=eps)
    h = h + seqops.multi_head_attention(n, n, n, p.attn, num_heads=4, is_causal=True, scale=scale)
    n = seqops.layer_norm(h, p.norm2_weight, p.norm2_bias, eps=eps)
    composed = h + seqops.feed_forward(n, p.w1, p.b1, p.w2, p.b2, activation="gelu_tanh")
    _check(composed, want, library, dtype)
    layer = seqops.transformer_encoder_layer(
        _as(x, library), p, num_heads=4, norm_first=True, is_causal=True, activation="gelu_tanh",
        eps=eps, scale=scale,
    )  # fmt: skip
    _check(layer, want, library, dtype)


def _bart_config():
    return transformers.BartConfig(
        vocab_size=V, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=48, activation_function="gelu",
        dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, max_position_embeddings=64,
        attn_implementation="eager",
    )  # fmt: skip


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("padding", ["none", "right"])
def test_bart_encoder_layer_is_transformer_encoder_layer(library, dtype, padding):
    layer = _build(
        transformers.models.bart.modeling_bart.BartEncoderLayer, _bart_config(), dtype, layer_idx=0
    )
    x, attention_mask = _random((B, L, 32), dtype), PADDING[padding]
    hf_mask = None if attention_mask is None else _additive(attention_mask.bool()[:, None, None, :], dtype)
    with torch.no_grad():
        want = layer(x, hf_mask)
    params = convert.bart_encoder_layer_params_from_hf(_weights(layer, library))
    got = seqops.transformer_encoder_layer(
        _as(x, library), params, num_heads=4, activation="gelu",
        key_padding_mask=None if attention_mask is None else _as(attention_mask.bool(), library),
    )  # fmt: skip
    _check(got, want, library, dtype)


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("padding", ["none", "right"])
def test_bart_decoder_layer_is_transformer_decoder_layer(library, dtype, padding):
    """Causal self-attention (Bart's decoder passes a causal mask), cross-attention to a memory
    with padding, post-norm."""
    layer = _build(
        transformers.models.bart.modeling_bart.BartDecoderLayer, _bart_config(), dtype, layer_idx=0
    )
    S = 9
    x, memory = _random((B, L, 32), dtype), _random((B, S, 32), dtype, seed=2)
    memory_mask = None if padding == "none" else torch.tensor([[True] * S, [True] * 4 + [False] * (S - 4)])
    with torch.no_grad():
        want = layer(
            x, attention_mask=_additive(_causal(L), dtype), encoder_hidden_states=memory,
            encoder_attention_mask=None if memory_mask is None else _additive(memory_mask[:, None, None, :], dtype),
        )  # fmt: skip
    params = convert.bart_decoder_layer_params_from_hf(_weights(layer, library))
    got = seqops.transformer_decoder_layer(
        _as(x, library), _as(memory, library), params, num_heads=4, activation="gelu", is_causal=True,
        memory_key_padding_mask=None if memory_mask is None else _as(memory_mask, library),
    )  # fmt: skip
    _check(got, want, library, dtype)


# -- converters: key names and prefixes ---------------------------------------------------------


def test_converters_take_a_whole_model_state_dict_with_a_prefix():
    config = _llama_config()
    model = _build(transformers.LlamaModel, config, "float32")
    sd = _weights(model, "numpy")
    own = convert.llama_layer_params_from_hf(_weights(model.layers[1], "numpy"))  # its own state dict
    for prefix in ("layers.1.", "layers.1"):
        got = convert.llama_layer_params_from_hf(sd, prefix)
        for a, b in zip(got.attn, own.attn, strict=True):
            assert (a is None and b is None) or np.array_equal(a, b)
        assert np.array_equal(got.w_gate, own.w_gate) and np.array_equal(got.ff_norm, own.ff_norm)
    with pytest.raises(KeyError, match=r"no 'layers\.9\.mlp\.gate_proj\.weight' \(check the prefix\)"):
        convert.llama_layer_params_from_hf(sd, "layers.9")


def test_gpt2_converter_splits_c_attn_along_its_last_axis():
    sd = {
        "attn.c_attn.weight": np.arange(4 * 12.0).reshape(4, 12),
        "attn.c_attn.bias": np.arange(12.0),
        "attn.c_proj.weight": np.eye(4),
        "mlp.c_fc.weight": np.zeros((4, 16)),
        "mlp.c_proj.weight": np.zeros((16, 4)),
    }
    p = convert.gpt2_block_params_from_hf(sd)
    assert np.array_equal(p.attn.w_k, sd["attn.c_attn.weight"][:, 4:8])
    assert p.attn.b_v.tolist() == [8.0, 9.0, 10.0, 11.0]
    with pytest.raises(ValueError, match=r"must have shape \(D, 3D\)"):
        convert.gpt2_block_params_from_hf(sd | {"attn.c_attn.weight": np.zeros((12, 4))})


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("scenario", ["one row ends", "both rows end (early stop)"])
def test_decode_with_eos_pad_and_prompt_is_generate(library, scenario):
    """``decode(eos_token_id=, pad_token_id=, prompt=)`` = ``generate``: finished rows padded,
    the loop stopping once every row has finished, the prompt in front."""
    new = 8
    config = _llama_config(attn_implementation="eager")
    model = _build(transformers.LlamaForCausalLM, config, "float32")
    prompt = _ids(seed=7, shape=(B, 3))
    with torch.no_grad():
        free = model.generate(
            prompt, max_new_tokens=new, do_sample=False, attention_mask=torch.ones_like(prompt),
            eos_token_id=None, pad_token_id=0,
        )[:, prompt.shape[1] :]  # fmt: skip
    # end-of-sequence tokens taken from what the model generates: row 0 at step 2 (and row 1 at step 4)
    eos = [int(free[0, 2])] if scenario == "one row ends" else [int(free[0, 2]), int(free[1, 4])]
    pad = V - 1
    with torch.no_grad():
        want = model.generate(
            prompt, max_new_tokens=new, do_sample=False, attention_mask=torch.ones_like(prompt),
            eos_token_id=eos, pad_token_id=pad,
        )  # fmt: skip

    def step(tokens, so_far):  # the HF model itself, run on all tokens so far (no cache)
        so_far = torch.cat([so_far, torch.as_tensor(_numpy(tokens))[:, None]], dim=1)
        with torch.no_grad():
            logits = model(so_far, attention_mask=torch.ones_like(so_far)).logits[:, -1]
        return _as(logits, library), so_far

    got = seqops.decode(
        step, prompt[:, :-1], _as(prompt, library)[:, -1], max_new_tokens=new, eos_token_id=eos,
        pad_token_id=pad, prompt=_as(prompt, library),
    )  # fmt: skip
    assert got.shape == tuple(want.shape)
    if scenario != "one row ends":
        assert want.shape[1] < prompt.shape[1] + new  # generate stopped early, and so did decode
    np.testing.assert_array_equal(_numpy(got), _numpy(want))
