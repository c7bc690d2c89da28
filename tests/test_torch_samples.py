"""torch's own test inputs: every float64 sample of torch's ``op_db`` (OpInfo) for the ops minidl has,
and of its ``module_db`` for the modules minidl has, run through minidl and compared with torch:
forward values, and input gradients for a random upstream gradient.

A sample may fail only if it is listed in ``DIFFERENT`` with the reason minidl differs on purpose.
``python tests/test_torch_samples.py`` prints the counts the README reports.
"""
import sys
import zlib
from unittest import mock

import numpy as np
import pytest

torch = pytest.importorskip("torch")
cmi = pytest.importorskip("torch.testing._internal.common_methods_invocations")
cm = pytest.importorskip("torch.testing._internal.common_modules")

import minidl  # noqa: E402
import minidl.nn as nn  # noqa: E402
from minidl.functional import OPS  # noqa: E402

# torch's OpInfo name -> minidl's public op, for the names that differ
OP_NAMES = {"__getitem__": "getitem", "sum_to_size": "sum_to"}
# torch OpInfos whose samples call a different function than minidl's op of that name
SKIP_OPINFOS = {
    "max_pool2d_with_indices_backward",  # a backward kernel, not a user-facing op
    "unfold",  # Tensor.unfold(dim, size, step), another op than nn.functional.unfold (im2col), which runs
}
# torch OpInfo variants for what minidl deliberately does not have (none today)
SKIP_VARIANTS = set()
# torch OpInfos whose op takes its arguments in another order than the public function of that name
ADAPTERS = {
    "where": lambda op: lambda input, condition, other: op(condition, input, other),  # x.where(cond, y)
    "embedding": lambda op: lambda weight, input, **kw: op(input, weight, **kw),  # the table is the sample input
    "einsum": lambda op: lambda operands, equation: op(equation, operands),  # the operands are the sample input
}
# Deliberate differences: (opinfo name with variant, sample index) -> why. Keep this short and true.
DIFFERENT = {("einsum", 8): "'iji->j': a repeated index within one operand (a diagonal) is refused, naming it"}


def _minidl_name(info):
    base = info.name[len("nn.functional."):] if info.name.startswith("nn.functional.") else info.name
    return OP_NAMES.get(base, base)


def op_infos():
    out = []
    for info in cmi.op_db:
        name = _minidl_name(info)
        if (name in OPS and info.name not in SKIP_OPINFOS and _full_name(info) not in SKIP_VARIANTS
                and torch.float64 in info.supported_dtypes("cpu")):
            out.append(info)
    return out


def _full_name(info):
    return info.name + (f".{info.variant_test_name}" if info.variant_test_name else "")


# ---- converting torch values to minidl's -----------------------------------------------------------
_DTYPES = {torch.float64: np.float64, torch.float32: np.float32, torch.float16: np.float16,
           torch.int64: np.int64, torch.int32: np.int32, torch.int16: np.int16, torch.int8: np.int8,
           torch.uint8: np.uint8, torch.bool: np.bool_}


def _minidl_layer(layer):
    """A torch layer given to a constructor (TransformerEncoder's encoder_layer, a norm) as minidl's, built with the
    same configuration; its weights arrive with the state_dict."""
    if isinstance(layer, torch.nn.LayerNorm):
        return nn.LayerNorm(layer.normalized_shape, layer.eps, layer.elementwise_affine, bias=layer.bias is not None)
    attn = layer.self_attn
    return getattr(nn, type(layer).__name__)(
        attn.embed_dim, attn.num_heads, layer.linear1.out_features, layer.dropout.p, to_minidl(layer.activation, []),
        layer.norm1.eps, attn.batch_first, layer.norm_first, bias=layer.linear1.bias is not None)


def to_minidl(v, leaves):
    """A torch value as minidl's: tensors keep their values, strides and requires_grad; ``leaves``
    collects (torch leaf, minidl leaf) pairs whose gradients are compared. A tensor passed twice (a sample may
    give the same tensor as input and target) becomes one minidl tensor, so its gradient sums both uses."""
    if isinstance(v, torch.Tensor):
        for tv, tm in leaves:
            if tv is v:
                return tm
        a = v.detach().numpy()
        if not v.is_contiguous():  # keep a non-contiguous view non-contiguous
            a = np.lib.stride_tricks.as_strided(a, strides=tuple(s * a.itemsize for s in v.stride()))
        t = minidl.tensor(a, requires_grad=v.requires_grad)
        if v.requires_grad:
            leaves.append((v, t))
        return t
    if isinstance(v, torch.dtype):
        return _DTYPES[v]
    if isinstance(v, torch.nn.Module):
        return _minidl_layer(v)
    if callable(v) and getattr(torch.nn.functional, getattr(v, "__name__", ""), None) is v and v.__name__ in OPS:
        return OPS[v.__name__]  # torch.nn.functional.relu -> minidl's (a Transformer layer's activation)
    if isinstance(v, torch.device):
        return str(v)
    if isinstance(v, torch.memory_format):
        return {torch.contiguous_format: getattr(minidl, "contiguous_format", v),
                torch.preserve_format: getattr(minidl, "preserve_format", v),
                torch.channels_last: getattr(minidl, "channels_last", v)}[v]
    if isinstance(v, (list, tuple)) and not isinstance(v, torch.Size):
        return type(v)(to_minidl(x, leaves) for x in v) if not hasattr(v, "_fields") else \
            type(v)(*(to_minidl(x, leaves) for x in v))
    if isinstance(v, dict):
        return {k: to_minidl(x, leaves) for k, x in v.items()}
    if isinstance(v, torch.Size):
        return tuple(v)
    return v


def _outputs(out):
    if isinstance(out, (tuple, list)):
        return [o for x in out for o in _outputs(x)]
    return [out]


def _np(v):
    if isinstance(v, minidl.Tensor):
        return v.detach().numpy()
    if isinstance(v, torch.Tensor):
        return v.detach().numpy()
    return np.asarray(v)


def compare(m_out, t_out, m_leaves, t_leaves, seed, what):
    """Forward values, then gradients of every leaf for one random upstream gradient."""
    m_outs, t_outs = _outputs(m_out), _outputs(t_out)
    assert len(m_outs) == len(t_outs), f"{what}: minidl returned {len(m_outs)} outputs, torch {len(t_outs)}"
    for k, (a, b) in enumerate(zip(m_outs, t_outs)):
        a_np, b_np = _np(a), _np(b)
        assert a_np.shape == b_np.shape, f"{what}: output {k} has shape {a_np.shape}, torch {b_np.shape}"
        if b_np.dtype.kind == "f":
            assert a_np.dtype == b_np.dtype, f"{what}: output {k} dtype {a_np.dtype}, torch {b_np.dtype}"
            np.testing.assert_allclose(a_np, b_np, rtol=1e-7, atol=1e-9, equal_nan=True,
                                       err_msg=f"{what}: forward output {k}")
        else:
            np.testing.assert_array_equal(a_np, b_np, err_msg=f"{what}: forward output {k}")
    pairs = [(a, b) for a, b in zip(m_outs, t_outs)
             if isinstance(b, torch.Tensor) and b.requires_grad and b.dtype.is_floating_point]
    if not pairs or not t_leaves:
        return
    rng = np.random.default_rng(seed)
    gs = [rng.uniform(-1, 1, size=tuple(b.shape)) for _, b in pairs]
    t_grads = torch.autograd.grad([b for _, b in pairs], t_leaves,
                                  [torch.tensor(g, dtype=b.dtype) for g, (_, b) in zip(gs, pairs)],
                                  allow_unused=True)
    for a, _ in pairs:
        assert isinstance(a, minidl.Tensor) and a.requires_grad, f"{what}: minidl output needs no grad"
    m_grads = minidl.autograd.grad([a for a, _ in pairs], m_leaves,
                                   [minidl.tensor(g, dtype=a.dtype) for g, (a, _) in zip(gs, pairs)],
                                   allow_unused=True)
    for k, (gm, gt) in enumerate(zip(m_grads, t_grads)):
        if gt is None:
            assert gm is None or not np.any(_np(gm)), f"{what}: input {k} has a gradient in minidl, none in torch"
            continue
        gm = np.zeros(gt.shape) if gm is None else _np(gm)
        np.testing.assert_allclose(gm, gt.numpy(), rtol=1e-7, atol=1e-9, equal_nan=True,
                                   err_msg=f"{what}: gradient of input {k}")


def run_op_sample(info, sample, seed):
    leaves = []
    m_args = [to_minidl(sample.input, leaves)] + [to_minidl(a, leaves) for a in sample.args]
    m_kwargs = to_minidl(sample.kwargs, leaves)
    t_out = info.op(sample.input, *sample.args, **sample.kwargs)
    name = _minidl_name(info)
    op = ADAPTERS[name](OPS[name]) if name in ADAPTERS else OPS[name]
    m_out = op(*m_args, **m_kwargs)
    if name in RANDOM:
        return RANDOM[name](m_out, m_args, m_kwargs, seed)
    compare(m_out, t_out, [m for _, m in leaves], [t for t, _ in leaves], seed, _full_name(info))


def check_dropout(out, args, kwargs, seed):
    """dropout draws its own mask, so torch's numbers cannot match: every output is 0 or x / (1 - p), and
    the gradient is the upstream gradient through the same mask (scaled the same)."""
    x = args[0]
    p = kwargs.get("p", args[1] if len(args) > 1 else 0.5)
    training = kwargs.get("training", args[2] if len(args) > 2 else True)
    xv, yv = _np(x), _np(out)
    assert yv.shape == xv.shape and yv.dtype == xv.dtype
    if not training or p == 0:
        np.testing.assert_array_equal(yv, xv)
        kept = np.ones(xv.shape, dtype=bool)
    elif p == 1:
        np.testing.assert_array_equal(yv, np.zeros_like(xv))
        kept = np.zeros(xv.shape, dtype=bool)
    else:
        kept = yv != 0
        np.testing.assert_allclose(yv[kept], xv[kept] / (1 - p), rtol=1e-12)
    if x.requires_grad:
        g = np.random.default_rng(seed).uniform(-1, 1, size=xv.shape)
        gx, = minidl.autograd.grad([out], [x], [minidl.tensor(g, dtype=out.dtype)])
        scale = 1.0 if not training or p == 0 else (0.0 if p == 1 else 1 / (1 - p))
        np.testing.assert_allclose(_np(gx), np.where(kept, g * scale, 0.0), rtol=1e-12)


def check_dropout2d(out, args, kwargs, seed):
    """As dropout, and each (sample, channel) plane is kept or dropped whole."""
    check_dropout(out, args, kwargs, seed)
    x, y = _np(args[0]), _np(out)
    planes = (y != 0).reshape(*x.shape[:x.ndim - 2], -1) | (x == 0).reshape(*x.shape[:x.ndim - 2], -1)
    assert (planes.all(-1) | ~(y != 0).reshape(planes.shape).any(-1)).all(), "a channel was partly dropped"


def _reseeded(name, args, kwargs, seed, reference):
    """A random op run again after manual_seed(0), compared (values and gradients) with ``reference`` on the same
    inputs as torch tensors, which draws its masks from minidl's generator after the same seed (tests/opinfo.py)."""
    leaves = []

    def to_torch(v):
        if isinstance(v, minidl.Tensor):
            for m, t in leaves:
                if m is v:
                    return t
            t = torch.tensor(_np(v), requires_grad=v.requires_grad)
            leaves.append((v, t))
            return t
        return type(v)(map(to_torch, v)) if isinstance(v, (list, tuple)) else v
    t_args, t_kwargs = to_torch(args), {k: to_torch(v) for k, v in kwargs.items()}
    minidl.manual_seed(0)
    m_out = OPS[name](*args, **kwargs)
    t_out = reference(*t_args, **t_kwargs)
    leaves = [(m, t) for m, t in leaves if m.requires_grad]
    compare(m_out, t_out, [m for m, _ in leaves], [t for _, t in leaves], seed, name)


def check_attention(out, args, kwargs, seed):
    """scaled_dot_product_attention against torch's math attention given minidl's dropout mask."""
    import opinfo
    _reseeded("scaled_dot_product_attention", args, kwargs, seed, opinfo._sdpa_ref)


def check_multi_head_attention(out, args, kwargs, seed):
    """multi_head_attention_forward against torch's, whose dropout (of the weights, or inside attention) is given
    the mask minidl draws."""
    import opinfo
    with mock.patch.object(torch.nn.functional, "dropout", opinfo._dropout_ref), \
            mock.patch.object(torch.nn.functional, "scaled_dot_product_attention", opinfo._sdpa_ref):
        _reseeded("multi_head_attention_forward", args, kwargs, seed, torch.nn.functional.multi_head_attention_forward)


RANDOM = {"dropout": check_dropout, "dropout2d": check_dropout2d,  # random ops: checked for structure
          "scaled_dot_product_attention": check_attention, "multi_head_attention_forward": check_multi_head_attention}


def op_samples(info):
    return list(info.sample_inputs("cpu", torch.float64, requires_grad=info.supports_autograd))


OP_CASES = [(_full_name(i), i) for i in op_infos()]


def failures(name, info, samples, run, describe, skip_different=True):
    """Run every sample of one OpInfo/ModuleInfo: (how many ran, the failures' descriptions)."""
    ran, out = 0, []
    for k, sample in enumerate(samples(info)):
        if skip_different and (name, k) in DIFFERENT:
            continue
        ran += 1
        try:
            run(info, sample, zlib.crc32(f"{name}-{k}".encode()))
        except Exception as e:
            out.append(f"sample {k} ({describe(sample)}): {type(e).__name__}: {str(e)[:300]}")
    return ran, out


def _describe_op(sample):
    return sample.summary() if hasattr(sample, "summary") else sample


@pytest.mark.parametrize("name, info", OP_CASES, ids=[c[0] for c in OP_CASES])
def test_torch_op_samples(name, info):
    _, found = failures(name, info, op_samples, run_op_sample, _describe_op)
    assert not found, f"{len(found)} failing samples:\n" + "\n".join(found)


# ---- modules ------------------------------------------------------------------------------------
def module_infos():
    return [m for m in cm.module_db if hasattr(nn, m.module_cls.__name__)]


def run_module_sample(info, mi, seed):
    torch.manual_seed(0)
    args, kwargs = mi.constructor_input.args, mi.constructor_input.kwargs
    t_mod = info.module_cls(*args, **kwargs).to(torch.float64)
    leaves = []
    m_mod = getattr(nn, info.module_cls.__name__)(*to_minidl(args, []), **to_minidl(kwargs, []))
    m_mod = m_mod.to(np.float64)
    m_mod.load_state_dict({k: v.detach().numpy() for k, v in t_mod.state_dict().items()})
    t_mod.train(mi.training if hasattr(mi, "training") else True)
    m_mod.train(t_mod.training)
    fi = mi.forward_input
    t_in_args, t_in_kwargs = fi.args, fi.kwargs
    m_in_args, m_in_kwargs = to_minidl(t_in_args, leaves), to_minidl(t_in_kwargs, leaves)
    t_params = [p for _, p in t_mod.named_parameters()]
    m_named = dict(m_mod.named_parameters())
    t_out = t_mod(*t_in_args, **t_in_kwargs)
    m_out = m_mod(*m_in_args, **m_in_kwargs)
    t_leaves = [t for t, _ in leaves] + t_params
    m_leaves = [m for _, m in leaves] + [m_named[n] for n, _ in t_mod.named_parameters()]
    compare(m_out, t_out, m_leaves, t_leaves, seed, info.module_cls.__name__)
    m_buffers = dict(m_mod.named_buffers())
    for n, tb in t_mod.named_buffers():
        mb = m_buffers[n]
        np.testing.assert_allclose(_np(mb), tb.numpy(), rtol=1e-7, atol=1e-9, err_msg=f"buffer {n}")


MODULE_CASES = [(m.module_cls.__name__, m) for m in module_infos()]


def module_samples(info):
    return list(info.module_inputs_func(info, device="cpu", dtype=torch.float64, requires_grad=True, training=True))


def _describe_module(mi):
    return (f"{mi.constructor_input.args}, {mi.constructor_input.kwargs}; "
            f"{mi.forward_input.args[0].shape if mi.forward_input.args else ''}")


@pytest.mark.parametrize("name, info", MODULE_CASES, ids=[c[0] for c in MODULE_CASES])
def test_torch_module_samples(name, info):
    _, found = failures(name, info, module_samples, run_module_sample, _describe_module)
    assert not found, f"{len(found)} failing samples:\n" + "\n".join(found)


def report(verbose=False):
    """(passed, total) for ops and for modules, deliberate differences counted as failures; with ``verbose``
    print every failure."""
    counts = {}
    for kind, cases, samples, run, describe in (("ops", OP_CASES, op_samples, run_op_sample, _describe_op),
                                                ("modules", MODULE_CASES, module_samples, run_module_sample,
                                                 _describe_module)):
        passed = total = 0
        for name, info in cases:
            n, failed = failures(name, info, samples, run, describe, skip_different=False)
            total, passed = total + n, passed + n - len(failed)
            if verbose:
                for f in failed:
                    print(f"FAIL {kind} {name} {f[:250]}")
        counts[kind] = (passed, total)
    return counts


if __name__ == "__main__":
    for kind, (p, t) in report(verbose="-v" in sys.argv).items():
        print(f"{kind}: {p}/{t} samples pass ({100 * p / t:.1f}%)")
