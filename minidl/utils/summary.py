"""summary(model, input_shape): a table of layers, output shapes, parameters, FLOPs and activation memory."""
import numpy as np

from .. import nn
from ..autograd import no_grad
from ..autograd.creation import zeros


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


def summary(model, input_shape, dtype=None, device=None, print_fn=print):
    """Run ``model`` once on zeros of ``input_shape`` (batch included) and tabulate its leaf layers.

    Returns a :class:`ModelSummary`, a dict with 'rows' (name, type, output shape, params, FLOPs, activation
    bytes) and totals: trainable and non-trainable parameters, FLOPs and activation memory of one forward pass.
    """
    rows, hooks = [], []
    for name, m in model.named_modules():
        if next(m.children(), None) is not None:  # leaf layers only
            continue

        def hook(mod, inp, out, name=name):
            o = out[0] if isinstance(out, tuple) else out
            own = list(mod.parameters(recurse=False))
            rows.append(dict(name=name or type(mod).__name__, type=type(mod).__name__, output_shape=o.shape,
                             params=sum(p.numel() for p in own), flops=_flops(mod, inp[0], o),
                             activation_bytes=o.numel() * o.element_size()))
        hooks.append(m.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            model(zeros(*input_shape, dtype=dtype, device=device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    total = dict(trainable_params=trainable, non_trainable_params=frozen, flops=sum(r["flops"] for r in rows),
                 activation_bytes=sum(r["activation_bytes"] for r in rows))
    if print_fn:
        w = max([len(r["name"]) for r in rows] + [5])
        line = "-" * (w + 62)
        out = [line, f"{'layer':<{w}}  {'type':<18}{'output shape':<20}{'params':>10}{'MFLOPs':>12}", line]
        for r in rows:
            out.append(f"{r['name']:<{w}}  {r['type']:<18}{str(r['output_shape']):<20}{r['params']:>10,}"
                       f"{r['flops'] / 1e6:>12.3f}")
        out += [line, f"trainable params: {trainable:,}", f"non-trainable params: {frozen:,}",
                f"forward FLOPs: {total['flops'] / 1e6:,.2f} M (input {tuple(input_shape)})",
                f"activation memory: {total['activation_bytes'] / 2 ** 20:,.2f} MiB", line]
        print_fn("\n".join(out))
    return ModelSummary(rows=rows, **total)
