"""Vision family: ViT patches and embedding, Swin windows, shifted-window masks, window attention
and patch merging.

ViT functions take images ``(B, C, H, W)`` as timm and Hugging Face do; Swin functions take
feature maps ``(B, H, W, C)`` and follow the official microsoft/Swin-Transformer code
(``window_partition``, ``window_reverse``, ``torch.roll`` shifts, the ``-100.0`` mask,
``relative_position_index``).
"""

from __future__ import annotations

from typing import Any

from seqops import ops
from seqops._dispatch import creation_backend, creation_device, creation_float_dtype, public, resolve
from seqops._lib import validate as check
from seqops._lib.typing import Array, ArrayT, Device
from seqops.attention import MHAParams, _check_mha
from seqops.contract import Backend


@public(ops.patchify)
def patchify(images: ArrayT, /, patch_size: int, *, channels_last: bool = False) -> ArrayT:
    """Cut images into non-overlapping square patches, in raster order, each flattened.

    Parameters
    ----------
    images : array, shape ``(B, C, H, W)`` (``(B, H, W, C)`` with ``channels_last=True``)
        Any dtype; ``H`` and ``W`` divisible by ``patch_size``.
    patch_size : int
        Side ``p`` of a patch.
    channels_last : bool
        Input layout. The flattened patch keeps the order **(C, ph, pw)** either way, so
        the projection weights of :func:`vit_embed` serve both layouts.

    Returns
    -------
    patches : array, shape ``(B, N, C·p·p)``
        ``N = (H/p)·(W/p)``; patch ``n`` covers rows ``(n // (W/p))·p`` on and columns
        ``(n % (W/p))·p`` on. ``patches @ w`` with ``w (C·p·p, D)`` equals the convolution
        with kernel = stride = ``p`` and weight ``w.T.reshape(D, C, p, p)`` (timm's
        ``PatchEmbed``).

    Examples
    --------
    >>> import numpy as np, seqops
    >>> images = np.arange(2 * 3 * 4 * 6).reshape(2, 3, 4, 6)
    >>> seqops.patchify(images, 2).shape
    (2, 6, 12)
    >>> seqops.patchify(images, 2)[0, 1, :4].tolist()  # patch 1, channel 0: rows 0-1, cols 2-3
    [2, 3, 8, 9]
    """
    backend = resolve(images, names=("images",))
    p = _positive("patch_size", patch_size)
    check.flag("channels_last", channels_last)
    _check_images("images", images, p, "patch_size", channels_last)
    return ops.patchify.dispatch(backend, images, p, channels_last=channels_last)


@public(ops.unpatchify)
def unpatchify(
    patches: ArrayT,
    /,
    patch_size: int,
    image_size: int | tuple[int, int],
    *,
    channels: int | None = None,
    channels_last: bool = False,
) -> ArrayT:
    """Reassemble images from :func:`patchify`'s patches (its exact inverse).

    Parameters
    ----------
    patches : array, shape ``(B, N, C·p·p)``
        Each patch flattened (C, ph, pw), patches in raster order.
    patch_size : int
        Side ``p`` of a patch.
    image_size : int or (int, int)
        ``(H, W)``, or ``H = W``; both divisible by ``patch_size``.
    channels : int, optional
        ``C``; default ``patches.shape[-1] // p²``.
    channels_last : bool
        Return ``(B, H, W, C)`` instead of ``(B, C, H, W)``.

    Returns
    -------
    images : array, shape ``(B, C, H, W)`` (or ``(B, H, W, C)``)

    Examples
    --------
    >>> import numpy as np, seqops
    >>> images = np.random.default_rng(0).random((2, 3, 4, 6))
    >>> bool((seqops.unpatchify(seqops.patchify(images, 2), 2, (4, 6)) == images).all())
    True
    """
    backend = resolve(patches, names=("patches",))
    p = _positive("patch_size", patch_size)
    check.flag("channels_last", channels_last)
    if isinstance(image_size, (tuple, list)):
        if len(image_size) != 2:
            msg = f"image_size must be an int or a pair (H, W); got {image_size!r}"
            raise ValueError(msg)
        h, w = (_positive("image_size", s) for s in image_size)
    else:
        h = w = _positive("image_size", image_size)
    _require_ndim("patches", patches, 3, "(B, N, C·p·p)")
    for what, size in (("height", h), ("width", w)):
        _require_divisible(what, size, "patch_size", p)
    features = patches.shape[-1]
    c = features // (p * p) if channels is None else _positive("channels", channels)
    expected = ((h // p) * (w // p), c * p * p)
    if tuple(patches.shape[1:]) != expected:
        msg = (
            f"`patches` must have shape (B, N, C·p·p) = (B, {expected[0]}, {expected[1]}) for "
            f"image_size ({h}, {w}), patch_size {p} and {c} channels; got {check.shape_of(patches)}"
        )
        raise ValueError(msg)
    return ops.unpatchify.dispatch(backend, patches, p, (h, w), channels=c, channels_last=channels_last)


@public(ops.vit_embed)
def vit_embed(
    images: ArrayT,
    /,
    w_patch: Array,
    b_patch: Array | None,
    cls_token: Array,
    pos_embed: Array,
    *,
    patch_size: int,
) -> ArrayT:
    """ViT input embedding: patch projection, class token at index 0, positional embedding.

    ``out = concat([cls_token, patchify(images) @ w_patch + b_patch]) + pos_embed``.

    Parameters
    ----------
    images : float array, shape ``(B, C, H, W)``
        ``H`` and ``W`` divisible by ``patch_size``; cut into ``N`` patches.
    w_patch : array, shape ``(C·p·p, D)``
        Rows in (C, ph, pw) order. From timm/HF's ``Conv2d`` weight ``(D, C, p, p)``:
        ``weight.reshape(D, -1).T``.
    b_patch : array, shape ``(D,)``, or None
        Bias of the patch projection (timm/HF's ``Conv2d`` bias).
    cls_token : array, shape ``(D,)``
        timm's ``cls_token (1, 1, D)`` is ``cls_token.reshape(D)``.
    pos_embed : array, shape ``(1 + N, D)``
        Row 0 is the class token's; timm's ``(1, 1+N, D)`` is ``pos_embed[0]``.
    patch_size : int
        Side ``p`` of a patch.

    Returns
    -------
    tokens : array, shape ``(B, 1 + N, D)``

    Examples
    --------
    >>> import numpy as np, seqops
    >>> images = np.ones((2, 3, 8, 8), dtype=np.float32)
    >>> w, b = np.ones((3 * 4 * 4, 5), dtype=np.float32), np.zeros(5, dtype=np.float32)
    >>> cls, pos = np.full(5, 7.0, dtype=np.float32), np.zeros((5, 5), dtype=np.float32)
    >>> out = seqops.vit_embed(images, w, b, cls, pos, patch_size=4)
    >>> out.shape, out[0, 0, 0].item(), out[0, 1, 0].item()
    ((2, 5, 5), 7.0, 48.0)
    """
    names = ("images", "w_patch", "b_patch", "cls_token", "pos_embed")
    arrays = (images, w_patch, b_patch, cls_token, pos_embed)
    backend = resolve(*arrays, names=names, required=(0, 1, 3, 4))
    xp = backend.namespace()
    named = dict(zip(names, arrays, strict=True))
    check.require_floating(xp, **named)
    check.require_same_dtype(**named)
    p = _positive("patch_size", patch_size)
    _check_images("images", images, p, "patch_size", False)
    _require_ndim("w_patch", w_patch, 2, "(C·p·p, D)")
    _, c, h, w = images.shape
    d = w_patch.shape[1]
    check.require_shape("w_patch", w_patch, (c * p * p, d))
    check.require_shape("b_patch", b_patch, (d,))
    check.require_shape("cls_token", cls_token, (d,))
    check.require_shape("pos_embed", pos_embed, (1 + (h // p) * (w // p), d))
    return ops.vit_embed.dispatch(backend, images, w_patch, b_patch, cls_token, pos_embed, patch_size=p)


@public(ops.window_partition)
def window_partition(x: ArrayT, /, window_size: int) -> ArrayT:
    """Split a feature map into non-overlapping ``ws × ws`` windows (Swin's order).

    Parameters
    ----------
    x : array, shape ``(B, H, W, C)``
        ``H`` and ``W`` divisible by ``window_size``; any dtype.
    window_size : int
        Side ``ws`` of a window.

    Returns
    -------
    windows : array, shape ``(B·nW, ws, ws, C)``
        ``nW = (H/ws)·(W/ws)``; image-major, windows in raster order within an image.

    Examples
    --------
    >>> import numpy as np, seqops
    >>> x = np.arange(16).reshape(1, 4, 4, 1)
    >>> seqops.window_partition(x, 2)[1, :, :, 0].tolist()
    [[2, 3], [6, 7]]
    """
    backend = resolve(x, names=("x",))
    ws = _positive("window_size", window_size)
    _check_images("x", x, ws, "window_size", True)
    return ops.window_partition.dispatch(backend, x, ws)


@public(ops.window_reverse)
def window_reverse(windows: ArrayT, /, window_size: int, height: int, width: int) -> ArrayT:
    """Merge :func:`window_partition`'s windows back into ``(B, H, W, C)`` (its inverse).

    Parameters
    ----------
    windows : array, shape ``(B·nW, ws, ws, C)``
        Windows as :func:`window_partition` returns them, ``nW = (H/ws)·(W/ws)`` per image.
    window_size, height, width : int
        ``height`` and ``width`` divisible by ``window_size``.

    Returns
    -------
    x : array, shape ``(B, H, W, C)``

    Examples
    --------
    >>> import numpy as np, seqops
    >>> x = np.arange(48).reshape(1, 4, 6, 2)
    >>> bool((seqops.window_reverse(seqops.window_partition(x, 2), 2, 4, 6) == x).all())
    True
    """
    backend = resolve(windows, names=("windows",))
    ws = _positive("window_size", window_size)
    h, w = _positive("height", height), _positive("width", width)
    for what, size in (("height", h), ("width", w)):
        _require_divisible(what, size, "window_size", ws)
    _require_ndim("windows", windows, 4, "(B·nW, ws, ws, C)")
    count = (h // ws) * (w // ws)
    if tuple(windows.shape[1:3]) != (ws, ws) or windows.shape[0] % count:
        msg = (
            f"`windows` must have shape (B·nW, ws, ws, C) with nW = {count} windows of size "
            f"{ws} for height {h} and width {w}; got {check.shape_of(windows)}"
        )
        raise ValueError(msg)
    return ops.window_reverse.dispatch(backend, windows, ws, h, w)


@public(ops.cyclic_shift)
def cyclic_shift(x: ArrayT, /, shift: int) -> ArrayT:
    """Swin's cyclic shift: roll ``x (B, H, W, C)`` by ``(-shift, -shift)`` over H and W.

    ``cyclic_shift(cyclic_shift(x, s), -s)`` is ``x``.

    Parameters
    ----------
    x : array, shape ``(B, H, W, C)``
        The feature map; any dtype.
    shift : int
        Positive moves content up and left (``torch.roll(x, (-shift, -shift), (1, 2))``).

    Returns
    -------
    shifted : array, shape ``(B, H, W, C)``

    Examples
    --------
    >>> import numpy as np, seqops
    >>> x = np.arange(9).reshape(1, 3, 3, 1)
    >>> seqops.cyclic_shift(x, 1)[0, :, :, 0].tolist()
    [[4, 5, 3], [7, 8, 6], [1, 2, 0]]
    """
    backend = resolve(x, names=("x",))
    _require_ndim("x", x, 4, "(B, H, W, C)")
    return ops.cyclic_shift.dispatch(backend, x, check.integer("shift", shift, minimum=None))


@public(ops.shifted_window_mask)
def shifted_window_mask(
    height: int,
    width: int,
    /,
    window_size: int,
    shift_size: int,
    *,
    as_bias: bool = False,
    like: Array | None = None,
    backend: str | Backend | None = None,
    device: Device | None = None,
) -> Array:
    """Swin's shifted-window attention mask: tokens attend within their own region.

    After :func:`cyclic_shift` by ``shift_size``, windows on the bottom and right edges
    hold pixels from distant parts of the image. Rows are labelled by Swin's slices
    ``[0, -ws)``, ``[-ws, -shift)``, ``[-shift, H)`` (columns likewise); two tokens of a
    window may attend each other iff their labels agree. ``shift_size=0`` gives an
    all-True mask (Swin uses no mask then).

    Parameters
    ----------
    height, width : int
        Feature-map size, divisible by ``window_size``.
    window_size : int
        Side ``ws`` of a window.
    shift_size : int
        In ``[0, window_size)``.
    as_bias : bool
        Return Swin's additive mask instead: ``0.0`` where allowed, ``-100.0`` elsewhere,
        in ``like``'s dtype if floating, else the library's default float.
    like : array, optional
        As in :func:`seqops.causal_mask`: the result takes its library and device.
    backend : str or Backend, optional
        As in :func:`seqops.causal_mask`: the backend of the result without ``like``.
    device : device, optional
        As in :func:`seqops.causal_mask`: the device of the result.

    Returns
    -------
    mask : bool array, shape ``(nW, ws², ws²)``
        **True = attend**; ``nW = (H/ws)·(W/ws)``, windows in :func:`window_partition`'s
        order, tokens of a window in raster order. Float with ``as_bias=True``.

    Examples
    --------
    >>> import seqops
    >>> m = seqops.shifted_window_mask(4, 4, 2, 1)
    >>> m.shape, bool(m[0].all()), m[3].sum().item()
    ((4, 4, 4), True, 4)
    >>> seqops.shifted_window_mask(4, 4, 2, 1, as_bias=True)[1, 0].tolist()
    [0.0, -100.0, 0.0, -100.0]
    """
    h, w = _positive("height", height), _positive("width", width)
    ws = _positive("window_size", window_size)
    shift = _shift_size(shift_size, ws)
    for what, size in (("height", h), ("width", w)):
        _require_divisible(what, size, "window_size", ws)
    chosen = creation_backend(like, backend)
    device = creation_device(chosen, like, device)
    dtype = creation_float_dtype(chosen, like, device) if check.flag("as_bias", as_bias) else None
    return ops.shifted_window_mask.dispatch(
        chosen, h, w, ws, shift, as_bias=as_bias, dtype=dtype, device=device
    )


@public(ops.relative_position_index)
def relative_position_index(
    window_size: int,
    *,
    like: Array | None = None,
    backend: str | Backend | None = None,
    device: Device | None = None,
) -> Array:
    """Swin's relative position index of every pair of tokens in a window.

    For tokens ``i = (hi, wi)`` and ``j = (hj, wj)`` of a window (raster order):
    ``index[i, j] = (hi - hj + ws - 1)·(2ws - 1) + (wi - wj + ws - 1)``, a row of the
    ``((2ws-1)², heads)`` relative position bias table.

    Parameters
    ----------
    window_size : int
        Side ``ws`` of a window.
    like : array, optional
        As in :func:`seqops.causal_mask`: the result takes its library and device.
    backend : str or Backend, optional
        As in :func:`seqops.causal_mask`: the backend of the result without ``like``.
    device : device, optional
        As in :func:`seqops.causal_mask`: the device of the result.

    Returns
    -------
    index : integer array, shape ``(ws², ws²)``
        Values in ``[0, (2ws-1)²)``; the library's default integer dtype.

    Examples
    --------
    >>> import seqops
    >>> seqops.relative_position_index(2).tolist()
    [[4, 3, 1, 0], [5, 4, 2, 1], [7, 6, 4, 3], [8, 7, 5, 4]]
    """
    ws = _positive("window_size", window_size)
    chosen = creation_backend(like, backend)
    return ops.relative_position_index.dispatch(chosen, ws, device=creation_device(chosen, like, device))


@public(ops.window_attention)
def window_attention(
    x: ArrayT,
    /,
    params: MHAParams,
    *,
    num_heads: int,
    window_size: int,
    shift_size: int = 0,
    relative_bias_table: Array | None = None,
) -> ArrayT:
    """Swin's (shifted) window multi-head self-attention (W-MSA / SW-MSA).

    Pad ``x`` with zeros at the bottom and right to multiples of ``window_size``, shift it
    by ``shift_size`` (:func:`cyclic_shift`), split it into windows
    (:func:`window_partition`), run multi-head self-attention inside each window (heads as
    in :func:`seqops.multi_head_attention`, scale ``1/sqrt(head_dim)``) with the
    :func:`shifted_window_mask` when ``shift_size > 0`` and the relative position bias,
    then merge the windows, shift back and crop the padding. Time and memory grow linearly
    with the number of windows (logits ``(B, nW, heads, ws², ws²)``; never ``(H·W)²``).

    Parameters
    ----------
    x : float array, shape ``(B, H, W, C)``
        Any ``H`` and ``W`` (see Notes for sizes that are not multiples of ``window_size``).
    params : MHAParams
        ``w_q``, ``w_k``, ``w_v`` ``(C, D)`` and ``w_o (D, D_out)``, biases optional. Swin's
        ``qkv`` linear (weight ``(3D, C)``) gives ``w_q = weight[:D].T``,
        ``w_k = weight[D:2D].T``, ``w_v = weight[2D:].T``; ``proj`` gives ``w_o = weight.T``.
    num_heads : int
        Divides ``D``.
    window_size : int
        Side ``ws`` of a window.
    shift_size : int
        In ``[0, window_size)``; 0 is W-MSA, > 0 SW-MSA.
    relative_bias_table : array, shape ``((2ws-1)², num_heads)``, optional
        Swin's ``relative_position_bias_table``, gathered with
        :func:`relative_position_index` and added to the logits of every window.

    Returns
    -------
    out : array, shape ``(B, H, W, D_out)``

    Notes
    -----
    Tokens of different regions are masked out exactly (a boolean mask); Swin adds
    ``-100.0`` instead, which differs by weights below ``exp(-100) ≈ 4e-44``.

    Sizes that are not multiples of ``window_size`` are handled as Hugging Face's
    ``SwinLayer`` (``maybe_pad``) and the official Swin code padding after ``norm1`` do:
    ``(-H) % ws`` zero rows at the bottom and ``(-W) % ws`` zero columns at the right, the
    shifted-window mask computed on the padded size, and the output cropped back to
    ``(H, W)``. The padded tokens are **not** masked out: they take part as keys and values
    (projections of zero, i.e. ``b_k`` and ``b_v``) in the windows that hold them, with or
    without a shift, exactly as in those references.

    Examples
    --------
    >>> import numpy as np, seqops
    >>> w = np.eye(8, dtype=np.float32)
    >>> x = np.ones((2, 4, 6, 8), dtype=np.float32)
    >>> table = np.zeros((9, 2), dtype=np.float32)
    >>> out = seqops.window_attention(
    ...     x, seqops.MHAParams(w, w, w, w), num_heads=2, window_size=2, shift_size=1,
    ...     relative_bias_table=table)
    >>> out.shape
    (2, 4, 6, 8)
    """
    names = ("x", *(f"params.{f}" for f in MHAParams._fields), "relative_bias_table")
    backend = resolve(x, *params, relative_bias_table, names=names, required=5)
    xp = backend.namespace()
    check.require_floating(xp, x=x, relative_bias_table=relative_bias_table)
    ws = _positive("window_size", window_size)
    _require_ndim("x", x, 4, "(B, H, W, C)")  # any H, W: the math pads to multiples of ws
    # x is the query, key and value of a self-attention on (B, H, W, C)
    _check_mha(xp, x, x, x, params, num_heads)
    shift = _shift_size(shift_size, ws)
    check.require_same_dtype(x=x, relative_bias_table=relative_bias_table)
    check.require_shape("relative_bias_table", relative_bias_table, ((2 * ws - 1) ** 2, num_heads))
    return ops.window_attention.dispatch(
        backend,
        x,
        params,
        num_heads=num_heads,
        window_size=ws,
        shift_size=shift,
        relative_bias_table=relative_bias_table,
    )


@public(ops.patch_merging)
def patch_merging(
    x: ArrayT,
    /,
    weight: Array,
    norm_weight: Array | None = None,
    norm_bias: Array | None = None,
    *,
    eps: float = 1e-5,
) -> ArrayT:
    """Swin's patch merging: each 2 × 2 neighbourhood becomes one token, normalised, projected.

    ``concat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)``
    (Swin's order), then :func:`seqops.layer_norm` over the ``4C`` features (dispatched, so
    its fast paths apply), then ``@ weight``. An odd ``H`` or ``W`` is padded with one zero
    row or column at the bottom or right first, as the official Swin code and Hugging Face's
    ``SwinPatchMerging.maybe_pad`` do.

    Parameters
    ----------
    x : float array, shape ``(B, H, W, C)``
        Feature map, ``H`` the rows. Hugging Face's ``(B, H·W, C)`` input is
        ``x.reshape(B, H, W, C)``.
    weight : array, shape ``(4C, D_out)``
        The reduction, applied as ``x @ weight`` (Swin's ``reduction.weight (D_out, 4C)``
        is ``weight.T``; Swin has no bias there and ``D_out = 2C``).
    norm_weight, norm_bias : array, shape ``(4C,)``, optional
        The layer norm's scale and shift; without them the norm has no affine part.
    eps : float
        Added to the variance of the norm (torch's ``LayerNorm`` default ``1e-5``).

    Returns
    -------
    merged : array, shape ``(B, ⌈H/2⌉, ⌈W/2⌉, D_out)``
        Same library, device and dtype as ``x``; token ``(i, j)`` gathers the pixels
        ``(2i, 2j)``, ``(2i+1, 2j)``, ``(2i, 2j+1)``, ``(2i+1, 2j+1)`` in that order.

    Examples
    --------
    >>> import numpy as np, seqops
    >>> x = np.arange(2 * 5 * 7 * 3, dtype=np.float64).reshape(2, 5, 7, 3)
    >>> seqops.patch_merging(x, np.ones((12, 6))).shape
    (2, 3, 4, 6)
    >>> one = np.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 2, 2, 1)  # C = 1: pixels in Swin's order
    >>> seqops.patch_merging(one, np.eye(4), eps=0.0).round(4).tolist()
    [[[[-1.3416, 0.4472, -0.4472, 1.3416]]]]
    """
    names = ("x", "weight", "norm_weight", "norm_bias")
    backend = resolve(x, weight, norm_weight, norm_bias, names=names, required=2)
    xp = backend.namespace()
    named = dict(zip(names, (x, weight, norm_weight, norm_bias), strict=True))
    check.require_floating(xp, **named)
    check.require_same_dtype(**named)
    _require_ndim("x", x, 4, "(B, H, W, C)")
    features = 4 * x.shape[-1]
    if weight.ndim != 2 or weight.shape[0] != features:
        msg = (
            f"`weight` must have shape (4C, D_out) = ({features}, D_out) for `x` of shape "
            f"{check.shape_of(x)}; got {check.shape_of(weight)}"
        )
        raise ValueError(msg)
    check.require_shape("norm_weight", norm_weight, (features,))
    check.require_shape("norm_bias", norm_bias, (features,))
    eps = check.number("eps", eps, minimum=0.0)
    return ops.patch_merging.dispatch(backend, x, weight, norm_weight, norm_bias, eps=eps)


def _positive(name: str, value: object) -> int:
    n = check.integer(name, value)
    if n == 0:
        msg = f"{name} must be positive; got 0"
        raise ValueError(msg)
    return n


def _shift_size(shift_size: object, window_size: int) -> int:
    shift = check.integer("shift_size", shift_size, minimum=None)
    if not 0 <= shift < window_size:
        msg = f"shift_size must be in [0, window_size) = [0, {window_size}); got {shift}"
        raise ValueError(msg)
    return shift


def _require_ndim(name: str, x: Array, ndim: int, layout: str) -> None:
    if x.ndim != ndim:
        msg = f"`{name}` must have {ndim} dimensions {layout}; got shape {check.shape_of(x)}"
        raise ValueError(msg)


def _require_divisible(what: str, size: int, name: str, value: int, shape: Any = None) -> None:
    if size % value:
        got = "" if shape is None else f" (shape {shape})"
        msg = f"image {what} {size} is not divisible by {name} {value}{got}"
        raise ValueError(msg)


def _check_images(name: str, x: Array, size: int, size_name: str, channels_last: bool) -> None:
    """``x`` is ``(B, C, H, W)`` (or ``(B, H, W, C)``) with H and W divisible by ``size``."""
    layout = "(B, H, W, C)" if channels_last else "(B, C, H, W)"
    _require_ndim(name, x, 4, layout)
    h, w = x.shape[1:3] if channels_last else x.shape[2:4]
    for what, n in (("height", h), ("width", w)):
        _require_divisible(what, n, size_name, size, check.shape_of(x))
