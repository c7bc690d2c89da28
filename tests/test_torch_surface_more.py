"""More of torch's surface that real programs reach (issue 30): the legacy size_average/reduce loss arguments,
randint's overloads, bfloat16 (through ml_dtypes), the nn.modules namespace, RNN.flatten_parameters, the torch.cuda
functions CPU programs call, backends.cuda's flags, and amp (GradScaler, autocast); each against real torch."""
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

import minidl
from minidl import nn
from minidl.nn import functional as F

torch = pytest.importorskip("torch")
TF = torch.nn.functional

LEGACY = [(sa, r) for sa in (None, True, False) for r in (None, True, False) if (sa, r) != (None, None)]


def _loss_inputs(name, rng):
    x = rng.uniform(0.05, 0.95, (4, 3))
    if name in ("cross_entropy", "nll_loss"):
        return x, rng.integers(0, 3, 4)
    if name == "kl_div":
        return np.log(x), rng.uniform(0.05, 0.95, (4, 3))
    return x, rng.uniform(0, 1, (4, 3))


LOSSES = ["nll_loss", "cross_entropy", "mse_loss", "l1_loss", "binary_cross_entropy",
          "binary_cross_entropy_with_logits", "smooth_l1_loss", "kl_div"]
MODULES = {"nll_loss": "NLLLoss", "cross_entropy": "CrossEntropyLoss", "mse_loss": "MSELoss", "l1_loss": "L1Loss",
           "binary_cross_entropy": "BCELoss", "binary_cross_entropy_with_logits": "BCEWithLogitsLoss",
           "smooth_l1_loss": "SmoothL1Loss", "kl_div": "KLDivLoss"}


def _warned(fn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn()
    return out, [str(w.message) for w in caught if "size_average" in str(w.message)]


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("size_average,reduce", LEGACY)
def test_legacy_loss_arguments_as_torch(name, size_average, reduce):
    """size_average=/reduce= override reduction, by torch's rule and with its warning; functional and module."""
    x, t = _loss_inputs(name, np.random.default_rng(0))
    kw = dict(size_average=size_average, reduce=reduce)
    got, got_warn = _warned(lambda: getattr(F, name)(minidl.tensor(x), minidl.tensor(t), **kw))
    want, want_warn = _warned(lambda: getattr(TF, name)(torch.tensor(x), torch.tensor(t), **kw))
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12)
    assert got_warn == want_warn and len(got_warn) == 1
    got_m, got_warn = _warned(lambda: getattr(nn, MODULES[name])(**kw))
    want_m, want_warn = _warned(lambda: getattr(torch.nn, MODULES[name])(**kw))
    assert got_m.reduction == want_m.reduction and got_warn == want_warn
    np.testing.assert_allclose(got_m(minidl.tensor(x), minidl.tensor(t)).numpy(),
                               want_m(torch.tensor(x), torch.tensor(t)).numpy(), rtol=1e-12)


def test_vae_binary_cross_entropy_size_average_false():
    """yunjey's VAE: F.binary_cross_entropy(x_reconst, x, size_average=False), a sum, with gradients as torch's."""
    rng = np.random.default_rng(1)
    p, x = rng.uniform(0.01, 0.99, (5, 7)), rng.uniform(0, 1, (5, 7))
    mp, tp = minidl.tensor(p, requires_grad=True), torch.tensor(p, requires_grad=True)
    with pytest.warns(UserWarning, match=r"please use reduction='sum' instead"):
        F.binary_cross_entropy(mp, minidl.tensor(x), size_average=False).backward()
    with pytest.warns(UserWarning):
        TF.binary_cross_entropy(tp, torch.tensor(x), size_average=False).backward()
    np.testing.assert_allclose(mp.grad.numpy(), tp.grad.numpy(), rtol=1e-12)


def test_loss_positional_arguments_follow_torch():
    """torch's positional order (weight, size_average, ignore_index, reduce, reduction) is minidl's too."""
    x, t = np.random.default_rng(2).normal(size=(4, 3)), np.array([0, 2, 1, 2])
    got = F.cross_entropy(minidl.tensor(x), minidl.tensor(t), None, None, 2, None, "sum")
    want = TF.cross_entropy(torch.tensor(x), torch.tensor(t), None, None, 2, None, "sum")
    np.testing.assert_allclose(got.item(), want.item(), rtol=1e-12)
    assert F.mse_loss(minidl.ones(2), minidl.zeros(2), None, None, "sum").item() == 2.0


def test_kl_div_batchmean_with_legacy_arguments_as_torch():
    x, t = _loss_inputs("kl_div", np.random.default_rng(3))
    got, _ = _warned(lambda: F.kl_div(minidl.tensor(x), minidl.tensor(t), size_average=False, reduction="batchmean"))
    want, _ = _warned(lambda: TF.kl_div(torch.tensor(x), torch.tensor(t), size_average=False, reduction="batchmean"))
    np.testing.assert_allclose(got.item(), want.item(), rtol=1e-12)


# ---- randint ----------------------------------------------------------------------------------------------------
RANDINT_CALLS = ["randint(5, (3,))", "randint(2, 5, (3, 2))", "randint(5, size=(3,))",
                 "randint(low=2, high=5, size=(3,))", "randint(high=5, size=(3,))",
                 "randint(5, (3,), dtype=lib.float32)", "randint(3, ())",
                 "randint(0, 9, [2, 2])", "randint(-3, 0, (2,))", "randint(0, 2 ** 40, (2,))",
                 "randint(5, (2,), dtype=lib.float32, requires_grad=True)",
                 "randint(2, 5, (3,), generator=lib.Generator())",
                 "randint(5, (2,), dtype=lib.int32)", "randint(2, 4, size=(3,))"]
RANDINT_REFUSED = ["randint(5)", "randint(5, 3)", "randint(3, 2, (2,))", "randint(5.5, (2,))",
                   "randint(5, (2,), dtype=lib.bool)", "randint(300, (2,), dtype=lib.uint8)", "randint(5, size=3)"]


@pytest.mark.parametrize("call", RANDINT_CALLS)
def test_randint_overloads_as_torch(call):
    got, want = eval("lib." + call, {"lib": minidl}), eval("lib." + call, {"lib": torch})
    assert (tuple(got.shape), str(got.dtype).split(".")[1], got.requires_grad) == (
        tuple(want.shape), str(want.dtype).split(".")[1], want.requires_grad)
    low, high = eval(call.replace("randint", "_bounds").replace("lib.", "_lib_"), {"_bounds": _bounds, **_LIB})
    values = got.detach().numpy()
    assert ((values >= low) & (values < high)).all()


def _bounds(*args, low=0, high=None, size=None, **kw):
    if size is None:
        args = args[:-1]
    if len(args) == 2:
        return args
    return (low, args[0]) if high is None and args else (low, high)


_LIB = {"_lib_float32": None, "_lib_int32": None, "_lib_Generator": lambda: None}


@pytest.mark.parametrize("call", RANDINT_REFUSED)
def test_randint_refusals_as_torch(call):
    with pytest.raises(Exception) as want:
        eval("lib." + call, {"lib": torch})
    with pytest.raises(want.type):
        eval("lib." + call, {"lib": minidl})


def test_randint_draws_from_generators_and_randint_like():
    a = minidl.randint(0, 100, (6,), generator=minidl.Generator().manual_seed(4))
    b = minidl.randint(100, (6,), generator=minidl.Generator().manual_seed(4))
    assert a.tolist() == b.tolist()
    x = minidl.zeros(2, 3, dtype=minidl.int32)
    for got, want in ((minidl.randint_like(x, 5), torch.randint_like(torch.zeros(2, 3, dtype=torch.int32), 5)),
                      (minidl.randint_like(minidl.zeros(2, 3), 2, 5), torch.randint_like(torch.zeros(2, 3), 2, 5)),
                      (minidl.randint_like(x, high=7), torch.randint_like(torch.zeros(2, 3, dtype=torch.int32),
                                                                          high=7))):
        assert tuple(got.shape) == tuple(want.shape) and str(got.dtype)[7:] == str(want.dtype)[6:]


# ---- bfloat16 ----------------------------------------------------------------------------------------------------
def test_bfloat16_conversion_and_arithmetic_as_torch():
    pytest.importorskip("ml_dtypes")
    x = np.random.default_rng(5).normal(size=(4, 5)).astype(np.float32) * 10
    m, t = minidl.tensor(x).to(minidl.bfloat16), torch.tensor(x).to(torch.bfloat16)
    assert m.dtype == minidl.bfloat16 and repr(m.dtype) == "minidl.bfloat16" and m.dtype.is_floating_point
    assert m.element_size() == 2
    np.testing.assert_array_equal(m.float().numpy(), t.float().numpy())  # the same rounding (to nearest even)
    for op in (lambda a: a + a, lambda a: a * a, lambda a: a * 3.0, lambda a: a - 1, lambda a: a.exp()):
        got, want = op(m), op(t)
        assert got.dtype == minidl.bfloat16 and want.dtype == torch.bfloat16
        np.testing.assert_allclose(got.float().numpy(), want.float().numpy(), rtol=1e-2)
    assert (m + minidl.tensor(x)).dtype == minidl.float32  # promotion as torch: bfloat16 + float32 is float32
    assert minidl.tensor(x).to("bfloat16").dtype == minidl.bfloat16
    assert minidl.tensor(x).to(torch.bfloat16).dtype == minidl.bfloat16
    assert pickle.loads(pickle.dumps(minidl.bfloat16)) is minidl.bfloat16


def test_bfloat16_without_ml_dtypes_says_what_to_install():
    """Without ml_dtypes the name exists (nanoGPT lists it in a dict) and using it names the install."""
    code = ("import sys; sys.modules['ml_dtypes'] = None\n"
            "import minidl\n"
            "table = {'bfloat16': minidl.bfloat16, 'float16': minidl.float16}\n"
            "print(repr(table['bfloat16']))\n"
            "try:\n    minidl.zeros(2).to(minidl.bfloat16)\nexcept ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == "minidl.bfloat16"
    assert "pip install ml_dtypes" in out.stdout


def test_import_minidl_does_not_import_ml_dtypes():
    code = "import sys, minidl; print('ml_dtypes' in sys.modules); minidl.bfloat16; print('ml_dtypes' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split()[0] == "False"


# ---- nn.modules, flatten_parameters -------------------------------------------------------------------------------
def test_nn_modules_namespace_aliases_the_modules():
    code = ("import sys, minidl\n"
            "from minidl.nn.modules import Linear, Module\n"
            "from minidl.nn.modules.loss import _Loss, _WeightedLoss, MSELoss\n"
            "from minidl.nn.modules.module import Module as M\n"
            "from minidl.nn.modules.batchnorm import _BatchNorm, BatchNorm2d\n"
            "from minidl.nn.modules.utils import _pair, _single\n"
            "from minidl.nn.modules.dropout import Dropout\n"
            "import minidl.nn.modules.rnn as rnn\n"
            "nn = minidl.nn\n"
            "assert Linear is nn.Linear and M is Module is nn.Module and _Loss is nn.loss._Loss\n"
            "assert rnn is nn.rnn and nn.modules.loss is nn.loss and BatchNorm2d is nn.BatchNorm2d\n"
            "assert issubclass(MSELoss, _Loss) and Dropout is nn.Dropout\n"
            "assert _pair(3) == (3, 3) and _single(2) == (2,)\n"
            "assert not any(k.startswith('minidl.nn.modules.') and getattr(v, '__file__', '').endswith('modules.py')\n"
            "               for k, v in sys.modules.items())\n"
            "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "ok", out.stderr


def test_custom_loss_from_nn_modules_loss():
    """A torch program's own loss subclasses torch.nn.modules.loss._Loss with the legacy arguments."""
    from minidl.nn.modules.loss import _Loss

    class Mine(_Loss):
        def forward(self, a, b):
            return F.l1_loss(a, b, reduction=self.reduction)

    with pytest.warns(UserWarning, match="reduction='sum'"):
        assert Mine(size_average=False)(minidl.ones(3), minidl.zeros(3)).item() == 3.0


@pytest.mark.parametrize("cls", ["RNN", "LSTM", "GRU"])
def test_flatten_parameters_is_a_no_op(cls):
    m = getattr(nn, cls)(3, 4, num_layers=2)
    before = {k: v.numpy().copy() for k, v in m.state_dict().items()}
    assert m.flatten_parameters() is None and torch.nn.LSTM(3, 4).flatten_parameters() is None
    assert all(np.array_equal(before[k], v.numpy()) for k, v in m.state_dict().items())


# ---- cuda, backends.cuda ---------------------------------------------------------------------------------------------
NO_GPU = pytest.mark.skipif(minidl.cuda.is_available() or torch.cuda.is_available(), reason="checks CPU behaviour")


@NO_GPU
def test_cuda_functions_a_cpu_program_calls():
    import minidl.cuda as cuda
    assert cuda is minidl.cuda
    for name, args in (("is_available", ()), ("device_count", ()), ("manual_seed", (1,)), ("manual_seed_all", (1,)),
                       ("seed", ()), ("seed_all", ()), ("empty_cache", ()), ("memory_allocated", ()),
                       ("memory_reserved", ()), ("max_memory_allocated", ()), ("is_bf16_supported", ()),
                       ("is_initialized", ()), ("get_rng_state_all", ())):
        assert getattr(cuda, name)(*args) == getattr(torch.cuda, name)(*args), name
    for name in ("get_device_name", "current_device", "get_device_capability", "initial_seed"):
        with pytest.raises(AssertionError):
            getattr(torch.cuda, name)()
        with pytest.raises(AssertionError, match="no CUDA GPU"):
            getattr(cuda, name)()
        with pytest.raises(RuntimeError):
            getattr(cuda, name)()
    with pytest.raises(TypeError):
        cuda.manual_seed_all("a")


def test_backends_cuda_flags():
    import minidl.backends.cuda as bc
    tb = torch.backends.cuda
    assert bc is minidl.backends.cuda
    assert bc.matmul.allow_tf32 == tb.matmul.allow_tf32 is False
    for flag in ("flash", "mem_efficient", "math", "cudnn"):
        assert getattr(bc, f"{flag}_sdp_enabled")() == getattr(tb, f"{flag}_sdp_enabled")()
    bc.matmul.allow_tf32 = True
    try:
        assert bc.matmul.allow_tf32 is True
    finally:
        bc.matmul.allow_tf32 = False
    with pytest.raises(AttributeError, match="Unknown attribute"):
        bc.matmul.allow_tf33 = True
    bc.enable_flash_sdp(False)
    assert not bc.flash_sdp_enabled()
    bc.enable_flash_sdp(True)
    with pytest.warns(FutureWarning, match="sdp_kernel"):
        with bc.sdp_kernel(enable_flash=True, enable_math=False, enable_mem_efficient=False):
            assert bc.flash_sdp_enabled() and not bc.math_sdp_enabled()
    assert bc.math_sdp_enabled() and bc.mem_efficient_sdp_enabled()


# ---- amp -------------------------------------------------------------------------------------------------------------
def _messages(fn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn()
    return out, [(w.category.__name__, str(w.message)) for w in caught]


@NO_GPU
@pytest.mark.parametrize("make", ["lib.cuda.amp.GradScaler()", "lib.amp.GradScaler('cuda')", "lib.amp.GradScaler()",
                                  "lib.cuda.amp.GradScaler(enabled=False)", "lib.amp.GradScaler('cpu')"])
def test_grad_scaler_warnings_and_disabled_identity_as_torch(make):
    got, got_w = _messages(lambda: eval(make, {"lib": minidl}))
    want, want_w = _messages(lambda: eval(make, {"lib": torch}))
    assert got_w == want_w
    assert got.is_enabled() == want.is_enabled()
    if not got.is_enabled():
        loss = minidl.ones(2, requires_grad=True).sum()
        assert got.scale(loss) is loss and got.get_scale() == 1.0 and got.state_dict() == {}
        got.load_state_dict({})
        got.update()


def _scaler_run(lib, grads):
    """An enabled CPU GradScaler over steps whose gradients are given (inf where an overflow is staged)."""
    w = lib.zeros(3, dtype=lib.float64, requires_grad=True)
    opt = lib.optim.SGD([w], lr=0.1)
    scaler = lib.amp.GradScaler("cpu", init_scale=8.0, growth_interval=2)
    seen = []
    for g in grads:
        opt.zero_grad()
        loss = (w * lib.tensor(np.array(g))).sum()
        scaled = scaler.scale(loss)
        seen.append(scaled.item())
        scaled.backward()
        scaler.unscale_(opt)
        seen.append(w.grad.tolist())
        scaler.step(opt)
        scaler.update()
        seen.append((scaler.get_scale(), w.tolist()))
    return seen, scaler.state_dict()


def test_grad_scaler_enabled_on_cpu_as_torch():
    grads = [[1.0, 2.0, 3.0], [np.inf, 1.0, 0.0], [0.5, 0.5, 0.5], [1.0, -1.0, 2.0], [2.0, 0.0, 1.0]]
    got, got_sd = _scaler_run(minidl, grads)
    want, want_sd = _scaler_run(torch, grads)
    assert got == want
    assert got_sd == {k: (v if not hasattr(v, "item") else v) for k, v in want_sd.items()}


def test_grad_scaler_unscale_twice_refused_as_torch():
    for lib in (minidl, torch):
        w = lib.ones(2, requires_grad=True)
        opt, scaler = lib.optim.SGD([w], lr=0.1), lib.amp.GradScaler("cpu")
        scaler.scale(w.sum()).backward()
        scaler.unscale_(opt)
        with pytest.raises(RuntimeError, match="unscale_\\(\\) has already been called"):
            scaler.unscale_(opt)


@NO_GPU
@pytest.mark.parametrize("make", ["lib.cuda.amp.autocast()", "lib.amp.autocast('cuda')",
                                  "lib.amp.autocast(device_type='cpu', dtype=lib.float32)",
                                  "lib.cuda.amp.autocast(enabled=False)", "lib.cpu.amp.autocast(enabled=False)"])
def test_autocast_warnings_as_torch(make):
    got, got_w = _messages(lambda: eval(make, {"lib": minidl}))
    want, want_w = _messages(lambda: eval(make, {"lib": torch}))
    assert got_w == want_w


def test_autocast_cpu_runs_in_full_precision_and_says_so():
    """minidl's choice: no casting (no mixed-precision kernels); the block runs in float32, with a warning once."""
    minidl.amp.autocast._warned_full_precision = False
    lin = nn.Linear(3, 2)
    x = minidl.randn(4, 3)
    with pytest.warns(UserWarning, match="no mixed precision"):
        with minidl.autocast(device_type="cpu", dtype=minidl.bfloat16):
            assert minidl.amp.is_autocast_enabled("cpu")
            y = lin(x)
    assert not minidl.amp.is_autocast_enabled("cpu")
    assert y.dtype == minidl.float32
    np.testing.assert_allclose(y.detach().numpy(), lin(x).detach().numpy(), rtol=1e-6, atol=1e-7)

    @minidl.amp.autocast("cpu")
    def f(a):
        return minidl.amp.is_autocast_enabled("cpu")

    assert f(x)
