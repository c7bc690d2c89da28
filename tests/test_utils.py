"""minidl.utils: metrics, summary, checkpoints, plots; and the examples run end to end."""
import os
import re
import subprocess
import sys

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


def test_checkpoint_resumes_training_exactly(tmp_path):
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


def _run_example(name, *args, tmp_path):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, os.path.join(ROOT, "examples", name), "--no-progress", "--no-download",
                           "--out-dir", str(tmp_path), "--data-dir", str(tmp_path / "nodata"), *args],
                          capture_output=True, text=True, env=env, timeout=900, cwd=tmp_path)


@pytest.mark.slow
def test_mnist_lenet_example_reaches_97_percent_on_the_bundled_subset_with_its_defaults(tmp_path):
    r = _run_example("mnist_lenet.py", tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "using the bundled MNIST subset" in r.stdout
    acc = float(re.search(r"test accuracy: ([\d.]+)%", r.stdout).group(1))
    assert acc >= 97.0, r.stdout
    for suffix in ("_curves.png", "_confusion.png", "_filters.png", "_features.png", ".ckpt.npz"):
        assert os.path.isfile(tmp_path / f"lenet5_mnist{suffix}")


@pytest.mark.parametrize("name", ["mnist_inception.py", "mnist_resnet.py"])
def test_other_examples_run(name, tmp_path):
    r = _run_example(name, "--epochs", "1", tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert float(re.search(r"test accuracy: ([\d.]+)%", r.stdout).group(1)) > 50


def test_vanishing_gradients_example_shows_the_gap(tmp_path):
    r = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "vanishing_gradients.py"), "--depth", "12",
                        "--steps", "60", "--out-dir", str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    norms = {m.group(1): float(m.group(2)) for m in re.finditer(r"(\w+)\s+depth 12: gradient norm of layer 1 / layer "
                                                                r"12 at init = ([\d.e+-]+)", r.stdout)}
    assert norms["plain"] < 1e-3 * norms["residual"], r.stdout


def test_prune_example_prunes_keeps_zeros_through_fine_tuning_and_plots(tmp_path):
    r = _run_example("prune_lenet.py", "--epochs", "3", "--sparsity", "0.5", "0.9", tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    dense = float(re.search(r"dense LeNet-5: test accuracy ([\d.]+)%", r.stdout).group(1))
    rows = re.findall(r"sparsity\s+(\d+)%: (\d+)/(\d+) weights pruned \((\d+) zeros after remove\); accuracy ([\d.]+)% "
                      r"pruned, ([\d.]+)% after", r.stdout)
    assert [int(s) for s, *_ in rows] == [50, 90], r.stdout
    for s, pruned, total, zeros, _, _ in rows:
        assert int(pruned) == round(int(s) / 100 * int(total)) and int(zeros) >= int(pruned)
    assert float(rows[0][4]) > dense - 5 and float(rows[1][5]) > 80, r.stdout
    with open(tmp_path / "lenet5_pruning_mnist.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def _fashion_mnist_installed():
    try:
        minidl.data.FashionMNIST("data", train=False)
        return True
    except (minidl.data.DatasetNotFoundError, ValueError):
        return False


@pytest.mark.skipif(not _fashion_mnist_installed(), reason="needs Debian's dataset-fashion-mnist package "
                                                           "(apt-get install dataset-fashion-mnist)")
def test_finetune_example_freezes_the_body_and_trains_a_new_head(tmp_path):
    r = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "finetune.py"), "--no-download", "--out-dir",
                        str(tmp_path), "--data-dir", str(tmp_path / "nodata"), "--source-size", "6000",
                        "--source-epochs", "1", "--epochs", "2"], capture_output=True, text=True, timeout=900,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    base = float(re.search(r"base: .*test accuracy ([\d.]+)%", r.stdout).group(1))
    tuned = re.search(r"fine-tuned: .*, (\d+) of (\d+) parameters trained; body unchanged: (\w+)\): test accuracy "
                      r"([\d.]+)%", r.stdout)
    assert base > 60 and tuned is not None, r.stdout
    assert tuned.group(3) == "True" and int(tuned.group(1)) == 400 * 120 + 120 + 120 * 84 + 84 + 84 * 10 + 10
    assert float(tuned.group(4)) > 50, r.stdout
    state = minidl.load(str(tmp_path / "lenet5_fashion_to_mnist.pt"))
    models.LeNet5().load_state_dict(state)
