"""Torch twins of minidl's models (torchvision does not exist here): same layout, same state_dict keys.

Imports torch; `import minidl` and `import minidl.testing` do not import this module."""
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F


class LeNet5(nn.Module):
    def __init__(self, num_classes=10, in_channels=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1, self.fc2, self.fc3 = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2).flatten(1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class InceptionA(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.branch1x1 = nn.Conv2d(c, 16, 1)
        self.branch5x5_1, self.branch5x5_2 = nn.Conv2d(c, 16, 1), nn.Conv2d(16, 24, 5, padding=2)
        self.branch3x3_1 = nn.Conv2d(c, 16, 1)
        self.branch3x3_2, self.branch3x3_3 = nn.Conv2d(16, 24, 3, padding=1), nn.Conv2d(24, 24, 3, padding=1)
        self.branch_pool = nn.Conv2d(c, 24, 1)

    def forward(self, x):
        return torch.cat([self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)),
                          self.branch3x3_3(self.branch3x3_2(self.branch3x3_1(x))),
                          self.branch_pool(F.avg_pool2d(x, 3, stride=1, padding=1))], 1)


class InceptionNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 10, 5), nn.Conv2d(88, 20, 5)
        self.incep1, self.incep2 = InceptionA(10), InceptionA(20)
        self.fc = nn.Linear(1408, 10)

    def forward(self, x):
        x = self.incep1(F.relu(F.max_pool2d(self.conv1(x), 2)))
        x = self.incep2(F.relu(F.max_pool2d(self.conv2(x), 2)))
        return self.fc(x.flatten(1))


class ResidualBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return F.relu(x + self.conv2(F.relu(self.conv1(x))))


class ResidualNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 16, 5), nn.Conv2d(16, 32, 5)
        self.rblock1, self.rblock2 = ResidualBlock(16), ResidualBlock(32)
        self.fc = nn.Linear(512, 10)

    def forward(self, x):
        x = self.rblock1(F.relu(F.max_pool2d(self.conv1(x), 2)))
        x = self.rblock2(F.relu(F.max_pool2d(self.conv2(x), 2)))
        return self.fc(x.flatten(1))


class BasicBlock(nn.Module):  # torchvision.models.resnet.BasicBlock
    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class ResNet(nn.Module):  # torchvision.models.resnet.ResNet, plus the small-input stem
    def __init__(self, layers, num_classes=1000, in_channels=3, small_input=False):
        super().__init__()
        self.inplanes = 64
        if small_input:
            self.conv1, self.maxpool = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False), nn.Identity()
        else:
            self.conv1, self.maxpool = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False), nn.MaxPool2d(3, 2, 1)
        self.bn1, self.relu = nn.BatchNorm2d(64), nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], 2)
        self.layer3 = self._make_layer(256, layers[2], 2)
        self.layer4 = self._make_layer(512, layers[3], 2)
        self.avgpool, self.fc = nn.AdaptiveAvgPool2d((1, 1)), nn.Linear(512, num_classes)

    def _make_layer(self, planes, blocks, stride=1):
        down = None
        if stride != 1 or self.inplanes != planes:
            down = nn.Sequential(nn.Conv2d(self.inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
        layers = [BasicBlock(self.inplanes, planes, stride, down)]
        self.inplanes = planes
        return nn.Sequential(*layers, *[BasicBlock(planes, planes) for _ in range(1, blocks)])

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class PreActBlock(nn.Module):
    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(inplanes), nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(planes), nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or inplanes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False))

    def forward(self, x):
        out = F.relu(self.bn1(x))
        sc = x if self.shortcut is None else self.shortcut(out)
        return self.conv2(F.relu(self.bn2(self.conv1(out)))) + sc


class PreActResNet18(nn.Module):
    def __init__(self, num_classes=10, in_channels=3):
        super().__init__()
        self.conv1, self.maxpool = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False), nn.Identity()
        inplanes, stages = 64, []
        for i, planes in enumerate((64, 128, 256, 512)):
            stages.append(nn.Sequential(PreActBlock(inplanes, planes, 1 if i == 0 else 2), PreActBlock(planes, planes)))
            inplanes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.bn, self.fc = nn.BatchNorm2d(512), nn.Linear(512, num_classes)

    def forward(self, x):
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.maxpool(self.conv1(x))))))
        return self.fc(F.adaptive_avg_pool2d(F.relu(self.bn(x)), 1).flatten(1))


class _DenseLayer(nn.Module):  # torchvision.models.densenet._DenseLayer
    def __init__(self, n, growth, bn_size):
        super().__init__()
        self.norm1, self.relu1 = nn.BatchNorm2d(n), nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(n, bn_size * growth, 1, bias=False)
        self.norm2, self.relu2 = nn.BatchNorm2d(bn_size * growth), nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False)

    def forward(self, x):
        return torch.cat([x, self.conv2(self.relu2(self.norm2(self.conv1(self.relu1(self.norm1(x))))))], 1)


class DenseNetBC(nn.Module):
    def __init__(self, growth=12, blocks=(4, 4, 4), init=24, num_classes=10, in_channels=1):
        super().__init__()
        self.features = nn.Sequential(OrderedDict([("conv0", nn.Conv2d(in_channels, init, 3, padding=1, bias=False))]))
        n = init
        for i, k in enumerate(blocks):
            self.features.add_module(f"denseblock{i + 1}", nn.Sequential(OrderedDict(
                (f"denselayer{j + 1}", _DenseLayer(n + j * growth, growth, 4)) for j in range(k))))
            n += k * growth
            if i != len(blocks) - 1:
                self.features.add_module(f"transition{i + 1}", nn.Sequential(OrderedDict([
                    ("norm", nn.BatchNorm2d(n)), ("relu", nn.ReLU(inplace=True)),
                    ("conv", nn.Conv2d(n, n // 2, 1, bias=False)), ("pool", nn.AvgPool2d(2, 2))])))
                n //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(n))
        self.classifier = nn.Linear(n, num_classes)

    def forward(self, x):
        return self.classifier(F.adaptive_avg_pool2d(F.relu(self.features(x)), 1).flatten(1))
