"""Why residual connections let deep nets train: a deep plain CNN next to the same depth with identity
shortcuts. Plots the gradient norm of every layer at initialisation and the training loss of both.

    python examples/vanishing_gradients.py [--depth 20] [--steps 150]
"""
import os

from _common import ArgumentParser, HelpFormatter, positive

import minidl
import numpy as np
import minidl.nn.functional as F
from minidl import data, nn, optim
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


def main():
    p = ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--depth", type=positive(int), default=20, help="conv layers after the stem")
    p.add_argument("--steps", type=positive(int), default=150, help="training steps of each net")
    p.add_argument("--batch-size", type=positive(int), default=64, help="images per step")
    p.add_argument("--lr", type=positive(float), default=1e-3, help="learning rate (Adam)")
    p.add_argument("--out-dir", default="runs", help="where the two figures go")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    args = p.parse_args()
    minidl.manual_seed(args.seed)
    ds = data.MNISTSubset(True)
    x_all = ((ds.data.float() / 255 - 0.1307) / 0.3081).unsqueeze(1)
    loader = data.DataLoader(data.TensorDataset(x_all, ds.targets), args.batch_size, shuffle=True)
    norms, losses = {}, {}
    for residual in (False, True):
        name = "residual" if residual else "plain"
        minidl.manual_seed(args.seed)
        model = DeepNet(args.depth, residual)
        x, y = next(iter(loader))
        F.cross_entropy(model(x), y).backward()
        norms[name] = [float(np.linalg.norm(c.weight.grad.numpy())) for c in model.convs]
        model.zero_grad()
        opt = optim.Adam(model.parameters(), lr=args.lr)
        losses[name], step = [], 0
        while step < args.steps:
            for x, y in loader:
                opt.zero_grad()
                loss = F.cross_entropy(model(x), y)
                loss.backward()
                opt.step()
                losses[name].append(loss.item())
                step += 1
                if step == args.steps:
                    break
        print(f"{name:8s} depth {args.depth}: gradient norm of layer 1 / layer {args.depth} at init = "
              f"{norms[name][0]:.2e} / {norms[name][-1]:.2e};  loss after {args.steps} steps "
              f"{np.mean(losses[name][-10:]):.3f}")
    os.makedirs(args.out_dir, exist_ok=True)
    a = plots.plot_lines({k: (range(1, len(v) + 1), v) for k, v in norms.items()},
                         os.path.join(args.out_dir, "vanishing_gradient_norms.png"), "layer (input side = 1)",
                         "weight gradient norm at init", f"{args.depth}-layer CNN: gradient norms", logy=True)
    b = plots.plot_lines(losses, os.path.join(args.out_dir, "vanishing_gradient_loss.png"), "step",
                         "training loss", f"{args.depth}-layer CNN: plain vs residual")
    print(f"wrote {a} and {b}")


if __name__ == "__main__":
    main()
