"""Tensor: an array (NumPy or CuPy) plus what autograd needs to know about it.

A Tensor holds
  _data          its numbers: a NumPy array on the CPU, a CuPy array on a GPU
  requires_grad  whether backward computes a gradient for it
  grad           that gradient, added up by backward (kept on leaves, and on others after retain_grad())
  grad_fn        the Function node whose forward made it (None for a leaf: a tensor the user made)
  _vc            its version counter: in-place changes, so a graph that saved it refuses stale values

Ops are not written here: minidl.functional registers them (_OPS, _METHODS, at the end of this file) and Tensor's
operators and methods call them. Conversions (from Python data, NumPy, torch; to NumPy, DLPack, pickle) are in
convert.py, Tensor's base ``_Interop`` among them; ``Tensor.shape``'s type, minidl.Size, is in size.py."""
import numbers
import weakref

import numpy as np

from .. import backend
from ..backend.errors import RuntimeTypeError, RuntimeValueError
from .capturing import not_capturable
from .convert import _Interop, _as_array, _raw, _rebuild_tensor
from .grad_mode import is_grad_enabled, no_grad
from .size import _SIZES, Size, _is_size, _size_of


class Tensor(_Interop):
    """An n-dimensional array that records the ops applied to it, for reverse-mode autodiff.

    Create tensors with :func:`minidl.tensor`, :func:`minidl.zeros` and friends. ``Tensor(data)``
    accepts the same data as ``minidl.tensor``.
    """

    # _vc counts in-place changes, as torch's version counter: a graph that saved this tensor refuses to run
    # backward once it changed (the saved values would be silently wrong). A one-element list, shared by the
    # views of one array (Function.apply hands it on) and by detach(), so that a change through any of them counts.
    # _acc: a weak reference to this leaf's AccumulateGrad node (autograd/function.py), made by the first op that
    # records an edge to it and gone with the graph
    __slots__ = ("_data", "requires_grad", "grad", "grad_fn", "_hooks", "_retains_grad", "_vc", "_post_acc_hooks",
                 "_acc", "__weakref__")

    def __init__(self, *args, dtype=None, device=None, requires_grad=False):
        """torch.Tensor's legacy constructor: ``Tensor(data)`` takes the default float dtype whatever the data
        (``Tensor([1, 2])`` is float32), a tensor passes through as it is, ``Tensor(d0, d1, ...)`` is a zero-filled
        tensor of that shape (uninitialised in torch) and ``Tensor()`` an empty one. ``dtype=`` (minidl's) picks
        another dtype. :func:`minidl.tensor` infers the dtype from the data instead."""
        if len(args) == 1 and not _is_size(args[0]):
            data = args[0]
            if isinstance(data, (numbers.Number, np.generic)):
                raise TypeError(f"Tensor: data must be a sequence (got {type(data).__name__}); "
                                f"minidl.tensor({data!r}) makes a 0-d tensor")
            if dtype is None and not isinstance(data, Tensor):
                dtype = backend.default_dtype()
            arr = _as_array(data, dtype, device, "Tensor")
        else:
            if not all(_is_size(n) for n in args):
                raise TypeError(f"Tensor: expected data or sizes (ints), got {args!r}")
            if any(n < 0 for n in args):
                raise RuntimeValueError(f"Tensor: sizes must be non-negative, got {args}")
            arr = np.zeros(tuple(int(n) for n in args) or (0,), dtype=backend.as_dtype(dtype, "Tensor") or
                           backend.default_dtype())
            if device is not None:
                arr = backend.to_device(arr, device)
        self._data = arr
        self.grad = None
        self.grad_fn = None
        self._hooks = None
        self._retains_grad = False
        self._vc = [0]
        self._post_acc_hooks = self._acc = None
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    @classmethod
    def _make(cls, array, requires_grad=False, grad_fn=None):
        """Wrap an array without conversion (internal fast path)."""
        t = object.__new__(cls)
        t._data = array
        t.requires_grad = requires_grad
        t.grad = None
        t.grad_fn = grad_fn
        t._hooks = None
        t._retains_grad = False
        t._vc = [0]
        t._post_acc_hooks = t._acc = None
        return t

    # -- properties --------------------------------------------------------------------------------
    @property
    def shape(self):
        """The tensor's sizes, a :class:`minidl.Size` (a tuple)."""
        try:
            return _SIZES[self._data.shape]
        except KeyError:
            return _size_of(tuple(self._data.shape))

    @property
    def dtype(self):
        return backend.wrap_dtype(self._data.dtype)

    @property
    def device(self):
        return backend.device_of(self._data)

    @property
    def ndim(self):
        return self._data.ndim

    @property
    def is_leaf(self):
        return self.grad_fn is None

    @property
    def is_cuda(self):
        return self.device.type == "cuda"

    @property
    def is_cpu(self):
        return self.device.type == "cpu"

    @property
    def is_xpu(self):  # torch's Intel-GPU and Apple-GPU devices: minidl has neither
        return False

    @property
    def is_mps(self):
        return False

    @property
    def _version(self):
        """How many in-place changes this tensor (or a view of the same array) has seen."""
        return self._vc[0]

    @property
    def data(self):
        """A tensor sharing this one's array, detached from the graph (as torch's ``.data``: changes made through
        it are not counted in the version, so autograd cannot see them)."""
        return Tensor._make(self._data)

    @data.setter
    def data(self, value):
        arr = value._data if isinstance(value, Tensor) else _as_array(value)
        self._data = arr

    @property
    def T(self):
        return self.permute(*reversed(range(self.ndim)))

    @property
    def mT(self):
        return self.transpose(-2, -1)

    def size(self, dim=None):
        """The shape as a :class:`minidl.Size`, or with ``dim`` that dimension's size (an int)."""
        if dim is None:
            return self.shape
        return self._data.shape[_dim(dim, self.ndim, "size")]

    def dim(self):
        return self._data.ndim

    def numel(self):
        return int(self._data.size)

    def nelement(self):
        """The number of elements (torch's older name for :meth:`numel`)."""
        return int(self._data.size)

    def element_size(self):
        return self._data.itemsize

    def is_floating_point(self):
        return self._data.dtype.kind == "f"

    def is_contiguous(self, memory_format=backend.contiguous_format):
        if memory_format is backend.channels_last:
            return backend.is_channels_last(self._data)
        return bool(self._data.flags.c_contiguous)

    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self._data.shape[0]

    # -- to another device or dtype (an op); float(), cpu(), numpy(), item(), pickling... are _Interop's --------
    def to(self, *args, **kwargs):
        """``to(device, dtype, non_blocking, copy, memory_format)``, ``to(dtype, ...)`` or ``to(other, ...)``,
        as torch; differentiable."""
        return _op("to")(self, *args, **kwargs)

    # -- autograd ------------------------------------------------------------------------------------
    def requires_grad_(self, requires_grad=True):
        if requires_grad and self._data.dtype.kind not in "fc":
            raise RuntimeError(f"requires_grad_: only floating point tensors can require gradients, "
                               f"got dtype {self.dtype}")
        if not self.is_leaf and not requires_grad:
            raise RuntimeError("requires_grad_(False) on a non-leaf tensor; use detach() instead")
        self.requires_grad = bool(requires_grad)
        return self

    def detach(self):
        """A tensor sharing this one's array (and its version counter), cut from the graph."""
        t = Tensor._make(self._data)
        t._vc = self._vc
        return t

    def detach_(self):
        self.grad_fn = None
        self.requires_grad = False
        return self

    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad`` (as torch's ``Tensor.backward``)."""
        from .engine import backward
        backward([self], None if gradient is None else [gradient], retain_graph=retain_graph,
                 create_graph=create_graph, inputs=inputs)

    def register_hook(self, hook):
        """Call ``hook(grad)`` when this tensor's gradient is computed; a returned tensor replaces it."""
        if not self.requires_grad:
            raise RuntimeError("register_hook: cannot register a hook on a tensor that does not require grad")
        if not callable(hook):
            raise TypeError(f"register_hook: expected a callable, got {type(hook).__name__}")
        owner = self if self.grad_fn is None else self.grad_fn
        if owner._hooks is None:
            owner._hooks = []
        owner._hooks.append(hook)
        return _HookHandle(owner._hooks, hook)

    def register_post_accumulate_grad_hook(self, hook):
        """Call ``hook(tensor)`` on this leaf once backward has added its gradient to ``.grad`` (as torch's): the
        moment its gradient is final, while backward goes on through the rest of the graph."""
        if self.grad_fn is not None:
            raise RuntimeError("register_post_accumulate_grad_hook: only leaf tensors accumulate into .grad")
        if not self.requires_grad:
            raise RuntimeError("register_post_accumulate_grad_hook: the tensor does not require grad")
        if not callable(hook):
            raise TypeError(f"register_post_accumulate_grad_hook: expected a callable, got {type(hook).__name__}")
        hooks = self._post_acc_hooks
        if hooks is None:
            hooks = self._post_acc_hooks = []
        hooks.append(hook)
        return _HookHandle(hooks, hook)

    def retain_grad(self):
        """Keep ``.grad`` for this non-leaf tensor after backward."""
        if self.grad_fn is None or self._retains_grad:
            return
        if not self.requires_grad:
            raise RuntimeError("retain_grad: the tensor does not require grad")
        ref = weakref.ref(self)

        def keep(grad):
            t = ref()
            if t is not None:
                t.grad = grad if t.grad is None else t.grad + grad
        self._retains_grad = True
        self.register_hook(keep)

    # -- in-place (no autograd: allowed on tensors outside the graph, or under no_grad) ------------
    def _check_inplace(self, name):
        if self.requires_grad and is_grad_enabled():
            raise RuntimeError(f"{name}: a tensor that requires grad cannot be changed in place while grad "
                               "is enabled; wrap it in minidl.no_grad()")

    def _assign(self, name, value):
        self._check_inplace(name)
        not_capturable(f"{name} (an in-place change outside the ops)")
        arr = value._data if isinstance(value, Tensor) else value
        xp = backend.get_array_module(self._data)
        self._data[...] = xp.asarray(arr, dtype=self._data.dtype) if not np.isscalar(arr) else arr
        self._vc[0] += 1
        return self

    def _operand(self, name, other):
        """``other``'s array (or number), checked to broadcast to this tensor's shape: an in-place result keeps the
        shape, so torch refuses an operand that would grow it."""
        o = other._data if isinstance(other, Tensor) else other
        shape = getattr(o, "shape", None)
        if shape is not None and shape != self._data.shape:
            try:
                fits = np.broadcast_shapes(shape, self._data.shape) == self._data.shape
            except ValueError:
                fits = False
            if not fits:
                raise RuntimeValueError(f"{name}: an operand of shape {tuple(shape)} does not broadcast to the "
                                        f"tensor's shape {tuple(self._data.shape)} (an in-place result keeps it)")
        return o

    def zero_(self):
        return self._assign("zero_", 0)

    def fill_(self, value):
        return self._assign("fill_", value.item() if isinstance(value, Tensor) else value)

    def copy_(self, src):
        arr = src._data if isinstance(src, Tensor) else _as_array(src)
        arr = self._operand("copy_", backend.to_device(arr, self.device))
        if tuple(arr.shape) != self.shape:
            arr = backend.get_array_module(arr).broadcast_to(arr, self.shape)
        return self._assign("copy_", arr)

    def add_(self, other, alpha=1):
        o = self._operand("add_", other)
        return self._assign("add_", self._data + (o if alpha == 1 else alpha * o))

    def sub_(self, other, alpha=1):
        o = self._operand("sub_", other)
        return self._assign("sub_", self._data - (o if alpha == 1 else alpha * o))

    def mul_(self, other):
        o = self._operand("mul_", other)
        return self._assign("mul_", self._data * o)

    def div_(self, other):
        o = self._operand("div_", other)
        return self._assign("div_", self._data / o)

    def clamp_(self, min=None, max=None):
        xp = backend.get_array_module(self._data)
        return self._assign("clamp_", xp.clip(self._data, min, max))

    def addcmul_(self, tensor1, tensor2, value=1):
        """self += value * tensor1 * tensor2 (the way optimizers are written)."""
        t1, t2 = self._operand("addcmul_", tensor1), self._operand("addcmul_", tensor2)
        return self._assign("addcmul_", self._data + value * t1 * t2)

    def addcdiv_(self, tensor1, tensor2, value=1):
        """self += value * tensor1 / tensor2."""
        t1, t2 = self._operand("addcdiv_", tensor1), self._operand("addcdiv_", tensor2)
        return self._assign("addcdiv_", self._data + value * t1 / t2)

    def sqrt_(self):
        return self._assign("sqrt_", backend.get_array_module(self._data).sqrt(self._data))

    def masked_fill_(self, mask, value):
        """Set the elements where ``mask`` (bool, broadcast to self) is True to ``value``."""
        m = _raw(mask)
        if getattr(m, "dtype", None) != np.bool_:
            raise RuntimeTypeError("masked_fill_: mask must be a bool tensor, got "
                                   f"{getattr(m, 'dtype', type(m).__name__)}")
        xp = backend.get_array_module(self._data)
        return self._assign("masked_fill_", xp.where(m, _raw(value), self._data))

    def scatter_(self, dim, index, src=None, *, value=None, reduce=None):
        """In-place scatter (see minidl.scatter): ``self[..., index, ...] = src`` along ``dim``."""
        out = _op("scatter")(self.detach(), dim, index, src, value=value, reduce=reduce)
        return self._assign("scatter_", out)

    def scatter_add_(self, dim, index, src):
        """In-place scatter_add: ``src`` added at ``index`` along ``dim``."""
        return self._assign("scatter_add_", _op("scatter_add")(self.detach(), dim, index, src.detach()))

    # -- new tensors like this one (dtype and device from self) -------------------------------------
    def new_zeros(self, *size, dtype=None, device=None, requires_grad=False):
        from .creation import zeros
        return zeros(*size, dtype=dtype or self.dtype, device=device or self.device, requires_grad=requires_grad)

    def new_ones(self, *size, dtype=None, device=None, requires_grad=False):
        from .creation import ones
        return ones(*size, dtype=dtype or self.dtype, device=device or self.device, requires_grad=requires_grad)

    def new_full(self, size, fill_value, dtype=None, device=None, requires_grad=False):
        from .creation import full
        return full(size, fill_value, dtype=dtype or self.dtype, device=device or self.device,
                    requires_grad=requires_grad)

    def new_empty(self, *size, dtype=None, device=None, requires_grad=False):
        from .creation import empty
        return empty(*size, dtype=dtype or self.dtype, device=device or self.device, requires_grad=requires_grad)

    def new_tensor(self, data, dtype=None, device=None, requires_grad=False):
        from .creation import tensor
        return tensor(data, dtype=dtype or self.dtype, device=device or self.device, requires_grad=requires_grad)

    def uniform_(self, a=0.0, b=1.0, *, generator=None):
        g = backend.draw_from(generator, self.device, "uniform_")
        return self._assign("uniform_", g.uniform(a, b, size=self.shape))

    def normal_(self, mean=0.0, std=1.0, *, generator=None):
        g = backend.draw_from(generator, self.device, "normal_")
        return self._assign("normal_", g.normal(mean, std, size=self.shape))

    def __setitem__(self, key, value):
        self._check_inplace("__setitem__")
        not_capturable("__setitem__ (an in-place change outside the ops)")
        key = _index_key(key)
        arr = value._data if isinstance(value, Tensor) else value
        self._data[key] = arr
        self._vc[0] += 1

    # -- methods and operators: registered by minidl.functional ------------------------------------
    def __getattr__(self, name):  # the registry sets each method op on the class: only the error is left here
        raise AttributeError(f"'Tensor' object has no attribute {name!r}")

    def __getitem__(self, key):
        return _op("getitem")(self, key)

    def __add__(self, other):
        return _op("add")(self, other)

    def __radd__(self, other):
        return _op("add")(other, self)

    def __sub__(self, other):
        return _op("sub")(self, other)

    def __rsub__(self, other):
        return _op("sub")(other, self)

    def __mul__(self, other):
        return _op("mul")(self, other)

    def __rmul__(self, other):
        return _op("mul")(other, self)

    def __truediv__(self, other):
        return _op("div")(self, other)

    def __rtruediv__(self, other):
        return _op("div")(other, self)

    def __pow__(self, other):
        return _op("pow")(self, other)

    def __rpow__(self, other):
        return _op("pow")(other, self)

    def __matmul__(self, other):
        return _op("matmul")(self, other)

    def __rmatmul__(self, other):
        return _op("matmul")(other, self)

    def __neg__(self):
        return _op("neg")(self)

    def __pos__(self):
        return self

    def __abs__(self):
        return _op("abs")(self)

    def __eq__(self, other):
        return _op("eq")(self, other)

    def __ne__(self, other):
        return _op("ne")(self, other)

    def __lt__(self, other):
        return _op("lt")(self, other)

    def __le__(self, other):
        return _op("le")(self, other)

    def __gt__(self, other):
        return _op("gt")(self, other)

    def __ge__(self, other):
        return _op("ge")(self, other)

    def __invert__(self):
        return _op("logical_not")(self)

    __hash__ = object.__hash__

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self.shape[0]))

    def __format__(self, spec):
        """As torch's: a 0-d tensor formats as its Python number (``f"{loss:.4f}"``); any other tensor formats as
        ``str()`` with an empty spec and refuses a non-empty one (a 0-d Parameter too, as torch's)."""
        if self._data.ndim == 0 and type(self) is Tensor:
            return format(self.item(), spec)
        if spec:
            raise TypeError("unsupported format string passed to Tensor.__format__")
        return str(self)

    def __repr__(self):
        from .printing import tensor_repr
        before = [f"device='{self.device}'"] if self.device.type != "cpu" else []
        after = [f"grad_fn={self.grad_fn!r}"] if self.grad_fn is not None else \
            ["requires_grad=True"] if self.requires_grad else []
        return tensor_repr(backend.to_device(self._data, "cpu"), backend.default_dtype(), before, after)


# Ops register here (see minidl.functional._registry.register): every op in _OPS, those that are
# Tensor methods also in _METHODS and set on Tensor as methods (``__getattr__`` above only raises the error).
# Tensor's operators above call the same registered functions, so every op is written once and autograd never imports
# the layer above it.
_OPS = {}
_METHODS = {}


def _op(name):
    try:
        return _OPS[name]
    except KeyError:
        raise RuntimeError(f"minidl op {name!r} is not registered; import minidl first") from None


class _HookHandle:
    def __init__(self, hooks, hook):
        self._hooks, self._hook = hooks, hook

    def remove(self):
        if self._hook in self._hooks:
            self._hooks.remove(self._hook)


def _dim(dim, ndim, op):
    """Normalise a possibly negative dimension, with a clear error when it is out of range."""
    if not isinstance(dim, numbers.Integral) or isinstance(dim, bool):
        raise TypeError(f"{op}: dim must be an int, got {type(dim).__name__}")
    lo, hi = (-ndim, ndim - 1) if ndim else (-1, 0)
    if not lo <= dim <= hi:
        raise IndexError(f"{op}: dim {dim} is out of range for a tensor with {ndim} dimensions "
                         f"(expected to be in [{lo}, {hi}])")
    return dim % ndim if ndim else 0


def _index_key(key):
    """Turn Tensors inside an index into arrays."""
    if isinstance(key, tuple):
        return tuple(_index_key(k) for k in key)
    if isinstance(key, Tensor):
        return key._data
    if isinstance(key, list) and any(isinstance(k, Tensor) for k in key):
        return np.asarray([k.item() if isinstance(k, Tensor) else k for k in key])
    return key


__all__ = ["Tensor", "no_grad"]

# Pickles written before conversions moved to convert.py and Size to size.py name them here: they keep loading.
_OLD_PICKLE_NAMES = (_rebuild_tensor, Size)
