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
    causal_mask,
    multi_head_attention,
    padding_mask,
    scaled_dot_product_attention,
    sinusoidal_positional_encoding,
)
from seqops.clipping import clip_grad_norm, clip_grad_value  # noqa: E402
from seqops.decoding import decode, greedy, sample_logits  # noqa: E402
from seqops.hookspecs import Implementation, hookimpl
from seqops.losses import autoregressive_log_likelihood, cross_entropy  # noqa: E402
from seqops.recurrent import lstm, lstm_cell, rnn, rnn_cell  # noqa: E402
from seqops.transformer import (  # noqa: E402
    EncoderLayerParams,
    feed_forward,
    layer_norm,
    transformer_encoder_layer,
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
    "MHAParams",
    "SeqopsPluginWarning",
    "autoregressive_log_likelihood",
    "backends",
    "causal_mask",
    "clip_grad_norm",
    "clip_grad_value",
    "convert",
    "cross_entropy",
    "decode",
    "diagnostics",
    "explain",
    "feed_forward",
    "greedy",
    "hookimpl",
    "layer_norm",
    "log_softmax",
    "lstm",
    "lstm_cell",
    "multi_head_attention",
    "padding_mask",
    "register_plugin",
    "rnn",
    "rnn_cell",
    "sample_logits",
    "scaled_dot_product_attention",
    "sinusoidal_positional_encoding",
    "softmax",
    "transformer_encoder_layer",
    "unregister_plugin",
    "use",
]
