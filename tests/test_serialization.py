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
    marker = tmp_path / "ran"
    _torch_zip(tmp_path / "evil.pt", pickle.dumps({"w": _RunsCode(marker)}, protocol=2))
    with pytest.raises(ValueError, match=r"load: .*evil\.pt: it names posix\.system, which minidl\.load does not "
                                         r"load"):
        minidl.load(tmp_path / "evil.pt")
    assert not marker.exists()
    torch.save({"a": np.arange(3)}, tmp_path / "numpy.pt")  # torch.load(weights_only=True) refuses this too
    with pytest.raises(ValueError, match="numpy.*does not load"):
        minidl.load(tmp_path / "numpy.pt")
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pt")  # a whole pickled module
    with pytest.raises(ValueError, match=r"torch\.nn\.modules\.linear\.Linear.*state_dict"):
        minidl.load(tmp_path / "module.pt")


def _crafted(tmp_path, storage, offset, shape, strides, name="crafted.pt"):
    """A torch-format file whose one tensor has the given placement in a storage of the given elements."""
    t = minidl.zeros(1)
    found = {id(t): (t, storage)}
    data_pkl = serialization._TorchPickler(found, {id(t): ("0", offset, shape, strides)}, {"0": storage}).dump({"t": t})
    path = tmp_path / name
    with open(path, "wb") as f:
        serialization._write_torch_zip(f, data_pkl, {"0": storage})
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
    with pytest.raises(TypeError, match=r"save: cannot store a value of type object at \"obj\['x'\]\""):
        minidl.save({"w": minidl.zeros(2), "x": object()}, path)
    cyclic = {"a": []}
    cyclic["a"].append(cyclic)
    with pytest.raises(ValueError, match="holds itself"):
        minidl.save(cyclic, path)
    assert os.listdir(tmp_path) == ["w.pt"] and minidl.load(path)["w"].numpy().tolist() == [1.0, 1.0]
    buf = io.BytesIO()
    buf.write(b"")
    minidl.save({"w": minidl.ones(2)}, buf)
    buf.seek(0)
    assert torch.load(buf, weights_only=True)["w"].tolist() == [1.0, 1.0]
