"""The declared ops: each op's name and the contract its implementations receive.

Every op is declared here once, as a stub whose signature is what an implementation's
``fn`` and ``decline`` are called with and whose docstring says what the arguments hold.
The public function ``seqops.<name>`` validates its input, resolves the backend and the
defaults, then calls ``seqops.ops.<name>.dispatch(backend, ...)`` with exactly these
parameters; plugins offer :class:`seqops.Implementation` objects naming the op
(``seqops.ops.scaled_dot_product_attention``), checked against this signature when they are
registered; :class:`seqops.Limitation`, the conformance cases and the benchmarks name ops
that must be declared here.

Conventions of every contract:

- ``backend`` first (the :class:`seqops.Backend` of the arrays), then the arrays
  positionally, then every option by name, with defaults resolved (no ``None`` standing
  for a default unless the contract says so).
- The arrays are validated: one library, the dtypes and shapes the public docstring gives,
  broadcastable where it says so. Implementations never validate again; they *decline*
  what they cannot compute (and must answer on symbolic or unknown sizes).
- What an implementation returns is what the public function returns (same library,
  device and dtype).
- A composite (``parts``) dispatches its parts, so a fast path registered for a part
  reaches every composite using it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from seqops._dispatch import declare
from seqops._op import Op

if TYPE_CHECKING:
    from seqops._lib.typing import Array, Device, DType
    from seqops.contract import Backend


def _composite(*parts: Op) -> Callable[[Callable[..., Any]], Op]:
    return lambda stub: declare(stub, parts=parts)


# -- activations ------------------------------------------------------------------------
@declare
def softmax(backend: Backend, x: Array, /, *, axis: int) -> Array:
    """``x (...)`` real floating; ``axis`` a Python int in ``[-x.ndim, x.ndim)``."""


@declare
def log_softmax(backend: Backend, x: Array, /, *, axis: int) -> Array:
    """As :data:`softmax`."""


@declare
def relu(backend: Backend, x: Array, /) -> Array:
    """``x (...)`` real floating."""


@declare
def silu(backend: Backend, x: Array, /) -> Array:
    """``x (...)`` real floating."""


@declare
def gelu(backend: Backend, x: Array, /, *, approximate: str) -> Array:
    """``x (...)`` real floating; ``approximate`` ``"none"`` (exact erf form) or ``"tanh"``."""


# -- attention ----------------------------------------------------------------------------
@declare
def scaled_dot_product_attention(
    backend: Backend,
    q: Array,
    k: Array,
    v: Array,
    /,
    *,
    mask: Array | None,
    bias: Array | None,
    is_causal: bool,
    scale: float,
    dropout_p: float,
    rng: Any,
    enable_gqa: bool,
    return_weights: bool,
) -> Any:
    """``q (..., L, E)``, ``k (..., S, E)``, ``v (..., S, Ev)`` of one real floating dtype,
    leading dims broadcasting (with ``enable_gqa``, dim -3 of ``k``/``v`` divides ``q``'s);
    ``mask`` bool and ``bias`` of ``q``'s dtype broadcastable to ``(..., L, S)``; ``scale``
    a float; ``dropout_p`` in ``[0, 1)``, with ``rng`` given when ``> 0``. Returns
    ``out (..., L, Ev)``, or ``(out, weights (..., L, S))`` when ``return_weights``."""


@declare
def causal_mask(backend: Backend, q_len: int, kv_len: int, /, *, align: str, device: Device) -> Array:
    """Non-negative ints; ``align`` ``"top_left"`` or ``"bottom_right"``; the mask is made
    on ``device``."""


@declare
def padding_mask(backend: Backend, lengths: Array, /, *, max_len: int) -> Array:
    """``lengths (...)`` integer; ``max_len`` a non-negative int."""


@declare
def sinusoidal_positional_encoding(
    backend: Backend,
    num_positions: int,
    d_model: int,
    /,
    *,
    base: float,
    layout: str,
    positions: Array | None,
    dtype: DType,
    device: Device,
) -> Array:
    """``d_model`` even; ``positions (num_positions,)`` integer on ``device`` or ``None`` for
    ``arange(num_positions)``; ``dtype`` real floating."""


@declare
def apply_rotary(
    backend: Backend, x: Array, positions: Array, /, *, base: float, layout: str, rotary_dim: int
) -> Array:
    """``x (..., L, E)`` real floating; ``positions`` integer, broadcastable to ``(..., L)``;
    ``layout`` ``"halves"`` or ``"interleaved"``; ``rotary_dim`` even, ``<= E`` (``E`` when
    the public call gave ``None``)."""


@_composite(scaled_dot_product_attention, apply_rotary)
def multi_head_attention(
    backend: Backend,
    query: Array,
    key: Array,
    value: Array,
    params: Any,
    /,
    *,
    num_heads: int,
    mask: Array | None,
    key_padding_mask: Array | None,
    is_causal: bool,
    dropout_p: float,
    rng: Any,
    need_weights: bool,
    scale: float,
    bias: Array | None,
    num_kv_heads: int,
    rotary: Any,
    positions: Array | None,
    kv_cache: Any,
) -> Any:
    """``params`` a :class:`seqops.MHAParams` of the inputs' dtype with shapes checked;
    ``num_kv_heads`` divides ``num_heads``, which divides the query width; ``mask`` and
    ``bias`` broadcastable to ``(..., num_heads, L, S)``, ``key_padding_mask`` to ``(..., S)``
    (True = real token), ``S`` the cache's ``max_len`` with ``kv_cache``; ``scale`` a float;
    ``rotary`` a :class:`seqops.Rotary` with ``rotary_dim`` resolved (self-attention) or
    ``None``; ``positions`` broadcastable to ``(..., L)`` or ``None``; ``kv_cache`` a
    :class:`seqops.KVCache` with room for the new keys, or ``None`` (then the result is
    ``(out, new_cache)``)."""


@declare
def layer_norm(
    backend: Backend, x: Array, weight: Array | None, bias: Array | None, /, *, eps: float
) -> Array:
    """``x (..., E)``, ``weight``/``bias`` ``(E,)`` or ``None``; ``eps`` a float ``>= 0``."""


@declare
def rms_norm(backend: Backend, x: Array, weight: Array | None, /, *, eps: float) -> Array:
    """``x (..., E)``, ``weight`` ``(E,)`` or ``None``; ``eps`` a float ``>= 0``."""


@_composite(relu, silu, gelu)
def feed_forward(
    backend: Backend,
    x: Array,
    w1: Array,
    b1: Array | None,
    w2: Array,
    b2: Array | None,
    /,
    *,
    activation: str,
) -> Array:
    """``x (..., D)``, ``w1 (D, F)``, ``w2 (F, D_out)``; ``activation`` one of ``"relu"``,
    ``"gelu"``, ``"gelu_tanh"``, ``"silu"`` (the alias ``"swish"`` resolved to ``"silu"``)."""


@_composite(relu, silu, gelu)
def gated_feed_forward(
    backend: Backend,
    x: Array,
    w_gate: Array,
    w_up: Array,
    w_down: Array,
    b_gate: Array | None,
    b_up: Array | None,
    b_down: Array | None,
    /,
    *,
    activation: str,
) -> Array:
    """``x (..., D)``, ``w_gate``/``w_up (D, F)``, ``w_down (F, D_out)``, ``b_gate``/``b_up
    (F,)``, ``b_down (D_out,)`` or ``None``; ``activation`` as :data:`feed_forward`'s."""


@_composite(multi_head_attention, layer_norm, feed_forward)
def transformer_encoder_layer(
    backend: Backend,
    x: Array,
    params: Any,
    /,
    *,
    num_heads: int,
    norm_first: bool,
    activation: str,
    mask: Array | None,
    key_padding_mask: Array | None,
    is_causal: bool,
    eps: float,
    scale: float | None,
) -> Array:
    """``x (..., L, D)``; ``params`` a :class:`seqops.EncoderLayerParams` with shapes checked;
    ``scale`` the attention's (``None``: ``1 / sqrt(head_dim)``)."""


@_composite(multi_head_attention, layer_norm, feed_forward)
def transformer_decoder_layer(
    backend: Backend,
    x: Array,
    memory: Array,
    params: Any,
    /,
    *,
    num_heads: int,
    norm_first: bool,
    activation: str,
    mask: Array | None,
    key_padding_mask: Array | None,
    is_causal: bool,
    memory_mask: Array | None,
    memory_key_padding_mask: Array | None,
    scale: float | None,
    eps: float,
) -> Array:
    """``x (..., L, D)``, ``memory (..., S, D_mem)``; ``params`` a
    :class:`seqops.DecoderLayerParams` with shapes checked; masks broadcastable as the
    public docstring says; ``scale`` both attentions' (``None``: ``1 / sqrt(head_dim)``)."""


# -- recurrent ----------------------------------------------------------------------------
@declare
def rnn_cell(
    backend: Backend, x: Array, h: Array, w_ih: Array, w_hh: Array, b: Array | None, /, *, nonlinearity: str
) -> Array:
    """``x (..., I)``, ``h (..., H)``, ``w_ih (I, H)``, ``w_hh (H, H)``, ``b (H,)``;
    ``nonlinearity`` ``"tanh"`` or ``"relu"``."""


@declare
def rnn(
    backend: Backend, xs: Array, h0: Array, w_ih: Array, w_hh: Array, b: Array | None, /, *, nonlinearity: str
) -> Any:
    """``xs (T, ..., I)`` time-major, ``h0 (..., H)``; returns ``(hs (T, ..., H), h_T)``."""


@declare
def lstm_cell(backend: Backend, x: Array, state: Any, w_ih: Array, w_hh: Array, b: Array | None, /) -> Any:
    """``state = (h, c)``, gates i, f, o, g in ``w_ih (I, 4H)``, ``w_hh (H, 4H)``, ``b (4H,)``."""


@declare
def lstm(backend: Backend, xs: Array, state: Any, w_ih: Array, w_hh: Array, b: Array | None, /) -> Any:
    """``xs (T, ..., I)``; returns ``(hs (T, ..., H), (h_T, c_T))``."""


@declare
def gru_cell(
    backend: Backend, x: Array, h: Array, w_ih: Array, w_hh: Array, b_ih: Array | None, b_hh: Array | None, /
) -> Array:
    """``x (..., I)``, ``h (..., H)``, gates r, z, n in ``w_ih (I, 3H)``, ``w_hh (H, 3H)``,
    ``b_ih``/``b_hh (3H,)`` or ``None`` (each alone; ``b_hh``'s n block sits inside ``r * (...)``)."""


@declare
def gru(
    backend: Backend,
    xs: Array,
    h0: Array,
    w_ih: Array,
    w_hh: Array,
    b_ih: Array | None,
    b_hh: Array | None,
    /,
) -> Any:
    """``xs (T, ..., I)`` time-major, ``h0 (..., H)``; returns ``(hs (T, ..., H), h_T)``."""


@declare
def clip_grad_norm(
    backend: Backend, grads: list[Array], /, *, max_norm: float, norm_type: float, eps: float
) -> Any:
    """``grads`` a non-empty list of real floating arrays (the ``None`` entries removed);
    returns ``(clipped list, total_norm)``."""


@declare
def clip_grad_value(backend: Backend, grads: list[Array], /, *, clip_value: float) -> list[Array]:
    """As :data:`clip_grad_norm`; returns the clipped list."""


# -- language modelling -------------------------------------------------------------------
@declare
def cross_entropy(
    backend: Backend,
    logits: Array,
    targets: Array,
    /,
    *,
    weight: Array | None,
    ignore_index: int | None,
    label_smoothing: float,
    reduction: str,
) -> Array:
    """``logits (..., C)`` with the class axis moved last, ``targets (...)`` integer,
    ``weight (C,)`` or ``None``; ``reduction`` ``"mean"``, ``"sum"`` or ``"none"``."""


@declare
def autoregressive_log_likelihood(backend: Backend, logits: Array, targets: Array, /) -> Array:
    """``logits (..., T, V)`` (class axis last), ``targets (..., T)`` integer."""


@declare
def greedy(backend: Backend, logits: Array, /) -> Array:
    """``logits (..., V)``, ``V >= 1``."""


@declare
def filter_logits(
    backend: Backend,
    logits: Array,
    /,
    *,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    min_tokens_to_keep: int,
) -> Array:
    """``logits (..., V)``, ``V >= 1``; the options checked (``temperature > 0``, ``top_k >= 1``
    or ``None``, ``top_p`` in ``(0, 1]`` or ``None``, ``min_tokens_to_keep >= 1``). Returns
    ``logits / temperature`` with ``-inf`` at the removed tokens, in ``logits``' dtype."""


@_composite(filter_logits)
def sample_logits(
    backend: Backend,
    logits: Array,
    /,
    *,
    rng: Any,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    min_tokens_to_keep: int,
) -> Array:
    """``logits (..., V)``; ``rng`` given; the options checked as :data:`filter_logits`'s."""


@_composite(greedy, sample_logits)
def decode(
    backend: Backend,
    step: Callable[..., Any],
    state: Any,
    first_tokens: Array,
    /,
    *,
    max_new_tokens: int,
    strategy: str,
    rng: Any,
    eos_token_id: tuple[int, ...] | None,
    pad_token_id: int | None,
    prompt: Array | None,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    min_tokens_to_keep: int,
) -> Array:
    """``step(tokens, state) -> (logits, state)`` checks the logits it returns;
    ``strategy`` ``"greedy"`` or ``"sample"`` (then ``rng`` given); ``eos_token_id`` a
    non-empty tuple of ints or ``None``, ``pad_token_id`` an int when it is given;
    ``prompt (..., P)`` integer, of ``first_tokens``' library and leading shape, or ``None``."""


# -- vision -------------------------------------------------------------------------------
@declare
def patchify(backend: Backend, images: Array, patch_size: int, /, *, channels_last: bool) -> Array:
    """``images (B, C, H, W)`` (or ``(B, H, W, C)``), ``patch_size`` divides H and W."""


@declare
def unpatchify(
    backend: Backend,
    patches: Array,
    patch_size: int,
    image_size: tuple[int, int],
    /,
    *,
    channels: int,
    channels_last: bool,
) -> Array:
    """``patches (B, N, C·p·p)``; ``image_size = (H, W)``."""


@declare
def vit_embed(
    backend: Backend,
    images: Array,
    w_patch: Array,
    b_patch: Array | None,
    cls_token: Array | None,
    pos_embed: Array | None,
    /,
    *,
    patch_size: int,
) -> Array:
    """``images (B, C, H, W)``, ``w_patch (C·p·p, D)``, ``pos_embed (1+N, D)``."""


@declare
def window_partition(backend: Backend, x: Array, window_size: int, /) -> Array:
    """``x (B, H, W, C)``, ``window_size`` divides H and W."""


@declare
def window_reverse(backend: Backend, windows: Array, window_size: int, height: int, width: int, /) -> Array:
    """``windows (B·nW, ws, ws, C)``."""


@declare
def cyclic_shift(backend: Backend, x: Array, shift: int, /) -> Array:
    """``x (B, H, W, C)``; ``shift`` an int (negative undoes)."""


@declare
def shifted_window_mask(
    backend: Backend,
    height: int,
    width: int,
    window_size: int,
    shift_size: int,
    /,
    *,
    as_bias: bool,
    dtype: DType | None,
    device: Device,
) -> Array:
    """Sizes checked; ``dtype`` real floating when ``as_bias``, else ``None``."""


@declare
def relative_position_index(backend: Backend, window_size: int, /, *, device: Device) -> Array:
    """``window_size >= 1``."""


@_composite(scaled_dot_product_attention)
def window_attention(
    backend: Backend,
    x: Array,
    params: Any,
    /,
    *,
    num_heads: int,
    window_size: int,
    shift_size: int,
    relative_bias_table: Array | None,
) -> Array:
    """``x (B, H, W, C)`` of any H, W (the math pads them to multiples of ``window_size``),
    ``params`` a :class:`seqops.MHAParams`; ``relative_bias_table ((2·ws − 1)², num_heads)``
    or ``None``."""


@_composite(layer_norm)
def patch_merging(
    backend: Backend,
    x: Array,
    weight: Array,
    norm_weight: Array | None,
    norm_bias: Array | None,
    /,
    *,
    eps: float,
) -> Array:
    """``x (B, H, W, C)`` of any H, W, ``weight (4C, D_out)``, ``norm_weight``/``norm_bias
    (4C,)`` or ``None``; ``eps`` a float ``>= 0``."""


# -- generative ---------------------------------------------------------------------------
@declare
def pixelcnn_mask(
    backend: Backend,
    kernel_size: tuple[int, int],
    in_channels: int,
    out_channels: int,
    /,
    *,
    mask_type: str,
    color_groups: int,
    dtype: DType,
    device: Device,
) -> Array:
    """Odd kernel sizes; ``color_groups`` divides both channel counts."""


@declare
def masked_conv2d(
    backend: Backend, x: Array, weight: Array, bias: Array | None, /, *, mask_type: str, color_groups: int
) -> Array:
    """``x (B, C, H, W)``, ``weight (out, C, kh, kw)``, ``bias (out,)``; "same" padding."""


@declare
def reparameterize(
    backend: Backend, mu: Array, log_var: Array, /, *, rng: Any, eps: Array | None, shape: tuple[int, ...]
) -> Array:
    """Exactly one of ``rng``/``eps``; ``shape`` the broadcast shape of the inputs."""


@declare
def kl_normal_standard(backend: Backend, mu: Array, log_var: Array, /, *, axis: tuple[int, ...]) -> Array:
    """``axis`` normalised to a tuple of negative ints of the broadcast shape."""


@declare
def kl_normal_normal(
    backend: Backend,
    mu_q: Array,
    log_var_q: Array,
    mu_p: Array,
    log_var_p: Array,
    /,
    *,
    axis: tuple[int, ...],
) -> Array:
    """As :data:`kl_normal_standard`."""


@declare
def kl_mvn(
    backend: Backend, mu_q: Array, cov_q: Array, mu_p: Array, cov_p: Array, /, *, lead: tuple[int, ...]
) -> Array:
    """``mu (..., k)``, ``cov (..., k, k)``; ``lead`` the broadcast batch shape."""


@declare
def gaussian_log_likelihood(
    backend: Backend, x: Array, mean: Array, log_var: Array, /, *, axis: tuple[int, ...]
) -> Array:
    """As :data:`kl_normal_standard`."""


@declare
def bernoulli_log_likelihood(backend: Backend, x: Array, logits: Array, /, *, axis: tuple[int, ...]) -> Array:
    """As :data:`kl_normal_standard`."""


@declare
def iwae_bound(
    backend: Backend, log_p_x_given_z: Array, log_p_z: Array, log_q_z: Array, /, *, axis: int
) -> Array:
    """The three of one real floating dtype, broadcastable to one shape of ``ndim >= 1``;
    ``axis`` (the samples) a negative int of that broadcast shape."""


@_composite(gaussian_log_likelihood, bernoulli_log_likelihood, kl_normal_standard)
def elbo(
    backend: Backend,
    x: Array,
    recon: tuple[Array, ...],
    mu: Array,
    log_var: Array,
    /,
    *,
    likelihood: str,
    axis: tuple[int, ...],
    reduction: str,
) -> Array:
    """``recon = (logits,)`` for ``"bernoulli"``, ``(mean, log_var)`` for ``"gaussian"``."""
