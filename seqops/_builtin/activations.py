"""Built-in implementations of softmax and log-softmax."""

from __future__ import annotations

from seqops import ops
from seqops._agnostic import activations
from seqops._builtin._table import namespaced

namespaced(ops.softmax, activations.softmax)
namespaced(ops.log_softmax, activations.log_softmax)
