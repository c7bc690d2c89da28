"""What a PyTorch user meets in the first hour, held to torch 2.13: ``x.shape`` is a Size, ``load_state_dict`` prints
as torch's result, class labels must be int64 as in torch, ``x.cuda()`` without CuPy names a command that works,
and ``git add .`` leaves the examples' outputs and the virtual environment out."""
import ast
import copy
import os
import pickle
import shutil
import subprocess

import numpy as np
import pytest

import minidl
from minidl import backend

torch = pytest.importorskip("torch")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# -- minidl.Size -----------------------------------------------------------------------------------------------------

# expressions evaluated with m = minidl and m = torch, x a (2, 3, 4) tensor: the same value, printed the same way
# (torch -> minidl), of the same kind (a Size where torch gives a torch.Size)
SIZE_EXPRESSIONS = [
    "x.shape", "x.size()", "x.shape[1:]", "x.shape[::-1]", "x.shape[:0]", "x.shape + (5,)", "(5,) + x.shape",
    "x.shape + x.shape", "x.shape * 2", "2 * x.shape", "m.Size([])", "m.Size([2, 3])", "m.Size((2, 3))",
    "m.Size([m.tensor(3)])", "m.Size(range(3))", "x.shape.numel()", "m.Size([]).numel()", "m.Size([0, 3]).numel()",
    "x.shape[0]", "x.shape[-1]", "x.size(1)", "x.size(-1)", "len(x.shape)", "x.shape.count(3)", "x.shape.index(4)",
    "x.shape == (2, 3, 4)", "(2, 3, 4) == x.shape", "x.shape != (2, 3)", "x.shape == [2, 3, 4]", "x.shape < (3,)",
    "hash(x.shape) == hash((2, 3, 4))", "str(x.shape)", "f'{x.shape}'", "isinstance(x.shape, tuple)",
    "tuple(x.shape)", "list(x.shape)", "pickle.loads(pickle.dumps(x.shape))", "copy.deepcopy(x.shape)",
    "m.zeros(x.shape).shape", "m.randn(x.shape).shape", "x.new_zeros(x.shape).shape", "x.view(x.shape).shape",
    "x.reshape(x.shape[::-1]).shape", "x.sum(0).shape", "m.tensor(1.0).shape",
]


def _evaluate(m, expression):
    x = m.zeros(2, 3, 4)
    return eval(expression, {"m": m, "x": x, "pickle": pickle, "copy": copy})


@pytest.mark.parametrize("expression", SIZE_EXPRESSIONS)
def test_size_behaves_and_prints_as_torch_size(expression):
    mine, theirs = _evaluate(minidl, expression), _evaluate(torch, expression)
    assert repr(mine) == repr(theirs).replace("torch", "minidl")
    assert type(mine).__name__ == type(theirs).__name__  # Size where torch gives a Size, int where an int
    assert isinstance(mine, minidl.Size) == isinstance(theirs, torch.Size)


@pytest.mark.parametrize("expression, message", [
    ("x.shape + [5]", None), ("m.Size([2.5])", r"Size\(\) takes an iterable of 'int' \(item 0 is 'float'\)"),
    ("m.Size(['a'])", r"item 0 is 'str'"), ("m.Size(3)", None), ("x.size(3)", None)])
def test_size_refuses_what_torch_size_refuses(expression, message):
    with pytest.raises(Exception) as theirs:
        _evaluate(torch, expression)
    with pytest.raises(type(theirs.value), match=message):
        _evaluate(minidl, expression)


def test_size_prints_in_a_tensor_summary_and_goes_to_numpy_and_torch():
    x = minidl.randn(2, 3)
    assert f"{x.shape}" == "minidl.Size([2, 3])" and str(x.size()) == "minidl.Size([2, 3])"
    assert np.zeros(x.shape).shape == (2, 3) and torch.zeros(x.shape).shape == torch.Size([2, 3])
    assert x.shape is x.shape  # one Size per shape, reused (Tensor.shape is read on every op)


# -- load_state_dict's result ----------------------------------------------------------------------------------------

def _load(m, strict, drop=None, extra=None):
    layer = m.nn.Linear(4, 3)
    state = dict(layer.state_dict())
    if drop:
        del state[drop]
    if extra:
        state[extra] = m.zeros(1)
    return layer.load_state_dict(state, strict=strict)


@pytest.mark.parametrize("drop, extra", [(None, None), ("bias", None), (None, "scale"), ("weight", "scale")])
def test_load_state_dict_prints_as_torchs_result(drop, extra):
    mine, theirs = _load(minidl, False, drop, extra), _load(torch, False, drop, extra)
    assert str(mine) == str(theirs) and repr(mine) == repr(theirs)
    assert mine == theirs and isinstance(mine, tuple)  # still the named tuple (missing_keys, unexpected_keys)
    assert (mine.missing_keys, mine.unexpected_keys) == (theirs.missing_keys, theirs.unexpected_keys)


def test_a_full_match_prints_all_keys_matched():
    result = _load(minidl, True)
    assert repr(result) == "<All keys matched successfully>"
    missing, unexpected = result
    assert missing == [] and unexpected == [] and pickle.loads(pickle.dumps(result)) == ([], [])


# -- class labels: int64 (uint8 for a (C,) or (N, C) input), as torch ------------------------------------------------

LABEL_DTYPES = ["int64", "int32", "int16", "int8", "uint8", "bool"]
INPUT_SHAPES = [(3,), (4, 3), (2, 3, 5), (2, 3, 2, 2)]


def _loss_call(m, fn, shape, dtype, rng_seed=0):
    rng = np.random.default_rng(rng_seed)
    x = rng.standard_normal(shape).astype(np.float32)
    target_shape = shape[:1] + shape[2:] if len(shape) > 1 else ()
    t = rng.integers(0, shape[0 if len(shape) == 1 else 1], size=target_shape)
    if dtype == "bool":
        t = t > 0
    target = m.tensor(t).to(getattr(m, dtype))
    return getattr(m.nn.functional, fn)(m.tensor(x), target)


@pytest.mark.parametrize("fn", ["cross_entropy", "nll_loss"])
@pytest.mark.parametrize("shape", INPUT_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", LABEL_DTYPES)
def test_class_label_dtypes_are_torchs(fn, shape, dtype):
    try:
        expected = _loss_call(torch, fn, shape, dtype)
    except RuntimeError:
        expected = None
    if expected is not None:
        np.testing.assert_allclose(_loss_call(minidl, fn, shape, dtype).item(), expected.item(), rtol=1e-5)
        return
    with pytest.raises(RuntimeError, match=r"convert the class indices with target\.long\(\)") as info:
        _loss_call(minidl, fn, shape, dtype)
    assert isinstance(info.value, TypeError)  # minidl's class for a dtype refusal, as before


def test_int32_labels_are_refused_with_the_fix_in_the_message():
    with pytest.raises(RuntimeError) as info:
        minidl.nn.CrossEntropyLoss()(minidl.randn(4, 3), minidl.tensor([0, 1, 2, 0], dtype=minidl.int32))
    assert "got minidl.int32" in str(info.value) and ".long()" in str(info.value)


def test_the_bundled_datasets_yield_int64_labels():
    loader = minidl.data.DataLoader(minidl.data.MNISTSubset(train=False), batch_size=4)
    _, labels = next(iter(loader))
    assert labels.dtype == minidl.int64
    minidl.nn.functional.cross_entropy(minidl.randn(4, 10), labels)


# -- x.cuda() without CuPy -------------------------------------------------------------------------------------------

def _gpu_extra():
    """setup.py's extras_require["gpu"], read without running setup.py."""
    tree = ast.parse(open(os.path.join(ROOT, "setup.py"), encoding="utf-8").read())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "extras_require":
            extras = ast.literal_eval(node.value)
            return extras["gpu"]
    raise AssertionError("setup.py has no extras_require")


def test_the_gpu_install_command_installs_setup_pys_gpu_extra():
    # one command that works from a clone and from an installed package alike (an extra needs the source folder
    # or a package index that has minidl)
    assert backend.GPU_INSTALL == "pip install " + " ".join(f'"{r}"' for r in _gpu_extra())


def test_cuda_without_cupy_names_the_gpu_install_command(monkeypatch):
    monkeypatch.setattr(backend, "_cupy", None)
    monkeypatch.setattr(backend, "_CUPY_ERROR", ImportError("No module named 'cupy'"))
    with pytest.raises(RuntimeError) as info:
        minidl.randn(2).cuda()
    message = str(info.value)
    assert backend.GPU_INSTALL in message and "No module named 'cupy'" in message
    assert "minidl[gpu]" not in message


# -- .gitignore ------------------------------------------------------------------------------------------------------

IGNORED = [".venv/bin/python", "venv/lib/site.py", "runs/lenet_mnist_20260101-120000/checkpoint.pt",
           "examples/runs/x/checkpoint.pt", "data/MNIST/raw/train-images-idx3-ubyte.gz", "examples/data/FashionMNIST/x",
           "results/sample_1.png", "examples/pytorch_style/results/sample_1.png"]
KEPT = ["minidl/data/new_dataset.py", "minidl/data/resources/new.npz", "minidl/new_module.py",
        "benchmarks/results.json", "examples/new_example.py", "tests/test_new.py"]


@pytest.mark.skipif(shutil.which("git") is None or not os.path.isdir(os.path.join(ROOT, ".git")),
                    reason="needs git and a git checkout")
@pytest.mark.parametrize("path", IGNORED + KEPT)
def test_gitignore_leaves_out_the_outputs_and_the_venv_but_not_the_sources(path):
    r = subprocess.run(["git", "check-ignore", "--no-index", "-q", path], cwd=ROOT)
    assert r.returncode == (0 if path in IGNORED else 1), path
