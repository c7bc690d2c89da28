"""CPU kernels compiled by Numba: parallel over independent rows or planes, so that every output
element is written by exactly one iteration (no atomics, no races). Same contracts as ``_numpy.py``.

Inner loops index flat arrays with unsigned offsets (``U``): Numba checks every signed index for
wraparound (a negative index counts from the end), and that branch in the innermost loop keeps LLVM from
vectorising it. Measured (benchmarks/NOTES.md, change 18): im2col 3-6x and col2im 2-4x faster unsigned.
Window bounds are computed once per row (``_span``), so inner loops run branch-free over valid positions.
"""
import numpy as np
from numba import njit

from ._numpy import index_dtype
from .blas import split
from . import _numba_depthwise as _depthwise
from ._numba_pointwise import (  # noqa: F401 (the contract's value-by-value kernels)
    _tanh32, erf, layer_norm_rows, layer_norm_rows_backward, lstm_backward_step, lstm_forward_step, relu,
    relu_backward)

U = np.uint64


@njit(cache=True, inline='always')
def _span(size, out, s, p, k_off):
    """Output positions o in [lo, hi) whose input position o*s - p + k_off lies inside [0, size)."""
    lo = max(0, (p - k_off + s - 1) // s)
    hi = min(out, (size - 1 + p - k_off) // s + 1)
    return lo, max(lo, hi)


@njit(cache=True, inline='always')
def _fill(a, start, count, value):
    for t in range(U(count)):
        a[U(start) + t] = value


@njit(cache=True, inline='always')
def _copy(dst, d, src, s, count, stride):
    """dst[d + t] = src[s + t * stride] for t < count."""
    d, s = U(d), U(s)
    if stride == 1:
        for t in range(U(count)):
            dst[d + t] = src[s + t]
    else:
        for t in range(U(count)):
            dst[d + t] = src[s + t * U(stride)]


@njit(cache=True, inline='always')
def _add_into(dst, d, stride, src, s, count):
    """dst[d + t * stride] += src[s + t] for t < count."""
    d, s = U(d), U(s)
    if stride == 1:
        for t in range(U(count)):
            dst[d + t] += src[s + t]
    else:
        for t in range(U(count)):
            dst[d + t * U(stride)] += src[s + t]


def _run(kernel, n, items, *args):
    """kernel(*args, lo, hi) over range(n), split across minidl's kernel threads (blas.split) when ``items`` reaches
    SPLIT_MIN_ITEMS, else on the calling thread. ``items`` is the work in units of the 2x2 max pooling's input
    element (about 0.22 ns on one thread here), so that a kernel splits where its serial time passes about 150 us:
    each call site scales its element count by what it measured (NOTES.md, change 49; BatchNorm's backward is
    memory-bound and gained nothing from a second thread up to 2M elements). These kernels were Numba parallel
    loops; on Numba's workqueue threads (which minidl picks: kernels/__init__.py) a call cost about 100 us of
    wake-ups, more than the whole of most BatchNorm and im2col calls."""
    return split(n, lambda _, lo, hi: kernel(*args, lo, hi), items=items)


@njit(nogil=True, cache=True)
def _im2col(x, col, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w, pad_value, p0, p1):
    n, c, h, w = x.shape
    xf, cf = x.reshape(-1), col.reshape(-1)
    plane, per = h * w, out_h * out_w
    for r in range(p0, p1):  # one row of the column matrix per iteration
        ci = r // (kh * kw)
        i = (r // kw) % kh
        j = r % kw
        lo_h, hi_h = _span(h, out_h, sh, ph, i * dh)
        lo_w, hi_w = _span(w, out_w, sw, pw, j * dw)
        for b in range(n):
            for oh in range(out_h):
                d = (r * n + b) * per + oh * out_w  # col[r, b, oh, :]
                if oh < lo_h or oh >= hi_h:
                    _fill(cf, d, out_w, pad_value)
                    continue
                y = oh * sh - ph + i * dh
                _fill(cf, d, lo_w, pad_value)
                _copy(cf, d + lo_w, xf, (b * c + ci) * plane + y * w + lo_w * sw - pw + j * dw, hi_w - lo_w, sw)
                _fill(cf, d + hi_w, out_w - hi_w, pad_value)


def im2col(x, win, pad_value=0.0):
    n, c, h, w = x.shape
    col = np.empty((c * win.kh * win.kw, n * win.oh * win.ow), dtype=x.dtype)
    _run(_im2col, c * win.kh * win.kw, 2 * col.size, np.ascontiguousarray(x), col, *win, x.dtype.type(pad_value))
    return col


@njit(nogil=True, cache=True)
def _col2im(col, img, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w, p0, p1):
    n, c, h, w = img.shape
    cf, imf = col.reshape(-1), img.reshape(-1)
    plane, per = h * w, out_h * out_w
    for p in range(p0, p1):  # one iteration owns one (n, c) plane: no two iterations write the same element
        b = p // c
        ci = p % c
        _fill(imf, p * plane, plane, 0)
        for i in range(kh):
            lo_h, hi_h = _span(h, out_h, sh, ph, i * dh)
            for j in range(kw):
                lo_w, hi_w = _span(w, out_w, sw, pw, j * dw)
                r = (ci * kh + i) * kw + j
                for oh in range(lo_h, hi_h):  # contiguous in col; stride sw in the image row
                    y = oh * sh - ph + i * dh
                    _add_into(imf, p * plane + y * w + lo_w * sw - pw + j * dw, sw,
                              cf, (r * n + b) * per + oh * out_w + lo_w, hi_w - lo_w)


def col2im(col, shape, win):
    img = np.empty(shape, dtype=col.dtype)
    _run(_col2im, shape[0] * shape[1], col.size, np.ascontiguousarray(col), img, *win)
    return img


# The max-pooling kernels are serial loops over a range of planes, run by minidl's own threads (blas.split) with the
# GIL released, not Numba's parallel loops: Numba compiles a parallel loop in 1.2-1.5 s, a serial one in 0.3-0.5 s,
# and both run on a LeNet-5's first step (NOTES.md, change 25: cold start).
@njit(nogil=True, cache=True)
def _max_pool2d(x, y, arg, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w, p0, p1):
    n, c, h, w = x.shape
    xf, yf, af = x.reshape(-1), y.reshape(-1), arg.reshape(-1)
    for p in range(p0, p1):  # max and argmax over one plane per iteration
        for oh in range(out_h):
            d = (p * out_h + oh) * out_w
            _fill(yf, d, out_w, -np.inf)
            _fill(af, d, out_w, -1)
            # window offsets in torch's order (row by row), each over the whole output row: the inner loop runs
            # over output columns, so it vectorises; a later offset wins only if strictly larger, or NaN (the
            # last NaN wins, as torch)
            for i in range(kh):
                yy = oh * sh - ph + i * dh
                if yy < 0 or yy >= h:
                    continue
                for j in range(kw):
                    lo, hi = _span(w, out_w, sw, pw, j * dw)
                    x0 = lo * sw - pw + j * dw  # the input column of output column lo
                    s = p * h * w + yy * w + x0
                    for t in range(hi - lo):  # selects, not a branch: the loop vectorises (2x, NOTES change 25)
                        v = xf[U(s + t * sw)]
                        o = U(d + lo + t)
                        cur, at = yf[o], af[o]
                        take = (v > cur) | (at == -1) | (v != v)
                        yf[o] = v if take else cur
                        af[o] = yy * w + x0 + t * sw if take else at


@njit(nogil=True, cache=True)
def _max_pool2x2(x, y, arg, p0, p1):
    """_max_pool2d for 2x2 windows with stride 2 that lie inside the map (LeNet's, VGG's): the four taps of each
    window read in torch's order with the same rule (a later tap wins if strictly larger, or NaN), no bounds to
    check, so the loop over output columns vectorises (NOTES.md, change 42)."""
    h, w = x.shape[2], x.shape[3]
    out_h, out_w = y.shape[2], y.shape[3]
    xf, yf, af = x.reshape(-1), y.reshape(-1), arg.reshape(-1)
    for p in range(p0, p1):
        for i in range(out_h):
            top = U(p * h * w + 2 * i * w)
            d = U((p * out_h + i) * out_w)
            for j in range(out_w):
                at = 2 * i * w + 2 * j
                best = xf[top + U(2 * j)]
                v = xf[top + U(2 * j + 1)]
                take = (v > best) | (v != v)
                best, at = (v, 2 * i * w + 2 * j + 1) if take else (best, at)
                v = xf[top + U(w + 2 * j)]
                take = (v > best) | (v != v)
                best, at = (v, (2 * i + 1) * w + 2 * j) if take else (best, at)
                v = xf[top + U(w + 2 * j + 1)]
                take = (v > best) | (v != v)
                best, at = (v, (2 * i + 1) * w + 2 * j + 1) if take else (best, at)
                yf[d + U(j)] = best
                af[d + U(j)] = at


def max_pool2d(x, win):
    n, c = x.shape[:2]
    y = np.empty((n, c, win.oh, win.ow), dtype=x.dtype)
    arg = np.empty((n, c, win.oh, win.ow), dtype=index_dtype(x.shape[2] * x.shape[3]))
    x = np.ascontiguousarray(x)
    if (win.kh, win.kw, win.sh, win.sw, win.padding, win.dilation) == (2, 2, 2, 2, (0, 0), (1, 1)) \
            and 2 * win.oh <= x.shape[2] and 2 * win.ow <= x.shape[3]:
        _run(_max_pool2x2, n * c, x.size, x, y, arg)
    else:
        _run(_max_pool2d, n * c, y.size * win.kh * win.kw, x, y, arg, *win)
    return y, arg


@njit(nogil=True, cache=True)
def _max_pool2d_backward(gy, arg, gx, p0, p1):
    n, c, out_h, out_w = gy.shape
    plane, per = gx.shape[2] * gx.shape[3], out_h * out_w
    gyf, af, gxf = gy.reshape(-1), arg.reshape(-1), gx.reshape(-1)
    for p in range(p0, p1):  # scatter within one plane, owned by one iteration
        s, d = U(p * per), U(p * plane)
        for t in range(U(per)):
            a = af[s + t]
            if a >= 0:
                gxf[d + U(a)] += gyf[s + t]


def max_pool2d_backward(gy, arg, shape, win=None):
    gx = np.zeros(shape, dtype=gy.dtype)
    gy, arg = np.ascontiguousarray(gy), np.ascontiguousarray(arg)
    # half a forward pass's cost an element (measured: (64, 64, 16, 16) 129 us on one thread, 119 split)
    _run(_max_pool2d_backward, shape[0] * shape[1], gx.size // 2, gy, arg, gx)
    return gx


@njit(cache=True, inline='always')
def _axpy(dst, d, dstride, a, src, s, sstride, count):
    """dst[d + t * dstride] += a * src[s + t * sstride] for t < count."""
    if dstride == 1 and sstride == 1:
        for t in range(count):
            dst[U(d + t)] += a * src[U(s + t)]
    else:
        for t in range(count):
            dst[U(d + t * dstride)] += a * src[U(s + t * sstride)]


@njit(nogil=True, cache=True)
def _conv_direct(x, w, y, sh, sw, ph, pw, dh, dw, groups, p0, p1):
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    og = o // groups
    out_h, out_w = y.shape[2], y.shape[3]
    xf, yf = x.reshape(-1), y.reshape(-1)
    for p in range(p0, p1):  # one (sample, output channel) plane per iteration
        b = p // o
        oc = p % o
        c0 = (oc // og) * cg  # the first input channel of this output channel's group
        _fill(yf, p * out_h * out_w, out_h * out_w, 0)
        for ci in range(cg):
            for i in range(kh):
                lo_h, hi_h = _span(h, out_h, sh, ph, i * dh)
                for j in range(kw):
                    lo_w, hi_w = _span(wd, out_w, sw, pw, j * dw)
                    wv = w[oc, ci, i, j]
                    for oh in range(lo_h, hi_h):  # y[b, oc, oh, lo_w:hi_w] += wv * x[b, c0 + ci, row, cols]
                        yy = oh * sh - ph + i * dh
                        _axpy(yf, (p * out_h + oh) * out_w + lo_w, 1, wv,
                              xf, ((b * c + c0 + ci) * h + yy) * wd + lo_w * sw - pw + j * dw, sw, hi_w - lo_w)


@njit(nogil=True, cache=True, fastmath={"reassoc", "contract"})
def _conv_direct_grad_w(x, gy, gw, sh, sw, ph, pw, dh, dw, groups, p0, p1):
    n, c, h, wd = x.shape
    o, cg, kh, kw = gw.shape
    og = o // groups
    out_h, out_w = gy.shape[2], gy.shape[3]
    xf, gyf = x.reshape(-1), gy.reshape(-1)
    for p in range(p0, p1):  # each weight element is summed by one iteration (reassociated: it vectorises)
        oc = p // cg
        ci = p % cg
        xc = (oc // og) * cg + ci  # its input channel
        for i in range(kh):
            lo_h, hi_h = _span(h, out_h, sh, ph, i * dh)
            for j in range(kw):
                lo_w, hi_w = _span(wd, out_w, sw, pw, j * dw)
                acc = 0.0
                for b in range(n):
                    for oh in range(lo_h, hi_h):
                        g0 = ((b * o + oc) * out_h + oh) * out_w + lo_w
                        x0 = ((b * c + xc) * h + oh * sh - ph + i * dh) * wd + lo_w * sw - pw + j * dw
                        for t in range(hi_w - lo_w):
                            acc += gyf[U(g0 + t)] * xf[U(x0 + t * sw)]
                gw[oc, ci, i, j] = acc


@njit(nogil=True, cache=True)
def _conv_direct_grad_x(gy, w, gx, sh, sw, ph, pw, dh, dw, groups, p0, p1):
    n, c, h, wd = gx.shape
    o, cg, kh, kw = w.shape
    og = o // groups
    out_h, out_w = gy.shape[2], gy.shape[3]
    gyf, gxf = gy.reshape(-1), gx.reshape(-1)
    for p in range(p0, p1):  # one input plane per iteration: its scatter cannot race
        b = p // c
        xc = p % c
        g = xc // cg
        ci = xc - g * cg  # its index within the group's weights
        _fill(gxf, p * h * wd, h * wd, 0)
        for oc in range(g * og, (g + 1) * og):
            for i in range(kh):
                lo_h, hi_h = _span(h, out_h, sh, ph, i * dh)
                for j in range(kw):
                    lo_w, hi_w = _span(wd, out_w, sw, pw, j * dw)
                    wv = w[oc, ci, i, j]
                    for oh in range(lo_h, hi_h):  # gx[b, xc, row, cols] += wv * gy[b, oc, oh, lo_w:hi_w]
                        yy = oh * sh - ph + i * dh
                        _axpy(gxf, (p * h + yy) * wd + lo_w * sw - pw + j * dw, sw, wv,
                              gyf, ((b * o + oc) * out_h + oh) * out_w + lo_w, 1, hi_w - lo_w)


# The direct convolution runs over whole padded planes (_numba_depthwise.py) at stride 1; the row kernels above run
# strided ones (measured: the wide planes computed 2x the outputs and read with a stride, and took 1.5-2x the row
# kernels' time: NOTES.md, change 54) and the input gradient of a weight that is not all finite (the wide planes
# would add 0 x inf). The row kernels skip padding: an inf weight or gradient meets no padding zero there.
def conv_direct(x, w, win, groups):
    """Direct convolution without a column matrix: for few input channels per group (incl. depthwise)."""
    if win.stride == (1, 1):
        return _depthwise.forward(x, w, win, groups)
    y = np.empty((x.shape[0], w.shape[0], win.oh, win.ow), dtype=x.dtype)
    _run(_conv_direct, y.shape[0] * y.shape[1], y.size * w[0].size, np.ascontiguousarray(x), np.ascontiguousarray(w), y,
         *win.stride, *win.padding, *win.dilation, groups)
    return y


def conv_direct_grad_w(x, gy, w_shape, win, groups):
    if win.stride == (1, 1):
        return _depthwise.grad_w(x, gy, w_shape, win, groups)
    gw = np.empty(w_shape, dtype=gy.dtype)
    _run(_conv_direct_grad_w, w_shape[0] * w_shape[1], 2 * gy.size * gw[0].size, np.ascontiguousarray(x),
         np.ascontiguousarray(gy), gw, *win.stride, *win.padding, *win.dilation, groups)
    return gw


def conv_direct_grad_x(gy, w, x_shape, win, groups):
    if win.stride == (1, 1) and np.isfinite(w).all():
        return _depthwise.grad_x(gy, w, x_shape, win, groups)
    gx = np.empty(x_shape, dtype=gy.dtype)
    _run(_conv_direct_grad_x, x_shape[0] * x_shape[1], gy.size * w[0].size, np.ascontiguousarray(gy),
         np.ascontiguousarray(w), gx, *win.stride, *win.padding, *win.dilation, groups)
    return gx


@njit(nogil=True, cache=True, fastmath={"reassoc", "contract"})
def _bn_stats(x3, mean, var, p0, p1):
    n, c, m = x3.shape
    xf = x3.reshape(-1)
    for ci in range(p0, p1):  # one channel per iteration; sums in float64 (reassociated: they vectorise)
        s = 0.0
        for b in range(n):
            x0 = (b * c + ci) * m
            for k in range(m):
                s += xf[U(x0 + k)]
        mu = s / (n * m)
        q = 0.0
        for b in range(n):
            x0 = (b * c + ci) * m
            for k in range(m):
                d = xf[U(x0 + k)] - mu
                q += d * d
        mean[ci] = mu
        var[ci] = q / (n * m)


def batch_norm_stats(x):
    """Per-channel mean and biased variance of (N, C, ...) in two passes over the data, float64 sums."""
    x3 = np.ascontiguousarray(x).reshape(x.shape[0], x.shape[1], -1)
    mean = np.empty(x.shape[1], dtype=np.float64)
    var = np.empty(x.shape[1], dtype=np.float64)
    _run(_bn_stats, x3.shape[1], x3.size, x3, mean, var)
    return mean.astype(x.dtype), var.astype(x.dtype)


@njit(nogil=True, cache=True)
def _bn_apply(x3, mean, invstd, w, b, y3, p0, p1):
    n, c, m = x3.shape
    xf, yf = x3.reshape(-1), y3.reshape(-1)
    for p in range(p0, p1):
        ci = p % c
        scale = invstd[ci] * w[ci]
        mu = mean[ci]
        shift = b[ci]
        for k in range(m):  # (x - mean) first: x * scale + (b - mean * scale) cancels for a large mean
            yf[U(p * m + k)] = (xf[U(p * m + k)] - mu) * scale + shift


def batch_norm_apply(x, mean, invstd, w, b):
    """y = (x - mean) * invstd * w + b in one pass."""
    x3 = np.ascontiguousarray(x).reshape(x.shape[0], x.shape[1], -1)
    y = np.empty(x.shape, dtype=x.dtype)
    _run(_bn_apply, x3.shape[0] * x3.shape[1], x3.size // 4, x3, mean, invstd, w, b, y.reshape(x3.shape))
    return y


@njit(nogil=True, cache=True, fastmath={"reassoc", "contract"})
def _bn_sums(x3, g3, mean, sg, sgx, p0, p1):
    n, c, m = x3.shape
    xf, gf = x3.reshape(-1), g3.reshape(-1)
    for ci in range(p0, p1):  # per channel: sum of g and of g * (x - mean), in float64 (reassociated)
        a = 0.0
        q = 0.0
        mu = mean[ci]
        for b in range(n):
            x0 = (b * c + ci) * m
            for k in range(m):
                g = gf[U(x0 + k)]
                a += g
                q += g * (xf[U(x0 + k)] - mu)
        sg[ci] = a
        sgx[ci] = q


@njit(nogil=True, cache=True)
def _bn_grad_x(x3, g3, mean, scale, a, bcoef, gx3, training, p0, p1):
    n, c, m = x3.shape
    xf, gf, gxf = x3.reshape(-1), g3.reshape(-1), gx3.reshape(-1)
    for p in range(p0, p1):  # one (sample, channel) row per iteration
        ci = p % c
        sc, ai, bi, mu = scale[ci], a[ci], bcoef[ci], mean[ci]
        if training:  # gx = scale * (g - mean(g) - xhat * mean(g * xhat))
            for k in range(m):
                gxf[U(p * m + k)] = sc * (gf[U(p * m + k)] - ai - (xf[U(p * m + k)] - mu) * bi)
        else:  # the statistics are constants: x does not enter
            for k in range(m):
                gxf[U(p * m + k)] = sc * gf[U(p * m + k)]


def batch_norm_backward(x, gy, mean, invstd, w, training):
    """gx, gw, gb of batch norm in two passes (sums, then gx), recomputing x - mean instead of storing xhat."""
    x3 = np.ascontiguousarray(x).reshape(x.shape[0], x.shape[1], -1)
    g3 = np.ascontiguousarray(gy).reshape(x3.shape)
    c, cnt = x3.shape[1], x3.shape[0] * x3.shape[2]
    sg, sgx = np.empty(c), np.empty(c)
    _run(_bn_sums, c, x3.size // 8, x3, g3, mean.astype(np.float64), sg, sgx)
    inv = invstd.astype(np.float64)
    scale = w * inv
    a, bcoef = sg / cnt, sgx * inv * inv / cnt
    gx = np.empty(x.shape, dtype=gy.dtype)
    _run(_bn_grad_x, x3.shape[0] * c, x3.size // 8, x3, g3, mean.astype(np.float64), scale, a, bcoef,
         gx.reshape(x3.shape), training)
    return gx, (sgx * inv).astype(gy.dtype), sg.astype(gy.dtype)


@njit(nogil=True, cache=True)
def _avg_pool2d(x, div, y, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w, p0, p1):
    n, c, h, w = x.shape
    xf, yf = x.reshape(-1), y.reshape(-1)
    for p in range(p0, p1):  # window sums over one plane per iteration, zero padding
        acc = np.empty(out_w)  # one output row, summed in float64 window offset by window offset
        for oh in range(out_h):
            acc[:] = 0.0
            for i in range(kh):
                yy = oh * sh - ph + i * dh
                if yy < 0 or yy >= h:
                    continue
                for j in range(kw):
                    lo, hi = _span(w, out_w, sw, pw, j * dw)
                    s = (p * h + yy) * w + lo * sw - pw + j * dw
                    for t in range(hi - lo):
                        acc[U(lo + t)] += xf[U(s + t * sw)]
            d = (p * out_h + oh) * out_w
            for ow in range(out_w):
                yf[U(d + ow)] = acc[U(ow)] / div[oh, ow]


@njit(nogil=True, cache=True)
def _avg_pool2d_backward(gy, div, gx, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w, p0, p1):
    n, c, h, w = gx.shape
    gyf, gxf = gy.reshape(-1), gx.reshape(-1)
    for p in range(p0, p1):  # one input plane per iteration: its scatter cannot race
        g = np.empty(out_w, dtype=gx.dtype)  # one row of gy / div
        _fill(gxf, p * h * w, h * w, 0)
        for oh in range(out_h):
            d = (p * out_h + oh) * out_w
            for ow in range(out_w):
                g[U(ow)] = gyf[U(d + ow)] / div[oh, ow]
            for i in range(kh):
                yy = oh * sh - ph + i * dh
                if yy < 0 or yy >= h:
                    continue
                for j in range(kw):
                    lo, hi = _span(w, out_w, sw, pw, j * dw)
                    _add_into(gxf, (p * h + yy) * w + lo * sw - pw + j * dw, sw, g, lo, hi - lo)


def avg_pool2d(x, div, win):
    """Window means with the (out_h, out_w) array of divisors ``div`` (torch's padding rules live there)."""
    y = np.empty((x.shape[0], x.shape[1], win.oh, win.ow), dtype=x.dtype)
    _run(_avg_pool2d, y.shape[0] * y.shape[1], 6 * y.size * win.kh * win.kw, np.ascontiguousarray(x),
         np.ascontiguousarray(div, dtype=np.float64), y, *win)
    return y


def avg_pool2d_backward(gy, div, shape, win):
    gx = np.empty(shape, dtype=gy.dtype)
    _run(_avg_pool2d_backward, shape[0] * shape[1], 6 * gy.size * win.kh * win.kw, np.ascontiguousarray(gy),
         np.ascontiguousarray(div, dtype=np.float64), gx, *win)
    return gx
