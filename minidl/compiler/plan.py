"""A plan: the entries a capture wrote down, over numbered array slots, and their replay (see compiler/__init__.py).

Each entry is one thing the eager step did, replayed on the slot list ``env``: a Function's forward on arrays (_Op), an
op without a gradient (_Untracked), a node's raw backward (_Backward), the start of a backward pass (_Pass), a leaf's
accumulation into ``.grad`` (_Accumulate), a ``replayed`` Python function called again (_Call)."""
import weakref

import numpy as np

from .. import backend
from ..autograd import function as _function
from ..autograd.function import _loud_floats, _quiet_floats, _resolve_saved
from ..autograd.grad_mode import _state as _grad_mode
from ..autograd.tensor import Tensor

_NDARRAY = np.ndarray


class _Slot:
    """An array of the step inside an argument or a parameter: slot ``i`` of the replay's list."""
    __slots__ = ("i",)

    def __init__(self, i):
        self.i = i

    def __eq__(self, other):
        return type(other) is _Slot and other.i == self.i

    def __hash__(self):
        return hash(self.i)

    def __repr__(self):
        return f"<slot {self.i}>"


class _GradSlot(_Slot):
    """In a compiled module's result: output ``k`` of those that carry the graph (slot ``i``). Told apart from a plain
    slot, since a detached tensor of the same array shares the slot and must stay detached."""
    __slots__ = ("k",)

    def __init__(self, i, k):
        self.i, self.k = i, k

    def __eq__(self, other):
        return type(other) is _GradSlot and (other.i, other.k) == (self.i, self.k)

    def __hash__(self):
        return hash((self.i, self.k))


def _fill(template, env, as_tensor, made=None):
    """``template`` with each _Slot replaced by its array (or a Tensor of it, ``as_tensor``); each _GradSlot by its
    Tensor in ``made``."""
    if type(template) is _GradSlot:
        return made[template.k]
    if type(template) is _Slot:
        a = env[template.i]
        return Tensor._make(a) if as_tensor else a
    if type(template) in (tuple, list):
        return type(template)(_fill(v, env, as_tensor, made) for v in template)
    if type(template) is dict:
        return {k: _fill(v, env, as_tensor, made) for k, v in template.items()}
    return template


def _slots_in(template, out):
    if type(template) is _Slot or type(template) is _GradSlot:
        out.append(template.i)
    elif type(template) in (tuple, list):
        for v in template:
            _slots_in(v, out)
    elif type(template) is dict:
        for v in template.values():
            _slots_in(v, out)
    return out


def _same(a, b):
    """Whether two recorded values are the same (arrays by value and dtype, tensors by identity)."""
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if backend.is_device_array(a):
        return a.shape == b.shape and a.dtype == b.dtype and bool(backend.get_array_module(a).array_equal(
            a, b, equal_nan=a.dtype.kind in "fc"))
    if isinstance(a, Tensor):
        return False
    if isinstance(a, float) and a != a and b != b:
        return True
    try:
        return bool(a == b)
    except Exception:  # an object whose == is not a truth value is not the same
        return False


# -- the entries of a plan: each runs on the slot list ``env`` --------------------------------------------------------
class _Entry:
    __slots__ = ("frees",)

    def reads(self):
        return ()

    def writes(self):
        return ()


class _Op(_Entry):
    """A Function's forward on arrays. A node whose backward is raw (``differentiable_twice = False``) is kept in a
    slot for its _Backward entry, with what it saved; for the others, the arrays they saved that are neither input nor
    output get slots, read by the ops their backward applied."""
    __slots__ = ("cls", "params", "array_params", "ins", "out", "saves", "node", "needs", "xp")

    def __init__(self, cls, params, ins, out, saves, node, needs, xp):
        self.cls, self.params, self.ins, self.out = cls, params, ins, out
        self.array_params = bool(_slots_in(params, []))
        self.saves, self.node, self.needs, self.xp = saves, node, needs, xp

    def run(self, env, state):
        fn = self.cls()
        params = _fill(self.params, env, False) if self.array_params else self.params
        raw = out = fn.forward(self.xp, *[None if i is None else env[i] for i in self.ins], **params)
        if type(out) is not _NDARRAY:
            out = self.xp.asarray(out)
        env[self.out] = out
        for i, s in self.saves:
            env[s] = fn._to_save[i]
        if self.node is not None:  # as Function.apply does; no input Tensors here, so saved inputs stay arrays
            fn.needs_input_grad = self.needs
            _resolve_saved(fn, (), raw, out)
            env[self.node] = fn

    def reads(self):
        return [i for i in self.ins if i is not None] + _slots_in(self.params, [])

    def writes(self):
        return [self.out] + [s for _, s in self.saves] + ([self.node] if self.node is not None else [])

    def sig(self):
        return ("op", self.cls, self.params, self.ins, self.out, self.saves, self.node, self.needs)

    @property
    def label(self):
        return self.cls.name or self.cls.__name__


class _Untracked(_Entry):
    """An op without a gradient computed on raw arrays (a comparison)."""
    __slots__ = ("func", "ins", "out", "name")

    def __init__(self, name, func, ins, out):
        self.name, self.func, self.ins, self.out = name, func, ins, out

    def run(self, env, state):
        env[self.out] = self.func(*[env[i] for i in self.ins])

    def reads(self):
        return self.ins

    def writes(self):
        return [self.out]

    def sig(self):
        return ("untracked", self.name, self.func, self.ins, self.out)

    label = property(lambda self: self.name)


class _Backward(_Entry):
    """A node's raw backward (its forward's _Op kept the node): one gradient array per input edge."""
    __slots__ = ("node", "grad", "outs", "name")

    def __init__(self, name, node, grad, outs):
        self.name, self.node, self.grad, self.outs = name, node, grad, outs

    def run(self, env, state):
        grads = env[self.node].backward(Tensor._make(env[self.grad]))
        if not isinstance(grads, tuple):
            grads = (grads,)
        for s, g in zip(self.outs, grads):
            if s is not None:
                env[s] = g._data if isinstance(g, Tensor) else g

    def reads(self):
        return [self.node, self.grad]

    def writes(self):
        return [s for s in self.outs if s is not None]

    def sig(self):
        return ("backward", self.name, self.node, self.grad, self.outs)

    label = property(lambda self: f"{self.name} backward")


class _Pass(_Entry):
    """The start of a backward pass: which arrays are the caller's (a new ``.grad`` must not share them)."""
    __slots__ = ("roots",)

    def __init__(self, roots):
        self.roots = roots

    def run(self, env, state):
        state.handed_out = {id(env[s]) for s in self.roots}

    def reads(self):
        return self.roots

    def sig(self):
        return ("pass", self.roots)

    label = "backward pass"


class _Accumulate(_Entry):
    """A leaf's AccumulateGrad: the gradient into ``.grad``, by the node's own code, on the leaf's ``.grad`` now."""
    __slots__ = ("node", "grad")

    def __init__(self, node, grad):
        self.node, self.grad = node, grad

    def run(self, env, state):
        self.node.accumulate(Tensor._make(env[self.grad]), False, state.handed_out)

    def reads(self):
        return [self.grad]

    def sig(self):
        return ("accumulate", self.node.variable, self.grad)

    label = "AccumulateGrad"


class _Call(_Entry):
    """A ``replayed`` function, called again with the same arguments (the step's tensors swapped for this replay's);
    the tensors it returns fill slots."""
    __slots__ = ("func", "args", "kwargs", "outs", "grad")

    def __init__(self, func, args, kwargs, outs, grad):
        self.func, self.args, self.kwargs, self.outs, self.grad = func, args, kwargs, outs, grad

    def run(self, env, state):
        _grad_mode.enabled = self.grad  # the grad mode it was called in (an L-BFGS closure runs backward)
        try:
            result = self.func(*_fill(self.args, env, True), **_fill(self.kwargs, env, True))
        finally:
            _grad_mode.enabled = False
        _put(self.outs, result, env)

    def reads(self):
        return _slots_in((self.args, self.kwargs), [])

    def writes(self):
        return _slots_in(self.outs, [])

    def sig(self):
        return ("call", self.func, self.args, self.kwargs, self.outs, self.grad)

    label = property(lambda self: getattr(self.func, "__qualname__", repr(self.func)))


def _put(template, result, env):
    if type(template) is _Slot:
        env[template.i] = result._data
    elif type(template) in (tuple, list):
        for t, r in zip(template, result):
            _put(t, r, env)


class _ReplayState:
    __slots__ = ("handed_out",)

    def __init__(self):
        self.handed_out = set()


class _Differ(Exception):
    """The two recordings are not the same program: the message names where."""


class Plan:
    """The checked program of a compiled function for one guard key: entries over slots, replayed by :meth:`run`."""

    def __init__(self, first, second):
        if len(first.entries) != len(second.entries) or first.n != second.n:
            raise _Differ(f"the two recorded calls ran different ops ({len(first.entries)} and {len(second.entries)} "
                          "entries): a Python branch that differs between calls")
        for i, (a, b) in enumerate(zip(first.entries, second.entries)):
            if not _same(a.sig(), b.sig()):
                raise _Differ(f"entry {i} ({b.label}) differs between the two recorded calls: a Python value or branch "
                              "that changes between calls (pass it as an argument)")
        if not _same(first.out, second.out):
            raise _Differ("the results differ in kind between the two recorded calls")
        self.template = [None] * second.n
        self.externals, self.guards = [], []
        for (s1, (o1, _)), (s2, (o2, op2)) in zip(first.unknown.items(), second.unknown.items()):
            if s1 != s2:
                raise _Differ(f"{op2}: its inputs come from different places in the two recorded calls")
            a1, a2 = _array(o1), _array(o2)
            numbers = id(a1) in first.constants and id(a2) in second.constants  # arrays of Python numbers
            if o1 is o2 and isinstance(o2, Tensor):  # a parameter, a buffer, a tensor the step closes over: read live
                self.externals.append((s2, o2))
                self.guards.append((o2, a2.shape, a2.dtype, a2.strides, o2.requires_grad))
            elif o1 is o2 or (numbers and _same(a1, a2)):  # one array; equal numbers
                self.template[s2] = a2
            elif numbers:
                raise _Differ(f"{op2}: a Python number differs between the two recorded calls (pass what changes as a "
                              "tensor argument)")
            else:
                raise _Differ(f"{op2}: an input made outside minidl's ops (a tensor made from Python data or NumPy "
                              "by raw code) differs between the two recorded calls")
        if (first.mark, first.gy, first.targets, first.grads, first.outs) != \
                (second.mark, second.gy, second.targets, second.grads, second.outs):
            raise _Differ("the backward of the two recorded calls differs (where it starts, which tensors it reaches)")
        self.entries, self.inputs, self.out = second.entries, second.inputs, second.out
        self.mark, self.gy, self.targets, self.grads = second.mark, second.gy, second.targets, second.grads
        self.outs = second.outs
        self.modules = [(m, m.training, tuple(m._parameters.values()), tuple(m._buffers.values()),
                         tuple(m._modules.values())) for m in second.modules.values()]
        called = {e.node for e in self.entries if type(e) is _Backward}
        for e in self.entries:
            if type(e) is _Op and e.node not in called:
                e.node = None  # a node whose backward is replayed as its ops (or never runs) is not kept
        self._free_after_last_use()
        self.watched = ()
        if self.mark is not None:  # the tensors whose arrays the backward reads: changed in place before it, refused
            reads = {s for e in self.entries[self.mark:] for s in e.reads()}
            reads.update(s for e in self.entries[:self.mark] if type(e) is _Op and e.node is not None
                         for s in e.ins if s is not None)
            # by memory: a view of a parameter (w.t()) that the backward reads watches the parameter, as the view's
            # version counter is its base's in eager mode
            arrays = second.arrays
            read = {id(_root(arrays[s])) for s in reads if backend.is_device_array(arrays.get(s))}
            self.watched = (tuple(i for i, s in enumerate(self.inputs) if id(_root(arrays[s])) in read),
                            tuple(t for s, t in self.externals if id(_root(arrays[s])) in read),
                            {s for s in self.outs if id(_root(arrays[s])) in read})

    def _free_after_last_use(self):
        """Each entry drops the slots it is the last to touch, as the eager step lets go of arrays."""
        last = {}
        for i, e in enumerate(self.entries):
            for s in (*e.reads(), *e.writes()):
                last[s] = i
        keep = set(_slots_in(self.out, []))
        keep.update(s for s in self.grads or () if s is not None)  # a module's gradients, handed out by its node
        frees = [[] for _ in self.entries]
        for s, i in last.items():
            if s not in keep:
                frees[i].append(s)
        for e, f in zip(self.entries, frees):
            e.frees = tuple(f)

    def valid(self):
        """The guards that a key cannot hold: each module's parameters, buffers and children are the same objects, each
        tensor read from outside the step has the shape, dtype and strides it had and still (or still not) requires
        grad."""
        for m, training, params, buffers, children in self.modules:
            if m._forward_hooks or m._forward_pre_hooks:  # added since: a capture now ends, naming them
                return False
            if m.training != training or not _identical(m._parameters.values(), params) \
                    or not _identical(m._buffers.values(), buffers) or not _identical(m._modules.values(), children):
                return False
        for t, shape, dtype, strides, requires_grad in self.guards:
            a = t._data
            if a.shape != shape or a.dtype != dtype or a.strides != strides or t.requires_grad != requires_grad:
                return False
        return True

    def run(self, tensors):
        """Replay: the arrays of this call's tensor arguments and of the tensors read from outside into their slots,
        then every entry in order (grad mode off, as the backward engine runs; a replayed call in the mode it was
        recorded in), NumPy's floating-point warnings off as in Function.apply."""
        env = self.template.copy()
        for s, t in zip(self.inputs, tensors):
            env[s] = t._data
        for s, t in self.externals:
            env[s] = t._data
        if self.mark is None:
            self.replay(self.entries, env)
            return _fill(self.out, env, True)
        self.replay(self.entries[:self.mark], env)  # a module under grad: its forward now, its backward in the node
        outside = dict(self.externals)
        targets = [tensors[where] if kind == "arg" else outside[where] for kind, where in self.targets]
        args, externals, outs_read = self.watched
        node = _ReplayNode(self, env, targets, [tensors[i] for i in args] + list(externals))
        made = []
        for k, s in enumerate(self.outs):  # each output that carries the graph: a node that hands its gradient on
            out = Tensor._make(env[s], requires_grad=True, grad_fn=_OutputNode(node, k))
            made.append(out)
            if s in outs_read:  # changed in place before the backward that reads it: refused, as in eager mode
                node._versions += ((weakref.ref(out), out._vc[0]),)
        return _fill(self.out, env, True, made)

    @staticmethod
    def replay(entries, env):
        """Run ``entries`` on the slot list ``env``."""
        state, prof = _ReplayState(), _function._profiler
        grad_was = _grad_mode.enabled
        _grad_mode.enabled = False
        token = _quiet_floats()
        try:
            for e in entries:
                if prof is None:
                    e.run(env, state)
                else:  # minidl.profiler shows each replayed kernel by its op's name
                    event = prof.begin(e.label, (), "forward")
                    try:
                        e.run(env, state)
                    finally:
                        prof.end(event, None)
                for s in e.frees:
                    env[s] = None
        finally:
            _loud_floats(token)
            _grad_mode.enabled = grad_was


class _ReplayNode(_function.Function):
    """The node behind a compiled module's replayed forward: its edges go to the tensor arguments and parameters that
    require grad; its backward replays the recorded backward entries on the forward's slots, with each output's
    gradient (handed over by that output's _OutputNode; zeros for an output no gradient reached) in its stand-in's
    slot, and hands each edge its gradient, so the engine adds them into ``.grad`` (with the leaves' hooks,
    DistributedDataParallel's among them) as for any node."""
    differentiable_twice = False
    op_name = "compiled module"

    def __init__(self, plan, env, targets, watched):
        super().__init__()
        self.plan, self.env, self.retain, self.given = plan, env, False, {}
        self.needs_input_grad = (True,) * len(targets)
        self._edges = tuple(_function.grad_node(t) for t in targets)
        self._versions = tuple((weakref.ref(t), t._vc[0]) for t in watched)

    def backward_step(self, grad, task):
        self.retain = task.retain_graph  # a retained graph replays on a copy of the slots (the replay frees them)
        super().backward_step(grad, task)

    def backward(self, token):
        self._check_alive()
        plan, given = self.plan, self.given
        self.given = {}
        env = self.env.copy() if self.retain else self.env
        for k, (g, s) in enumerate(zip(plan.gy, plan.outs)):
            env[g] = given[k] if k in given else backend.get_array_module(env[s]).zeros_like(env[s])
        plan.replay(plan.entries[plan.mark:], env)
        return tuple(None if s is None else env[s] for s in plan.grads)

    def _release(self):
        super()._release()
        self.env = None


class _OutputNode(_function.Function):
    """The grad_fn of output ``k`` of a compiled module's replay (torch's ``CompiledFunctionBackward``): hands the
    gradient that reached it to the _ReplayNode, which runs once after every such node has (the engine's order)."""
    differentiable_twice = False
    op_name = "compiled module"
    grad_fn_name = "CompiledFunctionBackward"

    def __init__(self, node, k):
        super().__init__()
        self.k = k
        self.needs_input_grad, self._edges = (True,), (node,)

    def backward(self, gy):
        self._check_alive()
        node = self._edges[0]
        node.given[self.k] = gy._data
        return _TOKEN  # what the engine adds up in the node's buffer: nothing; the gradients went by ``given``


_TOKEN = np.zeros(())


def _root(a):
    """The array that owns ``a``'s memory (NumPy and CuPy keep a view's ``base`` at the owner)."""
    return a if a.base is None else a.base


def _identical(values, recorded):
    values = tuple(values)
    return len(values) == len(recorded) and all(a is b for a, b in zip(values, recorded))


def _array(obj):
    return obj._data if isinstance(obj, Tensor) else obj
