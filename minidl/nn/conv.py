"""Conv1d, Conv2d and ConvTranspose2d: parameters plus a call into functional; Unfold and Fold."""
from .. import functional as F
from ..autograd.creation import empty
from ..backend.errors import RuntimeValueError
from ..functional._checks import pair, int_arg
from . import init
from .module import Module
from .parameter import Parameter

_PAD_MODES = {"zeros": None, "reflect": "reflect", "replicate": "replicate", "circular": "circular"}


def _checked_channels(op, in_channels, out_channels, groups):
    """The layer's channel counts and groups, checked as torch checks them; returns groups."""
    groups = int_arg(groups, op, "groups", 1)
    int_arg(in_channels, op, "in_channels", 1)
    int_arg(out_channels, op, "out_channels", 1)
    if in_channels % groups or out_channels % groups:
        raise RuntimeValueError(f"{op}: in_channels ({in_channels}) and out_channels ({out_channels}) must be "
                                f"divisible by groups ({groups})")
    return groups


def _conv_parameters(module, weight_shape, out_channels, bias, dtype, device):
    """weight and (or None) bias, then the module's reset_parameters (as torch: a subclass may override it)."""
    module.weight = Parameter(empty(*weight_shape, dtype=dtype, device=device))
    module.register_parameter("bias", Parameter(empty(out_channels, dtype=dtype, device=device)) if bias else None)
    module.reset_parameters()


class _ConvNd(Module):
    def __init__(self, op, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                 padding_mode, transposed, device, dtype):
        super().__init__()
        groups = _checked_channels(op, in_channels, out_channels, groups)
        if padding_mode not in _PAD_MODES:
            raise RuntimeValueError(f"{op}: padding_mode must be one of {sorted(_PAD_MODES)}, got {padding_mode!r}")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = pair(kernel_size, op, "kernel_size", 1)
        self.stride = pair(stride, op, "stride", 1)
        self.padding = padding if isinstance(padding, str) else pair(padding, op, "padding", 0)
        self.dilation = pair(dilation, op, "dilation", 1)
        self.padding_mode = padding_mode
        shape = ((in_channels, out_channels // groups) if transposed else (out_channels, in_channels // groups))
        _conv_parameters(self, (*shape, *self.kernel_size), out_channels, bias, dtype, device)

    def reset_parameters(self):
        init.layer_default_(self.weight, self.bias)  # fan_in from weight.shape[1:], as torch

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding not in ((0, 0), "valid"):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if getattr(self, "output_padding", (0, 0)) != (0, 0):
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s


class Conv2d(_ConvNd):
    """2-D convolution layer, as torch.nn.Conv2d (weight (out, in / groups, kH, kW))."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True,
                 padding_mode="zeros", device=None, dtype=None):
        super().__init__("Conv2d", in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, False, device, dtype)

    def forward(self, input):
        if self.padding_mode == "zeros" or isinstance(self.padding, str):
            return F.conv2d(input, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        ph, pw = self.padding
        input = F.pad(input, (pw, pw, ph, ph), mode=_PAD_MODES[self.padding_mode])
        return F.conv2d(input, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class ConvTranspose2d(_ConvNd):
    """Transposed 2-D convolution layer, as torch.nn.ConvTranspose2d (weight (in, out / groups, kH, kW))."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0, groups=1,
                 bias=True, dilation=1, padding_mode="zeros", device=None, dtype=None):
        if padding_mode != "zeros":
            raise RuntimeValueError(f"ConvTranspose2d: only padding_mode='zeros' is supported, got {padding_mode!r}")
        super().__init__("ConvTranspose2d", in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                         bias, padding_mode, True, device, dtype)
        self.output_padding = pair(output_padding, "ConvTranspose2d", "output_padding", 0)

    def forward(self, input):
        return F.conv_transpose2d(input, self.weight, self.bias, self.stride, self.padding, self.output_padding,
                                  self.groups, self.dilation)


class Conv1d(Module):
    """1-D convolution layer, as torch.nn.Conv1d (weight (out, in / groups, K)); computed as conv2d over a height
    of 1."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True,
                 padding_mode="zeros", device=None, dtype=None):
        super().__init__()
        op = "Conv1d"
        groups = _checked_channels(op, in_channels, out_channels, groups)
        if padding_mode != "zeros":
            raise RuntimeValueError(f"{op}: only padding_mode='zeros' is supported, got {padding_mode!r}")

        def one(v, name, lo):  # an int or a 1-tuple, kept as a 1-tuple (as torch's attributes)
            return (int_arg(v[0] if isinstance(v, (tuple, list)) else v, op, name, lo),)
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size, self.stride = one(kernel_size, "kernel_size", 1), one(stride, "stride", 1)
        self.padding = padding if isinstance(padding, str) else one(padding, "padding", 0)
        self.dilation, self.padding_mode = one(dilation, "dilation", 1), padding_mode
        _conv_parameters(self, (out_channels, in_channels // groups, *self.kernel_size), out_channels, bias, dtype,
                         device)

    def reset_parameters(self):
        init.layer_default_(self.weight, self.bias)  # fan_in from weight.shape[1:], as torch

    def forward(self, input):
        padding = self.padding if isinstance(self.padding, str) else self.padding[0]
        return F.conv1d(input, self.weight, self.bias, self.stride[0], padding, self.dilation[0], self.groups)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}" + ("" if self.bias is not None else ", bias=False"))


class Unfold(Module):
    """Sliding blocks as columns (im2col), see F.unfold."""

    def __init__(self, kernel_size, dilation=1, padding=0, stride=1):
        super().__init__()
        self.kernel_size, self.dilation, self.padding, self.stride = kernel_size, dilation, padding, stride

    def forward(self, input):
        return F.unfold(input, self.kernel_size, self.dilation, self.padding, self.stride)

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, dilation={self.dilation}, padding={self.padding}, "
                f"stride={self.stride}")


class Fold(Unfold):
    """Columns summed back into an image (col2im), see F.fold."""

    def __init__(self, output_size, kernel_size, dilation=1, padding=0, stride=1):
        super().__init__(kernel_size, dilation, padding, stride)
        self.output_size = output_size

    def forward(self, input):
        return F.fold(input, self.output_size, self.kernel_size, self.dilation, self.padding, self.stride)

    def extra_repr(self):
        return f"output_size={self.output_size}, " + super().extra_repr()
