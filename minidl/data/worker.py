"""DataLoader worker processes: each loads whole batches (dataset[i] for its indices, then collate) and sends
them back; the loader hands them out in order. Workers are seeded from one base seed per epoch (minidl's
generator, Python's ``random`` and NumPy's global generator, so random transforms differ between workers and
repeat between runs), report exceptions with their traceback, and stop when told or when the loader goes.
As in torch, persistent workers are seeded once; other workers are started, and seeded, for every epoch."""
import os
import queue
import random
import traceback
from dataclasses import dataclass

import numpy as np

from .. import backend
from ..autograd.tensor import Tensor


@dataclass(frozen=True)
class WorkerInfo:
    """What :func:`get_worker_info` returns inside a worker: its id, the number of workers, its seed, and the
    worker's copy of the dataset."""
    id: int
    num_workers: int
    seed: int
    dataset: object


_info = None


def get_worker_info():
    """In a DataLoader worker process: its :class:`WorkerInfo`; in the main process: None (as torch)."""
    return _info


class _Marked:
    """A Tensor's array on its way between processes (Tensors themselves carry autograd state)."""
    __slots__ = ("array",)

    def __init__(self, array):
        self.array = array

    def __reduce__(self):
        return _Marked, (self.array,)


def map_structure(obj, fn, leaf_type):
    """``obj`` with ``fn`` applied to every ``leaf_type`` inside it, through dicts, lists and tuples (named
    tuples too); anything else as it is."""
    if isinstance(obj, leaf_type):
        return fn(obj)
    if isinstance(obj, dict):
        return {k: map_structure(v, fn, leaf_type) for k, v in obj.items()}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return type(obj)(*(map_structure(v, fn, leaf_type) for v in obj))
    if isinstance(obj, (tuple, list)):
        return type(obj)(map_structure(v, fn, leaf_type) for v in obj)
    return obj


def to_transfer(obj):
    """Tensors -> marked host arrays, for the trip between processes."""
    return map_structure(obj, lambda t: _Marked(backend.to_device(t._data, "cpu") if backend.is_device_array(t._data)
                                                else t._data), Tensor)


def from_transfer(obj):
    return map_structure(obj, lambda m: Tensor._make(m.array), _Marked)


class WorkerError:
    """An exception raised in a worker, carried to the main process with its formatted traceback."""

    def __init__(self, worker_id, exc):
        self.worker_id, self.exc_type = worker_id, type(exc)
        self.message = f"Caught {type(exc).__name__} in DataLoader worker process {worker_id}.\nOriginal " \
                       f"{''.join(traceback.format_exception(type(exc), exc, exc.__traceback__))}"

    def reraise(self):
        try:  # the same exception type when it takes a message, as torch
            err = self.exc_type(self.message)
        except Exception:
            err = RuntimeError(self.message)
        raise err


def seed_worker(seed):
    backend.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)


def worker_loop(fetch, index_queue, result_queue, worker_id, num_workers, seed, init_fn, main_pid):
    """Runs in the worker: seed, call ``init_fn(worker_id)``, then take (epoch, batch number, indices) from
    ``index_queue`` until None and send (epoch, batch number, batch or WorkerError) to ``result_queue``."""
    global _info
    try:
        seed_worker(seed)
        _info = WorkerInfo(worker_id, num_workers, seed, fetch.dataset)
        init_error = None
        if init_fn is not None:
            try:
                init_fn(worker_id)
            except Exception as exc:
                init_error = WorkerError(worker_id, exc)
        while True:
            try:
                item = index_queue.get(timeout=5.0)
            except queue.Empty:
                if os.getppid() != main_pid:  # the main process is gone: stop rather than linger
                    return
                continue
            if item is None:
                return
            epoch, number, indices = item
            if init_error is not None:
                result = init_error
            else:
                try:
                    result = to_transfer(fetch(indices))
                except Exception as exc:  # sent to the main process, which raises it there
                    result = WorkerError(worker_id, exc)
            result_queue.put((epoch, number, result))
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group; the main process reports it
        return
