"""Samplers, as torch.utils.data.sampler: which indices a DataLoader loads, in which order, drawn lazily.

Every sampler's ``__iter__`` is a generator: nothing is drawn until the first ``next()``, so making an iterator
(``iter(loader)``, or a progress bar that calls it) consumes no randomness. RandomSampler draws as torch's does:
without a generator, one int64 from minidl's global generator seeds a generator of its own for the epoch;
without replacement one permutation per pass over the data; with replacement 32 indices at a time. The numbers
are NumPy's PCG64 stream (minidl.Generator), not torch's Mersenne twister; the order of draws is torch's."""
import itertools
import numbers
from typing import Generic, TypeVar

import numpy as np

from .. import backend

__all__ = ["BatchSampler", "RandomSampler", "Sampler", "SequentialSampler", "SubsetRandomSampler",
           "WeightedRandomSampler"]

T_co = TypeVar("T_co", covariant=True)


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def draw_seed(generator, op):
    """One int64 from ``generator`` (minidl's global CPU generator when None), as torch's
    ``torch.empty((), dtype=torch.int64).random_(generator=generator)``: a sampler's or a DataLoader's seed."""
    return int(backend.draw_from(generator, "cpu", op).integers(2 ** 63 - 1))


def _own_generator(seed):
    from ..autograd.creation import Generator
    return Generator().manual_seed(seed)


class Sampler(Generic[T_co]):
    """Base class of the samplers: ``__iter__`` yields indices (or lists of indices, for a batch sampler) of a
    dataset; ``__len__``, where there is one, says how many. ``Sampler[int]`` subclasses as torch's does."""

    def __iter__(self):
        raise NotImplementedError


class SequentialSampler(Sampler[int]):
    """0, 1, ..., len(data_source) - 1, always in that order."""

    def __init__(self, data_source):
        self.data_source = data_source

    def __iter__(self):
        return iter(range(len(self.data_source)))

    def __len__(self):
        return len(self.data_source)


class RandomSampler(Sampler[int]):
    """Random indices of ``data_source``: a shuffle (one permutation per pass, the last cut to what is left)
    or, with ``replacement``, ``num_samples`` independent draws, made 32 at a time as they are needed.

    Args:
        data_source: a sized dataset.
        replacement: draw with replacement (default False).
        num_samples: how many indices an iteration yields (default: len(data_source), read at each iteration).
        generator: a minidl.Generator to draw from; default: a generator seeded per iteration by one draw from
            minidl's global generator (so ``minidl.manual_seed`` makes the order reproducible).
    """

    def __init__(self, data_source, replacement=False, num_samples=None, generator=None):
        self.data_source, self.replacement, self._num_samples, self.generator = \
            data_source, replacement, num_samples, generator
        if not isinstance(replacement, bool):
            raise TypeError(f"RandomSampler: replacement should be a boolean value, but got "
                            f"replacement={replacement!r}")
        if not _is_int(self.num_samples) or self.num_samples <= 0:
            raise ValueError(f"RandomSampler: num_samples should be a positive integer value, but got "
                             f"num_samples={self.num_samples!r}")

    @property
    def num_samples(self):
        """How many indices an iteration yields (the dataset's size unless given: it may change)."""
        return len(self.data_source) if self._num_samples is None else self._num_samples

    def __iter__(self):
        n, total = len(self.data_source), int(self.num_samples)
        gen = self.generator if self.generator is not None else _own_generator(draw_seed(None, "RandomSampler"))
        if self.replacement:
            for _ in range(total // 32):
                yield from backend.draw_from(gen, "cpu", "RandomSampler").integers(n, size=32).tolist()
            yield from backend.draw_from(gen, "cpu", "RandomSampler").integers(n, size=total % 32).tolist()
        else:
            for _ in range(total // n):
                yield from backend.draw_from(gen, "cpu", "RandomSampler").permutation(n).tolist()
            yield from backend.draw_from(gen, "cpu", "RandomSampler").permutation(n).tolist()[:total % n]

    def __len__(self):
        return self.num_samples


class SubsetRandomSampler(Sampler[int]):
    """The given indices in a random order (one permutation, from ``generator`` or minidl's global one)."""

    def __init__(self, indices, generator=None):
        self.indices, self.generator = indices, generator

    def __iter__(self):
        for i in backend.draw_from(self.generator, "cpu", "SubsetRandomSampler").permutation(len(self.indices)):
            yield self.indices[int(i)]

    def __len__(self):
        return len(self.indices)


class WeightedRandomSampler(Sampler[int]):
    """``num_samples`` indices of ``[0, len(weights))``, each drawn with probability proportional to its weight
    (as torch.multinomial: with ``replacement`` independent draws, without it no index twice).

    Args:
        weights: a 1-D sequence of non-negative weights (they need not sum to 1).
        num_samples: how many indices to draw.
        replacement: draw with replacement (default True).
        generator: a minidl.Generator (default: minidl's global generator).
    """

    def __init__(self, weights, num_samples, replacement=True, generator=None):
        if not _is_int(num_samples) or num_samples <= 0:
            raise ValueError(f"WeightedRandomSampler: num_samples should be a positive integer value, but got "
                             f"num_samples={num_samples!r}")
        if not isinstance(replacement, bool):
            raise ValueError(f"WeightedRandomSampler: replacement should be a boolean value, but got "
                             f"replacement={replacement!r}")
        from ..autograd.tensor import Tensor
        array = backend.to_device(weights._data, "cpu") if isinstance(weights, Tensor) else weights
        try:
            array = np.asarray(array, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"WeightedRandomSampler: weights should be a sequence of numbers, got "
                            f"{type(weights).__name__}") from None
        if array.ndim != 1:
            raise ValueError(f"WeightedRandomSampler: weights should be a 1d sequence but given weights have shape "
                             f"{tuple(array.shape)}")
        from ..autograd.creation import tensor
        self.weights, self.num_samples, self.replacement, self.generator = \
            tensor(array), int(num_samples), replacement, generator

    def _probabilities(self):
        w = self.weights.numpy()
        if not np.isfinite(w).all() or (w < 0).any():
            raise ValueError("WeightedRandomSampler: weights must be finite and non-negative (torch.multinomial: "
                             "probability tensor contains either `inf`, `nan` or element < 0)")
        if w.sum() <= 0:
            raise ValueError("WeightedRandomSampler: invalid multinomial distribution (sum of probabilities <= 0)")
        if not self.replacement and self.num_samples > np.count_nonzero(w):
            raise ValueError(f"WeightedRandomSampler: cannot draw {self.num_samples} samples without replacement from "
                             f"{np.count_nonzero(w)} non-zero weights")
        return w / w.sum()

    def __iter__(self):
        p = self._probabilities()
        rng = backend.draw_from(self.generator, "cpu", "WeightedRandomSampler")
        yield from rng.choice(len(p), size=self.num_samples, replace=self.replacement, p=p).tolist()

    def __len__(self):
        return self.num_samples


class BatchSampler(Sampler[list]):
    """Lists of ``batch_size`` indices from ``sampler`` (any iterable of indices), taken as they are needed; the
    last list is shorter unless ``drop_last``. ``[[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]`` for
    ``BatchSampler(SequentialSampler(range(10)), 3, False)``."""

    def __init__(self, sampler, batch_size, drop_last):
        if not _is_int(batch_size) or batch_size <= 0:
            raise ValueError(f"BatchSampler: batch_size should be a positive integer value, but got "
                             f"batch_size={batch_size!r}")
        if not isinstance(drop_last, bool):
            raise ValueError(f"BatchSampler: drop_last should be a boolean value, but got drop_last={drop_last!r}")
        self.sampler, self.batch_size, self.drop_last = sampler, int(batch_size), drop_last

    def __iter__(self):
        indices = iter(self.sampler)
        while True:
            batch = list(itertools.islice(indices, self.batch_size))
            if not batch or (self.drop_last and len(batch) < self.batch_size):
                return
            yield batch

    def __len__(self):
        if self.drop_last:
            return len(self.sampler) // self.batch_size
        return (len(self.sampler) + self.batch_size - 1) // self.batch_size
