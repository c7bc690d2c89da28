"""Pruning against torch.nn.utils.prune: the same masks, the same state_dict layout (weight_orig, weight_mask),
gradients only for kept weights, remove() making it permanent."""
import numpy as np
import pytest
import torch
import torch.nn.utils.prune as tprune

import minidl
import minidl.nn.utils.prune as prune
from minidl import models
from minidl.testing import torch_twins as twins


def _twins():
    minidl.manual_seed(0)
    m, t = models.LeNet5(), twins.LeNet5()
    t.load_state_dict({k: torch.tensor(v.numpy()) for k, v in m.state_dict().items()})
    return m, t


def _same_state(m, t):
    assert list(m.state_dict()) == list(t.state_dict())
    for k, v in t.state_dict().items():
        np.testing.assert_array_equal(m.state_dict()[k].numpy(), v.numpy(), err_msg=k)


@pytest.mark.parametrize("steps", [
    [("l1_unstructured", ("conv1", "weight"), dict(amount=0.3))],
    [("l1_unstructured", ("fc1", "weight"), dict(amount=100)),
     ("l1_unstructured", ("fc1", "weight"), dict(amount=0.5))],
    [("l1_unstructured", ("fc1", "bias"), dict(amount=0.25))],
    [("ln_structured", ("conv2", "weight"), dict(amount=0.5, n=2, dim=0)),
     ("ln_structured", ("conv2", "weight"), dict(amount=2, n=1, dim=1))],
    [("ln_structured", ("fc2", "weight"), dict(amount=0.3, n=float("inf"), dim=-1)),
     ("l1_unstructured", ("fc2", "weight"), dict(amount=0.2))],
    [("identity", ("fc3", "weight"), {})],
    [("l1_unstructured", ("conv1", "weight"), dict(amount=0.2)), ("global", None, dict(amount=0.7))],
], ids=["l1", "l1_twice", "bias", "ln_twice", "ln_inf_then_l1", "identity", "then_global"])
def test_masks_and_state_dict_match_torch(steps):
    m, t = _twins()
    for fn, where, kw in steps:
        for net, lib in ((m, prune), (t, tprune)):
            if fn == "global":
                lib.global_unstructured([(net.conv1, "weight"), (net.fc1, "weight"), (net.fc3, "bias")],
                                        lib.L1Unstructured, **kw)
            else:
                getattr(lib, fn)(getattr(net, where[0]), where[1], **kw)
    _same_state(m, t)
    assert prune.is_pruned(m)
    x = np.random.default_rng(0).normal(size=(3, 1, 28, 28)).astype(np.float32)
    ym, yt = m(minidl.tensor(x)), t(torch.tensor(x))
    np.testing.assert_allclose(ym.detach().numpy(), yt.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_pruned_weights_get_no_gradient_stay_zero_in_training_and_remove_keeps_them():
    m, _ = _twins()
    prune.l1_unstructured(m.fc1, "weight", amount=0.9)
    mask = m.fc1.weight_mask.numpy().astype(bool)
    assert abs((~mask).mean() - 0.9) < 1e-3
    assert "weight" not in dict(m.named_parameters()) and "fc1.weight_orig" in dict(m.named_parameters())
    opt = minidl.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    x, y = minidl.randn(8, 1, 28, 28), minidl.tensor(np.arange(8) % 10)
    for _ in range(3):
        opt.zero_grad()
        minidl.nn.functional.cross_entropy(m(x), y).backward()
        assert not m.fc1.weight_orig.grad.numpy()[~mask].any()
        opt.step()
    m(x)
    assert not m.fc1.weight.detach().numpy()[~mask].any()
    prune.remove(m.fc1, "weight")
    assert not prune.is_pruned(m)
    assert isinstance(m.fc1.weight, minidl.nn.Parameter) and not m.fc1.weight.detach().numpy()[~mask].any()
    assert set(m.state_dict()) == set(models.LeNet5().state_dict())  # weight now after bias, as in torch
    with pytest.raises(ValueError, match="not pruned"):
        prune.remove(m.fc1, "weight")


def test_a_pruned_state_dict_loads_into_torch_and_back():
    m, t = _twins()
    prune.ln_structured(m.conv1, "weight", amount=2, n=2, dim=0)
    tprune.identity(t.conv1, "weight")  # torch's twin needs the pruned layout to take weight_orig/weight_mask
    t.load_state_dict({k: torch.tensor(v.numpy()) for k, v in m.state_dict().items()})
    _same_state(m, t)
    m2 = models.LeNet5()
    prune.identity(m2.conv1, "weight")
    m2.load_state_dict(t.state_dict())
    _same_state(m2, t)


def test_random_pruning_is_seeded_and_prunes_the_amount():
    sizes = []
    for _ in range(2):
        m, _ = _twins()
        minidl.manual_seed(3)
        prune.random_unstructured(m.fc1, "weight", amount=0.4)
        prune.random_structured(m.conv2, "weight", amount=0.5, dim=0)
        sizes.append((m.fc1.weight_mask.numpy().copy(), m.conv2.weight_mask.numpy().copy()))
    np.testing.assert_array_equal(sizes[0][0], sizes[1][0])
    assert sizes[0][0].size - sizes[0][0].sum() == round(0.4 * sizes[0][0].size)
    per_filter = sizes[0][1].reshape(16, -1)
    assert (per_filter.min(1) == per_filter.max(1)).all() and per_filter[:, 0].sum() == 8


@pytest.mark.parametrize("call, error, match", [
    (lambda m: prune.l1_unstructured(m.fc1, "weight", amount=1.5), ValueError, "amount"),
    (lambda m: prune.l1_unstructured(m.fc1, "weight", amount=-1), ValueError, "amount"),
    (lambda m: prune.l1_unstructured(m.fc1, "weight", amount="half"), TypeError, "amount"),
    (lambda m: prune.l1_unstructured(m.fc3, "bias", amount=11), ValueError, "more than"),
    (lambda m: prune.ln_structured(m.fc3, "bias", amount=1, n=2, dim=0), ValueError, "2 dims"),
    (lambda m: prune.ln_structured(m.fc3, "weight", amount=1, n=2, dim=2), IndexError, "dim"),
    (lambda m: prune.l1_unstructured(m.fc3, "nothing", amount=1), AttributeError, "nothing"),
    (lambda m: prune.global_unstructured([(m.fc3, "weight")], prune.LnStructured, amount=1, n=2, dim=0), TypeError,
     "unstructured"),
    (lambda m: prune.l1_unstructured(m.fc3, "weight", 2, importance_scores=minidl.ones(3)), ValueError, "shape"),
])
def test_bad_arguments_raise_and_leave_the_module_unpruned(call, error, match):
    m, _ = _twins()
    before = list(m.state_dict())
    with pytest.raises(error, match=match):
        call(m)
    assert list(m.state_dict()) == before and not prune.is_pruned(m)
