"""SGD, Adam, AdamW, NAdam, RAdam, Adamax, RMSprop, Adagrad, Adadelta: torch's update rules, step for step, on
raw arrays."""
import math

from .. import kernels
from ..backend import get_array_module, default_dtype
from .optimizer import Optimizer


def _decay(p, g, wd):
    return g + wd * p if wd else g


def _weight_decay(p, g, lr, wd, decoupled):
    """AdamW's decoupled decay (p *= 1 - lr wd, in place) or L2 added to the gradient; returns the gradient."""
    if decoupled:
        p *= 1 - lr * wd
        return g
    return _decay(p, g, wd)


def _moments(m, v, g, b1, b2):
    """Adam's running first and second moments, in place."""
    m += (1 - b1) * (g - m)
    v *= b2
    v += (1 - b2) * g * g


def _implementation(name, foreach, fused, capturable, differentiable):
    """torch's choices of how an update runs (``foreach``: one call over a list of tensors; ``fused``: one kernel;
    ``capturable``: for CUDA graphs). The default (None) is the reference: each parameter updated in place by NumPy's
    (or CuPy's) in-place operations, and on a GPU by one fused kernel per parameter where it can
    (kernels.fused_step). ``fused=True`` or ``foreach=True``: each group's parameters become views into one flat array
    and a step updates it whole (optim/flat.py; the same bits). Returns whether to go flat. Measured on the CPU, the
    optimizer is 0.5-2.5% of a seed net's training step (benchmarks/NOTES.md, change 40) and about 7% of the tiny
    GPT's (41 small parameters): flat pays where parameters are many and small."""
    if foreach and fused:
        raise RuntimeError(f"{name}: `fused` and `foreach` cannot be `True` together.")
    if differentiable:
        raise NotImplementedError(f"{name}: differentiable=True (a step that autograd can differentiate through) is "
                                  "not supported by minidl; the update runs on raw arrays")
    return bool(foreach or fused)


class _AdamFamily(Optimizer):
    """The Adam-like optimizers (their settings are checked by the base class)."""


class SGD(Optimizer):
    """Stochastic gradient descent with momentum (dampening, Nesterov) and weight decay, as torch.optim.SGD."""

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, maximize=False, *,
                 foreach=None, differentiable=False, fused=None):
        flat = _implementation("SGD", foreach, fused, False, differentiable)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                                      nesterov=nesterov, maximize=maximize), flat)

    def _update(self, p, g, state, group):
        mu = group["momentum"]
        gpu = kernels.fused_step(p, g, state.get("momentum_buffer"))
        if gpu:  # the same update as below, in one GPU kernel
            first = mu != 0 and state.get("momentum_buffer") is None
            if first:
                state["momentum_buffer"] = get_array_module(p).empty_like(p)
            gpu.sgd_step(p, g, state["momentum_buffer"] if mu else None, group["lr"], group["weight_decay"], mu,
                         group["dampening"], group["nesterov"], first)
            return
        g = _decay(p, g, group["weight_decay"])
        if mu:
            buf = state.get("momentum_buffer")
            if buf is None:
                # an array even where g is a NumPy scalar (a 0-d parameter's decayed or negated gradient), or the
                # in-place updates below would change a copy: such a buffer once never moved
                buf = state["momentum_buffer"] = get_array_module(p).array(g, dtype=p.dtype)
            else:
                buf *= mu
                buf += (1 - group["dampening"]) * g
            g = g + mu * buf if group["nesterov"] else buf
        p -= group["lr"] * g


class Adam(_AdamFamily):
    """Adam (and AMSGrad), as torch.optim.Adam; ``weight_decay`` is L2 added to the gradient."""
    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, maximize=False, *,
                 foreach=None, capturable=False, differentiable=False, fused=None):
        flat = _implementation(type(self).__name__, foreach, fused, capturable, differentiable)
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                                      maximize=maximize), flat)

    def _update(self, p, g, state, group):
        xp = get_array_module(p)
        lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        if not state:
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(p)
            state["exp_avg_sq"] = xp.zeros_like(p)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = xp.zeros_like(p)
        state["step"] += 1
        m, v, t = state["exp_avg"], state["exp_avg_sq"], state["step"]
        gpu = kernels.fused_step(p, g, m, v, state.get("max_exp_avg_sq"))
        if gpu:  # the same update as below, in one GPU kernel
            gpu.adam_step(p, g, m, v, state.get("max_exp_avg_sq"), lr, b1, b2, eps, wd, self._decoupled, t)
            return
        g = _weight_decay(p, g, lr, wd, self._decoupled)
        _moments(m, v, g, b1, b2)
        bc1, bc2 = 1 - b1 ** t, 1 - b2 ** t
        if group["amsgrad"]:
            xp.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
            v = state["max_exp_avg_sq"]
        denom = xp.sqrt(v) / (bc2 ** 0.5) + eps
        p -= (lr / bc1) * m / denom


class AdamW(Adam):
    """Adam with decoupled weight decay (``p *= 1 - lr * weight_decay``), as torch.optim.AdamW."""
    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False,
                 maximize=False, *, foreach=None, capturable=False, differentiable=False, fused=None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize, foreach=foreach,
                         capturable=capturable, differentiable=differentiable, fused=fused)


class RMSprop(Optimizer):
    """RMSprop (centered, with momentum), as torch.optim.RMSprop."""

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False,
                 maximize=False):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                                      centered=centered, maximize=maximize))

    def _update(self, p, g, state, group):
        xp = get_array_module(p)
        g = _decay(p, g, group["weight_decay"])
        a, eps = group["alpha"], group["eps"]
        if not state:
            state["step"] = 0
            state["square_avg"] = xp.zeros_like(p)
            if group["momentum"] > 0:
                state["momentum_buffer"] = xp.zeros_like(p)
            if group["centered"]:
                state["grad_avg"] = xp.zeros_like(p)
        state["step"] += 1
        sq = state["square_avg"]
        sq *= a
        sq += (1 - a) * g * g
        if group["centered"]:
            ga = state["grad_avg"]
            ga += (1 - a) * (g - ga)
            avg = xp.sqrt(sq - ga * ga) + eps
        else:
            avg = xp.sqrt(sq) + eps
        if group["momentum"] > 0:
            buf = state["momentum_buffer"]
            buf *= group["momentum"]
            buf += g / avg
            p -= group["lr"] * buf
        else:
            p -= group["lr"] * g / avg


class Adagrad(Optimizer):
    """Adagrad, as torch.optim.Adagrad."""

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10,
                 maximize=False):
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay, eps=eps,
                                      initial_accumulator_value=initial_accumulator_value, maximize=maximize))

    def _update(self, p, g, state, group):
        xp = get_array_module(p)
        if not state:
            state["step"] = 0
            state["sum"] = xp.full_like(p, group["initial_accumulator_value"])
        state["step"] += 1
        g = _decay(p, g, group["weight_decay"])
        clr = group["lr"] / (1 + (state["step"] - 1) * group["lr_decay"])
        state["sum"] += g * g
        p -= clr * g / (xp.sqrt(state["sum"]) + group["eps"])


class Adadelta(Optimizer):
    """Adadelta, as torch.optim.Adadelta: steps scaled by the running RMS of past steps over that of gradients."""

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0, maximize=False):
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize))

    def _update(self, p, g, state, group):
        xp = get_array_module(p)
        if not state:
            state["step"] = 0
            state["square_avg"] = xp.zeros_like(p)
            state["acc_delta"] = xp.zeros_like(p)
        state["step"] += 1
        rho, eps = group["rho"], group["eps"]
        g = _decay(p, g, group["weight_decay"])
        sq, acc = state["square_avg"], state["acc_delta"]
        sq *= rho
        sq += (1 - rho) * g * g
        delta = xp.sqrt(acc + eps) / xp.sqrt(sq + eps) * g
        acc *= rho
        acc += (1 - rho) * delta * delta
        p -= group["lr"] * delta


class Adamax(_AdamFamily):
    """Adamax, as torch.optim.Adamax: Adam with the infinity norm in place of the second moment."""

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, maximize=False):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      maximize=maximize))

    def _update(self, p, g, state, group):
        xp = get_array_module(p)
        if not state:
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(p)
            state["exp_inf"] = xp.zeros_like(p)
        state["step"] += 1
        (b1, b2), eps = group["betas"], group["eps"]
        g = _decay(p, g, group["weight_decay"])
        m, u = state["exp_avg"], state["exp_inf"]
        m += (1 - b1) * (g - m)
        u *= b2
        xp.maximum(u, xp.abs(g) + eps, out=u)
        p -= group["lr"] / (1 - b1 ** state["step"]) * m / u


class NAdam(_AdamFamily):
    """NAdam (Adam with Nesterov momentum and a momentum decay schedule), as torch.optim.NAdam."""

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, momentum_decay=4e-3,
                 decoupled_weight_decay=False, maximize=False):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      momentum_decay=momentum_decay, decoupled_weight_decay=decoupled_weight_decay,
                                      maximize=maximize))

    def _update(self, p, g, state, group):
        xp = get_array_module(p)
        lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        if not state:
            state.update(step=0, mu_product=1.0, exp_avg=xp.zeros_like(p), exp_avg_sq=xp.zeros_like(p))
        # torch keeps mu_product as a scalar of the default dtype (float32 unless changed), whatever the
        # parameters' dtype, and its trajectories show that rounding: minidl rounds the same way
        scalar = default_dtype().type
        state["step"] += 1
        t = state["step"]
        g = _weight_decay(p, g, lr, wd, group["decoupled_weight_decay"])
        mu = b1 * (1.0 - 0.5 * 0.96 ** (t * group["momentum_decay"]))
        mu_next = b1 * (1.0 - 0.5 * 0.96 ** ((t + 1) * group["momentum_decay"]))
        state["mu_product"] = float(scalar(state["mu_product"]) * scalar(mu))
        m, v = state["exp_avg"], state["exp_avg_sq"]
        _moments(m, v, g, b1, b2)
        denom = xp.sqrt(v / (1 - b2 ** t)) + eps
        p -= lr * (1.0 - mu) / (1.0 - state["mu_product"]) * g / denom
        p -= lr * mu_next / (1.0 - state["mu_product"] * mu_next) * m / denom


class RAdam(_AdamFamily):
    """RAdam (Adam with the variance of the adaptive lr rectified; plain momentum SGD for the first steps), as
    torch.optim.RAdam."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, decoupled_weight_decay=False,
                 maximize=False):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      decoupled_weight_decay=decoupled_weight_decay, maximize=maximize))

    def _update(self, p, g, state, group):
        xp = get_array_module(p)
        lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        if not state:
            state.update(step=0, exp_avg=xp.zeros_like(p), exp_avg_sq=xp.zeros_like(p))
        state["step"] += 1
        t = state["step"]
        g = _weight_decay(p, g, lr, wd, group["decoupled_weight_decay"])
        m, v = state["exp_avg"], state["exp_avg_sq"]
        _moments(m, v, g, b1, b2)
        bc1, bc2 = 1 - b1 ** t, 1 - b2 ** t
        rho_inf = 2 / (1 - b2) - 1
        rho_t = rho_inf - 2 * t * (b2 ** t) / bc2
        if rho_t > 5.0:  # the variance is tractable: rectified adaptive step
            rect = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
            p -= m / bc1 * lr * (math.sqrt(bc2) / (xp.sqrt(v) + eps)) * rect
        else:
            p -= m / bc1 * lr
