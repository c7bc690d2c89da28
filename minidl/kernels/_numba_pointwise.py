"""Numba kernels that work value by value or row by row, on the calling thread: relu and its backward, erf, the
LSTM's time step, and layer norm's rows. Part of ``_numba.py``'s contract (it imports them); apart so that each file
stays short.

Inner loops index flat arrays with unsigned offsets (``U``), as in ``_numba.py``: a signed index's wraparound check
keeps LLVM from vectorising a loop.
"""
import math

import numpy as np
from numba import njit, vectorize

from . import _numpy

U = np.uint64


@njit(nogil=True, cache=True)
def _relu(x, y, lo, hi):
    for i in range(U(lo), U(hi)):
        y[i] = x[i] if not x[i] < 0 else 0  # -0.0 and NaN stay, as torch's


# The elementwise kernels run on the calling thread: measured (NOTES.md, change 42), handing halves to minidl's
# worker thread never paid, from 32,768 float32 values (4 us on one thread, 30 us split: the wake-up) to 4 million
# (692 us against 762: memory-bound either way).
def relu(x):
    """One pass (NumPy's maximum is a NaN-aware loop: 114 us for LeNet-5's first activation at batch 64; this
    loop vectorises: 28 us)."""
    if not x.flags.c_contiguous:
        return _numpy.relu(x)  # NumPy keeps x's layout (channels_last)
    x1 = x.reshape(-1)
    y1 = np.empty_like(x1)
    _relu(x1, y1, 0, x1.size)
    return y1.reshape(x.shape)


@njit(nogil=True, cache=True)
def _relu_backward(gy, y, gx, lo, hi):
    for i in range(U(lo), U(hi)):
        gx[i] = gy[i] if not y[i] <= 0 else 0  # NaN passes its gradient, as torch


def relu_backward(gy, y):
    """One pass (NumPy's ``gy * ~(y <= 0)`` takes three, and a temporary), on the calling thread (see relu)."""
    if not (gy.flags.c_contiguous and y.flags.c_contiguous and y.dtype == gy.dtype):
        return _numpy.relu_backward(gy, y)  # NumPy keeps gy's layout (channels_last)
    g1, y1 = gy.reshape(-1), y.reshape(-1)
    x1 = np.empty_like(g1)
    _relu_backward(g1, y1, x1, 0, g1.size)
    return x1.reshape(gy.shape)


# ---- the LSTM's time step ---------------------------------------------------------------------------------------
# tanh as a rational function (Eigen's float32 approximation: odd degree 13 over even degree 6, inputs clamped to
# +-7.905..., where float32 tanh is +-1): plain multiply-adds and one division, which LLVM vectorises. libm's
# tanh, what Numba calls for math.tanh, is scalar, and cost the first Numba LSTM its speed (benchmarks/NOTES.md,
# changes 29 and 32). Largest error over float32's whole range, measured against float64 tanh: 2.4e-7 (NumPy's
# float32 tanh: 6e-8); tested in tests/test_kernels.py. float32 only: float64 runs the reference's exact tanh.
_TANH_CLAMP = np.float32(7.90531110763549805)
_TANH_P = tuple(np.float32(v) for v in (-2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11,
                                        5.12229709037114e-08, 1.48572235717979e-05, 6.37261928875436e-04,
                                        4.89352455891786e-03))
_TANH_Q = tuple(np.float32(v) for v in (1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03,
                                        4.89352518554385e-03))


@njit(cache=True, inline="always", error_model="numpy")
def _tanh32(x):
    x = min(max(x, -_TANH_CLAMP), _TANH_CLAMP)  # NaN stays NaN (min and max keep their first argument)
    x2 = x * x
    p = _TANH_P[0]
    for c in _TANH_P[1:]:
        p = p * x2 + c
    q = _TANH_Q[0]
    for c in _TANH_Q[1:]:
        q = q * x2 + c
    return x * p / q


@njit(nogil=True, cache=True, error_model="numpy")
def _lstm_forward_step32(a, a_in, t, hc, cs, gates, tc):
    # short loops over one row's contiguous blocks, each touching few arrays: with more, LLVM's runtime checks
    # that the arrays do not overlap exceed its limit and the loop stays scalar
    h = cs.shape[2]
    half = np.float32(0.5)
    for n in range(cs.shape[1]):
        ar, ain, gr = a[n], a_in[t, n], gates[t, n]
        for j in range(U(2 * h)):  # i, f
            gr[j] = half * _tanh32(half * (ar[j] + ain[j])) + half
        for j in range(U(2 * h), U(3 * h)):  # g
            gr[j] = _tanh32(ar[j] + ain[j])
        for j in range(U(3 * h), U(4 * h)):  # o
            gr[j] = half * _tanh32(half * (ar[j] + ain[j])) + half
        c_prev, c, tcr, hr = cs[t, n], cs[t + 1, n], tc[t, n], hc[t, n]
        for j in range(U(h)):
            c[j] = gr[h + j] * c_prev[j] + gr[j] * gr[2 * h + j]
        for j in range(U(h)):
            tcr[j] = _tanh32(c[j])
        for j in range(U(h)):
            hr[j] = gr[3 * h + j] * tcr[j]


def lstm_forward_step(a, a_in, t, hc, cs, gates, tc):
    """One pass over the step's (N, 4H) pre-activations instead of the reference's nine NumPy calls (float32)."""
    if a.dtype != np.float32 or not all(x.flags.c_contiguous for x in (a, a_in, hc, cs, gates, tc)):
        return _numpy.lstm_forward_step(a, a_in, t, hc, cs, gates, tc)
    _lstm_forward_step32(a, a_in, t, hc, cs, gates, tc)


@njit(nogil=True, cache=True)
def _lstm_backward_step(g, t, dh, dc, gates, tc, cs, da):
    h = cs.shape[2]
    d = np.empty(h, dtype=da.dtype)
    for n in range(cs.shape[1]):
        gr, tcr, c_prev, dcr, dar = gates[t, n], tc[t, n], cs[t, n], dc[n], da[t, n]
        dhr, gtr = dh[n], g[t, n]
        for j in range(U(h)):
            d[j] = dhr[j] + gtr[j]
        for j in range(U(h)):
            dcr[j] += d[j] * gr[3 * h + j] * (1 - tcr[j] * tcr[j])
        for j in range(U(h)):  # i
            dar[j] = dcr[j] * gr[2 * h + j] * gr[j] * (1 - gr[j])
        for j in range(U(h)):  # f
            dar[h + j] = dcr[j] * c_prev[j] * gr[h + j] * (1 - gr[h + j])
        for j in range(U(h)):  # g
            dar[2 * h + j] = dcr[j] * gr[j] * (1 - gr[2 * h + j] * gr[2 * h + j])
        for j in range(U(h)):  # o
            dar[3 * h + j] = d[j] * tcr[j] * gr[3 * h + j] * (1 - gr[3 * h + j])
        for j in range(U(h)):
            dcr[j] *= gr[h + j]


def lstm_backward_step(g, t, dh, dc, gates, tc, cs, da):
    """One pass per step (the reference: about fifteen NumPy calls); exact arithmetic, so float64 too."""
    arrays = (g, dh, dc, gates, tc, cs, da)
    if len({x.dtype for x in arrays}) > 1 or not all(x.flags.c_contiguous for x in arrays):
        return _numpy.lstm_backward_step(g, t, dh, dc, gates, tc, cs, da)
    _lstm_backward_step(g, t, dh, dc, gates, tc, cs, da)


# ---- layer norm, row by row -------------------------------------------------------------------------------------
# The reference takes about ten NumPy passes (95 us forward, 178 backward on the tiny GPT's (384, 48) rows against
# torch's 31 and 42: benchmarks/NOTES.md, change 60); here each row is read two or three times while it is in L1.
# Sums run in float64 with reassociation allowed (so that they vectorise) in their own functions; the elementwise
# formulas keep IEEE order.
@njit(cache=True, error_model="numpy", fastmath={"reassoc", "contract"})
def _dev_sums(x, r, m):
    """(sum of x[r] - m, sum of (x[r] - m)^2) in float64."""
    s1 = s2 = 0.0
    for j in range(U(x.shape[1])):
        d = x[r, j] - m
        s1 += d
        s2 += d * d
    return s1, s2


@njit(nogil=True, cache=True, error_model="numpy")
def _layer_norm_rows(x, w, b, eps, y, mean, invstd):
    n = x.shape[1]
    for r in range(x.shape[0]):
        m = _dev_sums(x, r, 0.0)[0] / n
        inv = 1.0 / math.sqrt(_dev_sums(x, r, m)[1] / n + eps)
        for j in range(U(n)):
            y[r, j] = (x[r, j] - m) * inv * w[j] + b[j]
        mean[r, 0], invstd[r, 0] = m, inv


def layer_norm_rows(x, w, b, eps):
    """Two sums and one pass per row (weight 1 and bias 0 stand in for absent ones: x 1 + 0 is exact). x is float32
    or float64: kernels._impl sends no other dtype here."""
    x = np.ascontiguousarray(x)
    n = x.shape[1]
    w = np.ones(n) if w is None else np.ascontiguousarray(w)
    b = np.zeros(n) if b is None else np.ascontiguousarray(b)
    y, mean, invstd = np.empty_like(x), np.empty((x.shape[0], 1), x.dtype), np.empty((x.shape[0], 1), x.dtype)
    _layer_norm_rows(x, w, b, float(eps), y, mean, invstd)
    return y, mean, invstd


@njit(cache=True, error_model="numpy", fastmath={"reassoc", "contract"})
def _grad_sums(g, x, w, r, m, inv):
    """(sum of g w, sum of g w xhat) over row r, in float64."""
    s1 = s2 = 0.0
    for j in range(U(g.shape[1])):
        gw = np.float64(g[r, j]) * w[j]
        s1 += gw
        s2 += gw * ((x[r, j] - m) * inv)
    return s1, s2


@njit(nogil=True, cache=True, error_model="numpy")
def _layer_norm_rows_backward(g, x, w, mean, invstd, gx, sw, sb):
    n = g.shape[1]
    for r in range(g.shape[0]):
        m, inv = np.float64(mean[r, 0]), np.float64(invstd[r, 0])
        s1, s2 = _grad_sums(g, x, w, r, m, inv)
        a, c = s1 / n, s2 / n
        for j in range(U(n)):
            xhat = (x[r, j] - m) * inv
            gj = np.float64(g[r, j])
            gx[r, j] = inv * (gj * w[j] - a - xhat * c)
            sw[j] += gj * xhat
            sb[j] += gj


def layer_norm_rows_backward(g, x, w, mean, invstd):
    """One pass for each row's two sums, one for gx and the column sums (on the calling thread)."""
    if not g.dtype == x.dtype == mean.dtype == invstd.dtype:  # (g float32 or float64: kernels._impl)
        return _numpy.layer_norm_rows_backward(g, x, w, mean, invstd)
    g, x = np.ascontiguousarray(g), np.ascontiguousarray(x)
    w = np.ones(g.shape[1]) if w is None else np.ascontiguousarray(w)
    gx, sw, sb = np.empty_like(g), np.zeros(g.shape[1]), np.zeros(g.shape[1])
    _layer_norm_rows_backward(g, x, w, mean, invstd, gx, sw, sb)
    return gx, sw.astype(g.dtype), sb.astype(g.dtype)


# ---- erf ----------------------------------------------------------------------------------------------------------
# libm's erf (what math.erf calls) is scalar: 717 us on 73,728 float32 values here. float32 computes instead, in
# float64, erf(x) = x P(x^2 / 8 - 1) with x clamped to [-4, 4] (beyond, float32's erf is +-1): P of degree 20 is
# the Chebyshev interpolant of erf(sqrt(u)) / sqrt(u) on u in [0, 16] (truncation 5e-12, so relative, also near
# 0), fused multiply-adds that LLVM vectorises: 94 us. Measured over every float32 (the negative ones are the
# positive ones' mirror by construction): within 0.50024 ulp of erf (1 ulp from libm's erf rounded once where erf lies
# within 0.00024 ulp of a rounding boundary; change 59); tested in tests/test_gelu_function.py.
# float64 keeps libm's erf. Both serial: split across two threads (blas.split), neither was measurably faster at
# 73,728 values on the 2 shared cores (NOTES.md, change 41).
_ERF_P = (  # the monomial coefficients of P, highest degree first
    1.3255524208235963e-05, -3.671410208775849e-05, 3.107438403556471e-05,
    -7.231684146846917e-05, 0.00029918099813068245, -0.0006730865484744391,
    0.0012723241962619173, -0.002530356530716061, 0.0048646275161597545,
    -0.0086300377496573, 0.01434573702566114, -0.02246618342540271,
    0.0330614691469806, -0.04576648194937769, 0.059886799544183154,
    -0.07472772607116117, 0.09020900091646347, -0.10771044904000053,
    0.13167511672365362, -0.17657623321207172, 0.353530995644115)


@njit(cache=True, inline="always", error_model="numpy", fastmath={"contract"})
def _erf32(x):
    x = min(max(np.float64(x), -4.0), 4.0)  # NaN stays NaN (min and max keep their first argument)
    s = x * x * 0.125 - 1.0
    # P(s) by Estrin's scheme: pairs of coefficients, then pairs of pairs with s^2, s^4, s^8, s^16. Horner's rule
    # is one chain of 20 dependent multiply-adds, and the vectorised loop waited on it (262 us against 94 here,
    # change 59); written out, since a loop over the tuple is not unrolled and then does not vectorise.
    c = _ERF_P  # highest degree first: c[20 - k] multiplies s^k
    s2 = s * s
    s4 = s2 * s2
    s8 = s4 * s4
    e0, e1, e2 = c[20] + c[19] * s, c[18] + c[17] * s, c[16] + c[15] * s
    e3, e4, e5 = c[14] + c[13] * s, c[12] + c[11] * s, c[10] + c[9] * s
    e6, e7, e8, e9 = c[8] + c[7] * s, c[6] + c[5] * s, c[4] + c[3] * s, c[2] + c[1] * s
    f0, f1, f2, f3, f4 = e0 + e1 * s2, e2 + e3 * s2, e4 + e5 * s2, e6 + e7 * s2, e8 + e9 * s2  # s^0..s^19 in 4s
    g0, g1, g2 = f0 + f1 * s4, f2 + f3 * s4, f4 + c[0] * s4  # s^0..s^7, s^8..s^15, s^16..s^20
    return np.float32(x * (g0 + g1 * s8 + g2 * (s8 * s8)))


@njit(nogil=True, cache=True, error_model="numpy", fastmath={"contract"})
def _erf_range32(x, out):
    for i in range(U(x.size)):
        out[i] = _erf32(x[i])


@vectorize(["float64(float64)"], cache=True)
def _erf64(x):
    return math.erf(x)


def erf(x):
    if x.dtype != np.float32:
        return _erf64(x)
    x1 = np.ascontiguousarray(x).reshape(-1)
    out = np.empty_like(x1)
    _erf_range32(x1, out)
    return out.reshape(x.shape)
