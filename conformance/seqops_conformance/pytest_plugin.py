"""The pytest plugin of the conformance suite (entry point ``pytest11``).

::

    pytest --seqops-backend NAME [--seqops-device D] --pyargs seqops_conformance

runs every conformance check of backend ``NAME`` as one test each, with ids
``<backend>-<device>-<dtype>-<transformation>[-<implementation>]-<case id>``, e.g.
``numpy-cpu-float32-eager-portable-softmax[axis 0]``. A failure names the op, case,
dtype, implementation, worst error and tolerance. Options (``pytest --help``, group
``seqops conformance``):

``--seqops-backend NAME``
    Repeatable; default every available backend. An unavailable one gives a single
    skipped test with the reason (``cupy: no CUDA device``).
``--seqops-device D``, ``--seqops-dtype NAME``, ``--seqops-op NAME``, ``--seqops-transformation NAME``
    Repeatable filters, as ``seqops conformance`` has. A device the backend lacks, or a
    transformation asked for explicitly that has no driver for it, gives one skipped test
    with the reason.
``--seqops-skips FILE``, ``--seqops-xfails FILE``
    One test-id substring per line, optionally followed by ``# reason``; ``#`` lines and
    blank lines are ignored. Matching tests are skipped or marked as expected failures
    (not strict: an unexpected pass is reported as ``XPASS``).
``--seqops-seed N``
    Seed of the case inputs (default 0, the inputs of the committed reports).
``--seqops-report PATH``
    Repeatable: write the run's report (``.json``, ``.md`` or ``.png``).

The terminal summary ends with the conformance summary and coverage lines. The plugin is
inert unless a test uses the ``seqops_check`` fixture (only the suite's own test module does).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

_GROUP = "seqops conformance"
_REPORT_KEY = pytest.StashKey["Any"]()


@dataclass(frozen=True)
class Item:
    """One conformance test: a case on a target under a transformation, and for eager
    checks the implementation (``None``: every result of the check); or, with ``skip``, a
    test that only skips with that reason (an unavailable backend), named ``label``."""

    case: Any = None
    target: Any = None
    transformation: str = ""
    implementation: str | None = None
    skip: str = ""
    label: str = ""

    @property
    def id(self) -> str:
        if self.skip:
            return self.label
        t = self.target
        parts = [t.backend.name, t.label, t.dtype_name, self.transformation]
        parts += [self.implementation] if self.implementation else []
        return "-".join([*parts, self.case.id])


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup(_GROUP, "seqops conformance suite (pytest --pyargs seqops_conformance)")
    group.addoption(
        "--seqops-backend", action="append", metavar="NAME", help="backend to certify (repeatable)"
    )
    group.addoption("--seqops-device", action="append", metavar="D", help="device, e.g. cpu, cuda:0")
    group.addoption("--seqops-dtype", action="append", metavar="NAME", help="only this dtype (repeatable)")
    group.addoption("--seqops-op", action="append", metavar="NAME", help="only this op (repeatable)")
    group.addoption(
        "--seqops-transformation",
        action="append",
        metavar="NAME",
        help="eager, grad, jit, vmap, compile or sharded (repeatable; default all but compile and sharded)",
    )
    group.addoption("--seqops-skips", metavar="FILE", help="test-id substrings to skip, one per line")
    group.addoption("--seqops-xfails", metavar="FILE", help="test-id substrings expected to fail")
    group.addoption("--seqops-seed", type=int, default=0, metavar="N", help="seed of the case inputs")
    group.addoption(
        "--seqops-report", action="append", metavar="PATH", help="write the report (.json, .md, .png)"
    )


def pytest_configure(config: pytest.Config) -> None:
    """Reject unknown backend, dtype, op and transformation names before collection."""
    given = {
        kind: config.getoption(f"seqops_{kind}") for kind in ("backend", "dtype", "op", "transformation")
    }
    if not any(given.values()):
        return
    import seqops
    from seqops_conformance.cases import OPS
    from seqops_conformance.runner import TRANSFORMATIONS, _require_known
    from seqops_conformance.tolerances import TOLERANCES

    known = {
        "backend": [b.name for b, _ in seqops.backends()],
        "dtype": TOLERANCES,
        "op": OPS,
        "transformation": TRANSFORMATIONS,
    }
    try:
        for kind, names in given.items():
            _require_known(kind, names, known[kind])
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "seqops_check" not in metafunc.fixturenames:
        return
    items = _plan(metafunc.config)
    metafunc.parametrize("seqops_check", items, ids=[item.id for item in items], indirect=True)


def _plan(config: pytest.Config) -> list[Item]:
    """Every test of the run, from the options (checked by :func:`pytest_configure`)."""
    import seqops
    from seqops_conformance.cases import CASES
    from seqops_conformance.runner import (
        DEFAULT_TRANSFORMATIONS,
        TRANSFORMATIONS,
        Target,
        _devices,
        applies,
        implementation_names,
    )
    from seqops_conformance.support import transformations_of
    from seqops_conformance.tolerances import TOLERANCES

    option = config.getoption
    registered = {backend.name: (backend, ok) for backend, ok in seqops.backends()}
    names = option("seqops_backend") or [n for n, (_, ok) in sorted(registered.items()) if ok]
    wanted = [t for t in TRANSFORMATIONS if t in (option("seqops_transformation") or DEFAULT_TRANSFORMATIONS)]
    dtypes, ops, devices = option("seqops_dtype"), option("seqops_op"), option("seqops_device")
    cases = [case for case in CASES if ops is None or case.op in ops]
    _enable_jax_x64(config, names, registered)
    items: list[Item] = []
    for name in names:
        backend, availability = registered[name]
        if not availability:
            items.append(Item(skip=f"{name}: {availability.reason}", label=f"{name}-unavailable"))
            continue
        chosen = _devices(backend, devices)
        if not chosen:
            why = f"{name}: none of the devices {', '.join(devices or ())} on this machine"
            items.append(Item(skip=why, label=f"{name}-no-device"))
        for t in option("seqops_transformation") or ():  # asked for explicitly, so say why not
            if t not in transformations_of(backend):
                why = f"{name}: the suite has no {t} driver for this backend"
                items.append(Item(skip=why, label=f"{name}-{t}-no-driver"))
        for device in chosen:
            for dtype_name, dtype in backend.floating_dtypes(device).items():
                if dtype_name not in TOLERANCES or (dtypes and dtype_name not in dtypes):
                    continue
                target = Target(backend, device, dtype_name, dtype)
                for t in wanted:
                    for case in cases:
                        if not applies(case, backend, dtype_name, t):
                            continue
                        if t != "eager":
                            items.append(Item(case, target, t, None))
                            continue
                        accepting: list[str | None] = list(
                            implementation_names(case, target, seed=option("seqops_seed"))
                        )
                        items += [Item(case, target, t, impl) for impl in accepting or [None]]
    return items


def _enable_jax_x64(config: pytest.Config, names: list[str], registered: dict[str, Any]) -> None:
    """JAX float64 on for the session when JAX is certified (restored at the end)."""
    if "jax" not in names or not registered["jax"][1] or hasattr(config, "_seqops_x64"):
        return
    from seqops_conformance.runner import _jax_x64

    stack = contextlib.ExitStack()
    stack.enter_context(_jax_x64(["jax"], registered))
    config._seqops_x64 = stack  # type: ignore[attr-defined]
    config.add_cleanup(stack.close)


@pytest.fixture
def seqops_check(request: pytest.FixtureRequest) -> Any:
    """The check of this test: run it, record its result, fail with the op, dtype,
    implementation, error and tolerance."""
    item: Item = request.param
    if item.skip:
        pytest.skip(item.skip)
    return _Check(item, request.config)


class _Check:
    def __init__(self, item: Item, config: pytest.Config) -> None:
        self.item, self.config = item, config

    def run(self) -> None:
        from seqops_conformance.runner import check

        item, state = self.item, _state(self.config)
        key = (item.case.id, id(item.target), item.transformation)
        if key not in state.done:
            state.done[key] = check(
                item.case,
                item.target,
                item.transformation,
                seed=self.config.getoption("seqops_seed"),
                references=state.references,
                outputs=state.outputs,
            )
        mine = [r for r in state.done[key] if item.implementation in (None, r.implementation)]
        if not mine:
            pytest.fail(
                f"{item.case.id}: implementation {item.implementation} no longer accepts the call "
                f"(it did when the tests were collected)"
            )
        state.report.results.extend(mine)
        failed = [r for r in mine if r.status == "fail"]
        if failed:
            pytest.fail("\n".join(_describe(r) for r in failed), pytrace=False)
        if all(r.status == "skip" for r in mine):
            pytest.skip("; ".join(r.message for r in mine))


def _describe(r: Any) -> str:
    from seqops_conformance.report import _fmt

    error = "no comparison possible" if r.error is None else f"worst error {_fmt(r.error)}"
    text = (
        f"op {r.op}, case {r.case}, dtype {r.dtype}, backend {r.backend}/{r.device}, implementation "
        f"{r.implementation or '?'}, transformation {r.transformation}: {error}, tolerance {r.tolerance:g}"
    )
    return text + (f"; {r.message}" if r.message else "")


@dataclass
class _State:
    report: Any
    references: dict[Any, Any]
    outputs: dict[Any, Any]
    done: dict[Any, Any]


def _state(config: pytest.Config) -> _State:
    if _REPORT_KEY not in config.stash:
        import seqops
        from seqops_conformance.report import Report
        from seqops_conformance.runner import _metadata

        report = Report()
        registered = {b.name: (b, ok) for b, ok in seqops.backends()}
        x64 = getattr(config, "_seqops_x64", None) is not None
        report.metadata = _metadata(registered, x64, config.getoption("seqops_seed"))
        config.stash[_REPORT_KEY] = _State(report, {}, {}, {})
    return config.stash[_REPORT_KEY]  # type: ignore[no-any-return]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for option, mark in (("seqops_skips", pytest.mark.skip), ("seqops_xfails", pytest.mark.xfail)):
        path = config.getoption(option)
        if not path:
            continue
        for pattern, reason in _patterns(Path(path)):
            for item in items:
                if pattern in item.nodeid:
                    item.add_marker(mark(reason=reason))


def _patterns(path: Path) -> list[tuple[str, str]]:
    """``(substring, reason)`` per line of a skips or xfails file."""
    found = []
    for line in path.read_text().splitlines():
        text, _, reason = line.partition("#")
        if text.strip():
            found.append((text.strip(), reason.strip() or f"listed in {path.name}"))
    return found


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if _REPORT_KEY not in config.stash:
        return
    from seqops_conformance.runner import agreement

    state = _state(config)
    report = state.report

    import seqops

    report.ops_total = len(seqops.declared_ops())
    report.agreement = agreement(state.outputs, {r.case: r.op for r in report.results})
    terminalreporter.section("seqops conformance")
    terminalreporter.write_line(report.summary_line())
    terminalreporter.write_line(report.coverage_line())
    writers = {".json": report.to_json, ".md": report.to_markdown, ".png": report.to_png}
    for path in config.getoption("seqops_report") or []:
        writer = writers.get(Path(path).suffix)
        if writer is None:
            terminalreporter.write_line(f"seqops conformance: unsupported report format {path}")
            continue
        writer(path)
        terminalreporter.write_line(f"wrote {path}")
