"""Score a dataset larger than the workers' memory with seqops on Dask, out of core.

A ``dask.distributed.LocalCluster`` (by default 2 worker processes, one thread and 1 GiB each)
scores about 4 GiB of generated sequences with a tiny one-layer model written with seqops:

    h      = x + scaled_dot_product_attention(x, x, x, is_causal=True)   # (N, L, d)
    logits = h @ w_out                                                     # (N, L, V)
    score  = mean over t of cross_entropy(logits, targets, reduction="none")  # (N,)

``x`` (token embeddings, float32) and ``targets`` (token ids) are generated lazily by
``dask.array.random``, chunk by chunk along the sequence axis ``N``; ``w_out`` is a NumPy array
(the Dask backend accepts NumPy weights beside Dask data). The seqops calls return a lazy Dask
array chunked like ``x`` and compute nothing (checked: the script counts the computations
during graph construction). The graph then streams through the workers: each task generates
one chunk, runs the model on it and keeps only its per-sequence scores, so the 4 GiB never
exist at once. The data are random; the score (nats per token) is a checksum, not a result.

Printed: input size, chunk size, tasks in the graph, wall time, throughput (sequences/s and
MB/s of input), the peak memory of each worker (its RSS sampled every 20 ms by a thread inside
the worker, and the kernel's high-water mark ``VmHWM`` where Linux has it) against the limit,
and a check on a sample: a few sequences recomputed with NumPy, both by the same seqops calls
on NumPy arrays and by an independent NumPy formula in float64 (max abs difference).

Run: ``python examples/dask_score.py`` (``--gib 4 --workers 2 --memory-limit 1GiB
--chunk-mb 32``; ``--no-processes`` runs the workers as threads of this process).
Needs ``pip install -e ".[dask]"``.
"""

from __future__ import annotations

import argparse
import math
import os
import threading
import time
from typing import Any

import numpy as np

import seqops

SAMPLE = 6  # sequences recomputed with NumPy


# -- the model ------------------------------------------------------------------------------
def score(x: Any, targets: Any, w_out: np.ndarray) -> Any:
    """Mean next-token cross-entropy per sequence, ``(N, L, d), (N, L) -> (N,)``: the same
    code for Dask and for NumPy arrays."""
    h = x + seqops.scaled_dot_product_attention(x, x, x, is_causal=True)
    logits = h @ w_out
    return seqops.cross_entropy(logits, targets, reduction="none").mean(axis=-1)


def numpy_reference(x: np.ndarray, targets: np.ndarray, w_out: np.ndarray) -> np.ndarray:
    """:func:`score` written out in NumPy, in float64, without seqops."""
    x = x.astype(np.float64)
    seq_len, dim = x.shape[-2:]
    s = x @ np.swapaxes(x, -1, -2) / math.sqrt(dim)
    s = np.where(np.tril(np.ones((seq_len, seq_len), bool)), s, -np.inf)
    p = np.exp(s - s.max(axis=-1, keepdims=True))
    h = x + (p / p.sum(axis=-1, keepdims=True)) @ x
    logits = h @ w_out.astype(np.float64)
    m = logits.max(axis=-1, keepdims=True)
    lse = (m + np.log(np.exp(logits - m).sum(axis=-1, keepdims=True)))[..., 0]
    picked = np.take_along_axis(logits, targets[..., None].astype(np.intp), axis=-1)[..., 0]
    return (lse - picked).mean(axis=-1)


def dataset(n: int, seq_len: int, dim: int, vocab: int, rows: int, seed: int) -> tuple[Any, Any]:
    """Lazy ``x (n, seq_len, dim)`` float32 and ``targets (n, seq_len)`` int32, ``rows``
    sequences a chunk, each chunk drawn from its own seed when it is computed."""
    import dask.array as da

    rng = da.random.default_rng(seed)
    x = rng.standard_normal((n, seq_len, dim), chunks=(rows, seq_len, dim), dtype=np.float32)
    targets = rng.integers(0, vocab, (n, seq_len), chunks=(rows, seq_len), dtype=np.int32)
    return x, targets


# -- peak memory, measured inside each worker -------------------------------------------------
def _vm_hwm() -> int | None:
    """The process's peak RSS according to the kernel (``VmHWM``), in bytes (Linux)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _start_sampler(dask_worker: Any, interval: float = 0.02) -> bool:
    """Starts a thread in the worker that keeps the largest RSS of its process; resets the
    kernel's high-water mark (``/proc/self/clear_refs``) so that ``VmHWM`` covers the run.
    Returns whether the reset worked."""
    import psutil

    process = psutil.Process()
    state = {"peak": process.memory_info().rss, "stop": threading.Event()}

    def sample() -> None:
        while not state["stop"].wait(interval):
            state["peak"] = max(state["peak"], process.memory_info().rss)

    threading.Thread(target=sample, name="seqops-peak-rss", daemon=True).start()
    dask_worker.seqops_peak = state
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def _stop_sampler(dask_worker: Any) -> dict[str, int | None]:
    state = dask_worker.seqops_peak
    state["stop"].set()
    return {"sampled": state["peak"], "hwm": _vm_hwm(), "pid": os.getpid()}


# -- the run ----------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gib", type=float, default=4.0, help="size of the embeddings x (GiB)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-limit", default="1GiB", help="per worker, as Dask spells it")
    parser.add_argument("--chunk-mb", type=float, default=32.0, help="MiB of x per chunk")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--vocab", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--processes", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args(argv)

    import dask
    from dask.callbacks import Callback
    from dask.utils import format_bytes, parse_bytes
    from distributed import Client, LocalCluster

    limit = parse_bytes(args.memory_limit)
    per_sequence = args.seq_len * args.dim * 4
    n = max(1, round(args.gib * 2**30 / per_sequence))
    rows = max(1, min(n, int(args.chunk_mb * 2**20 // per_sequence)))
    x, targets = dataset(n, args.seq_len, args.dim, args.vocab, rows, args.seed)
    w_out = np.random.default_rng(args.seed + 1).standard_normal((args.dim, args.vocab))
    w_out = (w_out / math.sqrt(args.dim)).astype(np.float32)

    computed: list[int] = []

    class _Count(Callback):  # any computation through Dask's local schedulers
        def _start(self, dsk: Any) -> None:
            computed.append(len(dsk))

    start = time.perf_counter()
    with _Count():  # no client yet: a computation here would go through a local scheduler
        scores = score(x, targets, w_out)
    build_s = time.perf_counter() - start
    tasks = len(scores.__dask_graph__())
    (optimized,) = dask.optimize(scores)
    tasks_optimized = len(optimized.__dask_graph__())

    input_bytes = x.nbytes + targets.nbytes
    print(
        f"input: {n:,} sequences x {args.seq_len} tokens x {args.dim} float32 = "
        f"{format_bytes(x.nbytes)} (+ {format_bytes(targets.nbytes)} of int32 targets)"
    )
    print(
        f"chunks: {x.numblocks[0]} of {rows:,} sequences = {format_bytes(rows * per_sequence)}; "
        f"model: causal attention + (d={args.dim}) @ (V={args.vocab}) + cross-entropy"
    )
    print(
        f"graph: {tasks:,} tasks ({tasks_optimized:,} after Dask's optimisation), built in "
        f"{build_s:.3f} s with {len(computed)} computations during the seqops calls"
    )
    print(
        f"output: {type(scores).__module__}.{type(scores).__name__} {scores.shape} "
        f"{scores.dtype}, {len(scores.chunks[0])} chunks (like x)"
    )

    cluster_kw = dict(
        n_workers=args.workers,
        threads_per_worker=1,
        memory_limit=args.memory_limit,
        processes=args.processes,
        dashboard_address=None,
    )
    with LocalCluster(**cluster_kw) as cluster, Client(cluster) as client:
        workers = sorted(client.scheduler_info()["workers"])
        print(
            f"cluster: {len(workers)} workers x 1 thread x {format_bytes(limit)} "
            f"({'processes' if args.processes else 'threads of one process'})"
        )
        reset = client.run(_start_sampler)
        start = time.perf_counter()
        values = client.compute(scores).result()  # (N,) float32: the only thing gathered
        wall = time.perf_counter() - start
        peaks = client.run(_stop_sampler)
        restarted = sorted(client.scheduler_info()["workers"]) != workers

        mean = float(np.mean(values, dtype=np.float64))
        print(
            f"scored: mean {mean:.6f} nats/token over {values.size:,} sequences "
            f"(min {values.min():.4f}, max {values.max():.4f}); workers restarted: {restarted}"
        )
        print(
            f"wall time: {wall:.1f} s; throughput: {n / wall:,.0f} sequences/s, "
            f"{input_bytes / wall / 1e6:,.1f} MB/s"
        )
        peak = 0
        for address in sorted(peaks):
            found = peaks[address]
            hwm = found["hwm"] if reset[address] else None
            worst = max(found["sampled"], hwm or 0)
            peak = max(peak, worst)
            hwm_text = "n/a" if hwm is None else format_bytes(hwm)
            print(
                f"peak memory {address} (pid {found['pid']}): sampled RSS "
                f"{format_bytes(found['sampled'])}, VmHWM {hwm_text} "
                f"= {worst / limit:.0%} of {format_bytes(limit)}"
            )
        print(
            f"peak worker memory: {format_bytes(peak)} "
            f"({'under' if peak < limit else 'OVER'} the {format_bytes(limit)} limit)"
        )

        # A sample: a few sequences across the chunks, regenerated (same seeds) and scored
        # in NumPy by the same seqops calls and by the independent formula.
        picked = np.unique(np.linspace(0, n - 1, min(SAMPLE, n)).round().astype(int))
        xs, ts = client.compute([x[picked], targets[picked]], sync=True)
        same_calls = np.asarray(score(xs, ts, w_out))
        formula = numpy_reference(xs, ts, w_out)
        diff_seqops = float(np.max(np.abs(values[picked] - same_calls)))
        diff_formula = float(np.max(np.abs(values[picked].astype(np.float64) - formula)))
        print(
            f"sample of {picked.size} sequences {picked.tolist()}: max abs difference "
            f"{diff_seqops:.3g} vs seqops on NumPy, {diff_formula:.3g} vs a float64 NumPy formula"
        )

    return {
        "n": n,
        "rows": rows,
        "tasks": tasks,
        "computations": len(computed),
        "wall_s": wall,
        "scores": values,
        "mean": mean,
        "peak": peak,
        "limit": limit,
        "restarted": restarted,
        "sample": picked,
        "diff_seqops": diff_seqops,
        "diff_formula": diff_formula,
        "chunks": scores.chunks,
        "x_chunks": x.chunks,
    }


if __name__ == "__main__":
    main()
