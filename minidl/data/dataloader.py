"""DataLoader: batches from a sampler (shuffling with a seeded generator), drop_last, collate_fn (torch's
default_collate rules), and worker processes that load batches in parallel (num_workers)."""
import collections.abc
import copy
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
from ..backend.errors import RuntimeValueError
from . import worker as _worker
from .dataset import batch_fetcher
from .sampler import BatchSampler, RandomSampler, SequentialSampler, draw_seed


def _is_string_array(array):
    return array.dtype.kind in "SaUO"


def default_collate(batch):
    """Stack a list of samples into a batch, by torch's rules (torch.utils.data.default_collate):

    * Tensors and arrays (NumPy, CuPy) -> one tensor with a new first dimension (arrays of strings or objects
      are refused); NumPy scalars -> a tensor of their dtype; ``int`` -> int64, ``float`` -> float64,
      ``bool`` -> bool; ``str`` and ``bytes`` -> the list as it is.
    * A mapping -> the same mapping type, each key collated; a named tuple -> the same named tuple, field by
      field; a tuple -> a **list** of collated fields (as torch); a list (or other sequence) -> the same type.
    """
    first = batch[0]
    if isinstance(first, Tensor):
        return Tensor._make(backend.get_array_module(first._data).stack([b._data for b in batch]))
    if backend.is_device_array(first):
        if _is_string_array(first):
            raise TypeError(f"default_collate: batch must contain tensors, numpy arrays, numbers, dicts or lists; "
                            f"found {first.dtype}")
        return Tensor._make(backend.get_array_module(first).stack(batch))
    if isinstance(first, (np.bool_, np.number, np.object_)):
        return Tensor._make(np.asarray(batch))
    if isinstance(first, float):
        return Tensor._make(np.asarray(batch, dtype=np.float64))
    if isinstance(first, int):  # bool too: a bool tensor
        return Tensor._make(np.asarray(batch, dtype=np.bool_ if isinstance(first, bool) else np.int64))
    if isinstance(first, (str, bytes)):
        return batch
    if isinstance(first, collections.abc.Mapping):
        return _collate_mapping(first, batch)
    if isinstance(first, tuple) and hasattr(first, "_fields"):  # a named tuple
        return type(first)(*(default_collate(list(field)) for field in zip(*batch)))
    if isinstance(first, collections.abc.Sequence):
        return _collate_sequence(first, batch)
    raise TypeError(f"default_collate: batch must contain tensors, numpy arrays, numbers, dicts or lists; found "
                    f"{type(first)}")


def _collate_mapping(first, batch):
    collated = {key: default_collate([b[key] for b in batch]) for key in first}
    try:
        if isinstance(first, collections.abc.MutableMapping):
            clone = copy.copy(first)  # keeps the mapping's type and extra attributes
            clone.update(collated)
            return clone
        return type(first)(collated)
    except TypeError:  # a mapping type that cannot be copied or built from a dict
        return collated


def _collate_sequence(first, batch):
    if any(len(b) != len(first) for b in batch):
        raise RuntimeValueError(f"default_collate: each element in list of batch should be of equal size, got sizes "
                          f"{sorted({len(b) for b in batch})}")
    fields = [default_collate(list(field)) for field in zip(*batch)]
    if isinstance(first, tuple):
        return fields  # torch's rule: tuples become lists
    try:
        if isinstance(first, collections.abc.MutableSequence):
            clone = copy.copy(first)
            clone[:] = fields
            return clone
        return type(first)(fields)
    except TypeError:  # e.g. range: cannot be built from a list
        return fields


def default_convert(data):
    """What a DataLoader with ``batch_size=None`` makes of each sample, as torch.utils.data.default_convert: NumPy
    arrays and scalars become tensors (not arrays of strings or objects), inside mappings, named tuples and
    sequences too (a tuple becomes a list); anything else stays as it is."""
    if isinstance(data, Tensor):
        return data
    if backend.is_device_array(data):
        return data if _is_string_array(data) else Tensor._make(data)
    if isinstance(data, (np.bool_, np.number)):
        return Tensor._make(np.asarray(data))
    if isinstance(data, collections.abc.Mapping):
        return _convert_mapping(data)
    if isinstance(data, tuple) and hasattr(data, "_fields"):
        return type(data)(*(default_convert(d) for d in data))
    if isinstance(data, tuple):
        return [default_convert(d) for d in data]
    if isinstance(data, collections.abc.Sequence) and not isinstance(data, (str, bytes)):
        converted = [default_convert(d) for d in data]
        try:
            return type(data)(converted)
        except TypeError:
            return converted
    return data


def _convert_mapping(data):
    converted = {key: default_convert(data[key]) for key in data}
    try:
        if isinstance(data, collections.abc.MutableMapping):
            clone = copy.copy(data)
            clone.update(converted)
            return clone
        return type(data)(converted)
    except TypeError:
        return converted


class _Fetch:
    """One batch from what the index sampler yields: with automatic batching (a batch_size or a batch_sampler) a
    list of indices, fetched at once for a TensorDataset (and its Subsets) with the default collation, else by the
    dataset's ``__getitems__`` (torch's: a list of samples) or sample by sample, then collated; without it (batch
    size None) one index, converted. A plain object, so that it pickles into spawned workers."""

    def __init__(self, dataset, collate_fn, auto_collation):
        self.dataset, self.collate_fn, self.auto_collation = dataset, collate_fn, auto_collation

    def __call__(self, index):
        if not self.auto_collation:
            return (self.collate_fn or default_convert)(self.dataset[index])
        if self.collate_fn is None:
            fetch_batch = batch_fetcher(self.dataset)
            if fetch_batch is not None:
                return fetch_batch(index)
        if callable(getattr(self.dataset, "__getitems__", None)):
            samples = self.dataset.__getitems__(index)
        else:
            samples = [self.dataset[i] for i in index]
        return (self.collate_fn or default_collate)(samples)


class DataLoader:
    """Iterate over a dataset in batches, as torch.utils.data.DataLoader.

    Iterating is lazy, as torch's: ``iter(loader)`` draws nothing; the first ``next()`` draws the epoch's seed
    (one int64, which seeds the worker processes), then the sampler's order, as torch draws them (the same
    draws, in the same order, from the same generator). So a progress bar that calls ``iter(loader)`` before
    the loop does changes nothing, and the sampler's indices are taken as batches are made (a sampler of 10**10
    indices starts at once).

    Args:
        dataset: a map-style dataset (``__getitem__`` and ``__len__``); a ``__getitems__(indices)`` method returns
            the list of samples at once (torch's protocol). A TensorDataset's batches are one fancy index each.
        batch_size: samples per batch (default 1); None turns off automatic batching: each sample is yielded on
            its own, converted by ``default_convert``.
        shuffle: a new random order every epoch (a RandomSampler); excludes ``sampler``.
        sampler: an iterable of indices (a Sampler, e.g. RandomSampler or DistributedSampler, or a list).
        batch_sampler: an iterable of lists of indices; excludes batch_size, shuffle, sampler and drop_last.
        num_workers: 0 loads in the main process; N > 0 starts N worker processes, each loading whole batches
            (batch i goes to worker i mod N), returned in order. The dataset and collate_fn must then be
            picklable where the start method is 'spawn' (with 'fork', Linux's default, anything goes).
        collate_fn: turns a list of samples into a batch (default: :func:`default_collate`).
        pin_memory: copy batches into page-locked host memory (CuPy), which speeds their copy to the GPU;
            without a GPU it does nothing (torch warns the same way).
        drop_last: drop the last batch when it is smaller than batch_size.
        timeout: seconds to wait for a worker's batch before raising (0: no limit).
        worker_init_fn: called as ``worker_init_fn(worker_id)`` in each worker after seeding.
        multiprocessing_context: a start method name ('fork', 'spawn', 'forkserver') or context.
        generator: a minidl.Generator (or a numpy.random.Generator) for the RandomSampler of ``shuffle`` and the
            workers' base seed; default: minidl's global CPU generator, so ``minidl.manual_seed`` makes the order
            and the workers' seeds reproducible.
        prefetch_factor: batches loaded ahead per worker (default 2).
        persistent_workers: keep the workers between epochs (seeded once, as in torch).
        pin_memory_device, in_order: accepted as torch's (batches always come in order).
        device: where batches go ('cuda' moves each batch once, as it is made; minidl's own).
    """

    def __init__(self, dataset, batch_size=1, shuffle=None, sampler=None, batch_sampler=None, num_workers=0,
                 collate_fn=None, pin_memory=False, drop_last=False, timeout=0, worker_init_fn=None,
                 multiprocessing_context=None, generator=None, *, prefetch_factor=None, persistent_workers=False,
                 pin_memory_device="", in_order=True, device=None):
        _check_arguments(dataset, batch_size, num_workers, prefetch_factor, persistent_workers, timeout)
        shuffle = bool(shuffle)
        if sampler is not None and shuffle:
            raise ValueError("DataLoader: sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError("DataLoader: batch_sampler option is mutually exclusive with batch_size, shuffle, "
                                 "sampler, and drop_last")
            batch_size, drop_last = None, False
        elif batch_size is None and drop_last:
            raise ValueError("DataLoader: batch_size=None option disables auto-batching and is mutually exclusive "
                             "with drop_last")
        if sampler is None:
            sampler = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
        if batch_size is not None and batch_sampler is None:
            batch_sampler = BatchSampler(sampler, int(batch_size), bool(drop_last))
        self.dataset, self.batch_size, self.drop_last = dataset, batch_size, bool(drop_last)
        self.sampler, self.batch_sampler, self.collate_fn = sampler, batch_sampler, collate_fn
        self.generator = generator
        self.num_workers, self.timeout, self.worker_init_fn = int(num_workers), float(timeout), worker_init_fn
        self.prefetch_factor = 2 if prefetch_factor is None and num_workers else prefetch_factor
        self.persistent_workers, self.pin_memory = persistent_workers, bool(pin_memory)
        self.pin_memory_device, self.in_order = pin_memory_device, in_order
        if isinstance(multiprocessing_context, str):
            multiprocessing_context = multiprocessing.get_context(multiprocessing_context)
        self.multiprocessing_context = multiprocessing_context
        self.device = None if device is None else backend.Device(device)
        self._pool = None
        self._epoch = 0
        if self.pin_memory and not _cuda_available():
            warnings.warn("DataLoader: pin_memory=True, but no GPU is found: pinned memory is not used",
                          UserWarning, stacklevel=2)

    @property
    def _auto_collation(self):
        return self.batch_sampler is not None

    @property
    def _index_sampler(self):
        """What yields each batch's indices: the batch sampler, or without automatic batching the sampler."""
        return self.batch_sampler if self._auto_collation else self.sampler

    def __len__(self):
        return len(self._index_sampler)

    def __iter__(self):
        """An iterator over the batches; nothing is drawn or started before its first ``next()``."""
        return _DataLoaderIter(self)

    def _draw_base_seed(self):
        """The epoch's int64 seed (torch's ``_base_seed``), from ``generator`` or minidl's global generator."""
        return draw_seed(self.generator, "DataLoader")

    def _fetch(self):
        return _Fetch(self.dataset, self.collate_fn, self._auto_collation)

    def _finish(self, batch):
        if self.pin_memory and _cuda_available():
            batch = _pin(batch)
        if self.device is None:
            return batch
        return _map_tensors(batch, lambda t: t.to(self.device))

    def _single_process(self):
        """The batches of an epoch, loaded here (a generator: its body runs from the first next())."""
        self._draw_base_seed()  # unused without workers, but drawn as torch draws it: the same random stream
        fetch = self._fetch()
        for index in self._index_sampler:
            yield self._finish(fetch(index))

    def _multi_process(self):
        """The batches of an epoch, loaded by the worker processes (a generator, as ``_single_process``)."""
        pool = self._pool
        if pool is None or not pool.alive():  # persistent workers draw their seed once, as in torch
            pool = _WorkerPool(self, self._draw_base_seed())
            if self.persistent_workers:
                self._pool = pool
        self._epoch += 1
        try:
            yield from self._run_epoch(pool, self._epoch, iter(self._index_sampler))
        finally:
            if not self.persistent_workers:
                pool.shutdown()

    def _run_epoch(self, pool, epoch, indices):
        """Keep ``prefetch_factor`` batches per worker asked for, taking the sampler's indices as they are sent;
        yield the results in order."""
        sent, done, ready, exhausted = 0, 0, {}, False
        ahead = self.prefetch_factor * self.num_workers
        while True:
            while not exhausted and sent - done < ahead:
                index = next(indices, _END)
                if index is _END:
                    exhausted = True
                else:
                    pool.send(sent % self.num_workers, (epoch, sent, index))
                    sent += 1
            if done == sent:
                return
            while done not in ready:
                got_epoch, number, result = pool.receive(self.timeout)
                if got_epoch == epoch:  # results of an abandoned earlier epoch are dropped
                    ready[number] = result
            result = ready.pop(done)
            done += 1
            if isinstance(result, _worker.WorkerError):
                result.reraise()
            yield self._finish(_worker.from_transfer(result))

    def __del__(self):
        if getattr(self, "_pool", None) is not None:
            self._pool.shutdown()


_END = object()


class _DataLoaderIter:
    """One pass over a DataLoader (what ``iter(loader)`` returns): ``next()`` gives the next batch, ``len()`` the
    number of batches. Made lazily: the epoch's draws happen on the first ``next()``."""

    def __init__(self, loader):
        self._loader = loader
        self._batches = loader._single_process() if loader.num_workers == 0 else loader._multi_process()

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._batches)

    def __len__(self):
        return len(self._loader)

    def close(self):
        """Stop the epoch now (its worker processes end unless they are persistent)."""
        self._batches.close()


def _check_arguments(dataset, batch_size, num_workers, prefetch_factor, persistent_workers, timeout):
    if batch_size is not None and (not isinstance(batch_size, numbers.Integral) or isinstance(batch_size, bool)
                                   or batch_size < 1):
        raise ValueError(f"DataLoader: batch_size must be a positive int or None, got {batch_size!r}")
    if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
        raise TypeError(f"DataLoader: dataset must have __len__ and __getitem__, got {type(dataset).__name__}")
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


class _WorkerPool:
    """The worker processes of one DataLoader (or of one epoch, without persistent_workers)."""

    def __init__(self, loader, seed):
        ctx = loader.multiprocessing_context or multiprocessing.get_context(
            "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
        self.results = ctx.Queue()
        self.queues, self.workers = [], []
        n = loader.num_workers
        fetch = loader._fetch()
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
