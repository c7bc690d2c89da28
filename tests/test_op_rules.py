"""Rules every op keeps, checked for every row of tests/opinfo.py against torch:

- what backward needs goes through ``save_for_backward`` (no array kept as a plain attribute), so a second
  backward without ``retain_graph`` raises wherever torch's does, instead of doubling gradients;
- NaN in an input reaches the output (and the gradient) where torch's does;
- 0-d and empty inputs work where torch accepts them.
"""
import copy
import zlib

import numpy as np
import pytest
import torch

import minidl
from minidl import backend

from opinfo import A, B, I, S, cases, channels_last, make_inputs
from suite import rule_cases

GRAD_CASES = rule_cases(c for c in cases() if c[1].grad)


def _run(lib, op, args, requires, sample):
    make = (lambda a, r: torch.tensor(a, requires_grad=r)) if lib is torch else \
        (lambda a, r: minidl.tensor(a, requires_grad=r))
    ins = [make(a, r) if isinstance(a, np.ndarray) else a for a, r in zip(args, requires)]
    if op.random:
        minidl.manual_seed(0)
    outs = (op.ref if lib is torch else op.fn)(*ins, **sample.kwargs)
    outs = [o for o in (outs if isinstance(outs, (tuple, list)) else [outs]) if o.requires_grad]
    return ins, outs


def _backward(lib, outs, seed):
    """Backward straight from the op's outputs (no other node in between that would refuse first)."""
    rng = np.random.default_rng(seed)
    grads = [lib.tensor(rng.uniform(-1, 1, size=tuple(o.shape)), dtype=o.dtype) for o in outs]
    lib.autograd.backward(outs, grads)


def _nodes(outs):
    seen, stack = set(), [o.grad_fn for o in outs if o.grad_fn is not None]
    while stack:
        n = stack.pop()
        if n is None or n in seen or not isinstance(n, minidl.autograd.Function):
            continue
        seen.add(n)
        stack.extend(e for e in n._edges if isinstance(e, minidl.autograd.Function))
    return seen


@pytest.mark.parametrize("case_id, op, k, sample", GRAD_CASES, ids=[c[0] for c in GRAD_CASES])
def test_backward_state_is_saved_through_save_for_backward(case_id, op, k, sample):
    args, requires = make_inputs(sample, np.float64, zlib.crc32(case_id.encode()))
    _, outs = _run(minidl, op, args, requires, sample)
    for node in _nodes(outs):
        kept = [name for name, v in vars(node).items()
                if backend.is_device_array(v) or (isinstance(v, (tuple, list))
                                                  and any(backend.is_device_array(a) for a in v))]
        assert not kept, (f"{node.op_name} keeps arrays as plain attributes {kept}: pass them to "
                          "save_for_backward, so that a freed graph is detected")


@pytest.mark.filterwarnings("error::RuntimeWarning")  # NumPy warnings from minidl are bugs or noise
@pytest.mark.parametrize("case_id, op, k, sample", GRAD_CASES, ids=[c[0] for c in GRAD_CASES])
def test_second_backward_without_retain_graph(case_id, op, k, sample):
    """Where torch refuses a second backward, minidl refuses too (unless its nodes saved nothing at all,
    as minidl's adaptive_avg_pool2d needs only shapes); where it runs, it adds the same gradient twice."""
    seed = zlib.crc32(case_id.encode())
    args, requires = make_inputs(sample, np.float64, seed)
    results = {}
    for lib in (torch, minidl):
        ins, outs = _run(lib, op, args, requires, sample)
        if lib is minidl:
            saves_nothing = all(n._saved == () for n in _nodes(outs))
        _backward(lib, outs, seed)
        first = [t.grad.detach().numpy().copy() for t, r in zip(ins, requires) if r]
        try:
            _backward(lib, outs, seed)
        except RuntimeError as e:
            results[lib] = ("raised", str(e))
            continue
        second = [t.grad.detach().numpy() for t, r in zip(ins, requires) if r]
        results[lib] = ("ran", first, second)
    if results[torch][0] == "raised" and not saves_nothing:
        assert results[minidl][0] == "raised", f"{op.name}: a second backward must raise (torch raises)"
        assert "second time" in results[minidl][1]
    elif results[minidl][0] == "ran":
        for a, b in zip(results[minidl][1], results[minidl][2]):
            np.testing.assert_allclose(b, 2 * a, rtol=1e-12, atol=1e-12)


def _with_nan(args, sample):
    """The sample's arrays with a NaN in the first element of the first floating input that requires grad
    (the data; a NaN weight meeting zero padding is NaN in torch's conv and skipped by direct kernels)."""
    out, done = [], False
    for a, spec in zip(args, sample.args):
        if not done and isinstance(a, np.ndarray) and a.dtype.kind == "f" and getattr(spec, "grad", False) \
                and a.size:
            a = a.copy()
            a.reshape(-1)[0] = np.nan
            done = True
        out.append(a)
    return out


def _np(t):
    return t.detach().numpy() if isinstance(t, (torch.Tensor, minidl.Tensor)) else np.asarray(t)


NAN_CASES = [c for c in rule_cases(cases()) if any(getattr(a, "grad", False) for a in c[3].args)]


@pytest.mark.filterwarnings("error::RuntimeWarning")  # NumPy warnings from minidl are bugs or noise
@pytest.mark.parametrize("case_id, op, k, sample", NAN_CASES, ids=[c[0] for c in NAN_CASES])
def test_nan_in_the_input_goes_where_torch_sends_it(case_id, op, k, sample):
    seed = zlib.crc32(f"{case_id}-nan".encode())
    args, requires = make_inputs(sample, np.float64, seed)
    args = _with_nan(args, sample)
    if op.nan_vector:  # torch's vector loop takes 2 vectors (up to 32 float32s with AVX-512) per iteration and
        # leaves the rest to a scalar tail that treats NaN otherwise: a 12-element sample is all tail on an AVX-512
        # machine and mostly vector loop on an AVX2 one. minidl follows the vector loop; 64 elements are all loop.
        args = [np.resize(a.reshape(-1), 64) if isinstance(a, np.ndarray) else a for a in args]
    requires = [r and op.grad for r in requires]
    try:
        _run(torch, op, args, requires, sample)
    except RuntimeError:  # torch refuses NaN here (binary_cross_entropy): minidl must refuse too
        with pytest.raises((ValueError, RuntimeError)):
            _run(minidl, op, args, requires, sample)
        return
    got = {}
    for lib in (torch, minidl):
        ins, outs = _run(lib, op, args, requires, sample) if op.grad else (None, None)
        if not op.grad:
            ins = [lib.tensor(a) if isinstance(a, np.ndarray) else a for a in args]
            outs = op.ref(*ins, **sample.kwargs) if lib is torch else op.fn(*ins, **sample.kwargs)
            outs = list(outs) if isinstance(outs, (tuple, list)) else [outs]
        values = [_np(o) for o in outs]
        grads = []
        if op.grad and outs:
            rng = np.random.default_rng(seed)
            gs = [lib.tensor(rng.uniform(-1, 1, size=tuple(o.shape)), dtype=o.dtype) for o in outs]
            leaves = [t for t, r in zip(ins, requires) if r]
            grads = [_np(g) if g is not None else None
                     for g in lib.autograd.grad(outs, leaves, gs, allow_unused=True)]
        got[lib] = values, grads
    for i, (a, b) in enumerate(zip(got[minidl][0], got[torch][0])):
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-9, equal_nan=True, err_msg=f"output {i}")
    for i, (a, b) in enumerate(zip(got[minidl][1], got[torch][1])):
        if b is None or a is None:
            continue
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-9, equal_nan=True, err_msg=f"gradient of input {i}")


def _reshaped(sample, kind):
    """The sample with every generated array made 0-d ('0d') or given a first dim of 0 ('empty'), or only
    the first array given a first dim of 0 ('batch0': an empty batch)."""
    def shape(s):
        return () if kind == "0d" else ((0,) + s[1:] if s else s)
    args = []
    for i, a in enumerate(sample.args):
        if isinstance(a, (A, I, B)) and (kind != "batch0" or i == 0):
            a = copy.copy(a)
            a.shape = shape(a.shape)
            if isinstance(a, A):
                a.nc = a.nc and bool(a.shape)
        args.append(a)
    return S(*args, **sample.kwargs)


def _outputs(lib, op, args, requires, sample):
    ins = [(torch.tensor(a, requires_grad=r) if lib is torch else minidl.tensor(a, requires_grad=r))
           if isinstance(a, np.ndarray) else a for a, r in zip(args, requires)]
    if op.random:
        minidl.manual_seed(0)
    outs = (op.ref if lib is torch else op.fn)(*ins, **sample.kwargs)
    return ins, list(outs) if isinstance(outs, (tuple, list)) else [outs]


SHAPE_CASES = [(f"{c[0]}-{kind}", c[1], kind, c[3]) for c in rule_cases(cases()) for kind in ("0d", "empty", "batch0")
               if any(isinstance(a, (A, I, B)) and a.shape for a in c[3].args)]


@pytest.mark.filterwarnings("error::RuntimeWarning")  # NumPy warnings from minidl are bugs or noise
@pytest.mark.parametrize("case_id, op, kind, sample", SHAPE_CASES, ids=[c[0] for c in SHAPE_CASES])
def test_zero_dim_and_empty_inputs_work_where_torch_accepts_them(case_id, op, kind, sample):
    """Where torch computes the op on 0-d or empty inputs, minidl gives the same values and gradients;
    where torch refuses, minidl refuses with one of its own errors (naming the op), not a crash inside NumPy."""
    sample = _reshaped(sample, kind)
    seed = zlib.crc32(case_id.encode())
    args, requires = make_inputs(sample, np.float64, seed)
    requires = [r and op.grad for r in requires]
    try:
        t_ins, t_outs = _outputs(torch, op, args, requires, sample)
    except Exception:
        with pytest.raises((ValueError, TypeError, IndexError, RuntimeError, ZeroDivisionError)) as info:
            _outputs(minidl, op, args, requires, sample)
        # Python's classes or minidl's (minidl.errors: a ValueError/TypeError that is torch's RuntimeError too)
        assert type(info.value).__module__ in ("builtins", "minidl.backend.errors") and ":" in str(info.value), \
            repr(info.value)
        return
    m_ins, m_outs = _outputs(minidl, op, args, requires, sample)
    assert len(m_outs) == len(t_outs)
    for i, (a, b) in enumerate(zip(m_outs, t_outs)):
        assert tuple(a.shape) == tuple(b.shape), f"output {i}: shape {tuple(a.shape)}, torch {tuple(b.shape)}"
        np.testing.assert_allclose(_np(a), _np(b), rtol=1e-7, atol=1e-9, equal_nan=True, err_msg=f"output {i}")
    pairs = [(a, b) for a, b in zip(m_outs, t_outs) if isinstance(b, torch.Tensor) and b.requires_grad]
    t_leaves = [t for t, r in zip(t_ins, requires) if r]
    if not pairs or not t_leaves:
        return
    rng = np.random.default_rng(seed)
    gs = [rng.uniform(-1, 1, size=tuple(b.shape)) for _, b in pairs]
    t_g = torch.autograd.grad([b for _, b in pairs], t_leaves, [torch.tensor(g) for g in gs], allow_unused=True)
    m_g = minidl.autograd.grad([a for a, _ in pairs], [t for t, r in zip(m_ins, requires) if r],
                               [minidl.tensor(g) for g in gs], allow_unused=True)
    for i, (a, b) in enumerate(zip(m_g, t_g)):
        if b is None:
            assert a is None or not np.any(_np(a))
            continue
        a = np.zeros(tuple(b.shape)) if a is None else _np(a)
        np.testing.assert_allclose(a, _np(b), rtol=1e-7, atol=1e-9, equal_nan=True, err_msg=f"gradient {i}")


LAYOUT_CASES = [c for c in GRAD_CASES if any(isinstance(a, A) and len(a.shape) == 4 for a in c[3].args)]


@pytest.mark.parametrize("case_id, op, k, sample", LAYOUT_CASES, ids=[c[0] for c in LAYOUT_CASES])
def test_channels_last_inputs_give_the_same_values_and_gradients(case_id, op, k, sample):
    """Every op takes 4-D inputs in either memory layout: the same outputs and input gradients (to the last
    bit or two: NumPy's reductions may sum a strided array in another order)."""
    seed = zlib.crc32(f"{case_id}-layout".encode())
    args, requires = make_inputs(sample, np.float64, seed)
    results = []
    for layout in ("nchw", "nhwc"):
        ins_np = [channels_last(a) if layout == "nhwc" and isinstance(a, np.ndarray) and a.ndim == 4 else a
                  for a in args]
        ins = [minidl.as_tensor(a).requires_grad_(r) if isinstance(a, np.ndarray) else a  # keeps the strides
               for a, r in zip(ins_np, requires)]
        if layout == "nhwc":  # (with one channel, or a 1x1 map, both layouts are the same memory)
            assert all(t.is_contiguous(memory_format=minidl.channels_last) for t in ins
                       if isinstance(t, minidl.Tensor) and t.ndim == 4)
        if op.random:
            minidl.manual_seed(0)
        outs = op.fn(*ins, **sample.kwargs)
        outs = [o for o in (outs if isinstance(outs, (tuple, list)) else [outs]) if o.requires_grad]
        rng = np.random.default_rng(seed)
        grads = minidl.autograd.grad(outs, [t for t, r in zip(ins, requires) if r],
                                     [minidl.tensor(rng.uniform(-1, 1, size=o.shape)) for o in outs], allow_unused=True)
        results.append(([_np(o) for o in outs], [None if g is None else _np(g) for g in grads]))
    for a, b in zip(results[0][0] + results[0][1], results[1][0] + results[1][1]):
        if a is None or b is None:
            assert a is None and b is None
            continue
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)


def test_a_model_in_channels_last_trains_as_in_nchw():
    from minidl import models, optim
    import minidl.nn.functional as F
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 1, 28, 28)), rng.integers(0, 10, 8)
    params = []
    for layout in (None, minidl.channels_last):
        minidl.manual_seed(0)
        model = models.ResidualNet().double()
        if layout is not None:
            model.to(memory_format=layout)
            assert model.conv1.weight.is_contiguous(memory_format=minidl.channels_last)
        opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        xt = minidl.tensor(x)
        xt = xt if layout is None else xt.to(memory_format=layout)
        for _ in range(2):
            opt.zero_grad()
            F.cross_entropy(model(xt), minidl.tensor(y)).backward()
            opt.step()
        params.append([p.detach().numpy().copy() for p in model.parameters()])
    for a, b in zip(*params):
        np.testing.assert_array_equal(a, b)
