"""A CPU stand-in for CuPy that keeps CuPy's rules, so that device-generic code is checked without a GPU.

``installed()`` makes minidl believe CuPy is present with one GPU. Arrays on 'cuda' are then
``StrictArray``s: NumPy data behind a wrapper that, like a CuPy array,

- refuses implicit conversion to NumPy (``np.asarray(a)``, ``np.array(a)``, a Numba kernel): TypeError;
- refuses to be mixed with NumPy arrays in an operation or an assignment (``a + np_array``): TypeError;
- returns 0-d device arrays from reductions, not host scalars;
- counts every copy between host and device: explicit ones (``cupy.asarray`` of host data,
  ``cupy.asnumpy``, ``.get()``) and the synchronising reads (``.item()``, ``float(a)``, ``bool(a)``,
  ``.tolist()``) in ``TRANSFERS``;
- counts kernel launches in ``LAUNCHES["kernels"]``, as CuPy would make them: one per ufunc call (in place
  or not), per assignment, and per function, method or index whose result is new data; none for views
  (reshape, transpose, basic slices) or uninitialised allocations (``empty``). An estimate: CuPy fuses
  nothing by itself, but some of its functions launch more than one kernel (reductions, sorts).

NumPy functions called on StrictArrays still work through ``__array_ufunc__``/``__array_function__``, as
they do on CuPy arrays. What this cannot catch: CuPy functions that NumPy has and CuPy lacks (or whose
signatures differ); those need a real GPU.
"""
import contextlib
import sys
import types

import numpy as np

TRANSFERS = {"to_device": 0, "to_host": 0}
LAUNCHES = {"kernels": 0}
_NO_KERNEL = {"empty", "empty_like"}


def reset_transfers():
    TRANSFERS.update(to_device=0, to_host=0)


def _launched(result, inputs, name=""):
    """Count one kernel unless ``result`` is a view of one of ``inputs`` (or uninitialised memory)."""
    if name in _NO_KERNEL:
        return
    r = result._a if isinstance(result, StrictArray) else result
    if isinstance(r, np.ndarray) and any(isinstance(i, StrictArray) and np.may_share_memory(r, i._a) for i in inputs):
        return
    LAUNCHES["kernels"] += 1


def _unwrap(obj, where):
    if isinstance(obj, StrictArray):
        return obj._a
    if isinstance(obj, np.ndarray):
        raise TypeError(f"{where}: a NumPy array (host memory) mixed with device arrays; "
                        "move it with cupy.asarray first")
    if isinstance(obj, (list, tuple)):
        return type(obj)(_unwrap(o, where) for o in obj)
    if isinstance(obj, dict):
        return {k: _unwrap(v, where) for k, v in obj.items()}
    return obj


def _index(key):
    """An indexing key: CuPy takes host index arrays too, copying them to the device (counted)."""
    keys = key if isinstance(key, tuple) else (key,)
    out = []
    for k in keys:
        if isinstance(k, np.ndarray):
            TRANSFERS["to_device"] += 1
            out.append(k)
        else:
            out.append(_unwrap(k, "indexing"))
    return tuple(out) if isinstance(key, tuple) else out[0]


def _wrap(obj):
    if isinstance(obj, np.ndarray):
        return StrictArray(obj)
    if isinstance(obj, np.generic):  # CuPy reductions give 0-d device arrays, not host scalars
        return StrictArray(np.asarray(obj))
    if isinstance(obj, tuple):
        return tuple(_wrap(o) for o in obj)
    if isinstance(obj, list):
        return [_wrap(o) for o in obj]
    return obj


def _to_host():
    TRANSFERS["to_host"] += 1


class _DeviceId:
    id = 0


class StrictArray:
    """A 'device' array (see the module's docstring)."""

    __slots__ = ("_a",)
    __array_priority__ = 100
    device = _DeviceId()

    def __init__(self, a):
        self._a = a

    # -- what CuPy refuses ---------------------------------------------------------------------------
    def __array__(self, *args, **kwargs):
        raise TypeError("Implicit conversion to a NumPy array is not allowed (a stray NumPy call on device data); "
                        "use .get() or cupy.asnumpy() explicitly")

    # -- NumPy's protocols: NumPy functions on device arrays run on the device ---------------------------
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        where = f"numpy.{ufunc.__name__}"
        out = kwargs.get("out")
        if out is not None:
            kwargs["out"] = tuple(_unwrap(o, where) for o in out)
        r = getattr(ufunc, method)(*_unwrap(inputs, where), **kwargs)
        LAUNCHES["kernels"] += 1
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _wrap(r)

    def __array_function__(self, func, types_, args, kwargs):
        where = f"numpy.{func.__name__}"
        r = _wrap(func(*_unwrap(args, where), **_unwrap(kwargs, where)))
        _launched(r, args, func.__name__)
        return r

    # -- reads that copy to the host ---------------------------------------------------------------------
    def get(self):
        _to_host()
        return self._a.copy()

    def item(self, *args):
        _to_host()
        return self._a.item(*args)

    def tolist(self):
        _to_host()
        return self._a.tolist()

    def __float__(self):
        _to_host()
        return float(self._a)

    def __int__(self):
        _to_host()
        return int(self._a)

    def __bool__(self):
        _to_host()
        return bool(self._a)

    def __index__(self):
        _to_host()
        return self._a.__index__()

    # -- the rest behaves as the NumPy array inside ----------------------------------------------------
    def __getattr__(self, name):
        if name.startswith("__"):  # no __array_interface__ / __array_struct__: NumPy must not see the data
            raise AttributeError(name)
        attr = getattr(self._a, name)
        if callable(attr):
            def method(*args, **kwargs):
                r = _wrap(attr(*_unwrap(args, f"ndarray.{name}"), **_unwrap(kwargs, f"ndarray.{name}")))
                _launched(r, (self,), name)
                return r
            return method
        return _wrap(attr)

    def __getitem__(self, key):
        r = _wrap(self._a[_index(key)])
        _launched(r, (self,))
        return r

    def __setitem__(self, key, value):
        self._a[_index(key)] = _unwrap(value, "assignment")
        LAUNCHES["kernels"] += 1

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        return (_wrap(v) for v in self._a)

    def __repr__(self):
        return f"StrictArray({self._a!r})"

    __hash__ = None


def _binary(ufunc, reflected=False):
    if reflected:
        return lambda self, other: ufunc(other, self)
    return lambda self, other: ufunc(self, other)


def _inplace(ufunc):
    def op(self, other):
        ufunc(self, other, out=(self,))
        return self
    return op


for _name, _uf in [("add", np.add), ("sub", np.subtract), ("mul", np.multiply), ("truediv", np.true_divide),
                   ("floordiv", np.floor_divide), ("mod", np.remainder), ("pow", np.power),
                   ("matmul", np.matmul), ("and", np.bitwise_and), ("or", np.bitwise_or), ("xor", np.bitwise_xor)]:
    setattr(StrictArray, f"__{_name}__", _binary(_uf))
    setattr(StrictArray, f"__r{_name}__", _binary(_uf, reflected=True))
    if _uf is not np.matmul:
        setattr(StrictArray, f"__i{_name}__", _inplace(_uf))
for _name, _uf in [("lt", np.less), ("le", np.less_equal), ("gt", np.greater), ("ge", np.greater_equal),
                   ("eq", np.equal), ("ne", np.not_equal)]:
    setattr(StrictArray, f"__{_name}__", _binary(_uf))
for _name, _uf in [("neg", np.negative), ("pos", np.positive), ("abs", np.absolute), ("invert", np.invert)]:
    setattr(StrictArray, f"__{_name}__", lambda self, _uf=_uf: _uf(self))


# ---- the module ----------------------------------------------------------------------------------------
def _function(name, fn):
    def call(*args, **kwargs):
        r = _wrap(fn(*_unwrap(args, f"cupy.{name}"), **_unwrap(kwargs, f"cupy.{name}")))
        _launched(r, args, name)
        return r
    call.__name__ = name
    return call


def _asarray(a, dtype=None, order=None):
    if isinstance(a, StrictArray):
        return a if dtype is None or a.dtype == np.dtype(dtype) else a.astype(dtype)
    TRANSFERS["to_device"] += 1
    return StrictArray(np.array(a, dtype=dtype, order=order))


def _asnumpy(a):
    if isinstance(a, StrictArray):
        _to_host()
        return a._a.copy()
    return np.asarray(a)


class _Generator:
    """cupy.random.Generator: results on the device, and, as CuPy's (XORWOW), other numbers than NumPy's default
    generator gives for the same seed (Philox here): a test that draws its reference from the CPU's generator fails
    on this stand-in as it did on a real GPU."""

    def __init__(self, seed):
        self._g = np.random.Generator(np.random.Philox(seed))

    def __getattr__(self, name):
        return _function(f"random.Generator.{name}", getattr(self._g, name))


class _Module(types.ModuleType):
    def __getattr__(self, name):
        attr = getattr(np, name)
        if isinstance(attr, type) or not callable(attr):  # dtypes, constants
            return attr
        return _function(name, attr)


class _Device(contextlib.nullcontext):
    """cupy.cuda.Device: a context, and synchronize() (counted: timing device work needs it)."""
    synchronized = 0

    def __init__(self, index=0):
        super().__init__()
        self.id = index

    def synchronize(self):
        _Device.synchronized += 1


def _make_modules():
    cupy = _Module("cupy")
    cupy.ndarray = StrictArray
    cupy.asarray = cupy.array = _asarray
    cupy.asnumpy = _asnumpy
    cupy.get_array_module = lambda *a: cupy if any(isinstance(x, StrictArray) for x in a) else np
    cupy.random = types.SimpleNamespace(default_rng=_Generator)
    cupy.cuda = types.SimpleNamespace(
        runtime=types.SimpleNamespace(getDeviceCount=lambda: 1),
        Device=_Device)
    cupyx = types.ModuleType("cupyx")

    def scatter_add(out, key, values):
        np.add.at(out._a, _unwrap(key, "cupyx.scatter_add"), _unwrap(values, "cupyx.scatter_add"))
    cupyx.scatter_add = scatter_add
    special = types.ModuleType("cupyx.scipy.special")

    def erf(x):
        import math
        a = _unwrap(x, "cupyx.scipy.special.erf")
        return StrictArray(np.vectorize(math.erf, otypes=[a.dtype])(a) if a.size else a.copy())
    special.erf = erf
    scipy = types.ModuleType("cupyx.scipy")
    scipy.special = special
    cupyx.scipy = scipy
    return {"cupy": cupy, "cupyx": cupyx, "cupyx.scipy": scipy, "cupyx.scipy.special": special}


@contextlib.contextmanager
def installed():
    """Within the block, minidl sees this fake CuPy and one GPU; 'cuda' tensors hold StrictArrays."""
    from minidl import backend
    mods = _make_modules()
    saved_modules = {k: sys.modules.get(k) for k in mods}
    saved = backend._cupy, backend._CUPY_ERROR
    sys.modules.update(mods)
    backend._cupy, backend._CUPY_ERROR = mods["cupy"], None
    try:
        yield mods["cupy"]
    finally:
        backend._cupy, backend._CUPY_ERROR = saved
        for dev in [d for d in backend._generators if d.type == "cuda"]:
            del backend._generators[dev]  # fake-device generators must not outlive the fake
        for k, v in saved_modules.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
