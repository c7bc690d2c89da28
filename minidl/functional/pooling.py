"""Pooling: max_pool2d, avg_pool2d, adaptive_avg_pool2d, adaptive_max_pool2d (raw-kernel backward:
differentiable once). Max pooling pads with -inf; output sizes follow torch (floor, or ceil_mode)."""
import functools
import math
import operator

import numpy as np

from .. import kernels
from ..autograd import Function
from ..autograd.tensor import Tensor
from ..backend import array_module_for, get_array_module
from ..backend.errors import RuntimeValueError
from ._checks import float_tensor, pair
from ._registry import register


class MaxPool2dFunction(Function):
    name = "max_pool2d"
    differentiable_twice = False

    def forward(self, xp, x, win, indices=None):
        self.x_shape, self.win = x.shape, win  # the GPU backward gathers by the windows
        y, arg = kernels.max_pool2d(x, win)
        self.save_for_backward(arg)
        if indices is not None:  # a list that receives the argmax array, for return_indices=True
            indices.append(arg)
        return y

    def backward(self, gy):
        arg, = self.saved_arrays
        return kernels.max_pool2d_backward(gy._data, arg, self.x_shape, self.win)


def _pool_input(input, op):
    float_tensor(input, op)
    if input.ndim not in (3, 4):
        raise RuntimeValueError(f"{op}: expected input to be 3-D (C, H, W) or 4-D (N, C, H, W), got {input.ndim}-D "
                                f"with shape {tuple(input.shape)}")
    # torch's rule: max/avg pooling needs every dim but a 4-D input's batch; adaptive pooling only H and W
    if 0 in input.shape[-2 if op.startswith("adaptive") else -3:]:
        raise RuntimeValueError(f"{op}: expected non-empty "
                                f"{'spatial' if op.startswith('adaptive') else 'channel and spatial'} dims, got shape "
                                f"{tuple(input.shape)}")
    return input.ndim == 3, (input.unsqueeze(0) if input.ndim == 3 else input)


def _out_size(size, k, s, p, d, ceil_mode):
    out = (size + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:  # the last window must start inside the input or left pad
        out -= 1
    return out


def _pool_window(op, x, kernel_size, stride, padding, dilation, ceil_mode):
    k = pair(kernel_size, op, "kernel_size", 1)
    no_stride = stride is None or (isinstance(stride, (list, tuple)) and len(stride) == 0)
    s = k if no_stride else pair(stride, op, "stride", 1)
    p = pair(padding, op, "padding", 0)
    d = pair(dilation, op, "dilation", 1)
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise RuntimeValueError(f"{op}: padding {p} should be at most half of the kernel size {k}")
    h, w = x.shape[2:]
    oh = _out_size(h, k[0], s[0], p[0], d[0], ceil_mode)
    ow = _out_size(w, k[1], s[1], p[1], d[1], ceil_mode)
    if oh <= 0 or ow <= 0:
        raise RuntimeValueError(f"{op}: the (dilated) kernel {k} is larger than the padded input ({h + 2 * p[0]}, "
                                f"{w + 2 * p[1]}); output size would be ({oh}, {ow})")
    return kernels.Window.of(k, s, p, d, (oh, ow))


def _finish(y, unbatched):
    return y.squeeze(0) if unbatched else y


@register(method=False, top=True)
def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """Max over windows (padding counts as -inf). ``stride`` defaults to ``kernel_size``.

    Shape: (N, C, H, W) or (C, H, W) -> (N, C, H_out, W_out) with
    H_out = floor_or_ceil((H + 2 padding - dilation (k - 1) - 1) / stride) + 1.
    ``return_indices`` also returns each maximum's flat index within its input plane (as torch).
    """
    unbatched, x = _pool_input(input, "max_pool2d")
    win = _pool_window("max_pool2d", x, kernel_size, stride, padding, dilation, ceil_mode)
    indices = [] if return_indices else None
    y = _finish(MaxPool2dFunction.apply(x, win=win, indices=indices), unbatched)
    return (y, _finish(Tensor._make(indices[0].astype(np.int64)), unbatched)) if return_indices else y


class AvgPool2dFunction(Function):
    name = "avg_pool2d"
    differentiable_twice = False

    def forward(self, xp, x, win, divisor):
        self.win, self.x_shape = win, x.shape
        self.save_for_backward(divisor)
        return kernels.avg_pool2d(x, divisor, win)

    def backward(self, gy):
        divisor, = self.saved_arrays
        return kernels.avg_pool2d_backward(gy._data, divisor, self.x_shape, self.win)


_DIVISOR_CACHE = {}


def _divisors(hw, win, count_include_pad, divisor_override, dtype, device):
    """avg_pool2d's per-window divisors (out_h, out_w), built where the data lives (no host-device copy)
    once per geometry and device, and reused."""
    key = (hw, win, count_include_pad, divisor_override, dtype, device)
    div = _DIVISOR_CACHE.get(key)
    if div is not None:
        return div
    xp = array_module_for(device)
    if divisor_override is not None:
        div = xp.full(win.out_hw, float(divisor_override), dtype=dtype)
    else:
        def counts(size, k, s, p, out):
            start = xp.arange(out) * s - p
            end = xp.minimum(start + k, size + p)
            whole = end - start
            real = xp.minimum(end, size) - xp.maximum(start, 0)
            return whole if count_include_pad else real
        div = xp.outer(counts(hw[0], win.kh, win.sh, win.ph, win.oh),
                       counts(hw[1], win.kw, win.sw, win.pw, win.ow)).astype(dtype)
    if len(_DIVISOR_CACHE) >= 256:  # bounded: geometries seen long ago are rebuilt if they come back
        _DIVISOR_CACHE.clear()
    _DIVISOR_CACHE[key] = div
    return div


@register(method=False)
def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """Mean over windows. With ``count_include_pad`` (default) zero padding counts in the divisor;
    windows that ``ceil_mode`` adds past the padding never count (as torch)."""
    unbatched, x = _pool_input(input, "avg_pool2d")
    win = _pool_window("avg_pool2d", x, kernel_size, stride, padding, 1, ceil_mode)
    if divisor_override is not None and (isinstance(divisor_override, bool) or not isinstance(divisor_override, int)
                                         or divisor_override == 0):
        raise RuntimeValueError("avg_pool2d: divisor_override must be a nonzero int (as torch), got "
                                f"{divisor_override!r}")
    div = _divisors(x.shape[2:], win, count_include_pad, divisor_override, x.dtype, x.device)
    return _finish(AvgPool2dFunction.apply(x, win=win, divisor=div), unbatched)


def _adaptive_windows(size, out):
    return [(math.floor(i * size / out), math.ceil((i + 1) * size / out)) for i in range(out)]


class AdaptiveAvgPool2dFunction(Function):
    name = "adaptive_avg_pool2d"
    differentiable_twice = False

    def forward(self, xp, x, out_hw):
        n, c, h, w = x.shape
        oh, ow = out_hw
        self.x_shape, self.out_hw = x.shape, out_hw
        if h % oh == 0 and w % ow == 0:  # equal windows: one reshape
            return x.reshape(n, c, oh, h // oh, ow, w // ow).mean(axis=(3, 5))
        y = xp.empty((n, c, oh, ow), dtype=x.dtype)
        for i, (hs, he) in enumerate(_adaptive_windows(h, oh)):
            for j, (ws, we) in enumerate(_adaptive_windows(w, ow)):
                y[:, :, i, j] = x[:, :, hs:he, ws:we].mean(axis=(2, 3))
        return y

    def backward(self, gy):
        gy = gy._data
        xp = get_array_module(gy)
        n, c, h, w = self.x_shape
        oh, ow = self.out_hw
        if h % oh == 0 and w % ow == 0:
            kh, kw = h // oh, w // ow
            g = xp.broadcast_to((gy / (kh * kw)).reshape(n, c, oh, 1, ow, 1), (n, c, oh, kh, ow, kw))
            return g.reshape(self.x_shape).astype(gy.dtype)
        gx = xp.zeros(self.x_shape, dtype=gy.dtype)
        for i, (hs, he) in enumerate(_adaptive_windows(h, oh)):
            for j, (ws, we) in enumerate(_adaptive_windows(w, ow)):
                gx[:, :, hs:he, ws:we] += (gy[:, :, i, j] / ((he - hs) * (we - ws)))[:, :, None, None]
        return gx


def _adaptive_size(output_size, x, op):
    if isinstance(output_size, (list, tuple)):
        if len(output_size) != 2:
            raise RuntimeValueError(f"{op}: output_size must be an int or a pair, got {output_size!r}")
        out = tuple(x.shape[2 + i] if s is None else s for i, s in enumerate(output_size))
    else:
        out = (output_size, output_size)
    out = pair(out, op, "output_size", 1)
    return out


@register(method=False)
def adaptive_avg_pool2d(input, output_size):
    """Average over windows chosen so that the output has ``output_size`` (1 = global average pooling).
    Window i covers [floor(i H / out), ceil((i + 1) H / out))."""
    unbatched, x = _pool_input(input, "adaptive_avg_pool2d")
    out = _adaptive_size(output_size, x, "adaptive_avg_pool2d")
    return _finish(AdaptiveAvgPool2dFunction.apply(x, out_hw=out), unbatched)


class AdaptiveMaxPool2dFunction(Function):
    name = "adaptive_max_pool2d"
    differentiable_twice = False

    def forward(self, xp, x, out_hw, indices=None):
        n, c, h, w = x.shape
        oh, ow = out_hw
        self.x_shape = x.shape
        y = xp.empty((n, c, oh, ow), dtype=x.dtype)
        arg = xp.empty((n, c, oh, ow), dtype=np.int64)
        for i, (hs, he) in enumerate(_adaptive_windows(h, oh)):
            for j, (ws, we) in enumerate(_adaptive_windows(w, ow)):
                win = x[:, :, hs:he, ws:we].reshape(n, c, (he - hs) * (we - ws))
                k = kernels.argmax_nan_last(win, 2)
                y[:, :, i, j] = xp.take_along_axis(win, k[:, :, None], axis=2)[:, :, 0]
                arg[:, :, i, j] = (hs + k // (we - ws)) * w + ws + k % (we - ws)
        self.save_for_backward(arg)
        if indices is not None:
            indices.append(arg)
        return y

    def backward(self, gy):
        arg, = self.saved_arrays
        return kernels.max_pool2d_backward(gy._data, arg, self.x_shape)


@register(method=False)
def adaptive_max_pool2d(input, output_size, return_indices=False):
    """Max over adaptive windows (see :func:`adaptive_avg_pool2d`)."""
    unbatched, x = _pool_input(input, "adaptive_max_pool2d")
    out = _adaptive_size(output_size, x, "adaptive_max_pool2d")
    indices = [] if return_indices else None
    y = _finish(AdaptiveMaxPool2dFunction.apply(x, out_hw=out, indices=indices), unbatched)
    return (y, _finish(Tensor._make(indices[0]), unbatched)) if return_indices else y


def _one_d(input, op):
    float_tensor(input, op)
    if input.ndim not in (2, 3):
        raise RuntimeValueError(f"{op}: expected a 3-D (N, C, L) or 2-D (C, L) input, got shape {tuple(input.shape)}")
    return input.unsqueeze(-2)


def _single(v, op, name):
    if isinstance(v, (tuple, list)):
        if len(v) != 1:
            raise RuntimeValueError(f"{op}: {name} must be an int or a 1-tuple, got {v!r}")
        v = v[0]
    return v


@register(method=False, top=True)
def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """Max over windows along the last dim: max_pool2d over a height of 1 (indices index into L)."""
    op = "max_pool1d"
    k = _single(kernel_size, op, "kernel_size")
    s = k if stride is None or (isinstance(stride, (tuple, list)) and not stride) else _single(stride, op, "stride")
    out = max_pool2d(_one_d(input, op), (1, k), (1, s), (0, _single(padding, op, "padding")),
                     (1, _single(dilation, op, "dilation")), ceil_mode, return_indices)
    if return_indices:
        return out[0].squeeze(-2), out[1].squeeze(-2)
    return out.squeeze(-2)


@register(method=False, top=True)
def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """Mean over windows along the last dim: avg_pool2d over a height of 1."""
    op = "avg_pool1d"
    k = _single(kernel_size, op, "kernel_size")
    s = k if stride is None or (isinstance(stride, (tuple, list)) and not stride) else _single(stride, op, "stride")
    return avg_pool2d(_one_d(input, op), (1, k), (1, s), (0, _single(padding, op, "padding")), ceil_mode,
                      count_include_pad).squeeze(-2)


_LINEAR = {"linear": 1, "bilinear": 2, "trilinear": 3}


_MODES = ("nearest", "nearest-exact", "linear", "bilinear", "trilinear", "bicubic", "area")


def _interp_sizes(op, spatial, size, scale_factor, recompute_scale_factor):
    """Output sizes, and the scale (input / output) to map coordinates with per dim: 1 / scale_factor when a
    scale factor is given (and recompute_scale_factor is not True), else input / output, as torch."""
    d = len(spatial)
    if (size is None) == (scale_factor is None):
        raise RuntimeValueError(f"{op}: give exactly one of size and scale_factor, got size={size!r}, "
                                f"scale_factor={scale_factor!r}")
    if size is not None:
        if recompute_scale_factor:
            raise RuntimeValueError(f"{op}: recompute_scale_factor is for scale_factor, not size")
        out = tuple(size) if isinstance(size, (tuple, list)) else (size,) * d
        if len(out) != d or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0
                                    for v in out):
            raise RuntimeValueError(f"{op}: size must be a positive int or {d} of them for a {d + 2}-D input, got "
                                    f"{size!r}")
        return tuple(int(v) for v in out), tuple(i / o for i, o in zip(spatial, out))
    sf = tuple(scale_factor) if isinstance(scale_factor, (tuple, list)) else (scale_factor,) * d
    if len(sf) != d or not all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
                               and v > 0 for v in sf):
        raise RuntimeValueError(f"{op}: scale_factor must be a positive number or {d} of them for a {d + 2}-D input, "
                                f"got {scale_factor!r}")
    out = tuple(int(math.floor(i * float(s))) for i, s in zip(spatial, sf))
    if min(out) < 1:
        raise RuntimeValueError(f"{op}: scale_factor {scale_factor!r} makes an empty output from spatial size "
                                f"{spatial}")
    if recompute_scale_factor:
        return out, tuple(i / o for i, o in zip(spatial, out))
    return out, tuple(1.0 / float(s) for s in sf)


def _nearest_index(n_in, n_out, scale, exact):
    """Source index of each output position: floor(dst * scale), or floor((dst + 0.5) * scale) for
    'nearest-exact', clamped to the input; computed in float32 as torch computes it."""
    dst = np.arange(n_out, dtype=np.float32) + np.float32(0.5 if exact else 0.0)
    return np.minimum(np.floor(dst * np.float32(scale)).astype(np.int64), n_in - 1)


def _linear_weights(n_in, n_out, scale, align_corners, dtype):
    """For each output position the two source indices and their weights (torch's area_pixel rule): the source
    coordinate is dst * (n_in - 1) / (n_out - 1) with align_corners, else (dst + 0.5) * scale - 0.5 clamped at 0."""
    dst = np.arange(n_out, dtype=dtype)
    if align_corners:
        src = dst * dtype.type((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
    else:
        src = np.maximum((dst + dtype.type(0.5)) * dtype.type(scale) - dtype.type(0.5), 0)
    i0 = np.minimum(src.astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w1 = (src - i0).astype(dtype)
    return i0, i1, (1 - w1).astype(dtype), w1


def _cubic_weights(n_in, n_out, scale, align_corners, dtype):
    """torch's bicubic taps along one dim: four source indices and four weights per output position, each (4, n_out).
    Output i reads the inputs floor(src) - 1 .. floor(src) + 2, clamped to the edge, with Keys' cubic convolution
    weights (A = -0.75) at t = src - floor(src); src as in _linear_weights but not clamped at 0 (torch's cubic
    rule). Computed in ``dtype``, as torch computes them in the input's precision."""
    one = dtype.type(1)
    dst = np.arange(n_out, dtype=dtype)
    if align_corners:
        src = dst * (dtype.type(n_in - 1) / dtype.type(n_out - 1) if n_out > 1 else dtype.type(0))
    else:
        src = (dst + dtype.type(0.5)) * dtype.type(scale) - dtype.type(0.5)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    t = np.clip(src - i0, 0, 1).astype(dtype)
    a = dtype.type(-0.75)

    def near(x):  # the kernel for |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + one

    def far(x):  # the kernel for 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    index = np.clip(i0 + np.arange(-1, 3)[:, None], 0, n_in - 1)
    return index, np.stack([far(t + one), near(t), near(one - t), far((one - t) + one)]).astype(dtype)


def _taps(mode, n_in, n_out, scale, align_corners, dtype):
    """(index, weight), each (taps, n_out): the inputs each output position reads along one dim, and their weights."""
    if mode == "bicubic":
        return _cubic_weights(n_in, n_out, scale, align_corners, dtype)
    i0, i1, w0, w1 = _linear_weights(n_in, n_out, scale, align_corners, dtype)
    return (i0, i1), (w0, w1)


def _interp_checks(op, input, mode, align_corners, antialias):
    """interpolate's argument checks (the sizes are _interp_sizes')."""
    float_tensor(input, op)
    if mode not in _MODES:
        raise RuntimeValueError(f"{op}: mode must be one of {', '.join(_MODES)}, got {mode!r}")
    if input.ndim not in (3, 4, 5):
        raise RuntimeValueError(f"{op}: expected a 3-D (N, C, L), 4-D (N, C, H, W) or 5-D (N, C, D, H, W) input, got "
                                f"shape {tuple(input.shape)}")
    if mode in _LINEAR and _LINEAR[mode] != input.ndim - 2 or mode == "bicubic" and input.ndim != 4:
        raise RuntimeValueError(f"{op}: mode {mode!r} needs a {_LINEAR.get(mode, 2) + 2}-D input, got shape "
                                f"{tuple(input.shape)}")
    if align_corners is not None and mode not in _LINEAR and mode != "bicubic":
        raise RuntimeValueError(f"{op}: align_corners can only be set with the interpolating modes linear, bilinear, "
                                f"bicubic and trilinear, got mode {mode!r}")
    if antialias:
        raise RuntimeValueError(f"{op}: antialias=True is not supported (mode {mode!r}); resize with "
                                f"antialias=False, or low-pass filter (avg_pool2d) before shrinking")


@register(method=False)
def interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None, antialias=False):
    """Resize the spatial dims of (N, C, L), (N, C, H, W) or (N, C, D, H, W) inputs, as
    torch.nn.functional.interpolate.

    Modes: 'nearest' (torch's floor rule, which shifts the image by half a pixel), 'nearest-exact' (the
    pixel-centre rule), 'linear' / 'bilinear' / 'trilinear' (for 3-, 4- and 5-D inputs) and 'bicubic' (4-D: Keys'
    cubic convolution, A = -0.75, edges repeated) with or without ``align_corners``, 'area' (adaptive average
    pooling). Every mode is separable: it resizes one spatial dim at a time, with indexing and arithmetic (the
    interpolating modes sum their 2 or 4 weighted taps per dim), so it is differentiable twice; the gradient of an
    upsampling sums each output's gradient back into the inputs it read. ``antialias`` is not supported."""
    op = "interpolate"
    _interp_checks(op, input, mode, align_corners, antialias)
    out, scales = _interp_sizes(op, input.shape[2:], size, scale_factor, recompute_scale_factor)
    if mode == "area":  # adaptive average pooling, separable: the leading spatial dim first, then the last two
        if input.ndim == 3:
            return adaptive_avg_pool2d(input.unsqueeze(2), (1, out[0])).squeeze(2)
        if input.ndim == 5:
            n, c, d, h, w = input.shape
            y = adaptive_avg_pool2d(input.reshape(n, c, d, h * w), (out[0], h * w))
            return adaptive_avg_pool2d(y.reshape(n, c * out[0], h, w), out[1:]).reshape(n, c, *out)
        return adaptive_avg_pool2d(input, out)
    y, xp = input, get_array_module(input._data)
    for axis, (n_in, n_out, scale) in enumerate(zip(input.shape[2:], out, scales), start=2):
        lead = (slice(None),) * axis
        if mode in _LINEAR or mode == "bicubic":
            if n_in == n_out and (align_corners or scale == 1.0) and mode != "bicubic":
                continue  # the identity (weights 1 and 0; bicubic's zero weights still carry a neighbour's NaN)
            index, weight = _taps(mode, n_in, n_out, scale, bool(align_corners), np.dtype(input.dtype))
            shape = (-1,) + (1,) * (input.ndim - 1 - axis)
            terms = [y[lead + (xp.asarray(i),)] * Tensor._make(xp.asarray(w.reshape(shape)))
                     for i, w in zip(index, weight)]
            y = functools.reduce(operator.add, terms)
        elif mode == "nearest-exact":
            y = y[lead + (xp.asarray(_nearest_index(n_in, n_out, scale, True)),)]
        elif n_out == 2 * n_in:  # torch's shortcuts for 'nearest': these sizes ignore the scale
            y = y[lead + (xp.asarray(np.arange(n_out) // 2),)]
        elif n_out != n_in:
            y = y[lead + (xp.asarray(_nearest_index(n_in, n_out, scale, False)),)]
    return y if y is not input else input.clone()
