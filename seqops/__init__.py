"""seqops: sequence- and generative-model operations written once against the Array API.

Every op accepts NumPy, CuPy, PyTorch and JAX arrays (and any array a backend plugin
registers) and returns arrays of the same library, device and dtype.
"""

from __future__ import annotations

# Backends are plugins importing `Backend`/`hookimpl` from here: import the ops after.
from seqops import convert, diagnostics  # noqa: E402
from seqops._dispatch import Explanation, explain, use
from seqops._lib.backend import Availability, Backend
from seqops._plugins import SeqopsPluginWarning, registry
from seqops.activations import log_softmax, softmax  # noqa: E402
from seqops.attention import (  # noqa: E402
    MHAParams,
    attention_memory_budget,
    causal_mask,
    multi_head_attention,
    padding_mask,
    scaled_dot_product_attention,
    set_attention_memory_budget,
    sinusoidal_positional_encoding,
)
from seqops.clipping import clip_grad_norm, clip_grad_value  # noqa: E402
from seqops.decoding import decode, greedy, sample_logits  # noqa: E402
from seqops.generative import (  # noqa: E402
    bernoulli_log_likelihood,
    elbo,
    gaussian_log_likelihood,
    kl_mvn,
    kl_normal_normal,
    kl_normal_standard,
    reparameterize,
)
from seqops.hookspecs import Implementation, Limitation, hookimpl
from seqops.losses import autoregressive_log_likelihood, cross_entropy  # noqa: E402
from seqops.pixelcnn import masked_conv2d, pixelcnn_mask  # noqa: E402
from seqops.recurrent import lstm, lstm_cell, rnn, rnn_cell  # noqa: E402
from seqops.transformer import (  # noqa: E402
    EncoderLayerParams,
    feed_forward,
    layer_norm,
    transformer_encoder_layer,
)
from seqops.vision import (  # noqa: E402
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

__version__ = "0.1.0"


def backends() -> list[tuple[Backend, Availability]]:
    """Every registered backend with its availability (and the reason when unavailable).

    Examples
    --------
    >>> import seqops
    >>> dict((b.name, ok.available) for b, ok in seqops.backends())["numpy"]
    True
    """
    return [(backend, backend.availability()) for backend in registry.backends()]


def register_plugin(plugin: object, /, name: str | None = None) -> str:
    """Register a plugin object or module (what entry points do), returning its name."""
    return registry.register(plugin, name)


def unregister_plugin(name: str, /) -> None:
    """Unregister the plugin called ``name``."""
    registry.unregister(name)


# Load the plugins now, outside any tracing (torch.compile cannot trace the loading).
registry.backends()

__all__ = [
    "Availability",
    "Backend",
    "EncoderLayerParams",
    "Explanation",
    "Implementation",
    "Limitation",
    "MHAParams",
    "SeqopsPluginWarning",
    "attention_memory_budget",
    "autoregressive_log_likelihood",
    "backends",
    "bernoulli_log_likelihood",
    "causal_mask",
    "clip_grad_norm",
    "clip_grad_value",
    "convert",
    "cross_entropy",
    "cyclic_shift",
    "decode",
    "diagnostics",
    "elbo",
    "explain",
    "feed_forward",
    "gaussian_log_likelihood",
    "greedy",
    "hookimpl",
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
    "register_plugin",
    "relative_position_index",
    "reparameterize",
    "rnn",
    "rnn_cell",
    "sample_logits",
    "scaled_dot_product_attention",
    "set_attention_memory_budget",
    "shifted_window_mask",
    "sinusoidal_positional_encoding",
    "softmax",
    "transformer_encoder_layer",
    "unpatchify",
    "unregister_plugin",
    "use",
    "vit_embed",
    "window_attention",
    "window_partition",
    "window_reverse",
]
