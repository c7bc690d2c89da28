"""torchvision's interpolation modes for the resizing transforms (transforms.Resize), and the small pieces of
resizing that are the same for every image kind: Pillow's filter per mode, the nearest modes' source rows."""
import enum
import numbers

import numpy as np


class InterpolationMode(enum.Enum):
    """torchvision's interpolation modes (``transforms.InterpolationMode.BICUBIC``), its names and values."""
    NEAREST = "nearest"
    NEAREST_EXACT = "nearest-exact"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    BOX = "box"
    HAMMING = "hamming"
    LANCZOS = "lanczos"


_PIL_FILTERS = {"nearest": 0, "nearest-exact": 0, "bilinear": 2, "bicubic": 3, "box": 4, "hamming": 5, "lanczos": 1}


def _interpolation(mode, op):
    """An InterpolationMode from one, or from Pillow's filter number (Image.BICUBIC), as torchvision takes them."""
    if isinstance(mode, InterpolationMode):
        return mode
    modes = {n: InterpolationMode(m) for m, n in _PIL_FILTERS.items() if m != "nearest-exact"}
    if isinstance(mode, numbers.Integral) and not isinstance(mode, bool) and int(mode) in modes:
        return modes[int(mode)]
    raise TypeError(f"{op}: interpolation must be a transforms.InterpolationMode or Pillow's filter number (0-5), got "
                    f"{mode!r}")


def _nearest_rows(n_in, n_out, exact):
    """torch's nearest source index per output (float32 as torch): floor(i * in / out), 'nearest-exact' i + 0.5."""
    dst = np.arange(n_out, dtype=np.float32) + np.float32(0.5 if exact else 0)
    return np.minimum(np.floor(dst * (np.float32(n_in) / np.float32(n_out))).astype(np.int64), n_in - 1)
