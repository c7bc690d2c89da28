"""Why residual connections let deep nets train: a deep plain CNN next to the same depth with identity
shortcuts, each watched by minidl.utils.Monitor while it trains. One figure shows it: in the plain net the
gradient reaching the input-side layers is orders of magnitude smaller than at the output side, and the loss
does not move; with shortcuts the gradient is about as large at every depth, and the loss falls.

    python examples/vanishing_gradients.py [--depth 20] [--steps 150]
"""
import os

from _common import base_parser, parse, positive, progress_bar

import minidl
import numpy as np
import minidl.nn.functional as F
from minidl import data, nn, optim, utils
from minidl.utils import plots


class DeepNet(nn.Module):
    """A stem conv, ``depth`` 3x3 conv layers (each conv -> ReLU, or x + conv -> ReLU with ``residual``),
    global average pooling and a linear classifier. No normalisation, so depth alone decides."""

    def __init__(self, depth, residual, width=16):
        super().__init__()
        self.residual = residual
        self.stem = nn.Conv2d(1, width, 3, padding=1)
        # torch's default initialisation for both: each plain layer shrinks the signal (and so the
        # gradient) a little; twenty of them shrink it a lot, while x + conv(x) keeps the identity path
        self.convs = nn.ModuleList([nn.Conv2d(width, width, 3, padding=1) for _ in range(depth)])
        self.fc = nn.Linear(width, 10)

    def forward(self, x):
        x = F.relu(self.stem(x))
        x = F.max_pool2d(x, 2)
        for c in self.convs:
            x = F.relu(x + c(x)) if self.residual else F.relu(c(x))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def train(model, loader, steps, lr, name, progress):
    """Adam for ``steps`` steps, a Monitor on every conv layer; returns the losses and the monitor."""
    monitor = utils.Monitor(model, layers=[f"convs.{k}" for k in range(len(model.convs))])
    opt = optim.Adam(model.parameters(), lr=lr)
    losses = []
    bar = progress_bar(name, steps, progress)
    while len(losses) < steps:
        for x, y in loader:
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            monitor.step()
            opt.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
            bar.update(1)
            if len(losses) == steps:
                break
    bar.close()
    monitor.remove()
    return losses, monitor


def main(argv=None):
    p = base_parser(__doc__, batch_size=64, data=False, device=False)  # --out-dir, --seed, --no-progress
    p.add_argument("--depth", type=positive(int), default=20, help="conv layers after the stem")
    p.add_argument("--steps", type=positive(int), default=150, help="training steps of each net")
    p.add_argument("--lr", type=positive(float), default=1e-3, help="learning rate (Adam)")
    args = parse(p, argv)
    ds = data.MNISTSubset(True)
    x_all = ((ds.data.float() / 255 - 0.1307) / 0.3081).unsqueeze(1)
    losses, monitors = {}, {}
    for residual in (False, True):
        name = "residual" if residual else "plain"
        minidl.manual_seed(args.seed)
        loader = data.DataLoader(data.TensorDataset(x_all, ds.targets), args.batch_size, shuffle=True)
        losses[name], monitors[name] = train(DeepNet(args.depth, residual), loader, args.steps, args.lr, name,
                                             not args.no_progress)
        norms = monitors[name].as_arrays("grad_norm")[0]
        print(f"{name:8s} depth {args.depth}: weight-gradient norm of conv 1 / conv {args.depth} at the first step "
              f"{norms[0]:.2e} / {norms[-1]:.2e};  loss over the last 10 of {args.steps} steps "
              f"{np.mean(losses[name][-10:]):.3f}", flush=True)
    os.makedirs(args.out_dir, exist_ok=True)
    figure = utils.plot_monitors({f"plain, {args.depth} layers": monitors["plain"],
                                  f"residual, {args.depth} layers": monitors["residual"]},
                                 os.path.join(args.out_dir, "vanishing_gradients.png"), keys=("grad_norm", "act_std"))
    curves = plots.plot_lines(losses, os.path.join(args.out_dir, "vanishing_gradient_loss.png"), "step",
                              "training loss", f"{args.depth}-layer CNN: plain vs residual")
    print(f"wrote {figure} and {curves}")
    return losses, monitors


if __name__ == "__main__":
    main()
