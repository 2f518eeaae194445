"""Sphinx configuration of the seqops documentation.

Build: ``sphinx-build -W --keep-going -b html docs docs/_build/html`` (``pip install -e ".[docs]"``);
``tests/test_docs_site.py`` builds it with warnings as errors. The API reference is generated
from the docstrings and from the registry (declared ops, implementations and their declared
``seqops.Limitation``s) by the extension in ``docs/_ext/seqops_docs.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE / "_ext"))
# The conformance package (its support-table helpers) when seqops is not installed in editable mode.
sys.path.insert(0, str(ROOT / "conformance"))

import seqops  # noqa: E402

project = "seqops"
author = "the seqops developers"
copyright = "2026, the seqops developers"  # noqa: A001
release = version = seqops.__version__

extensions = [
    "sphinx.ext.autodoc",
    "numpydoc",
    "myst_parser",
    "seqops_docs",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

autodoc_member_order = "bysource"
autodoc_typehints = "none"  # the numpydoc sections say the types and shapes
autodoc_default_options = {"member-order": "bysource"}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

html_title = f"seqops {release}"
try:
    import furo  # noqa: F401

    html_theme = "furo"
except ImportError:  # pragma: no cover - the docs extra installs furo
    html_theme = "alabaster"
html_static_path: list[str] = []
