"""Utilities: metrics, model summary, checkpoints, training loop, plots (matplotlib, imported lazily), safetensors
(the safetensors package, imported lazily), torchvision.utils' make_grid and save_image (Pillow, imported lazily),
draw_graph (the backward graph as a picture), Monitor (activation and gradient statistics per layer and step)."""
from .metrics import accuracy, confusion_matrix, precision_recall_f1
from .summary import summary
from .checkpoint import save_checkpoint, load_checkpoint
from .training import train_one_epoch, evaluate, fit
from .images import make_grid, save_image
from .graph import draw_graph
from .monitor import Monitor, plot_monitors
from . import plots, safetensors
