"""``examples/tiny_llama.py``: the same Llama-style decoder generates the same tokens on NumPy,
torch and JAX (jitted), and its KV-cache decoding equals recomputing every prefix."""

from __future__ import annotations

import ast
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLE = Path(__file__).parents[1] / "examples" / "tiny_llama.py"


def _load_example():
    spec = importlib.util.spec_from_file_location("tiny_llama", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_llama_generates_the_same_tokens_on_numpy_torch_and_jax():
    pytest.importorskip("torch", reason="torch is not installed")
    pytest.importorskip("jax", reason="jax is not installed")
    result = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=120, check=True
    )
    found = dict(re.findall(r"^(numpy|torch|jax): (\[\[.*\]\])$", result.stdout, re.M))
    assert sorted(found) == ["jax", "numpy", "torch"], result.stdout
    tokens = {name: ast.literal_eval(text) for name, text in found.items()}
    example = _load_example()
    assert np.shape(tokens["numpy"]) == (example.BATCH, example.NEW_TOKENS)
    assert tokens["torch"] == tokens["numpy"] == tokens["jax"]
    assert "identical on numpy, torch, jax" in result.stdout
    assert "step traced once by jax.jit" in result.stdout


def test_tiny_llama_cached_decoding_equals_recomputing_each_prefix():
    """Greedy tokens with the KV cache = greedy tokens from a full causal pass over each prefix
    (fresh, empty caches), on NumPy."""
    import seqops

    example = _load_example()
    params = example.init_params()
    prompt = np.random.default_rng(1).integers(0, example.VOCAB, size=(example.BATCH, example.PROMPT_LEN))
    cached = example.generate(params, prompt)
    sequence = prompt
    for _ in range(example.NEW_TOKENS):
        empty = [
            seqops.kv_cache_init(
                (example.BATCH,), example.KV_HEADS, example.MAX_LEN, example.HEAD_DIM, like=params["norm"]
            )
            for _ in range(example.LAYERS)
        ]
        logits, _ = example.forward(params, sequence, empty)
        sequence = np.concatenate([sequence, np.argmax(logits, axis=-1)[:, None]], axis=1)
    np.testing.assert_array_equal(cached, sequence[:, example.PROMPT_LEN :])
