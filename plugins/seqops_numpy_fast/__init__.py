"""Fast paths on the NumPy backend, where a NumPy formula beats the portable one.

- ``silu`` (:mod:`.activations`): ``x / (1 + exp(-x))`` with the overflow warning silenced,
  half precision in float32.
- ``filter_logits`` and ``sample_logits`` with ``top_k`` (:mod:`.decoding`): the ``k``-th
  largest of each row by one ``numpy.partition``, Gumbel noise for those ``k`` per row only
  (the contract's distribution, not the portable path's tokens); top-p is declined.

- The in-place paths: the portable formulas, the same operations in the same order (so the
  same values, to the bit; tested), written into arrays the implementation made itself
  (``out=``, ``+=``), never into the caller's. Fewer temporaries keep the working set in
  the cache (no page faults either way in the table's rows: the allocator recycles freed
  blocks). Ratios to the plain NumPy formula, portable before / numpy-fast after, paired in
  one process (``bench/ops_table.py`` rows, float32, four to five runs each), in the
  modules' docstrings:

  - ``scaled_dot_product_attention`` (:mod:`.attention`): the scores in one array; dropout
    and scores over the attention memory budget are declined.
  - ``rnn`` and ``rnn_cell`` (:mod:`.recurrent`).
  - ``reparameterize``, ``kl_normal_normal`` and ``gaussian_log_likelihood``
    (:mod:`.generative`).
  - ``softmax`` and ``log_softmax`` (:mod:`.activations`).

- ``apply_rotary`` (:mod:`.rotary`): torch-rotary's form with the sum in place; half
  precision is declined.

- ``shifted_window_mask`` (:mod:`.vision`): the portable construction on int8 region labels.

- ``clip_grad_norm`` and ``clip_grad_value`` (:mod:`.clipping`): the portable formulas on
  NumPy's functions, without array-api-compat's wrappers (its ``clip`` costs 5-8 µs a call).

Not here: ``window_partition``, ``window_reverse`` and ``cyclic_shift``, whose portable forms
are NumPy's own reshape-and-transpose copy and ``np.roll``, the plain formulas themselves
(1.00-1.08 in the table, as the plain formula against itself: 0.98-1.07; other copy loops,
``np.copyto`` either way or one slice per window row, ran within 3% of them).

``python bench/run.py --only ops_table`` prints their ratios to the plain NumPy formulas.
Importing this module imports nothing but seqops (NumPy is loaded when a NumPy array arrives,
by :mod:`._kernels`).
"""

from __future__ import annotations

import seqops

from . import activations, attention, clipping, decoding, generative, recurrent, rotary, vision


@seqops.hookimpl
def seqops_implementations(backend: seqops.Backend) -> list[seqops.Implementation] | None:
    if backend.name != "numpy":
        return None
    return [
        *activations.implementations(),
        *rotary.implementations(),
        *vision.implementations(),
        *decoding.implementations(),
        *attention.implementations(),
        *recurrent.implementations(),
        *generative.implementations(),
        *clipping.implementations(),
    ]
