"""DataLoader: batches, shuffling with a seeded generator or a sampler, drop_last, collate_fn, and worker
processes that load batches in parallel (num_workers)."""
import multiprocessing
import numbers
import os
import queue
import time
import warnings
import weakref

import numpy as np

from .. import backend
from ..autograd.tensor import Tensor
from . import worker as _worker


def default_collate(batch):
    """Stack a list of samples: tensors/arrays into one tensor, numbers into a tensor, tuples field by field."""
    first = batch[0]
    if isinstance(first, Tensor):
        xp = backend.get_array_module(first._data)
        return Tensor._make(xp.stack([b._data for b in batch]))
    if backend.is_device_array(first):
        return Tensor._make(backend.get_array_module(first).stack(batch))
    if isinstance(first, (bool, np.bool_)):
        return Tensor._make(np.asarray(batch, dtype=np.bool_))
    if isinstance(first, numbers.Integral):
        return Tensor._make(np.asarray(batch, dtype=np.int64))
    if isinstance(first, numbers.Real):
        return Tensor._make(np.asarray(batch, dtype=backend.default_dtype()))
    if isinstance(first, dict):
        return {k: default_collate([b[k] for b in batch]) for k in first}
    if isinstance(first, (tuple, list)):
        if any(len(b) != len(first) for b in batch):
            raise ValueError("default_collate: samples in a batch have different numbers of fields")
        return type(first)(default_collate(list(f)) for f in zip(*batch)) if isinstance(first, tuple) else \
            [default_collate(list(f)) for f in zip(*batch)]
    raise TypeError(f"default_collate: cannot batch samples of type {type(first).__name__}")


def _batch_as_is(batch):
    """Collate for datasets whose ``__getitems__`` already returns a batch."""
    return tuple(b if isinstance(b, Tensor) else Tensor._make(b) for b in batch)


class _Fetch:
    """One batch from a list of indices: the dataset's ``__getitems__`` when it has one (and no collate_fn is
    given), else the samples one by one, collated. A plain object, so that it pickles into spawned workers."""

    def __init__(self, dataset, collate_fn):
        self.dataset, self.collate_fn = dataset, collate_fn

    def __call__(self, idx):
        if hasattr(self.dataset, "__getitems__") and self.collate_fn is None:
            return _batch_as_is(self.dataset.__getitems__(idx))
        return (self.collate_fn or default_collate)([self.dataset[int(i)] for i in idx])


class DataLoader:
    """Iterate over a dataset in batches, as torch.utils.data.DataLoader.

    Args:
        dataset: a Dataset (a ``__getitems__(indices)`` method, as TensorDataset has, fetches a whole
            batch at once).
        batch_size, shuffle, drop_last: as torch.
        sampler: an iterable of indices (with ``__len__``), e.g. DistributedSampler; excludes ``shuffle``.
        num_workers: 0 loads in the main process; N > 0 starts N worker processes, each loading whole batches
            (batch i goes to worker i mod N), returned in order. The dataset and collate_fn must then be
            picklable where the start method is 'spawn' (with 'fork', Linux's default, anything goes).
        collate_fn: turns a list of samples into a batch (default: stack into tensors).
        pin_memory: copy batches into page-locked host memory (CuPy), which speeds their copy to the GPU;
            without a GPU it does nothing (torch warns the same way).
        timeout: seconds to wait for a worker's batch before raising (0: no limit).
        worker_init_fn: called as ``worker_init_fn(worker_id)`` in each worker after seeding.
        multiprocessing_context: a start method name ('fork', 'spawn', 'forkserver') or context.
        generator: a minidl.Generator (or a numpy.random.Generator) for shuffling and the workers' base seed;
            default: minidl's seeded CPU generator, so ``minidl.manual_seed`` makes the order and the workers'
            seeds reproducible.
        prefetch_factor: batches loaded ahead per worker (default 2).
        persistent_workers: keep the workers between epochs (seeded once, as in torch).
        device: where batches go ('cuda' moves each batch once, as it is made).
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, sampler=None, batch_sampler=None, num_workers=0,
                 collate_fn=None, pin_memory=False, drop_last=False, timeout=0, worker_init_fn=None,
                 multiprocessing_context=None, generator=None, *, prefetch_factor=None, persistent_workers=False,
                 device=None):
        if not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be a positive int, got {batch_size!r}")
        if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
            raise TypeError(f"DataLoader: dataset must have __len__ and __getitem__, got {type(dataset).__name__}")
        if batch_sampler is not None:
            raise ValueError("DataLoader: batch_sampler is not supported; pass a sampler and batch_size")
        if sampler is not None and shuffle:
            raise ValueError("DataLoader: sampler option is mutually exclusive with shuffle")
        if isinstance(num_workers, bool) or not isinstance(num_workers, numbers.Integral) or num_workers < 0:
            raise ValueError(f"DataLoader: num_workers option should be a non-negative int, got {num_workers!r}")
        if num_workers == 0 and prefetch_factor is not None:
            raise ValueError("DataLoader: prefetch_factor option could only be specified in multiprocessing; "
                             "let num_workers > 0 to enable multiprocessing")
        if prefetch_factor is not None and (not isinstance(prefetch_factor, numbers.Integral) or prefetch_factor < 1):
            raise ValueError(f"DataLoader: prefetch_factor must be a positive int, got {prefetch_factor!r}")
        if persistent_workers and num_workers == 0:
            raise ValueError("DataLoader: persistent_workers option needs num_workers > 0")
        if not isinstance(timeout, numbers.Real) or timeout < 0:
            raise ValueError(f"DataLoader: timeout option should be non-negative, got {timeout!r}")
        self.dataset, self.batch_size, self.shuffle, self.drop_last = dataset, int(batch_size), shuffle, drop_last
        self.sampler, self.collate_fn, self.generator = sampler, collate_fn, generator
        self.num_workers, self.timeout, self.worker_init_fn = int(num_workers), float(timeout), worker_init_fn
        self.prefetch_factor = 2 if prefetch_factor is None and num_workers else prefetch_factor
        self.persistent_workers, self.pin_memory = persistent_workers, bool(pin_memory)
        if isinstance(multiprocessing_context, str):
            multiprocessing_context = multiprocessing.get_context(multiprocessing_context)
        self.multiprocessing_context = multiprocessing_context
        self.device = None if device is None else backend.Device(device)
        self._pool = None
        self._epoch = 0
        if self.pin_memory and not _cuda_available():
            warnings.warn("DataLoader: pin_memory=True, but no GPU is found: pinned memory is not used",
                          UserWarning, stacklevel=2)

    def __len__(self):
        n = len(self.sampler) if self.sampler is not None else len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _order(self):
        if self.sampler is not None:
            return np.fromiter((int(i) for i in self.sampler), dtype=np.int64)
        n = len(self.dataset)
        if not self.shuffle:
            return np.arange(n)
        return self._generator().permutation(n)

    def _generator(self):
        return backend.draw_from(self.generator, "cpu", "DataLoader")

    def _batches(self):
        order = self._order()
        out = [order[s:s + self.batch_size] for s in range(0, len(order), self.batch_size)]
        if out and self.drop_last and len(out[-1]) < self.batch_size:
            out.pop()
        return out

    def _finish(self, batch):
        if self.pin_memory and _cuda_available():
            batch = _pin(batch)
        if self.device is None:
            return batch
        return _map_tensors(batch, lambda t: t.to(self.device))

    def __iter__(self):
        if self.num_workers == 0:
            fetch = _Fetch(self.dataset, self.collate_fn)
            return (self._finish(fetch(idx)) for idx in self._batches())
        return self._iter_workers()

    def _iter_workers(self):
        batches = self._batches()
        pool = self._pool
        if pool is None or not pool.alive():
            seed = int(self._generator().integers(2 ** 63 - 1))
            pool = _WorkerPool(self, seed)
            if self.persistent_workers:
                self._pool = pool
        self._epoch += 1
        epoch, sent, done, ready = self._epoch, 0, 0, {}
        ahead = self.prefetch_factor * self.num_workers
        try:
            while done < len(batches):
                while sent < len(batches) and sent - done < ahead:
                    pool.send(sent % self.num_workers, (epoch, sent, batches[sent]))
                    sent += 1
                while done not in ready:
                    got_epoch, number, result = pool.receive(self.timeout)
                    if got_epoch == epoch:  # results of an abandoned earlier epoch are dropped
                        ready[number] = result
                result = ready.pop(done)
                done += 1
                if isinstance(result, _worker.WorkerError):
                    result.reraise()
                yield self._finish(_worker.from_transfer(result))
        finally:
            if not self.persistent_workers:
                pool.shutdown()

    def __del__(self):
        if getattr(self, "_pool", None) is not None:
            self._pool.shutdown()


class _WorkerPool:
    """The worker processes of one DataLoader (or of one epoch, without persistent_workers)."""

    def __init__(self, loader, seed):
        ctx = loader.multiprocessing_context or multiprocessing.get_context(
            "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
        self.results = ctx.Queue()
        self.queues, self.workers = [], []
        n = loader.num_workers
        fetch = _Fetch(loader.dataset, loader.collate_fn)
        for wid in range(n):
            q = ctx.Queue()
            w = ctx.Process(target=_worker.worker_loop, daemon=True,
                            args=(fetch, q, self.results, wid, n, seed + wid, loader.worker_init_fn,
                                  os.getpid()))
            w.start()
            self.queues.append(q)
            self.workers.append(w)
        self._finalizer = weakref.finalize(self, _stop, self.workers, self.queues, self.results)

    def alive(self):
        return self._finalizer.alive and all(w.is_alive() for w in self.workers)

    def send(self, wid, item):
        self.queues[wid].put(item)

    def receive(self, timeout):
        start = time.monotonic()
        while True:
            try:
                return self.results.get(timeout=min(1.0, timeout) if timeout else 1.0)
            except queue.Empty:
                pass
            dead = [w for w in self.workers if not w.is_alive()]
            if dead:
                self.shutdown()
                raise RuntimeError(f"DataLoader worker (pid {dead[0].pid}) exited unexpectedly with exit code "
                                   f"{dead[0].exitcode}" + (" (killed by signal "
                                                            f"{-dead[0].exitcode})" if (dead[0].exitcode or 0) < 0
                                                            else ""))
            if timeout and time.monotonic() - start > timeout:
                self.shutdown()
                raise RuntimeError(f"DataLoader timed out after {timeout} seconds waiting for a batch from its "
                                   "workers")

    def shutdown(self):
        self._finalizer()


def _stop(workers, queues, results):
    """Tell every worker to stop, wait a little, then terminate what is left; close the queues."""
    for q, w in zip(queues, workers):
        if w.is_alive():
            try:
                q.put(None)
            except (OSError, ValueError):
                pass
    deadline = time.monotonic() + 5.0
    for w in workers:
        w.join(max(0.0, deadline - time.monotonic()))
        if w.is_alive():
            w.terminate()
            w.join(1.0)
    for q in [*queues, results]:
        q.cancel_join_thread()  # never block interpreter exit on undelivered items
        q.close()


def _map_tensors(batch, fn):
    return _worker.map_structure(batch, fn, Tensor)


def _cuda_available():
    return backend.cuda_available()


def _pin(batch):
    """Host arrays copied into page-locked (pinned) memory, from which the copy to the GPU is faster."""
    import cupyx

    def pin(t):
        if backend.is_device_array(t._data):
            return t
        buf = cupyx.empty_pinned(t.shape, dtype=t.dtype)
        buf[...] = t._data
        return Tensor._make(buf)
    return _map_tensors(batch, pin)
