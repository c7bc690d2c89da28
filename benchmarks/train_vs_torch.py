"""Train the three seed nets with minidl and with their torch twins, same initial weights, same batches,
same optimizer and schedule (Adam + one-cycle, the examples' defaults), and report test accuracy and
training time side by side; a third twin trains the same way through ``minidl.compile(model)`` (what the examples'
--compile does). Each engine runs a whole epoch at a time, after one untimed step per batch shape. Writes
benchmarks/results_train.json; the README's accuracy table comes from it.

    python benchmarks/train_vs_torch.py [--dataset mnist-subset|fashion-mnist] [--threads 2]
"""
import os

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")  # before NumPy/torch load OpenBLAS: see bench.py

import argparse
import copy
import json
import time

import numpy as np
import torch

import minidl
import minidl.nn.functional as F
from minidl import data, models, optim
from minidl.testing import torch_twins

NETS = {"LeNet5": (models.LeNet5, torch_twins.LeNet5, 12), "InceptionNet": (models.InceptionNet,
        torch_twins.InceptionNet, 8), "ResidualNet": (models.ResidualNet, torch_twins.ResidualNet, 8)}


def load(dataset):
    if dataset == "fashion-mnist":
        tr, te = data.FashionMNIST("data", True), data.FashionMNIST("data", False)
    else:
        tr, te = data.MNISTSubset(True), data.MNISTSubset(False)
    norm = lambda d: ((np.asarray(d.data.numpy(), np.float32) / 255 - 0.1307) / 0.3081)[:, None]  # noqa: E731
    return norm(tr), tr.targets.numpy(), norm(te), te.targets.numpy()


def run(name, dataset, batch_size, lr, epochs, seed):
    make_m, make_t, default_epochs = NETS[name]
    epochs = epochs or default_epochs
    xtr, ytr, xte, yte = load(dataset)
    minidl.manual_seed(seed)
    m = make_m()
    t = make_t()
    t.load_state_dict({k: torch.tensor(v.numpy()) for k, v in m.state_dict().items()})
    plain = make_m()
    plain.load_state_dict(m.state_dict())
    c = minidl.compile(plain)
    steps = -(-len(xtr) // batch_size)
    oc = optim.Adam(plain.parameters(), lr=lr)
    sc = optim.lr_scheduler.OneCycleLR(oc, lr, epochs=epochs, steps_per_epoch=steps)
    om = optim.Adam(m.parameters(), lr=lr)
    ot = torch.optim.Adam(t.parameters(), lr=lr)
    sm = optim.lr_scheduler.OneCycleLR(om, lr, epochs=epochs, steps_per_epoch=steps)
    st = torch.optim.lr_scheduler.OneCycleLR(ot, lr, epochs=epochs, steps_per_epoch=steps)
    rng = np.random.default_rng(seed)
    times = {"minidl": 0.0, "torch": 0.0, "compiled": 0.0}

    def minidl_step(x, y, model=m, opt=om, sched_step=sm.step):
        opt.zero_grad()
        F.cross_entropy(model(minidl.tensor(x)), minidl.tensor(y)).backward()
        opt.step()
        sched_step()

    def torch_step(x, y):
        ot.zero_grad()
        torch.nn.functional.cross_entropy(t(torch.tensor(x)), torch.tensor(y)).backward()
        ot.step()
        st.step()

    # each engine runs a whole epoch at a time (the epoch's batches are the same for all three, the order turns every
    # epoch): a step right after another engine's runs slower (torch's OpenMP threads still spin, the caches hold the
    # other's arrays), and alternating single steps gave that cost to whichever engine followed torch most often
    runs = [("minidl", minidl_step), ("torch", torch_step),
            ("compiled", lambda x, y: minidl_step(x, y, c, oc, sc.step))]
    # one untimed step per batch shape on throwaway copies first: the conv tuner's trials (shared by the minidl twins,
    # paid by whichever ran first) and torch's first-call setup stay out of every engine's time
    sizes = {batch_size, len(xtr) - (steps - 1) * batch_size}
    spare_m, spare_t = copy.deepcopy(m), copy.deepcopy(t)
    for n in sizes:
        minidl_step(xtr[:n], ytr[:n], spare_m, optim.SGD(spare_m.parameters(), lr=0.0), lambda: None)
        torch.nn.functional.cross_entropy(spare_t(torch.tensor(xtr[:n])), torch.tensor(ytr[:n])).backward()
    for epoch in range(epochs):
        order = rng.permutation(len(xtr))
        for engine, step in runs[epoch % 3:] + runs[:epoch % 3]:
            for s in range(steps):
                idx = order[s * batch_size:(s + 1) * batch_size]
                x, y = xtr[idx], ytr[idx]
                t0 = time.perf_counter()
                step(x, y)
                times[engine] += time.perf_counter() - t0
    m.eval()
    t.eval()
    c.eval()
    with minidl.no_grad(), torch.no_grad():
        acc_m = float((m(minidl.tensor(xte)).numpy().argmax(1) == yte).mean())
        acc_t = float((t(torch.tensor(xte)).numpy().argmax(1) == yte).mean())
        acc_c = float((c(minidl.tensor(xte)).numpy().argmax(1) == yte).mean())
    return dict(net=name, dataset=dataset, epochs=epochs, batch_size=batch_size, lr=lr, minidl_acc=acc_m,
                torch_acc=acc_t, minidl_s=times["minidl"], torch_s=times["torch"],
                time_ratio=times["minidl"] / times["torch"], compiled_acc=acc_c, compiled_s=times["compiled"],
                compiled_ratio=times["compiled"] / times["torch"])


def markdown(results):
    """The README's accuracy table, from results_train.json."""
    compiled = all("compiled_s" in r for r in results["rows"])
    out = ["| net | dataset | epochs | minidl test acc | torch test acc | minidl train time | torch train time | "
           "time ratio |" + (" compiled train time | compiled ratio |" if compiled else ""),
           "|---|---|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if compiled else "")]
    out += [f"| {r['net']} | {r['dataset']} | {r['epochs']} | {100 * r['minidl_acc']:.2f}% | "
            f"{100 * r['torch_acc']:.2f}% | {r['minidl_s']:.1f} s | {r['torch_s']:.1f} s | {r['time_ratio']:.2f} |"
            + (f" {r['compiled_s']:.1f} s | {r['compiled_ratio']:.2f} |" if compiled else "")
            for r in results["rows"]]
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="mnist-subset", choices=["mnist-subset", "fashion-mnist"])
    ap.add_argument("--nets", nargs="*", default=list(NETS))
    ap.add_argument("--epochs", type=int, default=None, help="default: each example's default")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results_train.json"))
    ap.add_argument("--markdown", action="store_true", help="print the README table from --out and stop")
    args = ap.parse_args()
    if args.markdown:
        with open(args.out) as f:
            return print(markdown(json.load(f)))
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.nets:
        r = run(name, args.dataset, args.batch_size, args.lr, args.epochs, args.seed)
        rows.append(r)
        print(f"{name:13s} {r['dataset']:13s} {r['epochs']:2d} epochs  accuracy minidl {100 * r['minidl_acc']:.2f}%  "
              f"torch {100 * r['torch_acc']:.2f}%   train time minidl {r['minidl_s']:.1f} s  torch {r['torch_s']:.1f} s"
              f"  ratio {r['time_ratio']:.2f}  compiled {r['compiled_s']:.1f} s (accuracy "
              f"{100 * r['compiled_acc']:.2f}%, ratio {r['compiled_ratio']:.2f})", flush=True)
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(dict(threads=args.threads, torch=torch.__version__, rows=rows), f, indent=1)
    os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
