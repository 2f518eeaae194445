"""Every public function's docstring documents its parameters and what it returns.

``numpydoc.validate`` on every function of ``seqops.__all__`` and every public function of
``seqops.convert``, for the checks a user of the reference needs:

- PR01: a parameter is not documented;
- PR02: a documented parameter does not exist;
- PR04: a parameter has no type;
- PR07: a parameter has no description;
- RT01: no Returns section (a generator's Yields section counts).
"""

from __future__ import annotations

import inspect

import pytest

import seqops
import seqops.convert

validate = pytest.importorskip("numpydoc.validate").validate

CHECKS = ("PR01", "PR02", "PR04", "PR07", "RT01")


def public_functions() -> list[str]:
    """The qualified names of the public functions."""
    names = [f"seqops.{n}" for n in seqops.__all__ if inspect.isfunction(getattr(seqops, n))]
    names += [
        f"seqops.convert.{n}"
        for n, obj in vars(seqops.convert).items()
        if not n.startswith("_") and inspect.isfunction(obj) and obj.__module__ == "seqops.convert"
    ]
    return names


def problems(qualified: str) -> list[str]:
    """``CODE message`` for each failed check of the function called ``qualified``."""
    return [f"{code} {message}" for code, message in validate(qualified)["errors"] if code in CHECKS]


def test_every_public_function_is_checked() -> None:
    names = public_functions()
    assert len(names) >= 80  # the ops, the registry functions and the converters
    for name in ("seqops.scaled_dot_product_attention", "seqops.use", "seqops.explain"):
        assert name in names
    assert "seqops.convert.mha_params_from_torch" in names


def test_public_docstrings_document_parameters_and_returns() -> None:
    found = {name: problems(name) for name in public_functions()}
    failing = {name: codes for name, codes in found.items() if codes}
    report = "\n".join(f"{name}:\n    " + "\n    ".join(codes) for name, codes in failing.items())
    assert not failing, f"{len(failing)} public functions with incomplete docstrings:\n{report}"


def _incomplete(x: int, y: int) -> int:
    """Add two numbers.

    Parameters
    ----------
    x : int
        The first.
    y : int
    """
    return x + y


def _complete(x: int, y: int) -> int:
    """Add two numbers.

    Parameters
    ----------
    x : int
        The first.
    y : int
        The second.

    Returns
    -------
    int
        The sum.
    """
    return x + y


def test_the_check_finds_a_missing_description_and_returns() -> None:
    assert problems(f"{__name__}._complete") == []
    found = problems(f"{__name__}._incomplete")
    assert [p.split()[0] for p in found] == ["PR07", "RT01"], found
