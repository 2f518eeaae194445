"""Ops declared once: contracts checked at registration, composites dispatching their parts,
the failure policy on symbolic sizes, and the layering rules (public names only, no cycles)."""

from __future__ import annotations

import ast
import inspect
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import seqops

ROOT = Path(__file__).resolve().parents[1]


# -- declarations ------------------------------------------------------------------------------
def test_every_declared_op_has_its_public_function_and_a_contract() -> None:
    ops = seqops.declared_ops()
    assert len(ops) == len({op.name for op in ops}) >= 39
    for op in ops:
        assert getattr(seqops, op.name) is op.function, op.name
        assert op.name in seqops.__all__
        assert op.doc, f"{op.name} has no contract docstring"
        assert next(iter(op.signature.parameters)) == "backend"
        assert getattr(seqops.ops, op.name) is op


def test_every_public_wrapper_takes_exactly_its_function_s_parameters() -> None:
    # public() compiles each wrapper from its function's signature (no *args/**kwargs hop).
    for op in seqops.declared_ops():
        wrapper = inspect.signature(op.function, follow_wrapped=False)
        written = inspect.signature(op.function.__wrapped__)  # type: ignore[attr-defined]
        assert [(p.name, p.kind, p.default) for p in wrapper.parameters.values()] == [
            (p.name, p.kind, p.default) for p in written.parameters.values()
        ], op.name


def test_a_public_wrapper_forwards_positional_and_keyword_arguments_as_given() -> None:
    x = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(seqops.layer_norm(x, None, None, eps=0.5), seqops.layer_norm(x, eps=0.5))
    with pytest.raises(TypeError, match="positional"):
        seqops.softmax(x, -1)  # axis is keyword-only, in the wrapper as in the function
    softmax = seqops.ops.softmax.function
    try:
        with pytest.raises(TypeError, match="no \\*args or \\*\\*kwargs"):
            seqops._dispatch.public(seqops.ops.softmax)(lambda *x: x)
    finally:
        seqops.ops.softmax.function = softmax


def test_unknown_op_names_fail_where_they_are_written() -> None:
    with pytest.raises(ValueError, match="unknown op 'softmaxx'; declared ops: softmax, "):
        seqops.Implementation("softmaxx", "typo", lambda *a, **k: None)
    with pytest.raises(ValueError, match="unknown op 'kl_mvm'"):
        seqops.Limitation("no linalg", op="kl_mvm")
    with pytest.raises(ValueError, match="unknown op 'nope'"):
        seqops.implementations("nope", "numpy")
    assert seqops.Limitation("x", op=seqops.ops.kl_mvn).op == "kl_mvn"  # an Op or its name


def test_every_built_in_implementation_matches_its_contract() -> None:
    for backend in dict.fromkeys(b for b, _ in seqops.backends()):
        for op in seqops.declared_ops():
            impls = seqops.implementations(op, backend)
            assert impls and impls[-1].name == "portable", (op.name, backend.name)
            for impl in impls:
                assert op.mismatch(impl.fn) is None, (op.name, impl.name)
                assert impl.decline is None or op.mismatch(impl.decline) is None, (op.name, impl.name)


class Mismatched:
    """A fast path for softmax whose fn lacks the ``axis`` option, and one for attention
    whose decline has no ``backend`` parameter."""

    @seqops.hookimpl
    def seqops_implementations(self, backend: seqops.Backend) -> list[seqops.Implementation] | None:
        if backend.name != "numpy":
            return None

        def softmax(backend: Any, x: Any, /) -> Any:
            raise AssertionError("never called")

        def decline(q: Any, k: Any, v: Any, /, **options: Any) -> str | None:
            raise AssertionError("never called")

        return [
            seqops.Implementation(seqops.ops.softmax, "no-axis", softmax),
            seqops.Implementation(
                seqops.ops.scaled_dot_product_attention, "no-backend", lambda *a, **k: None, decline=decline
            ),
        ]


def test_an_implementation_not_matching_its_contract_is_refused_at_registration() -> None:
    with pytest.warns(seqops.SeqopsPluginWarning) as warned:
        name = seqops.register_plugin(Mismatched(), name="mismatched")
    try:
        messages = [str(w.message) for w in warned]
        assert any(
            "'mismatched': implementation 'no-axis' of 'softmax' refused: its fn does not match" in m
            and "the keyword parameter 'axis'" in m
            for m in messages
        ), messages
        assert any(
            "'no-backend' of 'scaled_dot_product_attention' refused: its decline" in m and "missing 'v'" in m
            for m in messages
        ), messages
        names = [i.name for i in seqops.implementations(seqops.ops.softmax, "numpy")]
        assert names == ["numpy-softmax", "portable"]  # the refused one is not there
        x = np.array([1.0, 2.0])
        np.testing.assert_allclose(seqops.softmax(x), np.exp(x) / np.exp(x).sum())
    finally:
        seqops.unregister_plugin(name)


def test_the_contract_check_names_what_is_wrong() -> None:
    op = seqops.ops.layer_norm  # (backend, x, weight, bias, /, *, eps)
    assert op.mismatch(lambda backend, x, weight, bias, /, *, eps: None) is None
    assert op.mismatch(lambda b, a, w, c, *, eps, extra=1: None) is None  # any names; defaults ok
    assert op.mismatch(lambda *args, **kwargs: None) is None
    assert "missing 'bias'" in str(op.mismatch(lambda backend, x, weight, *, eps: None))
    assert "keyword parameter 'eps'" in str(op.mismatch(lambda backend, x, weight, bias: None))
    assert "requires the parameter 'scale'" in str(op.mismatch(lambda b, x, w, c, *, eps, scale: None))


# -- composites dispatch their parts -------------------------------------------------------------
class RecordingAttention:
    """An attention 'fast path' on NumPy that records its calls and computes the contract."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, ...]] = []

    def attention(self, backend: Any, q: Any, k: Any, v: Any, /, *, mask: Any, bias: Any, is_causal: bool,
                  scale: float, dropout_p: float, rng: Any, enable_gqa: bool, return_weights: bool) -> Any:  # fmt: skip
        self.calls.append(tuple(q.shape))
        logits = (q @ np.swapaxes(k, -1, -2)) * scale + (0.0 if bias is None else bias)
        allowed = np.ones(logits.shape, dtype=bool) if mask is None else np.broadcast_to(mask, logits.shape)
        if is_causal:
            allowed = allowed & np.tri(q.shape[-2], k.shape[-2], dtype=bool)
        logits = np.where(allowed, logits, -np.inf)
        top = np.max(logits, axis=-1, keepdims=True)
        weights = np.where(allowed, np.exp(logits - np.where(np.isfinite(top), top, 0.0)), 0.0)
        total = weights.sum(-1, keepdims=True)
        weights = np.where(total > 0, weights / np.where(total > 0, total, 1.0), 0.0)
        out = weights @ v
        return (out, weights) if return_weights else out

    @seqops.hookimpl
    def seqops_implementations(self, backend: seqops.Backend) -> list[seqops.Implementation] | None:
        if backend.name != "numpy":
            return None
        return [seqops.Implementation(seqops.ops.scaled_dot_product_attention, "recorder", self.attention)]


def _params(rng: np.random.Generator, d: int) -> seqops.MHAParams:
    w = [rng.standard_normal((d, d)) / math.sqrt(d) for _ in range(4)]
    return seqops.MHAParams(*w, *(0.1 * rng.standard_normal(d) for _ in range(4)))


def test_an_attention_fast_path_reaches_every_composite() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 6, 8))
    params = _params(rng, 8)
    layer = seqops.EncoderLayerParams(
        params, rng.standard_normal((8, 16)) / 4, None, rng.standard_normal((16, 8)) / 4, None
    )
    windows = rng.standard_normal((1, 4, 4, 8))
    table = rng.standard_normal((9, 2))
    calls = {
        "multi_head_attention": lambda: seqops.multi_head_attention(
            x, x, x, params, num_heads=2, is_causal=True
        ),
        "transformer_encoder_layer": lambda: seqops.transformer_encoder_layer(x, layer, num_heads=2),
        "window_attention": lambda: seqops.window_attention(
            windows, params, num_heads=2, window_size=2, shift_size=1, relative_bias_table=table
        ),
    }
    expected = {name: run() for name, run in calls.items()}  # the portable attention inside
    recorder = RecordingAttention()
    name = seqops.register_plugin(recorder, name="recorder")
    try:
        for op, run in calls.items():
            recorder.calls.clear()
            got = run()
            assert recorder.calls, f"{op} did not dispatch its attention"
            np.testing.assert_allclose(got, expected[op], rtol=1e-12, atol=1e-12)
        assert recorder.calls == [(1, 4, 2, 4, 4)]  # window attention: (B, nW, heads, N, head_dim)
    finally:
        seqops.unregister_plugin(name)


def test_composites_declare_their_parts() -> None:
    ops = seqops.ops
    assert ops.multi_head_attention.parts == (ops.scaled_dot_product_attention, ops.apply_rotary)
    assert ops.window_attention.parts == (ops.scaled_dot_product_attention,)
    assert set(ops.transformer_encoder_layer.parts) == {
        ops.multi_head_attention,
        ops.layer_norm,
        ops.feed_forward,
    }


# -- failure policy -------------------------------------------------------------------------------
def test_jax_export_with_a_symbolic_batch_then_every_op_still_works() -> None:
    jax = pytest.importorskip("jax")
    from jax import export
    from seqops_conformance.cases import CASES

    (batch,) = export.symbolic_shape("b")
    spec = jax.ShapeDtypeStruct((batch, 4, 16, 8), np.float32)
    attend = jax.jit(lambda q: seqops.scaled_dot_product_attention(q, q, q, is_causal=True))
    old = seqops.set_attention_memory_budget(0)  # the tiled decline must answer on a symbolic size
    try:
        exported = export.export(attend)(spec)
    finally:
        seqops.set_attention_memory_budget(old)
    q = np.random.default_rng(0).standard_normal((3, 4, 16, 8)).astype(np.float32)
    np.testing.assert_allclose(
        np.asarray(exported.call(q)),
        np.asarray(seqops.scaled_dot_product_attention(q, q, q, is_causal=True)),
        rtol=1e-5,
        atol=1e-6,
    )
    assert not seqops.registry.quarantined and not seqops.registry.quarantined_implementations
    ran = set()
    for case in CASES:  # every op, in the same process
        if case.op not in ran and case.call is None:
            args, kwargs = case.inputs(0)
            kwargs = {k: (np.zeros(1) if repr(v) == "LIKE" else v) for k, v in kwargs.items()}
            case.function(*args, **kwargs)
            ran.add(case.op)
    assert ran == {op.name for op in seqops.declared_ops()}


def test_our_own_implementations_are_never_quarantined(monkeypatch: pytest.MonkeyPatch) -> None:
    from seqops import config

    def broken(*args: Any, **kwargs: Any) -> int:
        raise ZeroDivisionError("a bug in our code")

    monkeypatch.setattr(config, "score_rows", broken)  # the tiled path's decline asks it
    q = np.ones((2, 3, 4))
    dropout = {"dropout_p": 0.5, "rng": 0}  # numpy-fast's attention declines it: the portable path runs
    with pytest.raises(ZeroDivisionError, match="a bug in our code"):
        seqops.scaled_dot_product_attention(q, q, q, **dropout)
    monkeypatch.undo()
    assert "portable" not in seqops.registry.quarantined
    assert seqops.scaled_dot_product_attention(q, q, q, **dropout).shape == (2, 3, 4)


# -- layering ---------------------------------------------------------------------------------------
def _imports(path: Path, submodules: set[str] = frozenset()) -> list[tuple[str, bool]]:  # type: ignore[assignment]
    """``(module, at top level)`` of each absolute import in ``path`` (``TYPE_CHECKING`` blocks
    skipped); ``from a import b`` counts as importing ``a.b`` alone when ``a.b`` is one of
    ``submodules``, else as importing ``a`` (and ``a.b``, for the public-name check)."""
    tree = ast.parse(path.read_text())
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            inner = top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                found.extend((alias.name, top) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                named = [f"{child.module}.{alias.name}" for alias in child.names]
                if not all(name in submodules for name in named):
                    found.append((child.module, top))
                found.extend((name, top) for name in named)
            visit(child, inner)

    visit(tree, True)
    return found


@pytest.mark.parametrize("folder", ["conformance", "backends", "plugins", "examples"])
def test_the_product_backends_and_plugins_import_only_public_seqops_names(folder: str) -> None:
    offenders = [
        f"{path.relative_to(ROOT)}: {module}"
        for path in sorted((ROOT / folder).rglob("*.py"))
        for module, _ in _imports(path)
        if module.startswith("seqops._")
    ]
    assert not offenders


def test_the_seqops_package_has_no_import_cycle() -> None:
    """Module -> the seqops modules it imports anywhere (function-local imports included)."""
    package = ROOT / "seqops"
    modules = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): path
        for path in package.rglob("*.py")
    }
    graph = {
        name: {m for m, _ in _imports(path, set(modules)) if m in modules and m != name}
        for name, path in modules.items()
    }
    graph["seqops.cli"] = set()  # the entry point of the command line sits above the package
    state: dict[str, int] = {}

    def cycle_from(node: str, stack: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack, node, nxt]
            if nxt not in state and (found := cycle_from(nxt, [*stack, node])):
                return found
        state[node] = 2
        return None

    for name in sorted(graph):
        if name not in state and (found := cycle_from(name, [])):
            pytest.fail(" -> ".join(found))


def test_importing_a_plugin_module_imports_no_framework() -> None:
    import subprocess

    code = (
        "import sys, seqops, seqops_torch_fast, seqops_jax_fast, seqops_cupy_fast\n"
        "print(sorted(m for m in ('torch', 'jax', 'cupy') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_backend_objects_stay_the_same_when_plugins_change() -> None:
    before = {b.name: b for b, _ in seqops.backends()}
    name = seqops.register_plugin(RecordingAttention(), name="recorder")
    seqops.unregister_plugin(name)
    after = {b.name: b for b, _ in seqops.backends()}
    assert all(after[n] is b for n, b in before.items())


def test_a_conformance_case_of_an_undeclared_op_fails_when_written() -> None:
    from seqops_conformance.cases import Case

    with pytest.raises(ValueError, match="case 'x' of an unknown op 'sofmax'"):
        Case("sofmax", "x", lambda rng: ((), {}), lambda: None)
