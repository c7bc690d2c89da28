"""minidl.utils.Monitor: per layer and step, the activations' mean, std and zero fraction and the gradient's norm
and ratio to the weight's, checked against NumPy on a small net; what it records when, and its plots (layers named
by their attribute names, keys clear of the curves)."""
import numpy as np
import pytest

import minidl
import minidl.nn as nn
import minidl.nn.functional as F
from minidl import utils
from minidl.utils import monitor as monitor_module


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


class _Named(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Linear(6, 8)
        self.block = nn.Sequential(nn.Linear(8, 8), nn.ReLU())
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.block(self.stem(x)))


def _watched_for(steps, **kwargs):
    minidl.manual_seed(0)
    net = _Named()
    mon = utils.Monitor(net, **kwargs)
    for _ in range(steps):
        net(minidl.randn(5, 6)).sum().backward()
        mon.step()
    return mon


def _overlaps(a, b):
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def _check_layout(fig):
    """Every legend and caption lies outside every panel that has curves."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    panels = [ax for ax in fig.axes if ax.lines]
    keys = list(fig.legends) + [t for ax in fig.axes for t in ax.texts]
    keys += [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    assert keys  # the recorded steps' key at least
    for key in keys:
        box = key.get_window_extent(renderer)
        for ax in panels:
            assert not _overlaps(box, ax.get_window_extent(renderer)), (key, ax.get_title())


def test_the_plots_name_each_layer_by_its_attribute_name_and_keep_keys_off_the_curves():
    import matplotlib.pyplot as plt
    mon = _watched_for(4)
    assert mon.names == ["stem", "block.0", "block.1", "head"]
    with_relu = ["stem", "block.0", "block.1", "head"]
    weighted = ["stem", "block.0", "head"]  # ReLU has no gradient
    for monitors in ({"net": mon}, {"a": mon, "b": _watched_for(4)}, {"a": mon, "b": _watched_for(7)}):
        fig = monitor_module._figure(monitors, None, ("grad_norm", "act_std"))
        try:
            _check_layout(fig)
            panels = [ax for ax in fig.axes if ax.lines]
            assert len(panels) == 4 * len(monitors)
            for ax in panels:
                names = weighted if "grad" in ax.get_title() else with_relu
                if ax.get_title().endswith("over depth"):
                    assert [t.get_text() for t in ax.get_xticklabels()] == names
                else:
                    assert [line.get_label() for line in ax.lines] == names
            bars = [ax for ax in fig.axes if hasattr(ax, "_colorbar")]  # one per over-steps panel, naming its lines
            assert sorted([t.get_text() for t in bar.get_yticklabels()] for bar in bars) == sorted(
                [weighted, with_relu] * len(monitors))
        finally:
            plt.close(fig)


def test_many_layers_are_named_evenly_first_and_last_included():
    names = [f"convs.{k}" for k in range(50)]
    idx, labels = monitor_module._named_ticks(names)
    assert idx[0] == 0 and idx[-1] == 49 and len(idx) <= monitor_module._MAX_NAMED
    assert labels == [names[i] for i in idx] and idx == sorted(set(idx))
    assert monitor_module._named_ticks(names[:5]) == ([0, 1, 2, 3, 4], names[:5])
