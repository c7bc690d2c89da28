"""Views: the same elements in another shape (reshape/view, permute/transpose, squeeze/unsqueeze, flatten, expand,
narrow, unbind), and sum_to, expand's adjoint. Each public function sits under its Function class."""
import math
import numbers

import numpy as np

from ..autograd import Function
from ..autograd.tensor import Tensor, _dim
from ..backend.errors import RuntimeValueError
from ._checks import dims, int_arg, tensor_arg
from ._registry import register


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


def _shape_args(shape, op):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    if all(type(s) is int for s in shape):  # plain ints (and Size's): nothing to convert
        return tuple(shape)
    for s in shape:
        if not isinstance(s, numbers.Integral) or isinstance(s, bool):
            raise TypeError(f"{op}: shape entries must be ints, got {shape}")
    return tuple(int(s) for s in shape)


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
        raise RuntimeValueError(f"sum_to: shape {shape} does not broadcast to the input's shape {tuple(input.shape)}")
    return input if shape == input.shape else SumTo.apply(input, shape=shape)


class Reshape(Function):
    name = "reshape"

    def forward(self, xp, x, shape):
        self.in_shape = x.shape
        return x.reshape(shape)

    def backward(self, g):
        return g.reshape(self.in_shape)


def _target_shape(input, shape, op):
    shape = _shape_args(shape, op)
    size = input._data.size
    known = math.prod(s for s in shape if s != -1)
    if shape.count(-1) > 1 or any(s < -1 for s in shape) or (
            -1 not in shape and known != size) or (
            -1 in shape and (known == 0 or size % known)):
        raise RuntimeValueError(f"{op}: shape {shape} is invalid for input of size {size} (shape "
                                f"{tuple(input.shape)})")
    if -1 in shape:
        shape = tuple(size // known if s == -1 else s for s in shape)
    return shape


@register(top=True)
def reshape(input, *shape):
    """The same data with a new shape (a view where the strides allow, else a copy); one dimension may be -1."""
    tensor_arg(input, "reshape")
    shape = _target_shape(input, shape, "reshape")
    if shape == input._data.shape:
        return input
    return Reshape.apply(input, shape=shape)


@register()
def view(input, *shape):
    """A view with a new shape, sharing the data; refused where the strides do not allow one (as torch: a
    transposed or channels_last tensor flattened, say), so that code written on minidl stays valid torch.
    ``reshape`` copies in those cases."""
    tensor_arg(input, "view")
    shape = _target_shape(input, shape, "view")
    a = input._data
    if shape == a.shape:
        return input
    if a.flags.c_contiguous:  # any shape of the same size is a view of contiguous memory
        return Reshape.apply(input, shape=shape)
    # ask NumPy whether a view exists, on an array with the same shape and strides but no data to copy
    probe = np.lib.stride_tricks.as_strided(np.zeros(1, dtype=a.dtype), shape=a.shape, strides=a.strides)
    try:
        np.reshape(probe, shape, copy=False)
    except ValueError:
        strides = tuple(s // a.itemsize for s in a.strides)
        raise RuntimeValueError(f"view: a tensor of shape {tuple(input.shape)} with strides {strides} cannot be viewed "
                                f"as shape {shape} (its memory is not laid out for it); use .reshape(...), which "
                                "copies, or .contiguous().view(...)") from None
    return Reshape.apply(input, shape=shape)


class Permute(Function):
    name = "permute"

    def forward(self, xp, x, axes):
        self.axes = axes
        return x.transpose(axes)

    def backward(self, g):
        inverse = [0] * len(self.axes)  # the permutation that puts each axis back
        for i, a in enumerate(self.axes):
            inverse[a] = i
        return Permute.apply(g, axes=tuple(inverse))


@register(top=True)
def permute(input, *dims_):
    """Reorder dimensions: ``x.permute(0, 2, 3, 1)``."""
    tensor_arg(input, "permute")
    axes = _shape_args(dims_, "permute")
    if len(axes) != input.ndim:
        raise RuntimeValueError(f"permute: expected {input.ndim} dims for a tensor of shape {tuple(input.shape)}, got "
                                f"{axes}")
    axes = tuple(_dim(d, input.ndim, "permute") for d in axes)
    if len(set(axes)) != len(axes):
        raise RuntimeValueError(f"permute: dims {dims_} repeat a dimension")
    if axes == tuple(range(input.ndim)):
        return input
    return Permute.apply(input, axes=axes)


@register(top=True)
def transpose(input, dim0, dim1):
    """Swap two dimensions."""
    tensor_arg(input, "transpose")
    ndim = input._data.ndim
    d0, d1 = _dim(dim0, ndim, "transpose"), _dim(dim1, ndim, "transpose")
    if d0 == d1:  # (and a 0-d tensor): nothing moves
        return input
    axes = list(range(ndim))
    axes[d0], axes[d1] = axes[d1], axes[d0]
    return Permute.apply(input, axes=tuple(axes))  # a permutation by construction: permute's checks are moot


@register(top=True)
def t(input):
    """Transpose a 2-D tensor (0-D and 1-D are returned as they are)."""
    tensor_arg(input, "t")
    if input.ndim > 2:
        raise RuntimeValueError(f"t: expects a tensor with <= 2 dimensions, got {input.ndim}-D")
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
        raise RuntimeValueError(f"flatten: start_dim ({start_dim}) must not come after end_dim ({end_dim})")
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


class Expand(Function):
    name = "expand"

    def forward(self, xp, x, shape):
        self.in_shape = x.shape
        return xp.broadcast_to(x, shape)

    def backward(self, g):
        return sum_to(g, self.in_shape)


@register()
def expand(input, *sizes):
    """Broadcast to a larger shape without copying; -1 keeps a dimension."""
    tensor_arg(input, "expand")
    sizes = _shape_args(sizes, "expand")
    if len(sizes) < input.ndim:
        raise RuntimeValueError(f"expand: the number of sizes ({len(sizes)}) must be >= the tensor's dims "
                                f"({input.ndim})")
    lead = len(sizes) - input.ndim
    shape = []
    for i, s in enumerate(sizes):
        cur = input.shape[i - lead] if i >= lead else None
        if s == -1:
            if cur is None:
                raise RuntimeValueError(f"expand: -1 is not allowed in a new leading dimension, got {sizes}")
            s = cur
        if cur is not None and cur != 1 and cur != s:
            raise RuntimeValueError(f"expand: size {s} at dim {i} does not match the tensor's size {cur} (shape "
                                    f"{tuple(input.shape)} to {sizes})")
        shape.append(s)
    shape = tuple(shape)
    return input if shape == input.shape else Expand.apply(input, shape=shape)


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
        raise RuntimeValueError("narrow: cannot be applied to a 0-d tensor")
    d = _dim(dim, input.ndim, "narrow")
    n = input.shape[d]
    if isinstance(start, Tensor):  # torch takes a 0-d integer tensor too
        if start.ndim or start.dtype.kind not in "iu":
            raise TypeError(f"narrow: start must be an int or a 0-d integer tensor, got {start.dtype} "
                            f"{tuple(start.shape)}")
        start = int(start.item())
    start, length = int_arg(start, "narrow", "start"), int_arg(length, "narrow", "length", 0)
    if not -n <= start <= n:
        raise IndexError(f"narrow: start {start} is out of range for dim {d} of size {n}")
    start %= n if n else 1
    if start + length > n:
        raise RuntimeValueError(f"narrow: start ({start}) + length ({length}) exceeds dim {d} of size {n}")
    return input[(slice(None),) * d + (slice(start, start + length),)]


@register(top=True)
def unbind(input, dim=0):
    """The slices along ``dim``, that dimension removed, as a tuple."""
    tensor_arg(input, "unbind")
    if input.ndim == 0:
        raise RuntimeValueError("unbind: expects at least a 1-dimensional tensor, got a 0-d tensor")
    d = _dim(dim, input.ndim, "unbind")
    return tuple(input[(slice(None),) * d + (i,)] for i in range(input.shape[d]))
