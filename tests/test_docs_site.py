"""The documentation site (docs/, Sphinx) builds with warnings as errors.

The build imports seqops and asks the registry for every op's implementations, so a public
function without a page, a docstring numpydoc cannot render, a broken link in a guide or a
missing picture fails here. ``pip install -e ".[docs]"`` (the ``test`` extra has the same
packages) to run it; it skips without Sphinx.
"""

from __future__ import annotations

import html
import re
import subprocess
import sys
from pathlib import Path

import pytest

for _module in ("sphinx", "numpydoc", "myst_parser"):
    pytest.importorskip(_module)

DOCS = Path(__file__).parents[1] / "docs"


def _build(source: Path, out: Path) -> subprocess.CompletedProcess[str]:
    """``sphinx -W --keep-going -b html source out``, as the README says to build the site."""
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"]
    command += ["-d", str(out / ".doctrees"), str(source), str(out)]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def _text(page: Path) -> str:
    """The text of an HTML page without its tags and without any white space."""
    found = re.sub(r"<(script|style).*?</\1>|<[^>]+>", " ", page.read_text(encoding="utf-8"), flags=re.S)
    return re.sub(r"\s+", "", html.unescape(found))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    result = _build(DOCS, out)
    assert result.returncode == 0, f"the docs build failed:\n{result.stdout}\n{result.stderr}"
    return out


def test_site_builds_without_warnings(site: Path) -> None:
    assert (site / "index.html").is_file()
    for page in ("contract", "support", "examples", "writing-a-backend", "internals", "api/plugins"):
        assert (site / f"{page}.html").is_file(), page


def test_api_pages_show_shapes_contract_and_fast_paths(site: Path) -> None:
    import seqops

    attention = _text(site / "api" / "attention.html")
    assert "qarray,shape(...,L,E)" in attention  # shapes from the docstring
    assert "seqops.ops.scaled_dot_product_attention(backend,q,k,v,/,*,mask,bias," in attention  # the stub
    op = seqops.ops.scaled_dot_product_attention
    names = {i.name for b, ok in seqops.backends() if ok for i in seqops.implementations(op, b)}
    assert "portable-tiled" in names
    for name in names:  # the implementations (torch-sdpa where torch is installed), from the registry
        assert name in attention, name
    contract = (site / "contract.html").read_text(encoding="utf-8")
    for op in seqops.declared_ops():
        assert f'id="seqops.ops.{op.name}"' in contract, op.name


def test_examples_page_has_the_pictures(site: Path) -> None:
    examples = (site / "examples.html").read_text(encoding="utf-8")
    assert "gradient_flow.png" in examples
    assert "conformance-cpu" in examples
    assert (site / "_images" / "gradient_flow.png").is_file()


def test_a_warning_fails_the_build(tmp_path: Path) -> None:
    """The same build command on a project whose only page leaves most public functions out:
    the extension warns for each, and ``-W`` turns that into a failure."""
    source = tmp_path / "src"
    source.mkdir()
    (source / "conf.py").write_text(
        "import sys\n"
        f"sys.path[:0] = [{str(DOCS / '_ext')!r}, {str(DOCS.parent / 'conformance')!r}]\n"
        "extensions = ['sphinx.ext.autodoc', 'numpydoc', 'seqops_docs']\n"
        "numpydoc_show_class_members = False\n"
    )
    (source / "index.rst").write_text(
        "Only activations\n================\n\n.. seqops-family:: activations\n"
    )
    result = _build(source, tmp_path / "out")
    assert result.returncode != 0
    assert "seqops.scaled_dot_product_attention is public but not documented" in result.stderr
