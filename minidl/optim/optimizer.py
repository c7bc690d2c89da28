"""Optimizer base: parameter groups, per-parameter state, state_dict, zero_grad."""
import copy
import numbers
from collections import defaultdict

from .. import backend
from ..autograd.capturing import replayed
from ..autograd.tensor import Tensor
from ..profiler import profiled_method


# what each optimizer setting may be (as torch checks them): setting -> (test, the words for it)
_LIMITS = {
    "lr": (lambda v: v >= 0, "a number >= 0"),
    "momentum": (lambda v: v >= 0, "a number >= 0"),
    "weight_decay": (lambda v: v >= 0, "a number >= 0"),
    "eps": (lambda v: v >= 0, "a number >= 0"),
    "betas": (lambda v: 0 <= v < 1, "a pair of numbers in [0, 1)"),
    "rho": (lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    "alpha": (lambda v: v >= 0, "a number >= 0"),
    "lr_decay": (lambda v: v >= 0, "a number >= 0"),
    "initial_accumulator_value": (lambda v: v >= 0, "a number >= 0"),
    "momentum_decay": (lambda v: v >= 0, "a number >= 0"),
}


def _check_saved_group(name, saved, own):
    """A saved parameter group fits this optimizer's ``own`` group: as many parameters, numbers where numbers are."""
    if not isinstance(saved, dict) or not isinstance(saved.get("params"), list):
        raise ValueError(f"{name}: a saved parameter group must be a dict with a 'params' list")
    if len(saved["params"]) != len(own["params"]):
        raise ValueError(f"{name}: a saved group has {len(saved['params'])} parameters, this optimizer's "
                         f"has {len(own['params'])}")
    for k, v in saved.items():
        if k != "params" and k in own and isinstance(own[k], (int, float)) and not isinstance(own[k], bool) \
                and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise ValueError(f"{name}: group setting {k!r} must be a number, got {v!r}")


def _state_value(name, i, k, v, p):
    """One saved state entry of parameter ``p`` (number i), checked and copied: an array to p's device and (float)
    dtype, anything else deep-copied."""
    if isinstance(v, Tensor):
        v = v._data
    if not backend.is_device_array(v):
        return copy.deepcopy(v)
    if v.dtype.kind not in "biuf" or (v.ndim and v.shape != p.shape):
        raise ValueError(f"{name}: state {k!r} of parameter {i} has shape {v.shape} and dtype {v.dtype}; the "
                         f"parameter has shape {p.shape}")
    return backend.to_device(v, p.device).astype(p.dtype) if v.dtype.kind == "f" else v.copy()


class Optimizer:
    """Base class, as torch.optim.Optimizer. Subclasses implement ``_update(p, grad, state, group)``
    on raw arrays; updates happen in place on the parameters' arrays, outside the graph."""

    def __init_subclass__(cls, **kwargs):
        """A subclass's own step and zero_grad show in minidl.profiler as torch names them, and a step captured by
        minidl.compile calls them again on every replay (learning rates, counters and state read then)."""
        super().__init_subclass__(**kwargs)
        for label in ("step", "zero_grad"):
            method = cls.__dict__.get(label)
            if method is not None and not getattr(method, "__profiled__", False):
                setattr(cls, label, replayed(profiled_method(method, label)))

    def __init__(self, params, defaults, flat=False):
        self.defaults = defaults
        self.state = defaultdict(dict)  # as torch: custom optimizers index it directly
        self.param_groups = []
        self._flat = flat   # fused=True / foreach=True: each group's parameters as views into one array (optim/flat.py)
        self._flats = {}    # id(group) -> (group, its FlatGroup or None where it cannot be flat)
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        for g in groups:
            self.add_param_group(g)
        if flat:
            for g in self.param_groups:
                self._flat_group(g)  # the parameters become views now, before anyone takes a reference

    def add_param_group(self, group):
        if not isinstance(group, dict):
            raise TypeError(f"{type(self).__name__}: a parameter group must be a dict, got {type(group).__name__}")
        group = dict(group)
        ps = group["params"]
        group["params"] = [ps] if isinstance(ps, Tensor) else list(ps)
        for p in group["params"]:
            if not isinstance(p, Tensor):
                raise TypeError(f"{type(self).__name__}: can only optimize Tensors, got {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError(f"{type(self).__name__}: can't optimize a non-leaf Tensor")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in group["params"]):
            raise ValueError(f"{type(self).__name__}: some parameters appear in more than one parameter group")
        for k, v in self.defaults.items():
            group.setdefault(k, v)
        self._check_group(group)
        self.param_groups.append(group)

    def _check_group(self, group):
        """Each setting the group has, against what torch allows for it: one setting per message."""
        for key, (ok, allowed) in _LIMITS.items():
            if key not in group:
                continue
            value = group[key]
            values = value if key == "betas" else (value,)
            if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values) or \
                    (key == "betas" and len(values) != 2):
                raise TypeError(f"{type(self).__name__}: {key} must be {allowed}, got {value!r}")
            if not all(ok(v) for v in values):
                raise ValueError(f"{type(self).__name__}: {key} must be {allowed}, got {value!r}")

    def zero_grad(self, set_to_none=True):
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is not None:
                    if set_to_none:
                        p.grad = None
                    else:
                        p.grad = Tensor._make(backend.get_array_module(p._data).zeros_like(p._data))

    def step(self, closure=None):
        """One update of every parameter that has a gradient. ``closure`` re-evaluates the loss."""
        loss = None
        if closure is not None:
            from ..autograd import enable_grad
            with enable_grad():
                loss = closure()
        for group in self.param_groups:
            flat = self._flat_group(group) if self._flat else None
            if flat is not None and flat.ready():  # one update over the whole group: the loop below's bits
                flat.step(self._update, group, group.get("maximize"))
                for p in group["params"]:
                    p._vc[0] += 1
                continue
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad._data
                if g.shape != p._data.shape:
                    raise RuntimeError(f"{type(self).__name__}: gradient shape {g.shape} does not match the "
                                       f"parameter's {p.shape}")
                if group.get("maximize"):
                    g = -g
                self._update(p._data, g, self.state[p], group)
                p._vc[0] += 1  # changed in place: a graph that saved p can no longer run backward (as torch)
            if flat is not None and flat.state:  # a parameter had no gradient: the loop moved some counts, not all,
                flat.state = None  # so the group is made flat again from the states next step (not, if they differ)
        return loss

    def _update(self, p, g, state, group):
        raise NotImplementedError

    def _flat_group(self, group):
        """The group's FlatGroup (made again where a parameter or a state was replaced), or None where it cannot be
        flat."""
        from .flat import FlatGroup, _eligible
        params = group["params"]
        known = self._flats.get(id(group))
        if known is not None and known[0] is group:
            flat, arrays = known[1], known[2]
            if flat is not None and flat.intact(params, self.state):
                return flat
            if flat is None and arrays == tuple(id(p._data) for p in params):
                return None
        before = known[1].values if known is not None and known[0] is group and known[1] is not None else None
        flat = FlatGroup(params, self.state) if params and _eligible(params, before) else None
        if flat is not None and flat.state is None:  # states that cannot be one (steps that differ): per parameter
            flat = None
        self._flats[id(group)] = (group, flat, tuple(id(p._data) for p in params))
        return flat

    # -- saving ----------------------------------------------------------------------------------
    def state_dict(self):
        """{'state': {index: {...}}, 'param_groups': [{..., 'params': [indices]}]}, as torch."""
        index, groups = {}, []
        for g in self.param_groups:
            ids = []
            for p in g["params"]:
                index.setdefault(id(p), len(index))
                ids.append(index[id(p)])
            groups.append({**{k: v for k, v in g.items() if k != "params"}, "params": ids})
        state = {}
        for g in self.param_groups:
            for p in g["params"]:
                if p in self.state:
                    state[index[id(p)]] = {k: (v.copy() if hasattr(v, "copy") else v) for k, v in self.state[p].items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restore ``state_dict()``'s output; everything is checked before anything changes."""
        self._stage_state_dict(state_dict)()

    def _stage_state_dict(self, state_dict):
        """Check ``state_dict`` against this optimizer; return a function that applies it."""
        name = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state_dict, dict) or not isinstance(state_dict.get("param_groups"), list) \
                or not isinstance(state_dict.get("state"), dict):
            raise ValueError(f"{name}: expected a dict with a 'state' dict and a 'param_groups' list, got "
                             f"{type(state_dict).__name__}")
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(f"{name}: {len(groups)} parameter groups saved, {len(self.param_groups)} in this "
                             "optimizer")
        for saved, own in zip(groups, self.param_groups):
            _check_saved_group(name, saved, own)
        by_index = {i: p for saved, own in zip(groups, self.param_groups)
                    for i, p in zip(saved["params"], own["params"])}
        new_state = {}
        for i, st in state_dict["state"].items():
            try:
                p = by_index[int(i)]
            except (KeyError, TypeError, ValueError):
                raise ValueError(f"{name}: state for parameter {i!r}, which no saved group lists") from None
            if not isinstance(st, dict):
                raise ValueError(f"{name}: the state of parameter {i} must be a dict, got {type(st).__name__}")
            new_state[p] = {k: _state_value(name, i, k, v, p) for k, v in st.items()}
        settings = [{k: copy.deepcopy(v) for k, v in saved.items() if k != "params"} for saved in groups]

        def apply():
            self.state = defaultdict(dict, new_state)
            for own, s in zip(self.param_groups, settings):
                own.update(s)
        return apply

    def __getstate__(self):
        """Pickling keeps everything (torch's too); sent to a new process (a Process's argument under 'spawn'), an
        optimizer whose state holds arrays not in shared memory is refused: the child would update a copy of it."""
        from multiprocessing.context import get_spawning_popen
        if get_spawning_popen() is not None:
            from ..backend.shared_memory import storage_of
            for st in self.state.values():
                if any(backend.is_device_array(v) and storage_of(v) is None for v in st.values()):
                    raise RuntimeError(
                        f"{type(self).__name__}: its state (momentum buffers, moments) is not in shared memory, so a "
                        "new process would update a copy of it and its steps would be lost. Make the optimizer "
                        "inside each process over the shared parameters (as Hogwild does), or send it before its "
                        "first step")
        return {**self.__dict__, "_flats": {}}  # a copy makes its own flat arrays (a copied view is not a view)

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in sorted(g.items()) if k != "params"]
        return "\n".join(lines + [")"])


Optimizer.step = replayed(profiled_method(Optimizer.step, "step"))
Optimizer.zero_grad = replayed(profiled_method(Optimizer.zero_grad, "zero_grad"))
