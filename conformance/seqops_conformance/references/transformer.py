"""Float64 references of the transformer family: layer norm, feed-forward, encoder layer."""

import math

import numpy as np

from seqops_conformance.references.attention import _linear, multi_head_attention


def layer_norm(x, weight=None, bias=None, eps=1e-5):
    """Layer normalisation over the last axis, biased variance (as torch).

    Parameters
    ----------
    x : array_like, shape (..., D)
        Input.
    weight, bias : array_like, shape (D,), optional
        Elementwise affine scale and shift.
    eps : float, default 1e-5
        Added to the variance.

    Returns
    -------
    ndarray, float64, shape (..., D)
        ``(x - mean) / sqrt(var + eps) * weight + bias`` per row.
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[-1]
    out = np.empty_like(x)
    for idx in np.ndindex(x.shape[:-1]):
        row = x[idx]
        mean = math.fsum(row) / n
        var = math.fsum((row - mean) ** 2) / n
        out[idx] = (row - mean) / math.sqrt(var + eps)
    if weight is not None:
        out = out * np.asarray(weight, dtype=np.float64)
    if bias is not None:
        out = out + np.asarray(bias, dtype=np.float64)
    return out


def _relu(x):
    return np.where(x > 0, x, 0.0)


_erf = np.vectorize(math.erf, otypes=[np.float64])


def _gelu(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def _gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


_ACTIVATIONS = {"relu": _relu, "gelu": _gelu, "gelu_tanh": _gelu_tanh}


def _activation(name):
    try:
        return _ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {name!r}") from None


def feed_forward(x, w1, b1, w2, b2, activation="relu"):
    """Position-wise feed-forward block ``act(x @ w1 + b1) @ w2 + b2``.

    Parameters
    ----------
    x : array_like, shape (..., D)
        Input.
    w1 : array_like, shape (D, F)
    b1 : array_like, shape (F,), or None
    w2 : array_like, shape (F, D_out)
    b2 : array_like, shape (D_out,), or None
    activation : {"relu", "gelu", "gelu_tanh"}, default "relu"
        ``"gelu"`` is the exact erf form ``0.5 x (1 + erf(x / sqrt 2))``;
        ``"gelu_tanh"`` is ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``.

    Returns
    -------
    ndarray, float64, shape (..., D_out)
    """
    act = _activation(activation)
    x = np.asarray(x, dtype=np.float64)
    return _linear(act(_linear(x, w1, b1)), w2, b2)


def transformer_encoder_layer(
    x,
    params,
    num_heads,
    norm_first=False,
    activation="relu",
    mask=None,
    key_padding_mask=None,
    is_causal=False,
    eps=1e-5,
):
    """Transformer encoder layer, as ``torch.nn.TransformerEncoderLayer`` with dropout 0.

    Post-norm (default)::

        x = LN1(x + MHA(x));  x = LN2(x + FFN(x))

    Pre-norm (``norm_first=True``)::

        x = x + MHA(LN1(x));  x = x + FFN(LN2(x))

    Parameters
    ----------
    x : array_like, shape (..., L, D)
        Input sequence.
    params : object
        Has attributes ``attn`` (multi-head attention params, see
        :func:`multi_head_attention`), ``w1 (D, F)``, ``b1 (F,)``, ``w2 (F, D)``,
        ``b2 (D,)``, ``norm1_weight``, ``norm1_bias``, ``norm2_weight``, ``norm2_bias``
        (each ``(D,)``); biases may be None.
    num_heads : int
        Number of attention heads.
    norm_first : bool, default False
        Pre-norm instead of post-norm.
    activation : {"relu", "gelu", "gelu_tanh"}, default "relu"
        Feed-forward activation.
    mask : array_like of bool, optional
        Self-attention mask, True = attend.
    key_padding_mask : array_like of bool, shape (..., L), optional
        True = real token.
    is_causal : bool, default False
        Top-left causal self-attention.
    eps : float, default 1e-5
        Layer-norm epsilon.

    Returns
    -------
    ndarray, float64, shape (..., L, D)
    """
    x = np.asarray(x, dtype=np.float64)

    def attn(h):
        out, _ = multi_head_attention(
            h,
            h,
            h,
            params.attn,
            num_heads,
            mask=mask,
            key_padding_mask=key_padding_mask,
            is_causal=is_causal,
        )
        return out

    def ffn(h):
        return feed_forward(h, params.w1, params.b1, params.w2, params.b2, activation=activation)

    def norm1(h):
        return layer_norm(h, params.norm1_weight, params.norm1_bias, eps=eps)

    def norm2(h):
        return layer_norm(h, params.norm2_weight, params.norm2_bias, eps=eps)

    if norm_first:
        x = x + attn(norm1(x))
        return x + ffn(norm2(x))
    x = norm1(x + attn(x))
    return norm2(x + ffn(x))
