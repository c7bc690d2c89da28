"""Reliability under real use: threads, checkpoints that fail half-way, bad data files, bad tensor data."""
import json
import os
import threading

import numpy as np
import pytest

import minidl
import minidl.nn as nn
import minidl.nn.functional as F
from minidl import data, models, optim, utils
from minidl.kernels import autotune

from test_data import write_idx


# ---- threads ----------------------------------------------------------------------------------------
def _model(seed):
    minidl.manual_seed(seed)  # the global generator is shared by threads (as torch's): models are made first
    return models.LeNet5()


def _train(model, seed, steps=4):
    """A few SGD steps on seeded random data; returns the parameters."""
    rng = np.random.default_rng(seed)
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(steps):
        x = minidl.tensor(rng.standard_normal((32, 1, 28, 28)).astype(np.float32))
        y = minidl.tensor(rng.integers(0, 10, 32))
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return [p.detach().numpy().copy() for p in model.parameters()]


def test_two_threads_train_two_models_and_get_the_sequential_numbers(monkeypatch):
    """Numba's workqueue pool aborted the process (SIGABRT) when two threads ran parallel kernels at once.
    In reproducible mode (autotune off: fixed algorithms, and products on one OpenBLAS thread whatever the
    machine's load) the numbers equal sequential runs bit for bit."""
    monkeypatch.setattr(autotune, "_enabled", False)
    sequential = [_train(_model(s), s) for s in (1, 2)]
    results, errors = {}, []
    fresh = {s: _model(s) for s in (1, 2)}

    def run(seed):
        try:
            results[seed] = _train(fresh[seed], seed)
        except Exception as exc:
            errors.append(exc)
    threads = [threading.Thread(target=run, args=(s,)) for s in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for seed, expect in zip((1, 2), sequential):
        for a, b in zip(results[seed], expect):
            np.testing.assert_array_equal(a, b)


def test_an_evaluation_thread_under_no_grad_leaves_training_in_another_thread_alone():
    model = models.LeNet5()
    stop = threading.Event()

    def evaluate():
        with minidl.no_grad():
            while not stop.is_set():
                model(minidl.randn(8, 1, 28, 28))
    t = threading.Thread(target=evaluate)
    t.start()
    try:
        for _ in range(3):
            out = model(minidl.randn(8, 1, 28, 28))
            assert out.requires_grad  # grad mode is per thread, as torch
            out.sum().backward()
    finally:
        stop.set()
        t.join()


# ---- checkpoints --------------------------------------------------------------------------------------
def _trio(seed=0, hidden=3):
    minidl.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, 2))
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = optim.lr_scheduler.StepLR(opt, 2)
    model(minidl.randn(5, 4)).sum().backward()
    opt.step()
    sched.step()
    return model, opt, sched


def _snapshot(model, opt, sched):
    return ({k: v.detach().numpy().copy() for k, v in model.state_dict().items()},
            {id(p): {k: np.array(v) for k, v in s.items()} for p, s in opt.state.items()},
            json.dumps([{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]),
            json.dumps(sched.state_dict()))


def _assert_same(a, b):
    for k in a[0]:
        np.testing.assert_array_equal(a[0][k], b[0][k])
    assert a[1].keys() == b[1].keys() and a[2:] == b[2:]
    for i in a[1]:
        for k in a[1][i]:
            np.testing.assert_array_equal(a[1][i][k], b[1][i][k])


def test_load_checkpoint_changes_nothing_when_the_optimizer_part_does_not_fit(tmp_path):
    path = str(tmp_path / "ck.npz")
    saved = _trio(seed=1)
    utils.save_checkpoint(path, *saved, epoch=1)
    model, _, _ = _trio(seed=2)
    other_opt = optim.SGD(list(model.parameters())[:2], lr=0.3, momentum=0.9)  # 2 parameters, the file has 4
    other_opt.state[list(model.parameters())[0]] = {"momentum_buffer": np.ones((3, 4), np.float32)}
    sched = optim.lr_scheduler.StepLR(other_opt, 5)
    before = _snapshot(model, other_opt, sched)
    with pytest.raises(ValueError, match="optimizer state does not fit"):
        utils.load_checkpoint(path, model, other_opt, sched)
    _assert_same(before, _snapshot(model, other_opt, sched))


def test_load_checkpoint_changes_nothing_when_the_scheduler_part_does_not_fit(tmp_path):
    path = str(tmp_path / "ck.npz")
    utils.save_checkpoint(path, *_trio(seed=1), epoch=1)
    model, opt, _ = _trio(seed=2)
    wrong = optim.lr_scheduler.MultiStepLR(opt, [1, 2])  # saves other keys than StepLR
    before = _snapshot(model, opt, wrong)
    with pytest.raises(ValueError, match="scheduler state does not fit"):
        utils.load_checkpoint(path, model, opt, wrong)
    _assert_same(before, _snapshot(model, opt, wrong))


def test_optimizer_load_state_dict_validates_before_clearing_its_state():
    model, opt, _ = _trio()
    state = opt.state_dict()
    state["state"][0]["momentum_buffer"] = np.zeros((7, 7), np.float32)  # the wrong shape
    before = {id(p): {k: np.array(v) for k, v in s.items()} for p, s in opt.state.items()}
    with pytest.raises(ValueError, match="momentum_buffer.*shape"):
        opt.load_state_dict(state)
    assert {id(p): {k: np.array(v) for k, v in s.items()} for p, s in opt.state.items()}.keys() == before.keys()
    for p, s in opt.state.items():
        np.testing.assert_array_equal(s["momentum_buffer"], before[id(p)]["momentum_buffer"])


def _write_raw_checkpoint(path, meta, arrays=None):
    arrays = arrays or {}
    np.savez(path, __meta__=np.array(json.dumps(meta)), __keys__=np.array(list(arrays) or [""])[:len(arrays)],
             **{f"a{i}": v for i, v in enumerate(arrays.values())})


@pytest.mark.parametrize("case", ["list", "missing_array", "missing_epoch", "string_weight", "model_list"])
def test_malformed_checkpoint_metadata_is_a_clear_value_error(tmp_path, case):
    path = str(tmp_path / "bad.npz")
    model = nn.Linear(2, 1)
    good = utils.save_checkpoint(path, model, epoch=0)
    with np.load(good) as f:
        meta = json.loads(str(f["__meta__"]))
        keys = [str(k) for k in f["__keys__"]]
        arrays = {k: f[f"a{i}"] for i, k in enumerate(keys)}
    if case == "list":
        meta = [meta]
    elif case == "missing_array":
        arrays.pop(keys[0])
    elif case == "missing_epoch":
        del meta["epoch"]
    elif case == "string_weight":
        arrays[keys[0]] = np.array(["a", "b"])
    elif case == "model_list":
        meta["model"] = [1, 2]
    _write_raw_checkpoint(path, meta, arrays)
    before = model.weight.detach().numpy().copy()
    with pytest.raises(ValueError, match=r"load_checkpoint: .*bad\.npz"):
        utils.load_checkpoint(path, model)
    np.testing.assert_array_equal(model.weight.detach().numpy(), before)


@pytest.mark.parametrize("model_meta,match", [
    ({"__dict__": [[{"__list__": ["a"]}, 1]]}, r"model: key 0 is a list, which cannot be a dict key"),
    ({"__dict__": 5}, r"model: __dict__ must hold a list, got int"),
    ({"__dict__": [[1]]}, r"model: entry 0 of __dict__ is \[1\], not a \[key, value\] pair"),
    ({"__dict__": [["w", {"__array__": ["x"], "tensor": True}]]}, r"model/0: the array reference \['x'\] is not a "
                                                                  r"string"),
    ({"__dict__": [["w", {"__list__": {"a": 1}}]]}, r"model/0: __list__ must hold a list, got dict"),
    ({"weight": 1}, r"model: an object with no tag where one of \['__array__'"),
    ({"__list__": [], "__tuple__": []}, r"model: an object with tags \['__tuple__', '__list__'\]"),
], ids=["list_key", "dict_not_list", "not_a_pair", "array_ref_list", "list_not_list", "untagged", "two_tags"])
def test_checkpoint_metadata_of_the_wrong_shape_says_which_file_and_how(tmp_path, model_meta, match):
    """Valid JSON that save_checkpoint cannot have written: a ValueError naming the file and the fault, never a raw
    TypeError ('unhashable type: list') from deep inside."""
    path = str(tmp_path / "bad.npz")
    model = nn.Linear(2, 1)
    with np.load(utils.save_checkpoint(path, model, epoch=0)) as f:
        meta = json.loads(str(f["__meta__"]))
        arrays = {str(k): f[f"a{i}"] for i, k in enumerate(f["__keys__"])}
    meta["model"] = model_meta
    _write_raw_checkpoint(path, meta, arrays)
    before = model.weight.detach().numpy().copy()
    with pytest.raises(ValueError, match=rf"^load_checkpoint: .*bad\.npz: {match}"):
        utils.load_checkpoint(path, model)
    np.testing.assert_array_equal(model.weight.detach().numpy(), before)


def test_save_checkpoint_removes_what_a_killed_save_left(tmp_path):
    path = tmp_path / "ck.npz"
    stale = tmp_path / ".ck.npz.tmp-abc123.npz"
    stale.write_bytes(b"half a checkpoint")
    other = tmp_path / ".other.npz.tmp-xyz.npz"  # another checkpoint's save, maybe still running
    other.write_bytes(b"x")
    utils.save_checkpoint(str(path), nn.Linear(2, 1), epoch=0)
    assert sorted(os.listdir(tmp_path)) == [".other.npz.tmp-xyz.npz", "ck.npz"]


def test_save_checkpoint_syncs_the_file_and_its_folder(tmp_path, monkeypatch):
    synced = []
    real = os.fsync

    def spy(fd):
        synced.append(os.path.isdir(f"/proc/self/fd/{fd}") if os.path.exists("/proc/self/fd") else None)
        return real(fd)
    monkeypatch.setattr(os, "fsync", spy)
    utils.save_checkpoint(str(tmp_path / "ck.npz"), nn.Linear(2, 1), epoch=0)
    if os.path.exists("/proc/self/fd"):
        assert synced == [False, True]  # the file, then the folder
    else:
        assert len(synced) >= 1


# ---- MNIST files --------------------------------------------------------------------------------------
def _mnist_folder(tmp_path, labels, images=None):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    n = len(labels)
    images = np.zeros((n, 28, 28), np.uint8) if images is None else images
    write_idx(str(raw / "train-images-idx3-ubyte"), images)
    write_idx(str(raw / "train-labels-idx1-ubyte"), labels)
    return tmp_path


@pytest.mark.parametrize("labels, match", [
    (np.array([1, 200, 3], np.uint8), r"holds label 200 at index 1; labels must lie in \[0, 9\]"),
    (np.array([1, -3, 3], np.int8), r"must hold one uint8 label per image, got int8"),
    (np.array([1.0, 2.5, 3.0], np.float32), r"must hold one uint8 label per image, got float32"),
    (np.array([1.0, np.nan, 3.0], np.float64), r"must hold one uint8 label per image, got float64"),
])
def test_mnist_rejects_labels_outside_the_classes_naming_the_file(tmp_path, labels, match):
    root = _mnist_folder(tmp_path, labels)
    with pytest.raises(ValueError, match="MNIST: .*train-labels-idx1-ubyte " + match):
        data.MNIST(str(root))


def test_mnist_rejects_images_of_the_wrong_size(tmp_path):
    root = _mnist_folder(tmp_path, np.array([1, 2], np.uint8), images=np.zeros((2, 32, 32), np.uint8))
    with pytest.raises(ValueError, match=r"MNIST: .*train-images-idx3-ubyte must hold uint8 images of 28x28"):
        data.MNIST(str(root))


# ---- tensor data ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["abc", ["a", "b"], b"xy", np.array(["1"]), np.array([1 + 2j]), [[1, 2], [3]]])
def test_tensor_from_non_numeric_data_is_a_type_error(bad):
    with pytest.raises(TypeError, match="tensor: cannot make a tensor"):
        minidl.tensor(bad)


# ---- determinism --------------------------------------------------------------------------------------
DETERMINISM_SCRIPT = """
import hashlib, numpy as np, minidl, minidl.nn.functional as F
from minidl import models, optim
minidl.manual_seed(0)
rng = np.random.default_rng(0)
for model in (models.LeNet5(), models.ResidualNet()):
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(3):
        x = minidl.tensor(rng.standard_normal((16, 1, 28, 28)).astype(np.float32))
        opt.zero_grad()
        F.cross_entropy(model(x), minidl.tensor(rng.integers(0, 10, 16))).backward()
        opt.step()
    print(hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in model.parameters())).hexdigest())
"""


def test_training_is_bit_identical_across_processes_with_the_reference_algorithms():
    """What the README promises: the same seed, thread count and MINIDL_AUTOTUNE=0 give the same bits."""
    import subprocess
    import sys
    env = dict(os.environ, MINIDL_AUTOTUNE="0")
    runs = [subprocess.run([sys.executable, "-c", DETERMINISM_SCRIPT], capture_output=True, text=True, env=env,
                           check=True).stdout for _ in range(2)]
    assert runs[0] == runs[1] and len(runs[0].split()) == 2, runs
