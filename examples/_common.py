"""Shared by the MNIST examples: command-line flags, finding the data, the training run and its outputs.

A run writes into a folder of its own, ``<out-dir>/<net>_<dataset>_<date-time>/``: ``checkpoint.npz`` after every
finished epoch (model, optimizer, schedule, random state, history and the run's flags), and at the end the
figures. Ctrl-C stops it with one line that names that checkpoint and the command that resumes it;
``--resume PATH`` continues the run with its own settings and ends with the weights an uninterrupted run gets.
"""
import argparse
import datetime
import os
import sys
import tempfile
import time

import minidl  # before NumPy, so that OpenBLAS's idle threads sleep (see minidl/__init__.py)
import numpy as np
from minidl import data, nn, optim, utils

GPU_INSTALL = minidl.backend.GPU_INSTALL  # the README's command, and minidl's own message
# the flags that define a run: --resume takes them from the checkpoint (device, data folder, progress may change)
RUN_FLAGS = ("epochs", "batch_size", "lr", "dataset", "seed", "train_size")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """--help shows every default and keeps the description's usage examples on their own lines (a flag whose
    default is None says its default in its help)."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message):  # one line, not the usage block and a traceback-like wall
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def positive(kind):
    def check(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value
    check.__name__ = f"positive {kind.__name__}"
    return check


def device_name(text):
    """'cpu', 'cuda' or 'cuda:N'; anything else is refused with the list."""
    name = text.strip().lower()
    if name == "cpu" or name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        return name
    raise argparse.ArgumentTypeError(f"unknown device {text!r}: expected one of cpu, cuda, cuda:N")


def check_device(p, name):
    """Refuse a GPU device that is not there, before any data is loaded."""
    if name.startswith("cuda") and not minidl.cuda.is_available():
        try:
            import cupy  # noqa: F401
            why = "CuPy is installed but finds no usable NVIDIA GPU"
        except ImportError:
            why = "CuPy is not installed"
        p.error(f"--device {name}: {why}; install the GPU extra with: {GPU_INSTALL} (or use --device cpu)")


# the training images each dataset offers: --train-size is checked against the largest before anything loads,
# and against the one found (the bundled subset when full MNIST is missing) before the images are converted
TRAIN_SIZES = {"mnist": ("MNIST", 60000), "fashion-mnist": ("Fashion-MNIST", 60000)}
DEFAULT_DATA_DIR = "data"


def base_parser(description, *, batch_size=128, out_dir="runs", data=True, dataset=True, device=True,
                progress=True):
    """The flags every example shares, spelt, checked and explained the same way: --batch-size, --device,
    --data-dir, --dataset, --no-download, --out-dir, --seed, --no-progress (a script leaves out those it has no
    use for). :func:`parse` checks them all before any data loads."""
    p = ArgumentParser(description=description, formatter_class=HelpFormatter)
    p.add_argument("--batch-size", type=positive(int), default=batch_size, help="images per training step")
    if device:
        p.add_argument("--device", type=device_name, default="cpu", help="cpu, cuda or cuda:N")
    if data:
        p.add_argument("--data-dir", default=None,
                       help=f"an existing folder with the IDX files (default: {DEFAULT_DATA_DIR}, where they are "
                            "downloaded to when missing)")
        if dataset:
            p.add_argument("--dataset", choices=["mnist", "fashion-mnist"], default="mnist", help="which images")
        p.add_argument("--no-download", action="store_true", help="never try the network")
    p.add_argument("--out-dir", default=out_dir, help="where the outputs go (created if need be; it must be "
                                                       "writable)")
    p.add_argument("--seed", type=int, default=0, help="random seed (initial weights, shuffling)")
    if progress:
        p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def parser(description, epochs, lr, batch_size=128, distributed=True, progress=True, resume=True, monitor=True):
    """The flags of the examples that train one net: the shared ones and --epochs, --lr, --train-size; a script
    offers only those it uses."""
    p = base_parser(description, batch_size=batch_size, progress=progress)
    p.add_argument("--epochs", type=positive(int), default=epochs, help="training epochs")
    p.add_argument("--lr", type=positive(float), default=lr, help="peak learning rate (Adam, one-cycle schedule)")
    p.add_argument("--train-size", type=positive(int), default=None,
                   help="train on the first N training images only, for a quick run (default: all)")
    if resume:
        p.add_argument("--resume", metavar="PATH", default=None,
                       help="continue the run saved in this checkpoint.npz, with its own settings (default: a new run)")
    if monitor:
        p.add_argument("--monitor", action="store_true",
                       help="record every layer's activation and gradient statistics at each step (minidl.utils."
                            "Monitor) and write them as monitor.png in the run folder")
    p.add_argument("--compile", action="store_true",
                   help="minidl.compile the model: after a warm-up step and two recorded ones, each training and test "
                        "batch shape replays its forward and backward without building the graph op by op")
    if distributed:
        p.add_argument("--distributed", action="store_true",
                       help="data-parallel over the processes of an MPI job: mpiexec -n 2 python %(prog)s "
                            "--distributed (--batch-size stays the global batch, split across the ranks)")
    return p


def parse(p, argv=None):
    """Parse, then check what argparse cannot, before any data loads: a GPU that is not there, a data folder or
    a checkpoint that is not there, an output folder that cannot be written, more training images than the
    dataset has."""
    args = p.parse_args(argv)
    if getattr(args, "device", None) is not None:
        check_device(p, args.device)
    if getattr(args, "resume", None) and not os.path.isfile(args.resume):
        p.error(f"--resume {args.resume}: no such file")
    if hasattr(args, "data_dir"):
        if args.data_dir is None:
            args.data_dir = DEFAULT_DATA_DIR
        elif not os.path.isdir(args.data_dir):
            p.error(f"--data-dir {args.data_dir}: " + ("not a folder" if os.path.exists(args.data_dir) else
                                                        "no such folder (create it to download the files into it)"))
    if getattr(args, "train_size", None) is not None and not getattr(args, "resume", None):
        name, largest = TRAIN_SIZES[getattr(args, "dataset", "mnist")]
        if args.train_size > largest:
            p.error(f"--train-size {args.train_size}: {name} has {largest} training images")
    why = unwritable(args.out_dir)
    if why:
        p.error(f"--out-dir {args.out_dir}: {why}")
    args.parser = p  # the checks after the data is found (train_size_error) report through it
    return args


def unwritable(folder):
    """Why files cannot be written in ``folder`` (created if need be), or None: the nearest existing folder on its
    path must be a writable folder. Nothing is created."""
    path = os.path.abspath(folder)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    if not os.path.isdir(path):
        return f"{path} is a file, not a folder"
    if not os.access(path, os.W_OK | os.X_OK):
        return f"{path} is not writable"
    try:
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        return f"cannot write in {path} ({exc.strerror or exc})"
    return None


def train_size_error(args, train, name):
    """The one-line error for a --train-size larger than the training set found (None when it fits)."""
    size = getattr(args, "train_size", None)
    if size is not None and size > len(train):
        return f"--train-size {size}: {name} has {len(train)} training images"
    return None


def load_datasets(args):
    """Full MNIST / Fashion-MNIST when on disk or downloadable; otherwise, for MNIST, the bundled subset. A
    --train-size larger than the training set found is refused here, before the images are converted."""
    to_tensor = data.transforms.Compose([data.transforms.ToTensor(), data.transforms.Normalize([0.1307], [0.3081])])
    cls = data.MNIST if args.dataset == "mnist" else data.FashionMNIST
    root = args.data_dir or DEFAULT_DATA_DIR
    try:
        train = cls(root, train=True, transform=to_tensor, download=not args.no_download)
        test = cls(root, train=False, transform=to_tensor, download=not args.no_download)
        name = f"full {cls.__name__}"
        said = f"data: {name} from {train.source} ({len(train)} train / {len(test)} test images)"
    except (data.DatasetNotFoundError, ValueError) as exc:
        # the first line only (the rest repeats it, mirror by mirror), without the class name and the hint for
        # code (download=True) that does not apply to a command line
        first = str(exc).splitlines()[0].removeprefix(f"{cls.__name__}: ").replace(
            "; pass download=True to fetch it", "")
        if args.dataset != "mnist":  # the first line only: the rest repeats it (the mirrors tried)
            raise SystemExit(f"{cls.__name__} is not available: {first}\nInstall Debian's dataset-fashion-mnist "
                             "package or put the IDX files in --data-dir.") from None
        train, test = data.MNISTSubset(True, to_tensor), data.MNISTSubset(False, to_tensor)
        said = (f"data: full MNIST not available ({first}); using the bundled MNIST subset ({len(train)} train / "
                f"{len(test)} test images)")
        name = "the bundled MNIST subset (full MNIST was not found)"
    error = train_size_error(args, train, name)
    if error:
        parser = getattr(args, "parser", None)
        if parser is None:
            raise SystemExit(error)
        parser.error(error)
    print(said)
    return train, test


def train_epochs(model, loader, epochs, lr, progress=True, desc="train"):
    """Adam with a one-cycle schedule on the parameters that require grad, no evaluation (the examples that
    train several nets), with a progress bar over all its steps unless ``progress`` is False; returns how many
    parameters it trained."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = optim.Adam(params, lr=lr)
    sched = optim.lr_scheduler.OneCycleLR(opt, lr, epochs=epochs, steps_per_epoch=len(loader))
    loss_fn = nn.CrossEntropyLoss()
    bar = progress_bar(desc, epochs * len(loader), progress)
    try:
        for _ in range(epochs):
            model.train()
            for x, y in loader:
                opt.zero_grad()
                loss = loss_fn(model(x), y)
                loss.backward()
                opt.step()
                sched.step()
                bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
                bar.update(1)
    finally:
        bar.close()
    return sum(p.numel() for p in params)


def progress_bar(desc, total, enabled):
    """A tqdm bar advanced by hand (``update(1)`` after a step, the postfix set just before), gone when closed;
    a bar that does nothing when not ``enabled``. Plain tqdm, never wrapped around a loader."""
    from tqdm import tqdm
    return tqdm(desc=desc, total=total, leave=False, dynamic_ncols=True, disable=not enabled)


def _quiet(fn, *args):
    import contextlib
    import io
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)


def as_arrays(dataset, size=None):
    """The whole dataset (or its first ``size`` items), transformed, as one TensorDataset (batches are then one
    fancy index each)."""
    n = len(dataset) if size is None else min(size, len(dataset))
    xs = np.stack([dataset[i][0].numpy() for i in range(n)])
    return data.TensorDataset(minidl.tensor(xs), minidl.tensor(np.asarray(dataset.targets)[:n]))


def run_folder(out_dir, stem):
    """A new folder ``<out_dir>/<stem>_<date-time>`` (a suffix when two runs start in the same second)."""
    base = os.path.join(out_dir, f"{stem}_{datetime.datetime.now():%Y%m%d-%H%M%S}")
    path, k = base, 1
    while True:
        try:
            os.makedirs(path)
            return path
        except FileExistsError:
            k += 1
            path = f"{base}-{k}"


def _resume_command(path):
    script = os.path.relpath(sys.argv[0]) if sys.argv and sys.argv[0] else "examples/mnist_lenet.py"
    script = os.path.abspath(script) if script.startswith("..") else script
    return f"python {script} --resume {path}"


def run(model_fn, args, name):
    """Train ``model_fn()`` as the flags say; returns (test accuracy, training seconds). Ctrl-C ends it with one
    line (exit status 130), naming the last finished epoch's checkpoint and how to resume."""
    from minidl import distributed as dist
    if args.distributed:
        dist.init_process_group("mpi")
    rank, world = dist.rank(), dist.world_size()
    say = print if rank == 0 else (lambda *a, **k: None)
    resumed = None
    if args.resume:
        resumed = utils.load_checkpoint(args.resume)
        for k, v in resumed["extra"]["args"].items():
            setattr(args, k, v)
        folder = os.path.dirname(os.path.abspath(args.resume))
        ckpt = args.resume
    minidl.manual_seed(args.seed)
    train, test = load_datasets(args) if rank == 0 else _quiet(load_datasets, args)
    train_set, test_set = as_arrays(train, args.train_size), as_arrays(test)
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
    net = model = model_fn().to(args.device)  # net: the plain model (figures, monitor)
    if rank == 0 and resumed is None:
        utils.summary(model, (1, 1, 28, 28), device=args.device)
    model = _wrapped(model, args, world, say)
    optimizer = optim.Adam(model.parameters(), lr=args.lr)
    scheduler = optim.lr_scheduler.OneCycleLR(optimizer, args.lr, epochs=args.epochs, steps_per_epoch=len(train_loader))
    start, history = 0, None
    if resumed is not None:
        state = utils.load_checkpoint(args.resume, model, optimizer, scheduler)
        start, history = state["epoch"], state["extra"]["history"]
        minidl.set_rng_state(state["extra"]["rng"])  # the shuffling goes on as if never stopped
        say(f"resuming {folder} after epoch {start}/{args.epochs}")
    else:
        box = [run_folder(args.out_dir, f"{name}_{args.dataset}") if rank == 0 else None]
        if world > 1:
            dist.broadcast_object_list(box)  # rank 0 names the folder
        folder = box[0]
        ckpt = os.path.join(folder, "checkpoint.npz")
    done = [start]

    def save(epoch, hist, **extra):
        utils.save_checkpoint(ckpt, model, optimizer, scheduler, epoch=epoch, history=hist,
                              rng=minidl.get_rng_state().numpy(), args={k: getattr(args, k) for k in RUN_FLAGS},
                              **extra)
        done[0] = epoch

    monitor = None
    if getattr(args, "monitor", False) and rank == 0:
        # each layer's input: with functional activations (F.relu) that is the previous layer's activation
        monitor = utils.Monitor(net, inputs=True,
                                path=os.path.join(folder, "monitor.png"), title=name)  # fit redraws it each epoch
    t0 = time.perf_counter()
    try:
        history = utils.fit(model, train_loader, test_loader, optimizer, nn.CrossEntropyLoss(), args.epochs,
                            scheduler, progress=not getattr(args, "no_progress", False), per_batch_scheduler=True,
                            start_epoch=start, history=history, on_epoch_end=save, monitor=monitor)
    except KeyboardInterrupt:
        if rank == 0:
            sys.stderr.flush()
            print(f"\ninterrupted in epoch {done[0] + 1}/{args.epochs}; " +
                  (f"epoch {done[0]} is saved in {ckpt}; resume with: {_resume_command(ckpt)}" if done[0]
                   else "no epoch had finished, so nothing was saved"), flush=True)
        raise SystemExit(130) from None
    elapsed = time.perf_counter() - t0
    result = utils.evaluate(model, test_loader)
    save(args.epochs, history, test_acc=result["acc"])  # the last epoch's checkpoint, with its test accuracy
    if rank != 0:
        return result["acc"], elapsed
    written, prf = _figures(net, history, result, train, test, monitor, folder, name, args)
    train_s = sum(history["seconds"])
    print(f"test accuracy: {100 * result['acc']:.2f}%  (macro F1 {prf['macro_f1']:.4f}; training {train_s:.1f} s "
          f"for {args.epochs} epochs, evaluation {sum(history['test_seconds']):.1f} s)")
    print(f"wrote {folder}: {written}")
    return result["acc"], elapsed


def _wrapped(model, args, world, say):
    """The model as it trains: compiled with --compile (checkpoints stay the plain model's: utils.save_checkpoint
    unwraps it), then data-parallel in an MPI job of several processes."""
    if getattr(args, "compile", False):
        model = minidl.compile(model)
    if world > 1:
        model = nn.parallel.DistributedDataParallel(model)
        say(f"distributed: {world} processes, {args.batch_size // world} images each per step")
    return model


def _figures(model, history, result, train, test, monitor, folder, name, args):
    """The run's figures in its folder; returns what was written (for the last line) and the per-class scores."""
    cm = utils.confusion_matrix(result["preds"], result["targets"], 10)
    stem = os.path.join(folder, "")
    utils.plots.plot_curves({k: v for k, v in history.items() if "seconds" not in k}, stem + "curves.png",
                            title=f"{name} on {args.dataset}")
    utils.plots.plot_confusion_matrix(cm, stem + "confusion.png", train.classes)
    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    utils.plots.plot_filters(first_conv.weight, stem + "filters.png")
    utils.plots.plot_feature_maps(model, first_conv, test[0][0].to(args.device), stem + "features.png")
    written = "checkpoint.npz, curves.png, confusion.png, filters.png, features.png"
    if monitor is not None:  # fit drew it after the last epoch
        monitor.remove()
        written += ", monitor.png"
    return written, utils.precision_recall_f1(cm)


def main(model_fn, name, description, epochs, lr):
    """The whole command line of an example that trains one net."""
    p = parser(description, epochs=epochs, lr=lr)
    args = parse(p)
    try:
        run(model_fn, args, name)
    except KeyboardInterrupt:  # before training started (loading data): nothing to save
        print("\ninterrupted before training started; nothing was saved", flush=True)
        raise SystemExit(130) from None
