"""The op registry: every public op is registered once here, which makes it a Tensor method too.

``tests/opinfo.py`` must have a row for every name in ``OPS``; a test fails when one is missing.
"""
from ..autograd.tensor import _METHODS  # public name -> function
from ..autograd.tensor import _OPS as OPS

TOP = set()  # the names that are also minidl.<name>, as torch.<name> (minidl/__init__.py takes them from here)


def register(name=None, method=True, methods=(), top=False):
    """Register a public op under ``name`` (default: the function's name).

    ``method=True`` also makes it ``Tensor.<name>``; ``methods`` adds more method names (aliases); ``top=True``
    makes it ``minidl.<name>`` too, for ops that torch has at its top level with the same signature.
    """
    def deco(fn):
        key = name or fn.__name__
        if key in OPS:
            raise RuntimeError(f"op {key!r} registered twice")
        OPS[key] = fn
        if top:
            TOP.add(key)
        if method:
            _METHODS[key] = fn
        for m in methods:
            _METHODS[m] = fn
        return fn
    return deco
