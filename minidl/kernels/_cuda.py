"""GPU kernels written with Numba's CUDA target, for CuPy arrays (passed through ``__cuda_array_interface__``).

Same contracts as ``_numpy.py``, and the same shape as the CPU kernels in ``_numba.py``, but one thread per
output element: every kernel that could scatter gathers instead (col2im, the pooling and convolution input
gradients), so no two threads write the same element and no atomics are needed. Per-channel sums (batch
norm, the depthwise weight gradient) run one block per channel with a tree reduction in shared memory,
float64 accumulators as on the CPU. GEMMs stay with cuBLAS (through CuPy).

Their logic is tested without a GPU under Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``, which runs
the same kernels on NumPy arrays in Python threads): tests/gpu_kernel_checks.py, run by
tests/test_cuda_kernels.py.
"""
import math

import numpy as np
from numba import cuda, float64

from ..backend import get_array_module
from ._numpy import erf, index_dtype, layer_norm_rows, layer_norm_rows_backward, lstm_backward_step, \
    lstm_forward_step, relu, relu_backward  # noqa: F401
# (erf: CuPy's own; relu, relu_backward, the LSTM steps and layer norm: CuPy expressions; all part of the contract)

BLOCK = 256  # threads per block; a power of two (the reductions halve it)


def _launch(kernel, size, *args):
    """Run ``kernel`` with one thread per element of a ``size``-element output."""
    if size > 0:
        kernel[(size + BLOCK - 1) // BLOCK, BLOCK](*args)


@cuda.jit
def _probe_kernel(out):
    i = cuda.grid(1)
    if i < out.size:
        out[i] = 2 * i + 1


def probe(xp=None):
    """Compile and run one small kernel, and check what it wrote: raises where Numba's CUDA target cannot work
    here (kernels/__init__.py then runs the CuPy reference kernels). ``xp``: CuPy, or NumPy under the simulator."""
    if xp is None:
        import cupy as xp
    out = xp.zeros(5, dtype=np.float32)
    _launch(_probe_kernel, out.size, out)
    got = out.tolist()
    if got != [1.0, 3.0, 5.0, 7.0, 9.0]:
        raise RuntimeError(f"a probe kernel wrote {got}, expected [1, 3, 5, 7, 9]")


def _flat(xp, a):
    return xp.ascontiguousarray(a).reshape(-1)


@cuda.jit(device=True)
def _block_sum(buf, v):
    """The sum of ``v`` over the block's threads (every thread gets it)."""
    t = cuda.threadIdx.x
    buf[t] = v
    cuda.syncthreads()
    step = BLOCK // 2
    while step > 0:
        if t < step:
            buf[t] += buf[t + step]
        cuda.syncthreads()
        step //= 2
    total = buf[0]
    cuda.syncthreads()  # buf is reused by the next call
    return total


# ---- im2col / col2im -------------------------------------------------------------------------------------

@cuda.jit
def _im2col(x, col, n, c, h, w, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w, pad_value):
    e = cuda.grid(1)  # col[r, (b, oh, ow)], r = (ci, i, j)
    per = out_h * out_w
    if e >= c * kh * kw * n * per:
        return
    r, q = e // (n * per), e % (n * per)
    ci, i, j = r // (kh * kw), (r // kw) % kh, r % kw
    b, oh, ow = q // per, (q % per) // out_w, q % out_w
    y, xx = oh * sh - ph + i * dh, ow * sw - pw + j * dw
    col[e] = x[((b * c + ci) * h + y) * w + xx] if 0 <= y < h and 0 <= xx < w else pad_value


def im2col(x, win, pad_value=0.0):
    xp = get_array_module(x)
    n, c, h, w = x.shape
    col = xp.empty((c * win.kh * win.kw, n * win.oh * win.ow), dtype=x.dtype)
    _launch(_im2col, col.size, _flat(xp, x), col.reshape(-1), n, c, h, w, *win, pad_value)
    return col


@cuda.jit(device=True)
def _source(pos, pad, k, s, d, out):
    """The output position whose window's k-th tap reads input position ``pos``, or -1."""
    t = pos + pad - k * d
    if t < 0 or t % s != 0 or t // s >= out:
        return -1
    return t // s


@cuda.jit
def _col2im(col, img, n, c, h, w, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w):
    e = cuda.grid(1)  # one image element: the sum of every column entry that was read from it
    if e >= n * c * h * w:
        return
    b, ci, y, xx = e // (c * h * w), (e // (h * w)) % c, (e // w) % h, e % w
    ncols = n * out_h * out_w
    acc = 0.0
    for i in range(kh):
        oh = _source(y, ph, i, sh, dh, out_h)
        if oh < 0:
            continue
        for j in range(kw):
            ow = _source(xx, pw, j, sw, dw, out_w)
            if ow >= 0:
                acc += col[((ci * kh + i) * kw + j) * ncols + (b * out_h + oh) * out_w + ow]
    img[e] = acc


def col2im(col, shape, win):
    xp = get_array_module(col)
    img = xp.empty(shape, dtype=col.dtype)
    _launch(_col2im, img.size, _flat(xp, col), img.reshape(-1), *shape, *win)
    return img


# ---- pooling ---------------------------------------------------------------------------------------------

@cuda.jit
def _max_pool2d(x, y, arg, planes, h, w, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w):
    e = cuda.grid(1)
    if e >= planes * out_h * out_w:
        return
    p, oh, ow = e // (out_h * out_w), (e // out_w) % out_h, e % out_w
    best = -math.inf
    where = -1
    for i in range(kh):  # torch's order: the first maximum wins, and the last NaN
        yy = oh * sh - ph + i * dh
        if yy < 0 or yy >= h:
            continue
        for j in range(kw):
            xx = ow * sw - pw + j * dw
            if xx < 0 or xx >= w:
                continue
            v = x[(p * h + yy) * w + xx]
            if v > best or where == -1 or v != v:
                best = v
                where = yy * w + xx
    y[e] = best
    arg[e] = where


def max_pool2d(x, win):
    xp = get_array_module(x)
    n, c, h, w = x.shape
    y = xp.empty((n, c, win.oh, win.ow), dtype=x.dtype)
    arg = xp.empty((n, c, win.oh, win.ow), dtype=index_dtype(h * w))
    _launch(_max_pool2d, y.size, _flat(xp, x), y.reshape(-1), arg.reshape(-1), n * c, h, w, *win)
    return y, arg


@cuda.jit
def _max_pool2d_backward(gy, arg, gx, planes, h, w, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w):
    e = cuda.grid(1)  # one input element: the gradients of the windows that chose it
    if e >= planes * h * w:
        return
    p, q = e // (h * w), e % (h * w)
    y, xx = q // w, q % w
    acc = 0.0
    for i in range(kh):
        oh = _source(y, ph, i, sh, dh, out_h)
        if oh < 0:
            continue
        for j in range(kw):
            ow = _source(xx, pw, j, sw, dw, out_w)
            if ow >= 0:
                o = (p * out_h + oh) * out_w + ow
                if arg[o] == q:
                    acc += gy[o]
    gx[e] = acc


@cuda.jit
def _max_pool_scatter(gy, arg, gx, per, plane):
    e = cuda.grid(1)  # adaptive windows (no fixed geometry to gather by): atomics
    if e < gy.size and arg[e] >= 0:
        cuda.atomic.add(gx, (e // per) * plane + arg[e], gy[e])


def max_pool2d_backward(gy, arg, shape, win=None):
    """The input gradient of max pooling; the Window ``win`` lets each input element gather from its windows
    (deterministic); without it (adaptive pooling) outputs add atomically."""
    xp = get_array_module(gy)
    n, c, h, w = shape
    out_h, out_w = gy.shape[2:]
    if win is None:
        gx = xp.zeros(shape, dtype=gy.dtype)
        _launch(_max_pool_scatter, gy.size, _flat(xp, gy), _flat(xp, arg), gx.reshape(-1), out_h * out_w, h * w)
        return gx
    gx = xp.empty(shape, dtype=gy.dtype)
    _launch(_max_pool2d_backward, gx.size, _flat(xp, gy), _flat(xp, arg), gx.reshape(-1), n * c, h, w, *win)
    return gx


@cuda.jit
def _avg_pool2d(x, div, y, planes, h, w, kh, kw, sh, sw, ph, pw, out_h, out_w):
    e = cuda.grid(1)
    if e >= planes * out_h * out_w:
        return
    p, oh, ow = e // (out_h * out_w), (e // out_w) % out_h, e % out_w
    acc = 0.0
    for yy in range(max(oh * sh - ph, 0), min(oh * sh - ph + kh, h)):
        for xx in range(max(ow * sw - pw, 0), min(ow * sw - pw + kw, w)):
            acc += x[(p * h + yy) * w + xx]
    y[e] = acc / div[oh * out_w + ow]


def avg_pool2d(x, div, win):  # avg_pool2d has no dilation: win.dh == win.dw == 1
    xp = get_array_module(x)
    n, c, h, w = x.shape
    y = xp.empty((n, c, win.oh, win.ow), dtype=x.dtype)
    _launch(_avg_pool2d, y.size, _flat(xp, x), _flat(xp, div), y.reshape(-1), n * c, h, w, win.kh, win.kw,
            *win.stride, *win.padding, *win.out_hw)
    return y


@cuda.jit
def _avg_pool2d_backward(gy, div, gx, planes, h, w, kh, kw, sh, sw, ph, pw, out_h, out_w):
    e = cuda.grid(1)  # one input element: its share of every window that covers it
    if e >= planes * h * w:
        return
    p, y, xx = e // (h * w), (e // w) % h, e % w
    acc = 0.0
    for i in range(kh):
        oh = _source(y, ph, i, sh, 1, out_h)
        if oh < 0:
            continue
        for j in range(kw):
            ow = _source(xx, pw, j, sw, 1, out_w)
            if ow >= 0:
                acc += gy[(p * out_h + oh) * out_w + ow] / div[oh * out_w + ow]
    gx[e] = acc


def avg_pool2d_backward(gy, div, shape, win):
    xp = get_array_module(gy)
    n, c, h, w = shape
    gx = xp.empty(shape, dtype=gy.dtype)
    _launch(_avg_pool2d_backward, gx.size, _flat(xp, gy), _flat(xp, div), gx.reshape(-1), n * c, h, w, win.kh,
            win.kw, *win.stride, *win.padding, *win.out_hw)
    return gx


# ---- direct (grouped, depthwise) convolution --------------------------------------------------------------

@cuda.jit
def _conv_direct(x, wt, y, n, c, h, wd, o, cg, kh, kw, sh, sw, ph, pw, dh, dw, groups, out_h, out_w):
    e = cuda.grid(1)  # one output element
    if e >= n * o * out_h * out_w:
        return
    b, oc = e // (o * out_h * out_w), (e // (out_h * out_w)) % o
    oh, ow = (e // out_w) % out_h, e % out_w
    c0 = (oc // (o // groups)) * cg
    acc = 0.0
    for ci in range(cg):
        for i in range(kh):
            yy = oh * sh - ph + i * dh
            if yy < 0 or yy >= h:
                continue
            for j in range(kw):
                xx = ow * sw - pw + j * dw
                if 0 <= xx < wd:
                    acc += wt[((oc * cg + ci) * kh + i) * kw + j] * x[((b * c + c0 + ci) * h + yy) * wd + xx]
    y[e] = acc


def conv_direct(x, w, win, groups):
    xp = get_array_module(x)
    y = xp.empty((x.shape[0], w.shape[0], *win.out_hw), dtype=x.dtype)
    _launch(_conv_direct, y.size, _flat(xp, x), _flat(xp, w), y.reshape(-1), *x.shape, *w.shape[:2], *w.shape[2:],
            *win.stride, *win.padding, *win.dilation, groups, *win.out_hw)
    return y


@cuda.jit
def _conv_direct_grad_x(gy, wt, gx, n, c, h, wd, o, cg, kh, kw, sh, sw, ph, pw, dh, dw, groups, out_h, out_w):
    e = cuda.grid(1)  # one input element: gathers from the outputs that read it
    if e >= n * c * h * wd:
        return
    b, xc, y, xx = e // (c * h * wd), (e // (h * wd)) % c, (e // wd) % h, e % wd
    og = o // groups
    g = xc // cg
    ci = xc - g * cg
    acc = 0.0
    for oc in range(g * og, (g + 1) * og):
        for i in range(kh):
            oh = _source(y, ph, i, sh, dh, out_h)
            if oh < 0:
                continue
            for j in range(kw):
                ow = _source(xx, pw, j, sw, dw, out_w)
                if ow >= 0:
                    acc += wt[((oc * cg + ci) * kh + i) * kw + j] * gy[((b * o + oc) * out_h + oh) * out_w + ow]
    gx[e] = acc


def conv_direct_grad_x(gy, w, x_shape, win, groups):
    xp = get_array_module(gy)
    gx = xp.empty(x_shape, dtype=gy.dtype)
    _launch(_conv_direct_grad_x, gx.size, _flat(xp, gy), _flat(xp, w), gx.reshape(-1), *x_shape, *w.shape[:2],
            *w.shape[2:], *win.stride, *win.padding, *win.dilation, groups, *gy.shape[2:])
    return gx


@cuda.jit
def _conv_direct_grad_w(x, gy, gw, n, c, h, wd, o, cg, kh, kw, sh, sw, ph, pw, dh, dw, groups, out_h, out_w):
    k = cuda.blockIdx.x  # one block per weight element (oc, ci, i, j), its threads over (b, oh, ow)
    buf = cuda.shared.array(BLOCK, float64)
    oc, ci, i, j = k // (cg * kh * kw), (k // (kh * kw)) % cg, (k // kw) % kh, k % kw
    xc = (oc // (o // groups)) * cg + ci
    acc = 0.0
    for q in range(cuda.threadIdx.x, n * out_h * out_w, BLOCK):
        b, oh, ow = q // (out_h * out_w), (q // out_w) % out_h, q % out_w
        yy, xx = oh * sh - ph + i * dh, ow * sw - pw + j * dw
        if 0 <= yy < h and 0 <= xx < wd:
            acc += gy[((b * o + oc) * out_h + oh) * out_w + ow] * x[((b * c + xc) * h + yy) * wd + xx]
    total = _block_sum(buf, acc)
    if cuda.threadIdx.x == 0:
        gw[k] = total


def conv_direct_grad_w(x, gy, w_shape, win, groups):
    xp = get_array_module(x)
    gw = xp.empty(w_shape, dtype=gy.dtype)
    _conv_direct_grad_w[gw.size, BLOCK](_flat(xp, x), _flat(xp, gy), gw.reshape(-1), *x.shape, *w_shape[:2],
                                        *w_shape[2:], *win.stride, *win.padding, *win.dilation, groups,
                                        *gy.shape[2:])
    return gw


# ---- batch norm ------------------------------------------------------------------------------------------

@cuda.jit
def _bn_stats(x, mean, var, n, c, m):
    ci = cuda.blockIdx.x  # one block per channel: mean, then the mean squared deviation (two passes)
    buf = cuda.shared.array(BLOCK, float64)
    s = 0.0
    for q in range(cuda.threadIdx.x, n * m, BLOCK):
        s += x[((q // m) * c + ci) * m + q % m]
    mu = _block_sum(buf, s) / (n * m)
    s = 0.0
    for q in range(cuda.threadIdx.x, n * m, BLOCK):
        d = x[((q // m) * c + ci) * m + q % m] - mu
        s += d * d
    v = _block_sum(buf, s) / (n * m)
    if cuda.threadIdx.x == 0:
        mean[ci] = mu
        var[ci] = v


def _nc_m(x):
    return x.shape[0], x.shape[1], x.size // max(x.shape[0] * x.shape[1], 1)


def batch_norm_stats(x):
    xp = get_array_module(x)
    n, c, m = _nc_m(x)
    mean, var = xp.empty(c, dtype=x.dtype), xp.empty(c, dtype=x.dtype)
    if c:
        _bn_stats[c, BLOCK](_flat(xp, x), mean, var, n, c, m)
    return mean, var


@cuda.jit
def _bn_apply(x, mean, invstd, w, b, y, c, m):
    e = cuda.grid(1)
    if e < y.size:
        ci = (e // m) % c  # (x - mean) first: x * scale + (b - mean * scale) cancels for a large mean
        y[e] = (x[e] - mean[ci]) * (invstd[ci] * w[ci]) + b[ci]


def batch_norm_apply(x, mean, invstd, w, b):
    xp = get_array_module(x)
    _, c, m = _nc_m(x)
    y = xp.empty(x.shape, dtype=x.dtype)
    _launch(_bn_apply, y.size, _flat(xp, x), mean, invstd, w, b, y.reshape(-1), c, m)
    return y


@cuda.jit
def _bn_sums(x, g, mean, sg, sgx, n, c, m):
    ci = cuda.blockIdx.x  # per channel: sum of g and of g * (x - mean)
    buf = cuda.shared.array(BLOCK, float64)
    a = 0.0
    q2 = 0.0
    for q in range(cuda.threadIdx.x, n * m, BLOCK):
        k = ((q // m) * c + ci) * m + q % m
        a += g[k]
        q2 += g[k] * (x[k] - mean[ci])
    a = _block_sum(buf, a)
    q2 = _block_sum(buf, q2)
    if cuda.threadIdx.x == 0:
        sg[ci] = a
        sgx[ci] = q2


@cuda.jit
def _bn_grad_x(x, g, mean, scale, a, bcoef, gx, c, m, training):
    e = cuda.grid(1)
    if e < gx.size:
        ci = (e // m) % c
        if training:  # gx = scale * (g - mean(g) - xhat * mean(g * xhat))
            gx[e] = scale[ci] * (g[e] - a[ci] - (x[e] - mean[ci]) * bcoef[ci])
        else:  # the running statistics are constants: x does not enter
            gx[e] = scale[ci] * g[e]


def batch_norm_backward(x, gy, mean, invstd, w, training):
    xp = get_array_module(x)
    n, c, m = _nc_m(x)
    xf, gf = _flat(xp, x), _flat(xp, gy)
    sg, sgx = xp.empty(c, dtype=np.float64), xp.empty(c, dtype=np.float64)
    if c:
        _bn_sums[c, BLOCK](xf, gf, mean, sg, sgx, n, c, m)
    inv = invstd.astype(np.float64)
    cnt = max(n * m, 1)
    gx = xp.empty(x.shape, dtype=gy.dtype)
    _launch(_bn_grad_x, gx.size, xf, gf, mean, w * inv, sg / cnt, sgx * inv * inv / cnt, gx.reshape(-1), c, m,
            training)
    return gx, (sgx * inv).astype(gy.dtype), sg.astype(gy.dtype)


# ---- fused optimizer steps: one kernel per parameter instead of one per array operation -----------------------

@cuda.jit
def _sgd_step(p, g, buf, lr, wd, mu, damp, nesterov, first):
    e = cuda.grid(1)
    if e < p.size:
        d = g[e] + wd * p[e] if wd != 0 else g[e]
        if mu != 0:  # buf = g on the first step, else mu buf + (1 - dampening) g
            b = d if first else mu * buf[e] + (1 - damp) * d
            buf[e] = b
            d = d + mu * b if nesterov else b
        p[e] -= lr * d


def sgd_step(p, g, buf, lr, weight_decay, momentum, dampening, nesterov, first):
    """torch.optim.SGD's update of one parameter in place (``buf``: its momentum buffer, written on the first
    step; None without momentum). All arrays C-contiguous, same shape. (An unused array argument is ``g``, which
    the kernel only reads: no argument may alias one that it writes.)"""
    _launch(_sgd_step, p.size, p.reshape(-1), g.reshape(-1), (g if buf is None else buf).reshape(-1), lr,
            weight_decay, momentum, dampening, nesterov, first)


@cuda.jit
def _adam_step(p, g, m, v, vmax, lr, b1, b2, eps, wd, decoupled, amsgrad, bc1, bc2_sqrt):
    e = cuda.grid(1)
    if e < p.size:
        pe = p[e]
        d = g[e]
        if decoupled:  # AdamW: p *= 1 - lr wd, the gradient untouched
            pe *= 1 - lr * wd
        elif wd != 0:  # Adam: L2 added to the gradient
            d += wd * pe
        me = m[e] + (1 - b1) * (d - m[e])
        ve = v[e] * b2 + (1 - b2) * d * d
        m[e] = me
        v[e] = ve
        if amsgrad:
            ve = max(vmax[e], ve)
            vmax[e] = ve
        p[e] = pe - (lr / bc1) * me / (math.sqrt(ve) / bc2_sqrt + eps)


def adam_step(p, g, m, v, vmax, lr, b1, b2, eps, weight_decay, decoupled, step):
    """torch.optim.Adam's (``decoupled``: AdamW's) update of one parameter in place, at step ``step`` (1, 2, ...);
    ``vmax`` is the AMSGrad running maximum or None."""
    _launch(_adam_step, p.size, p.reshape(-1), g.reshape(-1), m.reshape(-1), v.reshape(-1),
            (g if vmax is None else vmax).reshape(-1), lr, b1, b2, eps, weight_decay, decoupled, vmax is not None,
            1 - b1 ** step, (1 - b2 ** step) ** 0.5)
