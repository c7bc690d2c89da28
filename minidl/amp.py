"""``minidl.amp`` (and ``minidl.cuda.amp``, ``minidl.cpu.amp``): torch's mixed-precision API, as far as minidl has it.

- :class:`GradScaler` is torch's loss scaling, step for step: ``scale(loss)`` multiplies by the scale,
  ``unscale_(optimizer)`` divides the gradients back and looks for inf/NaN, ``step`` skips the update when one was
  found, ``update`` halves the scale after an overflow and doubles it after ``growth_interval`` clean steps. For
  device 'cuda' without a GPU it is disabled with torch's warning, and a disabled scaler is the identity (``scale``
  returns the loss, ``step`` just steps, ``state_dict()`` is empty), as torch's.
- :class:`autocast` does not cast: minidl has no mixed-precision kernels, so a region under autocast runs in the
  tensors' own dtypes (float32: more precise than torch's bfloat16/float16, and slower than torch's). It warns as
  torch does where torch disables itself (CUDA asked for without a GPU; a dtype CPU autocast does not take) and,
  once, that it runs in full precision where torch would cast. It works as a context manager and as a decorator.
"""
import functools
import math
import sys
import types
import warnings

from . import backend
from .autograd.tensor import Tensor

_DEVICE_TYPES = ("cpu", "cuda")


def is_autocast_available(device_type):
    """Whether ``autocast(device_type)`` is accepted (it runs without casting; see the module's doc)."""
    return device_type in _DEVICE_TYPES


class autocast:
    """``autocast(device_type, dtype=None, enabled=True, cache_enabled=None)``, as torch.amp.autocast; runs the
    block without casting (module doc). ``dtype`` defaults to torch's: float16 for 'cuda', bfloat16 for 'cpu'."""

    _warned_full_precision = False

    def __init__(self, device_type, dtype=None, enabled=True, cache_enabled=None):
        if not isinstance(device_type, str):
            raise ValueError(f"Expected `device_type` of type `str`, got: `{type(device_type)}`")
        if device_type not in _DEVICE_TYPES:
            raise RuntimeError(f"autocast: minidl has the device types 'cpu' and 'cuda', got {device_type!r}")
        self.device, self.fast_dtype, self._enabled = device_type, dtype, bool(enabled)
        if self._enabled and device_type == "cuda" and not backend.cuda_available():
            warnings.warn("CUDA is not available or torch_xla is imported. Disabling autocast.", stacklevel=2)
            self._enabled = False
        if self._enabled and device_type == "cpu" and dtype is not None and _dtype_name(dtype) not in (
                "bfloat16", "float16"):
            warnings.warn("In CPU autocast, but the target dtype is not supported. Disabling autocast.\nCPU Autocast "
                          "only supports dtypes of torch.bfloat16, torch.float16 currently.", stacklevel=2)
            self._enabled = False
        self._prev = None

    def __enter__(self):
        if self._enabled and not autocast._warned_full_precision:
            autocast._warned_full_precision = True
            warnings.warn(f"autocast(device_type={self.device!r}): minidl has no mixed precision; the block runs in "
                          "its tensors' own dtypes (float32 where torch would compute in bfloat16/float16)",
                          stacklevel=2)
        self._prev = _STATE.get(self.device, False)
        _STATE[self.device] = self._enabled
        return self

    def __exit__(self, *exc):
        _STATE[self.device] = self._prev
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapped(*args, **kwargs):
            with self:
                return fn(*args, **kwargs)
        return wrapped


_STATE = {}  # device type -> whether an autocast block is entered (and enabled) there


def is_autocast_enabled(device_type="cuda"):
    """Whether an enabled autocast block is open for ``device_type`` (the block casts nothing in minidl)."""
    return bool(_STATE.get(device_type, False))


def _dtype_name(dtype):
    return str(dtype).replace("torch.", "").replace("minidl.", "")


def custom_fwd(fwd=None, *, device_type="cuda", cast_inputs=None):
    """torch.amp.custom_fwd for a custom Function's forward: nothing to do where autocast casts nothing."""
    if fwd is None:
        return functools.partial(custom_fwd, device_type=device_type, cast_inputs=cast_inputs)
    return fwd


def custom_bwd(bwd=None, *, device_type="cuda"):
    """torch.amp.custom_bwd: nothing to do where autocast casts nothing."""
    if bwd is None:
        return functools.partial(custom_bwd, device_type=device_type)
    return bwd


class GradScaler:
    """Loss scaling, as torch.amp.GradScaler (see the module's doc): ``GradScaler(device='cuda', init_scale=2.**16,
    growth_factor=2.0, backoff_factor=0.5, growth_interval=2000, enabled=True)``.

    Typical use: ``scaler.scale(loss).backward(); scaler.step(optimizer); scaler.update()``.
    """

    def __init__(self, device="cuda", init_scale=2.0 ** 16, growth_factor=2.0, backoff_factor=0.5,
                 growth_interval=2000, enabled=True):
        self._device = device
        self._enabled = enabled
        if self._device == "cuda" and enabled and not backend.cuda_available():
            warnings.warn("torch.cuda.amp.GradScaler is enabled, but CUDA is not available.  Disabling.",
                          stacklevel=2)
            self._enabled = False
        if self._enabled:
            if growth_factor <= 1.0:
                raise ValueError("The growth factor must be > 1.0.")
            if backoff_factor >= 1.0:
                raise ValueError("The backoff factor must be < 1.0.")
            self._scale, self._growth_tracker = float(init_scale), 0
            self._growth_factor, self._backoff_factor = float(growth_factor), float(backoff_factor)
            self._growth_interval = int(growth_interval)
            self._per_optimizer = {}  # id(optimizer) -> {"stage": ..., "found_inf": bool}

    def is_enabled(self):
        return self._enabled

    def scale(self, outputs):
        """``outputs`` (a tensor, or lists/tuples of them) times the scale; themselves when disabled."""
        if not self._enabled:
            return outputs
        if isinstance(outputs, Tensor):
            return outputs * self._scale
        if isinstance(outputs, (list, tuple)):
            return type(outputs)(self.scale(o) for o in outputs)
        raise ValueError("outputs must be a Tensor or an iterable of Tensors")

    def _state(self, optimizer):
        return self._per_optimizer.setdefault(id(optimizer), {"stage": "ready", "found_inf": False})

    def unscale_(self, optimizer):
        """Divide ``optimizer``'s gradients by the scale, in place, and note whether any is inf or NaN."""
        if not self._enabled:
            return
        state = self._state(optimizer)
        if state["stage"] == "unscaled":
            raise RuntimeError("unscale_() has already been called on this optimizer since the last update().")
        if state["stage"] == "stepped":
            raise RuntimeError("unscale_() is being called after step().")
        inv_scale = 1.0 / self._scale
        found_inf = False
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad._data
                g *= inv_scale
                p.grad._vc[0] += 1
                found_inf = found_inf or not bool(backend.get_array_module(g).isfinite(g).all())
        state.update(stage="unscaled", found_inf=found_inf)

    def step(self, optimizer, *args, **kwargs):
        """``optimizer.step()`` on unscaled gradients (unscaling first if need be), skipped when one held inf or
        NaN; returns what the step returned (None when skipped)."""
        if not self._enabled:
            return optimizer.step(*args, **kwargs)
        if "closure" in kwargs:
            raise RuntimeError("Closure use is not currently supported if GradScaler is enabled.")
        state = self._state(optimizer)
        if state["stage"] == "stepped":
            raise RuntimeError("step() has already been called since the last update().")
        if state["stage"] == "ready":
            self.unscale_(optimizer)
        result = None if state["found_inf"] else optimizer.step(*args, **kwargs)
        state["stage"] = "stepped"
        return result

    def update(self, new_scale=None):
        """The next scale: ``new_scale`` if given, else backed off after an overflow in any optimizer since the last
        update, grown after ``growth_interval`` clean steps."""
        if not self._enabled:
            return
        if new_scale is not None:
            self._scale = float(new_scale.item() if isinstance(new_scale, Tensor) else new_scale)
        else:
            if not self._per_optimizer:
                raise AssertionError("No inf checks were recorded prior to update.")
            if any(s["found_inf"] for s in self._per_optimizer.values()):
                self._scale *= self._backoff_factor
                self._growth_tracker = 0
            else:
                self._growth_tracker += 1
                if self._growth_tracker == self._growth_interval:
                    self._scale *= self._growth_factor
                    self._growth_tracker = 0
            if math.isinf(self._scale):
                self._scale = float("inf")
        self._per_optimizer = {}

    def get_scale(self):
        return self._scale if self._enabled else 1.0

    def get_growth_factor(self):
        return self._growth_factor

    def set_growth_factor(self, new_factor):
        self._growth_factor = new_factor

    def get_backoff_factor(self):
        return self._backoff_factor

    def set_backoff_factor(self, new_factor):
        self._backoff_factor = new_factor

    def get_growth_interval(self):
        return self._growth_interval

    def set_growth_interval(self, new_interval):
        self._growth_interval = new_interval

    def state_dict(self):
        """torch's keys; empty when disabled."""
        if not self._enabled:
            return {}
        return {"scale": self._scale, "growth_factor": self._growth_factor, "backoff_factor": self._backoff_factor,
                "growth_interval": self._growth_interval, "_growth_tracker": self._growth_tracker}

    def load_state_dict(self, state_dict):
        if not self._enabled:
            return
        if len(state_dict) == 0:
            raise RuntimeError("The source state dict is empty, possibly because it was saved from a disabled "
                               "instance of GradScaler.")
        self._scale = float(state_dict["scale"])
        self._growth_factor = float(state_dict["growth_factor"])
        self._backoff_factor = float(state_dict["backoff_factor"])
        self._growth_interval = int(state_dict["growth_interval"])
        self._growth_tracker = int(state_dict.get("_growth_tracker", 0))


# ---- the deprecated spellings: torch.cuda.amp and torch.cpu.amp -----------------------------------------------------
def _deprecated(old, new):
    warnings.warn(f"`{old}(args...)` is deprecated. Please use `{new}args...)` instead.", FutureWarning,
                  stacklevel=3)


class _CudaGradScaler(GradScaler):
    """torch.cuda.amp.GradScaler: GradScaler('cuda', ...), with torch's deprecation warning."""

    def __init__(self, init_scale=2.0 ** 16, growth_factor=2.0, backoff_factor=0.5, growth_interval=2000,
                 enabled=True):
        _deprecated("torch.cuda.amp.GradScaler", "torch.amp.GradScaler('cuda', ")
        super().__init__("cuda", init_scale, growth_factor, backoff_factor, growth_interval, enabled)


class _CudaAutocast(autocast):
    """torch.cuda.amp.autocast: autocast('cuda', ...), with torch's deprecation warning."""

    def __init__(self, enabled=True, dtype=None, cache_enabled=True):
        _deprecated("torch.cuda.amp.autocast", "torch.amp.autocast('cuda', ")
        super().__init__("cuda", dtype, enabled, cache_enabled)


class _CpuAutocast(autocast):
    """torch.cpu.amp.autocast: autocast('cpu', ...), with torch's deprecation warning."""

    def __init__(self, enabled=True, dtype=None, cache_enabled=True):
        _deprecated("torch.cpu.amp.autocast", "torch.amp.autocast('cpu', ")
        super().__init__("cpu", dtype, enabled, cache_enabled)


_CudaGradScaler.__name__ = "GradScaler"
_CudaAutocast.__name__ = _CpuAutocast.__name__ = "autocast"


def _namespace(name, doc, **members):
    module = types.ModuleType(name, doc)
    module.__dict__.update(members)
    sys.modules[name] = module
    return module


cuda_amp = _namespace("minidl.cuda.amp", "torch.cuda.amp's deprecated spellings (see minidl.amp)",
                      GradScaler=_CudaGradScaler, autocast=_CudaAutocast, custom_fwd=custom_fwd,
                      custom_bwd=custom_bwd)
backend.cuda.amp = cuda_amp
cpu = _namespace("minidl.cpu", "torch.cpu, as far as scripts reach it: its amp namespace")
cpu.amp = _namespace("minidl.cpu.amp", "torch.cpu.amp's deprecated spellings (see minidl.amp)", autocast=_CpuAutocast)
cpu.is_available = lambda: True
