"""Every seed model against its torch twin: same weights through state_dict, same logits, same gradient
for every parameter, same running statistics, in train and eval mode, float64 (tight) and float32."""
import numpy as np
import pytest
import torch

import minidl
from minidl import models
from minidl.models import vgg

from minidl.testing import torch_twins as twins

import suite

MODELS = [
    ("lenet5", models.LeNet5, twins.LeNet5, (3, 1, 28, 28)),
    ("inception", models.InceptionNet, twins.InceptionNet, (2, 1, 28, 28)),
    ("residualnet", models.ResidualNet, twins.ResidualNet, (2, 1, 28, 28)),
    ("resnet18_small", lambda: models.resnet18(num_classes=10, small_input=True),
     lambda: twins.ResNet([2, 2, 2, 2], 10, 3, True), (2, 3, 32, 32)),
    ("resnet18", lambda: models.resnet18(num_classes=7, in_channels=1), lambda: twins.ResNet([2, 2, 2, 2], 7, 1),
     (2, 1, 64, 48)),
    ("preact_resnet18", models.preact_resnet18, twins.PreActResNet18, (2, 3, 32, 32)),
    ("densenet_bc", models.densenet_bc, twins.DenseNetBC, (3, 1, 28, 28)),
    # torchvision's models (dropout 0 so that train mode is deterministic; dropout has its own tests)
    ("mobilenet_v2_small", lambda: models.mobilenet_v2(num_classes=10, small_input=True, dropout=0.0),
     lambda: twins.MobileNetV2(10, 3, True, 0.0), (2, 3, 32, 32)),
    ("mobilenet_v2", lambda: models.mobilenet_v2(num_classes=6, in_channels=1, dropout=0.0),
     lambda: twins.MobileNetV2(6, 1, False, 0.0), (2, 1, 64, 64)),
    ("shufflenet_v2_x0_5", lambda: models.shufflenet_v2_x0_5(num_classes=10),
     lambda: twins.ShuffleNetV2([24, 48, 96, 192, 1024], 10), (2, 3, 64, 64)),
    ("shufflenet_v2_x1_0_small", lambda: models.shufflenet_v2_x1_0(num_classes=10, small_input=True),
     lambda: twins.ShuffleNetV2([24, 116, 232, 464, 1024], 10, 3, True), (2, 3, 32, 32)),
    ("googlenet", lambda: models.googlenet(num_classes=10, dropout=0.0, dropout_aux=0.0),
     lambda: twins.GoogLeNet(10, dropout=0.0, dropout_aux=0.0), (2, 3, 64, 64)),
    ("googlenet_small", lambda: models.googlenet(num_classes=10, in_channels=1, small_input=True, dropout=0.0,
                                                 dropout_aux=0.0),
     lambda: twins.GoogLeNet(10, True, 1, True, 0.0, 0.0), (1, 1, 28, 28)),
    ("vgg11_bn_small", lambda: models.vgg11_bn(num_classes=10, small_input=True, dropout=0.0),
     lambda: twins.VGG(vgg.CFGS["A"], 10, 3, True, 0.0), (2, 3, 32, 32)),
    ("vgg16_bn_small", lambda: models.vgg16_bn(num_classes=10, small_input=True, dropout=0.0),
     lambda: twins.VGG(vgg.CFGS["D"], 10, 3, True, 0.0), (2, 3, 32, 32)),
    ("resnet50", lambda: models.resnet50(num_classes=5), lambda: twins.ResNet([3, 4, 6, 3], 5, block=twins.Bottleneck),
     (2, 3, 64, 64)),
]
SLOW = {"resnet18_small", "resnet18", "preact_resnet18", "mobilenet_v2_small", "mobilenet_v2", "shufflenet_v2_x0_5",
        "shufflenet_v2_x1_0_small", "googlenet", "googlenet_small", "vgg11_bn_small", "vgg16_bn_small", "resnet50"}
# Deep nets have ~10^5-10^6 ReLU inputs, so some always lie within float32 rounding (~1e-6) of 0: one
# flipped unit moves float32 gradients by percents in any engine (measured: resnet18 conv1.weight
# gradient, minidl float32 vs float64 off by 0.06 from one unit at 8e-7 that rounded to -5e-6). Their
# gradients are compared in float64 (tight); in float32 their logits and running statistics are.
FLOAT32_GRADS = {"lenet5", "inception", "residualnet"}
# ResNet-50 in training mode normalises layer4 over 8 values per channel (batch 2, 2x2 maps): float32 rounding
# is amplified there, in torch as much as in minidl (measured: logits off the float64 result by 6.7e-5 in torch
# float32, 1.0e-4 in minidl float32, so 1.3e-4 apart). Its float32 run is in eval mode; float64 covers training.
FLOAT32_EVAL = {"resnet50"}


def _input_away_from_kinks(model, shape, rng, margin=1e-4):
    """An input whose ReLU pre-activations all lie at least ``margin`` from 0 (measured in float64).

    float32 rounding (~1e-6 after a few layers) flips a ReLU whose input lies closer to 0 than that, and
    one flipped unit changes a deep net's gradients by percents, in torch as much as in minidl: near a
    kink two correct float32 engines disagree. The comparison is only meaningful away from kinks."""
    from minidl.functional.activation import ReLUFunction
    original = ReLUFunction.forward
    seen = []

    def recording(self, xp, x):
        seen.append(float(np.abs(x).min()))
        return original(self, xp, x)
    state = model.state_dict()
    for _ in range(50):
        x = rng.uniform(-2, 2, size=shape)
        seen.clear()
        ReLUFunction.forward = recording
        try:
            model.load_state_dict(state)
            with minidl.no_grad():
                model.double()(minidl.tensor(x))
        finally:
            ReLUFunction.forward = original
            model.float()
            model.load_state_dict(state)
        if min(seen) > margin:
            return x
    raise AssertionError("no input found whose ReLU inputs stay away from 0")


def _torch_state(m):
    return {k: torch.tensor(v.numpy()) for k, v in m.state_dict().items()}


def _twin_runs():
    """Every model in float64 training mode (values, every gradient, running statistics); the quick ones in eval
    mode and float32 too. The exhaustive run adds eval mode and float32 training for the large ones (float32
    eval of a large model adds nothing that its float64 eval and float32 training runs do not check)."""
    runs = []
    for m in MODELS:
        for dtype, train in ((np.float64, True), (np.float64, False), (np.float32, True), (np.float32, False)):
            if m[0] in FLOAT32_EVAL and dtype == np.float32:
                if train:
                    continue  # float32 rounding amplified by batch norm over 8 values (see FLOAT32_EVAL)
            elif m[0] in SLOW and dtype == np.float32 and not train:
                continue
            quick = m[0] not in SLOW or (dtype == np.float64 and train)
            runs.append(pytest.param(*m, train, dtype, marks=() if quick else suite.exhaustive,
                                     id=f"{m[0]}-{'train' if train else 'eval'}-{np.dtype(dtype).name}"))
    return runs


@pytest.mark.parametrize("name, make, make_twin, shape, train, dtype", _twin_runs())
def test_model_matches_its_torch_twin(name, make, make_twin, shape, train, dtype):
    minidl.manual_seed(0)
    m, t = make(), make_twin()
    assert list(m.state_dict()) == list(t.state_dict()), "state_dict keys differ from the torch twin's"
    t.load_state_dict(_torch_state(m))
    m.to(dtype)
    t.to(getattr(torch, np.dtype(dtype).name))
    m.train(train)
    t.train(train)
    rng = np.random.default_rng(1)
    x = rng.uniform(-2, 2, size=shape)
    grads = dtype == np.float64 or name in FLOAT32_GRADS
    if dtype == np.float32 and grads:
        x = _input_away_from_kinks(m, shape, rng)
    x = x.astype(dtype)
    ym, yt = m(minidl.tensor(x)), t(torch.tensor(x))
    ym, yt = (ym, yt) if isinstance(yt, tuple) else ((ym,), (yt,))  # GoogLeNet's auxiliary outputs in training
    assert isinstance(ym, tuple) and len(ym) == len(yt)
    rtol, atol = (1e-9, 1e-10) if dtype == np.float64 else (1e-4, 1e-5)
    for a, b in zip(ym, yt):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=rtol, atol=atol * 10)
    gs = [rng.uniform(-1, 1, size=a.shape).astype(dtype) for a in ym]
    sum((a * minidl.tensor(g)).sum() for a, g in zip(ym, gs)).backward()
    sum((b * torch.tensor(g)).sum() for b, g in zip(yt, gs)).backward()
    t_params = dict(t.named_parameters())
    for k, p in (m.named_parameters() if grads else ()):
        if t_params[k].grad is None:  # unused in this mode (GoogLeNet's auxiliary classifiers in eval)
            assert p.grad is None, f"{k} has a gradient where torch has none"
            continue
        scale = max(1.0, float(np.abs(t_params[k].grad.numpy()).max()))
        np.testing.assert_allclose(p.grad.numpy(), t_params[k].grad.numpy(), rtol=rtol, atol=atol * scale,
                                   err_msg=f"gradient of {k}")
    t_state = t.state_dict()
    for k, b in m.named_buffers():
        np.testing.assert_allclose(b.numpy(), t_state[k].numpy(), rtol=rtol, atol=atol, err_msg=f"buffer {k}")


def test_resnet18_keys_are_torchvisions():
    keys = list(models.resnet18().state_dict())
    for k in ["conv1.weight", "bn1.running_var", "bn1.num_batches_tracked", "layer1.0.conv1.weight",
              "layer2.0.downsample.0.weight", "layer2.0.downsample.1.running_mean", "layer4.1.bn2.bias",
              "fc.weight", "fc.bias"]:
        assert k in keys
    assert len(keys) == 122  # torchvision's resnet18 state_dict has 122 entries
    assert sum(p.numel() for p in models.resnet18().parameters()) == 11_689_512
    assert sum(p.numel() for p in models.resnet34().parameters()) == 21_797_672


def test_torch_weights_load_into_minidl():
    minidl.manual_seed(0)
    torch.manual_seed(0)
    t, m = twins.LeNet5(), models.LeNet5()
    m.load_state_dict(t.state_dict())  # torch tensors straight in
    x = np.random.default_rng(0).normal(size=(2, 1, 28, 28)).astype(np.float32)
    np.testing.assert_allclose(m(minidl.tensor(x)).detach().numpy(), t(torch.tensor(x)).detach().numpy(),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("make, n_params, n_keys, keys", [
    (models.mobilenet_v2, 3_504_872, 314, ["features.0.0.weight", "features.1.conv.0.0.weight",
                                           "features.2.conv.1.1.running_var", "features.18.1.bias",
                                           "classifier.1.weight"]),
    (models.shufflenet_v2_x0_5, 1_366_792, 338, ["conv1.0.weight", "stage2.0.branch1.0.weight",
                                                 "stage3.1.branch2.6.running_mean", "conv5.1.bias", "fc.weight"]),
    (models.shufflenet_v2_x1_0, 2_278_604, 338, ["stage4.3.branch2.4.running_var"]),
    (lambda: models.googlenet(aux_logits=False), 6_624_904, 344, ["conv1.conv.weight", "inception3a.branch4.1.bn.bias",
                                                                  "inception5b.branch3.1.conv.weight", "fc.bias"]),
    (models.googlenet, 13_004_888, 364, ["aux1.conv.conv.weight", "aux2.fc2.bias"]),
    (models.resnet50, 25_557_032, 320, ["layer1.0.conv3.weight", "layer1.0.downsample.1.running_mean",
                                        "layer4.2.bn3.num_batches_tracked", "fc.weight"]),
], ids=["mobilenet_v2", "shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "googlenet", "googlenet_aux", "resnet50"])
def test_torchvision_models_have_torchvisions_parameter_counts_and_keys(make, n_params, n_keys, keys):
    """Parameter counts as torchvision's model documentation lists them (googlenet's 6,624,904 is without the
    auxiliary classifiers), so that torchvision's weights load by name."""
    m = make()
    assert sum(p.numel() for p in m.parameters()) == n_params
    state = m.state_dict()
    assert len(state) == n_keys
    for k in keys:
        assert k in state, k


@pytest.mark.parametrize("make, n", [(models.vgg11_bn, 132_868_840),
                                     pytest.param(models.vgg16_bn, 138_365_992, marks=suite.exhaustive),
                                     pytest.param(models.vgg16, 138_357_544, marks=suite.exhaustive)],
                         ids=["vgg11_bn", "vgg16_bn", "vgg16"])
def test_vgg_full_layouts_have_torchvisions_parameter_counts(make, n):
    m = make(init_weights=False)  # about 0.5 GB of parameters each
    assert sum(p.numel() for p in m.parameters()) == n
    assert m.classifier[0].weight.shape == (4096, 25088)


def test_googlenet_outputs_as_torchvision():
    m = models.googlenet(num_classes=4, in_channels=1, small_input=True)
    x = minidl.randn(2, 1, 28, 28)
    out = m(x)
    assert isinstance(out, models.GoogLeNetOutputs) and out._fields == ("logits", "aux_logits2", "aux_logits1")
    assert all(o.shape == (2, 4) for o in out)
    m.eval()
    y = m(x)
    assert isinstance(y, minidl.Tensor) and y.shape == (2, 4)
    m = models.googlenet(num_classes=4, aux_logits=False, small_input=True).train()
    assert m.aux1 is None and isinstance(m(minidl.randn(1, 3, 32, 32)), minidl.Tensor)


def test_model_arguments_are_checked():
    with pytest.raises(ValueError, match="inverted_residual_setting"):
        models.MobileNetV2(inverted_residual_setting=[[1, 16, 1]])
    with pytest.raises(ValueError, match="stages_repeats"):
        models.ShuffleNetV2([4, 8], [24, 48, 96, 192, 1024])
    with pytest.raises(ValueError, match="stride"):
        from minidl.models.shufflenet import InvertedResidual
        InvertedResidual(24, 24, 4)
