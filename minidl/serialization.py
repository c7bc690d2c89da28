"""minidl.save and minidl.load in torch's file format, written and read without torch (torch.serialization's place):
``torch.load(path, weights_only=True)`` reads what minidl.save writes, and minidl.load reads what torch.save writes.
"""
import pickle
import struct
import sys
import warnings
import zipfile
from collections import OrderedDict
from typing import NamedTuple

import numpy as np

from . import backend
from .autograd.tensor import Tensor
from .utils.checkpoint import _cpu, _join, _read, write_atomically

# ---- minidl.save / minidl.load: torch's file format, written and read without torch -------------------------------
#
# torch.save writes a zip archive of one folder: data.pkl (a protocol-2 pickle in which every tensor is a call of
# torch._utils._rebuild_tensor_v2 on a storage named by a persistent id), data/<key> (each storage's raw bytes),
# byteorder and version. minidl emits those opcodes itself (pickle's Pickler would import torch to check the globals
# it names) and reads them with an Unpickler that resolves only the names of tensors and plain data, as
# torch.load(weights_only=True) does: loading a file never runs code from it.

SAVE_FORMAT = "minidl-save-1"  # the .npz format minidl.save wrote before; load still reads it

# NumPy dtype -> torch's storage class: the dtypes minidl writes (with _rebuild_tensor_v2, as torch.save does)
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
_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"  # torch.save before 1.6
_ALIGNMENT = 64  # storages start at multiples of 64 bytes in the file, as torch writes them (mmap=True needs it)


def _le(dtype):
    return dtype.newbyteorder("<")


def _leaves(obj, where, found, active):
    """Check that ``obj`` holds only what the file format holds and collect its tensors and arrays into ``found``
    (id -> (object, host array)), in the order the pickle meets them."""
    if isinstance(obj, Tensor) or backend.is_device_array(obj):
        if id(obj) not in found:
            arr = _cpu(obj)
            if _le(arr.dtype) not in _STORAGE_CLASS:
                raise TypeError(f"save: {where} has dtype {arr.dtype}, which minidl does not write to torch's format")
            found[id(obj)] = (obj, arr)
    elif isinstance(obj, (dict, list, tuple)):
        if id(obj) in active:
            raise ValueError(f"save: {where} holds itself; a structure with a cycle cannot be saved")
        active.add(id(obj))
        items = obj.items() if isinstance(obj, dict) else enumerate(obj)
        for i, (k, v) in enumerate(items):
            if isinstance(obj, dict):
                _leaves(k, f"{where} (key {i})", found, active)
            _leaves(v, f"{where}[{k!r}]", found, active)
        active.discard(id(obj))
    elif not (obj is None or isinstance(obj, (bool, int, float, str, np.bool_, np.integer, np.floating))):
        raise TypeError(f"save: cannot store a value of type {type(obj).__name__} at {where!r}")


def _root(a):
    """The array whose memory ``a`` views (``a`` itself when it owns its memory)."""
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def _placement_in(root, a):
    """(offset, strides) of ``a`` in elements of ``root``'s memory, or None where a storage of root cannot hold it."""
    size = a.dtype.itemsize
    offset = a.__array_interface__["data"][0] - root.__array_interface__["data"][0]
    if (a.dtype != root.dtype or not root.dtype.isnative or not root.flags.c_contiguous or offset % size
            or any(st < 0 or st % size for st in a.strides)):
        return None
    return offset // size, tuple(st // size for st in a.strides)


def _plan_storages(found):
    """Storages for the collected arrays: arrays that view one array share one storage, the whole of it (as torch
    writes views of one storage); any other array gets a storage of its own elements in C order.
    Returns (placements: id -> (key, offset, shape, strides), storages: {key: contiguous little-endian 1-D array})."""
    groups = {}
    for k, (_, arr) in found.items():
        groups.setdefault(id(_root(arr)), []).append(k)
    placements, storages = {}, {}

    def add(data):
        key = str(len(storages))
        storages[key] = data.reshape(-1)
        return key

    for members in groups.values():
        root, shared_key = _root(found[members[0]][1]), None
        for m in members:
            arr = found[m][1]
            where = _placement_in(root, arr) if len(members) > 1 else None
            if where is None:
                own = np.asarray(arr, dtype=_le(arr.dtype), order="C")  # (ascontiguousarray makes 0-d 1-d)
                placements[m] = (add(own), 0, arr.shape, tuple(st // arr.dtype.itemsize for st in own.strides))
                continue
            if shared_key is None:
                shared_key = add(root.astype(_le(root.dtype), copy=False))
            placements[m] = (shared_key, where[0], arr.shape, where[1])
    return placements, storages


class _TorchPickler:
    """Emits the protocol-2 pickle that torch.save writes as data.pkl: dicts (OrderedDicts as OrderedDicts), lists,
    tuples, strings, numbers, None, and tensors (Parameters as torch._utils._rebuild_parameter) as
    torch._utils._rebuild_tensor_v2 calls on storages named by persistent ids ('storage', torch.<X>Storage, key,
    'cpu', numel). Everything was checked by _leaves; globals are memoized."""

    def __init__(self, found, placements, storages):
        from .nn.parameter import Parameter
        self.found, self.placements, self.storages, self.parameter = found, placements, storages, Parameter
        self.out, self.memo = bytearray(pickle.PROTO + b"\x02"), {}

    def dump(self, obj):
        self.save(obj)
        self.out += pickle.STOP
        return bytes(self.out)

    def save(self, obj):
        if obj is None:
            self.out += pickle.NONE
        elif isinstance(obj, (bool, np.bool_)):
            self.out += pickle.NEWTRUE if obj else pickle.NEWFALSE
        elif isinstance(obj, (int, np.integer)):
            self.int(int(obj))
        elif isinstance(obj, (float, np.floating)):
            self.out += pickle.BINFLOAT + struct.pack(">d", float(obj))
        elif isinstance(obj, str):
            data = obj.encode("utf-8", "surrogatepass")
            self.out += pickle.BINUNICODE + struct.pack("<I", len(data)) + data
        elif id(obj) in self.found:
            self.tensor(obj)
        elif isinstance(obj, tuple):
            self.tuple(obj)
        elif isinstance(obj, list):
            self.out += pickle.EMPTY_LIST
            if obj:
                self.out += pickle.MARK
                for v in obj:
                    self.save(v)
                self.out += pickle.APPENDS
        else:
            self.dict(obj)

    def int(self, v):
        if 0 <= v < 256:
            self.out += pickle.BININT1 + bytes([v])
        elif 0 <= v < 65536:
            self.out += pickle.BININT2 + struct.pack("<H", v)
        elif -2 ** 31 <= v < 2 ** 31:
            self.out += pickle.BININT + struct.pack("<i", v)
        else:
            data = v.to_bytes(v.bit_length() // 8 + 1, "little", signed=True)
            self.out += (pickle.LONG1 + bytes([len(data)]) if len(data) < 256
                         else pickle.LONG4 + struct.pack("<i", len(data))) + data

    def tuple(self, items):
        self.out += pickle.MARK
        for v in items:
            self.save(v)
        self.out += pickle.TUPLE

    def dict(self, obj):
        if isinstance(obj, OrderedDict):
            self.call("collections", "OrderedDict", ())
        else:
            self.out += pickle.EMPTY_DICT
        if obj:
            self.out += pickle.MARK
            for k, v in obj.items():
                self.save(k)
                self.save(v)
            self.out += pickle.SETITEMS

    def global_(self, module, name):
        """GLOBAL module.name, memoized (BINPUT the first time, BINGET after)."""
        index = self.memo.get((module, name))
        if index is None:
            index = self.memo[module, name] = len(self.memo)
            self.out += pickle.GLOBAL + f"{module}\n{name}\n".encode() + pickle.BINPUT + bytes([index])
        else:
            self.out += pickle.BINGET + bytes([index])

    def call(self, module, name, args):
        """module.name(*args), with ``args`` saved as they are (a tuple of Python values)."""
        self.global_(module, name)
        self.tuple(args)
        self.out += pickle.REDUCE

    def tensor(self, obj):
        key, offset, shape, strides = self.placements[id(obj)]
        storage = self.storages[key]
        is_param = isinstance(obj, self.parameter)
        requires_grad = bool(getattr(obj, "requires_grad", False))
        if is_param:
            self.global_("torch._utils", "_rebuild_parameter")
            self.out += pickle.MARK
        self.global_("torch._utils", "_rebuild_tensor_v2")
        self.out += pickle.MARK + pickle.MARK
        self.save("storage")
        self.global_("torch", _STORAGE_CLASS[storage.dtype])
        for v in (key, "cpu", storage.size):
            self.save(v)
        self.out += pickle.TUPLE + pickle.BINPERSID
        for v in (offset, tuple(shape), tuple(strides), requires_grad and not is_param):
            self.save(v)
        self.call("collections", "OrderedDict", ())  # backward hooks: none
        self.out += pickle.TUPLE + pickle.REDUCE
        if is_param:
            self.save(requires_grad)
            self.call("collections", "OrderedDict", ())
            self.out += pickle.TUPLE + pickle.REDUCE


def _write_record(z, name, data):
    """One stored (uncompressed) record of torch's archive, its data aligned as torch aligns it."""
    info = zipfile.ZipInfo(f"archive/{name}", date_time=(1980, 1, 1, 0, 0, 0))
    size = memoryview(data).nbytes
    # where the data will start: the local header (30 bytes, the name, the extra field; zipfile adds a 20-byte
    # zip64 field where the size comes within 5% of 4 GiB) at the archive's current end
    header = z.start_dir + 30 + len(info.filename) + (20 if size * 1.05 > zipfile.ZIP64_LIMIT else 0)
    pad = -header % _ALIGNMENT
    if 0 < pad < 4:  # an extra field is at least its 4-byte head
        pad += _ALIGNMENT
    if pad:
        info.extra = b"FB" + struct.pack("<H", pad - 4) + b"Z" * (pad - 4)  # torch's (miniz's) padding field
    z.writestr(info, data)


def _write_torch_zip(f, data_pkl, storages):
    with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as z:
        _write_record(z, "data.pkl", data_pkl)
        _write_record(z, "byteorder", b"little")
        for key, storage in storages.items():
            _write_record(z, f"data/{key}", memoryview(storage.view(np.uint8)))
        _write_record(z, "version", b"3\n")


def save(obj, f):
    """torch.save's place: ``obj`` (a state_dict, or dicts/lists/tuples of Tensors, arrays, numbers, strings, None)
    to ``f`` (a path, written atomically, or a binary file object) in torch's file format, which
    ``torch.load(f, weights_only=True)`` reads (Tensors and arrays both come back as tensors, on the CPU; tensors
    that view one array share one storage, as torch's do). torch is not needed. A whole module or optimizer is not
    saved: save its ``state_dict()``."""
    from .nn.module import Module
    from .optim.optimizer import Optimizer
    if isinstance(obj, (Module, Optimizer)):
        raise TypeError(f"save: minidl saves data, not objects: save {type(obj).__name__}'s .state_dict() "
                        f"(minidl.save(model.state_dict(), path)), then load it with "
                        f"model.load_state_dict(minidl.load(path)); a whole model cannot be pickled here")
    found = {}
    _leaves(obj, "obj", found, set())
    placements, storages = _plan_storages(found)
    data_pkl = _TorchPickler(found, placements, storages).dump(obj)
    write_atomically(f, lambda out: _write_torch_zip(out, data_pkl, storages))


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
        self.swap = prefix + "byteorder" in z.namelist() and z.read(prefix + "byteorder").decode() != sys.byteorder
        self.storages, self.bfloat16 = {}, False
        self.allowed = {"collections.OrderedDict": OrderedDict, "builtins.set": set, "builtins.frozenset": frozenset,
                        "builtins.complex": complex, "torch.Size": tuple, "_codecs.encode": self.encode,
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
        from .nn.parameter import Parameter
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

    def plain(self, obj):
        """``obj`` with torch dtypes named in it as minidl dtypes (the rest as it came)."""
        if isinstance(obj, _TorchDtype):
            if obj.name == "bfloat16":
                raise _Malformed("it holds the dtype torch.bfloat16, which minidl does not have")
            return backend.wrap_dtype(obj.dtype)
        if isinstance(obj, (_StorageClass, _TorchClass)):
            raise _Malformed(f"it holds torch.{obj.name} as a value")
        if type(obj) in (list, tuple):
            return type(obj)(self.plain(v) for v in obj)
        if isinstance(obj, dict):
            for k, v in obj.items():
                obj[k] = self.plain(v)
        return obj


class _RestrictedUnpickler(pickle.Unpickler):
    """pickle's Unpickler resolving only the globals a _TorchFile allows: tensors and plain data, never code."""

    def __init__(self, file, torch_file):
        super().__init__(file)
        self.torch_file = torch_file

    def find_class(self, module, name):
        if module == "__builtin__":  # protocol 2 names Python 3's builtins by their Python 2 module, as torch reads it
            module = "builtins"
        try:
            return self.torch_file.allowed[f"{module}.{name}"]
        except KeyError:
            raise _Malformed(f"it names {module}.{name}, which minidl.load does not load: only tensors and plain "
                             "data are loaded, as by torch.load(weights_only=True); to move a model, save its "
                             "state_dict()") from None

    def persistent_load(self, pid):
        return self.torch_file.storage(pid)


def _load_torch_zip(z, f, map_location):
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
            obj = torch_file.plain(_RestrictedUnpickler(src, torch_file).load())
    except MemoryError:
        raise
    except _Malformed as exc:
        raise ValueError(f"load: {f}: {exc}") from None
    except Exception as exc:  # a damaged pickle or archive: opcodes cut short, bad CRC, wrong argument counts
        raise ValueError(f"load: {f} is not a readable torch file ({type(exc).__name__}: {exc})") from None
    if torch_file.bfloat16:
        warnings.warn(f"load: {f} holds bfloat16 tensors, which minidl does not have: they are loaded as float32 "
                      "(exactly)", stacklevel=3)
    return obj


def load(f, map_location=None, weights_only=True):
    """torch.load's place: the object in ``f`` (a path or binary file object) written by :func:`save` or by
    ``torch.save`` (state dicts, optimizer states: dicts, lists, tuples, numbers, strings and tensors), Tensors as
    Tensors (on ``map_location`` when given: 'cpu', 'cuda' or a device). Only tensors and plain data are ever loaded,
    as by ``torch.load(weights_only=True)``: a file that names any other class or function is refused, never run
    (``weights_only`` is accepted for torch's signature; there is no other mode). Files of minidl's earlier .npz
    format load too. torch's bfloat16 tensors come back as float32 (exactly; minidl has no bfloat16)."""
    if map_location is not None and (callable(map_location) or isinstance(map_location, dict)):
        raise TypeError(f"load: map_location must be a device ('cpu', 'cuda:0') or None, got "
                        f"{type(map_location).__name__}")
    start = f.tell() if hasattr(f, "read") else None
    try:
        z = zipfile.ZipFile(f)
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ValueError(f"load: {f} is not a readable minidl file ({_not_a_zip(f, start, exc)})") from None
    with z:
        if "__meta__.npy" not in z.namelist():
            return _load_torch_zip(z, f, map_location)
    if start is not None:
        f.seek(start)
    return _load_npz(f, map_location)


def _not_a_zip(f, start, exc):
    """Why ``f`` is not a zip archive, naming torch's legacy format when it is that."""
    try:
        if start is None:
            with open(f, "rb") as src:
                head = src.read(len(_LEGACY_TORCH_MAGIC))
        else:
            f.seek(start)
            head = f.read(len(_LEGACY_TORCH_MAGIC))
    except OSError:
        return exc
    if head == _LEGACY_TORCH_MAGIC:
        return ("it is in the format of torch.save before torch 1.6 (or _use_new_zipfile_serialization=False), which "
                "minidl does not read: load and save it again with a current torch")
    return exc


def _load_npz(f, map_location):
    """A file of minidl.save's earlier format (an .npz of arrays and a JSON description)."""
    meta, arrays = _read(f, "load", "file")
    if meta.get("format") != SAVE_FORMAT or "obj" not in meta:
        raise ValueError(f"load: {f} was not written by minidl.save (format {meta.get('format')!r}); checkpoints "
                         "from save_checkpoint load with load_checkpoint")
    try:
        return _join(meta["obj"], arrays, map_location, "obj")
    except ValueError as exc:
        raise ValueError(f"load: {f}: {exc}") from None
