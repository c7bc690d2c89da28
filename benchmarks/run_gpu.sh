#!/usr/bin/env bash
# One call on a machine with an NVIDIA GPU, CuPy and a CUDA build of torch (the `device` tool's machines):
# installs minidl without touching the installed packages, runs the GPU tests, trains LeNet-5 on 'cuda'
# for two epochs, runs the GPU benchmark and prints its table last. Results go to $OUT (or ./runs/gpu).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-runs/gpu}"
mkdir -p "$out"
pip install -q --no-deps --no-build-isolation -e .
python -c "import minidl, cupy, torch; print('cupy', cupy.__version__, 'torch', torch.__version__, 'gpu', minidl.cuda.is_available())"
PYTHONPATH=tests python -m pytest -q -x -p no:cacheprovider -p no:xdist tests/gpu_kernel_checks.py 2>&1 | tail -15
python -m pytest -q -x -p no:cacheprovider tests/test_gpu.py tests/test_strict_device.py 2>&1 | tail -15
python examples/mnist_lenet.py --device cuda --epochs 2 --out-dir "$out" 2>&1 | tail -4
python benchmarks/bench.py --only gpu --out "$out/results_gpu.json"
python benchmarks/bench.py --markdown --out "$out/results_gpu.json"
