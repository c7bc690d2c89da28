"""Losses, written as compositions of differentiable ops (so double backward works), with torch's
names, arguments and numbers. One is fused for speed: cross_entropy's common case (SoftmaxCrossEntropy), whose
backward is itself written with ops."""
import warnings

import numpy as np

from .. import backend
from ..autograd import Function
from ..autograd.tensor import Tensor
from ..backend.errors import IndexValueError, RuntimeTypeError, RuntimeValueError
from ._checks import float_tensor, optional_tensor, reduction_arg, same_device, tensor_arg
from ._registry import register
from .activation import log_softmax, softmax, softplus
from .math import _check_broadcast, log, where
from .unary import abs as _abs, clamp, exp
from .reduction import mean as _mean
from .reduction import sum as _sum


LEGACY_WARNING = "size_average and reduce args will be deprecated, please use reduction='{}' instead."


def legacy_reduction(size_average, reduce, stacklevel=3):
    """torch's ``_Reduction.legacy_get_string``: the ``reduction`` that the deprecated ``size_average`` / ``reduce``
    pair stands for (either left None counts as True): 'none' when not reducing, else 'mean' or 'sum' by
    ``size_average``; with torch's warning. Callers use it only when one of the two was given, and then it
    overrides ``reduction``, as in torch."""
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    reduction = ("mean" if size_average else "sum") if reduce else "none"
    warnings.warn(LEGACY_WARNING.format(reduction), stacklevel=stacklevel)
    return reduction


def _reduction(size_average, reduce, reduction):
    """``reduction``, or what the legacy pair says when either was given (warning as torch)."""
    if size_average is None and reduce is None:
        return reduction
    return legacy_reduction(size_average, reduce, stacklevel=4)


def _class_weight(weight, c, like, op):
    if weight is None:
        return None
    tensor_arg(weight, op, "weight")
    if weight.shape != (c,):
        raise RuntimeValueError(f"{op}: weight must have shape ({c},) (one per class), got {tuple(weight.shape)}")
    same_device(op, like, weight)
    return weight.detach().to(like.dtype)


def _check_target_dtype(input, target, op):
    """Class indices are int64, as torch's (which also takes uint8 for a (C,) or (N, C) input, not for a spatial
    one): an int32 label tensor is refused, so that code written on minidl runs on torch too."""
    dt = target.dtype
    if dt == np.int64 or (dt == np.uint8 and input.ndim <= 2):
        return
    if dt == np.uint8:
        raise RuntimeTypeError(f"{op}: expected target dtype int64 (Long) for an input with dims after (N, C), but "
                               f"got {dt}; convert the class indices with target.long()")
    raise RuntimeTypeError(f"{op}: expected target dtype to be int64 (Long) or uint8 (Byte), but got {dt}; convert "
                           "the class indices with target.long()")


def _check_class_input(input, target, op, weight=None):
    float_tensor(input, op)
    if isinstance(weight, Tensor) and weight.dtype != input.dtype:  # torch refuses too (class-index targets only)
        raise RuntimeTypeError(f"{op}: weight has dtype {weight.dtype}, expected the input's {input.dtype}")
    tensor_arg(target, op, "target")
    same_device(op, input, target)
    if input.ndim == 0:
        raise RuntimeValueError(f"{op}: input must be (C,), (N, C) or (N, C, d1, ...), got a 0-D tensor")
    _check_target_dtype(input, target, op)
    want = tuple(input.shape[:1] + input.shape[2:]) if input.ndim > 1 else ()
    if target.shape != want:
        raise RuntimeValueError(f"{op}: expected target of shape {want} for input of shape {tuple(input.shape)}, got "
                                f"{tuple(target.shape)}")


def _weighted_mean(total, denom):
    """``total / denom`` for a mean over weights; when every target is ignored (denom 0) the loss is NaN
    but the gradients are 0, as torch's (1 / 0 = inf times zero weights would make them NaN)."""
    xp = backend.get_array_module(total._data)
    denom = xp.asarray(denom, dtype=total.dtype)
    empty = denom == 0
    scale = Tensor._make(xp.where(empty, 0, 1 / xp.where(empty, 1, denom)).astype(total.dtype))
    return total * scale + Tensor._make(xp.where(empty, xp.nan, 0).astype(total.dtype))


def _class_range(t, c, ignore_index, op):
    """Where class indices ``t`` (not ignored) fall outside [0, c): raises for host data; device data is not read
    back (a sync per call), its callers make the loss NaN there instead."""
    valid = t != ignore_index
    bad = valid & ((t < 0) | (t >= c))
    if type(t) is np.ndarray and bad.any():
        raise IndexValueError(f"{op}: target holds class index {int(t[bad].reshape(-1)[0])}, outside [0, {c - 1}] "
                              f"(ignore_index={ignore_index})")
    return bad


def _nll(logp, target, weight, ignore_index, reduction, op):
    """Negative log-likelihood on log-probabilities ``logp`` (N, C, ...) or (C,)."""
    single = logp.ndim == 1
    if single:
        logp, target = logp.unsqueeze(0), target.reshape(1)
    c = logp.shape[1]
    t = target._data
    xp = backend.get_array_module(t)
    valid = t != ignore_index
    bad = _class_range(t, c, ignore_index, op)
    safe = xp.where(valid & ~bad, t, 0)
    picked = logp.gather(1, Tensor._make(safe[:, None])).squeeze(1)
    w = valid.astype(logp.dtype)
    if xp is not np:  # device data: an out-of-range class makes the loss NaN instead of a host-side check
        w = xp.where(bad, float("nan"), w)
    if weight is not None:
        w = w * weight._data[safe]
    zero = Tensor._make(xp.zeros((), dtype=logp.dtype))  # made on the device (a Python 0.0 would be copied)
    loss = where(Tensor._make(valid), -picked * Tensor._make(w), zero)  # NaN at an ignored target stays out
    if reduction == "mean":
        return _weighted_mean(_sum(loss), w.sum())
    if reduction == "sum":
        return _sum(loss)
    return loss.squeeze(0) if single else loss


@register()
def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean"):
    """Negative log-likelihood of class indices ``target`` under log-probabilities ``input``.

    Shape: input (N, C) or (N, C, d1, ...) or (C,); target (N,) or (N, d1, ...) or () with int64 classes.
    ``mean`` divides by the summed weights of the non-ignored targets, as torch. ``size_average`` / ``reduce``:
    torch's deprecated pair, which overrides ``reduction`` when given (with torch's warning).
    """
    reduction = _reduction(size_average, reduce, reduction)
    _check_class_input(input, target, "nll_loss", weight)
    reduction_arg(reduction, "nll_loss")
    w = _class_weight(weight, input.shape[1] if input.ndim > 1 else input.shape[0], input, "nll_loss")
    return _nll(input, target, w, ignore_index, reduction, "nll_loss")


def _same_shape(input, target, op):
    if input.shape != target.shape:
        raise RuntimeValueError(f"{op}: target shape {tuple(target.shape)} must equal input shape {tuple(input.shape)}")


class SoftmaxCrossEntropy(Function):
    """log_softmax and nll_loss in one pass, for the common case: logits (N, C), class indices, no class weights, no
    label smoothing. Forward: loss_n = logsumexp(x_n) - x_n[t_n], without the (N, C) log-probabilities, the gather
    and the masks of the composed ops (measured: 6x torch's time composed, benchmarks/NOTES.md change 24). Backward:
    (softmax(x) - onehot(t)) times the upstream gradient, written with ops, so it is differentiable again."""
    name = "cross_entropy"

    def forward(self, xp, x, t, ignore_index, reduction):
        n = x.shape[0]
        self.reduction = reduction
        valid = t != ignore_index
        safe = xp.where(valid, t, 0)
        m = x.max(axis=1) if x.shape[1] else xp.zeros(n, x.dtype)
        lse = m + xp.log(xp.exp(x - m[:, None]).sum(axis=1))
        loss = xp.where(valid, lse - x[xp.arange(n), safe], 0).astype(x.dtype)  # NaN at an ignored target stays out
        count = valid.sum()
        # what backward scales (softmax(x) - onehot) by, per row: 1 for a kept target, 0 for an ignored one, over
        # the count for a mean (every target ignored: the loss is NaN, its gradient 0, as torch)
        scale = valid.astype(x.dtype)
        if reduction == "mean":
            scale = scale / x.dtype.type(count) if count else scale
        self.save_for_backward(x, safe, scale)
        if reduction == "none":
            return loss
        total = loss.sum(dtype=x.dtype)
        return total if reduction == "sum" else (total / x.dtype.type(count)).astype(x.dtype)

    def backward(self, g):
        x, safe, scale = self.saved_tensors
        scale = scale.reshape(-1, 1) * (g.reshape(-1, 1) if self.reduction == "none" else g)
        return (softmax(x, 1) - _OneHotRows.apply(x, safe)) * scale, None


class _OneHotRows(Function):
    """onehot(t) of shape (N, C) in x's dtype, for SoftmaxCrossEntropy's backward: an op rather than raw code there,
    so that a step captured by minidl.compile makes it from each replay's targets. A constant: no gradient."""

    def forward(self, xp, x, t):
        hot = xp.zeros(x.shape, dtype=x.dtype)
        hot[xp.arange(x.shape[0]), t] = 1
        return hot

    def backward(self, g):
        return None, None


@register()
def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean",
                  label_smoothing=0.0):
    """Cross-entropy of logits ``input`` against class indices or class probabilities ``target``.

    Shape: input (N, C), (N, C, d1, ...) or (C,); target: int64 indices of shape (N, d1, ...), or
    floating probabilities of the input's shape. ``label_smoothing`` mixes the target with the
    uniform distribution. ``size_average`` / ``reduce``: torch's deprecated pair (overrides ``reduction``, with
    torch's warning). Numbers as torch.nn.functional.cross_entropy.
    """
    op = "cross_entropy"
    reduction = _reduction(size_average, reduce, reduction)
    float_tensor(input, op)
    tensor_arg(target, op, "target")
    reduction_arg(reduction, op)
    if not isinstance(label_smoothing, (int, float)) or not 0.0 <= label_smoothing <= 1.0:
        raise RuntimeValueError(f"{op}: label_smoothing must be in [0, 1], got {label_smoothing!r}")
    cdim = 0 if input.ndim == 1 else 1
    c = input.shape[cdim] if input.ndim else 0
    w = _class_weight(weight, c, input, op)
    wshape = (c,) + (1,) * (input.ndim - cdim - 1)
    if target.dtype.kind == "f":  # class probabilities
        logp = log_softmax(input, cdim)
        if target.shape != input.shape and target.ndim == input.ndim - 1 and input.ndim >= 1:
            raise RuntimeTypeError(f"{op}: target {tuple(target.shape)} of dtype {target.dtype} looks like class "
                                   "indices, which must be integers (int64: target.long()); a floating target holds "
                                   f"class probabilities of the input's shape {tuple(input.shape)}")
        if ignore_index != -100:
            raise RuntimeValueError(f"{op}: ignore_index={ignore_index} applies to class-index targets, not to "
                                    f"probabilities (dtype {target.dtype}); as torch, it is refused")
        _same_shape(input, target, op)
        same_device(op, input, target)
        if label_smoothing > 0:
            target = target * (1 - label_smoothing) + label_smoothing / c
        terms = logp * target if w is None else logp * target * w.reshape(*wshape)
        loss = -_sum(terms, cdim)
        if reduction == "mean":
            return _sum(loss) / (input.numel() // c if c else 1)
        return _sum(loss) if reduction == "sum" else loss
    _check_class_input(input, target, op, weight)
    if input.ndim == 2 and w is None and label_smoothing == 0 and type(target._data) is np.ndarray:
        _class_range(target._data, input.shape[1], ignore_index, op)
        return SoftmaxCrossEntropy.apply(input, target, ignore_index=ignore_index, reduction=reduction)
    logp = log_softmax(input, cdim)
    nll = _nll(logp, target, w, ignore_index, reduction, op)
    if label_smoothing == 0:
        return nll
    xp = backend.get_array_module(target._data)
    keep = Tensor._make(target._data != ignore_index)
    smooth = -_sum(logp if w is None else logp * w.reshape(*wshape), cdim)
    smooth = where(keep, smooth, 0.0)
    if reduction == "mean":
        t = target._data
        denom = (keep._data.sum() if w is None else w._data[xp.where(keep._data, t, 0)][keep._data].sum())
        smooth = _weighted_mean(_sum(smooth), denom)
    elif reduction == "sum":
        smooth = _sum(smooth)
    return (1 - label_smoothing) * nll + smooth * (label_smoothing / c)


def _reduce(loss, reduction):
    if reduction == "mean":
        return _mean(loss)
    if reduction == "sum":
        return _sum(loss)
    return loss


def _difference(input, target, reduction, op):
    float_tensor(input, op)
    tensor_arg(target, op, "target")
    _same_shape(input, target, op)
    reduction_arg(reduction, op)
    return input - target


@register()
def mse_loss(input, target, size_average=None, reduce=None, reduction="mean"):
    """Mean squared error ``(input - target) ** 2``, reduced (``size_average`` / ``reduce``: torch's deprecated
    pair, overriding ``reduction`` with torch's warning)."""
    reduction = _reduction(size_average, reduce, reduction)
    d = _difference(input, target, reduction, "mse_loss")
    return _reduce(d * d, reduction)


@register()
def l1_loss(input, target, size_average=None, reduce=None, reduction="mean"):
    """Mean absolute error ``|input - target|``, reduced (``size_average`` / ``reduce`` as in :func:`mse_loss`)."""
    reduction = _reduction(size_average, reduce, reduction)
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
            raise RuntimeValueError(f"{op}: weight of shape {tuple(weight.shape)} does not broadcast to input shape "
                                    f"{tuple(input.shape)}") from None


class BinaryCrossEntropy(Function):
    """``-(t log x + (1 - t) log(1 - x))``, each log clamped at -100; gradients as torch's:
    ``(x - t) / max(x (1 - x), 1e-12)`` for x (finite at a saturated 0 or 1) and ``log(1 - x) - log(x)``
    for t. The backward is written with minidl ops, so it differentiates again."""
    name = "binary_cross_entropy"

    def forward(self, xp, x, t):
        self.save_for_backward(x, t)
        with np.errstate(divide="ignore"):
            return -(t * xp.maximum(xp.log(x), -100) + (1 - t) * xp.maximum(xp.log(1 - x), -100))

    def backward(self, g):
        x, t = self.saved_tensors
        gx = g * (x - t) / clamp(x * (1 - x), min=1e-12) if self.needs_input_grad[0] else None
        gt = None
        if self.needs_input_grad[1]:
            with np.errstate(divide="ignore"):
                gt = g * (log(1 - x) - log(x))
        return gx, gt


@register()
def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None, reduction="mean"):
    """``-(t log x + (1 - t) log(1 - x))`` on probabilities ``input``; logs are clamped at -100 (torch).
    ``size_average`` / ``reduce``: torch's deprecated pair (``size_average=False`` is a sum), overriding
    ``reduction`` with torch's warning."""
    op = "binary_cross_entropy"
    reduction = _reduction(size_average, reduce, reduction)
    optional_tensor(weight, op, "weight")
    _check_binary(input, target, weight, op)
    reduction_arg(reduction, op)
    x = input._data
    if not ((x >= 0) & (x <= 1)).all():  # NaN fails too, as torch
        raise RuntimeValueError(f"{op}: input must hold probabilities in [0, 1] (no NaN); apply sigmoid first, or use "
                                "binary_cross_entropy_with_logits")
    loss = BinaryCrossEntropy.apply(input, target)
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


@register()
def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None, reduction="mean",
                                     pos_weight=None):
    """Sigmoid plus binary cross-entropy in one stable formula; ``pos_weight`` weighs positives (``size_average`` /
    ``reduce`` as in :func:`binary_cross_entropy`)."""
    op = "binary_cross_entropy_with_logits"
    reduction = _reduction(size_average, reduce, reduction)
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


@register()
def huber_loss(input, target, reduction="mean", delta=1.0):
    """0.5 (input - target)^2 where |input - target| < delta, else delta (|input - target| - 0.5 delta)."""
    diff = _difference(input, target, reduction, "huber_loss")
    if not delta > 0:
        raise RuntimeValueError(f"huber_loss: delta must be positive, got {delta}")
    d = _abs(diff)
    return _reduce(where(d < delta, 0.5 * diff * diff, delta * (d - 0.5 * delta)), reduction)


@register()
def smooth_l1_loss(input, target, size_average=None, reduce=None, reduction="mean", beta=1.0):
    """0.5 (input - target)^2 / beta where |input - target| < beta, else |input - target| - 0.5 beta
    (the L1 loss for beta = 0); ``size_average`` / ``reduce`` as in :func:`mse_loss`."""
    reduction = _reduction(size_average, reduce, reduction)
    diff = _difference(input, target, reduction, "smooth_l1_loss")
    if beta < 0:
        raise RuntimeValueError(f"smooth_l1_loss: beta must be non-negative, got {beta}")
    d = _abs(diff)
    if beta == 0:
        return _reduce(d, reduction)
    return _reduce(where(d < beta, 0.5 * diff * diff / beta, d - 0.5 * beta), reduction)


class XLogX(Function):
    """t log t, 0 at t = 0, as torch's xlogy(t, t) (kl_div's target term), including its gradient there:
    log t (0 where t = 0) + t / t, which is NaN at t = 0 and for t < 0, as torch's."""
    name = "kl_div"

    def forward(self, xp, t):
        self.save_for_backward(t)
        with np.errstate(divide="ignore", invalid="ignore"):
            return xp.where(t == 0, 0, t * xp.log(xp.where(t == 0, 1, t)))

    def backward(self, g):
        t, = self.saved_tensors
        zero = t == 0
        logt = log(where(zero, Tensor._make(backend.get_array_module(t._data).ones_like(t._data)), t))
        return g * (where(zero, 0.0 * t, logt) + t / t)


@register()
def kl_div(input, target, size_average=None, reduce=None, reduction="mean", log_target=False):
    """Kullback-Leibler divergence with ``input`` as log-probabilities: target (log target - input), 0 where
    the target is 0 (as torch); ``log_target=True`` takes the target as log-probabilities too.
    ``reduction='batchmean'`` divides the sum by the batch size (the KL divergence per sample; torch's 'mean'
    averages over every element). ``size_average`` / ``reduce``: torch's deprecated pair, which decides the
    reduction when given (with torch's warning; as torch, 'batchmean' then still divides by the batch size)."""
    op = "kl_div"
    float_tensor(input, op)
    float_tensor(target, op, "target")
    same_device(op, input, target)
    _check_broadcast(op, input.shape, target.shape)
    if reduction not in ("mean", "sum", "none", "batchmean"):
        raise RuntimeValueError(f"{op}: reduction must be 'mean', 'sum', 'none' or 'batchmean', got {reduction!r}")
    if log_target:
        loss = exp(target) * (target - input)
    else:
        loss = XLogX.apply(target) - target * input
    if size_average is not None or reduce is not None:
        loss = _reduce(loss, legacy_reduction(size_average, reduce))
        return loss / input.shape[0] if reduction == "batchmean" and input.ndim else loss
    if reduction == "batchmean":
        return _sum(loss) / (input.shape[0] if input.ndim else 1)
    return _reduce(loss, reduction)
