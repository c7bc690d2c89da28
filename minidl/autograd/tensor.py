"""Tensor: an array (NumPy or CuPy) plus what autograd needs to know about it."""
import numbers
import operator
import weakref

import numpy as np

from .. import backend
from ..backend.errors import RuntimeTypeError, RuntimeValueError
from .grad_mode import is_grad_enabled, no_grad

# Ops register here (see minidl.functional._registry.register): every op in _OPS, those that are
# Tensor methods also in _METHODS. Operators below call the same registered functions, so every op is
# written once and autograd never imports the layer above it.
_OPS = {}
_METHODS = {}


def _op(name):
    try:
        return _OPS[name]
    except KeyError:
        raise RuntimeError(f"minidl op {name!r} is not registered; import minidl first") from None


def _as_array(data, dtype=None, device=None, op="tensor"):
    """Convert Python data / NumPy / CuPy / torch tensors into an array, PyTorch's dtype rules."""
    dtype = backend.as_dtype(dtype, op)
    if isinstance(data, Tensor):
        arr = data._data
    elif type(data).__module__ == "torch":
        arr = data.detach().cpu().numpy()
    elif backend.is_device_array(data):
        arr = data
    else:
        if isinstance(data, (list, tuple)) and any(isinstance(d, Tensor) for d in _flatten(data)):
            data = _nested_numpy(data)
        try:
            arr = np.asarray(data)
        except (ValueError, TypeError) as exc:
            raise TypeError(f"{op}: cannot make a tensor from {type(data).__name__}: {exc}") from None
        if dtype is None and arr.dtype.kind == "f":
            arr = arr.astype(backend.default_dtype()) if not isinstance(data, np.ndarray) else arr
        if dtype is None and arr.dtype.kind in "iu" and not isinstance(data, np.ndarray):
            arr = arr.astype(np.int64)
    if arr.dtype.kind not in "biuf":  # object (ragged), str, bytes, complex, datetimes ...
        raise TypeError(f"{op}: cannot make a tensor from {type(data).__name__} of dtype {arr.dtype} "
                        "(expected numbers or bools; ragged or non-numeric data)")
    if dtype is not None and arr.dtype != dtype:
        arr = arr.astype(dtype)
    if device is not None:
        arr = backend.to_device(arr, device)
    return arr


def _flatten(seq):
    for s in seq:
        if isinstance(s, (list, tuple)):
            yield from _flatten(s)
        else:
            yield s


def _nested_numpy(seq):
    if isinstance(seq, (list, tuple)):
        return [_nested_numpy(s) for s in seq]
    return backend.to_device(seq._data, "cpu") if isinstance(seq, Tensor) else seq


def _raw(x):
    return x._data if isinstance(x, Tensor) else x


_TYPE_NAMES = {np.dtype(np.float32): "FloatTensor", np.dtype(np.float64): "DoubleTensor",
               np.dtype(np.float16): "HalfTensor", np.dtype(np.int64): "LongTensor", np.dtype(np.int32): "IntTensor",
               np.dtype(np.int16): "ShortTensor", np.dtype(np.int8): "CharTensor", np.dtype(np.uint8): "ByteTensor",
               np.dtype(np.bool_): "BoolTensor"}
_TYPE_DTYPES = {name: dtype for dtype, name in _TYPE_NAMES.items()}


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


class _TensorTypeMeta(type):
    """torch's typed tensor classes: ``isinstance(x, FloatTensor)`` asks for a CPU float32 tensor."""

    def __instancecheck__(cls, obj):
        return isinstance(obj, Tensor) and obj.device.type == "cpu" and obj._data.dtype == cls.dtype

    def __repr__(cls):
        return f"<class 'minidl.{cls.__name__}'>"


def _tensor_type(name, np_dtype):
    dt = backend.wrap_dtype(np.dtype(np_dtype))

    def __new__(cls, *args, device=None, requires_grad=False):
        return Tensor(*args, dtype=dt, device=device, requires_grad=requires_grad)
    doc = f"``{name}(data)`` or ``{name}(sizes...)``: a tensor of dtype {dt!r}, as torch.{name}."
    return _TensorTypeMeta(name, (), {"__new__": __new__, "dtype": dt, "is_tensor_type": True, "__doc__": doc})


TENSOR_TYPES = {name: _tensor_type(name, dt) for dt, name in _TYPE_NAMES.items()}


class Tensor:
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
    __array_priority__ = 1000  # NumPy defers to Tensor's operators: np.float32(2) * t is a Tensor

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

    # -- conversion --------------------------------------------------------------------------------
    def numpy(self):
        """The NumPy array behind this CPU tensor (shared, not copied)."""
        if self.requires_grad:
            raise RuntimeError("numpy(): the tensor requires grad; call tensor.detach().numpy()")
        if self.device.type != "cpu":
            raise TypeError(f"numpy(): the tensor is on {self.device}; call tensor.cpu().numpy()")
        return self._data

    def __array__(self, dtype=None, copy=None):
        arr = self.numpy()
        return arr if dtype is None else arr.astype(dtype)

    # -- exchange with other libraries: torch.tensor(t), torch.as_tensor(t), torch.from_dlpack(t), cupy.asarray(t)
    @property
    def __array_interface__(self):
        if backend.is_device_array(self._data):
            raise AttributeError("__array_interface__: a device tensor has no host memory to share")
        return self._data.__array_interface__

    @property
    def __cuda_array_interface__(self):
        if not backend.is_device_array(self._data):
            raise AttributeError("__cuda_array_interface__: a CPU tensor")
        return self._data.__cuda_array_interface__

    def __dlpack__(self, *args, **kwargs):
        return self._data.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self):
        return self._data.__dlpack_device__()

    def item(self):
        if self._data.size != 1:
            raise RuntimeValueError("item(): only one-element tensors can be converted to a Python scalar, got shape "
                                    f"{tuple(self.shape)}")
        return self._data.item()

    def tolist(self):
        return backend.to_device(self._data, "cpu").tolist()

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __bool__(self):
        if self._data.size != 1:
            raise RuntimeError(f"bool(): the truth value of a tensor with {self._data.size} elements is "
                               "ambiguous")
        return bool(self.item())

    def __index__(self):
        if self._data.dtype.kind not in "iub" or self._data.size != 1:
            raise TypeError("only integer tensors of a single element can be used as an index")
        return int(self.item())

    def to(self, *args, **kwargs):
        """``to(device, dtype, non_blocking, copy, memory_format)``, ``to(dtype, ...)`` or ``to(other, ...)``,
        as torch; differentiable."""
        return _op("to")(self, *args, **kwargs)

    def cpu(self):
        return self.to("cpu")

    def cuda(self, device=None):
        return self.to("cuda" if device is None else f"cuda:{int(device)}" if not isinstance(device, str)
                       else device)

    def float(self):
        return self.to(np.float32)

    def double(self):
        return self.to(np.float64)

    def half(self):
        return self.to(np.float16)

    def long(self):
        return self.to(np.int64)

    def int(self):
        return self.to(np.int32)

    def short(self):
        return self.to(np.int16)

    def char(self):
        return self.to(np.int8)

    def byte(self):
        return self.to(np.uint8)

    def bool(self):
        return self.to(np.bool_)

    def type_as(self, other):
        return self.to(other.dtype)

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

    def type(self, dtype=None):
        """Without an argument, the type's name as torch spells it ('minidl.FloatTensor'); with a dtype (or
        such a name), this tensor converted to it."""
        if dtype is None:
            name = _TYPE_NAMES.get(self.dtype, self.dtype.name)
            return f"minidl.{'cuda.' if self.device.type == 'cuda' else ''}{name}"
        if isinstance(dtype, type) and getattr(dtype, "is_tensor_type", False):  # x.type(minidl.FloatTensor)
            return self.to(dtype.dtype)
        if isinstance(dtype, str):
            short = dtype.split(".")[-1]
            if short not in _TYPE_DTYPES:
                raise RuntimeValueError(f"type: unknown tensor type {dtype!r}; expected one of {sorted(_TYPE_DTYPES)}")
            dtype = _TYPE_DTYPES[short]
        return self.to(dtype)

    def uniform_(self, a=0.0, b=1.0, *, generator=None):
        g = backend.draw_from(generator, self.device, "uniform_")
        return self._assign("uniform_", g.uniform(a, b, size=self.shape))

    def normal_(self, mean=0.0, std=1.0, *, generator=None):
        g = backend.draw_from(generator, self.device, "normal_")
        return self._assign("normal_", g.normal(mean, std, size=self.shape))

    def __setitem__(self, key, value):
        self._check_inplace("__setitem__")
        key = _index_key(key)
        arr = value._data if isinstance(value, Tensor) else value
        self._data[key] = arr
        self._vc[0] += 1

    # -- methods and operators: registered by minidl.functional ------------------------------------
    def __getattr__(self, name):
        fn = _METHODS.get(name)
        if fn is None or name.startswith("__"):
            raise AttributeError(f"'Tensor' object has no attribute {name!r}")
        return fn.__get__(self, Tensor)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(_METHODS))

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

    # -- pickling and shared memory ------------------------------------------------------------------
    def __reduce_ex__(self, protocol):
        """Pickle (and minidl.save of a whole object) as torch pickles a tensor: its data (on the host) and
        ``requires_grad``; the graph, ``.grad`` and hooks are not kept, so the tensor comes back a leaf. Tensors
        sent to another process through minidl.multiprocessing travel through shared memory instead."""
        state = getattr(self, "__dict__", None) or None
        return _rebuild_tensor, (type(self), backend.to_device(self._data, "cpu"), str(self.device),
                                 bool(self.requires_grad), state)

    def __deepcopy__(self, memo):
        """A leaf with a copy of the data (the same layout), ``requires_grad`` and a copy of ``.grad``."""
        import copy
        t = type(self)._make(self._data.copy(order="K"), self.requires_grad)
        memo[id(self)] = t
        if self.grad is not None:
            t.grad = copy.deepcopy(self.grad, memo)
        if getattr(self, "__dict__", None):
            t.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return t

    def share_memory_(self):
        """Move this tensor's data into shared memory (as torch's): processes it is sent to, or forked after
        this call, then read and write the same elements. A no-op when already shared; a GPU tensor raises.
        Tensors that viewed the old array keep viewing it."""
        from ..backend.shared_memory import share_array
        self._data = share_array(self._data)
        return self

    def is_shared(self):
        """Whether this tensor's data lives in shared memory (see :meth:`share_memory_`)."""
        from ..backend.shared_memory import storage_of
        return storage_of(self._data) is not None

    def __repr__(self):
        from .printing import tensor_repr
        before = [f"device='{self.device}'"] if self.device.type != "cpu" else []
        after = [f"grad_fn={self.grad_fn!r}"] if self.grad_fn is not None else \
            ["requires_grad=True"] if self.requires_grad else []
        return tensor_repr(backend.to_device(self._data, "cpu"), backend.default_dtype(), before, after)


def _rebuild_tensor(cls, array, device, requires_grad, state=None):
    """The tensor :meth:`Tensor.__reduce_ex__` pickled (a leaf on ``device``)."""
    t = cls._make(array if device == "cpu" else backend.to_device(array, device), requires_grad)
    if state:
        t.__dict__.update(state)
    return t


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


__all__ = ["Size", "Tensor", "no_grad"]
