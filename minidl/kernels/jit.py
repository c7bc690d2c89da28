"""Register-blocked direct convolution kernels, generated as LLVM IR for this CPU (llvmlite, which Numba brings).

What a register-blocked kernel is (oneDNN's JIT convolutions work this way). A convolution's output pixel is a dot
product of C*KH*KW inputs with as many weights, for each of O output channels. im2col + GEMM first copies every
window into a column, then multiplies. Here nothing is copied: the kernel keeps a block of outputs in vector
registers (one or two blocks of V output channels x a few rows and columns of output pixels, ``tiling`` in
kernels/jit_blocking.py, which also runs the same loops in NumPy to read and to test against: one
accumulator of V lanes per channel block and pixel), and walks the input channels once. For each input channel c
and kernel row it loads the V weights of each kernel offset as one vector, then takes the input row under the
block one value at a time, broadcasts it, and does one fused multiply-add into each accumulator of a pixel it
lies under. At the end of the block the accumulators are stored, once (scattered: an accumulator's lanes are
output channels, a plane apart in y). The weights are repacked so that V output
channels are adjacent (``pack_weight``); inputs are read where they lie (padded by each thread, a few samples at a
time).

- ``conv``: y = conv(x, w) (+ bias, added in the registers before the store);
- ``conv_grad_input``: the same kernel on gy, zero-padded (and, for a stride, zero-inserted), with the weights
  flipped and their two channel axes swapped: the input gradient of a convolution is a full convolution. Its
  kernel skips the products with the zero frame (kernel rows that read only the frame; the frame's columns where
  a block's first column is a constant): a valid 5x5 convolution's frame is half of what the kernel would read;
- ``conv_grad_weight``: gw[o, c, kh, kw] += gy[n, o, oh, ow] * x[n, c, oh*sh + kh*dh, ow*sw + kw*dw] summed over
  every (n, oh, ow), reading gy repacked channels-last (V output channels adjacent), with a block of input
  channels x kernel rows x KW accumulators in registers per pass (``grad_weight_tiling``).

Each kernel is compiled once per shape class (everything but the batch size is a constant in the IR, so LLVM
unrolls the kernel window and folds every offset), with the vector width and instruction set of this CPU, and
kept on disk, per user: a second process loads the machine code instead of compiling (kernels/jit_cache.py, which
checks every entry against its digest before LLVM sees it). Calls go through ctypes, which releases the GIL, so
threads each take a part of the batch.

``show(kind, x_shape, w_shape, ...)`` returns the IR (or ``asm=True``: the assembly) made for a shape, to read.
"""
import ctypes
import functools
import hashlib
import threading
from typing import NamedTuple

import numpy as np

from . import Window, jit_blocking, jit_cache
from .jit_blocking import ceil_div, column_blocks, grad_weight_tiling, input_columns, live_kernel_rows, tiling
from .blas import split, workers


class Shape(NamedTuple):
    """One compiled kernel's constants: input (C, H, W) as the kernel reads it (already padded), O output
    channels, kernel window, stride, dilation, output (OH, OW), element type, vector lanes V, and whether a bias is
    added."""
    c: int
    h: int
    w: int
    o: int
    kh: int
    kw: int
    sh: int
    sw: int
    dh: int
    dw: int
    oh: int
    ow: int
    dtype: str      # 'float' or 'double'
    lanes: int
    bias: bool = False
    live: tuple = ()  # (first row, end row, first column, end column) of the data in a zero frame, or () for all


# ---- the target ------------------------------------------------------------------------------------------------
_llvm = {}
_lock = threading.Lock()


def _target():
    """{llvm: llvmlite.binding, tm: a target machine for this CPU (for IR and assembly; engines get their own),
    cpu, features, vector_bytes, registers}, made once."""
    with _lock:
        if not _llvm:
            import llvmlite.binding as llvm
            llvm.initialize_native_target()
            llvm.initialize_native_asmprinter()
            cpu, features = llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()
            vector_bytes = 64 if "+avx512f" in features else 32 if "+avx2" in features else 16
            _llvm.update(llvm=llvm, tm=_machine(llvm, cpu, features), vector_bytes=vector_bytes, cpu=cpu,
                         features=features, registers=32 if vector_bytes == 64 else 16)
    return _llvm


def _machine(llvm, cpu, features):
    """A target machine for this CPU. Each engine gets its own: an engine owns its machine and frees it with itself."""
    return llvm.Target.from_default_triple().create_target_machine(cpu=cpu, features=features, opt=3, jit=True)


@functools.lru_cache(maxsize=None)
def available():
    """Whether the kernels can be made here: llvmlite imports and the CPU is x86-64 or AArch64 with FMA (asked once:
    the tuner asks on every convolution)."""
    try:
        t = _target()
    except Exception:
        return False
    return "+fma" in t["features"] or "+neon" in t["features"]


def lanes_for(o, itemsize):
    """Lanes per output-channel block: the vector width that pads ``o`` channels least (the wider on a tie)."""
    widest = _target()["vector_bytes"] // itemsize
    widths = [w for w in (widest, widest // 2) if w >= 4] or [widest]
    return min(widths, key=lambda w: (ceil_div(o, w) * w, -w))


# ---- generating the IR -----------------------------------------------------------------------------------------
def _ir():
    from llvmlite import ir
    return ir


class _Loop:
    """``for i in range(lo, hi)`` in IR: a counter in a stack slot (LLVM's mem2reg turns it into a register).
    Used as ``with _Loop(g, lo, hi, "i") as i:``, so that the loop nest that builds the IR indents as the C loop nest
    it makes; ``i`` is the counter's value inside the body."""

    def __init__(self, g, lo, hi, name):
        ir, b = _ir(), g.b
        self.b, self.i64 = b, ir.IntType(64)
        self.slot = g.slot(self.i64)
        b.store(lo if isinstance(lo, ir.Value) else ir.Constant(self.i64, lo), self.slot)
        self.cond = b.append_basic_block(name + "_cond")
        self.body = b.append_basic_block(name + "_body")
        self.end = b.append_basic_block(name + "_end")
        self.hi = hi if isinstance(hi, ir.Value) else ir.Constant(self.i64, hi)
        b.branch(self.cond)
        b.position_at_end(self.cond)
        self.i = b.load(self.slot, name=name)
        b.cbranch(b.icmp_signed("<", self.i, self.hi), self.body, self.end)
        b.position_at_end(self.body)

    def __enter__(self):
        return self.i

    def __exit__(self, kind, value, traceback):
        if kind is None:  # the body is built: count up, back to the test, and go on after the loop
            b = self.b
            b.store(b.add(self.i, _ir().Constant(self.i64, 1)), self.slot)
            b.branch(self.cond)
            b.position_at_end(self.end)


class _Gen:
    """Shared pieces of the three kernels: types, constants, address arithmetic, vector helpers."""

    def __init__(self, s, name, nargs):
        ir = _ir()
        self.ir, self.s = ir, s
        self.f = ir.DoubleType() if s.dtype == "double" else ir.FloatType()
        self.v = ir.VectorType(self.f, s.lanes)
        self.i64 = ir.IntType(64)
        self.itemsize = 8 if s.dtype == "double" else 4
        self.module = ir.Module(name=name)
        self.module.triple = _target()["tm"].triple
        ptr = self.f.as_pointer()
        fn = ir.Function(self.module, ir.FunctionType(ir.VoidType(), [ptr] * nargs + [self.i64, self.i64]), name=name)
        for a in fn.args[:nargs]:
            a.add_attribute("noalias")
        self.args = fn.args
        self.entry = fn.append_basic_block("entry")
        self.b = ir.IRBuilder(self.entry)
        fma_name = f"llvm.fma.v{s.lanes}f{64 if s.dtype == 'double' else 32}"
        self.fma = ir.Function(self.module, ir.FunctionType(self.v, [self.v] * 3), name=fma_name)
        self.zero = ir.Constant(self.v, None)
        self.vi64 = ir.VectorType(self.i64, s.lanes)
        self.vptr = ir.VectorType(ptr, s.lanes)
        self.mask = ir.VectorType(ir.IntType(1), s.lanes)
        scatter_name = f"llvm.masked.scatter.v{s.lanes}f{64 if s.dtype == 'double' else 32}.v{s.lanes}p0"
        self.scatter = ir.Function(self.module, ir.FunctionType(ir.VoidType(), [self.v, self.vptr, ir.IntType(32),
                                                                                self.mask]), name=scatter_name)

    def k(self, n):
        return self.ir.Constant(self.i64, n)

    def slot(self, typ):
        """A stack slot for a value that loops update, made in the entry block: there LLVM turns it into a
        register (mem2reg), and it is allocated once. An alloca inside a loop grows the stack on every iteration
        (measured: a batch of 300 overflowed a worker thread's stack)."""
        b = self.b
        with b.goto_block(self.entry):
            b.position_at_start(self.entry)
            return b.alloca(typ)

    def offset(self, *terms):
        """sum of index * stride over (index, stride) pairs, indices being IR values or ints."""
        b, acc = self.b, None
        const = 0
        for idx, stride in terms:
            if isinstance(idx, int):
                const += idx * stride
                continue
            t = idx if stride == 1 else b.mul(idx, self.k(stride))
            acc = t if acc is None else b.add(acc, t)
        if acc is None:
            return self.k(const)
        return acc if const == 0 else b.add(acc, self.k(const))

    def splat(self, value, vtype):
        """``value`` in every lane of a vector of type ``vtype``."""
        b, ir = self.b, self.ir
        undef = ir.Constant(vtype, ir.Undefined)
        lane0 = ir.Constant(ir.VectorType(ir.IntType(32), self.s.lanes), [0] * self.s.lanes)
        return b.shuffle_vector(b.insert_element(undef, value, self.k(0)), undef, lane0)

    def broadcast(self, base, off):
        """The element at base[off] in every lane."""
        return self.splat(self.b.load(self.b.gep(base, [off], inbounds=True)), self.v)

    def _vector_at(self, base, off):
        return self.b.bitcast(self.b.gep(base, [off], inbounds=True), self.v.as_pointer())

    def vector(self, base, off):
        return self.b.load(self._vector_at(base, off), align=self.itemsize)  # no alignment beyond the element's

    def store_vector(self, value, base, off):
        self.b.store(value, self._vector_at(base, off), align=self.itemsize)

    def finish(self):
        self.b.ret_void()
        return str(self.module)


def forward_ir(s):
    """IR of ``conv(x, w, y, n0, n1)``: for samples n0..n1 of x (N, C, H, W, padded), weights packed by
    ``pack_weight`` (O/V blocks, C, KH, KW, V) and y (N, O, OH, OW); with ``s.bias`` a 4th pointer argument to
    the bias (O/V blocks of V). As C, with V-lane vectors and (OBS, R, Q) = ``tiling(s)``::

        for (n = n0; n < n1; n++)
          for (ob = 0; ob < O/V; ob += OBS)                  // OBS blocks of V output channels
            for (oh0 = 0; oh0 < OH; oh0 += R)                // a block of R output rows ...
              for (ow0 = 0; ow0 < OW; ow0 += Q) {            // ... by Q output columns (the last ones shorter)
                vec acc[OBS][R][Q] = bias or 0;              // in registers
                for (c = 0; c < C; c++)
                  for (i = 0; i < KH; i++) {                 // with a frame (s.live): the rows that meet data
                    vec wv[OBS][KW] = w[ob + k][c][i][j][:];
                    for (r = 0; r < R; r++)                  // unrolled, as everything below
                      for (u = 0; u < (Q-1)*SW + (KW-1)*DW + 1; u++) {   // each input column once
                        vec xv = broadcast(x[n][c][(oh0 + r)*SH + i*DH][ow0*SW + u]);
                        for each (j, q) with q*SW + j*DW == u:
                          for (k = 0; k < OBS; k++) acc[k][r][q] = fma(wv[k][j], xv, acc[k][r][q]);
                      }
                  }
                y[n][(ob + k)*V + lane][oh0 + r][ow0 + q] = acc[k][r][q][lane];   // scattered, lanes < O
              }
    """
    g = _Gen(s, "conv_forward", 4 if s.bias else 3)
    b, V = g.b, s.lanes
    x, w, y = g.args[:3]
    bias = g.args[3] if s.bias else None
    n0, n1 = g.args[-2:]
    obs, rows, cols = tiling(s, _target()["registers"])
    ckk = s.c * s.kh * s.kw * V  # one channel block's packed weights

    def block(n, ob, oh0, nrows, ow0, ncols):
        """Output channel blocks ob..ob+obs-1, rows oh0.., columns ow0.. (IR values or ints) of sample n."""
        pix = [(r, q) for r in range(nrows) for q in range(ncols)]
        accs = {(k, r, q): g.slot(g.v) for k in range(obs) for r, q in pix}
        for (k, _, _), a in accs.items():
            b.store(g.vector(bias, g.offset((ob, V), (k * V, 1))) if s.bias else g.zero, a)
        # A loop over input channels and, inside it, over kernel rows: kept a loop (not unrolled) so that LLVM
        # cannot see that kernel row i of output row r+1 reads what row i+1 of output row r read, and keep that
        # input in a register across rows (it would need more registers than there are: the block spills). With a
        # zero frame (s.live) the kernel rows that read only the frame are left out (jit_blocking.live_kernel_rows).
        lo, hi = _live_rows(g, oh0, nrows)
        with _Loop(g, 0, s.c, "c") as c, _Loop(g, lo, hi, "i") as i:
            acc = {key: b.load(a) for key, a in accs.items()}
            wv = [[g.vector(w, g.offset((ob, ckk), (c, s.kh * s.kw * V), (i, s.kw * V), (k * ckk + j * V, 1)))
                   for j in range(s.kw)] for k in range(obs)]
            for r in range(nrows):
                row = g.offset((n, s.c * s.h * s.w), (c, s.h * s.w), (oh0, s.sh * s.w), (i, s.dh * s.w),
                               (ow0, s.sw), (r * s.sh * s.w, 1))
                # input-stationary: each input value of the row is loaded once, then multiplied into every pixel
                # of the block that it lies under, with the weight of its kernel column
                for u, uses in input_columns(s, ncols, ow0 if isinstance(ow0, int) else None):
                    xv = g.broadcast(x, b.add(row, g.k(u)))
                    for j, q in uses:
                        for k in range(obs):
                            acc[k, r, q] = b.call(g.fma, [wv[k][j], xv, acc[k, r, q]])
            for key, a in accs.items():
                b.store(acc[key], a)
        y0 = b.gep(y, [g.offset((n, s.o * s.oh * s.ow), (ob, V * s.oh * s.ow), (oh0, s.ow), (ow0, 1))],
                   inbounds=True)
        for (k, r, q), a in accs.items():
            _store(g, b.load(a), y0, ob, k, obs, r, q)

    def over_columns(n, ob, oh0, nrows):
        blocks = column_blocks(s, cols)  # a loop over the whole blocks where there are several
        for ow0, ncols, known in blocks:
            if known:
                block(n, ob, oh0, nrows, ow0, ncols)
            elif ow0 == 0:
                with _Loop(g, 0, s.ow // cols, "owb") as owb:
                    block(n, ob, oh0, nrows, b.mul(owb, g.k(cols)), cols)

    with _Loop(g, n0, n1, "n") as n, _Loop(g, 0, ceil_div(s.o, V) // obs, "ob") as obl:
        ob = b.mul(obl, g.k(obs))
        full = s.oh // rows
        if full:
            with _Loop(g, 0, full, "ohb") as ohb:
                over_columns(n, ob, b.mul(ohb, g.k(rows)), rows)
        if s.oh % rows:
            over_columns(n, ob, full * rows, s.oh % rows)
    return g.finish()


def _live_rows(g, oh0, nrows):
    """jit_blocking.live_kernel_rows, in IR where the block's first row ``oh0`` is an IR value."""
    s, b = g.s, g.b
    if isinstance(oh0, int) or not s.live or s.dh != 1:
        return live_kernel_rows(s, oh0 if isinstance(oh0, int) else 0, nrows)
    lo = b.sub(g.k(s.live[0] - (nrows - 1) * s.sh), b.mul(oh0, g.k(s.sh)))
    hi = b.sub(g.k(s.live[1]), b.mul(oh0, g.k(s.sh)))
    lo = b.select(b.icmp_signed("<", lo, g.k(0)), g.k(0), lo)
    return lo, b.select(b.icmp_signed(">", hi, g.k(s.kh)), g.k(s.kh), hi)


def _store(g, v, y0, ob, k, obs, r, q):
    """One accumulator (channel block ob + k of a group of obs, pixel (r, q) of the block whose first output is at
    y0): its lanes are output channels, a plane apart in y, so it is scattered, without the padding lanes of a
    last, partial block."""
    s, b, ir = g.s, g.b, g.ir
    plane = s.oh * s.ow
    at = g.splat(b.ptrtoint(b.gep(y0, [g.k((k * s.lanes * s.oh + r) * s.ow + q)], inbounds=True), g.i64), g.vi64)
    lanes = ir.Constant(g.vi64, [lane * plane * g.itemsize for lane in range(s.lanes)])
    first_of_last = (ceil_div(s.o, s.lanes) - obs + k) * s.lanes  # this block's first channel in the last group
    if first_of_last + s.lanes <= s.o:  # every lane exists in every group
        mask = ir.Constant(g.mask, [1] * s.lanes)
    else:
        channel = g.splat(g.offset((ob, s.lanes), (k * s.lanes, 1)), g.vi64)
        mask = b.icmp_signed("<", b.add(channel, ir.Constant(g.vi64, list(range(s.lanes)))),
                             ir.Constant(g.vi64, [s.o] * s.lanes))
    b.call(g.scatter, [v, b.inttoptr(b.add(at, lanes), g.vptr), ir.Constant(ir.IntType(32), g.itemsize), mask])


def grad_weight_ir(s):
    """IR of ``gw(x, gyt, gw, n0, n1)``: adds into gw (O/V blocks, C, KH, KW, V), for samples n0..n1, the products
    of x (N, C, H, W, padded) with gy repacked channels-last as gyt (N, OH, OW, O/V blocks * V). One sample at a
    time (its x and gy stay in cache while every pass goes over them); a pass takes a block of input channels and
    kernel rows (``grad_weight_tiling``) and keeps their accumulators in registers over every output pixel: per
    pixel, one vector of V output channels' gradients, times each input value under the block's kernel offsets.
    As C, with (CB, RB) = ``grad_weight_tiling(s)``::

        for (n = n0; n < n1; n++)
          for (ob = 0; ob < O/V; ob++)
            for (c0 = 0; c0 < C; c0 += CB)                          // a pass: CB channels ...
              for (i0 = 0; i0 < KH; i0 += RB) {                     // ... by RB kernel rows (unrolled)
                vec acc[CB][RB][KW] = gw[ob][c0 + ci][i0 + i][j][:];  // in registers
                for (oh = 0; oh < OH; oh++)
                  for (ow = 0; ow < OW; ow++) {
                    vec gv = gyt[n][oh][ow][ob*V : ob*V + V];
                    for each (ci, i, j):                            // unrolled
                      acc[ci][i][j] = fma(gv, broadcast(x[n][c0 + ci][oh*SH + (i0 + i)*DH][ow*SW + j*DW]),
                                          acc[ci][i][j]);
                  }
                gw[ob][c0 + ci][i0 + i][j][:] = acc[ci][i][j];
              }
    """
    g = _Gen(s, "conv_grad_weight", 3)
    b, V = g.b, s.lanes
    x, gyt, gw = g.args[:3]
    n0, n1 = g.args[-2:]
    blocks = ceil_div(s.o, V)
    cb, rows = grad_weight_tiling(s, _target()["registers"])

    def one_pass(n, ob, c0, nc, i0, nrows):
        taps = [(ci, i, j) for ci in range(nc) for i in range(i0, i0 + nrows) for j in range(s.kw)]
        at = {t: g.offset((ob, s.c * s.kh * s.kw * V), (c0, s.kh * s.kw * V), ((t[0] * s.kh + t[1]) * s.kw * V
                                                                                 + t[2] * V, 1)) for t in taps}
        accs = {t: g.slot(g.v) for t in taps}
        for t in taps:
            b.store(g.vector(gw, at[t]), accs[t])
        with _Loop(g, 0, s.oh, "oh") as oh:
            base = g.offset((n, s.c * s.h * s.w), (c0, s.h * s.w), (oh, s.sh * s.w))
            grow = g.offset((n, s.oh * s.ow * blocks * V), (oh, s.ow * blocks * V), (ob, V))
            with _Loop(g, 0, s.ow, "ow") as ow:
                gv = g.vector(gyt, b.add(grow, g.offset((ow, blocks * V))))
                col = b.add(base, g.offset((ow, s.sw)))
                for t in taps:
                    ci, i, j = t
                    xv = g.broadcast(x, b.add(col, g.k((ci * s.h + i * s.dh) * s.w + j * s.dw)))
                    b.store(b.call(g.fma, [gv, xv, b.load(accs[t])]), accs[t])
        for t in taps:
            g.store_vector(b.load(accs[t]), gw, at[t])

    def passes(n, ob, c0, nc):
        for i0 in range(0, s.kh, rows):
            one_pass(n, ob, c0, nc, i0, min(rows, s.kh - i0))

    with _Loop(g, n0, n1, "n") as n, _Loop(g, 0, blocks, "ob") as ob:
        if s.c // cb:
            with _Loop(g, 0, s.c // cb, "cb") as c:
                passes(n, ob, b.mul(c, g.k(cb)), cb)
        if s.c % cb:
            passes(n, ob, s.c // cb * cb, s.c % cb)
    return g.finish()


# ---- compiling, caching on disk, calling ------------------------------------------------------------------------
def _optimized(ir_text):
    """The module of ``ir_text``, through LLVM's -O3 pipeline for this CPU."""
    t = _target()
    mod = t["llvm"].parse_assembly(ir_text)
    pb = t["llvm"].create_pass_builder(t["tm"], t["llvm"].create_pipeline_tuning_options(speed_level=3))
    pb.getModulePassManager().run(mod, pb)
    return mod


def _generator_hash():
    """A hash of this file and of jit_blocking.py (the blocking and the columns each block reads): a cached kernel
    is reused only if the code that generated it is unchanged."""
    if "generator" not in _llvm:
        h = hashlib.sha256()
        for name in (__file__, jit_blocking.__file__):
            with open(name, "rb") as f:
                h.update(f.read())
        _llvm["generator"] = h.hexdigest()
    return _llvm["generator"]


class Kernel:
    """One compiled function ``f(ptr, ..., n0, n1)``; calling it with arrays passes their data pointers. ``make_ir``
    gives its LLVM IR, asked for only when the machine code is not cached on disk under ``key`` (with this CPU,
    llvmlite's version and this file's hash)."""

    def __init__(self, make_ir, key, name, nargs):
        t = _target()
        llvm = t["llvm"]
        import llvmlite
        key = "\0".join((key, _generator_hash(), t["cpu"], t["features"], llvmlite.__version__))
        cached = jit_cache.load(key)  # checked against its digest: LLVM never reads a damaged object file
        if cached is None:
            from . import _say_compiling
            _say_compiling()
            mod = _optimized(make_ir())
        else:  # the engine loads the cached object instead of compiling the module, which can stay empty
            mod = llvm.parse_assembly("")
            mod.triple = t["tm"].triple
        self.engine = llvm.create_mcjit_compiler(mod, _machine(llvm, t["cpu"], t["features"]))
        self.engine.set_object_cache(lambda m, data: cached is None and jit_cache.store(key, data),
                                     lambda m: cached)
        self.engine.finalize_object()
        self.fn = ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * nargs, ctypes.c_int64, ctypes.c_int64)(
            self.engine.get_function_address(name))

    def __call__(self, arrays, n0, n1):
        self.fn(*[a.ctypes.data for a in arrays], n0, n1)


@functools.lru_cache(maxsize=None)
def kernel(kind, s):
    """The compiled kernel ``kind`` ('forward' or 'grad_weight') for Shape ``s`` (made once per process)."""
    if kind == "forward":
        return Kernel(lambda: forward_ir(s), f"forward {s}", "conv_forward", 4 if s.bias else 3)
    return Kernel(lambda: grad_weight_ir(s), f"grad_weight {s}", "conv_grad_weight", 3)


# ---- the three convolutions on NumPy arrays ---------------------------------------------------------------------
def _whole_blocks(a, lanes):
    """``a`` with its first axis (output channels) zero-padded to whole blocks of ``lanes``."""
    out = np.zeros((ceil_div(a.shape[0], lanes) * lanes, *a.shape[1:]), dtype=a.dtype)
    out[:a.shape[0]] = a
    return out


def pack_weight(w, lanes):
    """(O, C, KH, KW) -> (O/V blocks, C, KH, KW, V), the missing channels of the last block zero."""
    _, c, kh, kw = w.shape
    wp = _whole_blocks(w, lanes)
    return np.ascontiguousarray(wp.reshape(-1, lanes, c, kh, kw).transpose(0, 2, 3, 4, 1))


def _shape(x, w_shape, win, pads, bias=False, frame=False):
    """The Shape of the kernel for input x (padded by ``pads``), weights of ``w_shape`` and the Window ``win``;
    ``frame``: the padding is a frame of zeros that the kernel may skip (an input gradient's)."""
    _, c, h, wd = x.shape
    live = (pads[0], pads[0] + h, pads[2], pads[2] + wd) if frame and any(pads) else ()
    return Shape(c, h + pads[0] + pads[1], wd + pads[2] + pads[3], w_shape[0], *w_shape[2:], *win.stride,
                 *win.dilation, *win.out_hw, "double" if x.dtype == np.float64 else "float",
                 lanes_for(w_shape[0], x.itemsize), bias, live)


# Padding is done by each thread for a few samples at a time (about PAD_BYTES), just before its kernel reads them:
# still in cache, and in parallel. Measured: padding a whole batch up front took 0.14 ms of a 0.7 ms convolution;
# 4 samples at a time cost more than that on small maps (a Python round per chunk). 1 MiB rather than 256 KiB
# (benchmarks/NOTES.md, change 64): the three kernels of a convolution on 4x4 to 14x14 maps 4-11% faster, larger equal.
PAD_BYTES = 1 << 20


def _pads(x_shape, win):
    """(top, bottom, left, right): the zeros around x that the kernel reads. The bottom and right ones can exceed
    the padding where the output asks for more (padding='same' with an even kernel pads more there, as torch)."""
    need_h = (win.oh - 1) * win.sh + win.dh * (win.kh - 1) + 1
    need_w = (win.ow - 1) * win.sw + win.dw * (win.kw - 1) + 1
    return (win.ph, max(win.ph, need_h - x_shape[2] - win.ph), win.pw, max(win.pw, need_w - x_shape[3] - win.pw))


def _padded_parts(x, pads, lo, hi):
    """(start, padded samples from there) over x[lo:hi], about PAD_BYTES at a time in one buffer whose border stays
    zero; without padding, x[lo:hi] itself (read in place) when it is C-contiguous."""
    top, bottom, left, right = pads
    if not any(pads) and x.flags.c_contiguous:
        yield lo, x[lo:hi]
        return
    n, c, h, w = x.shape
    step = max(1, min(hi - lo, PAD_BYTES // (c * (h + top + bottom) * (w + left + right) * x.itemsize)))
    buf = np.zeros((step, c, h + top + bottom, w + left + right), x.dtype)
    for a in range(lo, hi, step):
        m = min(step, hi - a)
        buf[:m, :, top:top + h, left:left + w] = x[a:a + m]
        yield a, buf[:m]


def conv(x, w, win, bias=None, pads=None, frame=False):
    """y = conv2d(x, w) (+ bias) for float32/float64 NumPy arrays, groups = 1, over the kernels.Window ``win``.
    ``pads`` (top, bottom, left, right, none negative) replaces the padding where it is not the same on both
    sides. ``frame``: the kernel may skip products with the padding (they add 0 x w: exact for a finite w, where
    torch's convolution, multiplying its padding, would make NaN of an inf weight; the input gradient's frame)."""
    pads = pads or _pads(x.shape, win)
    s = _shape(x, w.shape, win, pads, bias is not None, frame)
    k = kernel("forward", s)
    y = np.empty((x.shape[0], w.shape[0], *win.out_hw), dtype=x.dtype)
    consts = [pack_weight(w, s.lanes)] + ([] if bias is None else [_whole_blocks(bias, s.lanes)])

    def run(_, lo, hi):
        for a, xs in _padded_parts(x, pads, lo, hi):
            k([xs, consts[0], y[a:], *consts[1:]], 0, len(xs))
    split(x.shape[0], run)
    return y


def conv_grad_input(gy, w, x_shape, win):
    """The input gradient of conv2d (groups = 1): a full convolution of gy, zero-inserted between rows and
    columns for a stride, with the weights flipped and their channel axes swapped."""
    kh, kw, sh, sw, dh, dw = win.kh, win.kw, win.sh, win.sw, win.dh, win.dw
    n, o, oh, ow = gy.shape
    if (sh, sw) != (1, 1):
        up = np.zeros((n, o, (oh - 1) * sh + 1, (ow - 1) * sw + 1), gy.dtype)
        up[:, :, ::sh, ::sw] = gy
        gy = up
    top, left = dh * (kh - 1) - win.ph, dw * (kw - 1) - win.pw
    bottom = x_shape[2] + dh * (kh - 1) - top - gy.shape[2]
    right = x_shape[3] + dw * (kw - 1) - left - gy.shape[3]
    # a negative pad (padding beyond the kernel's reach) crops gy instead
    gy = gy[:, :, max(-top, 0):gy.shape[2] - max(-bottom, 0), max(-left, 0):gy.shape[3] - max(-right, 0)]
    wt = w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)  # (C, O, KH, KW)
    full = Window(kh, kw, 1, 1, 0, 0, dh, dw, *x_shape[2:])  # stride 1, the padding given by pads
    # the frame adds nothing for a finite w (conv.jit_backward hands a non-finite one to the chunked im2col)
    return conv(gy, wt, full, pads=tuple(max(p, 0) for p in (top, bottom, left, right)), frame=True)


def conv_grad_weight(x, gy, w_shape, win):
    """The weight gradient of conv2d (groups = 1), summed over the batch (per thread, then added)."""
    n, c = x.shape[:2]
    o, _, kh, kw = w_shape
    pads = _pads(x.shape, win)
    s = _shape(x, w_shape, win, pads)
    k = kernel("grad_weight", s)
    blocks = ceil_div(o, s.lanes)
    threads, _ = workers()
    parts = np.zeros((min(threads, n), blocks, c, kh, kw, s.lanes), x.dtype)

    def run(i, lo, hi):
        gyt = np.empty((hi - lo, *gy.shape[2:], blocks * s.lanes), gy.dtype)  # (n, OH, OW, O padded to blocks)
        gyt[..., :o] = gy[lo:hi].transpose(0, 2, 3, 1)
        gyt[..., o:] = 0
        for a, xs in _padded_parts(x, pads, lo, hi):
            k([xs, gyt[a - lo:], parts[i]], 0, len(xs))
    used = split(n, run)
    gw = parts[0] if used == 1 else parts[:used].sum(axis=0)
    return np.ascontiguousarray(gw.transpose(0, 4, 1, 2, 3).reshape(blocks * s.lanes, c, kh, kw)[:o])


def show(kind, x_shape, w_shape, stride=(1, 1), padding=(0, 0), dilation=(1, 1), dtype="float32", asm=False):
    """The LLVM IR (``asm=True``: this CPU's assembly) of kernel ``kind`` ('forward' or 'grad_weight') for a
    convolution of an input of ``x_shape`` (N, C, H, W) with weights of ``w_shape`` (O, C, KH, KW)."""
    out_hw = [(x_shape[2 + d] + 2 * padding[d] - dilation[d] * (w_shape[2 + d] - 1) - 1) // stride[d] + 1
              for d in range(2)]
    win = Window.of(w_shape[2:], stride, padding, dilation, out_hw)
    x = np.empty((0, *x_shape[1:]), dtype)  # only its shape and dtype are read
    s = _shape(x, w_shape, win, _pads(x_shape, win))
    text = forward_ir(s) if kind == "forward" else grad_weight_ir(s)
    if not asm:
        return text
    return _target()["tm"].emit_assembly(_optimized(text))
