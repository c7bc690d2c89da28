"""minidl vs torch, forward + backward of conv2d, max_pool2d and batch_norm on LeNet- and ResNet-sized
shapes, in one process, alternating, median of repeated timings. Prints a table of ratios
(minidl time / torch time: lower is better) and writes benchmarks/results_ops.json.

    python benchmarks/bench_ops.py [--reps 20] [--threads 2]
"""
import argparse
import json
import os
import statistics
import time

import numpy as np
import torch
from threadpoolctl import threadpool_limits

import minidl
import minidl.nn.functional as F

# (name, input shape, op kwargs); weights follow from the shapes
CASES = [
    ("conv LeNet c1 1->6 5x5 p2", "conv", (128, 1, 28, 28), dict(out=6, k=5, padding=2)),
    ("conv LeNet c2 6->16 5x5", "conv", (128, 6, 14, 14), dict(out=16, k=5, padding=0)),
    ("conv Incep 88->20 5x5", "conv", (128, 88, 12, 12), dict(out=20, k=5, padding=0)),
    ("conv ResNet 64->64 3x3 32x32", "conv", (64, 64, 32, 32), dict(out=64, k=3, padding=1)),
    ("conv ResNet 128->128 3x3 16x16", "conv", (64, 128, 16, 16), dict(out=128, k=3, padding=1)),
    ("maxpool LeNet 6ch 28x28 k2", "pool", (128, 6, 28, 28), dict(k=2)),
    ("maxpool ResNet 64ch 32x32 k3s2p1", "pool", (64, 64, 32, 32), dict(k=3, stride=2, padding=1)),
    ("batchnorm ResNet 64ch 32x32", "bn", (64, 64, 32, 32), {}),
    ("batchnorm ResNet 128ch 16x16", "bn", (64, 128, 16, 16), {}),
]


def make(kind, shape, kw, lib, rng):
    x_np = rng.standard_normal(shape).astype(np.float32)
    if kind == "conv":
        w_np = (rng.standard_normal((kw["out"], shape[1], kw["k"], kw["k"])) * 0.1).astype(np.float32)
        b_np = np.zeros(kw["out"], np.float32)
        arrays = (x_np, w_np, b_np)
    elif kind == "bn":
        arrays = (x_np, np.ones(shape[1], np.float32), np.zeros(shape[1], np.float32))
    else:
        arrays = (x_np,)
    if lib == "torch":
        ts = [torch.tensor(a, requires_grad=True) for a in arrays]
        f = {"conv": lambda: torch.nn.functional.conv2d(ts[0], ts[1], ts[2], padding=kw["padding"]),
             "pool": lambda: torch.nn.functional.max_pool2d(ts[0], kw["k"], kw.get("stride"), kw.get("padding", 0)),
             "bn": lambda: torch.nn.functional.batch_norm(ts[0], rm_t, rv_t, ts[1], ts[2], training=True)}[kind]
        rm_t, rv_t = torch.zeros(shape[1]), torch.ones(shape[1])
    else:
        ts = [minidl.tensor(a, requires_grad=True) for a in arrays]
        rm_m, rv_m = minidl.zeros(shape[1]), minidl.ones(shape[1])
        f = {"conv": lambda: F.conv2d(ts[0], ts[1], ts[2], padding=kw["padding"]),
             "pool": lambda: F.max_pool2d(ts[0], kw["k"], kw.get("stride"), kw.get("padding", 0)),
             "bn": lambda: F.batch_norm(ts[0], rm_m, rv_m, ts[1], ts[2], training=True)}[kind]
    g_np = rng.standard_normal(tuple(f().shape)).astype(np.float32)
    g = torch.tensor(g_np) if lib == "torch" else minidl.tensor(g_np)

    def step():
        for t in ts:
            t.grad = None
        f().backward(g)
    return step


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results_ops.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    rows = []
    with threadpool_limits(args.threads):
        for name, kind, shape, kw in CASES:
            m, t = make(kind, shape, kw, "minidl", rng), make(kind, shape, kw, "torch", rng)
            for _ in range(args.warmup):
                m(), t()
            tm, tt = [], []
            for _ in range(args.reps):  # alternate, so that noise hits both alike
                tm.append(timed(m))
                tt.append(timed(t))
            rows.append(dict(name=name, minidl_ms=1e3 * statistics.median(tm), torch_ms=1e3 * statistics.median(tt)))
            rows[-1]["ratio"] = rows[-1]["minidl_ms"] / rows[-1]["torch_ms"]
            print(f"{name:36s} minidl {rows[-1]['minidl_ms']:8.2f} ms   torch {rows[-1]['torch_ms']:8.2f} ms   "
                  f"ratio {rows[-1]['ratio']:5.2f}", flush=True)
    meta = dict(threads=args.threads, reps=args.reps, torch=torch.__version__, numpy=np.__version__,
                note="forward+backward, float32, median; ratio = minidl / torch (lower is better)")
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(dict(meta=meta, rows=rows), f, indent=1)
    os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
