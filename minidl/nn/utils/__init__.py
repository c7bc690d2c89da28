"""torch.nn.utils's everyday helpers: gradient clipping, parameters as one vector, pruning (``prune``)."""
from . import prune
from .clip_grad import clip_grad_norm_, clip_grad_value_
from .convert_parameters import parameters_to_vector, vector_to_parameters

__all__ = ["prune", "clip_grad_norm_", "clip_grad_value_", "parameters_to_vector", "vector_to_parameters"]
