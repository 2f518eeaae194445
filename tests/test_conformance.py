"""The conformance run: it passes on the fast backends, reports in every format, checks
gradients on torch and JAX, and catches deliberately wrong fast paths (mutation tests of the
suite itself: wrong values, wrong gradients with right values, samples outside the support)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import array_api_compat.numpy as npx
import numpy as np
import pytest
from seqops_conformance import CASES, GRADIENT_TOLERANCES, TOLERANCES, Report, run
from seqops_conformance.runner import _compare
from seqops_conformance.tolerances import error

import seqops
from seqops._agnostic import activations, attention, generative, recurrent
from seqops.cli import main

FAST = ["numpy", "array_api_strict"]
ATTENTION_FAMILY = {
    "scaled_dot_product_attention",
    "causal_mask",
    "padding_mask",
    "sinusoidal_positional_encoding",
    "multi_head_attention",
    "layer_norm",
    "feed_forward",
    "transformer_encoder_layer",
    "transformer_decoder_layer",
    "apply_rotary",
    "softmax",
    "log_softmax",
}
RECURRENT_LM_FAMILY = {
    "rnn_cell",
    "rnn",
    "lstm_cell",
    "lstm",
    "gru_cell",
    "gru",
    "cross_entropy",
    "autoregressive_log_likelihood",
    "greedy",
    "sample_logits",
    "decode",
    "clip_grad_norm",
    "clip_grad_value",
}
VISION_FAMILY = {
    "patchify",
    "unpatchify",
    "vit_embed",
    "window_partition",
    "window_reverse",
    "cyclic_shift",
    "shifted_window_mask",
    "relative_position_index",
    "window_attention",
    "patch_merging",
}
GENERATIVE_FAMILY = {
    "pixelcnn_mask",
    "masked_conv2d",
    "reparameterize",
    "kl_normal_standard",
    "kl_normal_normal",
    "kl_mvn",
    "gaussian_log_likelihood",
    "bernoulli_log_likelihood",
    "elbo",
}
DIFFERENTIABLE = {
    "gelu",
    "silu",
    "rms_norm",
    "iwae_bound",
    "gated_feed_forward",
    "relu",
    "vit_embed",
    "window_attention",
    "patch_merging",
    "gru_cell",
    "gru",
    "masked_conv2d",
    "reparameterize",
    "kl_normal_standard",
    "kl_normal_normal",
    "kl_mvn",
    "gaussian_log_likelihood",
    "bernoulli_log_likelihood",
    "elbo",
    "scaled_dot_product_attention",
    "multi_head_attention",
    "transformer_encoder_layer",
    "transformer_decoder_layer",
    "apply_rotary",
    "layer_norm",
    "feed_forward",
    "softmax",
    "log_softmax",
    "rnn",
    "lstm",
    "cross_entropy",
    "autoregressive_log_likelihood",
}


@pytest.fixture(scope="module")
def report() -> Report:
    return run(backends=FAST, progress=False)


def test_fast_backends_conform(report: Report) -> None:
    assert report.ok, "\n".join(
        f"{r.case} {r.backend} {r.dtype}: {r.error} {r.message}" for r in report.failures
    )
    assert {r.backend for r in report.results} == set(FAST)
    assert {r.dtype for r in report.results} == {"float16", "float32", "float64"}


@pytest.mark.parametrize(
    "family",
    [ATTENTION_FAMILY, RECURRENT_LM_FAMILY, VISION_FAMILY, GENERATIVE_FAMILY],
    ids=["attention", "recurrent-lm", "vision", "generative"],
)
def test_every_op_of_the_family_is_checked(report: Report, family: set[str]) -> None:
    assert family <= {case.op for case in CASES}
    for dtype in ("float16", "float32", "float64"):
        assert family <= {r.op for r in report.results if r.status == "pass" and r.dtype == dtype}


def test_gradient_cases_cover_the_differentiable_ops() -> None:
    assert {case.op for case in CASES if case.grad} == DIFFERENTIABLE


def test_numpy_has_no_gradient_rows_and_says_why(report: Report) -> None:
    assert {r.transformation for r in report.results} == {"eager"}
    assert any("not on array_api_strict, numpy (no autodiff)" in note for note in report.notes)


def test_results_name_the_implementation(report: Report) -> None:
    over = "portable over portable-tiled"
    assert {r.implementation for r in report.results if r.status != "skip"} == {
        "portable",
        "portable-tiled",
        over,
        "numpy-silu",  # numpy-fast
        "numpy-topk-sample",
        "numpy-topk-filter",
        "numpy-rotary",
        "numpy-shifted-window-mask",
        "numpy-softmax",
        "numpy-log-softmax",
        "numpy-attention",
        "numpy-rnn",
        "numpy-rnn-cell",
        "numpy-reparameterize",
        "numpy-reparameterize + portable",
        "numpy-kl-normal-normal",
        "numpy-gaussian-log-likelihood",
        "numpy-clip-grad-norm",
        "numpy-clip-grad-value",
    }
    tiled = {(r.case, r.backend, r.dtype) for r in report.results if r.implementation == "portable-tiled"}
    plain = {(r.case, r.backend, r.dtype) for r in report.results if r.implementation == "portable"}
    assert tiled and tiled <= plain  # the tiled attention forced by a budget of 0, beside the plain
    # Only attention itself has a tiled implementation; the composites (multi-head attention,
    # the encoder and decoder layers, window attention) dispatch their attention, and are checked once more
    # over the tiled one.
    assert {case.split("[")[0] for case, _, _ in tiled} == {"scaled_dot_product_attention"}
    composite = {(r.case, r.backend, r.dtype) for r in report.results if r.implementation == over}
    assert composite <= plain
    assert {case.split("[")[0] for case, _, _ in composite} == {
        "multi_head_attention",
        "transformer_encoder_layer",
        "transformer_decoder_layer",
        "window_attention",
    }
    summary = report.summary()
    assert summary["implementations"]["portable-tiled"] == len(tiled)
    assert f"portable-tiled {len(tiled)}" in report.summary_line()


def test_case_ids_are_unique_and_inputs_deterministic() -> None:
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids))
    case = next(c for c in CASES if c.op == "multi_head_attention")
    first, again = case.inputs(), case.inputs()
    np.testing.assert_array_equal(first[0][0], again[0][0])


def test_tolerances_cover_every_backend_dtype() -> None:
    for backend, ok in seqops.backends():
        if ok:
            assert set(backend.floating_dtypes(backend.default_device())) <= set(TOLERANCES)


def test_error_metric() -> None:
    ref = np.array([[1.0, -4.0], [0.0, 2.0]])
    assert error(ref + 0.04, ref) == pytest.approx(0.01)  # normwise: 0.04 / max|ref|
    assert error(np.zeros(3), np.zeros(3)) == 0.0
    assert error(np.array([0.0, 1e-3]), np.zeros(2)) == pytest.approx(1e-3)  # absolute for zero refs
    assert error(np.array([np.nan, 1.0]), np.array([0.5, 1.0])) == np.inf
    assert error(np.array([-np.inf, 1.0]), np.array([-np.inf, 1.0])) == 0.0
    assert error(np.array([True, False, True, True]), np.array([True, True, True, True])) == 0.25
    assert error(np.array([3, 1]), np.array([3, 2])) == 0.5  # integer ids: exact


def test_unknown_names_are_value_errors() -> None:
    with pytest.raises(ValueError, match="unknown backend 'nope'"):
        run(backends=["nope"], progress=False)
    with pytest.raises(ValueError, match="unknown op"):
        run(backends=["numpy"], ops=["softmx"], progress=False)
    with pytest.raises(ValueError, match="unknown transformation 'jitt'"):
        run(backends=["numpy"], transformations=["jitt"], progress=False)
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        run(backends=["numpy"], seed=-1, progress=False)


# -- gradients -------------------------------------------------------------------------------

GRAD_OPS = ["layer_norm", "lstm"]  # one of each family, cheap under jax.jit


@pytest.fixture(scope="module")
def grad_report() -> Report:
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    return run(backends=["torch", "jax"], ops=GRAD_OPS, transformations=["grad"], progress=False)


def test_gradients_agree_on_torch_and_jax(grad_report: Report) -> None:
    assert grad_report.ok, "\n".join(
        f"{r.case} {r.backend} {r.dtype}: {r.message}" for r in grad_report.failures
    )
    rows = {(r.op, r.backend, r.dtype) for r in grad_report.results}
    expected_cases = [c for c in CASES if c.grad and c.op in GRAD_OPS]
    assert len(grad_report.results) == len(expected_cases) * 2 * 2
    assert rows == {(op, b, d) for op in GRAD_OPS for b in ("torch", "jax") for d in ("float64", "float32")}
    assert all(r.transformation == "grad" and r.status == "pass" for r in grad_report.results)
    assert all(r.tolerance == GRADIENT_TOLERANCES[r.dtype] for r in grad_report.results)
    summary = grad_report.summary()
    assert summary["gradient_checks"] == summary["checks"] == len(grad_report.results)
    assert set(summary["worst_gradient_error"]) == {"float64", "float32"}
    assert summary["worst_gradient_error"]["float64"] < 1e-8
    assert f"({summary['checks']} gradients; " in grad_report.summary_line()
    assert "worst gradient error float64" in grad_report.summary_line()


def test_gradient_rows_in_reports(grad_report: Report, tmp_path) -> None:
    cells = {(c.op, c.transformation, c.backend, c.dtype) for c in grad_report.cells()}
    assert ("lstm", "grad", "jax", "float32") in cells
    grad_report.to_markdown(tmp_path / "r.md")
    assert "| lstm | grad | portable | float64 |" in (tmp_path / "r.md").read_text()
    grad_report.to_json(tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text())
    assert {r["transformation"] for r in data["results"]} == {"grad"}
    assert data["summary"]["gradient_checks"] == len(data["results"])
    assert any("float16/bfloat16" in note for note in data["notes"])


# -- command line ----------------------------------------------------------------------------


def test_cli_conformance_writes_reports(tmp_path, capsys) -> None:
    out_json, out_md = tmp_path / "c.json", tmp_path / "c.md"
    argv = ["conformance", "--backend", "numpy", "--op", "softmax", "--op", "causal_mask", "--no-progress"]
    assert main([*argv, "--report", str(out_json), "--report", str(out_md)]) == 0
    assert "0 failed" in capsys.readouterr().out
    data = json.loads(out_json.read_text())
    assert data["schema_version"] == 4
    assert data["summary"]["failed"] == 0 and data["summary"]["checks"] > 0
    assert {c["op"] for c in data["cells"]} == {"softmax", "causal_mask"}
    assert set(data["metadata"]) >= {"seed", "seqops", "backends", "platform", "python", "date", "jax_x64"}
    assert data["coverage"] == {
        "ops_total": len(seqops.declared_ops()),
        "ops_run": 2,
        "ops_passed": 2,
        "failed_ops": [],
        "unchecked_ops": [],
    }
    markdown = out_md.read_text()
    assert markdown.startswith("# seqops conformance")
    assert "| softmax | eager | portable | float32 |" in markdown


def test_cli_info_lists_backends_and_plugins(capsys) -> None:
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"seqops {seqops.__version__}" in out
    assert "numpy: numpy" in out and "portable" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["conformance", "--backend", "nope"],
        ["conformance", "--op", "softmx"],
        ["conformance", "--transformation", "jitt"],
        ["conformance", "--report", "out.pdf"],
        ["conformance", "--seed", "-1"],
        ["frobnicate"],
    ],
)
def test_cli_bad_usage_exits_2(argv, capsys) -> None:
    assert main([*argv, "--no-progress"] if argv[0] == "conformance" else argv) == 2


def test_cli_exits_1_when_nothing_ran(capsys) -> None:
    assert main(["conformance", "--backend", "numpy", "--device", "no-such-device", "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert "nothing was checked" in captured.err and "none of the devices" in captured.out


# -- mutation test: a wrong fast path must be caught -----------------------------------------


def _buggy_softmax(backend, x, /, *, axis):
    """Off by 1 %."""
    return activations.softmax(backend.namespace(), x, axis=axis) * 1.01


def _buggy_sdpa(backend, q, k, v, /, *, mask, is_causal, dropout_p, rng, **options):
    """Causal alignment shifted by one: query i also sees key i + 1."""
    xp = backend.namespace()
    if is_causal:
        shifted = attention.causal_mask(xp, q.shape[-2], k.shape[-2], offset=1, device=backend.device(q))
        mask = shifted if mask is None else xp.logical_and(mask, shifted)
    return attention.scaled_dot_product_attention(xp, q, k, v, mask=mask, is_causal=False, **options)


class _BuggyPlugin:
    @seqops.hookimpl
    def seqops_implementations(self, backend):
        if backend.name != "numpy":
            return None
        return [
            seqops.Implementation(seqops.ops.softmax, "buggy-softmax", _buggy_softmax),
            seqops.Implementation(seqops.ops.scaled_dot_product_attention, "buggy-causal", _buggy_sdpa),
        ]


@pytest.fixture
def buggy_plugin() -> Iterator[None]:
    name = seqops.register_plugin(_BuggyPlugin(), name="buggy")
    try:
        yield
    finally:
        seqops.unregister_plugin(name)


@pytest.mark.usefixtures("buggy_plugin")
def test_conformance_catches_wrong_fast_paths() -> None:
    ops = ["softmax", "scaled_dot_product_attention"]
    report = run(backends=["numpy"], ops=ops, progress=False)
    assert not report.ok
    softmax = [r for r in report.failures if r.op == "softmax"]
    assert {r.dtype for r in softmax} == {"float16", "float32", "float64"}
    assert all(r.implementation == "buggy-softmax" and r.error > r.tolerance for r in softmax)
    causal = {r.case for r in report.failures if r.op == "scaled_dot_product_attention"}
    assert causal == {c.id for c in CASES if c.op == "scaled_dot_product_attention" and "causal" in c.name}
    assert all(r.implementation == "buggy-causal" for r in report.failures if r.op != "softmax")
    # The portable paths run beside the plugin on every case, and pass.
    assert all(r.status == "pass" for r in report.results if r.implementation.startswith("portable"))
    for op in ops:
        portable = {
            (r.case, r.dtype) for r in report.results if r.op == op and r.implementation == "portable"
        }
        assert portable == {
            (r.case, r.dtype) for r in report.results if r.op == op and "buggy" in r.implementation
        }
    cells = {(c.op, c.implementation, c.dtype): c for c in report.cells()}
    assert cells["softmax", "buggy-softmax", "float32"].status == "fail"
    assert cells["softmax", "portable", "float32"].status == "pass"


def _other_device(backend, x, /, *, axis):
    import array_api_strict

    out = activations.softmax(array_api_strict, x, axis=axis)
    return array_api_strict.asarray(out, device=array_api_strict.Device("device1"))


@pytest.mark.parametrize(
    ("backend", "fn", "complaint"),
    [
        (
            "numpy",
            lambda backend, x, /, *, axis: activations.softmax(npx, x.astype("float64"), axis=axis),
            "dtype",
        ),
        (
            "numpy",
            lambda backend, x, /, *, axis: activations.softmax(npx, x, axis=axis).tolist(),
            "not a numpy",
        ),
        ("array_api_strict", _other_device, "device"),
    ],
)
def test_conformance_checks_library_dtype_and_device(backend, fn, complaint) -> None:
    class Plugin:
        @seqops.hookimpl
        def seqops_implementations(self, backend):
            return [seqops.Implementation(seqops.ops.softmax, "contract-breaker", fn)]

    name = seqops.register_plugin(Plugin(), name="contract-breaker")
    try:
        report = run(backends=[backend], ops=["softmax"], dtypes=["float32"], progress=False)
    finally:
        seqops.unregister_plugin(name)
    broken = [r for r in report.results if r.implementation == "contract-breaker"]
    assert broken and report.failures == broken
    assert all(complaint in r.message for r in report.failures)


@pytest.mark.usefixtures("buggy_plugin")
def test_cli_exits_1_on_disagreement(tmp_path, capsys) -> None:
    out = tmp_path / "c.json"
    assert (
        main(["conformance", "--backend", "numpy", "--op", "softmax", "--no-progress", "--report", str(out)])
        == 1
    )
    assert "buggy-softmax" in capsys.readouterr().out
    failed = [r for r in json.loads(out.read_text())["results"] if r["status"] == "fail"]
    assert failed and all(r["implementation"] == "buggy-softmax" and r["op"] == "softmax" for r in failed)


# -- implementation as a dimension: every accepting implementation is checked ---------------

SDPA = "scaled_dot_product_attention"


def test_candidates_validate_and_list_the_accepting_implementations_in_asking_order() -> None:
    q = np.ones((2, 4, 8), dtype=np.float32)
    f = seqops.scaled_dot_product_attention
    assert [name for name, _ in seqops.candidates(f, q, q, q)] == ["numpy-attention", "portable"]
    old = seqops.set_attention_memory_budget(0)
    try:
        found = seqops.candidates(f, q, q, q)
    finally:
        seqops.set_attention_memory_budget(old)
    assert [name for name, _ in found] == ["portable-tiled", "portable"]
    np.testing.assert_allclose(found[0][1](), found[1][1](), rtol=1e-6)  # runs whatever the budget
    with pytest.raises(ValueError) as via_candidates:
        seqops.candidates(f, q, q[..., :3], q)
    with pytest.raises(ValueError) as via_call:
        f(q, q[..., :3], q)
    assert str(via_candidates.value) == str(via_call.value)
    with pytest.raises(TypeError, match="not a dispatched seqops op"):
        seqops.candidates(len, q)


@pytest.fixture(scope="module")
def torch_sdpa_report() -> Report:
    pytest.importorskip("torch")
    return run(backends=["torch"], ops=[SDPA], dtypes=["float32"], transformations=["eager"], progress=False)


def test_torch_sdpa_cases_run_on_the_fast_path_and_on_portable(torch_sdpa_report: Report) -> None:
    report = torch_sdpa_report
    assert report.ok
    by_impl: dict[str, set[str]] = {}
    for r in report.results:
        by_impl.setdefault(r.implementation, set()).add(r.case)
    assert {"torch-sdpa", "portable", "portable-tiled"} <= set(by_impl)
    assert by_impl["portable"] == {c.id for c in CASES if c.op == SDPA}
    assert by_impl["torch-sdpa"] and by_impl["torch-sdpa"] < by_impl["portable"]  # some it declines
    cells = {c.implementation for c in report.cells()}
    assert {"torch-sdpa", "portable"} <= cells
    assert not any("not checked" in note for note in report.notes)


def test_declared_limitations_of_an_implementation_become_skips_with_the_reason() -> None:
    pytest.importorskip("jax")
    import seqops_jax_fast

    report = run(backends=["jax"], ops=[SDPA], dtypes=["float32"], transformations=["eager"], progress=False)
    assert report.ok
    fast = [r for r in report.results if r.implementation == "jax-dot-product-attention"]
    assert fast and all(r.status == "skip" and seqops_jax_fast.ON_CPU in r.message for r in fast)
    assert not any("not checked" in n for n in report.notes)


def _off_by_one_percent_sdpa(backend, q, k, v, /, **options):
    import torch

    return torch.nn.functional.scaled_dot_product_attention(q, k, v) * 1.01


def _plain_only(backend, q, k, v, /, *, mask, is_causal, return_weights, dropout_p, **_):
    plain = mask is None and not is_causal and not return_weights and dropout_p == 0.0
    return None if plain and q.shape[:-2] == k.shape[:-2] else "not this one"


class _BuggyTorchPlugin:
    @seqops.hookimpl
    def seqops_implementations(self, backend):
        if backend.name != "torch":
            return None
        return [
            seqops.Implementation(
                seqops.ops.scaled_dot_product_attention,
                "off-by-one-percent",
                _off_by_one_percent_sdpa,
                decline=_plain_only,
            )
        ]


def test_a_wrong_plugin_fails_under_its_name_while_portable_passes(torch_sdpa_report: Report) -> None:
    pytest.importorskip("torch")
    name = seqops.register_plugin(_BuggyTorchPlugin(), name="off-by-one")
    try:
        report = run(
            backends=["torch"], ops=[SDPA], dtypes=["float32"], transformations=["eager"], progress=False
        )
    finally:
        seqops.unregister_plugin(name)
    assert report.failures and {r.implementation for r in report.failures} == {"off-by-one-percent"}
    assert all(r.error > r.tolerance for r in report.failures)
    portable = [r for r in report.results if r.implementation == "portable"]
    assert len(portable) == len([c for c in CASES if c.op == SDPA])
    assert all(r.status == "pass" for r in portable)
    assert any(r.implementation == "torch-sdpa" for r in report.results)  # still checked, not reached
    cells = {c.implementation: c.status for c in report.cells()}
    assert cells["off-by-one-percent"] == "fail" and cells["portable"] == "pass"
    # Without the plugin the portable rows are the same checks with the same errors.
    before = {r.case: r.error for r in torch_sdpa_report.results if r.implementation == "portable"}
    assert {r.case: r.error for r in portable} == before


def test_disabling_the_plugins_by_environment_leaves_the_portable_results(torch_sdpa_report: Report) -> None:
    code = (
        "import json\n"
        "from seqops_conformance import run\n"
        f"r = run(backends=['torch'], ops=[{SDPA!r}], dtypes=['float32'], transformations=['eager'],"
        " progress=False)\n"
        "print(json.dumps([[x.case, x.implementation, x.status, x.error] for x in r.results]))\n"
    )
    env = {**os.environ, "SEQOPS_DISABLE_PLUGINS": "torch-fast,jax-fast", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    rows = json.loads(done.stdout)
    assert {impl for _, impl, _, _ in rows} == {"portable", "portable-tiled"}
    assert all(status == "pass" for _, _, status, _ in rows)
    expected = [
        [r.case, r.implementation, r.status, r.error]
        for r in torch_sdpa_report.results
        if r.implementation.startswith("portable")
    ]
    assert rows == expected


# -- mutation tests of the recurrent / language-modelling cases ------------------------------


def _swapped_gates_lstm(backend, xs, state, w_ih, w_hh, b, /):
    """The input and forget gates swapped (torch's i, f order read as f, i)."""
    xp = backend.namespace()
    hidden = state[0].shape[-1]

    def swap(w):
        if w is None:
            return None
        return xp.concat([w[..., hidden : 2 * hidden], w[..., :hidden], w[..., 2 * hidden :]], axis=-1)

    return recurrent.lstm(xp, xs, state, swap(w_ih), swap(w_hh), swap(b), scan=backend.scan)


def _least_likely(backend, logits, /, *, rng, **options):
    """A 'sampler' that always draws the least probable token."""
    return backend.namespace().argmin(logits, axis=-1)


def _detached_mean_layer_norm(backend, x, weight, bias, /, *, eps):
    """Right values, wrong gradient: the mean is treated as a constant by autograd."""
    import torch

    centred = x - x.mean(-1, keepdim=True).detach()
    y = centred / torch.sqrt((centred * centred).mean(-1, keepdim=True) + eps)
    y = y if weight is None else y * weight
    return y if bias is None else y + bias


class _WrongRecurrentPlugin:
    @seqops.hookimpl
    def seqops_implementations(self, backend):
        if backend.name == "numpy":
            return [
                seqops.Implementation(seqops.ops.lstm, "swapped-gates", _swapped_gates_lstm),
                seqops.Implementation(seqops.ops.sample_logits, "least-likely", _least_likely),
            ]
        if backend.name == "torch":
            return [seqops.Implementation(seqops.ops.layer_norm, "detached-mean", _detached_mean_layer_norm)]
        return None


@pytest.fixture
def wrong_recurrent_plugin() -> Iterator[None]:
    name = seqops.register_plugin(_WrongRecurrentPlugin(), name="wrong-recurrent")
    try:
        yield
    finally:
        seqops.unregister_plugin(name)


@pytest.mark.usefixtures("wrong_recurrent_plugin")
def test_conformance_catches_swapped_lstm_gates(capsys) -> None:
    assert (
        main(["conformance", "--backend", "numpy", "--op", "lstm", "--op", "lstm_cell", "--no-progress"]) == 1
    )
    out = capsys.readouterr().out
    assert "FAIL lstm[" in out and "via swapped-gates" in out
    report = run(backends=["numpy"], ops=["lstm", "lstm_cell"], progress=False)
    # empty (T = 0, an empty batch): nothing to swap
    lstm_cases = {c.id for c in CASES if c.op == "lstm" and "T=0" not in c.name and "empty" not in c.name}
    assert {r.case for r in report.failures} == lstm_cases  # every case, and lstm_cell untouched
    assert {r.dtype for r in report.failures} == {"float16", "float32", "float64"}
    assert all(r.implementation == "swapped-gates" and r.error > 0.1 for r in report.failures)


@pytest.mark.usefixtures("wrong_recurrent_plugin")
def test_conformance_catches_samples_outside_the_support() -> None:
    report = run(backends=["numpy"], ops=["sample_logits"], dtypes=["float32"], progress=False)
    failed = {r.case: r for r in report.failures}
    # not the edge cases: no row to draw for, or one token that every sampler draws
    assert set(failed) == {c.id for c in CASES if c.op == "sample_logits" and not c.name.startswith("edge: ")}
    support = [r for r in failed.values() if "support" in r.case]
    assert support and all("outside the reference support" in r.message for r in support)
    assert all(r.tolerance == 0.0 for r in failed.values())


@pytest.mark.usefixtures("wrong_recurrent_plugin")
def test_gradient_check_catches_right_values_with_a_wrong_gradient() -> None:
    pytest.importorskip("torch")
    report = run(backends=["torch"], ops=["layer_norm"], dtypes=["float64"], progress=False)
    eager = [r for r in report.results if r.transformation == "eager"]
    assert eager and all(r.status == "pass" for r in eager)
    # every accepting implementation is checked eagerly (torch-fast's layer norm too)
    assert {r.implementation for r in eager} == {"detached-mean", "torch-layer-norm", "portable"}
    grad_impls = {r.implementation for r in report.results if r.transformation == "grad"}
    assert grad_impls == {"detached-mean"}  # gradients: the dispatched implementation only
    grad = [r for r in report.results if r.transformation == "grad"]
    assert grad and all(r.status == "fail" for r in grad)
    assert all(r.error > 1e-2 and r.message.startswith("worst input x:") for r in grad)


def test_structure_none_entries_and_integer_outputs_are_compared_exactly() -> None:
    backend = next(b for b, ok in seqops.backends() if b.name == "numpy")
    where = backend.default_device()
    expected = ([np.ones(3), None], {"ids": np.array([1, 2])})
    good = ([np.ones(3), None], {"ids": np.array([1, 2])})
    assert _compare(backend, good, expected, np.float64, where) == ([0.0, 0.0], [])
    bad = ([np.ones(3), np.zeros(2)], {"ids": np.array([1, 3])})
    errors, problems = _compare(backend, bad, expected, np.float64, where)
    assert problems == [
        "output 0[1] is a numpy.ndarray, expected None",
        "output 1['ids']: 1 of 2 entries differ from the exact reference",
    ]
    _, problems = _compare(backend, ((np.ones(3),), {}), expected, np.float64, where)
    assert problems == [
        "output 0 is a tuple of 1, expected a list of 2",
        "output 1 is a dict of 0, expected a dict with keys ['ids']",
    ]
    _, problems = _compare(backend, np.array([1.0, 2.0]), (np.array([1, 2]),), np.float64, where)
    assert problems == ["output has dtype float64, expected an integer dtype"]


def test_exact_ops_have_tolerance_zero(report: Report) -> None:
    exact = (
        "greedy",
        "sample_logits",
        "decode",
        "causal_mask",
        "relative_position_index",
        "shifted_window_mask",
    )
    data_movement = (
        "patchify",
        "unpatchify",
        "window_partition",
        "window_reverse",
        "cyclic_shift",
        "pixelcnn_mask",
    )
    for op in exact + data_movement:
        results = [r for r in report.results if r.op == op]
        assert results and all(r.status == "pass" and r.tolerance == 0.0 for r in results)


# -- mutation tests of the vision / generative cases -------------------------------------------


def _centre_kept_mask(backend, kernel_size, in_channels, out_channels, /, *, mask_type, **options):
    """Type A forgets to mask the centre: it is built as type B."""
    xp = backend.namespace()
    return generative.pixelcnn_mask(xp, kernel_size, in_channels, out_channels, mask_type="B", **options)


def _roll_wrong_way(backend, x, shift, /):
    """Content moved down and right instead of up and left."""
    return backend.namespace().roll(x, shift=(shift, shift), axis=(1, 2))


def _detached_log_var(backend, mu, log_var, /, *, rng, eps, shape):
    """Right values, wrong gradient: no gradient reaches log_var through z."""
    import torch

    return mu + torch.exp(log_var.detach() / 2) * eps


class _WrongGenerativePlugin:
    @seqops.hookimpl
    def seqops_implementations(self, backend):
        if backend.name == "numpy":
            return [
                seqops.Implementation(seqops.ops.pixelcnn_mask, "centre-kept", _centre_kept_mask),
                seqops.Implementation(seqops.ops.cyclic_shift, "rolled-wrong-way", _roll_wrong_way),
            ]
        if backend.name == "torch":
            return [seqops.Implementation(seqops.ops.reparameterize, "detached-log-var", _detached_log_var)]
        return None


@pytest.fixture
def wrong_generative_plugin() -> Iterator[None]:
    name = seqops.register_plugin(_WrongGenerativePlugin(), name="wrong-generative")
    try:
        yield
    finally:
        seqops.unregister_plugin(name)


@pytest.mark.usefixtures("wrong_generative_plugin")
def test_conformance_catches_unmasked_centre_and_wrong_shift(capsys) -> None:
    ops = ["pixelcnn_mask", "cyclic_shift", "window_partition"]
    assert main(["conformance", "--backend", "numpy", *(f"--op={op}" for op in ops), "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "FAIL pixelcnn_mask[" in out and "via centre-kept" in out
    assert "FAIL cyclic_shift[" in out and "via rolled-wrong-way" in out
    report = run(backends=["numpy"], ops=ops, progress=False)
    type_a = {
        c.id
        for c in CASES
        if c.op == "pixelcnn_mask"
        and c.inputs()[1].get("mask_type", "A") == "A"
        and c.name != "edge: 0 channels"
    }  # the empty mask has no centre to keep
    shifts = {c.id for c in CASES if c.op == "cyclic_shift" and "empty" not in c.name}
    assert type_a and {r.case for r in report.failures} == type_a | shifts  # type B untouched
    assert {r.dtype for r in report.failures} == {"float16", "float32", "float64"}
    assert all(r.tolerance == 0.0 and r.error > 0.0 for r in report.failures)
    assert all(r.status == "pass" for r in report.results if r.op == "window_partition")


@pytest.mark.usefixtures("wrong_generative_plugin")
def test_elbo_of_reparameterize_gradients_reach_mu_and_log_var() -> None:
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    composed = {c.id for c in CASES if c.op == "elbo" and c.call is not None}
    assert composed and all(c.grad for c in CASES if c.id in composed)
    report = run(backends=["torch", "jax"], ops=["elbo"], transformations=["grad"], progress=False)
    rows = {(r.case, r.backend, r.dtype): r for r in report.results}
    for case in composed:
        for dtype in ("float64", "float32"):
            assert rows[case, "jax", dtype].status == "pass"  # the plugin is torch's only
            wrong = rows[case, "torch", dtype]
            assert wrong.status == "fail" and wrong.implementation == "detached-log-var + portable"
            assert wrong.message.startswith("worst input log_var:")
