"""Checkpoints: model, optimizer and scheduler state plus the epoch, in one file written atomically.

The file is a NumPy ``.npz`` archive: arrays as entries, everything else as one JSON entry, loaded with
``allow_pickle=False`` (a checkpoint cannot run code when it is opened).
"""
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


def _split(obj, prefix, arrays):
    """JSON-able structure with every array replaced by a reference into ``arrays``."""
    if isinstance(obj, Tensor) or backend.is_device_array(obj):
        arrays[prefix] = _cpu(obj)
        return {"__array__": prefix}
    if isinstance(obj, dict):
        return {"__dict__": [[_split(k, f"{prefix}/k{i}", arrays), _split(v, f"{prefix}/{i}", arrays)]
                             for i, (k, v) in enumerate(obj.items())]}
    if isinstance(obj, (list, tuple)):
        return {"__tuple__" if isinstance(obj, tuple) else "__list__":
                [_split(v, f"{prefix}/{i}", arrays) for i, v in enumerate(obj)]}
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"save_checkpoint: cannot store a value of type {type(obj).__name__} at {prefix!r}")


def _join(obj, arrays):
    if isinstance(obj, dict):
        if "__array__" in obj:
            return arrays[obj["__array__"]]
        if "__dict__" in obj:
            return {_join(k, arrays): _join(v, arrays) for k, v in obj["__dict__"]}
        if "__tuple__" in obj:
            return tuple(_join(v, arrays) for v in obj["__tuple__"])
        if "__list__" in obj:
            return [_join(v, arrays) for v in obj["__list__"]]
    return obj


def save_checkpoint(path, model, optimizer=None, scheduler=None, epoch=None, **extra):
    """Write model/optimizer/scheduler state, the epoch and any JSON-able ``extra`` values to ``path``
    (a temporary file in the same folder, then an atomic rename)."""
    arrays = {}
    meta = {"format": FORMAT, "epoch": epoch, "extra": _split(extra, "extra", arrays),
            "model": _split(model.state_dict(), "model", arrays),
            "optimizer": None if optimizer is None else _split(optimizer.state_dict(), "optimizer", arrays),
            "scheduler": None if scheduler is None else _split(scheduler.state_dict(), "scheduler", arrays)}
    arrays = {f"a{i}": v for i, v in enumerate(arrays.values())} | {"__keys__": np.array(list(arrays))}
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".ckpt-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, __meta__=np.array(json.dumps(meta)), **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def load_checkpoint(path, model=None, optimizer=None, scheduler=None, strict=True):
    """Read a checkpoint written by :func:`save_checkpoint`, restore the given objects, and return a dict
    with 'epoch' and 'extra' (and the raw 'model', 'optimizer', 'scheduler' states)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            meta = json.loads(str(f["__meta__"]))
            keys = [str(k) for k in f["__keys__"]]
            arrays = {k: f[f"a{i}"] for i, k in enumerate(keys)}
    except FileNotFoundError:
        raise
    except Exception as exc:  # zip errors, missing entries, bad JSON: a truncated or foreign file
        raise ValueError(f"load_checkpoint: {path} is not a readable minidl checkpoint ({exc})") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"load_checkpoint: {path} has format {meta.get('format')!r}, expected {FORMAT!r}")
    state = {k: _join(meta[k], arrays) for k in ("model", "optimizer", "scheduler", "extra")}
    for obj, key in ((model, "model"), (optimizer, "optimizer"), (scheduler, "scheduler")):
        if obj is None:
            continue
        if state[key] is None:
            raise ValueError(f"load_checkpoint: {path} holds no {key} state")
        if key == "model":
            obj.load_state_dict(state[key], strict=strict)
        else:
            obj.load_state_dict(state[key])
    return {"epoch": meta["epoch"], **state}
