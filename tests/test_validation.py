"""Bad input gets a ValueError/TypeError whose message names the shapes or types involved."""

from __future__ import annotations

import numpy as np
import pytest

import seqops

rng = np.random.default_rng(0)


def arr(*shape: int, dtype: type = np.float32) -> np.ndarray:
    return rng.standard_normal(shape).astype(dtype)


def test_sdpa_feature_size_mismatch() -> None:
    with pytest.raises(ValueError, match=r"same feature size E; got q \(2, 4, 8\) and k \(2, 6, 16\)"):
        seqops.scaled_dot_product_attention(arr(2, 4, 8), arr(2, 6, 16), arr(2, 6, 8))


def test_sdpa_key_value_length_mismatch() -> None:
    with pytest.raises(ValueError, match=r"same length S; got k \(2, 6, 8\) and v \(2, 5, 8\)"):
        seqops.scaled_dot_product_attention(arr(2, 4, 8), arr(2, 6, 8), arr(2, 5, 8))


def test_sdpa_leading_dims_must_broadcast() -> None:
    with pytest.raises(ValueError, match=r"leading .* do not broadcast: q \(2,\), k \(3,\)"):
        seqops.scaled_dot_product_attention(arr(2, 4, 8), arr(3, 6, 8), arr(3, 6, 8))


def test_sdpa_mismatched_dtypes() -> None:
    with pytest.raises(TypeError, match=r"must share one dtype; got q float32, k float64, v float32"):
        seqops.scaled_dot_product_attention(arr(2, 4, 8), arr(2, 6, 8, dtype=np.float64), arr(2, 6, 8))


def test_sdpa_non_boolean_mask() -> None:
    q = arr(2, 4, 8)
    with pytest.raises(TypeError, match=r"`mask` must be a boolean array \(True = attend.*got dtype float32"):
        seqops.scaled_dot_product_attention(q, q, q, mask=arr(4, 4))


def test_sdpa_mask_shape() -> None:
    q = arr(2, 4, 8)
    with pytest.raises(
        ValueError, match=r"`mask` of shape \(4, 5\) does not broadcast to \(\.\.\., L, S\) = \(2, 4, 4\)"
    ):
        seqops.scaled_dot_product_attention(q, q, q, mask=np.ones((4, 5), dtype=bool))


def test_sdpa_bias_dtype_must_match() -> None:
    q = arr(2, 4, 8)
    with pytest.raises(TypeError, match="bias float64"):
        seqops.scaled_dot_product_attention(q, q, q, bias=arr(4, 4, dtype=np.float64))


def test_sdpa_integer_inputs() -> None:
    q = np.ones((2, 4, 8), dtype=np.int64)
    with pytest.raises(TypeError, match="`q` must be a real floating array; got dtype int64"):
        seqops.scaled_dot_product_attention(q, q, q)


def test_sdpa_dropout_needs_rng() -> None:
    q = arr(2, 4, 8)
    with pytest.raises(ValueError, match=r"dropout_p=0.1 > 0 needs rng="):
        seqops.scaled_dot_product_attention(q, q, q, dropout_p=0.1)
    with pytest.raises(ValueError, match=r"dropout_p must be in \[0, 1\); got 1.5"):
        seqops.scaled_dot_product_attention(q, q, q, dropout_p=1.5, rng=0)


def test_sdpa_gqa_heads_must_divide() -> None:
    with pytest.raises(
        ValueError, match=r"must divide the query heads; got q \(1, 4, 3, 8\), k \(1, 3, 5, 8\)"
    ):
        seqops.scaled_dot_product_attention(
            arr(1, 4, 3, 8), arr(1, 3, 5, 8), arr(1, 3, 5, 8), enable_gqa=True
        )


def test_sdpa_rank_too_small() -> None:
    with pytest.raises(
        ValueError, match=r"`q` must have at least 2 dimensions \(\.\.\., L, E\); got shape \(8,\)"
    ):
        seqops.scaled_dot_product_attention(arr(8), arr(2, 8), arr(2, 8))


def test_positional_encoding_odd_width() -> None:
    with pytest.raises(ValueError, match="d_model must be even .*got d_model=7"):
        seqops.sinusoidal_positional_encoding(4, 7)


def test_positional_encoding_positions_shape_and_dtype() -> None:
    with pytest.raises(ValueError, match=r"`positions` must have shape \(4,\); got \(3,\)"):
        seqops.sinusoidal_positional_encoding(4, 8, positions=np.arange(3))
    with pytest.raises(TypeError, match="`positions` must be an integer array; got dtype float64"):
        seqops.sinusoidal_positional_encoding(4, 8, positions=np.arange(4.0))


def test_causal_mask_bad_arguments() -> None:
    with pytest.raises(ValueError, match="`align` must be one of 'top_left', 'bottom_right'; got 'left'"):
        seqops.causal_mask(3, align="left")
    with pytest.raises(ValueError, match="q_len must be non-negative; got -1"):
        seqops.causal_mask(-1)
    with pytest.raises(TypeError, match="kv_len must be an integer; got float"):
        seqops.causal_mask(3, 2.5)


def test_padding_mask_needs_integer_lengths() -> None:
    with pytest.raises(TypeError, match="`lengths` must be an integer array; got dtype float64"):
        seqops.padding_mask(np.array([1.0, 2.0]), 3)


def mha_params(d_in: int = 8, width: int = 8) -> seqops.MHAParams:
    return seqops.MHAParams(arr(d_in, width), arr(d_in, width), arr(d_in, width), arr(width, d_in))


def test_mha_heads_must_divide_width() -> None:
    x = arr(2, 5, 8)
    with pytest.raises(ValueError, match=r"num_heads=3 must divide .* D=8 \(params.w_q \(8, 8\)\)"):
        seqops.multi_head_attention(x, x, x, mha_params(), num_heads=3)


def test_mha_weight_shapes() -> None:
    x = arr(2, 5, 8)
    params = mha_params()._replace(w_k=arr(8, 6))
    with pytest.raises(ValueError, match=r"`params.w_k` must have shape \(8, 8\); got \(8, 6\)"):
        seqops.multi_head_attention(x, x, x, params, num_heads=2)
    with pytest.raises(ValueError, match=r"`params.b_q` must have shape \(8,\); got \(4,\)"):
        seqops.multi_head_attention(x, x, x, mha_params()._replace(b_q=arr(4)), num_heads=2)


def test_mha_key_padding_mask_shape_and_type() -> None:
    x = arr(2, 5, 8)
    with pytest.raises(
        ValueError,
        match=r"`key_padding_mask` of shape \(2, 4\) does not broadcast to \(\.\.\., S\) = \(2, 5\)",
    ):
        seqops.multi_head_attention(
            x, x, x, mha_params(), num_heads=2, key_padding_mask=np.ones((2, 4), bool)
        )
    with pytest.raises(TypeError, match=r"`key_padding_mask` must be a boolean array \(True = real token\)"):
        seqops.multi_head_attention(x, x, x, mha_params(), num_heads=2, key_padding_mask=np.ones((2, 5)))


def test_mha_params_dtype_must_match() -> None:
    x = arr(2, 5, 8, dtype=np.float64)
    with pytest.raises(TypeError, match=r"query float64, .*params.w_q float32"):
        seqops.multi_head_attention(x, x, x, mha_params(), num_heads=2)


def test_mha_params_type() -> None:
    x = arr(2, 5, 8)
    with pytest.raises(TypeError, match="params must be a seqops.MHAParams; got tuple"):
        seqops.multi_head_attention(x, x, x, tuple(mha_params()), num_heads=2)  # type: ignore[arg-type]


def test_feed_forward_bad_activation_and_shapes() -> None:
    x = arr(3, 4)
    with pytest.raises(
        ValueError,
        match="`activation` must be one of 'relu', 'gelu', 'gelu_tanh', 'silu', 'swish'; got 'swiglu'",
    ):
        seqops.feed_forward(x, arr(4, 8), None, arr(8, 4), None, activation="swiglu")
    with pytest.raises(ValueError, match=r"`w2` must have shape \(8, 6\); got \(7, 6\)"):
        seqops.feed_forward(x, arr(4, 8), None, arr(7, 6), None)


def test_layer_norm_weight_shape() -> None:
    with pytest.raises(ValueError, match=r"`weight` must have shape \(4,\); got \(3,\)"):
        seqops.layer_norm(arr(2, 4), arr(3))


def test_encoder_layer_heads_and_norm_shapes() -> None:
    x = arr(2, 5, 8)
    params = seqops.EncoderLayerParams(mha_params(), arr(8, 16), None, arr(16, 8), None, norm1_weight=arr(7))
    with pytest.raises(ValueError, match=r"`params.norm1_weight` must have shape \(8,\); got \(7,\)"):
        seqops.transformer_encoder_layer(x, params, num_heads=2)
    with pytest.raises(ValueError, match="num_heads=5 must divide"):
        seqops.transformer_encoder_layer(x, params._replace(norm1_weight=None), num_heads=5)


def test_softmax_axis_out_of_range() -> None:
    with pytest.raises(ValueError, match=r"axis 2 is out of range for x of shape \(2, 3\)"):
        seqops.softmax(arr(2, 3), axis=2)


@pytest.mark.parametrize("library", ["numpy", "torch"])
def test_an_attention_mask_is_checked_against_l_by_s_not_the_queries_width(library: str) -> None:
    # (B, H, L, E) = (2, 3, 5, 4) queries, S = 7 keys: masks broadcast to (2, 3, 5, 7).
    make = np.zeros if library == "numpy" else pytest.importorskip("torch").zeros
    q, k = make((2, 3, 5, 4)), make((2, 3, 7, 4))
    for shape in [(5, 7), (1, 7), (7,), (2, 1, 1, 7), (2, 3, 5, 7), (1, 1, 5, 1), ()]:
        mask = make(shape, dtype=bool) if library == "numpy" else make(shape).bool()
        assert seqops.scaled_dot_product_attention(q, k, k, mask=mask | True).shape == (2, 3, 5, 4)
    for shape in [(5, 4), (4,), (2, 3, 5, 8), (3, 3, 5, 7), (1, 2, 3, 5, 7), (6, 7)]:
        mask = make(shape, dtype=bool) if library == "numpy" else make(shape).bool()
        with pytest.raises(
            ValueError, match=r"`mask` of shape .* does not broadcast to \(\.\.\., L, S\) = \(2, 3, 5, 7\)"
        ):
            seqops.scaled_dot_product_attention(q, k, k, mask=mask)
