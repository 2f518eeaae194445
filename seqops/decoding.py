"""Decoding: greedy choice, the logits filter (temperature, top-k, top-p), filtered sampling and
the decode loop."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from seqops import ops
from seqops._dispatch import public, resolve
from seqops._lib import validate as check
from seqops._lib.typing import Array, ArrayT


@public(ops.greedy)
def greedy(logits: Array, /) -> Array:
    """The most probable token: ``argmax`` over the last axis (the first of equal maxima).

    Parameters
    ----------
    logits : array, shape ``(..., V)``, real floating
        Scores over a vocabulary of ``V`` tokens (probabilities or log-probabilities too).

    Returns
    -------
    ids : integer array, shape ``(...)``
        The library's default index dtype, on the device of ``logits``.

    Examples
    --------
    >>> import numpy as np, seqops
    >>> seqops.greedy(np.array([[0.1, 2.0, -1.0], [3.0, 0.0, 3.0]])).tolist()
    [1, 0]
    """
    backend = _check_logits(logits)
    return ops.greedy.dispatch(backend, logits)


@public(ops.filter_logits)
def filter_logits(
    logits: ArrayT,
    /,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    min_tokens_to_keep: int = 1,
) -> ArrayT:
    """The logits :func:`sample_logits` samples from: temperature, top-k and top-p applied,
    ``-inf`` at the removed tokens.

    Same rules, in the same order, as :func:`sample_logits` (which dispatches this op):
    ``logits / temperature``, then top-k (ties with the ``k``-th value kept), then top-p on
    the probabilities of what top-k kept (a group of equal logits kept or dropped as a whole;
    the ``min_tokens_to_keep`` most probable always kept). Chained Hugging Face
    ``TemperatureLogitsWarper``, ``TopKLogitsWarper`` and ``TopPLogitsWarper`` keep the same
    tokens, except for a group of equal logits at top-p's boundary (we keep it whole) and a
    cumulative probability within rounding of ``1 - top_p`` (see :func:`sample_logits`).

    Parameters
    ----------
    logits : array, shape ``(..., V)``, real floating
        Unnormalised scores over a vocabulary of ``V`` tokens.
    temperature : float > 0
        Divides the logits first.
    top_k : int >= 1, optional
        Keep the tokens whose logit is ``>=`` the ``k``-th largest (ties kept), ``k =
        min(max(top_k, min_tokens_to_keep), V)``; ``None``: no top-k filter.
    top_p : float in ``(0, 1]``, optional
        Keep the smallest set of most probable tokens whose probability reaches ``top_p``
        (nucleus filtering, see :func:`sample_logits`); ``None``: no top-p filter.
    min_tokens_to_keep : int >= 1
        The most probable tokens always kept, by both filters.

    Returns
    -------
    filtered : array, shape ``(..., V)``, dtype of ``logits``
        ``logits / temperature`` where kept, ``-inf`` elsewhere (computed in float32 for
        half precision). ``softmax(filtered)`` is the distribution :func:`sample_logits` draws from.

    Examples
    --------
    >>> import numpy as np, seqops
    >>> logits = np.log(np.array([0.5, 0.3, 0.1, 0.1]))
    >>> np.exp(seqops.filter_logits(logits, top_p=0.7)).round(2).tolist()  # 0.5 < 0.7 <= 0.8
    [0.5, 0.3, 0.0, 0.0]
    >>> seqops.filter_logits(np.array([1.0, 3.0, 3.0, 2.0]), top_k=1).tolist()  # the tie is kept
    [-inf, 3.0, 3.0, -inf]
    >>> seqops.filter_logits(np.array([1.0, 2.0]), temperature=0.5).tolist()
    [2.0, 4.0]
    """
    backend = _check_logits(logits)
    options = _sampling_options(temperature, top_k, top_p, min_tokens_to_keep)
    return ops.filter_logits.dispatch(backend, logits, **options)


@public(ops.sample_logits)
def sample_logits(
    logits: Array,
    /,
    *,
    rng: Any,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    min_tokens_to_keep: int = 1,
) -> Array:
    """Sample one token per row of ``logits``, after temperature, top-k and top-p filtering.

    The filtering is :func:`filter_logits` (dispatched: a fast path of the filter reaches
    sampling). The filters apply in this order, as Hugging Face's warpers do:

    1. ``logits / temperature``;
    2. **top-k**: keep every token whose logit is ``>=`` the ``k``-th largest, with
       ``k = min(max(top_k, min_tokens_to_keep), V)`` -- ties with the ``k``-th value are
       all kept, so more than ``k`` tokens may remain;
    3. **top-p** (nucleus), on the probabilities of what top-k kept: keep a token iff the
       probability mass of the tokens *strictly* more probable than it is ``< top_p``;
       the ``min_tokens_to_keep`` most probable tokens are always kept.

    Top-p is Hugging Face's ``TopPLogitsWarper`` rule (drop a token when the ascending
    cumulative probability up to it is ``<= 1 - top_p``), evaluated the same way (same
    order of summation, same comparison, in the compute dtype), so both keep the same
    tokens, the one at the boundary included as soon as its cumulative probability is a
    few ulps away from ``1 - top_p``. Closer than that, the last bit of the softmax decides,
    and it differs between libraries (torch's fused ``softmax`` kernel and the portable
    ``exp(z - max) / sum`` round differently): at an exact boundary either may keep the
    token the other drops. Beyond that they differ only at ties: Hugging Face's cumulative
    sum runs through a group of equal logits in sort order and may keep part of the group;
    here a group of equal logits is kept or dropped as a whole (its mass counts as "not
    strictly more probable" for each of its members), which keeps a superset of Hugging
    Face's tokens and does not depend on the sort order. ``top_p=1.0`` keeps everything.

    Parameters
    ----------
    logits : array, shape ``(..., V)``, real floating
        Unnormalised scores over a vocabulary of ``V`` tokens.
    rng : int or native generator/key
        Randomness (see *Randomness* in ``API.md``); the same ``rng`` gives the same tokens
        on the same backend and device. Inside ``jax.jit``, pass a JAX key.
    temperature : float > 0
        Divides the logits first.
    top_k : int >= 1, optional
        The top-k filter (rule 2 above); ``None``: none.
    top_p : float in ``(0, 1]``, optional
        The top-p filter (rule 3 above); ``None``: none.
    min_tokens_to_keep : int >= 1
        Applies to both filters.

    Returns
    -------
    ids : integer array, shape ``(...)``
        Drawn by the Gumbel-max trick (``argmax(logits + Gumbel noise)``, noise from the
        backend's uniform draws; float32 for half-precision logits).

    Examples
    --------
    >>> import numpy as np, seqops
    >>> logits = np.log(np.array([[0.5, 0.3, 0.2]]))
    >>> seqops.sample_logits(logits, rng=0, top_p=0.5).tolist()  # only token 0 survives
    [0]
    """
    backend = _check_logits(logits)
    if rng is None:
        msg = "sample_logits needs rng= (an integer seed or the backend's generator/key)"
        raise ValueError(msg)
    options = _sampling_options(temperature, top_k, top_p, min_tokens_to_keep)
    return ops.sample_logits.dispatch(backend, logits, rng=rng, **options)


@public(ops.decode)
def decode(
    step: Callable[[Array, Any], tuple[Array, Any]],
    state: Any,
    first_tokens: ArrayT,
    /,
    *,
    max_new_tokens: int,
    strategy: str = "greedy",
    rng: Any = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    min_tokens_to_keep: int = 1,
    eos_token_id: int | Sequence[int] | None = None,
    pad_token_id: int | None = None,
    prompt: Array | None = None,
) -> ArrayT:
    """Generate up to ``max_new_tokens`` tokens with a user step function, as Hugging Face's
    ``generate`` does with a model.

    Each step calls ``logits, state = step(tokens, state)`` with the tokens of the
    previous step (``first_tokens`` at the first: typically the last prompt token, the
    prompt itself having been fed through the model to build ``state``), then chooses the
    next tokens from ``logits`` with :func:`greedy` or :func:`sample_logits`.

    Parameters
    ----------
    step : callable ``(tokens (batch,), state) -> (logits (batch, V), state)``
        ``state`` is anything (a KV cache, an RNN state); it may change shape between
        steps. ``logits`` must be floating, of the library of ``first_tokens``.
    state : object
        The initial state, passed unchanged to the first call.
    first_tokens : integer array, shape ``(batch,)``
        (Any shape ``(...)`` works; ``logits`` are then ``(..., V)``.)
    max_new_tokens : int >= 0
        Number of steps. The loop is a Python loop: under ``jax.jit`` it unrolls.
    strategy : {"greedy", "sample"}
        ``"sample"`` needs ``rng`` and takes the options of :func:`sample_logits`;
        ``"greedy"`` rejects them.
    rng : int or native generator/key
        Split into one rng per step with the backend's ``split_rng`` (JAX:
        ``jax.random.split``), so steps draw independently and the same ``rng`` gives the
        same tokens.
    temperature : float > 0
        With ``"sample"``: as in :func:`sample_logits`.
    top_k : int >= 1, optional
        With ``"sample"``: as in :func:`sample_logits`.
    top_p : float in ``(0, 1]``, optional
        With ``"sample"``: as in :func:`sample_logits`.
    min_tokens_to_keep : int >= 1
        With ``"sample"``: as in :func:`sample_logits`.
    eos_token_id : int or sequence of int, optional
        End-of-sequence tokens. Once a row emits one, its later tokens are
        ``pad_token_id`` (``step`` still receives them: shapes stay fixed). Eagerly, the
        loop stops after the step at which every row has finished (one host read per
        step); under a trace (``jax.jit``, ``torch.compile``) all ``max_new_tokens`` steps
        run.
    pad_token_id : int, optional
        What finished rows emit; default the first of ``eos_token_id``.
    prompt : integer array, shape ``(batch, P)``, optional
        Put in front of the new tokens in the result, as ``generate`` returns them (the
        caller has already run the prompt through its model to build ``state``;
        ``first_tokens`` is usually ``prompt[:, -1]``).

    Returns
    -------
    ids : integer array, shape ``(batch, [P +] T)``
        The tokens of ``prompt`` (if given) then those generated, ``T <= max_new_tokens``
        the steps run; in the dtype and device of ``first_tokens``.

    Notes
    -----
    Side by side with ``model.generate(input_ids, max_new_tokens=N, eos_token_id=E,
    pad_token_id=P, do_sample=False)``: ``decode(step, state, input_ids[:, -1],
    max_new_tokens=N, eos_token_id=E, pad_token_id=P, prompt=input_ids)`` where ``step``
    runs the model on one token with its cache and ``state`` is the cache after the prompt
    (prefilled with all of ``input_ids`` but the last token, which ``step`` then feeds).

    Examples
    --------
    >>> import numpy as np, seqops
    >>> table = np.log(np.array([[0.1, 0.9], [0.8, 0.2]]))  # next-token logits per token
    >>> seqops.decode(lambda tok, s: (table[tok], s), None, np.array([0]), max_new_tokens=4).tolist()
    [[1, 0, 1, 0]]
    """
    if not callable(step):
        msg = f"step must be a callable (tokens, state) -> (logits, state); got {type(step).__name__}"
        raise TypeError(msg)
    backend = resolve(first_tokens, names=("first_tokens",))
    check.require_integer(backend.namespace(), "first_tokens", first_tokens)
    steps = check.integer("max_new_tokens", max_new_tokens, minimum=0)
    check.require_choice("strategy", strategy, ("greedy", "sample"))
    if strategy == "sample":
        if rng is None:
            msg = "strategy='sample' needs rng= (an integer seed or the backend's generator/key)"
            raise ValueError(msg)
        options = _sampling_options(temperature, top_k, top_p, min_tokens_to_keep)
    else:
        if (
            temperature != 1.0
            or top_k is not None
            or top_p is not None
            or min_tokens_to_keep != 1
            or type(min_tokens_to_keep) is not int
        ):
            msg = (
                "temperature, top_k, top_p and min_tokens_to_keep apply to strategy='sample'; got them "
                f"with strategy='greedy' (temperature={temperature!r}, top_k={top_k!r}, top_p={top_p!r}, "
                f"min_tokens_to_keep={min_tokens_to_keep!r})"
            )
            raise ValueError(msg)
        check.rng(rng)  # not drawn from
        options = _GREEDY
    eos: tuple[int, ...] | None = None
    if eos_token_id is not None:
        if isinstance(eos_token_id, (list, tuple)):
            eos = tuple(check.integer(f"eos_token_id[{i}]", e, minimum=0) for i, e in enumerate(eos_token_id))
        else:
            eos = (check.integer("eos_token_id", eos_token_id, minimum=0),)
        if not eos:
            msg = "eos_token_id must be an int or a non-empty sequence of ints; got an empty sequence"
            raise ValueError(msg)
    if pad_token_id is not None:
        pad_token_id = check.integer("pad_token_id", pad_token_id, minimum=0)
        if eos is None:
            msg = "pad_token_id applies after an eos_token_id: pass eos_token_id too"
            raise ValueError(msg)
    elif eos is not None:
        pad_token_id = eos[0]
    if prompt is not None:
        resolve(first_tokens, prompt, names=("first_tokens", "prompt"), required=2)
        check.require_integer(backend.namespace(), "prompt", prompt)
        if check.shape_of(prompt)[:-1] != check.shape_of(first_tokens) or prompt.ndim == 0:
            msg = (
                f"prompt must have shape (*first_tokens.shape, P) = {(*check.shape_of(first_tokens), 'P')}; "
                f"got {check.shape_of(prompt)}"
            )
            raise ValueError(msg)
    return ops.decode.dispatch(  # type: ignore[no-any-return]
        backend,
        _checked(step, tuple(first_tokens.shape), backend),
        state,
        first_tokens,
        max_new_tokens=steps,
        strategy=strategy,
        rng=rng,
        eos_token_id=eos,
        pad_token_id=pad_token_id,
        prompt=prompt,
        **options,
    )


_GREEDY = {"temperature": 1.0, "top_k": None, "top_p": None, "min_tokens_to_keep": 1}
"""The sampling options of ``strategy="greedy"`` (unused by it, passed as the contract says)."""


def _checked(step: Callable[..., Any], tokens_shape: tuple[int, ...], backend: Any) -> Callable[..., Any]:
    """``step``, checking the logits of each call (the validation of what the user's step returns)."""
    calls = [0]

    def checked(tokens: Array, state: Any) -> tuple[Array, Any]:
        logits, state = step(tokens, state)
        _check_step_logits(logits, tokens_shape, backend, calls[0])
        calls[0] += 1
        return logits, state

    return checked


def _check_step_logits(logits: Array, tokens_shape: tuple[int, ...], backend: Any, t: int) -> None:
    """The logits a step function returned: floating, ``(*tokens_shape, V)``, same library."""
    found = resolve(logits, names=(f"logits returned by step {t}",))
    if found.name != backend.name:
        msg = (
            f"step {t} returned logits of library {found.library}, but first_tokens are "
            f"{backend.library}: the step function must stay in one library"
        )
        raise TypeError(msg)
    check.require_floating(backend.namespace(), **{f"logits of step {t}": logits})
    shape = check.shape_of(logits)
    if shape[:-1] != tokens_shape or not shape or shape[-1] == 0:
        msg = f"step {t} must return logits of shape (*tokens.shape, V) = {(*tokens_shape, 'V')}; got {shape}"
        raise ValueError(msg)


def _check_logits(logits: Array) -> Any:
    backend = resolve(logits, names=("logits",))
    check.require_floating(backend.namespace(), logits=logits)
    check.require_ndim("logits", logits, 1, "(..., V)")
    if logits.shape[-1] == 0:
        msg = f"`logits` must have at least one token along the last axis; got shape {check.shape_of(logits)}"
        raise ValueError(msg)
    return backend


def _sampling_options(
    temperature: float, top_k: int | None, top_p: float | None, min_tokens_to_keep: int
) -> dict[str, Any]:
    """The filter options of :func:`filter_logits`, :func:`sample_logits` and :func:`decode`,
    checked and normalised (one set of rules for the three)."""
    temperature = check.number("temperature", temperature)
    if not temperature > 0.0:
        msg = f"temperature must be > 0 (use greedy() for temperature 0); got {temperature}"
        raise ValueError(msg)
    if top_k is not None:
        top_k = check.integer("top_k", top_k, minimum=1)
    if top_p is not None:
        top_p = check.number("top_p", top_p)
        if not 0.0 < top_p <= 1.0:
            msg = f"top_p must be in (0, 1]; got {top_p}"
            raise ValueError(msg)
    return {
        "temperature": temperature,
        "top_k": top_k,
        "top_p": top_p,
        "min_tokens_to_keep": check.integer("min_tokens_to_keep", min_tokens_to_keep, minimum=1),
    }
