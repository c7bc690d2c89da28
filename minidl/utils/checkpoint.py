"""Checkpoints: model, optimizer and scheduler state plus the epoch, in one file written atomically.

The file is a NumPy ``.npz`` archive: arrays as entries, everything else as one JSON entry, loaded with
``allow_pickle=False`` (a checkpoint cannot run code when it is opened). Saving writes a temporary file
next to the target, flushes it to disk, renames it over the target and flushes the folder, so a crash at
any moment leaves the old checkpoint or the new one. Loading checks every part before it changes anything.
"""
import glob
import json
import os
import tempfile

import numpy as np

from .. import backend
from ..autograd.tensor import Tensor

FORMAT = "minidl-checkpoint-1"


def _cpu(v):
    if isinstance(v, Tensor):
        v = v._data
    return backend.to_device(v, "cpu") if backend.is_device_array(v) else v


def _split(obj, prefix, arrays, op="save_checkpoint"):
    """JSON-able structure with every array replaced by a reference into ``arrays`` (Tensors marked as such)."""
    if isinstance(obj, Tensor) or backend.is_device_array(obj):
        arrays[prefix] = _cpu(obj)
        return {"__array__": prefix, "tensor": True} if isinstance(obj, Tensor) else {"__array__": prefix}
    if isinstance(obj, dict):
        return {"__dict__": [[_split(k, f"{prefix}/k{i}", arrays, op), _split(v, f"{prefix}/{i}", arrays, op)]
                             for i, (k, v) in enumerate(obj.items())]}
    if isinstance(obj, (list, tuple)):
        return {"__tuple__" if isinstance(obj, tuple) else "__list__":
                [_split(v, f"{prefix}/{i}", arrays, op) for i, v in enumerate(obj)]}
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"{op}: cannot store a value of type {type(obj).__name__} at {prefix!r}")


def _join(obj, arrays, device=None):
    """The structure back, arrays in place (Tensors as Tensors, on ``device`` when given)."""
    if isinstance(obj, list):
        raise ValueError("a list where a tagged object was expected")
    if isinstance(obj, dict):
        if "__array__" in obj:
            if obj["__array__"] not in arrays:
                raise ValueError(f"array {obj['__array__']!r} is missing")
            a = arrays[obj["__array__"]]
            if not obj.get("tensor"):
                return a
            return Tensor._make(a if device is None else backend.to_device(a, device))
        if "__dict__" in obj:
            return {_join(k, arrays, device): _join(v, arrays, device) for k, v in obj["__dict__"]}
        if "__tuple__" in obj:
            return tuple(_join(v, arrays, device) for v in obj["__tuple__"])
        if "__list__" in obj:
            return [_join(v, arrays, device) for v in obj["__list__"]]
    return obj


def save_checkpoint(path, model, optimizer=None, scheduler=None, epoch=None, **extra):
    """Write model/optimizer/scheduler state, the epoch and any JSON-able ``extra`` values to ``path``
    (a temporary file in the same folder, then an atomic rename).

    In a distributed job only rank 0 writes (the replicas are equal) and every rank waits until it has; a
    DistributedDataParallel model is saved as its wrapped module, so any world size (or one process) loads it."""
    from .. import distributed as dist
    model = _unwrap(model)
    if dist.world_size() > 1:
        if dist.rank() == 0:
            _save(path, model, optimizer, scheduler, epoch, extra)
        dist.barrier()
        return path
    return _save(path, model, optimizer, scheduler, epoch, extra)


def _save(path, model, optimizer, scheduler, epoch, extra):
    arrays = {}
    meta = {"format": FORMAT, "epoch": epoch, "extra": _split(extra, "extra", arrays),
            "model": _split(model.state_dict(), "model", arrays),
            "optimizer": None if optimizer is None else _split(optimizer.state_dict(), "optimizer", arrays),
            "scheduler": None if scheduler is None else _split(scheduler.state_dict(), "scheduler", arrays)}
    return _write(path, meta, arrays)


def _unwrap(model):
    """The module inside a DistributedDataParallel (its state_dict keys are the plain model's)."""
    from ..nn.parallel import DistributedDataParallel
    return model.module if isinstance(model, DistributedDataParallel) else model


def _write(path, meta, arrays):
    """``meta`` (JSON) and ``arrays`` as one .npz at ``path``, atomically; or into an open binary file."""
    arrays = {f"a{i}": v for i, v in enumerate(arrays.values())} | {"__keys__": np.array(list(arrays))}
    return write_atomically(path, lambda f: np.savez(f, __meta__=np.array(json.dumps(meta)), **arrays), ".npz")


def write_atomically(path, write, suffix=""):
    """Call ``write(f)`` on a temporary file next to ``path``, flush it to disk, rename it over ``path`` and flush
    the folder: a crash at any moment leaves the old file or the new one. ``path`` may also be an open binary
    file, written as it is (no rename to make it atomic)."""
    if hasattr(path, "write"):
        write(path)
        return path
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    prefix = f".{os.path.basename(path)}.tmp-"
    for stale in glob.glob(os.path.join(glob.escape(folder), glob.escape(prefix) + "*")):
        try:  # left by a save of this same file that was killed before its rename
            os.remove(stale)
        except OSError:
            pass
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())  # the data is on disk before the rename makes it the file
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 -> what open() would have made
        os.replace(tmp, path)
        _fsync_folder(folder)  # and the rename itself survives a power cut
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def _umask():
    try:  # read, not set: os.umask() changes the process's umask for a moment (a race with other threads)
        with open("/proc/self/status") as f:
            return next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError, IndexError):
        return 0o022


def _fsync_folder(folder):
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # a platform that cannot open folders (Windows): the rename is as durable as it gets
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _read(path, op, what):
    """(meta, arrays) of a file written by _write; ``what`` names the kind of file in errors."""
    try:
        with np.load(path, allow_pickle=False) as f:
            meta = json.loads(str(f["__meta__"]))
            keys = [str(k) for k in f["__keys__"]]
            arrays = {k: f[f"a{i}"] for i, k in enumerate(keys)}
    except FileNotFoundError:
        raise
    except Exception as exc:  # zip errors, missing entries, bad JSON: a truncated or foreign file
        raise ValueError(f"{op}: {path} is not a readable minidl {what} ({exc})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{op}: {path}: its metadata is a {type(meta).__name__}, not an object")
    return meta, arrays


SAVE_FORMAT = "minidl-save-1"


def save(obj, f):
    """torch.save's place: ``obj`` (a state_dict, or dicts/lists/tuples of Tensors, arrays, numbers, strings,
    None) to ``f`` (a path, written atomically, or a binary file object). No pickle: the file is an .npz
    archive of the arrays plus a JSON description, and loading it cannot run code."""
    from ..nn.module import Module
    from ..optim.optimizer import Optimizer
    if isinstance(obj, (Module, Optimizer)):
        raise TypeError(f"save: minidl saves data, not objects: save {type(obj).__name__}'s .state_dict() "
                        f"(minidl.save(model.state_dict(), path)), then load it with "
                        f"model.load_state_dict(minidl.load(path)); a whole model cannot be pickled here")
    arrays = {}
    _write(f, {"format": SAVE_FORMAT, "obj": _split(obj, "obj", arrays, "save")}, arrays)


def load(f, map_location=None, weights_only=True):
    """torch.load's place, for files written by :func:`save`: the object back, Tensors as Tensors (on
    ``map_location`` when given: 'cpu', 'cuda' or a device). Only data is ever loaded (``weights_only`` is
    accepted for torch's signature; there is no other mode)."""
    meta, arrays = _read(f, "load", "file")
    if meta.get("format") != SAVE_FORMAT or "obj" not in meta:
        raise ValueError(f"load: {f} was not written by minidl.save (format {meta.get('format')!r}); checkpoints "
                         "from save_checkpoint load with load_checkpoint")
    try:
        return _join(meta["obj"], arrays, map_location)
    except ValueError as exc:
        raise ValueError(f"load: {f}: {exc}") from None


def load_checkpoint(path, model=None, optimizer=None, scheduler=None, strict=True):
    """Read a checkpoint written by :func:`save_checkpoint`, restore the given objects, and return a dict
    with 'epoch' and 'extra' (and the raw 'model', 'optimizer', 'scheduler' states)."""
    model = _unwrap(model)
    meta, arrays = _read(path, "load_checkpoint", "checkpoint")
    try:
        if meta.get("format") != FORMAT:
            raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT!r}")
        missing = [k for k in ("epoch", "model", "optimizer", "scheduler", "extra") if k not in meta]
        if missing:
            raise ValueError(f"its metadata lacks {missing}")
        state = {k: _join(meta[k], arrays) for k in ("model", "optimizer", "scheduler", "extra")}
        if not isinstance(state["model"], dict):
            raise ValueError("its model state is not a dict")
        # check every part first: a part that does not fit must leave model, optimizer and scheduler untouched
        staged = []
        for obj, key in ((model, "model"), (optimizer, "optimizer"), (scheduler, "scheduler")):
            if obj is None:
                continue
            if state[key] is None:
                raise ValueError(f"it holds no {key} state")
            try:
                if key == "model":
                    staged.append(obj._stage_state_dict(state[key], strict)[0])
                else:
                    staged.append(obj._stage_state_dict(state[key]))
            except (TypeError, ValueError, KeyError, RuntimeError) as exc:
                raise ValueError(f"its {key} state does not fit the {type(obj).__name__} given: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"load_checkpoint: {path}: {exc}") from None
    for apply in staged:
        apply()
    return {"epoch": meta["epoch"], **state}
