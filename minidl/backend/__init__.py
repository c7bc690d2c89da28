"""Devices and array modules: the one place that knows NumPy from CuPy.

A device is ``'cpu'`` or ``'cuda'`` / ``'cuda:N'``. A tensor's data is a NumPy array on the CPU
and a CuPy array on a GPU; ``get_array_module`` returns the module (``xp``) that ops compute with.
CuPy is optional: without it everything on the CPU works and asking for ``'cuda'`` says why not.
"""
import sys

import numpy as np
from .errors import RuntimeValueError

# The GPU packages: setup.py's "gpu" extra, named here so that one command works however minidl was installed
# (from a clone, as a package, or only on the path); tests/test_first_hour.py holds it to setup.py.
GPU_INSTALL = 'pip install "cupy-cuda12x>=13" "numba-cuda[cu12]>=0.20"'

# CuPy is an optional extra (GPU_INSTALL), imported on first need: when a GPU is asked for, or
# when CuPy arrays reach minidl (then the user has imported CuPy already). `import minidl` never imports it:
# it takes a second or more and initialises CUDA. _cupy is the module, None when the import failed, or
# _UNTRIED before anything needed it.
_UNTRIED = object()
_cupy = _UNTRIED
_CUPY_ERROR = None


def _cupy_module():
    """CuPy, importing it if need be; None when it is not installed or fails to import."""
    global _cupy, _CUPY_ERROR
    if _cupy is _UNTRIED:
        try:
            import cupy
            _cupy = cupy
        except Exception as exc:  # ImportError, or a broken CUDA install
            _cupy, _CUPY_ERROR = None, exc
    return _cupy


def _loaded_cupy():
    """CuPy if it is imported already (by minidl or by the user), else None; never imports it. A CuPy array
    cannot exist before CuPy is imported, so this is enough to recognise one."""
    if _cupy is _UNTRIED:
        return _cupy_module() if "cupy" in sys.modules else None
    return _cupy

# glibc's malloc gives every array above its mmap threshold (128 KiB, raised to the size of a freed one, up to 32 MiB)
# fresh pages from the OS, and a step then page-faults them in and zeroes them again; heap memory freed at the top is
# given back above 128 KiB. A training step allocates and frees the same few-MiB arrays every step, so minidl keeps
# them: arrays up to 32 MiB come from the heap, and up to 64 MiB of free heap is kept for the next step (torch keeps
# its CPU memory in the same way, by its own allocator). Measured (benchmarks/NOTES.md, change 25): a LeNet-5 step at
# batch 128 took 14.6 ms, 9.2 ms with this. Settings made through glibc's environment variables win.
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 64 << 20


def keep_freed_memory():
    """Tune glibc's malloc as above (Linux with glibc only; True when done)."""
    import os
    import platform
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc" or any(
            k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")):
        return False
    import ctypes
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, MMAP_THRESHOLD) and libc.mallopt(m_trim_threshold,
                                                                                     TRIM_THRESHOLD))
    except (OSError, AttributeError):
        return False


__all__ = ["Device", "device", "get_array_module", "device_of", "to_device", "cuda_available",
           "default_dtype", "set_default_dtype", "as_dtype"]


class Device:
    """A device: ``Device('cpu')``, ``Device('cuda')``, ``Device('cuda:1')``, ``Device('cuda', 1)``."""

    __slots__ = ("type", "index")

    def __init__(self, spec="cpu", index=None):
        if isinstance(spec, Device):
            self.type, self.index = spec.type, spec.index
            return
        if not isinstance(spec, str):
            raise TypeError(f"device: expected a str like 'cpu' or 'cuda:0' or a Device, got {type(spec).__name__}")
        kind, _, idx = spec.partition(":")
        if kind not in ("cpu", "cuda"):
            raise RuntimeValueError(f"device: expected 'cpu', 'cuda' or 'cuda:N', got {spec!r}")
        if idx:
            if not idx.isdigit():
                raise RuntimeValueError(f"device: expected 'cuda:N' with N a non-negative integer, got {spec!r}")
            if index is not None:
                raise RuntimeValueError(f"device: index given twice ({spec!r} and index={index})")
            index = int(idx)
        if kind == "cpu":
            if index not in (None, 0):
                raise RuntimeValueError(f"device: 'cpu' takes no index, got {index}")
            index = None
        elif index is None:
            index = 0
        self.type, self.index = kind, index

    def __eq__(self, other):
        if isinstance(other, str):
            try:
                other = Device(other)
            except (TypeError, ValueError):
                return False
        return isinstance(other, Device) and (self.type, self.index) == (other.type, other.index)

    def __hash__(self):
        return hash((self.type, self.index))

    def __str__(self):
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self):
        return f"device(type='{self.type}'" + ("" if self.index is None else f", index={self.index}") + ")"


device = Device
_CPU = Device("cpu")


class memory_format:
    """How a tensor's elements lie in memory; the shape (and every op's meaning) does not change.

    ``contiguous_format``: row-major in the NCHW shape. ``channels_last``: a 4-D (N, C, H, W) tensor whose
    memory is NHWC (strides make it look NCHW). ``preserve_format``: keep what the input has."""
    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"minidl.{self.name}"


contiguous_format = memory_format("contiguous_format")
channels_last = memory_format("channels_last")
preserve_format = memory_format("preserve_format")


def is_channels_last(array):
    """True when a 4-D array's memory is NHWC (C the fastest-moving dim), as torch's channels_last."""
    if array.ndim != 4:
        return False
    n, c, h, w = array.shape
    s = array.strides
    isz = array.itemsize
    expect = {1: isz, 3: c * isz, 2: w * c * isz, 0: h * w * c * isz}
    return all(array.shape[d] == 1 or s[d] == expect[d] for d in range(4))


def has_memory_format(array, fmt, op):
    """Whether ``array`` is laid out in memory format ``fmt`` (``preserve_format``: always); checks ``fmt``."""
    if fmt is preserve_format:
        return True
    if fmt is contiguous_format:
        return bool(array.flags.c_contiguous)
    if fmt is channels_last:
        if array.ndim != 4:
            raise RuntimeValueError(f"{op}: memory_format channels_last needs a 4-D (N, C, H, W) tensor, got shape "
                                    f"{array.shape}")
        return is_channels_last(array)
    raise TypeError(f"{op}: memory_format must be minidl.contiguous_format, channels_last or preserve_format, "
                    f"got {fmt!r}")


def in_memory_format(array, fmt, op):
    """``array`` laid out in memory format ``fmt`` (itself when it already is): a copy otherwise."""
    if has_memory_format(array, fmt, op):
        return array
    xp = get_array_module(array)
    if fmt is contiguous_format:  # (ascontiguousarray would turn a 0-d array into 1-d; a 0-d array is contiguous)
        return xp.ascontiguousarray(array)
    return xp.ascontiguousarray(array.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


def cuda_available():
    """True when CuPy imports and sees at least one GPU."""
    if _cupy_module() is None:
        return False
    try:
        return _cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def cuda_device_count():
    return _cupy.cuda.runtime.getDeviceCount() if cuda_available() else 0


def _require_cuda(dev):
    if _cupy_module() is None:
        raise RuntimeError(f"device {dev}: CuPy is not installed or failed to import ({_CUPY_ERROR}); on a "
                           f"machine with an NVIDIA GPU, install the GPU packages with: {GPU_INSTALL}")
    n = cuda_device_count()
    if dev.index >= n:
        raise RuntimeError(f"device {dev}: only {n} CUDA device(s) are visible")


def synchronize(dev="cuda"):
    """Wait until the GPU ``dev`` has finished the work queued on it (GPU work is asynchronous)."""
    dev = Device(dev)
    if dev.type != "cuda":
        return
    _require_cuda(dev)
    _cupy.cuda.Device(dev.index).synchronize()


def get_array_module(*arrays):
    """The array module (numpy or cupy) for these arrays: cupy if any of them lives on a GPU."""
    cp = _loaded_cupy()
    if cp is not None:
        for a in arrays:
            if isinstance(a, cp.ndarray):
                return cp
    return np


def is_device_array(a):
    """True for NumPy and CuPy arrays (not Python scalars or lists)."""
    if isinstance(a, np.ndarray):
        return True
    cp = _loaded_cupy()
    return cp is not None and isinstance(a, cp.ndarray)


def device_of(array):
    """The Device an array lives on."""
    cp = _loaded_cupy()
    if cp is not None and isinstance(array, cp.ndarray):
        return Device("cuda", array.device.id)
    return _CPU


def to_device(array, dev):
    """Return ``array`` on device ``dev`` (no copy when it is already there)."""
    dev = Device(dev)
    if dev.type == "cpu":
        cp = _loaded_cupy()
        if cp is not None and isinstance(array, cp.ndarray):
            return cp.asnumpy(array)
        return np.asarray(array)
    _require_cuda(dev)
    with _cupy.cuda.Device(dev.index):
        if isinstance(array, _cupy.ndarray) and array.device.id == dev.index:
            return array
        return _cupy.asarray(array)


def array_module_for(dev):
    dev = Device(dev)
    if dev.type == "cpu":
        return np
    _require_cuda(dev)
    return _cupy


# ---- dtypes -------------------------------------------------------------------------------------
_DEFAULT_DTYPE = np.dtype(np.float32)
_DTYPE_NAMES = {"float32": np.float32, "float": np.float32, "float64": np.float64, "double": np.float64,
                "float16": np.float16, "half": np.float16, "int64": np.int64, "long": np.int64,
                "int32": np.int32, "int": np.int32, "int16": np.int16, "int8": np.int8,
                "uint8": np.uint8, "bool": np.bool_}


class dtype:
    """A tensor's dtype as torch shows it (``minidl.float32``), equal to and hashed as NumPy's dtype, so that
    ``x.dtype == np.float32`` holds and NumPy and CuPy take it wherever they take a dtype (they read its ``.dtype``).
    Other attributes are NumPy's (``.itemsize``, ``.kind``, ``.name``)."""
    __slots__ = ("_np", "kind")

    def __init__(self, np_dtype):
        self._np = np.dtype(np_dtype)
        # NumPy's kind, except ml_dtypes' bfloat16 (a 'V' to NumPy), which is a float here, as in torch. Kept, not
        # computed per read: ops read it on every call, and NumPy makes a dtype's name anew each time (5 us an op)
        self.kind = "f" if self._np.kind == "V" and self._np.name == "bfloat16" else self._np.kind

    @property
    def dtype(self):  # NumPy's protocol: np.dtype(minidl.float32) is NumPy's float32
        return self._np

    @property
    def is_floating_point(self):
        return self.kind == "f"

    @property
    def is_complex(self):
        return self._np.kind == "c"

    @property
    def is_signed(self):
        return self.kind in "fic"

    def __eq__(self, other):
        if isinstance(other, dtype):
            return self._np == other._np
        try:
            return self._np == np.dtype(other)
        except TypeError:
            return False

    def __hash__(self):
        return hash(self._np)

    def __getattr__(self, name):
        return getattr(self._np, name)

    def __repr__(self):
        return "minidl.bool" if self._np.kind == "b" else f"minidl.{self._np.name}"

    def __reduce__(self):  # unpickles to the one object per dtype (minidl.float32 is minidl.float32)
        return (_unpickle_dtype, ("bfloat16" if self._np.name == "bfloat16" else self._np.str,))


_WRAPPED = {}


def _unpickle_dtype(name):
    return wrap_dtype(bfloat16_numpy() if name == "bfloat16" else np.dtype(name))


# ---- bfloat16: NumPy has none of its own; the ml_dtypes package adds one, imported on first use (it takes ~0.5 s,
# twice minidl's own import). Its arrays add, multiply and convert as NumPy arrays, rounding to bfloat16 each time.
BFLOAT16_INSTALL = "pip install ml_dtypes"


def bfloat16_numpy():
    """NumPy's bfloat16 dtype, from ml_dtypes; ImportError saying how to install it where it is missing."""
    try:
        import ml_dtypes
    except ImportError:
        raise ImportError("bfloat16 needs the ml_dtypes package (NumPy has no bfloat16 of its own); install it with: "
                          f"{BFLOAT16_INSTALL}") from None
    return np.dtype(ml_dtypes.bfloat16)


class MissingBFloat16:
    """``minidl.bfloat16`` where ml_dtypes is not installed: the name exists (programs list it in tables of
    dtypes), and making or converting a tensor with it raises the ImportError that says what to install."""
    is_floating_point, is_complex, is_signed, itemsize = True, False, True, 2

    @property
    def dtype(self):  # NumPy's protocol: np.dtype(minidl.bfloat16) raises the install message
        return bfloat16_numpy()

    def __repr__(self):
        return "minidl.bfloat16"


_BFLOAT16 = None


def bfloat16():
    """The object ``minidl.bfloat16`` is: the dtype (ml_dtypes installed) or a :class:`MissingBFloat16`."""
    global _BFLOAT16
    if _BFLOAT16 is None:
        try:
            _BFLOAT16 = wrap_dtype(bfloat16_numpy())
        except ImportError:
            _BFLOAT16 = MissingBFloat16()
    return _BFLOAT16


def wrap_dtype(np_dtype):
    """The :class:`dtype` for a NumPy dtype (one object per dtype)."""
    w = _WRAPPED.get(np_dtype)
    if w is None:
        w = _WRAPPED[np_dtype] = dtype(np_dtype)
    return w


def as_dtype(dtype, op="dtype"):
    """Normalise a dtype given as a NumPy dtype/type, a name ('float32'), or a torch dtype."""
    if dtype is None:
        return None
    if isinstance(dtype, str) or (type(dtype).__module__ == "torch"):
        name = str(dtype).replace("torch.", "").replace("minidl.", "")
        if name == "bfloat16":
            return bfloat16_numpy()
        if name not in _DTYPE_NAMES:
            raise TypeError(f"{op}: unknown dtype {dtype!r}; expected one of {sorted(_DTYPE_NAMES)}")
        return np.dtype(_DTYPE_NAMES[name])
    if isinstance(dtype, MissingBFloat16):
        return bfloat16_numpy()  # raises: how to install ml_dtypes
    if isinstance(dtype, type) and hasattr(dtype, "is_tensor_type"):  # minidl.FloatTensor and kin
        return dtype.dtype._np
    try:
        return np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{op}: expected a dtype such as minidl.float32, got {dtype!r}") from None


def default_dtype():
    return _DEFAULT_DTYPE


def compute_dtype(np_dtype):
    """The dtype a float op computes in: float16 and bfloat16 in float32, rounded once at the end (as torch's);
    wider ones in their own."""
    return np_dtype if np_dtype.itemsize >= 4 else np.dtype(np.float32)


def get_default_dtype():
    """The default floating dtype as torch shows it (minidl.float32)."""
    return wrap_dtype(_DEFAULT_DTYPE)


def set_default_dtype(dtype):
    """Set the floating dtype that new tensors get from Python floats (float32 or float64)."""
    global _DEFAULT_DTYPE
    dt = as_dtype(dtype, "set_default_dtype")
    if dt not in (np.float32, np.float64):
        raise TypeError(f"set_default_dtype: expected float32 or float64, got {dt}")
    _DEFAULT_DTYPE = dt


# ---- random numbers ------------------------------------------------------------------------------
_SEED = None
_generators = {}


def checked_seed(seed, op):
    """seed as a Python int, or TypeError naming op (manual_seed, Generator.manual_seed)."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"{op}: seed must be an int, got {type(seed).__name__}")
    return int(seed)


def manual_seed(seed):
    """Seed every device's generator (like torch.manual_seed); returns the seed."""
    global _SEED
    _SEED = checked_seed(seed, "manual_seed")
    _generators.clear()
    return _SEED


def get_rng_state(gen=None):
    """A CPU generator's state (numpy's PCG64 state as JSON bytes), for :func:`set_rng_state`; minidl's own
    CPU generator unless ``gen`` is given."""
    import json
    gen = generator(_CPU) if gen is None else gen
    return np.frombuffer(json.dumps(gen.bit_generator.state).encode(), dtype=np.uint8).copy()


def generator_from_state(state, op="set_rng_state"):
    """A new CPU generator in a state from :func:`get_rng_state` (uint8 bytes of its JSON)."""
    import json
    try:
        bit_state = json.loads(np.asarray(state, dtype=np.uint8).tobytes().decode())
        gen = np.random.default_rng()
        gen.bit_generator.state = bit_state
    except (ValueError, TypeError, KeyError) as exc:
        raise RuntimeValueError(f"{op}: not a state from get_rng_state ({exc})") from None
    return gen


def set_rng_state(state):
    """Restore minidl's CPU generator to a state from :func:`get_rng_state`."""
    _generators[_CPU] = generator_from_state(state)


def new_generator(dev, seed):
    """A generator of its own for a device (what a minidl.Generator draws from), seeded with ``seed``."""
    dev = Device(dev)
    if dev.type == "cpu":
        return np.random.default_rng(seed)
    _require_cuda(dev)
    with _cupy.cuda.Device(dev.index):
        return _cupy.random.default_rng(seed)


def draw_from(gen, dev, op):
    """The NumPy/CuPy generator that ``op(..., generator=gen)`` draws from on device ``dev``: minidl's own for the
    device when gen is None, a minidl.Generator's (which must be on the device's type), or a NumPy Generator as
    given (minidl's data loaders always took those)."""
    dev = Device(dev) if dev is not None else _CPU
    if gen is None:
        return generator(dev)
    engine = getattr(gen, "_engine", None)
    if engine is not None:
        if gen.device.type != dev.type:
            raise RuntimeValueError(f"{op}: the generator is on {gen.device.type!r}, the result on {dev.type!r}; use a "
                                    f"minidl.Generator(device={dev.type!r})")
        return engine()
    if isinstance(gen, np.random.Generator) or type(gen).__module__.startswith("cupy"):
        return gen
    raise TypeError(f"{op}: generator must be a minidl.Generator, got {type(gen).__name__}")


def generator(dev=_CPU):
    """The random generator of a device (numpy.random.Generator or cupy.random.Generator)."""
    dev = Device(dev)
    gen = _generators.get(dev)
    if gen is None:
        gen = _generators[dev] = new_generator(dev, _SEED)
    return gen
