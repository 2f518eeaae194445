"""seqops inside a Keras 3 layer, on Keras' torch and JAX backends (issue 14, item 6, "Interop").

Keras picks its backend when it is imported (``KERAS_BACKEND``), so each backend's checks run
in a subprocess (one per backend, shared by the tests below). The layer is a pre-norm causal
self-attention block with a vocabulary projection (``seqops.layer_norm``,
``seqops.scaled_dot_product_attention``) trained with a ``seqops.cross_entropy`` loss: an
eager call (checked against the same block on NumPy), ``model.fit`` for two steps (every
weight must move, and ``predict`` must agree with NumPy on the new weights), and on JAX
``fit`` both eagerly (``run_eagerly=True``) and under ``jit_compile=True``.

The layer passes its ``keras.Variable`` objects to seqops as they are: a public function
that meets a variable (an object whose ``.value`` is a backend's array) runs on its ``.value``
(a ``torch.nn.Parameter`` on torch; on JAX the current value, a tracer inside ``jit``).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

if importlib.util.find_spec("keras") is None:
    pytest.skip("keras is not installed", allow_module_level=True)

BACKENDS = {"torch": "torch", "jax": "jax"}  # Keras backend -> the library it needs

_SCRIPT = r'''
import json
import numpy as np
import keras
import seqops

B, L, D, V = 4, 6, 8, 5


class Block(keras.layers.Layer):
    """Pre-norm causal self-attention and a vocabulary projection, seqops on the backend's tensors."""

    def build(self, input_shape):
        self.gamma = self.add_weight(shape=(D,), initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=(D,), initializer="zeros", name="beta")
        self.w_q, self.w_k, self.w_v = (
            self.add_weight(shape=(D, D), initializer="glorot_uniform", name=n) for n in ("w_q", "w_k", "w_v")
        )
        self.w_out = self.add_weight(shape=(D, V), initializer="glorot_uniform", name="w_out")

    def call(self, x):
        h = seqops.layer_norm(x, self.gamma, self.beta)  # the variables as they are
        q, k, v = (h @ w.value for w in (self.w_q, self.w_k, self.w_v))
        a = seqops.scaled_dot_product_attention(q, k, v, is_causal=True)
        return (x + a) @ self.w_out.value


def token_loss(y_true, y_pred):
    # Keras hands the loss its targets as floats: cast back to class ids
    return seqops.cross_entropy(y_pred, keras.ops.cast(y_true, "int32"), reduction="none")


def reference(x, weights):
    """The same block on NumPy in float64, from the layer's weights."""
    gamma, beta, w_q, w_k, w_v, w_out = (np.asarray(w, np.float64) for w in weights)
    x = x.astype(np.float64)
    h = seqops.layer_norm(x, gamma, beta)
    a = seqops.scaled_dot_product_attention(h @ w_q, h @ w_k, h @ w_v, is_causal=True)
    return (x + a) @ w_out


def error(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - b)))


rng = np.random.default_rng(0)
x = rng.standard_normal((B, L, D)).astype("float32")
y = rng.integers(0, V, (B, L))
backend = keras.backend.backend()
result = {"backend": backend}

keras.utils.set_random_seed(0)
layer = Block()
out = layer(keras.ops.convert_to_tensor(x))
result["eager"] = {
    "type": f"{type(out).__module__}.{type(out).__qualname__}",
    "shape": list(out.shape),
    "error": error(keras.ops.convert_to_numpy(out), reference(x, layer.get_weights())),
}

modes = {"fit": dict(jit_compile=False, run_eagerly=backend == "jax")}
if backend == "jax":
    modes["fit jit_compile"] = dict(jit_compile=True)
for mode, options in modes.items():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((L, D)), Block()])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=token_loss, **options)
    before = [np.array(w) for w in model.get_weights()]
    history = model.fit(x, y, batch_size=2, epochs=1, steps_per_epoch=2, shuffle=False, verbose=0)
    after = model.get_weights()
    result[mode] = {
        "loss": [float(v) for v in history.history["loss"]],
        "unchanged": [w.path for w, a, b in zip(model.weights, before, after) if np.array_equal(a, b)],
        "predict_error": error(model.predict(x, verbose=0), reference(x, after)),
    }
print("RESULT " + json.dumps(result))
'''


@pytest.fixture(scope="module", params=sorted(BACKENDS))
def keras_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What the script found on one Keras backend (run once per backend, in a subprocess)."""
    backend = request.param
    if importlib.util.find_spec(BACKENDS[backend]) is None:
        pytest.skip(f"Keras' {backend} backend needs {BACKENDS[backend]}, which is not installed")
    home = tmp_path_factory.mktemp(f"keras_home_{backend}")  # keras writes keras.json there
    env = {**os.environ, "KERAS_BACKEND": backend, "KERAS_HOME": str(home)}
    done = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", _SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).parent,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        pytest.fail(f"the Keras {backend} script failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    found: dict[str, Any] = json.loads(lines[-1].removeprefix("RESULT "))
    assert found["backend"] == backend
    return found


TENSOR_TYPES = {
    "torch": ("torch.Tensor",),
    "jax": ("jaxlib._jax.ArrayImpl", "jaxlib.xla_extension.ArrayImpl"),
}


def test_keras_layer_eager_call(keras_run: dict[str, Any]) -> None:
    eager = keras_run["eager"]
    assert eager["type"] in TENSOR_TYPES[keras_run["backend"]], eager
    assert eager["shape"] == [4, 6, 5]
    assert eager["error"] < 1e-5, eager  # float32 against float64 NumPy


def _check_fit(fit: dict[str, Any]) -> None:
    assert len(fit["loss"]) == 1 and all(math.isfinite(v) for v in fit["loss"]), fit
    assert fit["unchanged"] == [], f"weights the two steps did not update: {fit['unchanged']}"
    assert fit["predict_error"] < 1e-5, fit


def test_keras_model_fit(keras_run: dict[str, Any]) -> None:
    _check_fit(keras_run["fit"])


def test_keras_model_fit_jit_compile_on_jax(keras_run: dict[str, Any]) -> None:
    if keras_run["backend"] != "jax":
        pytest.skip("jit_compile=True is checked on JAX (on torch it is torch.compile, seconds per model)")
    _check_fit(keras_run["fit jit_compile"])
