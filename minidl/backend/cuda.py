"""``minidl.cuda``: is a GPU usable here?"""
from . import Device, cuda_available, cuda_device_count, synchronize as _synchronize


def is_available():
    """True when CuPy is installed and sees a GPU."""
    return cuda_available()


def device_count():
    return cuda_device_count()


def synchronize(device=None):
    """Wait until the GPU has finished all queued work (torch.cuda.synchronize): ``device`` 'cuda:N', N or None (the
    first)."""
    _synchronize(Device("cuda", device) if isinstance(device, int) else Device(device or "cuda"))
