"""Tensor factories: tensor(), zeros(), ones(), full(), arange(), rand(), randn(), empty() and *_like.

Each is ``replayed``: inside a step that minidl.compile captured, a replay makes the tensor again (a random one
draws again from the generator, as in eager mode)."""
import numbers

import numpy as np

from .. import backend
from ..backend.errors import RuntimeTypeError, RuntimeValueError
from .capturing import replayed
from .convert import _as_array
from .tensor import Tensor


def _shape(size, op):
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    for s in size:
        if not isinstance(s, numbers.Integral) or isinstance(s, bool) or s < 0:
            raise RuntimeValueError(f"{op}: size must be non-negative ints, got {size}")
    return tuple(int(s) for s in size)


def _finish(arr, device, requires_grad):
    if device is not None:
        arr = backend.to_device(arr, device)
    return Tensor._make(arr).requires_grad_(requires_grad) if requires_grad else Tensor._make(arr)


def _float_dtype(dtype, op):
    return backend.as_dtype(dtype, op) or backend.default_dtype()


@replayed
def tensor(data, dtype=None, device=None, requires_grad=False):
    """A new tensor from data: Python numbers and lists (floats become float32, ints int64), NumPy or
    CuPy arrays (their dtype is kept), torch tensors, or minidl tensors (copied)."""
    arr = _as_array(data, dtype, device, "tensor")
    if isinstance(data, Tensor) or (backend.is_device_array(data) and arr is data):
        arr = arr.copy()
    t = Tensor._make(arr)
    return t.requires_grad_(True) if requires_grad else t


def as_tensor(data, dtype=None, device=None):
    """Like tensor(), but shares memory with a NumPy/CuPy array when it can."""
    if isinstance(data, Tensor) and dtype is None and device is None:
        return data
    return Tensor._make(_as_array(data, dtype, device, "as_tensor"))


def from_numpy(array):
    """A tensor sharing memory with a NumPy array."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy: expected a numpy.ndarray, got {type(array).__name__}")
    if array.dtype.kind not in "biuf":
        raise TypeError(f"from_numpy: expected an array of numbers or bools, got dtype {array.dtype}")
    return Tensor._make(array)


@replayed
def zeros(*size, dtype=None, device=None, requires_grad=False):
    return _finish(np.zeros(_shape(size, "zeros"), _float_dtype(dtype, "zeros")), device, requires_grad)


@replayed
def ones(*size, dtype=None, device=None, requires_grad=False):
    return _finish(np.ones(_shape(size, "ones"), _float_dtype(dtype, "ones")), device, requires_grad)


@replayed
def empty(*size, dtype=None, device=None, requires_grad=False):
    return _finish(np.empty(_shape(size, "empty"), _float_dtype(dtype, "empty")), device, requires_grad)


@replayed
def full(size, fill_value, dtype=None, device=None, requires_grad=False):
    if dtype is None:
        dtype = (np.bool_ if isinstance(fill_value, bool) else np.int64 if isinstance(fill_value, numbers.Integral)
                 else backend.default_dtype())
    return _finish(np.full(_shape((size,), "full"), fill_value, backend.as_dtype(dtype, "full")), device,
                   requires_grad)


@replayed
def arange(start, end=None, step=1, dtype=None, device=None, requires_grad=False):
    """Values from ``start`` to ``end`` (exclusive) by ``step``; int64 for ints, float32 otherwise."""
    if end is None:
        start, end = 0, start
    if step == 0:
        raise RuntimeValueError("arange: step must be non-zero")
    if dtype is None:
        ints = all(isinstance(v, numbers.Integral) for v in (start, end, step))
        dtype = np.int64 if ints else backend.default_dtype()
    return _finish(np.arange(start, end, step, dtype=backend.as_dtype(dtype, "arange")), device, requires_grad)


@replayed
def linspace(start, end, steps, dtype=None, device=None, requires_grad=False):
    return _finish(np.linspace(start, end, steps, dtype=_float_dtype(dtype, "linspace")), device, requires_grad)


@replayed
def eye(n, m=None, dtype=None, device=None, requires_grad=False):
    return _finish(np.eye(n, m, dtype=_float_dtype(dtype, "eye")), device, requires_grad)


class Generator:
    """A random generator of its own, as torch.Generator: ``minidl.Generator().manual_seed(42)`` then
    ``generator=`` to rand, randn, randint, randperm, Tensor.uniform_/normal_, DataLoader and random_split draws
    from it and leaves minidl's global generator (``minidl.manual_seed``) alone. A new one starts from torch's
    default seed, 67280421310721, as torch's does. It draws NumPy's PCG64 stream (CuPy's on a GPU), so the same
    seed gives other numbers than torch's Mersenne twister."""

    DEFAULT_SEED = 67280421310721

    def __init__(self, device="cpu"):
        self.device = backend.Device(device)
        self._seed, self._gen = self.DEFAULT_SEED, None

    def _engine(self):
        if self._gen is None:
            self._gen = backend.new_generator(self.device, self._seed)
        return self._gen

    def manual_seed(self, seed):
        self._seed, self._gen = backend.checked_seed(seed, "Generator.manual_seed"), None
        return self

    def seed(self):
        """Seed from the operating system's entropy; returns the seed."""
        self.manual_seed(int(np.random.SeedSequence().entropy % 2 ** 63))
        return self._seed

    def initial_seed(self):
        return self._seed

    def _cpu_only(self, what):
        if self.device.type != "cpu":
            raise RuntimeValueError(f"Generator.{what}: only a CPU generator's state can be read or set, this one is "
                                    f"on {self.device}")

    def get_state(self):
        """The state as a uint8 tensor (the bytes of NumPy's PCG64 state), for :meth:`set_state`."""
        self._cpu_only("get_state")
        return Tensor._make(backend.get_rng_state(self._engine()))

    def set_state(self, new_state):
        self._cpu_only("set_state")
        self._gen = backend.generator_from_state(_as_array(new_state), "Generator.set_state")
        return self

    def __repr__(self):
        return f"<minidl.Generator device={self.device} seed={self._seed}>"


class DefaultGenerator(Generator):
    """minidl's global CPU generator (``minidl.default_generator``, what :func:`minidl.manual_seed` returns):
    seeding it seeds every device, as minidl.manual_seed does."""

    def __init__(self):
        self.device = backend.Device("cpu")

    def _engine(self):
        return backend.generator("cpu")

    def manual_seed(self, seed):
        backend.manual_seed(seed)
        return self

    def initial_seed(self):
        return backend._SEED

    def set_state(self, new_state):
        backend.set_rng_state(_as_array(new_state))
        return self

    def __repr__(self):
        return f"<minidl.Generator seed={backend._SEED}>"


def _random(kind, size, dtype, device, requires_grad, op, generator):
    shape = _shape(size, op)
    dt = _float_dtype(dtype, op)
    if dt.kind != "f":
        raise RuntimeTypeError(f"{op}: dtype must be floating, got {dt}")
    gen = backend.draw_from(generator, device or "cpu", op)
    arr = gen.random(shape, dtype=dt) if kind == "rand" else gen.standard_normal(shape, dtype=dt)
    return _finish(arr, None, requires_grad)


@replayed
def rand(*size, generator=None, dtype=None, device=None, requires_grad=False):
    """Uniform samples in [0, 1) from the device's generator (seeded by ``manual_seed``), or ``generator``'s."""
    return _random("rand", size, dtype, device, requires_grad, "rand", generator)


@replayed
def randn(*size, generator=None, dtype=None, device=None, requires_grad=False):
    """Standard normal samples from the device's generator (seeded by ``manual_seed``), or ``generator``'s."""
    return _random("randn", size, dtype, device, requires_grad, "randn", generator)


def _randint_bounds(args, low, high, size):
    """randint's overloads, as torch parses them: ``(high, size)``, ``(low, high, size)``, or ``size=`` / ``low=`` /
    ``high=`` as keywords (``randint(5, size=(3,))``: high 5). Returns (low, high, size)."""
    args = list(args)
    if size is None:
        if len(args) < 2 - (high is not None):
            raise TypeError("randint() takes (high, size) or (low, high, size), got " + ", ".join(
                [repr(a) for a in args] + [f"{k}={v!r}" for k, v in (("low", low), ("high", high)) if v is not None]))
        size = args.pop()
    if len(args) > 2:
        raise TypeError(f"randint() takes at most 3 positional arguments (low, high, size), got {len(args) + 1}")
    if len(args) == 2:
        low, high = args
    elif len(args) == 1:
        low, high = (low, args[0]) if high is None else (args[0], high)
    if high is None:
        raise TypeError("randint() missing its required argument 'high'")
    if isinstance(size, numbers.Integral) or not isinstance(size, (tuple, list)):
        raise TypeError(f"randint(): argument 'size' must be tuple of ints, not {type(size).__name__}")
    low = 0 if low is None else low
    for name, v in (("low", low), ("high", high)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise TypeError(f"randint(): argument '{name}' must be int, not {type(v).__name__}")
    if low >= high:
        raise RuntimeValueError(f"randint: expects 'low' to be less than 'high', but got low={low} >= high={high}")
    return int(low), int(high), size


def _randint(low, high, shape, generator, dtype, device, requires_grad, op):
    dt = backend.as_dtype(dtype, op) or np.dtype(np.int64)
    if dt.kind in "iub":
        info = np.iinfo(dt) if dt.kind != "b" else None
        lo, hi = (0, 1) if info is None else (info.min, info.max)
        if low < lo or high - 1 > hi:
            raise RuntimeValueError(f"{op}: the range [{low}, {high}) is out of bounds for {backend.wrap_dtype(dt)}")
    gen = backend.draw_from(generator, device or "cpu", op)
    arr = gen.integers(low, high, size=_shape((shape,), op), dtype=np.int64)
    if requires_grad and dt.kind != "f":
        raise RuntimeError(f"{op}: only floating point tensors can require gradients, got dtype "
                           f"{backend.wrap_dtype(dt)}")
    return _finish(arr.astype(dt, copy=False), None, requires_grad)


@replayed
def randint(*args, size=None, low=None, high=None, generator=None, dtype=None, device=None, requires_grad=False):
    """Random integers in [low, high) (low 0 by default), drawn uniformly from the device's generator or
    ``generator``: ``randint(high, size)``, ``randint(low, high, size)``, as torch (``size`` a tuple; ``low``,
    ``high`` and ``size`` may be keywords). int64 unless ``dtype`` says otherwise (a floating dtype holds the
    integers, and may require grad)."""
    low, high, size = _randint_bounds(args, low, high, size)
    return _randint(low, high, size, generator, dtype, device, requires_grad, "randint")


@replayed
def randint_like(input, *args, low=None, high=None, generator=None, dtype=None, device=None, requires_grad=False,
                 memory_format=None):
    """Random integers in [low, high) in ``input``'s shape, dtype and device (unless given):
    ``randint_like(x, high)`` or ``randint_like(x, low, high)``, as torch."""
    if not isinstance(input, Tensor):
        raise TypeError(f"randint_like: expected a Tensor, got {type(input).__name__}")
    low, high, _ = _randint_bounds(args, low, high, tuple(input.shape))
    return _randint(low, high, tuple(input.shape), generator, dtype or input.dtype, device or input.device,
                    requires_grad, "randint_like")


@replayed
def randperm(n, *, generator=None, dtype=None, device=None, requires_grad=False):
    """A random permutation of 0..n-1 (int64 by default), from the device's generator or ``generator``."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise RuntimeValueError(f"randperm: n must be a non-negative int, got {n!r}")
    gen = backend.draw_from(generator, device or "cpu", "randperm")
    return _finish(gen.permutation(int(n)).astype(backend.as_dtype(dtype, "randperm") or np.int64, copy=False),
                   device, requires_grad)


def _like(fn, input, dtype, device, requires_grad, *args):
    if not isinstance(input, Tensor):
        raise TypeError(f"{fn.__name__}_like: expected a Tensor, got {type(input).__name__}")
    return fn(*args, dtype=dtype or input.dtype, device=device or input.device, requires_grad=requires_grad)


@replayed
def zeros_like(input, dtype=None, device=None, requires_grad=False):
    return _like(zeros, input, dtype, device, requires_grad, input.shape)


@replayed
def ones_like(input, dtype=None, device=None, requires_grad=False):
    return _like(ones, input, dtype, device, requires_grad, input.shape)


@replayed
def empty_like(input, dtype=None, device=None, requires_grad=False):
    return _like(empty, input, dtype, device, requires_grad, input.shape)


@replayed
def full_like(input, fill_value, dtype=None, device=None, requires_grad=False):
    return _like(full, input, dtype, device, requires_grad, input.shape, fill_value)


@replayed
def rand_like(input, dtype=None, device=None, requires_grad=False):
    return _like(rand, input, dtype, device, requires_grad, input.shape)


@replayed
def randn_like(input, dtype=None, device=None, requires_grad=False):
    return _like(randn, input, dtype, device, requires_grad, input.shape)
