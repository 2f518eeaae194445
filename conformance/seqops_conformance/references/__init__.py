"""Float64 NumPy reference implementations of the seqops attention family.

Each function follows the formula in ``API.md`` as directly as possible: explicit
loops over rows, heads and positions, with ``math.fsum`` for normalisers. They are
deliberately slow and share no code with the optimized library, so that the
conformance suite compares seqops against an independent statement of the maths.
Inputs are cast to float64; the sizes used in tests are small.

One module per op family, named like the library's; this package re-exports them all.
"""

from seqops_conformance.references.activations import gelu, log_softmax, relu, silu, softmax
from seqops_conformance.references.attention import (
    apply_rotary,
    causal_mask,
    multi_head_attention,
    padding_mask,
    scaled_dot_product_attention,
    sinusoidal_positional_encoding,
)
from seqops_conformance.references.clipping import clip_grad_norm, clip_grad_value
from seqops_conformance.references.decoding import filter_logits, greedy, sampling_support
from seqops_conformance.references.generative import (
    bernoulli_log_likelihood,
    elbo,
    gaussian_log_likelihood,
    iwae_bound,
    kl_mvn,
    kl_normal_normal,
    kl_normal_standard,
    reparameterize,
)
from seqops_conformance.references.losses import autoregressive_log_likelihood, cross_entropy
from seqops_conformance.references.pixelcnn import masked_conv2d, pixelcnn_mask
from seqops_conformance.references.recurrent import gru, gru_cell, lstm, lstm_cell, rnn, rnn_cell
from seqops_conformance.references.transformer import (
    feed_forward,
    gated_feed_forward,
    layer_norm,
    rms_norm,
    transformer_decoder_layer,
    transformer_encoder_layer,
)
from seqops_conformance.references.vision import (
    cyclic_shift,
    patch_merging,
    patchify,
    relative_position_index,
    shifted_window_mask,
    unpatchify,
    vit_embed,
    window_attention,
    window_partition,
    window_reverse,
)

__all__ = [
    "apply_rotary",
    "autoregressive_log_likelihood",
    "bernoulli_log_likelihood",
    "causal_mask",
    "clip_grad_norm",
    "clip_grad_value",
    "cross_entropy",
    "cyclic_shift",
    "elbo",
    "feed_forward",
    "filter_logits",
    "gated_feed_forward",
    "gaussian_log_likelihood",
    "gelu",
    "greedy",
    "gru",
    "gru_cell",
    "iwae_bound",
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
    "patch_merging",
    "patchify",
    "pixelcnn_mask",
    "relative_position_index",
    "relu",
    "reparameterize",
    "rms_norm",
    "rnn",
    "rnn_cell",
    "sampling_support",
    "scaled_dot_product_attention",
    "shifted_window_mask",
    "silu",
    "sinusoidal_positional_encoding",
    "softmax",
    "transformer_decoder_layer",
    "transformer_encoder_layer",
    "unpatchify",
    "vit_embed",
    "window_attention",
    "window_partition",
    "window_reverse",
]
