"""Bad inputs for every op: does each one fail with a clear error?

For every op, the first conformance case of that op (its inputs valid) is called once per
mutation of one argument:

- an array argument replaced by ``None``, a Python list of its values, or a number;
- a required array by ``None`` too;
- any other argument replaced by an ``object()`` (valid for none but the few that take any
  value, which are left out), by a string where it is a number, by ``True`` where it is an
  integer (a bool is not an int), and by ``-1`` where it must be positive.

Each call's outcome is one of: ``clear`` (``TypeError`` or ``ValueError`` naming the
argument), ``unclear`` (one of those, not naming it), ``crash`` (any other exception: an
``AttributeError`` from deep inside is a bug) or ``accepted`` (no error: every mutation is
invalid by the contract). Run it with::

    python -m seqops_conformance.adversarial [--backend numpy] [--markdown PATH]

It exits with status 1 unless every call failed clearly.
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import seqops
from seqops_conformance.cases import CASES, Case
from seqops_conformance.runner import Target, _backend_inputs

OUTCOMES = ("clear", "unclear", "crash", "accepted")
# arguments that take any value by design
_ANY_VALUE = frozenset({"state", "step"})
# numbers that must be positive (or non-negative) wherever they appear
_POSITIVE = frozenset({
    "eps", "max_norm", "clip_value", "temperature", "top_k", "top_p", "min_tokens_to_keep",
    "num_heads", "num_kv_heads", "window_size", "patch_size", "max_new_tokens", "dropout_p",
    "label_smoothing", "max_len", "num_positions", "d_model", "kernel_size", "in_channels",
    "out_channels", "color_groups", "height", "width", "channels", "image_size", "base",
    "length", "size",
})  # fmt: skip


@dataclass(frozen=True)
class Outcome:
    op: str
    argument: str
    mutation: str
    outcome: str
    detail: str


def _first_cases() -> list[Case]:
    seen: dict[str, Case] = {}
    for case in CASES:
        if case.call is None and case.op not in seen:
            seen[case.op] = case
    return list(seen.values())


def _mutations(case: Case, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Iterator[tuple[str, str, Any]]:
    """``(argument, mutation, (args, kwargs))`` for each bad call of ``case``."""
    parameters = inspect.signature(case.function).parameters
    positional = [p for p in parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    for i, value in enumerate(args):
        name = positional[i].name if i < len(positional) else f"argument {i}"
        if name in _ANY_VALUE:
            continue
        for label, bad in _bad_values(name, value, optional=i < len(positional) and _optional(positional[i])):
            yield name, label, ((*args[:i], bad, *args[i + 1 :]), kwargs)
    for key, parameter in parameters.items():
        if key in _ANY_VALUE or not (parameter.kind is parameter.KEYWORD_ONLY or key in kwargs):
            continue
        value = kwargs.get(key, parameter.default)
        for label, bad in _bad_values(key, value, optional=_optional(parameter)):
            yield key, label, (args, {**kwargs, key: bad})


def _optional(parameter: inspect.Parameter) -> bool:
    return parameter.default is None or "None" in str(parameter.annotation)


def _bad_values(name: str, value: Any, *, optional: bool) -> list[tuple[str, Any]]:
    """What ``name`` (valid here as ``value``) must refuse."""
    if isinstance(value, np.ndarray):
        bads: list[tuple[str, Any]] = [("a list", value.tolist()), ("a number", 1.5)]
        return bads if optional else [("None", None), *bads]
    if isinstance(value, list) and any(isinstance(leaf, np.ndarray) for leaf in value):  # a list of arrays
        first = next(i for i, leaf in enumerate(value) if isinstance(leaf, np.ndarray))
        return [(f"a number at [{first}]", [*value[:first], 1.5, *value[first + 1 :]])]
    if isinstance(value, (tuple, list, dict)) or callable(value) or value is inspect.Parameter.empty:
        return []  # a structure, a function or a required keyword: not mutated here
    bads = [("an object()", object())]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        bads.append(("a string", "1"))
        if name in _POSITIVE:
            bads.append(("-1", -1))
    if isinstance(value, int) and not isinstance(value, bool):
        bads.append(("True", True))
    return bads


def _classify(argument: str, error: BaseException | None) -> tuple[str, str]:
    if error is None:
        return "accepted", ""
    text = f"{type(error).__name__}: {error}"
    if not isinstance(error, (TypeError, ValueError)):
        return "crash", text
    named = re.search(rf"(?<![\w]){re.escape(argument)}(?![\w])", str(error)) is not None
    return ("clear" if named else "unclear"), text


def run(backend_name: str = "numpy") -> list[Outcome]:
    """Every mutation of every op's first case on ``backend_name`` (float32), classified."""
    backend = next(b for b, _ in seqops.backends() if b.name == backend_name)
    dtypes = backend.floating_dtypes()
    target = Target(backend, backend.default_device(), "float32", dtypes["float32"])
    found = []
    for case in _first_cases():
        args, kwargs = _backend_inputs(case.inputs(), target)
        for argument, mutation, (bad_args, bad_kwargs) in _mutations(case, *case.inputs()):
            # the mutated NumPy inputs, converted like the valid ones (None, lists, numbers kept)
            call_args, call_kwargs = _backend_inputs((bad_args, bad_kwargs), target)
            error: BaseException | None = None
            try:
                case.function(*call_args, **call_kwargs)
            except Exception as caught:  # noqa: BLE001 - classifying every failure is the point
                error = caught
            outcome, detail = _classify(argument, error)
            found.append(Outcome(case.op, argument, mutation, outcome, detail))
        del args, kwargs
    return found


def table(outcomes: Sequence[Outcome]) -> str:
    """A Markdown table: one row per op, the count of each outcome, then every non-clear call."""
    ops = [case.op for case in _first_cases()]
    lines = ["| op | calls | " + " | ".join(OUTCOMES) + " |", "|---|---" + "|---" * len(OUTCOMES) + "|"]
    for op in ops:
        mine = [o for o in outcomes if o.op == op]
        counts = [sum(o.outcome == name for o in mine) for name in OUTCOMES]
        lines.append(f"| {op} | {len(mine)} | " + " | ".join(map(str, counts)) + " |")
    totals = [sum(o.outcome == name for o in outcomes) for name in OUTCOMES]
    lines.append(f"| **all {len(ops)} ops** | {len(outcomes)} | " + " | ".join(map(str, totals)) + " |")
    bad = [o for o in outcomes if o.outcome != "clear"]
    if bad:
        lines += ["", "| op | argument | given | outcome | error |", "|---|---|---|---|---|"]
        lines += [f"| {o.op} | `{o.argument}` | {o.mutation} | {o.outcome} | {o.detail[:120]} |" for o in bad]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="numpy")
    parser.add_argument("--markdown", help="also write the table to this file")
    args = parser.parse_args(argv)
    outcomes = run(args.backend)
    text = table(outcomes)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(f"# Bad inputs on {args.backend}\n\n`python -m seqops_conformance.adversarial "
                    f"--backend {args.backend}`\n\n{text}\n")  # fmt: skip
    return int(any(o.outcome != "clear" for o in outcomes))


if __name__ == "__main__":
    sys.exit(main())
