"""Fast paths on the torch backend: torch's fused attention, native recurrent kernels, and
the native kernels of the pointwise ops, losses, the masked convolution and top-k.

- ``scaled_dot_product_attention`` and ``multi_head_attention`` run
  ``torch.nn.functional.scaled_dot_product_attention`` (flash / memory-efficient / math
  kernels, chosen by torch), declined inside ``torch.func.vmap`` (no batching rule: torch
  would loop over the batch; the portable attention is vmapped instead).
- ``lstm``, ``rnn`` and ``gru`` run ``torch.lstm`` / ``torch.rnn_tanh`` / ``torch.rnn_relu``
  / ``torch.gru`` (the kernels behind ``torch.nn.LSTM``/``RNN``/``GRU``; cuDNN on CUDA) on
  weights converted to torch's layout. They have no ``torch.func`` batching rule: tensors
  batched by ``torch.func.vmap`` are declined (the portable path is vmapped instead).
- ``softmax``, ``log_softmax``, ``relu``, ``silu``, ``gelu``, ``layer_norm``, ``rms_norm``
  (:mod:`.pointwise`), ``cross_entropy`` and ``autoregressive_log_likelihood``
  (:mod:`.losses`), ``masked_conv2d`` (:mod:`.conv`), ``filter_logits`` and
  ``sample_logits`` with top-k (:mod:`.decoding`, ``torch.topk`` instead of a full sort),
  ``bernoulli_log_likelihood``, ``gaussian_log_likelihood`` and ``iwae_bound``
  (:mod:`.generative`: ``binary_cross_entropy_with_logits``, ``addcmul``, ``logsumexp``),
  ``apply_rotary`` (:mod:`.rotary`, one ``torch.addcmul``), ``rnn_cell`` and ``gru_cell``
  (:mod:`.cells`, ``torch.rnn_tanh_cell``/``rnn_relu_cell``/``gru_cell``; ``lstm_cell`` in
  torch's kernels on the contract's gate order), ``clip_grad_norm``
  and ``clip_grad_value`` (:mod:`.clipping`, ``get_total_norm`` and ``clamp``), ``vit_embed``
  (:mod:`.vision`, ``F.conv2d`` with stride = patch) and ``window_attention`` (:mod:`.windows`: Swin's
  window attention written whole around one fused attention call, its windows folded into the
  heads as a view, the roll and partition in one gather, declined under ``torch.func.vmap``).
  The composites (``feed_forward``, ``gated_feed_forward``, the transformer layers) reach
  them through their dispatched parts. ``python bench/torch_fast.py`` prints
  their ratios to the native torch calls.

Each implementation accepts only the calls it computes exactly as the contract says and
declines the others (with the reason shown by :func:`seqops.explain`) to the portable path.
The arguments arrive validated, so nothing here re-checks shapes or dtypes for errors.

Importing this module does not import torch, and neither does the hook: torch's functions
are looked up when an implementation first runs (its arrays are torch tensors, so torch is
loaded by then).
"""

from __future__ import annotations

import math
from typing import Any

import seqops

from . import cells, clipping, conv, decoding, generative, losses, pointwise, rotary, vision, windows
from ._functorch import vmapped

# Reasons shown by seqops.explain.
DROPOUT = "dropout with an explicit rng: torch's fused dropout draws from its own generator"
WEIGHTS = "return_weights=True: torch's fused kernel does not return the attention weights"
NEED_WEIGHTS = "need_weights=True: torch's fused kernel does not return the attention weights"
HALF_RECURRENT = (
    "half precision: torch's recurrent kernels carry the state in half precision, the contract in float32"
)
HALF_RECURRENT_LIMITATIONS = (
    seqops.Limitation(HALF_RECURRENT, dtype="float16"),
    seqops.Limitation(HALF_RECURRENT, dtype="bfloat16"),
)
COMPOSITE = (
    "a cache, rotary embeddings, a bias or grouped heads: the portable multi-head attention runs "
    "them over the dispatched attention (torch-sdpa)"
)
EMPTY_SEQUENCE = "an empty sequence (T = 0)"
NO_FEATURES = "no query/key features (E = 0): not every torch attention kernel takes a head dim of 0"
NO_FEATURES_OFF_CPU = (
    "no query/key features (E = 0) off the CPU: not every torch GPU attention kernel takes a head dim "
    "of 0 (the CPU kernels give the contract's mean of v, with the scale passed)"
)
EMPTY_BATCH = "an empty batch"
VMAPPED = "a tensor batched by torch.func.vmap: torch's recurrent kernels have no batching rule"
VMAPPED_ATTENTION = (
    "a tensor batched by torch.func.vmap: torch's fused attention kernels have no batching rule "
    "(torch would loop over the batch)"
)


@seqops.hookimpl
def seqops_implementations(backend: seqops.Backend) -> list[seqops.Implementation] | None:
    if backend.name != "torch":
        return None
    ops = seqops.ops
    return [
        seqops.Implementation(ops.scaled_dot_product_attention, "torch-sdpa", sdpa, decline=decline_sdpa),
        seqops.Implementation(ops.multi_head_attention, "torch-mha-sdpa", mha, decline=decline_mha),
        seqops.Implementation(
            ops.lstm, "torch-lstm", lstm, decline=decline_lstm, limitations=HALF_RECURRENT_LIMITATIONS
        ),
        seqops.Implementation(
            ops.rnn, "torch-rnn", rnn, decline=decline_rnn, limitations=HALF_RECURRENT_LIMITATIONS
        ),
        seqops.Implementation(
            ops.gru, "torch-gru", gru, decline=decline_gru, limitations=HALF_RECURRENT_LIMITATIONS
        ),
        *pointwise.implementations(),
        *losses.implementations(),
        *conv.implementations(),
        *decoding.implementations(),
        *generative.implementations(),
        *rotary.implementations(),
        *cells.implementations(),
        *clipping.implementations(),
        *vision.implementations(),
        *windows.implementations(),
    ]


def _torch() -> Any:
    import torch

    return torch


# -- attention ------------------------------------------------------------------------
# torch's functions are looked up once, when the first call is declined or accepted, into
# module globals (an attribute chain costs ~0.1 µs and a dict lookup ~0.03 on the hot path of
# a tiny attention; a global ~0.01). Module-level functions, not methods: Dynamo reconstructs
# module functions under torch.compile(fullgraph=True).
_SDPA: Any = None  # torch.nn.functional.scaled_dot_product_attention
_SDPA_DTYPES: frozenset[Any] = frozenset()  # the dtypes it computes
_IS_COMPILING: Any = None  # torch.compiler.is_compiling
_TRANSFORMS_ACTIVE: Any = None  # torch._C._are_functorch_transforms_active
_sqrt = math.sqrt


def _attention_kernel() -> Any:
    """``torch.nn.functional.scaled_dot_product_attention``, looked up with the dtypes it
    computes, ``torch.compiler.is_compiling`` and whether a functorch transform is active."""
    global _SDPA, _SDPA_DTYPES, _IS_COMPILING, _TRANSFORMS_ACTIVE  # noqa: PLW0603 - filled once, read on the hot path
    torch = _torch()
    _SDPA_DTYPES = frozenset((torch.float16, torch.bfloat16, torch.float32, torch.float64))
    _IS_COMPILING = torch.compiler.is_compiling
    _TRANSFORMS_ACTIVE = torch._C._are_functorch_transforms_active  # as _functorch.vmapped asks
    _SDPA = torch.nn.functional.scaled_dot_product_attention
    return _SDPA


def _attention_dtypes() -> frozenset[Any]:
    _attention_kernel()
    return _SDPA_DTYPES


# The hot path of a tiny attention: every parameter is named (a ``**rest`` dict costs
# ~0.2 µs per call), and the common call gives torch no keyword (its argument parser takes
# ~0.1-0.4 µs for each).
def decline_sdpa(
    backend: seqops.Backend,
    q: Any,
    k: Any,
    v: Any,
    /,
    *,
    mask: Any,
    bias: Any,
    is_causal: bool,
    scale: float,
    dropout_p: float,
    rng: Any,
    enable_gqa: bool,
    return_weights: bool,
) -> str | None:
    if return_weights:
        return WEIGHTS
    if dropout_p > 0.0:
        return DROPOUT
    dtype = q.dtype
    if dtype not in (_SDPA_DTYPES or _attention_dtypes()):
        return f"dtype {dtype} is not one torch's attention kernels compute"
    if not q.is_cpu and not q.shape[-1]:
        return NO_FEATURES_OFF_CPU
    if _TRANSFORMS_ACTIVE() and vmapped(q, k, v, mask, bias):  # one C call, then the full check
        return VMAPPED_ATTENTION
    return None


def sdpa(
    backend: seqops.Backend,
    q: Any,
    k: Any,
    v: Any,
    /,
    *,
    mask: Any,
    bias: Any,
    is_causal: bool,
    scale: float,
    dropout_p: float,
    rng: Any,
    enable_gqa: bool,
    return_weights: bool,
) -> Any:
    shape = q.shape  # read once: each read of a torch shape builds a torch.Size (~0.07 µs)
    rank = len(shape)
    if rank > 4:
        return _folded(
            backend, q, k, v, mask=mask, bias=bias, is_causal=is_causal, scale=scale,
            dropout_p=dropout_p, rng=rng, enable_gqa=enable_gqa, return_weights=return_weights,
        )  # fmt: skip
    kernel = _SDPA or _attention_kernel()
    if mask is None and bias is None:
        # torch's fused kernels without a mask give zeros, not NaN, on a query row holding a
        # NaN (every score of the row is NaN): such rows are made NaN again, as the contract
        # (and torch's own kernel with a mask) gives them.
        width = shape[-1]  # E = 0 (the CPU only: declined elsewhere) passes its scale to torch
        if width and not is_causal and not enable_gqa and scale == 1.0 / _sqrt(width):
            # The common call, without keywords (torch's default scale is the same double),
            # and _nan_rows' test inline, _nan_free's too on a small q (a call costs ~0.1 µs).
            # No key element (S = 0, or no batch) goes to _nan_rows too: with no key and a NaN
            # in q, torch's kernels for ranks below 4 give NaN on every row, not the zeros.
            out = kernel(q, k, v)
            if (
                q.is_cpu
                and k.numel()
                and not _IS_COMPILING()
                and (rank != 4 or (q.equal(q) if q.numel() <= _EQUAL_SCAN else _nan_free(q)))
            ):
                return out
            return _nan_rows(q, k, out, known=True)
        k, nan_rows = _excluded_nan_keys(q, k, "causal" if is_causal else None, enable_gqa)
        out = kernel(q, k, v, None, is_causal=is_causal, scale=scale, enable_gqa=enable_gqa)
        return _nan_rows(q, k, out if nan_rows is None else out.masked_fill(nan_rows, math.nan))
    width = shape[-1]
    default_scale = width != 0 and not enable_gqa and scale == 1.0 / _sqrt(width)
    if (
        bias is None
        and not is_causal
        and default_scale
        and mask.ndim > 1
        and q.is_cpu
        and not _IS_COMPILING()
        and (k.equal(k) if k.numel() <= _EQUAL_SCAN else _nan_free(k))
    ):
        # The common masked call (a padding or an (L, S) mask): _excluded_nan_keys' test
        # inline, no NaN key to keep out, torch's kernel without keywords (~1 µs less).
        return kernel(q, k, v, mask)
    allowed = _allowed(q, k, mask, is_causal)
    k, nan_rows = _excluded_nan_keys(q, k, allowed, enable_gqa)
    attn_mask = allowed if bias is None else _with_bias(allowed, bias)
    if default_scale:
        out = kernel(q, k, v, attn_mask)  # no keyword: its parser costs ~0.1-0.4 µs each
    else:
        out = kernel(q, k, v, attn_mask, is_causal=False, scale=scale, enable_gqa=enable_gqa)
    if nan_rows is not None:
        out = out.masked_fill(nan_rows, math.nan)
    if not q.is_cpu:
        # torch's CPU kernels give zeros on rows with no allowed key (checked by the
        # tests); the GPU kernels are not all documented to, so zero those rows here.
        torch = _torch()
        allowed = attn_mask if attn_mask.dtype == torch.bool else attn_mask > -math.inf
        out = torch.where(allowed.any(dim=-1, keepdim=True), out, torch.zeros((), dtype=out.dtype))
    return out


def _folded(backend: seqops.Backend, q: Any, k: Any, v: Any, /, **options: Any) -> Any:
    """:func:`sdpa` of ``(B, A..., H, L, E)`` inputs, the middle dimensions folded into the
    heads axis, ``(B, A...·H, L, E)``: torch takes its fused kernels for 4-D inputs only (Swin's
    window attention, ``(B, windows, H, N, d)``, ran its math kernel: 1.33x the plain
    attention). Folding into the heads rather than the batch keeps a mask or bias shared over
    the batch (Swin's ``(windows, 1, N, N)``) at its own size: it is expanded over the middle
    dimensions and the heads only. With GQA, query head ``a·H + h`` meets key head
    ``a·Hk + h // (H / Hk)``, as unfolded."""
    torch = _torch()
    lead = torch.broadcast_shapes(q.shape[:-3], k.shape[:-3], v.shape[:-3])
    heads = q.shape[-3]

    def fold(x: Any, mask: bool = False) -> Any:
        if x is None:
            return None
        x = x.reshape((1,) * (q.ndim - x.ndim) + tuple(x.shape))  # (B or 1, A..., H or 1, L, S)
        # a mask keeps its batch axis (it broadcasts); its heads axis is the queries'
        batch, h = (x.shape[0], heads) if mask else (lead[0], x.shape[-3])
        x = x.expand(batch, *lead[1:], h, *x.shape[-2:])
        return x.reshape(batch, math.prod(lead[1:]) * h, *x.shape[-2:])  # not -1: B may be 0

    options["mask"], options["bias"] = fold(options["mask"], True), fold(options["bias"], True)
    out = sdpa(backend, fold(q), fold(k), fold(v), **options)  # (B, A...·H, L, Ev)
    return out.reshape(*lead, heads, *out.shape[-2:])


def _nan_rows(q: Any, k: Any, out: Any, *, known: bool = False) -> Any:
    """``out`` with NaN on the rows where ``q`` has a NaN. With no key (S = 0) the contract's
    zeros, whatever the kernel gave (NaN for some layouts).

    Only torch's fused CPU kernel (flash attention, for 4-D inputs only: ``sdp_utils_cpp``)
    drops NaN rows; the math kernel it runs for any other rank keeps them (the conformance
    cases are 3-D, ``tests/test_torch_fast_ops.py``'s 4-D). Eagerly on the CPU
    :func:`_nan_free` decides (a host read: 0.4 µs on a tiny call; reading a CPU tensor waits
    for nothing); on a GPU or while
    traced the fix is always applied (no host read: no device synchronisation; a compiled
    graph may take another kernel, so the 4-D rule is for eager calls only). ``known``:
    the caller has made that test already (and found something to fix)."""
    if k.shape[-2] == 0:
        return out.masked_fill(out != 0, 0.0)  # keeps the graph: zero gradients
    if not known and q.is_cpu and not _compiling() and (q.ndim != 4 or _nan_free(q)):
        return out
    return out.masked_fill(q.isnan().any(-1, keepdim=True), math.nan)


_EQUAL_SCAN = 4096  # up to this many elements _nan_free tests by x.equal(x)


def _nan_free(x: Any) -> bool:
    """Whether the CPU tensor ``x`` holds no NaN: a host read, so never asked on a GPU (a device
    synchronisation) nor while traced. Up to 4096 elements ``x.equal(x)`` (False exactly when
    a NaN is there, by IEEE comparison; torch compares a tensor with itself by one scan for
    NaN, no output): 0.4 µs where ``x.max().item()`` takes 1.0 µs. Above that, the maximum
    (torch's ``max`` propagates NaN): vectorized and threaded where the scan is not (4.1x faster
    at 65536 elements), and cheaper than a sum."""
    n = x.numel()
    if n <= _EQUAL_SCAN:
        return n == 0 or x.equal(x)
    return not math.isnan(x.max().item())


def _compiling() -> bool:
    return (_IS_COMPILING or _compiler())()  # type: ignore[no-any-return]


def _compiler() -> Any:
    _attention_kernel()
    return _IS_COMPILING


def _allowed(q: Any, k: Any, mask: Any, is_causal: bool) -> Any:
    """``mask`` and ``is_causal`` as one bool mask (True = attend: torch's meaning too), or
    ``None`` (torch refuses ``attn_mask`` together with ``is_causal``, so causality is folded
    in). A mask of shape ``(S,)`` or ``()`` is given its missing axes: torch's kernels index
    ``attn_mask`` dim -2."""
    mask = _matrix(mask) if mask is not None and mask.ndim < 2 else mask
    if not is_causal:
        return mask
    causal = _torch().ones(q.shape[-2], k.shape[-2], dtype=_torch().bool, device=q.device).tril()
    return causal if mask is None else mask & causal


def _matrix(x: Any) -> Any:
    """A 0-d or 1-d mask or bias as ``(1, S)`` or ``(1, 1)``: the same broadcast."""
    return x.reshape((1,) * (2 - x.ndim) + tuple(x.shape))


def _with_bias(allowed: Any, bias: Any) -> Any:
    """The one float ``attn_mask`` for an allowed mask (or ``None``) and ``bias``: ``bias``
    where allowed, ``-inf`` elsewhere."""
    bias = _matrix(bias) if bias.ndim < 2 else bias
    if allowed is None:
        return bias
    torch = _torch()
    return torch.where(allowed, bias, torch.tensor(-math.inf, dtype=bias.dtype, device=bias.device))


def _excluded_nan_keys(q: Any, k: Any, allowed: Any, enable_gqa: bool) -> tuple[Any, Any]:
    """``k`` without NaN in the keys ``allowed`` excludes, and the query rows (``(..., L, 1)``
    bool) that attend a NaN key, or ``(k, None)`` when there is nothing to fix.

    torch's kernels add the mask as ``-inf`` to the scores, so a NaN key that the mask
    excludes would still make the row NaN, where the contract ignores excluded keys (as the
    portable path's ``where`` does). Every NaN key is zeroed and the rows that do attend one
    are made NaN again: exact. Eagerly on the CPU :func:`_nan_free` of ``k`` decides whether
    to (as in :func:`_nan_rows`); on a GPU or while traced the fix is always
    applied (no host read: no device synchronisation). ``allowed="causal"`` stands for
    torch's own causal kernel (kept: the fused kernels skip the excluded blocks), whose rows
    attending a NaN key are found from a running maximum over the keys."""
    if allowed is None or k.shape[-2] == 0:
        return k, None
    if k.is_cpu and not _compiling() and _nan_free(k):
        return k, None
    bad = k.isnan().any(-1)  # (..., Hk, S)
    clean = k.masked_fill(bad[..., None], 0.0)
    if enable_gqa and k.ndim >= 3 and q.shape[-3] != k.shape[-3]:
        bad = bad.repeat_interleave(q.shape[-3] // k.shape[-3], dim=-2)  # (..., H, S)
    if isinstance(allowed, str):  # causal, top-left: query i attends keys j <= i
        torch = _torch()
        seen = bad.to(torch.int8).cummax(-1).values.bool()  # (..., H, S): a NaN key at or before j
        last = torch.arange(q.shape[-2], device=q.device).clamp(max=k.shape[-2] - 1)
        return clean, seen[..., last][..., None]  # (..., L, 1)
    return clean, (allowed & bad[..., None, :]).any(-1, keepdim=True)  # (..., L, 1)


# -- multi-head attention -------------------------------------------------------------
def decline_mha(
    backend: seqops.Backend,
    query: Any,
    *args: Any,
    dropout_p: float,
    need_weights: bool,
    bias: Any,
    num_heads: int,
    num_kv_heads: int,
    rotary: Any,
    kv_cache: Any,
    **_: Any,
) -> str | None:
    if need_weights:
        return NEED_WEIGHTS
    if dropout_p > 0.0:
        return DROPOUT
    if kv_cache is not None or rotary is not None or bias is not None or num_kv_heads != num_heads:
        return COMPOSITE
    if query.dtype not in _attention_dtypes():
        return f"dtype {query.dtype} is not one torch's attention kernels compute"
    if args[2].w_q.shape[-1] == 0:  # args = (key, value, params); params.w_q (D, heads·dh): dh = 0
        return NO_FEATURES
    if vmapped(query, *args[:2], *args[2], _.get("mask"), _.get("key_padding_mask")):
        return VMAPPED_ATTENTION
    return None


def mha(
    backend: seqops.Backend,
    query: Any,
    key: Any,
    value: Any,
    params: Any,
    /,
    *,
    num_heads: int,
    mask: Any,
    key_padding_mask: Any,
    is_causal: bool,
    scale: float,
    **_: Any,
) -> Any:
    def project(x: Any, w: Any, b: Any) -> Any:
        y = x @ w
        y = y if b is None else y + b
        # (..., L, D) -> (..., H, L, D // H): head h is columns h*dh:(h+1)*dh
        *lead, length, width = y.shape
        return y.reshape(*lead, length, num_heads, width // num_heads).transpose(-2, -3)

    q = project(query, params.w_q, params.b_q)
    k = project(key, params.w_k, params.b_k)
    v = project(value, params.w_v, params.b_v)
    allowed = mask
    if key_padding_mask is not None:
        # (..., 1, 1, S); a 0-d one broadcasts as it is
        kpm = key_padding_mask[..., None, None, :] if key_padding_mask.ndim else key_padding_mask
        allowed = kpm if allowed is None else allowed & kpm
    heads = sdpa(
        backend,
        q,
        k,
        v,
        mask=allowed,
        bias=None,
        is_causal=is_causal,
        scale=scale,
        dropout_p=0.0,
        rng=None,
        enable_gqa=False,
        return_weights=False,
    )  # (..., H, L, dv)
    heads = heads.transpose(-2, -3)
    merged = heads.reshape(*heads.shape[:-2], heads.shape[-2] * heads.shape[-1])  # (..., L, D_vo)
    out = merged @ params.w_o
    return out if params.b_o is None else out + params.b_o


# -- recurrent ------------------------------------------------------------------------
def _decline_recurrent(xs: Any, h0: Any, *others: Any) -> str | None:
    if xs.dtype not in (_torch().float32, _torch().float64):
        return HALF_RECURRENT if xs.dtype.itemsize == 2 else f"dtype {xs.dtype} is not supported"
    if vmapped(xs, h0, *others):
        return VMAPPED
    if xs.shape[0] == 0:
        return EMPTY_SEQUENCE
    if h0.numel() == 0:
        return EMPTY_BATCH
    return None


def decline_lstm(backend: seqops.Backend, xs: Any, state: Any, *args: Any) -> str | None:
    return _decline_recurrent(xs, state[0], state[1], *args)


def decline_rnn(backend: seqops.Backend, xs: Any, h0: Any, *args: Any, **_: Any) -> str | None:
    return _decline_recurrent(xs, h0, *args)


def decline_gru(backend: seqops.Backend, xs: Any, h0: Any, *args: Any) -> str | None:
    return _decline_recurrent(xs, h0, *args)


def _batched(xs: Any, hidden: int) -> tuple[Any, tuple[int, ...], int]:
    """``xs (T, ..., I)`` as ``(T, B, I)``, the batch shape ``...`` and ``B``."""
    batch = tuple(xs.shape[1:-1])
    size = math.prod(batch)
    return xs.reshape(xs.shape[0], size, xs.shape[-1]), batch, size


def lstm(backend: seqops.Backend, xs: Any, state: Any, w_ih: Any, w_hh: Any, b: Any, /) -> Any:
    torch = _torch()
    h0, c0 = state
    hidden = h0.shape[-1]
    x3, batch, size = _batched(xs, hidden)

    def torch_layout(w: Any) -> Any:
        # gates i, f, o, g along the last axis -> torch's i, f, g, o along the first. (I, 4H)
        # -> (4H, I) by torch's blocked 2-D transpose into a fresh tensor (~0.1 ms per MiB
        # here; a strided (4H, I) view is no saving: oneDNN's LSTM takes contiguous weights,
        # and torch's copy of the view is slower), then the o and g blocks swapped in place
        # through one block-sized temporary (0.96x of the call with a cat of the row blocks,
        # paired). The transpose is what seqops' (I, 4H) layout costs per call on torch.
        w = w.T.clone(memory_format=torch.contiguous_format) if w.ndim == 2 else w.clone()
        o = w[2 * hidden : 3 * hidden].clone()
        w[2 * hidden : 3 * hidden] = w[3 * hidden :]
        w[3 * hidden :] = o
        return w

    weights = [torch_layout(w_ih), torch_layout(w_hh)]
    if b is not None:
        bias = torch_layout(b)
        weights += [bias, torch.zeros_like(bias)]  # torch's b_ih + b_hh = our one bias
    hx = (h0.reshape(1, size, hidden), c0.reshape(1, size, hidden))
    hs, h_last, c_last = torch.lstm(x3, hx, weights, b is not None, 1, 0.0, True, False, False)
    return hs.reshape(xs.shape[0], *batch, hidden), (
        h_last.reshape(*batch, hidden),
        c_last.reshape(*batch, hidden),
    )


def rnn(
    backend: seqops.Backend, xs: Any, h0: Any, w_ih: Any, w_hh: Any, b: Any, /, *, nonlinearity: str
) -> Any:
    torch = _torch()
    hidden = h0.shape[-1]
    x3, batch, size = _batched(xs, hidden)
    weights = [w_ih.T.contiguous(), w_hh.T.contiguous()]  # (H, I): see lstm
    if b is not None:
        weights += [b, torch.zeros_like(b)]
    kernel = torch.rnn_relu if nonlinearity == "relu" else torch.rnn_tanh
    hs, h_last = kernel(x3, h0.reshape(1, size, hidden), weights, b is not None, 1, 0.0, True, False, False)
    return hs.reshape(xs.shape[0], *batch, hidden), h_last.reshape(*batch, hidden)


def gru(backend: seqops.Backend, xs: Any, h0: Any, w_ih: Any, w_hh: Any, b_ih: Any, b_hh: Any, /) -> Any:
    torch = _torch()
    hidden = h0.shape[-1]
    x3, batch, size = _batched(xs, hidden)
    # torch's gate order is ours (r, z, n); only the orientation differs: (3H, I), contiguous
    weights = [w_ih.T.contiguous(), w_hh.T.contiguous()]
    has_biases = b_ih is not None or b_hh is not None
    if has_biases:  # torch takes both biases or neither
        weights += [
            torch.zeros_like(b_hh) if b_ih is None else b_ih,
            torch.zeros_like(b_ih) if b_hh is None else b_hh,
        ]
    hs, h_last = torch.gru(x3, h0.reshape(1, size, hidden), weights, has_biases, 1, 0.0, True, False, False)
    return hs.reshape(xs.shape[0], *batch, hidden), h_last.reshape(*batch, hidden)
