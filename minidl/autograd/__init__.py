"""Autograd: Tensor, Function, the iterative backward pass, grad(), and grad modes."""
from .grad_mode import no_grad, enable_grad, set_grad_enabled, is_grad_enabled, inference_mode
from .function import Function
from .tensor import Tensor
from .engine import backward, grad

__all__ = ["Tensor", "Function", "backward", "grad", "no_grad", "enable_grad", "set_grad_enabled",
           "is_grad_enabled", "inference_mode"]
