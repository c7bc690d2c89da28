"""layer_norm and group_norm as one Function each (issue 32: layer_norm was nine ops, 6x torch's time): values and
gradients against torch with and without weight and bias, over one or more dims, on non-contiguous, large-mean and
half-precision inputs; float64 gradcheck; second derivatives (a backward that builds a graph computes in minidl ops)
against torch's, the upstream gradient's included."""
import numpy as np
import pytest
import torch

import minidl
import minidl.nn.functional as F
from minidl.testing import assert_matches_torch, gradcheck

AFFINE = [(True, True), (True, False), (False, True), (False, False)]


def _ones_for(w, b):
    """torch's backward fails (an undefined tensor) for a bias without a weight: give it a weight of ones."""
    return torch.ones(b.shape, dtype=b.dtype) if w is None and b is not None else w


def _inputs(shape, wshape, affine, dtype, seed=0, shift=0.0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 2 + shift).astype(dtype)
    w = rng.uniform(0.5, 1.5, wshape).astype(dtype) if affine[0] else None
    b = rng.standard_normal(wshape).astype(dtype) if affine[1] else None
    return x, w, b


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("affine", AFFINE)
@pytest.mark.parametrize("shape, ns", [((4, 5, 6), (6,)), ((4, 5, 6), (5, 6)), ((4, 5, 6), (4, 5, 6)), ((7,), (7,)),
                                       ((64, 6, 48), (48,))])
def test_layer_norm_values_and_gradients_equal_torch(shape, ns, affine, dtype):
    x, w, b = _inputs(shape, ns, affine, dtype)
    assert_matches_torch(lambda x, w, b: F.layer_norm(x, ns, w, b),
                         lambda x, w, b: torch.nn.functional.layer_norm(x, ns, w, b), [x, w, b])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("affine", AFFINE)
@pytest.mark.parametrize("shape, groups", [((2, 6, 3, 3), 3), ((3, 4, 5), 1), ((2, 4, 2, 3), 4), ((3, 6), 2),
                                           ((2, 8, 2, 2, 3), 2)])
def test_group_norm_values_and_gradients_equal_torch(shape, groups, affine, dtype):
    x, w, b = _inputs(shape, shape[1], affine, dtype)
    assert_matches_torch(lambda x, w, b: F.group_norm(x, groups, w, b),
                         lambda x, w, b: torch.nn.functional.group_norm(x, groups, _ones_for(w, b), b), [x, w, b])


@pytest.mark.parametrize("name, shape, wshape, fn, ref", [
    ("layer_norm", (64, 6, 48), 48, lambda x, w, b: F.layer_norm(x, 48, w, b),
     lambda x, w, b: torch.nn.functional.layer_norm(x, (48,), w, b)),
    ("group_norm", (32, 16, 8, 8), 16, lambda x, w, b: F.group_norm(x, 4, w, b),
     lambda x, w, b: torch.nn.functional.group_norm(x, 4, w, b))], ids=["layer_norm", "group_norm"])
def test_float32_benchmark_shapes_are_as_accurate_as_torch(name, shape, wshape, fn, ref):
    """The weight's gradient sums 2,048 products: float32's rounding there exceeds the op table's atol (1e-5) in
    torch's result as in minidl's, so both are held to float64's answer: minidl's error at most torch's, or 2 ulp."""
    x, w, b = _inputs(shape, wshape, (True, True), np.float32)
    gy = np.random.default_rng(5).uniform(-2, 2, shape).astype(np.float32)

    def run(lib, f, dt):
        ins = [lib.tensor(a.astype(dt), requires_grad=True) for a in (x, w, b)]
        y = f(*ins)
        return [y.detach().numpy()] + [g.numpy() for g in lib.autograd.grad(y, ins, lib.tensor(gy.astype(dt)))]

    exact = run(torch, ref, np.float64)
    for got, theirs, want in zip(run(minidl, fn, np.float32), run(torch, ref, np.float32), exact):
        ours_err, torch_err = np.abs(got - want).max(), np.abs(theirs - want).max()
        assert ours_err <= max(1.5 * torch_err, 2 * np.spacing(np.float32(np.abs(want).max()))), (ours_err, torch_err)


def test_non_contiguous_inputs_and_upstream_gradients():
    x, w, b = _inputs((5, 6, 4), (6,), (True, True), np.float64)
    xt = np.swapaxes(x, 1, 2)  # (5, 4, 6), not contiguous
    assert_matches_torch(lambda x, w, b: F.layer_norm(x, 6, w, b).transpose(0, 2),
                         lambda x, w, b: torch.nn.functional.layer_norm(x, (6,), w, b).transpose(0, 2), [xt, w, b])
    x4 = np.random.default_rng(1).standard_normal((2, 3, 4, 6)).transpose(0, 3, 1, 2)  # channels last
    assert_matches_torch(lambda x, w, b: F.group_norm(x, 3, w, b)[:, :, ::2],
                         lambda x, w, b: torch.nn.functional.group_norm(x, 3, w, b)[:, :, ::2], [x4, w, b])


def test_a_large_mean_does_not_cancel_in_float32():
    # two passes (mean, then the squared deviations): E[x^2] - E[x]^2 would lose every digit at a mean of 1e4
    for f, tf in ((lambda x: F.layer_norm(x, 48), lambda x: torch.nn.functional.layer_norm(x, (48,))),
                  (lambda x: F.group_norm(x, 2), lambda x: torch.nn.functional.group_norm(x, 2))):
        x = _inputs((8, 4, 48), None, (False, False), np.float32, shift=1e4)[0]
        got, want = f(minidl.tensor(x)).numpy(), tf(torch.tensor(x)).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)  # the input itself holds 4 digits after the point
        assert abs(got.std() - 1) < 1e-3


@pytest.mark.parametrize("dtype", [np.float16, "bfloat16"])
def test_half_precision_computes_in_float32_as_torch(dtype):
    if dtype == "bfloat16":
        ml_dtypes = pytest.importorskip("ml_dtypes")
        dtype = ml_dtypes.bfloat16
    x, w, b = _inputs((4, 6, 10), (10,), (True, True), np.float32)
    tdt = torch.float16 if dtype == np.float16 else torch.bfloat16
    mx = [minidl.tensor(a).to(minidl.float16 if tdt == torch.float16 else minidl.bfloat16) for a in (x, w, b)]
    tx = [torch.tensor(a).to(tdt) for a in (x, w, b)]
    for m_out, t_out in ((F.layer_norm(mx[0], 10, mx[1], mx[2]), torch.nn.functional.layer_norm(tx[0], (10,), *tx[1:])),
                         (F.group_norm(mx[0], 3), torch.nn.functional.group_norm(tx[0], 3))):
        got = np.asarray(m_out.float().numpy())
        want = t_out.float().numpy()
        ulp = np.spacing(np.abs(want).astype(np.float16)) if tdt == torch.float16 else np.abs(want) / 128 + 1e-30
        assert (np.abs(got - want) <= ulp).all()  # rounded once from float32: at most one unit apart


@pytest.mark.parametrize("affine", AFFINE)
def test_gradcheck_float64(affine):
    x, w, b = _inputs((3, 4, 5), (4, 5), affine, np.float64)
    ins = [minidl.tensor(a, requires_grad=True) if a is not None else None for a in (x, w, b)]
    assert gradcheck(lambda x, w, b: F.layer_norm(x, (4, 5), w, b), ins)
    x, w, b = _inputs((2, 6, 3, 2), 6, affine, np.float64)
    ins = [minidl.tensor(a, requires_grad=True) if a is not None else None for a in (x, w, b)]
    assert gradcheck(lambda x, w, b: F.group_norm(x, 3, w, b), ins)


CASES = [("layer_norm", (3, 4, 5), (5,), lambda x, w, b: F.layer_norm(x, (5,), w, b),
          lambda x, w, b: torch.nn.functional.layer_norm(x, (5,), _ones_for(w, b), b)),
         ("layer_norm 2 dims", (3, 4, 5), (4, 5), lambda x, w, b: F.layer_norm(x, (4, 5), w, b),
          lambda x, w, b: torch.nn.functional.layer_norm(x, (4, 5), _ones_for(w, b), b)),
         ("group_norm", (2, 6, 3, 2), (6,), lambda x, w, b: F.group_norm(x, 3, w, b),
          lambda x, w, b: torch.nn.functional.group_norm(x, 3, _ones_for(w, b), b))]


@pytest.mark.parametrize("affine", AFFINE)
@pytest.mark.parametrize("name, shape, wshape, fn, ref", CASES, ids=[c[0] for c in CASES])
def test_second_derivatives_equal_torch(name, shape, wshape, fn, ref, affine):
    """d/d(x, w, b, gy) of <v, the gradients of <gy, y>>: every input of the graph-building backward."""
    x, w, b = _inputs(shape, wshape, affine, np.float64)
    rng = np.random.default_rng(3)
    gy = rng.standard_normal(shape)

    def run(lib, fn):
        ins = [lib.tensor(a, requires_grad=True) for a in (x, w, b) if a is not None]
        it = iter(ins)
        args = [next(it) if a is not None else None for a in (x, w, b)]
        g_up = lib.tensor(gy, requires_grad=True)
        grads = lib.autograd.grad(fn(*args), ins, g_up, create_graph=True)
        vs = [lib.tensor(np.random.default_rng(4 + i).standard_normal(t.shape)) for i, t in enumerate(ins)]
        s = sum((g * v).sum() for g, v in zip(grads, vs))
        return [g.detach().numpy() for g in grads], [
            (np.zeros(t.shape) if h is None else h.detach().numpy())
            for t, h in zip(ins + [g_up], lib.autograd.grad(s, ins + [g_up], allow_unused=True))]

    m_g, m_h = run(minidl, fn)
    t_g, t_h = run(torch, ref)
    for a, b_ in zip(m_g + m_h, t_g + t_h):
        np.testing.assert_allclose(a, b_, rtol=1e-7, atol=1e-9)


def test_grad_fn_names_are_torchs():
    x = minidl.randn(2, 4, 3, requires_grad=True)
    tx = torch.randn(2, 4, 3, requires_grad=True)
    assert repr(F.layer_norm(x, 3).grad_fn) == f"<{type(torch.nn.functional.layer_norm(tx, (3,)).grad_fn).__name__}>"
    assert repr(F.group_norm(x, 2).grad_fn) == f"<{type(torch.nn.functional.group_norm(tx, 2).grad_fn).__name__}>"


def test_a_second_backward_without_retain_graph_is_refused():
    x = minidl.randn(2, 4, 3, requires_grad=True)
    y = F.layer_norm(x, 3).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="layer_norm: trying to backward through the graph a second time"):
        y.backward()
