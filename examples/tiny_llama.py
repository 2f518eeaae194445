"""A tiny Llama-style decoder written once with seqops, decoding greedily on NumPy, torch and JAX.

The model has Llama's pieces: RMS norm (``seqops.rms_norm``), rotary position embeddings and
grouped-query attention (``seqops.multi_head_attention(..., num_kv_heads=, rotary=)``), a SwiGLU
feed-forward (``seqops.gated_feed_forward``), and a KV cache per layer (``seqops.kv_cache_init``,
``kv_cache=``) so each decoding step feeds one token. ``seqops.decode`` runs the greedy loop.
The weights are random (a NumPy generator with a fixed seed), laid out as
``seqops.convert.PreNormBlockParams``, the parameters ``seqops.convert.llama_layer_params_from_hf``
reads from a Hugging Face ``LlamaDecoderLayer``.

The same ``forward`` runs on the three libraries; on JAX it runs under ``jax.jit``, the cache
``length`` a 0-d array so that the one-token decoding step traces once. The generated token
ids of each backend are printed and must be identical.

Run: ``python examples/tiny_llama.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import array_api_compat
import numpy as np

import seqops
from seqops.convert import PreNormBlockParams

VOCAB, WIDTH, HEADS, KV_HEADS, HIDDEN, LAYERS = 64, 32, 4, 2, 64, 2
HEAD_DIM = WIDTH // HEADS
MAX_LEN, BATCH, PROMPT_LEN, NEW_TOKENS = 32, 2, 5, 12
ROPE_THETA, EPS = 10000.0, 1e-6
ROTARY = seqops.Rotary(base=ROPE_THETA)


def init_params(seed: int = 0) -> dict[str, Any]:
    """Random float32 weights, ``(in, out)`` matrices scaled by ``1/sqrt(in)``."""
    rng = np.random.default_rng(seed)

    def dense(n_in: int, n_out: int) -> np.ndarray:
        return (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(np.float32)

    def norm() -> np.ndarray:
        return (1.0 + 0.1 * rng.standard_normal(WIDTH)).astype(np.float32)

    layers = [
        PreNormBlockParams(
            attn=seqops.MHAParams(
                dense(WIDTH, HEADS * HEAD_DIM),
                dense(WIDTH, KV_HEADS * HEAD_DIM),
                dense(WIDTH, KV_HEADS * HEAD_DIM),
                dense(HEADS * HEAD_DIM, WIDTH),
            ),
            attn_norm=norm(),
            w_gate=dense(WIDTH, HIDDEN),
            w_up=dense(WIDTH, HIDDEN),
            w_down=dense(HIDDEN, WIDTH),
            ff_norm=norm(),
        )
        for _ in range(LAYERS)
    ]
    return {
        "embed": rng.standard_normal((VOCAB, WIDTH)).astype(np.float32),
        "layers": layers,
        "norm": norm(),
        "lm_head": dense(WIDTH, VOCAB) * 4.0,  # sharper logits: well-separated greedy choices
    }


def forward(
    params: dict[str, Any], tokens: Any, caches: list[seqops.KVCache]
) -> tuple[Any, list[seqops.KVCache]]:
    """The logits ``(B, V)`` after the last of ``tokens (B, T)``, and the caches with them added."""
    xp = array_api_compat.array_namespace(params["embed"])
    batch, length = tokens.shape
    x = xp.reshape(xp.take(params["embed"], xp.reshape(tokens, (-1,)), axis=0), (batch, length, WIDTH))
    updated = []
    for p, cache in zip(params["layers"], caches, strict=True):
        n = seqops.rms_norm(x, p.attn_norm, eps=EPS)
        attended, cache = seqops.multi_head_attention(
            n, n, n, p.attn, num_heads=HEADS, num_kv_heads=KV_HEADS, rotary=ROTARY, is_causal=True,
            kv_cache=cache,
        )  # fmt: skip
        x = x + attended
        x = x + seqops.gated_feed_forward(seqops.rms_norm(x, p.ff_norm, eps=EPS), p.w_gate, p.w_up, p.w_down)
        updated.append(cache)
    last = seqops.rms_norm(x[:, -1, :], params["norm"], eps=EPS)
    return last @ params["lm_head"], updated


def generate(params: dict[str, Any], prompt: Any, run: Callable[..., Any] = forward) -> Any:
    """Greedy continuation of ``prompt (B, P)``: the prompt but its last token fills the caches,
    then ``seqops.decode`` feeds one token a step (the last prompt token first)."""
    xp = array_api_compat.array_namespace(prompt)
    like = params["norm"]
    caches = [
        seqops.kv_cache_init((BATCH,), KV_HEADS, MAX_LEN, HEAD_DIM, like=like)._replace(
            length=xp.asarray(0, device=array_api_compat.device(prompt))  # a 0-d array: traced, not baked in
        )
        for _ in range(LAYERS)
    ]
    _, caches = run(params, prompt[:, :-1], caches)

    def step(tokens: Any, caches: list[seqops.KVCache]) -> tuple[Any, list[seqops.KVCache]]:
        return run(params, tokens[:, None], caches)

    return seqops.decode(step, caches, prompt[:, -1], max_new_tokens=NEW_TOKENS)


def _map(tree: Any, fn: Callable[[np.ndarray], Any]) -> Any:
    """``fn`` applied to every array of a structure of dicts, lists and NamedTuples."""
    if isinstance(tree, dict):
        return {k: _map(v, fn) for k, v in tree.items()}
    if isinstance(tree, tuple):
        return type(tree)(*(_map(v, fn) for v in tree))
    if isinstance(tree, list):
        return [_map(v, fn) for v in tree]
    return None if tree is None else fn(tree)


def run_numpy(params: dict[str, Any], prompt: np.ndarray) -> list[list[int]]:
    return generate(params, prompt).tolist()


def run_torch(params: dict[str, Any], prompt: np.ndarray) -> list[list[int]]:
    import torch

    tensors = _map(params, torch.from_numpy)
    return generate(tensors, torch.from_numpy(prompt)).tolist()


TRACES: dict[int, int] = {}  # tokens per call -> how many times JAX traced forward for it


def run_jax(params: dict[str, Any], prompt: np.ndarray) -> list[list[int]]:
    import jax
    import jax.numpy as jnp

    def traced_forward(params: dict[str, Any], tokens: Any, caches: list[seqops.KVCache]) -> Any:
        TRACES[tokens.shape[1]] = TRACES.get(tokens.shape[1], 0) + 1  # runs only while tracing
        return forward(params, tokens, caches)

    arrays = _map(params, jnp.asarray)
    ids = generate(arrays, jnp.asarray(prompt), run=jax.jit(traced_forward))
    assert TRACES.get(1) == 1, f"the one-token step traced {TRACES.get(1)} times, not once"
    return np.asarray(ids).tolist()


def main() -> None:
    params = init_params()
    prompt = np.random.default_rng(1).integers(0, VOCAB, size=(BATCH, PROMPT_LEN))
    print(f"prompt: {prompt.tolist()}")
    results = {}
    for name, run in (("numpy", run_numpy), ("torch", run_torch), ("jax", run_jax)):
        try:
            start = time.perf_counter()
            results[name] = run(params, prompt)
        except ImportError as error:
            print(f"{name}: skipped ({error})")
            continue
        print(f"{name}: {results[name]}")
        note = ", the step traced once by jax.jit" if name == "jax" else ""
        print(f"  ({time.perf_counter() - start:.2f} s{note})")
    reference = results["numpy"]
    assert all(ids == reference for ids in results.values()), results
    print(f"identical on {', '.join(results)}")


if __name__ == "__main__":
    main()
