"""Behaviour of the attention family that peers do not define: dropout, zero rows,
creation functions, dtype policy, explain()."""

from __future__ import annotations

import numpy as np
import pytest
from seqops_conformance import references as ref

import seqops

rng = np.random.default_rng(1)


def test_dropout_is_reproducible_and_rescales(backend: seqops.Backend) -> None:
    dtype = backend.floating_dtypes()["float32"]
    q = backend.from_numpy(rng.standard_normal((2, 3, 6, 4)), dtype=dtype)
    v = backend.from_numpy(rng.standard_normal((2, 3, 6, 4)), dtype=dtype)
    kwargs = {"dropout_p": 0.5, "return_weights": True}
    out1, w1 = seqops.scaled_dot_product_attention(q, q, v, rng=7, **kwargs)
    out2, w2 = seqops.scaled_dot_product_attention(q, q, v, rng=7, **kwargs)
    np.testing.assert_array_equal(backend.to_numpy(out1), backend.to_numpy(out2))
    _, clean = seqops.scaled_dot_product_attention(q, q, v, return_weights=True)
    w, clean = backend.to_numpy(w1), backend.to_numpy(clean)
    dropped = w == 0
    assert 0.3 < dropped.mean() < 0.7
    np.testing.assert_allclose(w[~dropped], 2 * clean[~dropped], rtol=1e-6)
    # the output is computed with the dropped weights that are returned
    np.testing.assert_allclose(backend.to_numpy(out1), w @ backend.to_numpy(v), rtol=1e-5, atol=1e-6)
    _, other = seqops.scaled_dot_product_attention(q, q, v, rng=8, **kwargs)
    assert not np.array_equal(backend.to_numpy(other), w)


def test_dropout_accepts_native_generators() -> None:
    q = rng.standard_normal((4, 5)).astype(np.float32)
    a = seqops.scaled_dot_product_attention(q, q, q, dropout_p=0.3, rng=np.random.default_rng(3))
    b = seqops.scaled_dot_product_attention(q, q, q, dropout_p=0.3, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match="integer seed or a numpy.random._generator.Generator"):
        seqops.scaled_dot_product_attention(q, q, q, dropout_p=0.3, rng="seed")


def test_fully_masked_rows_give_zeros_and_finite_gradients() -> None:
    torch = pytest.importorskip("torch")
    q = torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True)
    mask = torch.ones(4, 4, dtype=torch.bool)
    mask[1] = False
    out, weights = seqops.scaled_dot_product_attention(q, q, q, mask=mask, return_weights=True)
    assert torch.all(out[:, 1] == 0) and torch.all(weights[:, 1] == 0)
    (grad,) = torch.autograd.grad(out.sum(), q)
    assert torch.isfinite(grad).all()


def test_bias_of_minus_infinity_masks_like_a_boolean_mask() -> None:
    q = rng.standard_normal((5, 4))
    mask = rng.random((5, 5)) > 0.4
    mask[2] = False
    bias = np.where(mask, 0.0, -np.inf)
    np.testing.assert_allclose(
        seqops.scaled_dot_product_attention(q, q, q, bias=bias),
        seqops.scaled_dot_product_attention(q, q, q, mask=mask),
    )


def test_half_precision_keeps_dtype_and_is_accurate(backend: seqops.Backend) -> None:
    for name in ("float16", "bfloat16"):
        dtype = backend.floating_dtypes().get(name)
        if dtype is None:
            continue
        x = rng.standard_normal((2, 8, 16)) * 0.5
        q = backend.from_numpy(x, dtype=dtype)
        out = seqops.scaled_dot_product_attention(q, q, q, is_causal=True)
        assert out.dtype == dtype
        xr = backend.to_numpy(q).astype(np.float64)
        expected, _ = ref.scaled_dot_product_attention(xr, xr, xr, is_causal=True)
        np.testing.assert_allclose(backend.to_numpy(out), expected, atol=2e-2)


@pytest.mark.parametrize(("q_len", "kv_len"), [(3, 3), (2, 5), (5, 2)])
@pytest.mark.parametrize("align", ["top_left", "bottom_right"])
def test_causal_mask_on_every_backend(backend: seqops.Backend, q_len: int, kv_len: int, align: str) -> None:
    like = backend.from_numpy(np.zeros(1), dtype=backend.floating_dtypes()["float32"])
    out = seqops.causal_mask(q_len, kv_len, align=align, like=like)
    assert backend.owns(out)
    np.testing.assert_array_equal(backend.to_numpy(out), ref.causal_mask(q_len, kv_len, align=align))


def test_is_causal_equals_an_explicit_top_left_mask() -> None:
    q, k = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 6, 4))
    np.testing.assert_allclose(
        seqops.scaled_dot_product_attention(q, k, k, is_causal=True),
        seqops.scaled_dot_product_attention(q, k, k, mask=seqops.causal_mask(3, 6)),
    )


def test_positional_encoding_dtype_defaults() -> None:
    assert seqops.sinusoidal_positional_encoding(3, 4).dtype == np.float64
    like = np.zeros(2, dtype=np.float16)
    assert seqops.sinusoidal_positional_encoding(3, 4, like=like).dtype == np.float16
    out = seqops.sinusoidal_positional_encoding(3, 4, dtype=np.float32)
    assert out.dtype == np.float32
    with pytest.raises(TypeError, match="dtype must be a real floating dtype; got int32"):
        seqops.sinusoidal_positional_encoding(3, 4, dtype=np.int32)


def test_positional_encoding_at_large_positions_is_accurate_in_float32() -> None:
    """Angles are formed in float64 and only the result is rounded to float32."""
    positions = np.array([0, 1000, 30000, 99999])
    out = seqops.sinusoidal_positional_encoding(4, 16, positions=positions, dtype=np.float32)
    expected = ref.sinusoidal_positional_encoding(4, 16, positions=positions)
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_padding_mask_follows_lengths_library(backend: seqops.Backend) -> None:
    xp = backend.namespace()
    lengths = xp.asarray([0, 2, 5])
    out = seqops.padding_mask(lengths, 4)
    assert backend.owns(out)
    np.testing.assert_array_equal(backend.to_numpy(out), ref.padding_mask(np.array([0, 2, 5]), 4))


def test_explain_validates_like_a_real_call() -> None:
    q = np.ones((2, 3, 4), dtype=np.float32)
    explanation = seqops.explain("scaled_dot_product_attention", q, q, q, is_causal=True)
    assert explanation.chosen == "numpy-attention" and explanation.backend == "numpy"
    assert "runs 'numpy-attention'" in str(explanation)
    with pytest.raises(ValueError, match="same feature size"):
        seqops.explain(seqops.scaled_dot_product_attention, q, q[..., :2], q)
    with pytest.raises(TypeError, match="not a dispatched seqops op"):
        seqops.explain(len, [1])
