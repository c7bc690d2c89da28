"""Prune a trained LeNet-5 and plot test accuracy against sparsity (torch.nn.utils.prune's API).

Trains LeNet-5 on MNIST (the bundled subset offline), then, for each sparsity, prunes a copy globally by weight
magnitude (the smallest |w| over all conv and linear weights go first), measures its test accuracy, fine-tunes
the pruned net for one epoch (pruned weights stay at zero: only the kept ones get gradients) and measures again.

    python examples/prune_lenet.py                       # sparsities 10%, 50%, 90%, 95%, 98%
    python examples/prune_lenet.py --sparsity 0.5 0.9 --epochs 2
"""
import argparse
import os

from _common import as_arrays, load_datasets, parse, parser, run_folder, train_epochs as train

import minidl
import numpy as np
from minidl import data, nn, utils
from minidl.models import LeNet5
from minidl.nn.utils import prune


def sparsity(text):
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def weights(model):
    """The (module, "weight") pairs of the conv and linear layers, as prune.global_unstructured takes them."""
    return [(m, "weight") for _, m in layers(model)]


def layers(model):
    """The conv and linear layers by their attribute names ("conv1", "fc3"), in the model's order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def main():
    p = parser(__doc__, epochs=8, lr=3e-3, distributed=False, resume=False, monitor=False)
    p.add_argument("--sparsity", type=sparsity, nargs="+", default=[0.1, 0.5, 0.9, 0.95, 0.98],
                   help="fractions of the conv and linear weights to prune, each in [0, 1)")
    args = parse(p)
    minidl.manual_seed(args.seed)
    progress = not args.no_progress
    train_set, test_set = load_datasets(args)
    train_loader = data.DataLoader(as_arrays(train_set, args.train_size), args.batch_size, shuffle=True,
                                   device=args.device)
    test_loader = data.DataLoader(as_arrays(test_set), 1000, device=args.device)
    dense = LeNet5().to(args.device)
    train(dense, train_loader, args.epochs, args.lr, progress, desc="dense LeNet-5")
    base = utils.evaluate(dense, test_loader)["acc"]
    print(f"dense LeNet-5: test accuracy {100 * base:.2f}%")
    state = dense.state_dict()
    rows = []
    for s in args.sparsity:
        net = LeNet5().to(args.device)
        net.load_state_dict(state)
        prune.global_unstructured(weights(net), prune.L1Unstructured, amount=s)
        kept = sum(float(m.weight_mask.sum()) for m, _ in weights(net))
        total = sum(m.weight_mask.numel() for m, _ in weights(net))
        pruned_acc = utils.evaluate(net, test_loader)["acc"]
        train(net, train_loader, 1, args.lr / 3, progress, desc=f"fine-tuning at {100 * s:.0f}%")
        for m, name in weights(net):  # make it permanent: plain weights with zeros, torch's unpruned layout
            prune.remove(m, name)
        zeros = sum(int((m.weight.detach().numpy() == 0).sum()) for m, _ in weights(net))
        tuned = utils.evaluate(net, test_loader)["acc"]
        per_layer = ", ".join(f"{name} {100 * float((m.weight.detach().numpy() == 0).mean()):.0f}%"
                              for name, m in layers(net))
        print(f"sparsity {100 * s:4.0f}%: {int(total - kept)}/{total} weights pruned ({zeros} zeros after remove); "
              f"accuracy {100 * pruned_acc:.2f}% pruned, {100 * tuned:.2f}% after 1 epoch of fine-tuning  "
              f"[{per_layer}]")
        rows.append((s, pruned_acc, tuned))
    path = os.path.join(run_folder(args.out_dir, f"lenet5_pruning_{args.dataset}"), "accuracy_vs_sparsity.png")
    xs = [100 * r[0] for r in rows]
    utils.plots.plot_lines({"pruned": (xs, [100 * r[1] for r in rows]),
                            "pruned + 1 epoch fine-tuning": (xs, [100 * r[2] for r in rows]),
                            "dense": (xs, [100 * base] * len(rows))},
                           path, "sparsity (% of conv and linear weights pruned)", "test accuracy (%)",
                           title="LeNet-5: global magnitude pruning")
    print(f"wrote {path}")
    return base, np.array(rows)


if __name__ == "__main__":
    main()
