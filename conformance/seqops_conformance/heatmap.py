"""The PNG heatmap of a conformance report: worst eager error per op × backend/dtype.

Rows are the ops in case order; columns the backends (``backend@device`` when a backend ran
on several devices) grouped by dtype, narrowest dtype first. A cell's colour is
``log10(worst error)`` over every implementation of the op there, on one scale for the
whole figure, so the eye finds where precision is lost; its text is the error (``0`` for
exact outputs), ``✗`` marks a failure, grey a cell where every check was skipped and white
one where nothing ran. Needs matplotlib.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

from seqops_conformance.report import _plural

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from matplotlib.text import Text

    from seqops_conformance.report import Report

#: The colour scale's range of errors (the float64 roundoff to a 100 % error).
VMIN, VMAX = 1e-17, 1.0


def grid(report: Report) -> tuple[list[str], list[str], dict[tuple[str, str], tuple[float | None, str]]]:
    """Rows (ops), columns (``backend dtype``) and, per (row, column) that has checks, the
    worst error over the eager checks that ran and the status (``pass``, ``fail``,
    ``skip``)."""
    from seqops_conformance.tolerances import TOLERANCES

    cells = [c for c in report.cells() if c.transformation == "eager"]
    devices: dict[str, set[str]] = {}
    for c in cells:
        devices.setdefault(c.backend, set()).add(c.device)

    def column(backend: str, device: str, dtype: str) -> str:
        where = backend if len(devices[backend]) == 1 else f"{backend}@{device}"
        return f"{where}\n{dtype}"

    dtype_order = list(TOLERANCES)[::-1]  # bfloat16, float16, float32, float64
    ordered = sorted(
        cells, key=lambda c: (dtype_order.index(c.dtype) if c.dtype in dtype_order else 99, c.backend)
    )
    columns = list(dict.fromkeys(column(c.backend, c.device, c.dtype) for c in ordered))
    rows = list(dict.fromkeys(c.op for c in cells))
    found: dict[tuple[str, str], tuple[float | None, str]] = {}
    for c in cells:
        key = (c.op, column(c.backend, c.device, c.dtype))
        error, status = found.get(key, (None, "skip"))
        if c.status != "skip":
            mine = math.inf if c.worst_error is None else c.worst_error
            error = mine if error is None else max(error, mine)
            status = "fail" if "fail" in (status, c.status) else "pass"
        found[key] = (error, status)
    return rows, columns, found


def draw(report: Report, path: Path) -> None:
    """Write the heatmap of ``report`` to ``path`` (any format matplotlib writes)."""
    fig = figure(report)
    import matplotlib.pyplot as plt

    fig.savefig(path)
    plt.close(fig)


def figure(report: Report) -> Figure:
    """The heatmap of ``report`` as a matplotlib figure, its title wrapped to fit inside it
    (close it with ``matplotlib.pyplot.close``)."""
    try:
        import matplotlib
    except ImportError as exc:
        msg = "the conformance heatmap needs matplotlib: pip install 'seqops[plot]'"
        raise ImportError(msg) from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.colors import LogNorm

    rows, columns, found = grid(report)
    values = np.full((len(rows), len(columns)), np.nan)
    for (op, col), (error, status) in found.items():
        if status != "skip" and error is not None:
            values[rows.index(op), columns.index(col)] = min(max(error, VMIN), VMAX)
    # at least 3 inches tall, so the colour bar's label fits
    fig, ax = plt.subplots(figsize=(2.2 + 0.95 * len(columns), max(3.0, 1.6 + 0.27 * len(rows))), dpi=130)
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="white")
    image = ax.imshow(values, cmap=cmap, norm=LogNorm(VMIN, VMAX), aspect="auto")
    for (op, col), (error, status) in found.items():
        i, j = rows.index(op), columns.index(col)
        if status == "skip":
            ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, color="0.85"))
            text, colour = "skip", "0.35"
        else:
            text = (
                "n/a" if error is None or not math.isfinite(error) else "0" if error == 0 else f"{error:.0e}"
            )
            text = f"✗ {text}" if status == "fail" else text
            shade = values[i, j]
            dark = not np.isnan(shade) and math.log10(shade) < -6
            colour = "red" if status == "fail" else "white" if dark else "black"
        ax.text(j, i, text, ha="center", va="center", fontsize=6.5, color=colour)
    ax.set_xticks(range(len(columns)), columns, fontsize=7)
    ax.set_yticks(range(len(rows)), rows, fontsize=7)
    ax.xaxis.tick_top()
    ax.set_xticks(np.arange(-0.5, len(columns)), minor=True)
    ax.set_yticks(np.arange(-0.5, len(rows)), minor=True)
    ax.grid(which="minor", color="white", linewidth=0.8)
    ax.tick_params(which="minor", length=0)
    bar = fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
    bar.set_label("worst normwise relative error", fontsize=8)
    summary = report.summary()
    title = fig.suptitle(
        "seqops conformance: worst error per op × backend/dtype (eager, every implementation)\n"
        f"{_plural(summary['checks'], 'check')}, {summary['failed']} failed; {report.coverage_line()}",
        fontsize=9,
    )
    _fit(title, fig)
    fig.tight_layout()
    return fig


def _fit(title: Text, fig: Figure) -> None:
    """Rewrap the lines of ``title`` at spaces until it is narrower than ``fig``."""
    lines = title.get_text().split("\n")
    room = 0.96 * fig.bbox.width
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    while (width := title.get_window_extent(renderer).width) > room:
        chars = int(max(map(len, lines)) * room / width)
        wrapped = [part for line in lines for part in textwrap.wrap(line, max(chars, 10))]
        if wrapped == lines:  # a word wider than the figure
            return
        lines = wrapped
        title.set_text("\n".join(lines))
