#!/usr/bin/env bash
# The GPU checks of issue 5 in one bounded run (about 10 minutes at most), for a machine with an
# NVIDIA GPU and no network, where torch, jax (with CUDA) and cupy are preinstalled.
#
#   bench/gpu.sh OUT_DIR [WHEELS_DIR]
#
# OUT_DIR receives: machine.txt (nvidia-smi, versions), conformance-{cupy,torch,jax}.{json,md,log},
# pytest-cupy.log (the CuPy fast-path tests that need a device),
# gpu.json / gpu.md (benchmarks: torch bf16 attention vs SDPA, JAX bf16 vs cuDNN attention,
# CuPy fp16 attention vs the portable path, CuPy LSTM, and every op's fast path against its
# native call on torch CUDA and JAX GPU: bench/ops_table.py), bench.log and summary.txt.
# WHEELS_DIR (default: $SEQOPS_WHEELS, else shared/wheels) holds the pure-Python wheels seqops
# needs (array-api-compat, array-api-extra, pluggy, rich and its deps) when they are not already
# installed: seqops is then installed offline (pip --no-index) into a virtual environment that
# sees the system's torch/jax/cupy. Each step has its own time limit; a failing step is
# recorded and the next one still runs. The exit status is 1 when a step failed.
set -uo pipefail

out=${1:?usage: bench/gpu.sh OUT_DIR [WHEELS_DIR]}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
wheels=${2:-${SEQOPS_WHEELS:-$root/shared/wheels}}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$root" || exit 2
python=${PYTHON:-python3}
status=0
summary="$out/summary.txt"
: >"$summary"
note() { echo "$*" | tee -a "$summary"; }

# -- 1. seqops importable with its entry points (backends and fast paths) ----------------------
if ! "$python" -c 'import seqops, sys; sys.exit(not any(b.name == "cupy" for b, _ in seqops.backends()))' 2>/dev/null; then
    venv=${TMPDIR:-/tmp}/seqops-gpu-venv
    "$python" -m venv --system-site-packages "$venv" || { note "FAIL: cannot create $venv"; exit 1; }
    python=$venv/bin/python
    export PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1
    links=()
    [ -d "$wheels" ] && links=(--find-links "$wheels")
    # --no-build-isolation: setuptools comes from the system, nothing is downloaded.
    if ! timeout 300 "$python" -m pip install -q --no-index "${links[@]}" --no-build-isolation -e . \
        >"$out/install.log" 2>&1; then
        note "FAIL: offline install of seqops (see install.log; pass the wheels directory as argument 2)"
        exit 1
    fi
fi
export PATH="$(dirname "$python"):$PATH"
export JAX_ENABLE_X64=1 # float64 rows of the conformance suite on JAX
export XLA_PYTHON_CLIENT_PREALLOCATE=false # torch, cupy and jax share the GPU in one process

{
    date -u +"date: %Y-%m-%dT%H:%M:%SZ"
    nvidia-smi || echo "nvidia-smi: not available"
    "$python" -m seqops info 2>&1 || "$python" -c 'import seqops; print(seqops.backends())'
} >"$out/machine.txt" 2>&1
if ! nvidia-smi -L >/dev/null 2>&1; then
    note "no NVIDIA GPU visible: the GPU steps below will skip or fail"
fi

# -- 2. conformance on each GPU backend (each bounded) --------------------------------------------
# torch and jax name the GPU `cuda:0`; cupy's devices print as `<CUDA Device 0>`, and its default
# device is the GPU, so cupy runs without --device.
conformance() { # name, time limit, arguments...
    local name=$1 limit=$2
    shift 2
    timeout "$limit" "$python" -m seqops conformance --no-progress "$@" \
        --report "$out/conformance-$name.json" --report "$out/conformance-$name.md" \
        >"$out/conformance-$name.log" 2>&1
    local rc=$?
    if [ $rc -eq 0 ]; then note "conformance $name: pass"; else
        note "conformance $name: FAIL (exit $rc$([ $rc -eq 124 ] && echo ', time limit'); see conformance-$name.log)"
        status=1
    fi
}
# eager and grad only: jit/vmap (one XLA compilation per case and dtype) and torch.compile would
# not fit the device time; they are checked on CPU (bench/results/conformance-*-cpu-*.md).
conformance cupy 150 --backend cupy
conformance torch 150 --backend torch --device cuda:0 --transformation eager --transformation grad
conformance jax 150 --backend jax --device cuda:0 --transformation eager --transformation grad

# -- 2b. the tests of the CuPy fast paths that need a device (they skip on CPU machines) --------
if timeout 120 "$python" -m pytest -q -p no:cacheprovider tests/test_cupy_attention.py \
    tests/test_fast_paths.py -k cupy >"$out/pytest-cupy.log" 2>&1; then
    note "pytest cupy fast paths: pass ($(tail -n 1 "$out/pytest-cupy.log"))"
else
    note "pytest cupy fast paths: FAIL (see pytest-cupy.log: $(tail -n 1 "$out/pytest-cupy.log"))"
    status=1
fi

# -- 3. the GPU benchmarks (the same harness as the CPU ones, GPU cases only) ----------------------
if timeout 300 "$python" bench/run.py --gpu --no-cpu --out "$out" --name gpu >"$out/bench.log" 2>&1; then
    note "benchmarks: done (gpu.md)"
else
    note "benchmarks: FAIL (exit $?; see bench.log)"
    status=1
fi
grep -E '^(gpu_|#)' "$out/bench.log" | tee -a "$summary"
exit $status
