"""Function transformations of the attention family.

* JAX: ``jax.jit`` equals eager, ``jax.vmap`` over the batch equals the batched call, and
  ``jax.grad`` (float64) matches central finite differences of the independent float64
  NumPy reference (``seqops_conformance.references``) along random directions.
* torch: ``torch.autograd.grad`` (float64) against the same finite differences,
  ``torch.autograd.gradcheck``, and finite (zero) gradients on fully masked rows.
* ``torch.compile(fullgraph=True)``: one function calling sdpa, MHA and the encoder layer
  compiles without a graph break and matches eager.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from seqops_conformance import references as ref

import seqops

B, H, L, S, E = 2, 2, 4, 5, 4  # batch, heads, queries, keys, head width
D, NUM_HEADS, FF = 6, 2, 8  # model width, MHA heads, feed-forward width

FD_STEP = 1e-5  # central differences in float64: error ~ step**2 + eps / step ~ 1e-10
N_DIRECTIONS = 3


@pytest.fixture
def rng():
    return np.random.default_rng(7)


# --------------------------------------------------------------------------------------
# inputs, shared by the JAX and torch tests (NumPy float64; converted per framework)
# --------------------------------------------------------------------------------------


def _mask(rng, shape, *, fully_masked_row=False):
    """True = attend; key 0 always allowed unless a fully masked row is asked for."""
    mask = rng.random(shape) > 0.35
    mask[..., 0] = True
    if fully_masked_row:
        mask[0, ..., 1, :] = False  # batch 0, query 1: no allowed key
    return mask


def _sdpa_case(rng, *, fully_masked_row=False):
    return {
        "q": rng.standard_normal((B, H, L, E)),
        "k": rng.standard_normal((B, H, S, E)),
        "v": rng.standard_normal((B, H, S, E)),
        "bias": rng.standard_normal((1, H, L, S)) * 0.5,
        "mask": _mask(rng, (B, 1, L, S), fully_masked_row=fully_masked_row),
    }


def _mha_params(rng, width=D):
    return seqops.MHAParams(
        *(rng.standard_normal((width, width)) * 0.4 for _ in range(4)),
        *(rng.standard_normal(width) * 0.3 for _ in range(4)),
    )


def _encoder_params(rng):
    return seqops.EncoderLayerParams(
        _mha_params(rng),
        rng.standard_normal((D, FF)) * 0.4,
        rng.standard_normal(FF) * 0.3,
        rng.standard_normal((FF, D)) * 0.4,
        rng.standard_normal(D) * 0.3,
        1.0 + 0.3 * rng.standard_normal(D),
        0.3 * rng.standard_normal(D),
        1.0 + 0.3 * rng.standard_normal(D),
        0.3 * rng.standard_normal(D),
    )


def _kpm():
    kpm = np.ones((B, S), dtype=bool)  # True = real token
    kpm[0, -2:] = False
    kpm[1, -1] = False
    return kpm


def _rebuild(tree, children):
    """A tuple or NamedTuple of the same type as ``tree`` holding ``children``."""
    children = list(children)
    return tuple(children) if type(tree) is tuple else type(tree)(*children)


def _map(fn, tree):
    """Apply ``fn`` to each array leaf of a tuple / (nested) MHAParams / EncoderLayerParams;
    None leaves stay None."""
    if tree is None:
        return None
    if isinstance(tree, tuple):
        return _rebuild(tree, (_map(fn, t) for t in tree))
    return fn(tree)


def _leaves(tree):
    if tree is None:
        return []
    if isinstance(tree, tuple):
        return [leaf for t in tree for leaf in _leaves(t)]
    return [tree]


def _map2(fn, a, b):
    """Apply ``fn`` to the leaves of two pytrees of the same structure."""
    if a is None:
        return None
    if isinstance(a, tuple):
        return _rebuild(a, (_map2(fn, x, y) for x, y in zip(a, b, strict=True)))
    return fn(a, b)


def _fd(loss_np, point, direction):
    """Central difference of ``loss_np`` (float64 NumPy, a function of a pytree) along ``direction``."""
    plus = _map2(lambda p, d: p + FD_STEP * d, point, direction)
    minus = _map2(lambda p, d: p - FD_STEP * d, point, direction)
    return (loss_np(plus) - loss_np(minus)) / (2 * FD_STEP)


def _check_directional_derivatives(rng, grad, point, loss_np):
    """``<grad, d>`` equals the finite-difference derivative of the reference along random d.

    ``grad`` and ``point`` are pytrees (tuples/NamedTuples) of float64 NumPy arrays.
    """
    for _ in range(N_DIRECTIONS):
        direction = _map(lambda a: rng.standard_normal(np.shape(a)), point)
        analytic = sum(float(np.sum(g * d)) for g, d in zip(_leaves(grad), _leaves(direction), strict=True))
        numeric = _fd(loss_np, point, direction)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


# Reference losses: sum(out * weight) with a fixed random weight, in float64 NumPy.


def _sdpa_loss_np(case, w, *, is_causal=True):
    def loss(qkvb):
        q, k, v, bias = qkvb
        out, _ = ref.scaled_dot_product_attention(q, k, v, mask=case["mask"], bias=bias, is_causal=is_causal)
        return float(np.sum(out * w))

    return loss


def _mha_loss_np(x, kpm, w):
    def loss(point):
        query, params = point
        out, _ = ref.multi_head_attention(
            query, x, x, params, NUM_HEADS, key_padding_mask=kpm, is_causal=False
        )
        return float(np.sum(out * w))

    return loss


def _encoder_loss_np(kpm, w, norm_first):
    def loss(point):
        x, params = point
        out = ref.transformer_encoder_layer(
            x, params, NUM_HEADS, norm_first=norm_first, activation="gelu", key_padding_mask=kpm
        )
        return float(np.sum(out * w))

    return loss


# --------------------------------------------------------------------------------------
# JAX: jit, vmap, grad
# --------------------------------------------------------------------------------------


def _jnp_tree(jax, tree):
    if isinstance(tree, dict):
        return {name: jax.numpy.asarray(a) for name, a in tree.items()}
    return _map(jax.numpy.asarray, tree)


def _np_tree(tree):
    return _map(lambda a: np.asarray(a, dtype=np.float64), tree)


def test_jax_jit_sdpa(jax, rng):
    jnp = jax.numpy
    c = _jnp_tree(jax, _sdpa_case(rng, fully_masked_row=True))

    def f(q, k, v, mask, bias):
        return seqops.scaled_dot_product_attention(q, k, v, mask=mask, bias=bias, is_causal=True)

    eager = f(c["q"], c["k"], c["v"], c["mask"], c["bias"])
    jitted = jax.jit(f)(c["q"], c["k"], c["v"], c["mask"], c["bias"])
    assert isinstance(jitted, jax.Array) and jitted.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), rtol=1e-12, atol=1e-12)
    assert np.all(np.asarray(jitted)[0, :, 1] == 0)  # the fully masked row stays zero under jit


def test_jax_jit_mha_and_encoder_layer(jax, rng):
    x = jax.numpy.asarray(rng.standard_normal((B, S, D)))
    kpm = jax.numpy.asarray(_kpm())
    mha = _jnp_tree(jax, _mha_params(rng))
    enc = _jnp_tree(jax, _encoder_params(rng))

    def f_mha(x, params, kpm):
        return seqops.multi_head_attention(
            x, x, x, params, num_heads=NUM_HEADS, key_padding_mask=kpm, need_weights=True
        )

    def f_enc(x, params, kpm):
        return seqops.transformer_encoder_layer(
            x, params, num_heads=NUM_HEADS, activation="gelu", key_padding_mask=kpm, is_causal=True
        )

    for f, params in ((f_mha, mha), (f_enc, enc)):
        eager, jitted = f(x, params, kpm), jax.jit(f)(x, params, kpm)
        for a, b in zip(_leaves(eager), _leaves(jitted), strict=True):
            np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-12, atol=1e-12)


def test_jax_vmap_equals_batched(jax, rng):
    jnp = jax.numpy
    c = _jnp_tree(jax, _sdpa_case(rng))

    def sdpa(q, k, v, mask):
        return seqops.scaled_dot_product_attention(q, k, v, mask=mask, is_causal=True)

    batched = sdpa(c["q"], c["k"], c["v"], c["mask"])
    mapped = jax.vmap(sdpa)(c["q"], c["k"], c["v"], c["mask"])
    np.testing.assert_allclose(np.asarray(mapped), np.asarray(batched), rtol=1e-12, atol=1e-12)

    x = jnp.asarray(rng.standard_normal((B, S, D)))
    kpm = jnp.asarray(_kpm())
    mha = _jnp_tree(jax, _mha_params(rng))
    enc = _jnp_tree(jax, _encoder_params(rng))

    def f_mha(x, params, kpm):
        return seqops.multi_head_attention(x, x, x, params, num_heads=NUM_HEADS, key_padding_mask=kpm)

    def f_enc(x, params, kpm):
        return seqops.transformer_encoder_layer(
            x, params, num_heads=NUM_HEADS, norm_first=True, key_padding_mask=kpm
        )

    for f, params in ((f_mha, mha), (f_enc, enc)):
        batched = f(x, params, kpm)
        mapped = jax.vmap(f, in_axes=(0, None, 0))(x, params, kpm)
        np.testing.assert_allclose(np.asarray(mapped), np.asarray(batched), rtol=1e-12, atol=1e-12)


def test_jax_grad_sdpa_vs_reference_fd(jax, rng):
    """jax.grad w.r.t. q, k, v and bias (mask + bias + causal) vs the float64 reference."""
    jnp = jax.numpy
    case = _sdpa_case(rng)
    w = rng.standard_normal((B, H, L, E))
    mask, wj = jnp.asarray(case["mask"]), jnp.asarray(w)

    def loss(qkvb):
        q, k, v, bias = qkvb
        return jnp.sum(
            seqops.scaled_dot_product_attention(q, k, v, mask=mask, bias=bias, is_causal=True) * wj
        )

    point = (case["q"], case["k"], case["v"], case["bias"])
    grad = _np_tree(jax.grad(loss)(_jnp_tree(jax, point)))
    _check_directional_derivatives(rng, grad, point, _sdpa_loss_np(case, w))


def test_jax_grad_mha_vs_reference_fd(jax, rng):
    """jax.grad w.r.t. the query and every MHA parameter vs the float64 reference."""
    jnp = jax.numpy
    x = rng.standard_normal((B, S, D))
    query = rng.standard_normal((B, L, D))
    kpm, w = _kpm(), rng.standard_normal((B, L, D))
    params = _mha_params(rng)
    xj, kpmj, wj = jnp.asarray(x), jnp.asarray(kpm), jnp.asarray(w)

    def loss(point):
        q, p = point
        return jnp.sum(
            seqops.multi_head_attention(q, xj, xj, p, num_heads=NUM_HEADS, key_padding_mask=kpmj) * wj
        )

    point = (query, params)
    grad = _np_tree(jax.grad(loss)(_jnp_tree(jax, point)))
    _check_directional_derivatives(rng, grad, point, _mha_loss_np(x, kpm, w))


@pytest.mark.parametrize("norm_first", [False, True], ids=["post_norm", "pre_norm"])
def test_jax_grad_encoder_layer_vs_reference_fd(jax, rng, norm_first):
    """jax.grad w.r.t. x and every encoder parameter (gelu: smooth) vs the float64 reference."""
    jnp = jax.numpy
    x = rng.standard_normal((B, S, D))
    kpm, w = _kpm(), rng.standard_normal((B, S, D))
    params = _encoder_params(rng)
    kpmj, wj = jnp.asarray(kpm), jnp.asarray(w)

    def loss(point):
        xx, p = point
        out = seqops.transformer_encoder_layer(
            xx, p, num_heads=NUM_HEADS, norm_first=norm_first, activation="gelu", key_padding_mask=kpmj
        )
        return jnp.sum(out * wj)

    point = (x, params)
    grad = _np_tree(jax.grad(loss)(_jnp_tree(jax, point)))
    _check_directional_derivatives(rng, grad, point, _encoder_loss_np(kpm, w, norm_first))


def test_jax_grad_fully_masked_rows_finite(jax, rng):
    """A query row with no allowed key: zero output, finite gradients (zero for that row's q)."""
    jnp = jax.numpy
    case = _sdpa_case(rng, fully_masked_row=True)
    mask = jnp.asarray(case["mask"])
    w = jnp.asarray(rng.standard_normal((B, H, L, E)))

    def loss(q, k, v, bias):
        return jnp.sum(seqops.scaled_dot_product_attention(q, k, v, mask=mask, bias=bias, is_causal=True) * w)

    grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3)))(
        *(jnp.asarray(case[n]) for n in ("q", "k", "v", "bias"))
    )
    for g in grads:
        assert np.isfinite(np.asarray(g)).all()
    assert np.all(np.asarray(grads[0])[0, :, 1] == 0)  # d loss / d q on the masked row
    # and the gradient w.r.t. the other rows still matches the reference
    grad = _np_tree(grads)
    point = (case["q"], case["k"], case["v"], case["bias"])
    _check_directional_derivatives(rng, grad, point, _sdpa_loss_np(case, np.asarray(w)))

    # MHA with a fully padded batch element (every key padded): finite gradients too
    x = jnp.asarray(rng.standard_normal((B, S, D)))
    kpm = np.ones((B, S), dtype=bool)
    kpm[1] = False
    params = _jnp_tree(jax, _mha_params(rng))

    def mha_loss(x, p):
        out = seqops.multi_head_attention(x, x, x, p, num_heads=NUM_HEADS, key_padding_mask=jnp.asarray(kpm))
        return jnp.sum(out * out)

    gx, gp = jax.grad(mha_loss, argnums=(0, 1))(x, params)
    assert all(np.isfinite(np.asarray(g)).all() for g in (gx, *_leaves(gp)))


# --------------------------------------------------------------------------------------
# torch autograd
# --------------------------------------------------------------------------------------


def _torch_tree(torch, tree, *, requires_grad=False):
    return _map(lambda a: torch.tensor(a, dtype=torch.float64, requires_grad=requires_grad), tree)


def _torch_grads_np(torch, loss, point):
    leaves = _leaves(point)
    grads = torch.autograd.grad(loss, leaves)
    it = iter(g.detach().numpy() for g in grads)
    return _map(lambda _: next(it), point)


def test_torch_grad_sdpa_vs_reference_fd(torch, rng):
    case = _sdpa_case(rng)
    w = rng.standard_normal((B, H, L, E))
    q, k, v, bias = point_t = _torch_tree(
        torch, (case["q"], case["k"], case["v"], case["bias"]), requires_grad=True
    )
    out = seqops.scaled_dot_product_attention(
        q, k, v, mask=torch.tensor(case["mask"]), bias=bias, is_causal=True
    )
    loss = (out * torch.tensor(w)).sum()
    grad = _torch_grads_np(torch, loss, point_t)
    _check_directional_derivatives(
        rng, grad, (case["q"], case["k"], case["v"], case["bias"]), _sdpa_loss_np(case, w)
    )


def test_torch_grad_mha_vs_reference_fd(torch, rng):
    x = rng.standard_normal((B, S, D))
    query = rng.standard_normal((B, L, D))
    kpm, w = _kpm(), rng.standard_normal((B, L, D))
    params = _mha_params(rng)
    point_t = _torch_tree(torch, (query, params), requires_grad=True)
    xt = torch.tensor(x)
    out = seqops.multi_head_attention(
        point_t[0], xt, xt, point_t[1], num_heads=NUM_HEADS, key_padding_mask=torch.tensor(kpm)
    )
    grad = _torch_grads_np(torch, (out * torch.tensor(w)).sum(), point_t)
    _check_directional_derivatives(rng, grad, (query, params), _mha_loss_np(x, kpm, w))


@pytest.mark.parametrize("norm_first", [False, True], ids=["post_norm", "pre_norm"])
def test_torch_grad_encoder_layer_vs_reference_fd(torch, rng, norm_first):
    x = rng.standard_normal((B, S, D))
    kpm, w = _kpm(), rng.standard_normal((B, S, D))
    params = _encoder_params(rng)
    point_t = _torch_tree(torch, (x, params), requires_grad=True)
    out = seqops.transformer_encoder_layer(
        point_t[0],
        point_t[1],
        num_heads=NUM_HEADS,
        norm_first=norm_first,
        activation="gelu",
        key_padding_mask=torch.tensor(kpm),
    )
    grad = _torch_grads_np(torch, (out * torch.tensor(w)).sum(), point_t)
    _check_directional_derivatives(rng, grad, (x, params), _encoder_loss_np(kpm, w, norm_first))


@pytest.mark.parametrize("fully_masked_row", [False, True])
def test_torch_gradcheck_sdpa(torch, rng, fully_masked_row):
    case = _sdpa_case(rng, fully_masked_row=fully_masked_row)
    mask = torch.tensor(case["mask"][:1, :, :3, :3])
    inputs = tuple(
        torch.tensor(a, dtype=torch.float64, requires_grad=True)
        for a in (
            case["q"][:1, :, :3],
            case["k"][:1, :, :3],
            case["v"][:1, :, :3],
            case["bias"][:, :, :3, :3],
        )
    )

    def f(q, k, v, bias):
        return seqops.scaled_dot_product_attention(q, k, v, mask=mask, bias=bias, is_causal=True, scale=0.8)

    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


def test_torch_grad_fully_masked_rows_finite(torch, rng):
    case = _sdpa_case(rng, fully_masked_row=True)
    q, k, v, bias = (torch.tensor(case[n], requires_grad=True) for n in ("q", "k", "v", "bias"))
    out = seqops.scaled_dot_product_attention(
        q, k, v, mask=torch.tensor(case["mask"]), bias=bias, is_causal=True
    )
    assert torch.all(out[0, :, 1] == 0)
    (out * torch.tensor(rng.standard_normal((B, H, L, E)))).sum().backward()
    for t in (q, k, v, bias):
        assert torch.isfinite(t.grad).all()
    assert torch.all(q.grad[0, :, 1] == 0)

    # a fully padded batch element through MHA: finite gradients as well
    x = torch.tensor(rng.standard_normal((B, S, D)), requires_grad=True)
    kpm = torch.ones(B, S, dtype=torch.bool)
    kpm[1] = False
    params = _torch_tree(torch, _mha_params(rng), requires_grad=True)
    out = seqops.multi_head_attention(x, x, x, params, num_heads=NUM_HEADS, key_padding_mask=kpm)
    grads = torch.autograd.grad((out * out).sum(), [x, *_leaves(params)])
    assert all(torch.isfinite(g).all() for g in grads)


# --------------------------------------------------------------------------------------
# torch.compile(fullgraph=True)
# --------------------------------------------------------------------------------------
#
# Compiler backend: "aot_eager". Measured on 2 CPU cores, compiling the function below
# (sdpa + MHA + encoder layer) takes ~1.2 s with "aot_eager" and ~30 s with "inductor"
# (C++ codegen). fullgraph=True makes Dynamo raise on any graph break whatever the
# backend, and aot_eager still traces the graph through AOTAutograd (functionalisation,
# decompositions), so it proves what we need at a fraction of the cost. Set
# SEQOPS_TEST_INDUCTOR=1 to compile with inductor instead.
COMPILE_BACKEND = "inductor" if os.environ.get("SEQOPS_TEST_INDUCTOR") == "1" else "aot_eager"

_COMPILE_SCRIPT = textwrap.dedent(
    """
    import numpy as np, torch, seqops

    def fn(q, x, mask, kpm, mha, enc):
        a = seqops.scaled_dot_product_attention(q, q, q, mask=mask, is_causal=True)
        b = seqops.multi_head_attention(x, x, x, mha, num_heads=2, key_padding_mask=kpm)
        c = seqops.transformer_encoder_layer(x, enc, num_heads=2, activation="gelu", key_padding_mask=kpm)
        return a, b, c
    """
)


def _compile_inputs(torch, rng):
    q = torch.tensor(rng.standard_normal((B, H, L, E)), dtype=torch.float32)
    x = torch.tensor(rng.standard_normal((B, S, D)), dtype=torch.float32)
    mask = torch.tensor(_mask(rng, (B, 1, L, L)))
    kpm = torch.tensor(_kpm())
    mha = _map(lambda a: torch.tensor(a, dtype=torch.float32), _mha_params(rng))
    enc = _map(lambda a: torch.tensor(a, dtype=torch.float32), _encoder_params(rng))
    return q, x, mask, kpm, mha, enc


# array-api-compat's ``is_*_array`` helpers are lru_cache-wrapped; Dynamo warns that it
# traces through the cache wrapper (harmless, and not seqops' code).
_IGNORE_LRU_WARNING = pytest.mark.filterwarnings("ignore:Dynamo detected a call to a `functools.lru_cache`")


@_IGNORE_LRU_WARNING
def test_torch_compile_fullgraph(torch, rng):
    """sdpa (mask + causal), MHA and the encoder layer in one function: no graph break.

    The registry caches are warm here (the eager call runs first), as in a program that
    used seqops before compiling; the cold case is the next test.
    """
    namespace: dict = {}
    exec(_COMPILE_SCRIPT, namespace)  # noqa: S102 - the same source as the cold-start test
    fn = namespace["fn"]
    args = _compile_inputs(torch, rng)
    eager = fn(*args)
    torch._dynamo.reset()
    compiled = torch.compile(fn, fullgraph=True, backend=COMPILE_BACKEND)
    out = compiled(*args)
    for got, want in zip(out, eager, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    torch._dynamo.reset()


def test_torch_compile_fullgraph_cold_start(torch, tmp_path):
    """The same function compiled in a fresh process **before** any eager seqops call.

    A program may well compile its model before running seqops once; then the plugin
    registry is filled while Dynamo traces, and that must not break the graph either.
    """
    script = tmp_path / "cold.py"
    script.write_text(
        _COMPILE_SCRIPT
        + textwrap.dedent(
            f"""
            torch.manual_seed(0)
            q = torch.randn({B}, {H}, {L}, {E})
            x = torch.randn({B}, {S}, {D})
            mask = torch.rand({B}, 1, {L}, {L}) > 0.3
            kpm = torch.ones({B}, {S}, dtype=torch.bool)
            kpm[0, -1] = False
            w = lambda *s: torch.randn(*s) * 0.4
            mha = seqops.MHAParams(w({D}, {D}), w({D}, {D}), w({D}, {D}), w({D}, {D}))
            enc = seqops.EncoderLayerParams(mha, w({D}, {FF}), None, w({FF}, {D}), None)
            compiled = torch.compile(fn, fullgraph=True, backend={COMPILE_BACKEND!r})
            out = compiled(q, x, mask, kpm, mha, enc)
            for got, want in zip(out, fn(q, x, mask, kpm, mha, enc)):
                torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
            print("OK")
            """
        )
    )
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-4000:]
