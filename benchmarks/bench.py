"""minidl against torch on the CPU, in one process, alternating, median of repeated timings.

    python benchmarks/bench.py                  # everything (about 10 minutes on 2 cores)
    python benchmarks/bench.py --only layers steps --reps 20

Sections: 'layers' (forward+backward of single layers), 'steps' (a whole training step: forward,
backward, SGD with momentum; time, images/s, ratio), 'memory' (peak resident memory of a training step,
each in a fresh process), 'epoch' (one LeNet-5 epoch over 60,000 28x28 images), 'latency' (import
minidl + first LeNet step, Numba cache cold and warm), 'load' (median and worst step next to 0, 3 and 10
CPU-burning processes), 'overhead' (small ops: minidl, torch and NumPy microseconds per call). Ratios are
minidl time / torch time (lower is better), measured with the same number of threads for both. Results go to
benchmarks/results.json.
"""
import os

# Before NumPy and torch load OpenBLAS: idle BLAS threads then sleep instead of spinning for ~0.1 s
# against the other engine's next step (measured: a torch LeNet-5 step after a NumPy GEMM took 58-76 ms
# instead of 6-10 ms). The same setting for both engines; minidl sets it too when imported first.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def _median_ms(fn, reps):
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(ts)


# Before each timed call, compare runs the same function untimed for at least this long (and at least once).
SETTLE_S = 0.05


def compare(*fns, reps, warmup=3, settle=None):
    """Alternate the functions in blocks; their medians in ms. In a block a function runs untimed for ``settle``
    seconds (default SETTLE_S; at least once), then once timed: each engine is timed in its steady state, as in a
    program that runs only it, and not while the other engine's threads still spin (torch's OpenMP threads spin on
    after a parallel region and take the second core). Measured (NOTES.md, changes 25 and 66): timed right after a
    torch step, minidl's LeNet-5 step took 12.5 ms, against 9.1 ms run on its own; one untimed call of the same engine
    in between was not enough for shorter calls: a 3x3 convolution's forward and backward (x(128, 16, 12, 12)) took
    5.4-5.7 ms that way, 3.1-4.0 ms on its own, 2.9-3.3 after 20-100 ms of its own calls (torch: 2.7-2.8, 2.8-2.9,
    2.0-2.4). A step is a real update each call: the engines' models take different numbers of steps."""
    settle = SETTLE_S if settle is None else settle
    for _ in range(warmup):
        for fn in fns:
            fn()
    times = [[] for _ in fns]
    for _ in range(reps):
        for fn, ts in zip(fns, times):
            start = time.perf_counter()
            fn()
            while time.perf_counter() - start < settle:
                fn()
            ts.append(_median_ms(fn, 1))
    return tuple(statistics.median(ts) for ts in times)


def compiled(step):
    """The step through minidl.compile (warm-up, two recorded calls, then replays: compare's warm-up covers them)."""
    import minidl
    return minidl.compile(step)


def _compiled_row(row, c_ms, c_step):
    """The compiled columns of a row; None where the step did not replay (the warning said why)."""
    replayed = c_step.replays > 0
    row.update(compiled_ms=c_ms if replayed else None, compiled_ratio=c_ms / row["torch_ms"] if replayed else None)
    return row


# ---- layers -------------------------------------------------------------------------------------------
def layer_cases():
    conv = lambda n, c, h, o, k, s=1, p=0, g=1: ("conv", (n, c, h, h), dict(o=o, k=k, s=s, p=p, g=g))  # noqa
    return [
        ("conv LeNet c1 1->6 5x5 p2 @28", *conv(128, 1, 28, 6, 5, p=2)),
        ("conv LeNet c2 6->16 5x5 @14", *conv(128, 6, 14, 16, 5)),
        ("conv Incep c1 1->10 5x5 @28", *conv(128, 1, 28, 10, 5)),
        ("conv Incep c2 88->20 5x5 @12", *conv(128, 88, 12, 20, 5)),
        ("conv Incep 5x5 16->24 p2 @12", *conv(128, 16, 12, 24, 5, p=2)),
        ("conv Incep 3x3 24->24 p1 @12", *conv(128, 24, 12, 24, 3, p=1)),
        ("conv 1x1 88->16 @4", *conv(128, 88, 4, 16, 1)),
        ("conv 1x1 64->128 s2 @32", *conv(64, 64, 32, 128, 1, s=2)),
        ("conv ResNet 3x3 16->16 p1 @12", *conv(128, 16, 12, 16, 3, p=1)),
        ("conv ResNet 3x3 32->32 p1 @4", *conv(128, 32, 4, 32, 3, p=1)),
        ("conv resnet18 3x3 3->64 @32", *conv(64, 3, 32, 64, 3, p=1)),
        ("conv resnet18 3x3 64->64 @32", *conv(64, 64, 32, 64, 3, p=1)),
        ("conv resnet18 3x3 128->128 @16", *conv(64, 128, 16, 128, 3, p=1)),
        ("conv resnet18 3x3 256->256 @8", *conv(64, 256, 8, 256, 3, p=1)),
        ("conv depthwise 3x3 64ch @16", *conv(64, 64, 16, 64, 3, p=1, g=64)),
        ("conv resnet18 3x3 512->512 @1 (28x28 input)", *conv(64, 512, 1, 512, 3, p=1)),
        ("conv resnet18 3x3 256->512 s2 @2 (28x28 input)", *conv(64, 256, 2, 512, 3, s=2, p=1)),
        ("maxpool 2x2 6ch @28", "maxpool", (128, 6, 28, 28), dict(k=2, s=2, p=0)),
        ("maxpool 3x3 s2 p1 64ch @32", "maxpool", (64, 64, 32, 32), dict(k=3, s=2, p=1)),
        ("avgpool 3x3 s1 p1 88ch @12", "avgpool", (128, 88, 12, 12), dict(k=3, s=1, p=1)),
        ("batchnorm 64ch @32", "bn", (64, 64, 32, 32), {}),
        ("batchnorm 256ch @8", "bn", (64, 256, 8, 8), {}),
        ("linear 400->120", "linear", (128, 400), dict(o=120)),
        ("linear 512->1000", "linear", (64, 512), dict(o=1000)),
        ("softmax cross-entropy 10 classes", "ce", (128, 10), {}),
        ("LSTM 28->64, 28 steps, batch 64", "lstm", (64, 28, 28), dict(o=64)),
        ("layer_norm 48, (64, 6, 48)", "layernorm", (64, 6, 48), {}),
        ("pow(x, 3.0), 73,728 values", "pow", (64, 6, 192), dict(p=3.0)),
    ]


def make_layer(kind, shape, kw, lib, rng):
    import torch
    import minidl
    F = minidl.nn.functional if lib == "minidl" else torch.nn.functional
    T = (lambda a, g=True: minidl.tensor(a, requires_grad=g)) if lib == "minidl" else \
        (lambda a, g=True: torch.tensor(a, requires_grad=g))
    x = rng.standard_normal(shape).astype(np.float32)
    if kind == "conv":
        c = shape[1]
        w = (rng.standard_normal((kw["o"], c // kw["g"], kw["k"], kw["k"])) * 0.1).astype(np.float32)
        ts = [T(x), T(w), T(np.zeros(kw["o"], np.float32))]
        f = lambda: F.conv2d(ts[0], ts[1], ts[2], kw["s"], kw["p"], 1, kw["g"])  # noqa
    elif kind in ("maxpool", "avgpool"):
        ts = [T(x)]
        pool = F.max_pool2d if kind == "maxpool" else F.avg_pool2d
        f = lambda: pool(ts[0], kw["k"], kw["s"], kw["p"])  # noqa
    elif kind == "bn":
        c = shape[1]
        ts = [T(x), T(np.ones(c, np.float32)), T(np.zeros(c, np.float32))]
        rm, rv = T(np.zeros(c, np.float32), False), T(np.ones(c, np.float32), False)
        f = lambda: F.batch_norm(ts[0], rm, rv, ts[1], ts[2], training=True)  # noqa
    elif kind == "linear":
        ts = [T(x), T((rng.standard_normal((kw["o"], shape[1])) * 0.05).astype(np.float32)),
              T(np.zeros(kw["o"], np.float32))]
        f = lambda: F.linear(*ts)  # noqa
    elif kind == "layernorm":
        d = shape[-1]
        ts = [T(x), T(np.ones(d, np.float32)), T(np.zeros(d, np.float32))]
        f = lambda: F.layer_norm(ts[0], (d,), ts[1], ts[2])  # noqa
    elif kind == "pow":  # minGPT's GELU: x ** 3 on negative inputs too
        ts = [T(x)]
        f = lambda: ts[0] ** kw["p"]  # noqa
    elif kind == "lstm":  # row by row over an image, as pytorch/examples' mnist_rnn; the last step's h out
        lstm = (minidl.nn if lib == "minidl" else torch.nn).LSTM(shape[2], kw["o"], batch_first=True)
        ts = [T(x)] + list(lstm.parameters())
        f = lambda: lstm(ts[0])[0][:, -1]  # noqa
    else:
        y = T(rng.integers(0, shape[1], shape[0]), False)
        ts = [T(x)]
        f = lambda: F.cross_entropy(ts[0], y)  # noqa
    out = f()
    g = T(rng.standard_normal(tuple(out.shape)).astype(np.float32), False)

    def step():
        for t in ts:
            t.grad = None
        f().backward(g)
    return step


def conv_gflop(shape, kw):
    """GFLOP of a conv layer row's forward + backward: the forward's multiply-adds x 2, three times (forward, input
    gradient, weight gradient; the bias's are negligible)."""
    n, c, h, _ = shape
    out = (h + 2 * kw["p"] - kw["k"]) // kw["s"] + 1
    return 3 * 2 * n * kw["o"] * (c // kw["g"]) * kw["k"] ** 2 * out * out / 1e9


def bench_layers(args):
    rng = np.random.default_rng(0)
    rows = []
    for name, kind, shape, kw in layer_cases():
        m, t = compare(make_layer(kind, shape, kw, "minidl", rng), make_layer(kind, shape, kw, "torch", rng),
                       reps=args.reps)
        rows.append(dict(name=name, minidl_ms=m, torch_ms=t, ratio=m / t))
        if kind == "conv":
            rows[-1].update(minidl_gflops=conv_gflop(shape, kw) / m * 1e3, torch_gflops=conv_gflop(shape, kw) / t * 1e3)
        print(f"  {name:36s} minidl {m:8.2f} ms  torch {t:8.2f} ms  ratio {m / t:5.2f}", flush=True)
    return rows


# ---- training steps ---------------------------------------------------------------------------------------
def _twin(name, *args, **kw):
    from minidl.testing import torch_twins
    return lambda: getattr(torch_twins, name)(*args, **kw)


def _model(name, **kw):
    from minidl import models
    return lambda: getattr(models, name)(**kw)


def _zoo_twin(name):
    from minidl.models import vgg
    from minidl.testing import torch_twins as tw
    return {"mobilenet_v2": lambda: tw.MobileNetV2(10, 3, True),
            "shufflenet_v2_x1_0": lambda: tw.ShuffleNetV2([24, 116, 232, 464, 1024], 10, 3, True),
            "googlenet": lambda: tw.GoogLeNet(10, False, 3, True),
            "vgg11_bn": lambda: tw.VGG(vgg.CFGS["A"], 10, 3, True),
            "resnet50": lambda: tw.ResNet([3, 4, 6, 3], 10, 3, True, block=tw.Bottleneck)}[name]


# name: (input shape, minidl model, torch twin, batch sizes). The torchvision models run with their small-input
# stems (CIFAR-sized images), GoogLeNet without its auxiliary classifiers, at batch 32: their steps take seconds.
STEP_MODELS = {
    "LeNet5": ((1, 28, 28), _model("LeNet5"), _twin("LeNet5"), (64, 128)),
    "InceptionNet": ((1, 28, 28), _model("InceptionNet"), _twin("InceptionNet"), (64, 128)),
    "ResidualNet": ((1, 28, 28), _model("ResidualNet"), _twin("ResidualNet"), (64, 128)),
    "resnet18 32x32": ((3, 32, 32), _model("resnet18", num_classes=10, small_input=True),
                       _twin("ResNet", [2, 2, 2, 2], 10, 3, True), (64, 128)),
    # torchvision's stem on 28x28 digits (the Siamese program): layer3 on 2x2 maps, layer4 on 1x1
    "resnet18 28x28": ((3, 28, 28), _model("resnet18", num_classes=10), _twin("ResNet", [2, 2, 2, 2], 10, 3, False),
                       (64,)),
    "MobileNetV2 blocks 32x32": ((3, 32, 32), lambda: mobile_blocks(__import__("minidl").nn),
                                 lambda: mobile_blocks(__import__("torch").nn), (64, 128)),
    **{f"{name} 32x32": ((3, 32, 32), _model(name, num_classes=10, small_input=True, **kw), _zoo_twin(name), (32,))
       for name, kw in [("mobilenet_v2", {}), ("shufflenet_v2_x1_0", {}), ("googlenet", dict(aux_logits=False)),
                        ("vgg11_bn", {}), ("resnet50", {})]},
}
ZOO = [name for name, spec in STEP_MODELS.items() if 128 not in spec[3]]  # too slow for the memory and GPU rows


def mobile_blocks(nn):
    """MobileNetV2-style inverted residual blocks (1x1 expand, depthwise 3x3, 1x1 project; BN; ReLU) at 32x32,
    built from ``nn`` = minidl.nn or torch.nn (the same code, so the same state_dict keys)."""
    class Inverted(nn.Module):
        def __init__(self, cin, cout, stride, t):
            super().__init__()
            mid = cin * t
            layers = [] if t == 1 else [nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU()]
            layers += [nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False), nn.BatchNorm2d(mid), nn.ReLU(),
                       nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout)]
            self.body = nn.Sequential(*layers)
            self.residual = stride == 1 and cin == cout

        def forward(self, x):
            return x + self.body(x) if self.residual else self.body(x)

    return nn.Sequential(
        nn.Conv2d(3, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        Inverted(32, 16, 1, 1), Inverted(16, 24, 2, 6), Inverted(24, 24, 1, 6), Inverted(24, 32, 2, 6),
        Inverted(32, 32, 1, 6), nn.Conv2d(32, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 10))


def make_step(name, batch, lib, rng, device="cpu"):
    import torch
    import minidl
    shape, make_model, make_twin, _ = STEP_MODELS[name]
    minidl.manual_seed(0)
    model = make_model()
    x = rng.standard_normal((batch, *shape)).astype(np.float32)
    y = rng.integers(0, 10, batch)
    if lib == "torch":
        twin = make_twin()
        twin.load_state_dict({k: torch.tensor(v.numpy()) for k, v in model.state_dict().items()})
        model, x, y = twin.to(device), torch.tensor(x, device=device), torch.tensor(y, device=device)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        loss_fn = torch.nn.functional.cross_entropy
        sync = torch.cuda.synchronize if device != "cpu" else None
    else:
        model.to(device)
        x, y = minidl.tensor(x, device=device), minidl.tensor(y, device=device)
        opt = minidl.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        loss_fn = minidl.nn.functional.cross_entropy
        sync = None
        if device != "cpu":
            import cupy
            sync = cupy.cuda.Device().synchronize
    model.train()

    def step():
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
        if sync is not None:  # GPU work is asynchronous: time it to the end
            sync()
    return step


def _tiny_gpt(lib):
    """examples/pytorch_style/tiny_gpt.py's namespace, run with minidl as written or with its imports made torch's:
    the same program text under both engines."""
    import re
    import runpy
    path = os.path.join(os.path.dirname(HERE), "examples", "pytorch_style", "tiny_gpt.py")
    if lib == "minidl":
        return runpy.run_path(path)
    with open(path, encoding="utf-8") as f:
        src = re.sub(r"^(import|from) minidl", r"\1 torch", f.read(), flags=re.M)
    ns = {"__name__": "tiny_gpt_torch"}
    exec(compile(src, path, "exec"), ns)
    return ns


def make_gpt_step(batch, lib, rng, masked_softmax=True):
    """A minGPT-like training step (3 layers, 3 heads, 48 dims, block 6; the attention as minGPT writes it, masked
    scores and softmax): forward, cross entropy, backward, gradient clipping, AdamW."""
    ns = _tiny_gpt(lib)
    torch = ns["torch"]
    torch.manual_seed(0)
    model = ns["GPT"](n_layer=3, n_head=3, n_embd=48)
    for block in model.blocks:
        block.attn.flash = not masked_softmax
    opt = model.configure_optimizer(1e-3)
    x = torch.tensor(rng.integers(0, 10, (batch, 6)))
    y = torch.tensor(rng.integers(0, 10, (batch, 6)))
    model.train()

    def step():
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return step


def bench_gpt(args):
    rows = []
    for batch in (64,):
        rng = np.random.default_rng(0)
        m_step, t_step = make_gpt_step(batch, "minidl", rng), make_gpt_step(batch, "torch", np.random.default_rng(0))
        c_step = compiled(make_gpt_step(batch, "minidl", np.random.default_rng(0)))
        m, t, c = compare(m_step, t_step, c_step, reps=args.reps)
        rows.append(_compiled_row(dict(name="tiny GPT (3 layers, 3 heads, 48 dims, block 6)", batch=batch,
                                       minidl_ms=m, torch_ms=t, ratio=m / t), c, c_step))
        print(f"  tiny GPT batch {batch}: minidl {m:.2f} ms  torch {t:.2f} ms  ratio {m / t:.2f}  compiled {c:.2f} ms "
              f"ratio {c / t:.2f}", flush=True)
    return rows


def make_forward(name, batch, lib, rng):
    """An evaluation forward of net ``name`` at ``batch`` under no_grad, in eval mode."""
    import torch
    import minidl
    shape, make_model, make_twin, _ = STEP_MODELS[name]
    model = make_model()
    x = rng.standard_normal((batch, *shape)).astype(np.float32)
    if lib == "torch":
        twin = make_twin()
        twin.load_state_dict({k: torch.tensor(v.numpy()) for k, v in model.state_dict().items()})
        model, x, grad_off = twin, torch.tensor(x), torch.no_grad
    else:
        x, grad_off = minidl.tensor(x), minidl.no_grad
    model.eval()

    def forward():
        with grad_off():
            model(x)
    return forward


def bench_first_eval(args):
    """The first evaluation forward at batch 1000 in a fresh process, and the second, for the net on tiny maps; with
    the tuner's choices stored by an earlier process (the default: kernels/autotune.py) and without (the first run on
    a machine: the trials run, NOTES.md, changes 39 and 52), and the library's import time (torch loads its kernels
    there; minidl loads Numba's at the first call)."""
    rows = []
    for name in ("resnet18 28x28",):
        _child("first_eval", name, 1000, "minidl", args.threads)  # stores the tuner's choices, if not stored yet
        mi, m1, m2 = _child("first_eval", name, 1000, "minidl", args.threads)
        _, cold, _ = _child("first_eval", name, 1000, "minidl", args.threads, MINIDL_AUTOTUNE_CACHE="0")
        ti, t1, t2 = _child("first_eval", name, 1000, "torch", args.threads)
        rows.append(dict(name=name, batch=1000, minidl_import_s=mi, minidl_first_s=m1, minidl_first_untuned_s=cold,
                         minidl_second_s=m2, torch_import_s=ti, torch_first_s=t1, torch_second_s=t2, ratio=m1 / t1,
                         ratio_untuned=cold / t1, ratio_with_import=(mi + m1) / (ti + t1)))
        print(f"  {name} eval forward at batch 1000: minidl first {m1:.2f} s ({cold:.2f} s with no stored tuning "
              f"choice), second {m2:.2f} s, import {mi:.2f} s; torch first {t1:.2f} s, second {t2:.2f} s, import "
              f"{ti:.2f} s", flush=True)
    return rows


def bench_steps(args):
    rng = np.random.default_rng(0)
    rows = []
    for name, spec in STEP_MODELS.items():
        if args.models and name not in args.models:
            continue
        for batch in spec[3]:
            reps = max(5, args.reps // (1 if spec[3] == (64, 128) and "resnet18" not in name else 4))
            c_step = compiled(make_step(name, batch, "minidl", rng))
            m, t, c = compare(make_step(name, batch, "minidl", rng), make_step(name, batch, "torch", rng), c_step,
                              reps=reps, warmup=3)
            rows.append(_compiled_row(dict(name=name, batch=batch, minidl_ms=m, torch_ms=t, ratio=m / t,
                                           minidl_img_s=batch / m * 1e3, torch_img_s=batch / t * 1e3), c, c_step))
            print(f"  {name:15s} batch {batch:3d}  minidl {m:8.1f} ms ({batch / m * 1e3:6.0f} img/s)  "
                  f"torch {t:8.1f} ms "
                  f"({batch / t * 1e3:6.0f} img/s)  ratio {m / t:5.2f}  compiled {c:8.1f} ms ratio {c / t:5.2f}",
                  flush=True)
    return rows


def bench_gpu(args):
    """Training steps on the GPU at batch 128, minidl (CuPy) against torch (cuDNN), float32, synchronised.
    Skipped where CuPy sees no GPU."""
    import minidl
    import torch
    if not (minidl.cuda.is_available() and torch.cuda.is_available()):
        print("  no GPU here (minidl.cuda.is_available() or torch.cuda.is_available() is False): skipped", flush=True)
        return None
    torch.backends.cudnn.benchmark = True
    rng = np.random.default_rng(0)
    rows = []
    for name in STEP_MODELS:
        m, t = compare(make_step(name, 128, "minidl", rng, "cuda"), make_step(name, 128, "torch", rng, "cuda"),
                       reps=args.reps, warmup=3)
        rows.append(dict(name=name, batch=128, device=torch.cuda.get_device_name(), minidl_ms=m, torch_ms=t,
                         ratio=m / t))
        print(f"  {name:15s} batch 128  minidl {m:8.2f} ms  torch {t:8.2f} ms  ratio {m / t:5.2f}  "
              f"({torch.cuda.get_device_name()})", flush=True)
    return rows


# ---- memory, epoch and latency run in child processes ----------------------------------------------------
CHILD = r"""
import sys, time, numpy as np
mode, name, batch, lib = {mode!r}, {name!r}, {batch!r}, {lib!r}
t0 = time.perf_counter(); __import__(lib); imported = time.perf_counter() - t0  # before bench imports the other
sys.path.insert(0, {here!r})
import bench
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024
if mode == "first_eval":  # a fresh process: the first forward at a new batch size (the tuner's trials), then another
    forward = bench.make_forward(name, batch, lib, np.random.default_rng(0))
    t0 = time.perf_counter(); forward(); first = time.perf_counter() - t0
    t0 = time.perf_counter(); forward(); print(imported, first, time.perf_counter() - t0)
if mode == "memory":
    step = bench.make_step(name, batch, lib, np.random.default_rng(0))
    start = status("VmRSS")  # model and data built, libraries imported
    step(); step()  # kernels compiled or loaded, conv algorithms chosen, gradients and optimizer state exist
    base = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak resident set size (VmHWM) to the current one
    for _ in range(3):
        step()
    print(base - start, status("VmHWM") - base)
"""


def _child(mode, name, batch, lib, threads, **env):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), **env)
    code = CHILD.format(here=HERE, mode=mode, name=name, batch=batch, lib=lib)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return [float(v) for v in out.stdout.strip().splitlines()[-1].split()]


def bench_memory(args):
    """Peak memory of a training step above the memory held between steps (parameters, gradients, optimizer
    state, data), after two warm-up steps, in a fresh process per library and net. glibc's mmap threshold is
    fixed at 64 KiB so that freed arrays leave the resident set at once: the peak is then that of the live
    arrays, not of what the allocator happens to cache. The memory the warm-up adds (kernel code: Numba's
    compiled kernels and LLVM for minidl, oneDNN's for torch) is reported next to it."""
    rows = []
    for name in (n for n in STEP_MODELS if n not in ZOO):
        (m_code, m), (t_code, t) = (_child("memory", name, 128, lib, args.threads, MALLOC_MMAP_THRESHOLD_="65536")
                                    for lib in ("minidl", "torch"))
        rows.append(dict(name=name, batch=128, minidl_mib=m, torch_mib=t, ratio=m / max(t, 1e-9),
                         minidl_warmup_mib=m_code, torch_warmup_mib=t_code))
        print(f"  {name:15s} batch 128  peak memory of a step: minidl {m:7.1f} MiB  torch {t:7.1f} MiB  "
              f"ratio {m / max(t, 1e-9):5.2f}   (warm-up added {m_code:.0f} / {t_code:.0f} MiB)", flush=True)
    return rows


def bench_epoch(args):
    """One LeNet-5 epoch (SGD momentum, batch 128) over 60,000 images: Fashion-MNIST when Debian's package
    is installed, else synthetic data of the same size."""
    import torch
    import minidl
    try:
        ds = minidl.data.FashionMNIST("data", train=True)
        x_all = ((ds.data.astype(np.float32) / 255 - 0.286) / 0.353)[:, None]
        y_all, source = ds.targets, "Fashion-MNIST"
    except (minidl.data.DatasetNotFoundError, ValueError):
        rng = np.random.default_rng(0)
        x_all, y_all, source = rng.standard_normal((60000, 1, 28, 28)).astype(np.float32), \
            rng.integers(0, 10, 60000), "synthetic"
    order = np.random.default_rng(0).permutation(len(x_all))
    res = {}
    for lib in ("minidl", "torch"):
        minidl.manual_seed(0)
        if lib == "minidl":
            model = minidl.models.LeNet5()
            opt = minidl.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
            F, T = minidl.nn.functional, minidl.tensor
        else:
            from minidl.testing import torch_twins
            model = torch_twins.LeNet5()
            opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
            F, T = torch.nn.functional, torch.tensor
        t0 = time.perf_counter()
        for s in range(0, len(order), 128):
            idx = order[s:s + 128]
            opt.zero_grad()
            F.cross_entropy(model(T(x_all[idx])), T(y_all[idx])).backward()
            opt.step()
        res[lib] = time.perf_counter() - t0
    print(f"  LeNet-5 epoch over 60,000 {source} images: minidl {res['minidl']:.1f} s  torch {res['torch']:.1f} s  "
          f"ratio {res['minidl'] / res['torch']:.2f}", flush=True)
    return dict(source=source, minidl_s=res["minidl"], torch_s=res["torch"], ratio=res["minidl"] / res["torch"])


LATENCY = r"""
import time
t0 = time.perf_counter()
import numpy as np, minidl
m = minidl.models.LeNet5()
opt = minidl.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
x = minidl.randn(128, 1, 28, 28); y = minidl.randint(10, size=(128,))
minidl.nn.functional.cross_entropy(m(x), y).backward(); opt.step()
print(time.perf_counter() - t0)
"""


LOAD = """
import sys, time, json, numpy as np
sys.path.insert(0, {here!r})
from bench import make_step
step = make_step({name!r}, 128, {lib!r}, np.random.default_rng(0))
if {lib!r} == "torch":
    import torch
    torch.set_num_threads({threads})
step(); step()
ts, end = [], time.time() + {seconds}
while time.time() < end or len(ts) < 3:
    t0 = time.perf_counter(); step(); ts.append(time.perf_counter() - t0)
print(json.dumps(ts))
"""


def bench_load(args):
    """A training step next to CPU-burning processes (a busy machine: load about burners + threads on this
    machine's cores), each engine in its own process with the same threads; median and worst step."""
    rows = []
    for burners in (0, 3, 10):
        for name in ("LeNet5", "ResidualNet"):
            row = dict(name=name, burners=burners)
            for lib in ("minidl", "torch"):
                procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(burners)]
                try:
                    code = LOAD.format(here=HERE, name=name, lib=lib, threads=args.threads, seconds=args.load_seconds)
                    ts = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                                   check=True).stdout.strip().splitlines()[-1])
                finally:
                    for p in procs:
                        p.kill()
                row[f"{lib}_median_ms"] = 1e3 * statistics.median(ts)
                row[f"{lib}_worst_ms"] = 1e3 * max(ts)
                row[f"{lib}_steps"] = len(ts)
            rows.append(row)
            print(f"  {name:12s} {burners:2d} burners  minidl median {row['minidl_median_ms']:7.1f} ms worst "
                  f"{row['minidl_worst_ms']:7.1f} ms  torch median {row['torch_median_ms']:7.1f} ms worst "
                  f"{row['torch_worst_ms']:7.1f} ms", flush=True)
    return rows


def bench_latency(args):
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        run = lambda: float(subprocess.run([sys.executable, "-c", LATENCY], capture_output=True, text=True,  # noqa
                                           env=env, check=True).stdout.strip())
        cold, warm = run(), min(run() for _ in range(3))
    print(f"  import minidl + first LeNet-5 step: cold Numba cache {cold:.2f} s, warm cache {warm:.2f} s", flush=True)
    return dict(cold_s=cold, warm_s=warm)


# ---- overhead: what one op costs around its array work -----------------------------------------------------
def overhead_cases(minidl, torch):
    """(name, minidl thunk, torch thunk, NumPy thunk or None): small ops, where the time is the engine's own."""
    import minidl.nn.functional as F
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4, 4)).astype(np.float32)
    m, t = minidl.tensor(a), torch.tensor(a)
    mg, tg = minidl.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)

    def graph(lib, x):
        def run():
            ((x * 2 + 1).relu().sum()).backward()
        return run
    ln = rng.standard_normal((64, 6, 48)).astype(np.float32)
    mln, tln = minidl.tensor(ln, requires_grad=True), torch.tensor(ln, requires_grad=True)
    mw, tw = minidl.ones(48, requires_grad=True), torch.ones(48, requires_grad=True)
    mb, tb = minidl.zeros(48, requires_grad=True), torch.zeros(48, requires_grad=True)
    cube = rng.uniform(-3, 3, 73728).astype(np.float32)
    mc, tc = minidl.tensor(cube), torch.tensor(cube)
    return [
        ("`a + a`, 4x4, no grad", lambda: m + m, lambda: t + t, lambda: a + a),
        ("`a * 2`, 4x4, no grad", lambda: m * 2, lambda: t * 2, lambda: a * 2),
        ("`relu(a)`, 4x4, requires grad", lambda: F.relu(mg), lambda: torch.relu(tg), lambda: np.maximum(a, 0)),
        ("`a.view(16)`", lambda: m.view(16), lambda: t.view(16), lambda: a.reshape(16)),
        ("`a.transpose(0, 1)`", lambda: m.transpose(0, 1), lambda: t.transpose(0, 1), lambda: a.transpose(1, 0)),
        ("`a.sum()`", lambda: m.sum(), lambda: t.sum(), lambda: a.sum()),
        ("`a @ a`, 4x4", lambda: m @ m, lambda: t @ t, lambda: a @ a),
        ("`((x*2+1).relu().sum()).backward()`, 4x4", graph(minidl, mg), graph(torch, tg), None),
        ("layer_norm (64, 6, 48), forward + backward",
         lambda: F.layer_norm(mln, (48,), mw, mb).sum().backward(),
         lambda: torch.nn.functional.layer_norm(tln, (48,), tw, tb).sum().backward(), None),
        ("`pow(x, 3.0)`, 73,728 values", lambda: minidl.pow(mc, 3.0), lambda: torch.pow(tc, 3.0),
         lambda: np.power(cube, np.float32(3.0))),
    ]


def _best_us(fn, number):
    import timeit
    fn()
    return 1e6 * min(timeit.repeat(fn, number=number, repeat=7)) / number


def bench_overhead(args):
    import minidl
    import torch
    rows = []
    for name, m_fn, t_fn, n_fn in overhead_cases(minidl, torch):
        probe = _best_us(m_fn, 3)
        number = max(3, int(20000 / max(probe, 1.0)))  # about 20 ms per repeat
        row = dict(name=name, minidl_us=_best_us(m_fn, number), torch_us=_best_us(t_fn, number),
                   numpy_us=_best_us(n_fn, number) if n_fn is not None else None)
        row["ratio"] = row["minidl_us"] / row["torch_us"]
        print(f"  {name}: minidl {row['minidl_us']:.1f} us, torch {row['torch_us']:.1f} us, ratio {row['ratio']:.2f}",
              flush=True)
        rows.append(row)
    return rows


SECTIONS = {"layers": bench_layers, "steps": bench_steps, "memory": bench_memory, "epoch": bench_epoch,
            "latency": bench_latency, "gpu": bench_gpu, "load": bench_load, "overhead": bench_overhead,
            "first_eval": bench_first_eval, "gpt": bench_gpt}


def _compiled_cells(row, fmt):
    """The compiled columns: '-' where the row was not timed compiled or the step did not replay."""
    if row.get("compiled_ms") is None:
        return "- | -"
    return f"{row['compiled_ms']:{fmt}} | {row['compiled_ratio']:.2f}"


def markdown(results):
    """The README's performance tables, from results.json."""
    out = []
    if "steps" in results:
        timed = any("compiled_ms" in r for r in results["steps"])  # results from before bench.py timed compile
        out += ["| training step (SGD momentum) | batch | minidl ms | torch ms | minidl img/s | ratio"
                + (" | compiled ms | compiled ratio |" if timed else " |"),
                "|---|---:|---:|---:|---:|---:|" + ("---:|---:|" if timed else "")]
        out += [f"| {r['name']} | {r['batch']} | {r['minidl_ms']:.1f} | {r['torch_ms']:.1f} | "
                f"{r['minidl_img_s']:.0f} | "
                f"{r['ratio']:.2f} |" + (f" {_compiled_cells(r, '.1f')} |" if timed else "") for r in results["steps"]]
        out.append("")
        seed = [r["ratio"] for r in results["steps"] if r["name"] in ("LeNet5", "InceptionNet", "ResidualNet")]
        if seed:
            out += [f"Per training step on an idle machine, minidl takes {min(seed):.2f}-{max(seed):.2f}x torch's time "
                    f"on the seed nets (LeNet5, InceptionNet, ResidualNet).", ""]
    if results.get("overhead"):
        out += ["| one small op (best of 7, per call) | minidl us | torch us | NumPy us | ratio |",
                "|---|---:|---:|---:|---:|"]
        out += [f"| {r['name']} | {r['minidl_us']:.1f} | {r['torch_us']:.1f} | "
                + ("" if r["numpy_us"] is None else f"{r['numpy_us']:.1f}") + f" | {r['ratio']:.2f} |"
                for r in results["overhead"]]
        out.append("")
    if results.get("gpt"):
        timed = any("compiled_ms" in r for r in results["gpt"])
        out += ["| training step, many small ops | batch | minidl ms | torch ms | ratio"
                + (" | compiled ms | compiled ratio |" if timed else " |"),
                "|---|---:|---:|---:|---:|" + ("---:|---:|" if timed else "")]
        out += [f"| {r['name']} | {r['batch']} | {r['minidl_ms']:.1f} | {r['torch_ms']:.1f} | {r['ratio']:.2f} |"
                + (f" {_compiled_cells(r, '.1f')} |" if timed else "") for r in results["gpt"]]
        out.append("")
    if results.get("first_eval"):
        out += ["| evaluation forward, batch 1000, fresh process | minidl first (no stored choice) / second s | "
                "torch first / second s | ratio (first) | import minidl / torch s | ratio (import + first) |",
                "|---|---:|---:|---:|---:|---:|"]
        out += [f"| {r['name']} | {r['minidl_first_s']:.2f} ({r['minidl_first_untuned_s']:.2f}) / "
                f"{r['minidl_second_s']:.2f} | {r['torch_first_s']:.2f} / {r['torch_second_s']:.2f} | "
                f"{r['ratio']:.2f} | {r['minidl_import_s']:.2f} / {r['torch_import_s']:.2f} | "
                f"{r['ratio_with_import']:.2f} |" for r in results["first_eval"]]
        out.append("")
    if "layers" in results:
        out += ["| layer, forward + backward | minidl ms | torch ms | ratio | minidl / torch GFLOP/s |",
                "|---|---:|---:|---:|---:|"]
        out += [f"| {r['name']} | {r['minidl_ms']:.2f} | {r['torch_ms']:.2f} | {r['ratio']:.2f} | "
                + (f"{r['minidl_gflops']:.0f} / {r['torch_gflops']:.0f} |" if "minidl_gflops" in r else "|")
                for r in results["layers"]]
        out.append("")
    if "memory" in results:
        out += ["| peak memory of a step, batch 128 | minidl MiB | torch MiB | ratio "
                "| first steps' code, minidl / torch MiB |",
                "|---|---:|---:|---:|---:|"]
        out += [f"| {r['name']} | {r['minidl_mib']:.0f} | {r['torch_mib']:.0f} | {r['ratio']:.2f} | "
                f"{r.get('minidl_warmup_mib', float('nan')):.0f} / {r.get('torch_warmup_mib', float('nan')):.0f} |"
                for r in results["memory"]]
        out.append("")
    if results.get("gpu"):
        out += [f"| GPU training step, batch 128 ({results['gpu'][0]['device']}) | minidl ms | torch ms | ratio |",
                "|---|---:|---:|---:|"]
        out += [f"| {r['name']} | {r['minidl_ms']:.2f} | {r['torch_ms']:.2f} | {r['ratio']:.2f} |"
                for r in results["gpu"]]
        out.append("")
    if results.get("load"):
        out += ["| step next to CPU burners, batch 128 | burners | minidl median / worst ms | "
                "torch median / worst ms |", "|---|---:|---:|---:|"]
        out += [f"| {r['name']} | {r['burners']} | {r['minidl_median_ms']:.0f} / {r['minidl_worst_ms']:.0f} | "
                f"{r['torch_median_ms']:.0f} / {r['torch_worst_ms']:.0f} |" for r in results["load"]]
        out.append("")
    if "epoch" in results:
        e = results["epoch"]
        out.append(f"One LeNet-5 epoch over 60,000 {e['source']} images (batch 128): minidl {e['minidl_s']:.1f} s, "
                   f"torch {e['torch_s']:.1f} s, ratio {e['ratio']:.2f}.")
    if "latency" in results:
        lat = results["latency"]
        out.append(f"`import minidl` plus the first LeNet-5 training step: {lat['cold_s']:.2f} s with a cold Numba "
                   f"cache, {lat['warm_s']:.2f} s with a warm one.")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--markdown", action="store_true", help="print the README tables from --out and stop")
    ap.add_argument("--only", nargs="*", choices=list(SECTIONS), default=list(SECTIONS))
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--models", nargs="*", choices=list(STEP_MODELS), default=None,
                    help="time only these rows of the step table (the other rows keep their results)")
    ap.add_argument("--load-seconds", type=float, default=10.0, help="how long each 'load' run lasts")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--out", default=os.path.join(HERE, "results.json"))
    args = ap.parse_args()
    if args.markdown:
        with open(args.out) as f:
            print(markdown(json.load(f)))
        return
    import torch
    from threadpoolctl import threadpool_limits
    torch.set_num_threads(args.threads)
    results = dict(meta=dict(threads=args.threads, reps=args.reps, torch=torch.__version__, numpy=np.__version__,
                             cpu_count=os.cpu_count(), ratio="minidl / torch, lower is better"))
    with threadpool_limits(args.threads, user_api="blas"):
        for name in args.only:
            print(f"[{name}]", flush=True)
            rows = SECTIONS[name](args)
            if rows is not None:  # a skipped section keeps its earlier results
                results[name] = rows
    if os.path.exists(args.out):  # keep sections not rerun
        with open(args.out) as f:
            old = json.load(f)
        if args.models and "steps" in results:  # a partial step table: replace only the rows rerun
            new = {(r["name"], r["batch"]): r for r in results["steps"]}  # rows rerun keep their place
            kept = [new.pop((r["name"], r["batch"]), r) for r in old.get("steps", [])]
            results["steps"] = kept + list(new.values())
        results = {**old, **results}
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(results, f, indent=1)
    os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
