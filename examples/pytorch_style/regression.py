"""Fitting a polynomial with one linear layer, the way PyTorch's first regression examples do it: random
polynomial, features x, x^2, x^3, x^4, a batch of fresh samples each step, plain SGD written by hand (no
optimizer), until the loss is under a threshold; then the learned and the true function side by side. Written as
a torch user types it, with minidl imported as torch: with `import torch` instead it runs under torch unchanged.

    python examples/pytorch_style/regression.py
    python examples/pytorch_style/regression.py --degree 3 --lr 0.05
"""
import argparse

import minidl as torch
import minidl.nn.functional as F


def make_features(x, degree):
    """A matrix with columns x, x^2, ..., x^degree: (N,) -> (N, degree)."""
    x = x.unsqueeze(1)
    return torch.cat([x ** i for i in range(1, degree + 1)], 1)


def poly_desc(w, b):
    """The polynomial as a string."""
    terms = " ".join(f"{c:+.2f} x^{i}" for i, c in enumerate(w.view(-1).tolist(), 1))
    return f"y = {terms} {b.item():+.2f}"


def get_batch(w_target, b_target, batch_size, degree):
    """A batch of (features, targets) of the target polynomial at random points."""
    x = torch.randn(batch_size)
    features = make_features(x, degree)
    return features, features @ w_target + b_target


def fit(model, w_target, b_target, degree, lr=0.1, batch_size=32, max_steps=10000, tol=1e-3, batches=None):
    """SGD by hand until the loss is under ``tol``: returns (loss, steps). ``batches`` (an iterator of (x, y)) replaces
    the random batches (tests feed both engines the same ones)."""
    for step in range(1, max_steps + 1):
        x, y = next(batches) if batches is not None else get_batch(w_target, b_target, batch_size, degree)
        model.zero_grad()
        loss = F.smooth_l1_loss(model(x), y)
        loss.backward()
        with torch.no_grad():
            for param in model.parameters():
                param.add_(-lr * param.grad)
        if loss < tol:
            return loss, step
    return loss, max_steps


def main(argv=None):
    parser = argparse.ArgumentParser(description="polynomial regression with one linear layer")
    parser.add_argument("--degree", type=int, default=4)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    w_target = torch.randn(args.degree, 1) * 5
    b_target = torch.randn(1) * 5
    model = torch.nn.Linear(args.degree, 1)
    loss, steps = fit(model, w_target, b_target, args.degree, args.lr)
    print(f"Loss: {loss:.6f} after {steps} batches")
    print(f"==> Learned function:\t{poly_desc(model.weight.view(-1), model.bias)}")
    print(f"==> Actual function:\t{poly_desc(w_target.view(-1), b_target)}")
    return loss.item(), steps


if __name__ == "__main__":
    main()
