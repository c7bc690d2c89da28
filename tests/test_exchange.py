"""Weights and models out of minidl and back: safetensors files read by torch's safetensors loader and written
by it; ONNX export run in onnxruntime against minidl's own output."""
import os

import numpy as np
import pytest
import torch

import minidl
from minidl import models
from minidl.testing import torch_twins as twins

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
