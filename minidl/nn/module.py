"""Module: the base of every layer and model (parameters, buffers, sub-modules, state_dict, hooks)."""
from collections import OrderedDict, namedtuple

import numpy as np

from .. import backend
from ..autograd import function as _function, no_grad
from ..autograd.capturing import _trace, not_capturable, replayed
from ..autograd.tensor import Tensor
from .parameter import Parameter


class _IncompatibleKeys(namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])):
    """What ``load_state_dict`` returns, as torch's: the named tuple (missing_keys, unexpected_keys), which prints
    ``<All keys matched successfully>`` when both are empty."""

    __slots__ = ()

    def __repr__(self):
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return super().__repr__()

    __str__ = __repr__


IncompatibleKeys = _IncompatibleKeys


class _Handle:
    def __init__(self, store, key):
        self.store, self.key = store, key

    def remove(self):
        self.store.pop(self.key, None)


def _to_array(value, key):
    """A state_dict value (minidl tensor, NumPy array or torch tensor) as a NumPy/CuPy array."""
    if isinstance(value, Tensor):
        return value._data
    if type(value).__module__.startswith("torch"):
        return value.detach().cpu().numpy()
    if backend.is_device_array(value) or isinstance(value, (int, float, list)):
        arr = np.asarray(value) if not backend.is_device_array(value) else value
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"load_state_dict: value for {key!r} must hold numbers, got dtype {arr.dtype}")
        return arr
    raise TypeError(f"load_state_dict: value for {key!r} must be a minidl tensor, a NumPy array or a torch tensor, "
                    f"got {type(value).__name__}")


def _staged(own, state_dict):
    """(the (tensor, new array) pairs to copy, torch's lines for those whose shapes differ)."""
    staged, errors = [], []
    for key, target in own.items():
        if key in state_dict:
            arr = _to_array(state_dict[key], key)
            if tuple(arr.shape) == target.shape:
                staged.append((target, arr))
            else:
                errors.append(f"size mismatch for {key}: copying a param with shape {tuple(arr.shape)}, the shape "
                              f"in the current model is {tuple(target.shape)}")
    return staged, errors


def _key_errors(missing, unexpected):
    """torch's lines for keys a state_dict lacks or has too many of."""
    out = []
    if missing:
        out.append("Missing key(s) in state_dict: " + ", ".join(f'"{k}"' for k in missing))
    if unexpected:
        out.append("Unexpected key(s) in state_dict: " + ", ".join(f'"{k}"' for k in unexpected))
    return out


class Module:
    """Base class for layers and models, as torch.nn.Module.

    Assigning a Parameter or a Module to an attribute registers it; ``register_buffer`` registers
    non-trainable state (running statistics) that is saved in ``state_dict`` and moved by ``to``.
    """

    training = True

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())
        object.__setattr__(self, "_forward_pre_hooks", OrderedDict())
        object.__setattr__(self, "_hook_id", 0)
        object.__setattr__(self, "training", True)

    # -- registration ----------------------------------------------------------------------------
    def _require_init(self):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}: call super().__init__() before assigning parameters or "
                                 "sub-modules")

    def __setattr__(self, name, value):
        if isinstance(value, (Parameter, Module)) or name in self.__dict__.get("_buffers", ()):
            self._require_init()
        target = "_parameters" if isinstance(value, Parameter) else "_modules" if isinstance(value, Module) else None
        for store in ("_parameters", "_modules", "_buffers"):
            d = self.__dict__.get(store)
            keeps_buffer = store == "_buffers" and (value is None or isinstance(value, Tensor))
            if d is not None and name in d and not keeps_buffer and store != target:
                del d[name]  # a name re-assigned in its own store keeps its place (as torch: children() order)
        if isinstance(value, (Parameter, Module)):
            self.__dict__.pop(name, None)  # a plain attribute of that name would hide the registered one
            (self._parameters if isinstance(value, Parameter) else self._modules)[name] = value
        elif name in self.__dict__.get("_buffers", ()):
            self._buffers[name] = value
        elif name in self.__dict__.get("_parameters", ()) and value is None:
            self._parameters[name] = None
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        d = self.__dict__
        for store in ("_parameters", "_buffers", "_modules"):
            if store in d and name in d[store]:
                return d[store][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        for store in ("_parameters", "_buffers", "_modules"):
            if name in self.__dict__.get(store, ()):
                del self.__dict__[store][name]
                self._non_persistent.discard(name)
                return
        object.__delattr__(self, name)

    def register_parameter(self, name, param):
        self._require_init()
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter: {name!r} must be a Parameter or None, got {type(param).__name__}")
        self.__dict__.pop(name, None)
        self._parameters[name] = param

    def register_buffer(self, name, tensor, persistent=True):
        """Register non-trainable state; persistent buffers are part of ``state_dict``."""
        self._require_init()
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"register_buffer: {name!r} must be a Tensor or None, got {type(tensor).__name__}")
        if "." in name or not name:
            raise ValueError(f"register_buffer: invalid buffer name {name!r}")
        self.__dict__.pop(name, None)
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent.discard(name)
        else:
            self._non_persistent.add(name)

    def add_module(self, name, module):
        self._require_init()
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module: {name!r} must be a Module, got {type(module).__name__}")
        self._modules[name] = module

    register_module = add_module

    # -- calling -----------------------------------------------------------------------------------
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} has no forward()")

    def __call__(self, *args, **kwargs):
        prof = _function._profiler  # minidl.profiler, while one records: the call is an "nn.Module: Name" event
        event = prof.begin(f"nn.Module: {type(self).__name__}", (), "module") if prof is not None else None
        if _trace.capture is not None:  # minidl.compile writing down a step: this module's parameters are guarded
            _trace.capture.module(self)
            if self._forward_pre_hooks or self._forward_hooks:
                not_capturable(f"a forward hook on {type(self).__name__}")
        try:
            for hook in list(self._forward_pre_hooks.values()):
                r = hook(self, args)
                if r is not None:
                    args = r if isinstance(r, tuple) else (r,)
            out = self.forward(*args, **kwargs)
            for hook in list(self._forward_hooks.values()):
                r = hook(self, args, out)
                if r is not None:
                    out = r
            return out
        finally:
            if event is not None:
                prof.end(event, None)

    def _add_hook(self, store, hook):
        if not callable(hook):
            raise TypeError(f"hook must be callable, got {type(hook).__name__}")
        key = self._hook_id
        object.__setattr__(self, "_hook_id", key + 1)
        store[key] = hook
        return _Handle(store, key)

    def register_forward_hook(self, hook):
        """``hook(module, inputs, output)`` runs after forward; a returned value replaces the output."""
        return self._add_hook(self._forward_hooks, hook)

    def register_forward_pre_hook(self, hook):
        """``hook(module, inputs)`` runs before forward; a returned value replaces the inputs."""
        return self._add_hook(self._forward_pre_hooks, hook)

    # -- traversal ---------------------------------------------------------------------------------
    def named_modules(self, memo=None, prefix=""):
        memo = set() if memo is None else memo
        if id(self) in memo:
            return
        memo.add(id(self))
        yield prefix, self
        for name, m in self._modules.items():
            if m is not None:
                yield from m.named_modules(memo, f"{prefix}.{name}" if prefix else name)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        seen = set()
        for name, m in self._modules.items():
            if m is not None and id(m) not in seen:
                seen.add(id(m))
                yield name, m

    def children(self):
        for _, m in self.named_children():
            yield m

    def _named(self, store, prefix, recurse):
        seen = set()
        mods = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for mp, m in mods:
            for name, t in m.__dict__[store].items():
                if t is None or id(t) in seen:
                    continue
                seen.add(id(t))
                yield (f"{mp}.{name}" if mp else name), t

    def named_parameters(self, prefix="", recurse=True):
        yield from self._named("_parameters", prefix, recurse)

    def parameters(self, recurse=True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix="", recurse=True):
        yield from self._named("_buffers", prefix, recurse)

    def buffers(self, recurse=True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    # -- state -------------------------------------------------------------------------------------
    def state_dict(self, destination=None, prefix="", keep_vars=False):
        """An ordered dict of every parameter and persistent buffer, with torch's key names."""
        out = OrderedDict() if destination is None else destination
        for name, p in self._parameters.items():
            if p is not None:
                out[prefix + name] = p if keep_vars else p.detach()
        for name, b in self._buffers.items():
            if b is not None and name not in self._non_persistent:
                out[prefix + name] = b if keep_vars else b.detach()
        for name, m in self._modules.items():
            if m is not None:
                m.state_dict(out, prefix + name + ".", keep_vars)
        return out

    def load_state_dict(self, state_dict, strict=True):
        """Copy values into this module's parameters and buffers (in place, keeping their dtype and device).

        Values may be minidl tensors, NumPy arrays or torch tensors. With ``strict`` any missing or
        unexpected key is an error; a wrongly shaped value is always an error, and nothing is changed
        unless every value fits. Returns the named tuple ``(missing_keys, unexpected_keys)``, which prints
        ``<All keys matched successfully>`` when both are empty (as torch's).
        """
        apply, result = self._stage_state_dict(state_dict, strict)
        apply()
        return result

    def _stage_state_dict(self, state_dict, strict):
        """Check ``state_dict`` against this module; return (a function that copies it in, the keys result).
        Raises before anything is changed (checkpoints check every part first, then apply them all)."""
        if not hasattr(state_dict, "items"):
            raise TypeError(f"load_state_dict: expected a dict, got {type(state_dict).__name__}")
        own = self.state_dict(keep_vars=True)
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        staged, size_errors = _staged(own, state_dict)
        errors = (_key_errors(missing, unexpected) if strict else []) + size_errors
        if errors:
            raise RuntimeError(f"Error(s) in loading state_dict for {type(self).__name__}:\n\t" + "\n\t".join(errors))

        def apply():
            with no_grad():
                for target, arr in staged:
                    target.copy_(backend.to_device(arr, target.device).astype(target.dtype, copy=False))
        return apply, _IncompatibleKeys(missing, unexpected)

    # -- modes and conversion ----------------------------------------------------------------------
    def train(self, mode=True):
        if not isinstance(mode, bool):
            raise ValueError(f"train: mode must be a bool, got {mode!r}")
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self):
        return self.train(False)

    def requires_grad_(self, requires_grad=True):
        """Freeze (False) or unfreeze this module's parameters, e.g. for fine-tuning."""
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    @replayed
    def zero_grad(self, set_to_none=True):
        for p in self.parameters():
            if p.grad is not None:
                if set_to_none:
                    p.grad = None
                else:
                    p.grad = Tensor._make(backend.get_array_module(p.grad._data).zeros_like(p.grad._data))

    def apply(self, fn):
        """Call ``fn(module)`` on every sub-module (children first) and on this module."""
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    def _convert(self, fn):
        for m in self.modules():
            for store in (m._parameters, m._buffers):
                for t in store.values():
                    if t is not None:
                        t._data = fn(t._data)
                        if t.grad is not None:
                            t.grad = Tensor._make(fn(t.grad._data))
        return self

    def share_memory(self):
        """Move every parameter and buffer (and the gradients already made) into shared memory, in place, as
        torch's: processes that get this module (forked after this call, or sent it through minidl.multiprocessing)
        then train the same weights (Hogwild). Returns the module."""
        for m in self.modules():
            for store in (m._parameters, m._buffers):
                for t in store.values():
                    if t is not None:
                        t.share_memory_()
                        if t.grad is not None:
                            t.grad.share_memory_()
        return self

    def to(self, *args, device=None, dtype=None, non_blocking=False, memory_format=None):
        """Move parameters and buffers to a device and/or cast the floating ones to a dtype, in place
        (the Parameter objects stay the same, so optimizers keep working). ``memory_format`` lays out
        4-D parameters and buffers in that format (``minidl.channels_last``), as torch's Module.to.
        ``non_blocking`` is accepted; copies are synchronous."""
        for a in args:
            if isinstance(a, (str, backend.Device)):
                device = a
            elif isinstance(a, bool):  # non_blocking: accepted, copies are synchronous
                continue
            elif isinstance(a, backend.memory_format):
                memory_format = a
            else:
                dtype = a
        if memory_format is not None and not isinstance(memory_format, backend.memory_format):
            raise TypeError(f"Module.to: memory_format must be a minidl memory format, got {memory_format!r}")
        dtype = backend.as_dtype(dtype, "Module.to")
        if dtype is not None and dtype.kind != "f":
            raise TypeError(f"Module.to: only floating dtypes are allowed, got {dtype}")

        def fn(arr):
            if device is not None:
                arr = backend.to_device(arr, device)
            if dtype is not None and arr.dtype.kind == "f":
                arr = arr.astype(dtype, copy=False)
            if memory_format is not None and arr.ndim == 4:
                arr = backend.in_memory_format(arr, memory_format, "Module.to")
            return arr
        return self._convert(fn)

    def float(self):
        return self.to(np.float32)

    def double(self):
        return self.to(np.float64)

    def cpu(self):
        return self.to("cpu")

    def cuda(self, device=None):
        return self.to("cuda" if device is None else f"cuda:{device}")

    # -- repr --------------------------------------------------------------------------------------
    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = []
        extra = self.extra_repr()
        if extra:
            lines = extra.split("\n")
        for name, m in self._modules.items():
            sub = repr(m).replace("\n", "\n  ")
            lines.append(f"({name}): {sub}")
        name = type(self).__name__
        if not lines:
            return f"{name}()"
        if len(lines) == 1 and not self._modules:
            return f"{name}({lines[0]})"
        return name + "(\n  " + "\n  ".join(lines) + "\n)"

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self._parameters) | set(self._buffers) | set(self._modules))
