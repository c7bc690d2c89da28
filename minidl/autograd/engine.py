"""The backward pass: iterative (no recursion limit), over nodes in dependency order.

Every edge of a node (``_edges``, one per input) is ``None`` (no gradient wanted) or a node: the Function that
computed the input, or the AccumulateGrad node of a leaf (autograd/function.py). A node runs once every node that
sends it a gradient has run (Kahn's order, the most recently readied first), so a leaf's AccumulateGrad runs as
soon as its last producer has: its hooks fire while the rest of the graph is still being processed.
"""
from .. import backend
from ..backend.errors import RuntimeValueError
from . import function
from .capturing import _trace, constant
from .function import grad_node
from .grad_mode import set_grad_enabled
from .tensor import Tensor


def _as_grad(g, like, op):
    if g is None:
        return Tensor._make(constant(backend.get_array_module(like._data).ones_like(like._data)))
    if not isinstance(g, Tensor):
        g = Tensor(g, dtype=like.dtype, device=like.device)
    if g.shape != like.shape:
        raise RuntimeError(f"{op}: gradient has shape {tuple(g.shape)}, but the output has shape {tuple(like.shape)}")
    return g


def _producers(roots):
    """For every node reachable from ``roots``: how many edges from reachable nodes lead to it."""
    count, seen, stack = {n: 0 for n in roots}, set(roots), list(roots)
    while stack:
        for e in stack.pop()._edges:
            if e is not None:
                count[e] = count.get(e, 0) + 1
                if e not in seen:
                    seen.add(e)
                    stack.append(e)
    return count


def _needed(count, targets):
    """The nodes from which a gradient reaches a node in ``targets`` (autograd.grad runs only those). A target's own
    node is among them only if it leads to another target, as in torch: ``grad(y, x)`` with ``x`` made by earlier
    ops does not run the backward of the op that made ``x``."""
    needed, reach, order = set(), set(targets), [n for n in count if count[n] == 0]
    pending, topo = dict(count), []
    while order:  # a topological order, then back from the targets
        node = order.pop()
        topo.append(node)
        for e in node._edges:
            if e is not None:
                pending[e] -= 1
                if pending[e] == 0:
                    order.append(e)
    for node in reversed(topo):
        if any(e in reach for e in node._edges if e is not None):
            needed.add(node)
            reach.add(node)
    return needed


class GraphTask:
    """One backward pass (torch's name): the gradients waiting at each node, and what the pass is for.

    ``targets`` None: backward(), every leaf's AccumulateGrad adds into ``.grad``. Otherwise autograd.grad: the
    gradients reaching those tensors are collected in ``results`` (``.grad`` untouched), and only the nodes that
    lead to them (``needed``) run. ``handed_out`` holds the ids of arrays that are already someone's (the caller's
    gradients): a new ``.grad`` must not share them."""

    def __init__(self, outputs, grad_outputs, retain_graph, create_graph, targets=None):
        self.retain_graph, self.create_graph, self.targets = retain_graph, create_graph, targets
        self.buffers = {}  # node -> the sum of the gradients it has received so far
        for t, g in zip(outputs, grad_outputs):
            if not t.requires_grad:
                raise RuntimeError("backward: element of the outputs does not require grad and has no grad_fn")
            self.add(grad_node(t), g)
        self.producers = _producers(list(self.buffers))
        self.wanted = {} if targets is None else {grad_node(t): i for i, t in reversed(list(enumerate(targets)))}
        self.needed = _needed(self.producers, self.wanted) if targets is not None else None
        self.results = [None] * len(targets or ())
        self.handed_out = {id(g._data) for g in grad_outputs}

    def add(self, node, g):
        """The gradients a node receives add up in its buffer."""
        self.buffers[node] = g if node not in self.buffers else self.buffers[node] + g

    def runs(self, node):
        """Whether ``node`` sends its gradients on (autograd.grad skips the nodes that lead to no target)."""
        return self.needed is None or node in self.needed

    def run(self):
        """Kahn's order over the graph, the most recently readied node first: a node runs once every node that sends
        it a gradient has run. Returns the gradients at the targets (autograd.grad) or None."""
        count = self.producers
        ready = [n for n in self.buffers if count[n] == 0]
        if _trace.capture is not None:  # minidl.compile writing down this step
            _trace.capture.backward_pass(self)
        prof = function._profiler  # the recorders' hook, if any is installed: each node's backward is an event
        with backend.np.errstate(all="ignore"), set_grad_enabled(self.create_graph):
            while ready:
                node = ready.pop()
                grad = self.buffers.pop(node, None)
                if grad is not None:
                    event = prof.begin_node(node, grad) if prof is not None else None
                    try:
                        self.run_node(node, grad)
                    finally:
                        if event is not None:
                            prof.end(event, None)
                for e in node._edges:
                    if e is not None:
                        count[e] -= 1
                        if count[e] == 0:
                            ready.append(e)
        if self.targets is not None:
            return [self.results[self.wanted[grad_node(t)]] for t in self.targets]
        return None

    def run_node(self, node, grad):
        """One node: its hooks, the gradient kept if it is a target's, then the node's own part (a Function sends
        gradients to its inputs' nodes, an AccumulateGrad adds into its leaf's .grad): ``node.backward_step``."""
        grad = node.run_hooks(grad)
        if node in self.wanted:
            self.results[self.wanted[node]] = grad
        node.backward_step(grad, self)


def run_backward(outputs, grad_outputs, retain_graph, create_graph, targets=None):
    """Backpropagate from ``outputs``: accumulate into leaves' ``.grad``, or (``targets``: autograd.grad) return
    the gradients reaching those tensors without touching ``.grad``. NaN/inf gradients are IEEE's, as in torch:
    NumPy's floating-point warnings are off while it runs."""
    return GraphTask(outputs, grad_outputs, retain_graph, create_graph, targets).run()


def _normalize(outputs, grad_outputs):
    if isinstance(outputs, Tensor):
        outputs = [outputs]
    outputs = list(outputs)
    if grad_outputs is None:
        grad_outputs = [None] * len(outputs)
    elif isinstance(grad_outputs, Tensor) or not isinstance(grad_outputs, (list, tuple)):
        grad_outputs = [grad_outputs]
    if len(grad_outputs) != len(outputs):
        raise RuntimeValueError(f"backward: got {len(grad_outputs)} gradients for {len(outputs)} outputs")
    grads = []
    for t, g in zip(outputs, grad_outputs):
        if not isinstance(t, Tensor):
            raise TypeError(f"backward: outputs must be Tensors, got {type(t).__name__}")
        if g is None and t.numel() != 1:
            raise RuntimeError(f"backward: grad can be implicitly created only for scalar outputs; the "
                               f"output has shape {tuple(t.shape)}, pass gradient=")
        grads.append(_as_grad(g, t, "backward"))
    return outputs, grads


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False, inputs=None):
    """Compute the gradients of ``tensors`` and accumulate them into the leaves' ``.grad``."""
    outputs, grads = _normalize(tensors, grad_tensors)
    if retain_graph is None:
        retain_graph = create_graph
    if inputs is not None:
        inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
        res = run_backward(outputs, grads, retain_graph, create_graph, targets=inputs)
        for t, g in zip(inputs, res):
            if g is not None:
                t.grad = g if t.grad is None else t.grad + g
        return
    run_backward(outputs, grads, retain_graph, create_graph)


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False, allow_unused=False):
    """The gradients of ``outputs`` with respect to ``inputs``, returned as a tuple (``.grad`` untouched).

    With ``create_graph=True`` the returned gradients are part of the graph and can be
    differentiated again.
    """
    outputs, grads = _normalize(outputs, grad_outputs)
    single = isinstance(inputs, Tensor)
    inputs = [inputs] if single else list(inputs)
    for t in inputs:
        if not isinstance(t, Tensor) or not t.requires_grad:
            raise RuntimeError("grad: every input must be a Tensor that requires grad")
    if retain_graph is None:
        retain_graph = create_graph
    res = run_backward(outputs, grads, retain_graph, create_graph, targets=inputs)
    for i, g in enumerate(res):
        if g is None and not allow_unused:
            raise RuntimeError(f"grad: input {i} was not used in the graph; pass allow_unused=True")
    return tuple(res)
