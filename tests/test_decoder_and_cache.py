"""The decoder side: the decoder layer against torch's, grouped-query attention, bias and scale
against torch SDPA, and the KV cache (prefill + one-token steps = the full causal pass; one
trace under ``jax.jit``)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

import seqops

D, HEADS, FF = 8, 2, 16


def _torch() -> Any:
    return pytest.importorskip("torch")


# -- decoder layer = torch.nn.TransformerDecoderLayer -----------------------------------------
@pytest.mark.parametrize("norm_first", [False, True], ids=["post-norm", "pre-norm"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_decoder_layer_equals_torch(norm_first: bool, dtype: str) -> None:
    torch = _torch()
    torch.manual_seed(0)
    layer = torch.nn.TransformerDecoderLayer(
        D, HEADS, FF, dropout=0.0, batch_first=True, norm_first=norm_first, activation="gelu"
    ).to(getattr(torch, dtype))
    layer.eval()
    x = torch.randn(3, 5, D, dtype=layer.linear1.weight.dtype)
    memory = torch.randn(3, 7, D, dtype=x.dtype)
    memory_kpm = torch.zeros(3, 7, dtype=torch.bool)
    memory_kpm[1, 4:] = True  # torch: True = ignore
    causal = torch.nn.Transformer.generate_square_subsequent_mask(5, dtype=x.dtype)
    with torch.no_grad():
        expected = layer(x, memory, tgt_mask=causal, memory_key_padding_mask=memory_kpm)
    params = seqops.convert.decoder_layer_params_from_torch(dict(layer.state_dict()))
    tol = {"float64": 1e-12, "float32": 1e-5}[dtype]
    for lib in ("torch", "numpy"):
        arrays = (
            (x, memory, ~memory_kpm) if lib == "torch" else (x.numpy(), memory.numpy(), ~memory_kpm.numpy())
        )
        p = params if lib == "torch" else _to_numpy(params)
        got = seqops.transformer_decoder_layer(
            arrays[0], arrays[1], p, num_heads=HEADS, norm_first=norm_first, activation="gelu",
            memory_key_padding_mask=arrays[2],
        )  # fmt: skip
        np.testing.assert_allclose(np.asarray(got), expected.numpy(), rtol=tol, atol=tol)


def _to_numpy(value: Any) -> Any:
    if hasattr(value, "detach"):
        return value.detach().numpy()
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(_to_numpy(v) for v in value))
    return value


def test_decoder_layer_bad_input_names_the_argument() -> None:
    x, memory = np.ones((2, 3, D)), np.ones((2, 4, 6))
    attn = seqops.MHAParams(*(np.eye(D),) * 4)
    params = seqops.DecoderLayerParams(attn, attn, np.ones((D, FF)), None, np.ones((FF, D)), None)
    with pytest.raises(ValueError, match=r"`params.cross_attn.w_k` must have shape \(6, 8\)"):
        seqops.transformer_decoder_layer(x, memory, params, num_heads=2)
    with pytest.raises(TypeError, match="params must be a seqops.DecoderLayerParams"):
        seqops.transformer_decoder_layer(x, x, tuple(params), num_heads=2)
    with pytest.raises(ValueError, match=r"memory_key_padding_mask.*\(\.\.\., S\)"):
        seqops.transformer_decoder_layer(
            x, x, params, num_heads=2, memory_key_padding_mask=np.ones((2, 5), bool)
        )


# -- multi-head attention options against torch SDPA --------------------------------------------
def _gqa_params(rng: np.random.Generator, heads: int, kv_heads: int, dh: int, dtype: Any = np.float64) -> Any:
    def w(i: int, o: int) -> np.ndarray:
        return (rng.standard_normal((i, o)) / math.sqrt(i)).astype(dtype)

    return seqops.MHAParams(w(D, heads * dh), w(D, kv_heads * dh), w(D, kv_heads * dh), w(heads * dh, D))


def test_grouped_query_attention_bias_and_scale_equal_torch_sdpa() -> None:
    torch = _torch()
    rng = np.random.default_rng(1)
    heads, kv_heads, dh = 4, 2, 3
    p = _gqa_params(rng, heads, kv_heads, dh)
    x = rng.standard_normal((2, 6, D))
    bias = rng.standard_normal((2, heads, 6, 6))
    got = seqops.multi_head_attention(
        x, x, x, p, num_heads=heads, num_kv_heads=kv_heads, is_causal=True, bias=bias, scale=0.7
    )

    t = torch.from_numpy

    def split(y: Any, n: int) -> Any:  # (B, L, n*dh) -> (B, n, L, dh)
        return y.reshape(2, 6, n, dh).transpose(1, 2)

    q, k, v = (
        split(t(x) @ t(p.w_q), heads),
        split(t(x) @ t(p.w_k), kv_heads),
        split(t(x) @ t(p.w_v), kv_heads),
    )
    causal = torch.ones(6, 6, dtype=torch.bool).tril()
    attn_mask = torch.where(causal, t(bias), torch.tensor(-math.inf, dtype=torch.float64))
    heads_out = torch.nn.functional.scaled_dot_product_attention(
        q, k, v, attn_mask=attn_mask, scale=0.7, enable_gqa=True
    )
    expected = heads_out.transpose(1, 2).reshape(2, 6, heads * dh) @ t(p.w_o)
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-12, atol=1e-12)
    # On torch tensors the composite runs over torch-sdpa (the MHA-level fast path declines).
    args = (t(x), t(x), t(x), seqops.MHAParams(*(t(w) for w in p[:4])))
    options = {"num_heads": heads, "num_kv_heads": kv_heads, "is_causal": True, "bias": t(bias), "scale": 0.7}
    explained = seqops.explain(seqops.multi_head_attention, *args, **options)
    assert explained.chosen == "portable"
    assert any("grouped heads" in decision for _, decision in explained.decisions)
    np.testing.assert_allclose(
        seqops.multi_head_attention(*args, **options).numpy(), expected.numpy(), rtol=1e-12
    )


# -- the KV cache --------------------------------------------------------------------------------
PROMPT, STEPS, MAX_LEN = 4, 16, 24


def _llama_attention(rng: np.random.Generator) -> tuple[Any, dict[str, Any]]:
    params = _gqa_params(rng, 4, 2, 4, np.float32)
    options = {"num_heads": 4, "num_kv_heads": 2, "is_causal": True, "rotary": seqops.Rotary(base=500.0)}
    return params, options


def _cached_pass(
    xp_arrays: Any, x: Any, params: Any, options: dict[str, Any], like: Any, step: Any = None
) -> Any:
    """Prefill with the first PROMPT tokens, then one token at a time: the outputs, concatenated."""
    cache = seqops.kv_cache_init((x.shape[0],), 2, MAX_LEN, 4, like=like)
    out, cache = seqops.multi_head_attention(
        x[:, :PROMPT], x[:, :PROMPT], x[:, :PROMPT], params, kv_cache=cache, **options
    )
    outs = [out]
    run = step or (
        lambda token, cache: seqops.multi_head_attention(
            token, token, token, params, kv_cache=cache, **options
        )
    )
    for t in range(PROMPT, PROMPT + STEPS):
        out, cache = run(x[:, t : t + 1], cache)
        outs.append(out)
    return xp_arrays(outs), cache


@pytest.mark.parametrize("lib", ["numpy", "torch", "jax"])
def test_prefill_and_one_token_steps_equal_the_full_causal_pass(lib: str) -> None:
    rng = np.random.default_rng(2)
    params, options = _llama_attention(rng)
    x = rng.standard_normal((2, PROMPT + STEPS, D)).astype(np.float32)
    full = seqops.multi_head_attention(x, x, x, params, **options)
    if lib == "numpy":
        got, cache = _cached_pass(lambda o: np.concatenate(o, axis=1), x, params, options, x)
    elif lib == "torch":
        torch = _torch()
        tp = seqops.MHAParams(*(torch.from_numpy(w) for w in params[:4]))
        tx = torch.from_numpy(x)
        got, cache = _cached_pass(lambda o: torch.cat(o, dim=1).numpy(), tx, tp, options, tx)
    else:
        jnp = pytest.importorskip("jax.numpy")
        jp = seqops.MHAParams(*(jnp.asarray(w) for w in params[:4]))
        jx = jnp.asarray(x)
        got, cache = _cached_pass(lambda o: np.asarray(jnp.concatenate(o, axis=1)), jx, jp, options, jx)
    assert int(cache.length) == PROMPT + STEPS
    np.testing.assert_allclose(got, full, rtol=1e-5, atol=1e-5)


def test_a_jitted_decoding_step_traces_once_for_all_steps() -> None:
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    rng = np.random.default_rng(3)
    params, options = _llama_attention(rng)
    x = rng.standard_normal((2, PROMPT + STEPS, D)).astype(np.float32)
    jp = seqops.MHAParams(*(jnp.asarray(w) for w in params[:4]))
    traces = []

    @jax.jit
    def step(token: Any, cache: Any) -> Any:
        traces.append(1)  # runs once per trace
        return seqops.multi_head_attention(token, token, token, jp, kv_cache=cache, **options)

    def traced_step(token: Any, cache: Any) -> Any:
        # the length as a 0-d array: the same abstract input at every step
        return step(
            token, seqops.KVCache(cache.keys, cache.values, jnp.asarray(cache.length, dtype=jnp.int32))
        )

    jx = jnp.asarray(x)
    got, cache = _cached_pass(
        lambda o: np.asarray(jnp.concatenate(o, axis=1)), jx, jp, options, jx, traced_step
    )
    assert len(traces) == 1
    full = seqops.multi_head_attention(x, x, x, params, **options)
    np.testing.assert_allclose(got, full, rtol=1e-5, atol=1e-5)
    assert int(cache.length) == PROMPT + STEPS


def test_cache_errors_name_what_is_wrong() -> None:
    rng = np.random.default_rng(4)
    params, options = _llama_attention(rng)
    x = rng.standard_normal((2, 3, D)).astype(np.float32)
    cache = seqops.kv_cache_init((2,), 2, 4, 4, like=x)
    out, cache = seqops.multi_head_attention(x, x, x, params, kv_cache=cache, **options)
    with pytest.raises(ValueError, match=r"the cache is full: length 3 \+ 3 new keys > max_len 4"):
        seqops.multi_head_attention(x, x, x, params, kv_cache=cache, **options)
    with pytest.raises(ValueError, match="need_weights=True is not supported with kv_cache"):
        seqops.multi_head_attention(
            x[:, :1], x[:, :1], x[:, :1], params, kv_cache=cache, need_weights=True, **options
        )
    with pytest.raises(ValueError, match=r"`kv_cache.keys` must have shape \(2, 2, 4, 4\)"):
        bad = seqops.KVCache(cache.keys[:, :1], cache.values, 0)
        seqops.multi_head_attention(x, x, x, params, kv_cache=bad, **options)
    with pytest.raises(ValueError, match="rotary embeddings apply to self-attention"):
        seqops.multi_head_attention(
            x, np.ones((2, 5, D), np.float32), np.ones((2, 5, D), np.float32), params, **options
        )
    with pytest.raises(ValueError, match="positions= applies to rotary embeddings"):
        seqops.multi_head_attention(x, x, x, params, num_heads=4, num_kv_heads=2, positions=np.arange(3))
    with pytest.raises(ValueError, match="rotary_dim must be even and at most the feature size 4"):
        seqops.multi_head_attention(
            x, x, x, params, num_heads=4, num_kv_heads=2, rotary=seqops.Rotary(rotary_dim=6)
        )
    with pytest.raises(ValueError, match="num_kv_heads=3 must divide num_heads"):
        seqops.multi_head_attention(x, x, x, params, num_heads=4, num_kv_heads=3)


def test_apply_rotary_bad_input() -> None:
    x = np.ones((2, 5, 6))
    with pytest.raises(ValueError, match="rotary_dim must be even"):
        seqops.apply_rotary(x, np.arange(5), rotary_dim=3)
    with pytest.raises(TypeError, match="positions"):
        seqops.apply_rotary(x, np.arange(5.0))
    with pytest.raises(ValueError, match="`layout` must be one of 'halves', 'interleaved'"):
        seqops.apply_rotary(x, np.arange(5), layout="pairs")
    with pytest.raises(ValueError, match="positions"):
        seqops.apply_rotary(x, np.arange(4))


def test_the_translation_example_learns_to_reverse() -> None:
    """examples/translate_toy.py: an encoder-decoder of seqops layers trained with torch autograd."""
    import subprocess
    import sys
    from pathlib import Path

    _torch()
    script = Path(__file__).resolve().parents[1] / "examples" / "translate_toy.py"
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, check=True
    )
    exact = float(done.stdout.split("reversed exactly: ")[1].split("%")[0])
    assert exact >= 95.0, done.stdout
