"""Matrix products: matmul (mm, bmm) and linear, ``input @ weight.T + bias``, composed of matmul and add (double
backward works). Each public function sits under its Function class."""
from .. import kernels
from ..autograd import Function
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
    same_device("matmul", input, other)
    if input.ndim == 0 or other.ndim == 0:
        raise ValueError(f"matmul: both arguments need at least 1 dimension, got shapes {input.shape} "
                         f"and {other.shape}")
    if input.shape[-1] != other.shape[-2 if other.ndim > 1 else 0]:
        raise ValueError(f"matmul: shapes {input.shape} and {other.shape} cannot be multiplied "
                         f"({input.shape[-1]} != {other.shape[-2 if other.ndim > 1 else 0]})")
    if input.ndim > 2 or other.ndim > 2:
        _check_broadcast("matmul", input.shape[:-2], other.shape[:-2] if other.ndim > 1 else ())
    if input.dtype != other.dtype:
        raise TypeError(f"matmul: expected both arguments to have the same dtype, got {input.dtype} and "
                        f"{other.dtype}")
    y = MatMul.apply(input.unsqueeze(0) if input.ndim == 1 else input,
                     other.unsqueeze(-1) if other.ndim == 1 else other)
    if input.ndim == 1:
        y = y.squeeze(-2)
    return y.squeeze(-1) if other.ndim == 1 else y


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
        raise ValueError(f"linear: weight must be 2-D (out_features, in_features), got shape {weight.shape}")
    if input.dtype != weight.dtype:
        raise TypeError(f"linear: input dtype {input.dtype} and weight dtype {weight.dtype} differ; convert the "
                        f"input (x.to({weight.dtype})) or the layer (layer.to({input.dtype}))")
    if input.ndim == 0 or input.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: input has {input.shape[-1] if input.ndim else 0} features in its last "
                         f"dimension (shape {input.shape}), weight expects {weight.shape[1]} "
                         f"(weight shape {weight.shape})")
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"linear: bias must have shape ({weight.shape[0]},), got {bias.shape}")
    y = matmul(input, weight.t())
    return y if bias is None else y + bias


@register(top=True)
def mm(input, mat2):
    """The product of two matrices (2-D only; no broadcasting, as torch)."""
    tensor_arg(input, "mm")
    tensor_arg(mat2, "mm", "mat2")
    if input.ndim != 2 or mat2.ndim != 2:
        raise ValueError(f"mm: expects two 2-D tensors, got shapes {input.shape} and {mat2.shape}")
    if input.shape[1] != mat2.shape[0]:
        raise ValueError(f"mm: shapes {input.shape} and {mat2.shape} cannot be multiplied")
    return matmul(input, mat2)


@register(top=True)
def bmm(input, mat2):
    """Batched products of (b, n, m) and (b, m, p) (no broadcasting, as torch)."""
    tensor_arg(input, "bmm")
    tensor_arg(mat2, "bmm", "mat2")
    if input.ndim != 3 or mat2.ndim != 3:
        raise ValueError(f"bmm: expects two 3-D tensors, got shapes {input.shape} and {mat2.shape}")
    if input.shape[0] != mat2.shape[0] or input.shape[2] != mat2.shape[1]:
        raise ValueError(f"bmm: shapes {input.shape} and {mat2.shape} cannot be multiplied batch by batch")
    return matmul(input, mat2)
