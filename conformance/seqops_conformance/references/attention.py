"""Float64 references of the attention family: dot-product and multi-head attention, masks, encodings."""

import math

import numpy as np


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


def _linear(x, w, b):
    """``x @ w + b`` in float64; ``b`` may be None."""
    y = x @ np.asarray(w, dtype=np.float64)
    if b is not None:
        y = y + np.asarray(b, dtype=np.float64)
    return y


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
