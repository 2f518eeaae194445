"""Graph construction on Dask (issue 15): how long building the lazy graph of a seqops call
takes and how many tasks it has, against the same formula written as a per-step Python loop
over lazy slices (what the portable ``scan`` does), measured in one process.

    python bench/dask_graph.py [--steps 1000]

Prints one line per case: build seconds, tasks, and the implementation that ran. Nothing is
computed (the builds are checked to compute nothing, as the conformance suite does).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import seqops


def _build(fn, *args, **kwargs):
    backend = dict((b.name, b) for b, _ in seqops.backends())["dask"]
    with backend.computations() as computed:
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        seconds = time.perf_counter() - start
    assert not computed, computed
    first = out[0] if isinstance(out, tuple) else out
    return seconds, len(first.__dask_graph__()), str(seqops.explain(fn, *args, **kwargs).chosen)


def main(argv: list[str] | None = None) -> None:
    import dask.array as da

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    steps = parser.parse_args(argv).steps
    batch, width, hidden = 64, 32, 64
    rng = np.random.default_rng(0)
    xs = da.random.default_rng(0).standard_normal((steps, batch, width), chunks=(steps, 16, width))
    xs = xs.astype(np.float32)
    h0 = da.zeros((batch, hidden), chunks=(16, hidden), dtype=np.float32)
    seqops.rnn(xs[:2], h0, *(np.zeros((n, hidden), np.float32) for n in (width, hidden)))  # imports
    print(f"dask graph construction, T={steps}, batch {batch} in 4 chunks, {width} -> {hidden}")
    for name, gates in (("rnn", 1), ("lstm", 4), ("gru", 3)):
        w_ih = (0.1 * rng.standard_normal((width, gates * hidden))).astype(np.float32)
        w_hh = (0.1 * rng.standard_normal((hidden, gates * hidden))).astype(np.float32)
        state = (h0, h0) if name == "lstm" else h0
        seconds, tasks, chosen = _build(getattr(seqops, name), xs, state, w_ih, w_hh)
        print(f"  {name:5} {seconds:7.3f} s  {tasks:6} tasks  ({chosen})")
    # the loop over lazy slices, for comparison (what the portable path builds), at T/10
    short = xs[: steps // 10]
    w_ih = (0.1 * rng.standard_normal((width, hidden))).astype(np.float32)
    w_hh = (0.1 * rng.standard_normal((hidden, hidden))).astype(np.float32)
    start = time.perf_counter()
    h = h0
    for t in range(short.shape[0]):
        h = da.tanh(short[t] @ w_ih + h @ w_hh)
    print(
        f"  a per-step loop over lazy slices at T={steps // 10}: {time.perf_counter() - start:.3f} s, "
        f"{len(h.__dask_graph__())} tasks"
    )
    x = da.zeros((16384, 1024, 64), chunks=(32, 1024, 64), dtype=np.float32)
    seconds, tasks, chosen = _build(seqops.scaled_dot_product_attention, x, x, x, is_causal=True)
    size = f"{x.nbytes / 2**30:.0f} GiB in {x.npartitions} chunks"
    print(f"  attention on {size}: {seconds:.3f} s, {tasks} tasks ({chosen})")


if __name__ == "__main__":
    main()
