"""Matrix products on the CPU that degrade smoothly on a busy machine.

OpenBLAS's own threads wait for each other by spinning. When the OS pauses one of them (a machine
with more runnable threads than cores), the others spin until it comes back: on 2 cores next to 10
CPU-bound processes a LeNet-5 step took 0.5-1.5 s, and up to 54 s with Numba on one thread, against
0.17-0.31 s with OpenBLAS on one thread (benchmarks/NOTES.md, change 10). So on a busy machine (load
average above the cores), and always in reproducible mode (autotune off), minidl runs its products with
OpenBLAS on one thread and splits a large product into row (or column) blocks computed by its own worker
threads, which wait by blocking (NumPy releases the GIL inside matmul, so the blocks run in parallel; the
split depends only on the shapes and the thread count). On an idle machine OpenBLAS's own threads are
faster (change 16) and run the products as NumPy would.

The worker count is OpenBLAS's own thread setting when minidl first multiplies (OPENBLAS_NUM_THREADS,
threadpoolctl limits), so a user's limit holds. Without threadpoolctl, products run as NumPy runs them.
"""
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import autotune

# Below this many floating-point operations a product runs on the calling thread. Measured on 2 cores
# (NOTES.md, change 10): handing blocks to a worker costs 0.3-0.5 ms here, as much as a 2^24-flop product
# takes, while a 2^30-flop product split in two runs as fast as on OpenBLAS's own two threads.
SPLIT_FLOPS = 1 << 27

_state = {}
_init_lock = threading.Lock()


def _after_fork():
    """A forked child has none of the parent's worker threads: it makes its own pool when it needs one
    (a pool inherited by fork would take jobs that no thread ever runs, and the product would hang)."""
    global _init_lock
    _init_lock = threading.Lock()
    _state.clear()
    _kernel_pool.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def _setup():
    """(BLAS controllers, worker count, thread pool or None), found once."""
    with _init_lock:
        if not _state:
            try:
                from threadpoolctl import ThreadpoolController
                libs = [c for c in ThreadpoolController().select(user_api="blas").lib_controllers]
            except Exception:  # threadpoolctl missing or unable to see the BLAS: NumPy as it is
                libs = []
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
            # the fewest any BLAS allows: a limit the user set (threadpool_limits) covers the libraries loaded then,
            # and Numba's import loads a second OpenBLAS (SciPy's) afterwards at its default count
            threads = min(min(c.num_threads for c in libs) if libs else 1, cores)
            _state.update(libs=libs, threads=threads, cores=cores,
                          pool=ThreadPoolExecutor(threads - 1, thread_name_prefix="minidl-gemm",
                                                  initializer=_blas_threads, initargs=(libs, 1))
                          if libs and threads > 1 else None)
    return _state["libs"], _state["threads"], _state["pool"]


_kernel_pool = {}


def workers():
    """(thread count, pool of count-1 threads or None) for minidl's own kernels that split a batch across threads
    (kernels/jit.py's convolutions, the Numba pooling kernels): as many threads as minidl's products use, so a
    user's OPENBLAS_NUM_THREADS or threadpoolctl limit holds here too. The kernels run with the GIL released."""
    if "n" not in _kernel_pool:
        libs, threads, _ = _setup()
        if threads == 1 and not libs:  # no threadpoolctl to read a limit from: every core
            threads = _state["cores"]
        with _init_lock:  # two threads' first calls make one pool
            if "n" not in _kernel_pool:
                _kernel_pool["pool"] = ThreadPoolExecutor(threads - 1, thread_name_prefix="minidl-kernel") \
                    if threads > 1 else None
                _kernel_pool["n"] = threads
    return _kernel_pool["n"], _kernel_pool["pool"]


# Handing a part to a worker thread and waiting for it costs 35-65 us on this 2-core machine (a sleeping thread's
# wake-up through the OS, measured with ThreadPoolExecutor, a lock pair and a queue alike: NOTES.md, change 48).
# A 2x2 max pooling reads about 4.5 elements a nanosecond on one thread; split in two it lost below a million input
# elements ((64, 6, 24, 24): 49 us on one thread, 102 us split; (64, 64, 16, 16): 292 against 196). So a kernel
# that says how many elements it touches (``items``) runs on the calling thread below this many.
SPLIT_MIN_ITEMS = 1 << 19


def split(n, run, items=None):
    """run(part, lo, hi) over range(n) in as many equal parts as ``workers()`` has threads, the calling thread
    taking the first; returns the number of parts. With ``items`` below SPLIT_MIN_ITEMS it is one part: the
    calling thread runs it all (the split depends only on the shapes and the thread count, as before)."""
    threads, pool = workers()
    if autotune.reference() or (items is not None and items < SPLIT_MIN_ITEMS):  # the reading mode: one thread
        pool = None
        threads = 1
    parts = max(1, min(threads, n))
    step = -(-n // parts) if n else 1
    jobs = [(i, lo, min(lo + step, n)) for i, lo in enumerate(range(0, n, step))]
    futures = [pool.submit(run, *job) for job in jobs[1:]] if pool else []
    for job in jobs if pool is None else jobs[:1]:
        run(*job)
    for f in futures:
        f.result()
    return len(jobs)


_local = threading.local()


def _blas_threads(libs, n):
    """Set OpenBLAS's thread count for the calling thread (only when it changes). OpenBLAS 0.3.31 (NumPy's)
    keeps this setting per thread: set in one thread, another still saw 2, and the same product then gave
    other bits there. So each thread that runs minidl's products sets it, and keeps it."""
    if getattr(_local, "blas_threads", None) != n:
        for c in libs:
            if c.num_threads != n:
                c.set_num_threads(n)
        _local.blas_threads = n


# Whether the CPUs are oversubscribed, looked at once a second: more runnable threads right now than the
# cores plus one (/proc/loadavg's fourth field, which counts this process's running threads too). The load
# average lags both ways: next to 10 new CPU burners it took seconds to rise (steps stalled up to 1.7 s in
# between), and a minute after they stopped it still said busy. Once busy, the machine counts as busy for
# HOLD_S more seconds. Where there is no /proc/loadavg, the 1-minute load average decides.
# Measured (NOTES.md, change 16): on an idle machine OpenBLAS's own threads run LeNet's conv GEMMs 30% faster
# than one thread plus minidl's split; next to CPU burners its spinning threads lose (worst steps 2-4x).
BUSY_CHECK_S = 1.0
HOLD_S = 5.0
_load = {"at": -1e9, "until": -1e9}


def _busy(cores):
    now = time.monotonic()
    if now - _load["at"] > BUSY_CHECK_S:
        _load["at"] = now
        try:
            with open("/proc/loadavg") as f:
                fields = f.read().split()
            busy = int(fields[3].split("/")[0]) > cores + 1
        except (OSError, ValueError, IndexError):  # not Linux: the load average where there is one
            try:
                busy = os.getloadavg()[0] > cores + 0.5
            except OSError:
                busy = True  # nothing to go by: the safe side
        if busy:
            _load["until"] = now + HOLD_S
    return now < _load["until"]


def reproducible():
    """The reproducible mode: the conv tuner is off (``minidl.use_deterministic_algorithms(True)``,
    ``autotune.set_enabled(False)`` or ``MINIDL_AUTOTUNE=0``), so the reference algorithms run, and so must the
    products: split by shape alone, never by what OpenBLAS's threads or the machine's load happen to do."""
    return not autotune.is_enabled()


# Whether OpenBLAS's idle threads spin (NumPy was imported before minidl, so minidl's OPENBLAS_THREAD_TIMEOUT came
# too late to take effect): set by minidl/__init__.py.
openblas_spins = False


def own_threads(cores):
    """True when minidl runs products on one OpenBLAS thread and splits large ones across its own threads:
    always in reproducible mode and where OpenBLAS's idle threads spin, else when the machine has more runnable
    threads than ``cores`` (plus one)."""
    return reproducible() or openblas_spins or _busy(cores)


def _blocks(size, parts):
    step = -(-size // parts)
    return [(lo, min(lo + step, size)) for lo in range(0, size, step)]


def matmul(a, b):
    """``a @ b`` for NumPy arrays, with NumPy's broadcasting rules."""
    libs, threads, pool = _setup()
    if not libs:
        return np.matmul(a, b)
    if autotune.reference():  # the reading mode: one OpenBLAS thread, no split
        _blas_threads(libs, 1)
        return np.matmul(a, b)
    if not own_threads(_state["cores"]):  # an idle machine: OpenBLAS's own threads are the fastest
        _blas_threads(libs, threads)
        return np.matmul(a, b)
    _blas_threads(libs, 1)
    if pool is None or a.ndim == 1 or b.ndim == 1:
        return np.matmul(a, b)
    m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
    batch = int(np.prod(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]))) if a.ndim > 2 or b.ndim > 2 else 1
    if 2 * m * n * k * batch < SPLIT_FLOPS:
        return np.matmul(a, b)
    out = np.empty(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (m, n),
                   dtype=np.result_type(a.dtype, b.dtype))
    if out.ndim > 2 and out.shape[0] >= threads:  # a batch of products: split the leading batch dim
        a_b = np.broadcast_to(a, out.shape[:-2] + a.shape[-2:])
        b_b = np.broadcast_to(b, out.shape[:-2] + b.shape[-2:])
        jobs = [(a_b[lo:hi], b_b[lo:hi], out[lo:hi]) for lo, hi in _blocks(out.shape[0], threads)]
    elif out.ndim == 2 and m >= n:  # tall: blocks of rows of a
        jobs = [(a[lo:hi], b, out[lo:hi]) for lo, hi in _blocks(m, threads)]
    elif out.ndim == 2:  # wide: blocks of columns of b
        jobs = [(a, b[:, lo:hi], out[:, lo:hi]) for lo, hi in _blocks(n, threads)]
    else:
        return np.matmul(a, b)
    futures = [pool.submit(_product, *job) for job in jobs[1:]]
    _product(*jobs[0])  # the calling thread takes the first block
    for f in futures:
        f.result()
    return out


def _product(a, b, out):
    np.matmul(a, b, out=out)  # a column block of out is strided by rows: still a BLAS layout
