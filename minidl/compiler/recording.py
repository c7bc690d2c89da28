"""A Recording: one eager call of a compiled function written down through the doors of autograd/capturing.py."""
from collections.abc import Iterator

from .. import backend
from ..autograd.capturing import _trace, suspended
from ..autograd.engine import run_backward
from ..autograd.function import _OUTPUT
from ..autograd.grad_mode import _state as _grad_mode
from ..autograd.tensor import Tensor
from .plan import (_NDARRAY, _Accumulate, _Backward, _Call, _GradSlot, _Op, _Pass, _Slot, _Untracked, _array)


class Recording:
    """One eager call of the compiled function, written down as entries over numbered array slots (installed as this
    thread's ``_trace.capture`` and ``_trace.record`` while the call runs)."""

    def __init__(self, tensors):
        self.entries = []
        self.slot_of = {}    # id(array) -> slot (every array is kept alive in ``keep`` so that ids stay unique)
        self.arrays = {}     # slot -> what it held in this call
        self.keep = []
        self.n = 0
        self.unknown = {}    # slot -> (the Tensor or raw array from outside the step, the op that read it first)
        self.node_slot = {}  # id(Function node) -> the slot that holds it in a replay
        self.modules = {}    # id(module) -> every module the call ran
        self.constants = set()  # ids of arrays made from Python numbers (autograd.capturing.constant)
        self.failed = None
        self.args = tensors
        self.inputs = [self._new(t._data) for t in tensors]
        # a module called under grad (record_backward): where the forward ends, the stand-in gradients' slots, the
        # tensors the gradients go to (("arg", i) or ("outside", slot)), the slots of their gradients, and the slots
        # of the outputs that carry the graph
        self.mark = self.gy = self.targets = self.grads = self._target_tensors = self.outs = None
        self._outs = ()

    # the doors (autograd/capturing.py)
    def _new(self, obj):
        s = self.n
        self.n += 1
        self.slot_of[id(obj)] = s
        self.keep.append(obj)
        self.arrays[s] = obj
        return s

    def fail(self, what):
        """End the capture (the call goes on eagerly): ``what`` is the reason."""
        if self.failed is None:
            self.failed = what
        _trace.record = _trace.capture = None

    def _ref(self, a, owner, op):
        s = self.slot_of.get(id(a))
        if s is None:
            s = self._new(a)
            if owner is None:  # a raw array handed to an op as a parameter: a module's buffer (BatchNorm's)?
                owner = self._owner(a)
            self.unknown[s] = (a if owner is None else owner, op)
        return s

    def _owner(self, a):
        for m in self.modules.values():
            for t in (*m._parameters.values(), *m._buffers.values()):
                if t is not None and t._data is a:
                    return t
        return None

    def _encode(self, value, op, tensors):
        """``value`` with the step's arrays (or Tensors, ``tensors``) as _Slots; raw NumPy arrays from outside end the
        capture."""
        if isinstance(value, Tensor):  # a tensor the step computed, or one from outside kept as itself (a parameter)
            s = self.slot_of.get(id(value._data)) if tensors else None
            return value if s is None or s in self.unknown else _Slot(s)
        if backend.is_device_array(value):
            if id(value) in self.slot_of or not tensors:
                return _Slot(self._ref(value, None, op))
            self.fail(f"{op}: an array from outside the step (pass it as a tensor argument of the compiled function)")
            return value
        if type(value) in (tuple, list):
            return type(value)(self._encode(v, op, tensors) for v in value)
        if type(value) is dict:
            return {k: self._encode(v, op, tensors) for k, v in value.items()}
        return value

    def op(self, cls, inputs, params, result):
        """Function.apply ran ``cls`` (the tracer's door)."""
        if isinstance(cls, str):
            return self.fail(f"{cls} (made outside Function.apply)")
        name = cls.name or cls.__name__
        ins = tuple(None if t is None else self._ref(t._data, t, name) for t in inputs)
        params = self._encode(params, name, False)
        out = result._data
        fn = result.grad_fn
        saves, node, needs = (), None, None
        if fn is not None and type(fn) is cls:  # a graph node: its backward may be replayed as a call (node)
            if cls.differentiable_twice:  # or as the ops it applies, which read what it saved (saves)
                saves = tuple((i, self._new(a)) for i, a in enumerate(fn._saved)
                              if a is not _OUTPUT and a is not None and not isinstance(a, Tensor))
            node, needs = self._new(fn), fn.needs_input_grad
            self.node_slot[id(fn)] = node
        xp = backend.np if type(out) is _NDARRAY else backend.get_array_module(out)
        self.entries.append(_Op(cls, params, ins, self._new(out), saves, node, needs, xp))

    def untracked(self, name, func, inputs, result):
        ins = [self._ref(t._data, t, name) for t in inputs]
        self.entries.append(_Untracked(name, func, ins, self._new(result._data)))

    def backward(self, node, grad):
        """The engine asks a node for its inputs' gradients. A backward written with ops (differentiable twice) is
        written down as those ops, if they are all it did; one that works on raw arrays (also a differentiable one that
        does so without create_graph, as layer_norm's) becomes one _Backward entry: the node's backward called again."""
        if node._hooks:
            self.fail(f"a hook on the gradient of {node.op_name}'s output (register_hook, retain_grad)")
            return node.backward(grad)
        nslot = self.node_slot.get(id(node))
        if nslot is None:
            self.fail(f"{node.op_name}: backward through a graph made before the compiled call")
            return node.backward(grad)
        g = self._ref(grad._data, grad, f"{node.op_name} backward")
        if node.differentiable_twice:
            mark, seen = len(self.entries), len(self.unknown)
            grads = node.backward(grad)
            if self.failed is not None:
                return grads
            if len(self.unknown) == seen and all(x is None or id(_array(x)) in self.slot_of
                                                  for x in (grads if isinstance(grads, tuple) else (grads,))):
                return grads
            for s in list(self.unknown)[seen:]:  # raw arrays met inside: forgotten, the call replaces its ops
                self.slot_of.pop(id(_array(self.unknown.pop(s)[0])), None)
            del self.entries[mark:]
        else:
            with suspended():
                grads = node.backward(grad)
        outs = []
        for edge, x in zip(node._edges, grads if isinstance(grads, tuple) else (grads,)):
            outs.append(None if edge is None or x is None else self._new(x._data if isinstance(x, Tensor) else x))
        self.entries.append(_Backward(node.op_name, nslot, g, tuple(outs)))
        return grads

    def accumulate(self, node, grad, task):
        leaf = node.variable
        if any(leaf is t for t in self.args):
            self.fail("a gradient into a tensor argument of the compiled function (a replay gets new arguments)")
        elif leaf._hooks or leaf._post_acc_hooks:
            self.fail("a hook on a leaf's gradient (register_hook, register_post_accumulate_grad_hook)")
        else:
            self.entries.append(_Accumulate(node, self._ref(grad._data, grad, "AccumulateGrad")))
        with suspended():
            node.accumulate(grad, task.create_graph, task.handed_out)

    def backward_pass(self, task):
        if task.create_graph or (task.targets is not None and task.targets is not self._target_tensors):
            return self.fail("autograd.grad or backward(create_graph=True, inputs=...) inside the compiled function")
        self.entries.append(_Pass(tuple(self._ref(g._data, g, "backward") for g in task.buffers.values())))

    def call(self, func, args, kwargs):
        """A ``replayed`` function: run it now (its own work unseen) and write down the call."""
        name = getattr(func, "__qualname__", repr(func))
        args = tuple(list(a) if isinstance(a, Iterator) else a for a in args)  # model.parameters(), once
        targs, tkwargs = self._encode(args, name, True), self._encode(kwargs, name, True)
        grad = _grad_mode.enabled
        with suspended():
            result = func(*args, **kwargs)
        if self.failed is None:
            outs = self._outputs(result, name)
            self.entries.append(_Call(func, targs, tkwargs, outs, grad))
        return result

    def _outputs(self, result, name):
        if isinstance(result, Tensor):
            if result.requires_grad and result.grad_fn is None:
                self.fail(f"{name}: makes a tensor that requires grad (a new leaf each call)")
            return _Slot(self._new(result._data))
        if type(result) in (tuple, list):
            return type(result)(self._outputs(r, name) for r in result)
        return None

    def constant(self, array):
        self.constants.add(id(array))
        self.keep.append(array)

    def module(self, m):
        self.modules.setdefault(id(m), m)

    def record_backward(self, result):
        """A compiled module called under grad: the tensors of ``result`` that carry the call's graph are run backward
        here, each with a stand-in gradient in a slot of its own, to the tensor arguments and the tensors from outside
        (the parameters) that require grad, as autograd.grad does (``.grad`` untouched, nothing made before the call
        run); the graph stays for the caller's own backward. A replay then returns tensors whose nodes hand their
        gradients to one node that replays these backward entries (compiler/plan.py, _ReplayNode)."""
        outs = []
        for t in _tensors_in(result):
            if t.grad_fn is None and t.requires_grad:  # a leaf as it came: a replay would hand back a copy of its array
                return self.fail("the module returned a tensor that requires grad as it came in (an argument or a "
                                 "parameter)")
            if t.grad_fn is not None and not any(t is o for o in outs):
                if self.slot_of.get(id(t._data)) in self.unknown:
                    return self.fail("the module returned a tensor from outside the call")
                outs.append(t)
        self._outs = outs
        spec, tensors = [], []
        for i, t in enumerate(self.args):
            if t.requires_grad and not any(t is u for u in tensors):
                spec.append(("arg", i))
                tensors.append(t)
        for s, (o, _) in self.unknown.items():
            if isinstance(o, Tensor) and o.requires_grad and not any(o is u for u in tensors):
                spec.append(("outside", s))
                tensors.append(o)
        for t in tensors:
            if (t._hooks if t.grad_fn is None else t.grad_fn._hooks):
                return self.fail("a hook on the gradient of an argument or a parameter of the compiled module")
        self.mark, self.targets, self._target_tensors = len(self.entries), tuple(spec), tensors
        self.outs = tuple(self.slot_of[id(t._data)] for t in outs)
        gys = [Tensor._make(backend.get_array_module(t._data).ones_like(t._data)) for t in outs]  # values never read
        self.gy = tuple(self._new(g._data) for g in gys)
        grads = run_backward(outs, gys, True, False, tensors)
        if self.failed is not None:
            return None
        slots = []
        for g in grads:
            s = None if g is None else self.slot_of.get(id(g._data))
            if g is not None and (s is None or s in self.unknown):
                return self.fail("a gradient that the call's ops did not compute")
            slots.append(s)
        self.grads = tuple(slots)
        return None

    def finish(self, result):
        """The call returned ``result``: its tensors as slots (a graph still to be run backward cannot be replayed,
        unless record_backward wrote its backward down)."""
        if self.failed is None and self.mark is None:
            for t in _tensors_in(result):
                fn = t.grad_fn
                if fn is not None and fn._saved is not None:
                    self.fail("the result carries a graph for a backward() after the call (compile the whole step: "
                              "forward, backward and optimizer step)")
        if self.failed is not None:
            return None
        if self.mark is not None:
            return self._encode_outputs(result)
        return self._encode(result, "the result", True)

    def _encode_outputs(self, value):
        """A compiled module's result: each tensor that carries the graph as its _GradSlot (by identity: a detached
        tensor of the same array is a plain slot)."""
        if isinstance(value, Tensor):
            for k, o in enumerate(self._outs):
                if value is o:
                    return _GradSlot(self.outs[k], k)
            return self._encode(value, "the result", True)
        if type(value) in (tuple, list):
            return type(value)(self._encode_outputs(v) for v in value)
        if type(value) is dict:
            return {k: self._encode_outputs(v) for k, v in value.items()}
        return self._encode(value, "the result", True)


def _tensors_in(value):
    if isinstance(value, Tensor):
        yield value
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from _tensors_in(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _tensors_in(v)
