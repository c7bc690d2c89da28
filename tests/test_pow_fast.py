"""pow with a number exponent takes torch's shortcuts (issue 32: x ** 3 cost 4.4 ms on 73,728 float32 values, libm's
pow on negative bases): the numbers, signs, infinities and NaNs must stay torch's, forward, backward and twice."""
import numpy as np
import pytest
import torch

import minidl
from minidl.testing import gradcheck

SHORTCUTS = [0, 1, 2, 3, -1, -2, 0.5, -0.5, 0.0, 2.0, 3.0, -1.0]  # torch's own: the same operations, the same bits
WHOLE = [4, 5, -3, -4, 7, 4.0]                       # other whole numbers: |x| ** p with x's sign where p is odd
OTHERS = [2.5, -1.5, 1.5, 1 / 3, 1e-3, float("inf"), float("-inf"), float("nan")]
SPECIAL = [-8.0, -3.0, -1.0, -0.5, -0.0, 0.0, 0.5, 1.0, 2.0, 3.0, 1e-45, -1e-45, 1e-30, -1e-30, 1e20, -1e20,
           np.inf, -np.inf, np.nan]
DTYPES = [np.float32, np.float64]


@np.errstate(over="ignore")  # 1e20 in float16
def _values(dtype):
    rng = np.random.default_rng(0)
    return np.concatenate([np.array(SPECIAL), rng.uniform(-3, 3, 200)]).astype(dtype)


def _same(got, expect, ulps=0):
    """Equal (bit for bit, or within ``ulps`` units in the last place), with the same NaNs, infinities and signs."""
    assert got.dtype == expect.dtype
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expect))
    np.testing.assert_array_equal(np.signbit(got[~np.isnan(got)]), np.signbit(expect[~np.isnan(expect)]))
    if not ulps:
        np.testing.assert_array_equal(got, expect)
    else:
        finite = np.isfinite(expect)
        np.testing.assert_array_equal(got[~finite], expect[~finite])
        ulp = np.spacing(np.abs(expect[finite]))
        assert (np.abs(got[finite] - expect[finite]) <= ulps * ulp).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", SHORTCUTS + WHOLE + OTHERS)
def test_forward_equals_torch(p, dtype):
    x = _values(dtype)
    got = minidl.pow(minidl.tensor(x), p).numpy()
    expect = torch.pow(torch.tensor(x), p).numpy()
    if p == 0.5:  # the IEEE square root; torch's own sqrt (also torch.sqrt) is 1 ulp off on some values on some CPUs
        with np.errstate(invalid="ignore"):
            _same(got, np.sqrt(x))
        _same(got, expect, ulps=1)
    elif p in SHORTCUTS:  # the same operations in the same order as torch's: the same bits
        _same(got, expect)
    else:  # pow: libm's, NumPy's and torch's round apart
        _same(got, expect, ulps=2)
    if p in WHOLE:  # the sign trick changes nothing where x >= 0
        pos = ~(x < 0)
        with np.errstate(divide="ignore", over="ignore"):
            np.testing.assert_array_equal(got[pos], np.power(x[pos], np.asarray(p, dtype)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", SHORTCUTS + WHOLE + [2.5, -1.5])
def test_backward_equals_torch(p, dtype):
    x = _values(dtype)
    gy = np.random.default_rng(1).uniform(-1, 1, x.shape).astype(dtype)
    gy[-5:] = [0.0, -0.0, np.inf, -np.inf, np.nan]
    a, ta = minidl.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    minidl.pow(a, p).backward(minidl.tensor(gy))
    torch.pow(ta, p).backward(torch.tensor(gy))
    # g * (p * x ** (p - 1)) in both: the same bits where x ** (p - 1) is one of torch's exact shortcuts, else
    # pow's rounding (up to 2 ulp between libraries) carried through the two products
    exact = p in SHORTCUTS and (p == 0 or p - 1 in SHORTCUTS)
    _same(a.grad.numpy(), ta.grad.numpy(), ulps=0 if exact else 4)


@pytest.mark.parametrize("p", SHORTCUTS + [4, -3, 2.5])
def test_gradcheck_and_second_derivative(p):
    rng = np.random.default_rng(2)
    x = rng.uniform(0.5, 2, 12) * (1 if p != int(p) or p == 0.5 or p == -0.5 else rng.choice([-1, 1], 12))
    a = minidl.tensor(x, requires_grad=True)
    assert gradcheck(lambda t: minidl.pow(t, p), (a,))
    ta = torch.tensor(x, requires_grad=True)
    gy = rng.uniform(-1, 1, 12)
    g, = minidl.autograd.grad(minidl.pow(a, p), a, minidl.tensor(gy, requires_grad=True), create_graph=True)
    tg, = torch.autograd.grad(torch.pow(ta, p), ta, torch.tensor(gy, requires_grad=True), create_graph=True)
    np.testing.assert_allclose(g.detach().numpy(), tg.detach().numpy(), rtol=1e-12)
    assert g.requires_grad == tg.requires_grad  # p = 0: torch's zeros are a constant
    if not tg.requires_grad:
        return
    v = rng.uniform(-1, 1, 12)
    gg, = minidl.autograd.grad((g * minidl.tensor(v)).sum(), a, allow_unused=True)
    tgg, = torch.autograd.grad((tg * torch.tensor(v)).sum(), ta, allow_unused=True)
    if p == 1:  # the upstream gradient itself: its derivative in x is 0
        assert gg is None or not gg.numpy().any()
        assert tgg is None or not tgg.numpy().any()
    else:
        np.testing.assert_allclose(gg.numpy(), tgg.numpy(), rtol=1e-12)


@pytest.mark.parametrize("p", [0, 1, 2, 3, 4, 5])
def test_integer_tensors_keep_their_dtype(p):
    x = np.arange(-4, 5, dtype=np.int64)
    got = minidl.pow(minidl.tensor(x), p)
    assert got.dtype == minidl.int64
    np.testing.assert_array_equal(got.numpy(), torch.pow(torch.tensor(x), p).numpy())


def test_half_precision_is_computed_as_torch():
    x = _values(np.float16)
    for p in SHORTCUTS + [4, -3]:  # torch rounds once from float32 (x * x * x in float16 would round twice)
        _same(minidl.pow(minidl.tensor(x), p).numpy(), torch.pow(torch.tensor(x), p).numpy(), ulps=1 if p == 0.5 else 0)
