"""L-BFGS, as torch.optim.LBFGS: torch's algorithm step for step (after minFunc), on the parameters seen as one flat
vector.

Each iteration picks a direction ``d`` from the last ``history_size`` pairs (s, y) of parameter steps and gradient
changes (the two-loop recursion, :func:`_two_loop`), then moves along it: by a fixed step ``lr`` (a first step scaled
by the gradient's size), or by a step that satisfies the strong Wolfe conditions (:func:`_strong_wolfe`). The
closure evaluates the loss and its gradient; one ``step(closure)`` runs up to ``max_iter`` iterations and
``max_eval`` evaluations. Vectors are raw arrays of the parameters' dtype; scalars are NumPy scalars of that dtype
(as torch's 0-d tensors), so float32 rounds as float32 and float64 follows torch's float64 trajectory.
"""
from .. import backend
from ..autograd import enable_grad
from ..autograd.tensor import Tensor
from .optimizer import Optimizer


def _cubic_interpolate(x1, f1, g1, x2, f2, g2, bounds=None):
    """The minimiser of the cubic through (x1, f1) and (x2, f2) with slopes g1 and g2, clamped to ``bounds``
    (default: between x1 and x2); the bounds' midpoint where the cubic has no minimum.

    With d1 = g1 + g2 - 3 (f1 - f2) / (x1 - x2) and d2 = sqrt(d1^2 - g1 g2), the minimiser is
    x2 - (x2 - x1) (g2 + d2 - d1) / (g2 - g1 + 2 d2) (Nocedal and Wright, eq. 3.59), written from the smaller x.
    """
    if bounds is not None:
        xmin_bound, xmax_bound = bounds
    else:
        xmin_bound, xmax_bound = (x1, x2) if x1 <= x2 else (x2, x1)
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1 ** 2 - g1 * g2
    if d2_square < 0:
        return (xmin_bound + xmax_bound) / 2.0
    d2 = d2_square ** 0.5
    if x1 <= x2:
        min_pos = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
    else:
        min_pos = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
    return min(max(min_pos, xmin_bound), xmax_bound)


class _Bracket:
    """The interval [lo, hi] of steps that the zoom phase narrows: per end its step, loss, gradient and slope
    (gradient . direction); ``low`` is the end with the smaller loss."""

    def __init__(self, steps, fs, gs, gtds):
        self.t, self.f, self.g, self.gtd = list(steps), list(fs), list(gs), list(gtds)
        self.order()

    def order(self):
        self.low, self.high = (0, 1) if self.f[0] <= self.f[-1] else (1, 0)

    def set(self, end, t, f, g, gtd):
        self.t[end], self.f[end], self.g[end], self.gtd[end] = t, f, g, gtd


def _bracket_phase(obj_func, x, t, d, f, g, gtd, c1, c2, max_ls):
    """Strong Wolfe, phase 1: grow the step until it is acceptable (returned alone, done) or an interval is known to
    hold one (the loss rose, or the slope turned positive). Returns (bracket, done, evaluations, line iterations)."""
    f_new, g_new = obj_func(x, t, d)
    evals, ls_iter = 1, 0
    gtd_new = g_new.dot(d)
    t_prev, f_prev, g_prev, gtd_prev = 0, f, g, gtd
    while ls_iter < max_ls:
        # sufficient decrease fails (Armijo), or no better than the previous step: a minimum lies in between
        if f_new > (f + c1 * t * gtd) or (ls_iter > 1 and f_new >= f_prev):
            return _Bracket([t_prev, t], [f_prev, f_new], [g_prev, g_new.copy()], [gtd_prev, gtd_new]), False, \
                evals, ls_iter
        if abs(gtd_new) <= -c2 * gtd:  # curvature condition too: t is a strong Wolfe step
            return _Bracket([t], [f_new], [g_new], [gtd_new]), True, evals, ls_iter
        if gtd_new >= 0:  # the slope turned: a minimum lies in between
            return _Bracket([t_prev, t], [f_prev, f_new], [g_prev, g_new.copy()], [gtd_prev, gtd_new]), False, \
                evals, ls_iter
        # extrapolate: a cubic's minimiser between 1.01 t and 10 t
        t_next = _cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new,
                                    bounds=(t + 0.01 * (t - t_prev), t * 10))
        t_prev, f_prev, g_prev, gtd_prev = t, f_new, g_new.copy(), gtd_new
        t = t_next
        f_new, g_new = obj_func(x, t, d)
        evals += 1
        gtd_new = g_new.dot(d)
        ls_iter += 1
    # out of evaluations: the interval from 0 to the last step
    return _Bracket([0, t], [f, f_new], [g, g_new], [None, None]), False, evals, ls_iter


def _safeguarded(t, bracket, insuf_progress):
    """Keep a zoom step away from the interval's ends: within 10% of an end twice running (or outside), it moves to
    10% inside. Returns (step, insufficient progress)."""
    lo, hi = min(bracket), max(bracket)
    eps = 0.1 * (hi - lo)
    if min(hi - t, t - lo) >= eps:
        return t, False
    if insuf_progress or t >= hi or t <= lo:
        return (hi - eps if abs(t - hi) < abs(t - lo) else lo + eps), False
    return t, True


def _strong_wolfe(obj_func, x, t, d, f, g, gtd, c1=1e-4, c2=0.9, tolerance_change=1e-9, max_ls=25):
    """A step ``t`` along ``d`` that satisfies the strong Wolfe conditions (Nocedal and Wright, algorithms 3.5 and
    3.6): sufficient decrease f(t) <= f + c1 t gtd and curvature |g(t) . d| <= c2 |gtd|.

    Phase 1 (:func:`_bracket_phase`) finds an interval that holds such a step; phase 2 (zoom) narrows it by cubic
    interpolation, safeguarded, keeping at its low end the best step so far. Returns (loss, gradient, step,
    evaluations)."""
    d_norm = abs(d).max()
    bracket, done, evals, ls_iter = _bracket_phase(obj_func, x, t, d, f, g.copy(), gtd, c1, c2, max_ls)
    b, insuf_progress = bracket, False
    while not done and ls_iter < max_ls:
        if abs(b.t[1] - b.t[0]) * d_norm < tolerance_change:  # the interval is too small to narrow further
            break
        t = _cubic_interpolate(b.t[0], b.f[0], b.gtd[0], b.t[1], b.f[1], b.gtd[1])
        t, insuf_progress = _safeguarded(t, b.t, insuf_progress)
        f_new, g_new = obj_func(x, t, d)
        evals += 1
        gtd_new = g_new.dot(d)
        ls_iter += 1
        if f_new > (f + c1 * t * gtd) or f_new >= b.f[b.low]:
            b.set(b.high, t, f_new, g_new.copy(), gtd_new)  # no sufficient decrease: t is the new high end
            b.order()
            continue
        if abs(gtd_new) <= -c2 * gtd:
            done = True
        elif gtd_new * (b.t[b.high] - b.t[b.low]) >= 0:  # the minimum lies on the low end's other side
            b.set(b.high, b.t[b.low], b.f[b.low], b.g[b.low], b.gtd[b.low])
        b.set(b.low, t, f_new, g_new.copy(), gtd_new)
    return b.f[b.low], b.g[b.low], b.t[b.low], evals


def _two_loop(grad, old_dirs, old_stps, ro, h_diag, al):
    """The L-BFGS direction -H grad, H the inverse-Hessian estimate built from the pairs s = old_stps[i] (parameter
    steps) and y = old_dirs[i] (gradient changes), ro[i] = 1 / (y . s), starting from h_diag times the identity
    (Nocedal and Wright, algorithm 7.4): the first loop runs newest to oldest, projecting each s out of q; the
    second runs oldest to newest, adding back the curvature. ``al`` holds the first loop's coefficients (kept in
    the state, as torch does)."""
    q = -grad
    for i in range(len(old_dirs) - 1, -1, -1):
        al[i] = old_stps[i].dot(q) * ro[i]
        q -= al[i] * old_dirs[i]
    r = q * h_diag
    for i in range(len(old_dirs)):
        be_i = old_dirs[i].dot(r) * ro[i]
        r += (al[i] - be_i) * old_stps[i]
    return r


class LBFGS(Optimizer):
    """L-BFGS, as torch.optim.LBFGS (one parameter group; every parameter on one device).

    ``step(closure)``: the closure clears the gradients, computes the loss, calls ``backward()`` and returns the
    loss; a step runs up to ``max_iter`` iterations (``max_eval``, default ``max_iter * 5 // 4``, evaluations) and
    stops early when the gradient's largest element is at most ``tolerance_grad`` or the loss or the parameters
    change by less than ``tolerance_change``. ``history_size`` pairs are kept (memory: that many times two copies
    of the parameters). ``line_search_fn='strong_wolfe'`` picks each step by a strong Wolfe line search; None
    moves ``lr`` along the direction (the first step scaled down by the gradient's L1 norm). Returns the loss of
    the step's first evaluation.
    """

    def __init__(self, params, lr=1, max_iter=20, max_eval=None, tolerance_grad=1e-7, tolerance_change=1e-9,
                 history_size=100, line_search_fn=None):
        if isinstance(lr, Tensor):
            if lr.numel() != 1:
                raise ValueError("Tensor lr must be 1-element")
            lr = lr.item()
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if max_eval is None:
            max_eval = max_iter * 5 // 4
        super().__init__(params, dict(lr=lr, max_iter=max_iter, max_eval=max_eval, tolerance_grad=tolerance_grad,
                                      tolerance_change=tolerance_change, history_size=history_size,
                                      line_search_fn=line_search_fn))
        if len(self.param_groups) != 1:
            raise ValueError("LBFGS doesn't support per-parameter options (parameter groups)")
        self._params = self.param_groups[0]["params"]

    def add_param_group(self, group):
        if self.param_groups:  # torch refuses a second group too
            raise ValueError("LBFGS doesn't support per-parameter options (parameter groups)")
        super().add_param_group(group)

    # -- the parameters as one flat vector ---------------------------------------------------------------------------
    def _xp(self):
        return backend.get_array_module(self._params[0]._data)

    def _gather_flat_grad(self):
        """Every parameter's gradient, flattened and concatenated (zeros for a parameter without one)."""
        xp = self._xp()
        return xp.concatenate([p.grad._data.reshape(-1) if p.grad is not None else xp.zeros(p.numel(), p._data.dtype)
                               for p in self._params])

    def _add_grad(self, step_size, update):
        """parameters += step_size * update (the flat vector cut back into the parameters' shapes), in place."""
        offset = 0
        for p in self._params:
            n = p.numel()
            p._data += step_size * update[offset:offset + n].reshape(p._data.shape)
            p._vc[0] += 1  # changed in place, as any optimizer step
            offset += n

    def _clone_param(self):
        return [p._data.copy() for p in self._params]

    def _set_param(self, params_data):
        for p, data in zip(self._params, params_data):
            p._data[...] = data
            p._vc[0] += 1

    def _directional_evaluate(self, closure, x, t, d):
        """Loss and flat gradient at x + t d; the parameters are put back to x afterwards."""
        self._add_grad(t, d)
        loss = float(closure())
        flat_grad = self._gather_flat_grad()
        self._set_param(x)
        return loss, flat_grad

    # -- one step ---------------------------------------------------------------------------------------------------
    def _direction(self, state, flat_grad, history_size):
        """The next search direction: steepest descent on the first iteration, else L-BFGS's, after adding the last
        (s, y) pair to the history when its curvature y . s is positive enough."""
        if state["n_iter"] == 1:
            state.update(old_dirs=[], old_stps=[], ro=[], H_diag=1)
            return -flat_grad
        y = flat_grad - state["prev_flat_grad"]
        s = state["d"] * state["t"]
        ys = y.dot(s)
        if ys > 1e-10:
            if len(state["old_dirs"]) == history_size:  # forget the oldest pair
                for k in ("old_dirs", "old_stps", "ro"):
                    state[k].pop(0)
            state["old_dirs"].append(y)
            state["old_stps"].append(s)
            state["ro"].append(1.0 / ys)
            state["H_diag"] = ys / y.dot(y)  # scale of the initial inverse Hessian (Nocedal and Wright, eq. 7.20)
        if "al" not in state:
            state["al"] = [None] * history_size
        return _two_loop(flat_grad, state["old_dirs"], state["old_stps"], state["ro"], state["H_diag"], state["al"])

    def step(self, closure):
        """Up to ``max_iter`` L-BFGS iterations; ``closure`` re-evaluates the loss (and its gradients). Returns the
        loss of the first evaluation."""
        group = self.param_groups[0]
        lr, max_iter, max_eval = group["lr"], group["max_iter"], group["max_eval"]
        tolerance_grad, tolerance_change = group["tolerance_grad"], group["tolerance_change"]
        line_search_fn, history_size = group["line_search_fn"], group["history_size"]
        closure = enable_grad()(closure)
        state = self.state[self._params[0]]
        state.setdefault("func_evals", 0)
        state.setdefault("n_iter", 0)

        orig_loss = closure()
        loss = float(orig_loss)
        current_evals = 1
        state["func_evals"] += 1
        flat_grad = self._gather_flat_grad()
        if abs(flat_grad).max() <= tolerance_grad:  # already optimal
            return orig_loss

        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            state["n_iter"] += 1
            d = state["d"] = self._direction(state, flat_grad, history_size)
            state["prev_flat_grad"] = flat_grad.copy()
            prev_loss = state["prev_loss"] = loss
            # the first step ever is scaled by the gradient's size; later ones take lr
            t = state["t"] = min(1.0, 1.0 / abs(flat_grad).sum()) * lr if state["n_iter"] == 1 else lr
            gtd = flat_grad.dot(d)  # the directional derivative
            if gtd > -tolerance_change:  # not a descent direction (any more)
                break

            ls_func_evals = 0
            if line_search_fn is not None:
                if line_search_fn != "strong_wolfe":
                    raise RuntimeError("only 'strong_wolfe' is supported")
                x_init = self._clone_param()

                def obj_func(x, t, d):
                    return self._directional_evaluate(closure, x, t, d)

                loss, flat_grad, t, ls_func_evals = _strong_wolfe(obj_func, x_init, t, d, loss, flat_grad, gtd,
                                                                  max_ls=max_eval - current_evals)
                self._add_grad(t, d)
                opt_cond = abs(flat_grad).max() <= tolerance_grad
            else:
                self._add_grad(t, d)  # a fixed step
                opt_cond = False
                if n_iter != max_iter:  # re-evaluate, except after the last iteration (its result would go unused)
                    loss = float(closure())
                    flat_grad = self._gather_flat_grad()
                    opt_cond = abs(flat_grad).max() <= tolerance_grad
                    ls_func_evals = 1
            state["t"] = t
            current_evals += ls_func_evals
            state["func_evals"] += ls_func_evals

            if n_iter == max_iter or current_evals >= max_eval or opt_cond:
                break
            if abs(d * t).max() <= tolerance_change or abs(loss - prev_loss) < tolerance_change:  # no progress
                break
        return orig_loss

    # -- saving ---------------------------------------------------------------------------------------------------
    _FLAT = ("d", "prev_flat_grad")  # state entries that are flat vectors (not of the parameter's shape)
    _FLAT_LISTS = ("old_dirs", "old_stps")

    def state_dict(self):
        """As torch's: the one state entry (of the first parameter) holds the history as flat vectors."""
        sd = super().state_dict()
        for st in sd["state"].values():
            for k in self._FLAT_LISTS + ("ro", "al"):
                if isinstance(st.get(k), list):
                    st[k] = [v.copy() if hasattr(v, "copy") else v for v in st[k]]
        return sd

    def load_state_dict(self, state_dict):
        """Restore :meth:`state_dict`'s output; the flat vectors are checked against the parameters' total size
        (torch's LBFGS state), the rest as any optimizer's."""
        if not isinstance(state_dict, dict) or not isinstance(state_dict.get("state"), dict):
            return super().load_state_dict(state_dict)
        numel = sum(p.numel() for p in self._params)
        flat, rest = {}, {}
        for i, st in state_dict["state"].items():
            if not isinstance(st, dict):
                rest[i] = st
                continue
            flat[i] = {k: self._flat_value(k, v, numel) for k, v in st.items()
                       if k in self._FLAT + self._FLAT_LISTS}
            rest[i] = {k: v for k, v in st.items() if k not in flat[i]}
        self._stage_state_dict({**state_dict, "state": rest})()  # checks the groups and every index first
        by_index = dict(zip(state_dict["param_groups"][0]["params"], self._params))
        for i, vectors in flat.items():
            self.state[by_index[int(i)]].update(vectors)

    def _flat_value(self, key, value, numel):
        """A saved flat vector (or list of them) as an array on the parameters' device and dtype, checked."""
        if isinstance(value, list):
            return [self._flat_value(key, v, numel) for v in value]
        if value is None:
            return None
        arr = value._data if isinstance(value, Tensor) else value
        if not backend.is_device_array(arr) or arr.shape != (numel,) or arr.dtype.kind != "f":
            raise ValueError(f"LBFGS.load_state_dict: state {key!r} must be a flat float vector of the parameters' "
                             f"{numel} elements, got {getattr(arr, 'shape', type(arr).__name__)}")
        p = self._params[0]
        return backend.to_device(arr, p.device).astype(p.dtype)
