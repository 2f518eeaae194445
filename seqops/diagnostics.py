"""Diagnostics: how far back gradients reach through seqops' recurrent cells.

:func:`gradient_flow` measures ``‖∂h_T/∂state_k‖`` for an Elman RNN and an LSTM with the
backend's own autodiff (torch autograd, ``jax.vjp``) running through :func:`seqops.rnn_cell`
and :func:`seqops.lstm_cell`; :func:`plot_gradient_flow` draws both curves (``seqops demo
gradient-flow``). The vanishing RNN curve next to the slowly decaying LSTM curve is the
reason LSTMs exist, shown rather than told.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from seqops._lib.placement import helper_device
from seqops._lib.typing import Array
from seqops._plugins import registry
from seqops.recurrent import lstm_cell, rnn_cell

Scan = Callable[[Callable[[Any, Array], tuple[Any, Array]], Any, Array], tuple[Any, Array]]
CELLS = ("rnn", "lstm")
WRT = ("state", "h", "c")

# pullback(f, point, args, cot): the vector-Jacobian product cot · ∂f(point, *args)/∂point.
Pullback = Callable[[Callable[..., Array], np.ndarray, tuple[np.ndarray | None, ...], np.ndarray], np.ndarray]


def gradient_flow(
    cell: str,
    /,
    *,
    steps: int = 100,
    hidden_size: int = 32,
    input_size: int = 8,
    batch: int = 1,
    weights: tuple[Any, Any, Any] | None = None,
    inputs: Any | None = None,
    backend: str = "torch",
    rng: int | np.random.Generator = 0,
    forget_bias: float = 1.0,
    wrt: str = "state",
) -> np.ndarray:
    r"""Norm of the Jacobian of the last hidden state w.r.t. the state ``d`` steps earlier.

    The cell runs ``T = steps`` steps from a zero state on inputs ``x_t ~ N(0, 1)`` (or the
    given ``inputs``). Write ``s_k`` for the recurrent state after step ``k``: ``h_k`` for the
    RNN, the pair ``(h_k, c_k)`` for the LSTM. For each example ``b`` of the batch (examples
    do not interact), ``J_k = ∂h_T/∂s_k`` is the ``H × H`` (RNN) or ``H × 2H`` (LSTM) Jacobian
    of the last hidden state w.r.t. that state, the inputs held fixed, and

    ``flow[d] = mean_b ‖J_{T-d}‖_F``  for ``d = T - k = 0, 1, ..., T - 1``,

    the Frobenius norm averaged over the batch. ``flow[0] = sqrt(H)`` (``J_T`` selects
    ``h_T``). Per example, ``‖J_k‖_F`` bounds the gradient any loss on ``h_T`` sends back to
    step ``k``: ``‖∂L/∂s_k‖ ≤ ‖∂L/∂h_T‖ · ‖J_k‖_F``.

    Why the full state ``(h_k, c_k)`` for the LSTM: ``s_k`` is everything step ``k + 1``
    reads, so ``∂L/∂s_k`` is *all* the error signal that reaches step ``k`` (and, through
    the gates of step ``k``, the weights); for the RNN ``h_k`` is the whole state, so the
    two curves measure the same thing. The ``c`` block is the "constant error carousel":
    ``c_{k+1} = f ⊙ c_k + i ⊙ g`` is additive, its direct Jacobian is ``diag(f_{k+1})``, and
    the gradient decays about as fast as the product of forget gates rather than through a
    squashing nonlinearity and ``w_hh`` at every step. ``∂h_T/∂h_k`` alone (``c_k`` held
    fixed) reaches the carousel only through the gates of step ``k + 1`` and leaves out the
    error arriving in ``c_k``, so it understates what the LSTM carries (2-3× at the default init).
    ``wrt="h"`` / ``wrt="c"`` give either block (for the RNN ``"h"`` equals ``"state"``); per
    example ``state² = h² + c²``.

    Computed with the framework's own reverse mode through :func:`seqops.rnn_cell` /
    :func:`seqops.lstm_cell`, in float64 (JAX: inside ``jax.enable_x64``), looping with the
    backend's ``scan`` (``lax.scan`` on JAX): a zero perturbation ``ε_k`` is added to every
    state (``s_k + ε_k``), and one vector-Jacobian product of ``h_T`` w.r.t. all ``ε`` gives
    ``∂h_T/∂ε_k = ∂h_T/∂s_k`` for every ``k`` at once. The ``H`` rows of each Jacobian come
    from ``H`` independent copies of the batch along a leading "probe" axis, each seeded with
    one basis cotangent: the cost is about ``H`` forward passes and ``T·H·B·(I + S)`` floats
    (``S`` the state size).

    Parameters
    ----------
    cell : {"rnn", "lstm"}
        Elman tanh RNN or LSTM (gates i, f, o, g, as :func:`seqops.lstm_cell`).
    steps : int
        Sequence length ``T`` (at least 1; read from ``inputs`` when given).
    hidden_size, input_size : int
        ``H`` and ``I`` of the random weights (read from ``weights`` when given).
    batch : int
        Number of independent sequences averaged over (read from ``inputs`` when given).
    weights : tuple ``(w_ih, w_hh, b)``, optional
        In seqops orientation, any library (converted to float64): ``(I, H)``, ``(H, H)``,
        ``(H,)`` for the RNN and ``(I, 4H)``, ``(H, 4H)``, ``(4H,)`` for the LSTM; ``b`` may
        be None. Default: random, drawn from ``rng`` as torch initialises ``nn.RNN`` /
        ``nn.LSTM``: every entry uniform in ``(-1/sqrt(H), 1/sqrt(H))``, ``b`` the sum of two
        such draws (torch's ``bias_ih + bias_hh``), and for the LSTM ``forget_bias`` added
        to the forget-gate bias (the common +1 of Gers et al. 2000 and Jozefowicz et al. 2015).
    inputs : array, shape ``(T, B, I)``, optional
        The input sequence, time-major, any library (converted to float64). Default: standard
        normal draws from ``rng`` (after the weights).
    backend : {"torch", "jax"}
        Whose autodiff runs the cells. Weights and inputs come from NumPy's generator, so
        both give the same numbers.
    rng : int or numpy.random.Generator
        Seed of the weights and inputs.
    forget_bias : float
        Added to the forget-gate bias of random LSTM weights (ignored otherwise).
    wrt : {"state", "h", "c"}
        Which block of the LSTM state ``J_k`` is taken w.r.t. (see above).

    Returns
    -------
    flow : numpy.ndarray, shape ``(steps,)``, float64
        ``flow[d] = mean_b ‖∂h_T/∂s_{T-d}‖_F``.

    Examples
    --------
    >>> from seqops.diagnostics import gradient_flow
    >>> rnn, lstm = gradient_flow("rnn", steps=51), gradient_flow("lstm", steps=51)
    >>> rnn.shape, round(float(rnn[0]) ** 2)              # flow[0] = ‖I‖_F = sqrt(H)
    ((51,), 32)
    >>> f"RNN {rnn[50]:.1e}, LSTM {lstm[50]:.1e}"         # ‖∂h_T/∂s_{T-50}‖_F
    'RNN 2.0e-13, LSTM 1.6e-03'
    """
    if cell not in CELLS:
        msg = f"cell must be one of {CELLS}; got {cell!r}"
        raise ValueError(msg)
    if wrt not in WRT or (cell == "rnn" and wrt == "c"):
        allowed = WRT if cell == "lstm" else WRT[:2]
        msg = f"wrt must be one of {allowed} for cell {cell!r}; got {wrt!r}"
        raise ValueError(msg)
    for name, value in (("steps", steps), ("batch", batch), ("hidden_size", hidden_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            msg = f"{name} must be a positive integer; got {value!r}"
            raise ValueError(msg)
    pullback, scan = _pullback(backend)
    gen = np.random.default_rng(rng)
    gates = 4 if cell == "lstm" else 1
    w: tuple[np.ndarray, np.ndarray, np.ndarray | None]
    if weights is None:
        w = _random_weights(gen, gates, hidden_size, input_size, forget_bias)
    else:
        w = _given_weights(weights, gates)
    size_in, hidden = w[0].shape[0], w[1].shape[0]
    if inputs is None:
        xs = gen.standard_normal((steps, batch, size_in))  # (T, B, I)
    else:
        xs = _to_numpy(inputs)
        if xs.ndim != 3 or min(xs.shape[:2]) < 1 or xs.shape[-1] != size_in:
            msg = f"inputs must have shape (T, B, I) with T, B >= 1 and I = {size_in}; got {xs.shape}"
            raise ValueError(msg)
        steps, batch = xs.shape[:2]
    width = hidden * (2 if cell == "lstm" else 1)  # S: size of the state s_k
    # (T, P, B, I + S), P = H probes: every probe sees the same inputs; ε = 0
    probed = np.broadcast_to(xs[:, None], (steps, hidden, batch, size_in))
    zs = np.concatenate([probed, np.zeros((steps, hidden, batch, width))], axis=-1)
    cot = np.broadcast_to(np.eye(hidden)[:, None, :], (hidden, batch, hidden)).copy()  # (P, B, H)
    final = functools.partial(_final_state, cell, scan, size_in)
    grad = pullback(final, zs, w, cot)[..., size_in:]  # (T, P, B, S): grad[k-1, p, b] = row p of J_k
    if wrt == "h":
        grad = grad[..., :hidden]
    elif wrt == "c":
        grad = grad[..., hidden:]
    norms = np.sqrt(np.sum(grad**2, axis=(1, 3))).mean(axis=1)  # (T,), indexed by k - 1
    return norms[::-1].copy()  # indexed by d = T - k


def plot_gradient_flow(
    path: str | Path,
    /,
    *,
    steps: int = 100,
    hidden_size: int = 32,
    backend: str = "torch",
    rng: int = 0,
    forget_biases: tuple[float, ...] = (1.0, 0.0, 3.0),
) -> Path:
    """Plot :func:`gradient_flow` of a tanh RNN and LSTMs against the distance ``T - k``.

    One curve for the RNN and one per LSTM forget-gate bias (``forget_biases[0]`` drawn
    boldest), same seed and sizes, log-scale norm. Written with matplotlib's object API (no
    pyplot, no display needed); the format follows the suffix of ``path``.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ModuleNotFoundError
        Without matplotlib, naming the extra to install (``pip install seqops[plot]``).
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        msg = "plotting needs matplotlib: pip install seqops[plot]"
        raise ModuleNotFoundError(msg) from exc
    flow_of = functools.partial(gradient_flow, steps=steps, hidden_size=hidden_size, backend=backend, rng=rng)
    distance = np.arange(steps)
    fig = Figure(figsize=(8, 5), dpi=150, layout="constrained")
    ax = fig.subplots()
    ax.semilogy(distance, flow_of("rnn"), color="tab:red", lw=2.5, label="tanh RNN")
    blues = ("tab:blue", "tab:cyan", "tab:purple", "tab:green")
    for i, bias in enumerate(forget_biases):
        flow = flow_of("lstm", forget_bias=bias)
        note = " (usual init)" if bias == 1.0 else ""
        shown = f"{bias:+g}" if bias else "0"
        style = {"lw": 2.5} if i == 0 else {"lw": 1.5, "ls": "--"}
        label = f"LSTM, forget-gate bias {shown}{note}"
        ax.semilogy(distance, flow, color=blues[i % 4], label=label, **style)
    ax.set_xlabel(r"distance $T - k$ (steps back in time)", fontsize=12)
    ax.set_ylabel(r"$\|\partial h_T \,/\, \partial s_k\|_F$   (log scale)", fontsize=12)
    ax.set_title(
        "How far back gradients reach: vanishing in the RNN, carried by the LSTM's cell state\n"
        rf"$s_k = h_k$ (RNN), $(h_k, c_k)$ (LSTM); $T = {steps}$, $H = {hidden_size}$, "
        f"torch-style init, seed {rng}, {backend} autodiff",
        fontsize=11,
    )
    ax.set_xlim(0, steps - 1)
    ax.grid(True, which="major", alpha=0.4)
    ax.legend(fontsize=11, loc="lower left")
    ax.tick_params(labelsize=11)
    fig.savefig(path)
    return Path(path)


def _final_state(
    cell: str, scan: Scan, size_in: int, zs: Array, w_ih: Array, w_hh: Array, b: Array | None
) -> Array:
    """``h_T`` of ``cell`` from a zero state, with ``ε_k`` added to the state after step ``k``.

    ``zs (T, P, B, I + S)`` holds the input ``x_k`` and the perturbation ``ε_k`` of every
    step side by side, so the backend's ``scan`` (``lax.scan`` on JAX: one compiled step,
    not ``T``) loops over one array.
    """
    import array_api_compat

    xp = array_api_compat.array_namespace(zs)
    zero = xp.zeros((*zs.shape[1:-1], w_hh.shape[0]), dtype=zs.dtype, device=helper_device(zs))

    def rnn_step(h: Array, z: Array) -> tuple[Array, Array]:
        h = rnn_cell(z[..., :size_in], h, w_ih, w_hh, b) + z[..., size_in:]
        return h, h

    def lstm_step(state: tuple[Array, Array], z: Array) -> tuple[tuple[Array, Array], Array]:
        h, c = lstm_cell(z[..., :size_in], state, w_ih, w_hh, b)
        hidden = h.shape[-1]
        h, c = h + z[..., size_in : size_in + hidden], c + z[..., size_in + hidden :]
        return (h, c), h

    if cell == "rnn":
        h_last, _ = scan(rnn_step, zero, zs)
        return h_last
    (h_last, _), _ = scan(lstm_step, (zero, zero), zs)
    return h_last


def _random_weights(
    gen: np.random.Generator, gates: int, hidden: int, size_in: int, forget_bias: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    bound = 1.0 / math.sqrt(hidden)
    w_ih = gen.uniform(-bound, bound, (size_in, gates * hidden))
    w_hh = gen.uniform(-bound, bound, (hidden, gates * hidden))
    b = gen.uniform(-bound, bound, gates * hidden) + gen.uniform(-bound, bound, gates * hidden)
    if gates == 4:
        b[hidden : 2 * hidden] += forget_bias  # gate order i, f, o, g
    return w_ih, w_hh, b


def _given_weights(weights: Any, gates: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    if not isinstance(weights, (tuple, list)) or len(weights) != 3:
        msg = f"weights must be a tuple (w_ih, w_hh, b); got {type(weights).__name__}"
        raise TypeError(msg)
    w_ih, w_hh, b = (None if a is None else _to_numpy(a) for a in weights)
    if w_ih is None or w_hh is None:
        msg = "weights: w_ih and w_hh are required (only b may be None)"
        raise ValueError(msg)
    k = "" if gates == 1 else str(gates)
    hidden = w_hh.shape[0] if w_hh.ndim == 2 else -1
    expected = {"w_ih": (w_ih, f"(I, {k}H)", 2), "w_hh": (w_hh, f"(H, {k}H)", 2), "b": (b, f"({k}H,)", 1)}
    for name, (a, layout, ndim) in expected.items():
        if a is not None and (a.ndim != ndim or a.shape[-1] != gates * hidden):
            msg = f"weights: `{name}` must have shape {layout} with H = w_hh.shape[0]; got {a.shape}"
            raise ValueError(msg)
    return w_ih, w_hh, b


def _to_numpy(a: Any) -> np.ndarray:
    """A float64 NumPy copy of an array of any registered backend (or an array-like)."""

    for backend, ok in _backends_with_availability():
        if ok and backend.owns(a):
            return np.array(backend.to_numpy(a), dtype=np.float64)
    return np.array(a, dtype=np.float64)


# -- one vector-Jacobian product per autodiff backend ------------------------------------


def _torch_pullback(
    f: Callable[..., Array], point: np.ndarray, args: tuple[np.ndarray | None, ...], cot: np.ndarray
) -> np.ndarray:
    import torch

    at = torch.from_numpy(point).requires_grad_(True)
    rest = [None if a is None else torch.from_numpy(a) for a in args]
    with torch.enable_grad():
        out = f(at, *rest)
    (grad,) = torch.autograd.grad(out, at, torch.from_numpy(cot))
    return grad.numpy()


def _jax_pullback(
    f: Callable[..., Array], point: np.ndarray, args: tuple[np.ndarray | None, ...], cot: np.ndarray
) -> np.ndarray:
    import jax
    import jax.numpy as jnp

    with jax.enable_x64(True):  # float64 whatever the global setting
        rest = [None if a is None else jnp.asarray(a) for a in args]
        _, pull = jax.vjp(lambda e: f(e, *rest), jnp.asarray(point))
        (grad,) = pull(jnp.asarray(cot))
        return np.asarray(grad)


PULLBACKS: dict[str, Pullback] = {"torch": _torch_pullback, "jax": _jax_pullback}


def _pullback(backend: str) -> tuple[Pullback, Scan]:

    found = {b.name: (b, ok) for b, ok in _backends_with_availability()}
    known = {name: ok for name, (_, ok) in found.items()}
    if backend not in known:
        msg = f"unknown backend {backend!r}; registered: {', '.join(sorted(known))}"
        raise ValueError(msg)
    if backend not in PULLBACKS:
        msg = f"gradient_flow needs an autodiff backend (torch or jax); got {backend!r}"
        raise ValueError(msg)
    if not known[backend]:
        msg = f"backend {backend!r} is unavailable: {known[backend].reason}"
        raise RuntimeError(msg)
    return PULLBACKS[backend], found[backend][0].scan


def _backends_with_availability() -> list[tuple[Any, Any]]:
    return [(backend, backend.availability()) for backend in registry.backends()]
