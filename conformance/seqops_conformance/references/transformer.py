"""Float64 references of the transformer family: layer and RMS norm, (gated) feed-forward,
encoder layer."""

import math

import numpy as np

from seqops_conformance.references.activations import silu
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
    for idx in np.ndindex(x.shape[:-1]) if n else ():  # D = 0: an empty output
        row = x[idx]
        mean = math.fsum(row) / n
        var = math.fsum((row - mean) ** 2) / n
        out[idx] = (row - mean) / math.sqrt(var + eps)
    if weight is not None:
        out = out * np.asarray(weight, dtype=np.float64)
    if bias is not None:
        out = out + np.asarray(bias, dtype=np.float64)
    return out


def rms_norm(x, weight=None, eps=1e-6):
    """Root-mean-square normalisation over the last axis, row by row.

    Parameters
    ----------
    x : array_like, shape (..., E)
    weight : array_like, shape (E,), optional
    eps : float, default 1e-6
        Added to the mean square.

    Returns
    -------
    ndarray, float64, shape (..., E)
        ``x_i * weight_i / sqrt(fsum(x²) / E + eps)`` per row.
    """
    x = np.asarray(x, dtype=np.float64)
    e = x.shape[-1]
    w = np.ones(e) if weight is None else np.asarray(weight, dtype=np.float64)
    out = np.empty_like(x)
    for idx in np.ndindex(x.shape[:-1]) if e else ():  # E = 0: an empty output
        row = x[idx]
        rms = math.sqrt(math.fsum(v * v for v in row) / e + eps)
        out[idx] = [row[i] / rms * w[i] for i in range(e)]
    return out


def _relu(x):
    return np.where(x > 0, x, 0.0)


_erf = np.vectorize(math.erf, otypes=[np.float64])


def _gelu(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def _gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


_ACTIVATIONS = {"relu": _relu, "gelu": _gelu, "gelu_tanh": _gelu_tanh, "silu": silu, "swish": silu}


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


def gated_feed_forward(x, w_gate, w_up, w_down, b_gate=None, b_up=None, b_down=None, activation="silu"):
    """Gated feed-forward block, position by position with explicit dot products.

    ``h_f = act(Σ_d x_d w_gate[d, f] + b_gate_f) · (Σ_d x_d w_up[d, f] + b_up_f)``, then
    ``y_o = Σ_f h_f w_down[f, o] + b_down_o`` (sums with ``math.fsum``).

    Parameters
    ----------
    x : array_like, shape (..., D)
    w_gate, w_up : array_like, shape (D, F)
    w_down : array_like, shape (F, D_out)
    b_gate, b_up : array_like, shape (F,), optional
    b_down : array_like, shape (D_out,), optional
    activation : {"silu", "swish", "gelu", "gelu_tanh", "relu"}, default "silu"

    Returns
    -------
    ndarray, float64, shape (..., D_out)
    """
    act = _activation(activation)
    x = np.asarray(x, dtype=np.float64)
    wg, wu, wd = (np.asarray(w, dtype=np.float64) for w in (w_gate, w_up, w_down))
    d, f = wg.shape
    d_out = wd.shape[1]
    bg, bu, bd = (
        np.zeros(n) if b is None else np.asarray(b, dtype=np.float64)
        for b, n in ((b_gate, f), (b_up, f), (b_down, d_out))
    )
    out = np.empty((*x.shape[:-1], d_out))
    for idx in np.ndindex(x.shape[:-1]):
        row = x[idx]
        gate = np.array([math.fsum(row[i] * wg[i, j] for i in range(d)) + bg[j] for j in range(f)])
        up = [math.fsum(row[i] * wu[i, j] for i in range(d)) + bu[j] for j in range(f)]
        h = act(gate) * np.array(up)
        out[idx] = [math.fsum(h[j] * wd[j, o] for j in range(f)) + bd[o] for o in range(d_out)]
    return out


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
    scale=None,
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
    scale : float, optional
        The attention's logit scale (default ``1/sqrt(head_dim)``).

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
            scale=scale,
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


def transformer_decoder_layer(
    x, memory, params, num_heads, norm_first=False, activation="relu", mask=None, key_padding_mask=None,
    is_causal=True, memory_mask=None, memory_key_padding_mask=None, scale=None, eps=1e-5,
):  # fmt: skip
    """Transformer decoder layer, as ``torch.nn.TransformerDecoderLayer`` with dropout 0 and a
    causal target mask (unless ``is_causal=False``)::

        post-norm: x = LN1(x + SA(x));  x = LN2(x + CA(x, memory));  x = LN3(x + FFN(x))
        pre-norm:  x = x + SA(LN1(x));  x = x + CA(LN2(x), memory);  x = x + FFN(LN3(x))

    ``params`` has ``self_attn``, ``cross_attn`` (see :func:`multi_head_attention`), ``w1``,
    ``b1``, ``w2``, ``b2`` and ``norm{1,2,3}_{weight,bias}``; masks True = attend / real token.

    Returns
    -------
    ndarray, float64, shape (..., L, D)
    """
    x = np.asarray(x, dtype=np.float64)
    memory = np.asarray(memory, dtype=np.float64)

    def self_attn(h):
        return multi_head_attention(
            h, h, h, params.self_attn, num_heads, mask=mask, key_padding_mask=key_padding_mask,
            is_causal=is_causal, scale=scale,
        )[0]  # fmt: skip

    def cross_attn(h):
        return multi_head_attention(
            h, memory, memory, params.cross_attn, num_heads, mask=memory_mask,
            key_padding_mask=memory_key_padding_mask, scale=scale,
        )[0]  # fmt: skip

    def ffn(h):
        return feed_forward(h, params.w1, params.b1, params.w2, params.b2, activation=activation)

    norms = [
        (
            lambda h, i=i: layer_norm(
                h, getattr(params, f"norm{i}_weight"), getattr(params, f"norm{i}_bias"), eps=eps
            )
        )
        for i in (1, 2, 3)
    ]
    if norm_first:
        x = x + self_attn(norms[0](x))
        x = x + cross_attn(norms[1](x))
        return x + ffn(norms[2](x))
    x = norms[0](x + self_attn(x))
    x = norms[1](x + cross_attn(x))
    return norms[2](x + ffn(x))
