"""The blocking of kernels/jit.py's generated convolutions, and the same loop nests written in NumPy.

``tiling`` and ``grad_weight_tiling`` decide what each kernel keeps in vector registers; ``input_columns`` which
input column feeds which output pixel of a block. ``forward_blocked`` and ``grad_weight_blocked`` run the loops
that the IR builds, in the same order over the same blocks, with a NumPy array of V lanes where the kernel has a
vector register: read them beside ``jit.forward_ir`` and ``jit.grad_weight_ir`` (whose docstrings show the same nests
as C). They are slow, and exact up to rounding: the kernel's fused multiply-add rounds once where NumPy rounds twice
(tests/test_kernels.py compares them with the compiled kernels in float64).
"""
import numpy as np

# The forward kernel's register budget: vector registers hold the accumulators, the weight vectors of one kernel
# row (KW per channel block), the broadcast input value, and one more that the compiler keeps for itself.
MIN_ACCUMULATORS = 8  # below this the multiply-adds wait on each other (4 cycles' latency, 2 issued per cycle)
OTHER_REGISTERS = 2  # the broadcast input value and one kept free


def ceil_div(a, b):
    """a / b rounded up, for positive ints: how many blocks of b hold a."""
    return -(-a // b)


def balanced(total, most):
    """The block length <= most that splits ``total`` into equal blocks, as far as it goes."""
    return ceil_div(total, ceil_div(total, max(1, min(most, total))))


def tiling(s, registers):
    """The register block of the forward kernel for Shape ``s``: (channel blocks, rows, columns). Its
    accumulators (channel blocks x rows x columns vectors) plus the weight vectors and one broadcast input must
    fit the ``registers`` vector registers; two channel blocks per input value halve the loads per multiply-add when
    the output has them. Measured (benchmarks/NOTES.md, change 24): below 8 accumulators the multiply-adds wait on
    each other (4 cycles' latency, 2 per cycle), and a block spilling registers runs 2-3x slower."""
    blocks = ceil_div(s.o, s.lanes)
    two_fit = 2 * s.kw + MIN_ACCUMULATORS <= registers  # two blocks' weight vectors and enough accumulators
    obs = 2 if blocks % 2 == 0 and two_fit else 1
    pixels = (registers - obs * s.kw - OTHER_REGISTERS) // obs  # accumulators per channel block
    cols = balanced(s.ow, pixels)
    rows = balanced(s.oh, pixels // cols)
    return obs, rows, cols


def grad_weight_tiling(s, registers):
    """The register block of the weight-gradient kernel: (input channels, kernel rows) per pass, each pass holding
    channels x rows x KW accumulators (and the gradient vector, an input value and one more: 3 registers). Measured
    (benchmarks/NOTES.md, change 24): with only KW accumulators (3 for a 3x3 kernel) the multiply-adds wait on each
    other; as many as fit run 2-3x faster."""
    most = registers - 3
    if s.kh * s.kw > most:
        return 1, balanced(s.kh, max(1, most // s.kw))
    return balanced(s.c, most // (s.kh * s.kw)), s.kh


def input_columns(s, ncols, ow0=None):
    """For each input column u under a block of ``ncols`` output columns: the (kernel column j, output column q)
    pairs that read it (those with q * sw + j * dw = u). With the block's first output column ``ow0`` known (a
    number) and ``s.live`` set, the columns of the zero frame are left out: they add 0 x w."""
    for u in range((ncols - 1) * s.sw + (s.kw - 1) * s.dw + 1):
        if s.live and ow0 is not None and not s.live[2] <= ow0 * s.sw + u < s.live[3]:
            continue
        uses = [(j, (u - j * s.dw) // s.sw) for j in range(s.kw)
                if u >= j * s.dw and (u - j * s.dw) % s.sw == 0 and (u - j * s.dw) // s.sw < ncols]
        if uses:
            yield u, uses


def live_kernel_rows(s, oh0, nrows):
    """The kernel rows (lo, hi) that a block of ``nrows`` output rows from ``oh0`` runs: all of them, or with
    ``s.live`` (the rows and columns of the padded input that hold data, the rest being a frame of zeros) and no
    row dilation, those under which some row of the block meets data: kernel row i reads input row (oh0 + r) * sh + i
    for r < nrows."""
    if not s.live or s.dh != 1:
        return 0, s.kh
    first, end = s.live[:2]
    return max(0, first - (oh0 + nrows - 1) * s.sh), min(s.kh, end - oh0 * s.sh)


def column_blocks(s, cols):
    """The blocks of output columns, (first column, columns), and whether the kernel knows the first column as a
    number (the IR loops over the whole blocks when there are several; a single or a last, shorter block it writes
    out): only there can it leave the zero frame's columns out."""
    full = s.ow // cols
    blocks = [(q * cols, cols, full == 1) for q in range(full)]
    if s.ow % cols:
        blocks.append((full * cols, s.ow % cols, True))
    return blocks


def forward_blocked(x, wp, s, registers, bias=None):
    """jit's forward kernel in NumPy: x (N, C, H, W) already padded, wp packed (O/V blocks, C, KH, KW, V), bias
    (O/V blocks * V) or None -> y (N, O, OH, OW). Each ``acc[k, r, q]`` is one vector register of V output channels.
    With ``s.live`` (the input gradient's zero frame) the products with the frame are skipped, as the kernel skips
    them: kernel rows whose every read lies in it, and the frame's columns where the block's first column is known."""
    obs, rows, cols = tiling(s, registers)
    V = s.lanes
    y = np.empty((x.shape[0], s.o, s.oh, s.ow), x.dtype)
    for n in range(x.shape[0]):
        for ob in range(0, ceil_div(s.o, V), obs):
            for oh0 in range(0, s.oh, rows):
                for ow0, ncols, known in column_blocks(s, cols):
                    nrows = min(rows, s.oh - oh0)
                    acc = np.zeros((obs, nrows, ncols, V), x.dtype)
                    if bias is not None:
                        acc += bias.reshape(-1, V)[ob:ob + obs, None, None, :]
                    for c in range(s.c):
                        for i in range(*live_kernel_rows(s, oh0, nrows)):
                            wv = wp[ob:ob + obs, c, i]  # (obs, KW, V): the kernel row's weight vectors
                            for r in range(nrows):
                                row = x[n, c, (oh0 + r) * s.sh + i * s.dh, ow0 * s.sw:]
                                # each input value loaded once
                                for u, uses in input_columns(s, ncols, ow0 if known else None):
                                    for j, q in uses:
                                        acc[:, r, q] += wv[:, j] * row[u]
                    _store_blocked(y[n], acc, ob, oh0, ow0, s.o)
    return y


def _store_blocked(y, acc, ob, oh0, ow0, o):
    """The accumulators into y (O, OH, OW): lane l of block ob + k is output channel (ob + k) * V + l, if it exists."""
    obs, nrows, ncols, V = acc.shape
    for k in range(obs):
        first = (ob + k) * V
        lanes = min(V, o - first)
        y[first:first + lanes, oh0:oh0 + nrows, ow0:ow0 + ncols] = acc[k, :, :, :lanes].transpose(2, 0, 1)


def grad_weight_blocked(x, gyt, s, registers):
    """jit's weight-gradient kernel in NumPy: x (N, C, H, W) already padded, gy repacked channels-last as gyt
    (N, OH, OW, O/V blocks * V) -> gw packed (O/V blocks, C, KH, KW, V). Each ``acc[ci, i, j]`` is one vector
    register of V output channels."""
    cb, rows = grad_weight_tiling(s, registers)
    V = s.lanes
    blocks = ceil_div(s.o, V)
    gw = np.zeros((blocks, s.c, s.kh, s.kw, V), x.dtype)
    for n in range(x.shape[0]):
        for ob in range(blocks):
            for c0 in range(0, s.c, cb):
                for i0 in range(0, s.kh, rows):  # a pass: its accumulators stay in registers over every pixel
                    nc, nrows = min(cb, s.c - c0), min(rows, s.kh - i0)
                    acc = gw[ob, c0:c0 + nc, i0:i0 + nrows].copy()  # (nc, nrows, KW, V)
                    for oh in range(s.oh):
                        for ow in range(s.ow):
                            gv = gyt[n, oh, ow, ob * V:(ob + 1) * V]
                            for ci in range(nc):
                                for i in range(nrows):
                                    for j in range(s.kw):
                                        xv = x[n, c0 + ci, oh * s.sh + (i0 + i) * s.dh, ow * s.sw + j * s.dw]
                                        acc[ci, i, j] += gv * xv
                    gw[ob, c0:c0 + nc, i0:i0 + nrows] = acc
    return gw
