"""Gradient clipping, in place on ``.grad``, as torch.nn.utils.clip_grad_norm_ / clip_grad_value_."""
import math

from ... import backend
from ...autograd.capturing import replayed
from ...autograd.tensor import Tensor


def _grads(parameters, op):
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    params = list(parameters)
    for p in params:
        if not isinstance(p, Tensor):
            raise TypeError(f"{op}: parameters must be Tensors, got {type(p).__name__}")
    return [p.grad for p in params if p.grad is not None]


@replayed
def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False, foreach=None):
    """Scale all gradients together so that their joint ``norm_type``-norm is at most ``max_norm``; returns
    that norm (before clipping) as a 0-d tensor. The scale is max_norm / (norm + 1e-6), capped at 1 (as torch)."""
    grads = _grads(parameters, "clip_grad_norm_")
    norm_type = float(norm_type)
    if not grads:
        return Tensor._make(backend.np.zeros((), dtype=backend.default_dtype()))
    xp = backend.get_array_module(grads[0]._data)
    if len({g.device for g in grads}) > 1:
        raise ValueError("clip_grad_norm_: all gradients must be on one device")
    if math.isinf(norm_type):
        norms = [xp.abs(g._data).max() if g._data.size else xp.zeros((), g.dtype) for g in grads]
        total = xp.max(xp.stack(norms)) if norm_type > 0 else xp.min(xp.stack(norms))
    elif norm_type == 2.0 and all(g._data.dtype.kind == "f" for g in grads):
        # the general line's bits (NumPy's power takes 2 and 0.5 as square and sqrt) in half the calls
        norms = [xp.sqrt(xp.sum(xp.square(g._data))) for g in grads]
        total = xp.sqrt(xp.sum(xp.square(xp.stack(norms))))
    else:
        norms = [xp.sum(xp.abs(g._data) ** norm_type) ** (1.0 / norm_type) for g in grads]
        total = xp.sum(xp.stack(norms) ** norm_type) ** (1.0 / norm_type)
    if error_if_nonfinite and not bool(xp.isfinite(total)):
        raise RuntimeError(f"clip_grad_norm_: the total norm of order {norm_type} of the gradients is non-finite "
                           "(nan or inf); pass error_if_nonfinite=False to clip anyway")
    coef = xp.minimum(max_norm / (total + 1e-6), 1.0)  # no host read: stays on the device
    cast = {}
    for g in grads:
        a = g._data
        c = cast.get(a.dtype)
        if c is None:
            c = cast[a.dtype] = coef.astype(a.dtype)
        a *= c
    return Tensor._make(xp.asarray(total))


@replayed
def clip_grad_value_(parameters, clip_value, foreach=None):
    """Clamp every gradient element into [-clip_value, clip_value]."""
    clip_value = float(clip_value)
    for g in _grads(parameters, "clip_grad_value_"):
        backend.get_array_module(g._data).clip(g._data, -clip_value, clip_value, out=g._data)
