"""The autograd engine: accumulation, un-broadcasting, graph freeing, hooks, grad(), deep graphs and
double backward (checked against torch's Hessian-vector products for every twice-differentiable op)."""
import zlib

import numpy as np
import pytest
import torch

import minidl
import minidl.nn.functional as F
from minidl.testing import gradcheck

from opinfo import cases, make_inputs
from suite import rule_cases



def test_chain_of_10000_ops_backpropagates_without_recursion():
    x = minidl.tensor(1.0, requires_grad=True)
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    y.backward()
    assert x.grad.item() == pytest.approx(1.0001 ** 10_000, rel=1e-3)


def test_gradients_accumulate_across_backward_calls_like_torch():
    x = minidl.tensor([1.0, 2.0, 3.0], requires_grad=True)
    (x * x).sum().backward()
    (3 * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.array([1, 2, 3]) + 3)


def test_shared_leaf_gets_the_sum_of_both_paths():
    x = minidl.tensor(2.0, requires_grad=True)
    y = x * x + x.exp() + x
    y.backward()
    assert x.grad.item() == pytest.approx(2 * 2 + np.exp(2) + 1)


def test_broadcast_gradients_are_summed_back_to_the_input_shape():
    a = minidl.randn(4, 1, 3, requires_grad=True)
    b = minidl.randn(5, 1, requires_grad=True)
    (a * b).sum().backward()
    assert a.grad.shape == (4, 1, 3) and b.grad.shape == (5, 1)
    np.testing.assert_allclose(a.grad.numpy(), np.broadcast_to(b.detach().numpy().sum(), (4, 1, 3)), rtol=1e-5)


def test_graph_is_freed_after_backward_unless_retained():
    x = minidl.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [4.0, 8.0])
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()


def test_backward_needs_a_gradient_for_non_scalars_and_a_graph():
    x = minidl.randn(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="scalar outputs"):
        (x * 2).backward()
    with pytest.raises(RuntimeError, match="does not require grad"):
        minidl.randn(3).sum().backward()
    with pytest.raises(RuntimeError, match="shape"):
        (x * 2).backward(minidl.ones(4))


def test_grads_of_two_leaves_never_share_memory():
    a = minidl.randn(2, 3, requires_grad=True)
    b = minidl.randn(2, 3, requires_grad=True)
    (a.reshape(6) + b.reshape(6)).sum().backward()
    a.grad.zero_()
    np.testing.assert_array_equal(b.grad.numpy(), np.ones((2, 3)))


def test_no_grad_and_enable_grad():
    x = minidl.randn(3, requires_grad=True)
    with minidl.no_grad():
        y = x * 2
        with minidl.enable_grad():
            z = x * 2
    assert not y.requires_grad and y.grad_fn is None
    assert z.requires_grad

    @minidl.no_grad()
    def f(t):
        return t * 3
    assert not f(x).requires_grad
    assert minidl.is_grad_enabled()


def test_detach_and_requires_grad():
    x = minidl.randn(3, requires_grad=True)
    d = (x * 2).detach()
    assert not d.requires_grad and d.is_leaf
    with pytest.raises(RuntimeError, match="floating"):
        minidl.tensor([1, 2]).requires_grad_()
    with pytest.raises(RuntimeError, match="requires grad"):
        x.numpy()


def test_hooks_see_and_replace_gradients():
    x = minidl.tensor([1.0, 2.0], requires_grad=True)
    y = x * 3
    seen = []
    y.register_hook(lambda g: seen.append(g.numpy().copy()))
    h = x.register_hook(lambda g: g * 10)
    y.sum().backward()
    np.testing.assert_allclose(seen[0], [1.0, 1.0])
    np.testing.assert_allclose(x.grad.numpy(), [30.0, 30.0])
    h.remove()
    x.grad = None
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 3.0])


def test_retain_grad_keeps_a_non_leaf_gradient():
    x = minidl.randn(3, requires_grad=True)
    y = x * 2
    y.retain_grad()
    (y * y).sum().backward()
    np.testing.assert_allclose(y.grad.numpy(), 2 * y.detach().numpy(), rtol=1e-6)


def test_autograd_grad_leaves_dot_grad_untouched_and_reaches_non_leaves():
    x = minidl.randn(3, requires_grad=True)
    h = x * 2
    y = (h * h).sum()
    gx, gh = minidl.autograd.grad(y, [x, h])
    assert x.grad is None
    np.testing.assert_allclose(gh.numpy(), 2 * h.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(gx.numpy(), 8 * x.detach().numpy(), rtol=1e-6)
    z = minidl.randn(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="not used"):
        minidl.autograd.grad((x * 2).sum(), [x, z])
    assert minidl.autograd.grad((x * 2).sum(), [x, z], allow_unused=True)[1] is None


def test_second_derivative_of_a_scalar_function():
    x = minidl.tensor(1.5, dtype=minidl.float64, requires_grad=True)
    y = x ** 3 * x.exp()
    g, = minidl.autograd.grad(y, x, create_graph=True)
    g2, = minidl.autograd.grad(g, x)
    v = 1.5
    assert g2.item() == pytest.approx(np.exp(v) * (6 * v + 6 * v ** 2 + v ** 3))


def test_double_backward_through_a_raw_kernel_names_the_op():
    x = minidl.randn(1, 1, 5, 5, dtype=minidl.float64, requires_grad=True)
    w = minidl.randn(2, 1, 3, 3, dtype=minidl.float64, requires_grad=True)
    y = F.conv2d(x, w).pow(2).sum()
    gx, = minidl.autograd.grad(y, x, create_graph=True)
    with pytest.raises(RuntimeError, match="conv2d.*not differentiable twice"):
        gx.sum().backward()


def test_gradcheck_reports_the_input_and_the_element():
    class Wrong(minidl.autograd.Function):
        def forward(self, xp, x):
            return x * x

        def backward(self, g):
            return g * 3.0  # wrong on purpose
    x = minidl.randn(2, 3, dtype=minidl.float64, requires_grad=True)
    with pytest.raises(AssertionError, match=r"input 0 .*element"):
        gradcheck(Wrong.apply, (x,))
    with pytest.raises(AssertionError, match="directional"):
        gradcheck(Wrong.apply, (x,), mode="directional")
    assert gradcheck(lambda t: t * t, (x,), mode="directional")


# ---- double backward, every twice-differentiable row against torch -------------------------------------
TWICE = rule_cases(c for c in cases() if c[1].grad)


@pytest.mark.filterwarnings("error::RuntimeWarning")  # NumPy warnings from minidl are bugs or noise
@pytest.mark.parametrize("case_id, op, k, sample", TWICE, ids=[c[0] for c in TWICE])
def test_double_backward_matches_torch(case_id, op, k, sample):
    seed = zlib.crc32(f"{case_id}-hvp".encode())
    args, requires = make_inputs(sample, np.float64, seed)
    rng = np.random.default_rng(seed)

    def run(lib, fn, make):
        ins = [make(a, r) if isinstance(a, np.ndarray) else a for a, r in zip(args, requires)]
        if op.random:
            minidl.manual_seed(0)
        outs = fn(*ins, **sample.kwargs)
        outs = [o for o in (outs if isinstance(outs, (tuple, list)) else [outs]) if o.requires_grad]
        leaves = [t for t, r in zip(ins, requires) if r]
        return ins, outs, leaves

    t_ins, t_outs, t_leaves = run(torch, op.ref, lambda a, r: torch.tensor(a, requires_grad=r))
    ups = [rng.uniform(-1, 1, size=tuple(o.shape)) for o in t_outs]
    vs = [rng.uniform(-1, 1, size=tuple(t.shape)) for t in t_leaves]
    t_g = torch.autograd.grad(t_outs, t_leaves, [torch.tensor(u) for u in ups], create_graph=True, allow_unused=True)
    t_s = sum((g * torch.tensor(v)).sum() for g, v in zip(t_g, vs) if g is not None)

    m_ins, m_outs, m_leaves = run(minidl, op.fn, lambda a, r: minidl.tensor(a, requires_grad=r))
    m_g = minidl.autograd.grad(m_outs, m_leaves, [minidl.tensor(u) for u in ups], create_graph=True,
                               allow_unused=True)
    m_s = sum((g * minidl.tensor(v)).sum() for g, v in zip(m_g, vs) if g is not None)
    t_h = [None] * len(t_leaves)
    torch_refuses = False
    if isinstance(t_s, torch.Tensor) and t_s.requires_grad:
        try:
            t_h = torch.autograd.grad(t_s, t_leaves, allow_unused=True)
        except RuntimeError as exc:  # torch has no second derivative here (hardsigmoid): minidl must refuse too
            if "not implemented" not in str(exc):
                raise
            torch_refuses = True
    if torch_refuses:
        assert not op.twice, f"{op.name}: torch refuses the second derivative; minidl's Function must declare it"
        with pytest.raises(RuntimeError, match=f"{op.via or op.name}.*not differentiable twice"):
            minidl.autograd.grad(m_s, m_leaves, allow_unused=True)
        return
    if not (isinstance(m_s, minidl.Tensor) and m_s.requires_grad):
        # minidl knows the gradient is linear in the upstream gradient alone (a constant mask or index):
        # torch must then find a zero second derivative
        for b in t_h:
            assert b is None or not np.any(b.numpy(force=True))
        return
    if not op.twice:
        with pytest.raises(RuntimeError, match=f"{op.via or op.name}.*not differentiable twice"):
            minidl.autograd.grad(m_s, m_leaves, allow_unused=True)
        return
    m_h = minidl.autograd.grad(m_s, m_leaves, allow_unused=True)
    for i, (a, b) in enumerate(zip(m_h, t_h)):
        b = np.zeros(vs[i].shape) if b is None else b.numpy(force=True)
        a = np.zeros(vs[i].shape) if a is None else a.detach().numpy()
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-9, err_msg=f"second derivative of input {i}")


def test_a_gradient_of_the_wrong_shape_for_a_leaf_is_refused_naming_the_op():
    """A Function's backward that returns a gradient of another shape than its leaf input's is an error (the leaf's
    node checks what it receives), not a .grad of the wrong shape."""
    class WrongShape(minidl.autograd.Function):  # no name: a test's Function stays out of the op registry
        def forward(self, xp, x):
            return x * 2

        def backward(self, g):
            return g.sum()  # a 0-d gradient for a (3,) input

    x = minidl.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"WrongShape: backward returned a gradient of shape \(\) for an input of "
                                           r"shape \(3,\)"):
        WrongShape.apply(x).sum().backward()
    assert x.grad is None
