"""Indexing: getitem, gather/scatter/scatter_add, index_select, embedding, one_hot and masked_fill. Each public
function sits under its Function class."""
import numbers

import numpy as np

from .. import backend, kernels
from ..autograd import Function
from ..autograd.capturing import constant
from ..autograd.tensor import Tensor, _dim, _index_key
from ..backend.errors import RuntimeIndexError, RuntimeTypeError, RuntimeValueError
from ._checks import int_arg, same_device, tensor_arg
from ._registry import register
from .math import _check_broadcast, where


def _key_on(xp, key):
    """An indexing key whose index arrays live where the data does: host (NumPy) index arrays given for
    device data are copied to the device once, here, so that forward and backward use the same copy."""
    if xp is np:
        return key

    def move(k):
        return xp.asarray(k) if isinstance(k, np.ndarray) else k
    return tuple(map(move, key)) if isinstance(key, tuple) else move(key)


class IndexAdd(Function):
    """zeros(shape) with ``g`` added at ``key`` (repeated indices add up): the backward of indexing."""
    name = "index_add"

    def forward(self, xp, g, key, shape):
        self.save_for_backward(key)
        return kernels.zeros_with(shape, key, g)

    def backward(self, gg):
        key, = self.saved_arrays
        return GetItem.apply(gg, key=key)


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
        _check_index(key, input._data.shape)
    elif isinstance(key, tuple) and len([k for k in key if k is not None and k is not Ellipsis]) > input.ndim:
        raise IndexError(f"getitem: too many indices for a tensor of dimension {input.ndim}")
    try:
        return GetItem.apply(input, key=key)
    except IndexError as exc:
        raise IndexError(f"getitem: {exc} (tensor shape {tuple(input.shape)})") from None


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


class Gather(Function):
    name = "gather"

    def forward(self, xp, x, index, dim):
        self.dim, self.in_shape = dim, x.shape
        self.save_for_backward(index)
        return xp.take_along_axis(x, index, axis=dim)

    def backward(self, g):
        index, = self.saved_arrays
        return ScatterAdd.apply(g, Tensor._make(index), dim=self.dim, shape=self.in_shape), None


@register(top=True)
def gather(input, dim, index):
    """``out[i][j][k] = input[i][index[i][j][k]][k]`` for dim=1 (as torch.gather)."""
    tensor_arg(input, "gather")
    tensor_arg(index, "gather", "index")
    d = _dim(dim, input.ndim, "gather")
    if index.dtype.kind not in "iu":
        raise RuntimeTypeError(f"gather: argument 'index' must have an integer dtype, got {index.dtype}")
    if index.numel() == 0:  # any empty index gives an empty result of its shape (as torch)
        return input.reshape(-1)[:0].reshape(index.shape)
    if input.ndim == 0 or index.ndim == 0:  # a 0-d tensor acts as 1-D of one element (as torch)
        if max(input.ndim, index.ndim) > 1:
            raise RuntimeValueError(f"gather: index shape {tuple(index.shape)} does not fit input shape "
                                    f"{tuple(input.shape)}")
        return gather(input.reshape(-1), 0, index.reshape(-1)).reshape(index.shape)
    if index.ndim != input.ndim or any(a > b for i, (a, b) in enumerate(zip(index.shape, input.shape)) if i != d):
        raise RuntimeValueError(f"gather: index shape {tuple(index.shape)} does not fit input shape "
                                f"{tuple(input.shape)} at dim {d}")
    # Index values are checked for host data only: on a GPU the check would copy to the host on every call
    # (CuPy wraps out-of-range indices instead).
    if index.numel() and backend.get_array_module(index._data) is np and (
            int(index._data.min()) < -input.shape[d] or int(index._data.max()) >= input.shape[d]):
        raise RuntimeIndexError(f"gather: index out of range for dim {d} of size {input.shape[d]}")
    same_device("gather", input, index)
    if index.shape != input.shape:
        input = input[tuple(slice(0, s) if i != d else slice(None) for i, s in enumerate(index.shape))]
    return Gather.apply(input, index, dim=d)


@register(top=True)
def index_select(input, dim, index):
    """The entries at ``index`` (a 1-D or 0-d integer tensor) along ``dim``."""
    tensor_arg(input, "index_select")
    tensor_arg(index, "index_select", "index")
    if index.ndim > 1 or index.dtype.kind not in "iu":
        raise RuntimeTypeError(f"index_select: index must be a 0-d or 1-D integer tensor, got {index.ndim}-D "
                               f"{index.dtype}")
    d = _dim(dim, input.ndim, "index_select")
    if input.ndim == 0:  # a 0-d input: the index may only hold 0s, and the result is 0-d (as torch)
        return input.reshape(1)[index.reshape(-1)].reshape(())
    return input[(slice(None),) * d + (index.reshape(-1),)]


def _scatter_args(op, input, dim, index, src):
    tensor_arg(input, op)
    tensor_arg(index, op, "index")
    if index.dtype.kind not in "iu":
        raise RuntimeTypeError(f"{op}: argument 'index' must have an integer dtype, got {index.dtype}")
    d = _dim(dim, input.ndim, op)
    if index.ndim != input.ndim or (src is not None and src.ndim != input.ndim):
        src_shape = f", src {tuple(src.shape)}" if src is not None else ""
        raise RuntimeValueError(f"{op}: index {tuple(index.shape)}{src_shape} and input {tuple(input.shape)} must "
                                "have the same number of dims")
    if any(a > b for i, (a, b) in enumerate(zip(index.shape, input.shape)) if i != d) or (
            src is not None and any(a > b for a, b in zip(index.shape, src.shape))):
        raise RuntimeValueError(f"{op}: index shape {tuple(index.shape)} must be no larger than src's"
                                + (f" {tuple(src.shape)}" if src is not None else "") +
                                f" in every dim and than input's {tuple(input.shape)} in every dim but {d}")
    if index.numel() and backend.get_array_module(index._data) is np and (
            int(index._data.min()) < -input.shape[d] or int(index._data.max()) >= input.shape[d]):
        raise RuntimeIndexError(f"{op}: index out of range for dim {d} of size {input.shape[d]}")
    same_device(op, input, index, src)
    return d


def _scatter(op, input, dim, index, src, run):
    """The checks and edge cases scatter and scatter_add share; ``run(input, src, index, dim)`` does the work."""
    tensor_arg(index, op, "index")
    if input.ndim == 0 and index.ndim == 0 and src.ndim == 0:  # a 0-d tensor acts as 1-D of one element
        return _scatter(op, input.reshape(1), dim, index.reshape(1), src.reshape(1), run).reshape(())
    d = _scatter_args(op, input, dim, index, src)
    if src.dtype != input.dtype:
        raise RuntimeTypeError(f"{op}: src dtype {src.dtype} differs from input dtype {input.dtype}")
    if index.numel() == 0:
        return input + src.sum() * 0.0 if src.requires_grad else input.clone()
    return run(input, src, index, d)


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
        raise RuntimeValueError(f"{op}: reduce must be None or 'add' ('multiply' is not supported), got {reduce!r}")
    if not isinstance(src, Tensor):
        if not isinstance(src, numbers.Number):
            raise TypeError(f"{op}: src must be a tensor or a number, got {type(src).__name__}")
        tensor_arg(index, op, "index")
        src = Tensor._make(constant(backend.get_array_module(input._data).full(index.shape, src, dtype=input.dtype)))
    if reduce == "add":
        return scatter_add(input, dim, index, src)
    return _scatter(op, input, dim, index, src, lambda x, s, i, d: Scatter.apply(x, s, i, dim=d))


@register(method=False)
def embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0, scale_grad_by_freq=False,
              sparse=False):
    """Rows of ``weight`` (num_embeddings, dim) picked by the integer tensor ``input``: output
    (*input.shape, dim). The row at ``padding_idx`` gets no gradient (as torch)."""
    tensor_arg(input, "embedding")
    tensor_arg(weight, "embedding", "weight")
    if input.dtype.kind not in "iu":
        raise RuntimeTypeError(f"embedding: input must hold integer indices, got {input.dtype}")
    if weight.ndim != 2:
        raise RuntimeValueError("embedding: weight must be 2-D (num_embeddings, embedding_dim), got shape "
                                f"{tuple(weight.shape)}")
    if max_norm is not None or scale_grad_by_freq or sparse:
        raise RuntimeValueError("embedding: max_norm, scale_grad_by_freq and sparse are not supported by minidl")
    n = weight.shape[0]
    if input.numel() and not backend.is_device_array(input._data):  # on the host: checked (on a device: a copy)
        lo, hi = int(input._data.min()), int(input._data.max())
        if lo < -n or hi >= n:
            raise IndexError(f"embedding: index out of range: values in [{lo}, {hi}], {n} embeddings")
    out = weight[input]
    if padding_idx is not None:
        padding_idx = int_arg(padding_idx, "embedding", "padding_idx")
        if not -n <= padding_idx < n:
            raise RuntimeValueError(f"embedding: padding_idx {padding_idx} is out of range for {n} embeddings")
        if out.requires_grad:  # the same values, the padding row's cut from the graph
            out = where((input == padding_idx % n).unsqueeze(-1), out.detach(), out)
    return out


@register(method=False)
def one_hot(tensor, num_classes=-1):
    """int64 tensor of shape (*tensor.shape, num_classes) with a 1 at each class index (as torch's F.one_hot).
    ``num_classes=-1`` takes the largest class + 1 (a read of the values: a host copy on a device)."""
    tensor_arg(tensor, "one_hot", "tensor")
    if tensor.dtype != np.int64:
        raise RuntimeTypeError(f"one_hot: tensor must be int64 (class indices), got {tensor.dtype}")
    xp = backend.get_array_module(tensor._data)
    t = tensor._data
    if num_classes == -1:
        if t.size == 0:
            raise RuntimeValueError("one_hot: cannot infer num_classes of an empty tensor; pass num_classes")
        num_classes = int(t.max()) + 1
    num_classes = int(num_classes)
    if t.size and (int(t.min()) < 0 or int(t.max()) >= num_classes):
        raise RuntimeValueError(f"one_hot: class values must be in [0, {num_classes}), got [{int(t.min())}, "
                                f"{int(t.max())}]")
    return Tensor._make((t[..., None] == xp.arange(num_classes)).astype(np.int64))


@register(top=True)
def masked_fill(input, mask, value):
    """``input`` with the elements where ``mask`` (bool; input and mask broadcast together) is True set to
    ``value`` (a number or a 0-d tensor); the gradient flows to the other elements."""
    tensor_arg(input, "masked_fill")
    tensor_arg(mask, "masked_fill", "mask")
    if mask.dtype != np.bool_:
        raise RuntimeTypeError(f"masked_fill: mask must be a bool tensor, got {mask.dtype}")
    if isinstance(value, Tensor) and value.ndim:
        raise RuntimeValueError(f"masked_fill: value must be a number or a 0-d tensor, got shape {tuple(value.shape)}")
    _check_broadcast("masked_fill", input.shape, mask.shape)
    if isinstance(value, Tensor):
        v = value.to(input.dtype)
    else:
        v = Tensor._make(constant(backend.get_array_module(input._data).asarray(value, dtype=input.dtype)))
    return where(mask, v, input)
