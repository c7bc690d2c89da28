"""minidl.save / minidl.load in torch's file format: what minidl writes, torch.load(weights_only=True) reads, and
what torch.save writes, minidl.load reads, without torch and without running anything from the file."""
import collections
import io
import os
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch

import minidl
from minidl import serialization
from minidl.serialization import _writer
from minidl.utils import checkpoint

DTYPES = [(np.float32, torch.float32), (np.float64, torch.float64), (np.float16, torch.float16),
          (np.int64, torch.int64), (np.int32, torch.int32), (np.int8, torch.int8), (np.uint8, torch.uint8),
          (np.bool_, torch.bool)]


def _values(np_dtype, shape, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * 10).astype(np_dtype) if np_dtype != np.bool_ else rng.random(shape) > 0.5


def _torch_equal(got, want):
    assert isinstance(got, torch.Tensor) and got.dtype == want.dtype and tuple(got.shape) == tuple(want.shape)
    assert torch.equal(got, want)


@pytest.mark.parametrize("np_dtype,torch_dtype", DTYPES, ids=[str(t) for _, t in DTYPES])
def test_minidl_save_is_read_by_torch_load_weights_only(tmp_path, np_dtype, torch_dtype):
    base = _values(np_dtype, (3, 4))
    obj = {"matrix": minidl.tensor(base), "scalar": minidl.tensor(base[1, 2, ...]), "empty": minidl.tensor(base[:0]),
           "transposed": minidl.tensor(base).t(), "array": base[:, ::2]}
    path = tmp_path / "x.pt"
    minidl.save(obj, path)
    for mmap in (False, True):
        got = torch.load(path, weights_only=True, mmap=mmap)
        assert list(got) == list(obj)
        _torch_equal(got["matrix"], torch.from_numpy(base.copy()))
        _torch_equal(got["scalar"], torch.from_numpy(base[1, 2, ...].copy()))
        _torch_equal(got["empty"], torch.zeros(0, 4, dtype=torch_dtype))
        _torch_equal(got["transposed"], torch.from_numpy(base.T.copy()))
        _torch_equal(got["array"], torch.from_numpy(base[:, ::2].copy()))  # a NumPy array comes back a tensor
    back = minidl.load(path)
    for k, v in obj.items():
        want = v.numpy() if isinstance(v, minidl.Tensor) else v
        assert isinstance(back[k], minidl.Tensor) and back[k].dtype == want.dtype and back[k].shape == want.shape
        np.testing.assert_array_equal(back[k].numpy(), want)


def test_a_state_dict_moves_to_torch_in_one_line_and_back(tmp_path):
    model = minidl.nn.Sequential(minidl.nn.Conv2d(1, 2, 3), minidl.nn.BatchNorm2d(2), minidl.nn.Flatten(),
                                 minidl.nn.Linear(18, 3))
    model(minidl.randn(4, 1, 5, 5))  # running statistics and num_batches_tracked move off their defaults
    path = tmp_path / "lenet5.pt"
    minidl.save(model.state_dict(), path)
    twin = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2), torch.nn.Flatten(),
                               torch.nn.Linear(18, 3))
    state = torch.load(path, weights_only=True)
    assert type(state) is collections.OrderedDict and list(state) == list(model.state_dict())
    twin.load_state_dict(state)  # strict: every key, shape and dtype fits
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(twin.state_dict()[k].numpy(), v.numpy())
    assert twin.state_dict()["1.num_batches_tracked"].dtype == torch.int64
    # and back: torch's file into a fresh minidl model
    torch.save(twin.state_dict(), tmp_path / "from_torch.pt")
    fresh = minidl.nn.Sequential(minidl.nn.Conv2d(1, 2, 3), minidl.nn.BatchNorm2d(2), minidl.nn.Flatten(),
                                 minidl.nn.Linear(18, 3))
    loaded = minidl.load(tmp_path / "from_torch.pt")
    assert type(loaded) is collections.OrderedDict and list(loaded) == list(twin.state_dict())
    fresh.load_state_dict(loaded)
    x = np.random.default_rng(1).standard_normal((2, 1, 5, 5)).astype(np.float32)
    fresh.eval(), twin.eval()
    np.testing.assert_allclose(fresh(minidl.tensor(x)).detach().numpy(), twin(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-5, atol=1e-6)


def test_views_of_one_array_share_one_storage_as_in_torch(tmp_path):
    w = minidl.randn(4, 6)
    obj = {"w": w, "again": w, "row": w[1], "cols": w[:, 2:4], "own": minidl.randn(3)[1:]}
    minidl.save(obj, tmp_path / "tied.pt")
    got = torch.load(tmp_path / "tied.pt", weights_only=True)
    for k, v in obj.items():
        np.testing.assert_array_equal(got[k].numpy(), v.numpy())
    ptr = got["w"].untyped_storage().data_ptr()
    assert all(got[k].untyped_storage().data_ptr() == ptr for k in ("again", "row", "cols"))
    assert got["row"].storage_offset() == 6 and got["cols"].stride() == (6, 1)
    got["w"][1, 3] = 100.0
    assert got["row"][3] == 100.0 and got["cols"][1, 1] == 100.0  # views, as torch.save(tied views) gives
    # a lone view is written as its own elements, not with the whole array it views
    assert got["own"].untyped_storage().nbytes() == 2 * 4


def test_torch_files_with_views_and_odd_tensors_load_as_views(tmp_path):
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    obj = {"base": base, "t": base.t(), "slice": base[1:3, ::2], "expand": torch.ones(3, 1).expand(3, 4),
           "scalar": torch.tensor(2.5, dtype=torch.float64), "empty": torch.zeros(0, 3, dtype=torch.int64),
           "half": torch.tensor([1.5, -2.0], dtype=torch.float16), "flags": torch.tensor([True, False]),
           "bf16": torch.tensor([1.5, -3.25, 1e30], dtype=torch.bfloat16),
           "int8": torch.tensor([-3, 7], dtype=torch.int8),
           "param": torch.nn.Parameter(torch.ones(2)), "nested": [1, (2.5, "x"), {"k": torch.zeros(2)}, None, True],
           "grad": torch.ones(2, requires_grad=True), "plain": {"dtype": torch.float64, "bytes": b"ab", "set": {1, 2},
                                                                 "size": torch.Size([2, 3]), "big": -2 ** 70}}
    torch.save(obj, tmp_path / "t.pt")
    with pytest.warns(UserWarning, match="bfloat16 .* as float32"):
        got = minidl.load(tmp_path / "t.pt")
    assert list(got) == list(obj)
    for k in ("base", "t", "slice", "expand", "scalar", "empty", "half", "flags", "int8"):
        want = obj[k].numpy()
        assert got[k].dtype == want.dtype and got[k].shape == want.shape, k
        np.testing.assert_array_equal(got[k].numpy(), want)
    assert np.shares_memory(got["base"].numpy(), got["t"].numpy())  # one storage in torch's file, one array here
    assert np.shares_memory(got["base"].numpy(), got["slice"].numpy())
    assert got["bf16"].dtype == np.float32
    np.testing.assert_array_equal(got["bf16"].numpy(), obj["bf16"].float().numpy())  # exactly
    assert isinstance(got["param"], minidl.nn.Parameter) and got["param"].requires_grad
    assert got["nested"][:2] == [1, (2.5, "x")] and got["nested"][3:] == [None, True]
    np.testing.assert_array_equal(got["nested"][2]["k"].numpy(), np.zeros(2, np.float32))
    assert got["grad"].requires_grad and got["grad"].is_leaf
    assert got["plain"] == {"dtype": minidl.float64, "bytes": b"ab", "set": {1, 2}, "size": (2, 3), "big": -2 ** 70}


def test_a_torch_optimizer_state_loads_and_a_minidl_one_goes_to_torch(tmp_path):
    lin = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(lin.parameters(), lr=0.01, betas=(0.8, 0.9))
    lin(torch.randn(4, 3)).sum().backward()
    opt.step()
    torch.save(opt.state_dict(), tmp_path / "adam.pt")
    got = minidl.load(tmp_path / "adam.pt")
    want = opt.state_dict()
    assert got["param_groups"][0]["betas"] == (0.8, 0.9) and got["param_groups"][0]["params"] == [0, 1]
    assert got["param_groups"][0]["lr"] == 0.01 and got["state"].keys() == want["state"].keys()
    for i, st in want["state"].items():
        for k, v in st.items():
            np.testing.assert_array_equal(got["state"][i][k].numpy(), v.numpy())
    # minidl's Adam state (NumPy arrays, an int step) is read by torch as tensors and loads into a torch Adam
    model = minidl.nn.Linear(3, 2)
    mopt = minidl.optim.Adam(model.parameters(), lr=0.01)
    model(minidl.randn(4, 3)).sum().backward()
    mopt.step()
    minidl.save(mopt.state_dict(), tmp_path / "madam.pt")
    state = torch.load(tmp_path / "madam.pt", weights_only=True)
    np.testing.assert_array_equal(state["state"][0]["exp_avg"].numpy(), mopt.state_dict()["state"][0]["exp_avg"])
    opt2 = torch.optim.Adam(torch.nn.Linear(3, 2).parameters())
    opt2.load_state_dict(state)
    assert opt2.param_groups[0]["lr"] == 0.01
    again = minidl.optim.Adam(minidl.nn.Linear(3, 2).parameters())
    again.load_state_dict(minidl.load(tmp_path / "madam.pt"))


def test_the_file_is_torchs_layout_aligned_and_deterministic(tmp_path):
    sd = collections.OrderedDict(a=minidl.ones(3), b=minidl.zeros(2, 2, dtype=minidl.int64))
    minidl.save(sd, tmp_path / "one.pt")
    minidl.save(sd, tmp_path / "two.pt")
    assert (tmp_path / "one.pt").read_bytes() == (tmp_path / "two.pt").read_bytes()
    with zipfile.ZipFile(tmp_path / "one.pt") as z:
        names = z.namelist()
        assert names == ["archive/data.pkl", "archive/byteorder", "archive/data/0", "archive/data/1",
                         "archive/version"]
        for info in z.infolist():
            assert info.compress_type == zipfile.ZIP_STORED
            if "/data/" in info.filename:  # each storage starts at a multiple of 64 bytes, as torch writes them
                assert (info.header_offset + 30 + len(info.filename) + len(info.extra)) % 64 == 0
        assert z.read("archive/byteorder") == b"little"
        assert np.frombuffer(z.read("archive/data/0"), np.float32).tolist() == [1.0, 1.0, 1.0]
        text = z.read("archive/data.pkl")
    for name in (b"torch._utils\n_rebuild_tensor_v2", b"torch\nFloatStorage", b"torch\nLongStorage",
                 b"collections\nOrderedDict"):
        assert name in text
    assert text[:2] == b"\x80\x02"  # protocol 2, as torch.save (torch.load warns on others)


def test_minidl_neither_imports_torch_nor_needs_it(tmp_path):
    torch.save({"w": torch.arange(6.0).reshape(2, 3)[:, 1:]}, tmp_path / "t.pt")
    script = (
        "import sys; sys.modules['torch'] = None\n"  # any import of torch fails
        "import minidl, numpy as np\n"
        f"d = minidl.load({str(tmp_path / 't.pt')!r})\n"
        "assert d['w'].numpy().tolist() == [[1.0, 2.0], [4.0, 5.0]]\n"
        f"minidl.save({{'x': minidl.ones(2)}}, {str(tmp_path / 'm.pt')!r})\n"
        "assert not any(m == 'torch' or m.startswith('torch.') for m in sys.modules if sys.modules[m] is not None)\n")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert torch.load(tmp_path / "m.pt", weights_only=True)["x"].tolist() == [1.0, 1.0]


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _torch_zip(path, data_pkl, records=()):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", data_pkl)
        for name, data in records:
            z.writestr(f"archive/{name}", data)
        z.writestr("archive/version", "3\n")


def test_load_never_runs_code_from_a_file(tmp_path):
    """weights_only=True (the default) refuses every global it does not know, with torch's message, before anything
    runs: a payload planted in a file (by hand, or saved by minidl.save itself) never runs."""
    marker = tmp_path / "ran"
    _torch_zip(tmp_path / "evil.pt", pickle.dumps({"w": _RunsCode(marker)}, protocol=2))
    minidl.save({"w": minidl.ones(2), "payload": [_RunsCode(marker)]}, tmp_path / "evil_saved.pt")
    for name in ("evil.pt", "evil_saved.pt"):
        for kwargs in ({}, {"weights_only": True}, {"weights_only": None}):
            refused = r"(?s)Weights only load failed .*evil.*GLOBAL posix\.system was not an allowed global by default"
            with pytest.raises(pickle.UnpicklingError, match=refused) as err:
                minidl.load(tmp_path / name, **kwargs)
            assert isinstance(err.value, ValueError)  # what minidl.load raised for a refused file before
            assert "weights_only` set to `False`" in str(err.value)
            assert "minidl.serialization.add_safe_globals([posix.system])" in str(err.value)
        with pytest.raises(pickle.UnpicklingError, match="posix.system"):
            torch.load(tmp_path / name)  # torch refuses it the same way
    assert not marker.exists()
    torch.save({"a": np.arange(3)}, tmp_path / "numpy.pt")  # torch.load(weights_only=True) refuses this too
    with pytest.raises(ValueError, match="(?s)Weights only load failed.*numpy"):
        minidl.load(tmp_path / "numpy.pt")
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pt")  # a whole pickled torch module
    with pytest.raises(ValueError, match=r"(?s)torch\.nn\.modules\.linear\.Linear.*state_dict"):
        minidl.load(tmp_path / "module.pt")
    with pytest.raises(ValueError, match=r"torch\.nn\.modules\.linear\.Linear, a torch class.*state_dict"):
        minidl.load(tmp_path / "module.pt", weights_only=False)  # never imported: minidl does not load torch's


class Point:  # a user's class, allowed by name
    def __init__(self, x, y):
        self.x, self.y = x, y


def test_safe_globals_allow_a_users_class_as_in_torch(tmp_path):
    path = tmp_path / "point.pt"
    minidl.save({"p": Point(1, minidl.ones(2))}, path)
    with pytest.raises(pickle.UnpicklingError, match=r"GLOBAL test_serialization\.Point was not an allowed global"):
        minidl.load(path)
    assert serialization.get_safe_globals() == []
    with serialization.safe_globals([Point]):
        assert serialization.get_safe_globals() == [Point]
        got = minidl.load(path)["p"]
    assert serialization.get_safe_globals() == []
    assert isinstance(got, Point) and got.x == 1 and got.y.tolist() == [1.0, 1.0]
    try:
        serialization.add_safe_globals([(Point, "test_serialization.Point")])
        assert isinstance(minidl.load(path)["p"], Point)
    finally:
        serialization.clear_safe_globals()
    with pytest.raises(pickle.UnpicklingError):
        minidl.load(path)
    assert isinstance(minidl.load(path, weights_only=False)["p"], Point)  # a file the user trusts
    with pytest.raises(TypeError, match="add_safe_globals"):
        serialization.add_safe_globals([(Point,)])


def _crafted(tmp_path, storage, offset, shape, strides, name="crafted.pt"):
    """A torch-format file whose one tensor has the given placement in a storage of the given elements."""
    t = minidl.zeros(1)
    storages = _writer._Storages({})
    storages.storages["0"], storages.placements[id(t)] = storage, ("0", offset, shape, strides)
    out = io.BytesIO()
    _writer.TorchPickler(out, storages=storages).dump({"t": t})
    path = tmp_path / name
    with open(path, "wb") as f:
        _writer.write_torch_zip(f, out.getvalue(), {"0": storage})
    return path


def test_damaged_and_crafted_torch_files_are_clear_value_errors(tmp_path):
    storage = np.arange(4, dtype=np.float32)
    ok = _crafted(tmp_path, storage, 1, (3,), (1,), "ok.pt")
    assert minidl.load(ok)["t"].numpy().tolist() == [1.0, 2.0, 3.0]
    assert torch.load(ok, weights_only=True)["t"].tolist() == [1.0, 2.0, 3.0]
    for offset, shape, strides in ((2, (3,), (1,)), (0, (2, 2), (3, 1)), (0, (5,), (1,))):
        with pytest.raises(ValueError, match="reaches past the end of its storage of 4 elements"):
            minidl.load(_crafted(tmp_path, storage, offset, shape, strides))
    with pytest.raises(ValueError, match=r"sizes and strides of equal length"):
        minidl.load(_crafted(tmp_path, storage, 0, (2, 2), (1,)))
    good = tmp_path / "good.pt"
    minidl.save({"w": minidl.ones(100)}, good)
    blob = good.read_bytes()
    (tmp_path / "cut.pt").write_bytes(blob[:len(blob) // 2])
    with pytest.raises(ValueError, match=r"load: .*cut\.pt is not a readable minidl file"):
        minidl.load(tmp_path / "cut.pt")
    with zipfile.ZipFile(good) as z:
        records = [(n[len("archive/"):], z.read(n)) for n in z.namelist()]
    short = [(n, d[:-4] if n == "data/0" else d) for n, d in records if n != "version"]
    _torch_zip(tmp_path / "short.pt", dict(short)["data.pkl"], [r for r in short if r[0] != "data.pkl"])
    with pytest.raises(ValueError, match=r"short\.pt: its storage data/0 holds 396 bytes where 100 elements"):
        minidl.load(tmp_path / "short.pt")
    _torch_zip(tmp_path / "nodata.pt", dict(records)["data.pkl"])
    with pytest.raises(ValueError, match="its storage data/0 is missing"):
        minidl.load(tmp_path / "nodata.pt")
    _torch_zip(tmp_path / "halfpickle.pt", dict(records)["data.pkl"][:40])
    with pytest.raises(ValueError, match=r"halfpickle\.pt is not a readable torch file"):
        minidl.load(tmp_path / "halfpickle.pt")
    legacy = io.BytesIO()
    torch.save({"w": torch.ones(2)}, legacy, _use_new_zipfile_serialization=False)
    legacy.seek(0)
    with pytest.raises(ValueError, match="format of torch.save before torch 1.6"):
        minidl.load(legacy)
    with pytest.raises(TypeError, match="load: map_location must be a device"):
        minidl.load(good, map_location=lambda storage, loc: storage)


def test_files_of_the_earlier_npz_format_still_load(tmp_path):
    arrays = {}
    obj = {"w": minidl.ones(2, 3), "n": 4, "pair": (1.5, None)}
    meta = {"format": serialization.SAVE_FORMAT, "obj": checkpoint._split(obj, "obj", arrays, "save")}
    checkpoint._write(tmp_path / "old.pt", meta, arrays)
    back = minidl.load(tmp_path / "old.pt")
    assert back["n"] == 4 and back["pair"] == (1.5, None)
    np.testing.assert_array_equal(back["w"].numpy(), np.ones((2, 3), np.float32))
    meta["obj"] = {"__dict__": [[{"__list__": ["a"]}, 1]]}  # valid JSON, wrong shape: a list as a dict key
    checkpoint._write(tmp_path / "bad.pt", meta, arrays)
    with pytest.raises(ValueError, match=r"load: .*bad\.pt: obj: key 0 is a list, which cannot be a dict key"):
        minidl.load(tmp_path / "bad.pt")


def test_save_writes_atomically_with_the_umask_mode_and_checks_before_writing(tmp_path):
    path = tmp_path / "w.pt"
    old = os.umask(0o022)
    try:
        minidl.save({"w": minidl.ones(2)}, path)
    finally:
        os.umask(old)
    assert os.listdir(tmp_path) == ["w.pt"] and os.stat(path).st_mode & 0o777 == 0o644
    with pytest.raises((pickle.PicklingError, AttributeError), match="lambda"):  # pickled before the file opens
        minidl.save({"w": minidl.zeros(2), "f": lambda x: x}, path)
    assert os.listdir(tmp_path) == ["w.pt"] and minidl.load(path)["w"].numpy().tolist() == [1.0, 1.0]
    cyclic = {"a": [], "w": minidl.ones(1)}
    cyclic["a"].append(cyclic)  # pickle keeps cycles, as torch.save does
    minidl.save(cyclic, tmp_path / "cyclic.pt")
    for back in (minidl.load(tmp_path / "cyclic.pt"), torch.load(tmp_path / "cyclic.pt", weights_only=True)):
        assert back["a"][0] is back
    buf = io.BytesIO()
    buf.write(b"")
    minidl.save({"w": minidl.ones(2)}, buf)
    buf.seek(0)
    assert torch.load(buf, weights_only=True)["w"].tolist() == [1.0, 1.0]


# ---- whole objects: modules, optimizers and schedulers pickle, and minidl.save/load them as torch does ------------
def _trained(steps=2):
    """A model, its Adam and a schedule after ``steps`` steps (so .grad, AccumulateGrad nodes and state exist)."""
    minidl.manual_seed(0)
    model = minidl.nn.Sequential(minidl.nn.Linear(3, 4), minidl.nn.BatchNorm1d(4), minidl.nn.ReLU(),
                                 minidl.nn.Linear(4, 2))
    opt = minidl.optim.Adam(model.parameters(), lr=0.01)
    sched = minidl.optim.lr_scheduler.StepLR(opt, 1, gamma=0.5)
    for _ in range(steps):
        opt.zero_grad()
        model(minidl.randn(5, 3)).pow(2).sum().backward()
        opt.step()
        sched.step()
    return model, opt, sched


def _same_training(a, b):
    """Two (model, optimizer) pairs take the same next step from the same batch."""
    x = minidl.randn(5, 3)
    for model, opt in (a, b):
        opt.zero_grad()
        model(x).pow(2).sum().backward()
        opt.step()
    for p, q in zip(a[0].parameters(), b[0].parameters()):
        np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy())


def test_modules_optimizers_and_schedulers_pickle_after_backward():
    """pickle.dumps of a model after backward() failed on the weak reference to a leaf's AccumulateGrad node. As in
    torch, the graph and .grad are not pickled (torch drops them too), the parameters stay the optimizer's."""
    model, opt, sched = _trained()
    assert model[0].weight.grad is not None
    m2, o2, s2 = pickle.loads(pickle.dumps((model, opt, sched)))
    assert type(m2[0].weight) is minidl.nn.Parameter and m2[0].weight.requires_grad and m2[0].weight.grad is None
    assert o2.param_groups[0]["params"][0] is m2[0].weight and s2.optimizer is o2
    assert s2.get_last_lr() == sched.get_last_lr() and o2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    _same_training((model, opt), (m2, o2))
    torch_lin = torch.nn.Linear(2, 2)  # what torch does, for comparison: .grad dropped, a leaf that requires grad
    torch_lin(torch.ones(1, 2)).sum().backward()
    assert pickle.loads(pickle.dumps(torch_lin)).weight.grad is None
    y = minidl.ones(2, requires_grad=True) * 2  # a non-leaf pickles as a leaf that requires grad, as in torch
    back = pickle.loads(pickle.dumps(y))
    assert back.is_leaf and back.requires_grad and back.tolist() == [2.0, 2.0]


def test_a_whole_model_and_optimizer_saved_with_minidl_save_load_back_with_weights_only_false(tmp_path):
    model, opt, sched = _trained()
    path = tmp_path / "whole.pt"
    minidl.save({"model": model, "opt": opt, "sched": sched, "epoch": 3}, path)
    with pytest.raises(pickle.UnpicklingError, match=r"GLOBAL minidl\.nn\.\S+ was not an allowed global"):
        minidl.load(path)  # the default refuses objects, as torch's
    back = minidl.load(path, weights_only=False)
    m2, o2 = back["model"], back["opt"]
    assert back["epoch"] == 3 and back["sched"].optimizer is o2 and o2.param_groups[0]["params"][0] is m2[0].weight
    assert all(isinstance(v, np.ndarray) for st in o2.state.values() for v in st.values() if hasattr(v, "shape"))
    x = minidl.randn(4, 3)
    model.eval(), m2.eval()
    np.testing.assert_array_equal(m2(x).detach().numpy(), model(x).detach().numpy())
    model.train(), m2.train()
    _same_training((model, opt), (m2, o2))
    minidl.save(model, tmp_path / "model.pt")  # save(model) alone, as word_language_model.py does
    with open(tmp_path / "model.pt", "rb") as f:
        again = minidl.load(f, weights_only=False)
    again.eval(), model.eval()
    np.testing.assert_array_equal(again(x).detach().numpy(), model(x).detach().numpy())
    # its parameters are written as torch writes parameters
    with zipfile.ZipFile(tmp_path / "model.pt") as z:
        assert b"torch._utils\n_rebuild_parameter" in z.read("archive/data.pkl")


def test_a_state_dict_with_dtypes_and_sizes_is_still_torchs_plain_data(tmp_path):
    """dtypes, Sizes and NumPy numbers in a state dict are written as torch writes its own (torch.float64,
    torch.Size, Python numbers), so torch.load(weights_only=True) reads them."""
    obj = {"dtype": minidl.float64, "size": minidl.ones(2, 3).shape, "n": np.int64(4), "x": np.float32(0.5)}
    minidl.save(obj, tmp_path / "plain.pt")
    got = torch.load(tmp_path / "plain.pt", weights_only=True)
    assert got == {"dtype": torch.float64, "size": torch.Size([2, 3]), "n": 4, "x": 0.5}
    back = minidl.load(tmp_path / "plain.pt")
    assert back["dtype"] == minidl.float64 and isinstance(back["size"], minidl.Size) and back["size"] == (2, 3)


# ---- the rest of the tensor surface these programs reach (issue 30, point 6) --------------------------------------
def test_format_and_nelement_as_torch():
    for lib in (minidl, torch):
        loss = lib.tensor(1.23456)
        assert f"{loss:.3f}" == "1.235" and f"{loss:>8.2f}" == "    1.23" and f"{loss}" == str(loss.item())
        assert f"{lib.tensor(3):d}" == "3" and f"{lib.tensor(True)}" == "True"
        assert format(lib.tensor([1.0, 2.0]), "") == str(lib.tensor([1.0, 2.0]))
        for t in (lib.tensor([1.5]), lib.ones(2, 2)):
            with pytest.raises(TypeError, match="unsupported format string passed to Tensor.__format__"):
                format(t, ".2f")
        assert lib.ones(2, 3).nelement() == 6 and lib.tensor(2.0).nelement() == 1
    assert f"{minidl.tensor(2.0, requires_grad=True) * 2:.1f}" == "4.0"
