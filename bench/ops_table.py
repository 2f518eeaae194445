"""Every public op × {NumPy, torch, JAX jit, Keras}: seqops / the native call.

Each row builds float32 inputs once, then times ``seqops.<op>`` against what a user would
write instead on that library (``torch.nn.functional`` or a ``torch.nn`` module, ``jax.nn``/
``lax`` under ``jax.jit``, plain NumPy), interleaved round by round in one process
(``bench/run.py: interleaved``). The ``keras`` column times seqops on JAX (jitted) against
``keras.ops`` on the JAX backend (jitted), for the ops ``keras.ops`` has. A cell without a
natural alternative is recorded as skipped with the reason (the row raises ``LookupError``).
A cell's ratio is the median over rounds of the paired ratio (seqops' time / the native time
of the same round); ``ratio_of_medians`` beside it is the ratio of the two medians;
an op with no alternative on any library is in ``NO_NATIVE``, so the table lists every op
of ``seqops.declared_ops()`` (``table`` raises if one is missing). Run it with
``python bench/run.py --only ops_table`` (part of the full ``python bench/run.py``).
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Callable
from typing import Any

import numpy as np

Timed = Callable[[], Any]
# name -> library -> (seqops call, native call): built lazily, the libraries imported on demand.
Row = Callable[[str, Any], tuple[Timed, Timed]]

RNG = np.random.default_rng(0)


def _f32(*shape: int, scale: float = 1.0) -> np.ndarray:
    return (scale * RNG.standard_normal(shape)).astype(np.float32)


def _keras() -> Any:
    """``keras.ops`` on the JAX backend (ImportError, so the cell is skipped, without it)."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras

    if keras.backend.backend() != "jax":
        raise ImportError(f"keras runs on {keras.backend.backend()}, not jax")
    return keras.ops


#: Where the torch rows put their inputs (``bench/run.py``'s ``gpu_ops_table`` sets ``"cuda"``;
#: JAX uses its default device, the GPU where jax has CUDA).
TORCH_DEVICE = "cpu"


def _lib(name: str) -> tuple[Any, Callable[[np.ndarray], Any]]:
    """The array module of ``name`` and a converter from NumPy (Keras: JAX arrays)."""
    if name == "torch":
        import torch

        if TORCH_DEVICE == "cpu":
            return torch, torch.from_numpy
        return torch, lambda a: torch.from_numpy(a).to(TORCH_DEVICE)
    if name in ("jax", "keras"):
        if name == "keras":
            _keras()
        import jax.numpy as jnp

        return jnp, jnp.asarray
    return np, np.asarray


def _jit(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    if name in ("jax", "keras"):
        import jax

        return jax.jit(fn)
    return fn


def _pair(
    name: str,
    ours: Callable[..., Any],
    native: Callable[..., Any],
    *args: Any,
    native_args: tuple | None = None,
) -> tuple[Timed, Timed]:
    """Both calls (jitted on JAX) on ``args``; ``native_args`` when the native call takes its own layout."""
    a, b = _jit(name, ours), _jit(name, native)
    theirs = args if native_args is None else native_args
    return (lambda: a(*args)), (lambda: b(*theirs))


def _perm(x: Any, *axes: int) -> Any:
    return x.permute(*axes) if hasattr(x, "permute") else x.transpose(axes)


def _sigmoid(name: str) -> Callable[[Any], Any]:
    if name == "torch":
        return __import__("torch").sigmoid
    if name == "jax":
        return __import__("jax").nn.sigmoid
    return lambda z: 1.0 / (1.0 + np.exp(-z))


def _softmax(name: str) -> Callable[[Any], Any]:
    """Softmax over the last axis as the library's user writes it."""
    if name == "torch":
        return lambda s: __import__("torch").softmax(s, -1)
    if name == "jax":
        return lambda s: __import__("jax").nn.softmax(s, axis=-1)
    return lambda s: (lambda e: e / e.sum(-1, keepdims=True))(np.exp(s - s.max(-1, keepdims=True)))


def _gelu_exact(name: str) -> Callable[[Any], Any]:
    if name == "torch":
        return __import__("torch").nn.functional.gelu
    if name == "jax":
        return lambda x: __import__("jax").nn.gelu(x, approximate=False)
    try:
        from scipy.special import erf
    except ImportError:
        erf = np.vectorize(math.erf, otypes=[np.float32])
    return lambda x: 0.5 * x * (1.0 + erf(x / np.float32(math.sqrt(2.0))))


def _layer_norm(xp: Any, x: Any, w: Any, b: Any, eps: float = 1e-5) -> Any:
    centred = x - x.mean(-1, keepdims=True)
    return centred / xp.sqrt((centred * centred).mean(-1, keepdims=True) + eps) * w + b


def _mha_params(seqops: Any, to: Callable[[np.ndarray], Any], d: int) -> Any:
    """Random :class:`seqops.MHAParams` ``D -> D`` with biases."""
    weights = (to(_f32(d, d, scale=1 / math.sqrt(d))) for _ in range(4))
    return seqops.MHAParams(*weights, *(to(_f32(d, scale=0.1)) for _ in range(4)))


def _plain_mha(
    xp: Any, softmax: Callable[[Any], Any], q_in: Any, kv_in: Any, p: Any, heads: int, bias: Any = None
) -> Any:
    """Project, split heads, ``softmax(q kᵀ / √dh + bias) v``, merge, project out (any leading dims)."""

    def split(x: Any) -> Any:  # (..., L, D) -> (..., heads, L, D / heads)
        return xp.swapaxes(x.reshape(*x.shape[:-1], heads, x.shape[-1] // heads), -2, -3)

    q, k, v = split(q_in @ p.w_q + p.b_q), split(kv_in @ p.w_k + p.b_k), split(kv_in @ p.w_v + p.b_v)
    s = (q @ xp.swapaxes(k, -1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
    if bias is not None:
        s = s + bias
    o = xp.swapaxes(softmax(s) @ v, -2, -3)
    return o.reshape(*o.shape[:-2], -1) @ p.w_o + p.b_o


def _causal_bias(xp: Any, length: int) -> Any:
    """0 on and below the diagonal, -inf above (float32)."""
    return xp.asarray(np.triu(np.full((length, length), -np.inf, dtype=np.float32), 1))


def softmax(name: str, seqops: Any) -> tuple[Timed, Timed]:
    xp, to = _lib(name)
    x = to(_f32(64, 32000, scale=3.0))
    native = {
        "torch": lambda x: xp.softmax(x, -1),
        "jax": lambda x: __import__("jax").nn.softmax(x, axis=-1),
        "numpy": _softmax("numpy"),
        "keras": lambda x: _keras().softmax(x, axis=-1),
    }[name]
    return _pair(name, seqops.softmax, native, x)


def log_softmax(name: str, seqops: Any) -> tuple[Timed, Timed]:
    xp, to = _lib(name)
    x = to(_f32(64, 32000, scale=3.0))

    def plain(x: Any) -> Any:
        shifted = x - x.max(-1, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))

    native = {
        "torch": lambda x: xp.log_softmax(x, -1),
        "jax": lambda x: __import__("jax").nn.log_softmax(x, axis=-1),
        "numpy": plain,
        "keras": lambda x: _keras().log_softmax(x, axis=-1),
    }[name]
    return _pair(name, seqops.log_softmax, native, x)


def cross_entropy(name: str, seqops: Any) -> tuple[Timed, Timed]:
    xp, to = _lib(name)
    logits, targets = to(_f32(512, 32000, scale=2.0)), to(RNG.integers(0, 32000, 512))

    def jax_native(logits: Any, targets: Any) -> Any:
        import jax

        lp = jax.nn.log_softmax(logits, axis=-1)
        return -xp.take_along_axis(lp, targets[:, None], axis=-1).mean()

    def numpy_native(logits: Any, targets: Any) -> Any:
        shifted = logits - logits.max(-1, keepdims=True)
        lse = np.log(np.exp(shifted).sum(-1))
        return (lse - shifted[np.arange(len(targets)), targets]).mean()

    native = {
        "torch": lambda lo, t: xp.nn.functional.cross_entropy(lo, t),
        "jax": jax_native,
        "numpy": numpy_native,
        "keras": lambda lo, t: _keras().mean(
            _keras().sparse_categorical_crossentropy(t, lo, from_logits=True)
        ),
    }[name]
    return _pair(name, seqops.cross_entropy, native, logits, targets)


def layer_norm(name: str, seqops: Any) -> tuple[Timed, Timed]:
    xp, to = _lib(name)
    x, w, b = to(_f32(64, 128, 1024)), to(_f32(1024)), to(_f32(1024))

    def plain(x: Any, w: Any, b: Any) -> Any:
        mean = x.mean(-1, keepdims=True)
        centred = x - mean
        return centred / xp.sqrt((centred * centred).mean(-1, keepdims=True) + 1e-5) * w + b

    native = {
        "torch": lambda x, w, b: xp.nn.functional.layer_norm(x, (1024,), w, b),
        "keras": lambda x, w, b: _keras().layer_normalization(x, w, b, axis=-1, epsilon=1e-5),
    }.get(name, plain)
    return _pair(name, lambda x, w, b: seqops.layer_norm(x, w, b), native, x, w, b)


def rms_norm(name: str, seqops: Any) -> tuple[Timed, Timed]:
    xp, to = _lib(name)
    x, w = to(_f32(64, 128, 1024)), to(_f32(1024))

    def plain(x: Any, w: Any) -> Any:
        return x / xp.sqrt((x * x).mean(-1, keepdims=True) + 1e-6) * w

    native = {
        "torch": lambda x, w: xp.nn.functional.rms_norm(x, (1024,), w, 1e-6),
        "keras": lambda x, w: _keras().rms_normalization(x, w, axis=-1, epsilon=1e-6),
    }.get(name, plain)
    return _pair(name, lambda x, w: seqops.rms_norm(x, w), native, x, w)


def gelu(name: str, seqops: Any) -> tuple[Timed, Timed]:
    xp, to = _lib(name)
    x = to(_f32(64, 128, 1024))
    native = (lambda x: _keras().gelu(x, approximate=False)) if name == "keras" else _gelu_exact(name)
    return _pair(name, seqops.gelu, native, x)


def silu(name: str, seqops: Any) -> tuple[Timed, Timed]:
    xp, to = _lib(name)
    x = to(_f32(64, 128, 1024))
    native = {
        "torch": lambda x: xp.nn.functional.silu(x),
        "jax": lambda x: __import__("jax").nn.silu(x),
        "numpy": lambda x: x / (1.0 + np.exp(-x)),
        "keras": lambda x: _keras().silu(x),
    }[name]
    return _pair(name, seqops.silu, native, x)


def scaled_dot_product_attention(name: str, seqops: Any) -> tuple[Timed, Timed]:
    xp, to = _lib(name)
    q, k, v = (to(_f32(2, 8, 1024, 64)) for _ in range(3))

    def plain(q: Any, k: Any, v: Any) -> Any:
        s = (q * np.float32(1 / 8)) @ xp.swapaxes(k, -1, -2)
        e = xp.exp(s - s.max(-1, keepdims=True))
        return (e / e.sum(-1, keepdims=True)) @ v

    ours = lambda q, k, v: seqops.scaled_dot_product_attention(q, k, v)  # noqa: E731
    if name == "keras":  # keras takes (B, T, N, H): its own layout, transposed here once
        bthd = tuple(xp.swapaxes(a, 1, 2).copy() for a in (q, k, v))
        return _pair(name, ours, _keras().dot_product_attention, q, k, v, native_args=bthd)
    native = xp.nn.functional.scaled_dot_product_attention if name == "torch" else plain
    return _pair(name, ours, native, q, k, v)


def gated_feed_forward(name: str, seqops: Any) -> tuple[Timed, Timed]:
    xp, to = _lib(name)
    x = to(_f32(2, 256, 512))
    wg, wu, wd = (
        to(_f32(512, 1376, scale=0.04)),
        to(_f32(512, 1376, scale=0.04)),
        to(_f32(1376, 512, scale=0.03)),
    )

    def plain(x: Any, wg: Any, wu: Any, wd: Any) -> Any:
        g = x @ wg
        return (g / (1.0 + xp.exp(-g)) * (x @ wu)) @ wd

    return _pair(name, lambda *a: seqops.gated_feed_forward(*a), plain, x, wg, wu, wd)


def apply_rotary(name: str, seqops: Any) -> tuple[Timed, Timed]:
    xp, to = _lib(name)
    x, positions = to(_f32(2, 8, 1024, 64)), to(np.arange(1024))
    inv = to((1.0 / 10000.0 ** (np.arange(0, 64, 2) / 64)).astype(np.float32))

    def plain(x: Any, positions: Any) -> Any:  # Hugging Face's rotate_half form, in float32
        freqs = (positions[:, None].astype(np.float32) if name == "numpy" else positions[:, None]) * inv
        angles = xp.concatenate([freqs, freqs], axis=-1) if name != "torch" else xp.cat([freqs, freqs], -1)
        cos, sin = xp.cos(angles), xp.sin(angles)
        x1, x2 = x[..., :32], x[..., 32:]
        rotated = xp.concatenate([-x2, x1], axis=-1) if name != "torch" else xp.cat([-x2, x1], -1)
        return x * cos + rotated * sin

    return _pair(name, lambda x, p: seqops.apply_rotary(x, p), plain, x, positions)


def masked_conv2d(name: str, seqops: Any) -> tuple[Timed, Timed]:
    if name == "numpy":
        raise LookupError("no plain NumPy convolution")
    xp, to = _lib(name)
    x, w, b = to(_f32(8, 16, 32, 32)), to(_f32(32, 16, 5, 5, scale=0.05)), to(_f32(32))
    mask = to(np.asarray(__import__("seqops").pixelcnn_mask(5, 16, 32, mask_type="B"), dtype=np.float32))
    if name == "torch":

        def native(x: Any, w: Any, b: Any) -> Any:
            return xp.nn.functional.conv2d(x, w * mask, b, padding=2)
    else:
        from jax import lax

        def native(x: Any, w: Any, b: Any) -> Any:
            out = lax.conv_general_dilated(x, w * mask, (1, 1), ((2, 2), (2, 2)))
            return out + b[None, :, None, None]

    return _pair(name, lambda x, w, b: seqops.masked_conv2d(x, w, b, mask_type="B"), native, x, w, b)


def sample_logits(name: str, seqops: Any) -> tuple[Timed, Timed]:
    if name == "jax":
        raise LookupError("a jitted draw needs a key argument: see the torch and NumPy rows")
    xp, to = _lib(name)
    logits = to(_f32(64, 32000, scale=3.0))
    if name == "torch":
        gen = xp.Generator().manual_seed(0)

        def native(logits: Any) -> Any:
            values, ids = xp.topk(logits, 50, dim=-1)
            picked = xp.multinomial(xp.softmax(values, -1), 1, generator=gen)
            return ids.gather(-1, picked)[:, 0]

        return (lambda: seqops.sample_logits(logits, rng=gen, top_k=50)), (lambda: native(logits))
    rng = np.random.default_rng(0)

    def plain(logits: Any) -> Any:
        top = np.argpartition(logits, -50, axis=-1)[:, -50:]
        values = np.take_along_axis(logits, top, -1)
        gumbel = -np.log(-np.log(rng.random(values.shape)))
        return np.take_along_axis(top, np.argmax(values + gumbel, -1)[:, None], -1)[:, 0]

    return (lambda: seqops.sample_logits(logits, rng=rng, top_k=50)), (lambda: plain(logits))


def relu(name: str, seqops: Any) -> tuple[Timed, Timed]:
    xp, to = _lib(name)
    x = to(_f32(64, 128, 1024))
    native = {
        "torch": lambda x: xp.nn.functional.relu(x),
        "jax": lambda x: __import__("jax").nn.relu(x),
        "numpy": lambda x: np.maximum(x, np.float32(0)),
        "keras": lambda x: _keras().relu(x),
    }[name]
    return _pair(name, seqops.relu, native, x)


def feed_forward(name: str, seqops: Any) -> tuple[Timed, Timed]:
    """Exact-GELU FFN; torch's ``F.linear`` gets its ``(out, in)`` weights, transposed once."""
    xp, to = _lib(name)
    x = to(_f32(2, 256, 512))
    w1, b1, w2, b2 = (
        to(_f32(512, 2048, scale=0.04)),
        to(_f32(2048)),
        to(_f32(2048, 512, scale=0.02)),
        to(_f32(512)),
    )
    act = _gelu_exact(name)

    def ours(x: Any, w1: Any, b1: Any, w2: Any, b2: Any) -> Any:
        return seqops.feed_forward(x, w1, b1, w2, b2, activation="gelu")

    if name == "torch":
        f = xp.nn.functional
        torch_args = (x, w1.T.contiguous(), b1, w2.T.contiguous(), b2)
        native = lambda x, w1, b1, w2, b2: f.linear(act(f.linear(x, w1, b1)), w2, b2)  # noqa: E731
        return _pair(name, ours, native, x, w1, b1, w2, b2, native_args=torch_args)
    return _pair(name, ours, lambda x, w1, b1, w2, b2: act(x @ w1 + b1) @ w2 + b2, x, w1, b1, w2, b2)


def multi_head_attention(name: str, seqops: Any) -> tuple[Timed, Timed]:
    """Self-attention, 8 heads, D 512; torch: ``nn.MultiheadAttention`` (eval, no grad: its fast path)."""
    xp, to = _lib(name)
    x = to(_f32(2, 512, 512))
    if name == "torch":
        from seqops.convert import mha_params_from_torch

        xp.manual_seed(0)
        mha = xp.nn.MultiheadAttention(512, 8, batch_first=True).eval().requires_grad_(False)
        p = mha_params_from_torch(
            mha.in_proj_weight, mha.in_proj_bias, mha.out_proj.weight, mha.out_proj.bias
        )
        return (lambda: seqops.multi_head_attention(x, x, x, p, num_heads=8)), (
            lambda: mha(x, x, x, need_weights=False)[0]
        )
    p, softmax = _mha_params(seqops, to, 512), _softmax(name)

    def ours(x: Any, p: Any) -> Any:
        return seqops.multi_head_attention(x, x, x, p, num_heads=8)

    return _pair(name, ours, lambda x, p: _plain_mha(xp, softmax, x, x, p, 8), x, p)


def _ffn_relu(xp: Any, x: Any, p: Any) -> Any:
    return xp.maximum(x @ p.w1 + p.b1, 0.0) @ p.w2 + p.b2


def transformer_encoder_layer(name: str, seqops: Any) -> tuple[Timed, Timed]:
    """Post-norm, ReLU, D 512, 8 heads, F 2048. torch: ``nn.TransformerEncoderLayer`` in eval mode
    with ``requires_grad=False`` (its fused fast path), seqops' params converted from it."""
    xp, to = _lib(name)
    x = to(_f32(2, 256, 512))
    ours = lambda x, p: seqops.transformer_encoder_layer(x, p, num_heads=8)  # noqa: E731
    if name == "torch":
        from seqops.convert import encoder_layer_params_from_torch

        xp.manual_seed(0)
        layer = xp.nn.TransformerEncoderLayer(512, 8, 2048, dropout=0.0, batch_first=True)
        layer = layer.eval().requires_grad_(False)
        p = encoder_layer_params_from_torch(layer.state_dict())
        return (lambda: ours(x, p)), (lambda: layer(x))
    ones, zeros = to(np.ones(512, np.float32)), to(np.zeros(512, np.float32))
    p = seqops.EncoderLayerParams(
        _mha_params(seqops, to, 512),
        to(_f32(512, 2048, scale=0.04)),
        to(_f32(2048, scale=0.1)),
        to(_f32(2048, 512, scale=0.02)),
        to(_f32(512, scale=0.1)),
        ones,
        zeros,
        ones,
        zeros,
    )
    softmax = _softmax(name)

    def plain(x: Any, p: Any) -> Any:
        x = _layer_norm(xp, x + _plain_mha(xp, softmax, x, x, p.attn, 8), p.norm1_weight, p.norm1_bias)
        return _layer_norm(xp, x + _ffn_relu(xp, x, p), p.norm2_weight, p.norm2_bias)

    return _pair(name, ours, plain, x, p)


def transformer_decoder_layer(name: str, seqops: Any) -> tuple[Timed, Timed]:
    """Post-norm, ReLU, causal self-attention, D 512, 8 heads, F 2048, memory of 256. torch:
    ``nn.TransformerDecoderLayer`` in eval mode with ``requires_grad=False`` and the causal
    ``tgt_mask``, seqops' params converted from it."""
    xp, to = _lib(name)
    x, memory = to(_f32(2, 256, 512)), to(_f32(2, 256, 512))
    ours = lambda x, m, p: seqops.transformer_decoder_layer(x, m, p, num_heads=8)  # noqa: E731
    if name == "torch":
        from seqops.convert import decoder_layer_params_from_torch

        xp.manual_seed(0)
        layer = xp.nn.TransformerDecoderLayer(512, 8, 2048, dropout=0.0, batch_first=True)
        layer = layer.eval().requires_grad_(False)
        p = decoder_layer_params_from_torch(layer.state_dict())
        causal = xp.nn.Transformer.generate_square_subsequent_mask(256)
        return (lambda: ours(x, memory, p)), (lambda: layer(x, memory, tgt_mask=causal, tgt_is_causal=True))
    ones, zeros = to(np.ones(512, np.float32)), to(np.zeros(512, np.float32))
    p = seqops.DecoderLayerParams(
        _mha_params(seqops, to, 512),
        _mha_params(seqops, to, 512),
        to(_f32(512, 2048, scale=0.04)),
        to(_f32(2048, scale=0.1)),
        to(_f32(2048, 512, scale=0.02)),
        to(_f32(512, scale=0.1)),
        *(ones, zeros) * 3,
    )
    softmax, causal = _softmax(name), _causal_bias(xp, 256)

    def plain(x: Any, m: Any, p: Any) -> Any:
        x = _layer_norm(
            xp, x + _plain_mha(xp, softmax, x, x, p.self_attn, 8, causal), p.norm1_weight, p.norm1_bias
        )
        x = _layer_norm(xp, x + _plain_mha(xp, softmax, x, m, p.cross_attn, 8), p.norm2_weight, p.norm2_bias)
        return _layer_norm(xp, x + _ffn_relu(xp, x, p), p.norm3_weight, p.norm3_bias)

    return _pair(name, ours, plain, x, memory, p)


# -- recurrent: torch's cell functions and modules, plain cells (lax.scan / a loop) elsewhere ---
B_CELL, I_CELL, H_CELL = 64, 256, 512
T_SEQ, B_SEQ, I_SEQ, H_SEQ = 32, 16, 128, 256
GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def _rnn_step(xp: Any, sig: Any, xw: Any, h: Any, w_hh: Any) -> Any:
    return xp.tanh(xw + h @ w_hh)


def _lstm_step(xp: Any, sig: Any, xw: Any, state: Any, w_hh: Any) -> Any:
    h, c = state
    i, f, o, g = xp.split(xw + h @ w_hh, 4, axis=-1)  # seqops' gate order i, f, o, g
    c = sig(f) * c + sig(i) * xp.tanh(g)
    return sig(o) * xp.tanh(c), c


def _gru_step(xp: Any, sig: Any, xw: Any, h: Any, w_hh: Any, b_hh: Any) -> Any:
    r_i, z_i, n_i = xp.split(xw, 3, axis=-1)  # r, z, n as torch
    r_h, z_h, n_h = xp.split(h @ w_hh + b_hh, 3, axis=-1)
    r, z = sig(r_i + r_h), sig(z_i + z_h)
    n = xp.tanh(n_i + r * n_h)
    return (1.0 - z) * n + z * h


def _scan(name: str, xp: Any, step: Callable[[Any, Any], Any], carry: Any, xws: Any) -> tuple[Any, Any]:
    """``(hs, final carry)`` of ``carry = step(xw_t, carry)``; ``h`` is the carry or its first."""
    hidden = (lambda c: c[0]) if isinstance(carry, tuple) else (lambda c: c)
    if name == "jax":
        from jax import lax

        def body(c: Any, xw: Any) -> tuple[Any, Any]:
            c = step(xw, c)
            return c, hidden(c)

        carry, hs = lax.scan(body, carry, xws)
        return hs, carry
    hs = []
    for xw in xws:
        carry = step(xw, carry)
        hs.append(hidden(carry))
    return xp.stack(hs), carry


def _torch_weights(gates: int, i: int, h: int) -> tuple[np.ndarray, ...]:
    """``weight_ih (gH, I)``, ``weight_hh (gH, H)``, ``bias_ih``, ``bias_hh`` in torch's layout."""
    s = 1 / math.sqrt(h)
    return (
        _f32(gates * h, i, scale=s),
        _f32(gates * h, h, scale=s),
        _f32(gates * h, scale=s),
        _f32(gates * h, scale=s),
    )


def _cell(name: str, seqops: Any, kind: str) -> tuple[Timed, Timed]:
    from seqops import convert

    xp, to = _lib(name)
    x, h, c = to(_f32(B_CELL, I_CELL)), to(_f32(B_CELL, H_CELL)), to(_f32(B_CELL, H_CELL))
    torch_w = tuple(to(w) for w in _torch_weights(GATES[kind], I_CELL, H_CELL))
    ours_w = getattr(convert, f"{kind}_weights_from_torch")(*torch_w)
    state = (h, c) if kind == "lstm" else h
    ours = getattr(seqops, f"{kind}_cell")
    if name == "torch":
        native = {"rnn": xp.rnn_tanh_cell, "lstm": xp.lstm_cell, "gru": xp.gru_cell}[kind]
        return _pair(name, ours, native, x, state, *ours_w, native_args=(x, state, *torch_w))
    sig = _sigmoid(name)

    def plain(x: Any, state: Any, w_ih: Any, w_hh: Any, *b: Any) -> Any:
        if kind == "gru":
            return _gru_step(xp, sig, x @ w_ih + b[0], state, w_hh, b[1])
        step = _lstm_step if kind == "lstm" else _rnn_step
        return step(xp, sig, x @ w_ih + b[0], state, w_hh)

    return _pair(name, ours, plain, x, state, *ours_w)


def rnn_cell(name: str, seqops: Any) -> tuple[Timed, Timed]:
    """torch: ``torch.rnn_tanh_cell`` on torch-layout weights (seqops': converted)."""
    return _cell(name, seqops, "rnn")


def lstm_cell(name: str, seqops: Any) -> tuple[Timed, Timed]:
    """torch: ``torch.lstm_cell`` on torch-layout weights (seqops': converted, gates i, f, o, g)."""
    return _cell(name, seqops, "lstm")


def gru_cell(name: str, seqops: Any) -> tuple[Timed, Timed]:
    """torch: ``torch.gru_cell`` on torch-layout weights (seqops': converted)."""
    return _cell(name, seqops, "gru")


def _sequence(name: str, seqops: Any, kind: str) -> tuple[Timed, Timed]:
    from seqops import convert

    xp, to = _lib(name)
    xs, h0, c0 = to(_f32(T_SEQ, B_SEQ, I_SEQ)), to(_f32(B_SEQ, H_SEQ)), to(_f32(B_SEQ, H_SEQ))
    state = (h0, c0) if kind == "lstm" else h0
    ours = getattr(seqops, kind)
    if name == "torch":
        xp.manual_seed(0)
        module = getattr(xp.nn, kind.upper())(I_SEQ, H_SEQ).requires_grad_(False)
        w = (module.weight_ih_l0, module.weight_hh_l0, module.bias_ih_l0, module.bias_hh_l0)
        ours_w = getattr(convert, f"{kind}_weights_from_torch")(*w)
        if kind == "lstm":

            def native(xs: Any, s: Any) -> Any:
                out, (h, c) = module(xs, (s[0][None], s[1][None]))
                return out, (h[0], c[0])
        else:

            def native(xs: Any, h: Any) -> Any:
                out, h = module(xs, h[None])
                return out, h[0]

        return (lambda: ours(xs, state, *ours_w)), (lambda: native(xs, state))
    torch_w = (to(w) for w in _torch_weights(GATES[kind], I_SEQ, H_SEQ))
    ours_w = getattr(convert, f"{kind}_weights_from_torch")(*torch_w)
    sig = _sigmoid(name)

    def plain(xs: Any, state: Any, w_ih: Any, w_hh: Any, *b: Any) -> Any:
        xws = xs @ w_ih + b[0]
        if kind == "gru":
            return _scan(name, xp, lambda xw, h: _gru_step(xp, sig, xw, h, w_hh, b[1]), state, xws)
        step = _lstm_step if kind == "lstm" else _rnn_step
        return _scan(name, xp, lambda xw, s: step(xp, sig, xw, s, w_hh), state, xws)

    return _pair(name, ours, plain, xs, state, *ours_w)


def rnn(name: str, seqops: Any) -> tuple[Timed, Timed]:
    """torch: ``nn.RNN`` (no grad); JAX: ``lax.scan`` of the plain cell; NumPy: a loop of it."""
    return _sequence(name, seqops, "rnn")


def lstm(name: str, seqops: Any) -> tuple[Timed, Timed]:
    """torch: ``nn.LSTM`` (no grad); JAX: ``lax.scan`` of the plain cell; NumPy: a loop of it.

    On torch this row (T=32, B=16, I=128, H=256) reads higher than ``bench/run.py``'s
    ``lstm_torch`` case (T=128, B=32, I=256, H=512, ~1.08): the same native call on both
    sides, but seqops takes its weights in its own layout (``(I, 4H)``, gates i, f, o, g)
    and reorders them to torch's ``(4H, I)``, i, f, g, o, on every call (the module holds
    its weights in torch's layout). That copy is fixed work per call, a larger share of a
    small call: ~0.25 ms of 1.4 ms here (one blocked 2-D transpose per weight, then the o
    and g blocks swapped in place; see torch-fast's ``lstm``)."""
    return _sequence(name, seqops, "lstm")


def gru(name: str, seqops: Any) -> tuple[Timed, Timed]:
    """torch: ``nn.GRU`` (no grad); JAX: ``lax.scan`` of the plain cell; NumPy: a loop of it."""
    return _sequence(name, seqops, "gru")


# -- gradients, losses, decoding ------------------------------------------------------------
def _grads(to: Callable[[np.ndarray], Any]) -> list[Any]:
    return [to(_f32(512, 512)) for _ in range(10)]


# Gradient clipping: both sides do the same work, out of place. seqops returns new arrays
# (nothing is mutated), so the native side is the out-of-place equivalent (torch:
# ``get_total_norm`` and ``g * coef``, not ``clip_grad_norm_``/``clip_grads_with_norm_``,
# which scale in place and allocate nothing), and ten 512 x 512 gradients (10 MiB, a
# realistic layer set) keep the per-call overhead out of it. Such rows allocate 10 MiB of
# results per call, and a fresh page costs a fault (~8 µs per 4 KiB in this VM): the
# ratios of 3.8-10.6 in the first table (clip_grad_norm NumPy 4.7 / torch 3.8,
# clip_grad_value torch 10.6, pixelcnn_mask 1.9 / 4.0) came from ``interleaved`` holding
# one side's previous result while the other ran, so one side got recycled memory and the
# other fresh pages, depending on the order; ``bench/run.py: interleaved`` now frees each
# result outside the clock, and these rows read 0.8-1.0 (pixelcnn_mask: its portable
# formulation, four broadcast bool passes and a cast, was also slow, rewritten as one
# concatenation of broadcast ones, the centre taps and zeros).
def clip_grad_norm(name: str, seqops: Any) -> tuple[Timed, Timed]:
    """torch: ``torch.nn.utils.get_total_norm`` then a multiply (``clip_grads_with_norm_`` is in place)."""
    xp, to = _lib(name)
    grads = _grads(to)
    if name == "torch":
        total_norm = xp.nn.utils.get_total_norm
    else:
        total_norm = lambda gs: xp.sqrt(sum((g * g).sum() for g in gs))  # noqa: E731

    def native(grads: list[Any]) -> Any:
        total = total_norm(grads)
        coef = xp.minimum(1.0 / (total + 1e-6), xp.ones_like(total))
        return [g * coef for g in grads], total

    return _pair(name, lambda g: seqops.clip_grad_norm(g, 1.0), native, grads)


def clip_grad_value(name: str, seqops: Any) -> tuple[Timed, Timed]:
    xp, to = _lib(name)
    grads = _grads(to)
    clamp = (lambda g: g.clamp(-0.5, 0.5)) if name == "torch" else (lambda g: xp.clip(g, -0.5, 0.5))
    return _pair(name, lambda g: seqops.clip_grad_value(g, 0.5), lambda gs: [clamp(g) for g in gs], grads)


def autoregressive_log_likelihood(name: str, seqops: Any) -> tuple[Timed, Timed]:
    xp, to = _lib(name)
    logits, targets = to(_f32(8, 64, 32000, scale=2.0)), to(RNG.integers(0, 32000, (8, 64)))

    def plain(logits: Any, targets: Any) -> Any:
        if name == "jax":
            lp = __import__("jax").nn.log_softmax(logits, axis=-1)
        else:
            shifted = logits - logits.max(-1, keepdims=True)
            lp = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
        return xp.take_along_axis(lp, targets[..., None], axis=-1)[..., 0].sum(-1)

    if name == "torch":
        f = xp.nn.functional

        def native(logits: Any, targets: Any) -> Any:
            return -f.cross_entropy(logits.transpose(1, 2), targets, reduction="none").sum(-1)

        return _pair(name, seqops.autoregressive_log_likelihood, native, logits, targets)
    return _pair(name, seqops.autoregressive_log_likelihood, plain, logits, targets)


def greedy(name: str, seqops: Any) -> tuple[Timed, Timed]:
    xp, to = _lib(name)
    logits = to(_f32(256, 32000))
    return _pair(name, seqops.greedy, lambda lo: xp.argmax(lo, -1), logits)


def filter_logits(name: str, seqops: Any) -> tuple[Timed, Timed]:
    """top_k=50 (ties with the 50th value kept): the 50th largest, then a ``where``."""
    xp, to = _lib(name)
    logits = to(_f32(64, 32000, scale=3.0))
    kth: Callable[[Any], Any] = {
        "torch": lambda lo: xp.topk(lo, 50, dim=-1).values[..., -1:],
        "jax": lambda lo: __import__("jax").lax.top_k(lo, 50)[0][..., -1:],
        "numpy": lambda lo: np.partition(lo, -50, axis=-1)[..., -50:-49],
        "keras": lambda lo: _keras().top_k(lo, 50)[0][..., -1:],
    }[name]
    where = _keras().where if name == "keras" else xp.where
    return _pair(
        name,
        lambda lo: seqops.filter_logits(lo, top_k=50),
        lambda lo: where(lo < kth(lo), -math.inf, lo),
        logits,
    )


# -- masks and positions: built from sizes (jitted without arguments on JAX) -----------------
def causal_mask(name: str, seqops: Any) -> tuple[Timed, Timed]:
    xp, _ = _lib(name)
    n = 2048
    native = {
        "torch": lambda: xp.ones(n, n, dtype=xp.bool).tril(),
        "jax": lambda: xp.tril(xp.ones((n, n), dtype=bool)),
        "numpy": lambda: np.tril(np.ones((n, n), dtype=bool)),
    }[name]
    return _pair(name, lambda: seqops.causal_mask(n, backend=name), native)


def padding_mask(name: str, seqops: Any) -> tuple[Timed, Timed]:
    xp, to = _lib(name)
    n, lengths = 4096, to(RNG.integers(0, 4097, 1024))
    return _pair(
        name, lambda lengths: seqops.padding_mask(lengths, n), lambda lo: xp.arange(n) < lo[:, None], lengths
    )


def sinusoidal_positional_encoding(name: str, seqops: Any) -> tuple[Timed, Timed]:
    """2048 × 512, interleaved; angles in float64 where the library has it (not JAX by default)."""
    xp, _ = _lib(name)
    n, d = 2048, 512
    wide = xp.float32 if name == "jax" else xp.float64

    def plain() -> Any:
        angles = xp.arange(n, dtype=wide)[:, None] / 10000.0 ** (xp.arange(0, d, 2, dtype=wide) / d)
        pe = xp.stack([xp.sin(angles), xp.cos(angles)], -1).reshape(n, d)
        return pe.to(xp.float32) if name == "torch" else pe.astype(xp.float32)

    return _pair(
        name, lambda: seqops.sinusoidal_positional_encoding(n, d, dtype=xp.float32, backend=name), plain
    )


def _swin_index(xp: Any, ws: int) -> Any:
    a = xp.arange(ws)
    flat = xp.stack(xp.meshgrid(a, a, indexing="ij")).reshape(2, -1)
    rel = flat[:, :, None] - flat[:, None, :]
    return (rel[0] + ws - 1) * (2 * ws - 1) + rel[1] + ws - 1


def relative_position_index(name: str, seqops: Any) -> tuple[Timed, Timed]:
    """Swin's construction (meshgrid, pairwise differences, shift and scale) for a 32 × 32 window."""
    xp, _ = _lib(name)
    return _pair(name, lambda: seqops.relative_position_index(32, backend=name), lambda: _swin_index(xp, 32))


def _swin_bias(xp: Any, h: int, w: int, ws: int, shift: int) -> Any:
    """Swin's shifted-window mask, ``-100.0`` between regions (its slices, as comparisons)."""
    rows = (xp.arange(h) >= h - ws) * 1 + (xp.arange(h) >= h - shift) * 1
    cols = (xp.arange(w) >= w - ws) * 1 + (xp.arange(w) >= w - shift) * 1
    labels = _perm((rows[:, None] * 3 + cols[None, :]).reshape(h // ws, ws, w // ws, ws), 0, 2, 1, 3)
    labels = labels.reshape(-1, ws * ws)
    return (labels[:, None, :] != labels[:, :, None]) * np.float32(-100.0)


def shifted_window_mask(name: str, seqops: Any) -> tuple[Timed, Timed]:
    """Swin's additive form (``as_bias=True``), 128 × 128, window 16, shift 8."""
    xp, to = _lib(name)
    like = to(np.zeros(1, np.float32))

    def ours(like: Any) -> Any:
        return seqops.shifted_window_mask(128, 128, 16, 8, as_bias=True, like=like)

    return _pair(name, ours, lambda like: _swin_bias(xp, 128, 128, 16, 8), like)


def pixelcnn_mask(name: str, seqops: Any) -> tuple[Timed, Timed]:
    """7 × 7, 256 → 256 channels, type B: ones, then zeros below the centre and right of it."""
    xp, _ = _lib(name)
    k, c = 7, 256

    def plain() -> Any:
        m = xp.ones((c, c, k, k), dtype=xp.float32)
        if name == "jax":
            return m.at[:, :, k // 2, k // 2 + 1 :].set(0).at[:, :, k // 2 + 1 :].set(0)
        m[:, :, k // 2, k // 2 + 1 :] = 0
        m[:, :, k // 2 + 1 :] = 0
        return m

    return _pair(
        name, lambda: seqops.pixelcnn_mask(k, c, c, mask_type="B", dtype=xp.float32, backend=name), plain
    )


# -- vision ------------------------------------------------------------------------------------
def _patchify(x: Any, p: int) -> Any:
    b, c, h, w = x.shape
    return _perm(x.reshape(b, c, h // p, p, w // p, p), 0, 2, 4, 1, 3, 5).reshape(
        b, (h // p) * (w // p), c * p * p
    )


def patchify(name: str, seqops: Any) -> tuple[Timed, Timed]:
    _, to = _lib(name)
    images = to(_f32(32, 3, 224, 224))
    return _pair(name, lambda x: seqops.patchify(x, 16), lambda x: _patchify(x, 16), images)


def unpatchify(name: str, seqops: Any) -> tuple[Timed, Timed]:
    _, to = _lib(name)
    patches = to(_f32(32, 196, 768))

    def plain(x: Any) -> Any:
        return _perm(x.reshape(32, 14, 14, 3, 16, 16), 0, 3, 1, 4, 2, 5).reshape(32, 3, 224, 224)

    return _pair(name, lambda x: seqops.unpatchify(x, 16, 224), plain, patches)


def vit_embed(name: str, seqops: Any) -> tuple[Timed, Timed]:
    """ViT-B/16 stem on 8 × 3 × 224²: torch ``F.conv2d`` / JAX ``lax.conv_general_dilated`` with
    stride = patch (the weight reshaped once), NumPy patches @ w; class token, positions."""
    xp, to = _lib(name)
    b, d, p = 8, 768, 16
    w_np = _f32(3 * p * p, d, scale=0.02)
    images, w, bias = to(_f32(b, 3, 224, 224)), to(w_np), to(_f32(d))
    cls, pos = to(_f32(d)), to(_f32(197, d))
    w_conv = to(np.ascontiguousarray(w_np.T.reshape(d, 3, p, p)))

    def ours(images: Any, w: Any, bias: Any, cls: Any, pos: Any) -> Any:
        return seqops.vit_embed(images, w, bias, cls, pos, patch_size=p)

    if name == "numpy":

        def plain(x: Any, w: Any, bias: Any, cls: Any, pos: Any) -> Any:
            return np.concatenate([np.broadcast_to(cls, (b, 1, d)), _patchify(x, p) @ w + bias], 1) + pos

        return _pair(name, ours, plain, images, w, bias, cls, pos)
    if name == "torch":

        def native(x: Any, w: Any, bias: Any, cls: Any, pos: Any) -> Any:
            tokens = xp.nn.functional.conv2d(x, w, bias, stride=p).flatten(2).transpose(1, 2)
            return xp.cat([cls.expand(b, 1, d), tokens], 1) + pos
    else:
        from jax import lax

        def native(x: Any, w: Any, bias: Any, cls: Any, pos: Any) -> Any:
            tokens = (
                lax.conv_general_dilated(x, w, (p, p), "VALID").reshape(b, d, -1).transpose(0, 2, 1) + bias
            )
            return xp.concatenate([xp.broadcast_to(cls, (b, 1, d)), tokens], 1) + pos

    return _pair(name, ours, native, images, w, bias, cls, pos, native_args=(images, w_conv, bias, cls, pos))


def _windows(x: Any, ws: int) -> Any:
    b, h, w, c = x.shape
    return _perm(x.reshape(b, h // ws, ws, w // ws, ws, c), 0, 1, 3, 2, 4, 5).reshape(-1, ws, ws, c)


def window_partition(name: str, seqops: Any) -> tuple[Timed, Timed]:
    """Swin's reshape + permute, 16 × 56 × 56 × 128, window 7."""
    _, to = _lib(name)
    x = to(_f32(16, 56, 56, 128))
    return _pair(name, lambda x: seqops.window_partition(x, 7), lambda x: _windows(x, 7), x)


def window_reverse(name: str, seqops: Any) -> tuple[Timed, Timed]:
    _, to = _lib(name)
    windows = to(_f32(16 * 64, 7, 7, 128))

    def plain(w: Any) -> Any:
        return _perm(w.reshape(16, 8, 8, 7, 7, 128), 0, 1, 3, 2, 4, 5).reshape(16, 56, 56, 128)

    return _pair(name, lambda w: seqops.window_reverse(w, 7, 56, 56), plain, windows)


def cyclic_shift(name: str, seqops: Any) -> tuple[Timed, Timed]:
    xp, to = _lib(name)
    x = to(_f32(16, 56, 56, 128))
    return _pair(name, lambda x: seqops.cyclic_shift(x, 3), lambda x: xp.roll(x, (-3, -3), (1, 2)), x)


def window_attention(name: str, seqops: Any) -> tuple[Timed, Timed]:
    """SW-MSA as Swin writes it (roll, partition, attention + relative bias + -100 mask, reverse,
    roll back): 2 × 56 × 56 × 96, 3 heads, window 7, shift 3."""
    xp, to = _lib(name)
    b, hw, c, heads, ws, shift = 2, 56, 96, 3, 7, 3
    x, p, table = (
        to(_f32(b, hw, hw, c)),
        _mha_params(seqops, to, c),
        to(_f32((2 * ws - 1) ** 2, heads, scale=0.5)),
    )
    index = _swin_index(xp, ws).reshape(-1)
    mask = _swin_bias(xp, hw, hw, ws, shift)[:, None]  # (nW, 1, N, N)
    softmax, n = _softmax(name), ws * ws

    def ours(x: Any, p: Any, table: Any) -> Any:
        return seqops.window_attention(
            x, p, num_heads=heads, window_size=ws, shift_size=shift, relative_bias_table=table
        )

    def plain(x: Any, p: Any, table: Any) -> Any:
        bias = _perm(table[index].reshape(n, n, heads), 2, 0, 1) + mask  # (nW, heads, N, N)
        windows = _windows(xp.roll(x, (-shift, -shift), (1, 2)), ws).reshape(b, -1, n, c)
        out = _plain_mha(xp, softmax, windows, windows, p, heads, bias).reshape(
            b, hw // ws, hw // ws, ws, ws, c
        )
        out = _perm(out, 0, 1, 3, 2, 4, 5).reshape(b, hw, hw, c)
        return xp.roll(out, (shift, shift), (1, 2))

    return _pair(name, ours, plain, x, p, table)


def patch_merging(name: str, seqops: Any) -> tuple[Timed, Timed]:
    """Hugging Face's ``SwinPatchMerging``: 4 strided slices, concat, layer norm, linear (no bias)."""
    xp, to = _lib(name)
    c = 96
    x, weight = to(_f32(4, 56, 56, c)), to(_f32(4 * c, 2 * c, scale=0.05))
    nw, nb = to(_f32(4 * c, scale=0.1) + 1), to(_f32(4 * c, scale=0.1))

    def merged(x: Any) -> Any:
        return xp.concatenate([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)

    def ours(x: Any, weight: Any, nw: Any, nb: Any) -> Any:
        return seqops.patch_merging(x, weight, nw, nb)

    if name == "torch":
        f = xp.nn.functional

        def native(x: Any, weight: Any, nw: Any, nb: Any) -> Any:
            return f.linear(f.layer_norm(merged(x), (4 * c,), nw, nb), weight)

        return _pair(name, ours, native, x, weight, nw, nb, native_args=(x, weight.T.contiguous(), nw, nb))
    return _pair(
        name, ours, lambda x, weight, nw, nb: _layer_norm(xp, merged(x), nw, nb) @ weight, x, weight, nw, nb
    )


# -- generative -------------------------------------------------------------------------------
def reparameterize(name: str, seqops: Any) -> tuple[Timed, Timed]:
    """The draw included: a torch generator, a JAX key argument (jitted), a NumPy Generator."""
    xp, to = _lib(name)
    mu, log_var = to(_f32(128, 4096)), to(_f32(128, 4096, scale=0.5))
    if name == "jax":
        import jax

        def native(mu: Any, log_var: Any, key: Any) -> Any:
            return mu + xp.exp(0.5 * log_var) * jax.random.normal(key, mu.shape, mu.dtype)

        ours = lambda mu, log_var, key: seqops.reparameterize(mu, log_var, rng=key)  # noqa: E731
        return _pair(name, ours, native, mu, log_var, jax.random.key(0))
    if name == "torch":
        gen = xp.Generator().manual_seed(0)
        draw = lambda: xp.randn(mu.shape, generator=gen, dtype=mu.dtype)  # noqa: E731
    else:
        gen = np.random.default_rng(0)
        draw = lambda: gen.standard_normal(mu.shape, dtype=np.float32)  # noqa: E731
    return (lambda: seqops.reparameterize(mu, log_var, rng=gen)), (
        lambda: mu + xp.exp(0.5 * log_var) * draw()
    )


def kl_normal_standard(name: str, seqops: Any) -> tuple[Timed, Timed]:
    xp, to = _lib(name)
    mu, lv = to(_f32(512, 2048)), to(_f32(512, 2048, scale=0.5))
    return _pair(
        name,
        seqops.kl_normal_standard,
        lambda mu, lv: 0.5 * (xp.exp(lv) + mu * mu - 1.0 - lv).sum(-1),
        mu,
        lv,
    )


def kl_normal_normal(name: str, seqops: Any) -> tuple[Timed, Timed]:
    xp, to = _lib(name)
    mq, lq, mp, lp = (
        to(_f32(512, 2048)),
        to(_f32(512, 2048, scale=0.5)),
        to(_f32(512, 2048)),
        to(_f32(512, 2048, scale=0.5)),
    )

    def plain(mq: Any, lq: Any, mp: Any, lp: Any) -> Any:
        d = mq - mp
        return 0.5 * (lp - lq + (xp.exp(lq) + d * d) / xp.exp(lp) - 1.0).sum(-1)

    return _pair(name, seqops.kl_normal_normal, plain, mq, lq, mp, lp)


def kl_mvn(name: str, seqops: Any) -> tuple[Timed, Timed]:
    """64 pairs of 64-d Gaussians. torch: ``kl_divergence`` of two ``MultivariateNormal`` (default
    argument validation); JAX/NumPy: the Cholesky formula; on NumPy SciPy's ``cholesky`` and
    ``solve_triangular`` where SciPy is importable (NumPy has no triangular solve, and one
    ``numpy.linalg.cholesky`` of 128 factors took 3x SciPy's here), else NumPy's."""
    xp, to = _lib(name)
    k = 64

    def spd() -> np.ndarray:
        a = _f32(64, k, k, scale=1 / math.sqrt(k))
        return a @ a.transpose(0, 2, 1) + np.eye(k, dtype=np.float32)

    mq, cq, mp, cp = to(_f32(64, k)), to(spd()), to(_f32(64, k)), to(spd())
    if name == "torch":
        from torch.distributions import MultivariateNormal, kl_divergence

        def native(mq: Any, cq: Any, mp: Any, cp: Any) -> Any:
            return kl_divergence(MultivariateNormal(mq, cq), MultivariateNormal(mp, cp))
    else:
        cholesky = xp.linalg.cholesky
        if name == "jax":
            from jax.scipy.linalg import solve_triangular

            solve = lambda lo, b: solve_triangular(lo, b, lower=True)  # noqa: E731
        else:
            try:
                import scipy.linalg as sl
            except ImportError:
                solve = np.linalg.solve
            else:
                cholesky = lambda a: sl.cholesky(a, lower=True, check_finite=False)  # noqa: E731
                solve = lambda lo, b: sl.solve_triangular(lo, b, lower=True, check_finite=False)  # noqa: E731

        def native(mq: Any, cq: Any, mp: Any, cp: Any) -> Any:
            # both factors in one call, and both right-hand sides in one solve: two LAPACK calls
            # at once can deadlock XLA's CPU backend (this table hung in the two solves' wait)
            lq, lp = cholesky(xp.stack([cq, cp]))
            both = solve(lp, xp.concatenate([lq, (mp - mq)[..., None]], axis=-1))
            m, y = both[..., :k], both[..., k]
            log_det = 2.0 * (
                xp.log(xp.diagonal(lp, axis1=-2, axis2=-1)) - xp.log(xp.diagonal(lq, axis1=-2, axis2=-1))
            ).sum(-1)
            return 0.5 * ((m * m).sum((-2, -1)) + (y * y).sum(-1) - k + log_det)

    return _pair(name, seqops.kl_mvn, native, mq, cq, mp, cp)


def gaussian_log_likelihood(name: str, seqops: Any) -> tuple[Timed, Timed]:
    xp, to = _lib(name)
    x, mean, lv = to(_f32(512, 2048)), to(_f32(512, 2048)), to(_f32(512, 2048, scale=0.5))

    def plain(x: Any, mean: Any, lv: Any) -> Any:
        d = x - mean
        return -0.5 * (math.log(2 * math.pi) + lv + d * d / xp.exp(lv)).sum(-1)

    return _pair(name, seqops.gaussian_log_likelihood, plain, x, mean, lv)


def _bernoulli(name: str) -> Callable[[Any, Any], Any]:
    """``log Bernoulli(x; sigmoid(l))`` summed over the last axis, as each library writes it."""
    if name == "torch":
        bce = __import__("torch").nn.functional.binary_cross_entropy_with_logits
        return lambda x, lo: -bce(lo, x, reduction="none").sum(-1)
    if name == "jax":
        softplus = __import__("jax").nn.softplus
        return lambda x, lo: (x * lo - softplus(lo)).sum(-1)
    return lambda x, lo: (x * lo - np.logaddexp(np.float32(0), lo)).sum(-1)


def bernoulli_log_likelihood(name: str, seqops: Any) -> tuple[Timed, Timed]:
    _, to = _lib(name)
    x, logits = to((RNG.random((512, 2048)) < 0.5).astype(np.float32)), to(_f32(512, 2048, scale=3.0))
    return _pair(name, seqops.bernoulli_log_likelihood, _bernoulli(name), x, logits)


def elbo(name: str, seqops: Any) -> tuple[Timed, Timed]:
    """Bernoulli likelihood of 2048 × 784 binary pixels, 32 latents: the log-likelihood minus the KL."""
    xp, to = _lib(name)
    x, logits = to((RNG.random((2048, 784)) < 0.5).astype(np.float32)), to(_f32(2048, 784, scale=3.0))
    mu, lv = to(_f32(2048, 32)), to(_f32(2048, 32, scale=0.5))
    ll = _bernoulli(name)

    def plain(x: Any, logits: Any, mu: Any, lv: Any) -> Any:
        return ll(x, logits) - 0.5 * (xp.exp(lv) + mu * mu - 1.0 - lv).sum(-1)

    return _pair(name, seqops.elbo, plain, x, logits, mu, lv)


def iwae_bound(name: str, seqops: Any) -> tuple[Timed, Timed]:
    """K = 256 samples (axis 0) of 4096 examples: ``logsumexp`` of the log-weights minus ``log K``."""
    xp, to = _lib(name)
    terms = tuple(to(_f32(256, 4096, scale=s)) for s in (10.0, 3.0, 3.0))
    if name == "torch":
        lse: Callable[[Any], Any] = lambda w: xp.logsumexp(w, 0)  # noqa: E731
    elif name == "jax":
        lse = lambda w: __import__("jax.scipy.special").scipy.special.logsumexp(w, axis=0)  # noqa: E731
    elif name == "keras":
        lse = lambda w: _keras().logsumexp(w, axis=0)  # noqa: E731
    else:
        try:
            from scipy.special import logsumexp

            lse = lambda w: logsumexp(w, axis=0)  # noqa: E731
        except ImportError:
            lse = lambda w: (lambda m: m + np.log(np.exp(w - m).sum(0)))(w.max(0))  # noqa: E731
    return _pair(name, seqops.iwae_bound, lambda a, b, c: lse(a + b - c) - math.log(256), *terms)


ROWS: dict[str, Row] = {
    "softmax": softmax,
    "log_softmax": log_softmax,
    "relu": relu,
    "silu": silu,
    "gelu": gelu,
    "scaled_dot_product_attention": scaled_dot_product_attention,
    "causal_mask": causal_mask,
    "padding_mask": padding_mask,
    "sinusoidal_positional_encoding": sinusoidal_positional_encoding,
    "apply_rotary": apply_rotary,
    "multi_head_attention": multi_head_attention,
    "layer_norm": layer_norm,
    "rms_norm": rms_norm,
    "feed_forward": feed_forward,
    "gated_feed_forward": gated_feed_forward,
    "transformer_encoder_layer": transformer_encoder_layer,
    "transformer_decoder_layer": transformer_decoder_layer,
    "rnn_cell": rnn_cell,
    "rnn": rnn,
    "lstm_cell": lstm_cell,
    "lstm": lstm,
    "gru_cell": gru_cell,
    "gru": gru,
    "clip_grad_norm": clip_grad_norm,
    "clip_grad_value": clip_grad_value,
    "cross_entropy": cross_entropy,
    "autoregressive_log_likelihood": autoregressive_log_likelihood,
    "greedy": greedy,
    "filter_logits": filter_logits,
    "sample_logits": sample_logits,
    "patchify": patchify,
    "unpatchify": unpatchify,
    "vit_embed": vit_embed,
    "window_partition": window_partition,
    "window_reverse": window_reverse,
    "cyclic_shift": cyclic_shift,
    "shifted_window_mask": shifted_window_mask,
    "relative_position_index": relative_position_index,
    "window_attention": window_attention,
    "patch_merging": patch_merging,
    "pixelcnn_mask": pixelcnn_mask,
    "masked_conv2d": masked_conv2d,
    "reparameterize": reparameterize,
    "kl_normal_standard": kl_normal_standard,
    "kl_normal_normal": kl_normal_normal,
    "kl_mvn": kl_mvn,
    "gaussian_log_likelihood": gaussian_log_likelihood,
    "bernoulli_log_likelihood": bernoulli_log_likelihood,
    "iwae_bound": iwae_bound,
    "elbo": elbo,
}
NO_NATIVE: dict[str, str] = {
    "decode": "no framework op: Hugging Face's generate needs a model",
}
LIBRARIES = ("numpy", "torch", "jax", "keras")
KERAS_OPS = frozenset(
    {
        "softmax",
        "log_softmax",
        "relu",
        "silu",
        "gelu",
        "layer_norm",
        "rms_norm",
        "scaled_dot_product_attention",
        "cross_entropy",
        "filter_logits",
        "iwae_bound",
    }
)
"""The ops ``keras.ops`` has a counterpart of; the other rows raise LookupError for keras."""


def declared(seqops: Any) -> tuple[str, ...]:
    """The names of ``seqops.declared_ops()``, raising unless each is in ROWS or NO_NATIVE (once)."""
    names = tuple(op.name for op in seqops.declared_ops())
    missing = [n for n in names if n not in ROWS and n not in NO_NATIVE]
    unknown = sorted((ROWS.keys() | NO_NATIVE.keys()) - set(names))
    both = sorted(ROWS.keys() & NO_NATIVE.keys())
    if missing or unknown or both:
        msg = f"ops_table out of date: missing {missing}, not declared {unknown}, in both {both}"
        raise AssertionError(msg)
    return names


def cell(op: str, name: str, seqops: Any) -> tuple[Timed, Timed]:
    """The (seqops, native) calls of ``op`` on library ``name``; ImportError/LookupError to skip."""
    _lib(name)
    if op in NO_NATIVE:
        raise LookupError(NO_NATIVE[op])
    if name == "keras" and op not in KERAS_OPS:
        raise LookupError("no keras.ops counterpart")
    return ROWS[op](name, seqops)


def table(
    interleaved: Callable[..., dict[str, float]],
    *,
    repeats: int,
    libraries: tuple[str, ...] = LIBRARIES,
    sync: Callable[[], Any] | None = None,
    record_errors: bool = False,
    ops: tuple[str, ...] = (),
) -> dict[str, dict[str, Any]]:
    """``{op: {library: {"ratio", "seqops_s", "native_s"} or {"skipped": why}}}`` for every
    declared op (in declaration order), printing each row. ``sync`` waits for torch's device
    after each timed round (CUDA); ``record_errors`` records a cell that raises as
    ``{"error": ...}`` instead of stopping (on a GPU, where a row may build a tensor on the CPU).
    ``ops`` limits the table to those rows (``bench/run.py --op NAME``; unknown names raise)."""
    import seqops

    names = declared(seqops)
    unknown = sorted(set(ops) - set(names))
    if unknown:
        raise ValueError(f"not declared ops {unknown}")
    found: dict[str, dict[str, Any]] = {}
    for op in names:
        if ops and op not in ops:
            continue
        found[op] = {}
        for name in libraries:
            try:
                ours, native = cell(op, name, seqops)
                waits = sync if name == "torch" else None  # JAX results are blocked on one by one
                rounds: list[dict[str, float]] = []
                t = interleaved(
                    {"seqops_s": ours, "native_s": native}, repeats=repeats, sync=waits, rounds=rounds
                )
            except (ImportError, LookupError) as why:
                found[op][name] = {"skipped": str(why)}
                continue
            except Exception as error:
                if not record_errors:
                    raise
                found[op][name] = {"error": f"{type(error).__name__}: {error}"[:300]}
                continue
            # The median of the paired per-round ratios: a burst of load from other processes
            # slows one round of both sides (or one side of one round), not the median; the
            # ratio of the two medians moved by 2-5x between runs on the shared 2-core machine.
            paired = statistics.median(r["seqops_s"] / r["native_s"] for r in rounds)
            found[op][name] = {**t, "ratio": paired, "ratio_of_medians": t["seqops_s"] / t["native_s"]}
        cells = [f"{name} {e['ratio']:.2f}" if "ratio" in e else f"{name} -" for name, e in found[op].items()]
        note = f"  ({NO_NATIVE[op]})" if op in NO_NATIVE else ""
        print(f"  {op:30s} " + "  ".join(cells) + note, flush=True)
    return found
