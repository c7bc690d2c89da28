"""Activations: relu, leaky_relu, elu, gelu, silu, sigmoid, tanh, softplus, hardtanh, relu6, hardsigmoid,
hardswish, mish, prelu, softmax, log_softmax, dropout, dropout2d. Backward passes use minidl ops, so they
differentiate again."""
import math


from .. import backend, kernels
from ..autograd import Function
from ..autograd.capturing import replayed
from ..autograd.grad_mode import is_grad_enabled
from ..autograd.tensor import Tensor, _dim
from ..backend.errors import RuntimeValueError
from ._checks import float_tensor
from ._registry import register
from .math import mul, where
from .unary import erf, exp
from .reduction import sum as _sum


def _mask(a, dtype):
    return Tensor._make(a.astype(dtype))


class ReLUFunction(Function):
    name = "relu"

    def forward(self, xp, x):
        y = kernels.relu(x)
        self.save_for_backward(y)  # only the output, as torch: y > 0 exactly where x > 0 (relu'(0) = 0)
        return y

    def backward(self, g):
        y, = self.saved_tensors
        return ReLUBackward.apply(g, y.detach())


class ReLUBackward(Function):
    """relu's gradient, gy where y (relu's output) is not <= 0, in one kernel pass (torch's threshold_backward). It
    is linear in gy, so its own gradient is itself; y's is zero almost everywhere (None)."""
    name = "threshold_backward"  # torch's name for this kernel: the profiler and grad_fn say so

    def forward(self, xp, gy, y):
        self.save_for_backward(y)
        return kernels.relu_backward(gy, y)

    def backward(self, gg):
        y, = self.saved_tensors
        return ReLUBackward.apply(gg, y), None


@register(top=True)
def relu(input, inplace=False):
    """max(input, 0). ``inplace`` is accepted for torch compatibility; a new tensor is returned."""
    return ReLUFunction.apply(float_tensor(input, "relu"))


class LeakyReLUFunction(Function):
    name = "leaky_relu"

    def forward(self, xp, x, slope):
        slope_map = xp.where(x > 0, 1, slope).astype(x.dtype)
        self.save_for_backward(slope_map)
        return x * slope_map

    def backward(self, g):
        slope_map, = self.saved_tensors
        return g * slope_map


@register()
def leaky_relu(input, negative_slope=0.01, inplace=False):
    """``input`` where positive, ``negative_slope * input`` elsewhere."""
    float_tensor(input, "leaky_relu")
    if not isinstance(negative_slope, (int, float)) or isinstance(negative_slope, bool):
        raise TypeError(f"leaky_relu: argument 'negative_slope' must be a number, got {type(negative_slope).__name__}")
    return LeakyReLUFunction.apply(input, slope=float(negative_slope))


class ELU(Function):
    name = "elu"

    def forward(self, xp, x, alpha):
        self.alpha = alpha
        y = xp.where(x > 0, x, alpha * xp.expm1(xp.minimum(x, 0)))
        self.save_for_backward(x)
        return y

    def backward(self, g):
        x, = self.saved_tensors
        pos = x._data > 0
        # d/dx alpha*(e^x - 1) = alpha*e^x, written on x so that it differentiates again
        return where(Tensor._make(pos), g, g * self.alpha * (x * _mask(~pos, x.dtype)).exp())


@register()
def elu(input, alpha=1.0, inplace=False):
    """``input`` where positive, ``alpha * (exp(input) - 1)`` elsewhere."""
    float_tensor(input, "elu")
    return ELU.apply(input, alpha=float(alpha))


class TanhFunction(Function):
    name = "tanh"

    def forward(self, xp, x):
        y = xp.tanh(x)
        self.save_for_backward(y)
        return y

    def backward(self, g):
        y, = self.saved_tensors
        return g * (1.0 - y * y)


@register(top=True)
def tanh(input):
    return TanhFunction.apply(float_tensor(input, "tanh"))


# ---- gelu: one Function (issue 32: it was five ops, ten graph nodes with their backward) -------------------------
# exact:  y = x Phi(x),  Phi(x) = (1 + erf(x / sqrt(2))) / 2,  dy/dx = Phi(x) + x phi(x),  phi(x) = exp(-x^2 / 2) /
#         sqrt(2 pi)
# tanh:   y = x (1 + t) / 2,  t = tanh(sqrt(2 / pi) (x + 0.044715 x^3)),
#         dy/dx = (1 + t) / 2 + x / 2 (1 - t^2) sqrt(2 / pi) (1 + 3 0.044715 x^2)
# torch's formulas. Forward and a first backward work on arrays (Phi or t saved with x, one array more than torch
# keeps, so that backward computes no erf or tanh again: 113 us of 73,728 float32 values); a backward that builds a
# graph (create_graph) computes the same in minidl ops from x itself, so the gradient differentiates again. float16
# and bfloat16 compute in float32 and round once, as torch's (composed of float16 ops, a third of the values and
# gradients above 1e-2 were a unit off torch's).
_SQRT1_2 = 1.0 / math.sqrt(2.0)
_PDF_SCALE = 1.0 / math.sqrt(2.0 * math.pi)  # phi(0)
_TANH_BETA, _TANH_KAPPA = math.sqrt(2.0 / math.pi), 0.044715


class GELUFunction(Function):
    name = "gelu"  # grad_fn GeluBackward0, as torch's

    def forward(self, xp, x, approximate):
        self.approximate = approximate
        xc = x.astype(backend.compute_dtype(x.dtype), copy=False).reshape(x.shape or (1,))  # (0-d: no scalars)
        if approximate == "tanh":
            s = xc * xc
            s *= xc
            s *= _TANH_KAPPA
            s += xc
            s *= _TANH_BETA
            s = xp.tanh(s, out=s)  # t
            y = xc * 0.5
            y *= s + 1.0
        else:
            s = kernels.erf(xc * _SQRT1_2)
            s += 1.0
            s *= 0.5  # Phi(x)
            y = xc * s
        self.save_for_backward(x, s)
        return y.astype(x.dtype, copy=False).reshape(x.shape)

    def backward(self, gy):
        if is_grad_enabled():
            return self._graph_backward(gy)
        x, s = self.saved_arrays
        xp = backend.get_array_module(x)
        xc = x.astype(s.dtype, copy=False).reshape(s.shape)
        d = xc * xc
        if self.approximate == "tanh":  # (1 + t) / 2 + x / 2 (1 - t^2) beta (1 + 3 kappa x^2)
            d *= 3.0 * _TANH_KAPPA
            d += 1.0
            d *= _TANH_BETA
            d *= 1.0 - s * s
            d *= xc * 0.5
            d += (s + 1.0) * 0.5
        else:  # Phi(x) + x phi(x)
            d *= -0.5
            d = xp.exp(d, out=d)
            d *= _PDF_SCALE
            d *= xc
            d += s
        d *= gy._data.reshape(s.shape)
        return d.astype(x.dtype, copy=False).reshape(x.shape)

    def _graph_backward(self, gy):
        x = self.saved_tensors[0]
        xc = x if x.dtype.itemsize >= 4 else x.float()
        if self.approximate == "tanh":
            t = tanh(_TANH_BETA * (xc + _TANH_KAPPA * (xc * xc * xc)))
            d = 0.5 * (1.0 + t) + (0.5 * xc) * (1.0 - t * t) * (_TANH_BETA * (1.0 + (3.0 * _TANH_KAPPA) * (xc * xc)))
        else:
            d = 0.5 * (1.0 + erf(xc * _SQRT1_2)) + xc * (_PDF_SCALE * exp(-0.5 * (xc * xc)))
        gx = gy * d if d.dtype == gy.dtype else (gy.float() * d).to(gy.dtype)
        return gx


@register()
def gelu(input, approximate="none"):
    """``x * Phi(x)`` (exact, with erf) or its tanh approximation (``approximate='tanh'``)."""
    float_tensor(input, "gelu")
    if approximate not in ("none", "tanh"):
        raise RuntimeValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return GELUFunction.apply(input, approximate=approximate)


class SigmoidFunction(Function):
    name = "sigmoid"

    def forward(self, xp, x):
        y = xp.exp(-xp.logaddexp(0, -x)).astype(x.dtype)  # stable for large |x|
        self.save_for_backward(y)
        return y

    def backward(self, g):
        y, = self.saved_tensors
        return g * y * (1.0 - y)


@register(top=True)
def sigmoid(input):
    return SigmoidFunction.apply(float_tensor(input, "sigmoid"))


@register()
def silu(input, inplace=False):
    """``input * sigmoid(input)`` (also called swish)."""
    float_tensor(input, "silu")
    return mul(input, sigmoid(input))


class SoftplusFunction(Function):
    name = "softplus"

    def forward(self, xp, x, beta, threshold):
        self.beta = beta
        lin = x * beta > threshold  # linear above the threshold, as torch
        self.save_for_backward(x, lin)
        bx = x * beta
        return xp.where(lin, x, (xp.maximum(bx, 0) + xp.log1p(xp.exp(-xp.abs(bx)))) / beta).astype(x.dtype)

    def backward(self, g):
        x, lin = self.saved_tensors
        return where(lin, g, g * sigmoid(x * self.beta))


@register()
def softplus(input, beta=1.0, threshold=20.0):
    """``log(1 + exp(beta * x)) / beta``, and ``x`` itself where ``beta * x > threshold`` (as torch)."""
    float_tensor(input, "softplus")
    if beta == 0:
        raise RuntimeValueError("softplus: argument 'beta' must be non-zero")
    return SoftplusFunction.apply(input, beta=float(beta), threshold=float(threshold))


class SoftmaxFunction(Function):
    name = "softmax"

    def forward(self, xp, x, dim):
        self.dim = dim
        if x.size == 0:
            y = x.copy()
        else:
            e = xp.exp(x - x.max(axis=dim, keepdims=True))
            y = e / e.sum(axis=dim, keepdims=True)
        self.save_for_backward(y)
        return y

    def backward(self, g):
        if is_grad_enabled():  # a graph for a second derivative: in minidl ops
            y, = self.saved_tensors
            gy = g * y
            return gy - y * _sum(gy, self.dim, keepdim=True)
        y, = self.saved_arrays  # else three array passes (the ops cost 200 us on the tiny GPT's (64, 3, 6, 6) rows)
        gy = g._data * y
        gy -= y * gy.sum(axis=self.dim, keepdims=True)
        return gy


def _softmax_dim(input, dim, op):
    float_tensor(input, op)
    if dim is None:  # torch's legacy implicit choice
        dim = 0 if input.ndim in (0, 1, 3) else 1
    d = _dim(dim, input.ndim, op)
    return d if input.ndim else None  # a 0-d tensor: its one element (axis None)


def _softmax_args(input, dim, dtype, op):
    """(input in ``dtype``, the checked dim) for softmax and log_softmax."""
    d = _softmax_dim(input, dim, op)
    return (input if dtype is None else input.to(dtype)), d


@register(top=True)
def softmax(input, dim=None, dtype=None):
    """``exp(x) / sum(exp(x), dim)``, computed stably."""
    x, d = _softmax_args(input, dim, dtype, "softmax")
    return SoftmaxFunction.apply(x, dim=d)


class LogSoftmaxFunction(Function):
    name = "log_softmax"

    def forward(self, xp, x, dim):
        self.dim = dim
        if x.size == 0:
            y = x.copy()
        else:
            z = x - x.max(axis=dim, keepdims=True)
            y = z - xp.log(xp.exp(z).sum(axis=dim, keepdims=True))
        self.save_for_backward(y)
        return y

    def backward(self, g):
        y, = self.saved_tensors
        return g - y.exp() * _sum(g, self.dim, keepdim=True)


@register(top=True)
def log_softmax(input, dim=None, dtype=None):
    """``x - logsumexp(x, dim)``, computed stably."""
    x, d = _softmax_args(input, dim, dtype, "log_softmax")
    return LogSoftmaxFunction.apply(x, dim=d)


@replayed
def _dropout_mask(shape, dtype, device, p):
    """``(rand(shape) >= p) / (1 - p)`` from the device's generator: replayed, so a compiled step draws a new mask."""
    keep = backend.generator(device).random(shape, dtype=dtype) >= p
    return Tensor._make((keep / (1.0 - p)).astype(dtype))


@register()
def dropout(input, p=0.5, training=True, inplace=False):
    """Zero each element with probability ``p`` and scale the rest by ``1 / (1 - p)`` (training only).

    The mask is drawn as ``rand(input.shape) >= p`` from the device's generator (``minidl.manual_seed``).
    """
    float_tensor(input, "dropout")
    if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0.0 <= p <= 1.0:
        raise RuntimeValueError(f"dropout: probability 'p' must be a number in [0, 1], got {p!r}")
    if not training or p == 0:
        return input
    if p == 1:
        return input * 0.0
    return input * _dropout_mask(input.shape, input.dtype, input.device, p)


@register(method=False)
def dropout2d(input, p=0.5, training=True, inplace=False):
    """Zero whole channels with probability ``p`` and scale the rest by ``1 / (1 - p)`` (training only): input
    (N, C, H, W), or (C, H, W) without a batch (other ranks from 2 up, as torch: (N, C, ...)). The mask, one
    value per (sample, channel), is drawn as in ``dropout``."""
    float_tensor(input, "dropout2d")
    if input.ndim < 2:
        raise RuntimeValueError(f"dropout2d: needs at least 2 dimensions (N, C, ...), got shape {tuple(input.shape)}")
    if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0.0 <= p <= 1.0:
        raise RuntimeValueError(f"dropout2d: probability 'p' must be a number in [0, 1], got {p!r}")
    if not training or p == 0:
        return input
    if p == 1:
        return input * 0.0
    lead = 1 if input.ndim == 3 else 2
    return input * _dropout_mask(input.shape[:lead] + (1,) * (input.ndim - lead), input.dtype, input.device, p)


class HardtanhFunction(Function):
    name = "hardtanh"

    def forward(self, xp, x, lo, hi):
        # the gradient passes strictly inside; not at NaN, as torch's vectorised kernel (its scalar tail, for a
        # few trailing elements, passes it: torch disagrees with itself there; minidl takes the common path)
        keep = (x > lo) & (x < hi)
        self.save_for_backward(_mask(keep, x.dtype))
        return xp.clip(x, lo, hi)

    def backward(self, g):
        keep, = self.saved_tensors
        return g * keep


@register()
def hardtanh(input, min_val=-1.0, max_val=1.0, inplace=False):
    """``input`` clamped into [min_val, max_val]."""
    float_tensor(input, "hardtanh")
    if min_val > max_val:
        raise RuntimeValueError(f"hardtanh: min_val ({min_val}) must not exceed max_val ({max_val})")
    return HardtanhFunction.apply(input, lo=float(min_val), hi=float(max_val))


@register()
def relu6(input, inplace=False):
    """min(max(input, 0), 6) (MobileNet's activation)."""
    return hardtanh(float_tensor(input, "relu6"), 0.0, 6.0)


class HardsigmoidFunction(Function):
    name = "hardsigmoid"
    differentiable_twice = False  # torch: "derivative for aten::hardsigmoid_backward is not implemented"

    def forward(self, xp, x):
        self.save_for_backward(((x > -3) & (x < 3)).astype(x.dtype) / 6)
        return xp.clip(x / 6 + 0.5, 0, 1).astype(x.dtype)

    def backward(self, g):
        slope, = self.saved_arrays
        return g._data * slope


@register()
def hardsigmoid(input, inplace=False):
    """relu6(input + 3) / 6."""
    return HardsigmoidFunction.apply(float_tensor(input, "hardsigmoid"))


class HardswishFunction(Function):
    name = "hardswish"

    def forward(self, xp, x):
        self.save_for_backward(x)
        return (x * xp.clip(x + 3, 0, 6) / 6).astype(x.dtype)

    def backward(self, g):  # d/dx: 0 up to -3, x/3 + 1/2 between (NaN at NaN), 1 from 3 on, as torch
        x, = self.saved_tensors
        return g * where(x <= -3, 0.0 * x, where(x >= 3, 0.0 * x + 1.0, x / 3 + 0.5))


@register()
def hardswish(input, inplace=False):
    """input * relu6(input + 3) / 6 (MobileNetV3's activation)."""
    return HardswishFunction.apply(float_tensor(input, "hardswish"))


@register()
def mish(input, inplace=False):
    """input * tanh(softplus(input))."""
    return mul(float_tensor(input, "mish"), tanh(softplus(input)))


@register(method=False, top=True)
def prelu(input, weight):
    """``input`` where positive, ``weight * input`` elsewhere; ``weight`` holds one slope, or one per channel
    (dim 1)."""
    float_tensor(input, "prelu")
    float_tensor(weight, "prelu", "weight")
    if weight.ndim > 1:
        raise RuntimeValueError(f"prelu: weight must be 0-D or 1-D, got shape {tuple(weight.shape)}")
    channels = input.shape[1] if input.ndim >= 2 else 1
    if weight.numel() not in (1, channels):
        raise RuntimeValueError(f"prelu: weight has {weight.numel()} slopes; the input has {channels} channels (dim 1)")
    if weight.numel() > 1:
        w = weight.reshape(-1, *([1] * (input.ndim - 2)))
    else:
        w = weight.reshape(*([1] * input.ndim)) if input.ndim else weight.reshape(())
    return where(input > 0, input, w * input)
