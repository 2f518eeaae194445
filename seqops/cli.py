"""The ``seqops`` command: ``seqops info``, ``seqops conformance`` and ``seqops demo``.

Exit status: 0 when everything agrees, 1 when a conformance check fails or none ran (e.g.
``--device cuda:0`` on a machine without one) or a report cannot be written (the heatmap
without matplotlib), 2 on bad usage (unknown backend, dtype, op
or transformation, unsupported report format). ``seqops demo`` exits 1 when matplotlib or the backend is
missing.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

REPORT_FORMATS = (".json", ".md", ".png")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``seqops`` command line with ``argv`` (default ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status.

    Examples
    --------
    >>> from seqops.cli import main
    >>> main(["conformance", "--backend", "numpy", "--op", "causal_mask", "--no-progress"])  # doctest: +SKIP
    0
    """
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad usage, 0 for --help
        return int(exc.code or 0)
    if args.command == "info":
        return _info()
    if args.command == "demo":
        return _demo(args)
    return _conformance(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seqops", description="seqops: sequence-model ops for every array library."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("info", help="version, backends (availability, versions, devices) and plugins")
    conf = commands.add_parser(
        "conformance",
        help="check every op on every backend and dtype against float64 references",
        description="Check every op on every available backend × device × dtype against float64 "
        "NumPy references. Exit status 1 on any disagreement.",
    )
    conf.add_argument("--backend", action="append", metavar="NAME", help="only this backend (repeatable)")
    conf.add_argument(
        "--device", action="append", metavar="D", help="only this device, e.g. cpu, cuda:0 (repeatable)"
    )
    conf.add_argument(
        "--dtype", action="append", metavar="NAME", help="only this dtype, e.g. float32 (repeatable)"
    )
    conf.add_argument("--op", action="append", metavar="NAME", help="only this op (repeatable)")
    conf.add_argument(
        "--transformation",
        action="append",
        metavar="NAME",
        help="only this transformation (repeatable): eager (the outputs), grad (autodiff against "
        "finite differences of the reference, on torch and jax), jit (jax.jit), vmap (jax.vmap), "
        "compile (torch.compile; slow, not run by default). Default: eager, grad, jit, vmap",
    )
    conf.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the case inputs (default 0)")
    conf.add_argument(
        "--report",
        action="append",
        metavar="PATH",
        type=Path,
        help="write the report to PATH (.json, .md, or .png for the heatmap, which needs "
        "matplotlib; repeatable)",
    )
    conf.add_argument(
        "--support-table",
        metavar="PATH",
        type=Path,
        help="write the Markdown table of what each backend and implementation supports "
        "(from their declared limitations) to PATH, and run no check",
    )
    conf.add_argument("--no-progress", action="store_true", help="no progress bar")
    demo = commands.add_parser(
        "demo",
        help="draw a demonstration plot (needs matplotlib: pip install seqops[plot])",
        description="gradient-flow: ‖∂h_T/∂s_k‖ of a tanh RNN and LSTMs against the distance T − k "
        "(seqops.diagnostics.gradient_flow). Exit status 1 when matplotlib or the backend is missing.",
    )
    demo.add_argument("name", choices=["gradient-flow"], help="which demonstration")
    demo.add_argument("--out", required=True, type=Path, metavar="PATH", help="image to write (.png, .svg)")
    demo.add_argument("--steps", type=int, default=100, metavar="N", help="sequence length T (default 100)")
    demo.add_argument("--hidden-size", type=int, default=32, metavar="H", help="hidden size (default 32)")
    demo.add_argument("--backend", choices=["torch", "jax"], default="torch", help="whose autodiff")
    demo.add_argument("--seed", type=int, default=0, help="seed of the random weights and inputs")
    return parser


def _info() -> int:
    import seqops

    console = Console(highlight=False, soft_wrap=True)
    console.print(f"seqops {seqops.__version__}")
    console.print("backends:")
    for backend, availability in seqops.backends():
        if not availability:
            console.print(f"  {backend.name}: unavailable ({availability.reason})")
            continue
        versions = ", ".join(f"{lib} {v}" for lib, v in backend.versions().items())
        devices = ", ".join(str(d) for d in backend.devices())
        console.print(f"  {backend.name}: {versions}; devices: {devices}")
    console.print("plugins:")
    for name, plugin in seqops.plugins():
        console.print(f"  {name} ({getattr(plugin, '__name__', type(plugin).__name__)})")
    if seqops.quarantined():
        console.print("quarantined:")
        for name, why in seqops.quarantined().items():
            console.print(f"  {name}: {why}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from seqops.diagnostics import plot_gradient_flow

    try:
        path = plot_gradient_flow(
            args.out, steps=args.steps, hidden_size=args.hidden_size, backend=args.backend, rng=args.seed
        )
    except ValueError as exc:  # bad sizes
        print(f"seqops demo: {exc}", file=sys.stderr)
        return 2
    except (ImportError, RuntimeError) as exc:  # matplotlib missing, backend unavailable
        print(f"seqops demo: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {path}")
    return 0


def _conformance(args: argparse.Namespace) -> int:
    from seqops_conformance import run

    if args.support_table is not None:
        from seqops_conformance.support import support_table

        args.support_table.write_text(support_table())
        print(f"wrote {args.support_table}")
        return 0

    reports = args.report or []
    for path in reports:
        if path.suffix not in REPORT_FORMATS:
            print(
                f"seqops conformance: unsupported report format {path.suffix!r} for {path} "
                f"(supported: {', '.join(REPORT_FORMATS)})",
                file=sys.stderr,
            )
            return 2
    try:
        report = run(
            backends=args.backend,
            devices=args.device,
            dtypes=args.dtype,
            ops=args.op,
            progress=not args.no_progress,
            transformations=args.transformation,
            seed=args.seed,
        )
    except ValueError as exc:  # unknown backend, dtype, op or transformation, negative seed
        print(f"seqops conformance: {exc}", file=sys.stderr)
        return 2
    report.print(Console())
    writers = {".json": report.to_json, ".md": report.to_markdown, ".png": report.to_png}
    for path in reports:
        try:
            writers[path.suffix](path)
        except ImportError as exc:  # matplotlib missing for the heatmap
            print(f"seqops conformance: {exc}", file=sys.stderr)
            return 1
    if all(r.status == "skip" for r in report.results):
        print("seqops conformance: nothing was checked", file=sys.stderr)
        return 1
    return 0 if report.ok else 1
