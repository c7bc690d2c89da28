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


def _rows(s):
    return {r["name"]: r for r in s["rows"]}


def test_summary_receptive_fields_of_lenet5_by_hand():
    """LeNet-5 (conv 5x5 pad 2, max pool 2, conv 5x5, max pool 2, three linear layers), worked by hand with
    size' = size + (k - 1) jump, jump' = jump stride, start' = start + ((k - 1) / 2 - pad) jump:
    conv1 5, jump 1, start 0; the functional pool: 6, jump 2, start 0.5; conv2 6 + 4 * 2 = 14, jump 2,
    start 0.5 + 2 * 2 = 4.5; then the linear layers see everything."""
    out = []
    rows = _rows(utils.summary(models.LeNet5(), (2, 1, 28, 28), print_fn=out.append))
    assert [(rows[n]["rf"], rows[n]["jump"], rows[n]["stride"], rows[n]["start"]) for n in ("conv1", "conv2")] == \
        [("5", "1", "1", "0"), ("14", "2", "1", "4.5")]
    assert rows["fc1"]["rf"] == "all" and rows["fc3"]["rf"] == "all"
    assert rows["conv1"]["activation_bytes"] == 2 * 6 * 28 * 28 * 4
    header = out[0].splitlines()[1].split()
    assert header == ["layer", "type", "output", "shape", "params", "rf", "stride", "jump", "start", "MFLOPs", "act.",
                      "KiB"]


def test_summary_receptive_fields_of_the_courses_inception_block_by_hand():
    """InceptionNet (the course's): conv1 5x5 -> 5 (start 2); max pool 2 -> 6, jump 2, start 2.5. In the block: the
    1x1 branch keeps 6; 5x5 pad 2: 6 + 4 * 2 = 14; 3x3 pad 1 twice: 10, then 14; avg pool 3x3 pad 1 then 1x1: 10.
    conv2 5x5 on the concatenation (the widest, 14): 22, start 2.5 + 2 * 2 = 6.5; pool 2: 24, jump 4; the second
    block's 5x5 branch 24 + 4 * 4 = 40."""
    rows = _rows(utils.summary(models.InceptionNet(), (1, 1, 28, 28), print_fn=None))
    got = {n: (rows[n]["rf"], rows[n]["jump"], rows[n]["start"]) for n in rows}
    assert got["conv1"] == ("5", "1", "2")
    assert got["incep1.branch1x1"] == ("6", "2", "2.5") and got["incep1.branch5x5_2"] == ("14", "2", "2.5")
    assert got["incep1.branch3x3_2"][0] == "10" and got["incep1.branch3x3_3"][0] == "14"
    assert got["incep1.branch_pool"][0] == "10"
    assert got["conv2"] == ("22", "2", "6.5")
    assert got["incep2.branch1x1"] == ("24", "4", "7.5") and got["incep2.branch5x5_2"][0] == "40"
    assert got["fc"][0] == "all"


def test_summary_fields_of_strided_dilated_1d_and_global_layers():
    m = nn.Sequential(nn.Conv2d(1, 2, 3, stride=2, padding=1, dilation=2), nn.ReLU(), nn.MaxPool2d(3, 2),
                      nn.Identity(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    rows = utils.summary(m, (1, 1, 32, 32), print_fn=None)["rows"]
    assert (rows[0]["rf"], rows[0]["jump"], rows[0]["start"]) == ("5", "2", "1")  # span 5, start (5-1)/2 - 1
    assert rows[1]["rf"] == "5"  # relu keeps it
    assert (rows[2]["rf"], rows[2]["jump"], rows[2]["stride"]) == ("9", "4", "2")  # 5 + 2 * 2
    assert rows[4]["rf"] == "all" and rows[5]["rf"] == "all"
    seq = nn.Sequential(nn.Conv1d(3, 4, 5, padding=2), nn.Conv1d(4, 4, 3, stride=2))
    r = utils.summary(seq, (1, 3, 50), print_fn=None)["rows"]
    assert (r[0]["rf"], r[1]["rf"], r[1]["jump"]) == ("5", "7", "2")
    wide = nn.Conv2d(1, 1, (3, 1))
    assert utils.summary(wide, (1, 1, 8, 8), print_fn=None)["rows"][0]["rf"] == "3x1"
    class UpNet(nn.Module):  # a stride-2 conv, nearest upsampling by 2, a conv, bilinear by 2, a crop, a conv
        def __init__(self):
            super().__init__()
            self.down, self.up, self.up2 = (nn.Conv2d(1, 2, 3, stride=2, padding=1), nn.Conv2d(2, 2, 3, padding=1),
                                            nn.Conv2d(2, 2, 3, padding=1))

        def forward(self, x):
            y = self.up(F.interpolate(self.down(x), scale_factor=2, mode="nearest"))
            return self.up2(F.interpolate(y, scale_factor=2, mode="bilinear")[:, :, 2:-2, 2:-2])
    up = _rows(utils.summary(UpNet(), (1, 1, 16, 16), print_fn=None))  # upsampling halves the jump; 3 + 2 * 1;
    assert [(up[n]["rf"], up[n]["jump"], up[n]["start"]) for n in ("down", "up", "up2")] == \
        [("3", "2", "0"), ("5", "1", "0"), ("6", "0.5", "1")]  # 5 + 2 * 0.5, the crop moves the start by 2 * 0.5
    shuffle = _rows(utils.summary(models.shufflenet_v2_x1_0(num_classes=10), (1, 3, 32, 32), print_fn=None))
    assert shuffle["conv5.0"]["rf"] not in ("", "all")  # followed through the channel shuffle's 5-D view


def test_summary_flops_of_convolutions_and_products_equal_torchs_flop_counter():
    """torch.utils.flop_counter counts convolutions and matrix products (a multiply-add as 2) on the torch twins of
    LeNet-5 and InceptionNet; summary's 'torch_counted_flops' must equal it."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from minidl.testing import torch_twins
    for ours, twin in ((models.LeNet5(), torch_twins.LeNet5()), (models.InceptionNet(), torch_twins.InceptionNet())):
        s = utils.summary(ours, (4, 1, 28, 28), print_fn=None)
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            twin(torch.zeros(4, 1, 28, 28))
        assert s["torch_counted_flops"] == counter.get_total_flops()
        assert s["flops"] >= s["torch_counted_flops"]


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
