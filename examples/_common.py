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
    p.add_argument("--distributed", action="store_true",
                   help="data-parallel over the processes of an MPI job: mpiexec -n 2 python %(prog)s --distributed "
                        "(--batch-size stays the global batch, split across the ranks)")
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


def train_epochs(model, loader, epochs, lr):
    """Adam with a one-cycle schedule on the parameters that require grad, no evaluation (the examples that
    train several nets); returns how many parameters it trained."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = optim.Adam(params, lr=lr)
    sched = optim.lr_scheduler.OneCycleLR(opt, lr, epochs=epochs, steps_per_epoch=len(loader))
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(epochs):
        model.train()
        for x, y in loader:
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()
            sched.step()
    return sum(p.numel() for p in params)


def _quiet(fn, *args):
    import contextlib
    import io
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)


def as_arrays(dataset):
    """The whole dataset, transformed, as one TensorDataset (batches are then one fancy index each)."""
    xs = np.stack([dataset[i][0].numpy() for i in range(len(dataset))])
    return data.TensorDataset(minidl.tensor(xs), minidl.tensor(np.asarray(dataset.targets)))


def run(model_fn, args, name):
    from minidl import distributed as dist
    if args.distributed:
        dist.init_process_group("mpi")
    rank, world = dist.rank(), dist.world_size()
    say = print if rank == 0 else (lambda *a, **k: None)
    minidl.manual_seed(args.seed)
    train, test = load_datasets(args) if rank == 0 else _quiet(load_datasets, args)
    train_set, test_set = as_arrays(train), as_arrays(test)
    if world > 1:  # each rank trains on its shard of every global batch and tests on its shard of the test set
        if args.batch_size % world:
            raise SystemExit(f"--batch-size {args.batch_size} must be divisible by the {world} processes")
        train_loader = data.DataLoader(train_set, args.batch_size // world, sampler=data.DistributedSampler(
            train_set, seed=args.seed), device=args.device)
        test_loader = data.DataLoader(test_set, 1000 // world, sampler=data.DistributedSampler(
            test_set, shuffle=False), device=args.device)
    else:
        train_loader = data.DataLoader(train_set, args.batch_size, shuffle=True, device=args.device)
        test_loader = data.DataLoader(test_set, 1000, device=args.device)
    model = model_fn().to(args.device)
    if rank == 0:
        utils.summary(model, (1, 1, 28, 28), device=args.device)
    if world > 1:
        model = nn.parallel.DistributedDataParallel(model)
        say(f"distributed: {world} processes, {args.batch_size // world} images each per step")
    optimizer = optim.Adam(model.parameters(), lr=args.lr)
    scheduler = optim.lr_scheduler.OneCycleLR(optimizer, args.lr, epochs=args.epochs, steps_per_epoch=len(train_loader))
    t0 = time.perf_counter()
    history = utils.fit(model, train_loader, test_loader, optimizer, nn.CrossEntropyLoss(), args.epochs, scheduler,
                        progress=not args.no_progress, per_batch_scheduler=True)
    elapsed = time.perf_counter() - t0
    result = utils.evaluate(model, test_loader)
    utils.save_checkpoint(os.path.join(args.out_dir, f"{name}_{args.dataset}.ckpt.npz"), model, optimizer,
                          scheduler, epoch=args.epochs, test_acc=result["acc"])  # rank 0 writes; all wait
    if rank != 0:
        return result["acc"], elapsed
    model = model.module if world > 1 else model
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
    print(f"test accuracy: {100 * result['acc']:.2f}%  (macro F1 {prf['macro_f1']:.4f}; "
          f"{elapsed:.1f} s for {args.epochs} epochs)")
    print(f"wrote {stem}_curves.png, _confusion.png, _filters.png, _features.png and {stem}.ckpt.npz")
    return result["acc"], elapsed
