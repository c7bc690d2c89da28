"""Classification metrics on predictions and targets (Tensors or arrays)."""
import numpy as np

from .. import backend
from ..autograd.tensor import Tensor


def _np(x):
    return backend.to_device(x._data, "cpu") if isinstance(x, Tensor) else np.asarray(x)


def _labels(pred):
    p = _np(pred)
    return p.argmax(axis=1) if p.ndim == 2 else p


def accuracy(pred, target):
    """Fraction of correct predictions; ``pred`` holds labels (N,) or scores (N, C)."""
    p, t = _labels(pred), _np(target)
    if p.shape != t.shape:
        raise ValueError(f"accuracy: predictions of shape {p.shape} for targets of shape {t.shape}")
    return float((p == t).mean()) if t.size else 0.0


def confusion_matrix(pred, target, num_classes):
    """``cm[i, j]`` = number of samples of true class i predicted as j."""
    p, t = _labels(pred).astype(np.int64), _np(target).astype(np.int64)
    if p.shape != t.shape:
        raise ValueError(f"confusion_matrix: predictions of shape {p.shape} for targets of shape {t.shape}")
    if t.size and (min(p.min(), t.min()) < 0 or max(p.max(), t.max()) >= num_classes):
        raise ValueError(f"confusion_matrix: labels must lie in [0, {num_classes - 1}]")
    return np.bincount(t * num_classes + p, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def precision_recall_f1(cm):
    """Per-class precision, recall and F1 from a confusion matrix (0 where undefined), as a dict of arrays,
    plus their macro averages."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(cm.sum(0) > 0, tp / cm.sum(0), 0.0)
        recall = np.where(cm.sum(1) > 0, tp / cm.sum(1), 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return {"precision": precision, "recall": recall, "f1": f1, "macro_precision": float(precision.mean()),
            "macro_recall": float(recall.mean()), "macro_f1": float(f1.mean())}
