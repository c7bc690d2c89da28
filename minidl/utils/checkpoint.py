"""Checkpoints: model, optimizer and scheduler state plus the epoch, in one file written atomically (minidl.save and
minidl.load, in torch's file format, are minidl/serialization.py).

A checkpoint is a NumPy ``.npz`` archive: arrays as entries, everything else as one JSON entry, loaded with
``allow_pickle=False`` (a checkpoint cannot run code when it is opened). Saving writes a temporary file
next to the target, flushes it to disk, renames it over the target and flushes the folder, so a crash at
any moment leaves the old checkpoint or the new one. Loading checks every part before it changes anything.
"""
import json

import numpy as np

from .. import backend
from ..backend.files import write_atomically
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


_TAGS = ("__array__", "__dict__", "__tuple__", "__list__")


def _join(obj, arrays, device=None, where="metadata"):
    """The structure back, arrays in place (Tensors as Tensors, on ``device`` when given). Metadata of the wrong
    shape (valid JSON that _split cannot have written) is a ValueError saying where and how."""
    if isinstance(obj, list):
        raise ValueError(f"{where}: a list where a tagged object was expected")
    if not isinstance(obj, dict):
        return obj
    tags = [t for t in _TAGS if t in obj]
    if len(tags) != 1:
        raise ValueError(f"{where}: an object with {'tags ' + str(tags) if tags else 'no tag'} where one of "
                         f"{list(_TAGS)} was expected")
    value = obj[tags[0]]
    if tags[0] == "__array__":
        if not isinstance(value, str):
            raise ValueError(f"{where}: the array reference {value!r} is not a string")
        if value not in arrays:
            raise ValueError(f"{where}: array {value!r} is missing")
        a = arrays[value]
        if not obj.get("tensor"):
            return a
        return Tensor._make(a if device is None else backend.to_device(a, device))
    if not isinstance(value, list):
        raise ValueError(f"{where}: {tags[0]} must hold a list, got {type(value).__name__}")
    if tags[0] == "__dict__":
        out = {}
        for i, pair in enumerate(value):
            if not (isinstance(pair, list) and len(pair) == 2):
                raise ValueError(f"{where}: entry {i} of __dict__ is {pair!r}, not a [key, value] pair")
            key = _join(pair[0], arrays, device, f"{where}/k{i}")
            try:
                hash(key)
            except TypeError:
                raise ValueError(f"{where}: key {i} is a {type(key).__name__}, which cannot be a dict key") from None
            out[key] = _join(pair[1], arrays, device, f"{where}/{i}")
        return out
    items = [_join(v, arrays, device, f"{where}/{i}") for i, v in enumerate(value)]
    return tuple(items) if tags[0] == "__tuple__" else items


def save_checkpoint(path, model, optimizer=None, scheduler=None, epoch=None, **extra):
    """Write model/optimizer/scheduler state, the epoch and any JSON-able ``extra`` values to ``path``
    (a temporary file in the same folder, then an atomic rename).

    In a distributed job only rank 0 writes (the replicas are equal) and every rank waits until it has; a
    DistributedDataParallel model is saved as its wrapped module, so any world size (or one process) loads it; so is
    a ``minidl.compile``d one, so a checkpoint does not depend on whether the run was compiled."""
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
    """The module inside a DistributedDataParallel or a minidl.compile OptimizedModule, at any depth (its state_dict
    keys are the plain model's)."""
    from ..nn.parallel import DistributedDataParallel
    while True:  # a compiled module is known by its one child's name, as torch's (compiler is this package's layer)
        if isinstance(model, DistributedDataParallel):
            model = model.module
        elif list(getattr(model, "_modules", {})) == ["_orig_mod"]:
            model = model._orig_mod
        else:
            return model


def _write(path, meta, arrays):
    """``meta`` (JSON) and ``arrays`` as one .npz at ``path``, atomically; or into an open binary file."""
    arrays = {f"a{i}": v for i, v in enumerate(arrays.values())} | {"__keys__": np.array(list(arrays))}
    return write_atomically(path, lambda f: np.savez(f, __meta__=np.array(json.dumps(meta)), **arrays), ".npz")


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
        state = {k: _join(meta[k], arrays, where=k) for k in ("model", "optimizer", "scheduler", "extra")}
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
