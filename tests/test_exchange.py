"""Weights and models out of minidl and back: safetensors files read by torch's safetensors loader and written
by it; ONNX export run in onnxruntime against minidl's own output."""
import os

import numpy as np
import pytest
import torch

import minidl
from minidl import models
from minidl.testing import torch_twins as twins

import suite

st_torch = pytest.importorskip("safetensors.torch")


def test_safetensors_round_trip_with_torch(tmp_path):
    minidl.manual_seed(0)
    m = models.resnet18(num_classes=10, small_input=True)
    m.train()
    m(minidl.randn(2, 3, 32, 32))  # running statistics and num_batches_tracked (int64) move away from their init
    path = tmp_path / "resnet18.safetensors"
    minidl.utils.safetensors.save_model(m, path, metadata={"framework": "minidl"})
    loaded = st_torch.load_file(str(path))  # torch's reader
    assert set(loaded) == set(m.state_dict())
    t = twins.ResNet([2, 2, 2, 2], 10, 3, True)
    t.load_state_dict(loaded)
    for k, v in m.state_dict().items():
        assert loaded[k].dtype == {np.float32: torch.float32, np.int64: torch.int64}[v.numpy().dtype.type]
        np.testing.assert_array_equal(loaded[k].numpy(), v.numpy(), err_msg=k)
    # and back: torch writes, minidl reads
    t.fc.weight.data.mul_(2)
    st_torch.save_file(t.state_dict(), str(tmp_path / "t.safetensors"))
    missing, unexpected = minidl.utils.safetensors.load_model(m, tmp_path / "t.safetensors")
    assert not missing and not unexpected
    np.testing.assert_array_equal(m.fc.weight.detach().numpy(), t.fc.weight.detach().numpy())
    x = np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype(np.float32)
    m.eval()
    t.eval()
    np.testing.assert_allclose(m(minidl.tensor(x)).detach().numpy(), t(torch.tensor(x)).detach().numpy(),
                               rtol=1e-4, atol=1e-5)


def test_safetensors_errors(tmp_path):
    sf = minidl.utils.safetensors
    with pytest.raises(TypeError, match="dict"):
        sf.save_file([minidl.ones(2)], tmp_path / "x.safetensors")
    with pytest.raises(TypeError, match="strings"):
        sf.save_file({"a": minidl.ones(2)}, tmp_path / "x.safetensors", metadata={"n": 1})
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ")
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        sf.load_file(bad)
    sf.save_file({"a": minidl.ones(2, 3).t()}, tmp_path / "ok.safetensors")  # a non-contiguous view is fine
    assert sf.load_file(tmp_path / "ok.safetensors")["a"].shape == (3, 2)
    assert not [f for f in os.listdir(tmp_path) if ".tmp-" in f]


# ---- ONNX ------------------------------------------------------------------------------------------------
class _Layers(minidl.nn.Module):
    """Every layer family of issue 12 in one net, for the exporter."""

    def __init__(self):
        super().__init__()
        nn = minidl.nn
        self.body = nn.Sequential(
            nn.ZeroPad2d((1, 2, 0, 1)), nn.Conv2d(3, 8, 3, padding=1, dilation=2, bias=False), nn.BatchNorm2d(8),
            nn.Hardswish(), nn.Conv2d(8, 8, 3, padding=1, groups=4), nn.ChannelShuffle(2), nn.InstanceNorm2d(8, True),
            nn.LeakyReLU(0.1), nn.MaxPool2d(3, 2, 1, dilation=1, ceil_mode=True), nn.GroupNorm(2, 8), nn.Mish(),
            nn.Upsample(scale_factor=2, mode="bilinear"), nn.AvgPool2d(3, 2, 1, ceil_mode=True,
                                                                        count_include_pad=False),
            nn.Upsample(size=(9, 7)), nn.Hardsigmoid(), nn.AvgPool2d((2, 3), divisor_override=4), nn.ReLU6(),
            nn.AdaptiveMaxPool2d(2), nn.GELU(), nn.Dropout2d(0.3), nn.Flatten(), nn.LayerNorm(32), nn.SiLU(),
            nn.Linear(32, 16), nn.Dropout(0.5), nn.PReLU(), nn.Tanh(), nn.Linear(16, 6), nn.LogSoftmax(dim=1))

    def forward(self, x):
        return self.body(x), minidl.nn.functional.softmax(self.body[:3](x).mean((2, 3)), -1) * 2 - 1


EXPORTED = [
    ("lenet5", models.LeNet5, (1, 28, 28)),
    ("inception", models.InceptionNet, (1, 28, 28)),
    ("residualnet", models.ResidualNet, (1, 28, 28)),
    ("densenet_bc", models.densenet_bc, (1, 28, 28)),
    ("resnet18", lambda: models.resnet18(num_classes=10, small_input=True), (3, 32, 32)),
    ("resnet18_28", lambda: models.resnet18(num_classes=10), (3, 28, 28)),  # layer4 on 1x1 maps: taps dropped
    pytest.param("preact_resnet18", models.preact_resnet18, (3, 32, 32), marks=suite.exhaustive),
    ("mobilenet_v2", lambda: models.mobilenet_v2(num_classes=10, small_input=True), (3, 32, 32)),
    ("shufflenet_v2_x0_5", lambda: models.shufflenet_v2_x0_5(num_classes=10), (3, 64, 64)),
    pytest.param("googlenet", lambda: models.googlenet(num_classes=10), (3, 64, 64), marks=suite.exhaustive),
    pytest.param("vgg11_bn", lambda: models.vgg11_bn(num_classes=10, small_input=True), (3, 32, 32),
                 marks=suite.exhaustive),
    pytest.param("resnet50", lambda: models.resnet50(num_classes=10), (3, 64, 64), marks=suite.exhaustive),
    ("layers", _Layers, (3, 12, 10)),
]


@pytest.mark.parametrize("name, make, shape", EXPORTED, ids=[getattr(e, "values", e)[0] for e in EXPORTED])
def test_onnx_export_runs_in_onnxruntime_with_minidls_numbers(name, make, shape, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    minidl.manual_seed(0)
    m = make()
    m.train()
    m(minidl.randn(4, *shape))  # running statistics away from 0 and 1, so that eval mode uses them
    rng = np.random.default_rng(0)
    path = tmp_path / f"{name}.onnx"
    minidl.onnx.export(m, minidl.tensor(rng.normal(size=(2, *shape)).astype(np.float32)), path)
    assert m.training  # the mode is restored
    m.eval()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.shape[0] for i in session.get_inputs()] == ["batch"]
    for batch in (2, 5):  # another batch size than the example's: the batch dim is symbolic
        x = rng.normal(size=(batch, *shape)).astype(np.float32)
        ours = m(minidl.tensor(x))
        ours = ours if isinstance(ours, tuple) else (ours,)
        theirs = session.run(None, {"input_0": x})
        assert len(theirs) == len(ours)
        for a, b in zip(ours, theirs):
            scale = max(1.0, float(np.abs(b).max()))
            np.testing.assert_allclose(a.detach().numpy(), b, rtol=1e-4, atol=2e-5 * scale)


def test_onnx_export_names_and_refusals(tmp_path):
    onnx = pytest.importorskip("onnx")
    m = models.LeNet5()
    proto = minidl.onnx.export(m, minidl.randn(1, 1, 28, 28), tmp_path / "l.onnx", input_names=["image"],
                               output_names=["logits"])
    assert [i.name for i in proto.graph.input] == ["image"] and [o.name for o in proto.graph.output] == ["logits"]
    inits = {i.name for i in proto.graph.initializer}
    assert {"conv1.weight", "conv1.bias", "conv2.weight", "fc3.bias"} <= inits  # state_dict names
    assert onnx.load(str(tmp_path / "l.onnx")).graph.node

    class Unfolding(minidl.nn.Module):
        def forward(self, x):
            return minidl.nn.functional.unfold(x, 2)
    with pytest.raises(ValueError, match="'unfold' has no ONNX translation"):
        minidl.onnx.export(Unfolding(), minidl.randn(1, 1, 4, 4), tmp_path / "u.onnx")
    with pytest.raises(ValueError, match="unequal"):
        minidl.onnx.export(minidl.nn.AdaptiveAvgPool2d(3), minidl.randn(1, 1, 5, 5), tmp_path / "a.onnx")
    with pytest.raises(TypeError, match="example input"):
        minidl.onnx.export(m, np.zeros((1, 1, 28, 28)), tmp_path / "n.onnx")
    assert not (tmp_path / "u.onnx").exists()

    class Hidden(minidl.nn.Module):  # a mask computed outside minidl's ops would be frozen into the file
        def forward(self, x):
            return x * minidl.tensor((x.detach().numpy() > 0).astype(np.float32))
    with pytest.raises(ValueError, match="cannot see"):  # values near 0: the second run's input flips signs
        minidl.onnx.export(Hidden(), minidl.full((2, 3), 0.01), tmp_path / "h.onnx")

    class Branchy(minidl.nn.Module):  # Python control flow on values: a different graph per input
        def forward(self, x):
            return x.relu() if float(x.sum()) > 0 else x.sigmoid()
    with pytest.raises(ValueError, match="data-dependent"):  # sum 0.06; the exporter's second run sees another sign
        minidl.onnx.export(Branchy(), minidl.full((2, 3), 0.01), tmp_path / "b.onnx")


def test_every_function_exports_to_onnx_or_is_listed_as_not_exported_with_a_reason():
    from minidl import onnx
    from minidl.autograd.function import FUNCTIONS
    classes = {cls for group in FUNCTIONS.values() for cls in group}
    assert not set(onnx.EXPORTERS) & set(onnx.NOT_EXPORTED)
    missing = sorted(c.__name__ for c in classes - set(onnx.EXPORTERS) - set(onnx.NOT_EXPORTED))
    assert not missing, f"Functions neither exported nor listed in onnx.NOT_EXPORTED: {missing}"
    assert all(isinstance(why, str) and why for why in onnx.NOT_EXPORTED.values())
    assert set(onnx.EXPORTERS) | set(onnx.NOT_EXPORTED) <= classes  # no stale entries
    m = minidl.nn.Sequential(minidl.nn.Unfold(2))
    with pytest.raises(ValueError, match=r"'unfold' has no ONNX translation in minidl \(im2col has no ONNX operator\)"):
        onnx.export(m, minidl.randn(1, 1, 4, 4), "/dev/null")
