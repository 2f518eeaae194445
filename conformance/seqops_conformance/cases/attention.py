"""Cases of the attention family: scaled dot-product attention, masks, positional encodings."""

from __future__ import annotations

from functools import partial

import numpy as np

import seqops
from seqops_conformance.cases._base import LIKE, _add, _bools, _fixed, _linear_weights, _normal, _single
from seqops_conformance.references import attention as ref


def _ref_sdpa(q, k, v, *, return_weights=False, **options):
    out, weights = ref.scaled_dot_product_attention(q, k, v, **options)
    return (out, weights) if return_weights else (out,)


def _ref_pe(num_positions, d_model, **options):
    return (ref.sinusoidal_positional_encoding(num_positions, d_model, **options),)


# -- scaled_dot_product_attention ----------------------------------------------------------


# Cases share shapes where they can: JAX compiles each op once per shape and dtype.
_3D = ((2, 5, 8), (2, 7, 8), (2, 7, 6))  # L < S, Ev != E


_4D = ((2, 2, 5, 8), (2, 2, 7, 8), (2, 2, 7, 8))


def _sdpa(q, k, v, rng, *, mask=None, bias=None, no_key_rows=(), **options):
    """Inputs of shapes ``q``, ``k``, ``v``, a random ``mask`` and ``bias`` of the given
    shapes; the mask rows indexed by ``no_key_rows`` are all False (no key to attend)."""
    kwargs = dict(options)
    if mask is not None:
        kwargs["mask"] = _bools(rng, *mask)
        for row in no_key_rows:
            kwargs["mask"][row] = False
    if bias is not None:
        kwargs["bias"] = _normal(rng, *bias)
    return (_normal(rng, *q), _normal(rng, *k), _normal(rng, *v)), kwargs


def _sdpa_bias_row_minus_inf(rng):
    args, kwargs = _sdpa(*_3D, rng, bias=(5, 7))
    kwargs["bias"][3] = -np.inf  # row 3 has no key: its output must be zeros
    return args, kwargs


def _sdpa_0d(rng, *, mask=(), bias=False, is_causal=False):
    """A 0-d (or ``mask``-shaped) mask, and a 0-d bias if asked: they broadcast to
    ``(..., L, S)`` as any other shape does."""
    args, kwargs = _sdpa(*_4D, rng, mask=mask or None, is_causal=is_causal)
    if not mask:
        kwargs["mask"] = np.array(True)
    if bias:
        kwargs["bias"] = np.array(0.3)
    return args, kwargs


_add(
    "scaled_dot_product_attention",
    {
        "3d L<S Ev!=E": partial(_sdpa, *_3D),
        "4d": partial(_sdpa, *_4D),
        "2d": partial(_sdpa, (5, 8), (7, 8), (7, 6)),
        "broadcast batch": partial(_sdpa, (2, 2, 5, 8), (1, 2, 7, 8), (1, 2, 7, 4)),
        "broadcast rank": partial(_sdpa, (2, 2, 5, 8), (2, 7, 8), (2, 7, 8)),
        "mask (L,S)": partial(_sdpa, *_4D, mask=(5, 7)),
        "mask (B,1,L,S)": partial(_sdpa, *_4D, mask=(2, 1, 5, 7)),
        "bias": partial(_sdpa, *_4D, bias=(2, 2, 5, 7)),
        "bias (L,S)": partial(_sdpa, *_4D, bias=(5, 7)),
        "causal L=S": partial(_sdpa, (2, 7, 8), (2, 7, 8), (2, 7, 6), is_causal=True),
        "causal L<S": partial(_sdpa, *_3D, is_causal=True),
        "causal L>S": partial(_sdpa, (2, 7, 8), (2, 5, 8), (2, 5, 6), is_causal=True),
        "mask+bias+causal": partial(_sdpa, *_4D, mask=(2, 1, 5, 7), bias=(5, 7), is_causal=True),
        "0-d mask": _sdpa_0d,
        "mask (S,), 0-d bias, causal": partial(_sdpa_0d, mask=(7,), bias=True, is_causal=True),
        "scale": partial(_sdpa, *_3D, scale=0.3),
        "gqa": partial(_sdpa, (2, 4, 5, 8), (2, 2, 7, 8), (2, 2, 7, 8), enable_gqa=True),
        "gqa causal weights": partial(
            _sdpa, (4, 5, 8), (2, 7, 8), (2, 7, 6), enable_gqa=True, is_causal=True, return_weights=True
        ),
        "weights": partial(_sdpa, *_4D, mask=(5, 7), return_weights=True),
        "fully masked rows": partial(
            _sdpa, *_4D, mask=(2, 1, 5, 7), no_key_rows=((0, 0, 1), (1, 0, 4)), return_weights=True
        ),
        "fully masked by bias -inf": _sdpa_bias_row_minus_inf,
        "L=1 S=1": partial(_sdpa, (2, 1, 8), (2, 1, 8), (2, 1, 6)),
        "edge: L=0": partial(_sdpa, (2, 0, 8), (2, 7, 8), (2, 7, 6)),
        # No key: every query attends to nothing, so its output is zeros (API.md).
        "edge: S=0": partial(_sdpa, (2, 5, 8), (2, 0, 8), (2, 0, 6)),
        "edge: S=0 mask (L, 0)": partial(_sdpa, (2, 5, 8), (2, 0, 8), (2, 0, 6), mask=(5, 0), is_causal=True),
        # No features: every score is 0 (the default scale is 1.0), so the output is the mean of v.
        "edge: E=0": partial(_sdpa, (2, 5, 0), (2, 7, 0), (2, 7, 6)),
        "edge: E=0 causal weights": partial(
            _sdpa, (2, 5, 0), (2, 7, 0), (2, 7, 6), is_causal=True, return_weights=True
        ),
        "edge: Ev=0": partial(_sdpa, (2, 5, 8), (2, 7, 8), (2, 7, 0)),
        "edge: empty batch": partial(_sdpa, (0, 2, 5, 8), (0, 2, 7, 8), (0, 2, 7, 6)),
    },
    _ref_sdpa,
    # Causal + grouped heads + weights as an output; masked rows; a bias of -inf (the
    # gradients of rows without keys must be finite, API.md).
    grad=("gqa causal weights", "fully masked rows", "fully masked by bias -inf"),
)


# -- masks and positional encodings (creation ops use like=) -------------------------------

_add(
    "causal_mask",
    {
        f"{align} {'x'.join(map(str, lengths))}": partial(_fixed, lengths, {"align": align, "like": LIKE})
        for lengths, align in (
            ((5,), "top_left"),
            ((4, 7), "top_left"),
            ((7, 4), "top_left"),
            ((4, 7), "bottom_right"),
            ((7, 4), "bottom_right"),
            ((6, 6), "bottom_right"),
            ((1, 5), "bottom_right"),  # one decoding step: the new query sees every key
        )
    }
    | {
        f"edge: {name} {align}": partial(_fixed, lengths, {"align": align, "like": LIKE})
        for name, lengths in (("L=0 S=0", (0,)), ("L=0", (0, 4)), ("S=0", (4, 0)))
        for align in ("top_left", "bottom_right")
    },
    _single(ref.causal_mask),
)


_add(
    "padding_mask",
    {
        "with zero length": partial(_fixed, (np.array([0, 3, 5, 2]), 5), {}),
        "max_len > lengths": partial(_fixed, (np.array([1, 4]), 6), {}),
        "edge: empty batch": partial(_fixed, (np.zeros(0, dtype=np.int64), 5), {}),
        "edge: max_len=0": partial(_fixed, (np.array([0, 0]), 0), {}),
    },
    _single(ref.padding_mask),
)


_add(
    "sinusoidal_positional_encoding",
    {
        "interleaved 7x8": partial(_fixed, (7, 8), {"like": LIKE}),
        "halves 7x8": partial(_fixed, (7, 8), {"layout": "halves", "like": LIKE}),
        "odd half width 6x6 base 100": partial(_fixed, (6, 6), {"base": 100.0, "like": LIKE}),
        "positions halves": partial(
            _fixed, (5, 10), {"layout": "halves", "positions": np.array([0, 3, 10, 100, 7]), "like": LIKE}
        ),
        "edge: 0 positions": partial(_fixed, (0, 8), {"like": LIKE}),
        "edge: empty positions": partial(
            _fixed, (0, 8), {"layout": "halves", "positions": np.zeros(0, dtype=np.int64), "like": LIKE}
        ),
        "edge: d_model=0": partial(_fixed, (5, 0), {"like": LIKE}),
    },
    _ref_pe,
)


# -- multi-head attention -------------------------------------------------------------------------


def _ref_mha(query, key, value, params, *, need_weights=False, **options):
    found = ref.multi_head_attention(query, key, value, params, **options)
    if options.get("kv_cache") is not None:
        return found[0], found[2]  # (out, (keys, values, length))
    out, weights = found
    return (out, weights) if need_weights else (out,)


def _mha_params(rng, d_in, d_kv, width, value_width, d_out, bias=True):
    w_q, b_q = _linear_weights(rng, d_in, width, bias)
    w_k, b_k = _linear_weights(rng, d_kv, width, bias)
    w_v, b_v = _linear_weights(rng, d_kv, value_width, bias)
    w_o, b_o = _linear_weights(rng, value_width, d_out, bias)
    return seqops.MHAParams(w_q, w_k, w_v, w_o, b_q, b_k, b_v, b_o)


def _mha(
    rng, *, lead=(2,), length=5, source=None, bias=True, mask=None, padding=None, head_bias=False, at=None,
    **options,
):  # fmt: skip
    """Self attention when ``source`` is None, else cross attention of widths 8 -> 12 -> 6;
    a random ``mask`` of the given shape; ``padding`` gives the real lengths of each batch
    element's keys (0 = fully padded)."""
    query = _normal(rng, *lead, length, 8, scale=1.0)
    if source is None:
        key = value = query
        params = _mha_params(rng, 8, 8, 8, 8, 8, bias)
    else:
        key = value = _normal(rng, *lead, source, 10, scale=1.0)
        params = _mha_params(rng, 8, 10, 8, 12, 6, bias)
    kwargs = {"num_heads": 2, **options}
    if mask is not None:
        kwargs["mask"] = _bools(rng, *mask)
    if padding == ():
        kwargs["key_padding_mask"] = np.array(True)  # 0-d: broadcasts to (..., S)
    elif padding is not None:
        kwargs["key_padding_mask"] = np.arange(key.shape[-2]) < np.array(padding)[:, None]
    kwargs = _with_options(
        kwargs, rng, lead=lead, length=length, source=key.shape[-2], head_bias=head_bias, at=at
    )
    return (query, key, value, params), kwargs


def _with_options(kwargs, rng, *, lead, length, source, head_bias=False, at=None):
    if head_bias:
        kwargs["bias"] = _normal(rng, *lead, kwargs["num_heads"], length, source)
    if at is not None:
        kwargs["positions"] = at
    return kwargs


def _gqa(rng, *, lead=(2,), length=5, **options):
    """Self attention with 4 query heads of 2 and 2 key/value heads of 3."""
    x = _normal(rng, *lead, length, 8, scale=1.0)
    w_q, b_q = _linear_weights(rng, 8, 8)
    w_k, b_k = _linear_weights(rng, 8, 4)
    w_v, b_v = _linear_weights(rng, 8, 6)
    w_o, b_o = _linear_weights(rng, 12, 8)
    params = seqops.MHAParams(w_q, w_k, w_v, w_o, b_q, b_k, b_v, b_o)
    return (x, x, x, params), {"num_heads": 4, "num_kv_heads": 2, **options}


def _cached(rng, *, length, new, rotary=None, is_causal=True, padding=False, size=8):
    """A step of cached decoding: ``new`` tokens after ``length`` cached ones (the cache rows
    past ``length`` hold garbage that must not be read), GQA when ``rotary`` is given."""
    (x, _, _, params), kwargs = _gqa(rng, length=new) if rotary is not None else _mha(rng, length=new)
    heads = kwargs.get("num_kv_heads", kwargs["num_heads"])
    dh, dv = params.w_k.shape[1] // heads, params.w_v.shape[1] // heads
    keys, values = _normal(rng, 2, heads, size, dh, scale=1.0), _normal(rng, 2, heads, size, dv, scale=1.0)
    kwargs |= {"kv_cache": seqops.KVCache(keys, values, np.asarray(length)), "is_causal": is_causal}
    if rotary is not None:
        kwargs["rotary"] = rotary
    if padding:
        kwargs["key_padding_mask"] = np.arange(size) != 1  # cached position 1 is padding
    return (x, x, x, params), kwargs


def _no_query_features(rng):
    """Queries and keys projected to 0 features a head (``w_q``, ``w_k (8, 0)``): every score
    is 0, so each query gets the mean of the values."""
    x = _normal(rng, 2, 5, 8, scale=1.0)
    w_q, b_q = _linear_weights(rng, 8, 0)
    w_k, b_k = _linear_weights(rng, 8, 0)
    w_v, b_v = _linear_weights(rng, 8, 8)
    w_o, b_o = _linear_weights(rng, 8, 8)
    return (x, x, x, seqops.MHAParams(w_q, w_k, w_v, w_o, b_q, b_k, b_v, b_o)), {"num_heads": 2}


def _cached_empty_batch(rng):
    (x, _, _, params), kwargs = _cached(rng, length=2, new=1)
    cache = kwargs["kv_cache"]
    kwargs["kv_cache"] = seqops.KVCache(cache.keys[:0], cache.values[:0], cache.length)
    return (x[:0], x[:0], x[:0], params), kwargs


_add(
    "multi_head_attention",
    {
        "self": _mha,
        "cross": partial(_mha, source=7),
        "one query (a decoding step)": partial(_mha, length=1, source=7),
        "unbatched": partial(_mha, lead=()),
        "no biases": partial(_mha, bias=False),
        "mask (L,S)": partial(_mha, source=7, mask=(5, 7)),
        "mask per head": partial(_mha, source=7, mask=(2, 2, 5, 7)),
        "key padding, one fully padded": partial(_mha, source=7, padding=[5, 0]),
        "key padding 0-d, mask (S,)": partial(_mha, source=7, padding=(), mask=(7,)),
        "causal": partial(_mha, is_causal=True),
        "weights mask padding": partial(_mha, source=7, mask=(5, 7), padding=[7, 3], need_weights=True),
        "scale and bias": partial(_mha, is_causal=True, scale=0.2, head_bias=True),
        "grouped heads (GQA)": partial(_gqa, is_causal=True),
        "rotary halves": partial(_mha, is_causal=True, rotary=seqops.Rotary()),
        "rotary interleaved partial, positions": partial(
            _mha,
            rotary=seqops.Rotary(base=100.0, layout="interleaved", rotary_dim=2),
            at=np.array([3, 0, 9, 4, 7]),
        ),
        "cache prefill": partial(_cached, length=0, new=5),
        "cache step, GQA, rotary": partial(_cached, length=4, new=1, rotary=seqops.Rotary()),
        "cache chunk, not causal, padding": partial(_cached, length=2, new=3, is_causal=False, padding=True),
        "edge: empty batch": partial(_mha, lead=(0,)),
        "edge: L=0": partial(_mha, length=0, source=7),
        # No key: the attention is zeros, so the output is the output projection's bias.
        "edge: S=0": partial(_mha, source=0),
        "edge: S=0 weights": partial(_mha, source=0, need_weights=True),
        "edge: E=0": _no_query_features,
        "edge: empty batch cache": _cached_empty_batch,
    },
    _ref_mha,
    # Self attention: query, key and value are one array, whose gradient sums three paths.
    grad=("self", "key padding, one fully padded", "scale and bias", "grouped heads (GQA)", "rotary halves"),
)


# -- rotary position embeddings --------------------------------------------------------------------


def _rotary(lead, positions, rng, **options):
    return (_normal(rng, *lead, 5, 8, scale=1.0), positions), options


_add(
    "apply_rotary",
    {
        "halves (L,)": partial(_rotary, (2, 3), np.arange(5)),
        "interleaved offset": partial(_rotary, (2, 3), np.arange(5) + 11, layout="interleaved"),
        "per-sequence positions, partial": partial(
            _rotary, (2, 3), np.array([[[0, 1, 2, 3, 4]], [[7, 3, 0, 2, 100]]]), rotary_dim=4, base=500.0
        ),
        "interleaved partial": partial(_rotary, (2,), np.arange(5), layout="interleaved", rotary_dim=6),
        "edge: L=0": lambda rng: ((_normal(rng, 2, 0, 8), np.arange(0)), {}),
        "edge: empty batch": partial(_rotary, (0, 3), np.arange(5)),
        "edge: E=0": lambda rng: ((_normal(rng, 2, 5, 0), np.arange(5)), {}),
    },
    _single(ref.apply_rotary),
    grad=("halves (L,)", "per-sequence positions, partial"),
)
