"""Process-level settings that must be made before NumPy is imported, so ``minidl/__init__.py`` imports this first.

One thread pool at a time: OpenBLAS's idle threads spin for ~0.1 s after each GEMM and slow whatever runs next on
the other cores (Numba kernels, or torch: a torch LeNet-5 step right after a NumPy GEMM took 58-76 ms instead of
6-10 ms here). A short timeout lets them sleep. It only takes effect when minidl is imported before NumPy; a value
the user set wins. When NumPy came first (its OpenBLAS already started, its threads spinning), minidl runs its
products on one OpenBLAS thread and splits large ones itself (kernels/blas.py, as on a busy machine): measured
(benchmarks/NOTES.md, change 25), spinning threads took half the cores from the jit conv kernels' threads,
InceptionNet's step 52 -> 78 ms; with one thread it is 51 ms.

(The other process-level setting, glibc's malloc thresholds, is ``backend.keep_freed_memory``: it needs no order.)
"""
import os
import sys

blas_spins = "numpy" in sys.modules and "OPENBLAS_THREAD_TIMEOUT" not in os.environ
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
