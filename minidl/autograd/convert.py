"""Conversions between Python data, NumPy/CuPy arrays, torch tensors and DLPack: both ways, so tensor.py can be
about the Tensor itself.

- Into an array: ``_as_array`` takes what ``minidl.tensor(data)`` takes (numbers, nested lists, NumPy or CuPy
  arrays, torch tensors, minidl tensors and lists of them) and gives one array, by PyTorch's dtype rules.
- Out of a tensor: ``_Interop``, the base class of Tensor, holds the methods that hand a tensor's data on: to NumPy
  (``numpy()``, ``__array__``), to Python (``item()``, ``tolist()``, ``float(t)``), to other libraries without a copy
  (``__array_interface__``, ``__cuda_array_interface__``, DLPack: ``torch.from_dlpack(t)``, ``cupy.asarray(t)``), to
  another dtype or device (``float()``, ``cpu()``, ``type()``), to pickle and to shared memory.
- torch's typed tensor classes and names: ``minidl.FloatTensor`` and kin, ``x.type()`` == 'minidl.FloatTensor'.

Dependencies go one way: tensor.py imports this module, this module never imports tensor.py. It knows a minidl
tensor as an ``_Interop`` (every Tensor is one), and the typed tensor classes are made for the Tensor class they are
given (``tensor_types(Tensor)``, called by the package face, minidl/__init__.py)."""
import copy

import numpy as np

from .. import backend
from ..backend.errors import RuntimeValueError
from .capturing import not_capturable


# -- into an array -------------------------------------------------------------------------------------------------
def _as_array(data, dtype=None, device=None, op="tensor"):
    """Convert Python data / NumPy / CuPy / torch tensors into an array, PyTorch's dtype rules."""
    dtype = backend.as_dtype(dtype, op)
    if isinstance(data, _Interop):
        arr = data._data
    elif type(data).__module__ == "torch":
        arr = data.detach().cpu().numpy()
    elif backend.is_device_array(data):
        arr = data
    else:
        if isinstance(data, (list, tuple)) and any(isinstance(d, _Interop) for d in _flatten(data)):
            data = _nested_numpy(data)
        try:
            arr = np.asarray(data)
        except (ValueError, TypeError) as exc:
            raise TypeError(f"{op}: cannot make a tensor from {type(data).__name__}: {exc}") from None
        if dtype is None and arr.dtype.kind == "f":
            arr = arr.astype(backend.default_dtype()) if not isinstance(data, np.ndarray) else arr
        if dtype is None and arr.dtype.kind in "iu" and not isinstance(data, np.ndarray):
            arr = arr.astype(np.int64)
    if arr.dtype.kind not in "biuf":  # object (ragged), str, bytes, complex, datetimes ...
        raise TypeError(f"{op}: cannot make a tensor from {type(data).__name__} of dtype {arr.dtype} "
                        "(expected numbers or bools; ragged or non-numeric data)")
    if dtype is not None and arr.dtype != dtype:
        arr = arr.astype(dtype)
    if device is not None:
        arr = backend.to_device(arr, device)
    return arr


def _flatten(seq):
    for s in seq:
        if isinstance(s, (list, tuple)):
            yield from _flatten(s)
        else:
            yield s


def _nested_numpy(seq):
    if isinstance(seq, (list, tuple)):
        return [_nested_numpy(s) for s in seq]
    return backend.to_device(seq._data, "cpu") if isinstance(seq, _Interop) else seq


def _raw(x):
    return x._data if isinstance(x, _Interop) else x


# -- out of a tensor -----------------------------------------------------------------------------------------------
class _Interop:
    """Tensor's base: its conversions to NumPy, Python, other libraries, other dtypes and devices, pickle and shared
    memory. Everything here reads the tensor's array, ``_data``; ``to()`` (an op) and the rest are Tensor's."""

    __slots__ = ()  # Tensor's instances keep only Tensor's __slots__ (no __dict__)
    __array_priority__ = 1000  # NumPy defers to Tensor's operators: np.float32(2) * t is a Tensor

    # -- to NumPy --------------------------------------------------------------------------------------------------
    def numpy(self):
        """The NumPy array behind this CPU tensor (shared, not copied)."""
        not_capturable("numpy()")
        if self.requires_grad:
            raise RuntimeError("numpy(): the tensor requires grad; call tensor.detach().numpy()")
        if self.device.type != "cpu":
            raise TypeError(f"numpy(): the tensor is on {self.device}; call tensor.cpu().numpy()")
        return self._data

    def __array__(self, dtype=None, copy=None):
        arr = self.numpy()
        return arr if dtype is None else arr.astype(dtype)

    # -- to other libraries, no copy: torch.tensor(t), torch.as_tensor(t), torch.from_dlpack(t), cupy.asarray(t) --
    @property
    def __array_interface__(self):
        if backend.is_device_array(self._data):
            raise AttributeError("__array_interface__: a device tensor has no host memory to share")
        return self._data.__array_interface__

    @property
    def __cuda_array_interface__(self):
        if not backend.is_device_array(self._data):
            raise AttributeError("__cuda_array_interface__: a CPU tensor")
        return self._data.__cuda_array_interface__

    def __dlpack__(self, *args, **kwargs):
        return self._data.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self):
        return self._data.__dlpack_device__()

    # -- to Python ---------------------------------------------------------------------------------------------------
    def item(self):
        not_capturable("item()")
        if self._data.size != 1:
            raise RuntimeValueError("item(): only one-element tensors can be converted to a Python scalar, got shape "
                                    f"{tuple(self.shape)}")
        return self._data.item()

    def tolist(self):
        not_capturable("tolist()")
        return backend.to_device(self._data, "cpu").tolist()

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __bool__(self):
        not_capturable("bool(tensor)")
        if self._data.size != 1:
            raise RuntimeError(f"bool(): the truth value of a tensor with {self._data.size} elements is "
                               "ambiguous")
        return bool(self.item())

    def __index__(self):
        if self._data.dtype.kind not in "iub" or self._data.size != 1:
            raise TypeError("only integer tensors of a single element can be used as an index")
        return int(self.item())

    # -- to another device or dtype: shorthands for Tensor.to() -----------------------------------------------------
    def cpu(self):
        return self.to("cpu")

    def cuda(self, device=None):
        return self.to("cuda" if device is None else f"cuda:{int(device)}" if not isinstance(device, str)
                       else device)

    def float(self):
        return self.to(np.float32)

    def double(self):
        return self.to(np.float64)

    def half(self):
        return self.to(np.float16)

    def long(self):
        return self.to(np.int64)

    def int(self):
        return self.to(np.int32)

    def short(self):
        return self.to(np.int16)

    def char(self):
        return self.to(np.int8)

    def byte(self):
        return self.to(np.uint8)

    def bool(self):
        return self.to(np.bool_)

    def type_as(self, other):
        return self.to(other.dtype)

    def type(self, dtype=None):
        """Without an argument, the type's name as torch spells it ('minidl.FloatTensor'); with a dtype (or
        such a name), this tensor converted to it."""
        if dtype is None:
            name = _TYPE_NAMES.get(self.dtype, self.dtype.name)
            return f"minidl.{'cuda.' if self.device.type == 'cuda' else ''}{name}"
        if isinstance(dtype, type) and getattr(dtype, "is_tensor_type", False):  # x.type(minidl.FloatTensor)
            return self.to(dtype.dtype)
        if isinstance(dtype, str):
            short = dtype.split(".")[-1]
            if short not in _TYPE_DTYPES:
                raise RuntimeValueError(f"type: unknown tensor type {dtype!r}; expected one of {sorted(_TYPE_DTYPES)}")
            dtype = _TYPE_DTYPES[short]
        return self.to(dtype)

    # -- to pickle and to shared memory -----------------------------------------------------------------------------
    def __reduce_ex__(self, protocol):
        """Pickle (and minidl.save of a whole object) as torch pickles a tensor: its data (on the host) and
        ``requires_grad``; the graph, ``.grad`` and hooks are not kept, so the tensor comes back a leaf. Tensors
        sent to another process through minidl.multiprocessing travel through shared memory instead."""
        state = getattr(self, "__dict__", None) or None
        return _rebuild_tensor, (type(self), backend.to_device(self._data, "cpu"), str(self.device),
                                 bool(self.requires_grad), state)

    def __deepcopy__(self, memo):
        """A leaf with a copy of the data (the same layout), ``requires_grad`` and a copy of ``.grad``."""
        t = type(self)._make(self._data.copy(order="K"), self.requires_grad)
        memo[id(self)] = t
        if self.grad is not None:
            t.grad = copy.deepcopy(self.grad, memo)
        if getattr(self, "__dict__", None):
            t.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return t

    def share_memory_(self):
        """Move this tensor's data into shared memory (as torch's): processes it is sent to, or forked after
        this call, then read and write the same elements. A no-op when already shared; a GPU tensor raises.
        Tensors that viewed the old array keep viewing it."""
        from ..backend.shared_memory import share_array
        self._data = share_array(self._data)
        return self

    def is_shared(self):
        """Whether this tensor's data lives in shared memory (see :meth:`share_memory_`)."""
        from ..backend.shared_memory import storage_of
        return storage_of(self._data) is not None


def _rebuild_tensor(cls, array, device, requires_grad, state=None):
    """The tensor :meth:`Tensor.__reduce_ex__` pickled (a leaf on ``device``)."""
    t = cls._make(array if device == "cpu" else backend.to_device(array, device), requires_grad)
    if state:
        t.__dict__.update(state)
    return t


# -- torch's typed tensor classes and names ------------------------------------------------------------------------
_TYPE_NAMES = {np.dtype(np.float32): "FloatTensor", np.dtype(np.float64): "DoubleTensor",
               np.dtype(np.float16): "HalfTensor", np.dtype(np.int64): "LongTensor", np.dtype(np.int32): "IntTensor",
               np.dtype(np.int16): "ShortTensor", np.dtype(np.int8): "CharTensor", np.dtype(np.uint8): "ByteTensor",
               np.dtype(np.bool_): "BoolTensor"}
_TYPE_DTYPES = {name: dtype for dtype, name in _TYPE_NAMES.items()}


class _TensorTypeMeta(type):
    """torch's typed tensor classes: ``isinstance(x, FloatTensor)`` asks for a CPU float32 tensor."""

    def __instancecheck__(cls, obj):
        return isinstance(obj, cls.tensor_class) and obj.device.type == "cpu" and obj._data.dtype == cls.dtype

    def __repr__(cls):
        return f"<class 'minidl.{cls.__name__}'>"


def _tensor_type(name, np_dtype, tensor_cls):
    dt = backend.wrap_dtype(np.dtype(np_dtype))

    def __new__(cls, *args, device=None, requires_grad=False):
        return tensor_cls(*args, dtype=dt, device=device, requires_grad=requires_grad)
    doc = f"``{name}(data)`` or ``{name}(sizes...)``: a tensor of dtype {dt!r}, as torch.{name}."
    return _TensorTypeMeta(name, (), {"__new__": __new__, "dtype": dt, "is_tensor_type": True,
                                      "tensor_class": tensor_cls, "__doc__": doc})


def tensor_types(tensor_cls):
    """torch's typed tensor classes by name (FloatTensor ... BoolTensor), each making and recognising ``tensor_cls``
    tensors of its dtype (minidl/__init__.py makes them public for Tensor)."""
    return {name: _tensor_type(name, dt, tensor_cls) for dt, name in _TYPE_NAMES.items()}
