"""Packaging (issue 16): the sdist and the wheel built from it hold every package, the
``py.typed`` marker and the entry points; the wheel, installed into a fresh virtual
environment, is the seqops that runs there, and its ``seqops conformance --backend numpy``
passes. All offline: ``python -m build --no-isolation`` with the build backend of this
environment, ``pip install --no-deps --no-index``, and this environment's installed
dependencies made visible to the new one by a path line in a ``.pth`` file — which adds the
directory to ``sys.path`` without processing the ``.pth`` files in it, so the editable seqops
of this environment (activated by such a file) stays out."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
tomllib = pytest.importorskip("tomllib")  # Python 3.11+
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

if importlib.util.find_spec("build") is None:
    pytest.skip("needs build (in the test extra)", allow_module_level=True)

NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv", "venv", "build", "dist", "*.egg-info", "__pycache__", "*.pyc",
    ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis",
)  # fmt: skip
"""What the copy of the checkout leaves out: version control, environments, caches and
build outputs (a stale ``build/lib`` would hide a file missing from the sources)."""

CHECK_INSTALLED = r"""
import importlib.metadata, importlib.util, json, sys
import seqops
dist = importlib.metadata.distribution("seqops")
tops = sys.argv[1:]
print(json.dumps({
    "seqops": seqops.__file__,
    "version": seqops.__version__,
    "dist_version": dist.version,
    "dist_files": str(dist.locate_file("seqops/__init__.py")),
    "origins": {name: importlib.util.find_spec(name).origin for name in tops},
    "entry_points": sorted([ep.group, ep.name, ep.value] for ep in dist.entry_points),
    "requires": dist.requires or [],
    "license": dist.metadata["License-Expression"],
    "license_files": dist.metadata.get_all("License-File") or [],
    "classifiers": dist.metadata.get_all("Classifier") or [],
    "urls": dist.metadata.get_all("Project-URL") or [],
    "editable_finder": any("__editable__" in type(f).__module__ for f in sys.meta_path),
}))
"""


def _package_files(tree: Path) -> dict[str, str]:
    """Every file of the packages setuptools finds in ``tree`` (its ``packages.find``):
    its path in the wheel -> its path in the sources."""
    find = PYPROJECT["tool"]["setuptools"]["packages"]["find"]
    found = {}
    for where in find["where"]:
        for top in (tree / where).iterdir():
            package = top.is_dir() and top.name.isidentifier()  # not seqops.egg-info
            if package and any(top.match(pattern) for pattern in find["include"]):
                for path in top.rglob("*"):
                    if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                        found[path.relative_to(tree / where).as_posix()] = path.relative_to(tree).as_posix()
    return found


def _declared_entry_points() -> list[list[str]]:
    project = PYPROJECT["project"]
    groups = {"console_scripts": project["scripts"], **project["entry-points"]}
    return sorted([group, name, value] for group, eps in groups.items() for name, value in eps.items())


def _run(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sdist and the wheel built from it (``python -m build``: sdist first, then the
    wheel from the unpacked sdist), from a copy of the checkout."""
    tmp = tmp_path_factory.mktemp("wheel")
    shutil.copytree(ROOT, tmp / "src", ignore=NOT_SOURCES, symlinks=True)
    _run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(tmp / "dist"), str(tmp / "src")],
        tmp,
    )
    wheels = sorted((tmp / "dist").glob("*.whl"))
    sdists = sorted((tmp / "dist").glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, sorted((tmp / "dist").iterdir())
    return {"tmp": tmp, "src": tmp / "src", "wheel": wheels[0], "sdist": sdists[0]}


@pytest.fixture(scope="module")
def venv(built: dict[str, Path]) -> dict[str, Path]:
    """A fresh virtual environment with the wheel installed and this environment's
    site-packages on its path after its own."""
    tmp = built["tmp"]
    env = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(env)], tmp)
    python = env / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
          "--no-cache-dir", str(built["wheel"])], tmp)  # fmt: skip
    purelib = Path(
        _run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], tmp
        ).stdout.strip()
    )
    ours = dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
    (purelib / "zz_seqops_test_dependencies.pth").write_text("".join(f"{p}\n" for p in ours))
    return {"python": python, "bin": python.parent, "purelib": purelib}


def test_the_version_is_written_once() -> None:
    project = PYPROJECT["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "seqops.__version__"}
    written = [
        path.relative_to(ROOT).as_posix()
        for where in ("seqops", "backends", "plugins", "conformance")
        for path in (ROOT / where).rglob("*.py")
        if re.search(r"^__version__\s*=", path.read_text(), re.M)
    ]
    assert written == ["seqops/__init__.py"]


def test_the_sdist_and_the_wheel_hold_every_package_file_and_py_typed(built) -> None:
    expected = _package_files(built["src"])
    assert {"seqops/py.typed", "seqops/__init__.py", "seqops_conformance/pytest_plugin.py"} <= expected.keys()
    assert {"seqops_numpy_fast/__init__.py", "seqops_numpy/__init__.py"} <= expected.keys()
    in_wheel = set(zipfile.ZipFile(built["wheel"]).namelist())
    assert not expected.keys() - in_wheel, sorted(expected.keys() - in_wheel)
    unexpected = {n for n in in_wheel if ".dist-info/" not in n} - expected.keys()
    assert not unexpected, sorted(unexpected)  # e.g. tests/ or bench/ shipped as packages
    with tarfile.open(built["sdist"]) as sdist:
        in_sdist = {n.split("/", 1)[1] for n in sdist.getnames() if "/" in n}
    sources = {"pyproject.toml", "README.md", *expected.values()}
    assert sources <= in_sdist, sorted(sources - in_sdist)


def test_the_wheel_is_named_by_the_one_version(built) -> None:
    import seqops

    assert built["wheel"].name == f"seqops-{seqops.__version__}-py3-none-any.whl"
    assert built["sdist"].name == f"seqops-{seqops.__version__}.tar.gz"


def test_the_installed_wheel_is_the_seqops_of_the_new_environment(built, venv) -> None:
    tops = ["seqops", "seqops_numpy", "seqops_torch", "seqops_jax", "seqops_cupy", "seqops_strict",
            "seqops_numpy_fast", "seqops_torch_fast", "seqops_jax_fast", "seqops_cupy_fast", "seqops_conformance"]  # fmt: skip
    done = _run([str(venv["python"]), "-c", CHECK_INSTALLED, *tops], built["tmp"])
    found = json.loads(done.stdout)
    purelib = str(venv["purelib"])
    assert found["seqops"].startswith(purelib), found["seqops"]  # not the editable checkout
    assert not found["editable_finder"]
    assert found["dist_files"].startswith(purelib)  # the metadata read is the wheel's
    for name, origin in found["origins"].items():
        assert origin and origin.startswith(purelib), (name, origin)
    assert found["version"] == found["dist_version"]
    assert found["entry_points"] == _declared_entry_points()
    groups = {group for group, *_ in found["entry_points"]}
    assert {"console_scripts", "seqops.backends", "seqops.plugins", "pytest11"} <= groups
    core = [r for r in found["requires"] if "extra ==" not in r]
    assert sorted(core) == sorted(PYPROJECT["project"]["dependencies"])
    assert found["license"] == "BSD-3-Clause" and found["license_files"] == ["LICENSE"]
    assert {"Typing :: Typed", "Topic :: Scientific/Engineering :: Artificial Intelligence"} <= set(
        found["classifiers"]
    )
    assert any(u.startswith("Changelog, ") for u in found["urls"])
    assert (venv["purelib"] / "seqops" / "py.typed").is_file()


def test_seqops_conformance_from_the_wheel_passes_on_numpy(built, venv) -> None:
    seqops = venv["bin"] / ("seqops.exe" if os.name == "nt" else "seqops")
    start = time.perf_counter()
    done = _run(
        [str(seqops), "conformance", "--backend", "numpy", "--no-progress"], built["tmp"], timeout=600
    )
    took = time.perf_counter() - start
    print(f"seqops conformance --backend numpy from the wheel: {took:.1f} s")
    assert re.search(r"^conformance: 1 backend, \d+ ops, \d+ checks .*, 0 failed", done.stdout, re.M), (
        done.stdout
    )
    assert re.search(r"^coverage: (\d+) ops passed / \1 run / \1 total$", done.stdout, re.M), done.stdout
    info = _run([str(seqops), "info"], built["tmp"]).stdout
    assert "  numpy: numpy " in info and "numpy-fast (seqops_numpy_fast)" in info
