"""Images, datasets and downloads as torchvision has them: transforms refuse an array that is not an (H, W, C) image,
ImageFolder refuses empty classes, unreadable images are named, downloads keep the umask's mode, reuse a verified
archive and read one given as root. No network: mirrors are file:// folders."""
import gzip
import hashlib
import io
import os
import re
import shutil
import struct
import tarfile
import urllib.request

import numpy as np
import pytest
from PIL import Image

import minidl
from minidl import data
from minidl.data import datasets
from minidl.data import transforms as T

ARRAY_TRANSFORMS = [T.CenterCrop(28), T.Pad(2), T.RandomHorizontalFlip(p=1.0), T.RandomHorizontalFlip(p=0.0),
                    T.RandomCrop(28), T.RandomRotation(10), T.Resize(16), T.RandomResizedCrop(8), T.Grayscale(),
                    T.ColorJitter(brightness=0.5), T.RandomAffine(10)]


@pytest.mark.parametrize("transform", ARRAY_TRANSFORMS, ids=repr)
def test_a_channels_first_array_is_refused_naming_the_rule_and_the_fix(transform):
    chw = np.random.default_rng(0).integers(0, 256, (3, 32, 32), dtype=np.uint8)
    with pytest.raises(ValueError, match=rf"^{type(transform).__name__}: an image array must be \(H, W\) or "
                                         r"\(H, W, C\) with 1 to 4 channels last .*got shape \(3, 32, 32\).*"
                                         r"ToTensor\(\) first.*transpose\(1, 2, 0\)"):
        transform(chw)


def test_the_misreads_of_the_issue_are_gone_and_images_keep_working():
    rng = np.random.default_rng(0)
    hwc = rng.integers(0, 256, (32, 30, 3), dtype=np.uint8)
    assert T.CenterCrop(28)(hwc).shape == (28, 28, 3)
    assert T.Pad(2)(hwc).shape == (36, 34, 3)
    np.testing.assert_array_equal(T.RandomHorizontalFlip(p=1.0)(hwc), hwc[:, ::-1])  # the width is flipped
    for shape in ((32, 30), (32, 30, 1), (32, 30, 2), (32, 30, 4)):  # grayscale, LA, RGBA
        img = rng.integers(0, 256, shape, dtype=np.uint8)
        assert T.CenterCrop(28)(img).shape == (28, 28) + shape[2:]
        assert T.Pad(1)(img).shape == (34, 32) + shape[2:]
        np.testing.assert_array_equal(T.RandomHorizontalFlip(p=1.0)(img), img[:, ::-1])
    pil = Image.fromarray(hwc)
    assert T.CenterCrop(28)(pil).size == (28, 28) and T.Pad(1)(pil).size == (32, 34)
    chw = T.ToTensor()(hwc)  # after ToTensor: (C, H, W), any channel count, as torchvision's tensor transforms
    assert T.CenterCrop(28)(chw).shape == (3, 28, 28) and T.Pad(2)(chw).shape == (3, 36, 34)
    many = minidl.zeros(32, 10, 12)
    assert T.CenterCrop(8)(many).shape == (32, 8, 8)
    np.testing.assert_array_equal(T.RandomHorizontalFlip(p=1.0)(chw).numpy(), chw.numpy()[:, :, ::-1])
    # ToTensor follows torchvision's to_tensor, which takes (H, W, C) with any C (e.g. multispectral images)
    assert T.ToTensor()(np.zeros((5, 4, 6), np.uint8)).shape == (6, 5, 4)
    with pytest.raises(ValueError, match=r"shape \(2, 3, 4, 5\)"):
        T.CenterCrop(2)(np.zeros((2, 3, 4, 5), np.uint8))


def _png(path, shape=(5, 4, 3), seed=0):
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)).save(path)


def test_image_folder_refuses_an_empty_class_as_torchvision_unless_allow_empty(tmp_path):
    for cls in ("cat", "dog", "empty", "notes"):
        (tmp_path / cls).mkdir()
    _png(tmp_path / "cat" / "1.png")
    _png(tmp_path / "dog" / "1.jpg")
    (tmp_path / "notes" / "a.txt").write_text("not an image")
    with pytest.raises(FileNotFoundError, match=r"Found no valid file for the classes empty, notes.* Supported "
                                                r"extensions are: \.jpg, \.jpeg, \.png"):
        data.ImageFolder(tmp_path)
    with pytest.raises(data.DatasetNotFoundError, match=rf"^ImageFolder: .* in {re.escape(str(tmp_path))}\."):
        data.ImageFolder(tmp_path)
    ds = data.ImageFolder(tmp_path, allow_empty=True)
    assert ds.classes == ["cat", "dog", "empty", "notes"] and ds.class_to_idx["empty"] == 2
    assert ds.targets == [0, 1] and len(ds) == 2
    with pytest.raises(FileNotFoundError, match=r"classes dog, empty, notes in [^.]*\. \(allow_empty"):
        data.ImageFolder(tmp_path, is_valid_file=lambda p: p.endswith(".png"))  # no extensions named then
    only_empty = tmp_path / "only"
    (only_empty / "a").mkdir(parents=True)
    assert len(data.ImageFolder(only_empty, allow_empty=True)) == 0


@pytest.mark.parametrize("kind", ["truncated_png", "truncated_jpeg", "not_an_image"])
def test_an_unreadable_image_is_an_error_naming_the_file(tmp_path, kind):
    (tmp_path / "cat").mkdir()
    name = "x.jpg" if kind == "truncated_jpeg" else "x.png"
    path = tmp_path / "cat" / name
    if kind == "truncated_png":
        _png(path, (64, 64, 3))
    if kind == "truncated_jpeg":
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path, "JPEG")
    if kind == "not_an_image":
        path.write_bytes(b"hello")
    else:
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    ds = data.ImageFolder(tmp_path)
    with pytest.raises(OSError, match=rf"pil_loader: cannot read the image .*cat/{name}: "):
        ds[0]


def _fake_cifar_archive(path, n=2):
    """A cifar-10-binary.tar.gz in CIFAR-10's layout with ``n`` records per batch file; returns (train labels,
    train images as (N, 32, 32, 3))."""
    rng = np.random.default_rng(0)
    labels, images = [], []
    with tarfile.open(path, "w:gz") as tar:
        for name in [f"data_batch_{k}.bin" for k in range(1, 6)] + ["test_batch.bin"]:
            lab = rng.integers(0, 10, n).astype(np.uint8)
            pix = rng.integers(0, 256, (n, 3072)).astype(np.uint8)
            raw = np.concatenate([lab[:, None], pix], 1).tobytes()
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
            if name != "test_batch.bin":
                labels += lab.tolist()
                images.append(pix.reshape(n, 3, 32, 32).transpose(0, 2, 3, 1))
    return labels, np.concatenate(images)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.fixture
def no_network(monkeypatch):
    """urlopen refuses: a test that passes fetched nothing."""
    calls = []

    def refuse(url, *args, **kwargs):
        calls.append(url)
        raise AssertionError(f"fetched {url}")
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    return calls


def _serve_cifar(tmp_path, monkeypatch):
    server = tmp_path / "server"
    server.mkdir()
    labels, images = _fake_cifar_archive(server / "cifar-10-binary.tar.gz")
    monkeypatch.setattr(datasets.CIFAR10, "url", (server / "cifar-10-binary.tar.gz").as_uri())
    monkeypatch.setattr(datasets.CIFAR10, "md5", hashlib.md5((server / "cifar-10-binary.tar.gz").read_bytes())
                        .hexdigest())
    return server / "cifar-10-binary.tar.gz", labels, images


def test_a_download_has_the_umask_mode_and_a_verified_archive_is_not_fetched_again(tmp_path, monkeypatch, umask_022):
    archive, labels, images = _serve_cifar(tmp_path, monkeypatch)
    root = tmp_path / "root"
    ds = data.CIFAR10(root, download=True)
    assert ds.targets == labels and np.array_equal(ds.data, images)
    assert os.stat(root / "cifar-10-binary.tar.gz").st_mode & 0o777 == 0o644  # not mkstemp's 0o600
    assert sorted(os.listdir(root)) == ["cifar-10-batches-bin", "cifar-10-binary.tar.gz"]  # no temporaries
    # the archive is in root, the unpacked folder is gone: download=True checks the MD5 and unpacks, fetching nothing
    shutil.rmtree(root / "cifar-10-batches-bin")
    calls = []
    real = urllib.request.urlopen
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, *a, **k: calls.append(url) or real(url, *a, **k))
    assert data.CIFAR10(root, download=True).targets == labels and calls == []
    # an archive with the wrong MD5 is fetched again
    (root / "cifar-10-binary.tar.gz").write_bytes(b"damaged")
    shutil.rmtree(root / "cifar-10-batches-bin")
    assert data.CIFAR10(root, download=True).targets == labels and len(calls) == 1
    assert (root / "cifar-10-binary.tar.gz").read_bytes() == archive.read_bytes()


def test_download_file_reuses_a_verified_file_for_mnist_too(tmp_path, no_network):
    folder = tmp_path / "MNIST" / "raw"
    folder.mkdir(parents=True)
    (folder / "f.gz").write_bytes(b"abc")
    md5 = hashlib.md5(b"abc").hexdigest()
    assert datasets.download_file(["http://127.0.0.1:9/"], str(folder), "f.gz", md5) == str(folder / "f.gz")
    assert no_network == []


def _idx(array):
    codes = {np.dtype(np.uint8): 0x08}
    header = struct.pack(">HBB", 0, codes[array.dtype], array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    return gzip.compress(header + array.tobytes())


def test_mnist_downloads_through_the_same_code_with_the_umask_mode(tmp_path, monkeypatch, umask_022):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    rng = np.random.default_rng(0)
    resources = {}
    for prefix, n in (("train", 3), ("t10k", 2)):
        for kind, arr in (("images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)),
                          ("labels-idx1-ubyte", rng.integers(0, 10, n).astype(np.uint8))):
            blob = _idx(arr)
            (mirror / f"{prefix}-{kind}.gz").write_bytes(blob)
            resources[f"{prefix}-{kind}.gz"] = hashlib.md5(blob).hexdigest()
    monkeypatch.setattr(datasets.MNIST, "mirrors", [mirror.as_uri() + "/"])
    monkeypatch.setattr(datasets.MNIST, "resources", resources)
    ds = data.MNIST(tmp_path / "data", download=True)
    assert len(ds) == 3
    raw = tmp_path / "data" / "MNIST" / "raw"
    assert sorted(os.listdir(raw)) == ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
    assert all(os.stat(raw / f).st_mode & 0o777 == 0o644 for f in os.listdir(raw))


def test_cifar10_reads_the_archive_given_as_root_as_its_docstring_says(tmp_path, no_network):
    archive = tmp_path / "cifar-10-binary.tar.gz"
    labels, images = _fake_cifar_archive(archive)
    train = data.CIFAR10(archive)
    assert train.targets == labels and train.data.shape == (10, 32, 32, 3) and np.array_equal(train.data, images)
    test = data.CIFAR10(str(archive), train=False, download=True)  # nothing to fetch
    assert len(test) == 2 and no_network == []
    assert os.listdir(tmp_path) == ["cifar-10-binary.tar.gz"]  # read as it is: nothing unpacked
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(archive.read_bytes()[:200])
    with pytest.raises(ValueError, match=r"CIFAR10: .*cut\.tar\.gz is not a readable cifar-10-binary\.tar\.gz"):
        data.CIFAR10(cut)
    other = tmp_path / "other.tar.gz"
    with tarfile.open(other, "w:gz") as tar:
        tar.addfile(tarfile.TarInfo("readme.txt"), io.BytesIO(b""))
    with pytest.raises(ValueError, match=r"holds no data_batch_1\.bin, .* under cifar-10-batches-bin/"):
        data.CIFAR10(other)
