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


class Bottleneck(nn.Module):  # torchvision.models.resnet.Bottleneck
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class ResNet(nn.Module):  # torchvision.models.resnet.ResNet, plus the small-input stem
    def __init__(self, layers, num_classes=1000, in_channels=3, small_input=False, block=None):
        super().__init__()
        self.inplanes = 64
        if small_input:
            self.conv1, self.maxpool = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False), nn.Identity()
        else:
            self.conv1, self.maxpool = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False), nn.MaxPool2d(3, 2, 1)
        self.bn1, self.relu = nn.BatchNorm2d(64), nn.ReLU(inplace=True)
        self.block = block or BasicBlock
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], 2)
        self.layer3 = self._make_layer(256, layers[2], 2)
        self.layer4 = self._make_layer(512, layers[3], 2)
        e = getattr(self.block, "expansion", 1)
        self.avgpool, self.fc = nn.AdaptiveAvgPool2d((1, 1)), nn.Linear(512 * e, num_classes)

    def _make_layer(self, planes, blocks, stride=1):
        down, e = None, getattr(self.block, "expansion", 1)
        if stride != 1 or self.inplanes != planes * e:
            down = nn.Sequential(nn.Conv2d(self.inplanes, planes * e, 1, stride, bias=False),
                                 nn.BatchNorm2d(planes * e))
        layers = [self.block(self.inplanes, planes, stride, down)]
        self.inplanes = planes * e
        return nn.Sequential(*layers, *[self.block(self.inplanes, planes) for _ in range(1, blocks)])

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


def _cbr(cin, cout, k=3, stride=1, groups=1):  # torchvision.ops.Conv2dNormActivation with ReLU6
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))


class MobileInvertedResidual(nn.Module):  # torchvision.models.mobilenetv2.InvertedResidual
    def __init__(self, inp, oup, stride, t):
        super().__init__()
        hidden = int(round(inp * t))
        self.use_res_connect = stride == 1 and inp == oup
        layers = [_cbr(inp, hidden, 1)] if t != 1 else []
        layers += [_cbr(hidden, hidden, 3, stride, hidden), nn.Conv2d(hidden, oup, 1, bias=False),
                   nn.BatchNorm2d(oup)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):  # torchvision.models.MobileNetV2 at width 1, plus the small-input strides
    def __init__(self, num_classes=1000, in_channels=3, small_input=False, dropout=0.2):
        super().__init__()
        setting = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2],
                   [6, 320, 1, 1]]
        if small_input:
            setting[1][3] = 1
        features, cin = [_cbr(in_channels, 32, 3, 1 if small_input else 2)], 32
        for t, c, n, s in setting:
            for i in range(n):
                features.append(MobileInvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        features.append(_cbr(cin, 1280, 1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(1280, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(self.features(x), (1, 1)), 1))


class ShuffleUnit(nn.Module):  # torchvision.models.shufflenetv2.InvertedResidual
    def __init__(self, inp, oup, stride):
        super().__init__()
        self.stride, bf = stride, oup // 2
        if stride > 1:
            self.branch1 = nn.Sequential(nn.Conv2d(inp, inp, 3, stride, 1, bias=False, groups=inp),
                                         nn.BatchNorm2d(inp), nn.Conv2d(inp, bf, 1, bias=False),
                                         nn.BatchNorm2d(bf), nn.ReLU(inplace=True))
        else:
            self.branch1 = nn.Sequential()
        self.branch2 = nn.Sequential(
            nn.Conv2d(inp if stride > 1 else bf, bf, 1, bias=False), nn.BatchNorm2d(bf), nn.ReLU(inplace=True),
            nn.Conv2d(bf, bf, 3, stride, 1, bias=False, groups=bf), nn.BatchNorm2d(bf),
            nn.Conv2d(bf, bf, 1, bias=False), nn.BatchNorm2d(bf), nn.ReLU(inplace=True))

    def forward(self, x):
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        n, c, h, w = out.shape  # torchvision's channel_shuffle, by hand
        return out.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, c, h, w)


class ShuffleNetV2(nn.Module):  # torchvision.models.ShuffleNetV2, plus the small-input stem
    def __init__(self, out_channels, num_classes=1000, in_channels=3, small_input=False):
        super().__init__()
        c0 = out_channels[0]
        self.conv1 = nn.Sequential(nn.Conv2d(in_channels, c0, 3, 1 if small_input else 2, 1, bias=False),
                                   nn.BatchNorm2d(c0), nn.ReLU(inplace=True))
        self.maxpool = nn.Identity() if small_input else nn.MaxPool2d(3, 2, 1)
        cin = c0
        for name, repeats, cout in zip(("stage2", "stage3", "stage4"), (4, 8, 4), out_channels[1:]):
            setattr(self, name, nn.Sequential(ShuffleUnit(cin, cout, 2),
                                              *[ShuffleUnit(cout, cout, 1) for _ in range(repeats - 1)]))
            cin = cout
        self.conv5 = nn.Sequential(nn.Conv2d(cin, out_channels[-1], 1, bias=False),
                                   nn.BatchNorm2d(out_channels[-1]), nn.ReLU(inplace=True))
        self.fc = nn.Linear(out_channels[-1], num_classes)

    def forward(self, x):
        x = self.conv5(self.stage4(self.stage3(self.stage2(self.maxpool(self.conv1(x))))))
        return self.fc(x.mean([2, 3]))


class GoogLeNetConv(nn.Module):  # torchvision.models.googlenet.BasicConv2d
    def __init__(self, cin, cout, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class GoogLeNetInception(nn.Module):  # torchvision.models.googlenet.Inception
    def __init__(self, cin, c1, c3r, c3, c5r, c5, pp):
        super().__init__()
        self.branch1 = GoogLeNetConv(cin, c1, kernel_size=1)
        self.branch2 = nn.Sequential(GoogLeNetConv(cin, c3r, kernel_size=1),
                                     GoogLeNetConv(c3r, c3, kernel_size=3, padding=1))
        self.branch3 = nn.Sequential(GoogLeNetConv(cin, c5r, kernel_size=1),
                                     GoogLeNetConv(c5r, c5, kernel_size=3, padding=1))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True), GoogLeNetConv(cin, pp, kernel_size=1))

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class GoogLeNetAux(nn.Module):  # torchvision.models.googlenet.InceptionAux
    def __init__(self, cin, num_classes, dropout=0.7):
        super().__init__()
        self.conv = GoogLeNetConv(cin, 128, kernel_size=1)
        self.fc1, self.fc2, self.dropout = nn.Linear(2048, 1024), nn.Linear(1024, num_classes), nn.Dropout(dropout)

    def forward(self, x):
        x = torch.flatten(self.conv(F.adaptive_avg_pool2d(x, (4, 4))), 1)
        return self.fc2(self.dropout(F.relu(self.fc1(x))))


class GoogLeNet(nn.Module):  # torchvision.models.GoogLeNet (eager outputs), plus the small-input stem
    def __init__(self, num_classes=1000, aux_logits=True, in_channels=3, small_input=False, dropout=0.2,
                 dropout_aux=0.7):
        super().__init__()
        self.aux_logits = aux_logits
        if small_input:
            self.conv1, self.maxpool1 = GoogLeNetConv(in_channels, 64, kernel_size=3, padding=1), nn.Identity()
        else:
            self.conv1 = GoogLeNetConv(in_channels, 64, kernel_size=7, stride=2, padding=3)
            self.maxpool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = GoogLeNetConv(64, 64, kernel_size=1)
        self.conv3 = GoogLeNetConv(64, 192, kernel_size=3, padding=1)
        self.maxpool2 = nn.Identity() if small_input else nn.MaxPool2d(3, 2, ceil_mode=True)
        self.inception3a = GoogLeNetInception(192, 64, 96, 128, 16, 32, 32)
        self.inception3b = GoogLeNetInception(256, 128, 128, 192, 32, 96, 64)
        self.maxpool3 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.inception4a = GoogLeNetInception(480, 192, 96, 208, 16, 48, 64)
        self.inception4b = GoogLeNetInception(512, 160, 112, 224, 24, 64, 64)
        self.inception4c = GoogLeNetInception(512, 128, 128, 256, 24, 64, 64)
        self.inception4d = GoogLeNetInception(512, 112, 144, 288, 32, 64, 64)
        self.inception4e = GoogLeNetInception(528, 256, 160, 320, 32, 128, 128)
        self.maxpool4 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.inception5a = GoogLeNetInception(832, 256, 160, 320, 32, 128, 128)
        self.inception5b = GoogLeNetInception(832, 384, 192, 384, 48, 128, 128)
        if aux_logits:
            self.aux1 = GoogLeNetAux(512, num_classes, dropout_aux)
            self.aux2 = GoogLeNetAux(528, num_classes, dropout_aux)
        else:
            self.aux1 = self.aux2 = None
        self.avgpool, self.dropout = nn.AdaptiveAvgPool2d((1, 1)), nn.Dropout(dropout)
        self.fc = nn.Linear(1024, num_classes)

    def forward(self, x):
        x = self.maxpool2(self.conv3(self.conv2(self.maxpool1(self.conv1(x)))))
        x = self.inception4a(self.maxpool3(self.inception3b(self.inception3a(x))))
        aux1 = self.aux1(x) if self.aux1 is not None and self.training else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        aux2 = self.aux2(x) if self.aux2 is not None and self.training else None
        x = self.inception5b(self.inception5a(self.maxpool4(self.inception4e(x))))
        x = self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))
        # torchvision returns GoogLeNetOutputs(x, aux2, aux1) with _forward's outputs swapped on the way:
        # positionally (logits, aux1's output, aux2's output)
        return (x, aux1, aux2) if self.training and self.aux_logits else x


def vgg_features(cfg, in_channels=3):  # torchvision.models.vgg.make_layers(cfg, batch_norm=True)
    layers = []
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(in_channels, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
            in_channels = v
    return nn.Sequential(*layers)


class VGG(nn.Module):  # torchvision.models.VGG, plus the small-input 1x1 pool
    def __init__(self, cfg, num_classes=1000, in_channels=3, small_input=False, dropout=0.5):
        super().__init__()
        side = 1 if small_input else 7
        self.features = vgg_features(cfg, in_channels)
        self.avgpool = nn.AdaptiveAvgPool2d((side, side))
        self.classifier = nn.Sequential(nn.Linear(512 * side * side, 4096), nn.ReLU(True), nn.Dropout(dropout),
                                        nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(dropout),
                                        nn.Linear(4096, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))
