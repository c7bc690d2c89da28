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
  $py -c "import importlib.metadata as m; print('numba-cuda', m.version('numba-cuda'))" 2>&1 | tail -1
  $py -c "import numba.cuda as c; print('numba-cuda sees', c.gpus)" 2>&1 | tail -1
} > "$out/env.txt" 2>&1
cat "$out/env.txt"

# numba-cuda older than the machine's NumPy fails its first compile (NumPy 2.5 removed np.row_stack): minidl then
# runs its CuPy reference kernels (kernels._load_gpu_kernels). To check minidl's own CUDA kernels on such a machine
# all the same, runs with MINIDL_ROW_STACK_SHIM=1 give NumPy back the alias (a .pth file: every process, pytest's
# workers too); runs without it are what a user of the machine gets.
site=$($py -c "import site; print(site.getsitepackages()[0])")
echo 'import os; os.environ.get("MINIDL_ROW_STACK_SHIM") and setattr(__import__("numpy"), "row_stack", __import__("numpy").vstack)' \
  > "$site/minidl_row_stack_shim.pth" 2>/dev/null || echo "cannot write $site: no shim"

# 1. correctness, side by side (different processes, one GPU): the kernel checks with the shim, the GPU test file
#    with the shim (minidl's CUDA kernels) and without (the reference kernels where numba-cuda cannot compile)
t0=$(date +%s)
MINIDL_ROW_STACK_SHIM=1 timeout -s INT 130 $py -m pytest -v -p no:cacheprovider -p no:xdist -rfE --tb=short \
  --durations=5 tests/gpu_kernel_checks.py > "$out/kernels.log" 2>&1 &
kpid=$!
MINIDL_ROW_STACK_SHIM=1 timeout -s INT "$tests_s" $py -m pytest -q -p no:cacheprovider -n 7 -rfE --tb=short \
  tests/test_gpu.py > "$out/test_gpu_numba_kernels.log" 2>&1 &
spid=$!
timeout -s INT "$tests_s" $py -m pytest -q -p no:cacheprovider -n 7 -rfE --tb=short tests/test_gpu.py \
  > "$out/test_gpu.log" 2>&1
echo "test_gpu.py: exit $? after $(( $(date +%s) - t0 )) s"
wait $spid
echo "test_gpu.py with minidl's CUDA kernels: exit $? after $(( $(date +%s) - t0 )) s"
wait $kpid
echo "gpu_kernel_checks.py: exit $? after $(( $(date +%s) - t0 )) s"

# 2. the example, alone on the machine
t0=$(date +%s)
timeout -s INT 75 $py examples/mnist_lenet.py --device cuda --no-progress --out-dir "/tmp/gpu_runs" \
  > "$out/example.log" 2>&1
echo "mnist_lenet.py --device cuda: exit $? after $(( $(date +%s) - t0 )) s"

# 3. the benchmark, alone: as a user of the machine gets it, then with minidl's CUDA kernels
timeout -s INT 80 $py benchmarks/bench.py --only gpu --reps 20 --out "$out/results_gpu.json" > "$out/bench.log" 2>&1
echo "bench.py --only gpu: exit $?"
MINIDL_ROW_STACK_SHIM=1 timeout -s INT 80 $py benchmarks/bench.py --only gpu --reps 20 \
  --out "$out/results_gpu_numba_kernels.json" >> "$out/bench.log" 2>&1
echo "bench.py --only gpu, minidl's CUDA kernels: exit $?"

echo "---- kernels"; grep -E "PASSED|FAILED|ERROR|passed|failed" "$out/kernels.log" | cut -c1-160 | tail -n 20
for f in test_gpu test_gpu_numba_kernels; do
  echo "---- $f"; grep -E "^(FAILED|ERROR)" "$out/$f.log" | cut -c1-160 | head -n 25; tail -n 2 "$out/$f.log"
done
echo "---- example"; tail -n 6 "$out/example.log"
echo "---- bench"; cat "$out/bench.log" | tail -n 12
