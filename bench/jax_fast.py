"""Micro-benchmark of the jax-fast candidates under ``jax.jit``: seqops (dispatching to the
fast path where one is registered), the portable implementation alone, and the native
``jax.nn``/``lax`` call, timed interleaved (``bench/run.py: interleaved``).

Run: ``.venv/bin/python bench/jax_fast.py [NAME ...]``.
Prints ``seqops/native`` and ``portable/native`` per case (the sizes of issue 13).
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _interleaved() -> Callable[..., dict[str, float]]:
    path = Path(__file__).resolve().parent / "run.py"
    spec = importlib.util.spec_from_file_location("seqops_bench_run", path)
    assert spec is not None and spec.loader is not None, f"run from the repository root ({path})"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.interleaved  # type: ignore[no-any-return]


def cases() -> dict[str, tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any], tuple[Any, ...]]]:
    """name -> (seqops, portable, native, args), each jitted."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    import seqops

    backend = next(b for b, _ in seqops.backends() if b.name == "jax")
    ops = seqops.ops

    def portable(op: Any) -> Any:
        return next(i for i in seqops.implementations(op, backend) if i.name == "portable").fn

    r = np.random.default_rng(0)

    def normal(*shape: int) -> Any:
        return jnp.asarray(r.standard_normal(shape), jnp.float32)

    jit = jax.jit
    out: dict[str, Any] = {}
    logits = normal(64, 32000)
    out["softmax 64x32000"] = (
        jit(lambda x: seqops.softmax(x)),
        jit(lambda x: portable(ops.softmax)(backend, x, axis=-1)),
        jit(lambda x: jax.nn.softmax(x, axis=-1)),
        (logits,),
    )
    out["log_softmax 64x32000"] = (
        jit(lambda x: seqops.log_softmax(x)),
        jit(lambda x: portable(ops.log_softmax)(backend, x, axis=-1)),
        jit(lambda x: jax.nn.log_softmax(x, axis=-1)),
        (logits,),
    )
    big, w, b = normal(64, 128, 1024), normal(1024), normal(1024)

    def ln_native(x: Any, w: Any, b: Any) -> Any:
        return jax.nn.standardize(x, axis=-1, epsilon=1e-5) * w + b

    out["layer_norm (64,128,1024)"] = (
        jit(lambda x, w, b: seqops.layer_norm(x, w, b, eps=1e-5)),
        jit(lambda x, w, b: portable(ops.layer_norm)(backend, x, w, b, eps=1e-5)),
        jit(ln_native),
        (big, w, b),
    )

    def rms_native(x: Any, w: Any) -> Any:
        return x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + 1e-6) * w

    out["rms_norm (64,128,1024)"] = (
        jit(lambda x, w: seqops.rms_norm(x, w, eps=1e-6)),
        jit(lambda x, w: portable(ops.rms_norm)(backend, x, w, eps=1e-6)),
        jit(rms_native),
        (big, w),
    )
    for name, ours, op, native, opts in [
        ("relu", seqops.relu, ops.relu, jax.nn.relu, {}),
        ("silu", seqops.silu, ops.silu, jax.nn.silu, {}),
        ("gelu", seqops.gelu, ops.gelu, lambda x: jax.nn.gelu(x, approximate=False), {"approximate": "none"}),
        (
            "gelu tanh",
            seqops.gelu,
            ops.gelu,
            lambda x: jax.nn.gelu(x, approximate=True),
            {"approximate": "tanh"},
        ),
    ]:
        out[f"{name} (64,128,1024)"] = (
            jit(lambda x, ours=ours, opts=opts: ours(x, **opts)),
            jit(lambda x, op=op, opts=opts: portable(op)(backend, x, **opts)),
            jit(native),
            (big,),
        )
    ce, targets = normal(512, 32000), jnp.asarray(r.integers(0, 32000, 512))
    ce_weight = jnp.asarray(r.uniform(0.5, 1.5, 32000), jnp.float32)
    ce_opts = {"weight": None, "ignore_index": None, "label_smoothing": 0.0, "reduction": "mean"}

    def ce_native(logits: Any, t: Any) -> Any:
        logp = jax.nn.log_softmax(logits, axis=-1)
        return -jnp.mean(jnp.take_along_axis(logp, t[:, None], axis=-1))

    out["cross_entropy 512x32000"] = (
        jit(lambda x, t: seqops.cross_entropy(x, t)),
        jit(lambda x, t: portable(ops.cross_entropy)(backend, x, t, **ce_opts)),
        jit(ce_native),
        (ce, targets),
    )
    smooth = {**ce_opts, "weight": ce_weight, "ignore_index": 0, "label_smoothing": 0.1}

    def ce_smooth_native(logits: Any, t: Any, w: Any) -> Any:
        logp = jax.nn.log_softmax(logits, axis=-1)
        keep = t != 0
        wt = jnp.where(keep, w[t], 0.0)
        nll = -jnp.take_along_axis(logp, t[:, None], axis=-1)[:, 0]
        loss = 0.9 * wt * nll + jnp.where(keep, 0.1 / 32000 * -jnp.sum(logp * w, axis=-1), 0.0)
        return jnp.sum(loss) / jnp.sum(wt)

    out["cross_entropy 512x32000 weight+ignore+smoothing"] = (
        jit(lambda x, t, w: seqops.cross_entropy(x, t, weight=w, ignore_index=0, label_smoothing=0.1)),
        jit(lambda x, t, w: portable(ops.cross_entropy)(backend, x, t, **{**smooth, "weight": w})),
        jit(ce_smooth_native),
        (ce, targets, ce_weight),
    )
    image, kernel, cbias = normal(8, 16, 32, 32), normal(32, 16, 5, 5), normal(32)
    keep = jnp.asarray(seqops.pixelcnn_mask((5, 5), 16, 32, mask_type="A", dtype=jnp.float32))

    def conv_native(x: Any, w: Any, b: Any) -> Any:
        y = jax.lax.conv_general_dilated(
            x, w * keep, (1, 1), ((2, 2), (2, 2)), dimension_numbers=("NCHW", "OIHW", "NCHW")
        )
        return y + b[:, None, None]

    out["masked_conv2d (8,16,32,32) 16->32 k=5"] = (
        jit(lambda x, w, b: seqops.masked_conv2d(x, w, b, mask_type="A")),
        jit(lambda x, w, b: portable(ops.masked_conv2d)(backend, x, w, b, mask_type="A", color_groups=1)),
        jit(conv_native),
        (image, kernel, cbias),
    )
    filt = {"temperature": 1.0, "top_k": 50, "top_p": None, "min_tokens_to_keep": 1}

    def topk_native(z: Any) -> Any:
        # the min of the top-k values: XLA on CPU rewrites a slice of lax.top_k's values into a
        # full sort (~100x slower at this size); a reduction of them keeps its TopK kernel
        return jnp.where(z >= jnp.min(jax.lax.top_k(z, 50)[0], axis=-1, keepdims=True), z, -jnp.inf)

    out["filter_logits top_k=50 (64,32000)"] = (
        jit(lambda z: seqops.filter_logits(z, top_k=50)),
        jit(lambda z: portable(ops.filter_logits)(backend, z, **filt)),
        jit(topk_native),
        (logits,),
    )
    return out


def main(only: list[str], repeats: int = 31) -> None:
    interleaved = _interleaved()
    for name, (ours, portable, native, args) in cases().items():
        if only and not any(word in name for word in only):
            continue
        fns = {
            "seqops": functools.partial(ours, *args),
            "portable": functools.partial(portable, *args),
            "native": functools.partial(native, *args),
        }
        # two medians of interleaved rounds: the machine may be shared, the second checks the first
        runs = [interleaved(fns, repeats=repeats, number=3) for _ in range(2)]
        ratio = {key: [run[key] / run["native"] for run in runs] for key in ("seqops", "portable")}
        print(
            f"{name:48s} native {runs[0]['native'] * 1e3:8.3f} ms"
            f"  seqops/native {ratio['seqops'][0]:5.2f} {ratio['seqops'][1]:5.2f}"
            f"  portable/native {ratio['portable'][0]:5.2f} {ratio['portable'][1]:5.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1:])
