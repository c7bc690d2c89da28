"""minidl.Size: a tensor's shape, as torch.Size (a tuple of ints with torch's printing and ``numel()``).

``Tensor.shape`` reads ``_SIZES`` directly: one Size per shape, made once and reused."""
import operator

import numpy as np


class Size(tuple):
    """A tensor's shape, as torch.Size: a tuple of ints that prints as ``minidl.Size([2, 3])``, with ``numel()``.

    It equals and hashes as the plain tuple; slicing, ``+`` and ``*`` give a Size. ``Size(iterable)`` takes ints
    (anything with ``__index__``, as a 0-d integer tensor)."""

    __slots__ = ()

    def __new__(cls, sizes=()):
        items = []
        for i, n in enumerate(sizes):
            try:
                items.append(int(operator.index(n)))
            except TypeError:
                raise TypeError(f"minidl.Size() takes an iterable of 'int' (item {i} is '{type(n).__name__}')") \
                    from None
        return tuple.__new__(cls, items)

    def numel(self):
        """The number of elements of a tensor of this shape (1 for ``Size([])``)."""
        n = 1
        for d in self:
            n *= d
        return n

    def __getitem__(self, key):
        item = tuple.__getitem__(self, key)
        return tuple.__new__(Size, item) if isinstance(key, slice) else item

    def __add__(self, other):
        if not isinstance(other, tuple):
            return NotImplemented
        return tuple.__new__(Size, tuple.__add__(self, other))

    def __radd__(self, other):
        if not isinstance(other, tuple):
            return NotImplemented
        return tuple.__new__(Size, tuple.__add__(other, self))

    def __mul__(self, n):
        return tuple.__new__(Size, tuple.__mul__(self, n))

    __rmul__ = __mul__

    def __repr__(self):
        return f"minidl.Size({list(self)})"

    def __reduce__(self):
        return Size, (tuple(self),)


# Tensor.shape is read on every op: one Size per shape, reused (a dict lookup costs less than making a tuple
# subclass). Bounded: a program with ever-new shapes (variable-length sequences) only refills it.
_SIZES = {}
_SIZES_MAX = 4096


def _size_of(shape):
    """The Size for the array shape ``shape`` (a tuple of ints)."""
    try:
        return _SIZES[shape]
    except KeyError:
        if len(_SIZES) >= _SIZES_MAX:
            _SIZES.clear()
        size = _SIZES[shape] = tuple.__new__(Size, shape)
        return size


def _is_size(n):
    """A dimension size: an int (a list or tuple is data, as in torch.Tensor([2, 3]))."""
    return isinstance(n, (int, np.integer)) and not isinstance(n, bool)


__all__ = ["Size"]
