"""VGG (Simonyan and Zisserman 2014) with batch norm, in torchvision's layout and state_dict keys: stacks of
3x3 convs separated by 2x2 max-pools, then three fully connected layers."""
from .. import nn
from ._init import torchvision_init_, torchvision_constructor

CFGS = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def make_layers(cfg, batch_norm=False, in_channels=3):
    """The feature extractor: each number a 3x3 conv (-> BN) -> ReLU with that many channels, each "M" a
    2x2 max-pool."""
    layers = []
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers.append(nn.Conv2d(in_channels, v, kernel_size=3, padding=1))
            layers += [nn.BatchNorm2d(v), nn.ReLU(inplace=True)] if batch_norm else [nn.ReLU(inplace=True)]
            in_channels = v
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """VGG as torchvision builds it.

    ``small_input``: for 32x32 images the final adaptive pool goes to 1x1 instead of 7x7, so that the first
    classifier layer takes 512 inputs rather than 25,088 copies of one pixel (the keys stay torchvision's;
    that layer's weight is then 4096x512)."""

    def __init__(self, features, num_classes=1000, init_weights=True, dropout=0.5, small_input=False):
        super().__init__()
        side = 1 if small_input else 7
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((side, side))
        self.classifier = nn.Sequential(
            nn.Linear(512 * side * side, 4096), nn.ReLU(True), nn.Dropout(p=dropout),
            nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes))
        if init_weights:
            torchvision_init_(self)

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


def _vgg(cfg, batch_norm, num_classes, in_channels, small_input, kwargs):
    return VGG(make_layers(CFGS[cfg], batch_norm, in_channels), num_classes, small_input=small_input, **kwargs)


@torchvision_constructor
def vgg11(num_classes=1000, in_channels=3, small_input=False, **kwargs):
    """VGG-11 (configuration "A"), no batch norm."""
    return _vgg("A", False, num_classes, in_channels, small_input, kwargs)


@torchvision_constructor
def vgg11_bn(num_classes=1000, in_channels=3, small_input=False, **kwargs):
    """VGG-11 with batch norm (torchvision layout and names)."""
    return _vgg("A", True, num_classes, in_channels, small_input, kwargs)


@torchvision_constructor
def vgg16(num_classes=1000, in_channels=3, small_input=False, **kwargs):
    """VGG-16 (configuration "D"), no batch norm."""
    return _vgg("D", False, num_classes, in_channels, small_input, kwargs)


@torchvision_constructor
def vgg16_bn(num_classes=1000, in_channels=3, small_input=False, **kwargs):
    """VGG-16 with batch norm (torchvision layout and names)."""
    return _vgg("D", True, num_classes, in_channels, small_input, kwargs)
