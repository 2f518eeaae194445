"""Micro-benchmarks of torch-fast's pointwise ops, losses, masked convolution and top-k: the
ratio ``seqops / native`` (the public function, dispatch and validation included, against
the torch call a user would write), both timed interleaved in one process with
``bench/run.py``'s ``paired_overhead`` (paired rounds, in both orders), plus the portable
path for reference (``interleaved``).

Run from the repository root::

    .venv/bin/python bench/torch_fast.py            # every case
    .venv/bin/python bench/torch_fast.py softmax    # the cases named

torch runs on one thread (``SEQOPS_BENCH_THREADS`` to change it): on a loaded machine with
few cores, torch's worker threads are descheduled at random and the ratios of two
multi-threaded calls scatter by 2x and more.
"""

from __future__ import annotations

import math
import os
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

Case = tuple[Callable[[], Any], Callable[[], Any]]


def _cases() -> dict[str, Callable[[], Case]]:
    import torch
    import torch.nn.functional as F

    import seqops

    g = torch.Generator().manual_seed(0)

    def randn(*shape: int) -> Any:
        return torch.randn(*shape, generator=g)

    def softmax() -> Case:
        x = randn(64, 32000)
        return (lambda: seqops.softmax(x)), (lambda: torch.softmax(x, -1))

    def log_softmax() -> Case:
        x = randn(64, 32000)
        return (lambda: seqops.log_softmax(x)), (lambda: torch.log_softmax(x, -1))

    def cross_entropy() -> Case:
        x, t = randn(512, 32000), torch.randint(0, 32000, (512,), generator=g)
        return (lambda: seqops.cross_entropy(x, t)), (lambda: F.cross_entropy(x, t))

    def cross_entropy_options() -> Case:
        x, t = randn(512, 32000), torch.randint(0, 32000, (512,), generator=g)
        t[::7] = -1
        w = torch.rand(32000, generator=g)

        def ours() -> Any:
            return seqops.cross_entropy(x, t, weight=w, ignore_index=-1, label_smoothing=0.1)

        def native() -> Any:
            return F.cross_entropy(x, t, weight=w, ignore_index=-1, label_smoothing=0.1)

        return ours, native

    def autoregressive_log_likelihood() -> Case:
        x, t = randn(8, 64, 32000), torch.randint(0, 32000, (8, 64), generator=g)

        def native() -> Any:
            return torch.log_softmax(x, -1).gather(-1, t[..., None])[..., 0].sum(-1)

        return (lambda: seqops.autoregressive_log_likelihood(x, t)), native

    def layer_norm() -> Case:
        x, w, b = randn(64, 128, 1024), randn(1024), randn(1024)
        return (lambda: seqops.layer_norm(x, w, b)), (lambda: F.layer_norm(x, (1024,), w, b, 1e-5))

    def rms_norm() -> Case:
        x, w = randn(64, 128, 1024), randn(1024)
        return (lambda: seqops.rms_norm(x, w, eps=1e-6)), (lambda: F.rms_norm(x, (1024,), w, 1e-6))

    def activation(name: str, ours: Callable[[Any], Any], native: Callable[[Any], Any]) -> Callable[[], Case]:
        def case() -> Case:
            x = randn(64, 128, 1024)
            return (lambda: ours(x)), (lambda: native(x))

        case.__name__ = name
        return case

    def masked_conv2d() -> Case:
        x, w, b = randn(8, 16, 32, 32), randn(32, 16, 5, 5), randn(32)
        masked = w * seqops.pixelcnn_mask((5, 5), 16, 32, mask_type="B", like=w)
        return (
            (lambda: seqops.masked_conv2d(x, w, b, mask_type="B")),
            (lambda: F.conv2d(x, masked, b, padding=2)),
        )

    def filter_logits() -> Case:
        x = randn(64, 32000)

        def native() -> Any:
            kth = torch.topk(x, 50, -1).values[..., -1:]
            return x.masked_fill(x < kth, -math.inf)

        return (lambda: seqops.filter_logits(x, top_k=50)), native

    def sample_logits() -> Case:
        x = randn(64, 32000)

        def native() -> Any:
            values, ids = torch.topk(x, 50, -1)
            return ids.gather(-1, torch.multinomial(torch.softmax(values, -1), 1))[..., 0]

        return (lambda: seqops.sample_logits(x, rng=0, top_k=50)), native

    def bernoulli_log_likelihood() -> Case:
        x, logits = torch.rand(64, 3, 32, 32, generator=g), randn(64, 3, 32, 32)

        def native() -> Any:
            return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum((1, 2, 3))

        return (lambda: seqops.bernoulli_log_likelihood(x, logits)), native

    def feed_forward() -> Case:
        x, w1, b1, w2, b2 = randn(8, 128, 512), randn(512, 2048), randn(2048), randn(2048, 512), randn(512)

        def native() -> Any:
            return F.linear(F.gelu(F.linear(x, w1.T, b1)), w2.T, b2)

        return (lambda: seqops.feed_forward(x, w1, b1, w2, b2, activation="gelu")), native

    def gated_feed_forward() -> Case:
        x, wg, wu, wd = randn(8, 128, 512), randn(512, 1376), randn(512, 1376), randn(1376, 512)

        def native() -> Any:
            return (F.silu(x @ wg) * (x @ wu)) @ wd

        return (lambda: seqops.gated_feed_forward(x, wg, wu, wd, activation="silu")), native

    found = [
        softmax,
        log_softmax,
        cross_entropy,
        cross_entropy_options,
        autoregressive_log_likelihood,
        layer_norm,
        rms_norm,
        activation("relu", seqops.relu, F.relu),
        activation("silu", seqops.silu, F.silu),
        activation("gelu", seqops.gelu, F.gelu),
        activation(
            "gelu_tanh", lambda x: seqops.gelu(x, approximate="tanh"), lambda x: F.gelu(x, approximate="tanh")
        ),
        masked_conv2d,
        filter_logits,
        sample_logits,
        bernoulli_log_likelihood,
        feed_forward,
        gated_feed_forward,
    ]
    return {case.__name__: case for case in found}


def _paired(
    ours: Callable[[], Any], native: Callable[[], Any], paired: Callable[..., Any]
) -> dict[str, float]:
    """Seconds per call of each side: medians of ``paired_overhead`` rounds in both orders
    (whichever runs first in a round may pay more page faults for its output), and the
    best round of each (``*_min``: what a loaded machine lets through least disturbed)."""
    ab = [paired(ours, native, rounds=1, number=2) for _ in range(15)]
    ba = [paired(native, ours, rounds=1, number=2) for _ in range(15)]
    mine = [r["a_us"] for r in ab] + [r["b_us"] for r in ba]
    theirs = [r["b_us"] for r in ab] + [r["a_us"] for r in ba]
    return {
        "seqops": statistics.median(mine) / 1e6,
        "native": statistics.median(theirs) / 1e6,
        "seqops_min": min(mine) / 1e6,
        "native_min": min(theirs) / 1e6,
    }


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import torch
    from run import interleaved, paired_overhead  # bench/run.py

    import seqops

    torch.set_num_threads(int(os.environ.get("SEQOPS_BENCH_THREADS", "1")))
    cases = _cases()
    plugin = seqops.registry.pm.get_plugin("torch-fast")
    print(f"{'case':30s} {'seqops ms':>10s} {'native ms':>10s} {'ratio':>6s} {'best':>6s}   {'portable':>8s}")
    # The first case measured runs its seqops side up to 6x slower whatever the op and the
    # warm-up (inside the torch kernel: allocator state), until one portable round has run:
    # one throwaway case first.
    names = ["softmax", *(argv or list(cases))]
    for i, name in enumerate(names):
        ours, native = cases[name]()
        times = _paired(ours, native, paired_overhead)
        seqops.unregister_plugin("torch-fast")
        try:
            portable = interleaved({"portable": ours, "native": native}, repeats=5, number=2)
        finally:
            seqops.register_plugin(plugin, name="torch-fast")
        if i == 0:
            continue
        print(
            f"{name:30s} {times['seqops'] * 1e3:10.3f} {times['native'] * 1e3:10.3f} "
            f"{times['seqops'] / times['native']:6.3f} {times['seqops_min'] / times['native_min']:6.3f}   "
            f"{portable['portable'] / portable['native']:7.2f}x",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
