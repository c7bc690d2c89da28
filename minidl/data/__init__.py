"""Data: Dataset, samplers, DataLoader, transforms, and datasets (the MNIST family, CIFAR10, FakeData, ImageFolder).

``minidl.utils.data`` is this package (as torch.utils.data), and so are its modules under that name:
``from minidl.utils.data.sampler import RandomSampler`` finds the module loaded here, not a second copy."""
import sys as _sys

from . import transforms
from .dataset import Dataset, TensorDataset, Subset, random_split
from .sampler import (Sampler, SequentialSampler, RandomSampler, SubsetRandomSampler, WeightedRandomSampler,
                      BatchSampler)
from .dataloader import DataLoader, default_collate, default_convert
from .worker import get_worker_info, WorkerInfo
from .distributed import DistributedSampler
from .datasets import (MNIST, FashionMNIST, MNISTSubset, CIFAR10, FakeData, ImageFolder, DatasetNotFoundError,
                       read_idx)
from . import dataloader, dataset, datasets, distributed, sampler, worker

for _name in ("dataloader", "dataset", "datasets", "distributed", "sampler", "transforms", "worker"):
    _sys.modules[f"{__name__.rpartition('.')[0]}.utils.data.{_name}"] = _sys.modules[f"{__name__}.{_name}"]
del _name
