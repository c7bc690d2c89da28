"""Convolutions by im2col + GEMM: conv2d and conv_transpose2d (stride, padding, dilation, groups).

``col`` has shape (C*kh*kw, N*out_h*out_w) (see kernels/_numpy.py), so each group is one GEMM.
Backward passes are raw kernels: these ops are differentiable once.
"""
import functools

import numpy as np

from .. import kernels
from ..autograd import Function, is_grad_enabled
from ..backend import get_array_module
from ..backend.errors import RuntimeTypeError, RuntimeValueError
from ..kernels import blas
from ..kernels import conv as conv_kernels
from ..kernels.conv import maybe_nonfinite, group_matmul, group_outer
from ._checks import empty_result, float_tensor, int_arg, optional_tensor, pair, same_device
from ._registry import register


class Conv2dFunction(Function):
    """y[n, o] = bias[o] + sum over c, i, j of w[o, c, i, j] x[n, c, i + ..., j + ...] (cross-correlation).

    Its algorithms, the reference im2col + GEMM first, are the (forward, backward) pairs of
    ``kernels/conv.py``'s ALGORITHMS; for each shape ``choose`` picks one (measured once, or the reference when
    tuning is off), and forward and backward run that pair."""
    name = "conv2d"
    differentiable_twice = False

    def forward(self, xp, x, w, b, win, groups, grads=(True, True, True), live=None):
        """``live`` (from _live_window): the kernel taps that read the map and the input rows and columns they
        read, when some taps read only padding; the algorithm runs the smaller convolution of those."""
        self.live, self.full_shapes = live, (x.shape, w.shape)
        if live is not None:
            (i0, i1, j0, j1), (r0, c0) = live
            w_full, x, w = w, x[:, :, r0:, c0:], w[:, :, i0:i1 + 1, j0:j1 + 1]
        self.win, self.groups = win, groups
        self.x_shape, self.has_b = x.shape, b is not None
        self.algo = conv_kernels.choose(xp, x, w, win, groups, grads)  # grads: the gradients the trials time
        forward, _ = conv_kernels.ALGORITHMS[self.algo]
        y, saved = forward(xp, x, w, b, win, groups)
        if live is not None and maybe_nonfinite(xp, w_full):  # the dropped taps' 0 x w: NaN where w is inf or NaN
            dead = w_full.reshape(*w_full.shape[:2], -1)[:, :, xp.asarray(_dead_taps(w_full.shape[2:], live))]
            y += (dead * 0).sum(axis=(1, 2)).reshape(1, -1, 1, 1)
        self.save_for_backward(*saved)
        return y

    def backward(self, gy):
        g = gy._data
        xp = get_array_module(g)
        _, backward = conv_kernels.ALGORITHMS[self.algo]
        g = xp.ascontiguousarray(g)
        gx, gw = backward(xp, self.saved_arrays, g, self.x_shape, self.win, self.groups,
                          self.needs_input_grad[0], self.needs_input_grad[1])
        gb = _bias_grad(xp, g) if self.has_b and self.needs_input_grad[2] else None
        if self.live is not None:
            gx, gw = self._full_gradients(xp, g, gx, gw)
        return gx, gw, gb

    def _full_gradients(self, xp, g, gx, gw):
        """The gradients of the whole input and weight: zeros where the dropped rows and taps were, as torch's; a
        dropped tap's is the sum of 0 x gy over its output channel (torch multiplies those taps by padding), so an
        inf or NaN upstream gradient makes it NaN there as in torch."""
        (i0, i1, j0, j1), (r0, c0) = self.live
        x_shape, w_shape = self.full_shapes
        if gx is not None and (r0 or c0):
            gx = kernels.zeros_with(x_shape, (slice(None), slice(None), slice(r0, None), slice(c0, None)), gx)
        if gw is not None:
            gw = kernels.zeros_with(w_shape, (slice(None), slice(None), slice(i0, i1 + 1), slice(j0, j1 + 1)), gw)
            if maybe_nonfinite(xp, g):
                dead = xp.asarray(_dead_taps(w_shape[2:], self.live))
                gw.reshape(*w_shape[:2], -1)[:, :, dead] += (g * 0).sum(axis=(0, 2, 3))[:, None, None]
        return gx, gw


def _bias_grad(xp, g):
    """gy (N, O, H, W) summed over all but its channels: a matrix-vector product with ones (BLAS, threaded; each
    row's sum made by one thread, so the same bits on any thread count) and a sum over the batch. Measured: NumPy's
    sum over (0, 2, 3) took 0.23 ms for (64, 64, 16, 16), this 0.05 (benchmarks/NOTES.md, change 55)."""
    n, o, h, w = g.shape
    rows = g.reshape(n * o, h * w)
    if h * w == 1:
        return rows.reshape(n, o).sum(axis=0)
    ones = xp.ones(h * w, dtype=g.dtype)
    return (blas.matmul(rows, ones) if xp is np else rows @ ones).reshape(n, o).sum(axis=0)


def _conv_common(op, input, weight, bias, stride, dilation, groups):
    float_tensor(input, op)
    float_tensor(weight, op, "weight")
    optional_tensor(bias, op, "bias")
    same_device(op, input, weight, bias)
    if input.ndim not in (3, 4):
        raise RuntimeValueError(f"{op}: expected input to be 3-D (C, H, W) or 4-D (N, C, H, W), got {input.ndim}-D "
                                f"with shape {tuple(input.shape)}")
    if weight.ndim != 4:
        raise RuntimeValueError(f"{op}: expected weight to be 4-D, got shape {tuple(weight.shape)}")
    if 0 in weight.shape or 0 in input.shape[-3:]:
        raise RuntimeValueError(f"{op}: weight {tuple(weight.shape)} and input {tuple(input.shape)} must have no empty "
                                "dimension (but the batch)")
    if input.dtype != weight.dtype:
        raise RuntimeTypeError(f"{op}: input dtype {input.dtype} and weight dtype {weight.dtype} differ")
    groups = int_arg(groups, op, "groups", 1)
    return pair(stride, op, "stride", 1), pair(dilation, op, "dilation", 1), groups


@register(method=False, top=True)
def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution (cross-correlation, as torch) by im2col + GEMM.

    Args: padding is an int, a pair, 'valid' (0) or 'same' (output size = input size; stride 1).
    Shape: input (N, C_in, H, W) or (C_in, H, W); weight (C_out, C_in / groups, kH, kW); bias (C_out,);
    output (N, C_out, H_out, W_out) with H_out = (H + 2 padding - dilation (kH - 1) - 1) // stride + 1.
    """
    op = "conv2d"
    stride, dilation, groups = _conv_common(op, input, weight, bias, stride, dilation, groups)
    unbatched = input.ndim == 3
    if unbatched:
        input = input.unsqueeze(0)
    n, c, h, w = input.shape
    o, cg, kh, kw = weight.shape
    if c != cg * groups:
        raise RuntimeValueError(f"{op}: input has {c} channels, weight expects {cg * groups} (weight shape "
                                f"{tuple(weight.shape)}, groups={groups})")
    if o % groups:
        raise RuntimeValueError(f"{op}: out channels ({o}) must be divisible by groups ({groups})")
    if bias is not None and bias.shape != (o,):
        raise RuntimeValueError(f"{op}: bias must have shape ({o},), got {tuple(bias.shape)}")
    out = None
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0, 0)
        elif padding == "same":
            if stride != (1, 1):
                raise RuntimeValueError(f"{op}: padding='same' needs stride 1, got stride={stride}")
            padding = (dilation[0] * (kh - 1) // 2, dilation[1] * (kw - 1) // 2)
            out = (h, w)
        else:
            raise RuntimeValueError(f"{op}: padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
    else:
        padding = pair(padding, op, "padding", 0)
    ekh, ekw = dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1
    if h + 2 * padding[0] < ekh or w + 2 * padding[1] < ekw:
        raise RuntimeValueError(f"{op}: kernel size ({ekh}, {ekw}) (dilated) is larger than the padded input "
                                f"({h + 2 * padding[0]}, {w + 2 * padding[1]})")
    if out is None:
        out = ((h + 2 * padding[0] - ekh) // stride[0] + 1, (w + 2 * padding[1] - ekw) // stride[1] + 1)
    if n == 0:  # an empty batch: an empty output, zero gradients (as torch)
        y = empty_result((0, o, *out), input, input, weight, bias)
        return y.squeeze(0) if unbatched else y
    live, kernel, padding = _live_window(input.shape[2:], weight.shape[2:], stride, padding, dilation, out)
    win = kernels.Window.of(kernel, stride, padding, dilation, out)
    grads = (input.requires_grad, weight.requires_grad, bias is not None and bias.requires_grad) \
        if is_grad_enabled() else (False, False, False)
    y = Conv2dFunction.apply(input, weight, bias, win=win, groups=groups, grads=grads, live=live)
    return y.squeeze(0) if unbatched else y


def _live_taps(size, out, k, s, p, d):
    """The kernel taps [first, last] along one dim that read the input somewhere: tap i reads positions
    o*s - p + i*d for o in [0, out), and on a map smaller than the kernel's reach some taps read only padding."""
    first = max(0, -(((out - 1) * s - p) // d))  # the smallest i with i*d >= p - (out - 1)*s (a ceiling)
    last = min(k - 1, (size - 1 + p) // d)       # the largest i with i*d <= size - 1 + p
    return (first, last) if first <= last else (0, k - 1)  # no tap reads the map: nothing to drop (output = bias)


def _live_window(size, kernel, stride, padding, dilation, out):
    """The same convolution without the kernel taps that read only zero padding: (live, kernel, padding) with live
    None when every tap reads the map, else ((i0, i1, j0, j1), (r0, c0)): the live taps, and the first input row and
    column they read (the ones before are never read); kernel and padding are the smaller convolution's. On small
    maps a 3x3 convolution with padding 1 becomes a smaller one: resnet18's layer4 on 28x28 digits runs its 3x3
    convolutions on 1x1 maps, where only the centre tap is live and the convolution is one matrix product (a 1x1
    convolution) instead of nine taps of which eight multiply zeros. Conv2dFunction runs the smaller convolution and
    keeps torch's numbers for inf and NaN: the dropped taps' 0 x weight and 0 x gy terms are added where they are not
    zeros (maybe_nonfinite)."""
    (kh, kw) = kernel
    (i0, i1), (j0, j1) = (_live_taps(n, o, k, s, p, d) for n, o, k, s, p, d in
                          zip(size, out, kernel, stride, padding, dilation))
    if (i0, i1, j0, j1) == (0, kh - 1, 0, kw - 1):
        return None, kernel, padding
    ph, pw = padding[0] - i0 * dilation[0], padding[1] - j0 * dilation[1]
    # where the live taps start inside the map, the rows (columns) before are never read: the input is cropped
    return ((i0, i1, j0, j1), (max(-ph, 0), max(-pw, 0))), (i1 - i0 + 1, j1 - j0 + 1), (max(ph, 0), max(pw, 0))


@functools.lru_cache(maxsize=64)
def _dead_taps(kernel, live):
    """The taps that read only padding, as flat indices into kh * kw (read-only; indices, not a mask: a mask on a
    GPU array reads its count back from the device)."""
    (i0, i1, j0, j1), _ = live
    dead = np.ones(kernel, dtype=bool)
    dead[i0:i1 + 1, j0:j1 + 1] = False
    taps = np.flatnonzero(dead)
    taps.flags.writeable = False
    return taps


class ConvTranspose2dFunction(Function):
    """conv2d's adjoint: each input pixel spreads its filters over the output (one GEMM per group makes the
    columns), then col2im sums the overlapping windows. ``win`` slides over the output; its windows are the
    input's pixels (oh, ow = H, W)."""
    name = "conv_transpose2d"
    differentiable_twice = False

    def forward(self, xp, x, w, b, win, groups, out_hw):
        n, cin = x.shape[:2]
        cout = w.shape[1] * groups
        self.win, self.groups, self.has_b = win, groups, b is not None
        x_mat = x.transpose(1, 0, 2, 3).reshape(cin, -1)
        col = group_matmul(xp, w.reshape(cin, -1), x_mat, groups, transpose_a=True)   # (Cout*kh*kw, N*H*W)
        y = kernels.col2im(col, (n, cout, *out_hw), win)
        if b is not None:
            y = y + b.reshape(1, cout, 1, 1)
        self.save_for_backward(x_mat, w)
        self.x_shape = x.shape
        return y

    def backward(self, gy):
        x_mat, w = self.saved_arrays
        gy = gy._data
        xp = get_array_module(gy)
        cin = w.shape[0]
        gcol = kernels.im2col(gy, self.win)                          # (Cout*kh*kw, N*H*W)
        gx = gw = gb = None
        if self.needs_input_grad[0]:
            n, _, h, wd = self.x_shape
            gx = group_matmul(xp, w.reshape(cin, -1), gcol, self.groups)
            gx = xp.ascontiguousarray(gx.reshape(cin, n, h, wd).transpose(1, 0, 2, 3))
        if self.needs_input_grad[1]:
            gw = group_outer(xp, x_mat, gcol, self.groups).reshape(w.shape)
        if self.has_b and self.needs_input_grad[2]:
            gb = gy.sum(axis=(0, 2, 3))
        return gx, gw, gb


@register(method=False, top=True)
def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Transposed 2-D convolution (the gradient of conv2d with respect to its input).

    Shape: input (N, C_in, H, W) or (C_in, H, W); weight (C_in, C_out / groups, kH, kW); output
    H_out = (H - 1) stride - 2 padding + dilation (kH - 1) + output_padding + 1.
    """
    op = "conv_transpose2d"
    stride, dilation, groups = _conv_common(op, input, weight, bias, stride, dilation, groups)
    padding = pair(padding, op, "padding", 0)
    output_padding = pair(output_padding, op, "output_padding", 0)
    unbatched = input.ndim == 3
    if unbatched:
        input = input.unsqueeze(0)
    n, c, h, w = input.shape
    cin, cog, kh, kw = weight.shape
    if c != cin:
        raise RuntimeValueError(f"{op}: input has {c} channels, weight expects {cin} (weight shape "
                                f"{tuple(weight.shape)})")
    if cin % groups:
        raise RuntimeValueError(f"{op}: in channels ({cin}) must be divisible by groups ({groups})")
    if bias is not None and bias.shape != (cog * groups,):
        raise RuntimeValueError(f"{op}: bias must have shape ({cog * groups},), got {tuple(bias.shape)}")
    for i in range(2):
        if output_padding[i] >= max(stride[i], dilation[i]):
            raise RuntimeValueError(f"{op}: output_padding {output_padding} must be smaller than stride {stride} or "
                                    f"dilation {dilation}")
    out = tuple((s - 1) * st - 2 * p + d * (k - 1) + op_ + 1 for s, st, p, d, k, op_ in
                zip((h, w), stride, padding, dilation, (kh, kw), output_padding))
    if min(out) <= 0:
        raise RuntimeValueError(f"{op}: the output size {out} would not be positive (input {(h, w)}, kernel "
                                f"{(kh, kw)}, padding {padding})")
    if n == 0:  # an empty batch: an empty output, zero gradients (as torch)
        y = empty_result((0, cog * groups, *out), input, input, weight, bias)
        return y.squeeze(0) if unbatched else y
    win = kernels.Window.of((kh, kw), stride, padding, dilation, (h, w))
    y = ConvTranspose2dFunction.apply(input, weight, bias, win=win, groups=groups, out_hw=out)
    return y.squeeze(0) if unbatched else y


def _single(v, op, name, minimum):
    if isinstance(v, (tuple, list)):
        if len(v) != 1:
            raise RuntimeValueError(f"{op}: {name} must be an int or a 1-tuple, got {v!r}")
        v = v[0]
    return int_arg(v, op, name, minimum)


@register(method=False, top=True)
def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """1-D convolution: conv2d over a height of 1. Shape: input (N, C_in, L) or (C_in, L); weight
    (C_out, C_in / groups, K); padding an int, 'valid' or 'same'."""
    op = "conv1d"
    float_tensor(input, op)
    float_tensor(weight, op, "weight")
    if input.ndim not in (2, 3) or weight.ndim != 3:
        raise RuntimeValueError(f"{op}: expected input (N, C, L) or (C, L) and weight (C_out, C_in / groups, K), got "
                                f"shapes {tuple(input.shape)} and {tuple(weight.shape)}")
    pad = padding if isinstance(padding, str) else (0, _single(padding, op, "padding", 0))
    y = conv2d(input.unsqueeze(-2), weight.unsqueeze(-2), bias, (1, _single(stride, op, "stride", 1)), pad,
               (1, _single(dilation, op, "dilation", 1)), groups)
    return y.squeeze(-2)


class FoldFunction(Function):
    """col2im: columns (N, C*kh*kw, L) summed back into an image (N, C, H, W), overlaps adding up."""
    name = "fold"

    def forward(self, xp, col, shape, win):
        self.win = win
        n, ck, blocks = col.shape
        col = xp.ascontiguousarray(col.transpose(1, 0, 2)).reshape(ck, n * blocks)
        return kernels.col2im(col, shape, win)

    def backward(self, g):
        return UnfoldFunction.apply(g, win=self.win)


class UnfoldFunction(Function):
    """im2col, the first half of a convolution: every kh x kw window of the (padded) image becomes a column.
    ``win`` is a kernels.Window (kh, kw, sh, sw, ph, pw, dh, dw, oh, ow). Its gradient is fold (col2im)
    and fold's is unfold: each op is the other's adjoint, so both are differentiable twice."""
    name = "unfold"

    def forward(self, xp, x, win):
        self.win, self.x_shape = win, x.shape
        col = kernels.im2col(x, win)                                 # (C*kh*kw, N*L)
        return xp.ascontiguousarray(col.reshape(col.shape[0], x.shape[0], -1).transpose(1, 0, 2))  # (N, C*kh*kw, L)

    def backward(self, g):
        return FoldFunction.apply(g, shape=self.x_shape, win=self.win)


def _blocks(op, size, kernel_size, dilation, padding, stride):
    """Checked geometry and the number of windows per spatial dim."""
    k = pair(kernel_size, op, "kernel_size", 1)
    d, p, s = pair(dilation, op, "dilation", 1), pair(padding, op, "padding", 0), pair(stride, op, "stride", 1)
    blocks = tuple((size[i] + 2 * p[i] - d[i] * (k[i] - 1) - 1) // s[i] + 1 for i in range(2))
    if min(blocks) < 1:
        raise RuntimeValueError(f"{op}: kernel_size {k} (dilation {d}) does not fit the padded size "
                                f"({size[0] + 2 * p[0]}, {size[1] + 2 * p[1]})")
    return kernels.Window.of(k, s, p, d, blocks), blocks


def _batched(op, input, ndim, unbatched, batched):
    """unfold's and fold's input, checked, with a batch dim (added when it has ``ndim - 1`` dims)."""
    float_tensor(input, op)
    if input.ndim not in (ndim - 1, ndim):
        raise RuntimeValueError(f"{op}: expected a {ndim - 1}-D {unbatched} or {ndim}-D {batched} input, got shape "
                                f"{tuple(input.shape)}")
    x = input.unsqueeze(0) if input.ndim == ndim - 1 else input
    if 0 in x.shape[1:]:
        raise RuntimeValueError(f"{op}: only the batch dim may be empty, got input of shape {tuple(input.shape)}")
    return x


@register(method=False)
def unfold(input, kernel_size, dilation=1, padding=0, stride=1):
    """Extract sliding blocks (im2col): (N, C, H, W) -> (N, C * kh * kw, L), L the number of windows.

    This is the first half of conv2d: ``conv2d(x, w)`` equals
    ``(w.view(C_out, -1) @ unfold(x, (kh, kw))).view(N, C_out, out_h, out_w)``. Shape: 3-D (C, H, W) input
    gives a 2-D (C * kh * kw, L) output."""
    op = "unfold"
    x = _batched(op, input, 4, "(C, H, W)", "(N, C, H, W)")
    win, _ = _blocks(op, x.shape[2:], kernel_size, dilation, padding, stride)
    if x.numel() == 0:
        y = empty_result((x.shape[0], x.shape[1] * win.kh * win.kw, win.oh * win.ow), x, x)
    else:
        y = UnfoldFunction.apply(x, win=win)
    return y.squeeze(0) if input.ndim == 3 else y


@register(method=False)
def fold(input, output_size, kernel_size, dilation=1, padding=0, stride=1):
    """Combine sliding blocks into an image (col2im), summing where blocks overlap; the adjoint of unfold.

    Shape: input (N, C * kh * kw, L) or (C * kh * kw, L), L the number of windows in ``output_size``;
    output (N, C, *output_size) or (C, *output_size). ``fold(unfold(x))`` is x times the number of windows
    covering each pixel."""
    op = "fold"
    col = _batched(op, input, 3, "(C*kh*kw, L)", "(N, C*kh*kw, L)")
    size = pair(output_size, op, "output_size", 1)
    win, blocks = _blocks(op, size, kernel_size, dilation, padding, stride)
    n, ck, n_blocks = col.shape
    kk = win.kh * win.kw
    if ck % kk:
        raise RuntimeValueError(f"{op}: dim 1 of the input ({ck}) must be divisible by kernel_size's product ({kk})")
    if n_blocks != blocks[0] * blocks[1]:
        raise RuntimeValueError(f"{op}: the input has {n_blocks} blocks (dim 2), but output_size {size} with "
                                f"kernel_size {(win.kh, win.kw)}, dilation {(win.dh, win.dw)}, padding "
                                f"{(win.ph, win.pw)}, stride {(win.sh, win.sw)} makes {blocks[0] * blocks[1]}")
    shape = (n, ck // kk, *size)
    y = empty_result(shape, col, col) if n == 0 else FoldFunction.apply(col, shape=shape, win=win)
    return y.squeeze(0) if input.ndim == 2 else y
