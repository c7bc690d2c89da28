"""torch.backends, as far as scripts written for torch use it: ``backends.cudnn.benchmark`` and ``.deterministic``
drive minidl's own switches (minidl has no cuDNN: its GPU kernels are its own), ``backends.mps`` says there is no
Apple GPU.

- ``cudnn.benchmark``: minidl's conv tuner (kernels/autotune.py), which times each convolution's algorithms once
  per shape, as cuDNN's benchmark mode does. On by default in minidl (torch's default is off): reading it says
  whether the tuner is on; setting it turns the tuner on or off.
- ``cudnn.deterministic``: the reproducible mode (``minidl.use_deterministic_algorithms``): fixed conv algorithms and
  products split by shape alone, bit-identical across runs. It wins over ``benchmark`` in either order, as in torch
  (a deterministic cuDNN benchmarks only among deterministic algorithms): while it is on, ``benchmark = True``
  leaves the tuner off.

``backends.cuda``: the flags CUDA scripts set (``matmul.allow_tf32``, ``enable_flash_sdp``, ``sdp_kernel(...)``) are
accepted and kept, with torch's defaults, so that such scripts run; they change nothing, since minidl has no TF32
products (its float32 products are float32 on every device) and one attention implementation.
"""
import contextlib
import sys
import types
import warnings

from . import kernels


class _Cudnn(types.ModuleType):
    enabled = True  # accepted and kept, as torch's flag: minidl has no cuDNN to turn off
    allow_tf32 = False

    @staticmethod
    def is_available():
        return False

    @staticmethod
    def version():
        return None

    @property
    def deterministic(self):
        return self.__dict__.get("_deterministic", False)

    @deterministic.setter
    def deterministic(self, mode):
        self.__dict__["_deterministic"] = bool(mode)
        if mode:
            kernels.autotune.set_enabled(False)
        else:
            kernels.autotune.set_enabled(self.__dict__.get("_benchmark", True))

    @property
    def benchmark(self):
        return kernels.autotune.is_enabled()

    @benchmark.setter
    def benchmark(self, mode):
        self.__dict__["_benchmark"] = bool(mode)
        if not self.deterministic:
            kernels.autotune.set_enabled(bool(mode))


class _Mps(types.ModuleType):
    @staticmethod
    def is_available():
        return False

    @staticmethod
    def is_built():
        return False


class _CudaMatmul:
    """``backends.cuda.matmul``: torch's flags, accepted and kept (an unknown name is refused, as torch's)."""
    _FLAGS = {"allow_tf32": False, "allow_fp16_reduced_precision_reduction": True,
              "allow_bf16_reduced_precision_reduction": True, "fp32_precision": "ieee"}

    def __init__(self):
        object.__setattr__(self, "_values", dict(self._FLAGS))

    def __getattr__(self, name):
        try:
            return self.__dict__["_values"][name]
        except KeyError:
            raise AttributeError(f"Unknown attribute {name}") from None

    def __setattr__(self, name, value):
        if name not in self._FLAGS:
            raise AttributeError(f"Unknown attribute {name}")
        self._values[name] = value


_SDP = ("flash", "mem_efficient", "math", "cudnn")


class _Cuda(types.ModuleType):
    """torch.backends.cuda's switches, accepted (minidl has one attention and no TF32; see the module's doc)."""

    def __init__(self, name, doc):
        super().__init__(name, doc)
        self.matmul = _CudaMatmul()
        self._sdp = dict.fromkeys(_SDP, True)

    @staticmethod
    def is_built():
        """Whether minidl can run on CUDA at all (CuPy imports and sees a GPU)."""
        from .backend import cuda_available
        return cuda_available()

    def flash_sdp_enabled(self):
        return self._sdp["flash"]

    def mem_efficient_sdp_enabled(self):
        return self._sdp["mem_efficient"]

    def math_sdp_enabled(self):
        return self._sdp["math"]

    def cudnn_sdp_enabled(self):
        return self._sdp["cudnn"]

    def enable_flash_sdp(self, enabled):
        self._sdp["flash"] = bool(enabled)

    def enable_mem_efficient_sdp(self, enabled):
        self._sdp["mem_efficient"] = bool(enabled)

    def enable_math_sdp(self, enabled):
        self._sdp["math"] = bool(enabled)

    def enable_cudnn_sdp(self, enabled):
        self._sdp["cudnn"] = bool(enabled)

    @contextlib.contextmanager
    def sdp_kernel(self, enable_flash=True, enable_math=True, enable_mem_efficient=True, enable_cudnn=True):
        """The attention flags set for a block and restored after it (deprecated in torch, with its warning)."""
        warnings.warn("`torch.backends.cuda.sdp_kernel()` is deprecated. In the future, this context manager will be "
                      "removed. Please see `torch.nn.attention.sdpa_kernel()` for the new context manager, with "
                      "updated signature.", FutureWarning, stacklevel=3)
        saved = dict(self._sdp)
        self._sdp.update(flash=bool(enable_flash), math=bool(enable_math), mem_efficient=bool(enable_mem_efficient),
                         cudnn=bool(enable_cudnn))
        try:
            yield
        finally:
            self._sdp.update(saved)


cudnn = _Cudnn(__name__ + ".cudnn", "cuDNN's switches, mapped onto minidl's conv tuner and reproducible mode")
mps = _Mps(__name__ + ".mps", "Apple's GPU backend: not available in minidl")
sys.modules[cudnn.__name__] = cudnn  # `import minidl.backends.cudnn as cudnn` works, as torch's
cuda = _Cuda(__name__ + ".cuda", "CUDA's switches: accepted and kept (minidl has no TF32 and one attention)")
sys.modules[mps.__name__] = mps
sys.modules[cuda.__name__] = cuda
