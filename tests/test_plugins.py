"""The plugin contract: third-party backends and fast paths through the hooks, quarantine,
the disabling environment variables, explain(), and backend resolution."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import seqops
from seqops import _builtin, hookspecs
from seqops._plugins import _Registry

strict = pytest.importorskip("array_api_strict")


class ToyStrictBackend(seqops.Backend):
    """array-api-strict under another name, as a third party would write it."""

    name = "toy-strict"
    library = "array_api_strict"

    def owns(self, x: object, /) -> bool:
        return type(x).__module__.startswith("array_api_strict.")

    def namespace(self) -> Any:
        return strict


class ToyBackendPlugin:
    @seqops.hookimpl
    def seqops_backends(self) -> list[seqops.Backend]:
        return [ToyStrictBackend()]


class ToyFastPath:
    """Offers a softmax on the toy backend that only handles the last axis."""

    def __init__(self) -> None:
        self.calls = 0

    def softmax(self, backend: seqops.Backend, x: Any, /, *, axis: int) -> Any:
        self.calls += 1
        e = strict.exp(x - strict.max(x, axis=axis, keepdims=True))
        return e / strict.sum(e, axis=axis, keepdims=True)

    @seqops.hookimpl
    def seqops_implementations(self, backend: seqops.Backend) -> list[seqops.Implementation] | None:
        if backend.name != "toy-strict":
            return None
        return [seqops.Implementation(seqops.ops.softmax, "toy-softmax", self.softmax, decline=self.decline)]

    @staticmethod
    def decline(backend: seqops.Backend, x: Any, /, *, axis: int) -> str | None:
        return None if axis in (-1, x.ndim - 1) else "only the last axis"


@pytest.fixture
def registered():
    """Register plugins for one test and always unregister them."""
    names: list[str] = []

    def register(plugin: object, name: str) -> object:
        names.append(seqops.register_plugin(plugin, name=name))
        return plugin

    yield register
    for name in names:
        if seqops.registry.pm.has_plugin(name):
            seqops.unregister_plugin(name)


def test_third_party_backend_and_fast_path_are_used(registered) -> None:
    registered(ToyBackendPlugin(), "toy-backend")
    fast = registered(ToyFastPath(), "toy-fast")
    x = strict.asarray([[0.0, 1.0, 2.0], [3.0, 3.0, 3.0]])

    explained = seqops.explain(seqops.softmax, x)
    assert explained.backend == "toy-strict"
    assert explained.chosen == "toy-softmax"
    out = seqops.softmax(x)
    assert fast.calls == 1
    np.testing.assert_allclose(np.from_dlpack(out)[1], [1 / 3] * 3)

    # Declined calls fall through to the portable implementation, with the reason shown.
    explained = seqops.explain(seqops.softmax, x, axis=0)
    assert explained.chosen == "portable"
    assert any("only the last axis" in decision for _, decision in explained.decisions)
    seqops.softmax(x, axis=0)
    assert fast.calls == 1


def test_unregistering_restores_builtin_backend(registered) -> None:
    x = strict.asarray([1.0, 2.0])
    registered(ToyBackendPlugin(), "toy-backend")
    assert seqops.explain(seqops.softmax, x).backend == "toy-strict"
    seqops.unregister_plugin("toy-backend")
    registered_names = seqops.registry.pm.list_name_plugin()
    assert "toy-backend" not in dict(registered_names)
    assert seqops.explain(seqops.softmax, x).backend == "array_api_strict"


class RaisingImplementations:
    @seqops.hookimpl
    def seqops_implementations(self, backend: seqops.Backend) -> None:
        raise RuntimeError("boom in hook")


class RaisingDecline:
    """Offers softmax and attention on NumPy; the softmax's decline raises."""

    @seqops.hookimpl
    def seqops_implementations(self, backend: seqops.Backend) -> list[seqops.Implementation] | None:
        if backend.name != "numpy":
            return None

        def decline(*args: Any, **kwargs: Any) -> str | None:
            raise RuntimeError("boom in decline")

        def attention(backend: Any, q: Any, *args: Any, **kwargs: Any) -> str:
            return "steady"

        return [
            seqops.Implementation(
                seqops.ops.softmax, "fragile", lambda *a, **k: "fragile ran", decline=decline
            ),
            seqops.Implementation(seqops.ops.scaled_dot_product_attention, "steady", attention),
        ]


def _softmax_reference(x: np.ndarray) -> np.ndarray:
    return np.exp(x) / np.exp(x).sum(axis=-1, keepdims=True)


# One op with options and one with many keywords (every op has its compiled dispatcher).
OPS_BY_DISPATCH = {
    "softmax": (seqops.softmax, _softmax_reference),
    "attention": (
        lambda x: seqops.scaled_dot_product_attention(x, x, x, scale=1.0),
        lambda x: _softmax_reference(x @ x.T) @ x,
    ),
}


@pytest.mark.parametrize("dispatch", OPS_BY_DISPATCH)
def test_a_third_party_plugin_raising_in_its_hook_is_quarantined(dispatch: str) -> None:
    op, reference = OPS_BY_DISPATCH[dispatch]
    x = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]])
    op(x)  # the caches are filled before the plugin arrives
    try:
        with pytest.warns(seqops.SeqopsPluginWarning, match="'broken-fast-path' quarantined.*boom in hook"):
            seqops.register_plugin(RaisingImplementations(), name="broken-fast-path")
        out = op(x)
    finally:
        if seqops.registry.pm.has_plugin("broken-fast-path"):
            seqops.unregister_plugin("broken-fast-path")
        seqops.registry.quarantined.pop("broken-fast-path", None)
    np.testing.assert_allclose(out, reference(x))
    assert not seqops.registry.pm.has_plugin("broken-fast-path")


def test_a_third_party_decline_that_raises_disables_that_implementation_for_that_op_only() -> None:
    x = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]])
    name = seqops.register_plugin(RaisingDecline(), name="fragile-plugin")
    try:
        assert seqops.scaled_dot_product_attention(x, x, x) == "steady"
        pattern = "'fragile-plugin': implementation 'fragile' of 'softmax' quarantined.*boom in decline"
        with pytest.warns(seqops.SeqopsPluginWarning, match=pattern):
            out = seqops.softmax(x)  # the call proceeds to the next implementation
        np.testing.assert_allclose(out, _softmax_reference(x))
        np.testing.assert_allclose(seqops.softmax(x), _softmax_reference(x))  # not asked again, no warning
        assert "fragile" not in [i.name for i in seqops.implementations(seqops.ops.softmax, "numpy")]
        # The plugin and its other implementation are untouched.
        assert seqops.registry.pm.has_plugin(name)
        assert seqops.scaled_dot_product_attention(x, x, x) == "steady"
    finally:
        seqops.unregister_plugin(name)
        seqops.registry.quarantined_implementations.clear()
    np.testing.assert_allclose(seqops.softmax(x), _softmax_reference(x))


class Sentinel:
    """Accepts softmax and attention on NumPy and returns its own name: shows who ran."""

    @seqops.hookimpl
    def seqops_implementations(self, backend: seqops.Backend) -> list[seqops.Implementation] | None:
        if backend.name != "numpy":
            return None

        def fn(backend: Any, *args: Any, **kwargs: Any) -> str:
            if kwargs.get("scale") == 0.25:
                raise ZeroDivisionError("raised by the plugin")
            return "sentinel"

        ops = (seqops.ops.softmax, seqops.ops.scaled_dot_product_attention)
        return [seqops.Implementation(op, "sentinel", fn) for op in ops]


@pytest.mark.parametrize("dispatch", OPS_BY_DISPATCH)
def test_a_plugin_registered_after_calls_is_asked_by_the_next_call(dispatch: str) -> None:
    op, reference = OPS_BY_DISPATCH[dispatch]
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    op(x)
    name = seqops.register_plugin(Sentinel(), name="sentinel")
    try:
        assert op(x) == "sentinel"
    finally:
        seqops.unregister_plugin(name)
    np.testing.assert_allclose(op(x), reference(x))


def test_a_traceback_through_a_compiled_dispatcher_shows_its_source() -> None:
    x = np.ones((2, 2))
    name = seqops.register_plugin(Sentinel(), name="sentinel")
    try:
        with pytest.raises(ZeroDivisionError) as info:
            seqops.scaled_dot_product_attention(x, x, x, scale=0.25)
    finally:
        seqops.unregister_plugin(name)
    frames = "".join(traceback.format_tb(info.value.__traceback__))
    assert "<seqops dispatch scaled_dot_product_attention>" in frames
    assert "return _impl.fn(_backend, q, k, v, mask=mask, bias=bias" in frames
    assert "<seqops public scaled_dot_product_attention>" in frames  # the compiled public wrapper
    assert "return _fn(q, k, v, mask=mask, bias=bias" in frames


class FakeEntryPoint:
    """Stands in for an importlib.metadata.EntryPoint of an installed distribution."""

    def __init__(self, name: str, group: str, target: object) -> None:
        self.name, self.group, self.value, self._target = name, group, f"fake:{name}", target
        self.dist = None  # not a distribution of seqops: a third party's

    def load(self) -> object:
        if isinstance(self._target, Exception):
            raise self._target
        return self._target


def _fresh_registry(monkeypatch: pytest.MonkeyPatch, extra: list[FakeEntryPoint]) -> _Registry:
    from seqops import _plugins

    real = _plugins.entry_points

    def entry_points(*, group: str) -> list[Any]:
        return [*real(group=group), *(ep for ep in extra if ep.group == group)]

    monkeypatch.setattr(_plugins, "entry_points", entry_points)
    registry = _Registry()
    registry.load(_builtin)
    return registry


@pytest.fixture(autouse=True)
def _restore_the_tables():
    """A fresh registry refills the ops' tables (they belong to the process): restore them."""
    yield
    seqops.registry.refresh()


def test_plugin_failing_to_import_is_quarantined(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = FakeEntryPoint("broken", "seqops.plugins", ImportError("no module named 'nowhere'"))
    with pytest.warns(seqops.SeqopsPluginWarning, match="'broken' quarantined: failed to import"):
        registry = _fresh_registry(monkeypatch, [broken])
    names = [b.name for b in registry.backends()]
    assert "numpy" in names
    assert "broken" in registry.quarantined


def test_broken_backend_does_not_break_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken:
        @seqops.hookimpl
        def seqops_backends(self) -> list[Any]:
            return ["not a backend"]

    with pytest.warns(seqops.SeqopsPluginWarning, match="'bad-backend' quarantined.*not a seqops.Backend"):
        registry = _fresh_registry(monkeypatch, [FakeEntryPoint("bad-backend", "seqops.backends", Broken())])
    names = [b.name for b in registry.backends()]
    assert {"numpy", "torch", "jax", "array_api_strict"} <= set(names)


def test_entry_point_plugins_load_and_can_be_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    fast = FakeEntryPoint("toy-fast", "seqops.plugins", ToyFastPath())
    toy = FakeEntryPoint("toy-backend", "seqops.backends", ToyBackendPlugin())
    monkeypatch.delenv("SEQOPS_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv("SEQOPS_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    registry = _fresh_registry(monkeypatch, [fast, toy])
    assert registry.pm.has_plugin("toy-fast") and registry.pm.has_plugin("toy-backend")
    toy_backend = next(b for b in registry.backends() if b.name == "toy-strict")
    assert [impl.name for impl in registry.implementations("softmax", toy_backend)] == [
        "toy-softmax",
        "portable",
    ]

    monkeypatch.setenv("SEQOPS_DISABLE_PLUGINS", "toy-fast, numpy")
    registry = _fresh_registry(monkeypatch, [fast, toy])
    assert not registry.pm.has_plugin("toy-fast")
    assert "numpy" not in [b.name for b in registry.backends()]

    monkeypatch.setenv("SEQOPS_DISABLE_PLUGINS", "")
    monkeypatch.setenv("SEQOPS_DISABLE_PLUGIN_AUTOLOAD", "1")
    registry = _fresh_registry(monkeypatch, [fast, toy])
    assert not registry.pm.has_plugin("toy-fast")  # fast paths are not autoloaded
    assert registry.pm.has_plugin("toy-backend")  # backends still are


def test_backends_report_availability_with_reason() -> None:
    table = {backend.name: ok for backend, ok in seqops.backends()}
    assert {"numpy", "torch", "jax", "cupy", "array_api_strict"} <= set(table)
    assert table["numpy"]
    for availability in table.values():
        assert availability.available or availability.reason


def test_cupy_without_gpu_is_unavailable_with_reason() -> None:
    cupy_backend = next(b for b, _ in seqops.backends() if b.name == "cupy")
    availability = cupy_backend.availability()
    try:
        import cupy

        has_gpu = cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # noqa: BLE001 - not installed, or no CUDA driver
        has_gpu = False
    assert availability.available == has_gpu
    if not has_gpu:
        assert "not installed" in availability.reason or "no CUDA device" in availability.reason


def test_mixed_libraries_raise_type_error_naming_them() -> None:
    torch = pytest.importorskip("torch")
    q = np.ones((2, 3, 4), dtype=np.float32)
    with pytest.raises(TypeError, match=r"`q` is numpy .* but `k` is torch"):
        seqops.scaled_dot_product_attention(q, torch.ones(2, 3, 4), q)


def test_unknown_array_type_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"`x` must be an array of a seqops backend"):
        seqops.softmax([1.0, 2.0])


def test_use_sets_the_default_creation_backend() -> None:
    torch = pytest.importorskip("torch")
    assert isinstance(seqops.causal_mask(3), np.ndarray)
    with seqops.use("torch"):
        assert isinstance(seqops.causal_mask(3), torch.Tensor)
    assert isinstance(seqops.causal_mask(3, backend="torch"), torch.Tensor)
    with pytest.raises(ValueError, match="unknown backend 'nope'"):
        seqops.causal_mask(3, backend="nope")


def test_frameworks_are_imported_lazily() -> None:
    code = (
        "import sys, numpy as np, seqops\n"
        "seqops.scaled_dot_product_attention(*(np.ones((2, 3, 4)),) * 3)\n"
        "print(sorted(m for m in ('torch', 'jax', 'cupy', 'array_api_strict') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


AGNOSTIC = Path(seqops.__file__).parent / "_agnostic"
FRAMEWORKS = {
    "numpy",
    "torch",
    "jax",
    "jaxlib",
    "cupy",
    "cupyx",
    "dask",
    "array_api_strict",
    "tensorflow",
    "mlx",
}


@pytest.mark.parametrize("path", sorted(AGNOSTIC.glob("*.py")), ids=lambda p: p.name)
def test_portable_core_imports_no_framework(path: Path) -> None:
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert not imported & FRAMEWORKS, f"{path.name} imports {sorted(imported & FRAMEWORKS)}"


def test_every_hook_is_documented_and_tested() -> None:
    """Meta-test (as datasette's): each hookspec has a docstring and appears in this file."""
    specs = [
        name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("seqops_")
    ]
    assert specs
    source = Path(__file__).read_text()
    for name in specs:
        assert (getattr(hookspecs, name).__doc__ or "").strip(), f"{name} has no docstring"
        assert f"def {name}(" in source, f"{name} is not exercised by a toy plugin here"
