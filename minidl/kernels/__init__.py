"""Kernels: the only place that knows about devices and speed.

``_numpy.py`` is the readable reference (and runs CuPy arrays too), ``_numba.py`` the compiled CPU
kernels. ``use('numpy')`` forces the reference everywhere (tests compare the two); the environment
variable ``MINIDL_KERNELS=numpy`` does the same at start-up.
"""
import importlib
import os

import numpy as np

from . import _numpy

_choice = os.environ.get("MINIDL_KERNELS", "auto")
_compiled = None  # the Numba kernel module once imported, False when Numba is missing


def use(name):
    """Pick the CPU kernels: 'auto' (Numba when it imports) or 'numpy' (the reference). Returns the old."""
    global _choice
    if name not in ("auto", "numpy", "numba"):
        raise ValueError(f"kernels.use: expected 'auto', 'numba' or 'numpy', got {name!r}")
    old, _choice = _choice, name
    return old


def _impl(x):
    """The kernel module for this array: Numba for float32/float64 NumPy arrays, else the reference."""
    global _compiled
    if _choice == "numpy" or type(x) is not np.ndarray or x.dtype not in (np.float32, np.float64):
        return _numpy
    if _compiled is None:  # imported on first use: `import minidl` stays free of Numba's start-up
        try:
            _compiled = importlib.import_module(__name__ + "._numba")
        except ImportError:
            if _choice == "numba":
                raise
            _compiled = False
    return _compiled or _numpy


def im2col(x, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w, pad_value=0.0):
    return _impl(x).im2col(x, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w, pad_value)


def col2im(col, shape, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w):
    return _impl(col).col2im(col, shape, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w)


def max_pool2d(x, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w):
    return _impl(x).max_pool2d(x, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w)


def max_pool2d_backward(gy, arg, shape):
    return _impl(gy).max_pool2d_backward(gy, arg, shape)


def erf(x):
    return _impl(x).erf(x)


def index_add(out, key, values):
    _numpy.index_add(out, key, values)


def scatter_add_along(out, index, src, dim):
    _numpy.scatter_add_along(out, index, src, dim)
