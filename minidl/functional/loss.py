"""Losses, written as compositions of differentiable ops (so double backward works), with torch's
names, arguments and numbers."""
import numpy as np

from .. import backend
from ..autograd.tensor import Tensor
from ._checks import float_tensor, tensor_arg, optional_tensor, reduction_arg, same_device
from ._registry import register
from .activation import log_softmax, softplus
from .math import abs as _abs, clamp, log, where
from .reduction import sum as _sum, mean as _mean


def _reduce(loss, reduction):
    if reduction == "mean":
        return _mean(loss)
    if reduction == "sum":
        return _sum(loss)
    return loss


def _same_shape(input, target, op):
    if input.shape != target.shape:
        raise ValueError(f"{op}: target shape {target.shape} must equal input shape {input.shape}")


def _class_weight(weight, c, like, op):
    if weight is None:
        return None
    tensor_arg(weight, op, "weight")
    if weight.shape != (c,):
        raise ValueError(f"{op}: weight must have shape ({c},) (one per class), got {weight.shape}")
    same_device(op, like, weight)
    return weight.detach().to(like.dtype)


def _check_class_input(input, target, op):
    float_tensor(input, op)
    tensor_arg(target, op, "target")
    same_device(op, input, target)
    if input.ndim == 0:
        raise ValueError(f"{op}: input must be (C,), (N, C) or (N, C, d1, ...), got a 0-D tensor")
    if target.dtype.kind not in "iu":
        raise TypeError(f"{op}: target must hold class indices with an integer dtype (int64), got {target.dtype}")
    want = input.shape[:1] + input.shape[2:] if input.ndim > 1 else ()
    if target.shape != want:
        raise ValueError(f"{op}: expected target of shape {want} for input of shape {input.shape}, got {target.shape}")


def _nll(logp, target, weight, ignore_index, reduction, op):
    """Negative log-likelihood on log-probabilities ``logp`` (N, C, ...) or (C,)."""
    single = logp.ndim == 1
    if single:
        logp, target = logp.unsqueeze(0), target.reshape(1)
    c = logp.shape[1]
    t = target._data
    xp = backend.get_array_module(t)
    valid = t != ignore_index
    bad = valid & ((t < 0) | (t >= c))
    if xp is np and bad.any():  # on a GPU this check would copy to the host on every call (see below)
        raise ValueError(f"{op}: target holds class index {int(t[bad].reshape(-1)[0])}, outside [0, {c - 1}] "
                         f"(ignore_index={ignore_index})")
    safe = xp.where(valid & ~bad, t, 0)
    picked = logp.gather(1, Tensor._make(safe[:, None])).squeeze(1)
    w = valid.astype(logp.dtype)
    if xp is not np:  # device data: an out-of-range class makes the loss NaN instead of a host-side check
        w = xp.where(bad, float("nan"), w)
    if weight is not None:
        w = w * weight._data[safe]
    loss = -picked * Tensor._make(w)
    if reduction == "mean":
        return _sum(loss) / Tensor._make(xp.asarray(w.sum(), dtype=logp.dtype))
    if reduction == "sum":
        return _sum(loss)
    return loss.squeeze(0) if single else loss


@register()
def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean"):
    """Negative log-likelihood of class indices ``target`` under log-probabilities ``input``.

    Shape: input (N, C) or (N, C, d1, ...) or (C,); target (N,) or (N, d1, ...) or () with int64 classes.
    ``mean`` divides by the summed weights of the non-ignored targets, as torch.
    """
    _check_class_input(input, target, "nll_loss")
    reduction_arg(reduction, "nll_loss")
    w = _class_weight(weight, input.shape[1] if input.ndim > 1 else input.shape[0], input, "nll_loss")
    return _nll(input, target, w, ignore_index, reduction, "nll_loss")


@register()
def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """Cross-entropy of logits ``input`` against class indices or class probabilities ``target``.

    Shape: input (N, C), (N, C, d1, ...) or (C,); target: int64 indices of shape (N, d1, ...), or
    floating probabilities of the input's shape. ``label_smoothing`` mixes the target with the
    uniform distribution. Numbers as torch.nn.functional.cross_entropy.
    """
    op = "cross_entropy"
    float_tensor(input, op)
    tensor_arg(target, op, "target")
    reduction_arg(reduction, op)
    if not isinstance(label_smoothing, (int, float)) or not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{op}: label_smoothing must be in [0, 1], got {label_smoothing!r}")
    cdim = 0 if input.ndim == 1 else 1
    c = input.shape[cdim] if input.ndim else 0
    w = _class_weight(weight, c, input, op)
    wshape = (c,) + (1,) * (input.ndim - cdim - 1)
    logp = log_softmax(input, cdim)
    if target.dtype.kind == "f":  # class probabilities
        _same_shape(input, target, op)
        same_device(op, input, target)
        if label_smoothing > 0:
            target = target * (1 - label_smoothing) + label_smoothing / c
        terms = logp * target if w is None else logp * target * w.reshape(*wshape)
        loss = -_sum(terms, cdim)
        if reduction == "mean":
            return _sum(loss) / (input.numel() // c if c else 1)
        return _sum(loss) if reduction == "sum" else loss
    _check_class_input(input, target, op)
    nll = _nll(logp, target, w, ignore_index, reduction, op)
    if label_smoothing == 0:
        return nll
    keep = Tensor._make(target._data != ignore_index)
    smooth = -_sum(logp if w is None else logp * w.reshape(*wshape), cdim)
    smooth = where(keep, smooth, 0.0)
    if reduction == "mean":
        t = target._data
        denom = (keep._data.sum() if w is None else w._data[t[keep._data]].sum())
        smooth = _sum(smooth) / float(denom)
    elif reduction == "sum":
        smooth = _sum(smooth)
    return (1 - label_smoothing) * nll + smooth * (label_smoothing / c)


def _difference(input, target, reduction, op):
    float_tensor(input, op)
    tensor_arg(target, op, "target")
    _same_shape(input, target, op)
    reduction_arg(reduction, op)
    return input - target


@register()
def mse_loss(input, target, reduction="mean"):
    """Mean squared error ``(input - target) ** 2``, reduced."""
    d = _difference(input, target, reduction, "mse_loss")
    return _reduce(d * d, reduction)


@register()
def l1_loss(input, target, reduction="mean"):
    """Mean absolute error ``|input - target|``, reduced."""
    return _reduce(_abs(_difference(input, target, reduction, "l1_loss")), reduction)


def _check_binary(input, target, weight, op):
    float_tensor(input, op)
    float_tensor(target, op, "target")
    _same_shape(input, target, op)
    same_device(op, input, target, weight)
    if weight is not None:
        try:
            np.broadcast_shapes(weight.shape, input.shape)
        except ValueError:
            raise ValueError(f"{op}: weight of shape {weight.shape} does not broadcast to input shape "
                             f"{input.shape}") from None


@register()
def binary_cross_entropy(input, target, weight=None, reduction="mean"):
    """``-(t log x + (1 - t) log(1 - x))`` on probabilities ``input``; logs are clamped at -100 (torch)."""
    op = "binary_cross_entropy"
    optional_tensor(weight, op, "weight")
    _check_binary(input, target, weight, op)
    reduction_arg(reduction, op)
    x = input._data
    if ((x < 0) | (x > 1)).any():
        raise ValueError(f"{op}: input must hold probabilities in [0, 1]; apply sigmoid first, "
                         "or use binary_cross_entropy_with_logits")
    loss = -(target * clamp(log(input), min=-100.0) + (1 - target) * clamp(log(1 - input), min=-100.0))
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


@register()
def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean", pos_weight=None):
    """Sigmoid plus binary cross-entropy in one stable formula; ``pos_weight`` weighs positives."""
    op = "binary_cross_entropy_with_logits"
    optional_tensor(weight, op, "weight")
    optional_tensor(pos_weight, op, "pos_weight")
    _check_binary(input, target, weight, op)
    reduction_arg(reduction, op)
    # (1 - t) x + lw * softplus(-x), with lw = 1 + (pos_weight - 1) t
    sp = softplus(-input)
    if pos_weight is not None:
        same_device(op, input, pos_weight)
        sp = sp * (1 + (pos_weight - 1) * target)
    loss = (1 - target) * input + sp
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)
