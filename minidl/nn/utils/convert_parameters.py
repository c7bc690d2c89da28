"""Parameters as one flat vector and back, as torch.nn.utils.parameters_to_vector / vector_to_parameters."""
from ... import functional as F
from ...autograd.tensor import Tensor


def parameters_to_vector(parameters):
    """One 1-D tensor: every parameter flattened, in order (differentiable, as torch's)."""
    params = list(parameters)
    if not params:
        raise ValueError("parameters_to_vector: got no parameters")
    if len({p.device for p in params}) > 1:
        raise ValueError("parameters_to_vector: all parameters must be on one device")
    return F.cat([p.reshape(-1) for p in params])


def vector_to_parameters(vec, parameters):
    """Copy consecutive slices of ``vec`` into the parameters (their data, outside the graph)."""
    if not isinstance(vec, Tensor):
        raise TypeError(f"vector_to_parameters: expected vec to be a Tensor, got {type(vec).__name__}")
    if vec.ndim != 1:
        raise ValueError(f"vector_to_parameters: vec must be 1-D, got shape {vec.shape}")
    params = list(parameters)
    total = sum(p.numel() for p in params)
    if vec.shape[0] != total:
        raise ValueError(f"vector_to_parameters: vec has {vec.shape[0]} elements, the parameters {total}")
    start = 0
    for p in params:
        n = p.numel()
        p._data[...] = vec._data[start:start + n].reshape(p.shape)
        p._vc[0] += 1
        start += n
