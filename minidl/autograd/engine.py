"""The backward pass: iterative (no recursion limit), in dependency order, over Function nodes.

Each node has ``_edges``, one per input: ``None`` (no gradient wanted), another node (the input was
computed), or a leaf Tensor (the input requires grad and was created by the user).
"""
from .. import backend
from .function import Function, DoubleBackwardError
from .grad_mode import set_grad_enabled
from .tensor import Tensor


def _as_grad(g, like, op):
    if g is None:
        return Tensor._make(backend.get_array_module(like._data).ones_like(like._data))
    if not isinstance(g, Tensor):
        g = Tensor(g, dtype=like.dtype, device=like.device)
    if g.shape != like.shape:
        raise RuntimeError(f"{op}: gradient has shape {g.shape}, but the output has shape {like.shape}")
    return g


def _graph(roots):
    """Nodes reachable from ``roots``, each before the nodes it sends gradients to."""
    order, seen = [], set()
    stack = [(n, False) for n in roots]
    while stack:
        node, done = stack.pop()
        if done:
            order.append(node)
            continue
        if node in seen:
            continue
        seen.add(node)
        stack.append((node, True))
        for e in node._edges:
            if isinstance(e, Function) and e not in seen:
                stack.append((e, False))
    order.reverse()  # DFS post-order, reversed: a topological order of the graph
    return order


def _run_hooks(hooks, grad):
    for h in hooks:
        r = h(grad)
        if r is not None:
            grad = r if isinstance(r, Tensor) else Tensor(r)
    return grad


def _accumulate(a, b):
    return b if a is None else a + b


def run_backward(outputs, grad_outputs, retain_graph, create_graph, targets=None):
    """Backpropagate from ``outputs``; accumulate into leaves' ``.grad``, or return the gradients of
    ``targets`` (autograd.grad) without touching ``.grad``. NaN/inf gradients are IEEE's, as in torch: NumPy's
    floating-point warnings are off while it runs."""
    with backend.np.errstate(all="ignore"):
        return _run_backward(outputs, grad_outputs, retain_graph, create_graph, targets)


def _run_backward(outputs, grad_outputs, retain_graph, create_graph, targets=None):
    buffers = {}
    roots = []
    leaf_grads = {}
    for t, g in zip(outputs, grad_outputs):
        if not t.requires_grad:
            raise RuntimeError("backward: element of the outputs does not require grad and has no grad_fn")
        if t.grad_fn is None:  # a leaf as output: its gradient is the given one
            leaf_grads[t] = _accumulate(leaf_grads.get(t), g)
            continue
        buffers[t.grad_fn] = _accumulate(buffers.get(t.grad_fn), g)
        roots.append(t.grad_fn)
    order = _graph(roots)

    target_nodes = {}
    if targets is not None:
        for i, t in enumerate(targets):
            if t.grad_fn is not None:
                target_nodes.setdefault(t.grad_fn, []).append(i)
        # nodes that lead to a target; the rest need not run
        needed = set()
        leafs = {id(t) for t in targets if t.grad_fn is None}
        for node in reversed(order):
            if node in target_nodes or any(
                    (e in needed) if isinstance(e, Function) else (e is not None and id(e) in leafs)
                    for e in node._edges):
                needed.add(node)
    captured = {}

    fresh = {id(g._data) for g in grad_outputs}  # arrays users gave: never stored as .grad unshared
    results = [None] * (len(targets) if targets is not None else 0)

    def finish(leaf, g):
        """A leaf's gradient is complete: its hooks, then .grad (or the result of autograd.grad)."""
        if leaf._hooks:
            g = _run_hooks(leaf._hooks, g)
        if targets is not None:
            for i, t in enumerate(targets):
                if t is leaf:
                    results[i] = g
            return
        if g._data.dtype != leaf._data.dtype:
            g = Tensor._make(g._data.astype(leaf._data.dtype), g.requires_grad, g.grad_fn)
        if leaf.grad is None:
            if not create_graph:
                arr = g._data
                if id(arr) in fresh or arr.base is not None:  # shared with another grad or a view
                    arr = arr.copy()
                fresh.add(id(arr))
                g = Tensor._make(arr)
            leaf.grad = g
        else:
            leaf.grad = leaf.grad + (g if create_graph else g.detach())
        for h in list(getattr(leaf, "_post_acc_hooks", None) or ()):
            h(leaf)

    # how many nodes still owe each leaf a gradient: a leaf is finished as soon as the last has run, so that
    # its hooks (DistributedDataParallel's, say) run while the rest of the graph is still being processed
    pending = {}
    for node in order:
        for e in node._edges:
            if e is not None and not isinstance(e, Function):
                pending[e] = pending.get(e, 0) + 1
    with set_grad_enabled(create_graph):
        for node in order:
            grad = buffers.pop(node, None)
            if grad is not None and node._hooks:
                grad = _run_hooks(node._hooks, grad)
            if grad is not None and node in target_nodes:
                for i in target_nodes[node]:
                    captured[i] = grad
            if grad is not None and (targets is None or node in needed):
                grads = node.backward(grad)
                if not isinstance(grads, tuple):
                    grads = (grads,)
                if len(grads) != len(node._edges):
                    raise RuntimeError(f"{node.op_name}: backward returned {len(grads)} gradients, "
                                       f"expected {len(node._edges)}")
                wrap = create_graph and not node.differentiable_twice
                for edge, g in zip(node._edges, grads):
                    if edge is None or g is None:
                        continue
                    if not isinstance(g, Tensor):
                        g = Tensor._make(g, requires_grad=wrap,
                                         grad_fn=DoubleBackwardError(node) if wrap else None)
                    if isinstance(edge, Function):
                        buffers[edge] = _accumulate(buffers.get(edge), g)
                    else:
                        if g.shape != edge.shape:
                            raise RuntimeError(f"{node.op_name}: backward returned a gradient of shape "
                                               f"{g.shape} for an input of shape {edge.shape}")
                        leaf_grads[edge] = _accumulate(leaf_grads.get(edge), g)
                if not retain_graph:
                    node._release()
            for e in node._edges:  # this node's share of each leaf is in (or was never coming)
                if e is not None and not isinstance(e, Function):
                    pending[e] -= 1
                    if pending[e] == 0 and e in leaf_grads:
                        finish(e, leaf_grads.pop(e))
        for leaf, g in leaf_grads.items():  # leaves given as outputs themselves
            finish(leaf, g)
    for i, g in captured.items():
        results[i] = g if results[i] is None else results[i] + g
    return results


def _normalize(outputs, grad_outputs):
    if isinstance(outputs, Tensor):
        outputs = [outputs]
    outputs = list(outputs)
    if grad_outputs is None:
        grad_outputs = [None] * len(outputs)
    elif isinstance(grad_outputs, Tensor) or not isinstance(grad_outputs, (list, tuple)):
        grad_outputs = [grad_outputs]
    if len(grad_outputs) != len(outputs):
        raise ValueError(f"backward: got {len(grad_outputs)} gradients for {len(outputs)} outputs")
    grads = []
    for t, g in zip(outputs, grad_outputs):
        if not isinstance(t, Tensor):
            raise TypeError(f"backward: outputs must be Tensors, got {type(t).__name__}")
        if g is None and t.numel() != 1:
            raise RuntimeError(f"backward: grad can be implicitly created only for scalar outputs; the "
                               f"output has shape {t.shape}, pass gradient=")
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
