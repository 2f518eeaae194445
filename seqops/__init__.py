"""seqops: sequence- and generative-model operations written once against the Array API.

Every op accepts NumPy, CuPy, PyTorch and JAX arrays (and any array a backend plugin
registers) and returns arrays of the same library, device and dtype.
"""

from __future__ import annotations

from seqops import _builtin, convert, diagnostics, ops
from seqops._checking import PluginDisagreement
from seqops._dispatch import Explanation, candidates, declared_ops, explain, implementations, use
from seqops._plugins import SeqopsPluginWarning, checking_plugins, registry, set_check_plugins
from seqops.activations import gelu, log_softmax, relu, silu, softmax
from seqops.attention import (
    KVCache,
    MHAParams,
    Rotary,
    apply_rotary,
    causal_mask,
    kv_cache_init,
    multi_head_attention,
    padding_mask,
    scaled_dot_product_attention,
    sinusoidal_positional_encoding,
)
from seqops.clipping import clip_grad_norm, clip_grad_value
from seqops.config import (
    attention_memory_budget,
    attention_scores_fit,
    score_matrices_fit,
    set_attention_memory_budget,
)
from seqops.contract import Availability, Backend, Implementation, Limitation, check_rng, find_limitation
from seqops.decoding import decode, filter_logits, greedy, sample_logits
from seqops.generative import (
    bernoulli_log_likelihood,
    elbo,
    gaussian_log_likelihood,
    iwae_bound,
    kl_mvn,
    kl_normal_normal,
    kl_normal_standard,
    reparameterize,
)
from seqops.hookspecs import hookimpl
from seqops.losses import autoregressive_log_likelihood, cross_entropy
from seqops.pixelcnn import masked_conv2d, pixelcnn_mask
from seqops.recurrent import gru, gru_cell, lstm, lstm_cell, rnn, rnn_cell
from seqops.transformer import (
    DecoderLayerParams,
    EncoderLayerParams,
    feed_forward,
    gated_feed_forward,
    layer_norm,
    rms_norm,
    transformer_decoder_layer,
    transformer_encoder_layer,
)
from seqops.vision import (
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

__version__ = "0.1.0"


def backends() -> list[tuple[Backend, Availability]]:
    """Every registered backend with its availability (and the reason when unavailable).

    Returns
    -------
    list of (Backend, Availability)
        Highest precedence first; an :class:`Availability` is falsy when the backend cannot
        run here, its ``reason`` saying why.

    Examples
    --------
    >>> import seqops
    >>> dict((b.name, ok.available) for b, ok in seqops.backends())["numpy"]
    True
    """
    return [(backend, backend.availability()) for backend in registry.backends()]


def plugins() -> list[tuple[str, object]]:
    """The registered plugins, ``(name, module or object)``, the built-in ``portable`` included.

    Returns
    -------
    list of (str, object)
        Each plugin's name and the module or object registered.

    Examples
    --------
    >>> import seqops
    >>> "portable" in dict(seqops.plugins())
    True
    """
    return list(registry.pm.list_name_plugin())


def quarantined() -> dict[str, str]:
    """What this process stopped asking, and why: plugins by name, and single implementations
    as ``"plugin: implementation (op)"`` (see the failure policy in :mod:`seqops.hookspecs`).

    Returns
    -------
    dict of str to str
        What was quarantined, mapped to the reason (empty when nothing was).

    Examples
    --------
    >>> import seqops
    >>> seqops.quarantined()
    {}
    """
    found = dict(registry.quarantined)
    found.update(
        {
            f"{plugin}: {impl} ({op})": why
            for (plugin, impl, op), why in registry.quarantined_implementations.items()
        }
    )
    return found


def register_plugin(plugin: object, /, name: str | None = None) -> str:
    """Register a plugin object or module (what entry points do), returning its name.

    The implementation tables are rebuilt (the plugin's hooks are asked), so call it outside
    ``jax.jit`` and ``torch.compile``.

    Parameters
    ----------
    plugin : module or object
        Implements the hooks of :mod:`seqops.hookspecs` (marked with ``@seqops.hookimpl``).
    name : str, optional
        The name to register it under; default pluggy's name for it (a module's
        ``__name__``). A name already registered is a ``ValueError``.

    Returns
    -------
    str
        The name it was registered under (for :func:`unregister_plugin`).
    """
    return registry.register(plugin, name)


def unregister_plugin(name: str, /) -> None:
    """Unregister the plugin called ``name``; the implementation tables are rebuilt.

    Parameters
    ----------
    name : str
        A name :func:`register_plugin` returned or that :func:`plugins` lists.
    """
    registry.unregister(name)


# Load the plugins now, outside any tracing (torch.compile cannot trace the loading).
registry.load(_builtin)

__all__ = [
    "Availability",
    "Backend",
    "DecoderLayerParams",
    "EncoderLayerParams",
    "Explanation",
    "Implementation",
    "KVCache",
    "Limitation",
    "MHAParams",
    "PluginDisagreement",
    "Rotary",
    "SeqopsPluginWarning",
    "apply_rotary",
    "attention_memory_budget",
    "attention_scores_fit",
    "autoregressive_log_likelihood",
    "backends",
    "candidates",
    "check_rng",
    "checking_plugins",
    "bernoulli_log_likelihood",
    "causal_mask",
    "clip_grad_norm",
    "clip_grad_value",
    "convert",
    "cross_entropy",
    "cyclic_shift",
    "declared_ops",
    "decode",
    "diagnostics",
    "elbo",
    "explain",
    "feed_forward",
    "filter_logits",
    "find_limitation",
    "gated_feed_forward",
    "gaussian_log_likelihood",
    "gelu",
    "greedy",
    "gru",
    "gru_cell",
    "hookimpl",
    "implementations",
    "iwae_bound",
    "kl_mvn",
    "kl_normal_normal",
    "kl_normal_standard",
    "kv_cache_init",
    "layer_norm",
    "log_softmax",
    "lstm",
    "lstm_cell",
    "masked_conv2d",
    "multi_head_attention",
    "ops",
    "padding_mask",
    "patch_merging",
    "patchify",
    "plugins",
    "pixelcnn_mask",
    "quarantined",
    "register_plugin",
    "relative_position_index",
    "relu",
    "reparameterize",
    "rms_norm",
    "rnn",
    "rnn_cell",
    "sample_logits",
    "scaled_dot_product_attention",
    "score_matrices_fit",
    "set_attention_memory_budget",
    "set_check_plugins",
    "shifted_window_mask",
    "silu",
    "sinusoidal_positional_encoding",
    "softmax",
    "transformer_decoder_layer",
    "transformer_encoder_layer",
    "unpatchify",
    "unregister_plugin",
    "use",
    "vit_embed",
    "window_attention",
    "window_partition",
    "window_reverse",
]
