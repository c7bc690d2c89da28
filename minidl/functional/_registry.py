"""The op registry: every public op is registered once here, which makes it a Tensor method too.

``tests/opinfo.py`` must have a row for every name in ``OPS``; a test fails when one is missing.
"""
from ..autograd.tensor import _METHODS, _OPS as OPS  # public name -> function


def register(name=None, method=True, methods=()):
    """Register a public op under ``name`` (default: the function's name).

    ``method=True`` also makes it ``Tensor.<name>``; ``methods`` adds more method names (aliases).
    """
    def deco(fn):
        key = name or fn.__name__
        if key in OPS:
            raise RuntimeError(f"op {key!r} registered twice")
        OPS[key] = fn
        if method:
            _METHODS[key] = fn
        for m in methods:
            _METHODS[m] = fn
        return fn
    return deco
