"""Data: Dataset, DataLoader, transforms, and datasets (the MNIST family, CIFAR10, FakeData, ImageFolder)."""
from . import transforms
from .dataset import Dataset, TensorDataset, Subset, random_split
from .dataloader import DataLoader, default_collate
from .worker import get_worker_info, WorkerInfo
from .distributed import DistributedSampler
from .datasets import (MNIST, FashionMNIST, MNISTSubset, CIFAR10, FakeData, ImageFolder, DatasetNotFoundError,
                       read_idx)
