"""summary(model, input_shape): a table of layers, output shapes, parameters, receptive fields, FLOPs and
activation memory."""
import math

import numpy as np

from .. import nn
from ..autograd import no_grad
from ..autograd.creation import zeros
from ..autograd.function import tracing
from ..functional import conv as _conv, indexing as _indexing, pooling as _pool, shape as _shape


# ---- receptive fields, followed through every op the forward pass applies -----------------------------------
# A tensor derived from the input has, per spatial axis (H and W of (N, C, H, W); L of (N, C, L)), an
# Axis(size, jump, start): one output unit sees `size` input pixels, neighbouring units are `jump` pixels apart,
# and the first unit's field is centred on input pixel `start` (0 is the first pixel's centre; padding makes it
# negative). GLOBAL: a unit sees the whole input (after flatten + linear, global pooling...).
GLOBAL = "all"
_IDENTITY = (1, 1, 0.0)


def _spatial(shape):
    """The spatial sizes: the last two of 4-D and longer (a channel shuffle's 5-D view keeps them), the last of
    3-D (N, C, L)."""
    return tuple(shape[-2:]) if len(shape) >= 4 else tuple(shape[-1:]) if len(shape) == 3 else None


def _window(field, kernel, stride, padding, dilation):
    """One axis through a sliding window (conv or pool): the classic recurrence."""
    size, jump, start = field
    span = dilation * (kernel - 1) + 1
    return size + (span - 1) * jump, jump * stride, start + ((span - 1) / 2 - padding) * jump


def _through_windows(fields, geometry):
    """fields: per axis; geometry: per axis (kernel, stride, padding, dilation), aligned at the end."""
    geometry = geometry[-len(fields):]
    return tuple(_window(f, *g) for f, g in zip(fields, geometry))


def _op_field(cls, params, inputs, fields, out_shape):
    """The receptive field of an op's output from its inputs' (fields: per input, None if not from the image)."""
    known = [(t, f) for t, f in zip(inputs, fields) if f is not None]
    if not known:
        return None
    x, fx = known[0]
    if fx == GLOBAL or _spatial(out_shape) is None:
        return GLOBAL
    if cls in (_conv.Conv2dFunction, _pool.MaxPool2dFunction, _pool.AvgPool2dFunction):
        win = params["win"]
        # a convolution without its taps that read only padding (functional/conv.py's ``live``): the window of the
        # taps it runs, on the input less its first r0 rows and c0 columns (a padding less by as much)
        r0, c0 = params["live"][1] if params.get("live") is not None else (0, 0)
        return _through_windows(fx, ((win.kh, win.sh, win.ph - r0, win.dh), (win.kw, win.sw, win.pw - c0, win.dw)))
    if cls is _conv.ConvTranspose2dFunction:  # an output unit gathers ceil(span / stride) input units
        win = params["win"]
        out = []
        for f, kk, st, d in zip(fx, (win.kh, win.kw)[-len(fx):], win.stride[-len(fx):], win.dilation[-len(fx):]):
            span = math.ceil((d * (kk - 1) + 1) / st)
            out.append((f[0] + (span - 1) * f[1], f[1] / st, f[2]))
        return tuple(out)
    if cls in (_pool.AdaptiveAvgPool2dFunction, _pool.AdaptiveMaxPool2dFunction):
        ins, outs = _spatial(x.shape), _spatial(out_shape)
        if any(o == 1 and i > 1 for i, o in zip(ins, outs)):
            return GLOBAL
        return _through_windows(fx, tuple((math.ceil(i / o), i // o, 0, 1) for i, o in zip(ins, outs)))
    if cls is _shape.ConstantPad:  # widths per dim, the spatial ones last: the first unit moves back
        widths = params["widths"][-len(fx):]
        return tuple((f[0], f[1], f[2] - lo * f[1]) for f, (lo, _) in zip(fx, widths))
    if cls is _indexing.GetItem and x is inputs[0]:
        picked = _picked_field(params["key"], x.shape, fx)
        if picked is not None:
            return picked
    return _elementwise(known, out_shape)


def _picked_field(key, shape, field):
    """x[key] where the key keeps every dim and picks along the spatial ones by slices or 1-D index arrays
    (cropping, strided views, interpolate's gathers): each output unit reads one input unit, so the size stays,
    the first unit moves to the first one picked, and the jump scales by the step: a slice's, n_in / n_out for a
    resampling of the whole axis (interpolate: 1/2 for an upsampling by 2; linear modes read two neighbours, and
    the field is one neighbour's), else the mean step. None for other keys."""
    key = key if isinstance(key, tuple) else (key,)
    if len(key) > len(shape) or any(not isinstance(k, slice) and getattr(k, "ndim", -1) != 1 for k in key):
        return None
    key = key + (slice(None),) * (len(shape) - len(key))
    out = []
    for f, k, n in zip(field, key[-len(field):], shape[-len(field):]):
        if isinstance(k, slice):
            first, _, step = k.indices(n)
        else:
            idx = np.asarray(k.get() if hasattr(k, "get") else k)
            if idx.size == 0 or idx.dtype.kind not in "iu":
                return None
            idx = np.where(idx < 0, idx + n, idx)
            if idx[0] == 0 and idx[-1] == n - 1 and np.all(np.diff(idx) >= 0):  # a resampling of the whole axis
                first, step = 0, n / idx.size
            else:
                first, step = int(idx[0]), (idx[-1] - idx[0]) / (idx.size - 1) if idx.size > 1 else 1
        out.append((f[0], f[1] * step, f[2] + first * f[1]))
    return tuple(out)


def _elementwise(known, out_shape):
    """Any other op: where the output keeps an input's spatial extent (elementwise ops, batch norm, cat along
    channels, a reshape of the channels), the largest field among those inputs; otherwise (flatten, a linear
    layer over it, a reduction over space) the whole input."""
    out_sp = _spatial(out_shape)
    same = []
    for t, f in known:
        sp = _spatial(t.shape)
        if f == GLOBAL:
            return GLOBAL
        if sp is not None and sp[-len(out_sp):] == out_sp[-len(sp):]:
            same.append(f[-len(out_sp):] if len(f) >= len(out_sp) else (_IDENTITY,) * (len(out_sp) - len(f)) + f)
    if not same:
        return GLOBAL
    return max(same, key=lambda f: tuple(a[0] for a in f))


class _FieldTracer:
    """Sees every op of one forward pass (autograd/function.py's tracing) and keeps each result's field."""

    def __init__(self, image):
        self.fields = {id(image): (_IDENTITY,) * len(_spatial(image.shape) or ())}
        self.keep = [image]  # the tensors whose ids are keys stay alive, so an id is never reused

    def __call__(self, cls, inputs, params, result):
        if not isinstance(cls, type):  # ops recorded by name (comparisons): no field
            return
        field = _op_field(cls, params, inputs, [None if t is None else self.fields.get(id(t)) for t in inputs],
                          result.shape)
        if field is not None:
            self.fields[id(result)] = field
            self.keep.append(result)

    def of(self, t):
        return self.fields.get(id(t))


def _describe(field):
    """'size', 'jump' and 'start' as printed: one number for a square field, HxW otherwise; 'all' for a global
    one."""
    if field is None:
        return "", "", ""
    if field == GLOBAL:
        return GLOBAL, "", ""

    def fmt(values):
        values = [int(v) if float(v).is_integer() else round(v, 2) for v in values]
        return str(values[0]) if len(set(values)) == 1 else "x".join(map(str, values))
    return fmt([f[0] for f in field]), fmt([f[1] for f in field]), fmt([f[2] for f in field])


def _flops(m, inp, out):
    """Floating-point operations of one forward call (a multiply-add counts 2)."""
    n_out = int(np.prod(out.shape))
    if isinstance(m, nn.Conv2d):
        kh, kw = m.kernel_size
        return 2 * n_out * (m.in_channels // m.groups) * kh * kw
    if isinstance(m, nn.ConvTranspose2d):
        kh, kw = m.kernel_size
        return 2 * int(np.prod(inp.shape)) * (m.out_channels // m.groups) * kh * kw
    if isinstance(m, nn.Linear):
        return 2 * n_out * m.in_features
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)):
        return 4 * n_out
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        k = m.kernel_size if isinstance(m.kernel_size, tuple) else (m.kernel_size, m.kernel_size)
        return n_out * k[0] * k[1]
    if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        return int(np.prod(inp.shape))
    if isinstance(m, (nn.ReLU, nn.LeakyReLU, nn.Sigmoid, nn.Tanh, nn.GELU, nn.SiLU, nn.Softmax, nn.LogSoftmax,
                      nn.Dropout)):
        return n_out
    return 0


class ModelSummary(dict):
    """summary()'s result: a dict ('rows' and the totals) whose repr is one line, so the REPL does not echo the
    table a second time as a wall of dicts."""

    def __repr__(self):
        return (f"<ModelSummary: {len(self['rows'])} layers, {self['trainable_params']:,} trainable parameters, "
                f"{self['flops'] / 1e6:,.2f} MFLOPs>")

    def table(self):
        """The table summary() prints."""
        return _table(self["rows"], self, self["input_shape"])


def _torch_counted(m):
    """The layers whose FLOPs torch.utils.flop_counter.FlopCounterMode counts (convolutions and matrix
    products); it leaves out activations, pooling and normalisation."""
    return isinstance(m, (nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d, nn.Linear))


def summary(model, input_shape, dtype=None, device=None, print_fn=print):
    """Run ``model`` once on zeros of ``input_shape`` (batch included) and tabulate its leaf layers.

    Per layer: output shape, parameters, receptive field, forward FLOPs and activation memory at this batch. The
    receptive field (``rf``: how many input pixels one output unit sees; ``jump``: how far apart, in input pixels,
    neighbouring units' fields are; ``stride``: the layer's own, jump out / jump in; ``start``: the centre of the
    first unit's field, in input pixels from the first one's centre) is followed through every op of the forward
    pass, functional ones included (a ``F.max_pool2d`` between two conv layers counts); ``all`` once a unit
    sees the whole input. FLOPs count a multiply-add as 2; the totals also give the part that torch's
    ``torch.utils.flop_counter.FlopCounterMode`` counts (convolutions and matrix products), to compare.

    Returns a :class:`ModelSummary`: a dict with 'rows' (name, type, output_shape, params, rf, jump, stride,
    start, flops, activation_bytes) and the totals.
    """
    rows, hooks = [], []
    image = zeros(*input_shape, dtype=dtype, device=device)
    fields = _FieldTracer(image)
    for name, m in model.named_modules():
        if next(m.children(), None) is not None:  # leaf layers only
            continue

        def hook(mod, inp, out, name=name):
            o = out[0] if isinstance(out, tuple) else out
            own = list(mod.parameters(recurse=False))
            field, before = fields.of(o), fields.of(inp[0]) if inp else None
            rf, jump, start = _describe(field)
            stride = ""
            if isinstance(field, tuple) and isinstance(before, tuple) and len(before) == len(field):
                stride = _describe(tuple((1, f[1] / b[1], 0) for f, b in zip(field, before)))[1]
            rows.append(dict(name=name or type(mod).__name__, type=type(mod).__name__, output_shape=tuple(o.shape),
                             params=sum(p.numel() for p in own), rf=rf, jump=jump, stride=stride, start=start,
                             flops=_flops(mod, inp[0], o), torch_counted=_torch_counted(mod),
                             activation_bytes=o.numel() * o.element_size()))
        hooks.append(m.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with no_grad(), tracing(fields):
            model(image)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    total = dict(trainable_params=trainable, non_trainable_params=frozen, flops=sum(r["flops"] for r in rows),
                 torch_counted_flops=sum(r["flops"] for r in rows if r["torch_counted"]),
                 activation_bytes=sum(r["activation_bytes"] for r in rows))
    result = ModelSummary(rows=rows, input_shape=tuple(input_shape), **total)
    if print_fn:
        print_fn(result.table())
    return result


def _table(rows, total, input_shape):
    w = max([len(r["name"]) for r in rows] + [5])
    head = (f"{'layer':<{w}}  {'type':<18}{'output shape':<20}{'params':>10}{'rf':>8}{'stride':>8}{'jump':>6}"
            f"{'start':>7}{'MFLOPs':>10}{'act. KiB':>10}")
    line = "-" * len(head)
    out = [line, head, line]
    for r in rows:
        out.append(f"{r['name']:<{w}}  {r['type']:<18}{str(r['output_shape']):<20}{r['params']:>10,}{r['rf']:>8}"
                   f"{r['stride']:>8}{r['jump']:>6}{r['start']:>7}{r['flops'] / 1e6:>10.3f}"
                   f"{r['activation_bytes'] / 2 ** 10:>10,.1f}")
    out += [line, f"trainable params: {total['trainable_params']:,}",
            f"non-trainable params: {total['non_trainable_params']:,}",
            f"forward FLOPs: {total['flops'] / 1e6:,.2f} M (input {tuple(input_shape)}); convolutions and matrix "
            f"products: {total['torch_counted_flops'] / 1e6:,.2f} M (what torch's FlopCounterMode counts)",
            f"activation memory: {total['activation_bytes'] / 2 ** 20:,.2f} MiB (the layers' outputs)", line]
    return "\n".join(out)
