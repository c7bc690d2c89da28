"""torchvision's initialisation, shared by the models that copy its layouts."""
from .. import nn


def torchvision_init_(model, linear=True):
    """Convs: kaiming normal (fan_out, ReLU gain), zero bias; BatchNorm2d: weight 1, bias 0; with ``linear``,
    Linear layers: normal(0, 0.01), zero bias (ResNet keeps their default initialisation)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif linear and isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
