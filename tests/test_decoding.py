"""Decoding: ``greedy``, ``sample_logits`` (temperature → top-k → top-p) and ``decode``.

* the kept token set is checked directly on the internal filter
  (``seqops._agnostic.decoding.filter_logits``): a table of hand cases (ties, the exact
  top-p boundary), Hugging Face's ``TopKLogitsWarper``/``TopPLogitsWarper`` rules
  re-implemented in torch on random logits, and the float64 reference;
* sampling draws only kept tokens, with the right frequencies, and the same rng gives the
  same tokens on every backend;
* ``decode`` with a toy step function (a fixed transition table) equals a hand loop.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from seqops_conformance import references as ref

import seqops
import seqops.decoding
from seqops._agnostic import decoding as agnostic

LN2 = math.log(2.0)
# probabilities 1/2, 1/4, 1/8, 1/8 exactly (exp of multiples of the double ln 2 rounds to
# powers of two), so the top-p boundary cases below are exact in floating point
DYADIC = [0.0, -LN2, -2 * LN2, -2 * LN2]
P532 = np.log([0.5, 0.3, 0.2]).tolist()


def _options(**kw):
    return {"temperature": 1.0, "top_k": None, "top_p": None, "min_tokens_to_keep": 1} | kw


def kept(xp, logits, device=None, **kw):
    """Indices the filter keeps, for a 1-D row (NumPy result)."""
    filtered = agnostic.filter_logits(xp, logits, device=device, **_options(**kw))
    return set(np.flatnonzero(np.isfinite(np.asarray(filtered))).tolist())


def hf_kept(torch, logits, *, temperature=1.0, top_k=None, top_p=None, min_tokens_to_keep=1):
    """Hugging Face's warpers (temperature, TopK, TopP) on a (rows, V) torch tensor → bool."""
    scores = logits / temperature if temperature != 1.0 else logits
    if top_k is not None:
        k = min(max(top_k, min_tokens_to_keep), scores.shape[-1])
        kth = torch.topk(scores, k)[0][..., -1, None]
        scores = scores.masked_fill(scores < kth, -math.inf)
    if top_p is not None and top_p < 1.0:
        ascending, order = torch.sort(scores, descending=False)
        cum = ascending.softmax(dim=-1).cumsum(dim=-1)
        remove = cum <= (1 - top_p)
        remove[..., -min_tokens_to_keep:] = False
        scores = scores.masked_fill(remove.scatter(1, order, remove), -math.inf)
    return torch.isfinite(scores)


# (logits, options, kept by us, kept by Hugging Face where it differs — ties only)
TABLE = [
    # top-k keeps every logit >= the k-th largest
    ([1.0, 2.0, 2.0, 3.0], {"top_k": 1}, {3}, None),
    ([1.0, 2.0, 2.0, 3.0], {"top_k": 2}, {1, 2, 3}, None),
    ([1.0, 2.0, 2.0, 3.0], {"top_k": 3}, {1, 2, 3}, None),
    ([3.0, 3.0, 3.0, 1.0], {"top_k": 1}, {0, 1, 2}, None),
    ([1.0, 2.0, 2.0, 3.0], {"top_k": 1, "min_tokens_to_keep": 3}, {1, 2, 3}, None),
    ([1.0, 2.0, 2.0, 3.0], {"top_k": 10}, {0, 1, 2, 3}, None),
    # top-p at exact boundaries: keep iff the mass strictly above is < top_p
    (DYADIC, {"top_p": 0.5}, {0}, None),
    (DYADIC, {"top_p": 0.5000001}, {0, 1}, None),
    (DYADIC, {"top_p": 0.75}, {0, 1}, None),
    (DYADIC, {"top_p": 0.75000001}, {0, 1, 2, 3}, {0, 1, 3}),  # a tied pair: HF splits it
    (DYADIC, {"top_p": 1.0}, {0, 1, 2, 3}, None),
    (DYADIC, {"top_p": 0.1, "min_tokens_to_keep": 2}, {0, 1}, None),
    (DYADIC, {"top_p": 0.1, "min_tokens_to_keep": 3}, {0, 1, 2, 3}, {0, 1, 3}),
    (P532, {"top_p": 0.5}, {0}, None),
    (P532, {"top_p": 0.50001}, {0, 1}, None),
    (P532, {"top_p": 0.79999}, {0, 1}, None),
    # 1 - 0.8 rounds to 0.19999999999999996 < p = 0.2: HF keeps token 2, and so do we
    (P532, {"top_p": 0.8}, {0, 1, 2}, None),
    (P532, {"top_p": 0.80001}, {0, 1, 2}, None),
    # top-p after top-k works on the renormalised probabilities (4/7, 3/7)
    (np.log([0.4, 0.3, 0.2, 0.1]).tolist(), {"top_p": 0.5}, {0, 1}, None),
    (np.log([0.4, 0.3, 0.2, 0.1]).tolist(), {"top_k": 2, "top_p": 0.5}, {0}, None),
    # temperature first: softmax([2, 1, 0]) keeps all at 0.95, softmax([4, 2, 0]) drops token 2
    ([2.0, 1.0, 0.0], {"top_p": 0.95}, {0, 1, 2}, None),
    ([2.0, 1.0, 0.0], {"top_p": 0.95, "temperature": 0.5}, {0, 1}, None),
    # equal logits are kept or dropped together, whatever their order
    ([0.0, 0.0, 0.0, 0.0], {"top_p": 0.3}, {0, 1, 2, 3}, {2, 3}),
]


@pytest.mark.parametrize("row,options,expected,hf_differs", TABLE)
def test_filter_table(torch, row, options, expected, hf_differs):
    import array_api_compat.numpy as xnp

    assert kept(xnp, np.asarray(row, dtype=np.float64), device="cpu", **options) == expected
    hf = hf_kept(torch, torch.tensor([row], dtype=torch.float64), **options)[0]
    hf_set = set(torch.nonzero(hf).flatten().tolist())
    assert hf_set == (expected if hf_differs is None else hf_differs)
    assert hf_set <= expected  # where they differ (ties), we keep a superset
    support = ref.sampling_support(np.asarray(row), **options)
    if options.get("top_p") not in (0.8,):  # ref sums exactly: 0.5 + 0.3 is not < 0.8
        assert set(np.flatnonzero(support).tolist()) == expected


@pytest.mark.parametrize("dtype_name", ["float32", "float64"])
@pytest.mark.parametrize(
    "options",
    [
        {"top_k": 5},
        {"top_p": 0.9},
        {"top_p": 0.3, "min_tokens_to_keep": 4},
        {"top_k": 20, "top_p": 0.8},
        {"top_k": 3, "top_p": 0.95, "temperature": 0.7},
        {"top_p": 0.6, "temperature": 2.5},
    ],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()),
)
def test_filter_matches_hugging_face_on_random_logits(torch, dtype_name, options):
    """No ties in continuous random logits: exactly Hugging Face's kept set, row by row."""
    import array_api_compat.torch as xt

    dtype = getattr(torch, dtype_name)
    logits = torch.tensor(np.random.default_rng(3).standard_normal((64, 40)) * 2.0, dtype=dtype)
    ours = torch.isfinite(agnostic.filter_logits(xt, logits, device=logits.device, **_options(**options)))
    assert torch.equal(ours, hf_kept(torch, logits, **options))
    support = ref.sampling_support(logits.double().numpy(), **options)
    np.testing.assert_array_equal(ours.numpy(), support)


def test_sampling_draws_kept_tokens_with_their_probabilities():
    logits = np.broadcast_to(np.log([0.5, 0.3, 0.2]), (20000, 3))
    counts = np.bincount(seqops.sample_logits(logits, rng=0), minlength=3) / 20000
    np.testing.assert_allclose(counts, [0.5, 0.3, 0.2], atol=0.015)
    counts = np.bincount(seqops.sample_logits(logits, rng=1, top_k=2), minlength=3) / 20000
    np.testing.assert_allclose(counts, [0.625, 0.375, 0.0], atol=0.015)
    assert (seqops.sample_logits(logits, rng=2, top_p=0.5) == 0).all()
    counts = np.bincount(seqops.sample_logits(logits, rng=3, temperature=1e-3), minlength=3)
    assert counts[0] == 20000  # temperature → 0 is greedy
    counts = np.bincount(seqops.sample_logits(logits, rng=4, temperature=1e6), minlength=3)
    assert counts.min() > 6000  # temperature → ∞ is uniform


def _native_rng(backend, seed):
    if backend.name == "torch":
        import torch

        return torch.Generator().manual_seed(seed)
    if backend.name == "jax":
        import jax

        return jax.random.key(seed)
    return np.random.default_rng(seed)


def test_sample_logits_reproducible_and_kept_library(backend):
    xp = backend.namespace()
    logits = backend.from_numpy(
        np.random.default_rng(0).standard_normal((32, 50)), dtype=backend.floating_dtypes()["float32"]
    )
    first = seqops.sample_logits(logits, rng=7, top_k=10, top_p=0.9)
    assert backend.owns(first) and xp.isdtype(first.dtype, "integral")
    assert backend.device(first) == backend.device(logits) and tuple(first.shape) == (32,)
    again = seqops.sample_logits(logits, rng=7, top_k=10, top_p=0.9)
    np.testing.assert_array_equal(backend.to_numpy(first), backend.to_numpy(again))
    other = seqops.sample_logits(logits, rng=8, top_k=10, top_p=0.9)
    assert (backend.to_numpy(first) != backend.to_numpy(other)).any()
    native = [seqops.sample_logits(logits, rng=_native_rng(backend, 5)) for _ in range(2)]
    np.testing.assert_array_equal(*(backend.to_numpy(n) for n in native))
    # tokens come from the kept set only
    keep = np.isfinite(
        backend.to_numpy(
            agnostic.filter_logits(xp, logits, device=backend.device(logits), **_options(top_k=10, top_p=0.9))
        )
    )
    assert keep[np.arange(32), backend.to_numpy(first)].all()


def test_greedy_is_argmax(backend):
    xp = backend.namespace()
    raw = np.random.default_rng(1).standard_normal((3, 4, 9))
    raw[0, 0, [2, 5]] = 10.0  # a tie: the first index wins
    logits = backend.from_numpy(raw, dtype=backend.floating_dtypes()["float64"])
    ids = seqops.greedy(logits)
    assert backend.owns(ids) and xp.isdtype(ids.dtype, "integral") and tuple(ids.shape) == (3, 4)
    np.testing.assert_array_equal(backend.to_numpy(ids), np.argmax(raw, axis=-1))
    np.testing.assert_array_equal(backend.to_numpy(ids), ref.greedy(raw))
    assert int(backend.to_numpy(ids)[0, 0]) == 2


# -- decode ------------------------------------------------------------------------------

V = 6


def _table_step(backend, table):
    """A toy language model: the next-token logits are row ``token`` of a fixed table."""
    xp = backend.namespace()
    calls = []

    def step(tokens, state):
        calls.append(state)
        return xp.take(table, tokens, axis=0), state + 1

    return step, calls


def _table(backend, seed=0):
    raw = np.random.default_rng(seed).standard_normal((V, V)) * 2.0
    return raw, backend.from_numpy(raw, dtype=backend.floating_dtypes()["float64"])


def test_decode_greedy_equals_a_hand_loop(backend):
    xp = backend.namespace()
    raw, table = _table(backend)
    first = xp.asarray(np.array([0, 3, 5], dtype=np.int32))
    step, calls = _table_step(backend, table)
    ids = seqops.decode(step, 0, first, max_new_tokens=7)
    assert backend.owns(ids) and ids.dtype == first.dtype and tuple(ids.shape) == (3, 7)
    assert calls == list(range(7))  # the state is threaded through
    tokens, hand = np.array([0, 3, 5]), []
    for _ in range(7):
        tokens = np.argmax(raw[tokens], axis=-1)
        hand.append(tokens)
    np.testing.assert_array_equal(backend.to_numpy(ids), np.stack(hand, axis=-1))


def test_decode_sample_reproducible_and_per_step_independent(backend):
    xp = backend.namespace()
    raw, table = _table(backend)
    first = xp.asarray(np.array([1, 2], dtype=np.int64))
    kw = {"max_new_tokens": 12, "strategy": "sample", "top_k": 4, "temperature": 0.8}
    a = seqops.decode(_table_step(backend, table)[0], 0, first, rng=11, **kw)
    b = seqops.decode(_table_step(backend, table)[0], 0, first, rng=11, **kw)
    np.testing.assert_array_equal(backend.to_numpy(a), backend.to_numpy(b))
    # the same as a hand loop over the backend's per-step rngs
    rngs = backend.split_rng(11, 12)
    tokens, hand = first, []
    for t in range(12):
        tokens = xp.astype(
            seqops.sample_logits(xp.take(table, tokens, axis=0), rng=rngs[t], top_k=4, temperature=0.8),
            first.dtype,
        )
        hand.append(backend.to_numpy(tokens))
    np.testing.assert_array_equal(backend.to_numpy(a), np.stack(hand, axis=-1))
    # each step draws afresh: uniform logits do not give one token repeated
    flat = backend.from_numpy(np.zeros((V, V)), dtype=backend.floating_dtypes()["float64"])
    ids = seqops.decode(_table_step(backend, flat)[0], 0, first, max_new_tokens=30, strategy="sample", rng=3)
    assert all(len(set(row)) > 2 for row in backend.to_numpy(ids).tolist())
    # a native generator is consumed step after step, reproducibly from the same seed
    c, d = (
        seqops.decode(
            _table_step(backend, flat)[0],
            0,
            first,
            max_new_tokens=5,
            strategy="sample",
            rng=_native_rng(backend, 4),
        )
        for _ in range(2)
    )
    np.testing.assert_array_equal(backend.to_numpy(c), backend.to_numpy(d))


def test_decode_eos_and_zero_steps(backend):
    xp = backend.namespace()
    raw = np.full((V, V), -5.0)
    raw[np.arange(V), (np.arange(V) + 1) % V] = 5.0  # greedy walks 0 → 1 → 2 ...
    table = backend.from_numpy(raw, dtype=backend.floating_dtypes()["float32"])
    first = xp.asarray(np.array([0, 2]))
    ids = seqops.decode(_table_step(backend, table)[0], 0, first, max_new_tokens=5, eos_token_id=3)
    if backend.lazy:  # values are never read: every step runs, as under a trace (padded with eos)
        np.testing.assert_array_equal(backend.to_numpy(ids), [[1, 2, 3, 3, 3], [3, 3, 3, 3, 3]])
    else:  # eagerly the loop stops after the step at which every row has ended (as generate)
        np.testing.assert_array_equal(backend.to_numpy(ids), [[1, 2, 3], [3, 3, 3]])
    empty = seqops.decode(_table_step(backend, table)[0], 0, first, max_new_tokens=0)
    assert tuple(empty.shape) == (2, 0) and empty.dtype == first.dtype and backend.owns(empty)


def test_split_rng(backend):
    first, second = backend.split_rng(5, 3), backend.split_rng(5, 3)
    assert len(first) == 3 and backend.split_rng(5, 0) == []
    if backend.name == "jax":
        import jax

        assert all(
            (jax.random.key_data(a) == jax.random.key_data(b)).all()
            for a, b in zip(first, second, strict=True)
        )
        assert len({tuple(np.asarray(jax.random.key_data(k)).tolist()) for k in first}) == 3
    else:
        assert first == second and len(set(first)) == 3
        native = _native_rng(backend, 1)
        assert all(r is native for r in backend.split_rng(native, 4))


def test_jax_jit(jax):
    import jax.numpy as jnp

    logits = jnp.asarray(np.random.default_rng(2).standard_normal((8, 30)))
    key = jax.random.key(0)
    sample = jax.jit(lambda x, k: seqops.sample_logits(x, rng=k, top_k=5, top_p=0.9))
    np.testing.assert_array_equal(
        sample(logits, key), seqops.sample_logits(logits, rng=key, top_k=5, top_p=0.9)
    )
    table = jnp.asarray(np.random.default_rng(0).standard_normal((V, V)))

    def generate(first, k):
        return seqops.decode(
            lambda t, s: (table[t], s), None, first, max_new_tokens=6, strategy="sample", rng=k, top_p=0.9
        )

    first = jnp.asarray([0, 4])
    np.testing.assert_array_equal(jax.jit(generate)(first, key), generate(first, key))
    greedy = jax.jit(lambda f: seqops.decode(lambda t, s: (table[t], s), None, f, max_new_tokens=4))
    np.testing.assert_array_equal(
        greedy(first), seqops.decode(lambda t, s: (table[t], s), None, first, max_new_tokens=4)
    )


# -- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,error,pattern",
    [
        (
            {"temperature": 0.0},
            ValueError,
            r"temperature must be > 0 \(use greedy\(\) for temperature 0\); got 0.0",
        ),
        ({"temperature": -1.0}, ValueError, r"temperature must be > 0"),
        ({"temperature": "hot"}, TypeError, r"temperature must be a Python number; got str"),
        ({"top_p": 0.0}, ValueError, r"top_p must be in \(0, 1\]; got 0.0"),
        ({"top_p": 1.5}, ValueError, r"top_p must be in \(0, 1\]; got 1.5"),
        ({"top_p": -0.1}, ValueError, r"top_p must be in \(0, 1\]; got -0.1"),
        ({"top_k": 0}, ValueError, r"top_k must be >= 1; got 0"),
        ({"top_k": 2.5}, TypeError, r"top_k must be an integer; got float"),
        ({"min_tokens_to_keep": 0}, ValueError, r"min_tokens_to_keep must be >= 1; got 0"),
        ({"rng": None}, ValueError, r"sample_logits needs rng="),
        ({"rng": "seed"}, TypeError, r"rng for backend 'numpy' must be an integer seed or a numpy.random"),
    ],
)
def test_sample_logits_bad_input(kwargs, error, pattern):
    args = {"rng": 0} | kwargs
    with pytest.raises(error, match=pattern):
        seqops.sample_logits(np.zeros((2, 5)), **args)


def test_logits_bad_input():
    with pytest.raises(TypeError, match=r"`logits` must be a real floating array; got dtype int64"):
        seqops.greedy(np.zeros((2, 5), dtype=np.int64))
    with pytest.raises(ValueError, match=r"at least one token along the last axis; got shape \(2, 0\)"):
        seqops.sample_logits(np.zeros((2, 0)), rng=0)
    with pytest.raises(ValueError, match=r"at least 1 dimensions \(\.\.\., V\); got shape \(\)"):
        seqops.greedy(np.zeros(()))


def test_decode_bad_input():
    table = np.zeros((V, V))
    step = lambda t, s: (table[t], s)  # noqa: E731
    first = np.array([0, 1])
    with pytest.raises(ValueError, match=r"strategy='sample' needs rng="):
        seqops.decode(step, None, first, max_new_tokens=2, strategy="sample")
    with pytest.raises(
        ValueError,
        match=r"apply to strategy='sample'; got them with strategy='greedy' \(temperature=1.0, top_k=3",
    ):
        seqops.decode(step, None, first, max_new_tokens=2, top_k=3)
    with pytest.raises(ValueError, match=r"`strategy` must be one of 'greedy', 'sample'; got 'beam'"):
        seqops.decode(step, None, first, max_new_tokens=2, strategy="beam")
    with pytest.raises(ValueError, match=r"max_new_tokens must be non-negative; got -1"):
        seqops.decode(step, None, first, max_new_tokens=-1)
    with pytest.raises(TypeError, match=r"`first_tokens` must be an integer array; got dtype float64"):
        seqops.decode(step, None, first.astype(float), max_new_tokens=2)
    with pytest.raises(TypeError, match=r"step must be a callable"):
        seqops.decode(None, None, first, max_new_tokens=2)
    with pytest.raises(
        ValueError, match=r"step 0 must return logits of shape \(\*tokens.shape, V\) = \(2, 'V'\); got \(6,\)"
    ):
        seqops.decode(lambda t, s: (table[0], s), None, first, max_new_tokens=2)
    with pytest.raises(TypeError, match=r"`logits of step 0` must be a real floating array"):
        seqops.decode(lambda t, s: (np.zeros((2, V), dtype=int), s), None, first, max_new_tokens=2)


def test_decode_step_in_another_library(torch):
    with pytest.raises(
        TypeError, match=r"step 0 returned logits of library torch, but first_tokens are numpy"
    ):
        seqops.decode(lambda t, s: (torch.zeros(2, V), s), None, np.array([0, 1]), max_new_tokens=1)


def test_decode_eos_pad_prompt_eagerly_and_under_jit() -> None:
    """Eagerly the loop stops once every row has ended; under ``jax.jit`` every step runs, the
    finished rows padded — the same tokens where both have them."""
    table = np.log(np.array([[0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.8, 0.1, 0.1]]))  # 0 -> 1 -> 2 -> 0
    prompt = np.array([[7, 0], [7, 1]])

    def step(tokens, state):
        return state[tokens], state

    eager = seqops.decode(
        step, table, prompt[:, -1], max_new_tokens=6, eos_token_id=2, pad_token_id=9, prompt=prompt
    )
    assert eager.tolist() == [[7, 0, 1, 2], [7, 1, 2, 9]]
    with pytest.raises(ValueError, match="pad_token_id applies after an eos_token_id"):
        seqops.decode(step, table, prompt[:, -1], max_new_tokens=2, pad_token_id=0)
    with pytest.raises(ValueError, match=r"prompt must have shape \(\*first_tokens.shape, P\)"):
        seqops.decode(step, table, prompt[:, -1], max_new_tokens=2, prompt=prompt[0])
    jax = pytest.importorskip("jax")
    jnp = jax.numpy

    @jax.jit
    def run(table, first, prompt):
        return seqops.decode(
            step, table, first, max_new_tokens=6, eos_token_id=2, pad_token_id=9, prompt=prompt
        )

    traced = np.asarray(run(jnp.asarray(table), jnp.asarray(prompt[:, -1]), jnp.asarray(prompt)))
    assert traced.tolist() == [[7, 0, 1, 2, 9, 9, 9, 9], [7, 1, 2, 9, 9, 9, 9, 9]]


def test_a_uniform_draw_rounded_up_to_one_never_picks_a_removed_token() -> None:
    """NumPy draws float64 uniforms and casts them: one can round up to 1.0 in float32, whose
    Gumbel noise is +inf (NaN on a removed token's -inf, which argmax would pick)."""
    import array_api_compat.numpy as xp

    from seqops._agnostic import decoding

    filtered = np.array([[0.0, -np.inf, 1.0]], dtype=np.float32)
    for u in ([[0.5, 1.0, 0.5]], [[0.0, 0.3, 1.0]], [[1.0, 1.0, 1.0]]):
        token = int(decoding.gumbel_argmax(xp, filtered, np.array(u, dtype=np.float32))[0])
        assert token != 1
