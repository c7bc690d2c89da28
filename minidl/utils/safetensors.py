"""State dicts in the safetensors format, so that weights move between minidl and torch (or any framework that
reads safetensors) without pickle: ``safetensors.torch.load_file`` reads what :func:`save_file` writes, and
:func:`load_file` reads what ``safetensors.torch.save_file`` writes. Needs the optional ``safetensors`` package
(``pip install safetensors``), imported only when called.

    minidl.utils.safetensors.save_model(model, "lenet5.safetensors")
    model.load_state_dict(minidl.utils.safetensors.load_file("lenet5.safetensors"))
"""
import numpy as np

from .. import backend
from ..autograd.tensor import Tensor
from .checkpoint import write_atomically


def _library():
    try:
        import safetensors.numpy
    except ImportError:
        raise ImportError("minidl.utils.safetensors needs the safetensors package: pip install safetensors "
                          "(or pip install -e \".[exchange]\")") from None
    return safetensors.numpy


def _array(name, value):
    if isinstance(value, Tensor):
        value = value.detach()._data
    if backend.is_device_array(value):
        value = backend.to_device(value, "cpu")
    if not isinstance(value, np.ndarray):
        raise TypeError(f"save_file: {name!r} must be a Tensor or an array, got {type(value).__name__}")
    return np.ascontiguousarray(value)


def save_file(tensors, filename, metadata=None):
    """Write ``tensors`` (a dict of name -> Tensor or array, e.g. a state_dict) to ``filename`` in the safetensors
    format, atomically. ``metadata``: an optional dict of str -> str stored in the header."""
    if not isinstance(tensors, dict):
        raise TypeError(f"save_file: expected a dict of name -> tensor, got {type(tensors).__name__}")
    for k in tensors:
        if not isinstance(k, str):
            raise TypeError(f"save_file: names must be strings, got {k!r}")
    if metadata is not None and not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise TypeError("save_file: metadata must map strings to strings")
    blob = _library().save({k: _array(k, v) for k, v in tensors.items()}, metadata=metadata)
    write_atomically(filename, lambda f: f.write(blob), ".safetensors")
    return filename


def load_file(filename, device="cpu"):
    """The tensors of a safetensors file, as a dict of name -> Tensor (on ``device``), in the file's order."""
    lib = _library()
    try:
        with open(filename, "rb") as f:
            arrays = lib.load(f.read())
    except FileNotFoundError:
        raise
    except Exception as exc:  # safetensors raises its own SafetensorError for a damaged header
        raise ValueError(f"load_file: {filename} is not a readable safetensors file ({exc})") from None
    return {k: Tensor._make(backend.to_device(np.asarray(a), device) if device != "cpu" else np.asarray(a))
            for k, a in arrays.items()}


def save_model(model, filename, metadata=None):
    """``save_file(model.state_dict(), filename)``."""
    return save_file(model.state_dict(), filename, metadata)


def load_model(model, filename, strict=True, device="cpu"):
    """Load a safetensors file into ``model`` (checked as load_state_dict checks); returns (missing, unexpected)."""
    return model.load_state_dict(load_file(filename, device), strict=strict)
