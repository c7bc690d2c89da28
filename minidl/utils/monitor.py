"""Monitor(model): activation and gradient statistics per layer and per training step, from module hooks, and
their plots.

    monitor = minidl.utils.Monitor(model)
    for x, y in loader:
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        monitor.step()              # after backward: this step's activations and gradients
        opt.step()
    monitor.plot("monitor.png")     # per layer over steps, and per step over depth

Per watched layer and recorded step:
- its output's mean, standard deviation and fraction of exact zeros (``inputs=True``: its input's instead,
  which for a net with functional activations is the previous layer's activation: dead ReLUs show there);
- for a layer with parameters of its own, the norm of its weight's gradient (``weight``, else all its own
  parameters together) and that norm over the weight's norm (the scale of an SGD step relative to the weight).
Only forward passes in training mode count, the last one before ``step()`` (a module called twice in one forward,
such as a shared ReLU, is recorded at its last call). ``every=k`` records every k-th step
(the hooks return at once in the others); ``remove()`` takes the hooks off. Nothing runs when no Monitor exists.
With ``path``, ``fit(..., monitor=monitor)`` steps it after every backward and rewrites the plot there after
every epoch.
"""
import math

import numpy as np

from .. import nn

_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Hardtanh, nn.Mish,
                nn.PReLU, nn.Softplus, nn.Hardswish, nn.Hardsigmoid)
_KEYS = ("act_mean", "act_std", "act_zeros", "grad_norm", "grad_ratio")


def _watched(model, layers):
    named = dict(model.named_modules())
    if layers is not None:
        missing = [n for n in layers if n not in named]
        if missing:
            raise ValueError(f"Monitor: no module named {missing[0]!r} in the model; its modules are "
                             f"{[n for n in named if n][:12]}...")
        return [(n, named[n]) for n in layers]
    out = []
    for name, m in model.named_modules():
        if next(m.children(), None) is not None:
            continue
        if next(m.parameters(recurse=False), None) is not None or isinstance(m, _ACTIVATIONS):
            out.append((name or type(m).__name__, m))
    if not out:
        raise ValueError("Monitor: the model has no leaf module with parameters or an activation module to watch")
    return out


def _own_weight(m):
    w = getattr(m, "weight", None)
    if w is not None and hasattr(w, "_data"):
        return [w]
    return [p for p in m.parameters(recurse=False)]


def _norm(arrays):
    """The 2-norm of arrays taken together, summed in float64 (NumPy or CuPy)."""
    return math.sqrt(sum(float((a.astype(np.float64) ** 2).sum()) for a in arrays))


class Monitor:
    def __init__(self, model, layers=None, every=1, inputs=False, path=None, title=None):
        if not isinstance(every, int) or isinstance(every, bool) or every < 1:
            raise ValueError(f"Monitor: every must be a positive int, got {every!r}")
        self.model, self.every, self.inputs = model, every, bool(inputs)
        self.path, self.title = path, title  # where fit() writes the plot after each epoch (None: it does not)
        self.layers = _watched(model, layers)
        self.names = [n for n, _ in self.layers]
        self.steps = []  # the step numbers recorded (counting step() calls from 0)
        self.history = {n: {k: [] for k in _KEYS} for n in self.names}
        self._step = 0
        self._pending = {}
        self._handles = [m.register_forward_hook(self._hook(n)) for n, m in self.layers]

    def _recording(self):
        return self._step % self.every == 0

    def _hook(self, name):
        def hook(module, inp, out):
            if not module.training or not self._recording():
                return
            t = (inp[0] if inp else None) if self.inputs else (out[0] if isinstance(out, tuple) else out)
            if t is None or not hasattr(t, "_data"):
                return
            a = t._data
            if a.dtype.kind != "f" or a.size == 0:
                return
            self._pending[name] = (float(a.mean()), float(a.std()), float((a == 0).mean()))
        return hook

    def step(self):
        """Close a training step: call it after ``backward()`` (before ``optimizer.step()`` or after: the
        gradients are read, the weights' norms taken as they are)."""
        if self._recording():
            self.steps.append(self._step)
            for name, m in self.layers:
                h = self.history[name]
                stats = self._pending.get(name, (float("nan"),) * 3)
                for k, v in zip(("act_mean", "act_std", "act_zeros"), stats):
                    h[k].append(v)
                weights = _own_weight(m)
                grads = [w.grad._data for w in weights if w.grad is not None]
                if weights and grads:
                    gn = _norm(grads)
                    wn = _norm([w._data for w in weights])
                    h["grad_norm"].append(gn)
                    h["grad_ratio"].append(gn / wn if wn else float("inf"))
                else:
                    h["grad_norm"].append(float("nan"))
                    h["grad_ratio"].append(float("nan"))
        self._pending = {}
        self._step += 1

    def remove(self):
        """Take the hooks off the model (the history stays)."""
        for h in self._handles:
            h.remove()
        self._handles = []

    def as_arrays(self, key):
        """One statistic as a (recorded steps, layers) array (NaN where a layer has none)."""
        if key not in _KEYS:
            raise ValueError(f"Monitor.as_arrays: key must be one of {_KEYS}, got {key!r}")
        return np.array([self.history[n][key] for n in self.names], dtype=np.float64).T

    def plot(self, path, title=None, steps=None):
        """Six panels: gradient norm ratio, activation std and zero fraction, per layer over steps (top), and per
        recorded step over depth (bottom; ``steps``: which, default the first, two in between and the last)."""
        return plot_monitors({title or "": self}, path, steps=steps)

    def __repr__(self):
        return f"<Monitor: {len(self.names)} layers, {len(self.steps)} steps recorded>"


def _picked(monitor, steps):
    if not monitor.steps:
        raise ValueError("Monitor.plot: nothing recorded yet (call monitor.step() after each backward)")
    if steps is not None:
        return [monitor.steps.index(s) for s in steps]
    n = len(monitor.steps)
    return sorted({0, n // 3, (2 * n) // 3, n - 1})


_LABELS = {"grad_ratio": "|grad| / |weight|", "grad_norm": "|grad|", "act_std": "activation std",
           "act_mean": "activation mean", "act_zeros": "fraction of zeros"}
_INPUT_LABELS = {"act_std": "input std", "act_mean": "input mean", "act_zeros": "fraction of zeros in the input"}


_MAX_NAMED = 24  # up to this many layers, every one is named on an axis; beyond, evenly chosen ones


def _named_ticks(names):
    """The positions of the layers to name on an axis (all, or evenly spaced ones with the first and the last),
    and their names."""
    step = -(-len(names) // _MAX_NAMED)
    idx = list(range(0, len(names), step))
    if idx[-1] != len(names) - 1:
        idx[-1] = len(names) - 1
    return idx, [names[i] for i in idx]


def _layer_key(fig, ax, names, colours):
    """A colour bar beside ``ax`` that names the layer of each colour, the input side at the top."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import BoundaryNorm, ListedColormap
    n = len(names)
    mappable = ScalarMappable(norm=BoundaryNorm(np.arange(n + 1) - 0.5, n), cmap=ListedColormap(colours))
    idx, labels = _named_ticks(names)
    bar = fig.colorbar(mappable, ax=ax, ticks=idx, fraction=0.05, pad=0.02, aspect=max(12, 2 * len(labels)))
    bar.ax.set_yticklabels(labels, fontsize=6 if len(labels) > 8 else 7)
    bar.ax.tick_params(length=0)
    bar.ax.invert_yaxis()
    bar.outline.set_visible(False)


def _panels(fig, axes_steps, axes_depth, title, mon, key, picked, plt):
    """One statistic of one monitor: a line per layer over steps (a colour per layer, named in a colour bar), and a
    line per picked step over the layers (named on the x axis)."""
    label = (_INPUT_LABELS if mon.inputs else {}).get(key, _LABELS[key])
    prefix = f"{title}: " if title else ""
    values = mon.as_arrays(key)
    cols = np.flatnonzero(~np.all(np.isnan(values), axis=0))  # the layers that have this statistic
    names = [mon.names[c] for c in cols]
    depth_cmap, step_cmap = plt.get_cmap("viridis"), plt.get_cmap("plasma")
    colours = [depth_cmap(j / max(len(cols) - 1, 1)) for j in range(len(cols))]
    for col, name, colour in zip(cols, names, colours):
        axes_steps.plot(mon.steps, values[:, col], color=colour, lw=1, label=name)
    axes_steps.set_xlabel("step")
    axes_steps.set_title(f"{prefix}{label} per layer", fontsize=9)
    if names:
        _layer_key(fig, axes_steps, names, colours)
    for j, k in enumerate(picked):
        axes_depth.plot(np.arange(len(cols)), values[k, cols], marker="o", ms=2.5, lw=1,
                        color=step_cmap(j / max(len(picked) - 1, 1) * 0.85), label=f"step {mon.steps[k]}")
    idx, ticks = _named_ticks(names) if names else ([], [])
    crowded = sum(len(t) + 2 for t in ticks) > 40  # more than fits across a panel: upright names
    axes_depth.set_xticks(idx, ticks, rotation=90 if crowded else 0, fontsize=6 if crowded else 7)
    axes_depth.set_xlabel("layer (input side first)")
    axes_depth.set_title(f"{prefix}{label} over depth", fontsize=9)
    if key.startswith("grad"):
        axes_steps.set_yscale("log")
        axes_depth.set_yscale("log")


def plot_monitors(monitors, path, steps=None, keys=("grad_ratio", "act_std", "act_zeros")):
    """Each key over steps with a line per layer (colour = depth, each colour named by the layer's attribute name
    in a colour bar beside the panel) and over depth with a line per recorded step (``steps``; default the first,
    two in between and the last; the layers named on the x axis). One monitor: those two as two rows. Several
    (``{name: Monitor}``): a row each, the over-steps panels then the over-depth ones, the gradient columns on one
    scale for all rows, so that two nets of the same depth (plain and residual) compare at a glance. Gradient
    quantities use a log scale. The recorded steps' key stands to the right of the panels, clear of the curves
    (one per row when the rows recorded different steps)."""
    from .plots import _save
    return _save(_figure(monitors, steps, keys), path)


def _figure(monitors, steps, keys):
    """plot_monitors' figure, not yet saved."""
    from .plots import _plt
    plt = _plt()
    items = list(monitors.items())
    single = len(items) == 1
    rows, cols = (2, len(keys)) if single else (len(items), 2 * len(keys))
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols + 0.8, 3.4 * rows), squeeze=False, layout="constrained")
    step_keys = []  # each row's recorded steps: (lines, labels) of its last over-depth panel
    for r, (title, mon) in enumerate(items):
        picked = _picked(mon, steps)
        for c, key in enumerate(keys):
            over_steps, over_depth = (axes[0][c], axes[1][c]) if single else (axes[r][c], axes[r][len(keys) + c])
            _panels(fig, over_steps, over_depth, title, mon, key, picked, plt)
        step_keys.append((axes[1][-1] if single else axes[r][-1]).get_legend_handles_labels())
    if all(labels == step_keys[0][1] for _, labels in step_keys):  # the same steps in every row: one key for all
        fig.legend(*step_keys[0], title="recorded step", fontsize=7, title_fontsize=7, loc="outside right upper")
    else:
        for r, (lines, labels) in enumerate(step_keys):  # several rows (one has a single row): beside each
            axes[r][-1].legend(lines, labels, title="recorded step", fontsize=7, title_fontsize=7, loc="upper left",
                               bbox_to_anchor=(1.03, 1.0), borderaxespad=0.0)
    if not single:
        for c, key in enumerate(keys + keys):  # a gradient column: one scale for all rows
            if key.startswith("grad"):
                lims = [axes[r][c].get_ylim() for r in range(rows)]
                for r in range(rows):
                    axes[r][c].set_ylim(min(lo for lo, _ in lims), max(hi for _, hi in lims))
    return fig
