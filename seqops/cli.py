"""The ``seqops`` command: ``seqops info``, ``seqops conformance`` and ``seqops demo``.

``seqops info`` imports no heavy framework (see :data:`CHEAP_LIBRARIES`): a fraction of a
second where importing torch and jax takes seconds. ``seqops conformance`` reports its
progress on stderr (a bar on a terminal, otherwise a line every 10 s and one at the end;
``--no-progress`` for none) and prints a table that fits the terminal's width.
Colours, the bar and the fitted table come from rich (``pip install "seqops[cli]"``); without
it the command prints the same in plain text, so ``pip install seqops`` stays lean and the
command still works.

Exit status: 0 when everything agrees, 1 when a conformance check fails or none ran (e.g.
``--device cuda:0`` on a machine without one) or a report cannot be written (the heatmap
without matplotlib), 2 on bad usage (unknown backend, dtype, op
or transformation, unsupported report format). ``seqops demo`` exits 1 when matplotlib or the backend is
missing.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from seqops import Backend

REPORT_FORMATS = (".json", ".md", ".png")

CHEAP_LIBRARIES = ("numpy", "array_api_strict")
"""Backend libraries ``seqops info`` imports to check them and list their devices: NumPy
(``import seqops`` has imported it) and array-api-strict (pure Python over NumPy, imported
in milliseconds). Any other (torch, jax, cupy: seconds) is queried only if this process has
imported it already, or with ``seqops info --devices``; otherwise it is found with
:func:`importlib.util.find_spec` and versioned from its package metadata."""

DEFAULT_DEVICE_ONLY = ("array_api_strict",)
"""Libraries whose devices besides the default are test doubles (array-api-strict's
``device1``, ``device2``, ``no_float64``, ``no_x64``, all the CPU): ``seqops info`` lists
their default device only."""


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
        return _info(args.devices)
    if args.command == "demo":
        return _demo(args)
    return _conformance(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seqops", description="seqops: sequence-model ops for every array library."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    info = commands.add_parser(
        "info",
        help="version, backends (availability, versions, devices) and plugins",
        description="The seqops version, the backends (availability, library versions, devices) and "
        "the plugins (inactive where every backend they serve is unavailable). Fast: a backend whose "
        "library is not yet imported (torch, jax, cupy) is versioned from its package metadata, "
        "without importing it, and its devices are not listed unless --devices.",
    )
    info.add_argument(
        "--devices",
        action="store_true",
        help="import every installed backend library to check it runs here and list its devices "
        "(seconds for torch or jax)",
    )
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
        "compile (torch.compile; slow, not run by default), sharded (JAX inputs sharded over 8 devices, "
        "eager and jit; needs XLA_FLAGS=--xla_force_host_platform_device_count=8 on a CPU; not run by "
        "default). Default: eager, grad, jit, vmap",
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
    conf.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress report on stderr (by default a bar on a terminal, otherwise a line every "
        "10 s and one at the end)",
    )
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


def _info(query_all: bool) -> int:
    """Print the version, the backends and the plugins (the module docstring says which
    libraries it imports); ``query_all`` imports every installed backend library."""
    import seqops
    from seqops._plugins import registry

    print(f"seqops {seqops.__version__}")
    print("backends:")
    unavailable: dict[str, str] = {}
    for backend in registry.backends():
        if query_all or backend.library in CHEAP_LIBRARIES or backend.library in sys.modules:
            availability = backend.availability()
            if availability:
                versions = ", ".join(f"{lib} {v}" for lib, v in backend.versions().items())
                print(f"  {backend.name}: {versions}; devices: {_devices(backend)}")
                continue
            unavailable[backend.name] = availability.reason
        elif importlib.util.find_spec(backend.library) is not None:
            version = _installed_version(backend.library)
            print(f"  {backend.name}: {backend.library} {version}; devices: not queried (--devices)")
            continue
        else:
            unavailable[backend.name] = f"{backend.library} is not installed"
        print(f"  {backend.name}: unavailable ({unavailable[backend.name]})")
    print("plugins:")
    served = _served_backends()
    for name, plugin in seqops.plugins():
        line = f"  {name} ({getattr(plugin, '__name__', type(plugin).__name__)})"
        backends = served.get(name, set())
        if backends and backends <= set(unavailable):
            line += ": inactive, " + "; ".join(dict.fromkeys(unavailable[b] for b in sorted(backends)))
        print(line)
    if seqops.quarantined():
        print("quarantined:")
        for name, why in seqops.quarantined().items():
            print(f"  {name}: {why}")
    return 0


def _devices(backend: Backend) -> str:
    """The devices of ``backend`` as ``seqops info`` lists them (array-api-strict's
    default device only: :data:`DEFAULT_DEVICE_ONLY`)."""
    found = [backend.default_device()] if backend.library in DEFAULT_DEVICE_ONLY else backend.devices()
    # array_api_strict.Device('CPU_DEVICE') -> CPU_DEVICE
    return ", ".join(re.sub(r"^.*Device\('(.*)'\)$", r"\1", str(d)) for d in found)


def _installed_version(library: str) -> str:
    """The version of the distribution installing the module ``library``, from its metadata
    (no import); ``version unknown`` when no distribution names it."""
    try:
        return importlib.metadata.version(library)  # the usual case: torch, jax
    except importlib.metadata.PackageNotFoundError:
        pass
    for name in importlib.metadata.packages_distributions().get(library, []):  # cupy-cuda12x
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "version unknown"


def _served_backends() -> dict[str, set[str]]:
    """Plugin name -> the names of the backends it registers or has implementations on."""
    import seqops
    from seqops._plugins import registry

    backends = registry.backends()  # fills registry._backends_of
    served = {name: {b.name for b in found} for name, found in registry._backends_of.items()}
    for op in seqops.declared_ops():
        for backend in backends:
            for impl in seqops.implementations(op, backend):
                served.setdefault(impl.plugin, set()).add(backend.name)
    return served


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
    report.print()  # rich where installed, otherwise plain text
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
