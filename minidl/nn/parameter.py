"""Parameter: a Tensor that a Module registers as trainable."""
from ..autograd.convert import _as_array
from ..autograd.tensor import Tensor


class Parameter(Tensor):
    """A tensor that requires grad by default and is collected by ``Module.parameters()``."""

    __slots__ = ()

    def __init__(self, data=None, requires_grad=True):
        if data is None:
            data = []
        arr = data._data if isinstance(data, Tensor) else _as_array(data, op="Parameter")
        Tensor.__init__(self, arr, dtype=arr.dtype, requires_grad=requires_grad)  # keeps the data's dtype, as torch

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()
