"""Every bad input is a clear error (issue 14): ``seqops_conformance.adversarial`` calls every op
with each argument replaced by something the contract refuses (``None`` for a required array,
a list, a number, an ``object()``, a string for a number, ``True`` for an int, ``-1`` for a
positive size) and every call must raise a ``TypeError``/``ValueError`` naming the argument."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from seqops_conformance import adversarial

import seqops

LIBRARIES = {"numpy": "numpy", "array_api_strict": "array_api_strict", "torch": "torch", "jax": "jax"}


@pytest.mark.parametrize("backend", list(LIBRARIES))
def test_every_bad_input_is_a_clear_error(backend: str) -> None:
    if importlib.util.find_spec(LIBRARIES[backend]) is None:
        pytest.skip(f"{LIBRARIES[backend]} is not installed")
    outcomes = adversarial.run(backend)
    assert len({o.op for o in outcomes}) == len(seqops.declared_ops())  # every op tried
    bad = [o for o in outcomes if o.outcome != "clear"]
    assert not bad, adversarial.table(bad)


def test_the_classification_can_fail() -> None:
    """The harness itself: an error not naming the argument, a crash and an accepted call."""
    assert adversarial._classify("x", TypeError("`x` must be an array"))[0] == "clear"
    assert adversarial._classify("x", TypeError("expected an array"))[0] == "unclear"
    assert adversarial._classify("x", AttributeError("`x` has no dtype"))[0] == "crash"
    assert adversarial._classify("x", None)[0] == "accepted"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: seqops.softmax(None), "`x` must be an array"),
        (
            lambda: seqops.scaled_dot_product_attention(np.ones((2, 3)), None, np.ones((2, 3))),
            "`k` must be an array",
        ),
        (lambda: seqops.cross_entropy(None, np.zeros(3, dtype=np.int64)), "`logits` must be an array"),
        (lambda: seqops.clip_grad_norm([np.ones(3), 1.5], 1.0), "`grads[1]` must be an array"),
        (lambda: seqops.softmax([1.0, 2.0]), "convert it with your library's asarray"),
        (lambda: seqops.layer_norm(np.ones((2, 3)), eps=-1), "eps must be >= 0; got -1"),
        (lambda: seqops.softmax(np.ones(3), axis=True), "axis must be an integer; got bool"),
        (
            lambda: seqops.patchify(np.ones((1, 3, 4, 4)), 2, channels_last=1),
            "channels_last must be True or False",
        ),
        (
            lambda: seqops.scaled_dot_product_attention(*[np.ones((2, 3))] * 3, rng="0"),
            "rng must be an integer seed",
        ),
    ],
)
def test_messages(call, message) -> None:
    with pytest.raises((TypeError, ValueError)) as caught:
        call()
    assert message in str(caught.value)
