"""Devices, dtypes, tensor creation and the import surface."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import minidl
import minidl.nn.functional as F


def test_import_does_not_pull_heavy_or_optional_packages():
    code = ("import sys, minidl; bad = [m for m in ('torch', 'matplotlib', 'tqdm', 'cupy', 'numba') "
            "if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


STUB_CUPY = """
import sys
sys.stdout.write("CUPY-IMPORTED\\n")
class _Runtime:
    @staticmethod
    def getDeviceCount():
        return 0
class cuda:
    runtime = _Runtime
class ndarray:
    pass
"""


def test_import_leaves_an_installed_cupy_alone(tmp_path):
    """With a CuPy installed (a stub that announces its import), ``import minidl`` and CPU work must not
    import it; asking whether CUDA is available does."""
    (tmp_path / "cupy.py").write_text(STUB_CUPY)
    code = ("import sys, minidl; x = minidl.randn(3, requires_grad=True); (x * 2).sum().backward(); "
            "print('after-cpu-work', 'cupy' in sys.modules); print('available', minidl.cuda.is_available()); "
            "print('after-asking', 'cupy' in sys.modules)")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__)))).stdout.split("\n")
    assert out[:4] == ["after-cpu-work False", "CUPY-IMPORTED", "available False", "after-asking True"], out


def test_devices_parse_and_compare():
    assert minidl.device("cpu") == "cpu"
    assert str(minidl.device("cuda:1")) == "cuda:1"
    assert minidl.device("cuda") == minidl.device("cuda", 0)
    assert minidl.randn(2).device == "cpu"


@pytest.mark.skipif(minidl.cuda.is_available(), reason="this checks the message shown without a GPU")
def test_asking_for_cuda_without_it_says_why():
    with pytest.raises(RuntimeError, match="cuda.*CuPy|cuda.*device"):
        minidl.zeros(2, device="cuda")
    with pytest.raises(RuntimeError, match="CuPy|device"):
        minidl.randn(2).to("cuda")
    assert minidl.cuda.is_available() is False


def test_default_dtypes_follow_torch():
    assert minidl.tensor([1.0, 2.0]).dtype == minidl.float32
    assert minidl.tensor([1, 2]).dtype == minidl.int64
    assert minidl.tensor(np.zeros(2)).dtype == minidl.float64  # NumPy arrays keep their dtype
    assert minidl.zeros(2).dtype == minidl.float32
    assert minidl.arange(3).dtype == minidl.int64 and minidl.arange(0.0, 1.0, 0.5).dtype == minidl.float32
    assert (minidl.ones(2) * 2.5).dtype == minidl.float32
    assert (minidl.ones(2, dtype=minidl.float64) + minidl.ones(2)).dtype == minidl.float64
    assert (minidl.tensor([1, 2]) / 2).dtype == minidl.float32
    assert minidl.tensor(torch.ones(2, dtype=torch.float64)).dtype == minidl.float64
    minidl.set_default_dtype(minidl.float64)
    try:
        assert minidl.tensor([1.0]).dtype == minidl.float64 and minidl.randn(2).dtype == minidl.float64
    finally:
        minidl.set_default_dtype(minidl.float32)


def test_mixed_dtype_gradients_come_back_in_each_inputs_dtype():
    a = minidl.randn(3, requires_grad=True)
    b = minidl.randn(3, dtype=minidl.float64, requires_grad=True)
    (a * b).sum().backward()
    assert a.grad.dtype == minidl.float32 and b.grad.dtype == minidl.float64


def test_creation_functions_and_like():
    minidl.manual_seed(3)
    a = minidl.randn(2, 3)
    minidl.manual_seed(3)
    assert np.array_equal(minidl.randn(2, 3).numpy(), a.numpy())
    assert minidl.full((2, 2), 7).dtype == minidl.int64
    assert minidl.zeros_like(a).shape == (2, 3) and minidl.ones_like(a, dtype=minidl.float64).dtype == minidl.float64
    r = minidl.rand(1000)
    assert 0 <= r.min().item() and r.max().item() < 1
    assert minidl.empty(0, 3).shape == (0, 3)
    assert minidl.tensor(3.5).item() == 3.5 and minidl.tensor(3.5).shape == ()


def test_tensor_basics():
    x = minidl.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    assert x.shape == (2, 2) and x.size(1) == 2 and x.dim() == 2 and x.numel() == 4 and len(x) == 2
    assert "requires_grad=True" in repr(x)
    y = x.to(minidl.float64)
    assert y.dtype == minidl.float64 and y.requires_grad
    assert x.T.shape == (2, 2) and x.detach().tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert (x > 2).dtype == minidl.bool and (x > 2).sum().item() == 2
    with pytest.raises(RuntimeError, match="in place"):
        x.zero_()
    with minidl.no_grad():
        x.mul_(2)
    assert x.detach().numpy()[1, 1] == 8.0


def test_tensor_methods_come_from_the_registry():
    x = minidl.randn(2, 3)
    assert np.allclose(x.relu().numpy(), F.relu(x).numpy())
    assert x.view(3, 2).shape == (3, 2) and x.permute(1, 0).shape == (3, 2)
    v, i = x.max(1)
    assert v.shape == (2,) and i.dtype == minidl.int64
    with pytest.raises(AttributeError):
        x.no_such_method()


def test_registered_methods_sit_on_the_class_and_never_replace_tensors_own():
    """A method op is set on Tensor (found by Python's lookup, not through __getattr__); a name Tensor defines itself
    (a method, a slot) stays Tensor's however often it is registered; a name registered again takes the later
    function; unregister takes the method away again."""
    from minidl.autograd.tensor import Tensor
    from minidl.functional._registry import register, unregister
    assert Tensor.__dict__["view"] is F.view and "relu" in Tensor.__dict__
    own_numpy, own_grad = Tensor.__dict__["numpy"] if "numpy" in Tensor.__dict__ else Tensor.numpy, Tensor.grad
    x = minidl.tensor([1.0, 2.0])
    x.grad = minidl.tensor([3.0, 4.0])
    try:
        for tag in ("a", "b"):  # twice under Tensor's own names: neither may replace them
            register(f"_toy_shadow_{tag}", method=False, methods=("numpy", "grad"))(lambda self, tag=tag: tag)
        register("_toy_again")(lambda self: "first")
        register("_toy_again_2", method=False, methods=("_toy_again",))(lambda self: "second")
        assert x.numpy().tolist() == [1.0, 2.0] and x.grad.tolist() == [3.0, 4.0] and x._toy_again() == "second"
        assert Tensor.grad is own_grad and (Tensor.__dict__.get("numpy", Tensor.numpy)) is own_numpy
    finally:
        for name in ("_toy_shadow_a", "_toy_shadow_b", "_toy_again", "_toy_again_2"):
            unregister(name)
    from minidl.autograd.tensor import _METHODS
    assert not hasattr(x, "_toy_again") and x.numpy().tolist() == [1.0, 2.0]
    assert "numpy" not in _METHODS and "grad" not in _METHODS and "_toy_again" not in _METHODS

def test_batch_norm_running_statistics_follow_torch():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 3, 4, 5)).astype(np.float32)
    rm, rv = minidl.zeros(3), minidl.ones(3)
    trm, trv = torch.zeros(3), torch.ones(3)
    for _ in range(3):
        F.batch_norm(minidl.tensor(x), rm, rv, training=True, momentum=0.2)
        torch.nn.functional.batch_norm(torch.tensor(x), trm, trv, training=True, momentum=0.2)
    np.testing.assert_allclose(rm.numpy(), trm.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rv.numpy(), trv.numpy(), rtol=1e-5, atol=1e-6)  # unbiased running variance


def test_dropout_keeps_expectation_and_is_seeded():
    x = minidl.ones(200, 200)
    minidl.manual_seed(1)
    y = F.dropout(x, 0.3)
    assert abs(float((y.numpy() == 0).mean()) - 0.3) < 0.01
    assert np.allclose(np.unique(y.numpy()), [0.0, 1 / 0.7])
    minidl.manual_seed(1)
    assert np.array_equal(F.dropout(x, 0.3).numpy(), y.numpy())
    assert F.dropout(x, 0.3, training=False) is x


def test_max_pool_ties_and_minus_infinity_padding():
    # all-negative input: zero padding would win the max, -inf padding does not
    x = minidl.tensor(-np.ones((1, 1, 3, 3), dtype=np.float32) * 5)
    assert F.max_pool2d(x, 3, stride=1, padding=1).max().item() == -5.0
