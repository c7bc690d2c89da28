"""Normalisation: batch_norm (raw kernels; differentiable once), layer_norm and group_norm (one Function each:
raw arrays, and minidl ops when a backward builds a graph, so differentiable twice), instance_norm (composed of
differentiable ops)."""
import math
import numbers


from .. import backend, kernels
from ..autograd import Function
from ..autograd.grad_mode import is_grad_enabled
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


# ---- layer_norm and group_norm: rows of values, each normalised on its own ---------------------------------------
# Both see the input as rows (layer_norm: one per position, over the normalized dims; group_norm: one per sample and
# group of channels). Per row, var biased, as torch's:
#     invstd = 1 / sqrt(var + eps),   xhat = (x - mean) * invstd
# and backward, with g the upstream gradient times the weight:
#     gx = invstd * (g - mean(g) - xhat * mean(g * xhat))
# Forward and a first backward work on arrays; a backward that builds a graph (create_graph) computes the same in
# minidl ops from x itself, so the gradients are differentiable again. Sums along rows and columns are products
# with a vector of ones: NumPy's sum along short rows costs 6x more. float16 and bfloat16 compute in float32, as
# torch's.

def _row_sum(a):
    """Each row's sum, shape (rows, 1)."""
    return kernels.matmul(a, backend.get_array_module(a).ones((a.shape[1], 1), dtype=a.dtype))


def _row_mean(a):
    return _row_sum(a) / a.shape[1]  # NaN for rows of no values, as torch's


def _normalized_rows(xp, x, rows, eps):
    """(xhat, mean, invstd): x seen as ``rows`` (see _as_rows), each row centred and scaled; mean and invstd of
    shape (rows, 1)."""
    xhat = _as_rows(x, rows)
    mean = _row_mean(xhat)
    xhat = xhat - mean
    invstd = 1.0 / xp.sqrt(_row_mean(xhat * xhat) + eps)
    xhat *= invstd
    return xhat, mean, invstd


def _xhat(x, rows, mean, invstd):
    """xhat again from the saved statistics (backward)."""
    xhat = _as_rows(x, rows) - mean
    xhat *= invstd
    return xhat


def _row_grad(g, xhat, invstd):
    """The input gradient of rows normalised by ``_normalized_rows`` (g: the upstream gradient times the weight)."""
    gx = g - _row_mean(g)
    gx -= xhat * _row_mean(g * xhat)
    gx *= invstd
    return gx


def _as_rows(a, rows):
    """``a`` as a 2-D array of ``rows``, in float32 if it is float16 or bfloat16."""
    return a.reshape(rows).astype(backend.compute_dtype(a.dtype), copy=False)


def _graph_normalized(x, axes, eps):
    """(xhat, invstd) in minidl ops, functions of ``x``: for a backward that builds a graph."""
    xc = x - _mean(x, axes, keepdim=True)
    invstd = (_mean(xc * xc, axes, keepdim=True) + eps) ** -0.5
    return xc * invstd, invstd


def _graph_grad(g, xhat, invstd, axes):
    """``_row_grad`` in minidl ops (differentiable again)."""
    return invstd * (g - _mean(g, axes, keepdim=True) - xhat * _mean(g * xhat, axes, keepdim=True))


def _flat(a, dtype):
    """A weight or bias as one row in the compute dtype, or None."""
    return None if a is None else a.reshape(-1).astype(dtype, copy=False)


def _sum_over(t, dims):
    return t.sum(dims) if dims else t  # (sum over no dims would be over all)


class LayerNormFunction(Function):
    """``y = (x - mean) * invstd * w + b`` over the last ``k`` dims (``w``, ``b`` optional, of those dims' shape).
    Backward, with the rows' formulas above: gx = invstd (g - mean(g) - xhat mean(g xhat)) with g = gy w;
    gw = the sum of gy xhat over the leading dims, gb = the sum of gy. Saves x, w and the rows' mean and invstd,
    as torch's."""
    name = "layer_norm"
    grad_fn_name = "NativeLayerNormBackward0"  # torch's node (aten.native_layer_norm)

    def forward(self, xp, x, w, b, k, eps):
        self.k, self.eps, self.has_w, self.has_b = k, eps, w is not None, b is not None
        self.rows = (math.prod(x.shape[:x.ndim - k]), math.prod(x.shape[x.ndim - k:]))
        xr = _as_rows(x, self.rows)
        y, mean, invstd = kernels.layer_norm_rows(xr, _flat(w, xr.dtype), _flat(b, xr.dtype), eps)
        self.save_for_backward(x, w, mean, invstd)
        return y.astype(x.dtype, copy=False).reshape(x.shape)

    def backward(self, gy):
        if is_grad_enabled():
            return self._graph_backward(gy)
        x, w, mean, invstd = self.saved_arrays
        xr = _as_rows(x, self.rows)
        gx, gw, gb = kernels.layer_norm_rows_backward(_as_rows(gy._data, self.rows), xr, _flat(w, xr.dtype), mean,
                                                      invstd)
        ns, need = x.shape[x.ndim - self.k:], self.needs_input_grad
        gw = gw.astype(x.dtype).reshape(ns) if self.has_w and need[1] else None
        gb = gb.astype(x.dtype).reshape(ns) if self.has_b and need[2] else None
        return gx.astype(x.dtype, copy=False).reshape(x.shape) if need[0] else None, gw, gb

    def _graph_backward(self, gy):
        x, w = self.saved_tensors[:2]
        axes, lead = tuple(range(x.ndim - self.k, x.ndim)), tuple(range(x.ndim - self.k))
        xhat, invstd = _graph_normalized(x, axes, self.eps)
        need = self.needs_input_grad
        gw = _sum_over(gy * xhat, lead) if self.has_w and need[1] else None
        gb = _sum_over(gy, lead) if self.has_b and need[2] else None
        gx = _graph_grad(gy * w if self.has_w else gy, xhat, invstd, axes) if need[0] else None
        return gx, gw, gb


@register(method=False, top=True)
def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalise over the last ``len(normalized_shape)`` dims, then scale by ``weight`` and shift by ``bias``
    (both of shape ``normalized_shape``): ``(x - mean) / sqrt(var + eps) * weight + bias``, var biased."""
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
    return LayerNormFunction.apply(input, weight, bias, k=len(ns), eps=float(eps))


class GroupNormFunction(Function):
    """Input (N, C, ...) in ``groups`` groups of C / groups channels: each sample's group is one row normalised as
    above, then ``y = xhat * w[c] + b[c]`` per channel. Backward as layer_norm's with g = gy w[c]; gw and gb sum
    over the batch and the positions. Saves x, w and the rows' mean and invstd."""
    name = "group_norm"
    grad_fn_name = "NativeGroupNormBackward0"  # torch's node (aten.native_group_norm)

    def forward(self, xp, x, w, b, groups, eps):
        n, c = x.shape[:2]
        self.eps, self.has_w, self.has_b = eps, w is not None, b is not None
        self.rows = (n * groups, c // groups * math.prod(x.shape[2:]))
        self.by_channel = (n, c, math.prod(x.shape[2:]))  # (N, C, positions): where w and b apply
        y, mean, invstd = _normalized_rows(xp, x, self.rows, eps)
        y = y.reshape(self.by_channel)
        if w is not None:
            y *= w.reshape(c, 1)
        if b is not None:
            y += b.reshape(c, 1)
        self.save_for_backward(x, w, mean, invstd)
        return y.astype(x.dtype, copy=False).reshape(x.shape)

    def backward(self, gy):
        if is_grad_enabled():
            return self._graph_backward(gy)
        x, w, mean, invstd = self.saved_arrays
        n, c, s = self.by_channel
        xhat = _xhat(x, self.rows, mean, invstd)
        g = _as_rows(gy._data, self.rows)
        need = self.needs_input_grad

        def channel_sums(a):  # (N, C, positions) summed over N and the positions
            return _row_sum(a.reshape(n * c, s)).reshape(n, c).sum(axis=0).astype(x.dtype)

        gw = channel_sums(g * xhat) if self.has_w and need[1] else None
        gb = channel_sums(g) if self.has_b and need[2] else None
        gx = None
        if need[0]:
            g_w = (g.reshape(self.by_channel) * w.reshape(c, 1)).reshape(self.rows) if self.has_w else g
            gx = _row_grad(g_w, xhat, invstd).astype(x.dtype).reshape(x.shape)
        return gx, gw, gb

    def _graph_backward(self, gy):
        x, w = self.saved_tensors[:2]
        xhat, invstd = _graph_normalized(x.reshape(*self.rows), (1,), self.eps)
        need = self.needs_input_grad
        gy3, xhat3 = gy.reshape(*self.by_channel), xhat.reshape(*self.by_channel)
        gw = (gy3 * xhat3).sum((0, 2)) if self.has_w and need[1] else None
        gb = gy3.sum((0, 2)) if self.has_b and need[2] else None
        gx = None
        if need[0]:
            g = gy3 * w.reshape(self.by_channel[1], 1) if self.has_w else gy3
            gx = _graph_grad(g.reshape(*self.rows), xhat, invstd, (1,)).reshape(*x.shape)
        return gx, gw, gb


@register(method=False, top=True)
def group_norm(input, num_groups, weight=None, bias=None, eps=1e-5):
    """Normalise over groups of channels: input (N, C, ...) with C divisible by ``num_groups``; each sample's group
    of C / num_groups channels (all their positions) is normalised as layer_norm's rows, then ``* weight[c] +
    bias[c]`` (both of shape (C,))."""
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
    return GroupNormFunction.apply(input, weight, bias, groups=g, eps=float(eps))


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
    return SyncBatchNormFunction.apply(input, weight, bias, running_mean=rm, running_var=rv,
                                       momentum=float(momentum), eps=float(eps))
