"""The conformance cases: inputs for every public op and the reference each is checked against.

A :class:`Case` builds float64 NumPy inputs (``args``, ``kwargs`` of the public call) from
a generator seeded by its id, so every backend and dtype sees the same values. The
runner casts floating arrays to the dtype under test, keeps boolean and integer arrays,
converts the entries of tuples, lists and dicts (LSTM states, ``MHAParams``, gradient
containers) and replaces :data:`LIKE` by an array of the backend, device and dtype under
test; anything else (a seed, the step function of ``decode``) passes unchanged. The
reference is then called with the same arguments, converted back to NumPy (``like``
dropped), and returns the expected outputs.

Cases marked ``exact`` (data movement: patches, windows, shifts; 0/1 and 0/-100 masks)
have tolerance 0 even for floating outputs. A case may check a composition of public ops
instead of one op (``call``): ``elbo`` of a linear decoder of ``reparameterize`` with a
given ``eps``, whose gradient with respect to ``mu`` and ``log_var`` takes both paths.

Random ops are checked on what is deterministic about them: ``sample_logits`` with
``top_k=1`` must be :func:`seqops.greedy`, and every id it draws must lie in the support
that temperature, top-k and top-p leave (``compare="in_support"``). Cases marked ``grad``
also get gradient checks on the backends with autodiff.

Sizes stay small (lengths and widths <= 16) and random inputs are normals of scale 0.5 to
2 (weights scaled by ``1/sqrt(fan_in)``), so half precision is exercised without overflow.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import array_api_compat
import numpy as np

import seqops
from seqops_conformance import references as ref


class _Like:
    """Placeholder for ``like=``: the runner substitutes an array of the backend under test."""

    def __repr__(self) -> str:
        return "LIKE"


LIKE = _Like()

Inputs = tuple[tuple[Any, ...], dict[str, Any]]
Build = Callable[[np.random.Generator], Inputs]


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
        ``reference(*args, **kwargs)``, the expected outputs nested as the op nests them
        (tuples, lists, dicts; ``None`` where the op returns ``None``): float64 arrays or
        Python floats, or bool and integer arrays for exact outputs.
    compare : {"close", "in_support"}
        ``"close"``: each output against the reference output (floating within the
        dtype's tolerance, boolean and integer exactly). ``"in_support"``: the op returns
        integer token ids ``(...)`` and the reference a boolean support ``(..., V)``; every
        id must be a token of the support (an exact check, for sampling).
    grad : bool
        Also check the gradient (the ``"grad"`` transformation, see
        :mod:`seqops_conformance.grad`) on the backends with autodiff.
    exact : bool
        Floating outputs must equal the reference exactly (tolerance 0): data movement
        (patches, windows, shifts) and 0/1 or 0/-100 masks, which no rounding may touch.
    call : callable, optional
        What is checked instead of ``seqops.<op>``: a composition of public ops (e.g.
        ``elbo`` of a decoder of ``reparameterize``), with the same argument conventions
        as an op. It may have an ``implementation(*args, **kwargs) -> str`` method naming
        what ran (reported like ``seqops.explain(...).chosen``).
    """

    op: str
    name: str
    build: Build
    reference: Callable[..., Any]
    compare: str = "close"
    grad: bool = False
    exact: bool = False
    call: Callable[..., Any] | None = None

    @property
    def id(self) -> str:
        return f"{self.op}[{self.name}]"

    @property
    def function(self) -> Callable[..., Any]:
        """What the case calls: :attr:`call`, else the public ``seqops.<op>``."""
        return self.call if self.call is not None else getattr(seqops, self.op)

    def implementation(self, *args: Any, **kwargs: Any) -> str:
        """Which implementation runs for these (backend) arguments."""
        if self.call is None:
            return str(seqops.explain(self.function, *args, **kwargs).chosen)
        named = getattr(self.call, "implementation", None)
        return str(named(*args, **kwargs)) if named is not None else "composition"

    def inputs(self, seed: int = 0) -> Inputs:
        """The case's float64 inputs, always the same for the same id and ``seed``
        (a non-negative integer)."""
        return self.build(np.random.default_rng(zlib.crc32(self.id.encode()) + (seed << 32)))


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


def _ref_pe(num_positions, d_model, **options):
    return (ref.sinusoidal_positional_encoding(num_positions, d_model, **options),)


def _fixed(args: tuple[Any, ...], kwargs: dict[str, Any], rng: np.random.Generator) -> Inputs:
    """Build function of a case whose inputs are not random."""
    return args, dict(kwargs)


def _single(fn: Callable[..., np.ndarray]) -> Callable[..., tuple[np.ndarray, ...]]:
    return lambda *args, **kwargs: (fn(*args, **kwargs),)


CASES: list[Case] = []


def _add(
    op: str,
    builds: Mapping[str, Build],
    reference: Callable[..., Any],
    *,
    grad: Sequence[str] = (),
    compare: str = "close",
    exact: bool = False,
) -> None:
    """Register one case of ``op`` per ``{name: build}`` entry; the cases named in
    ``grad`` also get gradient checks."""
    unknown = set(grad) - set(builds)
    assert not unknown, f"gradient checks of unknown {op} cases {unknown}"
    CASES.extend(
        Case(op, name, build, reference, compare=compare, grad=name in grad, exact=exact)
        for name, build in builds.items()
    )


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
        "empty query L=0": partial(_sdpa, (2, 0, 8), (2, 7, 8), (2, 7, 6)),
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
    },
    _single(ref.causal_mask),
)

_add(
    "padding_mask",
    {
        "with zero length": partial(_fixed, (np.array([0, 3, 5, 2]), 5), {}),
        "max_len > lengths": partial(_fixed, (np.array([1, 4]), 6), {}),
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
    },
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


def _logits(shape, axis, rng):
    return (_normal(rng, *shape, scale=2.0),), {"axis": axis}


for _op, _reference in (("softmax", ref.softmax), ("log_softmax", ref.log_softmax)):
    _add(
        _op,
        {
            "axis -1": partial(_logits, (4, 9), -1),
            "axis 0": partial(_logits, (5, 3, 4), 0),
            "axis 1 of 3": partial(_logits, (3, 6, 4), 1),
            "large magnitude": _large_logits,
        },
        _single(_reference),
        # Not "large magnitude": a step of 1e-6 relative to logits of 1e4 is 1e-2, far too
        # coarse for central differences of a softmax with a near-tie.
        grad=("axis 1 of 3",),
    )

# -- layer norm and feed-forward ---------------------------------------------------------------


def _layer_norm(rng, *, weight=True, bias=True, offset=0.0, eps=None, constant_rows=()):
    """Inputs ``(3, 5, 16)``; the rows indexed by ``constant_rows`` are constant (zero
    variance: the output is the bias, ``eps`` keeps it finite)."""
    x = offset + _normal(rng, 3, 5, 16, scale=1.0)
    for row in constant_rows:
        x[row] = offset + 0.5
    kwargs = {} if eps is None else {"eps": eps}
    w = 1.0 + _normal(rng, 16, scale=0.2) if weight else None
    b = _normal(rng, 16, scale=0.2) if bias else None
    return (x, w, b), kwargs


_add(
    "layer_norm",
    {
        "plain": partial(_layer_norm, weight=False, bias=False),
        "affine": _layer_norm,
        "weight only": partial(_layer_norm, bias=False),
        "bias only": partial(_layer_norm, weight=False),
        "offset mean eps": partial(_layer_norm, offset=8.0, eps=1e-3),
        "constant rows": partial(_layer_norm, constant_rows=((0, 1), (2, 4))),
    },
    _single(ref.layer_norm),
    grad=("affine", "offset mean eps"),
)


def _linear_weights(rng, d_in, d_out, bias=True):
    w = rng.standard_normal((d_in, d_out)) / np.sqrt(d_in)
    return w, (_normal(rng, d_out, scale=0.1) if bias else None)


def _feed_forward(rng, *, activation, biases=(True, True)):
    w1, b1 = _linear_weights(rng, 8, 16, biases[0])
    w2, b2 = _linear_weights(rng, 16, 6, biases[1])
    return (_normal(rng, 2, 5, 8, scale=1.0), w1, b1, w2, b2), {"activation": activation}


_add(
    "feed_forward",
    {
        "relu": partial(_feed_forward, activation="relu"),
        "gelu": partial(_feed_forward, activation="gelu"),
        "gelu_tanh": partial(_feed_forward, activation="gelu_tanh"),
        "gelu no biases": partial(_feed_forward, activation="gelu", biases=(False, False)),
        "relu b1 only": partial(_feed_forward, activation="relu", biases=(True, False)),
    },
    _single(ref.feed_forward),
    grad=("gelu", "gelu_tanh"),
)

# -- multi-head attention and the encoder layer ----------------------------------------------


def _mha_params(rng, d_in, d_kv, width, value_width, d_out, bias=True):
    w_q, b_q = _linear_weights(rng, d_in, width, bias)
    w_k, b_k = _linear_weights(rng, d_kv, width, bias)
    w_v, b_v = _linear_weights(rng, d_kv, value_width, bias)
    w_o, b_o = _linear_weights(rng, value_width, d_out, bias)
    return seqops.MHAParams(w_q, w_k, w_v, w_o, b_q, b_k, b_v, b_o)


def _mha(rng, *, lead=(2,), length=5, source=None, bias=True, mask=None, padding=None, **options):
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
    if padding is not None:
        kwargs["key_padding_mask"] = np.arange(key.shape[-2]) < np.array(padding)[:, None]
    return (query, key, value, params), kwargs


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
        "causal": partial(_mha, is_causal=True),
        "weights mask padding": partial(_mha, source=7, mask=(5, 7), padding=[7, 3], need_weights=True),
    },
    _ref_mha,
    # Self attention: query, key and value are one array, whose gradient sums three paths.
    grad=("self", "key padding, one fully padded"),
)


def _encoder(rng, *, length=6, norm_affine=True, mask=False, padding=None, **options):
    x = _normal(rng, 2, length, 8, scale=1.0)
    attn = _mha_params(rng, 8, 8, 8, 8, 8)
    w1, b1 = _linear_weights(rng, 8, 16)
    w2, b2 = _linear_weights(rng, 16, 8)
    # norm1_weight, norm1_bias, norm2_weight, norm2_bias: weights near 1, biases near 0
    norms = [float(i % 2 == 0) + _normal(rng, 8, scale=0.2) for i in range(4 if norm_affine else 0)]
    params = seqops.EncoderLayerParams(attn, w1, b1, w2, b2, *norms)
    kwargs = {"num_heads": 2, **options}
    if mask:
        kwargs["mask"] = _bools(rng, length, length)
    if padding is not None:
        kwargs["key_padding_mask"] = np.arange(length) < np.array(padding)[:, None]
    return (x, params), kwargs


_add(
    "transformer_encoder_layer",
    {
        "post-norm relu": _encoder,
        "norm_first gelu": partial(_encoder, norm_first=True, activation="gelu"),
        "key padding": partial(_encoder, padding=[6, 3]),
        "causal gelu_tanh": partial(_encoder, is_causal=True, activation="gelu_tanh"),
        "mask norm_first": partial(_encoder, mask=True, norm_first=True),
        "no norm affine": partial(_encoder, norm_affine=False),
    },
    _single(ref.transformer_encoder_layer),
    # Pre-norm with GELU; the pieces of the post-norm layer have their own gradient checks.
    grad=("norm_first gelu",),
)

# -- recurrent family -----------------------------------------------------------------------

# T = 5 steps, batch 2, input 3, hidden 4 (H <= 8), shared by the cells and the sequences.
_T, _B, _I, _H = 5, 2, 3, 4


def _recurrent_weights(rng, gates, bias=True):
    """``w_ih (I, gates*H)``, ``w_hh (H, gates*H)``, ``b``: scaled by ``1/sqrt(fan_in)``."""
    w_ih = rng.standard_normal((_I, gates * _H)) / np.sqrt(_I)
    w_hh = rng.standard_normal((_H, gates * _H)) / np.sqrt(_H)
    return w_ih, w_hh, (_normal(rng, gates * _H, scale=0.2) if bias else None)


def _rnn(rng, *, steps=None, lead=(_B,), bias=True, **options):
    """``rnn_cell`` inputs when ``steps`` is None, else ``rnn`` inputs of ``steps`` steps."""
    x = _normal(rng, *(() if steps is None else (steps,)), *lead, _I, scale=1.0)
    h = _normal(rng, *lead, _H)
    return (x, h, *_recurrent_weights(rng, 1, bias)), options


def _lstm(rng, *, steps=None, lead=(_B,), bias=True):
    """``lstm_cell`` inputs when ``steps`` is None, else ``lstm`` inputs."""
    x = _normal(rng, *(() if steps is None else (steps,)), *lead, _I, scale=1.0)
    state = (_normal(rng, *lead, _H), _normal(rng, *lead, _H))
    return (x, state, *_recurrent_weights(rng, 4, bias)), {}


_add(
    "rnn_cell",
    {
        "tanh": _rnn,
        "relu": partial(_rnn, nonlinearity="relu"),
        "tanh no bias": partial(_rnn, bias=False),
        "unbatched": partial(_rnn, lead=()),
    },
    ref.rnn_cell,
)
_add(
    "rnn",
    {
        "tanh": partial(_rnn, steps=_T),
        "relu": partial(_rnn, steps=_T, nonlinearity="relu"),
        "batch dims (2,3)": partial(_rnn, steps=_T, lead=(2, 3)),
        "T=1": partial(_rnn, steps=1),
        "empty sequence T=0": partial(_rnn, steps=0),
    },
    ref.rnn,
    grad=("relu", "batch dims (2,3)", "T=1"),
)
_add(
    "lstm_cell",
    {
        "bias": _lstm,
        "no bias": partial(_lstm, bias=False),
    },
    ref.lstm_cell,
)
_add(
    "lstm",
    {
        "bias": partial(_lstm, steps=_T),
        "no bias": partial(_lstm, steps=_T, bias=False),
        "batch dims (2,3)": partial(_lstm, steps=_T, lead=(2, 3)),
        "T=1": partial(_lstm, steps=1),
        "empty sequence T=0": partial(_lstm, steps=0),
    },
    ref.lstm,
    grad=("bias",),
)

# -- language modelling: losses ---------------------------------------------------------------

# Batch 3, 5 positions, a vocabulary (or class count) of 10, shared by the losses and decoding.
_N, _L, _V = 3, 5, 10


def _class_logits(rng, *, axis=-1, ignore=None, scale=2.0, **options):
    """Logits ``(N, L, V)`` of the given scale (``(N, V, L)`` for ``axis=1``) and targets
    ``(N, L)``; the targets at the positions of the ``ignore`` mask are
    ``options["ignore_index"]``."""
    logits = _normal(rng, _N, _L, _V, scale=scale)
    targets = rng.integers(0, _V, (_N, _L))
    if ignore is not None:
        targets[np.asarray(ignore)] = options["ignore_index"]
    kwargs = dict(options)
    if axis != -1:
        logits = np.moveaxis(logits, -1, axis).copy()
        kwargs["axis"] = axis
    if kwargs.get("weight") is True:
        kwargs["weight"] = rng.uniform(0.5, 2.0, _V)
    return (logits, targets), kwargs


_IGNORED = [[False, True, False, False, True], [False] * 5, [True, False, False, False, False]]

_add(
    "cross_entropy",
    {
        "mean": _class_logits,
        "sum": partial(_class_logits, reduction="sum"),
        "none": partial(_class_logits, reduction="none"),
        "axis=1 (torch layout)": partial(_class_logits, axis=1),
        "axis=1 none": partial(_class_logits, axis=1, reduction="none"),
        "weight": partial(_class_logits, weight=True),
        "ignore_index": partial(_class_logits, ignore=_IGNORED, ignore_index=-100),
        "label_smoothing": partial(_class_logits, label_smoothing=0.1),
        "weight ignore smoothing sum": partial(
            _class_logits, weight=True, ignore=_IGNORED, ignore_index=7, label_smoothing=0.2, reduction="sum"
        ),
        "weight ignore smoothing none axis=1": partial(
            _class_logits,
            axis=1,
            weight=True,
            ignore=_IGNORED,
            ignore_index=-1,
            label_smoothing=0.2,
            reduction="none",
        ),
        "weight ignore smoothing mean": partial(
            _class_logits, weight=True, ignore=_IGNORED, ignore_index=-1, label_smoothing=0.3
        ),
        "logits ±1e4 none": partial(_class_logits, scale=5e3, reduction="none"),
    },
    ref.cross_entropy,
    grad=("mean", "weight ignore smoothing none axis=1", "weight ignore smoothing mean"),
)


def _sequence_logits(rng, *, lead=(_N,), axis=-1):
    logits = _normal(rng, *lead, _L, _V, scale=2.0)
    targets = rng.integers(0, _V, (*lead, _L))
    if axis == -1:
        return (logits, targets), {}
    return (np.moveaxis(logits, -1, axis).copy(), targets), {"axis": axis}


_add(
    "autoregressive_log_likelihood",
    {
        "batch": _sequence_logits,
        "vocabulary axis 1": partial(_sequence_logits, axis=1),
        "batch dims (2,3)": partial(_sequence_logits, lead=(2, 3)),
    },
    ref.autoregressive_log_likelihood,
    grad=("batch", "vocabulary axis 1"),
)

# -- decoding ---------------------------------------------------------------------------------


def _distinct_logits(rng, *lead):
    """Logits ``(*lead, V)`` whose entries in a row differ by >= 0.3 (a permutation of
    ``0.5 * arange(V)`` plus noise < 0.2): no ties in any dtype (bfloat16 spacing <= 1/16
    below 8), so the greedy choice does not depend on rounding."""
    perm = np.argsort(rng.random((*lead, _V)), axis=-1)
    return 0.5 * perm - 2.0 + rng.uniform(0.0, 0.2, (*lead, _V))


def _greedy(lead, rng):
    return (_distinct_logits(rng, *lead),), {}


_add(
    "greedy",
    {
        "rows": partial(_greedy, (_N, _L)),
        "one row": partial(_greedy, ()),
        # Exactly representable in every dtype: the first of equal maxima (API.md).
        "ties: first maximum": partial(
            _fixed, (np.array([[1.0, 3.0, 3.0, 0.0], [-1.0, -1.0, -1.0, -1.0], [0.5, 0.25, 0.5, 0.5]]),), {}
        ),
    },
    ref.greedy,
)


def _sample(rng, **options):
    return (_distinct_logits(rng, _N, _L),), {"rng": 0, **options}


def _ref_greedy_sample(logits, **options):
    return ref.greedy(logits)


# Sampling is random: the conformance checks what is deterministic about it. top_k=1 keeps
# one token, so the draw is the greedy choice; otherwise every drawn id must be in the
# support that temperature, top-k and top-p leave (15 draws per case and backend).
_add(
    "sample_logits",
    {
        "top_k=1 temperature 0.5 is greedy": partial(_sample, top_k=1, temperature=0.5),
    },
    _ref_greedy_sample,
)


def _ref_support(logits, *, rng, **options):
    return ref.sampling_support(logits, **options)


_add(
    "sample_logits",
    {
        "support top_k=4 top_p=0.7 temperature 0.8": partial(_sample, top_k=4, top_p=0.7, temperature=0.8),
        "support top_p=0.5 min_tokens_to_keep=2": partial(_sample, top_p=0.5, min_tokens_to_keep=2),
    },
    _ref_support,
    compare="in_support",
)


def _transition_step(tokens, table):
    """A fixed bigram model: the next-token logits are the rows ``table[tokens]``; the
    state is the table itself (so the runner converts it to the backend and dtype)."""
    xp = array_api_compat.array_namespace(table)
    return xp.take(table, tokens, axis=0), table


def _decode(generator, /, **options):
    """Decoding 6 tokens for 4 rows from a random bigram table (``options`` may hold the
    op's own ``rng=``, hence the name of the generator)."""
    table = _distinct_logits(generator, _V)
    return (_transition_step, table, generator.integers(0, _V, (4,))), {
        "max_new_tokens": 6,
        **options,
    }


def _ref_decode(step, state, first_tokens, *, max_new_tokens, eos_token_id=None, **options):
    """A hand loop: feed back ``greedy(step(tokens))``; after eos, a row emits eos."""
    tokens, out = np.asarray(first_tokens), []
    done = np.zeros(tokens.shape, dtype=bool)
    for _ in range(max_new_tokens):
        logits, state = step(tokens, state)
        tokens = np.where(done, eos_token_id if eos_token_id is not None else 0, ref.greedy(logits))
        if eos_token_id is not None:
            done |= tokens == eos_token_id
        out.append(tokens)
    return np.stack(out, axis=-1)


_add(
    "decode",
    {
        "greedy bigram": _decode,
        "eos": partial(_decode, eos_token_id=3),
    },
    _ref_decode,
)

# -- gradient clipping ------------------------------------------------------------------------


def _grads(rng, *, container=list, **options):
    """Three gradients ``(3, 4)``, ``None`` and ``(5,)`` (global 2-norm about 4)."""
    arrays = [_normal(rng, 3, 4, scale=1.0), None, _normal(rng, 5, scale=1.0)]
    grads = dict(zip(("w", "skip", "b"), arrays, strict=True)) if container is dict else arrays
    return (grads,), options


def _ref_clip_norm(grads, max_norm, **options):
    values = list(grads.values()) if isinstance(grads, dict) else grads
    clipped, total = ref.clip_grad_norm(values, max_norm, **options)
    return (dict(zip(grads, clipped, strict=True)) if isinstance(grads, dict) else clipped), total


def _ref_clip_value(grads, clip_value):
    values = list(grads.values()) if isinstance(grads, dict) else grads
    clipped = ref.clip_grad_value(values, clip_value)
    return dict(zip(grads, clipped, strict=True)) if isinstance(grads, dict) else clipped


_add(
    "clip_grad_norm",
    {
        "norm 2 above": partial(_grads, max_norm=1.0),
        "norm 2 below": partial(_grads, max_norm=100.0),
        "norm 1 above": partial(_grads, max_norm=2.0, norm_type=1.0),
        "norm 1 below": partial(_grads, max_norm=100.0, norm_type=1.0),
        "norm inf above": partial(_grads, max_norm=0.5, norm_type=math.inf),
        "norm inf below": partial(_grads, max_norm=10.0, norm_type=math.inf),
        "norm 3 dict eps": partial(_grads, container=dict, max_norm=0.5, norm_type=3.0, eps=0.1),
    },
    _ref_clip_norm,
)
_add(
    "clip_grad_value",
    {
        "list": partial(_grads, clip_value=0.5),
        "dict": partial(_grads, container=dict, clip_value=1.0),
        "nothing clipped": partial(_grads, clip_value=10.0),
    },
    _ref_clip_value,
)

# -- vision family: ViT patches, Swin windows --------------------------------------------------

# One image shape for the whole family: batch 2, 3 channels, 4 x 6 pixels, patches and
# windows of 2 (6 patches or windows per image); window attention on 8 features.
_IMG = (2, 3, 4, 6)
_HWC = (2, 4, 6, 3)


def _arrays(*shapes_and_rng, **options):
    """Inputs: one normal array per shape (``partial(_arrays, *shapes)``, then ``rng``)."""
    *shapes, rng = shapes_and_rng
    return tuple(_normal(rng, *shape, scale=1.0) for shape in shapes), options


_add(
    "patchify",
    {
        "p=2": partial(_arrays, _IMG, patch_size=2),
        "channels_last": partial(_arrays, _HWC, patch_size=2, channels_last=True),
    },
    _single(ref.patchify),
    exact=True,
)


def _unpatchify(rng, **options):
    return (_normal(rng, 2, 6, 12, scale=1.0), 2, (4, 6)), options


_add(
    "unpatchify",
    {
        "(H, W)": _unpatchify,
        "channels_last channels=3": partial(_unpatchify, channels=3, channels_last=True),
    },
    _single(ref.unpatchify),
    exact=True,
)


def _vit(rng, *, bias=True):
    w, b = _linear_weights(rng, 12, 8, bias)
    cls, pos = _normal(rng, 8), _normal(rng, 7, 8)
    return (_normal(rng, *_IMG, scale=1.0), w, b, cls, pos), {"patch_size": 2}


_add(
    "vit_embed",
    {"bias": _vit, "no bias": partial(_vit, bias=False)},
    _single(ref.vit_embed),
    grad=("bias",),
)

_add(
    "window_partition",
    {"ws=2": lambda rng: ((_normal(rng, *_HWC, scale=1.0), 2), {})},
    _single(ref.window_partition),
    exact=True,
)
_add(
    "window_reverse",
    {"ws=2": lambda rng: ((_normal(rng, 12, 2, 2, 3, scale=1.0), 2, 4, 6), {})},
    _single(ref.window_reverse),
    exact=True,
)
_add(
    "cyclic_shift",
    {
        f"shift {shift}": (lambda s: lambda rng: ((_normal(rng, *_HWC, scale=1.0), s), {}))(shift)
        for shift in (1, -1, 3)
    },
    _single(ref.cyclic_shift),
    exact=True,
)
_add(
    "shifted_window_mask",
    {
        f"{h}x{w} ws={ws} shift={s}{' as_bias' if bias else ''}": partial(
            _fixed, (h, w, ws, s), {"as_bias": bias, "like": LIKE}
        )
        for h, w, ws, s, bias in (
            (4, 6, 2, 1, False),
            (4, 6, 2, 1, True),
            (6, 6, 3, 2, True),
            (4, 6, 2, 0, False),
        )
    },
    _single(ref.shifted_window_mask),
    exact=True,
)
_add(
    "relative_position_index",
    {f"ws={ws}": partial(_fixed, (ws,), {"like": LIKE}) for ws in (2, 3)},
    _single(ref.relative_position_index),
)


def _window_attention(rng, *, shift=0, table=False, bias=True):
    x = _normal(rng, 2, 4, 6, 8, scale=1.0)
    params = _mha_params(rng, 8, 8, 8, 8, 8, bias)
    kwargs: dict[str, Any] = {"num_heads": 2, "window_size": 2, "shift_size": shift}
    if table:
        kwargs["relative_bias_table"] = _normal(rng, 9, 2, scale=1.0)
    return (x, params), kwargs


_add(
    "window_attention",
    {
        "W-MSA no biases": partial(_window_attention, bias=False),
        "SW-MSA shift 1 relative bias": partial(_window_attention, shift=1, table=True),
    },
    _single(ref.window_attention),
    grad=("SW-MSA shift 1 relative bias",),
)

# -- generative family: PixelCNN ----------------------------------------------------------------

_add(
    "pixelcnn_mask",
    {
        f"{kernel} {cin}->{cout} {kind}" + (f" color_groups={groups}" if groups > 1 else ""): partial(
            _fixed, (kernel, cin, cout), {"mask_type": kind, "color_groups": groups, "like": LIKE}
        )
        for kernel, cin, cout, kind, groups in (
            (3, 2, 4, "A", 1),
            (3, 2, 4, "B", 1),
            ((3, 5), 6, 3, "A", 3),
            ((3, 5), 6, 3, "B", 3),
        )
    },
    _single(ref.pixelcnn_mask),
    exact=True,
)


def _masked_conv(rng, *, bias=True, **options):
    x = _normal(rng, 2, 6, 4, 5, scale=1.0)
    weight = rng.standard_normal((6, 6, 3, 3)) / np.sqrt(6 * 9)
    return (x, weight, _normal(rng, 6, scale=0.2) if bias else None), options


_add(
    "masked_conv2d",
    {
        "A": partial(_masked_conv, mask_type="A"),
        "B no bias": partial(_masked_conv, mask_type="B", bias=False),
        "A color_groups=3": partial(_masked_conv, mask_type="A", color_groups=3),
    },
    _single(ref.masked_conv2d),
    grad=("A color_groups=3",),
)

# -- generative family: VAE -----------------------------------------------------------------------

# Batch 3, latent 4, data 6.
_LAT, _DATA = (3, 4), (3, 6)


def _reparameterize(rng, *, log_var=_LAT):
    return (_normal(rng, *_LAT, scale=1.0), _normal(rng, *log_var)), {"eps": _normal(rng, *_LAT, scale=1.0)}


_add(
    "reparameterize",
    {"given eps": _reparameterize, "log_var broadcast (4,)": partial(_reparameterize, log_var=(4,))},
    _single(ref.reparameterize),
    grad=("given eps",),
)

_add(
    "kl_normal_standard",
    {
        "axis -1": partial(_arrays, _LAT, _LAT),
        "axis (0, 1)": partial(_arrays, _LAT, _LAT, axis=(0, 1)),
    },
    _single(ref.kl_normal_standard),
    grad=("axis -1",),
)
_add(
    "kl_normal_normal",
    {
        "axis -1": partial(_arrays, _LAT, _LAT, _LAT, _LAT),
        "axis 0": partial(_arrays, _LAT, _LAT, _LAT, _LAT, axis=0),
    },
    _single(ref.kl_normal_normal),
    grad=("axis -1",),
)


def _spd(rng, *lead, k=4):
    """Well-conditioned SPD covariances ``A Aᵀ / k + 0.5 I`` (eigenvalues in ~[0.5, 3])."""
    a = rng.standard_normal((*lead, k, k))
    return a @ np.swapaxes(a, -1, -2) / k + 0.5 * np.eye(k)


def _kl_mvn(rng, *, broadcast=False):
    mu_q, cov_q = _normal(rng, *_LAT, scale=1.0), _spd(rng, 3)
    lead = () if broadcast else (3,)
    return (mu_q, cov_q, _normal(rng, *lead, 4, scale=1.0), _spd(rng, *lead)), {}


_add(
    "kl_mvn",
    {"batched": _kl_mvn, "p broadcast": partial(_kl_mvn, broadcast=True)},
    _single(ref.kl_mvn),
    grad=("batched",),
)
_add(
    "gaussian_log_likelihood",
    {
        "axis -1": partial(_arrays, _DATA, _DATA, _DATA),
        "log_var broadcast (6,) axis (0, 1)": partial(_arrays, _DATA, _DATA, (6,), axis=(0, 1)),
    },
    _single(ref.gaussian_log_likelihood),
    grad=("axis -1",),
)


def _binary(rng, shape):
    return (rng.random(shape) < 0.5).astype(np.float64)


def _bernoulli(rng, *, large=False):
    x = _binary(rng, _DATA)
    if not large:
        return (x, _normal(rng, *_DATA, scale=2.0)), {}
    # |logits| = 1e4 (exact in float16, 9984 in bfloat16): confident right answers give
    # log-likelihood ~0, confident wrong ones ~-1e4; no overflow to inf or NaN allowed.
    sign = np.where(rng.random(_DATA) < 0.7, 2.0 * x - 1.0, 1.0 - 2.0 * x)
    logits = 1e4 * sign
    logits[0] = _normal(rng, 6, scale=2.0)  # one ordinary row beside the saturated ones
    return (x, logits), {}


_add(
    "bernoulli_log_likelihood",
    {"binary": _bernoulli, "logits ±1e4": partial(_bernoulli, large=True)},
    _single(ref.bernoulli_log_likelihood),
    # Not "logits ±1e4": a step of 1e-6 · 1e4 is 1e-2, and the log-sigmoid is flat there.
    grad=("binary",),
)


def _elbo(rng, *, likelihood="bernoulli", **options):
    x = _binary(rng, _DATA) if likelihood == "bernoulli" else _normal(rng, *_DATA, scale=1.0)
    recon = _normal(rng, *_DATA, scale=2.0)
    if likelihood == "gaussian":
        recon = (recon, _normal(rng, *_DATA))
    mu, log_var = _normal(rng, *_LAT, scale=1.0), _normal(rng, *_LAT)
    return (x, recon, mu, log_var), {"likelihood": likelihood, **options}


_add(
    "elbo",
    {
        "bernoulli": _elbo,
        "gaussian": partial(_elbo, likelihood="gaussian"),
        "bernoulli mean": partial(_elbo, reduction="mean"),
        "gaussian sum": partial(_elbo, likelihood="gaussian", reduction="sum"),
    },
    _single(ref.elbo),
    # The gradient checks of elbo are those of its composition with reparameterize (below).
)


class _ElboOfReparameterize:
    """``elbo(x, decoder(reparameterize(mu, log_var, eps=eps)), mu, log_var)`` with a linear
    decoder ``z @ w_dec`` (the logits, or the mean beside a fixed ``dec_log_var``): the VAE
    training objective, so its gradient reaches ``mu`` and ``log_var`` along both paths
    (through ``z`` and through the KL)."""

    def _recon(self, z: Any, w_dec: Any, dec_log_var: Any) -> Any:
        mean = z @ w_dec
        return mean if dec_log_var is None else (mean, dec_log_var)

    def __call__(
        self, x: Any, w_dec: Any, dec_log_var: Any, mu: Any, log_var: Any, /, *, eps: Any, **options: Any
    ) -> Any:
        z = seqops.reparameterize(mu, log_var, eps=eps)
        return seqops.elbo(x, self._recon(z, w_dec, dec_log_var), mu, log_var, **options)

    def implementation(
        self, x: Any, w_dec: Any, dec_log_var: Any, mu: Any, log_var: Any, /, *, eps: Any, **options: Any
    ) -> str:
        z = seqops.reparameterize(mu, log_var, eps=eps)
        recon = self._recon(z, w_dec, dec_log_var)
        names = {
            seqops.explain(seqops.reparameterize, mu, log_var, eps=eps).chosen,
            seqops.explain(seqops.elbo, x, recon, mu, log_var, **options).chosen,
        }
        return " + ".join(sorted(names))


def _elbo_of_reparameterize(rng, *, likelihood="bernoulli", **options):
    x = _binary(rng, _DATA) if likelihood == "bernoulli" else _normal(rng, *_DATA, scale=1.0)
    w_dec = rng.standard_normal((4, 6))
    dec_log_var = _normal(rng, *_DATA) if likelihood == "gaussian" else None
    mu, log_var = _normal(rng, *_LAT, scale=1.0), _normal(rng, *_LAT)
    eps = _normal(rng, *_LAT, scale=1.0)
    return (x, w_dec, dec_log_var, mu, log_var), {"eps": eps, "likelihood": likelihood, **options}


def _ref_elbo_of_reparameterize(x, w_dec, dec_log_var, mu, log_var, *, eps, **options):
    z = ref.reparameterize(mu, log_var, eps)
    recon = z @ w_dec if dec_log_var is None else (z @ w_dec, dec_log_var)
    return (ref.elbo(x, recon, mu, log_var, **options),)


# Gradient checks with respect to mu and log_var (and x, w_dec, eps) of the composition on
# torch and JAX, against finite differences of the float64 reference composition.
CASES.extend(
    Case(
        "elbo",
        name,
        partial(_elbo_of_reparameterize, **options),
        _ref_elbo_of_reparameterize,
        grad=True,
        call=_ElboOfReparameterize(),
    )
    for name, options in (
        ("of reparameterize bernoulli", {}),
        ("of reparameterize gaussian mean", {"likelihood": "gaussian", "reduction": "mean"}),
    )
)

OPS: tuple[str, ...] = tuple(dict.fromkeys(case.op for case in CASES))
"""Every op with cases, in registry order."""
