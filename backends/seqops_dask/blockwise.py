"""Recurrences on Dask: the whole time loop inside each batch chunk.

The portable ``rnn``/``lstm``/``gru`` loop over time in Python (``Backend.scan``), one lazy
slice and one step per ``t``: the graph grows with ``T`` and building it grows with ``T²``.
Here one ``blockwise`` task per batch chunk runs the op of the blocks' own backend (NumPy's,
fast paths included) over the whole sequence: a few tasks per chunk whatever ``T``.

Chunks: time and features in one chunk each (``xs`` is rechunked so, lazily; a chunk then
holds ``T x batch-chunk x features``), batch axes as the input has them; the weights in one
chunk, given to every task. Each task returns the hidden states and the final state stacked
along time (``T + 1`` or ``T + 2`` rows), sliced apart lazily.
"""

from __future__ import annotations

from typing import Any

import seqops

ONLY_DASK = "the sequence is not a Dask array (NumPy data beside Dask weights: the portable loop)"
UNKNOWN = "a size of the sequence is unknown (nan chunks): the portable loop"


def _block_backend(x: Any) -> seqops.Backend:
    """The seqops backend of the blocks of Dask array ``x`` (NumPy's, or CuPy's)."""
    meta = x._meta
    for backend, _ in seqops.backends():
        if backend.name != "dask" and backend.owns(meta):
            return backend
    msg = f"no seqops backend computes Dask blocks of type {type(meta).__qualname__}"
    raise TypeError(msg)


def _decline(backend: seqops.Backend, xs: Any, *_: Any, **__: Any) -> str | None:
    if not backend.owns(xs):
        return ONLY_DASK
    if any(not isinstance(n, int) for n in backend.local_shape(xs)):
        return UNKNOWN
    return None


def _one_chunk(x: Any) -> Any:
    """``x`` (Dask or NumPy) as a Dask array of one chunk."""
    import dask.array as da

    return da.from_array(x, chunks=-1) if not hasattr(x, "dask") else x.rechunk(-1)


def _blockwise(
    op: seqops.Op, xs: Any, states: tuple[Any, ...], weights: tuple[Any, ...], **options: Any
) -> Any:
    """``(hs, final states...)`` of ``op`` over ``xs (T, ..., I)`` computed blockwise.

    ``states`` (each ``(..., H)``) follow ``xs``'s batch chunks; ``weights`` (2-D or 1-D,
    ``None`` for absent biases) are whole in every task."""
    import dask.array as da

    inner = _block_backend(xs)
    steps, nb = xs.shape[0], xs.ndim - 2
    batch = tuple(f"b{i}" for i in range(nb))
    xs = xs.rechunk({0: -1, xs.ndim - 1: -1})
    args: list[Any] = [xs, ("T", *batch, "I")]
    for s in states:
        args += [da.asarray(s).rechunk({s.ndim - 1: -1}), (*batch, "H")]
    present = [w is not None for w in weights]
    for w in weights:
        if w is not None:
            args += [_one_chunk(w), tuple(f"w{len(args)}_{axis}" for axis in range(w.ndim))]

    def block(x: Any, *rest: Any) -> Any:
        given = iter(rest[len(states) :])
        ws = [next(given) if p else None for p in present]
        hs, final = _run(op, inner, x, rest[: len(states)], ws, options)
        return inner.namespace().concat([hs, *(f[None, ...] for f in final)], axis=0)

    out = da.blockwise(
        block,
        ("T", *batch, "H"),
        *args,
        adjust_chunks={"T": steps + len(states)},
        dtype=xs.dtype,
        meta=xs._meta,
        concatenate=True,
    )
    return out[:steps], tuple(out[steps + i] for i in range(len(states)))


def _run(op: seqops.Op, inner: seqops.Backend, xs: Any, states: Any, weights: list[Any], options: Any) -> Any:
    """The op on one block's arrays, through the blocks' backend; ``(hs, final states)``."""
    if op is seqops.ops.lstm:
        hs, (h, c) = op.dispatch(inner, xs, tuple(states), *weights)
        return hs, (h, c)
    hs, h = op.dispatch(inner, xs, states[0], *weights, **options)
    return hs, (h,)


def lstm(backend: seqops.Backend, xs: Any, state: Any, w_ih: Any, w_hh: Any, b: Any, /) -> Any:
    hs, (h, c) = _blockwise(seqops.ops.lstm, xs, tuple(state), (w_ih, w_hh, b))
    return hs, (h, c)


def gru(backend: seqops.Backend, xs: Any, h0: Any, w_ih: Any, w_hh: Any, b_ih: Any, b_hh: Any, /) -> Any:
    hs, (h,) = _blockwise(seqops.ops.gru, xs, (h0,), (w_ih, w_hh, b_ih, b_hh))
    return hs, h


def rnn(
    backend: seqops.Backend, xs: Any, h0: Any, w_ih: Any, w_hh: Any, b: Any, /, *, nonlinearity: str
) -> Any:
    hs, (h,) = _blockwise(seqops.ops.rnn, xs, (h0,), (w_ih, w_hh, b), nonlinearity=nonlinearity)
    return hs, h


def implementations() -> list[seqops.Implementation]:
    return [
        seqops.Implementation(seqops.ops.rnn, "dask-blockwise-rnn", rnn, _decline),
        seqops.Implementation(seqops.ops.lstm, "dask-blockwise-lstm", lstm, _decline),
        seqops.Implementation(seqops.ops.gru, "dask-blockwise-gru", gru, _decline),
    ]
