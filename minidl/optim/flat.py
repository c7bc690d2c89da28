"""The flat-buffer update behind ``fused=True`` / ``foreach=True`` (SGD, Adam, AdamW): one parameter group's
parameters become views into one flat array, their states views into flat arrays of the same layout, and a step runs
the optimizer's own ``_update`` once on the flat arrays (split across minidl's threads when large) instead of once per
parameter. ``_update`` is elementwise, so the flat step gives the per-parameter step's bits (tests/test_optim.py).

What it saves is Python: a per-parameter Adam step is about ten NumPy calls per parameter (a 41-parameter GPT spends
0.8 ms of an 11 ms step there); flat, it is ten calls in all plus one gather of the gradients.

The per-parameter loop (Optimizer.step) stays the reference and the fallback: a step where some parameter has no
gradient, where the parameters' steps differ, or where a group cannot be flat (mixed dtypes or devices, a parameter
in shared memory or a view of another array) runs it, on the same state (the per-parameter states are views into the
flat ones). A group whose arrays anything else holds (a Parameter given another's ``.data``, a view, a saved graph)
stays per parameter: re-pointed, they would stop sharing memory. The flat gradient array is one more copy of the
parameters' size. A parameter whose array was replaced since (``load_state_dict`` may, ``module.to`` does) or a state
replaced by ``Optimizer.load_state_dict`` makes the group flat again from the current values at the next step.
"""
import sys

import numpy as np

from ..backend import get_array_module, is_device_array
from ..kernels import blas

# below this many values a step runs on the calling thread (handing work to a thread costs about 20-50 us)
SPLIT_VALUES = 1 << 17


def _eligible(params, before=None):
    """Whether ``params`` can share one flat array: one float dtype, one array type and device, each array its own
    (not a view, except into ``before``, the group's flat array until now; not in shared memory), none twice."""
    from ..backend.shared_memory import storage_of
    kind, dtype, device = type(params[0]._data), params[0]._data.dtype, getattr(params[0]._data, "device", None)
    seen = set()
    for p in params:
        a = p._data
        ours = before is not None and a.base is before  # a view the group's FlatGroup made (it holds it too)
        # nothing else may hold the array (another Parameter given its .data, a view, a saved graph): re-pointed
        # to the flat array, the parameter would stop sharing its memory with them. Held here by p, ``a`` and
        # getrefcount's argument
        shared = sys.getrefcount(a) > (4 if ours else 3)
        if (id(p) in seen or id(a) in seen or type(a) is not kind or a.dtype != dtype or a.dtype.kind != "f"
                or (a.base is not None and not ours) or shared or not a.flags.c_contiguous
                or storage_of(a) is not None or getattr(a, "device", None) != device):
            return False
        seen.update((id(p), id(a)))
    return True


class FlatGroup:
    """One group's parameters as views into ``values`` (and their states into ``state``'s flat arrays)."""

    def __init__(self, params, states):
        self.params = list(params)
        first = self.params[0]._data
        xp = self.xp = get_array_module(first)
        self.spans, n = [], 0
        for p in self.params:
            self.spans.append((n, n + p._data.size))
            n += p._data.size
        self.values = xp.empty(n, dtype=first.dtype)
        self.grads = xp.empty(n, dtype=first.dtype)
        self.views = []
        for p, (lo, hi) in zip(self.params, self.spans):
            self.values[lo:hi] = p._data.reshape(-1)
            view = self.values[lo:hi].reshape(p._data.shape)
            p._data = view  # the parameter is now this view: its values, its shape, written by every flat step
            self.views.append(view)
        self.state = None
        self.dicts = None
        self.started = False
        self._adopt(states)

    def _adopt(self, states):
        """Take the parameters' current states (all empty: the first step makes them; else gathered into flat
        arrays when every parameter has the same keys and the same numbers)."""
        own = [states[p] for p in self.params]
        if not any(own):
            self.state, self.dicts = {}, own
            return
        keys = set(own[0])
        if any(set(s) != keys for s in own):
            self.state = None
            return
        flat = {}
        for k in keys:
            values = [s[k] for s in own]
            if is_device_array(values[0]):
                if any(not is_device_array(v) or v.shape != p._data.shape for v, p in zip(values, self.params)):
                    self.state = None
                    return
                flat[k] = self.xp.concatenate([v.reshape(-1) for v in values]).astype(self.values.dtype, copy=False)
            elif all(v == values[0] for v in values):
                flat[k] = values[0]
            else:  # steps that differ between parameters: no one flat update
                self.state = None
                return
        self.state, self.dicts = flat, own
        self._share_state()

    def _share_state(self):
        """Each parameter's state: views into the flat arrays, the numbers as the flat state has them."""
        for d, p, (lo, hi) in zip(self.dicts, self.params, self.spans):
            for k, v in self.state.items():
                d[k] = v[lo:hi].reshape(p._data.shape) if is_device_array(v) else v

    def ready(self):
        """Whether a flat step can run now that the group is intact: every parameter has a gradient of its shape."""
        for p, view in zip(self.params, self.views):
            g = p.grad
            if g is None or g._data.shape != view.shape:
                return False
        return True

    def intact(self, params, states):
        """Whether ``params`` are still this group's, each still its view, each state still the one shared (else the
        caller makes the group flat again)."""
        if self.state is None or len(params) != len(self.params):
            return False
        return all(p is q and p._data is view and states.get(p) is d
                   for p, q, view, d in zip(params, self.params, self.views, self.dicts))

    def step(self, update, group, maximize):
        """``update(values, grads, state, group)`` on the flat arrays: in parts on minidl's threads when large."""
        xp, g = self.xp, self.grads
        xp.concatenate([p.grad._data.reshape(-1) for p in self.params], out=g)
        if maximize:
            xp.negative(g, out=g)
        n = self.values.size
        if not self.started or n < SPLIT_VALUES or xp is not np:
            update(self.values, g, self.state, group)  # the first step makes the state: whole
            self.started = True
        else:
            parts = {}

            def run(part, lo, hi):
                own = {k: (v[lo:hi] if is_device_array(v) else v) for k, v in self.state.items()}
                update(self.values[lo:hi], g[lo:hi], own, group)
                parts[part] = own
            blas.split(n, run)
            for k, v in parts[0].items():  # the numbers the update changed (a step count): the same in every part
                if not is_device_array(v):
                    self.state[k] = v
        self._share_state()

