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
    assert os.listdir(tmp_path / "d2") == []  # no partial file left behind


def test_bundled_subset_is_real_mnist_of_10000_digits():
    train, test = data.MNISTSubset(True), data.MNISTSubset(False)
    assert len(train) == 8000 and len(test) == 2000
    assert train.data.shape == (8000, 28, 28) and train.data.dtype == np.uint8
    assert set(np.unique(train.targets)) == set(range(10)) and np.bincount(test.targets).min() > 150
    assert 30 < train.data.mean() < 40  # MNIST's mean pixel is about 33 of 255


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
