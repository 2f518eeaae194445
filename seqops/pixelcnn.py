"""PixelCNN: autoregressive masks over pixels (and colour channels), masked convolution."""

from __future__ import annotations

from seqops import ops
from seqops._dispatch import creation_backend, creation_device, creation_float_dtype, public, resolve
from seqops._lib import validate as check
from seqops._lib.typing import Array, ArrayT, Device, DType
from seqops.contract import Backend


@public(ops.pixelcnn_mask)
def pixelcnn_mask(
    kernel_size: int | tuple[int, int],
    in_channels: int,
    out_channels: int,
    /,
    *,
    mask_type: str = "A",
    color_groups: int = 1,
    dtype: DType | None = None,
    like: Array | None = None,
    backend: str | Backend | None = None,
    device: Device | None = None,
) -> Array:
    """The PixelCNN mask of a convolution weight: 1 = connection kept, 0 = masked.

    In raster order (rows top to bottom, pixels left to right), a pixel may depend only on
    the pixels before it: every tap in a row below the centre, and every tap right of the
    centre in its row, is masked. The centre tap connects the pixel to itself: type
    ``"A"`` (the first layer) masks it, type ``"B"`` (later layers) keeps it. With
    ``color_groups=3`` the channels split into **contiguous thirds** R, G, B, and at the
    centre output group ``j`` sees input groups ``i < j`` (A) or ``i <= j`` (B), so that
    G depends on R of the same pixel and B on R and G.

    Parameters
    ----------
    kernel_size : int or (int, int)
        ``k`` or ``(kh, kw)``; odd sizes only (the centre must be a tap).
    in_channels, out_channels : int
        Divisible by ``color_groups``.
    mask_type : {"A", "B"}
    color_groups : int
        Number of contiguous channel groups ordered at the centre (3 for RGB; 1 = none).
    dtype : dtype, optional
        Default: the dtype of ``like`` if floating, else the library's default float.
    like : array, optional
        As in :func:`seqops.causal_mask`: the result takes its library and device.
    backend : str or Backend, optional
        As in :func:`seqops.causal_mask`: the backend of the result without ``like``.
    device : device, optional
        As in :func:`seqops.causal_mask`: the device of the result.

    Returns
    -------
    mask : array, shape ``(out_channels, in_channels, kh, kw)``
        Zeros and ones of ``dtype``; multiply a weight of the same shape by it.

    Examples
    --------
    >>> import seqops
    >>> m = seqops.pixelcnn_mask(3, 1, 1, mask_type="A")
    >>> m[0, 0].tolist()
    [[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    >>> m = seqops.pixelcnn_mask(1, 3, 3, mask_type="B", color_groups=3)  # centre only
    >>> m[:, :, 0, 0].tolist()  # row = output R, G, B; column = input R, G, B
    [[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [1.0, 1.0, 1.0]]
    """
    size = _kernel_size(kernel_size)
    in_channels = check.integer("in_channels", in_channels)
    out_channels = check.integer("out_channels", out_channels)
    _check_mask_options(mask_type, color_groups, in_channels, out_channels, f"{(out_channels, in_channels)}")
    chosen = creation_backend(like, backend)
    device = creation_device(chosen, like, device)
    dtype = creation_float_dtype(chosen, like, device, dtype)
    return ops.pixelcnn_mask.dispatch(  # type: ignore[no-any-return]
        chosen,
        size,
        in_channels,
        out_channels,
        mask_type=mask_type,
        color_groups=color_groups,
        dtype=dtype,
        device=device,
    )


@public(ops.masked_conv2d)
def masked_conv2d(
    x: ArrayT,
    /,
    weight: Array,
    bias: Array | None = None,
    *,
    mask_type: str = "A",
    color_groups: int = 1,
    padding: str = "same",
) -> ArrayT:
    """PixelCNN convolution: ``conv2d(x, weight * pixelcnn_mask(...), bias)``.

    Stride 1, zero "same" padding (``k // 2`` on each side), cross-correlation as in
    ``torch.nn.functional.conv2d``. Output pixel ``(h, w)`` depends only on input pixels
    before it in raster order, and on the pixel itself through the colour-group rule of
    :func:`pixelcnn_mask` (never on itself for type A with ``color_groups=1``). Computed
    portably (zero padding, ``kh·kw`` shifted views, one matmul), since convolution is not
    part of the Array API standard.

    Parameters
    ----------
    x : array, shape ``(B, C, H, W)``, real floating
        The images (or feature maps), channels first.
    weight : array, shape ``(O, C, kh, kw)``, dtype of ``x``
        Unmasked weights (the mask is applied here); odd ``kh`` and ``kw``.
    bias : array, shape ``(O,)``, optional
        Added to every output channel; dtype of ``x``.
    mask_type : {"A", "B"}
    color_groups : int
        Must divide ``C`` and ``O``; see :func:`pixelcnn_mask`.
    padding : {"same"}
        The only padding supported (odd kernels, output size = input size).

    Returns
    -------
    out : array, shape ``(B, O, H, W)``
        Dtype of ``x`` (half precision is computed in float32).

    Examples
    --------
    >>> import numpy as np, seqops
    >>> x = np.arange(9.0).reshape(1, 1, 3, 3)
    >>> w = np.ones((1, 1, 3, 3))
    >>> seqops.masked_conv2d(x, w, mask_type="A")[0, 0].tolist()  # sum of earlier neighbours
    [[0.0, 0.0, 1.0], [1.0, 6.0, 7.0], [7.0, 18.0, 16.0]]
    """
    backend = resolve(x, weight, bias, names=("x", "weight", "bias"), required=2)
    xp = backend.namespace()
    check.require_floating(xp, x=x, weight=weight, bias=bias)
    check.require_same_dtype(x=x, weight=weight, bias=bias)
    if x.ndim != 4 or weight.ndim != 4:
        msg = (
            f"`x` must be (B, C, H, W) and `weight` (O, C, kh, kw); "
            f"got x {check.shape_of(x)} and weight {check.shape_of(weight)}"
        )
        raise ValueError(msg)
    out_channels, in_channels, kh, kw = check.shape_of(weight)
    if in_channels != x.shape[1]:
        msg = (
            f"`weight` (O, C, kh, kw) must have the input channels C of x (B, C, H, W); "
            f"got x {check.shape_of(x)} and weight {check.shape_of(weight)}"
        )
        raise ValueError(msg)
    if kh % 2 == 0 or kw % 2 == 0:
        msg = f"masked_conv2d needs odd kernel sizes (a centre tap); got weight {check.shape_of(weight)}"
        raise ValueError(msg)
    check.require_shape("bias", bias, (out_channels,))
    check.require_choice("padding", padding, ("same",))
    where = f"weight {check.shape_of(weight)}"
    _check_mask_options(mask_type, color_groups, in_channels, out_channels, where)
    return ops.masked_conv2d.dispatch(  # type: ignore[no-any-return]
        backend, x, weight, bias, mask_type=mask_type, color_groups=color_groups
    )


def _check_mask_options(
    mask_type: str, color_groups: int, in_channels: int, out_channels: int, what: str
) -> None:
    check.require_choice("mask_type", mask_type, ("A", "B"))
    groups = check.integer("color_groups", color_groups)
    if groups == 0 or in_channels % groups or out_channels % groups:
        msg = (
            f"color_groups={color_groups} must divide the input and output channels into "
            f"contiguous groups; got in_channels={in_channels}, out_channels={out_channels} ({what})"
        )
        raise ValueError(msg)


def _kernel_size(kernel_size: object) -> tuple[int, int]:
    sizes = kernel_size if isinstance(kernel_size, (tuple, list)) else (kernel_size, kernel_size)
    if len(sizes) != 2:
        msg = f"kernel_size must be an int or a pair (kh, kw); got {kernel_size!r}"
        raise ValueError(msg)
    kh, kw = (check.integer("kernel_size", k) for k in sizes)
    if kh % 2 == 0 or kw % 2 == 0:
        msg = f"kernel_size must be odd (a centre tap); got {(kh, kw)}"
        raise ValueError(msg)
    return kh, kw
