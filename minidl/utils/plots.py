"""Figures saved as PNG with matplotlib (imported here, lazily: ``import minidl`` never imports it)."""
import os

import numpy as np

from .. import backend
from ..autograd import no_grad
from ..autograd.creation import as_tensor
from ..autograd.tensor import Tensor


def _plt():
    import matplotlib
    matplotlib.use("Agg")  # files only; no display needed
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path):
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, "." + os.path.basename(path) + ".tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    os.replace(tmp, path)
    _plt().close(fig)
    return path


def _np(x):
    return backend.to_device(x._data, "cpu") if isinstance(x, Tensor) else np.asarray(x)


_SERIES_NAMES = {"train_loss": "training set", "test_loss": "test set", "train_acc": "training set",
                 "test_acc": "test set"}


def plot_curves(history, path, title=None):
    """Loss and accuracy per epoch: ``history`` maps names like 'train_loss', 'test_acc' to lists (the legend
    says 'training set' / 'test set' for those; other names are shown as they are)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for key, values in history.items():
        ax = axes[0] if "loss" in key else axes[1]
        ax.plot(range(1, len(values) + 1), values, marker="o", label=_SERIES_NAMES.get(key, key.replace("_", " ")))
    for ax, name in zip(axes, ("loss", "accuracy")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_filters(weight, path, title="first-layer filters"):
    """Each output channel's first input-channel kernel as a small image, numbered from 0, on one diverging colour
    scale centred at 0 (red positive, blue negative, white 0) with its colour bar: weight (O, C, kH, kW)."""
    plt = _plt()
    w = _np(weight)
    if w.ndim != 4:
        raise ValueError(f"plot_filters: expected a 4-D conv weight, got shape {w.shape}")
    n = w.shape[0]
    cols = min(n, 8)
    rows = -(-n // cols)
    lim = float(np.abs(w[:, 0]).max()) or 1.0
    fig, axes = plt.subplots(rows, cols, figsize=(1.4 * cols + 0.8, 1.5 * rows + 0.4), squeeze=False)
    im = None
    for i, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if i < n:
            im = ax.imshow(w[i, 0], cmap="RdBu_r", vmin=-lim, vmax=lim)
            ax.set_title(f"filter {i}" if w.shape[1] == 1 else f"filter {i} (input 0)", fontsize=8)
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="weight")
    fig.suptitle(title)
    return _save(fig, path)


def _attribute_name(model, layer):
    """The layer's name in the model ('conv1', 'features.0'), else its class name."""
    return next((name for name, m in model.named_modules() if m is layer and name), type(layer).__name__)


def plot_feature_maps(model, layer, image, path, max_maps=16):
    """The input ``image`` (C, H, W) next to the output channels of ``layer`` (a sub-module of ``model``) for it,
    titled with the layer's attribute name; a Conv2d's output is its pre-activation (the activation follows it),
    which the title says. One colour scale for all maps, with a colour bar."""
    plt = _plt()
    captured = {}
    handle = layer.register_forward_hook(lambda m, i, o: captured.setdefault("out", o))
    was = model.training
    model.eval()
    try:
        with no_grad():
            model(image.unsqueeze(0) if isinstance(image, Tensor) else as_tensor(np.asarray(image)[None]))
    finally:
        handle.remove()
        model.train(was)
    maps = _np(captured["out"])[0][:max_maps]
    cols = min(len(maps), 8)
    rows = -(-len(maps) // cols)
    fig, axes = plt.subplots(rows, cols + 1, figsize=(1.6 * (cols + 1) + 0.8, 1.6 * rows + 0.6), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    img = _np(image)
    axes[0, 0].imshow(img[0] if img.ndim == 3 else img, cmap="gray")
    axes[0, 0].set_title("input", fontsize=8)
    lo, hi = float(maps.min()), float(maps.max())
    im = None
    for i in range(len(maps)):
        ax = axes[i // cols, 1 + i % cols]
        im = ax.imshow(maps[i], cmap="viridis", vmin=lo, vmax=hi)
        ax.set_title(f"channel {i}", fontsize=8)
    fig.colorbar(im, ax=axes[:, 1:].ravel().tolist(), shrink=0.8, label="activation")
    name = _attribute_name(model, layer)
    stage = "before the activation" if type(layer).__name__.startswith(("Conv", "Linear", "BatchNorm")) else \
        "after the layer"
    fig.suptitle(f"feature maps of {name} ({type(layer).__name__}, {stage})")
    return _save(fig, path)


def plot_confusion_matrix(cm, path, classes=None, title="confusion matrix"):
    plt = _plt()
    cm = np.asarray(cm)
    k = cm.shape[0]
    fig, ax = plt.subplots(figsize=(0.55 * k + 2.5, 0.55 * k + 2))
    im = ax.imshow(cm, cmap="Blues")
    fig.colorbar(im, ax=ax, shrink=0.8, label="images")
    labels = classes or [str(i) for i in range(k)]
    ax.set_xticks(range(k), labels, rotation=45, ha="right")
    ax.set_yticks(range(k), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_title(title)
    return _save(fig, path)


def plot_lines(series, path, xlabel, ylabel, title=None, logy=False):
    """Several named lines on one axis: ``series`` maps a label to (x, y) or to y alone."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for label, data in series.items():
        x, y = data if isinstance(data, tuple) else (range(1, len(data) + 1), data)
        ax.plot(list(x), list(y), marker=".", label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    return _save(fig, path)
