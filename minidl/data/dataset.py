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

    def __getitems__(self, indices):
        """A whole batch by one fancy index per tensor (what DataLoader uses)."""
        idx = np.asarray(indices)
        return tuple(Tensor._make(t._data[backend.to_device(idx, t.device)]) if isinstance(t, Tensor) else t[idx]
                     for t in self.tensors)

    def __len__(self):
        return self.tensors[0].shape[0]


class Subset(Dataset):
    def __init__(self, dataset, indices):
        self.dataset, self.indices = dataset, list(indices)

    def __getitem__(self, i):
        return self.dataset[self.indices[i]]

    def __len__(self):
        return len(self.indices)


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
