"""Image transforms, as torchvision.transforms. torchvision's layout rule: before ToTensor an image is a NumPy array
(H, W) or (H, W, C) with at most 4 channels (a Pillow image too), after it a tensor (C, H, W); every transform reads
and returns each in its own layout. An array that is not such an image (a (C, H, W) array such as (3, 32, 32), whose
last dimension is no channel count) is refused, as torchvision's to_pil_image refuses it, rather than misread.
Random transforms draw from minidl's CPU generator (``minidl.manual_seed``)."""
import math
import numbers

import numpy as np

from .. import backend
from ..autograd.tensor import Tensor
from .interpolation import _PIL_FILTERS, InterpolationMode, _interpolation, _nearest_rows

MAX_CHANNELS = 4  # an (H, W, C) array has C in 1..4 (L, LA, RGB, RGBA), as torchvision's to_pil_image requires


def _image_array(img, op):
    """The (H, W) or (H, W, C) NumPy array of an image array or Pillow image, checked against torchvision's rule for
    what an array image is (2-D, or 3-D with 1 to 4 channels last); anything else is a ValueError naming ``op``."""
    arr = np.asarray(img)
    if arr.ndim == 2 or (arr.ndim == 3 and 1 <= arr.shape[-1] <= MAX_CHANNELS):
        return arr
    if arr.ndim == 3:
        raise ValueError(f"{op}: an image array must be (H, W) or (H, W, C) with 1 to {MAX_CHANNELS} channels last "
                         f"(torchvision's layout rule), got shape {arr.shape}, whose last dimension {arr.shape[-1]} "
                         "is not a channel count; a (C, H, W) array goes through ToTensor() first (transforms take "
                         "tensors as (C, H, W)) or becomes (H, W, C) by arr.transpose(1, 2, 0)")
    raise ValueError(f"{op}: expected an image array of shape (H, W) or (H, W, C) (a tensor after ToTensor is "
                     f"(C, H, W)), got shape {arr.shape}")


def _chw(img, op):
    """A (C, H, W) NumPy array from a tensor (C, H, W) / (H, W), or an array or Pillow image (H, W) / (H, W, C)."""
    if isinstance(img, Tensor):
        arr = backend.to_device(img._data, "cpu")
        if arr.ndim == 2:
            return arr[None]
        if arr.ndim != 3:
            raise ValueError(f"{op}: expected a tensor image of shape (C, H, W) or (H, W), got shape {arr.shape}")
        return arr
    arr = _image_array(img, op)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


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


def _pil(img, op):
    """A Pillow image for an image array or Pillow image (transforms done by Pillow, as torchvision's are)."""
    if hasattr(img, "getbands"):
        return img
    from PIL import Image
    return Image.fromarray(np.ascontiguousarray(_image_array(img, op)))


def _unpil(out, img):
    """Pillow's result ``out`` as the type ``img`` came in: a Pillow image stays one, an array comes back an array."""
    return out if hasattr(img, "getbands") else np.asarray(out)


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
        arr = _chw(img, "RandomHorizontalFlip")  # checked whether or not it flips: a wrong layout fails every time
        if backend.generator("cpu").random() >= self.p:
            return img
        return _like(arr[:, :, ::-1], img)

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


def _size_pair(size, op):
    if isinstance(size, numbers.Integral):
        return int(size), int(size)
    if isinstance(size, (tuple, list)) and len(size) in (1, 2):
        return (int(size[0]), int(size[-1]))
    raise ValueError(f"{op}: size must be an int or an (h, w) pair, got {size!r}")


def _ltrb(padding, op):
    """torchvision's padding forms: p (all sides), (left/right, top/bottom), (left, top, right, bottom)."""
    if isinstance(padding, numbers.Integral):
        return (padding,) * 4
    if isinstance(padding, (tuple, list)) and len(padding) in (1, 2, 4):
        p = tuple(int(v) for v in padding)
        return p * 4 if len(p) == 1 else (p[0], p[1], p[0], p[1]) if len(p) == 2 else p
    raise ValueError(f"{op}: padding must be an int or a sequence of 1, 2 or 4 ints, got {padding!r}")


class Pad:
    """Pad the image's sides (``padding``: p, (left/right, top/bottom) or (left, top, right, bottom)) with ``fill``
    ('constant') or by 'edge', 'reflect' or 'symmetric' (NumPy's pad modes, which are torchvision's)."""

    def __init__(self, padding, fill=0, padding_mode="constant"):
        self.padding = _ltrb(padding, "Pad")
        if padding_mode not in ("constant", "edge", "reflect", "symmetric"):
            raise ValueError(f"Pad: padding_mode must be 'constant', 'edge', 'reflect' or 'symmetric', "
                             f"got {padding_mode!r}")
        self.fill, self.padding_mode = fill, padding_mode

    def __call__(self, img):
        left, top, right, bottom = self.padding
        width = ((0, 0), (top, bottom), (left, right))
        arr = _chw(img, "Pad")
        kw = {"constant_values": self.fill} if self.padding_mode == "constant" else {}
        return _like(np.pad(arr, width, mode=self.padding_mode, **kw), img)

    def __repr__(self):
        return f"Pad(padding={self.padding}, fill={self.fill}, padding_mode={self.padding_mode})"


class CenterCrop:
    """The central ``size`` window (torchvision's rounding: top = round((H - h) / 2)); an image smaller than
    ``size`` is zero-padded to it first, as torchvision."""

    def __init__(self, size):
        self.size = _size_pair(size, "CenterCrop")

    def __call__(self, img):
        arr = _chw(img, "CenterCrop")
        th, tw = self.size
        h, w = arr.shape[1:]
        if th > h or tw > w:
            pl, pt = (tw - w) // 2 if tw > w else 0, (th - h) // 2 if th > h else 0
            pr, pb = (tw - w + 1) // 2 if tw > w else 0, (th - h + 1) // 2 if th > h else 0
            arr = np.pad(arr, ((0, 0), (pt, pb), (pl, pr)))
            h, w = arr.shape[1:]
        top, left = int(round((h - th) / 2.0)), int(round((w - tw) / 2.0))
        return _like(arr[:, top:top + th, left:left + tw], img)

    def __repr__(self):
        return f"CenterCrop(size={self.size})"


class Lambda:
    """A user function as a transform."""

    def __init__(self, lambd):
        if not callable(lambd):
            raise TypeError(f"Lambda: expected a callable, got {type(lambd).__name__}")
        self.lambd = lambd

    def __call__(self, img):
        return self.lambd(img)

    def __repr__(self):
        return "Lambda()"


class Grayscale:
    """RGB to one luminance channel (``num_output_channels=3``: repeated three times), as torchvision: an array or
    Pillow image through Pillow's 'L' conversion (L = (299 R + 587 G + 114 B) / 1000), a tensor by 0.2989 R +
    0.587 G + 0.114 B in its dtype."""

    def __init__(self, num_output_channels=1):
        if num_output_channels not in (1, 3):
            raise ValueError(f"Grayscale: num_output_channels must be 1 or 3, got {num_output_channels!r}")
        self.num_output_channels = num_output_channels

    def __call__(self, img):
        arr = _chw(img, "Grayscale")
        if arr.shape[0] != 3:
            raise ValueError(f"Grayscale: expected an RGB image (3 channels), got {arr.shape[0]}")
        if isinstance(img, Tensor):
            return _like(np.repeat(_gray(arr).astype(arr.dtype)[None], self.num_output_channels, axis=0), img)
        gray = _pil(img, "Grayscale").convert("L")
        if self.num_output_channels == 1:  # (H, W), or a Pillow 'L' image
            return _unpil(gray, img)
        return _unpil(gray.convert("RGB"), img)

    def __repr__(self):
        return f"Grayscale(num_output_channels={self.num_output_channels})"


def _resize(img, size, op, mode=InterpolationMode.BILINEAR, antialias=True):
    """``img`` resized to ``size`` (h, w) as torchvision resizes it. Pillow images and arrays: Pillow's filter for
    ``mode`` (antialiased when shrinking). Tensors: the nearest modes pick rows and columns by torch's rule
    (torchvision's tensor path); bilinear and bicubic go channel by channel through Pillow as 32-bit float images,
    rounded back for integer images (torchvision's antialiased tensor kernels are Pillow's, up to the last digits;
    without antialias they are interpolate's, which this layer below functional cannot call: refused, naming it)."""
    from PIL import Image
    h, w = size
    if not isinstance(img, Tensor):
        return _unpil(_pil(img, op).resize((w, h), _PIL_FILTERS[mode.value]), img)
    arr = _chw(img, op)
    if mode.value.startswith("nearest"):
        exact = mode is InterpolationMode.NEAREST_EXACT
        return _like(arr[:, _nearest_rows(arr.shape[1], h, exact)][:, :, _nearest_rows(arr.shape[2], w, exact)], img)
    if mode.value not in ("bilinear", "bicubic"):
        raise ValueError(f"{op}: tensor images resize with NEAREST, NEAREST_EXACT, BILINEAR or BICUBIC (torchvision), "
                         f"got {mode}")
    if not antialias:
        raise ValueError(f"{op}: antialias=False is not supported for tensor images (F.interpolate(img[None], size, "
                         f"mode={mode.value!r})[0] is torchvision's result)")
    resample = _PIL_FILTERS[mode.value]
    out = np.stack([np.asarray(Image.fromarray(ch.astype(np.float32), mode="F").resize((w, h), resample))
                    for ch in arr])
    if arr.dtype.kind in "iu":  # torchvision rounds (and clamps) back to an integer image
        out = np.clip(np.round(out), np.iinfo(arr.dtype).min, np.iinfo(arr.dtype).max)
    return _like(out.astype(arr.dtype), img)


def _image_hw(img, op):
    return _chw(img, op).shape[1:]


class Resize:
    """Resize to ``size``: (h, w), or an int that the shorter side becomes, the other keeping the aspect ratio
    (torchvision's rule: the longer side int(size * long / short), capped by ``max_size``). ``interpolation``: an
    InterpolationMode (BILINEAR by default, BICUBIC, NEAREST, NEAREST_EXACT; Pillow images and arrays also BOX,
    HAMMING, LANCZOS) or Pillow's filter number; how each kind of image is resized: see _resize. ``antialias``
    applies to tensors (Pillow always antialiases when shrinking), as in torchvision."""

    def __init__(self, size, interpolation=InterpolationMode.BILINEAR, max_size=None, antialias=True):
        if isinstance(size, numbers.Integral):
            self.size = int(size)
        else:
            self.size = _size_pair(size, "Resize")
        self.interpolation = _interpolation(interpolation, "Resize")
        self.max_size, self.antialias = max_size, bool(antialias)

    def target(self, h, w):
        if not isinstance(self.size, int):
            return self.size
        short, long = (h, w) if h <= w else (w, h)
        new_short, new_long = self.size, int(self.size * long / short)
        if self.max_size is not None and new_long > self.max_size:
            new_short, new_long = int(self.max_size * new_short / new_long), self.max_size
        return (new_short, new_long) if h <= w else (new_long, new_short)

    def __call__(self, img):
        return _resize(img, self.target(*_image_hw(img, "Resize")), "Resize", self.interpolation, self.antialias)

    def __repr__(self):
        return (f"Resize(size={self.size}, interpolation={self.interpolation.value}, max_size={self.max_size}, "
                f"antialias={self.antialias})")


class RandomResizedCrop:
    """A random window of ``scale`` (a fraction of the area) and ``ratio`` (width / height, drawn log-uniformly),
    resized to ``size``: torchvision's sampling (ten tries, then a central crop of the ratio clamped into range)."""

    def __init__(self, size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
        self.size = _size_pair(size, "RandomResizedCrop")
        if scale[0] > scale[1] or ratio[0] > ratio[1]:
            raise ValueError(f"RandomResizedCrop: scale and ratio must be (min, max) ranges, got {scale}, {ratio}")
        self.scale, self.ratio = tuple(scale), tuple(ratio)

    def params(self, h, w):
        """(top, left, height, width) of the window."""
        gen, area = backend.generator("cpu"), h * w
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target = area * float(gen.uniform(*self.scale))
            aspect = math.exp(float(gen.uniform(*log_ratio)))
            cw, ch = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
            if 0 < cw <= w and 0 < ch <= h:
                return int(gen.integers(0, h - ch + 1)), int(gen.integers(0, w - cw + 1)), ch, cw
        in_ratio = w / h
        if in_ratio < self.ratio[0]:
            cw, ch = w, int(round(w / self.ratio[0]))
        elif in_ratio > self.ratio[1]:
            ch, cw = h, int(round(h * self.ratio[1]))
        else:
            cw, ch = w, h
        return (h - ch) // 2, (w - cw) // 2, ch, cw

    def __call__(self, img):
        arr = _chw(img, "RandomResizedCrop")
        top, left, ch, cw = self.params(*arr.shape[1:])
        return _resize(_like(arr[:, top:top + ch, left:left + cw], img), self.size, "RandomResizedCrop")

    def __repr__(self):
        return f"RandomResizedCrop(size={self.size}, scale={self.scale}, ratio={self.ratio})"


def _range(value, name, center=1.0, bound=(0, float("inf"))):
    """torchvision's jitter ranges: a number v gives [center - v, center + v] (clipped at the bound), a pair
    itself; None where the range is the identity."""
    if isinstance(value, numbers.Number):
        if value < 0 or center + value > bound[1]:
            raise ValueError(f"ColorJitter: {name} must be a number in [0, {bound[1] - center}] or a (min, max) pair, "
                             f"got {value}")
        value = (max(center - value, bound[0]), center + value)
    elif not (isinstance(value, (tuple, list)) and len(value) == 2 and bound[0] <= value[0] <= value[1] <= bound[1]):
        raise ValueError(f"ColorJitter: {name} must be a number or a (min, max) pair within {bound}, got {value!r}")
    value = (float(value[0]), float(value[1]))
    return None if value[0] == value[1] == center else value


def _gray(rgb):
    return 0.2989 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


def _blend(a, b, factor, bound):
    return np.clip(factor * a + (1.0 - factor) * b, 0, bound)


def _rgb_to_hsv(rgb):
    r, g, b = rgb
    maxc, minc = rgb.max(0), rgb.min(0)
    eqc, cr = maxc == minc, maxc - minc
    s = cr / np.where(eqc, 1.0, maxc)
    div = np.where(eqc, 1.0, cr)
    rc, gc, bc = (maxc - r) / div, (maxc - g) / div, (maxc - b) / div
    h = ((maxc == r) * (bc - gc) + ((maxc == g) & (maxc != r)) * (2.0 + rc - bc)
         + ((maxc != g) & (maxc != r)) * (4.0 + gc - rc))
    return np.stack([(h / 6.0 + 1.0) % 1.0, s, maxc])


def _hsv_to_rgb(hsv):
    h, s, v = hsv
    i = np.floor(h * 6.0)
    f = h * 6.0 - i
    i = i.astype(np.int64) % 6
    p, q, t = (np.clip(v * (1.0 - x), 0, 1) for x in (s, s * f, s * (1.0 - f)))
    table = np.stack([np.stack(c) for c in ((v, q, p, p, t, v), (t, v, v, q, p, p), (p, p, t, v, v, q))])
    return np.take_along_axis(table, np.broadcast_to(i[None, None], (3, 1) + i.shape), 1)[:, 0]


def _adjust_tensor(arr, fn, factor):
    """torchvision's tensor formulas on a (3, H, W) float array in [0, 1] (or uint8 in [0, 255])."""
    bound = 255.0 if arr.dtype == np.uint8 else 1.0
    x = arr.astype(np.float64)
    if fn == 0:
        out = _blend(x, 0.0, factor, bound)
    elif fn == 1:
        out = _blend(x, _gray(x).mean(), factor, bound)
    elif fn == 2:
        out = _blend(x, _gray(x)[None], factor, bound)
    else:
        hsv = _rgb_to_hsv(x / bound)
        hsv[0] = (hsv[0] + factor) % 1.0
        out = _hsv_to_rgb(hsv) * bound
    return out.astype(arr.dtype)


def _adjust_pil(pil, fn, factor):
    """torchvision's Pillow path: ImageEnhance for brightness, contrast and saturation, the H channel shifted in
    Pillow's HSV for hue."""
    from PIL import Image, ImageEnhance
    if fn < 3:
        return (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color)[fn](pil).enhance(factor)
    if pil.mode in ("L", "1", "I", "F"):
        return pil
    h, s, v = pil.convert("HSV").split()
    np_h = np.array(h, dtype=np.uint8)
    with np.errstate(over="ignore"):
        np_h += np.uint8(factor * 255)
    return Image.merge("HSV", (Image.fromarray(np_h, "L"), s, v)).convert(pil.mode)


class ColorJitter:
    """Random brightness, contrast, saturation and hue changes, in a random order, as torchvision's (its Pillow
    path for arrays and Pillow images, its tensor formulas for tensors). A number v jitters by a factor in
    [max(0, 1 - v), 1 + v] (hue: a shift in [-v, v] of the hue circle, v <= 0.5)."""

    def __init__(self, brightness=0, contrast=0, saturation=0, hue=0):
        self.brightness = _range(brightness, "brightness")
        self.contrast = _range(contrast, "contrast")
        self.saturation = _range(saturation, "saturation")
        self.hue = _range(hue, "hue", center=0.0, bound=(-0.5, 0.5))

    def params(self):
        """(order of the four adjustments, factor of each or None), drawn as torchvision draws them."""
        gen = backend.generator("cpu")
        order = [int(k) for k in gen.permutation(4)]
        factors = [None if r is None else float(gen.uniform(*r))
                   for r in (self.brightness, self.contrast, self.saturation, self.hue)]
        return order, factors

    def __call__(self, img):
        order, factors = self.params()
        if isinstance(img, Tensor):
            arr = _chw(img, "ColorJitter")
            for fn in order:
                if factors[fn] is not None:
                    arr = _adjust_tensor(arr, fn, factors[fn])
            return _like(arr, img)
        pil = _pil(img, "ColorJitter")
        for fn in order:
            if factors[fn] is not None:
                pil = _adjust_pil(pil, fn, factors[fn])
        return _unpil(pil, img)

    def __repr__(self):
        return (f"ColorJitter(brightness={self.brightness}, contrast={self.contrast}, saturation={self.saturation}, "
                f"hue={self.hue})")


def inverse_affine_matrix(center, angle, translate, scale, shear):
    """torchvision's inverse affine matrix (6 numbers, as Pillow's AFFINE transform takes them): rotation by
    ``angle`` degrees and shear (x, y) in degrees about ``center``, then ``scale``, then ``translate`` (pixels)."""
    rot, sx, sy = math.radians(angle), math.radians(shear[0]), math.radians(shear[1])
    (cx, cy), (tx, ty) = center, translate
    a = math.cos(rot - sy) / math.cos(sy)
    b = -math.cos(rot - sy) * math.tan(sx) / math.cos(sy) - math.sin(rot)
    c = math.sin(rot - sy) / math.cos(sy)
    d = -math.sin(rot - sy) * math.tan(sx) / math.cos(sy) + math.cos(rot)
    m = [v / scale for v in (d, -b, 0.0, -c, a, 0.0)]
    m[2] += m[0] * (-cx - tx) + m[1] * (-cy - ty) + cx
    m[5] += m[3] * (-cx - tx) + m[4] * (-cy - ty) + cy
    return m


class RandomAffine:
    """A random rotation (``degrees``), translation (``translate``: fractions of width and height), scale and
    shear (degrees: s, (min, max) along x, or (xmin, xmax, ymin, ymax)), drawn and applied as torchvision applies
    them to Pillow images: nearest-neighbour sampling through Pillow about the image centre, ``fill`` outside
    (tensors channel by channel)."""

    def __init__(self, degrees, translate=None, scale=None, shear=None, fill=0):
        self.degrees = (-degrees, degrees) if isinstance(degrees, numbers.Number) else tuple(degrees)
        if len(self.degrees) != 2 or self.degrees[0] > self.degrees[1]:
            raise ValueError(f"RandomAffine: degrees must be a number or a (min, max) pair, got {degrees!r}")
        if translate is not None and not (len(translate) == 2 and all(0 <= t <= 1 for t in translate)):
            raise ValueError(f"RandomAffine: translate must be two fractions in [0, 1], got {translate!r}")
        if scale is not None and not (len(scale) == 2 and 0 < scale[0] <= scale[1]):
            raise ValueError(f"RandomAffine: scale must be a (min, max) pair of positive numbers, got {scale!r}")
        if isinstance(shear, numbers.Number):
            shear = (-shear, shear)
        if shear is not None and len(shear) not in (2, 4):
            raise ValueError(f"RandomAffine: shear must be a number or 2 or 4 numbers, got {shear!r}")
        self.translate, self.scale, self.shear, self.fill = translate, scale, shear, fill

    def params(self, width, height):
        """(angle, (tx, ty), scale, (shear x, shear y)), drawn in torchvision's order."""
        gen = backend.generator("cpu")
        angle = float(gen.uniform(*self.degrees))
        tx = ty = 0
        if self.translate is not None:
            dx, dy = self.translate[0] * width, self.translate[1] * height
            tx, ty = int(round(float(gen.uniform(-dx, dx)))), int(round(float(gen.uniform(-dy, dy))))
        scale = 1.0 if self.scale is None else float(gen.uniform(*self.scale))
        shear = [0.0, 0.0]
        if self.shear is not None:
            shear[0] = float(gen.uniform(self.shear[0], self.shear[1]))
            if len(self.shear) == 4:
                shear[1] = float(gen.uniform(self.shear[2], self.shear[3]))
        return angle, (tx, ty), scale, tuple(shear)

    def __call__(self, img):
        from PIL import Image
        arr = _chw(img, "RandomAffine")
        h, w = arr.shape[1:]
        angle, translate, scale, shear = self.params(w, h)
        m = inverse_affine_matrix((w * 0.5, h * 0.5), angle, translate, scale, shear)

        def warp(pil, fill):
            return pil.transform((w, h), Image.AFFINE, m, Image.NEAREST, fillcolor=fill)
        if isinstance(img, Tensor):
            out = np.stack([np.asarray(warp(Image.fromarray(ch.astype(np.float32), mode="F"), float(self.fill)))
                            for ch in arr]).astype(arr.dtype)
            return _like(out, img)
        pil = _pil(img, "RandomAffine")
        fill = self.fill if len(pil.getbands()) == 1 or not isinstance(self.fill, numbers.Number) \
            else (self.fill,) * len(pil.getbands())
        return _unpil(warp(pil, fill), img)

    def __repr__(self):
        return (f"RandomAffine(degrees={self.degrees}, translate={self.translate}, scale={self.scale}, "
                f"shear={self.shear})")
