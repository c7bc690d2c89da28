"""Convolutions by im2col + GEMM: conv2d and conv_transpose2d (stride, padding, dilation, groups).

``col`` has shape (C*kh*kw, N*out_h*out_w) (see kernels/_numpy.py), so each group is one GEMM.
Backward passes are raw kernels: these ops are differentiable once.
"""
from .. import backend, kernels
from ..backend import get_array_module
from ..autograd import Function
from ._checks import float_tensor, optional_tensor, pair, int_arg, same_device, empty_result
from ._registry import register


def _group_matmul(xp, a, b, groups, ta=False):
    """Block-diagonal product: group g multiplies a's g-th row block (or, ``ta``, its transpose)
    with b's g-th row block."""
    if groups == 1:
        return (a.T if ta else a) @ b
    ar, br = a.shape[0] // groups, b.shape[0] // groups
    return xp.concatenate([(a[g * ar:(g + 1) * ar].T if ta else a[g * ar:(g + 1) * ar]) @ b[g * br:(g + 1) * br]
                           for g in range(groups)], axis=0)


def _group_outer(xp, a, b, groups):
    """Per group g: a_g @ b_g.T, stacked on rows (the weight gradient)."""
    if groups == 1:
        return a @ b.T
    ar, br = a.shape[0] // groups, b.shape[0] // groups
    return xp.concatenate([a[g * ar:(g + 1) * ar] @ b[g * br:(g + 1) * br].T for g in range(groups)], axis=0)


def _conv_forward(algo, xp, x, w, stride, padding, dilation, groups, out_hw):
    """One conv2d forward by algorithm ``algo``; returns the output (no bias) and what backward needs."""
    n = x.shape[0]
    o, _, kh, kw = w.shape
    oh, ow = out_hw
    if algo == "direct":  # Numba loops, no column matrix (groups = 1)
        return kernels.conv_direct(x, w, stride, padding, dilation, out_hw), (x, w)
    if algo == "gemm1x1":  # 1x1, no padding: a batched GEMM straight in NCHW, no im2col and no transposes
        x3 = xp.ascontiguousarray(x[:, :, ::stride[0], ::stride[1]]).reshape(n, x.shape[1], oh * ow)
        return xp.matmul(w.reshape(o, -1), x3).reshape(n, o, oh, ow), (x3, w)
    geom = (kh, kw, *stride, *padding, *dilation, oh, ow)
    if algo == "im2col_chunked":  # a cache-sized column matrix per batch chunk; recomputed in backward
        y = xp.empty((n, o, oh, ow), dtype=x.dtype)
        for a, b in _chunks(x.shape[0], x.itemsize, w, out_hw):
            col = kernels.im2col(x[a:b], *geom)
            y[a:b] = _group_matmul(xp, w.reshape(o, -1), col, groups).reshape(o, b - a, oh, ow).transpose(1, 0, 2, 3)
        return y, (x, w)
    col = kernels.im2col(x, *geom)                                          # (C*kh*kw, N*oh*ow)
    y = _group_matmul(xp, w.reshape(o, -1), col, groups)                   # (O, N*oh*ow)
    return xp.ascontiguousarray(y.reshape(o, n, oh, ow).transpose(1, 0, 2, 3)), (col, w)


# Column matrices are built this many bytes at a time (benchmarks/NOTES.md, change 8). Measured: 2 MB chunks
# lose on small maps (per-chunk overhead); 16 MB chunks stay under glibc's 32 MB mmap ceiling, so a freed
# chunk's memory is reused by the next one instead of being page-faulted in afresh, as a whole-batch matrix is.
_CHUNK_BYTES = 16 << 20


def _chunks(n, itemsize, w, out_hw):
    """Ranges over a batch of ``n`` whose column matrices hold about _CHUNK_BYTES each."""
    per_sample = w.shape[1] * w.shape[2] * w.shape[3] * out_hw[0] * out_hw[1] * itemsize
    step = max(1, _CHUNK_BYTES // max(per_sample, 1))
    return [(a, min(a + step, n)) for a in range(0, n, step)]


def _grad_x_chunk(xp, w, gy_mat, groups, n, x_shape, geom):
    """Input gradient of ``n`` samples from their gradient columns ``gy_mat`` (O, n*oh*ow)."""
    o = w.shape[0]
    return kernels.col2im(_group_matmul(xp, w.reshape(o, -1), gy_mat, groups, ta=True), (n, *x_shape[1:]), *geom)


def _conv_backward(algo, xp, saved, gy, x_shape, stride, padding, dilation, groups, need_x, need_w):
    """Input and weight gradients of one conv2d, for the algorithm that ran the forward."""
    a, w = saved
    o = w.shape[0]
    gx = gw = None
    if algo == "direct":
        if need_x:
            gx = kernels.conv_direct_grad_x(gy, w, x_shape, stride, padding, dilation)
        if need_w:
            gw = kernels.conv_direct_grad_w(a, gy, w.shape, stride, padding, dilation)
        return gx, gw
    if algo == "gemm1x1":
        n, c, h, wd = x_shape
        gy3 = gy.reshape(n, o, -1)
        if need_x:
            g3 = xp.matmul(w.reshape(o, c).T, gy3).reshape(n, c, *gy.shape[2:])
            if stride == (1, 1):
                gx = g3
            else:
                gx = xp.zeros(x_shape, dtype=gy.dtype)
                gx[:, :, ::stride[0], ::stride[1]] = g3
        if need_w:
            gw = xp.matmul(gy3, a.transpose(0, 2, 1)).sum(axis=0).reshape(w.shape)
        return gx, gw
    geom = (*w.shape[2:], *stride, *padding, *dilation, *gy.shape[2:])
    if algo == "im2col_chunked":  # a is the input: columns are rebuilt chunk by chunk
        gx = xp.empty(x_shape, dtype=gy.dtype) if need_x else None
        gw = xp.zeros(w.shape, dtype=gy.dtype) if need_w else None
        for lo, hi in _chunks(a.shape[0], a.itemsize, w, gy.shape[2:]):
            gy_mat = gy[lo:hi].transpose(1, 0, 2, 3).reshape(o, -1)
            if need_w:
                gw += _group_outer(xp, gy_mat, kernels.im2col(a[lo:hi], *geom), groups).reshape(w.shape)
            if need_x:
                gx[lo:hi] = _grad_x_chunk(xp, w, gy_mat, groups, hi - lo, x_shape, geom)
        return gx, gw
    gy_mat = gy.transpose(1, 0, 2, 3).reshape(o, -1)
    if need_x:  # the gradient columns chunk by chunk: never a second full-size column matrix next to ``a``
        gx = xp.empty(x_shape, dtype=gy.dtype)
        per = gy.shape[2] * gy.shape[3]
        for lo, hi in _chunks(x_shape[0], gy.itemsize, w, gy.shape[2:]):
            gx[lo:hi] = _grad_x_chunk(xp, w, gy_mat[:, lo * per:hi * per], groups, hi - lo, x_shape, geom)
    if need_w:
        gw = _group_outer(xp, gy_mat, a, groups).reshape(w.shape)
    return gx, gw


def _conv_algorithms(x, w, stride, padding, dilation, groups):
    """The algorithms that can run this convolution, the reference (im2col + GEMM) first."""
    algos = ["im2col"]
    if x.shape[0] > 1:  # chunks split the batch
        algos.append("im2col_chunked")
    if groups == 1 and w.shape[2:] == (1, 1) and padding == (0, 0):
        algos.append("gemm1x1")
    if groups == 1 and w.shape[1] <= 3 and kernels.has_direct_conv(x):  # tiny input channel counts
        algos.append("direct")
    return algos


def _choose_algorithm(xp, x, w, stride, padding, dilation, groups, out_hw):
    algos = _conv_algorithms(x, w, stride, padding, dilation, groups)
    key = ("conv2d", backend.device_of(x), kernels.name_for(x), x.dtype.str, x.shape, w.shape, stride, padding,
           dilation, groups)
    gy = []  # the trials' upstream gradient, made by the first trial: a cached choice allocates nothing

    def trial(algo):
        def run():
            if not gy:
                gy.append(xp.ones((x.shape[0], w.shape[0], *out_hw), dtype=x.dtype))
            _, saved = _conv_forward(algo, xp, x, w, stride, padding, dilation, groups, out_hw)
            _conv_backward(algo, xp, saved, gy[0], x.shape, stride, padding, dilation, groups, True, True)
        return run
    return kernels.autotune.choose(key, [(a, trial(a)) for a in algos], lean=("im2col_chunked", "gemm1x1", "direct"))


class Conv2d(Function):
    name = "conv2d"
    differentiable_twice = False

    def forward(self, xp, x, w, b, stride, padding, dilation, groups, out_hw):
        self.params = (stride, padding, dilation, groups)
        self.x_shape, self.has_b = x.shape, b is not None
        self.algo = _choose_algorithm(xp, x, w, stride, padding, dilation, groups, out_hw)
        y, saved = _conv_forward(self.algo, xp, x, w, stride, padding, dilation, groups, out_hw)
        if b is not None:
            y += b.reshape(1, -1, 1, 1)
        self.save_for_backward(*saved)
        return y

    def backward(self, gy):
        g = gy._data
        xp = get_array_module(g)
        gx, gw = _conv_backward(self.algo, xp, self.saved_arrays, xp.ascontiguousarray(g), self.x_shape,
                                *self.params, self.needs_input_grad[0], self.needs_input_grad[1])
        gb = g.sum(axis=(0, 2, 3)) if self.has_b and self.needs_input_grad[2] else None
        return gx, gw, gb


class ConvTranspose2d(Function):
    name = "conv_transpose2d"
    differentiable_twice = False

    def forward(self, xp, x, w, b, stride, padding, dilation, groups, out_hw):
        n, cin, h, wd = x.shape
        cout = w.shape[1] * groups
        kh, kw = w.shape[2:]
        self.geom = (kh, kw, *stride, *padding, *dilation, h, wd)
        self.groups, self.has_b = groups, b is not None
        x_mat = x.transpose(1, 0, 2, 3).reshape(cin, -1)
        col = _group_matmul(xp, w.reshape(cin, -1), x_mat, groups, ta=True)   # (Cout*kh*kw, N*H*W)
        y = kernels.col2im(col, (n, cout, *out_hw), *self.geom)
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
        gcol = kernels.im2col(gy, *self.geom)                        # (Cout*kh*kw, N*H*W)
        gx = gw = gb = None
        if self.needs_input_grad[0]:
            n, _, h, wd = self.x_shape
            gx = _group_matmul(xp, w.reshape(cin, -1), gcol, self.groups)
            gx = xp.ascontiguousarray(gx.reshape(cin, n, h, wd).transpose(1, 0, 2, 3))
        if self.needs_input_grad[1]:
            gw = _group_outer(xp, x_mat, gcol, self.groups).reshape(w.shape)
        if self.has_b and self.needs_input_grad[2]:
            gb = gy.sum(axis=(0, 2, 3))
        return gx, gw, gb


def _conv_common(op, input, weight, bias, stride, dilation, groups):
    float_tensor(input, op)
    float_tensor(weight, op, "weight")
    optional_tensor(bias, op, "bias")
    same_device(op, input, weight, bias)
    if input.ndim not in (3, 4):
        raise ValueError(f"{op}: expected input to be 3-D (C, H, W) or 4-D (N, C, H, W), got {input.ndim}-D "
                         f"with shape {input.shape}")
    if weight.ndim != 4:
        raise ValueError(f"{op}: expected weight to be 4-D, got shape {weight.shape}")
    if 0 in weight.shape or 0 in input.shape[-3:]:
        raise ValueError(f"{op}: weight {weight.shape} and input {input.shape} must have no empty dimension "
                         "(but the batch)")
    if input.dtype != weight.dtype:
        raise TypeError(f"{op}: input dtype {input.dtype} and weight dtype {weight.dtype} differ")
    groups = int_arg(groups, op, "groups", 1)
    return pair(stride, op, "stride", 1), pair(dilation, op, "dilation", 1), groups


@register(method=False)
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
        raise ValueError(f"{op}: input has {c} channels, weight expects {cg * groups} "
                         f"(weight shape {weight.shape}, groups={groups})")
    if o % groups:
        raise ValueError(f"{op}: out channels ({o}) must be divisible by groups ({groups})")
    if bias is not None and bias.shape != (o,):
        raise ValueError(f"{op}: bias must have shape ({o},), got {bias.shape}")
    out = None
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0, 0)
        elif padding == "same":
            if stride != (1, 1):
                raise ValueError(f"{op}: padding='same' needs stride 1, got stride={stride}")
            padding = (dilation[0] * (kh - 1) // 2, dilation[1] * (kw - 1) // 2)
            out = (h, w)
        else:
            raise ValueError(f"{op}: padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
    else:
        padding = pair(padding, op, "padding", 0)
    ekh, ekw = dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1
    if h + 2 * padding[0] < ekh or w + 2 * padding[1] < ekw:
        raise ValueError(f"{op}: kernel size ({ekh}, {ekw}) (dilated) is larger than the padded input "
                         f"({h + 2 * padding[0]}, {w + 2 * padding[1]})")
    if out is None:
        out = ((h + 2 * padding[0] - ekh) // stride[0] + 1, (w + 2 * padding[1] - ekw) // stride[1] + 1)
    if n == 0:  # an empty batch: an empty output, zero gradients (as torch)
        y = empty_result((0, o, *out), input, input, weight, bias)
        return y.squeeze(0) if unbatched else y
    y = Conv2d.apply(input, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=groups,
                     out_hw=out)
    return y.squeeze(0) if unbatched else y


@register(method=False)
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
        raise ValueError(f"{op}: input has {c} channels, weight expects {cin} (weight shape {weight.shape})")
    if cin % groups:
        raise ValueError(f"{op}: in channels ({cin}) must be divisible by groups ({groups})")
    if bias is not None and bias.shape != (cog * groups,):
        raise ValueError(f"{op}: bias must have shape ({cog * groups},), got {bias.shape}")
    for i in range(2):
        if output_padding[i] >= max(stride[i], dilation[i]):
            raise ValueError(f"{op}: output_padding {output_padding} must be smaller than stride {stride} "
                             f"or dilation {dilation}")
    out = tuple((s - 1) * st - 2 * p + d * (k - 1) + op_ + 1 for s, st, p, d, k, op_ in
                zip((h, w), stride, padding, dilation, (kh, kw), output_padding))
    if min(out) <= 0:
        raise ValueError(f"{op}: the output size {out} would not be positive (input {(h, w)}, "
                         f"kernel {(kh, kw)}, padding {padding})")
    if n == 0:  # an empty batch: an empty output, zero gradients (as torch)
        y = empty_result((0, cog * groups, *out), input, input, weight, bias)
        return y.squeeze(0) if unbatched else y
    y = ConvTranspose2d.apply(input, weight, bias, stride=stride, padding=padding, dilation=dilation,
                              groups=groups, out_hw=out)
    return y.squeeze(0) if unbatched else y
