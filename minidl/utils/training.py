"""A plain training loop with tqdm progress bars (tqdm is imported lazily, on first use). The bars never touch the
loader or the random generators, so a run with bars and one without train on the same batches, bit for bit; lines
are printed with the bars cleared, so that a terminal's transcript reads cleanly.

In a distributed job (minidl.distributed) only rank 0 shows progress and logs; the training metrics are summed
over the ranks, and so are the test metrics when the test loader is sharded by a DistributedSampler."""
import time

import numpy as np

from .. import backend
from .. import distributed as dist
from ..autograd import no_grad
from .metrics import accuracy


class _NoBar:
    """What a switched-off bar is: every call does nothing."""

    def update(self, n=1):
        pass

    def set_postfix(self, **kwargs):
        pass

    def close(self):
        pass


def _bar(desc, total, enabled):
    """A progress bar advanced by hand (``update`` after each step), never wrapped around the loader: the loop
    alone calls ``iter(loader)``, and the count moves with the postfix. Plain ``tqdm`` (not tqdm.auto, whose
    asyncio bar calls ``iter()`` on what it wraps), on rank 0 only."""
    if not enabled or dist.rank() != 0:
        return _NoBar()
    from tqdm import tqdm
    return tqdm(desc=desc, total=total, leave=False, dynamic_ncols=True)


def _say(log, text, progress):
    """``log(text)`` with the progress bars cleared first and drawn again after (tqdm's external_write_mode, what
    tqdm.write does), so that a line never lands on a half-drawn bar."""
    if not progress or dist.rank() != 0:
        log(text)
        return
    from tqdm import tqdm
    with tqdm.external_write_mode():
        log(text)


def train_one_epoch(model, loader, optimizer, loss_fn, scheduler=None, progress=True, desc="train", monitor=None):
    """One pass over ``loader``; returns mean loss, accuracy and seconds. ``scheduler`` steps per batch;
    ``monitor`` (a :class:`minidl.utils.Monitor`) records each step's activations and gradients; ``progress``
    shows a bar (count, running loss and accuracy) while it runs, gone when it returns."""
    model.train()
    total_loss = correct = seen = 0
    t0 = time.perf_counter()
    bar = _bar(desc, len(loader), progress)
    try:
        for x, y in loader:
            optimizer.zero_grad()
            out = model(x)
            loss = loss_fn(out, y)
            loss.backward()
            if monitor is not None:
                monitor.step()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            n = y.shape[0]
            total_loss += loss.item() * n
            correct += accuracy(out.detach(), y) * n
            seen += n
            bar.set_postfix(loss=f"{total_loss / seen:.4f}", acc=f"{correct / seen:.4f}", refresh=False)
            bar.update(1)  # the count and the postfix are drawn together
    finally:
        bar.close()
    if dist.world_size() > 1:  # over the global batch: every rank's share
        sums = np.array([total_loss, correct, seen], dtype=np.float64)
        dist.all_reduce(sums)
        total_loss, correct, seen = sums
    return {"loss": total_loss / max(seen, 1), "acc": correct / max(seen, 1), "seconds": time.perf_counter() - t0}


@no_grad()
def evaluate(model, loader, loss_fn=None, progress=False, desc="test"):
    """Mean loss, accuracy, and all predictions and targets (NumPy) over ``loader`` in eval mode."""
    model.eval()
    total_loss = seen = 0
    preds, targets = [], []
    bar = _bar(desc, len(loader), progress)
    try:
        for x, y in loader:
            out = model(x)
            if loss_fn is not None:
                total_loss += loss_fn(out, y).item() * y.shape[0]
            seen += y.shape[0]
            preds.append(backend.to_device(out._data.argmax(axis=1), "cpu"))
            targets.append(backend.to_device(y._data, "cpu"))
            bar.update(1)
    finally:
        bar.close()
    preds, targets = np.concatenate(preds), np.concatenate(targets)
    if dist.world_size() > 1 and hasattr(getattr(loader, "sampler", None), "num_replicas"):
        parts = [None] * dist.world_size()  # each rank saw its shard: put the shards together
        dist.all_gather_object(parts, (total_loss, seen, preds, targets))
        total_loss, seen = sum(p[0] for p in parts), sum(p[1] for p in parts)
        preds, targets = np.concatenate([p[2] for p in parts]), np.concatenate([p[3] for p in parts])
    return {"loss": total_loss / max(seen, 1), "acc": float((preds == targets).mean()), "preds": preds,
            "targets": targets}


def fit(model, train_loader, test_loader, optimizer, loss_fn, epochs, scheduler=None, progress=True,
        per_batch_scheduler=False, log=print, start_epoch=0, history=None, on_epoch_end=None, monitor=None):
    """Train for ``epochs``, evaluating after each; returns the history of losses, accuracies and times
    ('seconds': training time per epoch, 'test_seconds': evaluation time per epoch).

    To resume, pass ``start_epoch`` (epochs already done) and the ``history`` they returned, after restoring the
    model, optimizer and scheduler (:func:`minidl.utils.load_checkpoint`). ``on_epoch_end(epoch, history)`` runs
    after each epoch (``epoch`` counts from 1): where a checkpoint is written. ``monitor`` (a
    :class:`minidl.utils.Monitor` of the model) records every training step's activation and gradient
    statistics, and rewrites its plot after every epoch when it was given a ``path``."""
    history = {k: list(v) for k, v in (history or {}).items()}
    for k in ("train_loss", "test_loss", "train_acc", "test_acc", "seconds", "test_seconds"):
        history.setdefault(k, [])
    epochs_bar = _bar("epochs", epochs - start_epoch, progress)
    try:
        for epoch in range(start_epoch, epochs):
            if hasattr(getattr(train_loader, "sampler", None), "set_epoch"):
                train_loader.sampler.set_epoch(epoch)  # a DistributedSampler reshuffles, the same on every rank
            tr = train_one_epoch(model, train_loader, optimizer, loss_fn,
                                 scheduler if per_batch_scheduler else None, progress,
                                 desc=f"epoch {epoch + 1}/{epochs}", monitor=monitor)
            if scheduler is not None and not per_batch_scheduler:
                scheduler.step()
            t0 = time.perf_counter()
            te = evaluate(model, test_loader, loss_fn)
            test_seconds = time.perf_counter() - t0
            for k, v in (("train_loss", tr["loss"]), ("train_acc", tr["acc"]), ("test_loss", te["loss"]),
                         ("test_acc", te["acc"]), ("seconds", tr["seconds"]), ("test_seconds", test_seconds)):
                history[k].append(v)
            if log and dist.rank() == 0:
                _say(log, f"epoch {epoch + 1:2d}/{epochs}  train loss {tr['loss']:.4f} acc {tr['acc']:.4f}  "
                     f"test loss {te['loss']:.4f} acc {te['acc']:.4f}  (train {tr['seconds']:.1f} s, test "
                     f"{test_seconds:.1f} s)", progress)
            if monitor is not None and monitor.path and dist.rank() == 0:
                monitor.plot(monitor.path, title=monitor.title)
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, history)
            epochs_bar.update(1)
    finally:
        epochs_bar.close()
    return history
