"""DataLoader: batches, shuffling with a seeded generator, drop_last, collate_fn."""
import numbers

import numpy as np

from .. import backend
from ..autograd.tensor import Tensor


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


class DataLoader:
    """Iterate over a dataset in batches, as torch.utils.data.DataLoader (single process).

    Args:
        dataset: a Dataset (a ``__getitems__(indices)`` method, as TensorDataset has, fetches a whole
            batch at once).
        batch_size, shuffle, drop_last: as torch.
        collate_fn: turns a list of samples into a batch (default: stack into tensors).
        generator: a numpy.random.Generator for shuffling; default: minidl's seeded CPU generator, so
            ``minidl.manual_seed`` makes the order reproducible.
        device: where batches go ('cuda' moves each batch once, as it is made).
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, collate_fn=None, generator=None,
                 device=None):
        if not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be a positive int, got {batch_size!r}")
        if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
            raise TypeError(f"DataLoader: dataset must have __len__ and __getitem__, got {type(dataset).__name__}")
        self.dataset, self.batch_size, self.shuffle, self.drop_last = dataset, int(batch_size), shuffle, drop_last
        self.collate_fn, self.generator = collate_fn, generator
        self.device = None if device is None else backend.Device(device)

    def __len__(self):
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _order(self):
        n = len(self.dataset)
        if not self.shuffle:
            return np.arange(n)
        gen = self.generator if self.generator is not None else backend.generator("cpu")
        return gen.permutation(n)

    def _to_device(self, batch):
        if self.device is None:
            return batch
        if isinstance(batch, Tensor):
            return batch.to(self.device)
        if isinstance(batch, dict):
            return {k: self._to_device(v) for k, v in batch.items()}
        if isinstance(batch, (tuple, list)):
            return type(batch)(self._to_device(b) for b in batch)
        return batch

    def __iter__(self):
        order = self._order()
        fast = hasattr(self.dataset, "__getitems__") and self.collate_fn is None
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            if len(idx) < self.batch_size and self.drop_last:
                return
            if fast:
                batch = _batch_as_is(self.dataset.__getitems__(idx))
            else:
                samples = [self.dataset[int(i)] for i in idx]
                batch = (self.collate_fn or default_collate)(samples)
            yield self._to_device(batch)
