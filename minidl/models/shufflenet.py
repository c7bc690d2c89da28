"""ShuffleNetV2 (Ma et al. 2018) with torchvision's layout and state_dict keys: each unit splits the channels
in two, convolves one half (1x1 -> 3x3 depthwise -> 1x1), concatenates and shuffles the channels so that
information crosses between the halves."""
from .. import functional as F
from .. import nn
from ._init import torchvision_constructor


def _depthwise_conv(i, o, kernel_size, stride=1, padding=0):
    return nn.Conv2d(i, o, kernel_size, stride, padding, bias=False, groups=i)


class InvertedResidual(nn.Module):
    def __init__(self, inp, oup, stride):
        super().__init__()
        if not 1 <= stride <= 3:
            raise ValueError(f"ShuffleNetV2 InvertedResidual: stride should be 1, 2 or 3, got {stride}")
        self.stride = stride
        branch_features = oup // 2
        if stride == 1 and inp != branch_features * 2:
            raise ValueError(f"ShuffleNetV2 InvertedResidual: at stride 1 inp should equal oup (an even number), "
                             f"got inp={inp}, oup={oup}")
        if stride > 1:
            self.branch1 = nn.Sequential(
                _depthwise_conv(inp, inp, 3, stride, 1), nn.BatchNorm2d(inp),
                nn.Conv2d(inp, branch_features, 1, 1, 0, bias=False), nn.BatchNorm2d(branch_features),
                nn.ReLU(inplace=True))
        else:
            self.branch1 = nn.Sequential()
        self.branch2 = nn.Sequential(
            nn.Conv2d(inp if stride > 1 else branch_features, branch_features, 1, 1, 0, bias=False),
            nn.BatchNorm2d(branch_features), nn.ReLU(inplace=True),
            _depthwise_conv(branch_features, branch_features, 3, stride, 1), nn.BatchNorm2d(branch_features),
            nn.Conv2d(branch_features, branch_features, 1, 1, 0, bias=False), nn.BatchNorm2d(branch_features),
            nn.ReLU(inplace=True))

    def forward(self, x):
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = F.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = F.cat((self.branch1(x), self.branch2(x)), dim=1)
        return F.channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    """ShuffleNetV2 as torchvision builds it (default initialisation, as torchvision leaves it).

    ``small_input``: for 28x28 and 32x32 images the first conv has stride 1 and there is no max-pool (an
    Identity, so the keys stay torchvision's); the last feature map is then 4x4 for 32x32."""

    def __init__(self, stages_repeats, stages_out_channels, num_classes=1000, in_channels=3, small_input=False):
        super().__init__()
        if len(stages_repeats) != 3:
            raise ValueError(f"ShuffleNetV2: stages_repeats should have 3 entries, got {stages_repeats}")
        if len(stages_out_channels) != 5:
            raise ValueError(f"ShuffleNetV2: stages_out_channels should have 5 entries, got {stages_out_channels}")
        self._stage_out_channels = list(stages_out_channels)
        output_channels = stages_out_channels[0]
        self.conv1 = nn.Sequential(
            nn.Conv2d(in_channels, output_channels, 3, 1 if small_input else 2, 1, bias=False),
            nn.BatchNorm2d(output_channels), nn.ReLU(inplace=True))
        input_channels = output_channels
        self.maxpool = nn.Identity() if small_input else nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        for name, repeats, output_channels in zip(("stage2", "stage3", "stage4"), stages_repeats,
                                                  stages_out_channels[1:]):
            seq = [InvertedResidual(input_channels, output_channels, 2)]
            seq += [InvertedResidual(output_channels, output_channels, 1) for _ in range(repeats - 1)]
            setattr(self, name, nn.Sequential(*seq))
            input_channels = output_channels
        output_channels = stages_out_channels[-1]
        self.conv5 = nn.Sequential(nn.Conv2d(input_channels, output_channels, 1, 1, 0, bias=False),
                                   nn.BatchNorm2d(output_channels), nn.ReLU(inplace=True))
        self.fc = nn.Linear(output_channels, num_classes)

    def forward(self, x):
        x = self.maxpool(self.conv1(x))
        x = self.conv5(self.stage4(self.stage3(self.stage2(x))))
        return self.fc(x.mean([2, 3]))  # global average pooling


@torchvision_constructor
def shufflenet_v2_x0_5(num_classes=1000, in_channels=3, small_input=False):
    """ShuffleNetV2 0.5x (torchvision layout and names)."""
    return ShuffleNetV2([4, 8, 4], [24, 48, 96, 192, 1024], num_classes, in_channels, small_input)


@torchvision_constructor
def shufflenet_v2_x1_0(num_classes=1000, in_channels=3, small_input=False):
    """ShuffleNetV2 1.0x (torchvision layout and names)."""
    return ShuffleNetV2([4, 8, 4], [24, 116, 232, 464, 1024], num_classes, in_channels, small_input)
