"""minidl.load's reader: torch's zip format, read without torch.

``weights_only=True`` (the default, as torch.load's): pickle's Unpickler resolves only the globals of tensors and plain
data (and those a user allows with ``add_safe_globals``), so a file cannot run code. ``weights_only=False`` resolves
any global, for a file the user trusts (a whole model saved by minidl.save): torch's names still resolve to minidl's
own rebuild functions, and torch's classes (a torch model pickled whole) are refused, never imported.
"""
import pickle
import sys
import warnings
from collections import OrderedDict
from typing import NamedTuple

import numpy as np

from .. import backend
from ..autograd.size import Size
from ..autograd.tensor import Tensor

# NumPy dtype -> torch's storage class name, for reading (the writer's table, repeated: the writer imports this module)
_STORAGE_CLASS = {np.dtype(k): v for k, v in (
    (np.float32, "FloatStorage"), (np.float64, "DoubleStorage"), (np.float16, "HalfStorage"),
    (np.int64, "LongStorage"), (np.int32, "IntStorage"), (np.int16, "ShortStorage"), (np.int8, "CharStorage"),
    (np.uint8, "ByteStorage"), (np.bool_, "BoolStorage"), (np.complex64, "ComplexFloatStorage"),
    (np.complex128, "ComplexDoubleStorage"))}
# torch dtype name -> the NumPy dtype its bytes are read as; bfloat16 is read as its 16 bits, then widened to float32
_TORCH_DTYPES = {"float32": np.float32, "float64": np.float64, "float16": np.float16, "int64": np.int64,
                 "int32": np.int32, "int16": np.int16, "int8": np.int8, "uint8": np.uint8, "bool": np.bool_,
                 "complex64": np.complex64, "complex128": np.complex128, "uint16": np.uint16, "uint32": np.uint32,
                 "uint64": np.uint64, "bfloat16": np.uint16}
_SAFE_GLOBALS = []  # add_safe_globals' list: callables, or (callable, "module.name")


def _array_of(tensor):
    """An array saved inside an object (not a tensor there): minidl.save writes it as a tensor, read back so."""
    return tensor._data


def global_name(g):
    """``module.qualname`` of a class or function, as a pickle names it."""
    if isinstance(g, tuple):
        return g[1]
    return f"{getattr(g, '__module__', None)}.{getattr(g, '__qualname__', getattr(g, '__name__', g))}"


class WeightsOnlyError(pickle.UnpicklingError, ValueError):
    """torch's refusal of a global under weights_only=True (an UnpicklingError, as torch's; a ValueError too)."""


def _refusal(f, module, name):
    """torch's message for a global that weights_only=True does not allow."""
    full = f"{module}.{name}"
    hint = ""
    if module == "torch" or module.startswith("torch."):
        hint = (" It is a torch class or function: minidl cannot make torch's objects even with weights_only=False; "
                "to move a torch model, save its state_dict() in torch and load that into the minidl model.")
    return (f"Weights only load failed ({f}). This file can still be loaded, to do so you have two options, do those "
            "steps only if you trust the source of the checkpoint. \n\t(1) Re-running `minidl.load` with "
            "`weights_only` set to `False` will likely succeed, but it can result in arbitrary code execution. Do it "
            "only if you got the file from a trusted source.\n\t(2) Alternatively, to load with `weights_only=True` "
            "please check the recommended steps in the following error message.\n\tWeightsUnpickler error: "
            f"Unsupported global: GLOBAL {full} was not an allowed global by default. Please use "
            f"`minidl.serialization.add_safe_globals([{full}])` or the `minidl.serialization.safe_globals([{full}])` "
            "context manager to allowlist this global if you trust this class/function." + hint)


class _Malformed(ValueError):
    """A torch file that does not hold what its records say, or names something minidl.load does not load."""


class _StorageClass(NamedTuple):  # torch.<X>Storage as named in a file (immutable: a pickle's BUILD cannot alter it)
    name: str
    dtype: object  # the NumPy dtype its bytes are read as; None for torch.UntypedStorage (bytes)


class _TorchDtype(NamedTuple):  # torch.<dtype> as named in a file
    name: str
    dtype: object


class _TorchClass(NamedTuple):  # torch.Tensor or torch.nn.Parameter, as _rebuild_from_type_v2 names them
    name: str


class _Storage(NamedTuple):
    data: np.ndarray  # the storage's elements (bytes for an untyped storage)
    cls: _StorageClass


def _ints(v):
    return isinstance(v, tuple) and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in v)


class _TorchFile:
    """One torch.save archive being read: the storages read so far, the globals a file may name (bound methods and
    immutable values, made per file), and the rebuild functions they stand for."""

    def __init__(self, z, prefix, map_location):
        self.z, self.prefix, self.map_location = z, prefix, map_location
        self.names_torch_values = False  # a torch dtype or class was named: plain() turns them into minidl's
        self.swap = prefix + "byteorder" in z.namelist() and z.read(prefix + "byteorder").decode() != sys.byteorder
        self.storages, self.bfloat16 = {}, False
        self.allowed = {"collections.OrderedDict": OrderedDict, "builtins.set": set, "builtins.frozenset": frozenset,
                        "builtins.complex": complex, "torch.Size": Size, "_codecs.encode": self.encode,
                        "torch._utils._rebuild_tensor": self.rebuild_tensor,
                        "torch._utils._rebuild_tensor_v2": self.rebuild_tensor_v2,
                        "torch._utils._rebuild_tensor_v3": self.rebuild_tensor_v3,
                        "torch._utils._rebuild_parameter": self.rebuild_parameter,
                        "torch._utils._rebuild_parameter_with_state": self.rebuild_parameter_with_state,
                        "torch._tensor._rebuild_from_type_v2": self.rebuild_from_type_v2,
                        "torch.Tensor": _TorchClass("Tensor"), "torch.nn.parameter.Parameter": _TorchClass("Parameter"),
                        "torch.storage.UntypedStorage": _StorageClass("UntypedStorage", None),
                        "torch.UntypedStorage": _StorageClass("UntypedStorage", None)}
        self.allowed.update({f"torch.{cls}": _StorageClass(cls, dt) for dt, cls in _STORAGE_CLASS.items()})
        self.allowed["torch.BFloat16Storage"] = _StorageClass("BFloat16Storage", np.dtype(np.uint16))
        self.allowed.update({f"torch.{n}": _TorchDtype(n, np.dtype(dt)) for n, dt in _TORCH_DTYPES.items()})

    def storage(self, pid):
        """The storage a persistent id names, read once (views of one storage share it)."""
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], _StorageClass)
                and isinstance(pid[2], str) and _ints(pid[4:])):
            raise _Malformed(f"it refers to {pid!r}, which is not a tensor storage")
        _, cls, key, _, numel = pid
        if key not in self.storages:
            try:
                info = self.z.getinfo(f"{self.prefix}data/{key}")
            except KeyError:
                raise _Malformed(f"its storage data/{key} is missing") from None
            dtype = cls.dtype or np.dtype(np.uint8)
            if info.file_size != numel * dtype.itemsize:
                raise _Malformed(f"its storage data/{key} holds {info.file_size} bytes where {numel} elements of "
                                 f"{cls.name} take {numel * dtype.itemsize}")
            data = np.empty(info.file_size, np.uint8)
            with self.z.open(info) as src:
                if src.readinto(memoryview(data)) != info.file_size:
                    raise _Malformed(f"its storage data/{key} is truncated")
            data = data.view(dtype)
            if self.swap and cls.dtype is not None:
                data.byteswap(inplace=True)
            self.storages[key] = _Storage(data, cls)
        storage = self.storages[key]
        if storage.cls != cls:
            raise _Malformed(f"its storage data/{key} is named as {storage.cls.name} and as {cls.name}")
        return storage

    def tensor(self, storage, offset, size, stride, requires_grad=False, dtype=None):
        """A Tensor viewing ``storage`` (as torch's as_strided), every index checked to lie inside it."""
        if not (isinstance(storage, _Storage) and _ints((offset,)) and _ints(size) and _ints(stride)
                and len(size) == len(stride) and isinstance(requires_grad, bool)):
            raise _Malformed(f"it rebuilds a tensor from {type(storage).__name__}, offset {offset!r}, size {size!r}, "
                             f"stride {stride!r}: not a storage, offset, and sizes and strides of equal length")
        data, bfloat16 = storage.data, storage.cls.name == "BFloat16Storage"
        if dtype is not None:  # _rebuild_tensor_v3: bytes read as ``dtype``
            if not isinstance(dtype, _TorchDtype) or storage.cls.dtype not in (None, dtype.dtype):
                raise _Malformed(f"it reads a {storage.cls.name} as {dtype!r}")
            raw, bfloat16 = data.view(np.uint8), dtype.name == "bfloat16"
            data = raw[:raw.size - raw.size % dtype.dtype.itemsize].view(dtype.dtype)
            if self.swap and storage.cls.dtype is None:
                data = data.byteswap()
        if not all(size):
            arr = np.empty(size, data.dtype)
        elif offset + sum((n - 1) * s for n, s in zip(size, stride)) >= data.size:
            raise _Malformed(f"a tensor of size {tuple(size)}, stride {tuple(stride)} at offset {offset} reaches past "
                             f"the end of its storage of {data.size} elements")
        else:
            step = data.dtype.itemsize
            arr = np.ndarray(size, data.dtype, buffer=data, offset=offset * step, strides=[s * step for s in stride])
        if bfloat16:  # minidl has no bfloat16: its values, exactly, as float32
            arr, self.bfloat16 = (arr.astype(np.uint32) << 16).view(np.float32), True
        t = Tensor._make(arr if self.map_location is None else backend.to_device(arr, self.map_location))
        return t.requires_grad_(True) if requires_grad else t

    def rebuild_tensor(self, storage, offset, size, stride):
        return self.tensor(storage, offset, size, stride)

    def rebuild_tensor_v2(self, storage, offset, size, stride, requires_grad, backward_hooks, metadata=None):
        return self.tensor(storage, offset, size, stride, requires_grad)

    def rebuild_tensor_v3(self, storage, offset, size, stride, requires_grad, backward_hooks, dtype, metadata=None):
        return self.tensor(storage, offset, size, stride, requires_grad, dtype)

    def rebuild_parameter(self, data, requires_grad, backward_hooks):
        from ..nn.parameter import Parameter
        if not isinstance(data, Tensor) or not isinstance(requires_grad, bool):
            raise _Malformed(f"it makes a Parameter of a {type(data).__name__}")
        return Parameter(data, requires_grad=requires_grad)

    def rebuild_parameter_with_state(self, data, requires_grad, backward_hooks, state):
        if state:
            raise _Malformed("it saves attributes on a Parameter, which minidl.load does not set")
        return self.rebuild_parameter(data, requires_grad, backward_hooks)

    def rebuild_from_type_v2(self, func, new_type, args, state):
        if func not in (self.rebuild_tensor, self.rebuild_tensor_v2, self.rebuild_tensor_v3) or \
                new_type != _TorchClass("Tensor") or not isinstance(args, tuple) or state:
            raise _Malformed(f"it rebuilds a {getattr(new_type, 'name', new_type)!r} with attributes or through "
                             f"{func!r}: only plain tensors are loaded")
        return func(*args)

    def encode(self, text, encoding="latin1"):  # how protocol 2 pickles bytes
        if not isinstance(text, str) or encoding != "latin1":
            raise _Malformed("it makes bytes other than as pickle does")
        return text.encode("latin1")

    def plain(self, obj, seen=None):
        """``obj`` with the torch dtypes named in its lists, tuples and dicts as minidl dtypes (lists and dicts changed
        in place); the rest as it came."""
        if not self.names_torch_values:
            return obj
        seen = set() if seen is None else seen
        if isinstance(obj, _TorchDtype):
            if obj.name == "bfloat16":
                raise _Malformed("it holds the dtype torch.bfloat16, which minidl does not have")
            return backend.wrap_dtype(obj.dtype)
        if isinstance(obj, (_StorageClass, _TorchClass)):
            raise _Malformed(f"it holds torch.{obj.name} as a value")
        if id(obj) in seen or not isinstance(obj, (list, tuple, dict)):
            return obj
        seen.add(id(obj))
        if isinstance(obj, tuple):  # (a Size or a named tuple holds no dtype here: kept as it is)
            return tuple(self.plain(v, seen) for v in obj) if type(obj) is tuple else obj
        for k, v in (obj.items() if isinstance(obj, dict) else enumerate(obj)):
            obj[k] = self.plain(v, seen)
        return obj


class _Unpickler(pickle.Unpickler):
    """pickle's Unpickler for one torch file. ``weights_only``: it resolves only the globals a _TorchFile allows
    (tensors and plain data) and those :func:`add_safe_globals` allows, never code. Else any global, torch's names as
    minidl's rebuild functions, torch's own classes refused (minidl never imports torch)."""

    def __init__(self, file, torch_file, weights_only, f):
        super().__init__(file)
        self.torch_file, self.weights_only, self.f = torch_file, weights_only, f

    def find_class(self, module, name):
        if module == "__builtin__":  # protocol 2 names Python 3's builtins by their Python 2 module, as torch reads it
            module = "builtins"
        full = f"{module}.{name}"
        found = self.torch_file.allowed.get(full)
        if found is not None:
            self.torch_file.names_torch_values |= isinstance(found, (_TorchDtype, _StorageClass, _TorchClass))
            return found
        if self.weights_only:
            for g in _SAFE_GLOBALS:
                if global_name(g) == full:
                    return g[0] if isinstance(g, tuple) else g
            raise WeightsOnlyError(_refusal(self.f, module, name))
        if module == "torch" or module.startswith("torch."):
            raise _Malformed(f"it names {full}, a torch class or function: minidl cannot make torch's objects; to "
                             "move a torch model, save its state_dict() in torch and load that into the minidl model")
        return super().find_class(module, name)

    def persistent_load(self, pid):
        return self.torch_file.storage(pid)


def load_torch_zip(z, f, map_location, weights_only):
    """The object a torch.save archive (or minidl.save's) holds."""
    names = z.namelist()
    pkl = [n for n in names if n.count("/") == 1 and n.endswith("/data.pkl")]
    if len(pkl) != 1:
        kind = "a TorchScript archive (torch.jit.save)" if any(n.endswith("/constants.pkl") for n in names) else \
            "neither a minidl file nor one written by torch.save"
        raise ValueError(f"load: {f} is {kind}: no single <folder>/data.pkl among its {len(names)} records")
    prefix = pkl[0][:-len("data.pkl")]
    torch_file = _TorchFile(z, prefix, map_location)
    try:
        with z.open(pkl[0]) as src:
            obj = torch_file.plain(_Unpickler(src, torch_file, weights_only, f).load())
    except (MemoryError, WeightsOnlyError):
        raise
    except _Malformed as exc:
        raise ValueError(f"load: {f}: {exc}") from None
    except Exception as exc:  # a damaged pickle or archive: opcodes cut short, bad CRC, wrong argument counts
        if not weights_only:  # the objects' own code ran: its error is the user's to see
            raise
        raise ValueError(f"load: {f} is not a readable torch file ({type(exc).__name__}: {exc})") from None
    if torch_file.bfloat16:
        warnings.warn(f"load: {f} holds bfloat16 tensors, which minidl does not have: they are loaded as float32 "
                      "(exactly)", stacklevel=3)
    return obj
