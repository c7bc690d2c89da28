"""minidl.nn: Module mechanics, state_dict round trips with torch, initialisation, layers."""
import math

import numpy as np
import pytest
import torch

import minidl
import minidl.nn as nn


def test_registration_traversal_and_state_dict_keys_match_torch():
    m = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4, 2, bias=False))
    t = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(), torch.nn.Flatten(),
                            torch.nn.Linear(4, 2, bias=False))
    assert list(m.state_dict()) == list(t.state_dict())
    assert [k for k, _ in m.named_parameters()] == [k for k, _ in t.named_parameters()]
    assert [k for k, _ in m.named_buffers()] == [k for k, _ in t.named_buffers()]
    assert len(list(m.modules())) == 6 and len(list(m.children())) == 5
    assert m.state_dict()["1.num_batches_tracked"].dtype == minidl.int64


def test_load_state_dict_reports_missing_unexpected_and_shape_errors():
    m = nn.Linear(3, 2)
    with pytest.raises(RuntimeError, match=r'Missing key\(s\) in state_dict: "bias"'):
        m.load_state_dict({"weight": np.zeros((2, 3))})
    with pytest.raises(RuntimeError, match=r'Unexpected key\(s\) in state_dict: "extra"'):
        m.load_state_dict({"weight": np.zeros((2, 3)), "bias": np.zeros(2), "extra": np.zeros(1)})
    before = m.weight.detach().numpy().copy()
    with pytest.raises(RuntimeError, match=r"size mismatch for weight: copying a param with shape \(3, 3\)"):
        m.load_state_dict({"weight": np.zeros((3, 3)), "bias": np.zeros(2)})
    np.testing.assert_array_equal(m.weight.detach().numpy(), before)  # nothing half-loaded
    res = m.load_state_dict({"weight": torch.ones(2, 3)}, strict=False)
    assert res.missing_keys == ["bias"] and res.unexpected_keys == []
    assert m.weight.dtype == minidl.float32 and m.weight.detach().numpy().sum() == 6


def test_batchnorm_module_follows_torch_including_num_batches_and_momentum_none():
    rng = np.random.default_rng(0)
    for momentum in (0.1, None):
        m, t = nn.BatchNorm2d(3, momentum=momentum), torch.nn.BatchNorm2d(3, momentum=momentum)
        for _ in range(3):
            x = rng.normal(size=(4, 3, 5, 5)).astype(np.float32)
            m(minidl.tensor(x))
            t(torch.tensor(x))
        for k, v in t.state_dict().items():
            np.testing.assert_allclose(m.state_dict()[k].numpy(), v.numpy(), rtol=1e-5, atol=1e-6, err_msg=k)
        m.eval()
        t.eval()
        x = rng.normal(size=(2, 3, 5, 5)).astype(np.float32)
        np.testing.assert_allclose(m(minidl.tensor(x)).detach().numpy(), t(torch.tensor(x)).detach().numpy(),
                                   rtol=1e-5, atol=1e-5)


def test_default_initialisation_draws_from_torchs_distributions():
    minidl.manual_seed(0)
    lin = nn.Linear(400, 300)
    bound = 1 / math.sqrt(400)  # kaiming_uniform(a=sqrt(5)) gives U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    w = lin.weight.detach().numpy()
    assert w.min() >= -bound and w.max() <= bound and w.max() > 0.99 * bound
    assert abs(w.std() - bound / math.sqrt(3)) < 0.01 * bound
    conv = nn.Conv2d(6, 16, 5)
    b = 1 / math.sqrt(6 * 25)
    assert np.abs(conv.weight.detach().numpy()).max() <= b and np.abs(conv.bias.detach().numpy()).max() <= b
    ct = nn.ConvTranspose2d(8, 4, 3)  # torch's fan_in for transposed convs: weight.shape[1] * k * k
    assert np.abs(ct.bias.detach().numpy()).max() <= 1 / math.sqrt(4 * 9)
    t = minidl.empty(256, 128)
    nn.init.kaiming_normal_(t, mode="fan_out", nonlinearity="relu")
    assert abs(t.numpy().std() - math.sqrt(2 / 256)) < 0.02 * math.sqrt(2 / 256)
    nn.init.xavier_uniform_(t)
    assert np.abs(t.numpy()).max() <= math.sqrt(6 / (256 + 128))


def test_module_to_double_keeps_parameter_identity_and_freezing():
    m = nn.Linear(3, 2)
    w = m.weight
    m.double()
    assert m.weight is w and w.dtype == minidl.float64
    m.requires_grad_(False)
    assert not any(p.requires_grad for p in m.parameters())
    y = m(minidl.randn(4, 3, dtype=minidl.float64))
    assert not y.requires_grad


def test_train_eval_dropout_and_hooks():
    m = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))
    m.eval()
    assert not m[1].training
    x = minidl.randn(2, 4)
    np.testing.assert_array_equal(m(x).detach().numpy(), m[0](x).detach().numpy())
    seen = []
    h = m[0].register_forward_hook(lambda mod, inp, out: seen.append(out.shape))
    m(x)
    h.remove()
    m(x)
    assert seen == [(2, 4)]
    m.register_forward_hook(lambda mod, inp, out: out * 0)
    assert m(x).detach().numpy().sum() == 0


def test_zero_grad_apply_and_repr():
    m = nn.Sequential(nn.Conv2d(1, 2, 3, stride=2, bias=False), nn.ReLU())
    m(minidl.randn(1, 1, 5, 5)).sum().backward()
    assert m[0].weight.grad is not None
    m.zero_grad()
    assert m[0].weight.grad is None
    names = []
    m.apply(lambda mod: names.append(type(mod).__name__))
    assert names == ["Conv2d", "ReLU", "Sequential"]
    assert "Conv2d(1, 2, kernel_size=(3, 3), stride=(2, 2), bias=False)" in repr(m)


def test_module_list_and_dict_register_parameters():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
            self.heads = nn.ModuleDict({"a": nn.Linear(2, 1)})

        def forward(self, x):
            for b in self.blocks:
                x = b(x)
            return self.heads["a"](x)
    net = Net()
    assert len(list(net.parameters())) == 8
    assert "blocks.2.weight" in net.state_dict() and "heads.a.bias" in net.state_dict()
    assert net(minidl.randn(5, 2)).shape == (5, 1)


def test_assigning_before_super_init_is_a_clear_error():
    class Bad(nn.Module):
        def __init__(self):
            self.fc = nn.Linear(2, 2)
    with pytest.raises(AttributeError, match=r"Bad: call super\(\).__init__\(\) before assigning"):
        Bad()


@pytest.mark.parametrize("make, tmake, shape", [
    (lambda: nn.CrossEntropyLoss(label_smoothing=0.1), lambda: torch.nn.CrossEntropyLoss(label_smoothing=0.1), None),
    (lambda: nn.Conv2d(2, 4, 3, padding=1, padding_mode="reflect"),
     lambda: torch.nn.Conv2d(2, 4, 3, padding=1, padding_mode="reflect"), (2, 2, 5, 6)),
    (lambda: nn.Conv2d(2, 4, 3, padding=(1, 2), padding_mode="circular"),
     lambda: torch.nn.Conv2d(2, 4, 3, padding=(1, 2), padding_mode="circular"), (2, 2, 5, 6)),
    (lambda: nn.GroupNorm(2, 4), lambda: torch.nn.GroupNorm(2, 4), (2, 4, 3, 3)),
    (lambda: nn.LayerNorm((3, 3)), lambda: torch.nn.LayerNorm((3, 3)), (2, 4, 3, 3)),
    (lambda: nn.AvgPool2d(3, 2, 1, count_include_pad=False),
     lambda: torch.nn.AvgPool2d(3, 2, 1, count_include_pad=False),
     (2, 4, 7, 7)),
])
def test_layers_match_torch_modules(make, tmake, shape):
    from minidl.testing import assert_matches_torch
    minidl.manual_seed(0)
    m, t = make(), tmake()
    if list(t.state_dict()):
        t.load_state_dict({k: torch.tensor(v.numpy()) for k, v in m.state_dict().items()})
    rng = np.random.default_rng(0)
    if shape is None:
        args = [rng.normal(size=(4, 5)).astype(np.float32), rng.integers(0, 5, size=4)]
    else:
        args = [rng.uniform(-2, 2, size=shape).astype(np.float32)]
    assert_matches_torch(m, t, args)


def test_conv_layers_call_an_overridden_reset_parameters_as_torch_does():
    class Zeroed(nn.Conv2d):
        def reset_parameters(self):
            self.weight.data.fill_(0.0)

    class Zeroed1d(nn.Conv1d):
        def reset_parameters(self):
            self.weight.data.fill_(0.0)
    assert not Zeroed(2, 3, 3).weight.detach().numpy().any() and not Zeroed1d(2, 3, 3).weight.detach().numpy().any()
