"""Dataset, TensorDataset, Subset, random_split."""
import numpy as np

from .. import backend
from ..autograd.tensor import Tensor


class Dataset:
    """A map-style dataset: ``__getitem__(i)`` returns one sample, ``__len__`` the number of samples."""

    def __getitem__(self, index):
        raise NotImplementedError

    def __len__(self):
        raise NotImplementedError


class TensorDataset(Dataset):
    """Samples are the i-th rows of the given tensors (or arrays), which share their first dimension."""

    def __init__(self, *tensors):
        if not tensors:
            raise ValueError("TensorDataset: expected at least one tensor")
        n = tensors[0].shape[0]
        for i, t in enumerate(tensors):
            if not isinstance(t, Tensor) and not backend.is_device_array(t):
                raise TypeError(f"TensorDataset: argument {i} must be a Tensor or an array, got {type(t).__name__}")
            if t.shape[0] != n:
                raise ValueError(f"TensorDataset: tensors have {n} and {t.shape[0]} rows; the first dims must match")
        self.tensors = tensors

    def __getitem__(self, index):
        return tuple(t[index] for t in self.tensors)

    def _fetch_batch(self, indices):
        """The default collation of ``[self[i] for i in indices]`` (one batched tensor per field, in a list, as
        torch's default_collate makes of tuple samples), by one fancy index per tensor: the DataLoader's fast path."""
        idx = np.asarray(indices, dtype=np.int64)
        return [Tensor._make(t._data[backend.to_device(idx, t.device)]) if isinstance(t, Tensor)
                else Tensor._make(t[backend.to_device(idx, backend.device_of(t))]) for t in self.tensors]

    def __len__(self):
        return self.tensors[0].shape[0]


class Subset(Dataset):
    """The samples of ``dataset`` at ``indices``, in that order: ``Subset(ds, idx)[i]`` is ``ds[idx[i]]``."""

    def __init__(self, dataset, indices):
        self.dataset, self.indices = dataset, list(indices)

    def __getitem__(self, i):
        if isinstance(i, list):
            return self.dataset[[self.indices[j] for j in i]]
        return self.dataset[self.indices[i]]

    def __getitems__(self, indices):
        """The samples at ``indices`` as a list (the underlying dataset's ``__getitems__`` when it has one), as
        torch's Subset: what a DataLoader collates."""
        if callable(getattr(self.dataset, "__getitems__", None)):
            return self.dataset.__getitems__([self.indices[i] for i in indices])
        return [self.dataset[self.indices[i]] for i in indices]

    def __len__(self):
        return len(self.indices)


def batch_fetcher(dataset):
    """A function that makes the default-collated batch of a list of indices at once, for a TensorDataset or a
    Subset (of a Subset...) of one; None for other datasets (the DataLoader then collates sample by sample)."""
    if type(dataset) is TensorDataset:  # not subclasses: they may change what a sample is
        return dataset._fetch_batch
    if type(dataset) is Subset:
        inner = batch_fetcher(dataset.dataset)
        if inner is not None:
            return lambda indices: inner([dataset.indices[i] for i in indices])
    return None


def random_split(dataset, lengths, generator=None):
    """Split into non-overlapping Subsets of the given lengths (or fractions summing to 1)."""
    n = len(dataset)
    if all(isinstance(x, float) for x in lengths) and abs(sum(lengths) - 1) < 1e-9:
        sizes = [int(np.floor(n * f)) for f in lengths]
        for i in range(n - sum(sizes)):
            sizes[i % len(sizes)] += 1
        lengths = sizes
    if sum(lengths) != n:
        raise ValueError(f"random_split: lengths {list(lengths)} sum to {sum(lengths)}, the dataset has {n} samples")
    gen = backend.draw_from(generator, "cpu", "random_split")
    perm = gen.permutation(n)
    out, start = [], 0
    for k in lengths:
        out.append(Subset(dataset, perm[start:start + k].tolist()))
        start += k
    return out
