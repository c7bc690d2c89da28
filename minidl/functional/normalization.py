"""Normalisation: batch_norm (raw kernels; differentiable once), layer_norm and group_norm
(composed of differentiable ops)."""
import numbers

from .. import backend, kernels
from ..autograd import Function
from ..backend.errors import RuntimeValueError
from ._checks import float_tensor, int_arg, optional_tensor, same_device
from ._registry import register
from .unary import sqrt
from .reduction import mean as _mean


class BatchNorm(Function):
    """Training: normalise with the biased batch variance and update the running statistics
    (variance unbiased), as torch. Eval: normalise with the running statistics. Two passes forward
    (statistics, output) and two backward (sums, input gradient), in kernels."""
    name = "batch_norm"
    differentiable_twice = False

    def forward(self, xp, x, w, b, running_mean, running_var, training, momentum, eps):
        c = x.shape[1]
        self.training, self.has_w, self.has_b = training, w is not None, b is not None
        if training:
            mean, var = kernels.batch_norm_stats(x)
            m = x.size // c
            if running_mean is not None:
                running_mean[...] = (1 - momentum) * running_mean + momentum * mean
            if running_var is not None:
                running_var[...] = (1 - momentum) * running_var + momentum * var * (m / (m - 1))
        else:
            mean, var = running_mean, running_var
        invstd = (1.0 / xp.sqrt(var + eps)).astype(x.dtype)
        mean = mean.astype(x.dtype)
        w = xp.ones(c, dtype=x.dtype) if w is None else w
        b = xp.zeros(c, dtype=x.dtype) if b is None else b
        self.save_for_backward(x, mean, invstd, w)
        return kernels.batch_norm_apply(x, mean, invstd, w, b)

    def backward(self, gy):
        x, mean, invstd, w = self.saved_arrays
        gx, gw, gb = kernels.batch_norm_backward(x, gy._data, mean, invstd, w, self.training)
        return (gx if self.needs_input_grad[0] else None, gw if self.has_w and self.needs_input_grad[1] else None,
                gb if self.has_b and self.needs_input_grad[2] else None)


def _check_tensors(op, input, running_mean, running_var, weight, bias):
    float_tensor(input, op)
    for name, t in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight),
                    ("bias", bias)):
        optional_tensor(t, op, name)
    same_device(op, input, running_mean, running_var, weight, bias)


def _check_per_channel(op, c, running_mean, running_var, weight, bias):
    for name, t in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight),
                    ("bias", bias)):
        if t is not None and t.shape != (c,):
            raise RuntimeValueError(f"{op}: {name} must have shape ({c},) for an input with {c} channels, got "
                                    f"{tuple(t.shape)}")


@register(method=False)
def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
               eps=1e-5):
    """Batch normalisation over (N, C), (N, C, L) or (N, C, H, W), statistics per channel C.

    ``training=True`` uses the batch's statistics and updates ``running_mean``/``running_var`` in
    place: new = (1 - momentum) old + momentum batch, with the unbiased batch variance.
    ``training=False`` uses the running statistics.
    """
    op = "batch_norm"
    _check_tensors(op, input, running_mean, running_var, weight, bias)
    if input.numel() == 0:  # as torch: an empty output still in the graph, running statistics untouched
        out = input.clone()
        for name, t in (("weight", weight), ("bias", bias)):
            if t is not None and t.numel() == 0:
                raise RuntimeValueError(f"{op}: {name} has no elements (an input with 0 channels)")
        if weight is not None:
            out = out * weight[0]
        return out + bias[0] if bias is not None else out
    if input.ndim < 2:
        raise RuntimeValueError(f"{op}: expected input of at least 2 dims (N, C, ...), got shape {tuple(input.shape)}")
    c = input.shape[1]
    _check_per_channel(op, c, running_mean, running_var, weight, bias)
    if not training and (running_mean is None or running_var is None):
        raise RuntimeValueError(f"{op}: running_mean and running_var are needed when training=False")
    if training and input.numel() // c <= 1:
        raise RuntimeValueError(f"{op}: expected more than 1 value per channel when training, got input of shape "
                                f"{tuple(input.shape)}")
    if eps <= 0:
        raise RuntimeValueError(f"{op}: eps must be positive, got {eps}")
    rm = None if running_mean is None else running_mean._data
    rv = None if running_var is None else running_var._data
    return BatchNorm.apply(input, weight, bias, running_mean=rm, running_var=rv, training=bool(training),
                           momentum=float(momentum), eps=float(eps))


def _normalize(x, axes, eps):
    mu = _mean(x, axes, keepdim=True)
    xc = x - mu
    var = _mean(xc * xc, axes, keepdim=True)  # biased, as torch's layer and group norm
    return xc / sqrt(var + eps)


@register(method=False, top=True)
def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalise over the last ``len(normalized_shape)`` dims, then scale by ``weight`` and shift by ``bias``
    (both of shape ``normalized_shape``)."""
    op = "layer_norm"
    float_tensor(input, op)
    optional_tensor(weight, op, "weight")
    optional_tensor(bias, op, "bias")
    same_device(op, input, weight, bias)
    ns = (normalized_shape,) if isinstance(normalized_shape, numbers.Integral) else tuple(normalized_shape)
    if not ns or input.shape[input.ndim - len(ns):] != ns:
        raise RuntimeValueError(f"{op}: normalized_shape {ns} must equal the last dims of the input shape "
                                f"{tuple(input.shape)}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.shape != ns:
            raise RuntimeValueError(f"{op}: {name} must have shape {ns}, got {tuple(t.shape)}")
    y = _normalize(input, tuple(range(input.ndim - len(ns), input.ndim)), eps)
    if weight is not None:
        y = y * weight
    return y if bias is None else y + bias


@register(method=False, top=True)
def group_norm(input, num_groups, weight=None, bias=None, eps=1e-5):
    """Normalise over groups of channels: input (N, C, ...) with C divisible by ``num_groups``;
    ``weight`` and ``bias`` have shape (C,)."""
    op = "group_norm"
    float_tensor(input, op)
    optional_tensor(weight, op, "weight")
    optional_tensor(bias, op, "bias")
    same_device(op, input, weight, bias)
    g = int_arg(num_groups, op, "num_groups", 1)
    if input.ndim < 2:
        raise RuntimeValueError(f"{op}: expected input of at least 2 dims (N, C, ...), got shape {tuple(input.shape)}")
    n, c = input.shape[:2]
    if c % g:
        raise RuntimeValueError(f"{op}: number of channels ({c}) must be divisible by num_groups ({g})")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.shape != (c,):
            raise RuntimeValueError(f"{op}: {name} must have shape ({c},), got {tuple(t.shape)}")
    y = _normalize(input.reshape(n, g, input.numel() // max(n * g, 1)), (2,), eps).reshape(*input.shape)
    shape = (1, c) + (1,) * (input.ndim - 2)
    if weight is not None:
        y = y * weight.reshape(*shape)
    return y if bias is None else y + bias.reshape(*shape)


@register(method=False)
def instance_norm(input, running_mean=None, running_var=None, weight=None, bias=None, use_input_stats=True,
                  momentum=0.1, eps=1e-5):
    """Normalise each sample's channel over its spatial positions (style transfer, GANs): input (N, C, ...).

    With ``use_input_stats`` (the default) every (sample, channel) uses its own statistics, and the running
    statistics, when given, move towards their mean over the batch (unbiased variance, as batch_norm).
    Without, it is batch_norm in eval mode with the running statistics."""
    op = "instance_norm"
    _check_tensors(op, input, running_mean, running_var, weight, bias)
    if input.ndim < 3:
        raise RuntimeValueError(f"{op}: expected input of at least 3 dims (N, C, ...), got shape {tuple(input.shape)}")
    n, c = input.shape[:2]
    _check_per_channel(op, c, running_mean, running_var, weight, bias)
    if not use_input_stats:
        if running_mean is None or running_var is None:
            raise RuntimeValueError(f"{op}: running_mean and running_var are needed when use_input_stats=False")
        return batch_norm(input, running_mean, running_var, weight, bias, False, momentum, eps)
    if n == 0 and (weight is not None or bias is not None):  # torch fails there too: code must stay valid torch
        raise RuntimeValueError(f"{op}: an empty batch with weight or bias is refused (as torch does), got input of "
                                f"shape {tuple(input.shape)}")
    spatial = 1
    for d in input.shape[2:]:
        spatial *= d
    if spatial <= 1:
        raise RuntimeValueError(f"{op}: expected more than 1 spatial element per channel, got input of shape "
                                f"{tuple(input.shape)}")
    axes = tuple(range(2, input.ndim))
    if (running_mean is not None or running_var is not None) and n > 0:
        from ..autograd import no_grad
        with no_grad():
            x = input.detach()
            mu = _mean(x, axes)                                        # (N, C)
            var = _mean((x - mu.reshape(n, c, *(1,) * len(axes))) ** 2, axes) * (spatial / (spatial - 1))
            for stat, batch in ((running_mean, mu), (running_var, var)):
                if stat is not None:
                    stat.mul_(1 - momentum).add_(_mean(batch, 0) * momentum)
    y = _normalize(input, axes, eps)
    shape = (1, c) + (1,) * len(axes)
    if weight is not None:
        y = y * weight.reshape(*shape)
    return y if bias is None else y + bias.reshape(*shape)


def _all_reduced(arr):
    """A copy of ``arr`` summed over the ranks (all_reduce goes through the host for device arrays)."""
    from .. import distributed as dist
    arr = arr.copy()
    dist.all_reduce(arr)
    return arr


class SyncBatchNormFunction(Function):
    """Batch norm in training mode whose statistics are those of the global batch across the ranks of
    minidl.distributed: the mean from all-reduced sums and counts, then the variance from all-reduced squared
    deviations from that mean (two passes, as the one-process kernel); in backward the two sums of the
    one-formula gradient are all-reduced too. So a net trained on N ranks equals one process on the
    concatenated batch. Arrays go through the host for MPI."""
    name = "sync_batch_norm"
    differentiable_twice = False

    def forward(self, xp, x, w, b, running_mean, running_var, momentum, eps):
        c = x.shape[1]
        axes = (0,) + tuple(range(2, x.ndim))
        shape = (1, c) + (1,) * (x.ndim - 2)
        self.has_w, self.has_b = w is not None, b is not None
        stats = xp.concatenate([x.sum(axis=axes, dtype=xp.float64), xp.asarray([x.size // c], dtype=xp.float64)])
        stats = _all_reduced(stats)
        count = float(stats[-1])
        if count <= 1:
            raise RuntimeValueError("SyncBatchNorm: expected more than 1 value per channel over all ranks, got "
                                    f"{count:g}")
        mean = stats[:c] / count
        xc = x - mean.reshape(shape).astype(x.dtype)
        var = _all_reduced((xc.astype(xp.float64) ** 2).sum(axis=axes)) / count
        if running_mean is not None:
            running_mean[...] = (1 - momentum) * running_mean + momentum * mean.astype(running_mean.dtype)
        if running_var is not None:
            running_var[...] = (1 - momentum) * running_var + momentum * (var * (count / (count - 1))).astype(
                running_var.dtype)
        invstd = (1.0 / xp.sqrt(var + eps)).astype(x.dtype)
        w = xp.ones(c, dtype=x.dtype) if w is None else w
        b = xp.zeros(c, dtype=x.dtype) if b is None else b
        self.count, self.axes, self.shape = count, axes, shape
        xhat = xc * invstd.reshape(shape)
        self.save_for_backward(xhat, invstd, w)
        return xhat * w.reshape(shape) + b.reshape(shape)

    def backward(self, gy):
        xhat, invstd, w = self.saved_arrays
        gy = gy._data
        xp = backend.get_array_module(gy)
        local = xp.concatenate([gy.sum(axis=self.axes, dtype=xp.float64),
                                (gy * xhat).sum(axis=self.axes, dtype=xp.float64)])
        c = w.shape[0]
        sums = _all_reduced(local)
        s_gy, s_gyx = (sums[:c] / self.count).astype(gy.dtype), (sums[c:] / self.count).astype(gy.dtype)
        gx = (w * invstd).reshape(self.shape) * (gy - s_gy.reshape(self.shape) - xhat * s_gyx.reshape(self.shape))
        gw = local[c:].astype(gy.dtype) if self.has_w and self.needs_input_grad[1] else None  # this rank's share:
        gb = local[:c].astype(gy.dtype) if self.has_b and self.needs_input_grad[2] else None  # DDP averages them
        return (gx if self.needs_input_grad[0] else None), gw, gb


def sync_batch_norm(input, running_mean, running_var, weight, bias, momentum, eps):
    """Training-mode batch norm over the global batch of all ranks (see SyncBatchNorm); used by
    nn.SyncBatchNorm."""
    rm = None if running_mean is None else running_mean._data
    rv = None if running_var is None else running_var._data
    return SyncBatchNormFunction.apply(input, weight, bias, running_mean=rm, running_var=rv, momentum=float(momentum),
                               eps=float(eps))
