"""Numerical gradient checks in float64: central differences against minidl's backward."""
import numpy as np

from .. import backend
from ..autograd import Tensor, grad as autograd_grad, no_grad


class GradcheckError(AssertionError):
    """The analytical gradient (backward) disagrees with the numerical one."""


def _outputs(fn, inputs):
    out = fn(*inputs)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return [o for o in outs if isinstance(o, Tensor) and o.dtype.kind == "f"]


def _objective(outs, weights):
    """sum_k <w_k, out_k> as a float: a random projection of all outputs to one number."""
    return float(sum(float((backend.to_device(o._data, "cpu") * w).sum()) for o, w in zip(outs, weights)))


def gradcheck(fn, inputs, *, eps=1e-6, atol=1e-5, rtol=1e-3, mode="auto", n_directions=4, seed=0,
              max_full=2048, raise_exception=True):
    """Check ``fn``'s backward against central differences, in float64.

    Args:
        fn: callable taking ``inputs`` and returning a Tensor or a tuple of Tensors.
        inputs: tuple of Tensors (and other values passed through); those with ``requires_grad`` are checked
            and must be float64.
        mode: 'full' (every input element perturbed), 'directional' (random directions: cheap for large
            inputs), or 'auto' (full up to ``max_full`` elements per input).
        eps, atol, rtol: finite-difference step and tolerances: |analytic - numeric| <= atol + rtol |numeric|.
    Returns True, or raises GradcheckError naming the input and its worst element.

    The outputs are projected on a fixed random vector, so one backward gives the vector-Jacobian
    product that the finite differences are compared with.
    """
    if mode not in ("auto", "full", "directional"):
        raise ValueError(f"gradcheck: mode must be 'auto', 'full' or 'directional', got {mode!r}")
    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    checked = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input requires grad")
    for i in checked:
        if inputs[i].dtype != np.float64:
            raise TypeError(f"gradcheck: input {i} must be float64 for a numerical check, got {inputs[i].dtype}")
    rng = np.random.default_rng(seed)
    outs = _outputs(fn, inputs)
    if not outs:
        raise ValueError("gradcheck: fn returned no floating Tensor")
    weights = [rng.uniform(-1, 1, size=o.shape) for o in outs]
    used = [o for o in outs if o.requires_grad]
    analytic = [None] * len(inputs)
    if used:
        gos = [Tensor._make(backend.to_device(w, o.device).astype(o.dtype)) for o, w in zip(outs, weights)
               if o.requires_grad]
        res = autograd_grad(used, [inputs[i] for i in checked], gos, allow_unused=True)
        for i, g in zip(checked, res):
            analytic[i] = None if g is None else backend.to_device(g._data, "cpu")

    def f():
        with no_grad():
            return _objective(_outputs(fn, inputs), weights)

    for i in checked:
        a = analytic[i] if analytic[i] is not None else np.zeros(inputs[i].shape)
        full = mode == "full" or (mode == "auto" and inputs[i].numel() <= max_full)
        msg = _full_check(f, inputs[i], i, a, eps, atol, rtol) if full else \
            _directional_check(f, inputs[i], i, a, eps, atol, rtol, rng, n_directions)
        if msg:
            if raise_exception:
                raise GradcheckError(msg)
            return False
    return True


def _full_check(f, t, i, a, eps, atol, rtol):
    """Every element of input ``t`` perturbed: None, or what is wrong where."""
    x = t._data
    num = np.zeros(x.shape)
    for k in range(x.size):
        idx = np.unravel_index(k, x.shape)
        old = x[idx].item()
        x[idx] = old + eps
        fp = f()
        x[idx] = old - eps
        fm = f()
        x[idx] = old
        num[idx] = (fp - fm) / (2 * eps)
    err = np.abs(a - num) - (atol + rtol * np.abs(num))
    if err.size and err.max() > 0:
        k = np.unravel_index(int(err.argmax()), err.shape)
        return (f"gradcheck: gradient of input {i} (shape {x.shape}) is wrong at element {tuple(map(int, k))}: "
                f"backward gives {a[k]:.8g}, finite differences {num[k]:.8g} (max abs error "
                f"{np.abs(a - num).max():.3g})")
    return None


def _directional_check(f, t, i, a, eps, atol, rtol, rng, n_directions):
    """Input ``t`` moved along random directions: None, or what is wrong."""
    x = t._data
    orig = x.copy()
    for _ in range(n_directions):
        v = rng.standard_normal(x.shape)
        vd = backend.to_device(v, t.device)
        x[...] = orig + eps * vd
        fp = f()
        x[...] = orig - eps * vd
        fm = f()
        x[...] = orig
        num = (fp - fm) / (2 * eps)
        ana = float((a * v).sum())
        if abs(ana - num) > atol + rtol * abs(num):
            return (f"gradcheck: directional derivative of input {i} (shape {x.shape}) is wrong: backward gives "
                    f"{ana:.8g}, finite differences {num:.8g}")
    return None
