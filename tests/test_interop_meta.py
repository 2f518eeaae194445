"""Every op on torch ``meta`` tensors (issue 14, item 6, "Interop").

Meta tensors have shapes and dtypes but no values (reading one raises), as when a model is
built without memory (``torch.device("meta")``, shape inference, FSDP's deferred
initialisation). Every conformance case, its arrays made meta tensors (floating as float64,
integer and boolean kept; ``like=`` a meta tensor), must return meta tensors of the shapes and
dtypes of the eager CPU call on the same inputs: no implementation may read a value. Random
ops take their integer ``rng`` as given (no generator exists on meta: nothing is drawn).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed")

from seqops_conformance.cases import CASES, LIKE, Case  # noqa: E402
from seqops_conformance.structure import flatten, map_structure  # noqa: E402

import seqops  # noqa: E402

_KINDS = {"f": torch.float64, "i": torch.int64, "u": torch.int64, "b": torch.bool}


def _to_torch(value: Any, device: str) -> Any:
    """NumPy inputs -> torch on ``device`` (floating as float64), containers rebuilt, ``LIKE``
    a float64 tensor there."""
    if value is LIKE:
        return torch.zeros(1, dtype=torch.float64, device=device)
    if isinstance(value, np.ndarray):
        return torch.as_tensor(value).to(dtype=_KINDS[value.dtype.kind], device=device)
    return map_structure(lambda v: _to_torch(v, device), value)


def _expected_columns(kwargs: dict[str, Any]) -> int:
    """The columns ``decode`` returns when every step runs (the number eagerly, if no row ends)."""
    prompt = kwargs.get("prompt")
    return int(kwargs["max_new_tokens"]) + (0 if prompt is None else int(prompt.shape[-1]))


def _assert_like(got: Any, expected: Any, what: str) -> None:
    """``got`` a meta tensor of the shape and dtype of ``expected`` (a CPU result)."""
    if not isinstance(expected, torch.Tensor):
        assert type(got) is type(expected), (
            f"{what}: {type(got).__qualname__}, expected {type(expected).__qualname__}"
        )
        return
    assert isinstance(got, torch.Tensor), f"{what}: a {type(got).__qualname__}, not a tensor"
    assert got.device.type == "meta", f"{what}: on {got.device}, not meta"
    assert got.dtype == expected.dtype, f"{what}: dtype {got.dtype} != {expected.dtype}"
    assert got.shape == expected.shape, f"{what}: shape {tuple(got.shape)} != {tuple(expected.shape)}"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_meta_tensors_give_shapes_and_dtypes(case: Case) -> None:
    inputs = case.inputs()
    args, kwargs = _to_torch(inputs, "cpu")
    try:
        expected = flatten(case.function(*args, **kwargs))
    except Exception as exc:  # noqa: BLE001 - an eager failure is the eager tests' concern
        pytest.skip(f"the eager call raises {type(exc).__name__}: {exc} (not an interop check)")
    args, kwargs = _to_torch(inputs, "meta")
    got = flatten(case.function(*args, **kwargs))
    assert len(got) == len(expected)
    if not case.traced:
        # decode stops once every row has ended, which reading a meta tensor cannot tell: every
        # step runs, as under a trace (API.md), so the result has all its columns
        (ids,) = expected
        expected = [torch.empty((*ids.shape[:-1], _expected_columns(kwargs)), dtype=ids.dtype)]
    for i, (g, e) in enumerate(zip(got, expected, strict=True)):
        _assert_like(g, e, f"output {i}")


def test_random_ops_on_meta_with_integer_and_generator_rng() -> None:
    """Dropout, reparameterization, sampling (top-k with ties, whose fast path would read a
    value, and top-p) and sampled decoding on meta tensors, with an integer seed and with a
    CPU ``torch.Generator``."""
    q = torch.empty(2, 3, 5, 4, dtype=torch.float32, device="meta")
    logits = torch.empty(3, 7, dtype=torch.float32, device="meta")
    params = seqops.MHAParams(*(torch.empty(4, 4, device="meta"),) * 4)

    def step(tokens: Any, state: Any) -> tuple[Any, Any]:
        return torch.empty(tokens.shape[0], 7, device="meta"), state

    for rng in (0, torch.Generator().manual_seed(0)):
        calls = {
            "sdpa dropout": (seqops.scaled_dot_product_attention(q, q, q, dropout_p=0.5, rng=rng), q),
            "mha dropout": (
                seqops.multi_head_attention(q[0], q[0], q[0], params, num_heads=2, dropout_p=0.5, rng=rng),
                q[0],
            ),
            "reparameterize": (seqops.reparameterize(q, q, rng=rng), q),
            "sample top_k": (seqops.sample_logits(logits, rng=rng, top_k=3), logits[:, 0].long()),
            "sample top_p": (seqops.sample_logits(logits, rng=rng, top_p=0.9), logits[:, 0].long()),
            "decode sample": (
                seqops.decode(
                    step,
                    None,
                    torch.zeros(3, dtype=torch.int64, device="meta"),
                    max_new_tokens=4,
                    strategy="sample",
                    rng=rng,
                    top_k=2,
                ),
                torch.empty(3, 4, dtype=torch.int64, device="meta"),
            ),
        }
        for name, (got, like) in calls.items():
            _assert_like(got, like, f"{name} (rng {type(rng).__name__})")
    explanation = seqops.explain(seqops.sample_logits, logits, rng=0, top_k=3)
    assert "meta tensors" in str(explanation), explanation
