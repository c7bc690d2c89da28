"""``minidl.cuda``: is a GPU usable here, and torch.cuda's functions that programs call whether or not there is one.

Without a GPU (no CuPy, or CuPy sees no device) they behave as CPU torch's: seeding and ``empty_cache`` do nothing,
the memory counters read 0, ``is_available()`` is False, and what needs a device (``current_device``,
``get_device_name``, ``initial_seed`` ...) raises :class:`NoCudaError`, an AssertionError as torch's ("Torch not
compiled with CUDA enabled") and a RuntimeError too. With a GPU they act on CuPy's devices, memory pool and
minidl's per-device generators. ``minidl.cuda.amp`` (GradScaler, autocast) comes from minidl/amp.py.
"""
import sys

from . import Device, GPU_INSTALL, cuda_available, cuda_device_count, synchronize as _synchronize


class NoCudaError(AssertionError, RuntimeError):
    """A CUDA device was asked for where there is none (torch raises AssertionError on CPU builds)."""


def _require(what):
    if not cuda_available():
        raise NoCudaError(f"cuda.{what}: no CUDA GPU is usable here (CuPy is not installed or sees no device); on a "
                          f"machine with an NVIDIA GPU: {GPU_INSTALL}")
    from . import _cupy
    return _cupy


def _index(device):
    """A device given as None (the current one), N, 'cuda:N' or a Device, as its index."""
    if device is None:
        return current_device()
    if isinstance(device, int):
        return device
    return Device(device).index


def is_available():
    """True when CuPy is installed and sees a GPU."""
    return cuda_available()


def device_count():
    return cuda_device_count()


def is_initialized():
    """Whether CUDA is in use: minidl's GPU side is CuPy, initialised once a GPU is found."""
    return cuda_available()


def synchronize(device=None):
    """Wait until the GPU has finished all queued work (torch.cuda.synchronize): ``device`` 'cuda:N', N or None (the
    first)."""
    _synchronize(Device("cuda", device) if isinstance(device, int) else Device(device or "cuda"))


def current_device():
    return _require("current_device").cuda.Device().id


def set_device(device):
    """Make ``device`` (N, 'cuda:N') CuPy's current device."""
    _require("set_device").cuda.Device(_index(device)).use()


def get_device_properties(device=None):
    """CuPy's properties of the device (a dict: 'name', 'totalGlobalMem', 'major', 'minor', ...)."""
    return _require("get_device_properties").cuda.runtime.getDeviceProperties(_index(device))


def get_device_name(device=None):
    name = get_device_properties(device)["name"]
    return name.decode() if isinstance(name, bytes) else name


def get_device_capability(device=None):
    props = get_device_properties(device)
    return props["major"], props["minor"]


def is_bf16_supported(including_emulation=True):
    """Whether bfloat16 tensors can live on the GPU: minidl's GPU arrays are CuPy's, which has no bfloat16."""
    return False


# ---- random numbers: minidl's per-device generators (backend.generator) ----------------------------------------
def manual_seed(seed):
    """Seed the current GPU's generator; without a GPU nothing to do (as torch)."""
    from . import checked_seed, _generators, new_generator
    seed = checked_seed(seed, "cuda.manual_seed")
    if cuda_available():
        dev = Device("cuda", current_device())
        _generators[dev] = new_generator(dev, seed)


def manual_seed_all(seed):
    """Seed every GPU's generator; without a GPU nothing to do (as torch)."""
    from . import checked_seed, _generators, new_generator
    seed = checked_seed(seed, "cuda.manual_seed_all")
    for i in range(cuda_device_count()):
        _generators[Device("cuda", i)] = new_generator(Device("cuda", i), seed)


def _entropy_seed():
    import numpy as np
    return int(np.random.SeedSequence().entropy % 2 ** 63)


def seed():
    """Seed the current GPU's generator from the system's entropy (nothing without a GPU)."""
    if cuda_available():
        manual_seed(_entropy_seed())


def seed_all():
    if cuda_available():
        manual_seed_all(_entropy_seed())


def initial_seed():
    """The seed of minidl's generators (``minidl.manual_seed``'s), which the GPUs' are drawn from."""
    _require("initial_seed")
    from . import _SEED
    return _SEED


def get_rng_state_all():
    """Every GPU's generator state: an empty list without a GPU (as torch); CuPy's states cannot be read."""
    if cuda_device_count():
        raise NotImplementedError("cuda.get_rng_state_all: CuPy's generator states cannot be read; seed instead "
                                  "(minidl.cuda.manual_seed_all)")
    return []


def set_rng_state_all(new_states):
    if list(new_states):
        raise NotImplementedError("cuda.set_rng_state_all: CuPy's generator states cannot be set; seed instead "
                                  "(minidl.cuda.manual_seed_all)")


# ---- memory: CuPy's memory pool -----------------------------------------------------------------------------
def _pool():
    from . import _cupy_module
    return _cupy_module().get_default_memory_pool() if cuda_available() else None


def empty_cache():
    """Give the GPU memory that CuPy's pool keeps for reuse back to the driver (nothing without a GPU)."""
    pool = _pool()
    if pool is not None:
        pool.free_all_blocks()


def memory_allocated(device=None):
    """Bytes held by tensors on the GPU (CuPy's pool, all devices); 0 without a GPU."""
    pool = _pool()
    return 0 if pool is None else int(pool.used_bytes())


def memory_reserved(device=None):
    """Bytes CuPy's pool holds from the driver (in use or kept for reuse); 0 without a GPU."""
    pool = _pool()
    return 0 if pool is None else int(pool.total_bytes())


def max_memory_allocated(device=None):
    """0 without a GPU (as torch); CuPy's pool keeps no peak, so with one this says so."""
    if _pool() is None:
        return 0
    raise NotImplementedError("cuda.max_memory_allocated: CuPy's memory pool keeps no peak; read "
                              "minidl.cuda.memory_allocated() where it matters")


def reset_peak_memory_stats(device=None):
    """Nothing to reset: CuPy's pool keeps no peak."""


sys.modules.setdefault("minidl.cuda", sys.modules[__name__])  # `import minidl.cuda`, as `import torch.cuda`
