"""Where a training step's time goes on a GPU: for each net, the step's wall time (synchronised), the host time the
profiler records in minidl's ops and backward nodes, the number of device synchronisations CuPy makes, and the
profiler's table of the costliest ops, each run with the reference conv (im2col + cuBLAS) forced, and tuned.

    python benchmarks/profile_gpu.py [--nets LeNet5 "resnet18 32x32"] [--rows 12]

Needs CuPy and a GPU (benchmarks/run_gpu.sh's machines). Host time close to the step's wall time means the step
waits on Python and launches, not on the GPU."""
import argparse
import contextlib
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench


def _syncs_per_step(step):
    """How many times one step waits for the device (cupy's Stream/Device synchronize and device-to-host copies)."""
    import cupy
    counts = {"synchronize": 0, "to host": 0}
    originals = [(cupy.cuda.Device, "synchronize"), (cupy.cuda.Stream, "synchronize"), (cupy.ndarray, "get")]
    saved = [getattr(cls, name) for cls, name in originals]

    def counting(fn, key):
        def call(*a, **k):
            counts[key] += 1
            return fn(*a, **k)
        return call
    try:
        for (cls, name), fn in zip(originals, saved):
            setattr(cls, name, counting(fn, "to host" if name == "get" else "synchronize"))
        step()
    except TypeError:  # a C type that cannot be patched: say so rather than guess
        return {"note": "cupy types not patchable here"}
    finally:
        for (cls, name), fn in zip(originals, saved):
            with contextlib.suppress(TypeError):
                setattr(cls, name, fn)
    counts["synchronize"] -= 1  # the benchmark's own sync at the end of the step
    return counts


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--nets", nargs="*", default=["LeNet5", "ResidualNet", "resnet18 32x32"])
    ap.add_argument("--rows", type=int, default=12)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--device", default="cuda", help="cpu runs the same report without a GPU (to try the script)")
    args = ap.parse_args()
    import minidl
    from minidl.kernels import autotune
    from minidl.profiler import profile
    for name in args.nets:
        for algo in ("im2col", None):
            ctx = autotune.force("conv2d", algo) if algo else contextlib.nullcontext()
            with ctx:
                step = bench.make_step(name, 128, "minidl", np.random.default_rng(0), args.device)
                for _ in range(3):
                    step()
                wall = bench._median_ms(step, args.reps)
                syncs = _syncs_per_step(step) if args.device != "cpu" else "-"
                with profile() as prof:
                    step()
                events = prof.key_averages()
                host = sum(e.self_cpu_time_total for e in events) / 1e3
            label = f"conv forced to {algo}" if algo else "tuned"
            print(f"==== {name}, batch 128, {label}: step {wall:.2f} ms (median of {args.reps}), host time in ops "
                  f"{host:.2f} ms, {sum(e.count for e in events)} events, waits per step {syncs}", flush=True)
            print(events.table(sort_by="self_cpu_time_total", row_limit=args.rows), flush=True)
    del minidl


if __name__ == "__main__":
    main()
