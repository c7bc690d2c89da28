"""CPU kernels compiled by Numba: parallel over independent rows or planes, so that every output
element is written by exactly one iteration (no atomics, no races). Same contracts as ``_numpy.py``."""
import math

import numpy as np
from numba import njit, prange, vectorize


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
    for p in prange(n * c):  # a gather: each image element is summed by the one iteration owning its plane
        b = p // c
        ci = p % c
        for y in range(h):
            for xx in range(w):
                acc = 0.0
                for i in range(kh):
                    t = y + ph - i * dh
                    if t < 0 or t % sh != 0:
                        continue
                    oh = t // sh
                    if oh >= out_h:
                        continue
                    for j in range(kw):
                        u = xx + pw - j * dw
                        if u < 0 or u % sw != 0:
                            continue
                        ow = u // sw
                        if ow >= out_w:
                            continue
                        acc += col[(ci * kh + i) * kw + j, (b * out_h + oh) * out_w + ow]
                img[b, ci, y, xx] = acc


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
                        if v > best or where == -1:
                            best = v
                            where = yy * w + xx
                y[b, ci, oh, ow] = best
                arg[b, ci, oh, ow] = where


def max_pool2d(x, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w):
    n, c = x.shape[:2]
    y = np.empty((n, c, out_h, out_w), dtype=x.dtype)
    arg = np.empty((n, c, out_h, out_w), dtype=np.int64)
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
