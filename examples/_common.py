"""Shared by the MNIST examples: command-line flags, finding the data, the training run and its outputs."""
import argparse
import os
import time

import minidl  # before NumPy, so that OpenBLAS's idle threads sleep (see minidl/__init__.py)
import numpy as np
from minidl import data, nn, optim, utils


def parser(description, epochs, lr, batch_size=128):
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--lr", type=float, default=lr, help="peak learning rate (Adam, one-cycle schedule)")
    p.add_argument("--device", default="cpu", help="'cpu' or 'cuda'")
    p.add_argument("--data-dir", default="data", help="folder with the IDX files (or where to download them)")
    p.add_argument("--dataset", choices=["mnist", "fashion-mnist"], default="mnist")
    p.add_argument("--out-dir", default="runs", help="where the PNG figures and the checkpoint go")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-download", action="store_true", help="never try the network")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def load_datasets(args):
    """Full MNIST / Fashion-MNIST when on disk or downloadable; otherwise, for MNIST, the bundled subset."""
    to_tensor = data.transforms.Compose([data.transforms.ToTensor(), data.transforms.Normalize([0.1307], [0.3081])])
    cls = data.MNIST if args.dataset == "mnist" else data.FashionMNIST
    try:
        train = cls(args.data_dir, train=True, transform=to_tensor, download=not args.no_download)
        test = cls(args.data_dir, train=False, transform=to_tensor, download=not args.no_download)
        print(f"data: full {cls.__name__} from {train.source} ({len(train)} train / {len(test)} test images)")
    except (data.DatasetNotFoundError, ValueError) as exc:
        if args.dataset != "mnist":
            raise SystemExit(f"{cls.__name__} is not available: {exc}\nInstall Debian's dataset-fashion-mnist "
                             "package or put the IDX files in --data-dir.") from None
        first = str(exc).splitlines()[0]
        train, test = data.MNISTSubset(True, to_tensor), data.MNISTSubset(False, to_tensor)
        print(f"data: full MNIST not available ({first}); using the bundled MNIST subset "
              f"({len(train)} train / {len(test)} test images)")
    return train, test


def as_arrays(dataset):
    """The whole dataset, transformed, as one TensorDataset (batches are then one fancy index each)."""
    xs = np.stack([dataset[i][0].numpy() for i in range(len(dataset))])
    return data.TensorDataset(minidl.tensor(xs), minidl.tensor(np.asarray(dataset.targets)))


def run(model_fn, args, name):
    minidl.manual_seed(args.seed)
    train, test = load_datasets(args)
    train_loader = data.DataLoader(as_arrays(train), args.batch_size, shuffle=True, device=args.device)
    test_loader = data.DataLoader(as_arrays(test), 1000, device=args.device)
    model = model_fn().to(args.device)
    utils.summary(model, (1, 1, 28, 28), device=args.device)
    optimizer = optim.Adam(model.parameters(), lr=args.lr)
    scheduler = optim.lr_scheduler.OneCycleLR(optimizer, args.lr, epochs=args.epochs, steps_per_epoch=len(train_loader))
    t0 = time.perf_counter()
    history = utils.fit(model, train_loader, test_loader, optimizer, nn.CrossEntropyLoss(), args.epochs, scheduler,
                        progress=not args.no_progress, per_batch_scheduler=True)
    elapsed = time.perf_counter() - t0
    result = utils.evaluate(model, test_loader)
    cm = utils.confusion_matrix(result["preds"], result["targets"], 10)
    prf = utils.precision_recall_f1(cm)
    os.makedirs(args.out_dir, exist_ok=True)
    stem = os.path.join(args.out_dir, f"{name}_{args.dataset}")
    utils.plots.plot_curves({k: v for k, v in history.items() if k != "seconds"}, stem + "_curves.png",
                            title=f"{name} on {args.dataset}")
    utils.plots.plot_confusion_matrix(cm, stem + "_confusion.png", train.classes)
    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    utils.plots.plot_filters(first_conv.weight, stem + "_filters.png")
    utils.plots.plot_feature_maps(model, first_conv, test[0][0].to(args.device), stem + "_features.png")
    utils.save_checkpoint(stem + ".ckpt.npz", model, optimizer, scheduler, epoch=args.epochs,
                          test_acc=result["acc"])
    print(f"test accuracy: {100 * result['acc']:.2f}%  (macro F1 {prf['macro_f1']:.4f}; "
          f"{elapsed:.1f} s for {args.epochs} epochs)")
    print(f"wrote {stem}_curves.png, _confusion.png, _filters.png, _features.png and {stem}.ckpt.npz")
    return result["acc"], elapsed
