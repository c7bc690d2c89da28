"""Pruning, as torch.nn.utils.prune: zero out the least important weights of a module through a mask.

Pruning ``module.weight`` moves the parameter to ``module.weight_orig``, adds a buffer ``module.weight_mask`` (1
keeps, 0 prunes) and makes ``module.weight`` a plain tensor ``weight_orig * weight_mask`` that a forward pre-hook
recomputes before every call; so gradients reach only the kept weights, the state_dict holds ``weight_orig``
and ``weight_mask`` (torch's layout), and ``remove`` makes the pruning permanent. Pruning the same tensor again
prunes among the weights still kept (a PruningContainer combines the masks)."""
import numbers
from collections.abc import Iterable

from ... import functional as F
from ...autograd import no_grad
from ...autograd.creation import ones_like, rand_like, zeros_like


def _check_amount(amount, op):
    if isinstance(amount, bool) or not isinstance(amount, numbers.Real):
        raise TypeError(f"{op}: amount must be an int (how many) or a float in [0, 1] (which fraction), got "
                        f"{type(amount).__name__}")
    if (isinstance(amount, numbers.Integral) and amount < 0) or (
            not isinstance(amount, numbers.Integral) and not 0.0 <= float(amount) <= 1.0):
        raise ValueError(f"{op}: amount must be a non-negative int or a float in [0, 1], got {amount}")


def _n_to_prune(amount, size, op):
    n = int(amount) if isinstance(amount, numbers.Integral) else round(float(amount) * size)  # round(): as torch
    if n > size:
        raise ValueError(f"{op}: amount={amount} is more than the {size} units that can be pruned")
    return n


class BasePruningMethod:
    """A way to compute a mask (``compute_mask``); also the forward pre-hook that re-applies it."""
    PRUNING_TYPE = None  # 'unstructured', 'structured' or 'global'
    _tensor_name = None

    def compute_mask(self, t, default_mask):
        raise NotImplementedError

    def apply_mask(self, module):
        orig = getattr(module, self._tensor_name + "_orig")
        return orig * getattr(module, self._tensor_name + "_mask").to(orig.dtype)

    def __call__(self, module, inputs):
        object.__setattr__(module, self._tensor_name, self.apply_mask(module))

    def prune(self, t, default_mask=None, importance_scores=None):
        """The pruned copy of tensor ``t`` (not attached to any module)."""
        scores = t if importance_scores is None else importance_scores
        with no_grad():
            mask = self.compute_mask(scores, ones_like(t) if default_mask is None else default_mask)
        return t * mask

    @classmethod
    def apply(cls, module, name, *args, importance_scores=None, **kwargs):
        """Prune ``module.<name>`` with a new ``cls(*args, **kwargs)``, combined with earlier pruning of it."""
        op = f"prune.{cls.__name__}"
        old = [(k, h) for k, h in module._forward_pre_hooks.items()
               if isinstance(h, BasePruningMethod) and h._tensor_name == name]
        method = cls(*args, **kwargs)
        method._tensor_name = name
        if old:
            previous = old[0][1]
            if not isinstance(previous, PruningContainer):
                previous = PruningContainer(previous)
            previous.add_pruning_method(method)
            method = previous
        orig = getattr(module, name, None)
        if orig is None:
            raise AttributeError(f"{op}: module {type(module).__name__} has no tensor {name!r} to prune")
        if importance_scores is not None and tuple(importance_scores.shape) != tuple(orig.shape):
            raise ValueError(f"{op}: importance_scores has shape {tuple(importance_scores.shape)}, {name} has "
                             f"{tuple(orig.shape)}")
        scores = orig if importance_scores is None else importance_scores
        first = not old
        if first:
            if name not in module._parameters:
                raise ValueError(f"{op}: {name!r} is not a parameter of {type(module).__name__}")
            default_mask = ones_like(orig)
        else:
            default_mask = getattr(module, name + "_mask").detach().clone()
        with no_grad():
            mask = method.compute_mask(scores.detach(), default_mask=default_mask)  # errors before any change
        if first:
            del module._parameters[name]
            module.register_parameter(name + "_orig", orig)
        else:
            del module._forward_pre_hooks[old[0][0]]
        module.register_buffer(name + "_mask", mask)
        object.__setattr__(module, name, method.apply_mask(module))
        module.register_forward_pre_hook(method)
        return method

    def remove(self, module):
        """Make the pruning permanent: ``module.<name>`` becomes a parameter again, holding orig * mask."""
        weight = self.apply_mask(module)
        module.__dict__.pop(self._tensor_name, None)
        orig = module._parameters.pop(self._tensor_name + "_orig")
        orig._data[...] = weight._data
        orig._vc[0] += 1
        del module._buffers[self._tensor_name + "_mask"]
        module.register_parameter(self._tensor_name, orig)


class PruningContainer(BasePruningMethod):
    """Successive pruning of one tensor: each new method prunes among what the earlier ones kept."""

    def __init__(self, *methods):
        self._pruning_methods = ()
        for m in methods:
            self.add_pruning_method(m)

    def add_pruning_method(self, method):
        if not isinstance(method, BasePruningMethod):
            raise TypeError(f"PruningContainer: {type(method).__name__} is not a pruning method")
        if self._tensor_name is not None and method._tensor_name != self._tensor_name:
            raise ValueError(f"PruningContainer: can only combine methods on {self._tensor_name!r}, got one on "
                             f"{method._tensor_name!r}")
        self._tensor_name = method._tensor_name
        self._pruning_methods += (method,)

    def __len__(self):
        return len(self._pruning_methods)

    def __iter__(self):
        return iter(self._pruning_methods)

    def __getitem__(self, i):
        return self._pruning_methods[i]

    def compute_mask(self, t, default_mask):
        method = self._pruning_methods[-1]
        mask = default_mask.to(t.dtype).clone()
        if method.PRUNING_TYPE == "unstructured":  # among the entries still kept
            idx = F.nonzero((mask == 1).reshape(-1)).reshape(-1)
            partial = method.compute_mask(t.reshape(-1)[idx], default_mask=mask.reshape(-1)[idx])
            return _set(mask, idx, partial)
        if method.PRUNING_TYPE == "structured":  # among the channels still kept
            dim = method.dim % t.ndim
            keep = mask.sum(tuple(d for d in range(t.ndim) if d != dim)) != 0
            idx = F.nonzero(keep).reshape(-1)
            partial = method.compute_mask(t.index_select(dim, idx), default_mask=mask.index_select(dim, idx))
            key = (slice(None),) * dim + (idx._data,)
            mask._data[key] = partial._data.astype(mask.dtype)
            return mask
        return method.compute_mask(t, default_mask=mask)  # 'global': over the whole tensor


class Identity(BasePruningMethod):
    """Prunes nothing: a mask of ones (to give a module the pruned layout)."""
    PRUNING_TYPE = "unstructured"

    def compute_mask(self, t, default_mask):
        return default_mask

    @classmethod
    def apply(cls, module, name):
        return super().apply(module, name)


class RandomUnstructured(BasePruningMethod):
    """Prunes ``amount`` entries chosen at random (minidl.manual_seed makes it repeatable)."""
    PRUNING_TYPE = "unstructured"

    def __init__(self, amount):
        _check_amount(amount, "random_unstructured")
        self.amount = amount

    def compute_mask(self, t, default_mask):
        n = _n_to_prune(self.amount, t.numel(), "random_unstructured")
        if n == 0:
            return default_mask.clone()
        return _set(default_mask, F.topk(rand_like(t).reshape(-1), n).indices, 0)

    @classmethod
    def apply(cls, module, name, amount):
        return super().apply(module, name, amount=amount)


class L1Unstructured(BasePruningMethod):
    """Prunes the ``amount`` entries of smallest absolute value."""
    PRUNING_TYPE = "unstructured"

    def __init__(self, amount):
        _check_amount(amount, "l1_unstructured")
        self.amount = amount

    def compute_mask(self, t, default_mask):
        n = _n_to_prune(self.amount, t.numel(), "l1_unstructured")
        if n == 0:
            return default_mask.clone()
        return _set(default_mask, F.topk(t.abs().reshape(-1), n, largest=False).indices, 0)

    @classmethod
    def apply(cls, module, name, amount, importance_scores=None):
        return super().apply(module, name, amount=amount, importance_scores=importance_scores)


class RandomStructured(BasePruningMethod):
    """Prunes ``amount`` whole channels along ``dim``, chosen at random."""
    PRUNING_TYPE = "structured"

    def __init__(self, amount, dim=-1):
        _check_amount(amount, "random_structured")
        self.amount, self.dim = amount, dim

    def compute_mask(self, t, default_mask):
        dim = _structured_dim(t, self.dim, "random_structured")
        n = _n_to_prune(self.amount, t.shape[dim], "random_structured")
        if n == 0:
            return default_mask
        keep = F.topk(rand_like(zeros_like(t).sum(tuple(d for d in range(t.ndim) if d != dim))),
                      t.shape[dim] - n).indices
        return _channel_mask(t, dim, keep) * default_mask.to(t.dtype)

    @classmethod
    def apply(cls, module, name, amount, dim=-1):
        return super().apply(module, name, amount=amount, dim=dim)


class LnStructured(BasePruningMethod):
    """Prunes the ``amount`` channels along ``dim`` of smallest L``n`` norm (n as torch.norm's p)."""
    PRUNING_TYPE = "structured"

    def __init__(self, amount, n, dim=-1):
        _check_amount(amount, "ln_structured")
        self.amount, self.n, self.dim = amount, n, dim

    def compute_mask(self, t, default_mask):
        dim = _structured_dim(t, self.dim, "ln_structured")
        n = _n_to_prune(self.amount, t.shape[dim], "ln_structured")
        if n == 0:
            return default_mask
        norms = F.norm(t, self.n, tuple(d for d in range(t.ndim) if d != dim))
        keep = F.topk(norms, t.shape[dim] - n, largest=True).indices
        return _channel_mask(t, dim, keep) * default_mask.to(t.dtype)

    @classmethod
    def apply(cls, module, name, amount, n, dim, importance_scores=None):
        return super().apply(module, name, amount=amount, n=n, dim=dim, importance_scores=importance_scores)


class CustomFromMask(BasePruningMethod):
    """Prunes where a given ``mask`` is 0."""
    PRUNING_TYPE = "global"

    def __init__(self, mask):
        self.mask = mask

    def compute_mask(self, t, default_mask):
        if tuple(self.mask.shape) != tuple(default_mask.shape):
            raise ValueError(f"custom_from_mask: mask has shape {tuple(self.mask.shape)}, the tensor "
                             f"{tuple(default_mask.shape)}")
        return default_mask * self.mask.to(default_mask.dtype)

    @classmethod
    def apply(cls, module, name, mask):
        return super().apply(module, name, mask=mask)


def _set(mask, flat_index, values):
    """A copy of ``mask`` with its flattened entries at ``flat_index`` set to ``values``."""
    out = mask._data.reshape(-1).copy()
    out[flat_index._data] = values._data.astype(out.dtype) if hasattr(values, "_data") else values
    return mask.__class__._make(out.reshape(mask.shape))


def _structured_dim(t, dim, op):
    if t.ndim < 2:
        raise ValueError(f"{op}: structured pruning needs a tensor of at least 2 dims (channels), got shape {t.shape}")
    if not -t.ndim <= dim < t.ndim:
        raise IndexError(f"{op}: dim {dim} out of range for a tensor of {t.ndim} dims")
    return dim % t.ndim


def _channel_mask(t, dim, keep):
    mask = zeros_like(t)
    mask._data[(slice(None),) * dim + (keep._data,)] = 1
    return mask


def identity(module, name):
    """Give ``module.<name>`` the pruned layout with a mask of ones."""
    Identity.apply(module, name)
    return module


def random_unstructured(module, name, amount):
    """Prune ``amount`` (an int, or a fraction in [0, 1]) random entries of ``module.<name>``."""
    RandomUnstructured.apply(module, name, amount)
    return module


def l1_unstructured(module, name, amount, importance_scores=None):
    """Prune the ``amount`` entries of ``module.<name>`` with the smallest |value| (or importance score)."""
    L1Unstructured.apply(module, name, amount=amount, importance_scores=importance_scores)
    return module


def random_structured(module, name, amount, dim):
    """Prune ``amount`` random channels of ``module.<name>`` along ``dim``."""
    RandomStructured.apply(module, name, amount, dim)
    return module


def ln_structured(module, name, amount, n, dim, importance_scores=None):
    """Prune the ``amount`` channels along ``dim`` with the smallest L``n`` norm (dim 0 of a conv weight: whole
    output filters)."""
    LnStructured.apply(module, name, amount, n, dim, importance_scores=importance_scores)
    return module


def custom_from_mask(module, name, mask):
    """Prune ``module.<name>`` where ``mask`` is 0."""
    CustomFromMask.apply(module, name, mask)
    return module


def global_unstructured(parameters, pruning_method, importance_scores=None, **kwargs):
    """Prune across several tensors at once: ``parameters`` is an iterable of (module, name), and
    ``pruning_method`` (L1Unstructured, RandomUnstructured) ranks all their entries together, so a layer with
    small weights loses more of them than one with large weights."""
    if not isinstance(parameters, Iterable) or isinstance(parameters, (str, bytes)):
        raise TypeError("global_unstructured: parameters must be an iterable of (module, name) pairs")
    parameters = list(parameters)
    if not parameters:
        raise ValueError("global_unstructured: got no parameters")
    importance_scores = importance_scores or {}
    method = pruning_method(**kwargs)
    if method.PRUNING_TYPE != "unstructured":
        raise TypeError(f"global_unstructured: only unstructured methods rank entries globally, got "
                        f"{pruning_method.__name__} ({method.PRUNING_TYPE})")
    with no_grad():
        scores = F.cat([importance_scores.get((m, n), getattr(m, n)).detach().reshape(-1) for m, n in parameters])
        default = F.cat([getattr(m, n + "_mask", ones_like(getattr(m, n))).reshape(-1).to(scores.dtype)
                         for m, n in parameters])
        method._tensor_name = "temp"
        final = PruningContainer(method).compute_mask(scores, default)
    start = 0
    for m, n in parameters:
        size = getattr(m, n).numel()
        custom_from_mask(m, n, final[start:start + size].reshape(*getattr(m, n).shape))
        start += size


def remove(module, name):
    """Make the pruning of ``module.<name>`` permanent: the parameter holds the pruned values, the mask and the
    hook go."""
    for k, hook in list(module._forward_pre_hooks.items()):
        if isinstance(hook, BasePruningMethod) and hook._tensor_name == name:
            hook.remove(module)
            del module._forward_pre_hooks[k]
            return module
    raise ValueError(f"prune.remove: parameter {name!r} of {type(module).__name__} is not pruned")


def is_pruned(module):
    """Whether ``module`` or any module inside it has a pruned tensor."""
    return any(isinstance(h, BasePruningMethod) for m in module.modules() for h in m._forward_pre_hooks.values())


__all__ = ["BasePruningMethod", "PruningContainer", "Identity", "RandomUnstructured", "L1Unstructured",
           "RandomStructured", "LnStructured", "CustomFromMask", "identity", "random_unstructured", "l1_unstructured",
           "random_structured", "ln_structured", "custom_from_mask", "global_unstructured", "remove", "is_pruned"]
