"""The conv tuner's shortcuts against a full trial (issue 32, point 4).

The tuner does not time every algorithm that can run a convolution: ``kernels.conv.candidates`` leaves some out
(jit below a size or batch, im2col where jit is expected to win, the reference where its columns would stay alive).
This script collects every convolution of the zoo's models on 28x28 and 32x32 inputs, times *every* algorithm that
can run it (forward and the gradients a training step asks for, at batch 1, 64 and 128: a network's first
convolution needs no input gradient; forward alone at 128, the slice an evaluation at batch 1000 is tuned on), and
reports where an algorithm the shortcuts left out is more than 10% faster than the one the
tuner would take from its own candidates. Each time is the best of five calls after one warm-up, all algorithms of a
shape timed in the same rounds, alternating.

    python benchmarks/tuner_check.py                   # everything (about 10 minutes on 2 cores)
    python benchmarks/tuner_check.py --models resnet18_28 --batches 64
"""
import argparse
import time

import numpy as np

import minidl
from minidl import models
from minidl.kernels import autotune
from minidl.kernels import conv as ck

NETS = {  # name: (constructor, input shape)
    "LeNet5": (lambda: models.LeNet5(), (1, 28, 28)),
    "InceptionNet": (lambda: models.InceptionNet(), (1, 28, 28)),
    "ResidualNet": (lambda: models.ResidualNet(), (1, 28, 28)),
    "resnet18_28": (lambda: models.resnet18(num_classes=10), (3, 28, 28)),
    "resnet18_32": (lambda: models.resnet18(num_classes=10, small_input=True), (3, 32, 32)),
    "resnet50_32": (lambda: models.resnet50(num_classes=10, small_input=True), (3, 32, 32)),
    "mobilenet_v2_32": (lambda: models.mobilenet_v2(num_classes=10, small_input=True), (3, 32, 32)),
    "mobilenet_v2_28": (lambda: models.mobilenet_v2(num_classes=10, small_input=True), (3, 28, 28)),
    "shufflenet_32": (lambda: models.shufflenet_v2_x1_0(num_classes=10, small_input=True), (3, 32, 32)),
    "googlenet_32": (lambda: models.googlenet(num_classes=10, small_input=True, aux_logits=False), (3, 32, 32)),
    "vgg11_bn_32": (lambda: models.vgg11_bn(num_classes=10, small_input=True), (3, 32, 32)),
}


def conv_shapes(names):
    """{(x.shape[1:], w.shape, win, groups, grads): first net using it}, recorded from one training forward at batch
    2 (grads: the gradients its backward asks for, (input, weight, bias))."""
    seen = {}
    real = ck.choose

    def record(xp, x, w, win, groups, grads=(True, True, True)):
        seen.setdefault((x.shape[1:], w.shape, win, groups, tuple(grads)), net)
        return real(xp, x, w, win, groups, grads)
    ck.choose = record
    try:
        for net in names:
            make, shape = NETS[net]
            make()(minidl.randn(2, *shape))
    finally:
        ck.choose = real
    return seen


def time_all(x, w, win, groups, algos, grads, rounds=5):
    """{algorithm: best seconds} for forward (and the gradients in ``grads``) of each, alternating between them."""
    gy = np.ones((x.shape[0], w.shape[0], *win.out_hw), dtype=x.dtype)

    def run(algo):
        fwd, bwd = ck.ALGORITHMS[algo]
        _, saved = fwd(np, x, w, None, win, groups)
        if any(grads):
            bwd(np, saved, gy, x.shape, win, groups, grads[0], grads[1])
    best = {}
    for a in algos:
        run(a)  # compile or load the kernels, first-touch the memory
    for _ in range(rounds):
        for a in algos:
            t0 = time.perf_counter()
            run(a)
            best[a] = min(best.get(a, float("inf")), time.perf_counter() - t0)
    return best


def check(shape, batch, grads, rng):
    xs, ws, win, groups, _ = shape
    x = rng.standard_normal((batch, *xs), dtype=np.float32)
    w = (rng.standard_normal(ws, dtype=np.float32) * 0.1).astype(np.float32)
    full = ck.algorithms(x, w, win, groups)
    short = ck.candidates(x, w, win, groups, any(grads))
    if len(full) == 1:
        return None
    times = time_all(x, w, win, groups, full, grads)
    chosen = autotune.pick({a: times[a] for a in short}, ck.LEAN)
    best_left = min((a for a in full if a not in short), key=times.get, default=None)
    ratio = times[chosen] / times[best_left] if best_left else 1.0
    return dict(chosen=chosen, chosen_ms=1e3 * times[chosen], left=best_left,
                left_ms=1e3 * times[best_left] if best_left else None, ratio=ratio, candidates=short,
                times={a: round(1e3 * t, 3) for a, t in times.items()})


def _what(grads):
    return {(True, True): "f+b", (False, True): "f+gw", (True, False): "f+gx", (False, False): "fwd"}[grads[:2]]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", choices=list(NETS), default=list(NETS))
    ap.add_argument("--batches", nargs="*", type=int, default=[1, 64, 128])
    ap.add_argument("--eval-batch", type=int, default=128, help="batch of the forward-only trials (0: none)")
    ap.add_argument("--margin", type=float, default=0.10)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    shapes = conv_shapes(args.models)
    bad = 0
    for shape, net in shapes.items():
        xs, ws, win, groups, grads = shape
        runs = [(b, grads) for b in args.batches] + ([(args.eval_batch, (False,) * 3)] if args.eval_batch else [])
        for batch, need in runs:
            r = check(shape, batch, need, rng)
            if r is None:
                continue
            flag = r["ratio"] > 1 + args.margin
            bad += flag
            print(f"{'MISS' if flag else 'ok  '} {net:16s} x{xs} w{ws} s{win.sh} p{win.ph} g{groups} batch {batch:4d} "
                  f"{_what(need)}: chose {r['chosen']} {r['chosen_ms']:.2f} ms of {r['candidates']}; "
                  f"left out {r['left']} {r['left_ms'] or 0:.2f} ms ({r['ratio']:.2f}x)  {r['times']}", flush=True)
    print(f"{bad} shortcut misses over {args.margin:.0%}")


if __name__ == "__main__":
    main()
