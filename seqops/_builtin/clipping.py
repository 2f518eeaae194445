"""Built-in implementations of gradient clipping."""

from __future__ import annotations

from seqops import ops
from seqops._agnostic import clipping
from seqops._builtin._table import namespaced

namespaced(ops.clip_grad_norm, clipping.clip_grad_norm)
namespaced(ops.clip_grad_value, clipping.clip_grad_value)
