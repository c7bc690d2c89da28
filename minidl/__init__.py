"""minidl: a from-scratch deep-learning engine with PyTorch's API (NumPy on the CPU, CuPy on GPUs)."""
from ._process import blas_spins as _blas_spins  # first: settings NumPy's OpenBLAS reads when it loads

import sys as _sys

import numpy as _np

from . import backend
backend.keep_freed_memory()
from .backend import Device as device, set_default_dtype, get_default_dtype
from .backend import cuda
from .backend import errors  # minidl.errors: the error classes that are RuntimeErrors too, as torch's
from .backend import memory_format, contiguous_format, channels_last, preserve_format
from .autograd import Tensor, no_grad, enable_grad, set_grad_enabled, is_grad_enabled, inference_mode
from . import autograd
from .autograd.creation import (Generator, DefaultGenerator as _DefaultGenerator, tensor, as_tensor, from_numpy,
                                zeros, ones, empty, full, arange, linspace, eye,
                                rand, randn, randint, randint_like, randperm, zeros_like, ones_like, empty_like,
                                full_like, rand_like, randn_like)
from . import functional, kernels
kernels.blas.openblas_spins = _blas_spins
from .functional import OPS as _OPS
from .functional._registry import TOP as _TOP
from . import nn, optim, data, testing, models, utils, accelerator, onnx, distributed, backends, profiler
from .serialization import save, load
from . import multiprocessing, serialization  # torch.multiprocessing (tensors in shared memory), torch.serialization
from . import amp  # also minidl.cuda.amp and minidl.cpu (torch's older spellings)
from .amp import autocast, cpu
from .compiler import compile, CompileWarning  # torch.compile: capture a step, replay its array work
from .autograd.convert import tensor_types as _tensor_types
from .autograd.size import Size

globals().update({_name: _OPS[_name] for _name in _TOP})  # minidl.<op>: each op registered with top=True


def __getattr__(name):  # an op registered with top=True after minidl was imported (a user's own)
    if name in _TOP:
        return _OPS[name]
    if name == "bfloat16":  # ml_dtypes' bfloat16, imported on first use (it takes ~0.5 s); without it, a stand-in
        return backend.bfloat16()  # that says how to install it when used
    raise AttributeError(f"module 'minidl' has no attribute {name!r}")


_TENSOR_TYPES = _tensor_types(Tensor)  # torch's typed tensor classes, made for minidl's Tensor
FloatTensor, DoubleTensor, HalfTensor, LongTensor, IntTensor, ShortTensor, CharTensor, ByteTensor, BoolTensor = (
    _TENSOR_TYPES[n] for n in ("FloatTensor", "DoubleTensor", "HalfTensor", "LongTensor", "IntTensor", "ShortTensor",
                               "CharTensor", "ByteTensor", "BoolTensor"))

utils.data = data  # minidl.utils.data is minidl.data, as torch.utils.data is torch's
_sys.modules[__name__ + ".utils.data"] = data
autograd.profiler = profiler  # torch.autograd.profiler.record_function / .profile, as older scripts spell them
_sys.modules[__name__ + ".autograd.profiler"] = profiler

# dtypes print as torch's (minidl.float32) and equal NumPy's (minidl.float32 == np.float32)
dtype = backend.dtype
float32 = backend.wrap_dtype(_np.dtype(_np.float32))
float64 = backend.wrap_dtype(_np.dtype(_np.float64))
float16 = backend.wrap_dtype(_np.dtype(_np.float16))
int64 = backend.wrap_dtype(_np.dtype(_np.int64))
int32 = backend.wrap_dtype(_np.dtype(_np.int32))
int16 = backend.wrap_dtype(_np.dtype(_np.int16))
int8 = backend.wrap_dtype(_np.dtype(_np.int8))
uint8 = backend.wrap_dtype(_np.dtype(_np.uint8))
bool = backend.wrap_dtype(_np.dtype(_np.bool_))
float, double, long, half, int, short = float32, float64, int64, float16, int32, int16
concat = _OPS["cat"]

__version__ = "0.1.0"


default_generator = _DefaultGenerator()


def manual_seed(seed):
    """Seed minidl's random generators (every device). Returns the default generator, as torch."""
    backend.manual_seed(seed)
    return default_generator


def use_deterministic_algorithms(mode, *, warn_only=False):
    """Bit-reproducible runs (as torch's switch): the reference convolution algorithms instead of per-shape timing,
    and matrix products split by shape alone (one OpenBLAS thread plus minidl's workers), so that the same seed and
    thread count give the same bits whatever the machine's load. ``warn_only`` is accepted for torch's signature."""
    kernels.autotune.set_enabled(not mode)


def are_deterministic_algorithms_enabled():
    return kernels.blas.reproducible()


use_reference = kernels.use_reference  # the reading mode: every op its readable NumPy reference (kernels/__init__.py)


initial_seed = default_generator.initial_seed


def get_rng_state():
    """The CPU generator's state as a uint8 tensor, as torch.get_rng_state (its bytes are numpy's PCG64 state)."""
    return as_tensor(backend.get_rng_state())


def set_rng_state(new_state):
    """Restore the CPU generator to a state from :func:`get_rng_state`."""
    backend.set_rng_state(new_state.numpy() if isinstance(new_state, Tensor) else new_state)
