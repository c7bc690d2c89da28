"""Shape ops: reshape, permute, expand, indexing, cat, pad, gather and friends.

Backward passes are written with these same ops, so they differentiate again.
"""
import numbers

import numpy as np

from .. import backend, kernels
from ..autograd import Function
from ..autograd.tensor import Tensor, _dim, _index_key
from ._checks import tensor_arg, int_arg, dims, same_device
from ._registry import register


class Reshape(Function):
    name = "reshape"

    def forward(self, xp, x, shape):
        self.in_shape = x.shape
        return x.reshape(shape)

    def backward(self, g):
        return g.reshape(self.in_shape)


class Permute(Function):
    name = "permute"

    def forward(self, xp, x, axes):
        self.axes = axes
        return x.transpose(axes)

    def backward(self, g):
        return g.permute(*np.argsort(self.axes).tolist())


class Expand(Function):
    name = "expand"

    def forward(self, xp, x, shape):
        self.in_shape = x.shape
        return xp.broadcast_to(x, shape)

    def backward(self, g):
        return sum_to(g, self.in_shape)


class SumTo(Function):
    name = "sum_to"

    def forward(self, xp, x, shape):
        self.in_shape = x.shape
        lead = x.ndim - len(shape)
        axes = tuple(range(lead)) + tuple(i + lead for i, s in enumerate(shape) if s == 1 and x.shape[i + lead] != 1)
        y = x.sum(axis=axes, keepdims=True) if axes else x
        return y.reshape(shape)

    def backward(self, g):
        return g.expand(*self.in_shape)


def _key_on(xp, key):
    """An indexing key whose index arrays live where the data does: host (NumPy) index arrays given for
    device data are copied to the device once, here, so that forward and backward use the same copy."""
    if xp is np:
        return key

    def move(k):
        return xp.asarray(k) if isinstance(k, np.ndarray) else k
    return tuple(map(move, key)) if isinstance(key, tuple) else move(key)


class GetItem(Function):
    name = "getitem"

    def forward(self, xp, x, key):
        key = _key_on(xp, key)
        self.in_shape = x.shape
        self.save_for_backward(key)
        return x[key]

    def backward(self, g):
        key, = self.saved_arrays
        return IndexAdd.apply(g, key=key, shape=self.in_shape)


class IndexAdd(Function):
    """zeros(shape) with ``g`` added at ``key`` (repeated indices add up): the backward of indexing."""
    name = "index_add"

    def forward(self, xp, g, key, shape):
        self.save_for_backward(key)
        out = xp.zeros(shape, dtype=g.dtype)
        kernels.index_add(out, key, g)
        return out

    def backward(self, gg):
        key, = self.saved_arrays
        return GetItem.apply(gg, key=key)


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


class ConstantPad(Function):
    name = "pad"

    def forward(self, xp, x, widths, value):
        self.key = tuple(slice(lo, lo + n) for (lo, _), n in zip(widths, x.shape))
        return xp.pad(x, widths, mode="constant", constant_values=value)

    def backward(self, g):
        return GetItem.apply(g, key=self.key)


class Gather(Function):
    name = "gather"

    def forward(self, xp, x, index, dim):
        self.dim, self.in_shape = dim, x.shape
        self.save_for_backward(index)
        return xp.take_along_axis(x, index, axis=dim)

    def backward(self, g):
        index, = self.saved_arrays
        return ScatterAdd.apply(g, Tensor._make(index), dim=self.dim, shape=self.in_shape), None


class ScatterAdd(Function):
    """zeros(shape) with ``src`` added along ``dim`` at ``index``: the backward of gather."""
    name = "scatter_add"

    def forward(self, xp, src, index, dim, shape):
        self.dim = dim
        self.save_for_backward(index)
        out = xp.zeros(shape, dtype=src.dtype)
        kernels.scatter_add_along(out, index, src, dim)
        return out

    def backward(self, g):
        index, = self.saved_arrays
        if index.shape != g.shape:  # an index smaller than the output: gather from the part it addresses
            g = g[tuple(slice(0, s) if i != self.dim else slice(None) for i, s in enumerate(index.shape))]
        return Gather.apply(g, Tensor._make(index), dim=self.dim), None


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


class Clone(Function):
    name = "clone"

    def forward(self, xp, x, memory_format=backend.preserve_format):
        if memory_format is backend.preserve_format:
            return x.copy(order="K")  # the same strides when x is dense (as torch), else row-major
        y = backend.in_memory_format(x, memory_format, "clone")
        return y.copy(order="K") if y is x else y

    def backward(self, g):
        return g


# ---- public functions ---------------------------------------------------------------------------
def _shape_args(shape, op):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    for s in shape:
        if not isinstance(s, numbers.Integral) or isinstance(s, bool):
            raise TypeError(f"{op}: shape entries must be ints, got {shape}")
    return tuple(int(s) for s in shape)


def _target_shape(input, shape, op):
    shape = _shape_args(shape, op)
    known = int(np.prod([s for s in shape if s != -1]))
    if shape.count(-1) > 1 or any(s < -1 for s in shape) or (
            -1 not in shape and known != input.numel()) or (
            -1 in shape and (known == 0 or input.numel() % known)):
        raise ValueError(f"{op}: shape {shape} is invalid for input of size {input.numel()} "
                         f"(shape {input.shape})")
    if -1 in shape:
        shape = tuple(input.numel() // known if s == -1 else s for s in shape)
    return shape


@register(top=True)
def reshape(input, *shape):
    """The same data with a new shape (a view where the strides allow, else a copy); one dimension may be -1."""
    tensor_arg(input, "reshape")
    shape = _target_shape(input, shape, "reshape")
    if shape == input.shape:
        return input
    return Reshape.apply(input, shape=shape)


@register()
def view(input, *shape):
    """A view with a new shape, sharing the data; refused where the strides do not allow one (as torch: a
    transposed or channels_last tensor flattened, say), so that code written on minidl stays valid torch.
    ``reshape`` copies in those cases."""
    tensor_arg(input, "view")
    shape = _target_shape(input, shape, "view")
    if shape == input.shape:
        return input
    a = input._data
    # ask NumPy whether a view exists, on an array with the same shape and strides but no data to copy
    probe = np.lib.stride_tricks.as_strided(np.zeros(1, dtype=a.dtype), shape=a.shape, strides=a.strides)
    try:
        np.reshape(probe, shape, copy=False)
    except ValueError:
        strides = tuple(s // a.itemsize for s in a.strides)
        raise ValueError(f"view: a tensor of shape {input.shape} with strides {strides} cannot be viewed as shape "
                         f"{shape} (its memory is not laid out for it); use .reshape(...), which copies, or "
                         ".contiguous().view(...)") from None
    return Reshape.apply(input, shape=shape)


@register(top=True)
def permute(input, *dims_):
    """Reorder dimensions: ``x.permute(0, 2, 3, 1)``."""
    tensor_arg(input, "permute")
    axes = _shape_args(dims_, "permute")
    if len(axes) != input.ndim:
        raise ValueError(f"permute: expected {input.ndim} dims for a tensor of shape {input.shape}, got {axes}")
    axes = tuple(_dim(d, input.ndim, "permute") for d in axes)
    if len(set(axes)) != len(axes):
        raise ValueError(f"permute: dims {dims_} repeat a dimension")
    if axes == tuple(range(input.ndim)):
        return input
    return Permute.apply(input, axes=axes)


@register(top=True)
def transpose(input, dim0, dim1):
    """Swap two dimensions."""
    tensor_arg(input, "transpose")
    d0, d1 = _dim(dim0, input.ndim, "transpose"), _dim(dim1, input.ndim, "transpose")
    if input.ndim == 0:
        return permute(input)
    axes = list(range(input.ndim))
    axes[d0], axes[d1] = axes[d1], axes[d0]
    return permute(input, *axes)


@register(top=True)
def t(input):
    """Transpose a 2-D tensor (0-D and 1-D are returned as they are)."""
    tensor_arg(input, "t")
    if input.ndim > 2:
        raise ValueError(f"t: expects a tensor with <= 2 dimensions, got {input.ndim}-D")
    return transpose(input, 0, 1) if input.ndim == 2 else input


@register(top=True)
def flatten(input, start_dim=0, end_dim=-1):
    """Merge dims ``start_dim..end_dim`` into one."""
    tensor_arg(input, "flatten")
    if input.ndim == 0:
        _dim(start_dim, 0, "flatten"), _dim(end_dim, 0, "flatten")
        return input.reshape(1)
    s, e = _dim(start_dim, input.ndim, "flatten"), _dim(end_dim, input.ndim, "flatten")
    if s > e:
        raise ValueError(f"flatten: start_dim ({start_dim}) must not come after end_dim ({end_dim})")
    shape = input.shape
    return reshape(input, *shape[:s], int(np.prod(shape[s:e + 1])), *shape[e + 1:])


@register(top=True)
def squeeze(input, dim=None):
    """Remove dimensions of size 1 (all of them, or those in ``dim``)."""
    tensor_arg(input, "squeeze")
    ds = dims(dim, input.ndim, "squeeze") if dim is not None else range(input.ndim)
    shape = [s for i, s in enumerate(input.shape) if not (i in ds and s == 1)]
    return reshape(input, *shape)


@register(top=True)
def unsqueeze(input, dim):
    """Insert a dimension of size 1 at ``dim``."""
    tensor_arg(input, "unsqueeze")
    d = _dim(dim, input.ndim + 1, "unsqueeze")
    shape = list(input.shape)
    shape.insert(d, 1)
    return reshape(input, *shape)


@register()
def expand(input, *sizes):
    """Broadcast to a larger shape without copying; -1 keeps a dimension."""
    tensor_arg(input, "expand")
    sizes = _shape_args(sizes, "expand")
    if len(sizes) < input.ndim:
        raise ValueError(f"expand: the number of sizes ({len(sizes)}) must be >= the tensor's dims ({input.ndim})")
    lead = len(sizes) - input.ndim
    shape = []
    for i, s in enumerate(sizes):
        cur = input.shape[i - lead] if i >= lead else None
        if s == -1:
            if cur is None:
                raise ValueError(f"expand: -1 is not allowed in a new leading dimension, got {sizes}")
            s = cur
        if cur is not None and cur != 1 and cur != s:
            raise ValueError(f"expand: size {s} at dim {i} does not match the tensor's size {cur} "
                             f"(shape {input.shape} to {sizes})")
        shape.append(s)
    shape = tuple(shape)
    return input if shape == input.shape else Expand.apply(input, shape=shape)


@register(method=False, methods=("sum_to_size",))
def sum_to(input, *size):
    """Sum ``input`` down to ``size`` (the reverse of broadcasting ``size`` to ``input.shape``); the size
    as a tuple or as ints, as torch's ``Tensor.sum_to_size``."""
    tensor_arg(input, "sum_to")
    shape = _shape_args(size, "sum_to")
    try:
        fits = np.broadcast_shapes(shape, input.shape) == input.shape
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"sum_to: shape {shape} does not broadcast to the input's shape {input.shape}")
    return input if shape == input.shape else SumTo.apply(input, shape=shape)


def _check_index(key, shape):
    """Index errors named, before NumPy raises its own."""
    try:
        np.empty(shape, dtype=np.int8)[tuple(k if not backend.is_device_array(k) else backend.to_device(k, "cpu")
                                             for k in (key if isinstance(key, tuple) else (key,)))]
    except IndexError as exc:
        raise IndexError(f"getitem: {exc} (tensor shape {shape})") from None


@register(method=False)
def getitem(input, key):
    """``input[key]``: basic indexing (ints, slices, None, ...) and integer or bool array indexing."""
    tensor_arg(input, "getitem")
    key = _index_key(key)
    if any(backend.is_device_array(k) or isinstance(k, list) for k in (key if isinstance(key, tuple) else (key,))):
        _check_index(key, input.shape)
    elif isinstance(key, tuple) and len([k for k in key if k is not None and k is not Ellipsis]) > input.ndim:
        raise IndexError(f"getitem: too many indices for a tensor of dimension {input.ndim}")
    try:
        return GetItem.apply(input, key=key)
    except IndexError as exc:
        raise IndexError(f"getitem: {exc} (tensor shape {input.shape})") from None


def _tensor_list(tensors, op):
    if isinstance(tensors, Tensor) or not isinstance(tensors, (list, tuple)):
        raise TypeError(f"{op}: argument 'tensors' must be a list or tuple of Tensors, got {type(tensors).__name__}")
    if not tensors:
        raise ValueError(f"{op}: expected a non-empty list of Tensors")
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
            raise ValueError(f"cat: tensors[{i}] is 0-d; only tensors with dimensions can be concatenated")
    dtype = np.result_type(*[t.dtype for t in tensors])
    kept = [t for t in tensors if t.shape != (0,)]  # torch's legacy rule: 1-D empty tensors are skipped
    tensors = kept or tensors[:1]
    ref = tensors[0]
    d = _dim(dim, ref.ndim, "cat")
    for i, t in enumerate(tensors):
        if t.ndim != ref.ndim or any(a != b for j, (a, b) in enumerate(zip(t.shape, ref.shape)) if j != d):
            raise ValueError(f"cat: tensors[{i}] has shape {t.shape}, which does not match tensors[0]'s "
                             f"{ref.shape} outside dim {d}")
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
            raise ValueError(f"stack: tensors[{i}] has shape {t.shape}, expected {tensors[0].shape} like tensors[0]")
    d = _dim(dim, tensors[0].ndim + 1, "stack")
    return cat([t.unsqueeze(d) for t in tensors], d)


@register(top=True)
def split(tensor, split_size_or_sections, dim=0):
    """Split into pieces of ``split_size`` (the last may be smaller) or of the given section sizes."""
    tensor_arg(tensor, "split", "tensor")
    if tensor.ndim == 0:
        raise ValueError("split: expects at least a 1-dimensional tensor, got a 0-d tensor")
    d = _dim(dim, tensor.ndim, "split")
    n = tensor.shape[d]
    if isinstance(split_size_or_sections, (list, tuple)):
        sizes = [int_arg(s, "split", "split_size_or_sections", 0) for s in split_size_or_sections]
        if sum(sizes) != n:
            raise ValueError(f"split: sections {sizes} sum to {sum(sizes)}, but dim {d} has size {n}")
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
        raise ValueError("chunk: expects at least a 1-dimensional tensor, got a 0-d tensor")
    d = _dim(dim, input.ndim, "chunk")
    if input.shape[d] == 0:  # an empty dim gives ``chunks`` empty pieces (as torch)
        return tuple(input[(slice(None),) * d + (slice(0, 0),)] for _ in range(chunks))
    size = -(-input.shape[d] // chunks)
    return split(input, max(size, 1), d)


_PAD_MODES = ("constant", "reflect", "replicate", "circular")


@register(method=False)
def pad(input, pad, mode="constant", value=None):
    """Pad the last ``len(pad) // 2`` dims: ``pad = (left, right, top, bottom, ...)`` from the last dim
    backwards. Modes: 'constant' (negative widths crop), 'reflect', 'replicate', 'circular'."""
    widths = _pad_widths(input, pad, mode)
    if mode == "constant":
        return _constant_pad(input, widths, 0.0 if value is None else value)
    if value not in (None, 0):
        raise ValueError(f"pad: 'value' only applies to mode='constant', got value={value} with mode={mode!r}")
    k = len(pad) // 2
    if input.ndim not in (k + 1, k + 2):  # (C, *spatial) or (N, C, *spatial), as torch
        raise ValueError(f"pad: mode {mode!r} with {len(pad)} padding values pads {k} dims of a {k + 1}-D or "
                         f"{k + 2}-D input, got a {input.ndim}-D input")
    out = input
    for d, (lo, hi) in enumerate(widths):
        if lo or hi:  # gather each output element from its source index along d
            out = out[(slice(None),) * d + (backend.to_device(_pad_source(mode, input.shape[d], lo, hi, d),
                                                               input.device),)]
    return out


def _pad_widths(input, pad, mode):
    """pad's checked arguments as (before, after) widths for every dim of the input."""
    tensor_arg(input, "pad")
    if not isinstance(pad, (tuple, list)) or len(pad) % 2 or not all(
            isinstance(p, numbers.Integral) and not isinstance(p, bool) for p in pad):
        raise ValueError(f"pad: argument 'pad' must be a tuple of ints of even length, got {pad!r}")
    if len(pad) // 2 > input.ndim:
        raise ValueError(f"pad: {len(pad)} padding values for a {input.ndim}-D input (at most {2 * input.ndim})")
    if mode not in _PAD_MODES:
        raise ValueError(f"pad: mode must be one of {_PAD_MODES}, got {mode!r}")
    widths = [(0, 0)] * input.ndim
    for i in range(len(pad) // 2):
        widths[input.ndim - 1 - i] = (int(pad[2 * i]), int(pad[2 * i + 1]))
    return widths


def _constant_pad(input, widths, value):
    """Positive widths add ``value``; negative ones crop."""
    pos = [(max(lo, 0), max(hi, 0)) for lo, hi in widths]
    out = input if all(w == (0, 0) for w in pos) else ConstantPad.apply(input, widths=pos, value=value)
    if any(lo < 0 or hi < 0 for lo, hi in widths):
        for i, (lo, hi) in enumerate(widths):
            if -min(lo, 0) - min(hi, 0) > out.shape[i]:
                raise ValueError(f"pad: negative padding {(lo, hi)} crops more than dim {i}'s size {out.shape[i]}")
        out = out[tuple(slice(-min(lo, 0), out.shape[i] + min(hi, 0)) for i, (lo, hi) in enumerate(widths))]
    return out


def _pad_source(mode, n, lo, hi, d):
    """For reflect, replicate or circular padding of a dim of size ``n`` by (lo, hi): each output's source index."""
    if n + lo + hi < 0:
        raise ValueError(f"pad: negative padding {(lo, hi)} crops more than dim {d}'s size {n}")
    if mode == "circular":  # negative widths crop first, then the rest wraps around what is left (as torch)
        crop, m = -min(lo, 0), n + min(lo, 0) + min(hi, 0)
        if max(lo, 0) > m or max(hi, 0) > m:
            raise ValueError(f"pad: circular padding {(lo, hi)} must be at most dim {d}'s size {m} (after cropping)")
        return np.arange(-max(lo, 0), m + max(hi, 0)) % m + crop
    if mode == "reflect" and (lo >= n or hi >= n):
        raise ValueError(f"pad: reflect padding {(lo, hi)} must be smaller than dim {d}'s size {n}")
    if n == 0:
        raise ValueError(f"pad: mode {mode!r} cannot pad dim {d} of size 0")
    j = np.arange(-lo, n + hi)  # a negative width starts or stops inside the dim
    if mode == "reflect":
        j = np.abs(j)
        return np.where(j > n - 1, 2 * (n - 1) - j, j)
    return np.clip(j, 0, n - 1)


@register(top=True)
def gather(input, dim, index):
    """``out[i][j][k] = input[i][index[i][j][k]][k]`` for dim=1 (as torch.gather)."""
    tensor_arg(input, "gather")
    tensor_arg(index, "gather", "index")
    d = _dim(dim, input.ndim, "gather")
    if index.dtype.kind not in "iu":
        raise TypeError(f"gather: argument 'index' must have an integer dtype, got {index.dtype}")
    if index.numel() == 0:  # any empty index gives an empty result of its shape (as torch)
        return input.reshape(-1)[:0].reshape(index.shape)
    if input.ndim == 0 or index.ndim == 0:  # a 0-d tensor acts as 1-D of one element (as torch)
        if max(input.ndim, index.ndim) > 1:
            raise ValueError(f"gather: index shape {index.shape} does not fit input shape {input.shape}")
        return gather(input.reshape(-1), 0, index.reshape(-1)).reshape(index.shape)
    if index.ndim != input.ndim or any(a > b for i, (a, b) in enumerate(zip(index.shape, input.shape)) if i != d):
        raise ValueError(f"gather: index shape {index.shape} does not fit input shape {input.shape} at dim {d}")
    # Index values are checked for host data only: on a GPU the check would copy to the host on every call
    # (CuPy wraps out-of-range indices instead).
    if index.numel() and backend.get_array_module(index._data) is np and (
            int(index._data.min()) < -input.shape[d] or int(index._data.max()) >= input.shape[d]):
        raise IndexError(f"gather: index out of range for dim {d} of size {input.shape[d]}")
    same_device("gather", input, index)
    if index.shape != input.shape:
        input = input[tuple(slice(0, s) if i != d else slice(None) for i, s in enumerate(index.shape))]
    return Gather.apply(input, index, dim=d)


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


@register()
def contiguous(input, memory_format=backend.contiguous_format):
    """``input`` itself when laid out in ``memory_format`` (default row-major), else a copy that is."""
    tensor_arg(input, "contiguous")
    if memory_format is backend.preserve_format:
        raise ValueError("contiguous: memory_format preserve_format is not supported (as torch)")
    laid_out = backend.has_memory_format(input._data, memory_format, "contiguous")
    return input if laid_out else Clone.apply(input, memory_format=memory_format)


# ---- composed shape ops (their gradients come from the ops they are made of) -----------------------------

@register()
def view_as(input, other):
    """``input.reshape(other.shape)``."""
    tensor_arg(other, "view_as", "other")
    return reshape(tensor_arg(input, "view_as"), *other.shape)


@register()
def expand_as(input, other):
    """``input.expand(other.shape)``."""
    tensor_arg(other, "expand_as", "other")
    return expand(tensor_arg(input, "expand_as"), *other.shape)


@register(top=True)
def narrow(input, dim, start, length):
    """The slice ``start:start + length`` along ``dim`` (a view); a negative ``start`` counts from the end."""
    tensor_arg(input, "narrow")
    if input.ndim == 0:
        raise ValueError("narrow: cannot be applied to a 0-d tensor")
    d = _dim(dim, input.ndim, "narrow")
    n = input.shape[d]
    if isinstance(start, Tensor):  # torch takes a 0-d integer tensor too
        if start.ndim or start.dtype.kind not in "iu":
            raise TypeError(f"narrow: start must be an int or a 0-d integer tensor, got {start.dtype} {start.shape}")
        start = int(start.item())
    start, length = int_arg(start, "narrow", "start"), int_arg(length, "narrow", "length", 0)
    if not -n <= start <= n:
        raise IndexError(f"narrow: start {start} is out of range for dim {d} of size {n}")
    start %= n if n else 1
    if start + length > n:
        raise ValueError(f"narrow: start ({start}) + length ({length}) exceeds dim {d} of size {n}")
    return input[(slice(None),) * d + (slice(start, start + length),)]


@register(top=True)
def unbind(input, dim=0):
    """The slices along ``dim``, that dimension removed, as a tuple."""
    tensor_arg(input, "unbind")
    if input.ndim == 0:
        raise ValueError("unbind: expects at least a 1-dimensional tensor, got a 0-d tensor")
    d = _dim(dim, input.ndim, "unbind")
    return tuple(input[(slice(None),) * d + (i,)] for i in range(input.shape[d]))


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
        raise ValueError(f"flip: dims {tuple(ds)} name a dimension twice")
    key = tuple(slice(None, None, -1) if i in axes else slice(None) for i in range(input.ndim))
    return input[key].clone() if axes else input.clone()


@register(top=True)
def roll(input, shifts, dims=None):
    """Shift elements along ``dims`` cyclically (over the flattened tensor when ``dims`` is None)."""
    tensor_arg(input, "roll")
    shifts = tuple(shifts) if isinstance(shifts, (list, tuple)) else (shifts,)
    if dims is None:
        if len(shifts) != 1:
            raise ValueError(f"roll: without dims, shifts must be one int, got {shifts}")
        return roll(input.reshape(-1), shifts[0], 0).reshape(*input.shape)
    dims = tuple(dims) if isinstance(dims, (list, tuple)) else (dims,)
    if len(shifts) != len(dims):
        raise ValueError(f"roll: shifts {shifts} and dims {dims} must have the same length")
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
        raise ValueError(f"repeat: the number of repeats ({len(sizes)}) must be >= the tensor's dims "
                         f"({input.ndim})")
    if any(s < 0 for s in sizes):
        raise ValueError(f"repeat: repeats must be non-negative, got {sizes}")
    shape = (1,) * (len(sizes) - input.ndim) + input.shape
    x = input.reshape(*[v for s in shape for v in (1, s)])       # (1, s0, 1, s1, ...)
    x = x.expand(*[v for r, s in zip(sizes, shape) for v in (r, s)])  # (r0, s0, r1, s1, ...)
    return x.reshape(*[r * s for r, s in zip(sizes, shape)])


@register(top=True)
def index_select(input, dim, index):
    """The entries at ``index`` (a 1-D or 0-d integer tensor) along ``dim``."""
    tensor_arg(input, "index_select")
    tensor_arg(index, "index_select", "index")
    if index.ndim > 1 or index.dtype.kind not in "iu":
        raise TypeError(f"index_select: index must be a 0-d or 1-D integer tensor, got {index.ndim}-D "
                        f"{index.dtype}")
    d = _dim(dim, input.ndim, "index_select")
    if input.ndim == 0:  # a 0-d input: the index may only hold 0s, and the result is 0-d (as torch)
        return input.reshape(1)[index.reshape(-1)].reshape(())
    return input[(slice(None),) * d + (index.reshape(-1),)]


def _along(xp, index, dim):
    """The full index tuple that puts ``index`` along ``dim`` (torch's scatter/gather addressing)."""
    key = list(xp.ix_(*[xp.arange(s) for s in index.shape]))
    key[dim] = index
    return tuple(key)


class Scatter(Function):
    """``input`` with ``src`` written at ``index`` along ``dim``. Where an index repeats, one write wins (torch
    does not say which either); the gradient of ``src`` is gathered at every index, as torch's."""
    name = "scatter"
    differentiable_twice = False

    def forward(self, xp, x, src, index, dim):
        self.dim, self.src_shape = dim, src.shape
        self.save_for_backward(index)
        out = x.copy()
        out[_along(xp, index, dim)] = src[tuple(slice(0, s) for s in index.shape)]
        return out

    def backward(self, g):
        index, = self.saved_arrays
        g = g._data
        xp = backend.get_array_module(g)
        key = _along(xp, index, self.dim)
        gx = gsrc = None
        if self.needs_input_grad[0]:
            gx = g.copy()
            gx[key] = 0
        if self.needs_input_grad[1]:
            gsrc = xp.zeros(self.src_shape, dtype=g.dtype)
            gsrc[tuple(slice(0, s) for s in index.shape)] = g[key]
        return gx, gsrc, None


def _scatter_args(op, input, dim, index, src):
    tensor_arg(input, op)
    tensor_arg(index, op, "index")
    if index.dtype.kind not in "iu":
        raise TypeError(f"{op}: argument 'index' must have an integer dtype, got {index.dtype}")
    d = _dim(dim, input.ndim, op)
    if index.ndim != input.ndim or (src is not None and src.ndim != input.ndim):
        raise ValueError(f"{op}: index {index.shape}" + (f", src {src.shape}" if src is not None else "") +
                         f" and input {input.shape} must have the same number of dims")
    if any(a > b for i, (a, b) in enumerate(zip(index.shape, input.shape)) if i != d) or (
            src is not None and any(a > b for a, b in zip(index.shape, src.shape))):
        raise ValueError(f"{op}: index shape {index.shape} must be no larger than src's"
                         + (f" {src.shape}" if src is not None else "") +
                         f" in every dim and than input's {input.shape} in every dim but {d}")
    if index.numel() and backend.get_array_module(index._data) is np and (
            int(index._data.min()) < -input.shape[d] or int(index._data.max()) >= input.shape[d]):
        raise IndexError(f"{op}: index out of range for dim {d} of size {input.shape[d]}")
    same_device(op, input, index, src)
    return d


@register(top=True)
def scatter(input, dim, index, src=None, *, value=None, reduce=None):
    """A copy of ``input`` with ``out[i][index[i][j][k]][k] = src[i][j][k]`` for dim=1 (as torch.scatter); ``src``
    may be a number (or ``value=``). ``reduce='add'`` sums into ``input`` instead (see scatter_add)."""
    op = "scatter"
    if src is None:
        src = value
    if src is None:
        raise TypeError(f"{op}: give src (a tensor or a number)")
    if reduce not in (None, "add"):
        raise ValueError(f"{op}: reduce must be None or 'add' ('multiply' is not supported), got {reduce!r}")
    if not isinstance(src, Tensor):
        if not isinstance(src, numbers.Number):
            raise TypeError(f"{op}: src must be a tensor or a number, got {type(src).__name__}")
        tensor_arg(index, op, "index")
        src = Tensor._make(backend.get_array_module(input._data).full(index.shape, src, dtype=input.dtype))
    if reduce == "add":
        return scatter_add(input, dim, index, src)
    return _scatter(op, input, dim, index, src, lambda x, s, i, d: Scatter.apply(x, s, i, dim=d))


@register(top=True)
def scatter_add(input, dim, index, src):
    """A copy of ``input`` with ``src`` added at ``index`` along ``dim`` (repeated indices add up)."""
    op = "scatter_add"
    tensor_arg(src, op, "src")

    def add(x, s, i, d):
        if s.shape != i.shape:
            s = s[tuple(slice(0, n) for n in i.shape)]
        return x + ScatterAdd.apply(s, i, dim=d, shape=x.shape)
    return _scatter(op, input, dim, index, src, add)


def _scatter(op, input, dim, index, src, run):
    """The checks and edge cases scatter and scatter_add share; ``run(input, src, index, dim)`` does the work."""
    tensor_arg(index, op, "index")
    if input.ndim == 0 and index.ndim == 0 and src.ndim == 0:  # a 0-d tensor acts as 1-D of one element
        return _scatter(op, input.reshape(1), dim, index.reshape(1), src.reshape(1), run).reshape(())
    d = _scatter_args(op, input, dim, index, src)
    if src.dtype != input.dtype:
        raise TypeError(f"{op}: src dtype {src.dtype} differs from input dtype {input.dtype}")
    if index.numel() == 0:
        return input + src.sum() * 0.0 if src.requires_grad else input.clone()
    return run(input, src, index, d)


@register(method=False, top=True)
def channel_shuffle(input, groups):
    """ShuffleNet's channel shuffle: (N, g * k, ...) -> channels reordered as (k, g): reshape, swap, reshape."""
    tensor_arg(input, "channel_shuffle")
    groups = int_arg(groups, "channel_shuffle", "groups", 1)
    if input.ndim < 3:
        raise ValueError(f"channel_shuffle: expects (N, C, *) with at least 3 dims, got shape {input.shape}")
    n, c, *rest = input.shape
    if c % groups:
        raise ValueError(f"channel_shuffle: {c} channels are not divisible by groups={groups}")
    return input.reshape(n, groups, c // groups, *rest).transpose(1, 2).reshape(n, c, *rest)


@register(method=False)
def embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0, scale_grad_by_freq=False,
              sparse=False):
    """Rows of ``weight`` (num_embeddings, dim) picked by the integer tensor ``input``: output
    (*input.shape, dim). The row at ``padding_idx`` gets no gradient (as torch)."""
    tensor_arg(input, "embedding")
    tensor_arg(weight, "embedding", "weight")
    if input.dtype.kind not in "iu":
        raise TypeError(f"embedding: input must hold integer indices, got {input.dtype}")
    if weight.ndim != 2:
        raise ValueError(f"embedding: weight must be 2-D (num_embeddings, embedding_dim), got shape {weight.shape}")
    if max_norm is not None or scale_grad_by_freq or sparse:
        raise ValueError("embedding: max_norm, scale_grad_by_freq and sparse are not supported by minidl")
    n = weight.shape[0]
    if input.numel() and not backend.is_device_array(input._data):  # on the host: checked (on a device: a copy)
        lo, hi = int(input._data.min()), int(input._data.max())
        if lo < -n or hi >= n:
            raise IndexError(f"embedding: index out of range: values in [{lo}, {hi}], {n} embeddings")
    out = weight[input]
    if padding_idx is not None:
        padding_idx = int_arg(padding_idx, "embedding", "padding_idx")
        if not -n <= padding_idx < n:
            raise ValueError(f"embedding: padding_idx {padding_idx} is out of range for {n} embeddings")
        if out.requires_grad:  # the same values, the padding row's cut from the graph
            from .math import where
            out = where((input == padding_idx % n).unsqueeze(-1), out.detach(), out)
    return out
