"""Elementwise functions of one tensor: exp and the logarithms, trigonometric functions, powers and roots, absolute
value and sign, clamping, rounding, erf. (Two-tensor arithmetic and comparisons are functional/math.py.)

Every backward here is written with minidl ops, so it can be differentiated again.
"""
import math as _math


from .. import backend, kernels
from ..autograd import Function
from ..autograd.function import untracked
from ..autograd.tensor import Tensor
from ..backend.errors import RuntimeTypeError, RuntimeValueError
from ._checks import tensor_arg
from ._registry import register
from .math import _check_broadcast, _float_unary, _operands, add, mul, sub, unbroadcast


class _Stepwise(Function):
    """A piecewise-constant function: its gradient is zero wherever it is defined (torch gives zero everywhere)."""

    def forward(self, xp, x):
        return self.fn(xp, x)

    def backward(self, g):
        return Tensor._make(backend.get_array_module(g._data).zeros_like(g._data))


class Sign(_Stepwise):
    name = "sign"
    fn = staticmethod(lambda xp, x: ((x > 0).astype(x.dtype) - (x < 0).astype(x.dtype)))  # NaN -> 0, as torch


def _stepwise(cls, input):
    tensor_arg(input, cls.name)
    if input.dtype.kind == "b" and cls is not Sign:
        raise RuntimeTypeError(f"{cls.name}: not defined for bool tensors")
    if input.dtype.kind in "iu" and cls is not Sign:  # integers are their own floor/ceil/round (a copy)
        return Tensor._make(input._data.copy())
    return cls.apply(input)


@register(top=True)
def sign(input):
    """-1, 0 or 1 by the sign of each element (0 for NaN, as torch); zero gradient."""
    if tensor_arg(input, "sign").dtype.kind == "b":
        return Tensor._make(input._data.copy())
    return _stepwise(Sign, input)


class Exp(Function):
    name = "exp"

    def forward(self, xp, x):
        y = xp.exp(x)
        self.save_for_backward(y)
        return y

    def backward(self, g):
        y, = self.saved_tensors
        return g * y


@register(top=True)
def exp(input):
    return _float_unary(Exp, "exp", input)


class _UnaryGrad(Function):
    """An elementwise op named as its NumPy (and CuPy) function, whose gradient is g * dydx(x), dydx written with
    minidl ops (so it differentiates again)."""

    def forward(self, xp, x):
        self.save_for_backward(x)
        return getattr(xp, self.name)(x)

    def backward(self, g):
        x, = self.saved_tensors
        return g * self.dydx(x)


class Log1p(_UnaryGrad):
    name = "log1p"

    def dydx(self, x):
        return 1 / (1 + x)


@register(top=True)
def log1p(input):
    """log(1 + input), accurate for small input."""
    return _float_unary(Log1p, "log1p", input)


class Expm1(_UnaryGrad):
    name = "expm1"

    def dydx(self, x):
        return x.exp()


@register(top=True)
def expm1(input):
    """exp(input) - 1, accurate for small input."""
    return _float_unary(Expm1, "expm1", input)


class Log2(_UnaryGrad):
    name = "log2"

    def dydx(self, x):
        return 1 / (x * _math.log(2))


@register(top=True)
def log2(input):
    return _float_unary(Log2, "log2", input)


class Log10(_UnaryGrad):
    name = "log10"

    def dydx(self, x):
        return 1 / (x * _math.log(10))


@register(top=True)
def log10(input):
    return _float_unary(Log10, "log10", input)


class Sin(_UnaryGrad):
    name = "sin"

    def dydx(self, x):
        return cos(x)


@register(top=True)
def sin(input):
    return _float_unary(Sin, "sin", input)


class Cos(_UnaryGrad):
    name = "cos"

    def dydx(self, x):
        return -sin(x)


@register(top=True)
def cos(input):
    return _float_unary(Cos, "cos", input)


class Neg(Function):
    name = "neg"

    def forward(self, xp, x):
        return -x

    def backward(self, g):
        return -g


@register(top=True)
def neg(input):
    return Neg.apply(tensor_arg(input, "neg"))


class Sqrt(Function):
    name = "sqrt"

    def forward(self, xp, x):
        y = xp.sqrt(x)
        self.save_for_backward(y)
        return y

    def backward(self, g):
        y, = self.saved_tensors
        return g / (2.0 * y)


@register(top=True)
def sqrt(input):
    return _float_unary(Sqrt, "sqrt", input)


class Abs(Function):
    name = "abs"

    def forward(self, xp, x):
        self.save_for_backward(((x > 0).astype(x.dtype) - (x < 0)).astype(x.dtype))  # sign; 0 at NaN (torch)
        return xp.abs(x)

    def backward(self, g):
        sign, = self.saved_tensors
        return g * sign


@register(top=True)
def abs(input):
    """|input|; the gradient at 0 is 0 (as torch)."""
    return Abs.apply(tensor_arg(input, "abs"))


class Erf(Function):
    name = "erf"

    def forward(self, xp, x):
        self.save_for_backward(x)
        return kernels.erf(x)

    def backward(self, g):
        x, = self.saved_tensors
        return g * (2.0 / _math.sqrt(_math.pi)) * exp(-(x * x))


@register(top=True)
def erf(input):
    """The error function, elementwise."""
    return _float_unary(Erf, "erf", input)


class Clamp(Function):
    name = "clamp"

    def forward(self, xp, x, lo, hi):
        # the gradient passes where lo <= x <= hi (bounds included), as in torch
        mask = xp.ones(x.shape, dtype=bool)
        if lo is not None:
            mask &= x >= lo
        if hi is not None:
            mask &= x <= hi
        self.save_for_backward(mask.astype(x.dtype))
        return xp.clip(x, lo, hi)

    def backward(self, g):
        mask, = self.saved_tensors
        return g * mask


class ClampTensor(Function):
    """clamp with Tensor bounds: ``minimum(maximum(x, lo), hi)``, NaN from any of the three propagating.
    Gradients as torch's: x where lo <= x <= hi; lo where x < lo < hi; hi where x > hi or hi < lo."""
    name = "clamp"

    def forward(self, xp, x, lo, hi):
        self.save_for_backward(x, lo, hi)
        self.shapes = [None if a is None else (a.shape, a.dtype) for a in (x, lo, hi)]
        y = x if lo is None else xp.maximum(x, lo)
        return y if hi is None else xp.minimum(y, hi)

    def backward(self, g):
        x, lo, hi = self.saved_arrays
        xp = backend.get_array_module(x)
        masks = ((True if lo is None else x >= lo) & (True if hi is None else x <= hi),   # to x
                 None if lo is None else (x < lo) & (True if hi is None else lo < hi),   # to lo
                 None if hi is None else (x > hi) | (False if lo is None else hi < lo))  # to hi
        return tuple(unbroadcast(g * Tensor._make(xp.broadcast_to(m, g.shape).astype(g.dtype)), *shape)
                     if need else None for m, shape, need in zip(masks, self.shapes, self.needs_input_grad))


@register(methods=("clip",), top=True)
def clamp(input, min=None, max=None):
    """Clamp into [min, max]; ``min``/``max`` are numbers or Tensors. The gradient flows where
    ``min <= input <= max``."""
    tensor_arg(input, "clamp")
    if min is None and max is None:
        raise RuntimeValueError("clamp: at least one of 'min' and 'max' must be given")
    if isinstance(min, Tensor) or isinstance(max, Tensor):
        lo = None if min is None else _operands(input, min, "clamp")[1]
        hi = None if max is None else _operands(input, max, "clamp")[1]
        _check_broadcast("clamp", *[t.shape for t in (input, lo, hi) if t is not None])
        return ClampTensor.apply(input, lo, hi)
    for name, v in (("min", min), ("max", max)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise TypeError(f"clamp: argument '{name}' must be a number or a Tensor, got {type(v).__name__}")
    return Clamp.apply(input, lo=min, hi=max)


def _logical_not(a):
    return ~a.astype(bool)


def _isnan(a):
    return backend.get_array_module(a).isnan(a)


@register(top=True)
def logical_not(input):
    tensor_arg(input, "logical_not")
    return untracked("logical_not", _logical_not, input)


@register(top=True)
def clamp_min(input, min):
    """clamp(input, min=min)."""
    return clamp(input, min=min)


@register(top=True)
def clamp_max(input, max):
    """clamp(input, max=max)."""
    return clamp(input, max=max)


@register(top=True)
def lerp(input, end, weight):
    """input + weight * (end - input), with broadcasting; ``weight`` a number or a Tensor."""
    input, end = _operands(tensor_arg(input, "lerp"), end, "lerp")
    if not isinstance(weight, Tensor) and (isinstance(weight, bool) or not isinstance(weight, (int, float))):
        raise TypeError(f"lerp: argument 'weight' must be a number or a Tensor, got {type(weight).__name__}")
    if isinstance(weight, Tensor):
        _check_broadcast("lerp", input.shape, end.shape, weight.shape)
    return add(input, mul(weight, sub(end, input)))


@register(top=True)
def addcmul(input, tensor1, tensor2, *, value=1):
    """input + value * tensor1 * tensor2, with broadcasting."""
    tensor_arg(input, "addcmul")
    for name, t in (("tensor1", tensor1), ("tensor2", tensor2)):
        if not isinstance(t, Tensor):
            raise TypeError(f"addcmul: argument '{name}' must be a Tensor, got {type(t).__name__}")
    _check_broadcast("addcmul", input.shape, tensor1.shape, tensor2.shape)
    prod = mul(tensor1, tensor2)
    return add(input, prod if value == 1 else mul(prod, value))


@register(top=True)
def square(input):
    """input * input."""
    return mul(tensor_arg(input, "square"), input)


def _float(t):
    return t if t.dtype.kind == "f" else t.to(backend.default_dtype())


@register(top=True)
def reciprocal(input):
    """1 / input (integers become floats, as torch)."""
    return 1.0 / _float(tensor_arg(input, "reciprocal"))


@register(top=True)
def rsqrt(input):
    """1 / sqrt(input)."""
    return 1.0 / sqrt(tensor_arg(input, "rsqrt"))


class Floor(_Stepwise):
    name = "floor"
    fn = staticmethod(lambda xp, x: xp.floor(x))


@register(top=True)
def floor(input):
    return _stepwise(Floor, input)


class Ceil(_Stepwise):
    name = "ceil"
    fn = staticmethod(lambda xp, x: xp.ceil(x))


@register(top=True)
def ceil(input):
    return _stepwise(Ceil, input)


class Round(_Stepwise):
    name = "round"
    fn = staticmethod(lambda xp, x: xp.round(x))  # halves to even, as torch


@register(top=True)
def round(input, *, decimals=0):
    """Round to the nearest integer, halves to even (as torch); ``decimals`` shifts the rounding digit."""
    if decimals:
        scale = 10.0 ** int(decimals)
        return _stepwise(Round, input * scale) / scale
    return _stepwise(Round, input)


class Trunc(_Stepwise):
    name = "trunc"
    fn = staticmethod(lambda xp, x: xp.trunc(x))


@register(top=True)
def trunc(input):
    return _stepwise(Trunc, input)


@register(top=True)
def isnan(input):
    """A bool tensor: True where the element is NaN."""
    tensor_arg(input, "isnan")
    return untracked("isnan", _isnan, input)


