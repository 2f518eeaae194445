"""Sphinx directives that generate the API reference of seqops from the package itself.

Nothing here lists ops by hand. The pages name a family (``.. seqops-family:: attention``) and
the directive finds its public names in ``seqops.__all__`` (by the module that defines
them), orders the declared ops as :mod:`seqops.ops` declares them, and writes for each op:

- the public function's docstring (autodoc + numpydoc: shapes, parameters, returns, example);
- its contract: the stub declared in :mod:`seqops.ops` (the signature implementations
  receive) and the stub's docstring, and the parts a composite dispatches;
- the implementations that serve it on every backend installed where the docs are built, in
  the order dispatch asks them, with their declared :class:`seqops.Limitation`\\ s (and the
  backend's own), formatted by the same helper as ``docs/support.md``.

``.. seqops-contract::`` writes every declared op's contract (the contract page). At the end
of reading, every name of ``seqops.__all__`` and every public function of
:mod:`seqops.convert` must be documented somewhere: one that is not is a warning (an error
under ``-W``), so a new public function cannot be left out of the site.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from docutils import nodes
from docutils.statemachine import StringList
from seqops_conformance.support import _limitations as limitations_text
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

import seqops
import seqops.convert

if TYPE_CHECKING:
    from seqops._op import Op  # the type of seqops.ops.<name>; at run time only public names

logger = logging.getLogger(__name__)

#: The op families: the public modules ``seqops.<family>`` that define ops.
FAMILIES = (
    "activations",
    "attention",
    "transformer",
    "recurrent",
    "clipping",
    "losses",
    "decoding",
    "vision",
    "pixelcnn",
    "generative",
)

#: Headings of the rest of the public namespace (the plugins page), by defining module.
OTHER_GROUPS = {
    "seqops._dispatch": "Dispatch: choosing and explaining implementations",
    "seqops._plugins": "Plugins and the registry",
    "seqops._checking": "Plugins and the registry",
    "seqops": "Plugins and the registry",
    "seqops.hookspecs": "Plugins and the registry",
    "seqops.contract": "Writing a backend or a fast path",
    "seqops.config": "Configuration",
}

#: What a public name that is neither a function nor a class is (no docstring of its own).
DATA = {
    "hookimpl": "The pluggy marker of hook implementations (``@seqops.hookimpl``); the hooks "
    "are specified in :mod:`seqops.hookspecs`.",
}


def _module_of(name: str) -> str:
    obj = getattr(seqops, name)
    if name in DATA:
        return "seqops.hookspecs"
    return getattr(obj, "__module__", "") or ""


def _public_names() -> list[str]:
    """``seqops.__all__`` without the submodules (they have pages of their own)."""
    return [n for n in seqops.__all__ if not isinstance(getattr(seqops, n), ModuleType)]


def _convert_names() -> list[str]:
    return [
        n
        for n, obj in vars(seqops.convert).items()
        if not n.startswith("_")
        and (inspect.isfunction(obj) or inspect.isclass(obj))
        and obj.__module__ == "seqops.convert"
    ]


def _ops_by_function() -> dict[Any, Op]:
    return {op.function: op for op in seqops.declared_ops()}


def _family_of(op: Op) -> str:
    return op.function.__module__.rpartition(".")[2]


def _stub_signature(op: Op) -> str:
    """The contract's signature without annotations: ``(backend, x, /, *, axis)``."""
    sig = op.signature
    params = [p.replace(annotation=inspect.Parameter.empty) for p in sig.parameters.values()]
    return str(sig.replace(parameters=params, return_annotation=inspect.Signature.empty))


def _indent(text: str, prefix: str = "   ") -> list[str]:
    return [prefix + line if line.strip() else "" for line in text.splitlines()]


def _cell(text: str) -> str:
    """Plain text (a declared reason) as a table cell: reST markup characters escaped."""
    text = re.sub(r"([\\*`|_])", r"\\\1", text.replace("\n", " "))
    return text or "—"


def _contract(op: Op, *, index: bool) -> list[str]:
    lines = [f".. py:function:: {op.name}{_stub_signature(op)}", "   :module: seqops.ops"]
    if not index:
        lines.append("   :no-index:")
    lines.append("")
    lines += _indent(op.doc)
    if op.parts:
        parts = ", ".join(f":func:`seqops.{p.name}`" for p in op.parts)
        lines += ["", f"   A composite: its implementation dispatches {parts}."]
    return lines + [""]


def _implementations(op: Op) -> list[str]:
    """The list-table of the implementations of ``op`` on the installed backends."""
    rows: list[tuple[str, str, str, str]] = []
    missing: list[str] = []
    for backend, availability in seqops.backends():
        if not availability:
            missing.append(backend.name)
            continue
        own = [lim for lim in backend.limitations if lim.op in (None, op.name)]
        if own:
            rows.append((backend.name, "(the backend)", "", limitations_text(own)))
        for impl in seqops.implementations(op, backend):
            rows.append((backend.name, impl.name, impl.plugin, limitations_text(impl.limitations)))
    lines = [
        ".. list-table::",
        "   :header-rows: 1",
        "",
        "   * - backend",
        "     - implementation",
        "     - plugin",
        "     - declared limitations",
    ]
    for backend, name, plugin, lims in rows:
        lines += [
            f"   * - {backend}",
            f"     - ``{name}``" if plugin else f"     - {name}",
            f"     - {plugin or '—'}",
            f"     - {_cell(lims)}",
        ]
    lines.append("")
    if missing:
        lines += [f"Not available where these docs were built: {', '.join(missing)}.", ""]
    return lines


def _op_entry(op: Op) -> list[str]:
    title = op.name
    return [
        title,
        "-" * len(title),
        "",
        f".. autofunction:: seqops.{op.name}",
        "",
        ".. rubric:: Contract",
        "",
        "What every implementation of the op receives once the arguments are validated "
        "(declared in :mod:`seqops.ops`, see :doc:`/contract`):",
        "",
        *_contract(op, index=False),
        ".. rubric:: Implementations",
        "",
        "In the order a call asks them: the first whose ``decline`` accepts the call runs it "
        "(:func:`seqops.explain` shows which and why). The declared limitations are calls the "
        "implementation always declines; the conformance suite checks that it does.",
        "",
        *_implementations(op),
    ]


def _other_entry(qualified: str, obj: Any, short: str) -> list[str]:
    if short in DATA:
        return [f".. py:data:: {qualified}", "", *_indent(DATA[short]), ""]
    if inspect.isclass(obj) and issubclass(obj, tuple):
        return [f".. autoclass:: {qualified}", ""]  # a NamedTuple: its signature names the fields
    if inspect.isclass(obj):
        return [f".. autoclass:: {qualified}", "   :members:", ""]
    return [f".. autofunction:: {qualified}", ""]


class _Generating(SphinxDirective):
    def emit(self, lines: Iterable[str]) -> list[nodes.Node]:
        content = StringList()
        source = f"<{self.name} in {self.env.docname}>"
        for i, line in enumerate(lines):
            content.append(line, source, i)
        node = nodes.section()
        node.document = self.state.document
        nested_parse_with_titles(self.state, content, node)
        return node.children


class FamilyDirective(_Generating):
    """``.. seqops-family:: NAME``: every public name of ``seqops.NAME`` (an op family), or
    ``plugins`` (the rest of the namespace, grouped by defining module) or ``convert``."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        family = self.arguments[0]
        if family == "convert":
            names = [f"seqops.convert.{n}" for n in _convert_names()]
            return self.emit(line for q in names for line in _other_entry(q, eval_name(q), q))
        if family == "plugins":
            return self.emit(self._plugins())
        if family not in FAMILIES:
            msg = f"unknown family {family!r}; the families: {', '.join(FAMILIES)}, convert, plugins"
            raise self.error(msg)
        by_function = _ops_by_function()
        module = f"seqops.{family}"
        names = [n for n in _public_names() if _module_of(n) == module]
        ops = [by_function[getattr(seqops, n)] for n in names if getattr(seqops, n) in by_function]
        ops.sort(key=lambda op: list(seqops.declared_ops()).index(op))
        others = [n for n in names if getattr(seqops, n) not in by_function]
        lines: list[str] = []
        for op in ops:
            lines += _op_entry(op)
        if others:
            lines += ["Helpers and parameter containers", "-" * 32, ""]
            for n in others:
                lines += _other_entry(f"seqops.{n}", getattr(seqops, n), n)
        return self.emit(lines)

    def _plugins(self) -> list[str]:
        taken = {f"seqops.{f}" for f in FAMILIES}
        groups: dict[str, list[str]] = {}
        for n in _public_names():
            module = _module_of(n)
            if module in taken:
                continue
            heading = OTHER_GROUPS.get(module)
            if heading is None:
                logger.warning(
                    "seqops.%s (defined in %s) has no family and no group of the plugins page; "
                    "add its module to OTHER_GROUPS in docs/_ext/seqops_docs.py",
                    n,
                    module,
                    location=(self.env.docname, self.lineno),
                )
                continue
            groups.setdefault(heading, []).append(n)
        lines: list[str] = []
        for heading, names in groups.items():
            lines += [heading, "-" * len(heading), ""]
            for n in names:
                lines += _other_entry(f"seqops.{n}", getattr(seqops, n), n)
        return lines


def eval_name(qualified: str) -> Any:
    obj: Any = seqops
    for part in qualified.split(".")[1:]:
        obj = getattr(obj, part)
    return obj


class ContractDirective(_Generating):
    """``.. seqops-contract::``: every declared op's contract, by family, in declaration order."""

    def run(self) -> list[nodes.Node]:
        by_family: dict[str, list[Op]] = {}
        for op in seqops.declared_ops():
            by_family.setdefault(_family_of(op), []).append(op)
        lines: list[str] = []
        for family, ops in by_family.items():
            heading = family.capitalize()
            lines += [heading, "-" * len(heading), ""]
            for op in ops:
                lines += _contract(op, index=True)
                lines += [f"   Public function: :func:`seqops.{op.name}`.", ""]
        return self.emit(lines)


def _check_coverage(app: Sphinx, env: Any) -> None:
    """Warn for each public name the site does not document."""
    documented = set(env.get_domain("py").objects)
    wanted = [f"seqops.{n}" for n in _public_names()]
    wanted += [f"seqops.convert.{n}" for n in _convert_names()]
    wanted += [f"seqops.ops.{op.name}" for op in seqops.declared_ops()]
    for name in wanted:
        if name not in documented:
            logger.warning("%s is public but not documented on any page of the site", name)


def _repository_folders(app: Sphinx, config: Any) -> None:
    """A guide's link to a folder of the repository outside ``docs/`` (``../bench/results``)
    is shown as its text: a folder is no page of the site. Only links to folders that exist
    are let through (``nitpick_ignore``, which MyST honours); any other missing target warns."""
    srcdir = Path(app.srcdir).resolve()
    ignored = list(config.nitpick_ignore)
    for guide in srcdir.glob("*.md"):
        for target in re.findall(r"\]\((\.\./[^)#\s]+)\)", guide.read_text(encoding="utf-8")):
            if (srcdir / target).resolve().is_dir():
                ignored.append(("myst", target))
    config.nitpick_ignore = ignored


_LATEST = re.compile(r"<latest: ([^>]+)>")


def _latest_results(app: Sphinx, docname: str, source: list[str]) -> None:
    """Replace ``<latest: bench/results/cpu-*.md>`` in a page by the newest file the pattern
    matches (relative to the repository root; the names carry the date, so the last in
    name order), so the pages show the latest reports without naming their dates. A
    pattern that matches nothing warns."""
    root = Path(app.srcdir).resolve().parent

    def newest(match: re.Match[str]) -> str:
        found = sorted(root.glob(match.group(1)))
        if not found:
            logger.warning("%s: no file matches %s", docname, match.group(1))
            return match.group(1)
        return found[-1].relative_to(root).as_posix()

    source[0] = _LATEST.sub(newest, source[0])


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("seqops-family", FamilyDirective)
    app.add_directive("seqops-contract", ContractDirective)
    app.connect("env-check-consistency", _check_coverage)
    app.connect("config-inited", _repository_folders)
    app.connect("source-read", _latest_results)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
