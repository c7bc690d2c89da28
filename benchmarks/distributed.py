"""Data-parallel training on 1 and 2 processes of this machine (one thread per process), minidl (MPI,
DistributedDataParallel) next to torch (DistributedDataParallel, gloo), at a fixed global batch of 128.

    python benchmarks/distributed.py            # runs everything through mpiexec, prints and saves the table
    python benchmarks/distributed.py --markdown # the README table from results_distributed.json

Reports the median step time, images/s, the scaling efficiency (2-process throughput / twice the 1-process
one) and, for minidl, the time per step spent in the gradient reduction (packing, waiting, unpacking).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "results_distributed.json")
MODELS = ["LeNet5", "ResidualNet"]
GLOBAL_BATCH = 128


def worker(lib, model_name, steps):
    rank, world = int(os.environ.get("PMI_RANK", 0)), int(os.environ.get("PMI_SIZE", 1))
    rng = np.random.default_rng(rank)
    per = GLOBAL_BATCH // world
    x = rng.standard_normal((per, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, per)
    if lib == "minidl":
        import minidl
        import minidl.distributed as dist
        from minidl import models
        if world > 1:
            dist.init_process_group("mpi")
        minidl.manual_seed(0)
        model = getattr(models, model_name)()
        if world > 1:
            model = minidl.nn.parallel.DistributedDataParallel(model)
        opt = minidl.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        xt, yt = minidl.tensor(x), minidl.tensor(y)
        loss_fn = minidl.nn.functional.cross_entropy
    else:
        import torch
        import torch.distributed as tdist
        from minidl.testing import torch_twins
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        if world > 1:
            tdist.init_process_group("gloo", init_method="tcp://127.0.0.1:29533", rank=rank, world_size=world)
        torch.manual_seed(0)
        model = getattr(torch_twins, model_name)()
        if world > 1:
            model = torch.nn.parallel.DistributedDataParallel(model)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        xt, yt = torch.tensor(x), torch.tensor(y)
        loss_fn = torch.nn.functional.cross_entropy
    times = []
    for i in range(steps + 3):
        t0 = time.perf_counter()
        opt.zero_grad()
        loss_fn(model(xt), yt).backward()
        opt.step()
        times.append(time.perf_counter() - t0)
        if i == 2 and hasattr(model, "comm_seconds"):
            model.comm_seconds = 0.0  # count the timed steps only
    comm = getattr(model, "comm_seconds", 0.0) / steps
    if rank == 0:
        print(json.dumps({"step_ms": 1e3 * float(np.median(times[3:])), "comm_ms": 1e3 * comm}), flush=True)


def launch(lib, model, world, threads, steps):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads), NUMBA_NUM_THREADS=str(threads))
    cmd = [sys.executable, __file__, "--worker", lib, model, str(steps)]
    if world > 1:
        cmd = [shutil.which("mpiexec") or "mpiexec", "-n", str(world)] + cmd
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True, timeout=1800)
    return json.loads(out.stdout.strip().splitlines()[-1])


def markdown(rows):
    out = ["| net | library | processes x threads | step ms | img/s | scaling efficiency | reduction ms/step |",
           "|---|---|---|---:|---:|---:|---:|"]
    for r in rows:
        eff = f"{r['efficiency']:.2f}" if r.get("efficiency") is not None else ""
        comm = f"{r['comm_ms']:.1f}" if r["lib"] == "minidl" and r["world"] > 1 else ""
        out.append(f"| {r['model']} | {r['lib']} | {r['world']} x {r['threads']} | {r['step_ms']:.1f} | "
                   f"{r['img_s']:.0f} | {eff} | {comm} |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", nargs=3, metavar=("LIB", "MODEL", "STEPS"))
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker[0], args.worker[1], int(args.worker[2]))
    if args.markdown:
        with open(OUT) as f:
            return print(markdown(json.load(f)))
    rows = []
    for model in MODELS:
        for lib in ("minidl", "torch"):
            base = None
            for world, threads in ((1, 1), (2, 1), (1, 2)):
                r = launch(lib, model, world, threads, args.steps)
                img_s = GLOBAL_BATCH / r["step_ms"] * 1e3
                if (world, threads) == (1, 1):
                    base = img_s
                row = dict(model=model, lib=lib, world=world, threads=threads, step_ms=r["step_ms"], img_s=img_s,
                           comm_ms=r["comm_ms"], efficiency=img_s / (2 * base) if world == 2 else None)
                rows.append(row)
                print(markdown([row]).splitlines()[-1], flush=True)
    with open(OUT, "w") as f:
        json.dump(rows, f, indent=1)
    print(markdown(rows))


if __name__ == "__main__":
    main()
