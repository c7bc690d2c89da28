"""minidl.data: IDX files, MNIST folders and downloads, the bundled subset, DataLoader, transforms."""
import gzip
import hashlib
import os
import struct

import numpy as np
import pytest

import minidl
from minidl import data
from minidl.data import transforms as T


def write_idx(path, array):
    codes = {np.uint8: 0x08, np.int8: 0x09, np.int32: 0x0C, np.float32: 0x0D, np.float64: 0x0E}
    header = struct.pack(">HBB", 0, codes[array.dtype.type], array.ndim) + struct.pack(">" + "I" * array.ndim,
                                                                                      *array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    with (gzip.open if path.endswith(".gz") else open)(path, "wb") as f:
        f.write(payload)
    return payload


@pytest.fixture
def fake_mnist(tmp_path):
    rng = np.random.default_rng(0)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, n, gz in (("train", 20, ".gz"), ("t10k", 7, "")):
        write_idx(str(raw / f"{prefix}-images-idx3-ubyte{gz}"), rng.integers(0, 256, (n, 28, 28)).astype(np.uint8))
        write_idx(str(raw / f"{prefix}-labels-idx1-ubyte{gz}"), rng.integers(0, 10, n).astype(np.uint8))
    return tmp_path


def test_mnist_reads_idx_files_gz_or_not(fake_mnist):
    train = data.MNIST(fake_mnist, train=True)
    test = data.MNIST(fake_mnist, train=False, transform=T.ToTensor())
    assert len(train) == 20 and len(test) == 7
    img, label = test[3]
    assert img.shape == (1, 28, 28) and img.dtype == minidl.float32 and 0 <= label < 10
    np.testing.assert_allclose(img.numpy()[0], test.data[3] / 255.0, rtol=1e-6)


def test_truncated_or_corrupt_idx_files_give_clear_errors(tmp_path):
    good = str(tmp_path / "x-idx3-ubyte")
    payload = write_idx(good, np.zeros((4, 28, 28), np.uint8))
    with open(good, "wb") as f:
        f.write(payload[:-10])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        data.read_idx(good)
    with open(good, "wb") as f:
        f.write(b"\x01\x02\x03\x04" + payload[4:])
    with pytest.raises(ValueError, match="bad IDX header"):
        data.read_idx(good)
    bad_gz = str(tmp_path / "y-idx1-ubyte.gz")
    with open(bad_gz, "wb") as f:
        f.write(b"not gzip at all")
    with pytest.raises(ValueError, match="not a readable IDX file"):
        data.read_idx(bad_gz)


def test_missing_files_say_where_they_were_looked_for(tmp_path):
    with pytest.raises(data.DatasetNotFoundError, match="download=True"):
        data.MNIST(tmp_path)


def test_download_checks_md5_tries_mirrors_and_writes_atomically(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    write_idx(str(mirror / "f.gz"), np.arange(10, dtype=np.uint8))
    md5 = hashlib.md5((mirror / "f.gz").read_bytes()).hexdigest()
    dest = tmp_path / "dest"
    missing = (tmp_path / "nowhere").as_uri() + "/"
    path = data.datasets.download_file([missing, mirror.as_uri() + "/"], str(dest), "f.gz", md5)
    assert data.read_idx(path).tolist() == list(range(10))
    with pytest.raises(data.DatasetNotFoundError, match="MD5"):
        data.datasets.download_file([mirror.as_uri() + "/"], str(tmp_path / "d2"), "f.gz", "0" * 32)
    assert not os.path.exists(tmp_path / "d2")  # no partial file, and not the folder made for it


def test_bundled_subset_is_real_mnist_of_10000_digits():
    train, test = data.MNISTSubset(True), data.MNISTSubset(False)
    assert len(train) == 8000 and len(test) == 2000
    assert train.data.shape == (8000, 28, 28) and train.data.dtype == np.uint8
    assert set(np.unique(train.targets)) == set(range(10)) and np.bincount(test.targets).min() > 150
    assert 30 < train.data.float().mean().item() < 40  # MNIST's mean pixel is about 33 of 255


@pytest.mark.skipif(not os.path.isdir("/usr/share/datasets/fashion-mnist"), reason="Debian's dataset-fashion-mnist "
                    "is not installed")
def test_fashion_mnist_from_the_debian_package(tmp_path):
    ds = data.FashionMNIST(tmp_path, train=False)
    assert len(ds) == 10000 and ds.source == "/usr/share/datasets/fashion-mnist"


def test_dataloader_batches_shuffles_reproducibly_and_drops_last():
    x = minidl.arange(10).reshape(10, 1).float()
    ds = data.TensorDataset(x, minidl.arange(10))
    batches = list(data.DataLoader(ds, batch_size=4))
    assert [b[0].shape[0] for b in batches] == [4, 4, 2] and len(data.DataLoader(ds, 4)) == 3
    assert len(list(data.DataLoader(ds, 4, drop_last=True))) == 2 == len(data.DataLoader(ds, 4, drop_last=True))
    minidl.manual_seed(5)
    a = np.concatenate([b[1].numpy() for b in data.DataLoader(ds, 3, shuffle=True)])
    minidl.manual_seed(5)
    b = np.concatenate([b[1].numpy() for b in data.DataLoader(ds, 3, shuffle=True)])
    assert sorted(a.tolist()) == list(range(10)) and a.tolist() == b.tolist() and a.tolist() != list(range(10))
    slow = [s for s in data.DataLoader(ds, 4, collate_fn=data.default_collate)]
    for f, s in zip(batches, slow):
        np.testing.assert_array_equal(f[0].numpy(), s[0].numpy())
    pairs = data.DataLoader([(np.ones(2, np.float32), 1), (np.zeros(2, np.float32), 0)], batch_size=2)
    xb, yb = next(iter(pairs))
    assert xb.shape == (2, 2) and yb.dtype == minidl.int64
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        data.DataLoader(ds, 0)


def test_transforms():
    img = np.arange(16, dtype=np.uint8).reshape(4, 4)
    t = T.ToTensor()(img)
    assert t.shape == (1, 4, 4) and abs(t.numpy().max() - 15 / 255) < 1e-7
    n = T.Normalize([0.5], [0.25])(t)
    np.testing.assert_allclose(n.numpy(), (t.numpy() - 0.5) / 0.25, rtol=1e-6)
    minidl.manual_seed(0)
    c = T.RandomCrop(4, padding=2)(t)
    assert c.shape == (1, 4, 4)
    f = T.RandomHorizontalFlip(p=1.0)(t)
    np.testing.assert_array_equal(f.numpy(), t.numpy()[:, :, ::-1])
    r = T.RandomRotation((90, 90))(t)
    np.testing.assert_array_equal(r.numpy()[0], np.rot90(t.numpy()[0]))
    comp = T.Compose([T.ToTensor(), T.Normalize([0.1307], [0.3081])])
    assert comp(img).shape == (1, 4, 4)
    with pytest.raises(ValueError, match="larger than"):
        T.RandomCrop(9)(t)


# ---- worker processes ------------------------------------------------------------------------------------
class _Numbered(data.Dataset):
    """Sample i: (i, a random number from minidl's generator, NumPy's global one and Python's, worker id)."""

    def __init__(self, n=40, fail_at=None, kill_at=None, sleep=0.0):
        self.n, self.fail_at, self.kill_at, self.sleep = n, fail_at, kill_at, sleep

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        import random
        import signal
        import time
        if i == self.fail_at:
            raise KeyError(f"sample {i} is broken")
        if i == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(self.sleep)
        info = data.get_worker_info()
        return (minidl.tensor(np.full(2, i, dtype=np.float32)), float(minidl.rand(()).item()),
                float(np.random.random()), random.random(), -1 if info is None else info.id)


def _epoch(loader):
    return [tuple(f.numpy().copy() for f in b) for b in loader]


def _children():
    import multiprocessing
    return [p for p in multiprocessing.active_children() if p.is_alive()]


@pytest.mark.parametrize("workers", [2, 3])
def test_workers_give_the_batches_of_the_main_process_in_order(workers):
    minidl.manual_seed(7)
    ref = _epoch(data.DataLoader(_Numbered(), batch_size=6, shuffle=True))
    minidl.manual_seed(7)
    got = _epoch(data.DataLoader(_Numbered(), batch_size=6, shuffle=True, num_workers=workers))
    assert len(got) == len(ref) == 7
    for a, b in zip(got, ref):
        np.testing.assert_array_equal(a[0], b[0])  # the same samples, in the same order
    assert [int(b[4][0]) for b in got] == [k % workers for k in range(7)]  # batch k from worker k mod N
    assert not _children()


def test_worker_seeds_are_reproducible_and_differ_between_workers():
    runs = []
    for _ in range(2):
        minidl.manual_seed(3)
        runs.append(_epoch(data.DataLoader(_Numbered(16), batch_size=4, num_workers=2)))
    for a, b in zip(*runs):
        for fa, fb in zip(a, b):
            np.testing.assert_array_equal(fa, fb)
    first, second = runs[0][0], runs[0][1]  # batches 0 and 1: workers 0 and 1
    for field in (1, 2, 3):  # minidl's, NumPy's and Python's generators all differ between the workers
        assert not np.array_equal(first[field], second[field])
    minidl.manual_seed(4)
    other = _epoch(data.DataLoader(_Numbered(16), batch_size=4, num_workers=2))
    assert not np.array_equal(other[0][1], first[1])


def test_persistent_workers_stay_and_new_epochs_reseed_others():
    minidl.manual_seed(0)
    loader = data.DataLoader(_Numbered(12), batch_size=4, num_workers=2, persistent_workers=True)
    e1 = _epoch(loader)
    pids = sorted(w.pid for w in loader._pool.workers)
    e2 = _epoch(loader)
    assert sorted(w.pid for w in loader._pool.workers) == pids and len(_children()) == 2
    assert not np.array_equal(e1[0][1], e2[0][1])  # the workers' generators went on, as in torch
    del loader
    import gc
    gc.collect()
    assert not _children()


def test_breaking_out_of_an_epoch_stops_the_workers():
    loader = data.DataLoader(_Numbered(40, sleep=0.01), batch_size=2, num_workers=2)
    it = iter(loader)
    next(it)
    assert len(_children()) == 2
    del it
    assert not _children()


def test_a_worker_exception_is_raised_in_the_main_process_with_its_traceback():
    loader = data.DataLoader(_Numbered(12, fail_at=5), batch_size=2, num_workers=2)
    with pytest.raises(KeyError, match=r"(?s)Caught KeyError in DataLoader worker process 0.*sample 5 is broken"):
        _epoch(loader)
    assert not _children()


def test_a_dead_worker_or_a_timeout_ends_the_epoch_with_an_error():
    with pytest.raises(RuntimeError, match=r"DataLoader worker \(pid \d+\) exited unexpectedly.*signal 9"):
        _epoch(data.DataLoader(_Numbered(12, kill_at=7), batch_size=2, num_workers=2))
    with pytest.raises(RuntimeError, match="timed out after 0.5 seconds"):
        _epoch(data.DataLoader(_Numbered(4, sleep=1.5), batch_size=2, num_workers=1, timeout=0.5))
    assert not _children()


def test_spawned_workers_worker_init_fn_and_a_sampler():
    x = minidl.tensor(np.arange(20, dtype=np.float32).reshape(10, 2))
    ds = data.TensorDataset(x, minidl.tensor(np.arange(10)))
    loader = data.DataLoader(ds, batch_size=3, sampler=[9, 0, 8, 1, 7], num_workers=2,
                             multiprocessing_context="spawn", worker_init_fn=_init_marks)
    assert len(loader) == 2
    got = [b[1].numpy().tolist() for b in loader]
    assert got == [[9, 0, 8], [1, 7]]


def _init_marks(worker_id):  # module level: spawned workers import it
    assert data.get_worker_info().id == worker_id


def test_dataloader_worker_arguments_are_checked():
    ds = _Numbered(4)
    with pytest.raises(ValueError, match="prefetch_factor"):
        data.DataLoader(ds, prefetch_factor=2)
    with pytest.raises(ValueError, match="persistent_workers"):
        data.DataLoader(ds, persistent_workers=True)
    with pytest.raises(ValueError, match="num_workers"):
        data.DataLoader(ds, num_workers=-1)
    with pytest.raises(ValueError, match="mutually exclusive"):
        data.DataLoader(ds, sampler=[0, 1], shuffle=True)
    with pytest.warns(UserWarning, match="pin_memory"):
        loader = data.DataLoader(ds, batch_size=2, pin_memory=True, num_workers=1)
    assert len(_epoch(loader)) == 2


def test_a_failed_download_leaves_no_empty_folders(tmp_path):
    """Offline, download=True fails with every mirror's error and removes the folders it made for the files."""
    from minidl.data.datasets import download_file
    with pytest.raises(data.DatasetNotFoundError, match="could not download x.gz"):
        download_file(["http://127.0.0.1:9/"], str(tmp_path / "data" / "MNIST" / "raw"), "x.gz", "0" * 32,
                      timeout=2)
    assert os.listdir(tmp_path) == []
    (tmp_path / "kept").mkdir()
    with pytest.raises(data.DatasetNotFoundError):
        download_file(["http://127.0.0.1:9/"], str(tmp_path / "kept" / "raw"), "x.gz", "0" * 32, timeout=2)
    assert os.listdir(tmp_path) == ["kept"] and os.listdir(tmp_path / "kept") == []
