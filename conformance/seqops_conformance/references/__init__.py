"""Float64 NumPy reference implementations of the seqops attention family.

Each function follows the formula in ``API.md`` as directly as possible: explicit
loops over rows, heads and positions, with ``math.fsum`` for normalisers. They are
deliberately slow and share no code with the optimized library, so that the
conformance suite compares seqops against an independent statement of the maths.
Inputs are cast to float64; the sizes used in tests are small.

One module per op family, named like the library's; this package re-exports them all.
"""

from seqops_conformance.references.activations import log_softmax, softmax
from seqops_conformance.references.attention import (
    causal_mask,
    multi_head_attention,
    padding_mask,
    scaled_dot_product_attention,
    sinusoidal_positional_encoding,
)
from seqops_conformance.references.clipping import clip_grad_norm, clip_grad_value
from seqops_conformance.references.decoding import greedy, sampling_support
from seqops_conformance.references.generative import (
    bernoulli_log_likelihood,
    elbo,
    gaussian_log_likelihood,
    kl_mvn,
    kl_normal_normal,
    kl_normal_standard,
    reparameterize,
)
from seqops_conformance.references.losses import autoregressive_log_likelihood, cross_entropy
from seqops_conformance.references.pixelcnn import masked_conv2d, pixelcnn_mask
from seqops_conformance.references.recurrent import lstm, lstm_cell, rnn, rnn_cell
from seqops_conformance.references.transformer import feed_forward, layer_norm, transformer_encoder_layer
from seqops_conformance.references.vision import (
    cyclic_shift,
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
