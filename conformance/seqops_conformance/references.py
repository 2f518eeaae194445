"""Float64 NumPy reference implementations of the seqops attention family.

Each function follows the formula in ``API.md`` as directly as possible: explicit
loops over rows, heads and positions, with ``math.fsum`` for normalisers. They are
deliberately slow and share no code with the optimized library, so that the
conformance suite compares seqops against an independent statement of the maths.
Inputs are cast to float64; the sizes used in tests are small.
"""

import math

import numpy as np


def softmax(x, axis=-1):
    """Softmax along one axis, stable for any finite input.

    Parameters
    ----------
    x : array_like
        Input of any shape.
    axis : int, default -1
        Axis along which the probabilities sum to one.

    Returns
    -------
    ndarray, float64
        Same shape as ``x``.
    """
    x = np.moveaxis(np.asarray(x, dtype=np.float64), axis, -1)
    out = np.empty_like(x)
    for idx in np.ndindex(x.shape[:-1]):
        row = x[idx]
        e = np.exp(row - np.max(row))
        out[idx] = e / math.fsum(e)
    return np.moveaxis(out, -1, axis)


def log_softmax(x, axis=-1):
    """Log-softmax along one axis, stable for any finite input.

    Computed as ``x - max - log(sum(exp(x - max)))`` per row.

    Parameters
    ----------
    x : array_like
        Input of any shape.
    axis : int, default -1
        Axis along which to normalise.

    Returns
    -------
    ndarray, float64
        Same shape as ``x``.
    """
    x = np.moveaxis(np.asarray(x, dtype=np.float64), axis, -1)
    out = np.empty_like(x)
    for idx in np.ndindex(x.shape[:-1]):
        shifted = x[idx] - np.max(x[idx])
        out[idx] = shifted - math.log(math.fsum(np.exp(shifted)))
    return np.moveaxis(out, -1, axis)


def _expand_kv_heads(q, k, v):
    """Give each query head its kv head, ``h // (Hq // Hkv)`` (torch repeat_interleave)."""
    if q.ndim < 3 or k.ndim < 3 or v.ndim < 3:
        raise ValueError("enable_gqa needs a head axis (dim -3) on q, k and v")
    num_q_heads, num_kv_heads = q.shape[-3], k.shape[-3]
    if v.shape[-3] != num_kv_heads:
        raise ValueError("k and v must have the same number of heads")
    if num_q_heads % num_kv_heads != 0:
        raise ValueError(f"query heads ({num_q_heads}) not divisible by kv heads ({num_kv_heads})")
    group = num_q_heads // num_kv_heads
    kv_head = [h // group for h in range(num_q_heads)]
    return k[..., kv_head, :, :], v[..., kv_head, :, :]


def scaled_dot_product_attention(
    q, k, v, mask=None, bias=None, is_causal=False, scale=None, enable_gqa=False
):
    """Scaled dot-product attention, one query row at a time.

    For each query row ``i`` the allowed keys are those with ``mask`` True, ``j <= i``
    when ``is_causal`` and a bias other than ``-inf``. Over those keys
    ``w_j = softmax_j(scale * q_i . k_j + bias_ij)`` and ``out_i = sum_j w_j v_j``.
    A row with no allowed key gets zero output and zero weights.

    Parameters
    ----------
    q : array_like, shape (..., L, E)
        Queries.
    k : array_like, shape (..., S, E)
        Keys.
    v : array_like, shape (..., S, Ev)
        Values.
    mask : array_like of bool, optional
        True = attend; broadcastable to ``(..., L, S)``.
    bias : array_like, optional
        Additive logit bias; broadcastable to ``(..., L, S)``.
    is_causal : bool, default False
        Top-left causal masking: query ``i`` sees keys ``j <= i``.
    scale : float, optional
        Logit scale; defaults to ``1 / sqrt(E)``.
    enable_gqa : bool, default False
        Allow ``k``/``v`` to have fewer heads (dim -3) than ``q``; query head ``h``
        uses kv head ``h // (Hq // Hkv)``.

    Returns
    -------
    out : ndarray, float64, shape (..., L, Ev)
        Attention output; the leading dims are the broadcast of all inputs'.
    weights : ndarray, float64, shape (..., L, S)
        Attention probabilities.
    """
    q = np.asarray(q, dtype=np.float64)
    k = np.asarray(k, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    if enable_gqa:
        k, v = _expand_kv_heads(q, k, v)
    num_queries, head_dim = q.shape[-2:]
    num_keys, value_dim = v.shape[-2:]
    if scale is None:
        scale = 1.0 / math.sqrt(head_dim)

    weights_shape = np.broadcast_shapes(
        q.shape[:-2] + (num_queries, num_keys), k.shape[:-2] + (1, 1), v.shape[:-2] + (1, 1)
    )
    if mask is not None:
        weights_shape = np.broadcast_shapes(weights_shape, np.shape(mask))
    if bias is not None:
        weights_shape = np.broadcast_shapes(weights_shape, np.shape(bias))
    lead = weights_shape[:-2]

    q = np.broadcast_to(q, lead + (num_queries, head_dim))
    k = np.broadcast_to(k, lead + (num_keys, head_dim))
    v = np.broadcast_to(v, lead + (num_keys, value_dim))
    allowed = np.asarray(True if mask is None else mask, dtype=bool)
    allowed = np.broadcast_to(allowed, weights_shape)
    bias = np.asarray(0.0 if bias is None else bias, dtype=np.float64)
    bias = np.broadcast_to(bias, weights_shape)

    out = np.zeros(lead + (num_queries, value_dim))
    weights = np.zeros(weights_shape)
    for idx in np.ndindex(lead):
        for i in range(num_queries):
            keys = [
                j
                for j in range(num_keys)
                if allowed[idx + (i, j)] and not (is_causal and j > i) and bias[idx + (i, j)] != -np.inf
            ]
            if not keys:
                continue
            logits = np.array(
                [scale * math.fsum(q[idx + (i,)] * k[idx + (j,)]) + bias[idx + (i, j)] for j in keys]
            )
            e = np.exp(logits - np.max(logits))
            probs = e / math.fsum(e)
            for p, j in zip(probs, keys, strict=True):
                weights[idx + (i, j)] = p
                out[idx + (i,)] += p * v[idx + (j,)]
    return out, weights


def causal_mask(q_len, kv_len=None, align="top_left"):
    """Boolean causal mask, True = attend.

    Parameters
    ----------
    q_len : int
        Number of queries ``L``.
    kv_len : int, optional
        Number of keys ``S``; defaults to ``q_len``.
    align : {"top_left", "bottom_right"}, default "top_left"
        ``"top_left"``: query ``i`` sees keys ``j <= i``. ``"bottom_right"``: query
        ``i`` sits at position ``kv_len - q_len + i`` and sees keys up to it.

    Returns
    -------
    ndarray of bool, shape (q_len, kv_len)
    """
    if kv_len is None:
        kv_len = q_len
    if align == "top_left":
        offset = 0
    elif align == "bottom_right":
        offset = kv_len - q_len
    else:
        raise ValueError(f"align must be 'top_left' or 'bottom_right', got {align!r}")
    out = np.zeros((q_len, kv_len), dtype=bool)
    for i in range(q_len):
        for j in range(kv_len):
            out[i, j] = j <= offset + i
    return out


def padding_mask(lengths, max_len):
    """Boolean padding mask, True = real token.

    Parameters
    ----------
    lengths : array_like of int, shape (batch,)
        Number of real tokens per sequence.
    max_len : int
        Padded sequence length.

    Returns
    -------
    ndarray of bool, shape (batch, max_len)
        ``out[b, t] = t < lengths[b]``.
    """
    lengths = np.asarray(lengths)
    out = np.zeros((lengths.shape[0], max_len), dtype=bool)
    for b in range(lengths.shape[0]):
        for t in range(max_len):
            out[b, t] = t < lengths[b]
    return out


def sinusoidal_positional_encoding(
    num_positions, d_model, base=10000.0, layout="interleaved", positions=None
):
    """Sinusoidal positional encoding of "Attention Is All You Need".

    ``PE[p, 2i] = sin(p / base^(2i/d))`` and ``PE[p, 2i+1] = cos(p / base^(2i/d))``.

    Parameters
    ----------
    num_positions : int
        Number of rows.
    d_model : int
        Encoding width; must be even.
    base : float, default 10000.0
        Wavelength base.
    layout : {"interleaved", "halves"}, default "interleaved"
        ``"interleaved"`` alternates sin/cos columns as above; ``"halves"`` puts the
        ``d_model / 2`` sines first, then the cosines at the same frequencies.
    positions : array_like of int, shape (num_positions,), optional
        Positions to encode instead of ``arange(num_positions)``.

    Returns
    -------
    ndarray, float64, shape (num_positions, d_model)
    """
    if d_model % 2 != 0:
        raise ValueError(f"d_model must be even, got {d_model}")
    if layout not in ("interleaved", "halves"):
        raise ValueError(f"layout must be 'interleaved' or 'halves', got {layout!r}")
    if positions is None:
        positions = range(num_positions)
    elif np.shape(positions) != (num_positions,):
        raise ValueError(f"positions must have shape ({num_positions},)")
    half = d_model // 2
    out = np.empty((num_positions, d_model))
    for row, p in enumerate(positions):
        for i in range(half):
            angle = float(p) / base ** (2 * i / d_model)
            if layout == "interleaved":
                out[row, 2 * i] = math.sin(angle)
                out[row, 2 * i + 1] = math.cos(angle)
            else:
                out[row, i] = math.sin(angle)
                out[row, half + i] = math.cos(angle)
    return out


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


def _linear(x, w, b):
    """``x @ w + b`` in float64; ``b`` may be None."""
    y = x @ np.asarray(w, dtype=np.float64)
    if b is not None:
        y = y + np.asarray(b, dtype=np.float64)
    return y


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


def multi_head_attention(
    query, key, value, params, num_heads, mask=None, key_padding_mask=None, is_causal=False
):
    """Multi-head attention with contiguous head slices.

    Projects ``query``/``key``/``value`` with ``x @ w + b``, splits the projected width
    into ``num_heads`` contiguous slices (head ``h`` is columns ``h*dh:(h+1)*dh``), runs
    :func:`scaled_dot_product_attention` per head with scale ``1/sqrt(dh)``, concatenates
    the heads in order and applies ``@ w_o + b_o``. A query row with no allowed key
    contributes zeros before the output projection (so its output is ``b_o``).

    Parameters
    ----------
    query : array_like, shape (..., L, D)
    key : array_like, shape (..., S, D)
    value : array_like, shape (..., S, D)
    params : object
        Has attributes ``w_q``, ``w_k``, ``w_v``, ``w_o`` (each ``(D_in, D_out)``) and
        ``b_q``, ``b_k``, ``b_v``, ``b_o`` (each ``(D_out,)`` or None).
    num_heads : int
        Number of heads; must divide the projected widths.
    mask : array_like of bool, optional
        True = attend; broadcastable to ``(..., heads, L, S)`` (``(L, S)`` included).
    key_padding_mask : array_like of bool, shape (..., S), optional
        True = real token (attend), the opposite of torch's convention.
    is_causal : bool, default False
        Top-left causal masking.

    Returns
    -------
    out : ndarray, float64, shape (..., L, D_out)
    weights : ndarray, float64, shape (..., heads, L, S)
        Per-head attention probabilities.
    """
    q = _linear(np.asarray(query, dtype=np.float64), params.w_q, params.b_q)
    k = _linear(np.asarray(key, dtype=np.float64), params.w_k, params.b_k)
    v = _linear(np.asarray(value, dtype=np.float64), params.w_v, params.b_v)
    for name, width in (("query/key", q.shape[-1]), ("value", v.shape[-1])):
        if width % num_heads != 0:
            raise ValueError(f"{name} width {width} not divisible by num_heads={num_heads}")
    dh, dv = q.shape[-1] // num_heads, v.shape[-1] // num_heads

    def split(x, width):
        return np.stack([x[..., h * width : (h + 1) * width] for h in range(num_heads)], axis=-3)

    if key_padding_mask is not None:
        # (..., S) -> (..., 1, 1, S): the same keys are hidden for every head and query.
        kpm = np.asarray(key_padding_mask, dtype=bool)[..., None, None, :]
        mask = kpm if mask is None else np.logical_and(np.asarray(mask, dtype=bool), kpm)
    heads_out, weights = scaled_dot_product_attention(
        split(q, dh),
        split(k, dh),
        split(v, dv),
        mask=mask,
        is_causal=is_causal,
        scale=1.0 / math.sqrt(dh),
    )
    concat = np.concatenate([heads_out[..., h, :, :] for h in range(num_heads)], axis=-1)
    return _linear(concat, params.w_o, params.b_o), weights


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


# --------------------------------------------------------------------------------------
# Recurrent family: Elman RNN and LSTM, one explicit step at a time
# --------------------------------------------------------------------------------------


def _sigmoid(z):
    """Logistic function via the identity ``sigmoid(z) = (1 + tanh(z / 2)) / 2`` (no overflow)."""
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def rnn_cell(x, h, w_ih, w_hh, b=None, nonlinearity="tanh"):
    """One Elman RNN step, ``h' = act(x @ w_ih + h @ w_hh + b)``.

    Parameters
    ----------
    x : array_like, shape (..., I)
    h : array_like, shape (..., H)
    w_ih : array_like, shape (I, H)
    w_hh : array_like, shape (H, H)
    b : array_like, shape (H,), optional
    nonlinearity : {"tanh", "relu"}

    Returns
    -------
    ndarray, float64, shape (..., H)
    """
    x, h = np.asarray(x, dtype=np.float64), np.asarray(h, dtype=np.float64)
    w_ih, w_hh = np.asarray(w_ih, dtype=np.float64), np.asarray(w_hh, dtype=np.float64)
    out = np.empty(h.shape, dtype=np.float64)
    for idx in np.ndindex(h.shape[:-1]):
        for j in range(h.shape[-1]):
            pre = math.fsum(x[idx] * w_ih[:, j]) + math.fsum(h[idx] * w_hh[:, j])
            if b is not None:
                pre += float(b[j])
            out[idx + (j,)] = math.tanh(pre) if nonlinearity == "tanh" else max(pre, 0.0)
    return out


def rnn(xs, h0, w_ih, w_hh, b=None, nonlinearity="tanh"):
    """Elman RNN over a time-major sequence ``xs (T, ..., I)`` from ``h0 (..., H)``.

    Returns
    -------
    hs : ndarray, float64, shape (T, ..., H)
    h_T : ndarray, float64, shape (..., H)
    """
    xs, h = np.asarray(xs, dtype=np.float64), np.asarray(h0, dtype=np.float64)
    hs = []
    for t in range(xs.shape[0]):
        h = rnn_cell(xs[t], h, w_ih, w_hh, b, nonlinearity=nonlinearity)
        hs.append(h)
    return np.array(hs, dtype=np.float64).reshape((len(hs), *h.shape)), h


def lstm_cell(x, state, w_ih, w_hh, b=None):
    """One LSTM step; gates packed **i, f, o, g** along the last axis of the weights.

    With ``z = x @ w_ih + h @ w_hh + b`` and ``H`` the hidden size::

        i = sigmoid(z[0:H]);  f = sigmoid(z[H:2H]);  o = sigmoid(z[2H:3H]);  g = tanh(z[3H:4H])
        c' = f * c + i * g;   h' = o * tanh(c')

    Parameters
    ----------
    x : array_like, shape (..., I)
    state : pair (h, c) of array_like, each (..., H)
    w_ih : array_like, shape (I, 4H)
    w_hh : array_like, shape (H, 4H)
    b : array_like, shape (4H,), optional

    Returns
    -------
    (h_new, c_new) : ndarrays, float64, shape (..., H)
    """
    x = np.asarray(x, dtype=np.float64)
    h, c = (np.asarray(s, dtype=np.float64) for s in state)
    w_ih, w_hh = np.asarray(w_ih, dtype=np.float64), np.asarray(w_hh, dtype=np.float64)
    hidden = h.shape[-1]
    bias = np.zeros(4 * hidden) if b is None else np.asarray(b, dtype=np.float64)
    h_new, c_new = np.empty_like(h), np.empty_like(c)
    for idx in np.ndindex(h.shape[:-1]):
        z = x[idx] @ w_ih + h[idx] @ w_hh + bias  # (4H,)
        i = _sigmoid(z[0:hidden])
        f = _sigmoid(z[hidden : 2 * hidden])
        o = _sigmoid(z[2 * hidden : 3 * hidden])
        g = np.tanh(z[3 * hidden : 4 * hidden])
        c_new[idx] = f * c[idx] + i * g
        h_new[idx] = o * np.tanh(c_new[idx])
    return h_new, c_new


def lstm(xs, state, w_ih, w_hh, b=None):
    """LSTM over a time-major sequence ``xs (T, ..., I)`` from ``state = (h0, c0)``.

    Returns
    -------
    hs : ndarray, float64, shape (T, ..., H)
    (h_T, c_T) : ndarrays, float64, shape (..., H)
    """
    xs = np.asarray(xs, dtype=np.float64)
    h, c = (np.asarray(s, dtype=np.float64) for s in state)
    hs = []
    for t in range(xs.shape[0]):
        h, c = lstm_cell(xs[t], (h, c), w_ih, w_hh, b)
        hs.append(h)
    return np.array(hs, dtype=np.float64).reshape((len(hs), *h.shape)), (h, c)


# -- language modelling: losses, decoding filters, gradient clipping ------------------------


def _log_softmax_row(row):
    """Log-probabilities of one 1-D row of logits, float64, with ``math.fsum``."""
    row = np.asarray(row, dtype=np.float64)
    top = np.max(row)
    return row - top - math.log(math.fsum(np.exp(row - top)))


def cross_entropy(
    logits, targets, axis=-1, weight=None, ignore_index=None, label_smoothing=0.0, reduction="mean"
):
    """torch's cross-entropy with class targets, one target at a time.

    ``loss = (1-ε)·w[t]·(-log p_t) + ε/C·Σ_c w[c]·(-log p_c)``, 0 for ``t == ignore_index``;
    ``"mean"`` divides the sum by ``Σ w[t]`` over the targets that are not ignored.

    Parameters
    ----------
    logits : array_like, shape ``(..., C, ...)`` with the classes on ``axis``
    targets : array_like of int, ``logits.shape`` without ``axis``
    weight : array_like, shape ``(C,)``, optional

    Returns
    -------
    float (``"mean"``, ``"sum"``) or ndarray of ``targets.shape`` (``"none"``)
    """
    logits = np.moveaxis(np.asarray(logits, dtype=np.float64), axis, -1)
    targets = np.asarray(targets)
    num_classes = logits.shape[-1]
    w = np.ones(num_classes) if weight is None else np.asarray(weight, dtype=np.float64)
    if targets.shape != logits.shape[:-1]:
        raise ValueError("targets must have the shape of logits without the class axis")
    losses = np.zeros(targets.shape)
    weights = []
    for idx in np.ndindex(targets.shape):
        t = int(targets[idx])
        if ignore_index is not None and t == ignore_index:
            continue
        if not 0 <= t < num_classes:
            raise ValueError(f"target {t} out of range [0, {num_classes})")
        logp = _log_softmax_row(logits[idx])
        smooth = math.fsum(-w[c] * logp[c] for c in range(num_classes))
        losses[idx] = (1.0 - label_smoothing) * w[t] * -logp[t] + label_smoothing / num_classes * smooth
        weights.append(w[t])
    if reduction == "none":
        return losses
    total = math.fsum(losses.ravel())
    if reduction == "sum":
        return total
    denominator = math.fsum(weights)
    return total / denominator if denominator else math.nan


def autoregressive_log_likelihood(logits, targets, axis=-1):
    """``Σ_t log softmax(logits[..., t, :])[targets[..., t]]``: ``(..., T, V)`` → ``(...)``.

    ``logits[..., t, :]`` predicts ``targets[..., t]`` (targets already shifted).
    """
    logits = np.moveaxis(np.asarray(logits, dtype=np.float64), axis, -1)
    targets = np.asarray(targets)
    out = np.zeros(targets.shape[:-1])
    for idx in np.ndindex(out.shape):
        terms = []
        for t in range(targets.shape[-1]):
            token = int(targets[idx + (t,)])
            if not 0 <= token < logits.shape[-1]:
                raise ValueError(f"target {token} out of range [0, {logits.shape[-1]})")
            terms.append(_log_softmax_row(logits[idx + (t,)])[token])
        out[idx] = math.fsum(terms)
    return out


def greedy(logits):
    """Index of the first maximum of each row of ``logits (..., V)``."""
    logits = np.asarray(logits, dtype=np.float64)
    out = np.zeros(logits.shape[:-1], dtype=np.int64)
    for idx in np.ndindex(out.shape):
        row = logits[idx]
        best = 0
        for v in range(1, row.shape[0]):
            if row[v] > row[best]:
                best = v
        out[idx] = best
    return out


def sampling_support(logits, temperature=1.0, top_k=None, top_p=None, min_tokens_to_keep=1):
    """Which tokens ``sample_logits`` may draw: bool ``(..., V)``, straight from the definitions.

    After ``logits / temperature``: top-k keeps token ``i`` iff fewer than
    ``max(top_k, min_tokens_to_keep)`` tokens have a strictly larger logit (ties with the
    k-th value kept); top-p then keeps ``i`` iff the probability mass (renormalised over
    what top-k kept) of the tokens with a strictly larger logit is ``< top_p``, or fewer
    than ``min_tokens_to_keep`` tokens have a strictly larger logit. Exact-boundary cases
    depend on rounding; this reference sums with ``math.fsum``.
    """
    logits = np.asarray(logits, dtype=np.float64) / temperature
    keep = np.ones(logits.shape, dtype=bool)
    for idx in np.ndindex(logits.shape[:-1]):
        row = logits[idx]
        vocab = row.shape[0]
        alive = [True] * vocab
        if top_k is not None:
            k = max(top_k, min_tokens_to_keep)
            for i in range(vocab):
                alive[i] = sum(1 for j in range(vocab) if row[j] > row[i]) < k
        if top_p is not None and top_p < 1.0:
            top = max(row[j] for j in range(vocab) if alive[j])
            e = [math.exp(row[j] - top) if alive[j] else 0.0 for j in range(vocab)]
            norm = math.fsum(e)
            p = [x / norm for x in e]
            survivors = list(alive)
            for i in range(vocab):
                if not alive[i]:
                    continue
                above = [j for j in range(vocab) if alive[j] and row[j] > row[i]]
                mass = math.fsum(p[j] for j in above)
                survivors[i] = mass < top_p or len(above) < min_tokens_to_keep
            alive = survivors
        keep[idx] = alive
    return keep


def _vector_norm(values, norm_type):
    a = np.abs(np.asarray(values, dtype=np.float64).ravel())
    if a.size == 0:
        return 0.0
    if norm_type == math.inf:
        return float(max(a))
    return math.fsum(a**norm_type) ** (1.0 / norm_type)


def clip_grad_norm(grads, max_norm, norm_type=2.0, eps=1e-6):
    """torch's ``clip_grad_norm_`` on a list of arrays (``None`` kept), without mutation.

    ``total = norm([norm(g) for g in grads])``; each ``g`` times
    ``min(max_norm / (total + eps), 1)``.

    Returns
    -------
    (list of ndarray or None, float)
    """
    present = [np.asarray(g, dtype=np.float64) for g in grads if g is not None]
    total = _vector_norm([_vector_norm(g, norm_type) for g in present], norm_type)
    coef = min(max_norm / (total + eps), 1.0)
    clipped = [None if g is None else np.asarray(g, dtype=np.float64) * coef for g in grads]
    return clipped, total


def clip_grad_value(grads, clip_value):
    """Each entry of each array clamped to ``[-clip_value, clip_value]`` (``None`` kept)."""
    out = []
    for g in grads:
        if g is None:
            out.append(None)
            continue
        g = np.asarray(g, dtype=np.float64)
        out.append(np.array([min(max(v, -clip_value), clip_value) for v in g.ravel()]).reshape(g.shape))
    return out


# -- vision: ViT patches, Swin windows and window attention ------------------------------


def patchify(images, patch_size, channels_last=False):
    """ViT patches, one element at a time: ``(B, C, H, W)`` → ``(B, N, C·p·p)``.

    ``out[b, r·(W/p) + c, ch·p² + i·p + j] = images[b, ch, r·p + i, c·p + j]``: patches in
    raster order, each flattened (C, ph, pw). ``channels_last=True`` reads ``(B, H, W, C)``
    and keeps the same (C, ph, pw) order.
    """
    x = np.asarray(images, dtype=np.float64)
    if channels_last:
        x = np.moveaxis(x, -1, 1)
    batch, channels, height, width = x.shape
    p = patch_size
    if height % p or width % p:
        raise ValueError(f"image size ({height}, {width}) not divisible by patch_size {p}")
    cols = width // p
    out = np.zeros((batch, (height // p) * cols, channels * p * p))
    for b, r, c, ch, i, j in np.ndindex(batch, height // p, cols, channels, p, p):
        out[b, r * cols + c, ch * p * p + i * p + j] = x[b, ch, r * p + i, c * p + j]
    return out


def window_partition(x, window_size):
    """Swin windows, one element at a time: ``(B, H, W, C)`` → ``(B·nW, ws, ws, C)``.

    ``out[b·nW + r·(W/ws) + c, i, j] = x[b, r·ws + i, c·ws + j]``.
    """
    x = np.asarray(x, dtype=np.float64)
    batch, height, width, channels = x.shape
    ws = window_size
    rows, cols = height // ws, width // ws
    out = np.zeros((batch * rows * cols, ws, ws, channels))
    for b, r, c, i, j in np.ndindex(batch, rows, cols, ws, ws):
        out[(b * rows + r) * cols + c, i, j] = x[b, r * ws + i, c * ws + j]
    return out


def _swin_region(position, size, window_size, shift_size):
    """Swin's slice label of a row (column) of the shifted map: ``[0,-ws)``, ``[-ws,-s)``, ``[-s,size)``."""
    if shift_size == 0 or position < size - window_size:
        return 0
    return 1 if position < size - shift_size else 2


def shifted_window_mask(height, width, window_size, shift_size, as_bias=False):
    """Swin's shifted-window mask, one pair of tokens at a time.

    Token ``t`` of window ``(r, c)`` is the shifted-map pixel ``(r·ws + t // ws, c·ws + t % ws)``;
    two tokens may attend each other iff their (row, column) region labels agree.

    Returns
    -------
    ndarray of bool, shape ``(nW, ws², ws²)`` (True = attend), or float64 0 / -100.0
    with ``as_bias=True``.
    """
    ws = window_size
    rows, cols = height // ws, width // ws
    n = ws * ws
    mask = np.zeros((rows * cols, n, n), dtype=bool)
    for r, c, s, t in np.ndindex(rows, cols, n, n):
        label = []
        for token in (s, t):
            y, x = r * ws + token // ws, c * ws + token % ws
            label.append((_swin_region(y, height, ws, shift_size), _swin_region(x, width, ws, shift_size)))
        mask[r * cols + c, s, t] = label[0] == label[1]
    return np.where(mask, 0.0, -100.0) if as_bias else mask


def relative_position_index(window_size):
    """Swin's relative position index: ``(Δh + ws - 1)·(2ws - 1) + (Δw + ws - 1)``, int ``(ws², ws²)``."""
    ws = window_size
    n = ws * ws
    out = np.zeros((n, n), dtype=np.int64)
    for s, t in np.ndindex(n, n):
        dh, dw = s // ws - t // ws, s % ws - t % ws
        out[s, t] = (dh + ws - 1) * (2 * ws - 1) + (dw + ws - 1)
    return out


def window_attention(x, params, num_heads, window_size, shift_size=0, relative_bias_table=None):
    """Swin (shifted) window self-attention, one window and one head at a time.

    Window ``(r, c)`` of image ``b`` holds the pixels ``((r·ws + i + shift) % H,
    (c·ws + j + shift) % W)`` (the cyclic shift); each head attends within the window
    (:func:`scaled_dot_product_attention`, scale ``1/sqrt(head_dim)``) with the
    :func:`shifted_window_mask` when ``shift_size > 0`` and the bias
    ``table[relative_position_index[s, t], head]``; the output goes back to the same pixels.

    Returns
    -------
    ndarray, float64, shape ``(B, H, W, D_out)``
    """
    x = np.asarray(x, dtype=np.float64)
    batch, height, width, _ = x.shape
    ws = window_size
    n = ws * ws
    allowed = shifted_window_mask(height, width, ws, shift_size) if shift_size else None
    index = relative_position_index(ws)
    table = None if relative_bias_table is None else np.asarray(relative_bias_table, dtype=np.float64)
    out = None
    for b, r, c in np.ndindex(batch, height // ws, width // ws):
        pixels = [
            ((r * ws + t // ws + shift_size) % height, (c * ws + t % ws + shift_size) % width)
            for t in range(n)
        ]
        tokens = np.array([x[b, y, z] for y, z in pixels])  # (N, C)
        q = _linear(tokens, params.w_q, params.b_q)
        k = _linear(tokens, params.w_k, params.b_k)
        v = _linear(tokens, params.w_v, params.b_v)
        dh, dv = q.shape[-1] // num_heads, v.shape[-1] // num_heads
        heads = []
        for h in range(num_heads):
            bias = None
            if table is not None:
                bias = np.array([[table[index[s, t], h] for t in range(n)] for s in range(n)])
            mask = None if allowed is None else allowed[r * (width // ws) + c]
            o, _ = scaled_dot_product_attention(
                q[:, h * dh : (h + 1) * dh],
                k[:, h * dh : (h + 1) * dh],
                v[:, h * dv : (h + 1) * dv],
                mask=mask,
                bias=bias,
                scale=1.0 / math.sqrt(dh),
            )
            heads.append(o)
        projected = _linear(np.concatenate(heads, axis=-1), params.w_o, params.b_o)
        if out is None:
            out = np.zeros((batch, height, width, projected.shape[-1]))
        for t, (y, z) in enumerate(pixels):
            out[b, y, z] = projected[t]
    return out


# -- generative family: PixelCNN masks and convolution, VAE divergences and likelihoods -----


def pixelcnn_mask(kernel_size, in_channels, out_channels, mask_type="A", color_groups=1):
    """The PixelCNN mask ``(out, in, kh, kw)`` of 0.0/1.0, one entry at a time.

    A tap is kept iff it lies in a row above the centre, or in the centre row left of the
    centre; at the centre itself, output group ``j`` sees input group ``i`` iff ``i < j``
    (type A) or ``i <= j`` (type B), with contiguous groups of ``channels / color_groups``.
    """
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    ch, cw = kh // 2, kw // 2
    out = np.zeros((out_channels, in_channels, kh, kw))
    for o in range(out_channels):
        for i in range(in_channels):
            go = o // (out_channels // color_groups)
            gi = i // (in_channels // color_groups)
            for r in range(kh):
                for c in range(kw):
                    if r < ch or (r == ch and c < cw):
                        out[o, i, r, c] = 1.0
                    elif r == ch and c == cw:
                        out[o, i, r, c] = float(gi < go if mask_type == "A" else gi <= go)
    return out


def masked_conv2d(x, weight, bias=None, mask_type="A", color_groups=1):
    """Stride-1 zero-"same"-padded cross-correlation with ``weight * pixelcnn_mask``.

    ``out[b, o, h, w] = bias[o] + Σ_{i, r, c} (W·M)[o, i, r, c] · x[b, i, h + r - kh//2, w + c - kw//2]``
    (out-of-range pixels are 0); ``x (B, C, H, W)``, ``weight (O, C, kh, kw)`` → ``(B, O, H, W)``.
    """
    x = np.asarray(x, dtype=np.float64)
    weight = np.asarray(weight, dtype=np.float64)
    n_out, n_in, kh, kw = weight.shape
    w = weight * pixelcnn_mask((kh, kw), n_in, n_out, mask_type, color_groups)
    batch, _, height, width = x.shape
    out = np.zeros((batch, n_out, height, width))
    for b in range(batch):
        for o in range(n_out):
            for h in range(height):
                for v in range(width):
                    terms = [0.0 if bias is None else float(bias[o])]
                    for i in range(n_in):
                        for r in range(kh):
                            for c in range(kw):
                                y, z = h + r - kh // 2, v + c - kw // 2
                                if 0 <= y < height and 0 <= z < width:
                                    terms.append(w[o, i, r, c] * x[b, i, y, z])
                    out[b, o, h, v] = math.fsum(terms)
    return out


def reparameterize(mu, log_var, eps):
    """``mu + exp(log_var / 2) * eps``, element by element (broadcasting)."""
    mu, log_var, eps = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (mu, log_var, eps)))
    out = np.zeros(mu.shape)
    for idx in np.ndindex(mu.shape):
        out[idx] = mu[idx] + math.exp(log_var[idx] / 2.0) * eps[idx]
    return out


def _sum_over(values, axis):
    """``Σ`` of float64 ``values`` over ``axis`` (int or tuple), with ``math.fsum``."""
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    axes = tuple(a % values.ndim for a in axes)
    moved = np.moveaxis(values, axes, tuple(range(values.ndim - len(axes), values.ndim)))
    rest = moved.shape[: values.ndim - len(axes)]
    out = np.zeros(rest)
    for idx in np.ndindex(rest):
        out[idx] = math.fsum(moved[idx].ravel())
    return out


def _elementwise(fn, *arrays):
    arrays = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in arrays))
    out = np.zeros(arrays[0].shape)
    for idx in np.ndindex(out.shape):
        out[idx] = fn(*(float(a[idx]) for a in arrays))
    return out


def kl_normal_standard(mu, log_var, axis=-1):
    """``½ Σ (exp(lv) + mu² − 1 − lv)`` over ``axis``: KL(N(mu, e^lv) || N(0, 1))."""
    terms = _elementwise(lambda m, lv: 0.5 * (math.exp(lv) + m * m - 1.0 - lv), mu, log_var)
    return _sum_over(terms, axis)


def kl_normal_normal(mu_q, log_var_q, mu_p, log_var_p, axis=-1):
    """``½ Σ (lv_p − lv_q + (e^lv_q + (μq − μp)²) / e^lv_p − 1)`` over ``axis``."""

    def term(mq, lq, mp, lp):
        return 0.5 * (lp - lq + (math.exp(lq) + (mq - mp) ** 2) / math.exp(lp) - 1.0)

    return _sum_over(_elementwise(term, mu_q, log_var_q, mu_p, log_var_p), axis)


def kl_mvn(mu_q, cov_q, mu_p, cov_p):
    """``½(tr(Σp⁻¹Σq) + (μp−μq)ᵀΣp⁻¹(μp−μq) − k + ln|Σp|/|Σq|)`` per batch entry.

    Written with an explicit inverse and ``slogdet`` (no Cholesky, unlike seqops); a
    covariance that is not positive definite raises ``ValueError``.
    """
    mu_q, mu_p = (np.asarray(a, dtype=np.float64) for a in (mu_q, mu_p))
    cov_q, cov_p = (np.asarray(a, dtype=np.float64) for a in (cov_q, cov_p))
    k = mu_q.shape[-1]
    lead = np.broadcast_shapes(mu_q.shape[:-1], cov_q.shape[:-2], mu_p.shape[:-1], cov_p.shape[:-2])
    mu_q, mu_p = (np.broadcast_to(a, (*lead, k)) for a in (mu_q, mu_p))
    cov_q, cov_p = (np.broadcast_to(a, (*lead, k, k)) for a in (cov_q, cov_p))
    out = np.zeros(lead)
    for idx in np.ndindex(lead):
        sq, sp = cov_q[idx], cov_p[idx]
        for cov in (sq, sp):
            if np.any(np.linalg.eigvalsh(cov) <= 0.0):
                raise ValueError("covariance is not positive definite")
        inv_p = np.linalg.inv(sp)
        d = mu_p[idx] - mu_q[idx]
        trace = math.fsum((inv_p @ sq)[j, j] for j in range(k))
        maha = math.fsum(d[a] * inv_p[a, c] * d[c] for a in range(k) for c in range(k))
        log_ratio = np.linalg.slogdet(sp)[1] - np.linalg.slogdet(sq)[1]
        out[idx] = 0.5 * (trace + maha - k + log_ratio)
    return out


def gaussian_log_likelihood(x, mean, log_var, axis=-1):
    """``Σ −½(log 2π + lv + (x − mean)² / e^lv)`` over ``axis``."""

    def term(v, m, lv):
        return -0.5 * (math.log(2.0 * math.pi) + lv + (v - m) ** 2 / math.exp(lv))

    return _sum_over(_elementwise(term, x, mean, log_var), axis)


def bernoulli_log_likelihood(x, logits, axis=-1):
    """``Σ x·log σ(l) + (1 − x)·log(1 − σ(l))`` over ``axis``, with
    ``log σ(l) = −log1p(e^−l)`` for ``l ≥ 0`` and ``l − log1p(e^l)`` otherwise (no overflow)."""

    def log_sigmoid(v):
        return -math.log1p(math.exp(-v)) if v >= 0 else v - math.log1p(math.exp(v))

    def term(v, lg):
        return v * log_sigmoid(lg) + (1.0 - v) * log_sigmoid(-lg)

    return _sum_over(_elementwise(term, x, logits), axis)


def elbo(x, recon, mu, log_var, likelihood="bernoulli", axis=-1, reduction="none"):
    """``log p(x | z) − KL(N(mu, e^lv) || N(0, I))`` per example; the KL sums ``mu``'s last axis.

    ``recon``: the logits (``"bernoulli"``) or a pair ``(mean, log_var)`` (``"gaussian"``).
    """
    if likelihood == "gaussian":
        ll = gaussian_log_likelihood(x, recon[0], recon[1], axis=axis)
    else:
        ll = bernoulli_log_likelihood(x, recon, axis=axis)
    per_example = ll - kl_normal_standard(mu, log_var, axis=-1)
    if reduction == "sum":
        return math.fsum(per_example.ravel())
    if reduction == "mean":
        return math.fsum(per_example.ravel()) / per_example.size
    return per_example


# -- vision: the inverses, the cyclic shift and the ViT embedding ---------------------------


def unpatchify(patches, patch_size, image_size, channels=None, channels_last=False):
    """Images from ViT patches, one element at a time: ``(B, N, C·p·p)`` → ``(B, C, H, W)``.

    ``out[b, ch, r·p + i, c·p + j] = patches[b, r·(W/p) + c, ch·p² + i·p + j]``;
    ``channels_last=True`` returns ``(B, H, W, C)``.
    """
    patches = np.asarray(patches, dtype=np.float64)
    p = patch_size
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    channels = patches.shape[-1] // (p * p) if channels is None else channels
    batch, cols = patches.shape[0], width // p
    out = np.zeros((batch, channels, height, width))
    for b, r, c, ch, i, j in np.ndindex(batch, height // p, cols, channels, p, p):
        out[b, ch, r * p + i, c * p + j] = patches[b, r * cols + c, ch * p * p + i * p + j]
    return np.moveaxis(out, 1, -1) if channels_last else out


def window_reverse(windows, window_size, height, width):
    """Swin's window merge, one element at a time: ``(B·nW, ws, ws, C)`` → ``(B, H, W, C)``.

    ``out[b, r·ws + i, c·ws + j] = windows[b·nW + r·(W/ws) + c, i, j]``.
    """
    windows = np.asarray(windows, dtype=np.float64)
    ws = window_size
    rows, cols = height // ws, width // ws
    batch = windows.shape[0] // (rows * cols)
    out = np.zeros((batch, height, width, windows.shape[-1]))
    for b, r, c, i, j in np.ndindex(batch, rows, cols, ws, ws):
        out[b, r * ws + i, c * ws + j] = windows[(b * rows + r) * cols + c, i, j]
    return out


def cyclic_shift(x, shift):
    """``out[b, y, z] = x[b, (y + shift) % H, (z + shift) % W]``: content moves up and left."""
    x = np.asarray(x, dtype=np.float64)
    batch, height, width, _ = x.shape
    out = np.zeros(x.shape)
    for b, y, z in np.ndindex(batch, height, width):
        out[b, y, z] = x[b, (y + shift) % height, (z + shift) % width]
    return out


def vit_embed(images, w_patch, b_patch, cls_token, pos_embed, patch_size):
    """ViT embedding, one token and feature at a time (``math.fsum``).

    ``out[b, 0] = cls_token + pos_embed[0]``; ``out[b, 1 + n, d] = Σ_f patches[b, n, f]
    · w_patch[f, d] + b_patch[d] + pos_embed[1 + n, d]`` with :func:`patchify`'s patches.
    """
    patches = patchify(images, patch_size)
    w = np.asarray(w_patch, dtype=np.float64)
    cls, pos = (np.asarray(a, dtype=np.float64) for a in (cls_token, pos_embed))
    batch, n_patches, features = patches.shape
    dim = w.shape[1]
    out = np.zeros((batch, 1 + n_patches, dim))
    for b, d in np.ndindex(batch, dim):
        out[b, 0, d] = cls[d] + pos[0, d]
        for n in range(n_patches):
            terms = [patches[b, n, f] * w[f, d] for f in range(features)]
            if b_patch is not None:
                terms.append(float(b_patch[d]))
            out[b, 1 + n, d] = math.fsum(terms) + pos[1 + n, d]
    return out


__all__ = [
    "autoregressive_log_likelihood",
    "bernoulli_log_likelihood",
    "causal_mask",
    "clip_grad_norm",
    "clip_grad_value",
    "cross_entropy",
    "cyclic_shift",
    "elbo",
    "feed_forward",
    "gaussian_log_likelihood",
    "greedy",
    "kl_mvn",
    "kl_normal_normal",
    "kl_normal_standard",
    "layer_norm",
    "log_softmax",
    "lstm",
    "lstm_cell",
    "masked_conv2d",
    "multi_head_attention",
    "padding_mask",
    "patchify",
    "pixelcnn_mask",
    "relative_position_index",
    "reparameterize",
    "rnn",
    "rnn_cell",
    "sampling_support",
    "scaled_dot_product_attention",
    "shifted_window_mask",
    "sinusoidal_positional_encoding",
    "softmax",
    "transformer_encoder_layer",
    "unpatchify",
    "vit_embed",
    "window_attention",
    "window_partition",
    "window_reverse",
]
