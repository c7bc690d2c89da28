"""DistributedSampler: each rank's share of a dataset, as torch.utils.data.distributed.DistributedSampler."""
import math

from .. import backend
from .sampler import Sampler


class DistributedSampler(Sampler[int]):
    """The indices of one rank: shuffled with a seed shared by all ranks (plus the epoch, see ``set_epoch``),
    padded by repeating the first indices so that every rank gets the same number (or, with ``drop_last``,
    cut to a multiple of the world size), then every ``num_replicas``-th index from ``rank`` on. The shards of
    one epoch are disjoint and together cover the dataset.

    The shuffle is a permutation from a minidl.Generator seeded with seed + epoch (NumPy's PCG64, where torch's
    is its Mersenne twister, so the order differs from torch's); the sharding and padding are torch's. The
    global generator is not touched."""

    def __init__(self, dataset, num_replicas=None, rank=None, shuffle=True, seed=0, drop_last=False):
        from .. import distributed as dist
        if num_replicas is None:
            num_replicas = dist.get_world_size() if dist.is_initialized() else 1
        if rank is None:
            rank = dist.get_rank() if dist.is_initialized() else 0
        if not isinstance(num_replicas, int) or num_replicas < 1:
            raise ValueError(f"DistributedSampler: num_replicas must be a positive int, got {num_replicas!r}")
        if not isinstance(rank, int) or not 0 <= rank < num_replicas:
            raise ValueError(f"DistributedSampler: invalid rank {rank!r}, rank should be in the interval "
                             f"[0, {num_replicas - 1}]")
        self.dataset, self.num_replicas, self.rank = dataset, num_replicas, rank
        self.shuffle, self.seed, self.drop_last, self.epoch = shuffle, int(seed), drop_last, 0
        n = len(dataset)
        if drop_last and n % num_replicas:
            self.num_samples = math.ceil((n - num_replicas) / num_replicas)
        else:
            self.num_samples = math.ceil(n / num_replicas)
        self.total_size = self.num_samples * num_replicas

    def set_epoch(self, epoch):
        """Call at the start of every epoch: the shuffle is seeded with seed + epoch on every rank."""
        self.epoch = int(epoch)

    def __iter__(self):
        n = len(self.dataset)
        if self.shuffle:
            from ..autograd.creation import Generator
            gen = Generator().manual_seed(self.seed + self.epoch)
            indices = backend.draw_from(gen, "cpu", "DistributedSampler").permutation(n).tolist()
        else:
            indices = list(range(n))
        if not self.drop_last:
            pad = self.total_size - len(indices)
            if pad <= len(indices):
                indices += indices[:pad]
            else:
                indices += (indices * math.ceil(pad / len(indices)))[:pad]
        else:
            indices = indices[:self.total_size]
        return iter(indices[self.rank:self.total_size:self.num_replicas])

    def __len__(self):
        return self.num_samples
