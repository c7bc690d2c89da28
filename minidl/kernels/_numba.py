"""CPU kernels compiled by Numba: parallel over independent rows or planes, so that every output
element is written by exactly one iteration (no atomics, no races). Same contracts as ``_numpy.py``."""
import math

import numpy as np
from numba import njit, prange, vectorize

from ._numpy import index_dtype


@njit(parallel=True, cache=True)
def _im2col(x, col, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w, pad_value):
    n, c, h, w = x.shape
    for r in prange(c * kh * kw):  # one row of the column matrix per iteration
        ci = r // (kh * kw)
        i = (r // kw) % kh
        j = r % kw
        for b in range(n):
            base = b * out_h * out_w
            for oh in range(out_h):
                y = oh * sh - ph + i * dh
                row = base + oh * out_w
                if y < 0 or y >= h:
                    for ow in range(out_w):
                        col[r, row + ow] = pad_value
                    continue
                for ow in range(out_w):
                    xx = ow * sw - pw + j * dw
                    col[r, row + ow] = x[b, ci, y, xx] if 0 <= xx < w else pad_value


def im2col(x, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w, pad_value=0.0):
    n, c, h, w = x.shape
    col = np.empty((c * kh * kw, n * out_h * out_w), dtype=x.dtype)
    _im2col(np.ascontiguousarray(x), col, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w,
            x.dtype.type(pad_value))
    return col


@njit(parallel=True, cache=True)
def _col2im(col, img, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w):
    n, c, h, w = img.shape
    for p in prange(n * c):  # one iteration owns one (n, c) plane: no two iterations write the same element
        b = p // c
        ci = p % c
        plane = img[b, ci]
        plane[:] = 0
        for i in range(kh):
            for j in range(kw):
                r = (ci * kh + i) * kw + j
                for oh in range(out_h):
                    y = oh * sh - ph + i * dh
                    if y < 0 or y >= h:
                        continue
                    base = (b * out_h + oh) * out_w
                    for ow in range(out_w):  # contiguous in col; stride sw in the image row
                        x = ow * sw - pw + j * dw
                        if 0 <= x < w:
                            plane[y, x] += col[r, base + ow]


def col2im(col, shape, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w):
    img = np.empty(shape, dtype=col.dtype)
    _col2im(np.ascontiguousarray(col), img, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w)
    return img


@njit(parallel=True, cache=True)
def _max_pool2d(x, y, arg, kh, kw, sh, sw, ph, pw, dh, dw):
    n, c, h, w = x.shape
    out_h, out_w = y.shape[2], y.shape[3]
    for p in prange(n * c):  # max and argmax in one pass over each plane
        b = p // c
        ci = p % c
        for oh in range(out_h):
            for ow in range(out_w):
                best = -np.inf
                where = -1
                for i in range(kh):
                    yy = oh * sh - ph + i * dh
                    if yy < 0 or yy >= h:
                        continue
                    for j in range(kw):
                        xx = ow * sw - pw + j * dw
                        if xx < 0 or xx >= w:
                            continue
                        v = x[b, ci, yy, xx]
                        if v > best or where == -1 or v != v:  # NaN wins (the last one, as torch)
                            best = v
                            where = yy * w + xx
                y[b, ci, oh, ow] = best
                arg[b, ci, oh, ow] = where


def max_pool2d(x, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w):
    n, c = x.shape[:2]
    y = np.empty((n, c, out_h, out_w), dtype=x.dtype)
    arg = np.empty((n, c, out_h, out_w), dtype=index_dtype(x.shape[2] * x.shape[3]))
    _max_pool2d(np.ascontiguousarray(x), y, arg, kh, kw, sh, sw, ph, pw, dh, dw)
    return y, arg


@njit(parallel=True, cache=True)
def _max_pool2d_backward(gy, arg, gx):
    n, c, out_h, out_w = gy.shape
    for p in prange(n * c):  # scatter within one plane, owned by one iteration
        b = p // c
        ci = p % c
        w = gx.shape[3]
        for oh in range(out_h):
            for ow in range(out_w):
                a = arg[b, ci, oh, ow]
                if a >= 0:
                    gx[b, ci, a // w, a % w] += gy[b, ci, oh, ow]


def max_pool2d_backward(gy, arg, shape):
    gx = np.zeros(shape, dtype=gy.dtype)
    _max_pool2d_backward(np.ascontiguousarray(gy), np.ascontiguousarray(arg), gx)
    return gx


@vectorize(["float32(float32)", "float64(float64)"], cache=True)
def _erf(x):
    return math.erf(x)


def erf(x):
    return _erf(x)


@njit(cache=True)
def _span(size, out, s, p, k_off):
    """Output positions o in [lo, hi) whose input position o*s - p + k_off lies inside [0, size)."""
    lo = max(0, (p - k_off + s - 1) // s)
    hi = min(out, (size - 1 + p - k_off) // s + 1)
    return lo, max(lo, hi)


@njit(parallel=True, cache=True)
def _conv_direct(x, w, y, sh, sw, ph, pw, dh, dw, groups):
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    og = o // groups
    out_h, out_w = y.shape[2], y.shape[3]
    for p in prange(n * o):  # one (sample, output channel) plane per iteration
        b = p // o
        oc = p % o
        c0 = (oc // og) * cg  # the first input channel of this output channel's group
        plane = y[b, oc]
        plane[:] = 0
        for ci in range(cg):
            for i in range(kh):
                lo_h, hi_h = _span(h, out_h, sh, ph, i * dh)
                for j in range(kw):
                    lo_w, hi_w = _span(wd, out_w, sw, pw, j * dw)
                    wv = w[oc, ci, i, j]
                    for oh in range(lo_h, hi_h):
                        yy = oh * sh - ph + i * dh
                        for ow in range(lo_w, hi_w):
                            plane[oh, ow] += wv * x[b, c0 + ci, yy, ow * sw - pw + j * dw]


@njit(parallel=True, cache=True)
def _conv_direct_grad_w(x, gy, gw, sh, sw, ph, pw, dh, dw, groups):
    n, c, h, wd = x.shape
    o, cg, kh, kw = gw.shape
    og = o // groups
    out_h, out_w = gy.shape[2], gy.shape[3]
    for p in prange(o * cg):  # each weight element is summed by one iteration
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
                        yy = oh * sh - ph + i * dh
                        for ow in range(lo_w, hi_w):
                            acc += gy[b, oc, oh, ow] * x[b, xc, yy, ow * sw - pw + j * dw]
                gw[oc, ci, i, j] = acc


@njit(parallel=True, cache=True)
def _conv_direct_grad_x(gy, w, gx, sh, sw, ph, pw, dh, dw, groups):
    n, c, h, wd = gx.shape
    o, cg, kh, kw = w.shape
    og = o // groups
    out_h, out_w = gy.shape[2], gy.shape[3]
    for p in prange(n * c):  # one input plane per iteration: its scatter cannot race
        b = p // c
        xc = p % c
        g = xc // cg
        ci = xc - g * cg  # its index within the group's weights
        plane = gx[b, xc]
        plane[:] = 0
        for oc in range(g * og, (g + 1) * og):
            for i in range(kh):
                lo_h, hi_h = _span(h, out_h, sh, ph, i * dh)
                for j in range(kw):
                    lo_w, hi_w = _span(wd, out_w, sw, pw, j * dw)
                    wv = w[oc, ci, i, j]
                    for oh in range(lo_h, hi_h):
                        yy = oh * sh - ph + i * dh
                        for ow in range(lo_w, hi_w):
                            plane[yy, ow * sw - pw + j * dw] += wv * gy[b, oc, oh, ow]


def conv_direct(x, w, stride, padding, dilation, groups, out_hw):
    """Direct convolution without a column matrix: for few input channels per group (incl. depthwise)."""
    y = np.empty((x.shape[0], w.shape[0], *out_hw), dtype=x.dtype)
    _conv_direct(np.ascontiguousarray(x), np.ascontiguousarray(w), y, *stride, *padding, *dilation, groups)
    return y


def conv_direct_grad_w(x, gy, w_shape, stride, padding, dilation, groups):
    gw = np.empty(w_shape, dtype=gy.dtype)
    _conv_direct_grad_w(np.ascontiguousarray(x), np.ascontiguousarray(gy), gw, *stride, *padding, *dilation,
                        groups)
    return gw


def conv_direct_grad_x(gy, w, x_shape, stride, padding, dilation, groups):
    gx = np.empty(x_shape, dtype=gy.dtype)
    _conv_direct_grad_x(np.ascontiguousarray(gy), np.ascontiguousarray(w), gx, *stride, *padding, *dilation,
                        groups)
    return gx


@njit(parallel=True, cache=True)
def _bn_stats(x3, mean, var):
    n, c, m = x3.shape
    for ci in prange(c):  # one channel per iteration; sums in float64
        s = 0.0
        for b in range(n):
            for k in range(m):
                s += x3[b, ci, k]
        mu = s / (n * m)
        q = 0.0
        for b in range(n):
            for k in range(m):
                d = x3[b, ci, k] - mu
                q += d * d
        mean[ci] = mu
        var[ci] = q / (n * m)


def batch_norm_stats(x):
    """Per-channel mean and biased variance of (N, C, ...) in two passes over the data, float64 sums."""
    x3 = np.ascontiguousarray(x).reshape(x.shape[0], x.shape[1], -1)
    mean = np.empty(x.shape[1], dtype=np.float64)
    var = np.empty(x.shape[1], dtype=np.float64)
    _bn_stats(x3, mean, var)
    return mean.astype(x.dtype), var.astype(x.dtype)


@njit(parallel=True, cache=True)
def _bn_apply(x3, mean, invstd, w, b, y3):
    n, c, m = x3.shape
    for ci in prange(c):
        scale = invstd[ci] * w[ci]
        mu = mean[ci]
        shift = b[ci]
        for bi in range(n):  # (x - mean) first: x * scale + (b - mean * scale) cancels for a large mean
            for k in range(m):
                y3[bi, ci, k] = (x3[bi, ci, k] - mu) * scale + shift


def batch_norm_apply(x, mean, invstd, w, b):
    """y = (x - mean) * invstd * w + b in one pass."""
    x3 = np.ascontiguousarray(x).reshape(x.shape[0], x.shape[1], -1)
    y = np.empty(x.shape, dtype=x.dtype)
    _bn_apply(x3, mean, invstd, w, b, y.reshape(x3.shape))
    return y


@njit(parallel=True, cache=True)
def _bn_backward(x3, g3, mean, invstd, w, gx3, gw, gb, training):
    n, c, m = x3.shape
    cnt = n * m
    for ci in prange(c):
        sg = 0.0
        sgx = 0.0
        for bi in range(n):
            for k in range(m):
                g = g3[bi, ci, k]
                sg += g
                sgx += g * (x3[bi, ci, k] - mean[ci])
        gb[ci] = sg
        gw[ci] = sgx * invstd[ci]
        scale = w[ci] * invstd[ci]
        if training:  # gx = scale * (g - mean(g) - xhat * mean(g * xhat))
            a = sg / cnt
            bcoef = sgx * invstd[ci] * invstd[ci] / cnt
            for bi in range(n):
                for k in range(m):
                    gx3[bi, ci, k] = scale * (g3[bi, ci, k] - a - (x3[bi, ci, k] - mean[ci]) * bcoef)
        else:
            for bi in range(n):
                for k in range(m):
                    gx3[bi, ci, k] = scale * g3[bi, ci, k]


def batch_norm_backward(x, gy, mean, invstd, w, training):
    """gx, gw, gb of batch norm in two passes (sums, then gx), recomputing x - mean instead of storing xhat."""
    x3 = np.ascontiguousarray(x).reshape(x.shape[0], x.shape[1], -1)
    g3 = np.ascontiguousarray(gy).reshape(x3.shape)
    gx = np.empty(x.shape, dtype=gy.dtype)
    gw = np.empty(x.shape[1], dtype=gy.dtype)
    gb = np.empty(x.shape[1], dtype=gy.dtype)
    _bn_backward(x3, g3, mean, invstd, w, gx.reshape(x3.shape), gw, gb, training)
    return gx, gw, gb


@njit(parallel=True, cache=True)
def _avg_pool2d(x, div, y, kh, kw, sh, sw, ph, pw):
    n, c, h, w = x.shape
    out_h, out_w = y.shape[2], y.shape[3]
    for p in prange(n * c):  # window sums over one plane per iteration, zero padding
        b = p // c
        ci = p % c
        for oh in range(out_h):
            y0 = max(oh * sh - ph, 0)
            y1 = min(oh * sh - ph + kh, h)
            for ow in range(out_w):
                x0 = max(ow * sw - pw, 0)
                x1 = min(ow * sw - pw + kw, w)
                acc = 0.0
                for yy in range(y0, y1):
                    for xx in range(x0, x1):
                        acc += x[b, ci, yy, xx]
                y[b, ci, oh, ow] = acc / div[oh, ow]


@njit(parallel=True, cache=True)
def _avg_pool2d_backward(gy, div, gx, kh, kw, sh, sw, ph, pw):
    n, c, h, w = gx.shape
    out_h, out_w = gy.shape[2], gy.shape[3]
    for p in prange(n * c):  # one input plane per iteration: its scatter cannot race
        b = p // c
        ci = p % c
        plane = gx[b, ci]
        plane[:] = 0
        for oh in range(out_h):
            y0 = max(oh * sh - ph, 0)
            y1 = min(oh * sh - ph + kh, h)
            for ow in range(out_w):
                x0 = max(ow * sw - pw, 0)
                x1 = min(ow * sw - pw + kw, w)
                g = gy[b, ci, oh, ow] / div[oh, ow]
                for yy in range(y0, y1):
                    for xx in range(x0, x1):
                        plane[yy, xx] += g


def avg_pool2d(x, div, kh, kw, sh, sw, ph, pw, out_h, out_w):
    """Window means with the (out_h, out_w) array of divisors ``div`` (torch's padding rules live there)."""
    y = np.empty((x.shape[0], x.shape[1], out_h, out_w), dtype=x.dtype)
    _avg_pool2d(np.ascontiguousarray(x), np.ascontiguousarray(div, dtype=np.float64), y, kh, kw, sh, sw, ph, pw)
    return y


def avg_pool2d_backward(gy, div, shape, kh, kw, sh, sw, ph, pw):
    gx = np.empty(shape, dtype=gy.dtype)
    _avg_pool2d_backward(np.ascontiguousarray(gy), np.ascontiguousarray(div, dtype=np.float64), gx, kh, kw, sh, sw,
                         ph, pw)
    return gx
