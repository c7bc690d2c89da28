"""Argument checks for the public ops: clear TypeError/ValueError naming op, argument, expected, got."""
import numbers

import numpy as np

from .. import backend
from ..autograd.capturing import constant
from ..autograd.creation import as_tensor as _wrap
from ..autograd.tensor import Tensor, _dim
from ..backend.errors import RuntimeTypeError, RuntimeValueError


def tensor_arg(x, op, name="input"):
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: argument '{name}' must be a minidl.Tensor, got {type(x).__name__}")
    return x


def optional_tensor(x, op, name):
    return None if x is None else tensor_arg(x, op, name)


def float_tensor(x, op, name="input"):
    tensor_arg(x, op, name)
    if x._data.dtype.kind != "f" and x.dtype.kind != "f":  # the array's own kind first (bfloat16's is "V")
        raise RuntimeTypeError(f"{op}: argument '{name}' must have a floating dtype (float32 or float64), got "
                               f"{x.dtype}")
    return x


def as_tensor(value, like, op, name="other"):
    """A Tensor for ``value``: Tensors pass through; scalars and arrays take ``like``'s device and,
    for Python scalars next to a floating tensor, its dtype (as torch's type promotion does)."""
    if isinstance(value, Tensor):
        return value
    if isinstance(value, (bool, numbers.Number, np.generic)):
        if like is not None and like.dtype.kind == "f" and not isinstance(value, bool):
            if isinstance(value, complex):
                raise TypeError(f"{op}: complex scalars are not supported")
            dtype = like.dtype
        elif isinstance(value, bool):
            dtype = np.bool_
        elif isinstance(value, numbers.Integral):
            dtype = np.int64 if like is None or like.dtype.kind == "b" else like.dtype
        else:
            dtype = backend.default_dtype()
        xp = backend.get_array_module(like._data) if like is not None else np
        if xp is not np:  # filled on the device: asarray of a host scalar would be a host-to-device copy
            return Tensor._make(constant(xp.full((), value, dtype=dtype)))
        return Tensor._make(constant(xp.asarray(value, dtype=dtype)))
    if backend.is_device_array(value) or isinstance(value, (list, tuple)):
        return _wrap(value, device=None if like is None else like.device)
    raise TypeError(f"{op}: argument '{name}' must be a Tensor or a number, got {type(value).__name__}")


def int_arg(v, op, name, minimum=None):
    if not isinstance(v, numbers.Integral) or isinstance(v, bool):
        raise TypeError(f"{op}: argument '{name}' must be an int, got {type(v).__name__}")
    if minimum is not None and v < minimum:
        raise RuntimeValueError(f"{op}: argument '{name}' must be >= {minimum}, got {v}")
    return int(v)


def pair(v, op, name, minimum=None):
    """An int or a pair of ints, as a tuple of two ints."""
    if isinstance(v, (tuple, list)):
        if len(v) == 1:
            v = (v[0], v[0])
        if len(v) != 2:
            raise RuntimeValueError(f"{op}: argument '{name}' must be an int or a pair of ints, got {tuple(v)}")
        return tuple(int_arg(e, op, name, minimum) for e in v)
    v = int_arg(v, op, name, minimum)
    return (v, v)


def same_device(op, *tensors):
    if all(t is None or type(t._data) is np.ndarray for t in tensors):  # all on the CPU: nothing to compare
        return
    devs = {t.device for t in tensors if t is not None}
    if len(devs) > 1:
        raise RuntimeValueError(f"{op}: expected all tensors on one device, got "
                                + " and ".join(sorted(map(str, devs))))


def reduction_arg(reduction, op):
    if reduction not in ("mean", "sum", "none"):
        raise RuntimeValueError(f"{op}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    return reduction


def dims(dim, ndim, op):
    """Normalise ``dim`` (None, int, or sequence of ints) into a sorted tuple of non-negative dims."""
    if dim is None:
        return tuple(range(ndim))
    if isinstance(dim, (tuple, list)):
        out = tuple(sorted({_dim(d, ndim, op) for d in dim}))
        if len(out) != len(dim):
            raise RuntimeValueError(f"{op}: dim {tuple(dim)} repeats a dimension")
    else:
        out = (_dim(dim, ndim, op),)
    return out if ndim else ()  # a 0-d tensor takes dim 0 or -1 (as torch) and has no axis to reduce


def empty_result(shape, like, *inputs):
    """An empty tensor of ``shape`` that stays in the graph of ``inputs`` (their gradients come out as
    zeros, as torch's): what an op returns for an empty batch without running its kernels."""
    xp = backend.get_array_module(like._data)
    out = Tensor._make(xp.zeros(shape, dtype=like.dtype))
    for t in inputs:
        if t is not None and t.requires_grad:
            out = out + t.sum() * 0.0  # a 0-d term: broadcasting keeps the (empty) shape
    return out
