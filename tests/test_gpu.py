"""The op table, float64 gradchecks and training of the seed nets on a real GPU (CuPy). Skipped where CuPy
sees no GPU (CI has none); tests/test_strict_device.py runs the same checks on a CuPy stand-in everywhere.
benchmarks/run_gpu.sh runs this file on a lent GPU."""
import numpy as np
import pytest

import minidl
from minidl.testing import assert_matches_torch

import opinfo
from opinfo import cases
from test_ops import DTYPES, GRADCHECK, _call, _setup, run_gradcheck
from test_strict_device import NETS, _train

if not minidl.cuda.is_available():  # one skip, not one per op sample
    pytest.skip("needs CuPy and an NVIDIA GPU", allow_module_level=True)

CASES = cases()


@pytest.fixture(autouse=True)
def _random_ops_draw_on_the_gpu(monkeypatch):
    monkeypatch.setattr(opinfo, "DEVICE", "cuda")  # random ops' references draw from the GPU's generator


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case_id, op, k, sample", CASES, ids=[c[0] for c in CASES])
def test_op_table_on_cuda(case_id, op, k, sample, dtype):
    args, requires, before = _setup(op, sample, dtype, case_id)
    m_out, _ = assert_matches_torch(_call(op.fn, sample.kwargs), _call(op.ref, sample.kwargs), args,
                                    grad=op.grad, requires_grad=requires, before=before, device="cuda")
    for out in m_out:
        if isinstance(out, minidl.Tensor):
            assert out.device == "cuda", f"{op.name}: output on {out.device}"


@pytest.mark.parametrize("case_id, op, k, sample", GRADCHECK, ids=[c[0] for c in GRADCHECK])
def test_gradcheck_on_cuda(case_id, op, k, sample):
    run_gradcheck(case_id, op, sample, "cuda")


@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
@pytest.mark.parametrize("net, shape, kw", NETS, ids=[n[0] for n in NETS])
def test_training_on_cuda_matches_the_cpu(net, shape, kw, opt_name):
    model, _, loss, _ = _train(net, shape, kw, opt_name, "cuda")
    cpu_model, _, cpu_loss, _ = _train(net, shape, kw, opt_name, "cpu")
    assert loss.item() == pytest.approx(cpu_loss.item(), rel=1e-9)
    for (name, p), (_, q) in zip(model.named_parameters(), cpu_model.named_parameters()):
        assert p.device == "cuda" and p.grad.device == "cuda", name
        np.testing.assert_allclose(p.detach().to("cpu").numpy(), q.detach().numpy(), rtol=1e-9, atol=1e-11,
                                   err_msg=name)
