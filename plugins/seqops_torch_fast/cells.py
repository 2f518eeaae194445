"""One recurrent step on torch's cell kernels: ``rnn_cell`` on ``torch.rnn_tanh_cell`` /
``torch.rnn_relu_cell`` and ``gru_cell`` on ``torch.gru_cell`` (the ops behind
``torch.nn.RNNCell`` / ``GRUCell``), with the weights passed as transposed views (torch's
``(gates·H, I)`` layout; the gate order r, z, n is the contract's). ``gru_cell`` measured
3.4x of ``torch.gru_cell`` on the portable path (B=64, I=256, H=512, float32, one thread).

``lstm_cell`` does not call ``torch.lstm_cell`` (whose gates are ordered i, f, g, o: both
weight matrices would be reordered, copied, on every call); it is the cell written with torch's
kernels on the contract's order i, f, o, g: the two products (``torch.addmm`` with the bias,
the second in place), one ``sigmoid`` over the i, f, o columns, one ``tanh``, and
``torch.addcmul`` for the state update (the portable path computes its overflow-free sigmoid
in six kernels).

``rnn_cell`` and ``gru_cell`` inside ``torch.func.vmap`` are declined (no batching rule), and so are half
precision (torch's cells compute it in half precision, the contract in float32) and an empty
batch (left to the portable path). Leading batch dimensions ``(..., I)`` are flattened for
torch, which takes one.
"""

from __future__ import annotations

from typing import Any

import seqops

from ._functorch import vmapped

HALF = "half precision: torch's cell kernels compute in half precision, the contract in float32"
VMAPPED = "a tensor batched by torch.func.vmap: torch.gru_cell has no batching rule"
VMAPPED_RNN = "a tensor batched by torch.func.vmap: torch.rnn_tanh_cell/rnn_relu_cell have no batching rule"
EMPTY_BATCH = "an empty batch"

_K: dict[str, Any] = {}


def _load() -> dict[str, Any]:
    import torch

    _K.update(
        addmm=torch.addmm,
        addcmul=torch.addcmul,
        tanh=torch.rnn_tanh_cell,
        relu=torch.rnn_relu_cell,
        gru=torch.gru_cell,
        native=frozenset((torch.float32, torch.float64)),
    )
    return _K


def implementations() -> list[seqops.Implementation]:
    ops = seqops.ops
    half = (seqops.Limitation(HALF, dtype="float16"), seqops.Limitation(HALF, dtype="bfloat16"))
    return [
        seqops.Implementation(
            ops.rnn_cell, "torch-rnn-cell", rnn_cell, decline=decline_rnn_cell, limitations=half
        ),
        seqops.Implementation(
            ops.gru_cell, "torch-gru-cell", gru_cell, decline=decline_gru_cell, limitations=half
        ),
        seqops.Implementation(
            ops.lstm_cell, "torch-lstm-cell", lstm_cell, decline=decline_lstm_cell, limitations=half
        ),
    ]


def decline_cell(backend: seqops.Backend, x: Any, h: Any, *args: Any, **_: Any) -> str | None:
    if x.dtype not in (_K or _load())["native"]:
        return HALF if x.dtype.itemsize == 2 else f"dtype {x.dtype} is not supported"
    if h.numel() == 0:
        return EMPTY_BATCH
    return None


def decline_rnn_cell(backend: seqops.Backend, x: Any, h: Any, *args: Any, **_: Any) -> str | None:
    return decline_cell(backend, x, h) or (VMAPPED_RNN if vmapped(x, h, *args) else None)


def decline_gru_cell(backend: seqops.Backend, x: Any, h: Any, *args: Any) -> str | None:
    return decline_cell(backend, x, h) or (VMAPPED if vmapped(x, h, *args) else None)


def decline_lstm_cell(backend: seqops.Backend, x: Any, state: Any, *args: Any) -> str | None:
    return decline_cell(backend, x, state[0])


def lstm_cell(backend: seqops.Backend, x: Any, state: Any, w_ih: Any, w_hh: Any, b: Any, /) -> Any:
    k = _K or _load()
    h, c = state
    hidden = h.shape[-1]
    x2, h2, batch = _flat(x, h)
    # (B, 4H) = x w_ih + h w_hh + b on the contract's layout. MKL's orientations without a
    # copy of the weights, paired in one process against torch's own x @ weight_ih.T
    # (B=64, I=256, H=512, 2 threads, 2026-12-02): this one 1.03-1.12x, the transposed product
    # (4H, B) = w_ih^T x^T 1.18-1.21x (one thread: 1.00-1.02x and 1.27-1.30x).
    gates = x2 @ w_ih if b is None else k["addmm"](b, x2, w_ih)
    # The second product in place on our own temporary (a pass and an allocation less;
    # addmm's backward needs neither its output nor ``gates``), except under torch.func.vmap:
    # a batched product cannot be added in place to an unbatched one.
    if vmapped(x2, h2, w_hh, gates):
        gates = k["addmm"](gates, h2, w_hh)
    else:
        gates.addmm_(h2, w_hh)
    # The sigmoid in place on our own temporary (an allocation and a pass less). Safe for
    # autograd: addmm's backward needs neither its output nor ``gates``; ``g`` (tanh keeps its
    # output) is taken before the sigmoid overwrites the rest of ``gates``, and nothing
    # writes to ``gates`` after that.
    g = gates[:, 3 * hidden :].tanh()
    ifo = gates[:, : 3 * hidden].sigmoid_()
    # The state operand first, so that torch lays each result out as it (contiguous).
    c_new = k["addcmul"](c.reshape(-1, hidden) * ifo[:, hidden : 2 * hidden], ifo[:, :hidden], g)
    h_new = c_new.tanh() * ifo[:, 2 * hidden :]
    return h_new.reshape(*batch, hidden), c_new.reshape(*batch, hidden)


def _flat(x: Any, h: Any) -> tuple[Any, Any, tuple[int, ...]]:
    """``x (..., I)`` and ``h (..., H)`` as ``(B, I)``, ``(B, H)`` (``x`` broadcast to ``h``'s batch)."""
    batch = tuple(h.shape[:-1])
    x = x.expand(*batch, x.shape[-1]) if tuple(x.shape[:-1]) != batch else x
    return x.reshape(-1, x.shape[-1]), h.reshape(-1, h.shape[-1]), batch


def rnn_cell(
    backend: seqops.Backend, x: Any, h: Any, w_ih: Any, w_hh: Any, b: Any, /, *, nonlinearity: str
) -> Any:
    k = _K or _load()
    x2, h2, batch = _flat(x, h)
    out = k[nonlinearity](x2, h2, w_ih.T, w_hh.T, b, None)
    return out.reshape(*batch, h.shape[-1])


def gru_cell(backend: seqops.Backend, x: Any, h: Any, w_ih: Any, w_hh: Any, b_ih: Any, b_hh: Any, /) -> Any:
    k = _K or _load()
    x2, h2, batch = _flat(x, h)
    return k["gru"](x2, h2, w_ih.T, w_hh.T, b_ih, b_hh).reshape(*batch, h.shape[-1])
