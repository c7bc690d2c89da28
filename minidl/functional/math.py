"""Elementwise arithmetic of two tensors with broadcasting (add, sub, mul, div, pow, maximum, minimum, atan2, where),
and comparisons. (Functions of one tensor are functional/unary.py.)

Every backward here is written with minidl ops, so it can be differentiated again.
"""

import numpy as np

from .. import backend
from ..autograd import Function
from ..autograd.capturing import constant
from ..autograd.function import untracked
from ..autograd.tensor import Tensor
from ..backend.errors import RuntimeTypeError, RuntimeValueError
from ._checks import as_tensor, same_device, tensor_arg
from ._registry import register
from .view import sum_to


def _check_broadcast(op, *shapes):
    if len(shapes) == 2:  # the common cases first: np.broadcast_shapes costs microseconds
        a, b = shapes
        if a == b or not b:
            return a
        if not a:
            return b
    elif all(s == shapes[0] for s in shapes):
        return shapes[0]
    try:
        return np.broadcast_shapes(*shapes)
    except ValueError:
        raise RuntimeValueError(f"{op}: shapes " + ", ".join(str(tuple(s)) for s in shapes) + " cannot be broadcast "
                                "together") from None


_PLAIN_NUMBERS = (float, int)  # not bool (its own rules), not NumPy scalars (theirs)


def _operands(a, b, op, broadcast=True):
    """Both operands as Tensors on one device, promoted like torch, their shapes checked to broadcast."""
    # the common cases first, answered from the arrays alone (each check below costs a microsecond or more)
    if isinstance(a, Tensor):
        da = a._data
        if isinstance(b, Tensor):
            db = b._data
            if type(da) is np.ndarray and type(db) is np.ndarray and da.dtype == db.dtype and da.shape == db.shape:
                return a, b  # one device, one dtype (nothing to promote), one shape (it broadcasts)
        elif type(b) in _PLAIN_NUMBERS and type(da) is np.ndarray and da.dtype.kind == "f":
            return a, Tensor._make(constant(np.asarray(b, dtype=da.dtype)))  # x * 2: the number takes x's dtype
    elif isinstance(b, Tensor):
        db = b._data
        if type(a) in _PLAIN_NUMBERS and type(db) is np.ndarray and db.dtype.kind == "f":
            return Tensor._make(constant(np.asarray(a, dtype=db.dtype))), b
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        raise TypeError(f"{op}: expected at least one Tensor, got {type(a).__name__} and {type(b).__name__}")
    like = a if isinstance(a, Tensor) else b
    a, b = as_tensor(a, like, op, "input"), as_tensor(b, like, op, "other")
    same_device(op, a, b)
    # torch's promotion across categories: an integer tensor meeting a floating one takes its dtype
    if a.dtype.kind != "f" and b.dtype.kind == "f":
        a = a.to(b.dtype)
    elif b.dtype.kind != "f" and a.dtype.kind == "f":
        b = b.to(a.dtype)
    if broadcast:
        _check_broadcast(op, a.shape, b.shape)
    return a, b


def unbroadcast(g, shape, dtype):
    """Sum a broadcast gradient back to ``shape`` (and cast it to the input's dtype)."""
    if g._data.shape != tuple(shape):
        g = sum_to(g, shape)
    if g._data.dtype != dtype:
        g = g.to(dtype)
    return g


class Where(Function):
    name = "where"

    def forward(self, xp, cond, a, b):
        self.save_for_backward(cond)
        self.a_shape, self.a_dtype, self.b_shape, self.b_dtype = a.shape, a.dtype, b.shape, b.dtype
        return xp.where(cond, a, b)

    def backward(self, g):
        c, = self.saved_tensors
        ga = unbroadcast(where(c, g, 0.0), self.a_shape, self.a_dtype) if self.needs_input_grad[1] else None
        gb = unbroadcast(where(c, 0.0, g), self.b_shape, self.b_dtype) if self.needs_input_grad[2] else None
        return None, ga, gb


@register(method=False, top=True)
def where(condition, input=None, other=None):
    """``input`` where ``condition`` is true, else ``other`` (broadcasting all three). ``where(condition)`` alone is
    ``nonzero(condition, as_tuple=True)``: one int64 tensor of indices per dim."""
    if not isinstance(condition, Tensor):
        raise TypeError(f"where: argument 'condition' must be a bool Tensor, got {type(condition).__name__}")
    if input is None and other is None:
        xp = backend.get_array_module(condition._data)
        return tuple(Tensor._make(i.astype(np.int64)) for i in xp.nonzero(xp.atleast_1d(condition._data)))
    if input is None or other is None:
        raise TypeError("where: expected both 'input' and 'other', or neither (where(condition) gives indices)")
    if condition.dtype.kind != "b":
        raise RuntimeTypeError(f"where: argument 'condition' must have dtype bool, got {condition.dtype}")
    if not isinstance(input, Tensor) and not isinstance(other, Tensor):  # where(cond, 1, 0): scalars as torch's
        input = as_tensor(input, condition, "where", "input")                # (int64, the default float, bool)
    input, other = _operands(input, other, "where", broadcast=False)
    _check_broadcast("where", condition.shape, input.shape, other.shape)
    same_device("where", condition, input)
    return Where.apply(condition, input, other)


# log is here, not in unary.py, because pow's gradient with respect to the exponent needs it
class Log(Function):
    name = "log"

    def forward(self, xp, x):
        self.save_for_backward(x)
        return xp.log(x)

    def backward(self, g):
        x, = self.saved_tensors
        return g / x


def _float_unary(fn, op, input):
    tensor_arg(input, op)
    if input.dtype.kind != "f":
        input = input.to(backend.default_dtype())
    return fn.apply(input)


@register(top=True)
def log(input):
    return _float_unary(Log, "log", input)


class _Binary(Function):
    def _shapes(self, a, b):
        self.a_shape, self.a_dtype = a.shape, a.dtype
        self.b_shape, self.b_dtype = b.shape, b.dtype

    def _grads(self, ga, gb):
        return (unbroadcast(ga, self.a_shape, self.a_dtype) if self.needs_input_grad[0] else None,
                unbroadcast(gb, self.b_shape, self.b_dtype) if self.needs_input_grad[1] else None)


class Mul(_Binary):
    name = "mul"

    def forward(self, xp, a, b):
        self._shapes(a, b)
        self.save_for_backward(a, b)
        return a * b

    def backward(self, g):
        a, b = self.saved_tensors
        return self._grads(g * b if self.needs_input_grad[0] else None,
                         g * a if self.needs_input_grad[1] else None)


@register(top=True)
def mul(input, other):
    """Elementwise product with broadcasting."""
    input, other = _operands(input, other, "mul")
    return Mul.apply(input, other)


class Add(_Binary):
    name = "add"

    def forward(self, xp, a, b):
        self._shapes(a, b)
        return a + b

    def backward(self, g):
        return self._grads(g, g)


@register(top=True)
def add(input, other, alpha=1):
    """``input + alpha * other`` with broadcasting."""
    input, other = _operands(input, other, "add")
    if alpha != 1:
        other = mul(other, alpha)
    return Add.apply(input, other)


class Sub(_Binary):
    name = "sub"

    def forward(self, xp, a, b):
        self._shapes(a, b)
        return a - b

    def backward(self, g):
        return self._grads(g, -g if self.needs_input_grad[1] else None)


@register(top=True)
def sub(input, other, alpha=1):
    """``input - alpha * other`` with broadcasting."""
    input, other = _operands(input, other, "sub")
    if alpha != 1:
        other = mul(other, alpha)
    return Sub.apply(input, other)


class Div(_Binary):
    name = "div"

    def forward(self, xp, a, b):
        self._shapes(a, b)
        self.save_for_backward(a, b)
        return a / b

    def backward(self, g):
        a, b = self.saved_tensors
        ga = g / b
        return self._grads(ga, -ga * a / b if self.needs_input_grad[1] else None)


class RoundedDiv(_Binary):
    """``a / b`` rounded toward zero ('trunc') or down ('floor'); its gradient is 0 (as torch's)."""
    name = "div"

    def forward(self, xp, a, b, mode):
        self._shapes(a, b)
        if a.dtype.kind in "iu":
            if xp is np and (b == 0).any():
                raise ZeroDivisionError("div: integer division by zero")
            q = xp.floor_divide(a, b)
            if mode == "trunc":  # floor rounds down; toward zero differs where the signs differ
                q = q + ((q < 0) & (q * b != a)).astype(q.dtype)
            return q
        with np.errstate(divide="ignore", invalid="ignore"):
            return xp.trunc(a / b) if mode == "trunc" else xp.floor_divide(a, b)  # floor: Python's a // b

    def backward(self, g):
        zero = g * 0.0
        return self._grads(zero, zero)


@register(top=True)
def div(input, other, *, rounding_mode=None):
    """Elementwise true division with broadcasting (integers are promoted to the default float), or with
    ``rounding_mode='trunc'|'floor'`` the rounded quotient in the inputs' dtype (gradient 0, as torch)."""
    if rounding_mode not in (None, "trunc", "floor"):
        raise RuntimeValueError(f"div: rounding_mode must be None, 'trunc' or 'floor', got {rounding_mode!r}")
    input, other = _operands(input, other, "div")
    if rounding_mode is not None:
        if input.dtype != other.dtype:
            dt = np.promote_types(input.dtype, other.dtype)
            input, other = input.to(dt), other.to(dt)
        return RoundedDiv.apply(input, other, mode=rounding_mode)
    if input.dtype.kind != "f":  # both integer: true division in the default float dtype
        input, other = input.to(backend.default_dtype()), other.to(backend.default_dtype())
    return Div.apply(input, other)


class Pow(_Binary):
    name = "pow"

    def forward(self, xp, a, b):
        self._shapes(a, b)
        y = a ** b
        self.save_for_backward(a, b, y)
        return y

    def backward(self, g):
        a, b, y = self.saved_tensors
        ga = None
        if self.needs_input_grad[0]:  # 0 where the exponent is 0, also at a == 0 (as torch)
            ga = where(Tensor._make(b._data == 0), 0.0, g * b * a ** (b - 1))
        gb = None
        if self.needs_input_grad[1]:  # d(a^b)/db = a^b log a, taken as 0 where a == 0 (as torch)
            pos = Tensor._make(a._data != 0)
            gb = g * where(pos, y * log(where(pos, a, 1.0)), 0.0)
        return self._grads(ga, gb)


# x ** p by torch's shortcuts for these p (its choices, so its rounding and signs: sqrt(-0) = -0, sqrt(-inf) = nan,
# where C's pow gives +0 and inf). NumPy's float32 power takes 86 us on 73,728 values, 4.4 ms where bases are negative
_POW_SHORTCUTS = {
    0: lambda xp, a: xp.ones_like(a),
    1: lambda xp, a: a.copy(),
    2: lambda xp, a: a * a,
    3: lambda xp, a: a * a * a,
    -1: lambda xp, a: xp.reciprocal(a),
    -2: lambda xp, a: xp.reciprocal(a * a),
    0.5: lambda xp, a: xp.sqrt(a),
    -0.5: lambda xp, a: xp.reciprocal(xp.sqrt(a)),
}


class PowScalar(Function):
    """``x ** p`` for a Python number p; gradient ``p * x ** (p - 1)`` (0 for p = 0), itself a PowScalar, so
    differentiable again and fast where p - 1 is a shortcut.

    float32/float64 x: p in ``_POW_SHORTCUTS`` as torch (ones, copy, x*x, x*x*x, 1/x, 1/(x*x), sqrt, 1/sqrt); any
    other whole p as ``|x| ** p``, negated where x is negative and p odd (what pow gives, without libm's slow path
    for negative bases); the rest by ``xp.power``. Integer and float16 x as before: ``x ** p`` in x's dtype."""
    name = "pow"

    def forward(self, xp, a, exponent):
        self.exponent = exponent
        self.save_for_backward(a)
        fast = a.dtype.kind == "f" and a.dtype.itemsize >= 4  # float16: NumPy's power rounds once, as torch
        shortcut = _POW_SHORTCUTS.get(exponent) if fast else None
        if shortcut is not None:
            return shortcut(xp, a)
        e = xp.asarray(exponent, dtype=a.dtype)
        p = float(np.asarray(exponent, dtype=a.dtype))  # as x's dtype holds it (float32 makes large odd ones even)
        if not fast or not p.is_integer():  # (is_integer: also False for inf and nan)
            return a ** e
        y = xp.power(xp.abs(a), e)
        return xp.copysign(y, a, out=y) if p % 2 else y

    def backward(self, g):
        a, = self.saved_tensors
        p = self.exponent
        if p == 0:  # zeros as torch's, also where g is inf or NaN
            return Tensor._make(backend.get_array_module(g._data).zeros_like(g._data))
        if p == 1:
            return g
        return g * (p * a ** (p - 1)) if p != 2 else g * (2.0 * a)


@register(top=True)
def pow(input, exponent):
    """``input ** exponent``; either may be a Tensor or a number."""
    if isinstance(input, Tensor) and not isinstance(exponent, Tensor):
        if isinstance(exponent, bool) or not isinstance(exponent, (int, float)):
            raise TypeError(f"pow: argument 'exponent' must be a Tensor or a number, got {type(exponent).__name__}")
        return PowScalar.apply(input, exponent=exponent)
    input, exponent = _operands(input, exponent, "pow")
    return Pow.apply(input, exponent)


def _tie_split(g, a, b, loses):
    """Gradients of maximum/minimum as torch: the loser gets 0, ties share equally, and where a NaN
    is involved (no loser, no tie) both sides get the whole gradient."""
    tie = 0.5 * (a == b)
    wa = 1.0 - loses(a, b) - tie
    wb = 1.0 - loses(b, a) - tie
    return g * Tensor._make(wa.astype(g.dtype)), g * Tensor._make(wb.astype(g.dtype))


class Maximum(_Binary):
    name = "maximum"

    def forward(self, xp, a, b):
        self._shapes(a, b)
        # ties share the gradient equally, as in torch
        self.save_for_backward(a, b)
        return xp.maximum(a, b)

    def backward(self, g):
        return self._grads(*_tie_split(g, *self.saved_arrays, lambda a, b: a < b))


@register(top=True)
def maximum(input, other):
    """Elementwise maximum; where both are equal each gets half the gradient (as torch)."""
    input, other = _operands(input, other, "maximum")
    return Maximum.apply(input, other)


class Atan2(_Binary):
    name = "atan2"

    def forward(self, xp, a, b):
        self._shapes(a, b)
        self.save_for_backward(a, b)
        return xp.arctan2(a, b)

    def backward(self, g):
        a, b = self.saved_tensors
        r = g / (a * a + b * b)
        return self._grads(r * b if self.needs_input_grad[0] else None, -r * a if self.needs_input_grad[1] else None)


@register(top=True)
def atan2(input, other):
    """The angle of the point (other, input), elementwise with broadcasting: arctan(input / other) in the right
    quadrant."""
    input, other = _operands(input, other, "atan2")
    if input.dtype.kind != "f":  # torch: integer inputs give the default float dtype
        input, other = input.to(backend.default_dtype()), other.to(backend.default_dtype())
    return Atan2.apply(input, other)


class Minimum(_Binary):
    name = "minimum"

    def forward(self, xp, a, b):
        self._shapes(a, b)
        self.save_for_backward(a, b)
        return xp.minimum(a, b)

    def backward(self, g):
        return self._grads(*_tie_split(g, *self.saved_arrays, lambda a, b: a > b))


@register(top=True)
def minimum(input, other):
    """Elementwise minimum; where both are equal each gets half the gradient (as torch)."""
    input, other = _operands(input, other, "minimum")
    return Minimum.apply(input, other)


# ---- comparisons (not differentiable; bool results) ------------------------------------------------
def _compare(name, fn):
    def compare(input, other):
        input, other = _operands(input, other, name)
        return untracked(name, fn, input, other)
    compare.__name__ = compare.__qualname__ = name
    compare.__doc__ = f"Elementwise ``{name}`` comparison; returns a bool Tensor (no gradient)."
    return register(name, top=True)(compare)


eq = _compare("eq", lambda a, b: a == b)


ne = _compare("ne", lambda a, b: a != b)


lt = _compare("lt", lambda a, b: a < b)


le = _compare("le", lambda a, b: a <= b)


gt = _compare("gt", lambda a, b: a > b)


ge = _compare("ge", lambda a, b: a >= b)
