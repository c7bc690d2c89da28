"""Utilities: metrics, model summary, checkpoints, training loop, plots (matplotlib, imported lazily), safetensors
(the safetensors package, imported lazily)."""
from .metrics import accuracy, confusion_matrix, precision_recall_f1
from .summary import summary
from .checkpoint import save_checkpoint, load_checkpoint, save, load
from .training import train_one_epoch, evaluate, fit
from . import plots, safetensors
