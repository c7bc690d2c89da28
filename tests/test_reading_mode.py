"""The reading mode (minidl.use_reference, MINIDL_REFERENCE=1): the code a learner steps through is the code that
runs: the NumPy reference kernels, conv2d's im2col + GEMM, one thread, nothing compiled; and it trains the seed nets
to the fast path's numbers, bit-identically from run to run."""
import os
import subprocess
import sys

import numpy as np

import minidl
import minidl.nn.functional as F
from minidl import kernels

TRAIN = r"""
import sys, numpy as np
import minidl, minidl.nn.functional as F
from minidl import models
rng = np.random.default_rng(0)
for name, shape in (("LeNet5", (1, 28, 28)), ("ResidualNet", (1, 28, 28))):
    minidl.manual_seed(0)
    model = getattr(models, name)()
    opt = minidl.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x = minidl.tensor(rng.standard_normal((16, *shape)).astype(np.float32))
    y = minidl.tensor(rng.integers(0, 10, 16))
    for _ in range(3):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        print(name, repr(loss.item()))
    print(name, "weights", repr(float(sum(p.detach().double().sum().item() for p in model.parameters()))))
print("compiled code loaded:", any(m in sys.modules for m in ("numba", "llvmlite")))
"""


def _train(**env):
    env = dict(os.environ, **env)
    env.pop("MINIDL_AUTOTUNE", None)
    run = subprocess.run([sys.executable, "-c", TRAIN], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout.splitlines()


def _numbers(lines):
    return np.array([float(line.split()[-1]) for line in lines if not line.startswith("compiled")])


def test_the_seed_nets_train_in_the_reading_mode_as_on_the_fast_path_and_identically_each_run():
    first, second = _train(MINIDL_REFERENCE="1"), _train(MINIDL_REFERENCE="1")
    assert first == second  # bit-identical, run to run
    assert first[-1] == "compiled code loaded: False"  # no Numba, no llvmlite: nothing but NumPy ran
    fast = _train(MINIDL_REFERENCE="0")
    np.testing.assert_allclose(_numbers(first), _numbers(fast), rtol=2e-4)


def test_the_reading_mode_runs_the_reference_and_says_which_conv_algorithm_ran():
    old = minidl.use_reference(True)
    try:
        assert kernels.reference()
        x = minidl.randn(64, 3, 16, 16, requires_grad=True)  # a size where the tuner would pick a compiled algorithm
        y = F.conv2d(x, minidl.randn(8, 3, 3, 3, requires_grad=True), padding=1)
        assert y.grad_fn.algo == "im2col" and kernels.conv.ALGORITHMS["im2col"] == kernels.conv.ALGORITHMS[
            next(iter(kernels.conv.ALGORITHMS))]  # the table's first row: the textbook algorithm
        assert kernels._impl(x._data) is kernels._numpy
        y.sum().backward()
    finally:
        minidl.use_reference(old)
    assert not kernels.reference()


def _stacks_at(names, run):
    """The minidl files on the stack (outermost first) each time a minidl function called one of ``names`` starts."""
    stacks = []

    def profile(frame, event, arg):
        code = frame.f_code
        if event == "call" and code.co_name in names and "/minidl/" in code.co_filename:
            files, f = [], frame
            while f is not None:
                path = f.f_code.co_filename
                if "/minidl/" in path and (not files or files[-1] != path.split("/minidl/")[-1]):
                    files.append(path.split("/minidl/")[-1])
                f = f.f_back
            stacks.append((code.co_filename.split("/minidl/")[-1], code.co_name, files[::-1]))
    sys.setprofile(profile)
    try:
        run()
    finally:
        sys.setprofile(None)
    return stacks


def test_from_nn_conv2d_a_reader_reaches_the_im2col_and_the_gemm_in_five_files():
    """The reading path of issue 31: nn/conv.py -> functional/conv.py (Conv2dFunction) -> kernels/conv.py
    (im2col_forward: im2col and the GEMM two lines apart) -> kernels/__init__.py (the dispatch) -> kernels/_numpy.py
    (the textbook im2col) or kernels/blas.py (the GEMM: np.matmul on one thread). Module.__call__ and Function.apply
    are the machinery every layer and op shares, read once (the README's six files), not part of conv's path."""
    shared = {"nn/module.py", "autograd/function.py"}
    conv = minidl.nn.Conv2d(3, 8, 3)
    x = minidl.randn(4, 3, 16, 16)  # a GEMM above kernels.SMALL_MATMUL: one that goes through blas.py
    old = minidl.use_reference(True)
    try:
        stacks = _stacks_at({"im2col", "matmul"}, lambda: conv(x))
    finally:
        minidl.use_reference(old)
    leaves = {(where, name): files for where, name, files in stacks}
    im2col = leaves[("kernels/_numpy.py", "im2col")]
    gemm = leaves[("kernels/blas.py", "matmul")]
    for files in (im2col, gemm):
        path = [f for i, f in enumerate(files) if f not in shared and f not in files[:i]]
        assert path[:3] == ["nn/conv.py", "functional/conv.py", "kernels/conv.py"], path
        assert len(set(path)) <= 5, path
    assert im2col[-1] == "kernels/_numpy.py" and gemm[-1] == "kernels/blas.py"


def test_no_function_class_is_named_like_a_module():
    """``Conv2dFunction`` (the op) and ``nn.Conv2d`` (the layer) are two things; one name for both sent readers to
    the wrong file."""
    import inspect

    from minidl.autograd import Function
    layers = {name for name, obj in vars(minidl.nn).items() if inspect.isclass(obj)}
    clashes = [f"{cls.__module__}.{cls.__name__}" for cls in _subclasses(Function) if cls.__name__ in layers]
    assert not clashes, clashes


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)
