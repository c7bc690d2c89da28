"""Reductions: sum, mean, var, std, max, min, amax, amin, argmax, argmin, logsumexp.

Backward passes are written with minidl ops (double backward works).
"""
import builtins
from collections import namedtuple

import numpy as np

from ..autograd import Function
from ..autograd.tensor import Tensor, _dim
from ..backend.errors import IndexValueError, RuntimeTypeError, RuntimeValueError
from ._checks import dims as _dims
from ._checks import tensor_arg
from ._registry import register
from .indexing import gather
from .math import maximum, minimum, where
from .unary import exp
from .view import Expand, Reshape
from .shape import flip


def _kept_shape(shape, axes):
    return tuple(1 if i in axes else s for i, s in enumerate(shape))


def _spread(g, in_shape, axes):
    """A reduction's gradient g back over the input's shape: g with the reduced dims kept (size 1), broadcast.
    Calls the view Functions directly: the shapes are right by construction, so the public ops' checks would
    only cost time (a backward runs this for every sum and mean)."""
    kept = _kept_shape(in_shape, axes)
    if g._data.shape != kept:
        g = Reshape.apply(g, shape=kept)
    return g if kept == in_shape else Expand.apply(g, shape=in_shape)


class Sum(Function):
    name = "sum"

    def forward(self, xp, x, axes, keepdim, dtype=None):
        self.in_shape, self.axes = x.shape, axes
        whole = len(axes) == x.ndim and not keepdim  # axis=None: NumPy's fast path for a sum of everything
        return x.sum(axis=None if whole else axes, keepdims=keepdim, dtype=dtype)

    def backward(self, g):
        return _spread(g, self.in_shape, self.axes)


def _reduce_args(input, dim, op):
    tensor_arg(input, op)
    return _dims(dim, input.ndim, op)


@register(top=True)
def sum(input, dim=None, keepdim=False, dtype=None):
    """Sum over ``dim`` (an int, a tuple of ints, or None for all). Bool and int inputs sum to int64."""
    axes = _reduce_args(input, dim, "sum")
    if dtype is not None:
        from .. import backend
        dtype = backend.as_dtype(dtype, "sum")
    elif input._data.dtype.kind in "biu":
        dtype = np.dtype(np.int64)
    return Sum.apply(input, axes=axes, keepdim=keepdim, dtype=dtype)


class Mean(Function):
    name = "mean"

    def forward(self, xp, x, axes, keepdim):
        self.in_shape, self.axes = x.shape, axes
        self.n = int(np.prod([x.shape[a] for a in axes]))
        # NumPy's mean is this sum and division; written out, an empty mean is NaN without "Mean of empty slice"
        return x.sum(axis=axes, keepdims=keepdim) / self.n

    def backward(self, g):
        return _spread(g, self.in_shape, self.axes) / self.n


@register(top=True)
def mean(input, dim=None, keepdim=False):
    """Mean over ``dim``; needs a floating input, like torch."""
    axes = _reduce_args(input, dim, "mean")
    if input.dtype.kind != "f":
        raise RuntimeTypeError(f"mean: expected a floating input (float32 or float64), got {input.dtype}; convert it "
                               "with .float()")
    return Mean.apply(input, axes=axes, keepdim=keepdim)


def _correction(unbiased, correction, op):
    if unbiased is not None and correction is not None:
        raise RuntimeValueError(f"{op}: give either 'unbiased' or 'correction', not both")
    if correction is not None:
        return correction
    return 1 if unbiased is None or unbiased else 0


@register(top=True)
def var(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """Variance over ``dim`` with Bessel's ``correction`` (default 1: unbiased), as torch.var."""
    if isinstance(dim, bool):  # torch.var(x, False): the old 'unbiased' positional form
        dim, unbiased = None, dim
    axes = _reduce_args(input, dim, "var")
    if input.dtype.kind != "f":
        raise RuntimeTypeError(f"var: expected a floating input, got {input.dtype}")
    c = _correction(unbiased, correction, "var")
    n = int(np.prod([input.shape[a] for a in axes]))
    d = input - mean(input, axes, keepdim=True)
    return sum(d * d, axes, keepdim=keepdim) / builtins.max(n - c, 0)


class StdSqrt(Function):
    """sqrt of a variance; where the deviation is 0 its gradient is 0 (as torch), not 0 * inf = NaN."""
    name = "std"

    def forward(self, xp, v):
        y = xp.sqrt(v)
        self.save_for_backward(y)
        return y

    def backward(self, g):
        y, = self.saved_tensors
        zero = Tensor._make(y._data == 0)
        return where(zero, 0.0, g / (2.0 * where(zero, 1.0, y)))


@register(top=True)
def std(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """Standard deviation: sqrt of :func:`var` with the same arguments."""
    if isinstance(dim, bool):
        dim, unbiased = None, dim
    return StdSqrt.apply(var(input, dim, unbiased, keepdim, correction=correction))


class Amax(Function):
    """max/min over dims; ties share the gradient equally (as torch.amax and full torch.max)."""
    name = "amax"

    def forward(self, xp, x, axes, keepdim, largest=True, nan_wins=False):
        self.in_shape, self.axes = x.shape, axes
        y = (x.max if largest else x.min)(axis=axes, keepdims=True)
        hit = (x == y)
        if nan_wins:  # torch.max(x) with a NaN in x: the NaNs share the gradient
            hit = xp.where(xp.isnan(y), xp.isnan(x), hit)
        self.save_for_backward((hit / hit.sum(axis=axes, keepdims=True)).astype(x.dtype))
        return y if keepdim else y.reshape([s for i, s in enumerate(y.shape) if i not in axes])

    def backward(self, g):
        w, = self.saved_tensors
        return g.reshape(_kept_shape(self.in_shape, self.axes)) * w


def _nonempty(input, axes, op):
    if any(input.shape[a] == 0 for a in axes):
        raise IndexValueError(f"{op}: cannot reduce over an empty dimension (shape {tuple(input.shape)})")


@register(top=True)
def amax(input, dim=(), keepdim=False):
    """Maximum over ``dim`` (all dims when empty); the gradient is shared evenly among ties."""
    axes = _reduce_args(input, None if dim == () else dim, "amax")
    _nonempty(input, axes, "amax")
    return Amax.apply(input, axes=axes, keepdim=keepdim, largest=True)


@register(top=True)
def amin(input, dim=(), keepdim=False):
    """Minimum over ``dim`` (all dims when empty); the gradient is shared evenly among ties."""
    axes = _reduce_args(input, None if dim == () else dim, "amin")
    _nonempty(input, axes, "amin")
    return Amax.apply(input, axes=axes, keepdim=keepdim, largest=False)


values_indices = namedtuple("values_indices", ["values", "indices"])


def _arg(input, dim, keepdim, largest):
    op = "argmax" if largest else "argmin"
    tensor_arg(input, op)
    xp_fn = (lambda a, **k: a.argmax(**k)) if largest else (lambda a, **k: a.argmin(**k))
    if dim is None:
        _nonempty(input, tuple(range(input.ndim)), op)
        out = xp_fn(input._data.reshape(-1))
        if keepdim:
            out = out.reshape((1,) * input.ndim)
        return Tensor._make(out.astype(np.int64) if hasattr(out, "astype") else np.int64(out))
    d = _dim(dim, input.ndim, op)
    if input.ndim == 0:
        return Tensor._make(np.zeros((), dtype=np.int64))
    _nonempty(input, (d,), op)
    return Tensor._make(xp_fn(input._data, axis=d, keepdims=keepdim).astype(np.int64))


@register(top=True)
def argmax(input, dim=None, keepdim=False):
    """Index of the (first) largest value, over everything or along ``dim``."""
    return _arg(input, dim, keepdim, True)


@register(top=True)
def argmin(input, dim=None, keepdim=False):
    """Index of the (first) smallest value, over everything or along ``dim``."""
    return _arg(input, dim, keepdim, False)


def _max_min(input, dim, keepdim, other, largest):
    op = "max" if largest else "min"
    tensor_arg(input, op)
    if isinstance(dim, Tensor):
        dim, other = None, dim
    if other is not None:
        return (maximum if largest else minimum)(input, other)
    if dim is None:
        _nonempty(input, tuple(range(input.ndim)), op)
        return Amax.apply(input, axes=tuple(range(input.ndim)), keepdim=False, largest=largest, nan_wins=True)
    d = _dim(dim, input.ndim, op)
    if input.ndim == 0:  # the value itself, at index 0 (as torch)
        return values_indices(input * 1, Tensor._make(np.zeros((), dtype=np.int64)))
    _nonempty(input, (d,), op)
    idx = (argmax if largest else argmin)(input, d, keepdim=True)
    values = gather(input, d, idx)
    if not keepdim:
        values, idx = values.squeeze(d), idx.squeeze(d)
    return values_indices(values, idx)


@register(top=True)
def max(input, dim=None, keepdim=False, *, other=None):
    """``max(x)``: the largest value; ``max(x, dim)``: (values, indices) along ``dim``;
    ``max(x, other)``: the elementwise maximum. As torch.max."""
    return _max_min(input, dim, keepdim, other, True)


@register(top=True)
def min(input, dim=None, keepdim=False, *, other=None):
    """As :func:`max`, for the smallest values."""
    return _max_min(input, dim, keepdim, other, False)


class LogSumExp(Function):
    name = "logsumexp"

    def forward(self, xp, x, axes):  # keeps the reduced dims; the public function drops them
        if any(x.shape[a] == 0 for a in axes):  # log(0): -inf over an empty dim, as torch
            y = xp.full([1 if i in axes else s for i, s in enumerate(x.shape)], -xp.inf, dtype=x.dtype)
            self.save_for_backward(x, y)
            return y
        m = x.max(axis=axes, keepdims=True)
        m = xp.where(xp.isfinite(m), m, 0)
        y = xp.log(xp.exp(x - m).sum(axis=axes, keepdims=True)) + m
        self.save_for_backward(x, y)
        return y

    def backward(self, g):
        x, y = self.saved_tensors
        return g * exp(x - y)


@register(top=True)
def logsumexp(input, dim, keepdim=False):
    """``log(sum(exp(input), dim))`` computed without overflow."""
    axes = _reduce_args(input, dim, "logsumexp")
    if input.dtype.kind != "f":
        raise RuntimeTypeError(f"logsumexp: expected a floating input, got {input.dtype}")
    y = LogSumExp.apply(input, axes=axes)
    return y if keepdim else y.reshape(*[s for i, s in enumerate(y.shape) if i not in axes])


class Cumsum(Function):
    name = "cumsum"

    def forward(self, xp, x, dim, dtype):
        self.dim = dim
        return xp.cumsum(x, axis=dim, dtype=dtype)

    def backward(self, g):  # each input adds to every later output: the reversed running sum of g
        return flip(cumsum(flip(g, self.dim), self.dim), self.dim)


@register(top=True)
def cumsum(input, dim, *, dtype=None):
    """Running sum along ``dim``; bool and integer inputs sum in int64 (as torch)."""
    tensor_arg(input, "cumsum")
    from .. import backend
    dtype = backend.as_dtype(dtype, "cumsum")
    if dtype is None and input.dtype.kind in "biu":
        dtype = np.dtype(np.int64)
    d = _dim(dim, input.ndim, "cumsum")
    if input.ndim == 0:
        return input.to(dtype) if dtype is not None else input.clone()
    return Cumsum.apply(input, dim=d, dtype=dtype)


def _lexsort_last(xp, key, first):
    """Stable order over the last axis: by ``first``, then ``key`` (ties keep their order)."""
    order = xp.argsort(key, axis=-1, kind="stable")
    f = xp.take_along_axis(first, order, axis=-1)
    return xp.take_along_axis(order, xp.argsort(f, axis=-1, kind="stable"), axis=-1)


def _sort_index(a, axis, descending, xp):
    """Stable sort order along ``axis`` with torch's NaN rule: NaN counts as the largest value."""
    a = xp.moveaxis(a, axis, -1)
    if a.dtype.kind == "b":
        a = a.astype(np.int8)
    if descending:  # NaN first, then the values from the largest; ties keep their order
        nan = xp.isnan(a) if a.dtype.kind == "f" else xp.zeros(a.shape, dtype=bool)
        key = xp.where(nan, 0, -a) if a.dtype.kind == "f" else -a.astype(np.int64)
        idx = _lexsort_last(xp, key, ~nan)
    else:  # NumPy's stable sort already puts NaN last
        idx = xp.argsort(a, axis=-1, kind="stable")
    return xp.moveaxis(idx, -1, axis).astype(np.int64)


def _sort_args(input, dim, op):
    tensor_arg(input, op)
    return _dim(dim, input.ndim, op)


@register(top=True)
def sort(input, dim=-1, descending=False, *, stable=False):
    """(values, indices) sorted along ``dim``; always stable (ties keep their order; torch's default does not
    promise an order for ties), NaN as the largest value. Gradients flow back through the indices."""
    d = _sort_args(input, dim, "sort")
    if input.ndim == 0:
        return values_indices(input * 1, Tensor._make(np.zeros((), dtype=np.int64)))
    from .. import backend
    idx = Tensor._make(_sort_index(input._data, d, descending, backend.get_array_module(input._data)))
    return values_indices(gather(input, d, idx), idx)


@register(top=True)
def argsort(input, dim=-1, descending=False, *, stable=False):
    """The indices that sort ``input`` along ``dim`` (see :func:`sort`)."""
    d = _sort_args(input, dim, "argsort")
    if input.ndim == 0:
        return Tensor._make(np.zeros((), dtype=np.int64))
    from .. import backend
    return Tensor._make(_sort_index(input._data, d, descending, backend.get_array_module(input._data)))


@register(top=True)
def topk(input, k, dim=-1, largest=True, sorted=True):
    """(values, indices) of the ``k`` largest (``largest=False``: smallest) entries along ``dim``, in order."""
    d = _sort_args(input, dim, "topk")
    n = input.shape[d] if input.ndim else 1
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k <= n:
        raise RuntimeValueError(f"topk: k must be an int in [0, {n}] (the size of dim {dim}), got {k!r}")
    if input.ndim == 0:
        return values_indices(input * 1, Tensor._make(np.zeros((), dtype=np.int64)))
    values, idx = sort(input, d, descending=largest)
    key = (slice(None),) * d + (slice(0, k),)
    return values_indices(values[key], idx[key])


class Prod(Function):
    name = "prod"
    differentiable_twice = False  # the backward works on raw arrays (products of the other elements)

    def forward(self, xp, x, axis, keepdim, dtype):
        self.axis, self.keepdim = axis, keepdim
        y = xp.prod(x, axis=axis, keepdims=keepdim, dtype=dtype)
        self.save_for_backward(x, y)
        return y

    def backward(self, gy):
        from .. import backend
        x, y = self.saved_arrays
        g = gy._data
        xp = backend.get_array_module(x)
        axis = self.axis
        if x.size == 0:
            return xp.zeros_like(x)
        if axis is not None and not self.keepdim:
            g, y = xp.expand_dims(g, axis), xp.expand_dims(y, axis)
        if not bool((x == 0).any()):  # no zeros: result / x, as torch (so a NaN spreads to every element)
            return (g * y / x).astype(x.dtype)
        axis = self.axis
        if axis is None:  # over everything: the same, on the flattened array
            flat, g = x.reshape(1, -1), g.reshape(1, 1)
        else:
            flat = xp.moveaxis(x, axis, -1).reshape(-1, x.shape[axis])
            g = xp.moveaxis(g, axis, -1).reshape(-1, 1)
        # zeros somewhere: the product of all the others, exactly, from exclusive running products from both ends
        # (torch's "safe zeros" backward, chosen as torch chooses it: for the whole tensor)
        ones = xp.ones((flat.shape[0], 1), dtype=flat.dtype)
        left = xp.cumprod(xp.concatenate([ones, flat[:, :-1]], axis=1), axis=1)
        right = xp.cumprod(xp.concatenate([ones, flat[:, :0:-1]], axis=1), axis=1)[:, ::-1]
        gx = (left * right * g).astype(x.dtype)
        if axis is None:
            return gx.reshape(x.shape)
        moved = xp.moveaxis(x, axis, -1).shape
        return xp.moveaxis(gx.reshape(moved), -1, axis)


@register(top=True)
def prod(input, dim=None, keepdim=False, *, dtype=None):
    """The product of all elements, or along ``dim``; bool and integer inputs multiply in int64 (as torch).
    Its gradient is the product of the other elements, exact where some are zero."""
    tensor_arg(input, "prod")
    from .. import backend
    dtype = backend.as_dtype(dtype, "prod")
    if dtype is None and input.dtype.kind in "biu":
        dtype = np.dtype(np.int64)
    axis = None if dim is None else _dim(dim, input.ndim, "prod")
    if input.ndim == 0:
        axis = None
    return Prod.apply(input, axis=axis, keepdim=keepdim and dim is not None, dtype=dtype)


@register(top=True)
def nonzero(input, *, as_tuple=False):
    """Indices of the nonzero elements: an int64 (n, ndim) tensor, or with ``as_tuple`` one 1-D tensor per dim.
    (Its size depends on the values: on a device this reads them, as torch's does.)"""
    tensor_arg(input, "nonzero")
    from .. import backend
    xp = backend.get_array_module(input._data)
    if as_tuple:
        return tuple(Tensor._make(i.astype(np.int64)) for i in xp.nonzero(xp.atleast_1d(input._data)))
    return Tensor._make(xp.argwhere(input._data).astype(np.int64))


class Norm(Function):
    """The p-norm (sum |x|^p)^(1/p) over ``axes`` for p other than 1; p = 0 counts the nonzeros, p = +-inf is
    the largest / smallest |x|. The gradient follows torch's formulas, with torch's choice of 0 where the norm
    (or, for p < 1, x) is 0."""
    name = "norm"

    def forward(self, xp, x, p, axes, keepdim):
        self.p, self.axes, self.in_shape = p, axes, x.shape
        if p == 0:
            y = (x != 0).sum(axis=axes, keepdims=True).astype(x.dtype)
        elif p == np.inf or p == -np.inf:
            y = (xp.abs(x).max if p > 0 else xp.abs(x).min)(axis=axes, keepdims=True)
        elif p == 2:
            y = xp.sqrt((x * x).sum(axis=axes, keepdims=True))
        else:
            with np.errstate(divide="ignore"):  # p < 0 with a zero: |0|^p = inf, and the norm is 0 (as torch)
                y = (xp.abs(x) ** p).sum(axis=axes, keepdims=True) ** (1.0 / p)
        self.save_for_backward(x)
        return y if keepdim else y.reshape([s for i, s in enumerate(y.shape) if i not in axes])

    def backward(self, g):
        x, = self.saved_tensors
        g, p = g.reshape(_kept_shape(self.in_shape, self.axes)), self.p
        if p == 0:
            return None  # a count: in the graph, but no gradient flows (torch leaves x.grad as None)
        # the norm again, from x with minidl ops, so that the second derivative sees how it depends on x
        y = Norm.apply(x, p=p, axes=self.axes, keepdim=True)
        if p == np.inf or p == -np.inf:  # shared among the extremes, NaNs counting as extremes (torch's rule)
            xa = x._data.__abs__()
            hit = (xa == y._data) | (xa != xa)
            share = Tensor._make((hit / hit.sum(axis=self.axes, keepdims=True)).astype(x.dtype))
            sign = Tensor._make(xa == xa) * x.sign()  # torch's sign of NaN is 0
            return g * share * sign
        zero = Tensor._make(y._data == 0)
        if p < 1:  # sgn(x) |x|^(p-1), 0 at x = 0, times g norm^(1-p)
            xz = Tensor._make(x._data == 0)
            scaled = where(xz, 0.0, x.sign() * where(xz, 1.0, x.abs()) ** (p - 1))
            return scaled * (g * y ** (1 - p))
        scale = where(zero, 0.0, g / where(zero, 1.0, y) ** (p - 1))
        if p == 2:
            return x * scale
        return (x.sign() * x.abs() ** (p - 1) if p < 2 else x * x.abs() ** (p - 2)) * scale


class NuclearNorm(Function):
    """The nuclear norm of the matrices in the last two dims, (..., m, n) -> (...): the sum of the singular values.
    Its gradient is g U V^T from the thin SVD x = U diag(s) V^T, torch's formula (its SVD backward when only the
    singular values are used: no division by gaps between them, so repeated and zero singular values are fine; in
    the directions of zero singular values U and V are LAPACK's choice, as in torch)."""
    name = "nuclear_norm"
    differentiable_twice = False  # the backward works on the SVD's arrays

    def forward(self, xp, x):
        try:
            u, s, vh = xp.linalg.svd(x, full_matrices=False)
        except np.linalg.LinAlgError:  # NaN in x (torch refuses too)
            raise RuntimeValueError("norm: p='nuc': the SVD did not converge (the input holds NaN)") \
                from None
        self.save_for_backward(u, vh)
        return s.sum(axis=-1)

    def backward(self, g):
        u, vh = self.saved_arrays
        return (u * g._data[..., None, None]) @ vh


def _nuclear_norm(input, dim, keepdim):
    """norm(p='nuc'): the nuclear norm over the two dims ``dim`` (all dims of a 2-D input when None), as torch's
    linalg.matrix_norm(ord='nuc'): those dims moved last, the Function, then kept as size 1 with ``keepdim``."""
    op = "norm"
    if input.ndim < 2:
        raise RuntimeValueError(f"{op}: p='nuc' (the nuclear norm) needs a matrix, an input of at least 2 dims, got "
                                f"shape {tuple(input.shape)}")
    dims = tuple(range(input.ndim)) if dim is None else tuple(dim) if isinstance(dim, (tuple, list)) else (dim,)
    if len(dims) != 2:
        raise RuntimeValueError(f"{op}: p='nuc' needs dim to be the pair of the matrices' dims, got dim={dim!r} for "
                                f"shape {tuple(input.shape)}")
    rows, cols = (_dim(d, input.ndim, op) for d in dims)
    if rows == cols:
        raise RuntimeValueError(f"{op}: p='nuc' needs two different dims, got dim={dim!r}")
    rest = [d for d in range(input.ndim) if d not in (rows, cols)]
    y = NuclearNorm.apply(input.permute(*rest, rows, cols))
    return y.reshape(_kept_shape(input.shape, (rows, cols))) if keepdim else y


@register(top=True)
def norm(input, p="fro", dim=None, keepdim=False, dtype=None):
    """The vector p-norm over ``dim`` (all dims when None), as torch.norm: p a number (inf and -inf included) or
    'fro' (= 2); or p='nuc', the nuclear norm (the sum of singular values) of a 2-D input, or of the matrices in the
    pair of dims ``dim``."""
    op = "norm"
    tensor_arg(input, op)
    if input.dtype.kind != "f":
        raise RuntimeTypeError(f"{op}: input must be a floating tensor, got {input.dtype}")
    if dtype is not None:
        from .. import backend
        input = input.to(backend.as_dtype(dtype, op))
    if p == "nuc":
        return _nuclear_norm(input, dim, keepdim)
    if p == "fro" or p is None:
        p = 2
    if isinstance(p, str) or isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)):
        raise RuntimeValueError(f"{op}: p must be a number, inf, -inf, 'fro' or 'nuc', got {p!r}")
    axes = _reduce_args(input, dim, op)
    p = float(p)
    if (p < 0 or p == np.inf) and any(input.shape[a] == 0 for a in axes):
        raise RuntimeValueError(f"{op}: the {p} norm of an empty tensor is undefined (the reduction has no identity), "
                                f"got shape {tuple(input.shape)}")
    if p == 1:
        return input.abs().sum(axes, keepdim=keepdim)
    return Norm.apply(input, p=p, axes=axes, keepdim=keepdim)


def _logical(name, fn):
    def reduce(input, dim=None, keepdim=False):
        axes = _reduce_args(input, dim, name)
        return Tensor._make(fn(input._data.astype(bool), axis=axes, keepdims=keepdim))
    reduce.__name__ = reduce.__qualname__ = name
    reduce.__doc__ = f"Whether {name} elements (over ``dim``) are nonzero: a bool tensor, no gradient."
    return register(name, top=True)(reduce)


# (not named all/any here: this module uses the builtins)
all_ = _logical("all", lambda a, axis, keepdims: a.all(axis=axis, keepdims=keepdims))


any_ = _logical("any", lambda a, axis, keepdims: a.any(axis=axis, keepdims=keepdims))
