"""The op table on a device whose arrays behave as CuPy's (tests/fake_cupy.py): forward and backward
against torch, with every input and upstream gradient on 'cuda'. A stray NumPy call on device data (an
implicit conversion, a host array mixed into a device computation, a Numba kernel fed a device array)
raises here without a GPU. With a real GPU, tests/test_gpu.py runs the same table on CuPy."""
import numpy as np
import pytest

from minidl.testing import assert_matches_torch

import fake_cupy
import opinfo
from opinfo import cases
import suite
from suite import dtype_cases, rule_cases
from test_ops import GRADCHECK, _call, _setup, run_gradcheck

CASES = rule_cases(cases())
STRICT_GRADCHECK = rule_cases(GRADCHECK)


@pytest.fixture
def strict_cuda(monkeypatch):
    monkeypatch.setattr(opinfo, "DEVICE", "cuda")  # random ops' references draw from the device's generator
    with fake_cupy.installed() as cupy:
        fake_cupy.reset_transfers()
        yield cupy


@pytest.mark.parametrize("case_id, op, k, sample, dtype", dtype_cases(CASES))
def test_op_table_on_a_strict_device(strict_cuda, case_id, op, k, sample, dtype):
    args, requires, before = _setup(op, sample, dtype, case_id)
    m_out, _ = assert_matches_torch(_call(op.fn, sample.kwargs), _call(op.ref, sample.kwargs), args,
                                    grad=op.grad, requires_grad=requires, before=before, device="cuda")
    for out in m_out:
        if hasattr(out, "_data"):
            assert isinstance(out._data, fake_cupy.StrictArray), f"{op.name}: output left the device"


@pytest.mark.parametrize("case_id, op, k, sample", STRICT_GRADCHECK, ids=[c[0] for c in STRICT_GRADCHECK])
def test_gradcheck_on_a_strict_device(strict_cuda, case_id, op, k, sample):
    run_gradcheck(case_id, op, sample, "cuda")


# ---- whole training steps: everything stays on the device, nothing is copied --------------------------------
import minidl  # noqa: E402
from minidl import models  # noqa: E402
from minidl.data import DataLoader, TensorDataset  # noqa: E402

NETS = [("LeNet5", (1, 28, 28), {}), ("ResidualNet", (1, 28, 28), {}), ("InceptionNet", (1, 28, 28), {}),
        ("resnet18", (3, 32, 32), dict(num_classes=10, small_input=True))]


def _train(net, shape, kw, opt_name, device, steps=2):
    minidl.manual_seed(0)
    model = getattr(models, net)(**kw).double().to(device)
    opt = (minidl.optim.SGD(model.parameters(), lr=0.05, momentum=0.9) if opt_name == "sgd"
           else minidl.optim.Adam(model.parameters(), lr=1e-3))
    rng = np.random.default_rng(0)
    data = TensorDataset(minidl.tensor(rng.standard_normal((8, *shape))), minidl.tensor(rng.integers(0, 10, 8)))
    loader = DataLoader(data, batch_size=4, device=device)
    counts = []
    for _ in range(steps):
        for x, y in loader:
            before = dict(fake_cupy.TRANSFERS)
            opt.zero_grad()
            loss = minidl.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            counts.append({k: fake_cupy.TRANSFERS[k] - before[k] for k in before})
    return model, opt, loss, counts


@pytest.mark.parametrize("net, shape, kw, opt_name", [
    pytest.param(*n, opt, id=f"{n[0]}-{opt}", marks=suite.exhaustive if n[0] == "resnet18" else ())
    for n in NETS for opt in ("sgd", "adam")])  # resnet18 (11 s): its ops are covered one by one on this device
def test_training_steps_stay_on_the_device_and_match_the_cpu(strict_cuda, net, shape, kw, opt_name):
    model, opt, loss, counts = _train(net, shape, kw, opt_name, "cuda")
    assert counts == [{"to_device": 0, "to_host": 0}] * len(counts), \
        f"{net}: host-device copies inside training steps: {counts}"
    for name, p in model.named_parameters():
        assert isinstance(p._data, fake_cupy.StrictArray) and isinstance(p.grad._data, fake_cupy.StrictArray), name
    for state in opt.state.values():
        for v in state.values():
            if hasattr(v, "shape") and not isinstance(v, (int, float)):
                assert isinstance(getattr(v, "_data", v), fake_cupy.StrictArray)
    fake_cupy.reset_transfers()
    value = loss.item()  # asking for a value is the one copy
    assert fake_cupy.TRANSFERS == {"to_device": 0, "to_host": 1}
    # the same training on the CPU gives the same numbers (float64; NumPy kernels on the device, Numba on the CPU)
    cpu_model, _, cpu_loss, _ = _train(net, shape, kw, opt_name, "cpu")
    assert value == pytest.approx(cpu_loss.item(), rel=1e-9)
    for (name, p), (_, q) in zip(model.named_parameters(), cpu_model.named_parameters()):
        np.testing.assert_allclose(minidl.backend.to_device(p._data, "cpu"), q.detach().numpy(), rtol=1e-9,
                                   atol=1e-11, err_msg=name)
    for (name, b), (_, c) in zip(model.named_buffers(), cpu_model.named_buffers()):
        np.testing.assert_allclose(minidl.backend.to_device(b._data, "cpu"), c.numpy(), rtol=1e-9, atol=1e-11,
                                   err_msg=name)


def test_out_of_range_targets_on_a_device_make_the_loss_nan_without_a_copy(strict_cuda):
    """On the CPU an out-of-range class raises (tests/test_errors.py); on a device the check would copy to
    the host on every call, so the loss becomes NaN instead (torch on CUDA stops at a device-side assert)."""
    logits = minidl.randn(3, 4, device="cuda", requires_grad=True)
    target = minidl.tensor(np.array([0, 7, 2]), device="cuda")
    fake_cupy.reset_transfers()
    loss = minidl.nn.functional.cross_entropy(logits, target)
    assert fake_cupy.TRANSFERS == {"to_device": 0, "to_host": 0}
    assert np.isnan(loss.item())
    ok = minidl.nn.functional.cross_entropy(logits, minidl.tensor(np.array([0, 3, 2]), device="cuda"))
    assert np.isfinite(ok.item())


@pytest.mark.parametrize("opt_name, per_param", [("sgd", 5), ("adam", 13)])
def test_kernel_launches_of_an_optimizer_step_on_the_array_path(strict_cuda, opt_name, per_param):
    """The stand-in's launch estimate (fake_cupy.LAUNCHES) for one optimizer step on the array code: 5 kernels
    per parameter for SGD with momentum, 13 for Adam. On a GPU the fused kernels (kernels/_cuda.py sgd_step,
    adam_step; checked in tests/gpu_kernel_checks.py) make that one per parameter."""
    model, opt, _, _ = _train("LeNet5", (1, 28, 28), {}, opt_name, "cuda", steps=1)
    params = list(model.parameters())
    fake_cupy.LAUNCHES["kernels"] = 0
    opt.step()
    assert fake_cupy.LAUNCHES["kernels"] == per_param * len(params)


@pytest.mark.parametrize("name", ["LSTM", "GRU", "RNN"])
def test_recurrent_layers_run_on_a_strict_device_as_on_the_cpu(strict_cuda, name):
    """The time loops (functional/rnn.py) and the LSTM's step kernels (the reference, as on CuPy) keep every array
    on the device and give the CPU's numbers, forward and backward."""
    minidl.manual_seed(0)
    layer = getattr(minidl.nn, name)(3, 4, num_layers=2, bidirectional=True, batch_first=True).double()
    x = np.random.default_rng(0).standard_normal((2, 5, 3))
    results = []
    for device in ("cpu", "cuda"):
        m = layer.to(device)
        t = minidl.tensor(x, device=device, requires_grad=True)
        out, state = m(t)
        states = state if isinstance(state, tuple) else (state,)
        sum(s.sum() for s in states).backward(retain_graph=True)
        (out * out).sum().backward()
        if device == "cuda":
            assert all(isinstance(a._data, fake_cupy.StrictArray) for a in (out, *states, t.grad))
        results.append([a.detach().cpu().numpy() for a in (out, *states, t.grad)]
                       + [p.grad.cpu().numpy() for p in m.parameters()])
        m.zero_grad()
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_the_conv_tuner_times_device_work_to_its_end(strict_cuda):
    """On a real GPU the tuner timed launches, not work (no sync): it picked slower convolutions there (resnet18's
    step 128 ms tuned against 84 ms with im2col forced, benchmarks/NOTES.md change 34). Each trial now waits for the
    device."""
    from minidl.kernels import autotune
    x = minidl.randn(3, 2, 7, 7).to("cuda")
    w = minidl.randn(4, 2, 3, 3).to("cuda")
    autotune.clear()  # a choice made for this key by an earlier test in the same worker would skip the trials
    before = fake_cupy._Device.synchronized
    old = autotune.set_enabled(True)
    try:
        minidl.nn.functional.conv2d(x, w, padding=1)
    finally:
        autotune.set_enabled(old)
    trials = [v for k, v in autotune.cache().items() if k[0] == "conv2d" and k[1].type == "cuda"]
    assert trials and all(len(times) >= 2 for _, times in trials), trials
    assert fake_cupy._Device.synchronized - before >= 3 * len(trials[0][1])  # warm-up and two timed runs each
    minidl.cuda.synchronize()
    minidl.cuda.synchronize(0)
