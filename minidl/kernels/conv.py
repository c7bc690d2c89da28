"""conv2d's algorithms, one (forward, backward) pair each in ``ALGORITHMS``, and the choice among them.

The reference comes first: im2col + GEMM. Every receptive field becomes a column (``im2col``: the readable
version is in kernels/_numpy.py, the compiled one in kernels/_numba.py), and one matrix product per group applies
the filters to all of them. The others give the same numbers faster for some shapes, and each is tested against
the reference over the op table's conv2d samples (tests/test_kernels.py forces every one):

- ``im2col_chunked``: the reference in batch chunks of about CHUNK_BYTES of columns; keeps no column matrix
  between forward and backward (rebuilds it), which is why the tuner prefers it within a margin;
- ``gemm1x1``: a 1x1 convolution without padding is a batched GEMM straight on NCHW data;
- ``direct``: Numba loops with no column matrix, for few input channels per group (depthwise and grouped);
- ``jit``: register-blocked direct convolutions generated as LLVM IR for this CPU's vector width (kernels/jit.py,
  which explains them and can print a kernel's IR or assembly); forward, input and weight gradients, no column
  matrix, the bias added in registers.

``choose`` times every algorithm that can run a shape once (``autotune.choose``) and caches the fastest; the
Function in functional/conv.py runs ``ALGORITHMS[choice]``. Every forward takes ``(xp, x, w, b, win, groups)``
(``win``: a kernels.Window, the kernel size, stride, padding, dilation and output size) and returns the output
(with the bias; b may be None) and what its backward needs; every backward takes
``(xp, saved, gy, x_shape, win, groups, need_x, need_w)`` and returns the input and weight gradients (None where
not needed).
"""
import functools

import numpy as np

from . import Window, autotune, col2im, conv_direct, conv_direct_grad_w, conv_direct_grad_x, has_direct_conv, \
    im2col, matmul, name_for
from . import jit
from .blas import workers
from ..backend import device_of, synchronize

# Column matrices are built this many bytes at a time (benchmarks/NOTES.md, change 8). Measured: 2 MB chunks
# lose on small maps (per-chunk overhead); 16 MB chunks stay under glibc's 32 MB mmap ceiling, so a freed
# chunk's memory is reused by the next one instead of being page-faulted in afresh, as a whole-batch matrix is.
CHUNK_BYTES = 16 << 20

# Algorithms that keep no column matrix between forward and backward: the tuner takes one of them unless
# a memory-hungry one is more than autotune.LEAN_MARGIN faster.
LEAN = ("im2col_chunked", "gemm1x1", "direct", "jit", "dense")

# The reference keeps its whole column matrix from forward to backward. Above this size the tuner does not
# offer it (a lean algorithm runs instead; forcing it or turning tuning off still runs it): measured
# (benchmarks/NOTES.md, change 17), resnet18 at batch 128 peaked at 1.8-2.3 GiB of live arrays when the reference
# won its 3x3 convs (151-302 MiB of columns each) and at 0.63 GiB when none kept columns (torch: 0.56 GiB).
COL_KEEP_BYTES = 64 << 20


# Below this many multiply-adds x 2 a convolution is not worth compiling kernels for (0.3-0.6 s for its three, once
# per shape class and machine): it takes well under a millisecond any way. Measured: with jit offered for every
# shape, the test suite's many tiny convolutions took it from 2m03s to 3m32s on 2 cores.
JIT_MIN_FLOPS = 1 << 22


# Where jit runs a convolution of fewer flops than this, the tuner does not try im2col + GEMM. Measured (NOTES.md,
# change 25): jit won 31 of the seed nets' 32 shapes (not 1x1: gemm1x1 takes those), the other within noise; on
# resnet18's bigger layers im2col won 2 of 8 by 15-20%. Trying it compiles Numba's im2col and col2im on a first run,
# about 2.5 of the 6 s of a cold LeNet step, for at most a fraction of a millisecond per step on a small conv.
IM2COL_TRIAL_FLOPS = 1 << 30

# ... except on maps of at most this many output pixels, where jit's register blocks over output pixels are mostly
# empty. Measured (NOTES.md, change 39) on resnet18's layers on 28x28 inputs at batch 64, forward and backward:
# 2x2 -> 1x1 stride 2, jit 19.8 ms, im2col 9.6; 4x4 -> 2x2 stride 2, jit 12.8, im2col 8.0.
TINY_MAP = 4


def _flops(x, w):
    return 2 * x.shape[0] * w.shape[0] * w.shape[1] * w.shape[2] * w.shape[3] * x.shape[2] * x.shape[3]


def group_matmul(xp, a, b, groups, transpose_a=False):
    """Block-diagonal product: group g multiplies a's g-th row block (or, ``transpose_a``, its transpose)
    with b's g-th row block."""
    if groups == 1:
        return matmul(a.T if transpose_a else a, b)
    ar, br = a.shape[0] // groups, b.shape[0] // groups
    blocks = [a[g * ar:(g + 1) * ar] for g in range(groups)]
    return xp.concatenate([matmul(blk.T if transpose_a else blk, b[g * br:(g + 1) * br])
                           for g, blk in enumerate(blocks)], axis=0)


def group_outer(xp, a, b, groups):
    """Per group g: a_g @ b_g.T, stacked on rows (the weight gradient)."""
    if groups == 1:
        return matmul(a, b.T)
    ar, br = a.shape[0] // groups, b.shape[0] // groups
    return xp.concatenate([matmul(a[g * ar:(g + 1) * ar], b[g * br:(g + 1) * br].T) for g in range(groups)], axis=0)


def chunks(n, itemsize, w, win):
    """Ranges over a batch of ``n`` whose column matrices hold about CHUNK_BYTES each."""
    per_sample = w.shape[1] * w.shape[2] * w.shape[3] * win.oh * win.ow * itemsize
    step = max(1, CHUNK_BYTES // max(per_sample, 1))
    return [(a, min(a + step, n)) for a in range(0, n, step)]


def add_bias(y, b):
    """y (N, O, oh, ow) plus the bias b (O,) or None, in place."""
    if b is not None:
        y += b.reshape(1, -1, 1, 1)
    return y


# ---- the reference: im2col + GEMM ----------------------------------------------------------------------------
def im2col_forward(xp, x, w, b, win, groups):
    """Every window of x becomes a column; then one matrix product per group applies all the filters to all the
    columns at once."""
    n, o = x.shape[0], w.shape[0]
    col = im2col(x, win)                                                       # (C*kh*kw, N*oh*ow)
    y = group_matmul(xp, w.reshape(o, -1), col, groups)                        # (O, N*oh*ow)
    y = xp.ascontiguousarray(y.reshape(o, n, win.oh, win.ow).transpose(1, 0, 2, 3))  # (N, O, oh, ow)
    return add_bias(y, b), (col, w)


def im2col_backward(xp, saved, gy, x_shape, win, groups, need_x, need_w):
    """The weight's gradient is gy times the columns; the input's is W^T gy, put back from columns into the
    image by col2im (which sums the overlaps)."""
    col, w = saved
    o = w.shape[0]
    gy_mat = xp.ascontiguousarray(gy.transpose(1, 0, 2, 3)).reshape(o, -1)     # (O, N*oh*ow)
    gx = gw = None
    if need_x:  # a batch chunk at a time: a second full-size column matrix next to ``col`` would double the peak
        gx = xp.empty(x_shape, dtype=gy.dtype)                                  # (N, C, H, W)
        per = win.oh * win.ow
        for lo, hi in chunks(x_shape[0], gy.itemsize, w, win):
            gcol = group_matmul(xp, w.reshape(o, -1), gy_mat[:, lo * per:hi * per], groups, transpose_a=True)
            gx[lo:hi] = col2im(gcol, (hi - lo, *x_shape[1:]), win)             # gcol: (C*kh*kw, n*oh*ow)
    if need_w:
        gw = group_outer(xp, gy_mat, col, groups).reshape(w.shape)             # (O, C/groups, kh, kw)
    return gx, gw


# ---- the reference in batch chunks, keeping no columns --------------------------------------------------------
def chunked_forward(xp, x, w, b, win, groups):
    n, o = x.shape[0], w.shape[0]
    y = xp.empty((n, o, win.oh, win.ow), dtype=x.dtype)
    for a, z in chunks(n, x.itemsize, w, win):
        col = im2col(x[a:z], win)
        y_ab = group_matmul(xp, w.reshape(o, -1), col, groups)                    # (O, (z-a)*oh*ow)
        y[a:z] = y_ab.reshape(o, z - a, win.oh, win.ow).transpose(1, 0, 2, 3)
    return add_bias(y, b), (x, w)


def chunked_backward(xp, saved, gy, x_shape, win, groups, need_x, need_w):
    x, w = saved  # the input: its columns are rebuilt chunk by chunk
    o = w.shape[0]
    gx = xp.empty(x_shape, dtype=gy.dtype) if need_x else None
    gw = xp.zeros(w.shape, dtype=gy.dtype) if need_w else None
    for lo, hi in chunks(x.shape[0], x.itemsize, w, win):
        gy_mat = gy[lo:hi].transpose(1, 0, 2, 3).reshape(o, -1)
        if need_w:
            gw += group_outer(xp, gy_mat, im2col(x[lo:hi], win), groups).reshape(w.shape)
        if need_x:
            gcol = group_matmul(xp, w.reshape(o, -1), gy_mat, groups, transpose_a=True)
            gx[lo:hi] = col2im(gcol, (hi - lo, *x_shape[1:]), win)
    return gx, gw


# ---- 1x1 without padding: a batched GEMM on NCHW data ----------------------------------------------------------
def gemm1x1_forward(xp, x, w, b, win, groups):
    n, o = x.shape[0], w.shape[0]
    x3 = xp.ascontiguousarray(x[_strided(win)]).reshape(n, x.shape[1], win.oh * win.ow)
    if win.oh * win.ow == 1:  # one pixel per sample: one (N, C) @ (C, O) product, not N matrix-vector ones
        return add_bias(matmul(x3.reshape(n, -1), w.reshape(o, -1).T).reshape(n, o, 1, 1), b), (x3, w)
    return add_bias(matmul(w.reshape(o, -1), x3).reshape(n, o, win.oh, win.ow), b), (x3, w)  # (O, C) @ (N, C, L)


def gemm1x1_backward(xp, saved, gy, x_shape, win, groups, need_x, need_w):
    x3, w = saved
    (n, c), o = x_shape[:2], w.shape[0]
    gy3 = gy.reshape(n, o, gy.shape[2] * gy.shape[3])
    gx = gw = None
    if gy3.shape[2] == 1:  # one pixel per sample (see the forward)
        g2, x2 = gy3.reshape(n, o), x3.reshape(n, c)
        gx = _scatter_strided(xp, matmul(g2, w.reshape(o, c)).reshape(n, c, 1, 1), x_shape, win) if need_x else None
        gw = matmul(g2.T, x2).reshape(w.shape) if need_w else None
        return gx, gw
    if need_x:
        g3 = matmul(w.reshape(o, c).T, gy3).reshape(n, c, *gy.shape[2:])
        gx = _scatter_strided(xp, g3, x_shape, win)
    if need_w:
        gw = matmul(gy3, x3.transpose(0, 2, 1)).sum(axis=0).reshape(w.shape)
    return gx, gw


def _strided(win):
    """The pixels a 1x1 convolution without padding reads: every stride-th one, as many as there are outputs (a map
    whose last rows no window reaches, as after dropping dead taps, has more strided pixels than outputs)."""
    return (slice(None), slice(None), slice(0, (win.oh - 1) * win.sh + 1, win.sh),
            slice(0, (win.ow - 1) * win.sw + 1, win.sw))


def _scatter_strided(xp, g, x_shape, win):
    """The input gradient of a strided 1x1 convolution: g at the pixels it read, zeros elsewhere."""
    if tuple(g.shape) == tuple(x_shape):
        return g
    gx = xp.zeros(x_shape, dtype=g.dtype)
    gx[_strided(win)] = g
    return gx


# ---- maps no bigger than the kernel: the weight unrolled over the map, one GEMM ---------------------------------
@functools.lru_cache(maxsize=256)
def dense_taps(h, w, win):
    """(P, H*W) int array (read-only): for output pixel p and input pixel i, the kernel tap (row-major) that joins
    them, or kh*kw where none does. On a 2x2 map under a 3x3 kernel with padding 1 every output reads every input,
    through 4 of the 9 taps: im2col's columns are 5/9 padding, and its product does 2.25x the needed work."""
    oi, oj, hi, wj = (a.reshape(-1, 1) for a in np.meshgrid(np.arange(win.oh), np.arange(win.ow), np.arange(h),
                                                             np.arange(w), indexing="ij"))
    r, rr = np.divmod(hi - oi * win.sh + win.ph, win.dh)
    c, cr = np.divmod(wj - oj * win.sw + win.pw, win.dw)
    live = (rr == 0) & (cr == 0) & (r >= 0) & (r < win.kh) & (c >= 0) & (c < win.kw)
    taps = np.where(live, r * win.kw + c, win.kh * win.kw).reshape(win.oh * win.ow, h * w)
    taps.flags.writeable = False
    return taps


def dense_pays(x, w, win, groups):
    """Whether ``dense`` runs this convolution: one group, a map no bigger than the kernel, and every output reading
    every input (else the unrolled weight holds zeros, and an inf input times one would put NaN where im2col and
    torch have none)."""
    h, wd = x.shape[2:]
    return groups == 1 and h * wd <= win.kh * win.kw and win.oh * win.ow <= win.kh * win.kw and \
        _every_pair_live(h, wd, win)


@functools.lru_cache(maxsize=256)
def _every_pair_live(h, w, win):
    return bool((dense_taps(h, w, win) < win.kh * win.kw).all())  # asked on every call: cached with the taps


def _padding_reads(taps, kk):
    """(P, kk) bool: tap t of output p reads padding (t is not among the taps p reads the map through)."""
    reads = np.zeros((taps.shape[0], kk + 1), dtype=bool)
    np.put_along_axis(reads, taps, True, axis=1)
    return ~reads[:, :kk]


def _times_padding(xp, zeros, pad):
    """im2col multiplies each output's padding taps by zeros: an inf or NaN weight there makes that output NaN.
    ``zeros`` (O, kk) sums 0 x each tap's weights (0, or NaN); the (O, P) result, added to y, does the same. With
    ``pad`` transposed it does it for the weight gradient: (O, P) sums of 0 x gy, over the outputs a tap pads."""
    return xp.stack([zeros[:, xp.asarray(row)].sum(axis=1) for row in pad], axis=1)  # a device's own index arrays


def maybe_nonfinite(xp, a):
    """Whether ``a`` may hold an inf or NaN: on the host, looked at (48 us for a 256x256x3x3 weight, against 180 for
    the padding term); on a device, assumed (reading the answer back would wait for the GPU)."""
    return xp is not np or not np.isfinite(a).all()


def dense_forward(xp, x, w, b, win, groups):
    """y[n, (o, p)] = sum over (i, c) of x[n, c, i] W[(o, p), (i, c)]: one GEMM, no column matrix, W being
    (O, P, H*W, C) with w's tap for each (output pixel, input pixel) pair."""
    taps = dense_taps(*x.shape[2:], win)
    (n, c), (o, kk) = x.shape[:2], (w.shape[0], win.kh * win.kw)
    w_t = xp.ascontiguousarray(w.reshape(o, c, kk).transpose(0, 2, 1))          # (O, kk, C)
    wd = w_t[:, xp.asarray(taps)]                                               # (O, P, H*W, C)
    x_t = xp.ascontiguousarray(x.transpose(0, 2, 3, 1)).reshape(n, -1)          # (N, H*W*C)
    y = matmul(x_t, wd.reshape(o * taps.shape[0], -1).T)                        # (N, O*P)
    y = y.reshape(n, o, win.oh, win.ow)
    if maybe_nonfinite(xp, w_t):
        y += _times_padding(xp, (w_t * 0).sum(axis=2), _padding_reads(taps, kk)).reshape(o, win.oh, win.ow)
    return add_bias(y, b), (x_t, wd, taps)


def dense_backward(xp, saved, gy, x_shape, win, groups, need_x, need_w):
    x_t, wd, taps = saved
    n, c, h, w = x_shape
    o, kk = wd.shape[0], win.kh * win.kw
    gy_mat = gy.reshape(n, -1)                                                  # (N, O*P)
    gx = gw = None
    if need_x:
        gx = xp.ascontiguousarray(matmul(gy_mat, wd.reshape(gy_mat.shape[1], -1)).reshape(n, h, w, c)
                                  .transpose(0, 3, 1, 2))
    if need_w:
        g_pairs = matmul(gy_mat.T, x_t).reshape(o, -1, c)                       # (O, P*H*W, C)
        gw_t = xp.zeros((o, kk, c), dtype=gy.dtype)
        for pair, tap in enumerate(taps.reshape(-1).tolist()):                  # each pair adds to its tap
            gw_t[:, tap] += g_pairs[:, pair]
        if maybe_nonfinite(xp, gy):
            gw_t += _times_padding(xp, (gy * 0).sum(axis=0).reshape(o, -1), _padding_reads(taps, kk).T)[:, :, None]
        gw = xp.ascontiguousarray(gw_t.transpose(0, 2, 1)).reshape(o, c, win.kh, win.kw)
    return gx, gw


# ---- direct loops (compiled), for few input channels per group ------------------------------------------------
# The strided direct kernels (_numba.py's row kernels) skip the padding; torch multiplies it, so an inf or NaN weight
# (forward) or upstream gradient (weight gradient) takes the chunked im2col there, which saves the same (x, w).
def direct_forward(xp, x, w, b, win, groups):
    if xp is np and win.stride != (1, 1) and maybe_nonfinite(xp, w):
        return chunked_forward(xp, x, w, b, win, groups)
    return add_bias(conv_direct(x, w, win, groups), b), (x, w)


def direct_backward(xp, saved, gy, x_shape, win, groups, need_x, need_w):
    x, w = saved
    gx = conv_direct_grad_x(gy, w, x_shape, win, groups) if need_x else None
    if need_w and xp is np and win.stride != (1, 1) and maybe_nonfinite(xp, gy):
        return gx, chunked_backward(xp, saved, gy, x_shape, win, groups, False, True)[1]
    gw = conv_direct_grad_w(x, gy, w.shape, win, groups) if need_w else None
    return gx, gw


# ---- register-blocked kernels generated for this CPU (kernels/jit.py), groups = 1 ------------------------------
def jit_forward(xp, x, w, b, win, groups):
    return jit.conv(x, w, win, bias=b), (x, w)   # the bias added in registers


def jit_backward(xp, saved, gy, x_shape, win, groups, need_x, need_w):
    """The input gradient is a convolution over gy framed (and, for a stride, interleaved) with zeros, which a
    non-finite weight would turn into NaNs where torch, adding only the (output, tap) pairs that exist, has numbers:
    such a weight takes the chunked im2col (its col2im adds no padding). The kernel skips the frame's zero rows."""
    x, w = saved
    if need_x and maybe_nonfinite(xp, w):
        return chunked_backward(xp, saved, gy, x_shape, win, groups, True, False)[0], \
            jit_backward(xp, saved, gy, x_shape, win, groups, False, need_w)[1]
    strided = win.stride != (1, 1) and win.dilation == (1, 1) and \
        -(-x_shape[2] // win.sh) * -(-x_shape[3] // win.sw) >= PHASE_MIN_PIXELS
    gx = None if not need_x else jit_grad_input_phases(gy, w, x_shape, win) if strided else \
        jit.conv_grad_input(gy, w, x_shape, win)
    gw = jit.conv_grad_weight(x, gy, w.shape, win) if need_w else None
    return gx, gw


# Below this many pixels a phase's output is too small a block for the jit kernel: measured at stride 2, 3x3
# (benchmarks/NOTES.md, change 57), phases of 4x4 won (x(64, 256, 8, 8): 31.7 ms against 41.1), phases of 3x3 and
# 2x2 lost (x(64, 256, 6, 6): 21.3 against 12.4; x(64, 256, 4, 4): 16.1 against 12.0).
PHASE_MIN_PIXELS = 16


def _phases(size, k, s, p):
    """One axis of a strided convolution's input gradient, split by phase: for each r < s, the inputs t = r + s m
    (m < M) are reached by output m + (r + p - i) / s through the taps i with (r + p - i) divisible by s. Yields
    (r, M, a, taps), the taps in descending order so that tap j of the phase reads gy[m + a + j]."""
    for r in range(min(s, size)):
        taps = [i for i in range(k - 1, -1, -1) if (r + p - i) % s == 0]
        yield r, len(range(r, size, s)), (r + p - taps[0]) // s if taps else 0, taps


def jit_grad_input_phases(gy, w, x_shape, win):
    """The input gradient of a strided convolution (dilation 1) as s x s stride-1 convolutions of gy, one per phase
    of the input (rows r::sh, columns q::sw), each with the taps that reach that phase. jit.conv_grad_input's other
    way, a full convolution over gy with zeros inserted between its rows and columns, multiplies (s^2 - 1) / s^2 of
    its products by those zeros (3x torch's time at stride 2: benchmarks/NOTES.md, change 57). A phase no tap reaches
    (a 1x1 kernel at stride 2) stays zero. The frames are zeros: exact for a finite w (jit_backward)."""
    n, o, oh, ow = gy.shape
    gx = np.zeros(x_shape, gy.dtype)
    for r, my, ay, ty in _phases(x_shape[2], win.kh, win.sh, win.ph):
        for q, mx, ax, tx in _phases(x_shape[3], win.kw, win.sw, win.pw):
            top, bottom = max(ay, 0), min(ay + my + len(ty) - 1, oh)  # the rows of gy the phase reads
            left, right = max(ax, 0), min(ax + mx + len(tx) - 1, ow)
            if not ty or not tx or bottom <= top or right <= left:
                continue
            sub = w[:, :, ty][:, :, :, tx].transpose(1, 0, 2, 3)  # (C, O, taps): channels swapped as a full conv's
            pads = (top - ay, ay + my + len(ty) - 1 - bottom, left - ax, ax + mx + len(tx) - 1 - right)
            gx[:, :, r::win.sh, q::win.sw] = jit.conv(gy[:, :, top:bottom, left:right], sub,
                                                      Window(len(ty), len(tx), 1, 1, 0, 0, 1, 1, my, mx),
                                                      pads=pads, frame=True)
    return gx


ALGORITHMS = {
    "im2col": (im2col_forward, im2col_backward),
    "im2col_chunked": (chunked_forward, chunked_backward),
    "gemm1x1": (gemm1x1_forward, gemm1x1_backward),
    "direct": (direct_forward, direct_backward),
    "jit": (jit_forward, jit_backward),
    "dense": (dense_forward, dense_backward),
}


def algorithms(x, w, win, groups):
    """The names of the algorithms that can run this convolution, the reference ('im2col') first."""
    algos = ["im2col"]
    if x.shape[0] > 1:  # chunks split the batch
        algos.append("im2col_chunked")
    if groups == 1 and w.shape[2:] == (1, 1) and win.padding == (0, 0) and (win.oh - 1) * win.sh < x.shape[2] \
            and (win.ow - 1) * win.sw < x.shape[3]:  # every window inside the map (no padding after it either)
        algos.append("gemm1x1")
    # few input channels per group: depthwise and grouped convs. Not offered for groups = 1: measured, it never
    # won there (LeNet's 1->6 conv: 22-40 ms against 14-15 ms for im2col_chunked), and trying it compiles three
    # kernels, 4 of the 9.7 s of a first LeNet step with a cold Numba cache (benchmarks/NOTES.md, change 14).
    if groups > 1 and w.shape[1] <= 3 and has_direct_conv(x):
        algos.append("direct")
    if dense_pays(x, w, win, groups):
        algos.append("dense")  # a map no bigger than the kernel: im2col's columns would be mostly padding
    if groups == 1 and name_for(x) == "numba" and jit.available():
        algos.append("jit")  # NumPy float32/float64 arrays on this CPU; the tuner tries it where it pays (_jit_pays)
    return algos


def _jit_pays(x, flops):
    """Whether the tuner should compile and try jit for this convolution (forcing it runs it anyway). Its threads
    split the batch, so with fewer than two samples per thread cores idle (benchmarks/NOTES.md, change 27: GoogLeNet's
    3x3 and 5x5 convolutions on 2 threads: batch 1, jit 40 ms against 31 for the best other; batch 2, even; batch 8,
    140 against 174); below JIT_MIN_FLOPS a conv is not worth a compile. It is tried on 1x1 convolutions too: change
    27 saw gemm1x1 win all 40 of GoogLeNet's and InceptionNet's at batch 1-2, but at batch 64 and 128 jit won 110 of
    the zoo's 1x1 shapes by 1.1-2.3x (change 50, benchmarks/tuner_check.py)."""
    return flops >= JIT_MIN_FLOPS and x.shape[0] >= 2 * workers()[0]


# The tuner's trials run on at most this many samples of a batch. Measured (NOTES.md, change 39): resnet18's first
# evaluation forward at batch 1000 spent 2.9 of its 3.3 s timing every candidate of its 20 convolutions at full size.
TRIAL_BATCH = 128


def _batch_class(n):
    """Batch sizes that share a tuning choice: n rounded up to a power of two. A loader's short last batch, or an
    evaluation at a new batch size, reuses the choice made for its class instead of timing every algorithm again."""
    return 1 << max(n - 1, 0).bit_length()


def _col_bytes(x, w, win, groups):
    return w.shape[1] * groups * w.shape[2] * w.shape[3] * x.shape[0] * win.oh * win.ow * x.itemsize


def candidates(x, w, win, groups, backward=True):
    """The algorithms the tuner times for this convolution: ``algorithms`` less its shortcuts (candidates measured
    not to win, or not worth a compile). ``benchmarks/tuner_check.py`` times the ones left out against the one chosen
    on every convolution of the zoo's models."""
    algos = algorithms(x, w, win, groups)
    flops = _flops(x, w)
    if "jit" in algos and not _jit_pays(x, flops):
        algos = [a for a in algos if a != "jit"]
    if "jit" in algos and flops < IM2COL_TRIAL_FLOPS and win.oh * win.ow > TINY_MAP:
        algos = [a for a in algos if not a.startswith("im2col")]
    elif backward and _col_bytes(x, w, win, groups) > COL_KEEP_BYTES and len(algos) > 1:
        algos = algos[1:]  # the reference's column matrix would stay alive until backward
    return algos


def choose(xp, x, w, win, groups, grads=(True, True, True)):
    """The name of the algorithm for this convolution: the forced one, the reference when tuning is off, else
    the fastest of ``ALGORITHMS`` measured on it (once per shape class). ``grads``: whether the input's, the
    weight's and the bias's gradients will be asked for; the trials time the first two (a network's first
    convolution needs no input gradient: jit's costs 6x im2col's on a 3-channel stem, where its forward and weight
    gradient win: change 53). With none (evaluation under no_grad) the forward is timed alone and the reference may
    keep its columns; a bias's gradient alone still means a backward, so the saved arrays live until then."""
    backward = any(grads)
    col_bytes = _col_bytes(x, w, win, groups)
    algos = candidates(x, w, win, groups, backward) if autotune.is_enabled() and not autotune.forced("conv2d") \
        else algorithms(x, w, win, groups)
    dev = device_of(x)
    # the whole window is in the key: with dead taps dropped, the output size is no longer a function of the rest
    key = ("conv2d", dev, name_for(x), x.dtype.str, _batch_class(x.shape[0]), x.shape[1:], w.shape, tuple(win),
           groups, tuple(grads), col_bytes > COL_KEEP_BYTES)
    gy = []  # the trials' upstream gradient, made by the first trial: a cached choice allocates nothing
    xt = x[:TRIAL_BATCH]  # the trials time a slice of a large batch: every algorithm's time grows with the batch

    def trial(algo):
        fwd, bwd = ALGORITHMS[algo]

        def run():
            _, saved = fwd(xp, xt, w, None, win, groups)
            if backward:
                if not gy:
                    gy.append(xp.ones((xt.shape[0], w.shape[0], *win.out_hw), dtype=x.dtype))
                bwd(xp, saved, gy[0], xt.shape, win, groups, grads[0], grads[1])
            synchronize(dev)  # a GPU runs the work after the launches return: time it to its end
        return run
    return autotune.choose(key, [(a, trial(a)) for a in algos], lean=LEAN, keep=dev.type == "cpu")
