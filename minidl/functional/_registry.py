"""The op registry: every public op is registered once here, which makes it a Tensor method too.

``tests/opinfo.py`` must have a row for every name in ``OPS``; a test fails when one is missing.
"""
from ..autograd.tensor import _METHODS  # public name -> function
from ..autograd.tensor import _OPS as OPS
from ..autograd.tensor import Tensor

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
        for m in ((key,) if method else ()) + tuple(methods):
            _method(m, fn)
        return fn
    return deco


def _method(name, fn):
    """``Tensor.<name>`` is ``fn``: set on the class, where Python's attribute lookup finds it at once (through
    Tensor.__getattr__, which stays for the error, a method cost 0.7 us more a call: benchmarks/NOTES.md, change 65).
    An attribute that Tensor itself defines wins, as it did over __getattr__; a name registered again takes the
    later function."""
    if name in _METHODS or not hasattr(Tensor, name):
        setattr(Tensor, name, fn)
    _METHODS[name] = fn
