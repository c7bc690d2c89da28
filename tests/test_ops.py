"""Every registered op against torch: forward, backward with a random upstream gradient, and a float64
numerical gradcheck, in float32 and float64, over the samples in tests/opinfo.py."""
import zlib

import numpy as np
import pytest

import minidl
from minidl.functional import OPS
from minidl.testing import assert_matches_torch, gradcheck

from opinfo import ROWS, cases
from suite import dtype_cases

CASES = cases()
DTYPES = [np.float32, np.float64]


def test_every_registered_op_has_a_row():
    missing = sorted(set(OPS) - set(ROWS))
    assert not missing, f"registered ops without a row in tests/opinfo.py: {missing}"
    stale = sorted(set(ROWS) - set(OPS))
    assert not stale, f"rows in tests/opinfo.py for ops that are not registered: {stale}"


def test_every_row_has_samples():
    assert all(op.samples for ops in ROWS.values() for op in ops)


def _setup(op, sample, dtype, case_id):
    from opinfo import make_inputs
    seed = zlib.crc32(f"{case_id}-{np.dtype(dtype).name}".encode())
    args, requires = make_inputs(sample, dtype, seed)
    before = (lambda: minidl.manual_seed(0)) if op.random else None
    return args, requires, before


def _call(fn, kwargs):
    return lambda *a: fn(*a, **kwargs)


@pytest.mark.filterwarnings("error::RuntimeWarning")  # NumPy warnings from minidl are bugs or noise
@pytest.mark.parametrize("case_id, op, k, sample, dtype", dtype_cases(CASES))
def test_forward(case_id, op, k, sample, dtype):
    args, requires, before = _setup(op, sample, dtype, case_id)
    assert_matches_torch(_call(op.fn, sample.kwargs), _call(op.ref, sample.kwargs), args, grad=False,
                         before=before)


GRAD_CASES = [c for c in CASES if c[1].grad]


@pytest.mark.filterwarnings("error::RuntimeWarning")  # NumPy warnings from minidl are bugs or noise
@pytest.mark.parametrize("case_id, op, k, sample, dtype", dtype_cases(GRAD_CASES))
def test_backward(case_id, op, k, sample, dtype):
    args, requires, before = _setup(op, sample, dtype, case_id)
    assert any(requires), "a differentiable row's sample must have an input that requires grad"
    assert_matches_torch(_call(op.fn, sample.kwargs), _call(op.ref, sample.kwargs), args, requires_grad=requires,
                         before=before)


GRADCHECK = [c for c in CASES if c[1].grad and c[2] not in c[1].no_gradcheck]


@pytest.mark.filterwarnings("error::RuntimeWarning")  # NumPy warnings from minidl are bugs or noise
@pytest.mark.parametrize("case_id, op, k, sample", GRADCHECK, ids=[c[0] for c in GRADCHECK])
def test_gradcheck(case_id, op, k, sample):
    run_gradcheck(case_id, op, sample, "cpu")


def run_gradcheck(case_id, op, sample, device):
    args, requires, before = _setup(op, sample, np.float64, case_id)
    inputs = [minidl.tensor(a, requires_grad=r, device=device) if isinstance(a, np.ndarray) else a
              for a, r in zip(args, requires)]
    fn = _call(op.fn, sample.kwargs)
    if before:
        fn0 = fn

        def fn(*a):
            before()
            return fn0(*a)
    assert gradcheck(fn, inputs)


def test_adding_an_op_takes_two_places():
    """DESIGN.md's recipe, followed by a toy op: a Function with its registered function, and an opinfo row. The op
    is then F.<op>, Tensor.<op> and (top=True) minidl.<op>, and the generic tests take it through forward, backward,
    gradcheck and double backward against torch."""
    import torch
    from minidl.autograd.function import FUNCTIONS, Function
    from minidl.autograd.tensor import Tensor
    from minidl.functional._registry import register, unregister
    from opinfo import A, OpInfo, S
    from test_autograd import test_double_backward_matches_torch

    class ToyCube(Function):  # place 1: functional/<family>.py
        name = "toy_cube"

        def forward(self, xp, x):
            self.save_for_backward(x)
            return x * x * x

        def backward(self, gy):
            x, = self.saved_tensors
            return gy * 3 * x * x

    @register(top=True)
    def toy_cube(input):
        """x ** 3."""
        return ToyCube.apply(input)
    try:
        row = OpInfo("toy_cube", toy_cube, lambda x: x ** 3, [S(A(3, 4)), S(A(2, 5, nc=True))])  # place 2: opinfo
        assert minidl.nn.functional.toy_cube is toy_cube and minidl.toy_cube is toy_cube
        x = minidl.tensor([1.0, -2.0])
        assert x.toy_cube().tolist() == [1.0, -8.0] and row.twice
        for k, sample in enumerate(row.samples):
            for dtype in DTYPES:
                test_forward(f"toy_cube-{k}", row, k, sample, dtype)
                test_backward(f"toy_cube-{k}", row, k, sample, dtype)
            test_gradcheck(f"toy_cube-{k}", row, k, sample)
            test_double_backward_matches_torch(f"toy_cube-{k}", row, k, sample)
        assert torch.is_tensor(row.ref(torch.ones(1)))
    finally:
        unregister("toy_cube")
        FUNCTIONS.pop("toy_cube", None)
    assert not hasattr(Tensor, "toy_cube") and not hasattr(minidl.tensor([1.0]), "toy_cube")
