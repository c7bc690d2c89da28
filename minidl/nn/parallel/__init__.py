"""DistributedDataParallel, as torch.nn.parallel's: one model replica per process, gradients averaged."""
from .distributed import DistributedDataParallel

__all__ = ["DistributedDataParallel"]
