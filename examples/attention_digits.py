"""A tiny Vision Transformer on the bundled digits, and where it looks.

Each 28x28 digit is cut into 16 patches of 7x7 pixels; each patch becomes a vector (a linear layer), a learned
position is added, and a [class] vector is put in front. Two Transformer blocks (nn.MultiheadAttention: every
vector looks at every other one) mix them; the [class] vector's final value is read by a linear layer as the digit.

After training, the [class] vector's attention over the 16 patches, in the last block, is drawn over a few test
digits (attention.png in the run folder): the patches that decided the answer. About 20 s on 2 cores.

    python examples/attention_digits.py
    python examples/attention_digits.py --epochs 8 --dim 64
"""
import os
import time

from _common import base_parser, parse, positive, run_folder  # first: it imports minidl before NumPy

import minidl
import minidl.nn as nn
import minidl.nn.functional as F
import numpy as np
from minidl.data import MNISTSubset
from tqdm import tqdm

PATCH = 7  # 28 / 7 = 4 x 4 patches


class Block(nn.Module):
    """Pre-norm Transformer block: x + attention(norm(x)), then x + mlp(norm(x)). Keeps the last attention weights
    (batch, heads, tokens, tokens) when asked, for the picture."""

    def __init__(self, dim, heads):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.weights = None

    def forward(self, x, keep_weights=False):
        h = self.norm1(x)
        # need_weights=False takes the fused attention (F.scaled_dot_product_attention); the weights cost a softmax
        h, w = self.attn(h, h, h, need_weights=keep_weights, average_attn_weights=False)
        self.weights = None if w is None else w.detach()
        x = x + h
        return x + self.mlp(self.norm2(x))


class TinyViT(nn.Module):
    def __init__(self, dim=32, heads=4, depth=2, classes=10):
        super().__init__()
        n = (28 // PATCH) ** 2
        self.embed = nn.Linear(PATCH * PATCH, dim)
        self.cls = nn.Parameter(minidl.zeros(1, 1, dim))
        self.pos = nn.Parameter(minidl.randn(1, n + 1, dim) * 0.02)
        self.blocks = nn.ModuleList([Block(dim, heads) for _ in range(depth)])
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, classes)

    def forward(self, images, keep_weights=False):
        b = images.shape[0]                                                   # images (B, 28, 28)
        p = images.reshape(b, 4, PATCH, 4, PATCH).permute(0, 1, 3, 2, 4)       # (B, 4, 4, 7, 7)
        x = self.embed(p.reshape(b, 16, PATCH * PATCH))                        # (B, 16, dim)
        x = minidl.cat([self.cls.expand(b, -1, -1), x], dim=1) + self.pos      # (B, 17, dim)
        for block in self.blocks:
            x = block(x, keep_weights)
        return self.head(self.norm(x[:, 0]))                                  # the [class] token -> (B, 10)


def load(train):
    d = MNISTSubset(train=train)
    x = (d.data.numpy().astype(np.float32) / 255.0 - 0.1307) / 0.3081
    return minidl.tensor(x), d.targets


def accuracy(model, x, y, batch=500):
    model.eval()
    with minidl.no_grad():
        right = sum(int((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum()) for i in range(0, len(x), batch))
    model.train()
    return right / len(x)


def draw(model, x, y, path, n=8):
    """Each digit beside the [class] token's attention over its 16 patches (last block, mean over heads)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    model.eval()
    with minidl.no_grad():
        pred = model(x[:n], keep_weights=True).argmax(1).numpy()
    w = model.blocks[-1].weights.numpy()[:, :, 0, 1:].mean(1).reshape(n, 4, 4)  # (n, heads, 17, 17) -> (n, 4, 4)
    fig, axes = plt.subplots(2, n, figsize=(1.6 * n, 3.4))
    for i in range(n):
        axes[0, i].imshow(x[i].numpy(), cmap="gray")
        axes[0, i].set_title(f"{int(y[i])} -> {pred[i]}", fontsize=9)
        axes[1, i].imshow(x[i].numpy(), cmap="gray")
        axes[1, i].imshow(np.kron(w[i], np.ones((PATCH, PATCH))), cmap="magma", alpha=0.6)
        for a in axes[:, i]:
            a.axis("off")
    fig.suptitle("where the [class] token looks (last block, mean of the heads)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    p = base_parser(__doc__.splitlines()[0], batch_size=64, data=False, device=False)
    p.add_argument("--epochs", type=positive(int), default=6, help="passes over the 8,000 training digits")
    p.add_argument("--dim", type=positive(int), default=32, help="width of the token vectors (a multiple of 4)")
    p.add_argument("--lr", type=positive(float), default=2e-3, help="Adam's learning rate")
    args = parse(p, argv)
    minidl.manual_seed(args.seed)
    (xt, yt), (xs, ys) = load(True), load(False)
    model = TinyViT(dim=args.dim)
    opt = minidl.optim.Adam(model.parameters(), lr=args.lr)
    folder = run_folder(args.out_dir, "attention_digits")
    start, rng = time.perf_counter(), np.random.default_rng(args.seed)
    for epoch in range(1, args.epochs + 1):
        order, total = rng.permutation(len(xt)), 0.0
        for i in tqdm(range(0, len(order), args.batch_size), desc=f"epoch {epoch}", leave=False,
                      disable=args.no_progress):
            idx = minidl.tensor(order[i:i + args.batch_size])
            loss = F.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss) * len(idx)
        print(f"epoch {epoch}: loss {total / len(xt):.3f}, test accuracy {accuracy(model, xs, ys):.1%} "
              f"({time.perf_counter() - start:.0f} s)")
    draw(model, xs, ys, os.path.join(folder, "attention.png"))
    print(f"attention maps: {os.path.join(folder, 'attention.png')}")


if __name__ == "__main__":
    main()
