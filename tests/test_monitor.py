"""minidl.utils.Monitor: per layer and step, the activations' mean, std and zero fraction and the gradient's norm
and ratio to the weight's, checked against NumPy on a small net; what it records when, and its plots."""
import numpy as np
import pytest

import minidl
import minidl.nn as nn
import minidl.nn.functional as F
from minidl import utils


def _net():
    minidl.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))


def test_statistics_equal_numpys():
    net = _net()
    mon = utils.Monitor(net)
    assert mon.names == ["0", "1", "2"]
    x = minidl.randn(5, 6)
    out = net(x)
    out.sum().backward()
    mon.step()
    h0 = net[0](x).detach().numpy()
    h1 = np.maximum(h0, 0)
    for name, a in (("0", h0), ("1", h1), ("2", out.detach().numpy())):
        rec = mon.history[name]
        np.testing.assert_allclose([rec["act_mean"][0], rec["act_std"][0], rec["act_zeros"][0]],
                                   [a.mean(), a.std(), (a == 0).mean()], rtol=1e-6)
    for name, layer in (("0", net[0]), ("2", net[2])):
        g, w = layer.weight.grad.numpy(), layer.weight.detach().numpy()
        assert mon.history[name]["grad_norm"][0] == pytest.approx(np.linalg.norm(g), rel=1e-6)
        assert mon.history[name]["grad_ratio"][0] == pytest.approx(np.linalg.norm(g) / np.linalg.norm(w), rel=1e-6)
    assert np.isnan(mon.history["1"]["grad_norm"][0])  # ReLU has no weight
    assert mon.as_arrays("grad_norm").shape == (1, 3)


def test_what_is_recorded_when():
    net = _net()
    mon = utils.Monitor(net, layers=["1"], every=2, inputs=True)
    x = minidl.randn(4, 6)
    for _ in range(5):
        net(x).sum().backward()
        mon.step()
    assert mon.steps == [0, 2, 4]
    h0 = net[0](x).detach().numpy()
    assert mon.history["1"]["act_mean"][0] == pytest.approx(h0.mean(), rel=1e-6)  # inputs=True: ReLU's input
    net.eval()
    with minidl.no_grad():
        net(minidl.randn(4, 6) + 100)  # eval forwards do not count
    net.train()
    mon.step()
    mon.step()  # step 6 records, with no training forward in it: NaN activations
    assert mon.steps == [0, 2, 4, 6] and np.isnan(mon.history["1"]["act_mean"][-1])
    mon.remove()
    assert not net[1]._forward_hooks


def test_fit_steps_the_monitor_once_per_batch_and_the_plots_are_written(tmp_path):
    net = _net()
    ds = minidl.data.TensorDataset(minidl.randn(40, 6), minidl.randint(0, 3, (40,)))
    loader = minidl.data.DataLoader(ds, batch_size=10)
    mon = utils.Monitor(net, path=str(tmp_path / "by_fit.png"))
    utils.fit(net, loader, loader, minidl.optim.SGD(net.parameters(), lr=0.1), F.cross_entropy, 2, progress=False,
              log=None, monitor=mon)
    assert mon.steps == list(range(8)) and len(mon.history["0"]["grad_ratio"]) == 8
    assert (tmp_path / "by_fit.png").stat().st_size > 0  # fit redraws it after each epoch
    path = mon.plot(str(tmp_path / "m.png"), title="net")
    other = utils.Monitor(_net())
    with pytest.raises(ValueError, match="nothing recorded yet"):
        other.plot(str(tmp_path / "x.png"))
    both = utils.plot_monitors({"a": mon, "b": mon}, str(tmp_path / "both.png"), keys=("grad_norm", "act_std"))
    for p in (path, both):
        with open(p, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_wrong_arguments_are_refused():
    with pytest.raises(ValueError, match="^Monitor: no module named 'conv9' in the model"):
        utils.Monitor(_net(), layers=["conv9"])
    with pytest.raises(ValueError, match="^Monitor: every must be a positive int, got 0"):
        utils.Monitor(_net(), every=0)
    with pytest.raises(ValueError, match="^Monitor.as_arrays: key must be one of"):
        utils.Monitor(_net()).as_arrays("loss")
