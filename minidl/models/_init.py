"""torchvision's initialisation and constructor arguments, shared by the models that copy its layouts."""
import functools

from .. import nn


def torchvision_constructor(fn):
    """Let ``fn`` (a model constructor named as torchvision's) take torchvision's arguments: ``weights=None``,
    ``progress`` and the older ``pretrained=False``. minidl bundles no pretrained weights and downloads nothing, so
    asking for them raises, naming the way in: build the model, then ``load_state_dict`` with torchvision's
    weights (the keys are torchvision's)."""
    @functools.wraps(fn)
    def make(*args, weights=None, progress=True, pretrained=False, **kwargs):
        if weights is not None or pretrained:
            raise ValueError(f"{fn.__name__}: pretrained weights are not bundled with minidl (it downloads nothing); "
                             f"build {fn.__name__}(weights=None, ...) and load torchvision's weights into it with "
                             f"model.load_state_dict(...) (the keys are torchvision's)")
        return fn(*args, **kwargs)
    return make


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
