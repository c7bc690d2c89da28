"""minidl.compile: capture what a step does once, then replay its array work without Tensors or graph nodes.

    @minidl.compile
    def train_step(x, y):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        return loss

    model = minidl.compile(model)      # a module: its forward replayed, and under grad its backward as one node

The design is Chainer's ``static_graph`` and tinygrad's ``TinyJit``, guarded as torch.compile is:

1. **Warm-up.** The first call runs eagerly: the conv tuner chooses, optimizers make their state, ``.grad`` exists.
2. **Capture, twice.** The next two calls run eagerly too (their results are eager results), while a
   :class:`Recording` writes down, through the doors in autograd/capturing.py, every op's forward (its Function class,
   parameters, which arrays went in and came out), each raw backward, each accumulation into ``.grad``, and a call to
   each ``replayed`` function (optimizer steps, zero_grad, schedulers, clipping, random draws, tensor creation). Arrays
   are slots, numbered in the order they appear. Anything a replay cannot repeat (``.item()``, ``.numpy()``,
   ``bool(tensor)``, an in-place write outside an op, a hook, ``autograd.grad``) ends the capture with one warning
   naming it, and that function runs eagerly from then on: never a wrong number.
3. **Check.** The two recordings must be the same program: the same entries, the same parameters, the same tensors
   read from outside the step (parameters, buffers: by identity) and the same small constants (a Python number
   turned into an array: by value). A branch or a value that differs between them also ends the capture, naming the
   op. The second recording becomes the :class:`Plan`.
4. **Replay.** Each later call checks its guards (each tensor argument's shape, dtype, strides and device and whether
   it requires grad, the other arguments' values, grad mode, the default dtype, the train/eval flag of every module
   the step called: a changed one selects or captures another plan, up to ``cache_size``; each module's parameters
   and buffers by identity, and the shape, dtype and strides of every tensor read from outside: a changed one
   captures again), then runs the entries on the slot list. Forward entries call ``Function.forward`` on the arrays;
   replayed functions are called again, so learning rates, Adam's step count and schedulers are read at replay time
   and every random op draws from the generator then; BatchNorm's running statistics update in place as in eager
   mode. Slots are dropped after their last use, so a replay holds no more memory than the eager step.

A compiled module called under grad (an ordinary training loop around ``model = minidl.compile(model)``) is captured
with its backward: after its forward, each recorded call runs its graph backward once with a stand-in gradient to the
arguments and parameters that require grad (``.grad`` untouched; Recording.record_backward), and a replay returns one
Tensor whose node replays those backward entries (plan.py, _ReplayNode): the loss, ``backward()`` and the optimizer
stay the caller's, eager.

What a plan assumes and cannot check: that Python values the step computes itself (not its arguments, not module or
optimizer state) are the same on every call, as they were on the two recorded ones. Pass what changes as an argument.
"""
import functools
import os
import warnings

from .. import backend
from ..autograd.capturing import _trace
from ..autograd.grad_mode import _state as _grad_mode
from ..autograd.tensor import Tensor
from ..nn.module import Module
from .plan import Plan, _Differ
from .recording import Recording, _tensors_in

__all__ = ["compile", "CompileWarning", "CompiledFunction", "OptimizedModule", "Plan", "Recording"]


class CompileWarning(UserWarning):
    """A function that minidl.compile could not capture: it runs eagerly (the message says why)."""


class _KeyState:
    """What one guard key has: calls seen, a first recording waiting for its second, the plan, or eager for good."""
    __slots__ = ("calls", "first", "plan", "eager", "watch")

    def __init__(self):
        self.calls, self.first, self.plan, self.eager, self.watch = 0, None, None, False, ()


class _TensorArg:
    """Where a tensor argument was, in the key of a call's other arguments."""
    __slots__ = ()

    def __repr__(self):
        return "<tensor>"


_TENSOR = _TensorArg()


def _arguments(value, tensors):
    """``value`` with each Tensor collected into ``tensors`` and replaced by a marker: the hashable part of a key."""
    if isinstance(value, Tensor):
        tensors.append(value)
        return _TENSOR
    if isinstance(value, (tuple, list)):
        return (type(value).__name__, *(_arguments(v, tensors) for v in value))
    if isinstance(value, dict):
        return ("dict", *((k, _arguments(v, tensors)) for k, v in value.items()))
    return value


_SCALARS = (int, float, bool, str, type(None))
_EMPTY = object()


def _watched(value):
    return isinstance(value, (Tensor, Module, *_SCALARS)) or hasattr(value, "param_groups")


def _free_variables(fn):
    """(read, value) for each tensor, module, optimizer or Python number that ``fn`` reads from its closure or by a
    global name, as they are now: a replay checks they are still the same objects (numbers: equal), since a plan
    holds the tensors it read and bakes the numbers in (``x = next_batch`` rebinding a global the step reads)."""
    fn = getattr(fn, "__func__", fn)
    code = getattr(fn, "__code__", None)
    if code is None:
        return ()
    found = []
    for cell in fn.__closure__ or ():
        found.append((functools.partial(_cell_value, cell), _cell_value(cell)))
    names = fn.__globals__
    for name in code.co_names:
        if name in names:
            found.append(((lambda n=name: names.get(n, _EMPTY)), names[name]))
    return tuple((read, value) for read, value in found if _watched(value))


def _cell_value(cell):
    try:
        return cell.cell_contents
    except ValueError:  # a cell not bound yet
        return _EMPTY


def _same_value(now, then):
    if isinstance(then, _SCALARS):
        return type(now) is type(then) and now == then
    return now is then


class CompiledFunction:
    """What :func:`compile` returns for a function: call it as the function."""

    def __init__(self, fn, warmup=1, cache_size=8, disable=False, module=False):
        if not callable(fn):
            raise TypeError(f"compile: expected a function or a Module, got {type(fn).__name__}")
        if not isinstance(warmup, int) or isinstance(warmup, bool) or warmup < 0:
            raise ValueError(f"compile: warmup must be an int >= 0, got {warmup!r}")
        if not isinstance(cache_size, int) or isinstance(cache_size, bool) or cache_size < 1:
            raise ValueError(f"compile: cache_size must be an int >= 1, got {cache_size!r}")
        self.fn, self.__wrapped__ = fn, fn
        self.__name__ = getattr(fn, "__name__", type(fn).__name__)
        self.__doc__ = getattr(fn, "__doc__", None)
        self.warmup, self.cache_size = warmup, cache_size
        self.disabled = disable or os.environ.get("MINIDL_COMPILE", "1") == "0"
        self.states = {}
        self.modules = []   # every module a recording ran: their train/eval flags are part of the key
        self.eager_reasons = []  # why each key that stopped capturing runs eagerly (also warned, once)
        self.replays = 0
        self.module = module  # a module's forward: under grad, its backward is captured too (Recording.record_backward)

    def _key(self, args, kwargs):
        tensors = []
        rest = _arguments((args, kwargs), tensors)
        ids = [id(t._data) for t in tensors]  # which arguments are one array (f(x, x)): a plan reads one slot for both
        sig = tuple((t._data.shape, t._data.dtype.str, t._data.strides, type(t._data), t.requires_grad, ids.index(i))
                    for t, i in zip(tensors, ids))
        key = (rest, sig, _grad_mode.enabled, backend.default_dtype(), tuple(m.training for m in self.modules))
        try:
            hash(key)
        except TypeError:
            return tensors, None
        return tensors, key

    def __call__(self, *args, **kwargs):
        if self.disabled or _trace.capture is not None or _trace.record is not None:
            return self.fn(*args, **kwargs)  # off, or inside another capture or minidl.onnx's tracer: as written
        tensors, key = self._key(args, kwargs)
        st = self.states.get(key) if key is not None else None
        if st is None:
            if key is None or len(self.states) >= self.cache_size:
                self._eager_for_good(None, "an argument that is not hashable" if key is None else
                                     f"more than cache_size={self.cache_size} different guards (shapes, modes, "
                                     "argument values)")
                return self.fn(*args, **kwargs)
            st = self.states[key] = _KeyState()
        if st.plan is not None:
            if st.plan.valid() and all(_same_value(read(), value) for read, value in st.watch):
                self.replays += 1
                return st.plan.run(tensors)
            # a parameter, its layout, or a tensor, module or number the function reads by name changed: capture again
            st.plan, st.first, st.calls = None, None, self.warmup
        if st.eager or st.calls < self.warmup:
            st.calls += 1
            return self.fn(*args, **kwargs)
        return self._record(key, st, tensors, args, kwargs)

    def _record(self, key, st, tensors, args, kwargs):
        rec = Recording(tensors)
        _trace.record, _trace.capture = rec.op, rec
        try:
            result = self.fn(*args, **kwargs)
            if self.module and rec.failed is None and any(t.grad_fn is not None for t in _tensors_in(result)):
                rec.record_backward(result)
        finally:
            _trace.record = _trace.capture = None
        out = rec.finish(result)
        known = {id(m) for m in self.modules}
        added = tuple(m for m in rec.modules.values() if id(m) not in known)
        if added:  # modules met for the first time: their modes key every later call, so every key takes them on
            self.modules.extend(added)
            flags = tuple(m.training for m in added)
            self.states = {k[:-1] + (k[-1] + flags,): v for k, v in self.states.items()}
        if rec.failed is not None:
            self._eager_for_good(st, rec.failed)
        elif st.first is None:
            rec.out, st.first = out, rec
        else:
            rec.out = out
            try:
                st.plan, st.watch = Plan(st.first, rec), _free_variables(self.fn)
            except _Differ as e:
                self._eager_for_good(st, str(e))
            st.first = None
        return result

    def _eager_for_good(self, st, reason):
        if st is not None:
            st.eager, st.first = True, None
        if reason not in self.eager_reasons:
            self.eager_reasons.append(reason)
            warnings.warn(f"minidl.compile: {self.__name__} runs eagerly: {reason}", CompileWarning, stacklevel=3)

    def __repr__(self):
        return f"<minidl.compile of {self.fn!r}>"


class OptimizedModule(Module):
    """What :func:`compile` returns for a Module (torch's name): the module as ``_orig_mod`` (so state_dict keys carry
    that prefix, as torch's do), called through a compiled function. Attributes are the module's."""

    def __init__(self, mod, **options):
        super().__init__()
        self._orig_mod = mod
        object.__setattr__(self, "_compiled", CompiledFunction(mod, module=True, **options))

    def forward(self, *args, **kwargs):
        return self._compiled(*args, **kwargs)

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["_orig_mod"], name)


def compile(model=None, *, disable=False, warmup=1, cache_size=8, **torch_options):
    """Capture ``model`` (a function, such as a whole training step, or a Module) on its first calls and replay its
    array work after: see this module's docstring. ``@minidl.compile``, ``@minidl.compile(disable=True)`` and
    ``minidl.compile(model)`` work as torch's. torch's own options (``fullgraph``, ``dynamic``, ``backend``, ``mode``,
    ``options``) are accepted and change nothing. ``MINIDL_COMPILE=0`` or ``disable=True``: every call runs as
    written. A function that cannot be captured runs eagerly, with one CompileWarning saying why."""
    unknown = set(torch_options) - {"fullgraph", "dynamic", "backend", "mode", "options"}
    if unknown:
        raise TypeError(f"compile: unexpected keyword argument {sorted(unknown)[0]!r}")
    options = dict(disable=disable, warmup=warmup, cache_size=cache_size)
    if model is None:
        return lambda fn: compile(fn, **options)
    if isinstance(model, Module):
        return OptimizedModule(model, **options)
    return CompiledFunction(model, **options)
