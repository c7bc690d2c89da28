"""Fine-tuning: train LeNet-5 on Fashion-MNIST, save it, load it, freeze its body (the convolutions), give it a
new head (the fully connected classifier) and train that head on a few MNIST digits; next to the same net trained
from scratch on the same digits for the same epochs.

    python examples/finetune.py                       # Fashion-MNIST from Debian's dataset-fashion-mnist package
    python examples/finetune.py --source-epochs 2 --epochs 2 --source-size 20000

It is what one does in PyTorch with a torchvision model:

    model = LeNet5(); model.load_state_dict(minidl.load("lenet5_fashion.pt"))
    for p in model.parameters():
        p.requires_grad = False          # the body keeps its Fashion-MNIST features
    model.fc1, model.fc2, model.fc3 = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)  # a new head
    optimizer = optim.Adam(p for p in model.parameters() if p.requires_grad)
"""
import argparse
import os

from _common import as_arrays, load_datasets, train_epochs as train

import minidl
from minidl import data, nn, utils
from minidl.models import LeNet5


def loaders(args, dataset, size=None):
    ns = argparse.Namespace(**{**vars(args), "dataset": dataset})
    train_set, test_set = load_datasets(ns)
    train_arrays = as_arrays(train_set)
    if size is not None and size < len(train_arrays):
        train_arrays = data.Subset(train_arrays, list(range(size)))
    return (data.DataLoader(train_arrays, args.batch_size, shuffle=True, device=args.device),
            data.DataLoader(as_arrays(test_set), 1000, device=args.device))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source-epochs", type=int, default=4, help="epochs on Fashion-MNIST")
    p.add_argument("--source-size", type=int, default=None, help="Fashion-MNIST training images used (all: 60,000)")
    p.add_argument("--epochs", type=int, default=5, help="epochs on MNIST, for the new head and for the scratch net")
    p.add_argument("--head", choices=["fc1", "fc2", "fc3"], default="fc1",
                   help="the new head: the linear layers from this one on (fc3: the last layer alone)")
    p.add_argument("--target-size", type=int, default=1000, help="MNIST training images used (few: where transfer "
                                                                    "helps)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-2, help="peak learning rate on MNIST (Adam, one-cycle)")
    p.add_argument("--source-lr", type=float, default=3e-3, help="peak learning rate on Fashion-MNIST")
    p.add_argument("--device", default="cpu")
    p.add_argument("--data-dir", default="data")
    p.add_argument("--out-dir", default="runs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-download", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args()
    minidl.manual_seed(args.seed)
    os.makedirs(args.out_dir, exist_ok=True)
    path = os.path.join(args.out_dir, "lenet5_fashion.pt")

    # 1. the base model, trained on Fashion-MNIST and saved
    src_train, src_test = loaders(args, "fashion-mnist", args.source_size)
    base = LeNet5().to(args.device)
    train(base, src_train, args.source_epochs, args.source_lr)
    print(f"base: LeNet-5 on Fashion-MNIST ({len(src_train.dataset)} images, {args.source_epochs} epochs): "
          f"test accuracy {100 * utils.evaluate(base, src_test)['acc']:.2f}%")
    minidl.save(base.state_dict(), path)

    # 2. loaded, body frozen, new head trained on MNIST
    tgt_train, tgt_test = loaders(args, "mnist", args.target_size)
    model = LeNet5().to(args.device)
    model.load_state_dict(minidl.load(path))
    for param in model.parameters():
        param.requires_grad = False
    new = [("fc1", 400, 120), ("fc2", 120, 84), ("fc3", 84, 10)][int(args.head[-1]) - 1:]
    for name, cin, cout in new:
        setattr(model, name, nn.Linear(cin, cout).to(args.device))
    body = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()
            if not k.startswith(tuple(name + "." for name, _, _ in new))}
    n_trained = train(model, tgt_train, args.epochs, args.lr)
    unchanged = all((v == model.state_dict()[k].detach().numpy()).all() for k, v in body.items())
    head = utils.evaluate(model, tgt_test)["acc"]
    head_names = "+".join(name for name, _, _ in new)
    print(f"fine-tuned: frozen Fashion-MNIST body + new head ({head_names}) on MNIST ({len(tgt_train.dataset)} "
          f"images, {args.epochs} epochs, {n_trained} of {sum(p.numel() for p in model.parameters())} parameters "
          f"trained; body unchanged: {unchanged}): test accuracy {100 * head:.2f}%")

    # 3. the same net from scratch on the same digits, every parameter trained
    minidl.manual_seed(args.seed)
    scratch = LeNet5().to(args.device)
    train(scratch, tgt_train, args.epochs, args.lr)
    print(f"from scratch: LeNet-5 on MNIST ({len(tgt_train.dataset)} images, {args.epochs} epochs): test accuracy "
          f"{100 * utils.evaluate(scratch, tgt_test)['acc']:.2f}%")
    minidl.save(model.state_dict(), os.path.join(args.out_dir, "lenet5_fashion_to_mnist.pt"))


if __name__ == "__main__":
    main()
