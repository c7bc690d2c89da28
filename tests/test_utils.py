"""minidl.utils: metrics, summary, checkpoints, plots; and the examples run end to end."""
import os

import numpy as np
import pytest

import minidl
import minidl.nn.functional as F
from minidl import models, nn, optim, utils

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_metrics():
    pred = np.array([0, 1, 1, 2, 2, 2])
    target = np.array([0, 1, 2, 2, 2, 0])
    assert utils.accuracy(pred, target) == pytest.approx(4 / 6)
    cm = utils.confusion_matrix(pred, target, 3)
    assert cm.tolist() == [[1, 0, 1], [0, 1, 0], [0, 1, 2]]
    m = utils.precision_recall_f1(cm)
    np.testing.assert_allclose(m["precision"], [1.0, 0.5, 2 / 3])
    np.testing.assert_allclose(m["recall"], [0.5, 1.0, 2 / 3])
    assert utils.accuracy(minidl.tensor([[0.1, 0.9], [0.8, 0.2]]), minidl.tensor([1, 1])) == 0.5


def test_summary_counts_parameters_and_flops():
    out = []
    s = utils.summary(models.LeNet5(), (1, 1, 28, 28), print_fn=out.append)
    assert s["trainable_params"] == 61_706 and s["non_trainable_params"] == 0
    conv1 = s["rows"][0]
    assert conv1["output_shape"] == (1, 6, 28, 28) and conv1["flops"] == 2 * 6 * 28 * 28 * 25
    assert "trainable params: 61,706" in out[0]
    m = models.resnet18(num_classes=10, small_input=True)
    m.layer1.requires_grad_(False)
    s = utils.summary(m, (1, 3, 32, 32), print_fn=None)
    assert s["non_trainable_params"] == sum(p.numel() for p in m.layer1.parameters())


@pytest.fixture
def reproducible():
    """Bit-identical results need the reproducible mode: otherwise a product's OpenBLAS threading follows the
    machine's load (DESIGN.md, Threads and determinism), and a CI run once differed in the last bit here."""
    minidl.use_deterministic_algorithms(True)
    yield
    minidl.use_deterministic_algorithms(False)


def test_checkpoint_resumes_training_exactly(tmp_path, reproducible):
    def make():
        minidl.manual_seed(0)
        model = models.LeNet5().double()
        opt = optim.Adam(model.parameters(), lr=1e-3)
        return model, opt, optim.lr_scheduler.StepLR(opt, 2, 0.5)

    rng = np.random.default_rng(0)
    batches = [(rng.normal(size=(4, 1, 28, 28)), rng.integers(0, 10, 4)) for _ in range(6)]

    def train(model, opt, sched, part):
        for x, y in part:
            opt.zero_grad()
            F.cross_entropy(model(minidl.tensor(x)), minidl.tensor(y)).backward()
            opt.step()
            sched.step()
    a = make()
    train(*a, batches)
    b = make()
    train(*b, batches[:3])
    path = str(tmp_path / "ck.npz")
    utils.save_checkpoint(path, *b, epoch=3, note="half")
    c = make()
    info = utils.load_checkpoint(path, *c)
    assert info["epoch"] == 3 and info["extra"] == {"note": "half"}
    train(*c, batches[3:])
    for p, q in zip(a[0].parameters(), c[0].parameters()):
        np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy())
    assert c[2].get_last_lr() == a[2].get_last_lr()
    with open(path, "rb") as f:
        blob = f.read()
    with open(path, "wb") as f:
        f.write(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match="not a readable minidl checkpoint"):
        utils.load_checkpoint(path, c[0])
    with pytest.raises(ValueError, match="(?s)model state does not fit.*Missing key"):
        utils.save_checkpoint(path, nn.Linear(2, 2))
        utils.load_checkpoint(path, c[0])


def test_plots_write_png_files(tmp_path):
    p = utils.plots
    m = models.LeNet5()
    files = [p.plot_curves({"train_loss": [1.0, 0.5], "test_acc": [0.5, 0.8]}, str(tmp_path / "c.png")),
             p.plot_filters(m.conv1.weight, str(tmp_path / "f.png")),
             p.plot_feature_maps(m, m.conv1, minidl.randn(1, 28, 28), str(tmp_path / "m.png")),
             p.plot_confusion_matrix(np.eye(3, dtype=int) * 5, str(tmp_path / "cm.png"), ["a", "b", "c"])]
    for f in files:
        with open(f, "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"


def test_plots_say_what_they_show(tmp_path, monkeypatch):
    """Filters on a diverging scale centred at 0 with a colour bar, each numbered; feature maps next to the input,
    named by the layer's attribute, with a colour bar; curves with readable legend names; the confusion matrix
    with a colour bar."""
    p = utils.plots
    figs = []
    monkeypatch.setattr(p, "_save", lambda fig, path: figs.append(fig) or path)
    m = models.LeNet5()
    p.plot_filters(m.conv1.weight, str(tmp_path / "f.png"))
    p.plot_feature_maps(m, m.conv1, minidl.randn(1, 28, 28), str(tmp_path / "m.png"))
    p.plot_curves({"train_loss": [1.0, 0.5], "test_loss": [1.1, 0.7], "test_acc": [0.5, 0.8]}, str(tmp_path / "c.png"))
    p.plot_confusion_matrix(np.eye(3, dtype=int) * 5, str(tmp_path / "cm.png"), ["a", "b", "c"])
    filters, maps, curves, cm = figs

    def colorbars(fig):
        return [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    images = [im for ax in filters.axes for im in ax.get_images()]
    assert len(images) == 6 and all(im.get_cmap().name == "RdBu_r" for im in images)
    lo, hi = images[0].get_clim()
    assert lo == -hi and hi == float(np.abs(m.conv1.weight.detach().numpy()).max())
    assert [ax.get_title() for ax in filters.axes if ax.get_images()] == [f"filter {i}" for i in range(6)]
    assert len(colorbars(filters)) == 1
    assert "conv1" in maps._suptitle.get_text() and "before the activation" in maps._suptitle.get_text()
    assert any(ax.get_title() == "input" for ax in maps.axes) and len(colorbars(maps)) == 1
    labels = [t.get_text() for ax in curves.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    assert labels == ["training set", "test set", "test set"]
    assert len(colorbars(cm)) == 1
