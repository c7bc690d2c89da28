"""MobileNetV2 (Sandler et al. 2018) with torchvision's layout and state_dict keys: inverted residual
blocks (1x1 expand -> 3x3 depthwise -> 1x1 linear projection), ReLU6, a skip where shapes allow."""
from .. import functional as F
from .. import nn
from ._init import torchvision_init_, torchvision_constructor


def _make_divisible(v, divisor, min_value=None):
    """Round a channel count to a multiple of ``divisor`` without going more than 10% below it (torchvision's
    rule, from the TensorFlow reference)."""
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


class Conv2dNormActivation(nn.Sequential):
    """torchvision.ops.Conv2dNormActivation: conv (padding keeps the size at stride 1, no bias) -> BN ->
    activation, as a Sequential so that the keys are ``0.weight``, ``1.running_mean``..."""

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, groups=1, activation_layer=nn.ReLU6):
        super().__init__(nn.Conv2d(in_channels, out_channels, kernel_size, stride, (kernel_size - 1) // 2,
                                   groups=groups, bias=False),
                         nn.BatchNorm2d(out_channels), activation_layer(inplace=True))
        self.out_channels = out_channels


class InvertedResidual(nn.Module):
    def __init__(self, inp, oup, stride, expand_ratio):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"InvertedResidual: stride should be 1 or 2, got {stride}")
        hidden_dim = int(round(inp * expand_ratio))
        self.stride = stride
        self.use_res_connect = stride == 1 and inp == oup
        layers = [Conv2dNormActivation(inp, hidden_dim, kernel_size=1)] if expand_ratio != 1 else []
        layers += [Conv2dNormActivation(hidden_dim, hidden_dim, stride=stride, groups=hidden_dim),
                   nn.Conv2d(hidden_dim, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup)]
        self.conv = nn.Sequential(*layers)
        self.out_channels = oup

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 as torchvision builds it.

    Args:
        num_classes, in_channels: output classes and input channels.
        width_mult: scales every layer's channels (rounded to multiples of ``round_nearest``).
        dropout: the classifier's dropout probability (torchvision: 0.2).
        small_input: for 28x28 and 32x32 images the first conv and the first stride-2 block keep stride 1,
            so that the last feature map is 4x4 (7x7 for 224) rather than 1x1; the keys stay torchvision's.
    """

    def __init__(self, num_classes=1000, width_mult=1.0, inverted_residual_setting=None, round_nearest=8,
                 dropout=0.2, in_channels=3, small_input=False):
        super().__init__()
        setting = inverted_residual_setting or [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2],
                                                [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1]]
        if any(len(row) != 4 for row in setting):
            raise ValueError(f"MobileNetV2: inverted_residual_setting should be a list of 4-element lists "
                             f"(t, c, n, s), got {setting}")
        input_channel = _make_divisible(32 * width_mult, round_nearest)
        self.last_channel = _make_divisible(1280 * max(1.0, width_mult), round_nearest)
        features = [Conv2dNormActivation(in_channels, input_channel, stride=1 if small_input else 2)]
        first_stride2 = True
        for t, c, n, s in setting:
            output_channel = _make_divisible(c * width_mult, round_nearest)
            for i in range(n):
                stride = s if i == 0 else 1
                if stride == 2 and small_input and first_stride2:
                    stride, first_stride2 = 1, False
                features.append(InvertedResidual(input_channel, output_channel, stride, t))
                input_channel = output_channel
        features.append(Conv2dNormActivation(input_channel, self.last_channel, kernel_size=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(self.last_channel, num_classes))
        torchvision_init_(self)  # (torchvision's leaky_relu default with a=0 is the same ReLU gain)

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(x.flatten(1))


@torchvision_constructor
def mobilenet_v2(num_classes=1000, in_channels=3, small_input=False, **kwargs):
    """MobileNetV2 (torchvision layout and names); ``kwargs``: width_mult, dropout, round_nearest..."""
    return MobileNetV2(num_classes=num_classes, in_channels=in_channels, small_input=small_input, **kwargs)
