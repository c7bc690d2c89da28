"""Joining, splitting, padding and moving: cat/stack, split/chunk, pad, flip/roll/repeat, channel_shuffle, clone,
contiguous and ``to``. Views are in view.py, indexing in indexing.py. Each public function sits under its Function
class; backward passes are written with these same ops, so they differentiate again.
"""
import numbers

import numpy as np

from .. import backend
from ..autograd import Function
from ..autograd.tensor import Tensor, _dim
from ..backend.errors import RuntimeValueError
from ._checks import int_arg, same_device, tensor_arg
from ._registry import register
from .indexing import GetItem
from .view import _shape_args, narrow


class Cat(Function):
    name = "cat"

    def forward(self, xp, *arrays, dim):
        self.dim = dim
        self.sizes = [a.shape[dim] for a in arrays]
        return xp.concatenate(arrays, axis=dim)

    def backward(self, g):
        out, start = [], 0
        for size, need in zip(self.sizes, self.needs_input_grad):
            if need:
                key = (slice(None),) * self.dim + (slice(start, start + size),)
                out.append(GetItem.apply(g, key=key))
            else:
                out.append(None)
            start += size
        return tuple(out)


def _tensor_list(tensors, op):
    if isinstance(tensors, Tensor) or not isinstance(tensors, (list, tuple)):
        raise TypeError(f"{op}: argument 'tensors' must be a list or tuple of Tensors, got {type(tensors).__name__}")
    if not tensors:
        raise RuntimeValueError(f"{op}: expected a non-empty list of Tensors")
    for i, t in enumerate(tensors):
        tensor_arg(t, op, f"tensors[{i}]")
    same_device(op, *tensors)
    return list(tensors)


@register(method=False, methods=(), top=True)
def cat(tensors, dim=0):
    """Concatenate along an existing dimension."""
    tensors = _tensor_list(tensors, "cat")
    for i, t in enumerate(tensors):
        if t.ndim == 0:
            raise RuntimeValueError(f"cat: tensors[{i}] is 0-d; only tensors with dimensions can be concatenated")
    dtype = np.result_type(*[t.dtype for t in tensors])
    kept = [t for t in tensors if t.shape != (0,)]  # torch's legacy rule: 1-D empty tensors are skipped
    tensors = kept or tensors[:1]
    ref = tensors[0]
    d = _dim(dim, ref.ndim, "cat")
    for i, t in enumerate(tensors):
        if t.ndim != ref.ndim or any(a != b for j, (a, b) in enumerate(zip(t.shape, ref.shape)) if j != d):
            raise RuntimeValueError(f"cat: tensors[{i}] has shape {tuple(t.shape)}, which does not match tensors[0]'s "
                                    f"{tuple(ref.shape)} outside dim {d}")
    tensors = [t if t.dtype == dtype else t.to(dtype) for t in tensors]
    if len(tensors) == 1:
        return tensors[0]
    return Cat.apply(*tensors, dim=d)


@register(method=False, top=True)
def stack(tensors, dim=0):
    """Stack tensors of one shape along a new dimension."""
    tensors = _tensor_list(tensors, "stack")
    for i, t in enumerate(tensors):
        if t.shape != tensors[0].shape:
            raise RuntimeValueError(f"stack: tensors[{i}] has shape {tuple(t.shape)}, expected "
                                    f"{tuple(tensors[0].shape)} like tensors[0]")
    d = _dim(dim, tensors[0].ndim + 1, "stack")
    return cat([t.unsqueeze(d) for t in tensors], d)


@register(top=True)
def split(tensor, split_size_or_sections, dim=0):
    """Split into pieces of ``split_size`` (the last may be smaller) or of the given section sizes."""
    tensor_arg(tensor, "split", "tensor")
    if tensor.ndim == 0:
        raise RuntimeValueError("split: expects at least a 1-dimensional tensor, got a 0-d tensor")
    d = _dim(dim, tensor.ndim, "split")
    n = tensor.shape[d]
    if isinstance(split_size_or_sections, (list, tuple)):
        sizes = [int_arg(s, "split", "split_size_or_sections", 0) for s in split_size_or_sections]
        if sum(sizes) != n:
            raise RuntimeValueError(f"split: sections {sizes} sum to {sum(sizes)}, but dim {d} has size {n}")
    else:
        size = int_arg(split_size_or_sections, "split", "split_size_or_sections", 1)
        sizes = [min(size, n - i) for i in range(0, n, size)] or [0]
    out, start = [], 0
    for s in sizes:
        out.append(tensor[(slice(None),) * d + (slice(start, start + s),)])
        start += s
    return tuple(out)


@register(top=True)
def chunk(input, chunks, dim=0):
    """Split into ``chunks`` pieces of ceil(size / chunks) (fewer when the size runs out), as torch."""
    tensor_arg(input, "chunk")
    chunks = int_arg(chunks, "chunk", "chunks", 1)
    if input.ndim == 0:
        raise RuntimeValueError("chunk: expects at least a 1-dimensional tensor, got a 0-d tensor")
    d = _dim(dim, input.ndim, "chunk")
    if input.shape[d] == 0:  # an empty dim gives ``chunks`` empty pieces (as torch)
        return tuple(input[(slice(None),) * d + (slice(0, 0),)] for _ in range(chunks))
    size = -(-input.shape[d] // chunks)
    return split(input, max(size, 1), d)


_PAD_MODES = ("constant", "reflect", "replicate", "circular")


def _pad_widths(input, pad, mode):
    """pad's checked arguments as (before, after) widths for every dim of the input."""
    tensor_arg(input, "pad")
    if not isinstance(pad, (tuple, list)) or len(pad) % 2 or not all(
            isinstance(p, numbers.Integral) and not isinstance(p, bool) for p in pad):
        raise RuntimeValueError(f"pad: argument 'pad' must be a tuple of ints of even length, got {pad!r}")
    if len(pad) // 2 > input.ndim:
        raise RuntimeValueError(f"pad: {len(pad)} padding values for a {input.ndim}-D input (at most {2 * input.ndim})")
    if mode not in _PAD_MODES:
        raise RuntimeValueError(f"pad: mode must be one of {_PAD_MODES}, got {mode!r}")
    widths = [(0, 0)] * input.ndim
    for i in range(len(pad) // 2):
        widths[input.ndim - 1 - i] = (int(pad[2 * i]), int(pad[2 * i + 1]))
    return widths


class ConstantPad(Function):
    name = "pad"

    def forward(self, xp, x, widths, value):
        self.key = tuple(slice(lo, lo + n) for (lo, _), n in zip(widths, x.shape))
        return xp.pad(x, widths, mode="constant", constant_values=value)

    def backward(self, g):
        return GetItem.apply(g, key=self.key)


def _constant_pad(input, widths, value):
    """Positive widths add ``value``; negative ones crop."""
    pos = [(max(lo, 0), max(hi, 0)) for lo, hi in widths]
    out = input if all(w == (0, 0) for w in pos) else ConstantPad.apply(input, widths=pos, value=value)
    if any(lo < 0 or hi < 0 for lo, hi in widths):
        for i, (lo, hi) in enumerate(widths):
            if -min(lo, 0) - min(hi, 0) > out.shape[i]:
                raise RuntimeValueError(f"pad: negative padding {(lo, hi)} crops more than dim {i}'s size "
                                        f"{out.shape[i]}")
        out = out[tuple(slice(-min(lo, 0), out.shape[i] + min(hi, 0)) for i, (lo, hi) in enumerate(widths))]
    return out


def _pad_source(mode, n, lo, hi, d):
    """For reflect, replicate or circular padding of a dim of size ``n`` by (lo, hi): each output's source index."""
    if n + lo + hi < 0:
        raise RuntimeValueError(f"pad: negative padding {(lo, hi)} crops more than dim {d}'s size {n}")
    if mode == "circular":  # negative widths crop first, then the rest wraps around what is left (as torch)
        crop, m = -min(lo, 0), n + min(lo, 0) + min(hi, 0)
        if max(lo, 0) > m or max(hi, 0) > m:
            raise RuntimeValueError(f"pad: circular padding {(lo, hi)} must be at most dim {d}'s size {m} (after "
                                    "cropping)")
        return np.arange(-max(lo, 0), m + max(hi, 0)) % m + crop
    if mode == "reflect" and (lo >= n or hi >= n):
        raise RuntimeValueError(f"pad: reflect padding {(lo, hi)} must be smaller than dim {d}'s size {n}")
    if n == 0:
        raise RuntimeValueError(f"pad: mode {mode!r} cannot pad dim {d} of size 0")
    j = np.arange(-lo, n + hi)  # a negative width starts or stops inside the dim
    if mode == "reflect":
        j = np.abs(j)
        return np.where(j > n - 1, 2 * (n - 1) - j, j)
    return np.clip(j, 0, n - 1)


@register(method=False)
def pad(input, pad, mode="constant", value=None):
    """Pad the last ``len(pad) // 2`` dims: ``pad = (left, right, top, bottom, ...)`` from the last dim
    backwards. Modes: 'constant' (negative widths crop), 'reflect', 'replicate', 'circular'."""
    widths = _pad_widths(input, pad, mode)
    if mode == "constant":
        return _constant_pad(input, widths, 0.0 if value is None else value)
    if value not in (None, 0):
        raise RuntimeValueError(f"pad: 'value' only applies to mode='constant', got value={value} with mode={mode!r}")
    k = len(pad) // 2
    if input.ndim not in (k + 1, k + 2):  # (C, *spatial) or (N, C, *spatial), as torch
        raise RuntimeValueError(f"pad: mode {mode!r} with {len(pad)} padding values pads {k} dims of a {k + 1}-D or "
                                f"{k + 2}-D input, got a {input.ndim}-D input")
    out = input
    for d, (lo, hi) in enumerate(widths):
        if lo or hi:  # gather each output element from its source index along d
            out = out[(slice(None),) * d + (backend.to_device(_pad_source(mode, input.shape[d], lo, hi, d),
                                                               input.device),)]
    return out


class Clone(Function):
    name = "clone"

    def forward(self, xp, x, memory_format=backend.preserve_format):
        if memory_format is backend.preserve_format:
            return x.copy(order="K")  # the same strides when x is dense (as torch), else row-major
        y = backend.in_memory_format(x, memory_format, "clone")
        return y.copy(order="K") if y is x else y

    def backward(self, g):
        return g


@register()
def contiguous(input, memory_format=backend.contiguous_format):
    """``input`` itself when laid out in ``memory_format`` (default row-major), else a copy that is."""
    tensor_arg(input, "contiguous")
    if memory_format is backend.preserve_format:
        raise RuntimeValueError("contiguous: memory_format preserve_format is not supported (as torch)")
    laid_out = backend.has_memory_format(input._data, memory_format, "contiguous")
    return input if laid_out else Clone.apply(input, memory_format=memory_format)


class To(Function):
    name = "to"

    def forward(self, xp, x, dtype, device):
        self.in_dtype, self.in_device = x.dtype, backend.device_of(x)
        y = x
        if device is not None:
            y = backend.to_device(y, device)
        if dtype is not None and y.dtype != dtype:
            y = y.astype(dtype)
        return y

    def backward(self, g):
        return To.apply(g, dtype=self.in_dtype, device=self.in_device)


def _is_device(a):
    if isinstance(a, backend.Device):
        return True
    if isinstance(a, str):
        return a.partition(":")[0] in ("cpu", "cuda")
    return type(a).__module__ == "torch" and type(a).__name__ == "device"


def _to_args(args, dtype, device, non_blocking, copy, memory_format):
    """torch's three forms: ``to(device=None, dtype=None, non_blocking=False, copy=False,
    memory_format=preserve_format)``, ``to(dtype, non_blocking, copy, memory_format)`` and
    ``to(other, non_blocking, copy)``."""
    args = list(args)
    if args and isinstance(args[0], Tensor):
        other = args.pop(0)
        device, dtype = other.device, other.dtype
        names = ["non_blocking", "copy"]
    else:
        if args and (args[0] is None or _is_device(args[0])):
            device = args.pop(0)
            if args and not isinstance(args[0], bool):
                dtype = args.pop(0)
        elif args:
            dtype = args.pop(0)
        names = ["non_blocking", "copy", "memory_format"]
    if len(args) > len(names):
        raise TypeError(f"to: too many positional arguments ({len(args)} after the device/dtype)")
    given = dict(non_blocking=non_blocking, copy=copy, memory_format=memory_format)
    given.update(zip(names, args))
    if device is not None and not isinstance(device, (str, backend.Device)):  # a torch.device
        device = str(device)
    return dtype, device, given["copy"], given["memory_format"]


@register(method=False)
def to(input, *args, dtype=None, device=None, non_blocking=False, copy=False,
       memory_format=backend.preserve_format):
    """A copy on another device, in another dtype and/or memory format (``input`` itself if nothing
    changes and ``copy`` is False). ``non_blocking`` is accepted; copies are synchronous."""
    tensor_arg(input, "to")
    dtype, device, copy, memory_format = _to_args(args, dtype, device, non_blocking, copy, memory_format)
    dtype = backend.as_dtype(dtype, "to")
    if device is not None:
        device = backend.Device(device)
    laid_out = backend.has_memory_format(input._data, memory_format, "to")
    if (dtype is None or dtype == input.dtype) and (device is None or device == input.device):
        if copy or not laid_out:
            return Clone.apply(input, memory_format=memory_format)
        return input
    if dtype is not None and dtype.kind not in "fc" and input.requires_grad:
        out = Tensor._make(To.forward(To(), None, input._data, dtype, device))
    else:
        out = To.apply(input, dtype=dtype, device=device)
    return out if laid_out else contiguous(out, memory_format)


@register(top=True)
def clone(input, *, memory_format=backend.preserve_format):
    """A copy that stays in the graph; with ``preserve_format`` it keeps the input's strides."""
    tensor_arg(input, "clone")
    return Clone.apply(input, memory_format=memory_format)


@register(top=True)
def flip(input, *dims_, dims=None):
    """Reverse the order of elements along ``dims`` (a copy, as torch): ``flip(x, (0, 1))``, ``x.flip(0, 1)``."""
    tensor_arg(input, "flip")
    if dims is not None:
        if dims_:
            raise TypeError("flip: dims given both positionally and as a keyword")
        dims_ = (dims,)
    ds = dims_[0] if len(dims_) == 1 and isinstance(dims_[0], (list, tuple)) else dims_
    axes = [_dim(d, input.ndim, "flip") for d in ds]
    if len(set(axes)) != len(axes):
        raise RuntimeValueError(f"flip: dims {tuple(ds)} name a dimension twice")
    key = tuple(slice(None, None, -1) if i in axes else slice(None) for i in range(input.ndim))
    return input[key].clone() if axes else input.clone()


@register(top=True)
def roll(input, shifts, dims=None):
    """Shift elements along ``dims`` cyclically (over the flattened tensor when ``dims`` is None)."""
    tensor_arg(input, "roll")
    shifts = tuple(shifts) if isinstance(shifts, (list, tuple)) else (shifts,)
    if dims is None:
        if len(shifts) != 1:
            raise RuntimeValueError(f"roll: without dims, shifts must be one int, got {shifts}")
        return roll(input.reshape(-1), shifts[0], 0).reshape(*input.shape)
    dims = tuple(dims) if isinstance(dims, (list, tuple)) else (dims,)
    if len(shifts) != len(dims):
        raise RuntimeValueError(f"roll: shifts {shifts} and dims {dims} must have the same length")
    out = input
    if input.ndim == 0:
        raise IndexError(f"roll: dims {dims} given for a 0-d tensor, which has none")
    for s, d in zip(shifts, dims):
        d = _dim(d, input.ndim, "roll")
        n = input.shape[d]
        s = int_arg(s, "roll", "shifts") % n if n else 0
        if s:
            out = cat([narrow(out, d, n - s, s), narrow(out, d, 0, n - s)], d)
    return out if out is not input else input.clone()


@register()
def repeat(input, *sizes):
    """Tile: dim i repeated ``sizes[i]`` times (new leading dims when there are more sizes than dims)."""
    tensor_arg(input, "repeat")
    sizes = _shape_args(sizes, "repeat")
    if len(sizes) < input.ndim:
        raise RuntimeValueError(f"repeat: the number of repeats ({len(sizes)}) must be >= the tensor's dims "
                                f"({input.ndim})")
    if any(s < 0 for s in sizes):
        raise RuntimeValueError(f"repeat: repeats must be non-negative, got {sizes}")
    shape = (1,) * (len(sizes) - input.ndim) + input.shape
    x = input.reshape(*[v for s in shape for v in (1, s)])       # (1, s0, 1, s1, ...)
    x = x.expand(*[v for r, s in zip(sizes, shape) for v in (r, s)])  # (r0, s0, r1, s1, ...)
    return x.reshape(*[r * s for r, s in zip(sizes, shape)])


@register(method=False, top=True)
def channel_shuffle(input, groups):
    """ShuffleNet's channel shuffle: (N, g * k, ...) -> channels reordered as (k, g): reshape, swap, reshape."""
    tensor_arg(input, "channel_shuffle")
    groups = int_arg(groups, "channel_shuffle", "groups", 1)
    if input.ndim < 3:
        raise RuntimeValueError("channel_shuffle: expects (N, C, *) with at least 3 dims, got shape "
                                f"{tuple(input.shape)}")
    n, c, *rest = input.shape
    if c % groups:
        raise RuntimeValueError(f"channel_shuffle: {c} channels are not divisible by groups={groups}")
    return input.reshape(n, groups, c // groups, *rest).transpose(1, 2).reshape(n, c, *rest)
