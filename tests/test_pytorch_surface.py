"""The PyTorch idioms that are not ops (ops have their rows in tests/opinfo.py): in-place methods and torch's
version counter, tensor factories on a tensor, type(), optimizer.state, module aliases, grad modes."""
import numpy as np
import pytest
import torch

import minidl
import minidl.nn.functional as F


def _pair(shape, seed=0):
    a = np.random.default_rng(seed).uniform(0.5, 2.0, size=shape)
    return minidl.tensor(a), torch.tensor(a)


@pytest.mark.parametrize("name, args", [
    ("addcmul_", lambda T: (T(2), T(3), {"value": 0.5})), ("addcdiv_", lambda T: (T(2), T(3), {"value": -2})),
    ("sqrt_", lambda T: ({},)), ("add_", lambda T: (T(2), {"alpha": 3})), ("mul_", lambda T: (T(2), {})),
    ("div_", lambda T: (T(3), {})), ("clamp_", lambda T: ({"min": 0.8, "max": 1.5},)), ("zero_", lambda T: ({},)),
    ("fill_", lambda T: (0.25, {})), ("copy_", lambda T: (T(4), {})),
    ("masked_fill_", lambda T: (T(5) > 1.2, -1.0, {})),
])
def test_in_place_methods_match_torch(name, args):
    (m, t), pairs = _pair((3, 4)), {}

    def arg(lib):
        def T(seed):
            pairs.setdefault(seed, _pair((3, 4), seed))
            return pairs[seed][0 if lib == "m" else 1]
        return T
    *m_args, m_kw = args(arg("m"))
    *t_args, t_kw = args(arg("t"))
    out = getattr(m, name)(*m_args, **m_kw)
    getattr(t, name)(*t_args, **t_kw)
    assert out is m
    np.testing.assert_allclose(m.numpy(), t.numpy(), rtol=1e-15, atol=0)
    assert m._version == 1


def test_a_saved_tensor_changed_in_place_stops_backward_as_in_torch():
    w = minidl.randn(3, requires_grad=True)
    x = minidl.randn(3)
    y = (w * x).sum()  # mul saved x
    with minidl.no_grad():
        x.mul_(2)
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        y.backward()
    # an output the graph saved (exp keeps its result) changed under no_grad
    a = minidl.randn(3, requires_grad=True)
    b = a.exp()
    with minidl.no_grad():
        b.add_(1)
    with pytest.raises(RuntimeError, match="in-place"):
        b.sum().backward()
    # add saves nothing: changing its input afterwards is fine (as torch)
    c = minidl.randn(3)
    d = a + c
    c.add_(1)
    d.sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), np.ones(3))


def test_an_optimizer_step_between_two_backwards_is_caught_as_in_torch():
    model = minidl.nn.Linear(3, 2)
    opt = minidl.optim.SGD(model.parameters(), lr=0.1)
    loss = model(minidl.randn(4, 3)).sum()
    loss.backward(retain_graph=True)
    opt.step()  # changes the weight that the graph saved for the input gradient... and for matmul
    with pytest.raises(RuntimeError, match="in-place"):
        loss.backward()


def test_optimizer_state_is_a_defaultdict_as_custom_optimizers_expect():
    p = minidl.nn.Parameter(minidl.ones(2))

    class Momentum(minidl.optim.Optimizer):  # written as a torch user writes one
        def __init__(self, params, lr):
            super().__init__(params, dict(lr=lr))

        @minidl.no_grad()
        def step(self):
            for group in self.param_groups:
                for q in group["params"]:
                    state = self.state[q]
                    if "buf" not in state:
                        state["buf"] = minidl.zeros_like(q)
                    state["buf"].mul_(0.9).add_(q.grad)
                    q.add_(state["buf"], alpha=-group["lr"])

    opt = Momentum([p], lr=0.5)
    for _ in range(2):
        opt.zero_grad()
        (p * p).sum().backward()
        opt.step()
    tp = torch.nn.Parameter(torch.ones(2))
    buf = torch.zeros(2)
    for _ in range(2):
        tp.grad = None
        (tp * tp).sum().backward()
        with torch.no_grad():
            buf.mul_(0.9).add_(tp.grad)
            tp.add_(buf, alpha=-0.5)
    np.testing.assert_allclose(p.detach().numpy(), tp.detach().numpy(), rtol=1e-6)


def test_tensor_factories_and_type_follow_torch():
    x = minidl.ones(2, dtype=minidl.float64)
    assert x.new_zeros(2, 3).dtype == np.float64 and x.new_zeros(2, 3).shape == (2, 3)
    assert x.new_ones((4,), dtype=minidl.float32).dtype == np.float32
    assert x.new_full((2,), 7).numpy().tolist() == [7.0, 7.0]
    assert x.new_tensor([1, 2]).dtype == np.float64
    assert x.type() == "minidl.DoubleTensor"
    assert minidl.ones(1).type() == torch.ones(1).type().replace("torch", "minidl")
    assert x.type(minidl.float32).dtype == np.float32 and x.type("torch.LongTensor").dtype == np.int64
    with pytest.raises(ValueError, match="type: unknown tensor type"):
        x.type("torch.Nonsense")


def test_randperm_one_hot_and_their_errors():
    minidl.manual_seed(0)
    p = minidl.randperm(7)
    assert p.dtype == np.int64 and sorted(p.numpy().tolist()) == list(range(7))
    with pytest.raises(ValueError, match="randperm"):
        minidl.randperm(-1)
    with pytest.raises(ValueError, match="one_hot: class values"):
        F.one_hot(minidl.tensor([0, 3]), 3)
    with pytest.raises(TypeError, match="one_hot: tensor must be int64"):
        F.one_hot(minidl.tensor([0.0, 1.0]))
    np.testing.assert_array_equal(F.one_hot(minidl.tensor([2, 0])).numpy(), [[0, 0, 1], [1, 0, 0]])


def test_modules_and_modes_torch_programs_import():
    import minidl.utils.data as data
    from minidl.utils.data import DataLoader
    assert data is minidl.data and DataLoader is minidl.data.DataLoader
    assert minidl.accelerator.is_available() == minidl.cuda.is_available()
    assert (minidl.accelerator.current_accelerator() is None) == (not minidl.cuda.is_available())
    x = minidl.ones(2, requires_grad=True)
    with minidl.inference_mode():
        assert not (x * 2).requires_grad
    with minidl.inference_mode(False):
        assert (x * 2).requires_grad

    @minidl.inference_mode()
    def f():
        return x * 2
    assert not f().requires_grad


def test_save_and_load_round_trip_state_dicts_in_torchs_format(tmp_path):
    import io
    import zipfile
    model = minidl.nn.Sequential(minidl.nn.Conv2d(1, 2, 3), minidl.nn.BatchNorm2d(2))
    opt = minidl.optim.Adam(model.parameters())
    model(minidl.randn(2, 1, 5, 5)).sum().backward()
    opt.step()
    obj = {"model": model.state_dict(), "opt": opt.state_dict(), "epoch": 3, "note": "x", "pair": (1.5, None)}
    path = tmp_path / "m.pt"
    minidl.save(obj, path)
    with zipfile.ZipFile(path) as z:  # torch's layout: one folder, data.pkl and the storages (read by a restricted
        assert all(n.startswith("archive/") for n in z.namelist())  # unpickler: loading runs no code from it)
        assert "archive/data.pkl" in z.namelist()
    back = minidl.load(path)
    assert back["epoch"] == 3 and back["note"] == "x" and back["pair"] == (1.5, None)
    for k, v in obj["model"].items():
        assert isinstance(back["model"][k], minidl.Tensor)
        np.testing.assert_array_equal(back["model"][k].numpy(), v.numpy())
    fresh = minidl.nn.Sequential(minidl.nn.Conv2d(1, 2, 3), minidl.nn.BatchNorm2d(2))
    fresh.load_state_dict(back["model"])
    opt2 = minidl.optim.Adam(fresh.parameters())
    opt2.load_state_dict(back["opt"])
    assert opt2.state_dict()["state"].keys() == opt.state_dict()["state"].keys()
    buf = io.BytesIO()  # a file object, as torch.save takes
    minidl.save(model.state_dict(), buf)
    buf.seek(0)
    assert set(minidl.load(buf)) == set(model.state_dict())
    minidl.utils.save_checkpoint(tmp_path / "c.npz", model)
    with pytest.raises(ValueError, match="not written by minidl.save"):
        minidl.load(tmp_path / "c.npz")
    (tmp_path / "bad.pt").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="load: .* is not a readable minidl file"):
        minidl.load(tmp_path / "bad.pt")
    minidl.save({"x": object()}, tmp_path / "o.pt")  # anything picklable, as torch.save; loading it by default
    with pytest.raises(ValueError, match="(?s)Weights only load failed.*GLOBAL builtins.object"):  # resolves only
        minidl.load(tmp_path / "o.pt")  # tensors and plain data


def test_pytorchs_mnist_example_runs_with_only_its_imports_changed(tmp_path):
    """examples/pytorch_style/mnist.py is pytorch/examples' mnist/main.py with minidl imports (and the bundled
    digits offline): a dry run trains, tests, and saves a state_dict that minidl.load reads into the Net."""
    import os
    import runpy
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = os.path.join(root, "examples", "pytorch_style", "mnist.py")
    run = subprocess.run([sys.executable, script, "--dry-run", "--epochs", "1", "--save-model"], cwd=tmp_path,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "Train Epoch: 1 [0/" in run.stdout and "Test set: Average loss:" in run.stdout
    state = minidl.load(tmp_path / "mnist_cnn.pt")
    net = runpy.run_path(script)["Net"]()
    net.load_state_dict(state)
    assert net(minidl.randn(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize("script", ["lecture11_inception.py", "lecture11_residual.py"])
def test_the_pytorch_course_lecture11_scripts_run(script, tmp_path):
    """The course's InceptionA and ResidualBlock nets as students type them (imports changed): a short run
    trains a few batches and tests."""
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    run = subprocess.run([sys.executable, os.path.join(root, "examples", "pytorch_style", script), "--epochs", "1",
                          "--max-batches", "3"], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "Test set: Average loss:" in run.stdout
    loss = float(run.stdout.split("Average loss:")[1].split(",")[0])
    assert 0 < loss < 5  # a real negative log-likelihood of 10 classes, not logits passed as log-probabilities


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, float("inf")])
@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_clip_grad_norm_and_value_match_torch(norm_type, max_norm):
    rng = np.random.default_rng(0)
    shapes = [(3, 4), (5,), (2, 2, 2)]
    grads = [rng.normal(size=s) for s in shapes]
    mp = [minidl.nn.Parameter(minidl.zeros(*s, dtype=minidl.float64)) for s in shapes]
    tp = [torch.nn.Parameter(torch.zeros(*s, dtype=torch.float64)) for s in shapes]
    for m, t, g in zip(mp, tp, grads):
        m.grad, t.grad = minidl.tensor(g.copy()), torch.tensor(g.copy())
    total_m = minidl.nn.utils.clip_grad_norm_(mp, max_norm, norm_type)
    total_t = torch.nn.utils.clip_grad_norm_(tp, max_norm, norm_type)
    np.testing.assert_allclose(total_m.item(), total_t.item(), rtol=1e-12)
    for m, t in zip(mp, tp):
        np.testing.assert_allclose(m.grad.numpy(), t.grad.numpy(), rtol=1e-12)
    minidl.nn.utils.clip_grad_value_(mp, 0.1)
    torch.nn.utils.clip_grad_value_(tp, 0.1)
    for m, t in zip(mp, tp):
        np.testing.assert_array_equal(m.grad.numpy(), t.grad.numpy())
    mp[0].grad._data[0, 0] = np.nan
    with pytest.raises(RuntimeError, match="clip_grad_norm_: the total norm"):
        minidl.nn.utils.clip_grad_norm_(mp, 1.0, error_if_nonfinite=True)


def test_parameters_to_vector_and_back_match_torch():
    m = minidl.nn.Linear(3, 2)
    t = torch.nn.Linear(3, 2)
    t.load_state_dict({k: torch.tensor(v.numpy()) for k, v in m.state_dict().items()})
    vm = minidl.nn.utils.parameters_to_vector(m.parameters())
    vt = torch.nn.utils.parameters_to_vector(t.parameters())
    np.testing.assert_array_equal(vm.detach().numpy(), vt.detach().numpy())
    assert vm.requires_grad
    minidl.nn.utils.vector_to_parameters(vm.detach() * 2, m.parameters())
    torch.nn.utils.vector_to_parameters(vt.detach() * 2, t.parameters())
    for (k, a), (_, b) in zip(m.state_dict().items(), t.state_dict().items()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=k)
    with pytest.raises(ValueError, match="vector_to_parameters: vec has 3 elements"):
        minidl.nn.utils.vector_to_parameters(minidl.zeros(3), m.parameters())


@pytest.mark.parametrize("make, shape", [
    (lambda lib, x: x.t(), (12,)), (lambda lib, x: x.t(), (2, 6)), (lambda lib, x: x[:, ::2], (6,)),
    (lambda lib, x: x.reshape(1, 3, 2, 2).to(memory_format=lib.channels_last), (1, 12)),
    (lambda lib, x: x[:1].expand(3, 4), (12,)), (lambda lib, x: x[:, :2], (3, 2, 1)), (lambda lib, x: x[1:], (8,)),
])
def test_view_refuses_exactly_where_torch_does(make, shape):
    a = np.arange(12.0).reshape(3, 4)
    t = make(torch, torch.tensor(a))
    m = make(minidl, minidl.tensor(a))
    assert m.shape == tuple(t.shape)
    try:
        expected = t.view(*shape).numpy()
    except RuntimeError:
        with pytest.raises(ValueError, match="view: a tensor of shape"):
            m.view(*shape)
        np.testing.assert_array_equal(m.reshape(*shape).numpy(), t.reshape(*shape).numpy())
        return
    got = m.view(*shape)
    np.testing.assert_array_equal(got.numpy(), expected)
    assert np.shares_memory(got.numpy(), m.numpy())


def test_torch_takes_minidl_tensors_directly():
    x = minidl.tensor(np.arange(6.0).reshape(2, 3))
    for make in (torch.tensor, torch.as_tensor, torch.from_dlpack):
        np.testing.assert_array_equal(make(x).numpy(), x.numpy())
    shared = torch.from_dlpack(x)  # no copy: the same memory
    shared[0, 0] = 7.0
    assert x[0, 0].item() == 7.0
    back = minidl.tensor(torch.ones(2).numpy())
    assert back.shape == (2,)


@pytest.mark.parametrize("view", [lambda w: w[1:], lambda w: w.reshape(2, 2), lambda w: w.reshape(2, 2).t(),
                                  lambda w: w.detach()])
def test_an_in_place_change_through_a_view_is_seen_as_in_torch(view):
    x = minidl.randn(4, requires_grad=True)
    w = minidl.randn(4)
    y = (x * w).sum()  # mul saved w
    with minidl.no_grad():
        view(w).mul_(2)  # changes w's memory through a view
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        y.backward()
    z = (x * w.data).sum()  # .data shares memory but not the version (as torch): not seen
    w.data.mul_(2)
    z.backward()


# ---- layers of issue 12, item 2: modules around the ops (the ops have their opinfo rows) -------------------
@pytest.mark.parametrize("make", [
    lambda nn: nn.Upsample(scale_factor=2), lambda nn: nn.Upsample(size=(5, 9), mode="bilinear"),
    lambda nn: nn.Upsample(scale_factor=1.5, mode="bilinear", align_corners=True),
    lambda nn: nn.UpsamplingNearest2d(scale_factor=3), lambda nn: nn.UpsamplingBilinear2d(size=(7, 3)),
    lambda nn: nn.Unfold((2, 3), padding=1, stride=(1, 2)), lambda nn: nn.InstanceNorm2d(3),
    lambda nn: nn.InstanceNorm2d(3, affine=True, track_running_stats=True),
], ids=["nearest", "bilinear", "bilinear_corners", "nearest2d", "bilinear2d", "unfold", "instnorm", "instnorm_stats"])
def test_resampling_and_instance_norm_modules_match_torch(make):
    x = np.random.default_rng(0).uniform(-2, 2, size=(2, 3, 4, 6))
    m, t = make(minidl.nn).double(), make(torch.nn).double()
    assert list(m.state_dict()) == list(t.state_dict())
    xm, xt = minidl.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    for train in (True, False, True):  # the running statistics move in training, are used in eval
        m.train(train)
        t.train(train)
        ym, yt = m(xm), t(xt)
        np.testing.assert_allclose(ym.detach().numpy(), yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    g = np.random.default_rng(1).uniform(-1, 1, size=ym.shape)
    ym.backward(minidl.tensor(g))
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(xm.grad.numpy(), xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    for k, v in t.state_dict().items():
        np.testing.assert_allclose(m.state_dict()[k].numpy(), v.numpy(), rtol=1e-12, err_msg=k)


def test_unfold_is_the_first_half_of_conv2d_and_fold_its_adjoint():
    rng = np.random.default_rng(0)
    x, w = minidl.tensor(rng.uniform(-2, 2, (2, 3, 7, 6))), minidl.tensor(rng.uniform(-1, 1, (4, 3, 3, 2)))
    cols = F.unfold(x, (3, 2), padding=1, stride=(2, 1))                       # (N, C*kh*kw, L)
    y = (w.reshape(4, -1) @ cols).reshape(2, 4, 4, 7)
    np.testing.assert_allclose(y.numpy(), F.conv2d(x, w, padding=1, stride=(2, 1)).numpy(), rtol=1e-12)
    # <unfold(x), c> == <x, fold(c)>: fold is unfold's transpose
    c = minidl.tensor(rng.uniform(-1, 1, cols.shape))
    lhs = float((cols * c).sum())
    rhs = float((x * F.fold(c, (7, 6), (3, 2), padding=1, stride=(2, 1))).sum())
    assert abs(lhs - rhs) < 1e-10 * abs(lhs)
    fold = minidl.nn.Fold((7, 6), (3, 2), padding=1, stride=(2, 1))
    np.testing.assert_allclose(fold(c).numpy(), torch.nn.Fold((7, 6), (3, 2), padding=1, stride=(2, 1))(
        torch.tensor(c.numpy())).numpy(), rtol=1e-12)


@pytest.mark.parametrize("call, match", [
    (lambda x: F.interpolate(x[0], scale_factor=2, mode="bicubic"), "'bicubic' needs a 4-D input"),
    (lambda x: F.interpolate(x, scale_factor=2, mode="nearest", align_corners=True), "align_corners"),
    (lambda x: F.interpolate(x, scale_factor=2, mode="linear"), "3-D"),
    (lambda x: F.interpolate(x, size=4, scale_factor=2), "exactly one"),
    (lambda x: F.interpolate(x, scale_factor=2, antialias=True, mode="bilinear"), "antialias"),
    (lambda x: F.interpolate(x, size=(2, 0)), "size"),
    (lambda x: F.unfold(x, 7), "kernel_size"),
    (lambda x: F.fold(x.reshape(2, 3, 10), (4, 5), 2), "divisible"),
    (lambda x: F.fold(x.reshape(1, 12, 5), (4, 5), 2), "blocks"),
    (lambda x: minidl.nn.InstanceNorm2d(4, affine=True)(x), "channels"),
])
def test_resampling_errors_name_the_op_and_argument(call, match):
    x = minidl.randn(2, 3, 2, 5)
    with pytest.raises(ValueError, match=match):
        call(x)


def test_scatter_in_place_methods_match_torch():
    idx = np.array([[0, 2, 1, 3], [3, 0, 2, 1]])
    src = np.random.default_rng(0).uniform(-2, 2, size=(2, 4))
    for lib in (minidl, torch):
        x = lib.zeros(3, 4, dtype=lib.float64)
        x.scatter_(1, lib.tensor(idx[:, :3]), lib.tensor(src))
        x.scatter_(0, lib.tensor(idx[:1] % 3), 7.5)
        x.scatter_add_(1, lib.tensor(idx), lib.tensor(src))
        x.scatter_(1, lib.tensor(idx[:, :1]), lib.tensor(src), reduce="add")
        if lib is minidl:
            m = x.numpy()
    np.testing.assert_allclose(m, x.numpy(), rtol=1e-12)
    leaf = minidl.zeros(3, 4, requires_grad=True)
    with pytest.raises(RuntimeError, match="scatter_"):
        leaf.scatter_(1, minidl.tensor(idx[:, :3]), 1.0)


# ---- tensors as a PyTorch user types them (import minidl as torch) --------------------------------------------
def test_the_legacy_tensor_constructor_and_typed_tensors_follow_torch():
    with_values = [lambda lib: lib.Tensor([1, 2]), lambda lib: lib.Tensor(np.arange(3.0)),
                   lambda lib: lib.Tensor([True, False]), lambda lib: lib.FloatTensor([1, 2]),
                   lambda lib: lib.LongTensor([1.7, 2]), lambda lib: lib.BoolTensor([1, 0]),
                   lambda lib: lib.Tensor(lib.tensor([1, 2])), lambda lib: lib.tensor([1, 2]).type(lib.FloatTensor),
                   lambda lib: lib.tensor([1.5]).type(lib.DoubleTensor), lambda lib: lib.IntTensor([[1, 2]]),
                   lambda lib: lib.Tensor()]
    sized = [lambda lib: lib.Tensor(2, 3), lambda lib: lib.DoubleTensor(2)]  # uninitialised memory in torch
    for make in with_values + sized:
        m, t = make(minidl), make(torch)
        assert str(m.dtype) == str(t.dtype).replace("torch.", "minidl.") and m.shape == tuple(t.shape)
        if make in with_values:
            np.testing.assert_array_equal(m.numpy(), t.numpy())
    x = minidl.tensor([1, 2])
    assert isinstance(minidl.zeros(1), minidl.FloatTensor) and not isinstance(x, minidl.FloatTensor)
    assert isinstance(x, minidl.LongTensor) and repr(minidl.FloatTensor) == "<class 'minidl.FloatTensor'>"
    assert minidl.nn.Linear(2, 3)(minidl.Tensor([1, 2])).shape == (3,)  # a layer takes torch.Tensor([1, 2])
    with pytest.raises(TypeError, match=r"Tensor: data must be a sequence \(got float\); minidl.tensor\(3.5\)"):
        minidl.Tensor(3.5)


def test_tensors_print_as_torch_prints_them():
    rng = np.random.default_rng(0)
    arrays = [np.array([0.5848, 1.4870, -0.2792], np.float32), rng.normal(size=(3, 4)).astype(np.float32),
              np.array([1e-5, 1.0], np.float32), np.array([1e9, 1], np.float32), np.array([1.0, 2.0], np.float32),
              np.arange(12).reshape(3, 4), np.array([True, False]), rng.normal(size=(40, 40)).astype(np.float32),
              rng.normal(size=2000), np.array(3.5, np.float32), np.zeros((0, 3), np.float32), np.array([], np.int64),
              np.array([np.nan, np.inf, 1.5], np.float32), rng.normal(size=(2, 3, 4)), np.zeros(2, np.float32),
              (rng.normal(size=30) * 100).astype(np.float32), np.array([1, 2], np.int32), np.array([1.0, np.nan])]
    for a in arrays:
        assert repr(minidl.tensor(a)) == repr(torch.tensor(a)).replace("torch.", "minidl."), a
    x = minidl.tensor([0.5, -1.25], requires_grad=True)
    assert repr(x) == "tensor([ 0.5000, -1.2500], requires_grad=True)"
    assert repr(minidl.tensor([0.5848, 1.4870, -0.2792])) == "tensor([ 0.5848,  1.4870, -0.2792])"


def test_dtypes_print_as_minidl_dtypes_and_equal_numpys():
    x = minidl.randn(2)
    assert repr(x.dtype) == str(x.dtype) == "minidl.float32" == repr(minidl.float32)
    assert repr(minidl.bool) == "minidl.bool" and repr(minidl.tensor([1]).dtype) == "minidl.int64"
    assert x.dtype == np.float32 and np.float32 == x.dtype and x.dtype == np.dtype("float32") == minidl.float
    assert x.dtype != np.float64 and {np.dtype(np.float32): 1}[x.dtype] == 1 and minidl.float32 in (np.float32,)
    assert np.zeros(2, dtype=minidl.float64).dtype == np.float64 and x.to(minidl.float64).dtype == minidl.double
    assert x.dtype.itemsize == 4 and x.dtype.is_floating_point and not minidl.int64.is_floating_point
    assert repr(minidl.get_default_dtype()) == "minidl.float32"


def test_mistakes_a_pytorch_user_makes_get_errors_that_say_what_to_do(tmp_path):
    logits = minidl.randn(4, 10)
    with pytest.raises(TypeError, match="cross_entropy: target .* class indices, which must be integers"):
        minidl.nn.CrossEntropyLoss()(logits, minidl.tensor([1.0, 2.0, 3.0, 4.0]))
    minidl.save(minidl.nn.Linear(2, 2), tmp_path / "m.pt")  # a whole module pickles, as with torch.save; loading
    with pytest.raises(ValueError, match="`weights_only` set to `False`"):  # it says how, for a file of one's own
        minidl.load(tmp_path / "m.pt")
    assert isinstance(minidl.load(tmp_path / "m.pt", weights_only=False), minidl.nn.Linear)
    with pytest.raises(TypeError, match="^linear: input dtype minidl.float64 and weight dtype minidl.float32 differ"):
        minidl.nn.Linear(2, 2)(minidl.randn(3, 2).double())


def test_what_the_repl_echoes_is_short():
    assert repr(minidl.manual_seed(3)) == "<minidl.Generator seed=3>" and minidl.initial_seed() == 3
    s = minidl.utils.summary(minidl.models.LeNet5(), (1, 1, 28, 28), print_fn=None)
    assert repr(s) == "<ModelSummary: 5 layers, 61,706 trainable parameters, 0.83 MFLOPs>"
    assert s["trainable_params"] == 61_706  # still a dict
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        assert minidl.save({"a": minidl.zeros(1)}, d + "/x.pt") is None  # as torch.save


def test_the_rng_state_round_trips_as_torchs():
    minidl.manual_seed(0)
    state = minidl.get_rng_state()
    a = minidl.rand(3)
    minidl.set_rng_state(state)
    assert state.dtype == minidl.uint8 and np.array_equal(minidl.rand(3).numpy(), a.numpy())
    with pytest.raises(ValueError, match="set_rng_state"):
        minidl.set_rng_state(minidl.tensor([1, 2], dtype=minidl.uint8))


def test_a_generator_of_its_own_as_torchs():
    """minidl.Generator().manual_seed(s) returns itself (the random_split idiom); draws through generator= repeat
    with the seed and leave the global generator where it was; a new one starts from torch's default seed."""
    assert minidl.Generator().initial_seed() == torch.Generator().initial_seed()
    draws = {}
    for k in range(2):
        minidl.manual_seed(5)
        g = minidl.Generator().manual_seed(42)
        assert isinstance(g, minidl.Generator) and g.initial_seed() == 42
        draws[k] = [minidl.rand(3, generator=g), minidl.randn(2, 2, generator=g),
                    minidl.randint(0, 9, (4,), generator=g), minidl.randperm(6, generator=g),
                    minidl.empty(3).uniform_(-1, 1, generator=g), minidl.empty(3).normal_(generator=g),
                    minidl.nn.init.kaiming_uniform_(minidl.empty(2, 3), generator=g),
                    minidl.nn.init.trunc_normal_(minidl.empty(4), generator=g), minidl.rand(2)]  # the last: global
    minidl.manual_seed(5)
    draws["unseeded"] = minidl.rand(2)
    for a, b in zip(draws[0], draws[1]):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(draws[0][-1].numpy(), draws["unseeded"].numpy())  # untouched by g's draws
    g = minidl.Generator().manual_seed(1)
    state = g.get_state()
    a = minidl.rand(4, generator=g)
    np.testing.assert_array_equal(minidl.rand(4, generator=g.set_state(state)).numpy(), a.numpy())
    assert g.seed() != 1 and g.initial_seed() != 1


def test_data_loading_takes_a_generator():
    ds = minidl.data.TensorDataset(minidl.arange(20))
    halves = [minidl.data.random_split(ds, [0.5, 0.5], generator=minidl.Generator().manual_seed(7)) for _ in range(2)]
    assert halves[0][0].indices == halves[1][0].indices
    orders = [[b[0].tolist() for b in minidl.data.DataLoader(ds, batch_size=5, shuffle=True,
                                                             generator=minidl.Generator().manual_seed(3))]
              for _ in range(2)]
    assert orders[0] == orders[1] and sorted(sum(orders[0], [])) == list(range(20))


def test_a_wrong_generator_is_refused_naming_the_op():
    with pytest.raises(TypeError, match="^randn: generator must be a minidl.Generator, got int"):
        minidl.randn(2, generator=3)
    with pytest.raises(ValueError, match="^rand: the generator is on 'cuda', the result on 'cpu'"):
        minidl.rand(2, generator=minidl.Generator("cuda"))
    with pytest.raises(TypeError, match="^Generator.manual_seed: seed must be an int"):
        minidl.Generator().manual_seed(1.5)
    with pytest.raises(ValueError, match="^Generator.set_state: not a state"):
        minidl.Generator().set_state(minidl.tensor([1, 2], dtype=minidl.uint8))


def test_a_parameter_keeps_its_datas_dtype():
    for data in (np.zeros(2), np.zeros(2, np.float32)):
        assert str(minidl.nn.Parameter(minidl.tensor(data)).dtype) == \
            str(torch.nn.Parameter(torch.tensor(data)).dtype).replace("torch.", "minidl.")


def test_use_deterministic_algorithms_is_the_reproducible_mode():
    assert not minidl.are_deterministic_algorithms_enabled()
    try:
        minidl.use_deterministic_algorithms(True)
        assert minidl.are_deterministic_algorithms_enabled() and not minidl.kernels.autotune.is_enabled()
        assert minidl.kernels.blas.own_threads(64)  # products split by shape, whatever the load
    finally:
        minidl.use_deterministic_algorithms(False)
    assert minidl.kernels.autotune.is_enabled()


# torch.<name> exists but with another signature than F.<name>: minidl does not export F's version there
NOT_AT_TOP = {
    "batch_norm": "torch.batch_norm(input, weight, bias, running_mean, running_var, training, momentum, eps, "
                  "cudnn_enabled): F.batch_norm takes running_mean and running_var second",
    "instance_norm": "torch.instance_norm has positional use_input_stats, momentum, eps, cudnn_enabled",
    "dropout": "torch.dropout(input, p, train) has no defaults",
    "embedding": "torch.embedding(weight, input): the arguments are the other way round",
    "kl_div": "torch.kl_div takes reduction as an enum int",
    "binary_cross_entropy_with_logits": "torch.binary_cross_entropy_with_logits takes reduction as an enum int",
}


def test_each_op_torch_has_at_top_level_is_minidl_top_level_too():
    from minidl.functional import OPS
    from minidl.functional._registry import TOP
    for name, fn in OPS.items():
        if callable(getattr(torch, name, None)) and name not in NOT_AT_TOP:
            assert name in TOP and getattr(minidl, name) is fn, f"torch.{name} exists: register {name} with top=True"
    for name in TOP:
        assert callable(getattr(torch, name, None)), f"minidl.{name} has no torch.{name} to mirror"
        assert name not in NOT_AT_TOP, f"torch.{name}'s signature differs ({NOT_AT_TOP.get(name)})"


def test_a_dtype_survives_pickle_and_copy_as_the_same_object():
    import copy
    import pickle
    for dt in (minidl.float32, minidl.int64, minidl.bool):
        assert pickle.loads(pickle.dumps(dt)) is dt and copy.deepcopy(dt) is dt
