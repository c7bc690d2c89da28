"""Numba kernels for convolutions with few input channels per group (depthwise and grouped: MobileNet's and
ShuffleNet's 3x3 depthwise layers), over whole zero-padded planes. Part of ``_numba.py``'s contract (its
``conv_direct`` functions call these for stride 1); apart so that each file stays short.

The row kernels in ``_numba.py`` run one short loop per (output row, tap): on a 16x16 map, 16 values, and the
loop's set-up costs more than its work (a forward at 5-10x torch's time, benchmarks/NOTES.md change 54). Here the
input is copied once into a zero frame of its padding, each plane row ``wp`` values long, and the output is computed
"wide": output pixel (oh, ow) sits at t = oh * wp + ow of a plane of ``out_h * wp`` values, and tap (i, j) reads the
padded input at ``t + i * dh * wp + j * dw`` for every t. One loop of ``out_h * wp`` values per tap: it runs long
and vectorises. The columns ow >= out_w of a wide row read across the row's end; they are computed and dropped
(forward), or hold zeros in the upstream gradient (backward), so the products that reach a real output or gradient
are exactly im2col's: padding is multiplied as im2col and torch multiply it (an inf weight on a tap that reads
padding gives NaN there, as theirs). The zeros of those dropped columns meet real inputs in the weight gradient
(0 x inf = NaN where torch has a number) and real weights in the input gradient: a weight-gradient sum that comes out
NaN is summed again over the real columns only (``_exact_grad_w``), and ``_numba.py`` runs the row kernel for the
input gradient of a weight that is not all finite.

Each iteration copies its planes into scratch buffers of its own (a padded input plane, ``sx`` values with the tail
the wide loops' last reads and writes reach: ``_frame``; a wide output plane) and copies the result out: measured,
doing those copies in NumPy around the kernel cost as much as the kernel (0.4 ms each for a (64, 64, 16, 16) input).
"""
import numpy as np
from numba import njit

from .blas import split

U = np.uint64


def _run(kernel, n, items, *args):
    return split(n, lambda _, lo, hi: kernel(*args, lo, hi), items=items)


def _frame(shape, win):
    """(rows, wp, stride of a plane): the padded plane of an input of ``shape`` (as far as the windows reach: with
    the taps that read only padding dropped, a window can reach past the padding after the map: kernels/conv.py),
    and the span a plane is given, which the wide loops' last reads reach."""
    h, w = shape[2:]
    rows = max(h + 2 * win.ph, win.oh + (win.kh - 1) * win.dh)
    wp = max(w + 2 * win.pw, win.ow + (win.kw - 1) * win.dw)
    reach = win.oh * wp + (win.kh - 1) * win.dh * wp + (win.kw - 1) * win.dw
    return rows, wp, max(rows * wp, reach)


@njit(cache=True, inline='always')
def _load(dst, d, wp, src, s, h, w):
    """dst[d + r * wp + q] = src[s + r * w + q]: an (h, w) plane into a wider one."""
    for r in range(h):
        for q in range(U(w)):
            dst[U(d + r * wp) + q] = src[U(s + r * w) + q]


@njit(cache=True, inline='always')
def _taps(dst, a, src, wp, py, dh, dw, first):
    """dst[t] (+)= a[i, j] src[t + i dh wp + j dw] over t < py, for every tap (i, j) of ``a``."""
    kh, kw = a.shape
    for i in range(kh):
        for j in range(kw):
            wv = a[i, j]
            src0 = U(i * dh * wp + j * dw)
            if first:
                first = False
                for t in range(U(py)):
                    dst[t] = wv * src[src0 + t]
            else:
                for t in range(U(py)):
                    dst[t] += wv * src[src0 + t]


@njit(nogil=True, cache=True)
def _forward(x, w, y, wp, sx, ph, pw, dh, dw, groups, p0, p1):
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    out_h, out_w = y.shape[2], y.shape[3]
    og = o // groups
    py = out_h * wp
    xf, yf = x.reshape(-1), y.reshape(-1)
    xs = np.zeros(sx, dtype=x.dtype)  # the padded input plane: its frame stays zero, its interior is rewritten
    ys = np.empty(py, dtype=x.dtype)  # the wide output plane
    for p in range(p0, p1):  # one (sample, output channel) plane per iteration
        b = p // o
        oc = p - b * o
        c0 = (oc // og) * cg  # the first input channel of this output channel's group
        for ci in range(cg):
            _load(xs, ph * wp + pw, wp, xf, (b * c + c0 + ci) * h * wd, h, wd)
            _taps(ys, w[oc, ci], xs, wp, py, dh, dw, ci == 0)
        for r in range(out_h):  # its first out_w columns
            for q in range(U(out_w)):
                yf[U((p * out_h + r) * out_w) + q] = ys[U(r * wp) + q]


def forward(x, w, win, groups):
    n, c = x.shape[:2]
    _, wp, sx = _frame(x.shape, win)
    y = np.empty((n, w.shape[0], win.oh, win.ow), dtype=x.dtype)
    _run(_forward, n * w.shape[0], y.size * w[0].size, np.ascontiguousarray(x), np.ascontiguousarray(w), y, wp, sx,
         win.ph, win.pw, win.dh, win.dw, groups)
    return y


@njit(nogil=True, cache=True)
def _grad_x(gy, w, gx, wp, sx, ph, pw, dh, dw, groups, p0, p1):
    n, c, h, wd = gx.shape
    o, cg, kh, kw = w.shape
    out_h, out_w = gy.shape[2], gy.shape[3]
    og = o // groups
    py = out_h * wp
    gyf, gxf = gy.reshape(-1), gx.reshape(-1)
    gs = np.zeros(py, dtype=gy.dtype)  # a wide upstream plane: its dropped columns stay zero
    xs = np.empty(sx, dtype=gy.dtype)  # the padded input plane's gradient
    for p in range(p0, p1):  # one input plane per iteration
        b = p // c
        xc = p - b * c
        g = xc // cg
        ci = xc - g * cg  # its index within the group's weights
        for t in range(U(sx)):
            xs[t] = 0
        for oc in range(g * og, (g + 1) * og):
            _load(gs, 0, wp, gyf, (b * o + oc) * out_h * out_w, out_h, out_w)
            for i in range(kh):  # scatter: xs[t + i dh wp + j dw] += w gs[t]
                for j in range(kw):
                    wv = w[oc, ci, i, j]
                    d0 = U(i * dh * wp + j * dw)
                    for t in range(U(py)):
                        xs[d0 + t] += wv * gs[t]
        for r in range(h):  # the interior
            for q in range(U(wd)):
                gxf[U((p * h + r) * wd) + q] = xs[U((r + ph) * wp + pw) + q]


def grad_x(gy, w, x_shape, win, groups):
    """The input's gradient: each wide upstream plane (zeros in its dropped columns) scattered through each tap into
    the padded input plane, whose interior is kept. Exact where w is all finite (the dropped columns add 0 x w)."""
    _, wp, sx = _frame(x_shape, win)
    gx = np.empty(x_shape, dtype=gy.dtype)
    _run(_grad_x, x_shape[0] * x_shape[1], gy.size * w[0].size, np.ascontiguousarray(gy), np.ascontiguousarray(w),
         gx, wp, sx, win.ph, win.pw, win.dh, win.dw, groups)
    return gx


@njit(nogil=True, cache=True, fastmath={"reassoc", "contract"})
def _grad_w(x, gy, gw, wp, sx, ph, pw, dh, dw, groups, p0, p1):
    n, c, h, wd = x.shape
    o, cg, kh, kw = gw.shape
    out_h, out_w = gy.shape[2], gy.shape[3]
    og = o // groups
    py = out_h * wp
    xf, gyf = x.reshape(-1), gy.reshape(-1)
    xs = np.zeros(sx, dtype=x.dtype)
    gs = np.zeros(py, dtype=x.dtype)
    acc = np.empty((kh, kw), dtype=np.float64)
    for p in range(p0, p1):  # each (output channel, input channel of its group) per iteration, its taps summed
        oc = p // cg
        ci = p - oc * cg
        xc = (oc // og) * cg + ci  # its input channel
        acc[:] = 0
        for b in range(n):
            _load(xs, ph * wp + pw, wp, xf, (b * c + xc) * h * wd, h, wd)
            _load(gs, 0, wp, gyf, (b * o + oc) * out_h * out_w, out_h, out_w)
            for i in range(kh):
                for j in range(kw):
                    x0 = U(i * dh * wp + j * dw)
                    a = 0.0
                    for t in range(U(py)):  # reassociated: it vectorises
                        a += gs[t] * xs[x0 + t]
                    acc[i, j] += a
        for i in range(kh):
            for j in range(kw):
                if acc[i, j] != acc[i, j]:  # NaN: perhaps 0 x inf of a dropped column; summed over the real ones
                    acc[i, j] = 0
                    for b in range(n):
                        _load(xs, ph * wp + pw, wp, xf, (b * c + xc) * h * wd, h, wd)
                        for r in range(out_h):
                            for q in range(out_w):
                                acc[i, j] += gyf[U(((b * o + oc) * out_h + r) * out_w + q)] * \
                                    xs[U((r + i * dh) * wp + q + j * dw)]
                gw[oc, ci, i, j] = acc[i, j]


def grad_w(x, gy, w_shape, win, groups):
    """The weight's gradient: per tap, the dot product of the wide upstream planes with the padded input planes read
    through that tap, summed over the batch."""
    _, wp, sx = _frame(x.shape, win)
    gw = np.empty(w_shape, dtype=gy.dtype)
    _run(_grad_w, w_shape[0] * w_shape[1], 2 * gy.size * gw[0].size, np.ascontiguousarray(x), np.ascontiguousarray(gy),
         gw, wp, sx, win.ph, win.pw, win.dh, win.dw, groups)
    return gw
