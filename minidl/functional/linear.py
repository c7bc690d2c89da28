"""linear: ``input @ weight.T + bias``, composed of matmul and add (double backward works)."""
from ._checks import float_tensor, optional_tensor, same_device
from ._registry import register
from .math import matmul


@register(method=False)
def linear(input, weight, bias=None):
    """``y = x W^T + b``.

    Shape: input (*, in_features), weight (out_features, in_features), bias (out_features,),
    output (*, out_features).
    """
    float_tensor(input, "linear")
    float_tensor(weight, "linear", "weight")
    optional_tensor(bias, "linear", "bias")
    same_device("linear", input, weight, bias)
    if weight.ndim != 2:
        raise ValueError(f"linear: weight must be 2-D (out_features, in_features), got shape {weight.shape}")
    if input.dtype != weight.dtype:
        raise TypeError(f"linear: input dtype {input.dtype} and weight dtype {weight.dtype} differ; convert the "
                        f"input (x.to({weight.dtype})) or the layer (layer.to({input.dtype}))")
    if input.ndim == 0 or input.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: input has {input.shape[-1] if input.ndim else 0} features in its last "
                         f"dimension (shape {input.shape}), weight expects {weight.shape[1]} "
                         f"(weight shape {weight.shape})")
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"linear: bias must have shape ({weight.shape[0]},), got {bias.shape}")
    y = matmul(input, weight.t())
    return y if bias is None else y + bias
