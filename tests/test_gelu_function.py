"""gelu as one Function (issue 32: it was five ops, ten graph nodes forward and backward): values and gradients against
torch in both approximations, on odd, non-contiguous, 0-d and empty inputs; float32 accuracy against float64; float64
gradcheck and gradgradcheck; second derivatives (a backward that builds a graph computes in minidl ops) against
torch's, the upstream gradient's included; infinities, NaN and large |x|; float16 and bfloat16 computed in float32
and rounded once, as torch's; the vectorised float32 erf kernel over float32's range; ONNX export in onnxruntime."""
import math

import numpy as np
import pytest
import torch

import minidl
import minidl.nn.functional as F
from minidl.testing import assert_matches_torch, gradcheck

MODES = ["none", "tanh"]


def _x(shape, dtype, seed=0, scale=2.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("approximate", MODES)
@pytest.mark.parametrize("shape", [(3, 4), (7,), (64, 6, 192), (2, 1, 5, 3)])
def test_values_and_gradients_equal_torch(shape, approximate, dtype):
    assert_matches_torch(lambda x: F.gelu(x, approximate=approximate),
                         lambda x: torch.nn.functional.gelu(x, approximate=approximate), [_x(shape, dtype)])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("approximate", MODES)
def test_non_contiguous_0d_and_empty_inputs(approximate, dtype):
    def f(x):
        return F.gelu(x, approximate=approximate)

    def tf(x):
        return torch.nn.functional.gelu(x, approximate=approximate)
    assert_matches_torch(f, tf, [_x((5, 6, 4), dtype).transpose(2, 0, 1)[:, ::2]])
    assert_matches_torch(f, tf, [np.array(-0.7, dtype=dtype)])
    assert_matches_torch(f, tf, [np.zeros((0, 3), dtype=dtype)])


@pytest.mark.parametrize("approximate", MODES)
def test_float32_is_as_accurate_as_torch(approximate):
    """Both libraries' float32 against the float64 answer: minidl's error at most torch's, or 2 ulp plus what the
    formulas lose in any float32 evaluation: 1 + erf, 1 + t and 1 - t^2 round at 2^-24 near x's tails, which
    x (and, for the tanh form's gradient, its factor beta (1 + 3 kappa x^2)) and the upstream gradient scale."""
    x = np.concatenate([np.linspace(-9, 9, 20001), _x((73728,), np.float64, scale=3)]).astype(np.float32)
    gy = np.random.default_rng(5).uniform(-2, 2, x.shape).astype(np.float32)

    def run(lib, dt):
        t = lib.tensor(x.astype(dt), requires_grad=True)
        y = lib.nn.functional.gelu(t, approximate=approximate)
        g, = lib.autograd.grad(y, [t], lib.tensor(gy.astype(dt)))
        return y.detach().numpy().astype(np.float64), g.numpy().astype(np.float64)

    exact = run(torch, np.float64)
    ax = np.abs(x).astype(np.float64)
    factor = 1 + 3 * 0.044715 * ax * ax if approximate == "tanh" else 1
    lost = [ax * 2.0 ** -22, ax * factor * 2.0 ** -22 * np.abs(gy)]
    for got, theirs, want, cancel in zip(run(minidl, np.float32), run(torch, np.float32), exact, lost):
        ours_err, torch_err = np.abs(got - want), np.abs(theirs - want)
        two_ulp = 2 * np.spacing(np.abs(want).astype(np.float32)).astype(np.float64)
        assert (ours_err <= np.maximum(torch_err, two_ulp + cancel)).all(), (ours_err.max(), torch_err.max())
        assert ours_err.max() <= 1.5 * torch_err.max()


@pytest.mark.parametrize("approximate", MODES)
def test_gradcheck_and_gradgradcheck_float64(approximate):
    x = minidl.tensor(_x((3, 5), np.float64, seed=1), requires_grad=True)
    assert gradcheck(lambda x: F.gelu(x, approximate=approximate), (x,))
    gy = minidl.tensor(_x((3, 5), np.float64, seed=2), requires_grad=True)

    def first_grad(x, gy):
        with minidl.enable_grad():  # (gradcheck's finite differences run without grad)
            return minidl.autograd.grad(F.gelu(x, approximate=approximate), [x], gy, create_graph=True)[0]
    assert gradcheck(first_grad, (x, gy))


@pytest.mark.parametrize("approximate", MODES)
def test_second_derivatives_equal_torch(approximate):
    """d/d(x, gy) of <v, the gradient of <gy, y>>: every input of the graph-building backward."""
    x, gy, v = (_x((4, 5), np.float64, seed=s) for s in (0, 3, 4))

    def run(lib):
        t = lib.tensor(x, requires_grad=True)
        g_up = lib.tensor(gy, requires_grad=True)
        g, = lib.autograd.grad(lib.nn.functional.gelu(t, approximate=approximate), [t], g_up, create_graph=True)
        return [g.detach().numpy()] + [h.detach().numpy() for h in lib.autograd.grad((g * lib.tensor(v)).sum(),
                                                                                     [t, g_up])]
    for a, b in zip(run(minidl), run(torch)):
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-9)


SPECIAL = [np.inf, -np.inf, np.nan, 10.0, -10.0, 20.0, -20.0, 1e4, -1e4, 1e30, -1e30, 0.0, -0.0, 3e38, -3e38, 1e-40,
           -1e-40]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("approximate", MODES)
def test_infinities_nan_and_large_values(approximate, dtype):
    """torch's values and gradients, NaN where torch's are (gelu(-inf) = -inf * 0; the gradient at inf: inf * 0),
    signs of zeros included. torch's float32 exact gelu differs from its float64 one at +inf (NaN, not inf) and
    3e38 (inf: x (1 + erf) overflows before the half), and gives 0 where its float64 gradient at -10 is -7.7e-22:
    there minidl's float32 gives torch's float64 answer."""
    x = np.array(SPECIAL, dtype=dtype)
    mx = minidl.tensor(x, requires_grad=True)
    y = F.gelu(mx, approximate=approximate)
    g, = minidl.autograd.grad(y, [mx], minidl.ones_like(y))
    tx = torch.tensor(x.astype(np.float64), requires_grad=True)
    ty = torch.nn.functional.gelu(tx, approximate=approximate)
    tg, = torch.autograd.grad(ty, [tx], torch.ones_like(ty))
    want_y, want_g = ty.detach().numpy().astype(dtype), tg.numpy().astype(dtype)
    if dtype == np.float32 and approximate == "tanh":  # float32's x^2 overflows at 1e30: torch's float32 NaN too
        t32 = torch.tensor(x, requires_grad=True)
        want_g = torch.autograd.grad(torch.nn.functional.gelu(t32, approximate="tanh"), [t32],
                                     torch.ones_like(t32))[0].numpy()
        assert np.isnan(want_g[x == 1e30]).all()
    np.testing.assert_array_equal(y.detach().numpy(), want_y)
    np.testing.assert_array_equal(np.signbit(y.detach().numpy()), np.signbit(want_y))
    np.testing.assert_allclose(g.numpy(), want_g, rtol=1e-6, atol=0)


@pytest.mark.parametrize("approximate", MODES)
@pytest.mark.parametrize("half", ["float16", "bfloat16"])
def test_half_precision_computes_in_float32_as_torch(half, approximate):
    """Values and gradients rounded once from float32: at most one unit of the last place from torch's (both round
    a float32 result that carries a few float32 ulps of error), or 1e-5 in the negative tail, where float32's
    1 + erf and 1 + t cancel (2^-24 |x|, in both libraries) below float16's units there. Composed of float16 ops,
    gelu's values and gradients above 1e-2 differed from torch's on 32-51% of these inputs; now on at most 0.1%."""
    if half == "bfloat16":
        pytest.importorskip("ml_dtypes")
    x = np.linspace(-6, 6, 2001).astype(np.float32)
    gy = np.random.default_rng(0).uniform(-2, 2, x.shape).astype(np.float32)
    mdt, tdt = getattr(minidl, half), getattr(torch, half)
    mx = minidl.tensor(x).to(mdt)
    tx = torch.tensor(x).to(tdt)
    y = F.gelu(mx, approximate=approximate)
    ty = torch.nn.functional.gelu(tx, approximate=approximate)
    assert y.dtype == mdt
    outs = [(y, ty)]
    if half == "float16":  # (minidl's bfloat16 tensors do not require grad)
        mx.requires_grad_()
        tx.requires_grad_()
        g, = minidl.autograd.grad(F.gelu(mx, approximate=approximate), [mx], minidl.tensor(gy).to(mdt))
        tg, = torch.autograd.grad(torch.nn.functional.gelu(tx, approximate=approximate), [tx],
                                  torch.tensor(gy).to(tdt))
        assert g.dtype == mdt
        outs.append((g, tg))
    for got, want in outs:
        got, want = np.asarray(got.detach().float().numpy()), want.detach().float().numpy()
        unit = np.spacing(np.abs(want).astype(np.float16)).astype(np.float32) if half == "float16" else \
            np.abs(want) / 128 + 1e-30
        assert (np.abs(got - want) <= unit + 1e-5).all()
        assert (got != want)[np.abs(want) > 1e-2].mean() < 0.01


def test_one_node_named_as_torchs_and_argument_errors():
    x = minidl.randn(3, 4, requires_grad=True)
    y = F.gelu(x)
    t = torch.nn.functional.gelu(torch.randn(2, requires_grad=True))
    assert y.grad_fn.grad_fn_name == type(t.grad_fn).__name__ == "GeluBackward0"
    assert [type(z.grad_fn).__name__ for z in (y, minidl.nn.GELU("tanh")(x))] == ["GELUFunction"] * 2
    assert [e.grad_fn_name for e in y.grad_fn._edges] == ["AccumulateGrad"]  # one node between y and x
    with pytest.raises(ValueError, match=r"gelu: approximate must be 'none' or 'tanh', got 'fast'"):
        F.gelu(x, approximate="fast")
    with pytest.raises(TypeError, match="gelu: argument 'input' must have a floating dtype"):
        F.gelu(minidl.tensor([1, 2]))


@pytest.mark.parametrize("approximate", MODES)
def test_a_second_backward_needs_retain_graph(approximate):
    x = minidl.tensor(_x((4,), np.float64), requires_grad=True)
    y = F.gelu(x, approximate=approximate).sum()
    y.backward(retain_graph=True)
    first = x.grad.numpy().copy()
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * first)
    with pytest.raises(RuntimeError):
        y.backward()


def test_float32_erf_kernel_is_within_half_an_ulp_over_float32s_range():
    """The Numba float32 erf (a degree-20 polynomial evaluated in float64, kernels/_numba.py): against float64 erf
    over every float32 in [0, 4.5] at a stride of 8 bits (one in 256: 4.2 million values; the whole range was checked
    once: at most 0.5003 ulp), a log grid over float32's range both ways, tiny and denormal values, zeros of both
    signs, +-inf and NaN. Within 0.5003 ulp means libm's erf rounded once, or 1 ulp away where erf lies within 0.0003
    ulp of a rounding boundary."""
    numba_k = pytest.importorskip("minidl.kernels._numba")
    grid = np.geomspace(1e-45, 3.4e38, 200_001)
    bits = np.arange(0, 0x40900000, 256, dtype=np.uint32).view(np.float32)
    x = np.concatenate([bits, grid.astype(np.float32), np.float32([0.0, 1e-45, 1e-40, 1.1754944e-38, 3.92, 3.9192,
                                                                   np.finfo(np.float32).max, np.inf])])
    x = np.concatenate([x, -x])
    got = numba_k.erf(x)
    assert got.dtype == np.float32
    want = torch.erf(torch.from_numpy(x.astype(np.float64))).numpy()
    ulp = np.abs(got.astype(np.float64) - want) / np.spacing(np.abs(want).astype(np.float32)).astype(np.float64)
    assert ulp[want != 0].max() <= 0.5003
    np.testing.assert_array_equal(np.signbit(got), np.signbit(x))  # erf(-0.0) = -0.0
    special = np.float32([np.nan, -np.inf, np.inf, 0.0, -0.0])
    np.testing.assert_array_equal(numba_k.erf(special), np.float32([np.nan, -1, 1, 0, -0.0]))
    for a in (x.reshape(-1, 2)[:, 0], x[:6].reshape(2, 3).T, np.array(0.5, np.float32), np.zeros((0, 2), np.float32)):
        np.testing.assert_array_equal(numba_k.erf(a), numba_k.erf(np.ascontiguousarray(a)))  # any layout, 0-d, empty
        assert numba_k.erf(a).shape == a.shape
    x64 = np.linspace(-5, 5, 1001)
    np.testing.assert_array_equal(numba_k.erf(x64), [math.erf(v) for v in x64])  # float64: libm's erf


@pytest.mark.parametrize("approximate", MODES)
def test_onnx_export_runs_in_onnxruntime(approximate, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    m = minidl.nn.Sequential(minidl.nn.Linear(6, 8), minidl.nn.GELU(approximate), minidl.nn.Linear(8, 3))
    x = _x((5, 6), np.float32)
    proto = minidl.onnx.export(m, minidl.tensor(x), tmp_path / "g.onnx")
    ops = [n.op_type for n in proto.graph.node]
    assert ("Tanh" if approximate == "tanh" else "Erf") in ops
    session = ort.InferenceSession(str(tmp_path / "g.onnx"), providers=["CPUExecutionProvider"])
    for batch in (5, 2):
        xb = _x((batch, 6), np.float32, seed=batch)
        np.testing.assert_allclose(m(minidl.tensor(xb)).detach().numpy(), session.run(None, {"input_0": xb})[0],
                                   rtol=1e-5, atol=1e-6)
