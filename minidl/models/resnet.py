"""Residual networks: the small ResidualNet for MNIST, ResNet-18/34 and the Bottleneck ResNet-50/101/152
(v1, torchvision's layout and parameter names) and the pre-activation ResNet-18 (v2, identity mappings)."""
from .. import functional as F
from .. import nn
from ._init import torchvision_init_, torchvision_constructor


class ResidualBlock(nn.Module):
    """relu(x + conv3x3(relu(conv3x3(x)))), c channels throughout."""

    def __init__(self, channels):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        y = self.conv2(F.relu(self.conv1(x)))
        return F.relu(x + y)


class ResidualNet(nn.Module):
    """conv(1->16, 5) -> max-pool 2 -> ReLU -> ResidualBlock(16) -> conv(16->32, 5) -> max-pool 2 -> ReLU ->
    ResidualBlock(32) -> Linear 512 -> num_classes. Input (N, in_channels, 28, 28)."""

    def __init__(self, num_classes=10, in_channels=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 5)
        self.conv2 = nn.Conv2d(16, 32, 5)
        self.rblock1 = ResidualBlock(16)
        self.rblock2 = ResidualBlock(32)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        x = self.rblock1(F.relu(F.max_pool2d(self.conv1(x), 2)))
        x = self.rblock2(F.relu(F.max_pool2d(self.conv2(x), 2)))
        return self.fc(x.flatten(1))


def conv3x3(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def conv1x1(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


def _stem(in_channels, small_input):
    """The first conv and pooling: 7x7 stride 2 + 3x3 max-pool (ImageNet), or 3x3 stride 1 and no pooling
    (28x28 and 32x32 images; the max-pool becomes an Identity so that the state_dict keys stay the same)."""
    if small_input:
        return nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False), nn.Identity()
    return nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False), nn.MaxPool2d(3, stride=2, padding=1)


class BasicBlock(nn.Module):
    """torchvision's BasicBlock: conv3x3 -> BN -> ReLU -> conv3x3 -> BN, plus the (downsampled) input, ReLU."""
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """torchvision's Bottleneck (ResNet v1.5: the stride sits on the 3x3 conv): conv1x1 -> BN -> ReLU ->
    conv3x3 -> BN -> ReLU -> conv1x1 (4x the planes) -> BN, plus the (downsampled) input, ReLU."""
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        width = planes
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """ResNet v1 with torchvision's layout and state_dict keys.

    Args:
        block, layers: the block class and the number of blocks per stage ([2, 2, 2, 2] for ResNet-18).
        num_classes, in_channels: output classes and input channels.
        small_input: a 3x3 stride-1 stem and no max-pool, for 28x28 and 32x32 images (the state_dict keys
            stay torchvision's; conv1's weight is then 3x3).
    """

    def __init__(self, block, layers, num_classes=1000, in_channels=3, small_input=False, zero_init_residual=False):
        super().__init__()
        self.inplanes = 64
        self.conv1, maxpool = _stem(in_channels, small_input)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = maxpool  # torchvision's child order: conv1, bn1, relu, maxpool
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        torchvision_init_(self, linear=False)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)
                elif isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes * block.expansion, stride),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


@torchvision_constructor
def resnet18(num_classes=1000, in_channels=3, small_input=False, **kwargs):
    """ResNet-18 (torchvision layout and names)."""
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes, in_channels, small_input, **kwargs)


@torchvision_constructor
def resnet34(num_classes=1000, in_channels=3, small_input=False, **kwargs):
    """ResNet-34 (torchvision layout and names)."""
    return ResNet(BasicBlock, [3, 4, 6, 3], num_classes, in_channels, small_input, **kwargs)


@torchvision_constructor
def resnet50(num_classes=1000, in_channels=3, small_input=False, **kwargs):
    """ResNet-50 (Bottleneck blocks; torchvision layout and names)."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, in_channels, small_input, **kwargs)


@torchvision_constructor
def resnet101(num_classes=1000, in_channels=3, small_input=False, **kwargs):
    """ResNet-101 (Bottleneck blocks; torchvision layout and names)."""
    return ResNet(Bottleneck, [3, 4, 23, 3], num_classes, in_channels, small_input, **kwargs)


@torchvision_constructor
def resnet152(num_classes=1000, in_channels=3, small_input=False, **kwargs):
    """ResNet-152 (Bottleneck blocks; torchvision layout and names)."""
    return ResNet(Bottleneck, [3, 8, 36, 3], num_classes, in_channels, small_input, **kwargs)


class PreActBlock(nn.Module):
    """Pre-activation block (ResNet v2): BN -> ReLU -> conv3x3 -> BN -> ReLU -> conv3x3, plus the input
    (through a 1x1 conv shortcut on the pre-activated input when the shape changes)."""
    expansion = 1

    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.shortcut = None
        if stride != 1 or inplanes != planes:
            self.shortcut = nn.Sequential(conv1x1(inplanes, planes, stride))

    def forward(self, x):
        out = F.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet(nn.Module):
    """Pre-activation ResNet (He et al. 2016, "Identity mappings"): stem conv, four stages of PreActBlocks,
    a final BN -> ReLU, global average pooling and a linear classifier. ``small_input`` (default True)
    uses a 3x3 stride-1 stem for 28x28/32x32 images; False uses the 7x7 stride-2 stem and max-pool."""

    def __init__(self, layers=(2, 2, 2, 2), num_classes=10, in_channels=3, small_input=True):
        super().__init__()
        self.conv1, self.maxpool = _stem(in_channels, small_input)
        inplanes, stages = 64, []
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers)):
            blocks = []
            for j in range(n):
                blocks.append(PreActBlock(inplanes, planes, 2 if (i > 0 and j == 0) else 1))
                inplanes = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.bn = nn.BatchNorm2d(512)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        x = self.maxpool(self.conv1(x))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = F.relu(self.bn(x))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def preact_resnet18(num_classes=10, in_channels=3, small_input=True):
    """Pre-activation ResNet-18 (v2)."""
    return PreActResNet((2, 2, 2, 2), num_classes, in_channels, small_input)
