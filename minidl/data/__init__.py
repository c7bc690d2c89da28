"""Data: Dataset, DataLoader, transforms, and the MNIST family of datasets."""
from . import transforms
from .dataset import Dataset, TensorDataset, Subset, random_split
from .dataloader import DataLoader, default_collate
from .worker import get_worker_info, WorkerInfo
from .distributed import DistributedSampler
from .datasets import MNIST, FashionMNIST, MNISTSubset, DatasetNotFoundError, read_idx
