"""Image transforms, as torchvision.transforms. torchvision's layout rule: before ToTensor an image is a NumPy array
(H, W) or (H, W, C) (a Pillow image too), after it a tensor (C, H, W); every transform reads and returns each in its
own layout. Random transforms draw from minidl's CPU generator (``minidl.manual_seed``)."""
import math
import numbers

import numpy as np

from .. import backend
from ..autograd.tensor import Tensor


def _chw(img, op):
    """A (C, H, W) NumPy array from a tensor (C, H, W) / (H, W), or an array or Pillow image (H, W) / (H, W, C)."""
    if isinstance(img, Tensor):
        arr = backend.to_device(img._data, "cpu")
        if arr.ndim == 2:
            return arr[None]
        if arr.ndim != 3:
            raise ValueError(f"{op}: expected a tensor image of shape (C, H, W) or (H, W), got shape {arr.shape}")
        return arr
    arr = np.asarray(img)
    if arr.ndim == 2:
        return arr[None]
    if arr.ndim != 3:
        raise ValueError(f"{op}: expected an image array of shape (H, W) or (H, W, C) (a tensor after ToTensor is "
                         f"(C, H, W)), got shape {arr.shape}")
    return arr.transpose(2, 0, 1)


def _like(arr, img):
    """The (C, H, W) array ``arr`` in the layout and type of ``img``: a tensor, an (H, W) or (H, W, C) array, or a
    Pillow image."""
    if isinstance(img, Tensor):
        return Tensor._make(np.ascontiguousarray(arr if img.ndim == 3 else arr[0]))
    out = np.ascontiguousarray(arr[0] if np.ndim(img) == 2 else arr.transpose(1, 2, 0))
    if hasattr(img, "getbands"):  # a Pillow image stays one
        from PIL import Image
        return Image.fromarray(out)
    return out


class Compose:
    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, x):
        for t in self.transforms:
            x = t(x)
        return x

    def __repr__(self):
        return "Compose(\n" + "".join(f"    {t!r}\n" for t in self.transforms) + ")"


class ToTensor:
    """uint8 (H, W) or (H, W, C) in [0, 255] -> float32 tensor (C, H, W) in [0, 1]; float arrays are kept in scale."""

    def __call__(self, img):
        if isinstance(img, Tensor):
            return img
        arr = np.asarray(img)
        if arr.ndim == 2:
            arr = arr[None]
        elif arr.ndim == 3:
            arr = arr.transpose(2, 0, 1)
        else:
            raise ValueError(f"ToTensor: expected an image of shape (H, W) or (H, W, C), got shape {arr.shape}")
        out = arr.astype(np.float32) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float32)
        return Tensor._make(np.ascontiguousarray(out))

    def __repr__(self):
        return "ToTensor()"


class Normalize:
    """(x - mean) / std per channel, on a (C, H, W) tensor."""

    def __init__(self, mean, std):
        self.mean = np.asarray(mean, dtype=np.float32).reshape(-1, 1, 1)
        self.std = np.asarray(std, dtype=np.float32).reshape(-1, 1, 1)
        if np.any(self.std == 0):
            raise ValueError(f"Normalize: std must be non-zero, got {std}")

    def __call__(self, x):
        if not isinstance(x, Tensor):
            raise TypeError(f"Normalize: expected a Tensor (apply ToTensor first), got {type(x).__name__}")
        if x.ndim != 3 or self.mean.shape[0] not in (1, x.shape[0]):
            raise ValueError(f"Normalize: {self.mean.shape[0]} channel means for an image of shape {x.shape}")
        return Tensor._make(((x._data - self.mean) / self.std).astype(x.dtype))

    def __repr__(self):
        return f"Normalize(mean={self.mean.ravel().tolist()}, std={self.std.ravel().tolist()})"


class RandomCrop:
    """Pad (``padding``, filled with ``fill``) then crop a random ``size`` window."""

    def __init__(self, size, padding=None, fill=0, pad_if_needed=False):
        self.size = (size, size) if isinstance(size, numbers.Integral) else tuple(size)
        self.padding, self.fill, self.pad_if_needed = padding, fill, pad_if_needed

    def __call__(self, img):
        arr = _chw(img, "RandomCrop")
        if self.padding:
            p = self.padding
            pl, pt, pr, pb = (p, p, p, p) if isinstance(p, numbers.Integral) else (
                (p[0], p[1], p[0], p[1]) if len(p) == 2 else tuple(p))
            arr = np.pad(arr, ((0, 0), (pt, pb), (pl, pr)), constant_values=self.fill)
        th, tw = self.size
        if self.pad_if_needed and (arr.shape[1] < th or arr.shape[2] < tw):
            dh, dw = max(th - arr.shape[1], 0), max(tw - arr.shape[2], 0)
            arr = np.pad(arr, ((0, 0), (dh, dh), (dw, dw)), constant_values=self.fill)
        h, w = arr.shape[1:]
        if h < th or w < tw:
            raise ValueError(f"RandomCrop: crop size {self.size} is larger than the (padded) image ({h}, {w})")
        gen = backend.generator("cpu")
        i, j = int(gen.integers(0, h - th + 1)), int(gen.integers(0, w - tw + 1))
        return _like(arr[:, i:i + th, j:j + tw], img)

    def __repr__(self):
        return f"RandomCrop(size={self.size}, padding={self.padding})"


class RandomHorizontalFlip:
    def __init__(self, p=0.5):
        self.p = p

    def __call__(self, img):
        if backend.generator("cpu").random() >= self.p:
            return img
        return _like(_chw(img, "RandomHorizontalFlip")[:, :, ::-1], img)

    def __repr__(self):
        return f"RandomHorizontalFlip(p={self.p})"


class RandomRotation:
    """Rotate by an angle drawn from [-degrees, degrees] (or the given range) about the centre,
    nearest-neighbour sampling, ``fill`` outside (torchvision's defaults)."""

    def __init__(self, degrees, fill=0):
        self.degrees = (-degrees, degrees) if isinstance(degrees, numbers.Real) else tuple(degrees)
        if self.degrees[0] > self.degrees[1]:
            raise ValueError(f"RandomRotation: degrees range {self.degrees} is empty")
        self.fill = fill

    def __call__(self, img):
        angle = float(backend.generator("cpu").uniform(*self.degrees))
        arr = _chw(img, "RandomRotation")
        return _like(rotate(arr, angle, self.fill), img)

    def __repr__(self):
        return f"RandomRotation(degrees={self.degrees})"


def rotate(arr, angle, fill=0):
    """Rotate a (C, H, W) array counter-clockwise by ``angle`` degrees about its centre (nearest neighbour)."""
    c, h, w = arr.shape
    t = math.radians(angle)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    yy, xx = np.mgrid[0:h, 0:w]
    # inverse mapping: where each output pixel comes from
    sx = math.cos(t) * (xx - cx) - math.sin(t) * (yy - cy) + cx
    sy = math.sin(t) * (xx - cx) + math.cos(t) * (yy - cy) + cy
    ix, iy = np.rint(sx).astype(int), np.rint(sy).astype(int)
    ok = (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)
    out = np.full_like(arr, fill)
    out[:, ok] = arr[:, iy[ok], ix[ok]]
    return out
