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
    """``Tensor.<name>`` is ``fn``, set on the class: Python's attribute lookup finds it at once, where finding it
    through ``Tensor.__getattr__`` (which stays for the error on names that are not ops) cost about 0.8 us more a call
    (benchmarks/NOTES.md, change 65). An attribute that Tensor defines itself is never replaced, as it was never
    shadowed before; a method name registered again takes the later function."""
    if not hasattr(Tensor, name) or (name in _METHODS and Tensor.__dict__.get(name) is _METHODS[name]):
        setattr(Tensor, name, fn)
    _METHODS[name] = fn


def unregister(name):
    """Take op ``name`` out again, with its method names (and the methods the registry set on Tensor): for tests
    that register a toy op."""
    fn = OPS.pop(name, None)
    TOP.discard(name)
    for m in [m for m, f in _METHODS.items() if f is fn]:
        del _METHODS[m]
        if Tensor.__dict__.get(m) is fn:
            delattr(Tensor, m)
