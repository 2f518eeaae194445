"""The conformance report: per-check results, the op × backend × dtype summary, and its
renderings (terminal table, JSON, Markdown).

The terminal table is drawn with rich where it is installed (``pip install "seqops[cli]"``)
and in plain text otherwise (:func:`_plain_table`). rich is imported on first use only (here
and for the runner's progress bar), so the report, the runner and the pytest plugin work
without it.

JSON schema (``schema_version`` 3)::

    {"schema_version": 3,
     "metadata": {"seed": int, "seqops": str, "backends": {name: {library: version}}, "platform": str,
                  "python": str, "date": ISO 8601 str, "jax_x64": bool | null},
     "summary": {"backends": int, "ops": int, "checks": int, "gradient_checks": int,
                 "implementations": {name: int}, "failed": int, "skipped": int,
                 "worst_error": {dtype: float | null},
                 "worst_gradient_error": {dtype: float | null}},
     "coverage": {"ops_total": int, "ops_run": int, "ops_passed": int,
                  "failed_ops": [str], "unchecked_ops": [str]},
     "agreement": [{"op", "dtype", "backends": [str, str], "worst_disagreement": float | null,
                    "cases": int}],
     "notes": [str],
     "skipped_backends": [{"backend": str, "reason": str}],
     "cells": [{"op", "transformation", "implementation", "backend", "device", "dtype",
                "worst_error", "tolerance", "status", "checks", "failed"}],
     "results": [{"backend", "device", "dtype", "op", "case", "implementation", "error",
                  "tolerance", "status", "message", "transformation"}]}

``transformation`` is ``"eager"`` (the outputs), ``"grad"`` (the vector-Jacobian product
against finite differences of the reference), ``"jit"``, ``"vmap"``, ``"compile"`` or
``"sharded"`` (the outputs of the transformed op); ``checks`` counts both, ``worst_error`` is
over the eager checks and ``worst_gradient_error`` over the gradient ones (their
tolerances differ). ``status`` is ``"pass"``, ``"fail"`` or ``"skip"``; an error is
``null`` when no comparison was possible (the call raised, or the output has the wrong
type, shape or non-finite values). Version 2 added ``transformation``, ``notes``,
``gradient_checks`` and ``worst_gradient_error``; version 3 made the implementation a
dimension: each case runs with every implementation that accepts the call (the dispatched
fast path, ``portable``, ``portable-tiled``...), a cell is one implementation's results and
``summary.implementations`` counts the checks of each. Version 4 added ``coverage`` (ops
passed / run / total: an op passes when every check of it that ran passed), ``agreement``
(the worst disagreement between every pair of backends per op and dtype, on the eager
outputs of the implementation each dispatches to; sampling cases excluded, their draws
differ by design), the transformations ``jit``, ``vmap`` and ``compile``, and the run's
``seed`` in the metadata.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seqops_conformance.tolerances import GRADIENT_TOLERANCES, TOLERANCES

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

SCHEMA_VERSION = 4


@dataclass
class Result:
    """The outcome of one case on one backend, device, dtype, implementation and
    transformation."""

    backend: str
    device: str
    dtype: str
    op: str
    case: str
    implementation: str
    error: float | None
    tolerance: float
    status: str
    message: str = ""
    transformation: str = "eager"


@dataclass
class Cell:
    """All results of one op, transformation and implementation on one backend, device
    and dtype."""

    op: str
    transformation: str
    implementation: str
    backend: str
    device: str
    dtype: str
    worst_error: float | None
    tolerance: float
    status: str
    checks: int
    failed: int


@dataclass
class Agreement:
    """The worst disagreement between two backends on one op and dtype, over its cases:
    ``max |a - b| / max(|a|, |b|)`` per output (the fraction of differing entries for
    integer and boolean outputs), the worst over the outputs and cases compared; ``None``
    when some output could not be compared (shapes differ, or not finite in one only)."""

    op: str
    dtype: str
    backends: tuple[str, str]
    worst_disagreement: float | None
    cases: int


@dataclass
class Report:
    """What :func:`seqops_conformance.run` found.

    Attributes
    ----------
    results : list of Result
        One per case × backend × device × dtype × implementation × transformation, skips
        included (with no implementation).
    skipped_backends : list of (str, str)
        Backends not run, with the reason (library missing, no device, filtered device).
    metadata : dict
        Versions, platform, date and whether JAX float64 was enabled.
    notes : list of str
        What the run did not cover and why (e.g. which backends and dtypes have no
        gradient checks).
    agreement : list of Agreement
        Per op, dtype and pair of backends that ran it, their worst disagreement.
    ops_total : int
        The number of public ops (the coverage denominator); 0 when unknown.
    """

    results: list[Result] = field(default_factory=list)
    skipped_backends: list[tuple[str, str]] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    agreement: list[Agreement] = field(default_factory=list)
    ops_total: int = 0

    @property
    def failures(self) -> list[Result]:
        return [r for r in self.results if r.status == "fail"]

    @property
    def ok(self) -> bool:
        """Whether every check that ran agreed with the reference."""
        return not self.failures

    def cells(self) -> list[Cell]:
        """The worst error and status per op × transformation × implementation × backend ×
        device × dtype. Skipped cases (no implementation asked) join no cell unless nothing
        else ran there."""
        groups: dict[tuple[str, str, str, str, str, str], list[Result]] = {}
        for r in self.results:
            key = (r.op, r.transformation, r.implementation, r.backend, r.device, r.dtype)
            groups.setdefault(key, []).append(r)
        elsewhere = {(op, t, b, d, dt) for op, t, impl, b, d, dt in groups if impl}
        cells = []
        for (op, transformation, implementation, backend, device, dtype), results in groups.items():
            ran = [r for r in results if r.status != "skip"]
            if not implementation and not ran and (op, transformation, backend, device, dtype) in elsewhere:
                continue
            failed = sum(r.status == "fail" for r in ran)
            cells.append(
                Cell(
                    op,
                    transformation,
                    implementation,
                    backend,
                    device,
                    dtype,
                    worst_error=_worst(r.error for r in ran),
                    tolerance=results[0].tolerance,
                    status="skip" if not ran else "fail" if failed else "pass",
                    checks=len(ran),
                    failed=failed,
                )
            )
        return cells

    def worst_errors(self, transformation: str = "eager") -> dict[str, float | None]:
        """The worst error of each dtype over the checks of ``transformation`` that ran."""
        worst: dict[str, float | None] = {}
        for dtype in TOLERANCES:
            ran = [
                r
                for r in self.results
                if r.dtype == dtype and r.transformation == transformation and r.status != "skip"
            ]
            if ran:
                worst[dtype] = _worst(r.error for r in ran)
        return worst

    def coverage(self) -> dict[str, Any]:
        """Ops passed / run / total (like the ONNX backend test report): an op *runs* when
        some check of it ran (not skipped) and *passes* when every one of them passed;
        with the ops that failed and those with no check that ran."""
        ran: dict[str, bool] = {}
        seen = set()
        for r in self.results:
            seen.add(r.op)
            if r.status != "skip":
                ran[r.op] = ran.get(r.op, True) and r.status == "pass"
        return {
            "ops_total": max(self.ops_total, len(seen)),
            "ops_run": len(ran),
            "ops_passed": sum(ran.values()),
            "failed_ops": sorted(op for op, ok in ran.items() if not ok),
            "unchecked_ops": sorted(seen - set(ran)),
        }

    def coverage_line(self) -> str:
        """``coverage: 39 ops passed / 39 run / 39 total`` (``1 op passed``), and which
        failed or never ran."""
        c = self.coverage()
        passed = _plural(c["ops_passed"], "op")
        line = f"coverage: {passed} passed / {c['ops_run']} run / {c['ops_total']} total"
        if c["failed_ops"]:
            line += f"; failed: {', '.join(c['failed_ops'])}"
        if c["unchecked_ops"]:
            line += f"; no check ran: {', '.join(c['unchecked_ops'])}"
        return line

    def summary(self) -> dict[str, Any]:
        """Counts of backends, ops, checks (gradient checks among them, and per
        implementation, most first), failures and skips, and the worst error per dtype of
        the outputs and of the gradients."""
        ran = [r for r in self.results if r.status != "skip"]
        per: dict[str, int] = {}
        for r in ran:
            per[r.implementation or "?"] = per.get(r.implementation or "?", 0) + 1
        return {
            "backends": len({r.backend for r in ran}),
            "ops": len({r.op for r in ran}),
            "checks": len(ran),
            "gradient_checks": sum(r.transformation == "grad" for r in ran),
            "implementations": dict(sorted(per.items(), key=lambda item: (-item[1], item[0]))),
            "failed": len(self.failures),
            "skipped": len(self.results) - len(ran),
            "worst_error": self.worst_errors(),
            "worst_gradient_error": self.worst_errors("grad"),
        }

    def summary_line(self) -> str:
        """``conformance: 4 backends, 21 ops, 2100 checks (240 gradients; portable 1900,
        torch-sdpa 80, …), 0 failed; worst error float64 …; worst gradient error float64 …``
        (``1 backend, 1 op, 1 check`` in the singular)."""
        s = self.summary()
        counts = (_plural(s["backends"], "backend"), _plural(s["ops"], "op"), _plural(s["checks"], "check"))
        line = "conformance: " + ", ".join(counts)
        details = [_plural(s["gradient_checks"], "gradient")] if s["gradient_checks"] else []
        per = ", ".join(f"{name} {n}" for name, n in s["implementations"].items())
        details += [per] if per else []
        if details:
            line += f" ({'; '.join(details)})"
        line += f", {s['failed']} failed"
        if s["skipped"]:
            line += f", {s['skipped']} skipped"
        worst = ", ".join(f"{dtype} {_fmt(err)}" for dtype, err in s["worst_error"].items())
        if worst:
            line += f"; worst error {worst}"
        worst = ", ".join(f"{dtype} {_fmt(err)}" for dtype, err in s["worst_gradient_error"].items())
        return f"{line}; worst gradient error {worst}" if worst else line

    # -- renderings --------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The report as the JSON-ready dict of the module docstring's schema."""
        summary = self.summary()
        for key in ("worst_error", "worst_gradient_error"):
            summary[key] = {k: _finite(v) for k, v in summary[key].items()}
        return {
            "schema_version": SCHEMA_VERSION,
            "metadata": self.metadata,
            "summary": summary,
            "coverage": self.coverage(),
            "agreement": [_agreement_dict(a) for a in self.agreement],
            "notes": list(self.notes),
            "skipped_backends": [{"backend": b, "reason": why} for b, why in self.skipped_backends],
            "cells": [{**asdict(c), "worst_error": _finite(c.worst_error)} for c in self.cells()],
            "results": [{**asdict(r), "error": _finite(r.error)} for r in self.results],
        }

    def to_json(self, path: str | Path) -> None:
        """Write the report as JSON (schema in the module docstring)."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n")

    def to_markdown(self, path: str | Path) -> None:
        """Write the summary table, the failures and the metadata as Markdown."""
        columns, rows = self._grid()
        lines = [
            "# seqops conformance",
            "",
            f"**{self.summary_line()}**",
            "",
            f"**{self.coverage_line()}**",
            "",
            "Worst error per op, transformation, implementation and dtype (normwise relative "
            "error; tolerances "
            "per dtype: " + ", ".join(f"{d} {t:g}" for d, t in TOLERANCES.items()) + "; of the "
            "gradients (`grad`, autodiff against finite differences of the reference): "
            + ", ".join(f"{d} {t:g}" for d, t in GRADIENT_TOLERANCES.items())
            + "). ✗ marks a failure.",
            "",
            "| op | transformation | implementation | dtype | " + " | ".join(columns) + " |",
            "|---|---|---|---|" + "---:|" * len(columns),
        ]
        for (op, transformation, implementation, dtype), cells in rows.items():
            texts = [_cell_text(cells.get(col)) for col in columns]
            lines.append(
                f"| {op} | {transformation} | {implementation or '-'} | {dtype} | " + " | ".join(texts) + " |"
            )
        if self.failures:
            lines += [
                "",
                "## Failures",
                "",
                "| backend | device | dtype | transformation | case | implementation | error | tolerance "
                "| message |",
                "|---|---|---|---|---|---|---:|---:|---|",
            ]
            lines += [
                f"| {r.backend} | {r.device} | {r.dtype} | {r.transformation} | {r.case} "
                f"| {r.implementation} | {_fmt(r.error)} | {r.tolerance:g} "
                f"| {' '.join(r.message.replace('|', '/').split())} |"
                for r in self.failures
            ]
        lines += self._agreement_markdown()
        if self.notes:
            lines += ["", "## Notes", ""]
            lines += [f"- {note}" for note in self.notes]
        if self.skipped_backends:
            lines += ["", "## Skipped backends", ""]
            lines += [f"- {b}: {why}" for b, why in self.skipped_backends]
        lines += ["", "## Environment", ""]
        lines += [f"- {key}: {value}" for key, value in self.metadata.items()]
        Path(path).write_text("\n".join(lines) + "\n")

    def print(self, console: Console | None = None) -> None:
        """Print the summary table (one column per backend; rows grouped by op, then
        transformation and implementation, one per dtype), the failures and the summary line.

        On a terminal the table fits its width: labels wrap, numbers never do, and backend
        columns that do not fit go on to further tables (:func:`_tables`); a pipe or a file
        gets the whole table on one. Without rich (and no ``console``) the same in plain text
        on stdout (:meth:`print_plain`).
        """
        if console is None:
            try:
                import rich.console
            except ImportError:  # seqops installed without the cli extra
                self.print_plain()
                return
            console = rich.console.Console()
        from rich.markup import escape

        columns, rows = self._grid()
        if rows:
            if console.is_terminal:
                tables = _tables(columns, rows, console.width)
            else:
                tables = _tables(columns, rows, None)
                unbounded = console.options.update(max_width=10_000)
                console.width = max(console.width, console.measure(tables[0], options=unbounded).maximum)
            for table in tables:
                console.print(table)
        for r in self.failures:
            console.print(f"[red]FAIL[/] {escape(_failure_text(r))}", highlight=False, soft_wrap=True)
        for backend, why in self.skipped_backends:
            console.print(
                f"[dim]skipped backend {escape(backend)}: {escape(why)}[/]", highlight=False, soft_wrap=True
            )
        for note in self.notes:
            console.print(f"[dim]note: {escape(note)}[/]", highlight=False, soft_wrap=True)
        style = "bold green" if self.ok else "bold red"
        console.print(self.summary_line(), style=style, highlight=False, soft_wrap=True)
        console.print(self.coverage_line(), style=style, highlight=False, soft_wrap=True)

    def print_plain(self) -> None:
        """What :meth:`print` prints to a pipe, in plain text without rich: the whole summary
        table (:func:`_plain_table`), the failures, skipped backends, notes, the summary line
        and the coverage line, on stdout."""
        columns, rows = self._grid()
        lines = _plain_table(columns, rows) if rows else []
        lines += [f"FAIL {_failure_text(r)}" for r in self.failures]
        lines += [f"skipped backend {backend}: {why}" for backend, why in self.skipped_backends]
        lines += [f"note: {note}" for note in self.notes]
        lines += [self.summary_line(), self.coverage_line()]
        print("\n".join(lines), flush=True)

    def _agreement_markdown(self) -> list[str]:
        """The cross-backend agreement section: rows op × dtype, a column per backend pair."""
        if not self.agreement:
            return []
        pairs = list(dict.fromkeys(a.backends for a in self.agreement))
        rows: dict[tuple[str, str], dict[tuple[str, str], Agreement]] = {}
        for a in self.agreement:
            rows.setdefault((a.op, a.dtype), {})[a.backends] = a
        lines = [
            "",
            "## Cross-backend agreement",
            "",
            "Worst disagreement between two backends on the same rounded inputs, "
            "`max |a - b| / max(|a|, |b|)` over the outputs and cases of the op (the eager "
            "outputs of the implementation each backend dispatches to; sampling excluded).",
            "",
            "| op | dtype | " + " | ".join(f"{a} / {b}" for a, b in pairs) + " |",
            "|---|---|" + "---:|" * len(pairs),
        ]
        for (op, dtype), found in rows.items():
            texts = [_fmt(found[p].worst_disagreement) if p in found else "·" for p in pairs]
            lines.append(f"| {op} | {dtype} | " + " | ".join(texts) + " |")
        return lines

    def to_png(self, path: str | Path) -> None:
        """Draw the worst error of the eager checks per op (rows) and backend/dtype
        (columns) as a heatmap on a log scale, each cell annotated (``✗`` marks a failure,
        grey a skip or nothing ran). Needs matplotlib (``pip install seqops[plot]``)."""
        from seqops_conformance.heatmap import draw

        draw(self, Path(path))

    def _grid(self) -> tuple[list[str], dict[tuple[str, str, str, str], dict[str, Cell]]]:
        """Column labels (backend, or backend@device when a backend ran on several devices)
        and rows (op, transformation, implementation, dtype) -> column -> cell: ``portable``
        (on every backend) first, then the other implementations by name."""
        cells = self.cells()
        devices: dict[str, set[str]] = {}
        for c in cells:
            devices.setdefault(c.backend, set()).add(c.device)
        label = {
            (c.backend, c.device): c.backend if len(devices[c.backend]) == 1 else f"{c.backend}@{c.device}"
            for c in cells
        }
        columns = list(dict.fromkeys(label[c.backend, c.device] for c in cells))
        dtype_order = {d: i for i, d in enumerate(TOLERANCES)}
        ops = list(dict.fromkeys(c.op for c in cells))
        rows: dict[tuple[str, str, str, str], dict[str, Cell]] = {}
        order = {"eager": 0}
        for c in sorted(
            cells,
            key=lambda c: (
                ops.index(c.op),
                order.get(c.transformation, 1),
                c.transformation,
                c.implementation != "portable",
                c.implementation,
                dtype_order.get(c.dtype, len(dtype_order)),
            ),
        ):
            key = (c.op, c.transformation, c.implementation, c.dtype)
            rows.setdefault(key, {})[label[c.backend, c.device]] = c
        return columns, rows


#: The narrowest the label column of the terminal table gets before backend columns move
#: on to a further table (longer labels wrap).
LABEL_WIDTH = 24

#: The columns between two of the terminal table (its collapsed cell padding and rule).
_GAP = 2


def _tables(
    columns: list[str], rows: dict[tuple[str, str, str, str], dict[str, Cell]], width: int | None
) -> list[Table]:
    """The terminal summary table in ``width`` columns (``None``: as wide as it needs): a
    label column (each op, then its transformations and implementations, indented), the
    dtype, and a column per backend. Numbers never wrap or shorten: labels wrap (:func:`_wrap`),
    a backend name wider than its numbers breaks onto two lines, and backend columns that
    leave the labels less than :data:`LABEL_WIDTH` go on to a further table."""
    from rich import box
    from rich.cells import cell_len
    from rich.table import Table
    from rich.text import Text

    texts = {key: {col: _cell_text(cells.get(col)) for col in columns} for key, cells in rows.items()}
    widths = {col: max(cell_len(t[col]) for t in texts.values()) for col in columns}
    widths = {col: max(widths[col], _two_lines(col)) for col in columns}
    dtype_width = max(cell_len(dtype) for *_, dtype in rows)
    labels = [op for op, *_ in rows] + [f"  {t} {impl or '-'}" for _, t, impl, _ in rows]
    natural = max(map(cell_len, labels))
    chunks: list[list[str]] = [[]]
    for col in columns:
        used = dtype_width + sum(_GAP + widths[c] for c in [*chunks[-1], col])
        if width is not None and chunks[-1] and LABEL_WIDTH + _GAP + used > width:
            chunks.append([])
        chunks[-1].append(col)
    tables = []
    for i, chunk in enumerate(chunks):
        room = natural if width is None else width - _GAP - dtype_width - sum(_GAP + widths[c] for c in chunk)
        label_width = max(min(natural, room), LABEL_WIDTH)
        title = "worst error (normwise relative)" + (", continued" if i else "")
        table = Table(
            box=box.SIMPLE_HEAD, title=title, pad_edge=False, show_edge=False, collapse_padding=True
        )
        header = _wrap("op / transformation, implementation", label_width)
        table.add_column(header, width=label_width, overflow="fold")
        table.add_column("dtype", no_wrap=True)
        for col in chunk:
            name = Text(_wrap(col, widths[col]))
            table.add_column(name, justify="right", no_wrap=True, min_width=widths[col])
        group: tuple[str, str, str] | None = None
        for (op, transformation, implementation, dtype), cells in rows.items():
            if group is None or group[0] != op:
                table.add_row(Text(_wrap(op, label_width), style="bold"))
            label = ""
            if group != (op, transformation, implementation):
                label = _wrap(f"  {transformation} {implementation or '-'}", label_width, "    ")
            group = (op, transformation, implementation)
            styled = []
            for col in chunk:
                cell = cells.get(col)
                style = {"pass": "green", "fail": "bold red"}.get(cell.status, "dim") if cell else "dim"
                styled.append(Text(texts[op, transformation, implementation, dtype][col], style=style))
            table.add_row(Text(label), dtype, *styled)
        tables.append(table)
    return tables


def _plain_table(columns: list[str], rows: dict[tuple[str, str, str, str], dict[str, Cell]]) -> list[str]:
    """The lines of the summary table in plain text, as wide as it needs (the rows and
    labels of :func:`_tables`: each op, then its transformations and implementations,
    indented; the dtype; a column per backend, numbers right-aligned)."""
    header = ["op / transformation, implementation", "dtype", *columns]
    table: list[list[str]] = []
    group: tuple[str, str, str] | None = None
    for (op, transformation, implementation, dtype), cells in rows.items():
        if group is None or group[0] != op:
            table.append([op])
        label = ""
        if group != (op, transformation, implementation):
            label = f"  {transformation} {implementation or '-'}"
        group = (op, transformation, implementation)
        table.append([label, dtype, *(_cell_text(cells.get(col)) for col in columns)])
    widths = [max(len(line[i]) for line in [header, *table] if i < len(line)) for i in range(len(header))]

    def text(line: list[str]) -> str:
        padded = [
            cell.ljust(width) if i < 2 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=False))
        ]
        return "  ".join(padded).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return ["worst error (normwise relative)", text(header), rule, *map(text, table)]


def _failure_text(r: Result) -> str:
    """``case on backend/device dtype via implementation (transformation): error …
    (tolerance …) message``: a failure as :meth:`Report.print` lists it after ``FAIL``."""
    where = f"{r.backend}/{r.device} {r.dtype} via {r.implementation or '?'}"
    if r.transformation != "eager":
        where += f" ({r.transformation})"
    return f"{r.case} on {where}: error {_fmt(r.error)} (tolerance {r.tolerance:g})" + (
        f" {r.message}" if r.message else ""
    )


def _wrap(text: str, width: int, indent: str = "") -> str:
    """``text`` in lines of at most ``width`` columns, broken after a space, ``_`` or ``-``
    or before ``@`` (anywhere in a longer piece); lines after the first start with
    ``indent``."""
    lines = [""]
    for piece in re.split(r"(?<=[ _-])|(?=@)", text):
        if lines[-1].strip() and len(lines[-1] + piece.rstrip()) > width:
            lines.append(indent)
        while len(lines[-1] + piece.rstrip()) > width:  # a piece wider than a line
            cut = max(width - len(lines[-1]), 1)
            lines[-1], piece = lines[-1] + piece[:cut], piece[cut:]
            lines.append(indent)
        lines[-1] += piece
    return "\n".join(line.rstrip() for line in lines)


def _two_lines(name: str) -> int:
    """The width in which :func:`_wrap` breaks a backend name onto two lines at most: the
    most even of its cuts (``array_api_`` / ``strict``), or its length if it has none."""
    cuts = [m.start() for m in re.finditer(r"(?<=[_-])|(?=@)", name) if 0 < m.start() < len(name)]
    return min((max(cut, len(name) - cut) for cut in cuts), default=len(name))


def _agreement_dict(a: Agreement) -> dict[str, Any]:
    return {**asdict(a), "backends": list(a.backends), "worst_disagreement": _finite(a.worst_disagreement)}


def _plural(n: int, noun: str) -> str:
    """``1 check``, ``2 checks``: ``n`` and ``noun``, with an ``s`` unless ``n`` is 1."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _worst(errors: Iterable[float | None]) -> float | None:
    """The largest error, ``inf`` if any comparison was impossible, ``None`` if none ran."""
    values = [math.inf if e is None else e for e in errors]
    return max(values) if values else None


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if not math.isfinite(value):
        return "n/a"
    return "0" if value == 0.0 else f"{value:.1e}"


def _cell_text(cell: Cell | None) -> str:
    if cell is None:
        return "·"
    if cell.status == "skip":
        return "skip"
    text = _fmt(cell.worst_error)
    return f"✗ {text}" if cell.status == "fail" else text
