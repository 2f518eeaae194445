"""Every op with a native alternative, × {NumPy, torch, JAX jit}: seqops / the native call.

Each row builds float32 inputs once, then times ``seqops.<op>`` against what a user would
write instead on that library (``torch.nn.functional``, ``jax.nn``/``lax`` under ``jax.jit``,
plain NumPy), interleaved round by round in one process (``bench/run.py: interleaved``). A
row without a natural alternative on a library is left out. Run it with
``python bench/run.py --only ops_table`` (part of the full ``python bench/run.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

Timed = Callable[[], Any]
# name -> library -> (seqops call, native call): built lazily, the libraries imported on demand.
Row = Callable[[str, Any], tuple[Timed, Timed]]

RNG = np.random.default_rng(0)


def _f32(*shape: int, scale: float = 1.0) -> np.ndarray:
    return (scale * RNG.standard_normal(shape)).astype(np.float32)


def _lib(name: str) -> tuple[Any, Callable[[np.ndarray], Any]]:
    """The array module of ``name`` and a converter from NumPy."""
    if name == "torch":
        import torch

        return torch, torch.from_numpy
    if name == "jax":
        import jax.numpy as jnp

        return jnp, jnp.asarray
    return np, np.asarray


def _jit(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    if name == "jax":
        import jax

        return jax.jit(fn)
    return fn


def _pair(name: str, ours: Callable[..., Any], native: Callable[..., Any], *args: Any) -> tuple[Timed, Timed]:
    a, b = _jit(name, ours), _jit(name, native)
    return (lambda: a(*args)), (lambda: b(*args))


def softmax(name: str, seqops: Any) -> tuple[Timed, Timed]:
    xp, to = _lib(name)
    x = to(_f32(64, 32000, scale=3.0))
    native = {
        "torch": lambda x: xp.softmax(x, -1),
        "jax": lambda x: __import__("jax").nn.softmax(x, axis=-1),
        "numpy": lambda x: (lambda e: e / e.sum(-1, keepdims=True))(np.exp(x - x.max(-1, keepdims=True))),
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
    }[name]
    return _pair(name, seqops.cross_entropy, native, logits, targets)


def layer_norm(name: str, seqops: Any) -> tuple[Timed, Timed]:
    xp, to = _lib(name)
    x, w, b = to(_f32(64, 128, 1024)), to(_f32(1024)), to(_f32(1024))

    def plain(x: Any, w: Any, b: Any) -> Any:
        mean = x.mean(-1, keepdims=True)
        centred = x - mean
        return centred / xp.sqrt((centred * centred).mean(-1, keepdims=True) + 1e-5) * w + b

    native = (lambda x, w, b: xp.nn.functional.layer_norm(x, (1024,), w, b)) if name == "torch" else plain
    return _pair(name, lambda x, w, b: seqops.layer_norm(x, w, b), native, x, w, b)


def rms_norm(name: str, seqops: Any) -> tuple[Timed, Timed]:
    xp, to = _lib(name)
    x, w = to(_f32(64, 128, 1024)), to(_f32(1024))

    def plain(x: Any, w: Any) -> Any:
        return x / xp.sqrt((x * x).mean(-1, keepdims=True) + 1e-6) * w

    native = (lambda x, w: xp.nn.functional.rms_norm(x, (1024,), w, 1e-6)) if name == "torch" else plain
    return _pair(name, lambda x, w: seqops.rms_norm(x, w), native, x, w)


def gelu(name: str, seqops: Any) -> tuple[Timed, Timed]:
    xp, to = _lib(name)
    x = to(_f32(64, 128, 1024))
    if name == "torch":
        native: Callable[..., Any] = xp.nn.functional.gelu
    elif name == "jax":
        native = lambda x: __import__("jax").nn.gelu(x, approximate=False)  # noqa: E731
    else:
        try:
            from scipy.special import erf
        except ImportError:
            erf = np.vectorize(math.erf, otypes=[np.float32])
        native = lambda x: 0.5 * x * (1.0 + erf(x / np.float32(math.sqrt(2.0))))  # noqa: E731
    return _pair(name, seqops.gelu, native, x)


def silu(name: str, seqops: Any) -> tuple[Timed, Timed]:
    xp, to = _lib(name)
    x = to(_f32(64, 128, 1024))
    native = {
        "torch": lambda x: xp.nn.functional.silu(x),
        "jax": lambda x: __import__("jax").nn.silu(x),
        "numpy": lambda x: x / (1.0 + np.exp(-x)),
    }[name]
    return _pair(name, seqops.silu, native, x)


def scaled_dot_product_attention(name: str, seqops: Any) -> tuple[Timed, Timed]:
    xp, to = _lib(name)
    q, k, v = (to(_f32(2, 8, 1024, 64)) for _ in range(3))

    def plain(q: Any, k: Any, v: Any) -> Any:
        s = (q * np.float32(1 / 8)) @ xp.swapaxes(k, -1, -2)
        e = xp.exp(s - s.max(-1, keepdims=True))
        return (e / e.sum(-1, keepdims=True)) @ v

    native = xp.nn.functional.scaled_dot_product_attention if name == "torch" else plain
    return _pair(name, lambda q, k, v: seqops.scaled_dot_product_attention(q, k, v), native, q, k, v)


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

    def plain(x: Any, positions: Any) -> Any:  # Hugging Face's rotate_half form
        freqs = positions[:, None] * inv
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


ROWS: dict[str, Row] = {
    "softmax": softmax,
    "log_softmax": log_softmax,
    "cross_entropy": cross_entropy,
    "layer_norm": layer_norm,
    "rms_norm": rms_norm,
    "gelu": gelu,
    "silu": silu,
    "scaled_dot_product_attention": scaled_dot_product_attention,
    "gated_feed_forward": gated_feed_forward,
    "apply_rotary": apply_rotary,
    "masked_conv2d": masked_conv2d,
    "sample_logits": sample_logits,
}
LIBRARIES = ("numpy", "torch", "jax")


def table(interleaved: Callable[..., dict[str, float]], *, repeats: int) -> dict[str, dict[str, Any]]:
    """``{op: {library: {"ratio", "seqops_s", "native_s", "implementation"}}}``, printing each row."""
    import seqops

    found: dict[str, dict[str, Any]] = {}
    for op, row in ROWS.items():
        found[op] = {}
        for name in LIBRARIES:
            try:
                _lib(name)
                ours, native = row(name, seqops)
            except (ImportError, LookupError) as why:
                found[op][name] = {"skipped": str(why)}
                continue
            t = interleaved({"seqops_s": ours, "native_s": native}, repeats=repeats)
            found[op][name] = {**t, "ratio": t["seqops_s"] / t["native_s"]}
        cells = [f"{name} {e['ratio']:.2f}" if "ratio" in e else f"{name} -" for name, e in found[op].items()]
        print(f"  {op:30s} " + "  ".join(cells), flush=True)
    return found
