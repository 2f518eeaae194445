"""Language-modelling losses: cross-entropy with class targets, sequence log-likelihood."""

from __future__ import annotations

from seqops import ops
from seqops._dispatch import public, resolve
from seqops._lib import validate as check
from seqops._lib.typing import Array, ArrayT
from seqops._lib.values import concrete_bool
from seqops.contract import Backend


@public(ops.cross_entropy)
def cross_entropy(
    logits: ArrayT,
    targets: Array,
    /,
    *,
    axis: int = -1,
    weight: Array | None = None,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> ArrayT:
    """Cross-entropy of class-index targets, as ``torch.nn.functional.cross_entropy``.

    With ``p = softmax(logits)`` along ``axis``, ``C`` classes and ``w = weight`` (all
    ones by default), the loss of one target ``t`` is::

        (1 - ε) · w[t] · (-log p[t])  +  ε/C · Σ_c w[c] · (-log p[c])

    (``ε = label_smoothing``), and 0 where ``t == ignore_index``. This is torch's formula,
    weights included in the smoothing term.

    Parameters
    ----------
    logits : array, shape ``(..., C, ...)``, real floating
        Unnormalised scores; the class axis is ``axis``.
    targets : integer array, shape ``logits.shape`` without ``axis``
        Class indices in ``[0, C)`` (or ``ignore_index``). Probability targets are not
        supported.
    axis : int
        The class axis. **Last by default**; torch's layout ``(N, C, d1, ...)`` is ``axis=1``.
    weight : array, shape ``(C,)``, optional
        Per-class weights, same dtype as ``logits``.
    ignore_index : int, optional
        Targets equal to it contribute 0 and are left out of the mean. Unlike torch
        (``-100``), nothing is ignored by default.
    label_smoothing : float in ``[0, 1]``
        The share of the target's probability spread uniformly over the ``C`` classes, as
        torch (``0``: none).
    reduction : {"mean", "sum", "none"}
        ``"mean"``: the sum of the losses divided by ``Σ w[t]`` over the targets that are
        not ignored (the count of them without ``weight``), as torch; NaN when every
        target is ignored (0/0, as torch). ``"none"``: one loss per target.

    Returns
    -------
    loss : array, shape ``()`` (``targets.shape`` for ``reduction="none"``)
        Dtype of ``logits`` (half precision is computed in float32).

    Raises
    ------
    ValueError
        For a target outside ``[0, C)`` that is not ``ignore_index``, whenever the values
        can be read (the check reads one boolean back: a device synchronisation on a GPU).
        They cannot under ``jax.jit``, ``jax.vmap`` or ``torch.compile``: there such a
        target gives a NaN loss instead (never a silent wrong number).
    TypeError
        For non-integer targets.

    Examples
    --------
    >>> import numpy as np, seqops
    >>> logits = np.log(np.array([[0.5, 0.25, 0.25], [0.25, 0.25, 0.5]]))
    >>> float(seqops.cross_entropy(logits, np.array([0, 2])))  # -log 0.5
    0.6931471805599453
    >>> seqops.cross_entropy(logits, np.array([0, -1]), ignore_index=-1, reduction="none").tolist()
    [0.6931471805599453, 0.0]
    """
    backend = resolve(logits, targets, weight, names=("logits", "targets", "weight"), required=2)
    xp = backend.namespace()
    check.require_floating(xp, logits=logits, weight=weight)
    check.require_same_dtype(logits=logits, weight=weight)
    check.require_integer(xp, "targets", targets)
    axis = _class_axis(logits, axis)
    num_classes = logits.shape[axis]
    expected = check.shape_of(logits)[:axis] + check.shape_of(logits)[axis + 1 :]
    if check.shape_of(targets) != expected:
        msg = (
            f"`targets` must have the shape of logits without the class axis {axis}: "
            f"logits {check.shape_of(logits)} needs targets {expected}; got {check.shape_of(targets)}"
        )
        raise ValueError(msg)
    check.require_shape("weight", weight, (num_classes,))
    if ignore_index is not None:
        ignore_index = check.integer("ignore_index", ignore_index, minimum=None)
    smoothing = check.number("label_smoothing", label_smoothing)
    if not 0.0 <= smoothing <= 1.0:
        msg = f"label_smoothing must be in [0, 1]; got {label_smoothing}"
        raise ValueError(msg)
    check.require_choice("reduction", reduction, ("mean", "sum", "none"))
    _check_targets(backend, targets, num_classes, ignore_index)
    return ops.cross_entropy.dispatch(  # type: ignore[no-any-return]
        backend,
        xp.moveaxis(logits, axis, -1) if axis != logits.ndim - 1 else logits,
        targets,
        weight=weight,
        ignore_index=ignore_index,
        label_smoothing=smoothing,
        reduction=reduction,
    )


@public(ops.autoregressive_log_likelihood)
def autoregressive_log_likelihood(logits: ArrayT, targets: Array, /, *, axis: int = -1) -> ArrayT:
    """``Σ_t log p(x_t | x_<t)`` per sequence: the log-likelihood a language model gives.

    **Shape contract**: ``logits[..., t, :]`` is the model's prediction *for*
    ``targets[..., t]``, i.e. the targets are already shifted. For a sequence ``x_0..x_T``
    and a causal model run on ``x_0..x_{T-1}``, pass its logits and ``targets = x_1..x_T``.

    Parameters
    ----------
    logits : array, shape ``(..., T, V)``, real floating
        Scores over a vocabulary of ``V`` tokens; ``axis`` is the vocabulary axis (last
        by default), the time axis is the last of the others.
    targets : integer array, shape ``(..., T)``
        Token ids in ``[0, V)``.
    axis : int
        The vocabulary axis of ``logits``.

    Returns
    -------
    log_likelihood : array, shape ``(...)``
        Dtype of ``logits``; ``-Σ`` of the per-token cross-entropies (no mean, no
        ignoring: mask padded positions with :func:`cross_entropy` and ``reduction="none"``).
        Out-of-range targets raise ``ValueError`` as in :func:`cross_entropy`.

    Examples
    --------
    >>> import numpy as np, seqops
    >>> logits = np.log(np.array([[[0.5, 0.5], [0.25, 0.75]]]))  # (batch 1, T 2, V 2)
    >>> ll = seqops.autoregressive_log_likelihood(logits, np.array([[0, 1]]))  # [log(0.5·0.75)]
    >>> ll.shape, np.round(ll, 6).tolist()
    ((1,), [-0.980829])
    """
    backend = resolve(logits, targets, names=("logits", "targets"), required=2)
    xp = backend.namespace()
    check.require_floating(xp, logits=logits)
    check.require_integer(xp, "targets", targets)
    check.require_ndim("logits", logits, 2, "(..., T, V)")
    axis = _class_axis(logits, axis)
    if axis != logits.ndim - 1:
        logits = xp.moveaxis(logits, axis, -1)
    if check.shape_of(targets) != check.shape_of(logits)[:-1]:
        msg = (
            f"`targets` (..., T) must match logits (..., T, V) without the vocabulary axis; "
            f"got logits {check.shape_of(logits)} (vocabulary last) and targets {check.shape_of(targets)}"
        )
        raise ValueError(msg)
    _check_targets(backend, targets, logits.shape[-1], None)
    return ops.autoregressive_log_likelihood.dispatch(backend, logits, targets)  # type: ignore[no-any-return]


def _class_axis(logits: Array, axis: int) -> int:
    axis = check.integer("axis", axis, minimum=None)
    if not -logits.ndim <= axis < logits.ndim:
        msg = f"axis {axis} is out of range for logits of shape {check.shape_of(logits)}"
        raise ValueError(msg)
    return axis % logits.ndim


def _check_targets(backend: Backend, targets: Array, num_classes: int, ignore_index: int | None) -> None:
    """Raise for a target outside ``[0, num_classes)`` (other than ``ignore_index``), if readable."""
    xp = backend.namespace()
    bad = (targets < 0) | (targets >= num_classes)
    if ignore_index is not None:
        bad = bad & (targets != ignore_index)
    if not concrete_bool(backend, xp.any(bad)):
        return
    values = backend.to_numpy(targets)[backend.to_numpy(bad)]
    shown = ", ".join(str(v) for v in sorted(set(values.tolist()))[:5])
    ignoring = "" if ignore_index is None else f" or ignore_index={ignore_index}"
    msg = (
        f"`targets` must be class indices in [0, {num_classes}){ignoring}; "
        f"got {values.size} out-of-range value(s): {shown}"
    )
    raise ValueError(msg)
