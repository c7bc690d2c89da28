"""minidl.save's writer: any picklable object to torch's zip format, tensors as torch.save writes them.

torch.save writes a zip archive of one folder: data.pkl (a protocol-2 pickle in which every tensor is a call of
torch._utils._rebuild_tensor_v2 on a storage named by a persistent id), data/<key> (each storage's raw bytes),
byteorder and version. The pickle is made by Python's own (pure-Python) Pickler with three additions: tensors and
arrays reduce to torch's rebuild calls, their storages become persistent ids, and torch's names (which pickle would
import torch to check) are written as GLOBAL opcodes directly. So a state_dict's file is the one torch.save writes
(``torch.load(weights_only=True)`` reads it) and a whole model, optimizer or any other object pickles as torch
pickles it, loadable by ``minidl.load(weights_only=False)``.
"""
import io
import pickle
import struct
import zipfile
from collections import OrderedDict

import numpy as np

from .. import backend
from ..autograd.size import Size
from ..autograd.tensor import Tensor
from ._reader import _STORAGE_CLASS as STORAGE_CLASS, _array_of

_ALIGNMENT = 64  # storages start at multiples of 64 bytes in the file, as torch writes them (mmap=True needs it)
# containers that hold data as they are: arrays in them are saved as tensors (torch reads a state_dict's arrays
# so); inside any other object an array stays an array
_PLAIN = (dict, list, tuple, str, bytes, int, float, bool, type(None), np.generic, np.ndarray, Tensor)


def _le(dtype):
    return dtype.newbyteorder("<")


def _cpu(a):
    return a if isinstance(a, np.ndarray) else backend.to_device(a, "cpu")


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


class _Storages:
    """The storages of one file: arrays that view one array share one storage, the whole of it (as torch writes views
    of one storage); any other array gets a storage of its own elements in C order. ``plan`` is made from every
    array the object holds (a first pass); an array met only later (a temporary made while pickling) gets its own."""

    def __init__(self, found):
        self.placements, self.storages = {}, {}  # id -> (key, offset, shape, strides); key -> 1-D little-endian
        groups = {}
        for k, arr in found.items():
            groups.setdefault(id(_root(arr)), []).append(k)
        for members in groups.values():
            root, shared_key = _root(found[members[0]]), None
            for m in members:
                where = _placement_in(root, found[m]) if len(members) > 1 else None
                if where is None:
                    self.own(m, found[m])
                    continue
                if shared_key is None:
                    shared_key = self.add(root.astype(_le(root.dtype), copy=False))
                self.placements[m] = (shared_key, where[0], found[m].shape, where[1])

    def add(self, data):
        key = str(len(self.storages))
        self.storages[key] = data.reshape(-1)
        return key

    def own(self, k, arr):
        own = np.asarray(arr, dtype=_le(arr.dtype), order="C")  # (ascontiguousarray makes 0-d 1-d)
        self.placements[k] = (self.add(own), 0, arr.shape, tuple(st // arr.dtype.itemsize for st in own.strides))

    def place(self, obj, arr):
        if id(obj) not in self.placements:
            self.own(id(obj), arr)
        return self.placements[id(obj)]


class _Global:
    """A name written as a GLOBAL opcode without importing it (torch's names: minidl never imports torch)."""
    _made = {}

    def __new__(cls, module, name):
        made = cls._made.get((module, name))
        if made is None:
            made = cls._made[module, name] = object.__new__(cls)
            made.module, made.name = module, name
        return made

    def __call__(self, *args):  # pickle's save_reduce asks for a callable; only loading calls the name
        raise TypeError(f"{self.module}.{self.name} is a name in a file, not a function")


class _StorageRef:
    """A storage, pickled as torch's persistent id ('storage', torch.<X>Storage, key, 'cpu', numel)."""

    def __init__(self, key, storage):
        self.pid = ("storage", _Global("torch", STORAGE_CLASS[storage.dtype]), key, "cpu", storage.size)


class _Bare:
    """A tensor's data pickled as a plain tensor (inside _rebuild_parameter, or as an array inside an object)."""

    def __init__(self, obj):
        self.obj = obj


_EMPTY_HOOKS = OrderedDict()  # torch's backward hooks of a saved tensor: none


class TorchPickler(pickle._Pickler):
    """Python's Pickler (protocol 2, torch's), writing tensors as torch does. With ``found`` None it is the first
    pass: it only collects the arrays the object holds (id -> host array), in the order the pickle meets them."""

    def __init__(self, file, found=None, storages=None):
        super().__init__(file, protocol=2)
        self.found, self.storages_ = found, storages
        self.depth = 0  # > 0 while inside an object other than plain containers

    def persistent_id(self, obj):
        return obj.pid if type(obj) is _StorageRef else None

    def save(self, obj, save_persistent_id=True):
        if isinstance(obj, backend.dtype) and _le(np.dtype(obj)) in STORAGE_CLASS:
            obj = _Global("torch", str(obj).split(".")[-1])  # torch.float32 and so on, as torch writes dtypes
        if type(obj) is _Global:
            return self.save_torch_global(obj)
        inside = not isinstance(obj, _PLAIN + (_Bare, _StorageRef))
        self.depth += inside
        try:
            if isinstance(obj, np.generic) and not self.depth and obj.dtype.kind in "biuf":
                obj = obj.item()  # a number in a state_dict: torch.load(weights_only=True) reads Python's
            super().save(obj, save_persistent_id)
        finally:
            self.depth -= inside

    def save_torch_global(self, g):
        """GLOBAL module.name, memoized as pickle memoizes globals."""
        if id(g) in self.memo:
            self.write(self.get(self.memo[id(g)][0]))
            return
        self.write(pickle.GLOBAL + f"{g.module}\n{g.name}\n".encode())
        self.memoize(g)

    def reducer_override(self, obj):
        """torch's reductions for tensors, arrays (as tensors in plain containers) and sizes."""
        from ..nn.parameter import Parameter
        if isinstance(obj, _Bare):
            return self.tensor(obj.obj, False)
        if isinstance(obj, Parameter):
            return (_Global("torch._utils", "_rebuild_parameter"),
                    (_Bare(obj), bool(obj.requires_grad), _EMPTY_HOOKS))
        if isinstance(obj, Tensor):
            return self.tensor(obj, bool(obj.requires_grad))
        if (isinstance(obj, np.ndarray) or backend.is_device_array(obj)) and _le(obj.dtype) in STORAGE_CLASS:
            return self.tensor(obj, False) if not self.depth else (_array_of, (_Bare(obj),))
        if type(obj) is Size:
            return _Global("torch", "Size"), (tuple(obj),)
        return NotImplemented

    def tensor(self, obj, requires_grad):
        arr = _cpu(obj._data if isinstance(obj, Tensor) else obj)
        if _le(arr.dtype) not in STORAGE_CLASS:
            raise TypeError(f"save: a tensor of dtype {arr.dtype}, which minidl does not write to torch's format")
        if self.found is not None:  # the first pass: collect (the object kept alive: its id stays its own)
            self.found.setdefault(id(obj), (obj, arr))
            return _Global("torch._utils", "_rebuild_tensor_v2"), (None, 0, (), (), False, _EMPTY_HOOKS)
        key, offset, shape, strides = self.storages_.place(obj, arr)
        ref = _StorageRef(key, self.storages_.storages[key])
        return (_Global("torch._utils", "_rebuild_tensor_v2"),
                (ref, offset, tuple(shape), tuple(strides), requires_grad, _EMPTY_HOOKS))


def dumps(obj):
    """(data.pkl's bytes, the storages {key: 1-D array}) for ``obj``."""
    found = {}
    TorchPickler(io.BytesIO(), found).dump(obj)  # first pass: which arrays, and which view which
    storages = _Storages({k: arr for k, (_, arr) in found.items()})
    out = io.BytesIO()
    TorchPickler(out, storages=storages).dump(obj)
    del found  # the objects the first pass kept alive
    return out.getvalue(), storages.storages


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


def write_torch_zip(f, data_pkl, storages):
    with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as z:
        _write_record(z, "data.pkl", data_pkl)
        _write_record(z, "byteorder", b"little")
        for key, storage in storages.items():
            _write_record(z, f"data/{key}", memoryview(storage.view(np.uint8)))
        _write_record(z, "version", b"3\n")
