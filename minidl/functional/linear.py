"""Matrix products: matmul (mm, bmm) and linear, ``input @ weight.T + bias`` as one node (torch's addmm), whose
backward is written with matmul and sum (double backward works). Each public function sits under its Function
class."""
import string

import numpy as np

from .. import kernels
from ..autograd import Function
from ..backend.errors import RuntimeTypeError, RuntimeValueError
from ._checks import float_tensor, optional_tensor, same_device, tensor_arg
from ._registry import register
from .math import _check_broadcast, unbroadcast


class MatMul(Function):
    name = "matmul"

    def forward(self, xp, a, b):
        self.save_for_backward(a, b)
        return kernels.matmul(a, b)

    def backward(self, g):
        a, b = self.saved_tensors
        ga = unbroadcast(matmul(g, b.transpose(-1, -2)), a.shape, a.dtype) if self.needs_input_grad[0] else None
        gb = unbroadcast(matmul(a.transpose(-1, -2), g), b.shape, b.dtype) if self.needs_input_grad[1] else None
        return ga, gb


@register(top=True)
def matmul(input, other):
    """Matrix product with torch's rules: 1-D operands are promoted, leading dims broadcast."""
    tensor_arg(input, "matmul", "input")
    tensor_arg(other, "matmul", "other")
    a, b = input._data, other._data
    if type(a) is np.ndarray and type(b) is np.ndarray and a.ndim == 2 and b.ndim == 2 and a.dtype == b.dtype \
            and a.shape[1] == b.shape[0]:  # the common case, checked from the arrays alone
        return MatMul.apply(input, other)
    same_device("matmul", input, other)
    if input.ndim == 0 or other.ndim == 0:
        raise RuntimeValueError(f"matmul: both arguments need at least 1 dimension, got shapes {tuple(input.shape)} "
                                f"and {tuple(other.shape)}")
    if input.shape[-1] != other.shape[-2 if other.ndim > 1 else 0]:
        raise RuntimeValueError(f"matmul: shapes {tuple(input.shape)} and {tuple(other.shape)} cannot be multiplied "
                                f"({input.shape[-1]} != {other.shape[-2 if other.ndim > 1 else 0]})")
    if input.ndim > 2 or other.ndim > 2:
        _check_broadcast("matmul", input.shape[:-2], other.shape[:-2] if other.ndim > 1 else ())
    if input.dtype != other.dtype:
        raise RuntimeTypeError(f"matmul: expected both arguments to have the same dtype, got {input.dtype} and "
                               f"{other.dtype}")
    y = MatMul.apply(input.unsqueeze(0) if input.ndim == 1 else input,
                     other.unsqueeze(-1) if other.ndim == 1 else other)
    if input.ndim == 1:
        y = y.squeeze(-2)
    return y.squeeze(-1) if other.ndim == 1 else y


class LinearFunction(Function):
    """y = x W^T + b for 2-D x (linear() folds leading dims into rows): one graph node where matmul, a transpose
    and an add were three (each about 9 us of Python forward and again backward)."""
    name = "linear"

    def forward(self, xp, x, w, b):
        self.save_for_backward(x, w)
        self.has_bias = b is not None
        y = kernels.matmul(x, w.T)
        if b is not None:
            y += b  # the product is a new array
        return y

    @property
    def grad_fn_name(self):
        return "AddmmBackward0" if self.has_bias else "MmBackward0"  # torch's: addmm, or mm without a bias

    def backward(self, g):
        x, w = self.saved_tensors
        need = self.needs_input_grad
        gx = matmul(g, w) if need[0] else None
        gw = matmul(g.t(), x) if need[1] else None
        gb = g.sum(0) if self.has_bias and need[2] else None
        return gx, gw, gb


@register(method=False)
def linear(input, weight, bias=None):
    """``y = x W^T + b``.

    Shape: input (*, in_features), weight (out_features, in_features), bias (out_features,),
    output (*, out_features).
    """
    float_tensor(input, "linear")
    float_tensor(weight, "linear", "weight")
    optional_tensor(bias, "linear", "bias")
    same_device("linear", input, weight, bias)
    if weight.ndim != 2:
        raise RuntimeValueError("linear: weight must be 2-D (out_features, in_features), got shape "
                                f"{tuple(weight.shape)}")
    if input.dtype != weight.dtype:
        raise RuntimeTypeError(f"linear: input dtype {input.dtype} and weight dtype {weight.dtype} differ; convert the "
                               f"input (x.to({weight.dtype})) or the layer (layer.to({input.dtype}))")
    if input.ndim == 0 or input.shape[-1] != weight.shape[1]:
        raise RuntimeValueError(f"linear: input has {input.shape[-1] if input.ndim else 0} features in its last "
                                f"dimension (shape {tuple(input.shape)}), weight expects {weight.shape[1]} (weight "
                                f"shape {tuple(weight.shape)})")
    if bias is not None and bias.shape != (weight.shape[0],):
        raise RuntimeValueError(f"linear: bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}")
    if input.ndim == 2:
        return LinearFunction.apply(input, weight, bias)
    if input.ndim == 1:
        return LinearFunction.apply(input.unsqueeze(0), weight, bias).squeeze(0)
    y = LinearFunction.apply(input.reshape(-1, input.shape[-1]), weight, bias)  # as torch: addmm between two views
    return y.reshape(*input.shape[:-1], weight.shape[0])


@register(top=True)
def mm(input, mat2):
    """The product of two matrices (2-D only; no broadcasting, as torch)."""
    tensor_arg(input, "mm")
    tensor_arg(mat2, "mm", "mat2")
    if input.ndim != 2 or mat2.ndim != 2:
        raise RuntimeValueError(f"mm: expects two 2-D tensors, got shapes {tuple(input.shape)} and {tuple(mat2.shape)}")
    if input.shape[1] != mat2.shape[0]:
        raise RuntimeValueError(f"mm: shapes {tuple(input.shape)} and {tuple(mat2.shape)} cannot be multiplied")
    return matmul(input, mat2)


@register(top=True)
def bmm(input, mat2):
    """Batched products of (b, n, m) and (b, m, p) (no broadcasting, as torch)."""
    tensor_arg(input, "bmm")
    tensor_arg(mat2, "bmm", "mat2")
    if input.ndim != 3 or mat2.ndim != 3:
        raise RuntimeValueError(f"bmm: expects two 3-D tensors, got shapes {tuple(input.shape)} and "
                                f"{tuple(mat2.shape)}")
    if input.shape[0] != mat2.shape[0] or input.shape[2] != mat2.shape[1]:
        raise RuntimeValueError(f"bmm: shapes {tuple(input.shape)} and {tuple(mat2.shape)} cannot be multiplied batch "
                                "by batch")
    return matmul(input, mat2)


@register(top=True)
def outer(input, vec2):
    """The outer product of two 1-D tensors: (n,) and (m,) give (n, m)."""
    tensor_arg(input, "outer")
    tensor_arg(vec2, "outer", "vec2")
    if input.ndim != 1 or vec2.ndim != 1:
        raise RuntimeValueError(f"outer: expects two 1-D tensors, got shapes {tuple(input.shape)} and "
                                f"{tuple(vec2.shape)}")
    return input.unsqueeze(1) * vec2.unsqueeze(0)


class Tril(Function):
    """The lower triangle of the last two dims from diagonal k down; the gradient is the same triangle of g."""
    name = "tril"

    def forward(self, xp, x, k=0):
        self.k = k
        return getattr(xp, self.name)(x, k)

    def backward(self, g):
        return type(self).apply(g, k=self.k)


class Triu(Tril):
    """The upper triangle of the last two dims from diagonal k up; the gradient is the same triangle of g."""
    name = "triu"


def _triangle(input, diagonal, upper):
    op = "triu" if upper else "tril"
    tensor_arg(input, op)
    if input.ndim < 2:
        raise RuntimeValueError(f"{op}: input tensor must have at least 2 dimensions, got shape {tuple(input.shape)}")
    if isinstance(diagonal, bool) or not isinstance(diagonal, int):
        raise TypeError(f"{op}: argument 'diagonal' must be an int, got {type(diagonal).__name__}")
    return (Triu if upper else Tril).apply(input, k=diagonal)


@register(top=True)
def tril(input, diagonal=0):
    """The lower triangle of the last two dims (elements on and below diagonal ``diagonal``), the rest zero."""
    return _triangle(input, diagonal, False)


@register(top=True)
def triu(input, diagonal=0):
    """The upper triangle of the last two dims (elements on and above diagonal ``diagonal``), the rest zero."""
    return _triangle(input, diagonal, True)


class Diag(Function):
    """diag: a 1-D input becomes the k-th diagonal of a matrix of ``shape`` (square by default), a 2-D input gives
    its k-th diagonal; each is the other's gradient."""
    name = "diag"

    def forward(self, xp, x, k=0, shape=None):
        self.k, self.in_shape = k, x.shape
        if x.ndim == 2:
            return xp.ascontiguousarray(xp.diagonal(x, k))
        n = x.shape[0] + abs(k)
        out = xp.zeros(shape or (n, n), dtype=x.dtype)
        rows, cols = _diagonal_index(xp, out.shape, k)
        out[rows, cols] = x
        return out

    def backward(self, g):
        return Diag.apply(g, k=self.k, shape=self.in_shape if len(self.in_shape) == 2 else None)


def _diagonal_index(xp, shape, k):
    n = max(0, min(shape[0] - max(-k, 0), shape[1] - max(k, 0)))
    i = xp.arange(n)
    return i + max(-k, 0), i + max(k, 0)


@register(top=True)
def diag(input, diagonal=0):
    """A 1-D input: the square matrix with it on diagonal ``diagonal`` (0 the main one, > 0 above, < 0 below).
    A 2-D input: its diagonal ``diagonal`` as a 1-D tensor."""
    tensor_arg(input, "diag")
    if input.ndim not in (1, 2):
        raise RuntimeValueError(f"diag: expected a 1-D or 2-D tensor, got shape {tuple(input.shape)}")
    if isinstance(diagonal, bool) or not isinstance(diagonal, int):
        raise TypeError(f"diag: argument 'diagonal' must be an int, got {type(diagonal).__name__}")
    return Diag.apply(input, k=diagonal)


class Einsum(Function):
    """einsum over operands with explicit subscripts (no repeated index within one operand; ellipses made letters). The
    gradient of operand k is the einsum of g with the other operands into operand k's subscripts, broadcast along
    the indices that only operand k has (they were summed over)."""
    name = "einsum"

    def forward(self, xp, *ops, subs=(), out=""):
        self.subs, self.out, self.shapes = subs, out, [o.shape for o in ops]
        self.save_for_backward(*ops)
        return xp.asarray(xp.einsum(",".join(subs) + "->" + out, *ops, optimize=len(ops) > 2))

    def backward(self, g):
        ops = self.saved_tensors
        grads = []
        for k, sk in enumerate(self.subs):
            if not self.needs_input_grad[k]:
                grads.append(None)
                continue
            others = [(s, o) for j, (s, o) in enumerate(zip(self.subs, ops)) if j != k]
            present = set(self.out).union(*[set(s) for s, _ in others])
            keep = "".join(c for c in sk if c in present)
            gk = Einsum.apply(g, *[o for _, o in others], subs=(self.out, *[s for s, _ in others]), out=keep)
            if keep != sk:  # indices summed away from operand k alone: its gradient is the same along them
                gk = gk.reshape(*[self.shapes[k][i] if c in present else 1 for i, c in enumerate(sk)])
                gk = gk.expand(*self.shapes[k])
            grads.append(gk)
        return tuple(grads)


def _einsum_ellipsis(equation, subs, out, arrow, ops):
    """Subscripts with each '...' replaced by letters the equation does not use, one per dim it stands for
    (right-aligned across operands, as broadcasting aligns them); without '->' the output starts with them."""
    letters = "".join(subs)
    if not arrow:  # implicit output: the indices that appear once, in alphabetical order (as torch, NumPy)
        once = sorted(c for c in set(letters) if c != "." and letters.count(c) == 1)
        out = "..." * ("..." in letters) + "".join(once)
    if "..." not in letters:
        return subs, out
    free = [c for c in string.ascii_letters if c not in equation]
    spans = [o.ndim - (len(s) - 3) if "..." in s else 0 for s, o in zip(subs, ops)]
    if min(spans) < 0:
        raise RuntimeValueError(f"einsum: {equation!r} has more subscripts than an operand has dims")
    ell = free[:max(spans)]
    subs = [s.replace("...", "".join(ell[len(ell) - k:])) for s, k in zip(subs, spans)]
    return subs, out.replace("...", "".join(ell))


def _einsum_subscripts(equation, ops):
    eq = equation.replace(" ", "")
    lhs, arrow, out = eq.partition("->")
    subs = lhs.split(",")
    if len(subs) != len(ops):
        raise RuntimeValueError(f"einsum: {equation!r} has {len(subs)} operand subscripts, got {len(ops)} operands")
    if any(s.replace("...", "").count(".") or s.count("...") > 1 for s in subs + [out]):
        raise RuntimeValueError(f"einsum: '.' only as one ellipsis '...' per operand, got {equation!r}")
    subs, out = _einsum_ellipsis(eq, subs, out, arrow, ops)
    for s, o in zip(subs, ops):
        if not s.isalpha() or len(s) != o.ndim:
            raise RuntimeValueError(f"einsum: subscripts {s!r} do not match an operand of shape {tuple(o.shape)}")
        if len(set(s)) != len(s):
            raise RuntimeValueError(f"einsum: a repeated index within one operand ({s!r}, a diagonal) is not supported")
    sizes = {}
    for s, o in zip(subs, ops):
        for c, n in zip(s, o.shape):
            if sizes.setdefault(c, n) != n:
                what = f"index {c!r}" if c in eq else "a dim that '...' stands for"
                raise RuntimeValueError(f"einsum: {what} has size {sizes[c]} in one operand and {n} in another "
                                        "(broadcasting 1 against n is not supported)")
    if len(set(out)) != len(out) or any(c not in sizes for c in out):
        raise RuntimeValueError(f"einsum: output subscripts {out!r} must be distinct indices of the operands")
    return tuple(subs), out


@register(top=True, method=False)
def einsum(equation, *operands):
    """Sums of products over the indices of ``equation`` (``'ij,jk->ik'`` is a matrix product, ``'bij->bji'`` a
    transpose, ``'i,j->ij'`` an outer product, ``'...ij,...jk->...ik'`` batched); the operands as arguments or one
    list. Without ``->`` the output takes the ellipsis's dims, then the indices that appear once, in alphabetical
    order. Not supported (refused, naming it): a repeated index within one operand (a diagonal or trace), and dims
    that '...' stands for broadcasting against each other (1 against n)."""
    if not isinstance(equation, str):
        raise TypeError(f"einsum: argument 'equation' must be a str, got {type(equation).__name__}")
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    for i, o in enumerate(operands):
        tensor_arg(o, "einsum", f"operands[{i}]")
    same_device("einsum", *operands)
    if len({o.dtype for o in operands}) > 1:
        raise RuntimeTypeError("einsum: expected operands of one dtype, got "
                               f"{', '.join(str(o.dtype) for o in operands)}")
    subs, out = _einsum_subscripts(equation, operands)
    return Einsum.apply(*operands, subs=subs, out=out)
