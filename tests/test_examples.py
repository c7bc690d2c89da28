"""The examples as a newcomer runs them: training end to end, run folders, Ctrl-C and --resume, refused flags,
--help, and each sibling script on a short schedule (their defaults run in the exhaustive run)."""
import glob
import os
import re
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

import minidl
from minidl import models

import suite

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")
sys.path.insert(0, EXAMPLES)
import _common  # noqa: E402


def _cmd(name, *args, tmp_path):
    (tmp_path / "nodata").mkdir(exist_ok=True)  # an empty data folder: the bundled subset
    return [sys.executable, os.path.join(EXAMPLES, name), "--no-download", "--out-dir", str(tmp_path / "runs"),
            "--data-dir", str(tmp_path / "nodata"), *args]


def _run_example(name, *args, tmp_path, no_progress=True):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    extra = ("--no-progress",) if no_progress else ()
    return subprocess.run(_cmd(name, *extra, *args, tmp_path=tmp_path), capture_output=True, text=True, env=env,
                          timeout=900, cwd=tmp_path)


def _accuracy(stdout):
    return float(re.search(r"test accuracy: ([\d.]+)%", stdout).group(1))


def test_mnist_lenet_trains_into_a_run_folder_of_its_own(tmp_path):
    r = _run_example("mnist_lenet.py", "--epochs", "2", "--train-size", "3000", tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "using the bundled MNIST subset" in r.stdout
    assert _accuracy(r.stdout) > 85, r.stdout
    # each epoch line says what its times measure
    assert re.search(r"epoch  2/2  train loss [\d.]+ acc [\d.]+  test loss [\d.]+ acc [\d.]+  \(train [\d.]+ s, "
                     r"test [\d.]+ s\)", r.stdout), r.stdout
    folder, = glob.glob(str(tmp_path / "runs" / "lenet5_mnist_*"))
    assert re.fullmatch(r"lenet5_mnist_\d{8}-\d{6}", os.path.basename(folder))
    for f in ("checkpoint.npz", "curves.png", "confusion.png", "filters.png", "features.png"):
        assert os.path.isfile(os.path.join(folder, f)), f
    state = minidl.utils.load_checkpoint(os.path.join(folder, "checkpoint.npz"), models.LeNet5())
    assert state["epoch"] == 2 and abs(100 * state["extra"]["test_acc"] - _accuracy(r.stdout)) < 1e-9
    assert not os.listdir(tmp_path / "nodata"), "the failed download left something behind"
    # a second run gets a folder of its own: the first run's checkpoint is not overwritten
    r2 = _run_example("mnist_lenet.py", "--epochs", "1", "--train-size", "256", tmp_path=tmp_path)
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert len(glob.glob(str(tmp_path / "runs" / "lenet5_mnist_*"))) == 2
    assert minidl.utils.load_checkpoint(os.path.join(folder, "checkpoint.npz"))["epoch"] == 2


def test_run_folders_of_runs_started_in_the_same_second_differ(tmp_path):
    a, b = _common.run_folder(str(tmp_path), "x"), _common.run_folder(str(tmp_path), "x")
    assert a != b and os.path.isdir(a) and os.path.isdir(b)


@suite.exhaustive
def test_mnist_lenet_reaches_97_percent_on_the_bundled_subset_with_its_defaults(tmp_path):
    r = _run_example("mnist_lenet.py", tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert _accuracy(r.stdout) >= 97.0, r.stdout


class _StopsAt(models.LeNet5):
    """LeNet-5 whose training forward raises KeyboardInterrupt at one step: Ctrl-C at a known moment."""
    calls = 0
    stop_at = None

    def forward(self, x):
        if self.training:
            type(self).calls += 1
            if type(self).calls == self.stop_at:
                raise KeyboardInterrupt
        return super().forward(x)


def test_an_interrupted_then_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(tmp_path, capsys):
    """... also when the progress bars were on in one part and off in another: bars change no number."""
    (tmp_path / "nodata").mkdir()
    flags = ["--epochs", "3", "--train-size", "512", "--batch-size", "64", "--no-download", "--data-dir",
             str(tmp_path / "nodata")]
    p = _common.parser("test", epochs=3, lr=3e-3)
    _common.run(models.LeNet5, p.parse_args(flags + ["--out-dir", str(tmp_path / "a")]), "lenet5")  # bars on
    whole, = glob.glob(str(tmp_path / "a" / "*" / "checkpoint.npz"))

    _StopsAt.calls, _StopsAt.stop_at = 0, 8 + 3  # 8 steps an epoch: Ctrl-C in the middle of epoch 2
    with pytest.raises(SystemExit) as stop:
        _common.run(_StopsAt, p.parse_args(flags + ["--no-progress", "--out-dir", str(tmp_path / "b")]), "lenet5")
    assert stop.value.code == 130
    last = capsys.readouterr().out.strip().splitlines()[-1]
    ckpt, = glob.glob(str(tmp_path / "b" / "*" / "checkpoint.npz"))
    assert last == (f"interrupted in epoch 2/3; epoch 1 is saved in {ckpt}; resume with: "
                    f"{_common._resume_command(ckpt)}")
    assert minidl.utils.load_checkpoint(ckpt)["epoch"] == 1

    _common.run(models.LeNet5, p.parse_args(["--resume", ckpt, "--no-download", "--data-dir",
                                             str(tmp_path / "nodata")]), "lenet5")  # bars on again
    assert "resuming" in capsys.readouterr().out
    a, b = models.LeNet5(), models.LeNet5()
    ra, rb = minidl.utils.load_checkpoint(whole, a), minidl.utils.load_checkpoint(ckpt, b)
    assert ra["epoch"] == rb["epoch"] == 3
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        np.testing.assert_array_equal(va.numpy(), vb.numpy(), err_msg=k)
    assert ra["extra"]["history"]["train_loss"] == rb["extra"]["history"]["train_loss"]


def test_compile_flag_trains_to_the_weights_of_the_eager_run_and_replays(tmp_path, monkeypatch):
    """--compile: minidl.compile(model); training and test batches replay, and the run ends with the eager run's
    weights (reproducible mode), in a checkpoint of the plain model."""
    (tmp_path / "nodata").mkdir()
    flags = ["--epochs", "3", "--train-size", "512", "--batch-size", "64", "--no-download", "--no-progress",
             "--data-dir", str(tmp_path / "nodata")]
    p = _common.parser("test", epochs=3, lr=3e-3)
    made, compile_ = [], minidl.compile
    monkeypatch.setattr(_common.minidl, "compile", lambda model: made.append(compile_(model)) or made[-1])
    minidl.use_deterministic_algorithms(True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", minidl.compiler.CompileWarning)
            for name, extra in (("eager", []), ("compiled", ["--compile"])):
                _common.run(models.LeNet5, p.parse_args(flags + extra + ["--out-dir", str(tmp_path / name)]), "lenet5")
    finally:
        minidl.use_deterministic_algorithms(False)
    assert made and made[0]._compiled.replays >= 8 * 3 - 3  # every training step after the first three, and tests
    a, b = models.LeNet5(), models.LeNet5()
    for model, name in ((a, "eager"), (b, "compiled")):
        minidl.utils.load_checkpoint(glob.glob(str(tmp_path / name / "*" / "checkpoint.npz"))[0], model)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        np.testing.assert_array_equal(va.numpy(), vb.numpy(), err_msg=k)


def _in_a_terminal(cmd, cwd, width=150):
    """Run ``cmd`` with a pseudo-terminal of ``width`` columns as its stdin, stdout and stderr (so tqdm draws as it
    does for a user); returns the exit status and the raw bytes written, decoded."""
    import fcntl
    import pty
    import struct
    import termios
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, width, 0, 0))
    env = dict(os.environ, PYTHONUNBUFFERED="1", TQDM_MININTERVAL="0", COLUMNS=str(width))  # a bar every step
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env, start_new_session=True)
    os.close(slave)
    raw = b""
    try:
        while True:
            try:
                chunk = os.read(master, 1 << 16)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            raw += chunk
        return proc.wait(timeout=600), raw.decode("utf-8", "replace")
    finally:
        proc.kill()
        os.close(master)


def _screen(raw):
    """The lines a terminal shows after ``raw`` (its whole scrollback): carriage returns, newlines, cursor-up and
    erase-in-line applied; other escape sequences ignored."""
    lines, row, col = [""], 0, 0
    for m in re.finditer(r"\x1b\[(\d*)([A-Za-z])|\x1b[^\[]|\r|\n|[^\x1b\r\n]+", raw):
        text = m.group(0)
        if m.group(2) == "A":
            row = max(0, row - int(m.group(1) or 1))
        elif m.group(2) == "K":
            lines[row] = "" if m.group(1) == "2" else lines[row][:col]
        elif text == "\r":
            col = 0
        elif text == "\n":
            row += 1
            lines.extend([""] * (row + 1 - len(lines)))
        elif not text.startswith("\x1b"):
            line = lines[row].ljust(col)
            lines[row] = line[:col] + text + line[col + len(text):]
            col += len(text)
    return [line.rstrip() for line in lines]


def test_the_terminal_transcript_with_progress_bars_reads_cleanly(tmp_path):
    """In a real pseudo-terminal: every epoch line stands on a line of its own (never glued to a bar), no bar is
    left behind, and every bar drawn with a loss shows the steps done (not a stale 0/N)."""
    code, raw = _in_a_terminal(_cmd("mnist_lenet.py", "--epochs", "2", "--train-size", "256", "--batch-size", "32",
                                    tmp_path=tmp_path), tmp_path)
    assert code == 0, raw[-3000:]
    screen = _screen(raw)
    epoch_lines = [ln for ln in screen if "train loss" in ln]
    assert len(epoch_lines) == 2, screen
    for k, line in enumerate(epoch_lines, 1):
        assert re.fullmatch(rf"epoch  {k}/2  train loss [\d.]+ acc [\d.]+  test loss [\d.]+ acc [\d.]+  \(train "
                            r"[\d.]+ s, test [\d.]+ s\)", line), screen
    assert not [ln for ln in screen if "it/s" in ln or "%|" in ln], screen  # the bars are gone
    assert re.match(r"test accuracy: [\d.]+%", [ln for ln in screen if ln][-2]), screen
    renders = [r for r in re.split(r"[\r\n]", raw) if "loss=" in r]
    counts = [int(re.search(r"\|\s*(\d+)/8 \[", r).group(1)) for r in renders]
    assert counts and min(counts) >= 1 and counts.count(8) == 2, renders


def test_ctrl_c_prints_one_line_naming_the_checkpoint_and_the_resume_command(tmp_path):
    proc = subprocess.Popen(_cmd("mnist_lenet.py", "--no-progress", "--epochs", "50", "--train-size", "2000",
                                 tmp_path=tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path, env=dict(os.environ, PYTHONUNBUFFERED="1"),
                            # as from a terminal: pytest-xdist's workers ignore SIGINT, and children inherit that
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 600
        while not glob.glob(str(tmp_path / "runs" / "*" / "checkpoint.npz")) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, out[-2000:] + err[-2000:]
    assert "Traceback" not in err and "Traceback" not in out, err
    last = out.strip().splitlines()[-1]
    m = re.fullmatch(r"interrupted in epoch (\d+)/50; epoch (\d+) is saved in (\S+); resume with: python \S+ "
                     r"--resume (\S+)", last)
    assert m and int(m.group(1)) == int(m.group(2)) + 1 and m.group(3) == m.group(4), last
    assert minidl.utils.load_checkpoint(os.path.join(tmp_path, m.group(3)))["epoch"] == int(m.group(2))


@pytest.mark.parametrize("flags, message", [
    (["--epochs", "0"], "argument --epochs: must be positive, got 0"),
    (["--batch-size", "-3"], "argument --batch-size: must be positive, got -3"),
    (["--lr", "0"], "argument --lr: must be positive, got 0"),
    (["--epochs", "two"], "argument --epochs: expected a positive int, got 'two'"),
    (["--device", "gpu"], "argument --device: unknown device 'gpu': expected one of cpu, cuda, cuda:N"),
    (["--resume", "nowhere.npz"], "--resume nowhere.npz: no such file"),
    (["--train-size", "999999"], "--train-size 999999: MNIST has 60000 training images"),
    (["--train-size", "60001", "--dataset", "fashion-mnist"],
     "--train-size 60001: Fashion-MNIST has 60000 training images"),
])
def test_impossible_flags_give_one_line_before_any_data_is_loaded(flags, message, tmp_path):
    r = _run_example("mnist_lenet.py", *flags, tmp_path=tmp_path)
    assert r.returncode == 2 and r.stdout == "", r.stdout
    assert r.stderr == f"mnist_lenet.py: error: {message} (see --help)\n"


def test_a_data_dir_or_out_dir_that_cannot_serve_is_refused_before_any_data_is_loaded(tmp_path):
    (tmp_path / "a-file").write_text("")
    for script in ("mnist_lenet.py", "finetune.py"):  # one parser checks them all: two scripts stand for them
        r = subprocess.run([sys.executable, os.path.join(EXAMPLES, script), "--data-dir", str(tmp_path / "none")],
                           capture_output=True, text=True, cwd=tmp_path)
        assert r.returncode == 2 and r.stdout == "", r.stdout
        assert r.stderr == (f"{script}: error: --data-dir {tmp_path / 'none'}: no such folder (create it to download "
                            "the files into it) (see --help)\n")
    for script in ("prune_lenet.py", "see_inside.py"):
        out = tmp_path / "a-file" / "runs"
        r = subprocess.run([sys.executable, os.path.join(EXAMPLES, script), "--out-dir", str(out)],
                           capture_output=True, text=True, cwd=tmp_path)
        assert r.returncode == 2 and r.stdout == "", r.stdout
        assert r.stderr == (f"{script}: error: --out-dir {out}: {tmp_path / 'a-file'} is a file, not a folder "
                            "(see --help)\n")


def test_a_train_size_beyond_the_bundled_subset_names_its_size_before_converting_images(tmp_path):
    r = _run_example("mnist_lenet.py", "--train-size", "8001", tmp_path=tmp_path)
    assert r.returncode == 2 and r.stdout == "", r.stdout
    assert r.stderr == ("mnist_lenet.py: error: --train-size 8001: the bundled MNIST subset (full MNIST was not "
                        "found) has 8000 training images (see --help)\n")
    assert not os.path.exists(tmp_path / "runs")


def test_fashion_mnist_missing_says_so_once(tmp_path):
    if _fashion_mnist_installed():
        pytest.skip("Fashion-MNIST is installed here")
    r = _run_example("mnist_lenet.py", "--dataset", "fashion-mnist", tmp_path=tmp_path)
    lines = r.stderr.splitlines()
    assert r.returncode == 1 and r.stdout == "" and len(lines) == 2, r.stderr
    assert lines[0].startswith("FashionMNIST is not available: train-images-idx3-ubyte[.gz] not found in ")
    assert "download=True" not in r.stderr and lines[1].startswith("Install Debian's dataset-fashion-mnist")


@pytest.mark.skipif(minidl.cuda.is_available(), reason="a GPU is usable here")
def test_device_cuda_without_a_gpu_gives_the_install_command_before_any_data_is_loaded(tmp_path):
    r = _run_example("mnist_lenet.py", "--device", "cuda", tmp_path=tmp_path)
    assert r.returncode == 2 and r.stdout == ""
    assert len(r.stderr.splitlines()) == 1 and minidl.backend.GPU_INSTALL in r.stderr, r.stderr
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    assert minidl.backend.GPU_INSTALL in readme  # one command: the README's, the example's and minidl's own


@pytest.mark.parametrize("script", ["mnist_lenet.py", "mnist_inception.py", "mnist_resnet.py", "prune_lenet.py",
                                    "finetune.py", "vanishing_gradients.py", "see_inside.py"])
def test_help_shows_every_default_and_keeps_usage_lines(script):
    r = subprocess.run([sys.executable, os.path.join(EXAMPLES, script), "--help"], capture_output=True, text=True,
                       env=dict(os.environ, COLUMNS="200"))
    assert r.returncode == 0, r.stderr
    options = r.stdout.split("options:")[1]
    entries = re.split(r"\n  (?=-)", options)[1:]
    assert entries
    for entry in entries:
        if entry.startswith("-h, --help"):
            continue
        assert "default" in entry, f"{script}: no default shown for {entry.split()[0]}"
    doc_lines = [ln for ln in r.stdout.splitlines() if ln.strip().startswith(f"python examples/{script}")]
    assert doc_lines, f"{script}: the usage examples were reflowed into a paragraph"


def test_scripts_offer_only_the_flags_they_use_and_share_the_others():
    helps = {script: subprocess.run([sys.executable, os.path.join(EXAMPLES, script), "--help"], capture_output=True,
                                    text=True, env=dict(os.environ, COLUMNS="200")).stdout
             for script in ("prune_lenet.py", "finetune.py", "see_inside.py", "vanishing_gradients.py")}
    for flag in ("--distributed", "--resume", "--monitor"):
        assert flag not in helps["prune_lenet.py"]
    for script, text in helps.items():  # every example takes --no-progress, --seed, --out-dir, --batch-size
        for flag in ("--no-progress", "--seed", "--out-dir", "--batch-size"):
            assert flag in text, (script, flag)


def test_the_sibling_examples_run(tmp_path):
    for name in ("mnist_inception.py", "mnist_resnet.py"):
        r = _run_example(name, "--epochs", "2", "--train-size", "512", tmp_path=tmp_path)
        assert r.returncode == 0, r.stderr[-3000:]
        assert _accuracy(r.stdout) > 40, r.stdout  # 10% is chance; it learns (the defaults: the exhaustive run)


@suite.exhaustive
@pytest.mark.parametrize("name", ["mnist_inception.py", "mnist_resnet.py"])
def test_the_sibling_examples_learn_in_one_epoch(name, tmp_path):
    r = _run_example(name, "--epochs", "1", tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert _accuracy(r.stdout) > 50


def test_vanishing_gradients_example_shows_the_gap(tmp_path):
    """Monitor records both nets; at the first step the plain net's input-side gradient is orders of magnitude below
    its output side's and the residual net's, which is about as large at every depth; one figure shows it."""
    r = subprocess.run([sys.executable, os.path.join(EXAMPLES, "vanishing_gradients.py"), "--depth", "12",
                        "--steps", "5", "--out-dir", str(tmp_path), "--no-progress"], capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    norms = {m.group(1): (float(m.group(2)), float(m.group(3))) for m in re.finditer(
        r"(\w+)\s+depth 12: weight-gradient norm of conv 1 / conv 12 at the first step ([\d.e+-]+) / ([\d.e+-]+)",
        r.stdout)}
    assert norms["plain"][0] < 1e-3 * norms["residual"][0], r.stdout
    assert norms["plain"][0] < 1e-3 * norms["plain"][1] and norms["residual"][0] > 0.1 * norms["residual"][1]
    with open(tmp_path / "vanishing_gradients.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_the_tour_of_instruments_writes_its_files(tmp_path):
    r = subprocess.run([sys.executable, os.path.join(EXAMPLES, "see_inside.py"), "--steps", "5", "--out-dir",
                        str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    for name in ("summary.txt", "graph.png", "profile.txt", "trace.json", "monitor.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert "ConvolutionBackward0" in (tmp_path / "profile.txt").read_text()
    assert "conv2  Conv2d            (64, 16, 10, 10)         2,416      14       1     2    4.5" in r.stdout


def test_the_monitor_flag_writes_the_monitor_figure(tmp_path):
    r = _run_example("mnist_lenet.py", "--epochs", "1", "--train-size", "256", "--monitor", tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    png, = glob.glob(str(tmp_path / "runs" / "lenet5_mnist_*" / "monitor.png"))
    assert "monitor.png" in r.stdout.splitlines()[-1]


def test_prune_example_prunes_keeps_zeros_through_fine_tuning_and_plots(tmp_path):
    r = _run_example("prune_lenet.py", "--epochs", "2", "--train-size", "3000", "--sparsity", "0.5", "0.9",
                     tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    dense = float(re.search(r"dense LeNet-5: test accuracy ([\d.]+)%", r.stdout).group(1))
    rows = re.findall(r"sparsity\s+(\d+)%: (\d+)/(\d+) weights pruned \((\d+) zeros after remove\); accuracy ([\d.]+)% "
                      r"pruned, ([\d.]+)% after", r.stdout)
    assert [int(s) for s, *_ in rows] == [50, 90], r.stdout
    for s, pruned, total, zeros, _, _ in rows:
        assert int(pruned) == round(int(s) / 100 * int(total)) and int(zeros) >= int(pruned)
    assert float(rows[0][4]) > dense - 5 and float(rows[1][5]) > 70, r.stdout
    # each layer by its name in the model, as the feature-map and monitor plots name them
    layers = re.findall(r"fine-tuning  \[(.*)\]", r.stdout)
    assert len(layers) == 2 and all(re.fullmatch(r"conv1 \d+%, conv2 \d+%, fc1 \d+%, fc2 \d+%, fc3 \d+%", t)
                                    for t in layers), r.stdout
    png, = glob.glob(str(tmp_path / "runs" / "lenet5_pruning_mnist_*" / "accuracy_vs_sparsity.png"))
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def _fashion_mnist_installed():
    try:
        minidl.data.FashionMNIST("data", train=False)
        return True
    except (minidl.data.DatasetNotFoundError, ValueError):
        return False


def _finetune(tmp_path, data_dir):
    os.makedirs(data_dir, exist_ok=True)
    r = subprocess.run([sys.executable, os.path.join(EXAMPLES, "finetune.py"), "--no-download", "--out-dir",
                        str(tmp_path), "--data-dir", data_dir, "--source-size", "3000", "--source-epochs", "1",
                        "--epochs", "2"], capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    base = float(re.search(r"base: .*test accuracy ([\d.]+)%", r.stdout).group(1))
    tuned = re.search(r"fine-tuned: .*, (\d+) of (\d+) parameters trained; body unchanged: (\w+)\): test accuracy "
                      r"([\d.]+)%", r.stdout)
    assert base > 60 and tuned is not None, r.stdout
    assert tuned.group(3) == "True" and int(tuned.group(1)) == 400 * 120 + 120 + 120 * 84 + 84 + 84 * 10 + 10
    assert float(tuned.group(4)) > 25, r.stdout
    models.LeNet5().load_state_dict(minidl.load(str(tmp_path / "lenet5_finetuned.pt")))
    return r.stdout


def test_finetune_example_without_fashion_mnist_uses_digits_0_4_then_5_9_and_says_so(tmp_path):
    # an empty data folder, and no Debian package folder: the fallback
    if any(os.path.isdir(f) for f in minidl.data.FashionMNIST.system_folders) and _fashion_mnist_installed():
        pytest.skip("Fashion-MNIST is installed here; its own test runs the example on it")
    out = _finetune(tmp_path, str(tmp_path / "nodata"))
    assert "instead the net is pretrained on the bundled MNIST digits 0-4 and fine-tuned on the digits 5-9" in out
    assert "base: LeNet-5 on MNIST digits 0-4" in out and "from scratch: LeNet-5 on MNIST digits 5-9" in out


@pytest.mark.skipif(not _fashion_mnist_installed(), reason="needs Debian's dataset-fashion-mnist package "
                                                           "(apt-get install dataset-fashion-mnist)")
def test_finetune_example_freezes_the_body_and_trains_a_new_head(tmp_path):
    out = _finetune(tmp_path, str(tmp_path / "nodata"))
    assert "base: LeNet-5 on Fashion-MNIST" in out


@suite.exhaustive  # 9 s; the attention modules themselves are tests/test_attention.py's
def test_the_attention_example_learns_and_draws_where_it_looks(tmp_path):
    """examples/attention_digits.py, one epoch: a tiny Vision Transformer (nn.MultiheadAttention blocks) learns the
    bundled digits well above chance and draws its attention maps (its default 6 epochs: 92.4%)."""
    r = subprocess.run([sys.executable, os.path.join(EXAMPLES, "attention_digits.py"), "--epochs", "1",
                        "--no-progress", "--out-dir", str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    accuracy = float(re.findall(r"test accuracy ([\d.]+)%", r.stdout)[-1])
    assert accuracy > 50, r.stdout
    picture = re.search(r"attention maps: (\S+)", r.stdout).group(1)
    with open(picture, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
