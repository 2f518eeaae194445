"""The conformance cases: inputs for every public op and the reference each is checked against.

A :class:`Case` builds float64 NumPy inputs (``args``, ``kwargs`` of the public call) from
a generator seeded by its id, so every backend and dtype sees the same values. The
runner casts floating arrays to the dtype under test, keeps boolean and integer arrays,
converts the fields of parameter tuples (``MHAParams``, ``EncoderLayerParams``) and
replaces :data:`LIKE` by an array of the backend, device and dtype under test. The
reference is then called with the same arguments, converted back to NumPy (``like``
dropped), and returns the expected outputs.

Sizes stay small (lengths and widths <= 16) and random inputs are ``0.5 * N(0, 1)`` so
that half precision is exercised without overflow.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

import seqops
from seqops_conformance import references as ref


class _Like:
    """Placeholder for ``like=``: the runner substitutes an array of the backend under test."""

    def __repr__(self) -> str:
        return "LIKE"


LIKE = _Like()

Inputs = tuple[tuple[Any, ...], dict[str, Any]]


@dataclass(frozen=True)
class Case:
    """One conformance case of one public op.

    Attributes
    ----------
    op : str
        The public function, ``seqops.<op>``.
    name : str
        What the case exercises; unique within ``op``.
    build : callable
        ``build(rng) -> (args, kwargs)`` with float64 NumPy arrays.
    reference : callable
        ``reference(*args, **kwargs) -> tuple of ndarray``, the expected outputs in the
        order the op returns them (float64, or bool for exact outputs).
    unsupported : mapping of str to str
        Dtype names this case does not apply to, with the reason (reported as skipped).
    """

    op: str
    name: str
    build: Callable[[np.random.Generator], Inputs]
    reference: Callable[..., tuple[np.ndarray, ...]]
    unsupported: Mapping[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.op}[{self.name}]"

    def inputs(self) -> Inputs:
        """The case's float64 inputs, always the same for the same id."""
        return self.build(np.random.default_rng(zlib.crc32(self.id.encode())))


def _normal(rng: np.random.Generator, *shape: int, scale: float = 0.5) -> np.ndarray:
    return scale * rng.standard_normal(shape)


def _bools(rng: np.random.Generator, *shape: int, p: float = 0.7) -> np.ndarray:
    return rng.random(shape) < p


# -- references adapted to the public signatures -----------------------------------------


def _ref_sdpa(q, k, v, *, return_weights=False, **options):
    out, weights = ref.scaled_dot_product_attention(q, k, v, **options)
    return (out, weights) if return_weights else (out,)


def _ref_mha(query, key, value, params, *, need_weights=False, **options):
    out, weights = ref.multi_head_attention(query, key, value, params, **options)
    return (out, weights) if need_weights else (out,)


def _ref_pe(num_positions, d_model, *, dtype=None, **options):
    return (ref.sinusoidal_positional_encoding(num_positions, d_model, **options),)


def _fixed(args: tuple[Any, ...], kwargs: dict[str, Any], rng: np.random.Generator) -> Inputs:
    """Build function of a case whose inputs are not random."""
    return args, dict(kwargs)


def _single(fn: Callable[..., np.ndarray]) -> Callable[..., tuple[np.ndarray, ...]]:
    return lambda *args, **kwargs: (fn(*args, **kwargs),)


CASES: list[Case] = []


def _add(op: str, name: str, build: Callable[[np.random.Generator], Inputs], reference: Callable[..., Any]) -> None:
    CASES.append(Case(op, name, build, reference))


# -- scaled_dot_product_attention ----------------------------------------------------------


def _sdpa(rng, q, k, v, *, mask=None, bias=None, no_key_rows=(), **options):
    """Inputs of shapes ``q``, ``k``, ``v``; ``mask``/``bias`` shapes; ``no_key_rows``
    indexes of (broadcast) mask rows set all False."""
    kwargs = dict(options)
    if mask is not None:
        kwargs["mask"] = _bools(rng, *mask)
        for row in no_key_rows:
            kwargs["mask"][row] = False
    if bias is not None:
        kwargs["bias"] = _normal(rng, *bias)
    return (_normal(rng, *q), _normal(rng, *k), _normal(rng, *v)), kwargs


def _sdpa_bias_row_minus_inf(rng):
    args, kwargs = _sdpa(rng, (2, 5, 8), (2, 6, 8), (2, 6, 8), bias=(5, 6))
    kwargs["bias"][3] = -np.inf  # row 3 has no key: its output must be zeros
    return args, kwargs


for _name, _build in {
    "3d L!=S Ev!=E": partial(_sdpa, q=(2, 5, 8), k=(2, 7, 8), v=(2, 7, 6)),
    "4d": partial(_sdpa, q=(2, 3, 6, 8), k=(2, 3, 6, 8), v=(2, 3, 6, 8)),
    "broadcast batch": partial(_sdpa, q=(2, 3, 5, 8), k=(1, 3, 7, 8), v=(1, 3, 7, 4)),
    "broadcast rank": partial(_sdpa, q=(2, 3, 5, 8), k=(3, 7, 8), v=(3, 7, 8)),
    "2d": partial(_sdpa, q=(4, 8), k=(6, 8), v=(6, 5)),
    "mask (L,S)": partial(_sdpa, q=(2, 2, 5, 8), k=(2, 2, 7, 8), v=(2, 2, 7, 8), mask=(5, 7)),
    "mask (B,1,L,S)": partial(_sdpa, q=(2, 2, 5, 8), k=(2, 2, 7, 8), v=(2, 2, 7, 8), mask=(2, 1, 5, 7)),
    "bias": partial(_sdpa, q=(2, 2, 5, 8), k=(2, 2, 7, 8), v=(2, 2, 7, 8), bias=(2, 2, 5, 7)),
    "bias (L,S)": partial(_sdpa, q=(2, 2, 5, 8), k=(2, 2, 7, 8), v=(2, 2, 7, 8), bias=(5, 7)),
    "causal": partial(_sdpa, q=(2, 6, 8), k=(2, 6, 8), v=(2, 6, 8), is_causal=True),
    "causal L<S": partial(_sdpa, q=(2, 4, 8), k=(2, 7, 8), v=(2, 7, 8), is_causal=True),
    "causal L>S": partial(_sdpa, q=(2, 7, 8), k=(2, 4, 8), v=(2, 4, 8), is_causal=True),
    "mask+bias+causal": partial(
        _sdpa, q=(2, 2, 6, 8), k=(2, 2, 6, 8), v=(2, 2, 6, 8), mask=(2, 1, 6, 6), bias=(6, 6), is_causal=True
    ),
    "scale": partial(_sdpa, q=(2, 5, 8), k=(2, 7, 8), v=(2, 7, 8), scale=0.3),
    "gqa": partial(_sdpa, q=(2, 4, 5, 8), k=(2, 2, 7, 8), v=(2, 2, 7, 8), enable_gqa=True),
    "gqa causal weights": partial(
        _sdpa, q=(4, 6, 8), k=(2, 6, 8), v=(2, 6, 4), enable_gqa=True, is_causal=True, return_weights=True
    ),
    "weights": partial(_sdpa, q=(2, 2, 5, 8), k=(2, 2, 7, 8), v=(2, 2, 7, 8), mask=(5, 7), return_weights=True),
    "fully masked rows": partial(
        _sdpa, q=(2, 2, 5, 8), k=(2, 2, 7, 8), v=(2, 2, 7, 8), mask=(2, 1, 5, 7),
        no_key_rows=((0, 0, 1), (1, 0, 4)), return_weights=True,
    ),
    "fully masked by bias -inf": _sdpa_bias_row_minus_inf,
}.items():
    _add("scaled_dot_product_attention", _name, _build, _ref_sdpa)

# -- masks and positional encodings (creation ops use like=) -------------------------------

for _q_len, _kv_len, _align in ((5, None, "top_left"), (4, 7, "top_left"), (7, 4, "top_left"),
                                (4, 7, "bottom_right"), (7, 4, "bottom_right"), (6, 6, "bottom_right")):
    _args = (_q_len,) if _kv_len is None else (_q_len, _kv_len)
    _add(
        "causal_mask",
        f"{_align} {'x'.join(map(str, _args))}",
        partial(_fixed, _args, {"align": _align, "like": LIKE}),
        _single(ref.causal_mask),
    )

for _name, _lengths, _max_len in (("with zero length", [0, 3, 5, 2], 5), ("max_len > lengths", [1, 4], 6)):
    _add(
        "padding_mask",
        _name,
        partial(_fixed, (np.array(_lengths, dtype=np.int64), _max_len), {}),
        _single(ref.padding_mask),
    )

for _name, _shape, _options in (
    ("interleaved 7x8", (7, 8), {}),
    ("halves 7x8", (7, 8), {"layout": "halves"}),
    ("odd half width 6x6 base 100", (6, 6), {"base": 100.0}),
    ("positions halves", (5, 10), {"layout": "halves", "positions": np.array([0, 3, 10, 100, 7])}),
):
    _add(
        "sinusoidal_positional_encoding",
        _name,
        partial(_fixed, _shape, {**_options, "like": LIKE}),
        _ref_pe,
    )

# -- softmax and log-softmax -----------------------------------------------------------------


def _large_logits(rng):
    # Magnitudes ~1e4 (float16 max is 65504), each row with a near-tie at its maximum so
    # the probabilities are not just one-hot.
    x = rng.uniform(-1e4, 1e4, (4, 9))
    top = x.max(axis=-1)
    x[:, 0], x[:, 1] = top - 0.5, top - 2.0
    x[3] = -1e4 + _normal(rng, 9)
    return (x,), {}


for _op, _reference in (("softmax", ref.softmax), ("log_softmax", ref.log_softmax)):
    for _name, _build in {
        "axis -1": lambda rng: ((_normal(rng, 4, 9, scale=2.0),), {}),
        "axis 0": lambda rng: ((_normal(rng, 5, 3, 4, scale=2.0),), {"axis": 0}),
        "axis 1 of 3": lambda rng: ((_normal(rng, 3, 6, 4, scale=2.0),), {"axis": 1}),
        "large magnitude": _large_logits,
    }.items():
        _add(_op, _name, _build, _single(_reference))

# -- layer norm and feed-forward ---------------------------------------------------------------


def _layer_norm(rng, *, weight=True, bias=True, offset=0.0, eps=None):
    x = offset + _normal(rng, 3, 5, 16, scale=1.0)
    kwargs = {} if eps is None else {"eps": eps}
    w = 1.0 + _normal(rng, 16, scale=0.2) if weight else None
    b = _normal(rng, 16, scale=0.2) if bias else None
    return (x, w, b), kwargs


for _name, _build in {
    "plain": partial(_layer_norm, weight=False, bias=False),
    "affine": _layer_norm,
    "weight only": partial(_layer_norm, bias=False),
    "offset mean eps": partial(_layer_norm, offset=8.0, eps=1e-3),
}.items():
    _add("layer_norm", _name, _build, _single(ref.layer_norm))


def _linear_weights(rng, d_in, d_out, bias=True):
    w = rng.standard_normal((d_in, d_out)) / np.sqrt(d_in)
    return w, (_normal(rng, d_out, scale=0.1) if bias else None)


def _feed_forward(rng, *, activation, biases=(True, True)):
    w1, b1 = _linear_weights(rng, 8, 16, biases[0])
    w2, b2 = _linear_weights(rng, 16, 6, biases[1])
    return (_normal(rng, 2, 5, 8, scale=1.0), w1, b1, w2, b2), {"activation": activation}


for _name, _build in {
    "relu": partial(_feed_forward, activation="relu"),
    "gelu": partial(_feed_forward, activation="gelu"),
    "gelu_tanh": partial(_feed_forward, activation="gelu_tanh"),
    "gelu no biases": partial(_feed_forward, activation="gelu", biases=(False, False)),
    "relu b1 only": partial(_feed_forward, activation="relu", biases=(True, False)),
}.items():
    _add("feed_forward", _name, _build, _single(ref.feed_forward))

# -- multi-head attention and the encoder layer ----------------------------------------------


def _mha_params(rng, d_in, d_kv, width, value_width, d_out, bias=True):
    w_q, b_q = _linear_weights(rng, d_in, width, bias)
    w_k, b_k = _linear_weights(rng, d_kv, width, bias)
    w_v, b_v = _linear_weights(rng, d_kv, value_width, bias)
    w_o, b_o = _linear_weights(rng, value_width, d_out, bias)
    return seqops.MHAParams(w_q, w_k, w_v, w_o, b_q, b_k, b_v, b_o)


def _mha(rng, *, lead=(2,), length=5, source=None, bias=True, mask=False, padding=None, **options):
    """Self attention when ``source`` is None, else cross attention of widths 8 -> 12 -> 6.
    ``padding`` gives the real lengths of each batch element's keys (0 = fully padded)."""
    query = _normal(rng, *lead, length, 8, scale=1.0)
    if source is None:
        key = value = query
        params = _mha_params(rng, 8, 8, 8, 8, 8, bias)
    else:
        key = value = _normal(rng, *lead, source, 10, scale=1.0)
        params = _mha_params(rng, 8, 10, 8, 12, 6, bias)
    kwargs = {"num_heads": 2, **options}
    if mask:
        kwargs["mask"] = _bools(rng, length, key.shape[-2])
    if padding is not None:
        kwargs["key_padding_mask"] = np.arange(key.shape[-2]) < np.array(padding)[:, None]
    return (query, key, value, params), kwargs


for _name, _build in {
    "self": _mha,
    "cross": partial(_mha, source=7),
    "unbatched": partial(_mha, lead=()),
    "no biases": partial(_mha, bias=False),
    "mask": partial(_mha, source=7, mask=True),
    "key padding, one fully padded": partial(_mha, source=7, padding=[5, 0]),
    "causal": partial(_mha, is_causal=True),
    "weights mask padding": partial(_mha, source=7, mask=True, padding=[7, 3], need_weights=True),
}.items():
    _add("multi_head_attention", _name, _build, _ref_mha)


def _encoder(rng, *, length=6, norm_affine=True, mask=False, padding=None, **options):
    x = _normal(rng, 2, length, 8, scale=1.0)
    attn = _mha_params(rng, 8, 8, 8, 8, 8)
    w1, b1 = _linear_weights(rng, 8, 16)
    w2, b2 = _linear_weights(rng, 16, 8)
    norms = [(1.0 if i % 2 == 0 else 0.0) + _normal(rng, 8, scale=0.2) for i in range(4 if norm_affine else 0)]
    params = seqops.EncoderLayerParams(attn, w1, b1, w2, b2, *norms)
    kwargs = {"num_heads": 2, **options}
    if mask:
        kwargs["mask"] = _bools(rng, length, length)
    if padding is not None:
        kwargs["key_padding_mask"] = np.arange(length) < np.array(padding)[:, None]
    return (x, params), kwargs


for _name, _build in {
    "post-norm relu": _encoder,
    "norm_first gelu": partial(_encoder, norm_first=True, activation="gelu"),
    "key padding": partial(_encoder, padding=[6, 3]),
    "causal gelu_tanh": partial(_encoder, is_causal=True, activation="gelu_tanh"),
    "mask norm_first": partial(_encoder, mask=True, norm_first=True),
    "no norm affine": partial(_encoder, norm_affine=False),
}.items():
    _add("transformer_encoder_layer", _name, _build, _single(ref.transformer_encoder_layer))

OPS: tuple[str, ...] = tuple(dict.fromkeys(case.op for case in CASES))
"""Every op with cases, in registry order."""
