"""Fine-tuning: train LeNet-5 on Fashion-MNIST, save it, load it, freeze its body (the convolutions), give it a
new head (the fully connected classifier) and train that head on a few MNIST digits; next to the same net trained
from scratch on the same digits for the same epochs. Without Fashion-MNIST (Debian's dataset-fashion-mnist package,
or the IDX files in --data-dir) it pretrains on the bundled MNIST digits 0-4 and fine-tunes on the digits 5-9, and
says so.

    python examples/finetune.py                       # Fashion-MNIST from Debian's dataset-fashion-mnist package
    python examples/finetune.py --source-epochs 2 --epochs 2 --source-size 20000

It is what one does in PyTorch with a torchvision model:

    model = LeNet5(); model.load_state_dict(minidl.load("runs/lenet5_source.pt"))
    for p in model.parameters():
        p.requires_grad = False          # the body keeps its Fashion-MNIST features
    model.fc1, model.fc2, model.fc3 = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)  # a new head
    optimizer = optim.Adam(p for p in model.parameters() if p.requires_grad)
"""
import argparse
import os

from _common import as_arrays, base_parser, load_datasets, parse, positive, train_epochs as train

import minidl
import numpy as np
from minidl import data, nn, utils
from minidl.models import LeNet5


def _loaders(args, train_set, test_set, size=None):
    if size is not None and size < len(train_set):
        train_set = data.Subset(train_set, list(range(size)))
    return (data.DataLoader(train_set, args.batch_size, shuffle=True, device=args.device),
            data.DataLoader(test_set, 1000, device=args.device))


def _digits(dataset, lo, hi):
    """The images of a TensorDataset whose labels lie in [lo, hi]."""
    y = dataset.tensors[1].numpy()
    return data.Subset(dataset, np.flatnonzero((y >= lo) & (y <= hi)).tolist())


def source_and_target(args):
    """(source name, its loaders, target name, its loaders). Fashion-MNIST -> MNIST when Fashion-MNIST is there;
    else the bundled digits 0-4 -> digits 5-9 (said in the output), so that the example runs anywhere."""
    quiet = argparse.Namespace(**{**vars(args), "dataset": "mnist"})
    mnist_train, mnist_test = load_datasets(quiet)
    mnist_train, mnist_test = as_arrays(mnist_train), as_arrays(mnist_test)
    try:
        fashion = data.FashionMNIST(args.data_dir, train=True, transform=_TO_TENSOR)
        fashion_test = data.FashionMNIST(args.data_dir, train=False, transform=_TO_TENSOR)
    except (data.DatasetNotFoundError, ValueError) as exc:
        print(f"source: Fashion-MNIST is not available ({str(exc).splitlines()[0][:120]}); instead the net is "
              "pretrained on the bundled MNIST digits 0-4 and fine-tuned on the digits 5-9")
        return ("MNIST digits 0-4", _loaders(args, _digits(mnist_train, 0, 4), _digits(mnist_test, 0, 4),
                                             args.source_size),
                "MNIST digits 5-9", _loaders(args, _digits(mnist_train, 5, 9), _digits(mnist_test, 5, 9),
                                             args.target_size))
    print(f"source: Fashion-MNIST from {fashion.source}")
    return ("Fashion-MNIST", _loaders(args, as_arrays(fashion), as_arrays(fashion_test), args.source_size),
            "MNIST", _loaders(args, mnist_train, mnist_test, args.target_size))


_TO_TENSOR = minidl.data.transforms.Compose([minidl.data.transforms.ToTensor(),
                                             minidl.data.transforms.Normalize([0.1307], [0.3081])])


def main():
    p = base_parser(__doc__, dataset=False)  # --batch-size, --device, --data-dir, --out-dir, --seed, ...
    p.add_argument("--source-epochs", type=positive(int), default=4, help="epochs on the source images")
    p.add_argument("--source-size", type=positive(int), default=None,
                   help="source training images used (default: all; Fashion-MNIST has 60,000)")
    p.add_argument("--epochs", type=positive(int), default=5,
                   help="epochs on the target digits, for the new head and for the scratch net")
    p.add_argument("--head", choices=["fc1", "fc2", "fc3"], default="fc1",
                   help="the new head: the linear layers from this one on (fc3: the last layer alone)")
    p.add_argument("--target-size", type=positive(int), default=1000,
                   help="target training images used (few: where transfer helps)")
    p.add_argument("--lr", type=positive(float), default=1e-2, help="peak learning rate on the target (Adam, "
                                                                   "one-cycle)")
    p.add_argument("--source-lr", type=positive(float), default=3e-3, help="peak learning rate on the source")
    args = parse(p)
    minidl.manual_seed(args.seed)
    os.makedirs(args.out_dir, exist_ok=True)
    path = os.path.join(args.out_dir, "lenet5_source.pt")
    source, (src_train, src_test), target, (tgt_train, tgt_test) = source_and_target(args)

    # 1. the base model, trained on the source images and saved
    base = LeNet5().to(args.device)
    progress = not args.no_progress
    train(base, src_train, args.source_epochs, args.source_lr, progress, desc=f"base on {source}")
    print(f"base: LeNet-5 on {source} ({len(src_train.dataset)} images, {args.source_epochs} epochs): "
          f"test accuracy {100 * utils.evaluate(base, src_test)['acc']:.2f}%")
    minidl.save(base.state_dict(), path)

    # 2. loaded, body frozen, new head trained on the target digits
    model = LeNet5().to(args.device)
    model.load_state_dict(minidl.load(path))
    for param in model.parameters():
        param.requires_grad = False
    new = [("fc1", 400, 120), ("fc2", 120, 84), ("fc3", 84, 10)][int(args.head[-1]) - 1:]
    for name, cin, cout in new:
        setattr(model, name, nn.Linear(cin, cout).to(args.device))
    body = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()
            if not k.startswith(tuple(name + "." for name, _, _ in new))}
    n_trained = train(model, tgt_train, args.epochs, args.lr, progress, desc="new head")
    unchanged = all((v == model.state_dict()[k].detach().numpy()).all() for k, v in body.items())
    head = utils.evaluate(model, tgt_test)["acc"]
    head_names = "+".join(name for name, _, _ in new)
    print(f"fine-tuned: frozen {source} body + new head ({head_names}) on {target} ({len(tgt_train.dataset)} "
          f"images, {args.epochs} epochs, {n_trained} of {sum(p.numel() for p in model.parameters())} parameters "
          f"trained; body unchanged: {unchanged}): test accuracy {100 * head:.2f}%")

    # 3. the same net from scratch on the same digits, every parameter trained
    minidl.manual_seed(args.seed)
    scratch = LeNet5().to(args.device)
    train(scratch, tgt_train, args.epochs, args.lr, progress, desc="from scratch")
    print(f"from scratch: LeNet-5 on {target} ({len(tgt_train.dataset)} images, {args.epochs} epochs): test accuracy "
          f"{100 * utils.evaluate(scratch, tgt_test)['acc']:.2f}%")
    minidl.save(model.state_dict(), os.path.join(args.out_dir, "lenet5_finetuned.pt"))


if __name__ == "__main__":
    main()
