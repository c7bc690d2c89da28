"""Function: one differentiable op, its forward on raw arrays and its backward on Tensors.

    class Exp(Function):
        def forward(self, xp, x):
            y = xp.exp(x)
            self.save_for_backward(y)
            return y

        def backward(self, gy):
            y, = self.saved_tensors
            return gy * y

``forward`` takes the array module ``xp`` and the inputs' arrays and returns one array. Arrays given to
``save_for_backward`` come back in ``saved_tensors`` as Tensors: an input's array as that input
Tensor, the output's array as the output, anything else as a constant. Because ``backward`` is then
written with minidl ops, it is differentiable again (double backward). A backward that works on raw
arrays (``saved_arrays``) sets ``differentiable_twice = False``; asking for its second derivative
raises an error naming the op instead of returning a wrong number.
"""
import threading
import weakref
from contextlib import contextmanager

from .. import backend
from ..backend.errors import RuntimeValueError
from .capturing import _trace
from .creation import as_tensor
from .grad_mode import _state as _grad_mode
from .tensor import Tensor

_OUTPUT = object()  # marks "the output array" among the saved ones
_NDARRAY = backend.np.ndarray
_NUMPY_SCALAR = backend.np.generic


# What Function.apply (while swapped), the backward engine and Module.__call__ call to report events: None while no
# recorder is installed (add_recorder), so that instruments cost nothing when off; else the one recorder, or a
# _FanOut that hands each event to every recorder watching the calling thread. Read it once per call (begin and end
# go to the same object even if recorders come and go in between).
_profiler = None


@contextmanager
def tracing(record):
    """Within the block, ``record(cls, inputs, params, output)`` is called for every op applied in this thread
    (inputs as Tensors or None, params as given to apply, the output Tensor): how minidl.onnx sees a model."""
    previous = _trace.record
    _trace.record = record
    try:
        yield
    finally:
        _trace.record = previous


def record(name, inputs, params, result):
    """Tell the tracer about an op that makes a tensor without Function.apply."""
    rec = _trace.record
    if rec is not None:
        rec(name, inputs, params, result)
    return result


def untracked(name, func, *inputs):
    """An op without a gradient, computed on raw arrays (the comparisons, isnan): ``func(*arrays)`` as a Tensor,
    reported to the tracer, and to a capture (minidl.compile) as a function of its inputs that a replay calls again."""
    result = Tensor._make(func(*[t._data for t in inputs]))
    cap = _trace.capture
    if cap is not None:
        cap.untracked(name, func, inputs, result)
        return result
    return record(name, inputs, {}, result)


FUNCTIONS = {}  # op name -> the Function classes that carry it (filled as classes are defined)

# torch's grad_fn names where they are not the op's name in CamelCase + "Backward0" (torch names the node after the
# ATen op that made the tensor: cross_entropy ends in nll_loss, a conv is aten.convolution)
_TORCH_GRAD_FN = {
    "cross_entropy": "NllLossBackward0", "conv2d": "ConvolutionBackward0", "conv_transpose2d": "ConvolutionBackward0",
    "max_pool2d": "MaxPool2DWithIndicesBackward0", "avg_pool2d": "AvgPool2DBackward0",
    "adaptive_avg_pool2d": "AdaptiveAvgPool2DBackward0", "adaptive_max_pool2d": "AdaptiveMaxPool2DBackward0",
    "batch_norm": "NativeBatchNormBackward0", "matmul": "MmBackward0", "reshape": "ViewBackward0",
    "pad": "ConstantPadNdBackward0", "to": "ToCopyBackward0", "clamp": "ClampBackward1",
    "norm": "LinalgVectorNormBackward0", "unfold": "Im2ColBackward0", "fold": "Col2ImBackward0",
    "linear": "AddmmBackward0",  # without a bias torch's is MmBackward0: functional/linear.py's LinearFunction says so
}


def torch_grad_fn_name(op):
    """The name torch gives the grad_fn of op's result: ``AddBackward0``, ``NllLossBackward0`` (cross_entropy)."""
    return _TORCH_GRAD_FN.get(op) or "".join(p[:1].upper() + p[1:] for p in op.split("_")) + "Backward0"


class Function:
    name = None                 # the public op name, used in error messages
    differentiable_twice = True

    # the graph's own state; each op's subclass keeps its shapes and parameters in the instance __dict__ it gets
    __slots__ = ("needs_input_grad", "_edges", "_saved", "_out", "_hooks", "_to_save", "_versions", "__weakref__")

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("name"):
            FUNCTIONS.setdefault(cls.name, []).append(cls)

    @staticmethod
    def op_differentiable_twice(op):
        """False when a Function carrying op ``op`` declares a backward that cannot be differentiated again (the
        classes' own ``differentiable_twice``)."""
        return all(cls.differentiable_twice for cls in FUNCTIONS.get(op, ()))

    def __init__(self):
        self.needs_input_grad = ()
        self._edges = ()
        self._saved = ()
        self._out = None
        self._hooks = None
        self._to_save = ()
        self._versions = ()

    # -- to be written by each op ---------------------------------------------------------------
    def forward(self, xp, *arrays):
        raise NotImplementedError

    def backward(self, gy):
        raise NotImplementedError

    # -- saving ------------------------------------------------------------------------------------
    def save_for_backward(self, *arrays):
        self._to_save = arrays

    def _check_alive(self):
        if self._saved is None:
            raise RuntimeError(
                f"{self.op_name}: trying to backward through the graph a second time (or to use saved "
                "values after they were freed); pass retain_graph=True to the first backward()")
        for ref, version in self._versions:
            t = ref()
            if t is not None and t._vc[0] != version:
                raise RuntimeError(
                    f"{self.op_name}: one of the tensors needed for gradient computation has been modified by an "
                    f"in-place operation: a tensor of shape {tuple(t.shape)} is at version {t._version}; expected "
                    f"version {version} instead (change a copy, or change it after backward)")

    @property
    def saved_tensors(self):
        self._check_alive()
        from .tensor import Tensor
        out = []
        for s in self._saved:
            if s is _OUTPUT:
                out.append(Tensor._make(self._out, requires_grad=True, grad_fn=self))
            elif isinstance(s, Tensor) or s is None:
                out.append(s)
            else:
                out.append(Tensor._make(s))
        return tuple(out)

    @property
    def saved_arrays(self):
        self._check_alive()
        return tuple(self._out if s is _OUTPUT else (s._data if hasattr(s, "_data") else s)
                     for s in self._saved)

    def _release(self):
        self._saved = None
        self._out = None

    @property
    def op_name(self):
        return self.name or type(self).__name__

    @property
    def grad_fn_name(self):
        """The name torch gives this node (``AddBackward0``): what repr, the profiler and draw_graph show."""
        return torch_grad_fn_name(self.op_name)

    def __repr__(self):
        return f"<{self.grad_fn_name}>"

    # -- in the backward pass (autograd/engine.py) ----------------------------------------------------
    def check_incoming(self, grad, sender):
        """A gradient ``sender`` computed for this node's output: any is taken (the leaf's node checks its shape)."""

    def run_hooks(self, grad):
        """The hooks registered on this node's output tensor, in order; a hook's return value replaces grad."""
        return _apply_hooks(self._hooks, grad)

    def backward_step(self, grad, task):
        """This node's part of a backward pass (``engine.GraphTask``): its inputs' gradients, each added to the node
        it goes to; then, unless the graph is retained, the saved arrays are freed."""
        if not task.runs(self):
            return
        for edge, g in self.edge_grads(grad, task.create_graph):
            task.add(edge, g)
        if not task.retain_graph:
            self._release()

    def edge_grads(self, grad, create_graph):
        """(next node, its gradient) for every input that wants one: this node's backward, checked. With
        ``create_graph``, a raw-array gradient of a once-differentiable op gets a node that refuses to be
        differentiated, naming the op."""
        cap = _trace.capture  # minidl.compile writing down this step: it replays a raw backward as one call
        grads = self.backward(grad) if cap is None else cap.backward(self, grad)
        grads = grads if isinstance(grads, tuple) else (grads,)
        if len(grads) != len(self._edges):
            raise RuntimeError(f"{self.op_name}: backward returned {len(grads)} gradients, expected {len(self._edges)}")
        wrap = create_graph and not self.differentiable_twice
        for edge, g in zip(self._edges, grads):
            if edge is None or g is None:
                continue
            if not isinstance(g, Tensor):
                g = Tensor._make(g, requires_grad=wrap, grad_fn=DoubleBackwardError(self) if wrap else None)
            edge.check_incoming(g, self)
            yield edge, g

    # -- applying -------------------------------------------------------------------------------
    @classmethod
    def apply(cls, *inputs, **params):
        """Run the op on Tensors (or None for absent optional inputs) and record it in the graph.

        For ``y = Mul.apply(a, w)`` with ``w`` a leaf that requires grad and ``a`` the output of an Exp::

            a.grad_fn = <Exp> <------+                 w --> <AccumulateGrad> (made on first use, held weakly by w)
                                     |                             ^
                                     |  _edges = (<Exp>, <AccumulateGrad>)
                                     |                             |
            y.grad_fn = <Mul> -------+-----------------------------+
                        _saved: what Mul.forward gave save_for_backward, resolved (``_resolve_saved``)

        Steps: the inputs' arrays and their array module (NumPy or CuPy: one device); ``forward`` on the arrays; then,
        only if grad is on and an input requires it, the node: which inputs want a gradient, the edges to their
        nodes, and the saved values, each with the version it had (an in-place change before backward is refused).
        """
        # one pass over the inputs (this runs for every op: plain loops, no generators)
        arrays, on_host, wanted = [], True, False
        for t in inputs:
            if t is None:
                arrays.append(None)
                continue
            a = t._data
            arrays.append(a)
            on_host = on_host and type(a) is _NDARRAY
            wanted = wanted or t.requires_grad
        xp = backend.np if on_host else _device_module(cls, arrays)
        fn = cls()
        token = _quiet_floats()  # NaN/inf results are IEEE's, as in torch: no NumPy warnings
        try:
            raw = out = fn.forward(xp, *arrays, **params)
        finally:
            _loud_floats(token)
        if type(out) is not _NDARRAY and (isinstance(out, _NUMPY_SCALAR) or not backend.is_device_array(out)):
            out = xp.asarray(out)  # NumPy turns 0-d results into scalars
        if not (wanted and _grad_mode.enabled):
            result = Tensor._make(out)
            _share_version_with_base(result, inputs)
            if _trace.record is not None:
                _trace.record(cls, inputs, params, result)
            return result
        needs, edges = [], []
        for t in inputs:
            if t is not None and t.requires_grad:
                needs.append(True)
                edges.append(t.grad_fn if t.grad_fn is not None else grad_node(t))
            else:
                needs.append(False)
                edges.append(None)
        fn.needs_input_grad, fn._edges = tuple(needs), tuple(edges)
        watched = _resolve_saved(fn, inputs, raw, out)
        result = Tensor._make(out, requires_grad=True, grad_fn=fn)
        _share_version_with_base(result, inputs)
        if fn._out is not None:
            watched.append((weakref.ref(result), result._vc[0]))
        fn._versions = tuple(watched)
        if _trace.record is not None:
            _trace.record(cls, inputs, params, result)
        return result


def _device_module(cls, arrays):
    """The array module of inputs not all NumPy arrays (CuPy), checking that they are on one device."""
    present = [a for a in arrays if a is not None]
    devs = {backend.device_of(a) for a in present}
    if len(devs) > 1:
        raise RuntimeValueError(f"{cls.name or cls.__name__}: expected all tensors on one device, got "
                                + " and ".join(sorted(map(str, devs))))
    return backend.get_array_module(*present)


def _errstate_switch():
    """(quiet, loud): quiet() makes NumPy ignore floating-point errors in this context (thread, task) and returns a
    token; loud(token) restores what was there. ``with np.errstate(all="ignore")`` does the same, but builds its
    settings on every entry: 1.5 of the 7 us that an op on small arrays took (benchmarks/NOTES.md, change 36).
    NumPy 2 keeps the settings in a context variable; where that private name is missing, the public errstate."""
    try:
        from numpy._core._ufunc_config import _extobj_contextvar, _make_extobj
        ignore = _make_extobj(all="ignore")
        return lambda: _extobj_contextvar.set(ignore), _extobj_contextvar.reset
    except (ImportError, TypeError):
        def quiet():
            state = backend.np.errstate(all="ignore")
            state.__enter__()
            return state
        return quiet, lambda state: state.__exit__(None, None, None)


_quiet_floats, _loud_floats = _errstate_switch()


def _resolve_saved(fn, inputs, raw, out):
    """Turn the arrays that forward gave ``save_for_backward`` into what ``saved_tensors`` hands back as Tensors, so
    that backward, written with minidl ops, is differentiable again: forward saw only arrays, so each is recognised
    by identity (``is``) as what it is:

    - the output array: kept as ``_OUTPUT``, and the output Tensor rebuilt when asked for (keeping the Tensor itself
      would make a cycle: node -> output -> node);
    - an input's array: that input Tensor (its version recorded: changed in place before backward, it is refused);
    - anything else (an intermediate, a mask): a constant array.

    Returns the (weak reference, version) pairs to check; the output's is added by apply once it exists."""
    saved = []
    watched = []
    for a in fn._to_save:
        if a is out or a is raw:
            saved.append(_OUTPUT)
            fn._out = out
            continue
        for t in inputs:
            if t is not None and a is t._data:
                saved.append(t)
                watched.append((weakref.ref(t), t._vc[0]))
                break
        else:
            saved.append(a)
    fn._saved = tuple(saved)
    fn._to_save = ()
    return watched


_plain_apply = Function.__dict__["apply"]


@classmethod
def _profiled_apply(cls, *inputs, **params):
    """Function.apply while a recorder is installed: the op as one event around the plain apply."""
    prof = _profiler
    if prof is None:  # the last recorder went away on another thread
        return _plain_apply.__func__(cls, *inputs, **params)
    event = prof.begin(cls.name or cls.__name__, inputs)
    result = None
    try:
        result = _plain_apply.__func__(cls, *inputs, **params)
    finally:
        prof.end(event, result)
    return result


# -- recorders: how instruments (minidl.profiler, draw_graph's shape pass) see ops and backward nodes ---------------
#
# A recorder has begin(name, inputs, kind) -> event, begin_node(node, grad) -> event and end(event, result). Any
# number may be installed at once, from any threads, in any order: each watches every thread (a profile) or one
# (draw_graph's backward pass), and removing one touches no other. The installed set is one immutable snapshot,
# replaced under a lock, from which _profiler and Function.apply are derived: once the last recorder is removed,
# whatever the interleaving, nothing is installed and ops run the plain apply.
_recorders_lock = threading.Lock()
_everywhere = ()   # recorders that watch every thread, in the order they were added
_per_thread = {}   # thread ident -> the recorders that watch only that thread (never an empty tuple)


class _FanOut:
    """The hook while several recorders are installed, or one that watches a single thread: each event goes to the
    recorders that watch the calling thread, and its token is their (recorder, event) pairs (None: no one
    watches this thread)."""
    __slots__ = ("everywhere", "per_thread")

    def __init__(self, everywhere, per_thread):
        self.everywhere, self.per_thread = everywhere, per_thread

    def _watching(self):
        return self.everywhere + self.per_thread.get(threading.get_ident(), ())

    def begin(self, name, inputs=(), kind="forward"):
        return tuple((r, r.begin(name, inputs, kind)) for r in self._watching()) or None

    def begin_node(self, node, grad):
        return tuple((r, r.begin_node(node, grad)) for r in self._watching()) or None

    def end(self, token, result):
        for r, event in reversed(token or ()):
            r.end(event, result)


def _refresh():
    """Derive the hook and Function.apply from the installed recorders (under _recorders_lock)."""
    global _profiler
    if not _everywhere and not _per_thread:
        _profiler = None
    elif len(_everywhere) == 1 and not _per_thread:
        _profiler = _everywhere[0]  # the common case, one profile: no fan-out in between
    else:
        _profiler = _FanOut(_everywhere, dict(_per_thread))
    Function.apply = _profiled_apply if _profiler is not None else _plain_apply


def add_recorder(recorder, thread=None):
    """Install ``recorder``: it sees every op applied and every backward node run on every thread, or, with
    ``thread`` (a ``threading.get_ident()``), on that thread only. Other recorders stay installed beside it."""
    global _everywhere
    with _recorders_lock:
        if recorder in _everywhere or any(recorder in rs for rs in _per_thread.values()):
            raise RuntimeError(f"add_recorder: {recorder!r} is already installed")
        if thread is None:
            _everywhere = _everywhere + (recorder,)
        else:
            _per_thread[thread] = _per_thread.get(thread, ()) + (recorder,)
        _refresh()


def remove_recorder(recorder):
    """Uninstall ``recorder`` (from any thread); the others stay. Removing one that is not installed does nothing."""
    global _everywhere
    with _recorders_lock:
        _everywhere = tuple(r for r in _everywhere if r is not recorder)
        for thread, rs in list(_per_thread.items()):
            rs = tuple(r for r in rs if r is not recorder)
            if rs:
                _per_thread[thread] = rs
            else:
                del _per_thread[thread]
        _refresh()


@contextmanager
def recording(recorder, thread=None):
    """``add_recorder(recorder, thread)`` for the block, removed however the block ends."""
    add_recorder(recorder, thread)
    try:
        yield recorder
    finally:
        remove_recorder(recorder)


def installed_recorders():
    """The recorders installed now: (those watching every thread, {thread ident: those watching only it})."""
    with _recorders_lock:
        return _everywhere, dict(_per_thread)


def _apply_hooks(hooks, grad):
    for h in hooks or ():
        r = h(grad)
        if r is not None:
            grad = r if isinstance(r, Tensor) else as_tensor(r)
    return grad


def _share_version_with_base(result, inputs):
    """A view (reshape, transpose, a slice...), or an op that hands back its input's own array, counts in-place
    changes together with the tensor whose memory it shares."""
    out = result._data
    base = getattr(out, "base", None)
    for t in inputs:
        if t is None:
            continue
        if t._data is out or (base is not None and (t._data is base or getattr(t._data, "base", None) is base)):
            result._vc = t._vc
            return


class DoubleBackwardError(Function):
    """Stands in the graph of a gradient computed by a once-differentiable op; differentiating it raises.

    It takes the op's edges, so that it lies on every path from that gradient to the op's inputs."""

    def __init__(self, node):
        super().__init__()
        self.op = node.op_name
        self._edges, self.needs_input_grad = node._edges, node.needs_input_grad

    def backward(self, gy):
        raise RuntimeError(f"{self.op}: its backward is a raw kernel and is not differentiable twice; "
                           "double backward (create_graph=True) through it is not supported")


class AccumulateGrad(Function):
    """The node of a leaf that requires grad, as torch's: every edge into a leaf ends here, so the engine has no
    leaf case. Topological order runs it after every node that sends it a gradient; it then runs the leaf's hooks,
    adds the gradient to ``.grad`` and runs the post-accumulate hooks (where DistributedDataParallel starts a
    reduction). The leaf holds it weakly: it lives as long as a graph that uses the leaf."""

    def __init__(self, variable):
        super().__init__()
        self.variable = variable

    @property
    def op_name(self):
        return "AccumulateGrad"

    grad_fn_name = "AccumulateGrad"  # torch's class name (not an op's Backward0)

    def check_incoming(self, grad, sender):
        if grad._data.shape != self.variable._data.shape:
            raise RuntimeError(f"{sender.op_name}: backward returned a gradient of shape {tuple(grad.shape)} for an "
                               f"input of shape {tuple(self.variable.shape)}")

    def run_hooks(self, grad):  # the leaf's own hooks (register_hook on a leaf)
        return _apply_hooks(self.variable._hooks, grad)

    def backward_step(self, grad, task):
        """A leaf's part of a backward pass: into ``.grad`` (autograd.grad, which has targets, leaves it alone)."""
        if task.targets is None:
            cap = _trace.capture  # minidl.compile writing down this step: the accumulation is replayed as a call
            if cap is None:
                self.accumulate(grad, task.create_graph, task.handed_out)
            else:
                cap.accumulate(self, grad, task)

    def accumulate(self, g, create_graph, handed_out):
        """Add ``g`` to the leaf's ``.grad`` (in the leaf's dtype); ``handed_out`` holds the ids of arrays that are
        already someone's gradient or the caller's, which a new ``.grad`` must not share."""
        leaf = self.variable
        if g._data.dtype != leaf._data.dtype:
            g = Tensor._make(g._data.astype(leaf._data.dtype), g.requires_grad, g.grad_fn)
        if leaf.grad is None:
            if not create_graph:
                arr = g._data
                if id(arr) in handed_out or arr.base is not None:  # shared with another grad, or a view
                    arr = arr.copy()
                handed_out.add(id(arr))
                g = Tensor._make(arr)
            leaf.grad = g
        else:
            leaf.grad = leaf.grad + (g if create_graph else g.detach())
        for h in list(leaf._post_acc_hooks or ()):
            h(leaf)


def grad_node(t):
    """The node a gradient for ``t`` goes to: its grad_fn, or (a leaf) its AccumulateGrad node."""
    if t.grad_fn is not None:
        return t.grad_fn
    node = t._acc() if t._acc is not None else None
    if node is None:
        node = AccumulateGrad(t)
        t._acc = weakref.ref(node)
    return node
