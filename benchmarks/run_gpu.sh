#!/usr/bin/env bash
# One call on a machine with an NVIDIA GPU, CuPy, numba-cuda and a CUDA build of torch (the `device` tool's
# machines, which reach no package registry): runs minidl from this checkout (PYTHONPATH, nothing installed), in
# this order, each step under a time limit of its own so that one slow step cannot take the others' results:
#   1. the GPU kernels against the NumPy reference (tests/gpu_kernel_checks.py, as under Numba's CUDA simulator in CI)
#      and, beside it, tests/test_gpu.py: the op table in float32 and float64, the float64 gradchecks and the seed
#      nets' training steps on 'cuda' against the CPU;
#   2. examples/mnist_lenet.py --device cuda (its default 12 epochs): time and accuracy;
#   3. the GPU benchmark (the seed nets and resnet18, minidl against torch on the same GPU, batch 128), alone.
# Every result goes to $OUT (or ./runs/gpu); the summary table is printed last.
# Usage: bash benchmarks/run_gpu.sh [seconds for the tests, default 200]
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-runs/gpu}"
mkdir -p "$out"
tests_s="${1:-200}"
export PYTHONPATH="$PWD:$PWD/tests${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
py=python3

{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv
  $py -c "import sys, numpy, numba, cupy, torch, minidl; print(sys.version); print('numpy', numpy.__version__,
'numba', numba.__version__, 'cupy', cupy.__version__, 'torch', torch.__version__, 'minidl.cuda', minidl.cuda.is_available())"
  $py -c "import numba.cuda as c; print('numba-cuda sees', c.gpus)" 2>&1 | tail -1
} > "$out/env.txt" 2>&1
cat "$out/env.txt"

# 1. correctness: the kernel checks and the GPU test file run side by side (different processes, one GPU)
t0=$(date +%s)
timeout -s INT 150 $py -m pytest -q -p no:cacheprovider -p no:xdist -rfE --tb=short tests/gpu_kernel_checks.py \
  > "$out/kernels.log" 2>&1 &
kpid=$!
timeout -s INT "$tests_s" $py -m pytest -q -p no:cacheprovider -n 12 -rfE --tb=short tests/test_gpu.py \
  > "$out/test_gpu.log" 2>&1
echo "test_gpu.py: exit $? after $(( $(date +%s) - t0 )) s"
wait $kpid
echo "gpu_kernel_checks.py: exit $? after $(( $(date +%s) - t0 )) s"

# 2. the example, alone on the machine
t0=$(date +%s)
timeout -s INT 75 $py examples/mnist_lenet.py --device cuda --no-progress --out-dir "/tmp/gpu_runs" \
  > "$out/example.log" 2>&1
echo "mnist_lenet.py --device cuda: exit $? after $(( $(date +%s) - t0 )) s"

# 3. the benchmark, alone
timeout -s INT 120 $py benchmarks/bench.py --only gpu --reps 20 --out "$out/results_gpu.json" > "$out/bench.log" 2>&1
echo "bench.py --only gpu: exit $?"

echo "---- kernels"; tail -n 25 "$out/kernels.log"
echo "---- test_gpu"; grep -E "^(FAILED|ERROR)" "$out/test_gpu.log" | cut -c1-200 | head -n 60; tail -n 3 "$out/test_gpu.log"
echo "---- example"; tail -n 6 "$out/example.log"
echo "---- bench"; cat "$out/bench.log" | tail -n 12
