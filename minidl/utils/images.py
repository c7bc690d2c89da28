"""torchvision.utils' ``make_grid`` and ``save_image``: a batch of images tiled into one, and written to a PNG
(or any format Pillow writes; Pillow comes with matplotlib and is imported only when an image is saved). GAN and
VAE programs write their samples with them."""
import math

import numpy as np

from .. import backend
from ..autograd.tensor import Tensor


def _images(tensor):
    """(B, C, H, W) float host array from a 4-D tensor, a 3-D (C, H, W) one, a 2-D (H, W) one or a list of 3-D."""
    if isinstance(tensor, (list, tuple)):
        if not tensor or not all(isinstance(t, Tensor) for t in tensor):
            raise TypeError("make_grid: expected a Tensor or a non-empty list of Tensors")
        arr = np.stack([backend.to_device(t.detach()._data, "cpu") for t in tensor])
    elif isinstance(tensor, Tensor):
        arr = backend.to_device(tensor.detach()._data, "cpu")
    else:
        raise TypeError(f"make_grid: expected a Tensor or a list of Tensors, got {type(tensor).__name__}")
    if arr.ndim == 2:  # one (H, W) image
        arr = arr[None]
    if arr.ndim == 3:  # one (C, H, W) image
        arr = arr[None]
    if arr.ndim != 4:
        raise ValueError(f"make_grid: expected images of shape (B, C, H, W), (C, H, W) or (H, W), got {arr.shape}")
    return arr.astype(np.float32) if arr.dtype.kind != "f" else arr


def _normalize(arr, value_range, scale_each):
    def scale(a, lo, hi):
        a = np.clip(a, lo, hi)
        return (a - lo) / max(hi - lo, 1e-5)
    if value_range is not None and (not isinstance(value_range, (tuple, list)) or len(value_range) != 2):
        raise ValueError(f"make_grid: value_range must be a (min, max) pair, got {value_range!r}")
    if scale_each:
        return np.stack([scale(a, *(value_range or (a.min(), a.max()))) for a in arr])
    return scale(arr, *(value_range or (arr.min(), arr.max())))


def make_grid(tensor, nrow=8, padding=2, normalize=False, value_range=None, scale_each=False, pad_value=0.0):
    """The images of ``tensor`` (B, C, H, W) side by side, ``nrow`` to a row, ``padding`` pixels of ``pad_value``
    around and between them, as one (C, H', W') tensor (one-channel images become three, as torchvision).
    ``normalize`` shifts them into [0, 1] by ``value_range`` (min, max) or by their own min and max (each
    image's with ``scale_each``)."""
    arr = _images(tensor)
    if arr.shape[1] == 1:
        arr = np.concatenate([arr] * 3, axis=1)
    if normalize:
        arr = _normalize(arr, value_range, scale_each)
    if len(arr) == 1:
        return Tensor._make(np.ascontiguousarray(arr[0]))
    b, c, h, w = arr.shape
    xmaps = min(nrow, b)
    ymaps = int(math.ceil(b / xmaps))
    height, width = h + padding, w + padding
    grid = np.full((c, height * ymaps + padding, width * xmaps + padding), pad_value, dtype=arr.dtype)
    for k in range(b):
        y, x = divmod(k, xmaps)
        grid[:, y * height + padding:y * height + padding + h, x * width + padding:x * width + padding + w] = arr[k]
    return Tensor._make(grid)


def save_image(tensor, fp, format=None, **kwargs):
    """Write ``make_grid(tensor, **kwargs)`` as an 8-bit image to ``fp`` (a path or a file object): values in
    [0, 1] become 0-255, rounded, clamped. ``format`` as Pillow's (else from the file name)."""
    grid = make_grid(tensor, **kwargs)._data
    pixels = np.clip(grid * 255 + 0.5, 0, 255).astype(np.uint8).transpose(1, 2, 0)
    try:
        from PIL import Image
    except ImportError as exc:  # Pillow comes with matplotlib, a dependency of minidl
        raise ImportError("save_image: needs Pillow (pip install pillow)") from exc
    Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels).save(fp, format=format)
