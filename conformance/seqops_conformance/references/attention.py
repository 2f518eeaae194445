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
        Logit scale; defaults to ``1 / sqrt(E)`` (1.0 for ``E = 0``, where every logit is 0).
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
        scale = 1.0 / math.sqrt(head_dim) if head_dim else 1.0

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


def apply_rotary(x, positions, base=10000.0, layout="halves", rotary_dim=None):
    """Rotary embeddings as complex multiplication: feature pair ``p`` (``(p, p + d/2)`` for
    ``"halves"``, ``(2p, 2p + 1)`` for ``"interleaved"``) is the complex number ``a + ib``,
    multiplied by ``exp(i · position · base^(-2p/d))``; features past ``d`` unchanged.

    Returns float64 of the broadcast shape of ``x`` and ``positions[..., None]``.
    """
    x = np.asarray(x, dtype=np.float64)
    d = x.shape[-1] if rotary_dim is None else rotary_dim
    pos = np.asarray(positions, dtype=np.float64)
    out = np.array(np.broadcast_to(x, np.broadcast_shapes(x.shape, (*pos.shape, 1))))
    for p in range(d // 2):
        a, b = (p, p + d // 2) if layout == "halves" else (2 * p, 2 * p + 1)
        z = (out[..., a] + 1j * out[..., b]) * np.exp(1j * pos * base ** (-2.0 * p / d))
        out[..., a], out[..., b] = z.real, z.imag
    return out


def multi_head_attention(
    query, key, value, params, num_heads, mask=None, key_padding_mask=None, is_causal=False,
    scale=None, bias=None, num_kv_heads=None, rotary=None, positions=None, kv_cache=None,
):  # fmt: skip
    """Multi-head attention with contiguous head slices.

    Projects ``query``/``key``/``value`` with ``x @ w + b``, splits the projected widths
    into heads (head ``h`` is columns ``h*dh:(h+1)*dh``; ``num_kv_heads`` key/value heads,
    query head ``h`` reading key/value head ``h // (num_heads // num_kv_heads)``), rotates
    queries and keys by :func:`apply_rotary` (``rotary = (base, layout, rotary_dim)``) at
    ``positions`` (default ``arange(L)`` after the cache), runs
    :func:`scaled_dot_product_attention` per head with ``scale`` (default ``1/sqrt(dh)``) and
    ``bias``, concatenates the heads in order and applies ``@ w_o + b_o``. A query row with no
    allowed key contributes zeros before the output projection (so its output is ``b_o``).

    With ``kv_cache = (keys, values, length)`` (``(..., Hkv, M, d)`` buffers), the keys the
    queries see are the cached rows ``[0, length)`` followed by the new ones, queries sitting
    at positions ``length + i`` (causal: key ``j <= length + i``); masks and ``bias`` cover
    the ``M`` buffer rows and are cut to the ``length + S`` seen. The new cache is the buffers
    with rows ``[length, length + S)`` replaced by the new keys/values.

    Returns
    -------
    out : ndarray, float64, shape (..., L, D_out)
    weights : ndarray, float64, shape (..., heads, L, S)
        Per-head attention probabilities (``S`` the keys seen).
    new_cache : tuple, only with ``kv_cache``
        ``(keys, values, length + S)``.
    """
    kv_heads = num_heads if num_kv_heads is None else num_kv_heads
    q = _linear(np.asarray(query, dtype=np.float64), params.w_q, params.b_q)
    k = _linear(np.asarray(key, dtype=np.float64), params.w_k, params.b_k)
    v = _linear(np.asarray(value, dtype=np.float64), params.w_v, params.b_v)
    if q.shape[-1] % num_heads or k.shape[-1] % kv_heads or v.shape[-1] % kv_heads:
        raise ValueError("the projected widths are not divisible by the heads")
    dh, dv = q.shape[-1] // num_heads, v.shape[-1] // kv_heads

    def split(x, heads, width):
        return np.stack([x[..., h * width : (h + 1) * width] for h in range(heads)], axis=-3)

    q, k, v = split(q, num_heads, dh), split(k, kv_heads, dh), split(v, kv_heads, dv)
    filled = 0 if kv_cache is None else int(np.asarray(kv_cache[2]))
    if rotary is not None:
        base, layout, rotary_dim = rotary
        at = np.arange(q.shape[-2]) + filled if positions is None else np.asarray(positions)
        at = at[..., None, :]  # the same positions for every head
        q = apply_rotary(q, at, base, layout, rotary_dim)
        k = apply_rotary(k, at, base, layout, rotary_dim)
    new_cache = None
    offset = 0
    if kv_cache is not None:
        keys, values = (np.array(np.asarray(a, dtype=np.float64)) for a in kv_cache[:2])
        new = k.shape[-2]
        keys[..., filled : filled + new, :] = k
        values[..., filled : filled + new, :] = v
        new_cache = (keys, values, np.asarray(filled + new))
        seen = filled + new
        k, v, offset = keys[..., :seen, :], values[..., :seen, :], filled

        def cut(a):
            return None if a is None else np.asarray(a)[..., :seen]

        mask, bias, key_padding_mask = cut(mask), cut(bias), cut(key_padding_mask)
    if kv_heads != num_heads:  # each query head reads its group's key/value head
        group = num_heads // kv_heads
        k, v = np.repeat(k, group, axis=-3), np.repeat(v, group, axis=-3)
    if key_padding_mask is not None:
        # (..., S) -> (..., 1, 1, S): the same keys are hidden for every head and query.
        kpm = np.asarray(key_padding_mask, dtype=bool)
        kpm = np.broadcast_to(kpm, kpm.shape[:-1] + k.shape[-2:-1])[..., None, None, :]  # 0-d: (S,)
        mask = kpm if mask is None else np.logical_and(np.asarray(mask, dtype=bool), kpm)
    if is_causal and offset:
        causal = np.arange(k.shape[-2])[None, :] <= offset + np.arange(q.shape[-2])[:, None]
        mask = causal if mask is None else np.logical_and(np.asarray(mask, dtype=bool), causal)
        is_causal = False
    heads_out, weights = scaled_dot_product_attention(
        q,
        k,
        v,
        mask=mask,
        bias=bias,
        is_causal=is_causal,
        scale=(1.0 / math.sqrt(dh) if dh else 1.0) if scale is None else scale,
    )
    concat = np.concatenate([heads_out[..., h, :, :] for h in range(num_heads)], axis=-1)
    out = _linear(concat, params.w_o, params.b_o)
    return (out, weights) if new_cache is None else (out, weights, new_cache)
