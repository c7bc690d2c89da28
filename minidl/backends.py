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
"""
import sys
import types

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


cudnn = _Cudnn(__name__ + ".cudnn", "cuDNN's switches, mapped onto minidl's conv tuner and reproducible mode")
mps = _Mps(__name__ + ".mps", "Apple's GPU backend: not available in minidl")
sys.modules[cudnn.__name__] = cudnn  # `import minidl.backends.cudnn as cudnn` works, as torch's
sys.modules[mps.__name__] = mps
