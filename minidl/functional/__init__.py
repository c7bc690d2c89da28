"""The op library, one module per family; users see it as ``minidl.nn.functional`` (``F``).

Every public op is registered in ``_registry.OPS`` and has a row in ``tests/opinfo.py``.
"""
from .math import (add, sub, mul, div, neg, pow, matmul, exp, log, sqrt, abs, erf, clamp, maximum, minimum,
                   where, eq, ne, lt, le, gt, ge, logical_not)
from .shape import (reshape, permute, transpose, t, flatten, squeeze, unsqueeze, expand, sum_to, getitem, cat,
                    stack, split, chunk, pad, gather, to, clone, contiguous)
from .reduction import sum, mean, var, std, max, min, amax, amin, argmax, argmin, logsumexp
from .activation import (relu, leaky_relu, elu, gelu, silu, sigmoid, tanh, softplus, softmax, log_softmax,
                         dropout)
from .loss import (cross_entropy, nll_loss, mse_loss, l1_loss, binary_cross_entropy,
                   binary_cross_entropy_with_logits)
from .linear import linear
from .conv import conv2d, conv_transpose2d
from .pooling import max_pool2d, avg_pool2d, adaptive_avg_pool2d, adaptive_max_pool2d
from .normalization import batch_norm, layer_norm, group_norm
from ._registry import OPS

__all__ = sorted(OPS)
