"""The op library, one module per family; users see it as ``minidl.nn.functional`` (``F``).

Every public op registers itself (``_registry.register``) in ``OPS``, which makes it a name here and
``F.<name>``; it also needs a row in ``tests/opinfo.py``. Adding an op touches those two places only.
"""
from . import math, unary, view, indexing, shape, reduction, activation, loss, linear, conv, pooling, normalization
from . import attention  # scaled_dot_product_attention, multi_head_attention_forward
from ._registry import OPS

globals().update(OPS)  # every registered op, by its public name (the modules above filled OPS)


def __getattr__(name):  # an op registered after this module was imported (a user's own)
    try:
        return OPS[name]
    except KeyError:
        raise AttributeError(f"module 'minidl.nn.functional' has no attribute {name!r}") from None
__all__ = sorted(OPS)
