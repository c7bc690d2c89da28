"""The backward pass: iterative (no recursion limit), over nodes in dependency order.

Every edge of a node (``_edges``, one per input) is ``None`` (no gradient wanted) or a node: the Function that
computed the input, or the AccumulateGrad node of a leaf (autograd/function.py). A node runs once every node that
sends it a gradient has run (Kahn's order, the most recently readied first), so a leaf's AccumulateGrad runs as
soon as its last producer has: its hooks fire while the rest of the graph is still being processed.
"""
from .. import backend
from ..backend.errors import RuntimeValueError
from . import function
from .function import AccumulateGrad, grad_node
from .grad_mode import set_grad_enabled
from .tensor import Tensor


def _as_grad(g, like, op):
    if g is None:
        return Tensor._make(backend.get_array_module(like._data).ones_like(like._data))
    if not isinstance(g, Tensor):
        g = Tensor(g, dtype=like.dtype, device=like.device)
    if g.shape != like.shape:
        raise RuntimeError(f"{op}: gradient has shape {tuple(g.shape)}, but the output has shape {tuple(like.shape)}")
    return g


def _add(buffers, node, g):
    """The gradients a node receives add up in its buffer."""
    buffers[node] = g if node not in buffers else buffers[node] + g


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
    """The nodes from which a gradient reaches a node in ``targets`` (autograd.grad runs only those)."""
    needed, order = set(targets), [n for n in count if count[n] == 0]
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
        if any(e in needed for e in node._edges if e is not None):
            needed.add(node)
    return needed


def run_backward(outputs, grad_outputs, retain_graph, create_graph, targets=None):
    """Backpropagate from ``outputs``: accumulate into leaves' ``.grad``, or (``targets``: autograd.grad) return
    the gradients reaching those tensors without touching ``.grad``. NaN/inf gradients are IEEE's, as in torch:
    NumPy's floating-point warnings are off while it runs."""
    buffers = {}
    for t, g in zip(outputs, grad_outputs):
        if not t.requires_grad:
            raise RuntimeError("backward: element of the outputs does not require grad and has no grad_fn")
        _add(buffers, grad_node(t), g)
    count = _producers(list(buffers))
    wanted = {} if targets is None else {grad_node(t): i for i, t in reversed(list(enumerate(targets)))}
    needed = _needed(count, wanted) if targets is not None else None
    results = [None] * len(targets or ())
    handed_out = {id(g._data) for g in grad_outputs}  # arrays already someone's: a new .grad must not share them
    ready = [n for n in buffers if count[n] == 0]
    prof = function._profiler  # the recorders' hook, if any is installed: each node's backward is an event
    with backend.np.errstate(all="ignore"), set_grad_enabled(create_graph):
        while ready:
            node = ready.pop()
            grad = buffers.pop(node, None)
            if grad is not None:
                event = prof.begin_node(node, grad) if prof is not None else None
                try:
                    _run_node(node, grad, buffers, wanted, results, targets, needed, create_graph, retain_graph,
                              handed_out)
                finally:
                    if event is not None:
                        prof.end(event, None)
            for e in node._edges:
                if e is not None:
                    count[e] -= 1
                    if count[e] == 0:
                        ready.append(e)
    return [results[wanted[grad_node(t)]] for t in targets] if targets is not None else results


def _run_node(node, grad, buffers, wanted, results, targets, needed, create_graph, retain_graph, handed_out):
    """One node's part of the backward pass: its hooks, then its gradients into the buffers of the nodes it
    sends to (or, for a leaf, into .grad)."""
    grad = node.run_hooks(grad)
    if node in wanted:
        results[wanted[node]] = grad
    if isinstance(node, AccumulateGrad):
        if targets is None:
            node.accumulate(grad, create_graph, handed_out)
    elif needed is None or node in needed:
        for edge, g in node.edge_grads(grad, create_graph):
            _add(buffers, edge, g)
        if not retain_graph:
            node._release()


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
