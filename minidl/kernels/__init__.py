"""Kernels: the only place that knows about devices and speed.

``_numpy.py`` is the readable reference (and runs CuPy arrays too), ``_numba.py`` the compiled CPU
kernels, ``_cuda.py`` the GPU kernels (Numba's CUDA target, for CuPy arrays where a GPU is usable).
``use('numpy')`` forces the reference everywhere (tests compare them); the environment variable
``MINIDL_KERNELS=numpy`` does the same at start-up.
"""
import functools
import importlib
import os
import sys
import threading
from typing import NamedTuple

import numpy as np

from ..backend import get_array_module

from . import _numpy, autotune, blas

_choice = os.environ.get("MINIDL_KERNELS", "auto")
_compiled = None  # the Numba kernel module once imported, False when Numba is missing
_gpu = None  # the CUDA kernel module once imported, False when Numba's CUDA target cannot run here


def use_reference(flag=True):
    """The reading mode (also ``MINIDL_REFERENCE=1``): every op runs its readable NumPy reference
    (``kernels/_numpy.py``), conv2d runs im2col + one GEMM per group (``kernels/conv.py``'s first algorithm), matrix
    products run on one OpenBLAS thread, and nothing is compiled (Numba and llvmlite are not even imported), so that
    a learner can step through any op in a debugger and get the fast path's numbers within float rounding. Returns
    the previous setting. (The flag lives in autotune.py, which decides what runs, so that blas.py can read it.)"""
    return autotune.set_reference(flag)


def reference():
    """Whether the reading mode is on (see ``use_reference``)."""
    return autotune.reference()


def use(name):
    """Pick the CPU kernels: 'auto' (Numba when it imports) or 'numpy' (the reference). Returns the old."""
    global _choice
    if name not in ("auto", "numpy", "numba"):
        raise ValueError(f"kernels.use: expected 'auto', 'numba' or 'numpy', got {name!r}")
    old, _choice = _choice, name
    return old


# dtype instances in a set: `dtype in (np.float32, np.float64)` compares with the scalar types, 174 ns a call against
# 45 (every kernel call asks; benchmarks/NOTES.md, change 62)
_COMPILED_DTYPES = frozenset((np.dtype(np.float32), np.dtype(np.float64)))


def _impl(x):
    """The kernel module for this array: Numba for float32/float64 NumPy arrays, the CUDA kernels for
    float32/float64 device arrays on a usable GPU, else the reference."""
    global _compiled
    if autotune.reference() or _choice == "numpy" or x.dtype not in _COMPILED_DTYPES:
        return _numpy
    if type(x) is not np.ndarray:
        return (hasattr(x, "__cuda_array_interface__") and _gpu_kernels()) or _numpy
    if _compiled is None:  # imported on first use: `import minidl` stays free of Numba's start-up
        with _LOCK:
            if _compiled is None:
                try:
                    module = importlib.import_module(__name__ + "._numba")
                    _one_thread_pool_at_a_time()
                    _announce_compiles()
                    _compiled = module  # last: another thread's call (no lock) compiles only once the line is set up
                except ImportError:
                    if _choice == "numba":
                        raise
                    _compiled = False
    return _compiled or _numpy


# The contract: every kernel module (_numpy, _numba, _cuda) defines each of these with the signature of the
# function of that name below, or lists it in its NOT_PROVIDED dict with the reason; a name it does not provide
# runs the reference (_numpy, which also runs CuPy arrays). tests/test_layout.py checks every module against it.
CONTRACT = ("im2col", "col2im", "max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward",
            "batch_norm_stats", "batch_norm_apply", "batch_norm_backward", "erf", "conv_direct", "conv_direct_grad_w",
            "conv_direct_grad_x", "relu", "relu_backward", "lstm_forward_step", "lstm_backward_step",
            "layer_norm_rows", "layer_norm_rows_backward")


def _kernel(name, x):
    """The kernel ``name`` for array ``x``: its module's (see _impl), or the reference's where that module does
    not provide it."""
    impl = _impl(x)
    return getattr(impl, name, None) or getattr(_numpy, name)


def _gpu_kernels():
    """kernels/_cuda.py when Numba's CUDA target finds a GPU and compiles and runs a kernel there, else False
    (asked once)."""
    global _gpu
    if _gpu is None:
        with _LOCK:
            if _gpu is None:
                _gpu = _load_gpu_kernels()
    return _gpu


def _load_gpu_kernels():
    try:
        from numba import cuda
        if not cuda.is_available():
            return False
    except Exception:  # no numba-cuda, no driver: CuPy runs the reference kernels
        return False
    try:
        module = importlib.import_module(__name__ + "._cuda")
        module.probe()
        return module
    except Exception as e:  # any failure of the third-party compiler means: do without it, and say so
        # Seen on a real GPU: a numba-cuda older than its NumPy failed every first compile in a process (NumPy
        # 2.5 removed np.row_stack, which it overloads): 183 op-table failures before this probe
        import numba
        why = f"{type(e).__name__}: {e}".splitlines()[0][:200]
        print(f"minidl: Numba's CUDA target cannot compile a kernel here ({why}; numba {numba.__version__}, NumPy "
              f"{np.__version__}): the GPU runs minidl's CuPy reference kernels instead", file=sys.stderr, flush=True)
        return False


_LOCK = threading.RLock()  # the first use's import of the compiled (CPU, GPU) kernel modules, once per process


def _fresh_lock_after_fork():  # a lock held by another thread at fork time would stay held in the child
    global _LOCK
    _LOCK = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_fresh_lock_after_fork)


# No lock around the compiled kernels: each is a serial `nogil` loop over a range, split by blas.split onto minidl's
# own threads (change 49), so kernels called from several Python threads run at once, as NumPy's do. (A lock held
# every call stood here while kernels were Numba parallel loops, whose workqueue pool aborts on concurrent use; it
# cost about 0.9 us a call and ran two threads' kernels one after the other: benchmarks/NOTES.md, change 58.)


_said = []


def _say_compiling():
    """One line on stderr, the first time this process compiles a minidl kernel (Numba's or kernels/jit.py's):
    a first step that waits for compiles should not wait in silence."""
    if not _said:
        _said.append(True)
        print("minidl: compiling kernels for this CPU (first run only; later runs load them from Numba's cache)",
              file=sys.stderr, flush=True)


def _announce_compiles():
    """Say so (``_say_compiling``) when Numba compiles a minidl kernel: it compiles only on a cache miss (a fresh
    install, a new CPU); its "numba:compile" event fires for real compiles only, not for kernels loaded from its
    cache."""
    from numba.core import event

    class Announce(event.Listener):
        def on_start(self, ev):
            disp = ev.data.get("dispatcher") if isinstance(ev.data, dict) else None
            module = getattr(getattr(disp, "py_func", None), "__module__", None) or ""
            if module.startswith("minidl."):
                _say_compiling()

        def on_end(self, ev):
            pass
    event.register("numba:compile", Announce())


def _one_thread_pool_at_a_time():
    """Numba's parallel loops on its 'workqueue' threads, which sleep when a kernel ends. minidl's own kernels have
    had no parallel loop since change 49 (they split on minidl's threads); this still chooses the layer for a user's
    ``parallel=True`` kernel, as when minidl's were (the choice dates from then: Numba's default OpenMP threads spin
    after each kernel and fought OpenBLAS's threads on the next GEMM, LeNet-5's step at batch 128 64 ms against 23 on
    2 cores). A NUMBA_THREADING_LAYER set by the user wins."""
    import numba
    if "NUMBA_THREADING_LAYER" not in os.environ:
        numba.config.THREADING_LAYER = "workqueue"


class Window(NamedTuple):
    """Where the sliding windows of a convolution, unfold/fold or pooling lie on an (H, W) map: kernel size,
    stride, padding, dilation and the number of windows (output positions) along each dim. One value travels
    from the functional op through the algorithms to the kernels, which read it by name; only the compiled
    kernels' calls unpack it (``*win``), since Numba and CUDA kernels take plain ints."""
    kh: int
    kw: int
    sh: int
    sw: int
    ph: int
    pw: int
    dh: int
    dw: int
    oh: int
    ow: int

    @classmethod
    def of(cls, kernel_size, stride, padding, dilation, out_hw):
        """From (h, w) pairs: ``Window.of(w.shape[2:], stride, padding, dilation, out_hw)``."""
        return cls(*kernel_size, *stride, *padding, *dilation, *out_hw)

    @property
    def stride(self):
        return self.sh, self.sw

    @property
    def padding(self):
        return self.ph, self.pw

    @property
    def dilation(self):
        return self.dh, self.dw

    @property
    def out_hw(self):
        return self.oh, self.ow


def im2col(x, win, pad_value=0.0):
    """Every window of x (N, C, H, W) as a column: (C*kh*kw, N*oh*ow); padding reads ``pad_value``."""
    return _kernel("im2col", x)(x, win, pad_value)


def col2im(col, shape, win):
    """im2col's adjoint: the columns summed back into an image of ``shape`` (overlapping windows add)."""
    return _kernel("col2im", col)(col, shape, win)


def max_pool2d(x, win):
    """The max of each window and its flat index into the input plane (-1 for a window of padding only)."""
    return _kernel("max_pool2d", x)(x, win)


def max_pool2d_backward(gy, arg, shape, win=None):
    """``win`` where the windows have one geometry (not adaptive pooling): the GPU kernel gathers by it; the CPU
    kernels scatter by ``arg`` alone."""
    return _kernel("max_pool2d_backward", gy)(gy, arg, shape, win)


def erf(x):
    return _kernel("erf", x)(x)


def relu(x):
    """max(x, 0) as torch's (-0.0 and NaN stay); x's shape and dtype."""
    return _kernel("relu", x)(x)


def relu_backward(gy, y):
    """gy where relu's output y is not <= 0 (so also where it is NaN, as torch), else 0; gy's shape and dtype."""
    return _kernel("relu_backward", gy)(gy, y)


def lstm_forward_step(a, a_in, t, hc, cs, gates, tc):
    """An LSTM time step's gates, cell and output from its pre-activations (functional/rnn.py's loop; the
    arguments are _numpy.py's). The Numba kernel runs float32 in one pass with a rational tanh."""
    _kernel("lstm_forward_step", a)(a, a_in, t, hc, cs, gates, tc)


def lstm_backward_step(g, t, dh, dc, gates, tc, cs, da):
    """Backpropagation through one LSTM time step (functional/rnn.py's loop; the arguments are _numpy.py's)."""
    _kernel("lstm_backward_step", da)(g, t, dh, dc, gates, tc, cs, da)


# Below this many multiply-adds a matrix product skips blas.py's thread scheduling (which costs microseconds):
# OpenBLAS runs any product of at most 65,536 x GEMM_MULTITHREAD_THRESHOLD (4 by default) multiply-adds on the
# calling thread (interface/gemm.c), so the numbers and the threads are the same either way.
SMALL_MATMUL = 1 << 14


def matmul(a, b):
    """``a @ b``; on the CPU through kernels/blas.py (OpenBLAS on one thread, large products split across
    minidl's worker threads), on a GPU by CuPy (cuBLAS)."""
    if type(a) is np.ndarray and type(b) is np.ndarray:
        if a.ndim == 2 and b.ndim == 2 and a.shape[0] * a.shape[1] * b.shape[1] < SMALL_MATMUL:
            return np.matmul(a, b)  # OpenBLAS runs a product this small on the calling thread whatever its settings
        return blas.matmul(a, b)
    return get_array_module(a, b).matmul(a, b)


def argmax_nan_last(a, axis):
    return _numpy.argmax_nan_last(a, axis)


def index_add(out, key, values):
    _numpy.index_add(out, key, values)


def zeros_with(shape, key, values):
    """zeros(shape) with ``values`` added at ``key`` (indexing's backward). A basic key selects each position once,
    so its values are copied in, not added: measured, 1.4 ms against 2.6 for a (512, 256, 2, 2) slice of a 3x3
    weight's gradient (a convolution's dead taps dropped, functional/conv.py)."""
    xp = get_array_module(values)
    out = xp.zeros(shape, dtype=values.dtype)
    if _numpy.basic_index(key):
        out[key] = values
    else:
        _numpy.index_add(out, key, values)
    return out


def scatter_add_along(out, index, src, dim):
    _numpy.scatter_add_along(out, index, src, dim)


def name_for(x):
    """'numba', 'cuda' or 'numpy': which kernels run on this array now (part of autotune keys, since the
    candidates differ)."""
    impl = _impl(x)
    return "numpy" if impl is _numpy else "cuda" if impl is _gpu else "numba"


def has_direct_conv(x):
    """Whether a compiled direct convolution (CPU or GPU) can run on this array."""
    return name_for(x) != "numpy"


def conv_direct(x, w, win, groups):
    return _kernel("conv_direct", x)(x, w, win, groups)


def conv_direct_grad_w(x, gy, w_shape, win, groups):
    return _kernel("conv_direct_grad_w", x)(x, gy, w_shape, win, groups)


def conv_direct_grad_x(gy, w, x_shape, win, groups):
    return _kernel("conv_direct_grad_x", gy)(gy, w, x_shape, win, groups)


def fused_step(p, *arrays):
    """The GPU kernels when a fused optimizer step (``sgd_step``, ``adam_step`` in kernels/_cuda.py: one kernel
    per parameter) can update ``p`` in place: C-contiguous device arrays on a usable GPU. Else None: the
    optimizer's array code runs (on the CPU NumPy's in-place operations already make no temporaries worth
    fusing). ``arrays`` may hold None for state not made yet."""
    if type(p) is np.ndarray:  # the CPU never fuses: answered without touching (or importing) the kernels
        return None
    impl = _impl(p)
    if impl is _gpu and impl and all(a.flags.c_contiguous for a in (p, *arrays) if a is not None):
        return impl
    return None


def batch_norm_stats(x):
    return _kernel("batch_norm_stats", x)(x)


def batch_norm_apply(x, mean, invstd, w, b):
    return _kernel("batch_norm_apply", x)(x, mean, invstd, w, b)


def batch_norm_backward(x, gy, mean, invstd, w, training):
    return _kernel("batch_norm_backward", x)(x, gy, mean, invstd, w, training)


def layer_norm_rows(x, w, b, eps):
    """Each row of x (R, N) normalised (biased variance, ``eps`` added), times ``w`` plus ``b`` (N,) where given:
    (y, mean, invstd), y of x's shape and dtype, the statistics (R, 1); sums in float64."""
    return _kernel("layer_norm_rows", x)(x, w, b, eps)


def layer_norm_rows_backward(g, x, w, mean, invstd):
    """layer_norm_rows' gradients for upstream g (R, N): (gx, the sum over rows of g xhat (w's gradient), the sum
    over rows of g (b's)), in g's dtype."""
    return _kernel("layer_norm_rows_backward", g)(g, x, w, mean, invstd)


def avg_pool2d(x, div, win):
    """Window sums of x divided by ``div`` (out_h, out_w): torch's divisors, padding counted or not."""
    return _kernel("avg_pool2d", x)(x, div, win)


def avg_pool2d_backward(gy, div, shape, win):
    return _kernel("avg_pool2d_backward", gy)(gy, div, shape, win)
