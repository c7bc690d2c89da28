"""Export a model to ONNX, as torch.onnx.export does: ``minidl.onnx.export(model, example_input, "model.onnx")``.

The model runs once on the example input in eval mode while every op it applies is recorded (the tracer in
autograd/function.py); each recorded op becomes ONNX nodes. Parameters and buffers become initializers named by
their state_dict keys; ops whose inputs are all constants (a linear layer's weight transpose) are folded into
constants, as torch folds them. The batch dimension stays symbolic, so the file runs on any batch size. Like
torch's tracer, the graph is the path the example took: data-dependent Python control flow is frozen.

Needs the optional ``onnx`` package (``pip install onnx``; ``onnxruntime`` runs the file), imported only here.
"""
import numpy as np

from .autograd import no_grad
from .autograd.function import tracing
from .autograd.tensor import Tensor
from .functional import activation as A, conv as C, indexing as I, loss as L, math as M, normalization as N, \
    pooling as P, reduction as R, shape as S, unary as U
from .functional.attention import ScaledDotProductAttention
from .functional.linear import Diag, Einsum, LinearFunction, MatMul, Tril, Triu
from .functional.rnn import GRUSequence, LSTMProjSequence, LSTMSequence, RNNSequence
from .functional.view import Expand, Permute, Reshape, SumTo  # (functional.view is the op view)
from .utils.checkpoint import write_atomically

OPSET = 17


class _Graph:
    """The ONNX graph being built: value names for tensors, nodes, initializers."""

    def __init__(self, onnx, model, inputs, dynamic_batch):
        self.onnx, self.h = onnx, onnx.helper
        self.nodes, self.inits, self.names, self.counts = [], [], {}, {}
        self.keep = []  # tensors named by id: kept alive so that no id is reused while exporting
        self.const_values = {}  # name -> array, for constant folding
        self.dynamic_batch = dynamic_batch
        self.batch = inputs[0].shape[0] if inputs and inputs[0].ndim else None
        self.input_ids = {id(x) for x in inputs}
        self.param_names = {}
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            if t is not None:
                self.param_names.setdefault(id(t), name)
                self.param_names.setdefault(id(t._data), name)  # buffers handed to ops as raw arrays

    def fresh(self, stem):
        self.counts[stem] = self.counts.get(stem, -1) + 1
        return f"{stem}_{self.counts[stem]}"

    def const(self, array, stem="const", name=None):
        """An initializer holding ``array``; returns its name."""
        array = np.asarray(array)
        name = name or self.fresh(stem)
        self.inits.append(self.onnx.numpy_helper.from_array(array, name))
        self.const_values[name] = array
        return name

    def name_of(self, t):
        """The value name of a Tensor (or raw array): a produced value, a graph input, or a new constant."""
        key = id(t)
        if key in self.names:
            return self.names[key]
        self.keep.append(t)
        array = t.detach()._data if isinstance(t, Tensor) else t
        array = np.asarray(array)  # export runs on the CPU (export() refuses device inputs)
        name = self.const(array, name=self.param_names.get(key) or self.param_names.get(id(array)))
        self.names[key] = name
        return name

    def node(self, op, inputs, n_out=1, **attrs):
        outs = [self.fresh(op.lower()) for _ in range(n_out)]
        self.nodes.append(self.h.make_node(op, list(inputs), outs, **attrs))
        return outs[0] if n_out == 1 else outs

    def ints(self, values, stem="shape"):
        return self.const(np.asarray(values, dtype=np.int64), stem)

    def scalar_like(self, value, like_dtype):
        return self.const(np.asarray(value, dtype=like_dtype), "scalar")


def _pool_attrs(win, in_hw):
    """kernel/strides/pads/dilations of a pooling geometry (kh, kw, sh, sw, ph, pw, dh, dw, oh, ow), and
    ceil_mode where the output is larger than floor mode gives."""
    kh, kw, sh, sw, ph, pw, dh, dw, oh, ow = win
    floor = [(s + 2 * p - d * (k - 1) - 1) // st + 1 for s, p, d, k, st in
             ((in_hw[0], ph, dh, kh, sh), (in_hw[1], pw, dw, kw, sw))]
    return dict(kernel_shape=[kh, kw], strides=[sh, sw], pads=[ph, pw, ph, pw],
                ceil_mode=int([oh, ow] != floor)), (dh, dw)


def _getitem(g, x, key, shape):
    """Slices, ints, None and one 1-D integer array per key, as Slice, Gather, Unsqueeze nodes."""
    key = key if isinstance(key, tuple) else (key,)
    if any(k is Ellipsis for k in key):
        i = key.index(Ellipsis)
        n_real = sum(1 for k in key if k is not None and k is not Ellipsis)
        key = key[:i] + (slice(None),) * (len(shape) - n_real) + key[i + 1:]
    starts, ends, axes, steps = [], [], [], []
    picks, news, axis = [], [], 0
    for out_pos, k in enumerate(key):
        if k is None:
            news.append(out_pos)
            continue
        if isinstance(k, slice):
            start, stop, step = k.indices(shape[axis])
            if (start, stop, step) != (0, shape[axis], 1):
                if step < 0 and stop < 0:
                    stop = -(2 ** 62)  # ONNX's "to the very beginning" for a negative step
                starts.append(start), ends.append(stop), axes.append(axis), steps.append(step)
        elif isinstance(k, (int, np.integer)) or (isinstance(k, np.ndarray) and k.dtype.kind in "iu" and k.ndim <= 1):
            picks.append((axis, k))
        else:
            raise ValueError(f"minidl.onnx.export: indexing with {type(k).__name__} "
                             f"{getattr(k, 'dtype', '')} has no ONNX translation (slices, ints and 1-D integer "
                             f"arrays do)")
        axis += 1
    if sum(1 for _, k in picks if isinstance(k, np.ndarray)) > 1:
        raise ValueError("minidl.onnx.export: indexing with more than one index array has no ONNX translation")
    if starts:
        x = g.node("Slice", [x, g.ints(starts), g.ints(ends), g.ints(axes), g.ints(steps)])
    removed = 0
    for ax, k in picks:  # left to right; an int removes its dim
        k = np.asarray(k, dtype=np.int64)
        x = g.node("Gather", [x, g.const(k, "index")], axis=ax - removed)
        removed += k.ndim == 0
    if news:
        x = g.node("Unsqueeze", [x, g.ints(news)])
    return x


# ---- one translation per Function class: (g, inputs, input names, params, output) -> output name ---------------
def _one(onnx_op):
    """An op that is one ONNX node over its inputs."""
    return lambda g, inputs, x, params, out: g.node(onnx_op, x)


def _pow_scalar(g, inputs, x, params, out):
    return g.node("Pow", [x[0], g.scalar_like(params["exponent"], out.dtype)])


def _conv2d(g, inputs, x, params, out):
    """The whole convolution: conv2d hands Conv2dFunction the whole input and weight and the window of the smaller
    convolution it runs where some taps read only padding (``live``: functional/conv.py); the padding is the
    caller's, recovered from the two."""
    win, live = params["win"], params.get("live")
    padding = list(win.padding)
    if live is not None:
        (i0, _, j0, _), (r0, c0) = live
        padding = [win.ph - r0 + i0 * win.dh, win.pw - c0 + j0 * win.dw]
    return g.node("Conv", [v for v in x if v is not None], kernel_shape=list(inputs[1].shape[2:]),
                  strides=list(win.stride), dilations=list(win.dilation), pads=padding * 2, group=params["groups"])


def _batch_norm(g, inputs, x, params, out):
    if params["training"]:
        raise ValueError("minidl.onnx.export: batch norm in training mode (export runs the model in eval mode; "
                         "a functional batch_norm with training=True has no ONNX translation)")
    c = inputs[0].shape[1]
    scale = x[1] or g.const(np.ones(c, dtype=out.dtype), "bn_scale")
    bias = x[2] or g.const(np.zeros(c, dtype=out.dtype), "bn_bias")
    return g.node("BatchNormalization", [x[0], scale, bias, g.name_of(params["running_mean"]),
                                         g.name_of(params["running_var"])], epsilon=params["eps"])


def _layer_norm(g, inputs, x, params, out):
    ns = inputs[0].shape[inputs[0].ndim - params["k"]:]
    scale = x[1] or g.const(np.ones(ns, dtype=out.dtype), "ln_scale")
    return g.node("LayerNormalization", [x[0], scale] + [v for v in x[2:] if v], axis=-params["k"],
                  epsilon=params["eps"])


def _group_norm(g, inputs, x, params, out):
    """InstanceNormalization over (N, groups, the rest), then the weight and bias per channel (opset 17 has no
    GroupNormalization; torch exports it so too)."""
    shape, groups = inputs[0].shape, params["groups"]
    rows = g.node("Reshape", [x[0], g.ints([0, groups, -1])])
    ones = g.const(np.ones(groups, dtype=out.dtype), "gn_scale")
    zeros = g.const(np.zeros(groups, dtype=out.dtype), "gn_bias")
    y = g.node("Reshape", [g.node("InstanceNormalization", [rows, ones, zeros], epsilon=params["eps"]),
                           g.node("Shape", x[:1])])
    per_channel = [shape[1]] + [1] * (len(shape) - 2)
    if x[1]:
        y = g.node("Mul", [y, g.node("Reshape", [x[1], g.ints(per_channel)])])
    if x[2]:
        y = g.node("Add", [y, g.node("Reshape", [x[2], g.ints(per_channel)])])
    return y


def _max_pool(g, inputs, x, params, out):
    attrs, dil = _pool_attrs(params["win"], inputs[0].shape[2:])
    return g.node("MaxPool", x[:1], dilations=list(dil), **attrs)


def _avg_pool(g, inputs, x, params, out):
    """The mean over a window's real (unpadded) elements, rescaled to minidl's divisor."""
    attrs, _ = _pool_attrs(params["win"], inputs[0].shape[2:])
    y = g.node("AveragePool", x[:1], count_include_pad=0, **attrs)
    kh, kw, sh, sw, ph, pw, _, _, oh, ow = params["win"]
    counts = [np.minimum(np.arange(n) * st - p + k, size) - np.maximum(np.arange(n) * st - p, 0)
              for n, st, p, k, size in ((oh, sh, ph, kh, inputs[0].shape[2]), (ow, sw, pw, kw, inputs[0].shape[3]))]
    ratio = np.broadcast_to(np.outer(*counts) / np.asarray(params["divisor"]), (oh, ow)).astype(out.dtype)
    return y if np.all(ratio == 1) else g.node("Mul", [y, g.const(ratio, "pool_scale")])


def _adaptive_pool(kind):
    def export(g, inputs, x, params, out):
        (h, w), (oh, ow) = inputs[0].shape[2:], params["out_hw"]
        if (oh, ow) == (1, 1):
            return g.node(f"Global{kind}Pool", x)
        if h % oh or w % ow:
            raise ValueError(f"minidl.onnx.export: adaptive {kind.lower()} pooling from {h}x{w} to {oh}x{ow} "
                             "(windows of unequal sizes) has no ONNX translation")
        k = [h // oh, w // ow]
        return g.node(f"{kind}Pool", x, kernel_shape=k, strides=k)
    return export


def _reshape(g, inputs, x, params, out):
    shape = list(out.shape)
    if g.dynamic_batch and inputs[0].ndim and shape and inputs[0].shape[0] == shape[0] == g.batch:
        shape[0] = 0  # "as the input's": keeps the batch symbolic
    return g.node("Reshape", [x[0], g.ints(shape)])


def _clip(g, inputs, x, params, out):
    lo, hi = params["lo"], params["hi"]
    return g.node("Clip", [x[0], "" if lo is None else g.scalar_like(lo, out.dtype),
                           "" if hi is None else g.scalar_like(hi, out.dtype)])


def _softplus(g, inputs, x, params, out):
    """torch's: x where beta x > threshold, else log(1 + exp(beta x)) / beta."""
    beta, threshold, dtype = float(params["beta"]), float(params["threshold"]), out.dtype
    bx = x[0] if beta == 1 else g.node("Mul", [x[0], g.scalar_like(beta, dtype)])
    soft = g.node("Softplus", [bx])
    soft = soft if beta == 1 else g.node("Div", [soft, g.scalar_like(beta, dtype)])
    return g.node("Where", [g.node("Greater", [bx, g.scalar_like(threshold, dtype)]), x[0], soft])


def _gelu(g, inputs, x, params, out):
    """opset 17 has no Gelu (opset 20 has): 0.5 x (1 + Erf(x / sqrt(2))), or 0.5 x (1 + Tanh(sqrt(2 / pi) (x +
    0.044715 x^3))) for approximate='tanh', torch's formulas."""
    def c(v):
        return g.scalar_like(v, out.dtype)
    if params["approximate"] == "tanh":
        cube = g.node("Mul", [g.node("Mul", [x[0], x[0]]), x[0]])
        inner = g.node("Add", [x[0], g.node("Mul", [cube, c(A._TANH_KAPPA)])])
        s = g.node("Tanh", [g.node("Mul", [inner, c(A._TANH_BETA)])])
    else:
        s = g.node("Erf", [g.node("Mul", [x[0], c(A._SQRT1_2)])])
    return g.node("Mul", [g.node("Mul", [x[0], c(0.5)]), g.node("Add", [s, c(1.0)])])


def _constant_pad(g, inputs, x, params, out):
    widths = params["widths"]
    pads = [lo for lo, _ in widths] + [hi for _, hi in widths]
    return g.node("Pad", [x[0], g.ints(pads), g.scalar_like(params["value"], out.dtype)], mode="constant")


EXPORTERS = {
    **{cls: _one(name) for cls, name in (
        (M.Add, "Add"), (M.Sub, "Sub"), (M.Mul, "Mul"), (M.Div, "Div"), (M.Pow, "Pow"), (MatMul, "MatMul"),
        (M.Maximum, "Max"), (M.Minimum, "Min"), (U.Neg, "Neg"), (U.Exp, "Exp"), (M.Log, "Log"), (U.Sqrt, "Sqrt"),
        (U.Abs, "Abs"), (U.Erf, "Erf"), (M.Where, "Where"), (A.ReLUFunction, "Relu"), (A.SigmoidFunction, "Sigmoid"),
        (A.TanhFunction, "Tanh"), (A.HardswishFunction, "HardSwish"))},
    S.Clone: lambda g, inputs, x, params, out: g.node("Identity", x[:1]),
    M.PowScalar: _pow_scalar,
    C.Conv2dFunction: _conv2d,
    LinearFunction: lambda g, inputs, x, params, out: g.node("Gemm", [v for v in x if v is not None], transB=1),
    N.BatchNorm: _batch_norm,
    N.LayerNormFunction: _layer_norm,
    N.GroupNormFunction: _group_norm,
    P.MaxPool2dFunction: _max_pool,
    P.AvgPool2dFunction: _avg_pool,
    P.AdaptiveAvgPool2dFunction: _adaptive_pool("Average"),
    P.AdaptiveMaxPool2dFunction: _adaptive_pool("Max"),
    S.Cat: lambda g, inputs, x, params, out: g.node("Concat", x, axis=params["dim"]),
    Reshape: _reshape,
    Permute: lambda g, inputs, x, params, out: g.node("Transpose", x, perm=list(params["axes"])),
    Expand: lambda g, inputs, x, params, out: g.node("Expand", [x[0], g.ints(out.shape)]),
    R.Mean: lambda g, inputs, x, params, out: g.node("ReduceMean", x[:1], keepdims=int(params["keepdim"]),
                                                     axes=list(params["axes"])),
    R.Sum: lambda g, inputs, x, params, out: g.node("ReduceSum", [x[0], g.ints(params["axes"])],
                                                    keepdims=int(params["keepdim"])),
    I.GetItem: lambda g, inputs, x, params, out: _getitem(g, x[0], params["key"], inputs[0].shape),
    A.HardtanhFunction: _clip,
    U.Clamp: _clip,
    A.LeakyReLUFunction: lambda g, inputs, x, params, out: g.node("LeakyRelu", x, alpha=float(params["slope"])),
    A.ELU: lambda g, inputs, x, params, out: g.node("Elu", x, alpha=float(params["alpha"])),
    A.SoftplusFunction: _softplus,
    A.GELUFunction: _gelu,
    A.HardsigmoidFunction: lambda g, inputs, x, params, out: g.node("HardSigmoid", x, alpha=1 / 6, beta=0.5),
    A.SoftmaxFunction: lambda g, inputs, x, params, out: g.node("Softmax", x, axis=params["dim"]),
    A.LogSoftmaxFunction: lambda g, inputs, x, params, out: g.node("LogSoftmax", x, axis=params["dim"]),
    S.To: lambda g, inputs, x, params, out: g.node("Cast", x, to=g.h.np_dtype_to_tensor_dtype(np.dtype(out.dtype))),
    S.ConstantPad: _constant_pad,
}

# Functions without a translation, and why: export refuses them with this reason (tests/test_exchange.py checks
# that every Function class is in EXPORTERS or here).
NOT_EXPORTED = {
    ScaledDotProductAttention: "not translated yet (ONNX Attention, opset 23)",
    C.UnfoldFunction: "im2col has no ONNX operator", C.FoldFunction: "col2im has no ONNX operator",
    C.ConvTranspose2dFunction: "not translated yet (ONNX ConvTranspose)",
    R.Cumsum: "not translated yet (ONNX CumSum)", R.Amax: "not translated yet (ONNX ReduceMax)",
    R.LogSumExp: "not translated yet", R.Prod: "not translated yet", R.Norm: "not translated yet",
    R.NuclearNorm: "not translated yet (ONNX has no SVD)",
    R.StdSqrt: "not translated yet (var and std)",
    U.Floor: "not translated yet", U.Ceil: "not translated yet", U.Round: "not translated yet",
    U.Trunc: "not translated yet", U.Sign: "not translated yet", M.RoundedDiv: "not translated yet",
    U.ClampTensor: "not translated yet (clamp with tensor bounds)", L.XLogX: "not translated yet",
    L.BinaryCrossEntropy: "a loss: export the model, not its training objective",
    L.SoftmaxCrossEntropy: "a loss: export the model, not its training objective",
    I.Gather: "not translated yet (ONNX GatherElements)", I.IndexAdd: "not translated yet",
    SumTo: "a broadcasting gradient, not a forward op", A.ReLUBackward: "relu's gradient, not a forward op",
    U.Log1p: "not translated yet", U.Expm1: "not translated yet", U.Log2: "not translated yet",
    U.Log10: "not translated yet", U.Sin: "not translated yet (ONNX Sin)", U.Cos: "not translated yet (ONNX Cos)",
    M.Atan2: "not translated yet", Tril: "not translated yet (ONNX Trilu)",
    Triu: "not translated yet (ONNX Trilu)", Diag: "not translated yet",
    Einsum: "not translated yet (ONNX Einsum)", RNNSequence: "not translated yet (ONNX RNN)",
    LSTMSequence: "not translated yet (ONNX LSTM)", GRUSequence: "not translated yet (ONNX GRU)",
    LSTMProjSequence: "not translated yet (ONNX LSTM has no projection)",
    I.Scatter: "not translated yet", I.ScatterAdd: "not translated yet",
    N.SyncBatchNormFunction: "exports as batch norm once converted back (SyncBatchNorm is for training)",
}

# comparisons make tensors without a Function (no gradient): they report themselves by name
_COMPARISONS = {"eq": "Equal", "lt": "Less", "le": "LessOrEqual", "gt": "Greater", "ge": "GreaterOrEqual",
                "logical_not": "Not", "isnan": "IsNaN"}


def _emit(g, cls, inputs, params, out):
    """ONNX nodes for one recorded op; returns the name of its output."""
    if isinstance(cls, str):  # an op without a Function (comparisons)
        x = [g.name_of(t) for t in inputs]
        if cls == "ne":
            return g.node("Not", [g.node("Equal", x)])
        if cls not in _COMPARISONS:
            raise ValueError(f"minidl.onnx.export: the op {cls!r} has no ONNX translation in minidl")
        return g.node(_COMPARISONS[cls], x)
    export = EXPORTERS.get(cls)
    if export is None:
        why = NOT_EXPORTED.get(cls, "")
        raise ValueError(f"minidl.onnx.export: the op {cls.name or cls.__name__!r} has no ONNX translation in minidl"
                         + (f" ({why})" if why else ""))
    return export(g, inputs, [None if t is None else g.name_of(t) for t in inputs], params, out)


def _trace_run(model, inputs):
    records = []
    with no_grad(), tracing(lambda *r: records.append(r)):
        outputs = model(*inputs)
    return records, outputs


def _perturbed(t):
    if t.dtype.kind != "f":
        return t
    rng = np.random.default_rng(12345)
    return Tensor._make(t._data + np.asarray(rng.normal(0, 0.5, t.shape), dtype=t.dtype))


def _check_same_graph(a, b, inputs_a, inputs_b):
    """The two traces must run the same ops, with the same constants (parameters aside)."""
    def opname(c):
        return c if isinstance(c, str) else (c.name or c.__name__)
    if [opname(r[0]) for r in a] != [opname(r[0]) for r in b]:
        raise ValueError("minidl.onnx.export: the model runs different ops for different input values (data-dependent "
                         "control flow), which one ONNX graph cannot hold")
    made_a = {id(t) for t in inputs_a} | {id(r[3]) for r in a}
    made_b = {id(t) for t in inputs_b} | {id(r[3]) for r in b}
    for (cls, ins_a, _, _), (_, ins_b, _, _) in zip(a, b):
        for ta, tb in zip(ins_a, ins_b):
            if ta is None or ta is tb or id(ta) in made_a or id(tb) in made_b:
                continue
            if ta.shape != tb.shape or not np.array_equal(np.asarray(ta._data), np.asarray(tb._data), equal_nan=True):
                raise ValueError(f"minidl.onnx.export: an input of the op {opname(cls)!r} depends on the model's input "
                                 "through a computation the exporter cannot see (outside minidl's ops); it would be "
                                 "frozen as a constant")


def export(model, args, f, input_names=None, output_names=None, opset_version=OPSET, dynamic_batch=True):
    """Write ``model`` as an ONNX file to ``f`` (a path, written atomically, or a binary file object).

    Args:
        model: a Module; it runs once on ``args`` in eval mode (its mode is restored after).
        args: the example input: a Tensor, or a tuple of Tensors for a model with several inputs.
        input_names, output_names: names in the graph (default input_0..., output_0...).
        opset_version: the ONNX opset (17).
        dynamic_batch: leave dim 0 of inputs and outputs symbolic ("batch"), so any batch size runs.
    Returns the onnx ModelProto."""
    try:
        import onnx
    except ImportError:
        raise ImportError("minidl.onnx.export needs the onnx package: pip install onnx (or pip install -e "
                          "\".[exchange]\")") from None
    inputs = tuple(args) if isinstance(args, (tuple, list)) else (args,)
    for i, t in enumerate(inputs):
        if not isinstance(t, Tensor):
            raise TypeError(f"minidl.onnx.export: example input {i} must be a Tensor, got {type(t).__name__}")
        if str(t.device) != "cpu":
            raise ValueError(f"minidl.onnx.export: exports from the CPU; example input {i} is on {t.device} "
                             "(call model.cpu() and pass a CPU input)")
    was_training = model.training
    model.eval()
    try:
        records, outputs = _trace_run(model, inputs)
        # a second run on other values: any constant that differs came from the input by a path the tracer does
        # not see (or the graph itself depends on the values); exporting it as a constant would be wrong
        other = tuple(_perturbed(t) for t in inputs)
        _check_same_graph(records, _trace_run(model, other)[0], inputs, other)
    finally:
        model.train(was_training)
    outputs = tuple(outputs) if isinstance(outputs, (tuple, list)) else (outputs,)
    g = _Graph(onnx, model, inputs, dynamic_batch)
    input_names = list(input_names or [f"input_{i}" for i in range(len(inputs))])
    output_names = list(output_names or [f"output_{i}" for i in range(len(outputs))])
    if len(input_names) != len(inputs) or len(output_names) != len(outputs):
        raise ValueError(f"minidl.onnx.export: {len(input_names)} input names for {len(inputs)} inputs and "
                         f"{len(output_names)} output names for {len(outputs)} outputs")
    for t, name in zip(inputs, input_names):
        g.names[id(t)] = name
        g.keep.append(t)
    produced = set(input_names)
    for cls, ins, params, out in records:
        present = [t for t in ins if t is not None]
        if present and all(id(t) not in g.names or g.names[id(t)] in g.const_values for t in present) and \
                not any(id(t) in g.input_ids for t in present):
            # every input is a constant (a parameter, or folded): the result is a constant too
            g.names[id(out)] = g.const(np.asarray(out._data), "folded")
            g.keep.append(out)
            continue
        name = _emit(g, cls, ins, params, out)
        g.names[id(out)] = name
        g.keep.append(out)
        produced.add(name)
    graph_outputs = []
    for t, name in zip(outputs, output_names):
        src = g.name_of(t)
        g.nodes.append(g.h.make_node("Identity", [src], [name]))
        graph_outputs.append(name)

    def info(name, t):
        shape = list(t.shape)
        if dynamic_batch and shape and shape[0] == g.batch:
            shape[0] = "batch"
        return g.h.make_tensor_value_info(name, g.h.np_dtype_to_tensor_dtype(np.dtype(t.dtype)), shape)
    graph = g.h.make_graph(g.nodes, type(model).__name__, [info(n, t) for n, t in zip(input_names, inputs)],
                           [info(n, t) for n, t in zip(output_names, outputs)], g.inits)
    proto = g.h.make_model(graph, opset_imports=[g.h.make_opsetid("", opset_version)], producer_name="minidl")
    proto.ir_version = min(proto.ir_version, 9)  # readable by onnxruntime releases of the last two years
    onnx.checker.check_model(proto)
    write_atomically(f, lambda fh: fh.write(proto.SerializeToString()), ".onnx")
    return proto
