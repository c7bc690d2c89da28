"""torch.accelerator's questions: is there an accelerator, and which one (CUDA through CuPy, or none)."""
from .backend import Device, cuda


def is_available():
    """True when a GPU is usable (CuPy finds one)."""
    return cuda.is_available()


def current_accelerator(check_available=False):
    """device('cuda') when a GPU is usable, else None (as torch without an accelerator). ``check_available`` is
    accepted for torch's signature: minidl always checks at run time."""
    return Device("cuda") if cuda.is_available() else None


def device_count():
    return cuda.device_count() if cuda.is_available() else 0
