"""``minidl.cuda``: is a GPU usable here?"""
from . import cuda_available, cuda_device_count


def is_available():
    """True when CuPy is installed and sees a GPU."""
    return cuda_available()


def device_count():
    return cuda_device_count()
