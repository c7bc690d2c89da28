"""Reference kernels in plain array code: readable, correct, and device-generic (``xp`` is NumPy or
CuPy). The Numba kernels in ``_numba.py`` are tested against these.

Column layout used by convolution and pooling: ``col[c, i, j, n, oh, ow]`` is input element
``x[n, c, oh*sh - ph + i*dh, ow*sw - pw + j*dw]`` (or ``pad_value`` outside the input); it is returned
as a 2-D matrix of shape ``(C*kh*kw, N*out_h*out_w)`` so that a convolution is one GEMM.
"""
import math

import numpy as np

from ..backend import get_array_module

NOT_PROVIDED = {  # names of kernels/__init__.py's CONTRACT this module does not define, and why
    "conv_direct": "the reference convolution is im2col + GEMM (kernels/conv.py): has_direct_conv is False for these "
                   "arrays, so the tuner never offers 'direct'",
    "conv_direct_grad_w": "as conv_direct",
    "conv_direct_grad_x": "as conv_direct",
}


def _extra(size, pad, k, s, d, out):
    """Padding needed after the input so that every window of ``out`` positions fits."""
    return max(0, (out - 1) * s + d * (k - 1) + 1 - size - pad)


def _padded_shape(shape, win):
    """(N, C, H, W) grown by the padding before (ph, pw) and as much after as the last window needs."""
    n, c, h, w = shape
    return (n, c, h + win.ph + _extra(h, win.ph, win.kh, win.sh, win.dh, win.oh),
            w + win.pw + _extra(w, win.pw, win.kw, win.sw, win.dw, win.ow))


def _tap(img, win, i, j):
    """The (i, j) tap of every window: the (N, C, oh, ow) view of the padded image that kernel element (i, j)
    reads as the windows slide (rows i*dh, i*dh + sh, ...; columns likewise)."""
    return img[:, :, i * win.dh:i * win.dh + win.sh * (win.oh - 1) + 1:win.sh,
               j * win.dw:j * win.dw + win.sw * (win.ow - 1) + 1:win.sw]


def im2col(x, win, pad_value=0.0):
    """Every window of x (N, C, H, W), described by ``win`` (a kernels.Window), as a column:
    returns (C*kh*kw, N*oh*ow). Pad, then copy one kernel tap of all windows at a time."""
    xp = get_array_module(x)
    n, c, h, w = x.shape
    xpad = xp.full(_padded_shape(x.shape, win), pad_value, dtype=x.dtype)
    xpad[:, :, win.ph:win.ph + h, win.pw:win.pw + w] = x
    col = xp.empty((c, win.kh, win.kw, n, win.oh, win.ow), dtype=x.dtype)
    for i in range(win.kh):
        for j in range(win.kw):
            col[:, i, j] = _tap(xpad, win, i, j).transpose(1, 0, 2, 3)
    return col.reshape(c * win.kh * win.kw, n * win.oh * win.ow)


def col2im(col, shape, win):
    """The adjoint of im2col: every column entry is added back to the input element it came from."""
    xp = get_array_module(col)
    n, c, h, w = shape
    img = xp.zeros(_padded_shape(shape, win), dtype=col.dtype)
    col = col.reshape(c, win.kh, win.kw, n, win.oh, win.ow)
    for i in range(win.kh):
        for j in range(win.kw):
            _tap(img, win, i, j)[...] += col[:, i, j].transpose(1, 0, 2, 3)
    return xp.ascontiguousarray(img[:, :, win.ph:win.ph + h, win.pw:win.pw + w])


def max_pool2d(x, win):
    """Max and argmax (flat index into each input plane, -1 for a window of padding only)."""
    xp = get_array_module(x)
    n, c, h, w = x.shape
    col = im2col(x.reshape(n * c, 1, h, w), win, -np.inf)  # (kh*kw, N*C*oh*ow)
    k = argmax_nan_last(col, 0)
    y = col[k, xp.arange(col.shape[1])]
    # turn the window offset k = i*kw + j into the input position
    oh = xp.arange(win.oh).reshape(1, win.oh, 1)
    ow = xp.arange(win.ow).reshape(1, 1, win.ow)
    k = k.reshape(n * c, win.oh, win.ow)
    hh = oh * win.sh - win.ph + (k // win.kw) * win.dh
    ww = ow * win.sw - win.pw + (k % win.kw) * win.dw
    arg = xp.where(xp.isneginf(y.reshape(k.shape)) & ((hh < 0) | (hh >= h) | (ww < 0) | (ww >= w)), -1, hh * w + ww)
    return y.reshape(n, c, win.oh, win.ow), arg.reshape(n, c, win.oh, win.ow).astype(index_dtype(h * w))


def index_dtype(plane_size):
    """The smallest integer type for flat indices into a plane of ``plane_size`` elements (and -1): max
    pooling keeps one per output element until backward (int16 for maps up to 181x181, else int32)."""
    return np.dtype(np.int16 if plane_size < 2 ** 15 else np.int32 if plane_size < 2 ** 31 else np.int64)


def argmax_nan_last(a, axis):
    """argmax along ``axis`` where NaN is the largest value and the last NaN wins, as torch's pooling."""
    xp = get_array_module(a)
    k = a.argmax(axis=axis)
    nan = xp.isnan(a)
    if xp is np and not nan.any():  # (on a device, asking would copy to the host)
        return k
    last = a.shape[axis] - 1 - xp.flip(nan, axis=axis).argmax(axis=axis)
    return xp.where(nan.any(axis=axis), last, k)


def max_pool2d_backward(gy, arg, shape, win=None):
    xp = get_array_module(gy)
    n, c, h, w = shape
    gx = xp.zeros((n * c, h * w), dtype=gy.dtype)
    plane = xp.repeat(xp.arange(n * c), arg[0, 0].size)
    a = arg.reshape(-1)
    ok = a >= 0
    index_add(gx, (plane[ok], a[ok]), gy.reshape(-1)[ok])
    return gx.reshape(shape)


def relu(x):
    """max(x, 0) as torch's: negatives become 0; -0.0, NaN and +inf stay as they are."""
    y = x.copy(order="K")  # x's layout kept (channels_last stays channels_last)
    y[x < 0] = 0
    return y


def relu_backward(gy, y):
    return gy * ~(y <= 0)


def _gate_scales(xp, h, dtype):
    """0.5 for the sigmoid gates (i, f, o), 1 for the cell gate g: sigmoid(x) = 0.5 tanh(x / 2) + 0.5, so one tanh
    covers all four (torch's order i, f, g, o)."""
    half = xp.full(4 * h, 0.5, dtype=dtype)
    half[2 * h:3 * h] = 1
    return half, (half == 0.5) * half


def lstm_forward_step(a, a_in, t, hc, cs, gates, tc):
    """One LSTM time step after the recurrent product. a (N, 4H): h_{t-1} W_hh^T (scratch: overwritten); a_in
    (L, N, 4H): the input products and both biases; writes the activated gates[t] (i, f, g, o), c_t into
    cs[t + 1] (cs[t] is c_{t-1}), tanh(c_t) into tc[t] and h_t into hc[t]."""
    xp = get_array_module(a)
    h = cs.shape[-1]
    half, shift = _gate_scales(xp, h, a.dtype)
    a += a_in[t]
    a *= half
    g = gates[t]
    xp.tanh(a, out=g)
    g *= half
    g += shift
    c = cs[t + 1]
    xp.multiply(g[:, h:2 * h], cs[t], out=c)
    c += g[:, :h] * g[:, 2 * h:3 * h]
    xp.tanh(c, out=tc[t])
    xp.multiply(g[:, 3 * h:], tc[t], out=hc[t])


def lstm_backward_step(g, t, dh, dc, gates, tc, cs, da):
    """Backpropagation through LSTM step t. g (L + 1, N, H): the gradient of every h_t and (row L) of c_L; dh
    (N, H): the gradient reaching h_t through step t + 1 (read); dc (N, H): the gradient of c_t, updated in place
    to that of c_{t-1}; writes the gates' pre-activation gradients into da[t]."""
    h = cs.shape[-1]
    i, f, gg, o = (gates[t][:, k * h:(k + 1) * h] for k in range(4))
    d = dh + g[t]
    dc += d * o * (1 - tc[t] * tc[t])
    out = da[t]
    out[:, :h] = dc * gg * i * (1 - i)
    out[:, h:2 * h] = dc * cs[t] * f * (1 - f)
    out[:, 2 * h:3 * h] = dc * i * (1 - gg * gg)
    out[:, 3 * h:] = d * tc[t] * o * (1 - o)
    dc *= f


def erf(x):
    xp = get_array_module(x)
    if xp is not np:
        import cupyx.scipy.special
        return cupyx.scipy.special.erf(x)
    return np.vectorize(math.erf, otypes=[x.dtype])(x) if x.size else x.copy()


def _add_rows(out, rows, values):
    """``out[rows] += values`` for one integer array of row indices, repeats adding up (an embedding's gradient):
    the values sorted by row (stably: each row's values keep their order), summed per row, added once per row.
    np.add.at does the same one value at a time (162 us against 28 for minGPT's (64, 6) tokens into 10 rows)."""
    flat = rows.reshape(-1).astype(np.intp, copy=False)  # (an int8 key and 40,000 rows: flat + n must not overflow)
    flat = np.where(flat < 0, flat + out.shape[0], flat)  # -1 and n-1 are one row
    order = np.argsort(flat, kind="stable")
    ordered = flat[order]
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    sums = np.add.reduceat(values.reshape(flat.size, -1)[order], starts, axis=0)
    out[ordered[starts]] += sums.reshape((len(starts),) + out.shape[1:]).astype(out.dtype, copy=False)


def basic_index(key):
    """Whether ``key`` is basic indexing (ints, slices, None, Ellipsis): every position it selects appears once."""
    return not any(hasattr(k, "shape") or isinstance(k, list) for k in (key if isinstance(key, tuple) else (key,)))


def index_add(out, key, values):
    """``out[key] += values`` where repeated indices add up."""
    xp = get_array_module(out)
    keys = key if isinstance(key, tuple) else (key,)
    if basic_index(key):
        out[key] += values  # basic indexing: every position appears once
    elif xp is np and len(keys) == 1 and isinstance(key, np.ndarray) and key.dtype.kind in "iu" and key.size:
        _add_rows(out, key, values)
    elif xp is np:
        np.add.at(out, key, values)
    else:
        import cupyx
        cupyx.scatter_add(out, key, values)


def scatter_add_along(out, index, src, dim):
    """``out[..., index[...], ...] += src`` along ``dim`` (the adjoint of take_along_axis)."""
    xp = get_array_module(out)
    idx = list(xp.ix_(*[xp.arange(s) for s in index.shape]))
    idx[dim] = index
    index_add(out, tuple(idx), src)


def batch_norm_stats(x):
    axes = (0,) + tuple(range(2, x.ndim))  # float64 sums, as the Numba kernel (and torch's accumulators)
    mean = x.mean(axis=axes, dtype=np.float64)
    xc = x - mean.reshape((1, -1) + (1,) * (x.ndim - 2))
    return mean.astype(x.dtype), (xc * xc).mean(axis=axes).astype(x.dtype)


def batch_norm_apply(x, mean, invstd, w, b):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    scale = invstd * w
    return (x - mean.reshape(shape)) * scale.reshape(shape) + b.reshape(shape)  # no cancellation at a large mean


def batch_norm_backward(x, gy, mean, invstd, w, training):
    """The one-formula backward: gx = w invstd (g - mean(g) - xhat mean(g xhat))."""
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    xhat = (x - mean.reshape(shape)) * invstd.reshape(shape)
    gb = gy.sum(axis=axes)
    gw = (gy * xhat).sum(axis=axes)
    scale = (w * invstd).reshape(shape)
    if not training:
        return gy * scale, gw, gb
    m = gy.size // gy.shape[1]
    return scale * (gy - (gb / m).reshape(shape) - xhat * (gw / m).reshape(shape)), gw, gb


def layer_norm_rows(x, w, b, eps):
    """Row by row: xhat = (x - mean) / sqrt(var + eps), y = xhat w + b, in float64 (the Numba kernel's sums)."""
    mean = x.mean(axis=1, keepdims=True, dtype=np.float64)
    xc = x - mean
    invstd = 1.0 / get_array_module(x).sqrt((xc * xc).mean(axis=1, keepdims=True) + eps)
    y = xc * invstd
    if w is not None:
        y *= w
    if b is not None:
        y += b
    return y.astype(x.dtype), mean.astype(x.dtype), invstd.astype(x.dtype)


def layer_norm_rows_backward(g, x, w, mean, invstd):
    """gx = invstd (gw - mean(gw) - xhat mean(gw xhat)) per row with gw = g w; the sums over rows of g xhat and g."""
    xhat = (x - mean.astype(np.float64)) * invstd.astype(np.float64)
    g64 = g.astype(np.float64)
    gws = g64 * w if w is not None else g64
    gx = gws - gws.mean(axis=1, keepdims=True)
    gx -= xhat * (gws * xhat).mean(axis=1, keepdims=True)
    gx *= invstd
    return gx.astype(g.dtype), (g64 * xhat).sum(axis=0).astype(g.dtype), g64.sum(axis=0).astype(g.dtype)


def avg_pool2d(x, div, win):
    """Window sums through the column matrix (zero padding), divided by torch's per-window divisors."""
    n, c, h, w = x.shape
    col = im2col(x.reshape(n * c, 1, h, w), win)
    return (col.sum(axis=0).reshape(n, c, win.oh, win.ow) / div).astype(x.dtype)


def avg_pool2d_backward(gy, div, shape, win):
    xp = get_array_module(gy)
    n, c, h, w = shape
    g = (gy / div).astype(gy.dtype).reshape(1, -1)
    gcol = xp.ascontiguousarray(xp.broadcast_to(g, (win.kh * win.kw, g.shape[1])))
    return col2im(gcol, (n * c, 1, h, w), win).reshape(shape)
