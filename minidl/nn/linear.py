"""Linear, and the layers that only move data: Identity, Flatten, ZeroPad2d, ChannelShuffle."""
from .. import functional as F
from ..autograd.creation import empty
from ..backend.errors import RuntimeValueError
from . import init
from .module import Module
from .parameter import Parameter


class Linear(Module):
    """``y = x W^T + b``; weight (out_features, in_features) initialised like torch
    (kaiming_uniform with a = sqrt(5), bias uniform in +-1/sqrt(in_features))."""

    def __init__(self, in_features, out_features, bias=True, device=None, dtype=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(empty(out_features, in_features, dtype=dtype, device=device))
        if bias:
            self.bias = Parameter(empty(out_features, dtype=dtype, device=device))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        init.layer_default_(self.weight, self.bias)

    def forward(self, input):
        return F.linear(input, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Identity(Module):
    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, input):
        return input


class Flatten(Module):
    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, input):
        return F.flatten(input, self.start_dim, self.end_dim)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class ZeroPad2d(Module):
    """Pad the last two dims with zeros: ``padding`` an int or (left, right, top, bottom), as torch."""

    def __init__(self, padding):
        super().__init__()
        p = (padding,) * 4 if isinstance(padding, int) else tuple(padding)
        if len(p) != 4:
            raise RuntimeValueError("ZeroPad2d: padding must be an int or 4 ints (left, right, top, bottom), got "
                                    f"{padding}")
        self.padding = p

    def forward(self, input):
        return F.pad(input, self.padding, mode="constant", value=0.0)

    def extra_repr(self):
        return f"{self.padding}"


class ChannelShuffle(Module):
    """ShuffleNet's channel shuffle over ``groups``."""

    def __init__(self, groups):
        super().__init__()
        self.groups = groups

    def forward(self, input):
        return F.channel_shuffle(input, self.groups)

    def extra_repr(self):
        return f"groups={self.groups}"
