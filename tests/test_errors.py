"""Bad input gets a ValueError/TypeError that names the op, the argument, what was expected and what came, and is an
instance of the class torch raises for the same call too (RuntimeError for nearly every shape and dtype check), so
that a torch program's ``except RuntimeError`` catches it: every case runs on minidl and on torch."""
import numpy as np
import pytest

import minidl
import minidl.nn.functional as F


def x4(m):
    return m.randn(2, 3, 8, 8)


def w(m):
    return m.randn(6, 1, 5, 5)


def _backward_after_an_in_place_change(m, F):
    a = m.randn(3, requires_grad=True)
    b = a.exp()  # exp saves its result for backward
    with m.no_grad():
        b.mul_(2)
    b.sum().backward()


# (name, call(library, its functional module), minidl's exception, message pattern); the call is written once for
# minidl and torch alike
CASES = [
    ("conv2d channels", lambda m, F: F.conv2d(x4(m), w(m)), ValueError, r"conv2d: input has 3 channels, weight expects 1 \(weight shape \(6, 1, 5, 5\)"),
    ("conv2d 2-D input", lambda m, F: F.conv2d(m.randn(8, 8), w(m)), ValueError, r"conv2d: expected input to be 3-D .* or 4-D .* got 2-D"),
    ("conv2d kernel too large", lambda m, F: F.conv2d(x4(m), m.randn(4, 3, 9, 9)), ValueError, r"conv2d: kernel size \(9, 9\) .* larger than the padded input \(8, 8\)"),
    ("conv2d stride 0", lambda m, F: F.conv2d(x4(m), m.randn(4, 3, 3, 3), stride=0), ValueError, r"conv2d: argument 'stride' must be >= 1, got 0"),
    ("conv2d negative padding", lambda m, F: F.conv2d(x4(m), m.randn(4, 3, 3, 3), padding=-1), ValueError, r"conv2d: argument 'padding' must be >= 0"),
    ("conv2d padding string", lambda m, F: F.conv2d(x4(m), m.randn(4, 3, 3, 3), padding="full"), ValueError, r"conv2d: padding must be .*'same'.*got 'full'"),
    ("conv2d same with stride", lambda m, F: F.conv2d(x4(m), m.randn(4, 3, 3, 3), stride=2, padding="same"), ValueError, r"conv2d: padding='same' needs stride 1"),
    ("conv2d bias shape", lambda m, F: F.conv2d(x4(m), m.randn(4, 3, 3, 3), m.randn(5)), ValueError, r"conv2d: bias must have shape \(4,\), got \(5,\)"),
    ("conv2d groups", lambda m, F: F.conv2d(x4(m), m.randn(4, 1, 3, 3), groups=2), ValueError, r"conv2d: input has 3 channels, weight expects 2"),
    ("conv2d numpy input", lambda m, F: F.conv2d(x4(m).numpy(), w(m)), TypeError, r"conv2d: argument 'input' must be a minidl.Tensor, got ndarray"),
    ("conv2d integer input", lambda m, F: F.conv2d(m.tensor(np.ones((1, 1, 5, 5), dtype=np.int64)), w(m)), TypeError, r"conv2d: argument 'input' must have a floating dtype"),
    ("conv2d float64 and float32", lambda m, F: F.conv2d(x4(m).double(), m.randn(4, 3, 3, 3)), TypeError, r"conv2d: input dtype minidl.float64 and weight dtype minidl.float32 differ"),
    ("conv_transpose2d channels", lambda m, F: F.conv_transpose2d(x4(m), m.randn(2, 3, 3, 3)), ValueError, r"conv_transpose2d: input has 3 channels, weight expects 2"),
    ("conv_transpose2d output_padding", lambda m, F: F.conv_transpose2d(x4(m), m.randn(3, 3, 3, 3), stride=2, output_padding=2), ValueError, r"conv_transpose2d: output_padding"),
    ("max_pool2d padding", lambda m, F: F.max_pool2d(x4(m), 2, padding=2), ValueError, r"max_pool2d: padding \(2, 2\) should be at most half of the kernel size"),
    ("max_pool2d kernel too large", lambda m, F: F.max_pool2d(x4(m), 9), ValueError, r"max_pool2d: .*kernel \(9, 9\) is larger than the padded input"),
    ("max_pool2d stride 0", lambda m, F: F.max_pool2d(x4(m), 2, stride=0), ValueError, r"max_pool2d: argument 'stride' must be >= 1"),
    ("max_pool2d 2-D input", lambda m, F: F.max_pool2d(m.randn(8, 8), 2), ValueError, r"max_pool2d: expected input to be 3-D"),
    ("avg_pool2d 3 kernel sizes", lambda m, F: F.avg_pool2d(x4(m), (2, 2, 2)), ValueError, r"avg_pool2d: argument 'kernel_size' must be an int or a pair"),
    ("avg_pool2d divisor 0", lambda m, F: F.avg_pool2d(x4(m), 2, divisor_override=0), ValueError, r"avg_pool2d: divisor_override must be a nonzero int"),
    ("adaptive_avg_pool2d size 0", lambda m, F: F.adaptive_avg_pool2d(x4(m), 0), ValueError, r"adaptive_avg_pool2d: argument 'output_size' must be >= 1"),
    ("batch_norm running_mean shape", lambda m, F: F.batch_norm(x4(m), m.zeros(4), m.ones(4)), ValueError, r"batch_norm: running_mean must have shape \(3,\) for an input with 3 channels, got \(4,\)"),
    ("batch_norm eval without stats", lambda m, F: F.batch_norm(x4(m), None, None), ValueError, r"batch_norm: running_mean and running_var are needed when training=False"),
    ("batch_norm one value per channel", lambda m, F: F.batch_norm(m.randn(1, 3), None, None, training=True), ValueError, r"batch_norm: expected more than 1 value per channel"),
    ("layer_norm normalized_shape", lambda m, F: F.layer_norm(x4(m), (7,)), ValueError, r"layer_norm: normalized_shape \(7,\) must equal the last dims"),
    ("group_norm groups", lambda m, F: F.group_norm(x4(m), 2), ValueError, r"group_norm: number of channels \(3\) must be divisible by num_groups \(2\)"),
    ("linear features", lambda m, F: F.linear(m.randn(2, 5), m.randn(3, 4)), ValueError, r"linear: input has 5 features .* weight expects 4 \(weight shape \(3, 4\)\)"),
    ("cross_entropy class out of range", lambda m, F: F.cross_entropy(m.randn(4, 3), m.tensor([0, 1, 2, 3])), ValueError, r"cross_entropy: target holds class index 3, outside \[0, 2\]"),
    ("cross_entropy target shape", lambda m, F: F.cross_entropy(m.randn(4, 3), m.tensor([0, 1])), ValueError, r"cross_entropy: expected target of shape \(4,\)"),
    ("cross_entropy float class indices", lambda m, F: F.cross_entropy(m.randn(4, 3), m.tensor([0.0, 1, 2, 0])), TypeError, r"cross_entropy: target \(4,\) of dtype minidl.float32 looks like class indices, which must be integers"),
    ("cross_entropy reduction", lambda m, F: F.cross_entropy(m.randn(4, 3), m.tensor([0, 1, 2, 0]), reduction="avg"), ValueError, r"cross_entropy: reduction must be"),
    ("nll_loss weight shape", lambda m, F: F.nll_loss(m.randn(4, 3), m.tensor([0, 1, 2, 0]), weight=m.ones(4)), ValueError, r"nll_loss: weight must have shape \(3,\)"),
    ("mse_loss shapes", lambda m, F: F.mse_loss(m.randn(4), m.randn(5)), ValueError, r"mse_loss: target shape \(5,\) must equal input shape \(4,\)"),
    ("binary_cross_entropy not probabilities", lambda m, F: F.binary_cross_entropy(m.randn(4) + 3, m.rand(4)), ValueError, r"binary_cross_entropy: input must hold probabilities"),
    ("add unbroadcastable", lambda m, F: m.randn(2, 3) + m.randn(4), ValueError, r"add: shapes \(2, 3\), \(4,\) cannot be broadcast"),
    ("matmul shapes", lambda m, F: m.randn(2, 3) @ m.randn(4, 2), ValueError, r"matmul: shapes \(2, 3\) and \(4, 2\) cannot be multiplied"),
    ("add a str", lambda m, F: m.randn(2, 3) + "a", TypeError, r"add: argument 'other' must be a Tensor or a number, got str"),
    ("reshape size", lambda m, F: m.randn(2, 3).reshape(4, 2), ValueError, r"reshape: shape \(4, 2\) is invalid for input of size 6"),
    ("sum dim out of range", lambda m, F: m.randn(2, 3).sum(2), IndexError, r"sum: dim 2 is out of range for a tensor with 2 dimensions"),
    ("permute repeated dim", lambda m, F: m.randn(2, 3).permute(0, 0), ValueError, r"permute: dims .* repeat a dimension"),
    ("expand size", lambda m, F: m.randn(2, 3).expand(4, 3), ValueError, r"expand: size 4 at dim 0 does not match"),
    ("getitem out of bounds", lambda m, F: m.randn(2, 3)[5], IndexError, r"getitem: index 5 is out of bounds"),
    ("cat shapes", lambda m, F: m.cat([m.randn(2, 3), m.randn(2, 4)]), ValueError, r"cat: tensors\[1\] has shape \(2, 4\)"),
    ("cat of a tensor", lambda m, F: m.cat(m.randn(2, 3)), TypeError, r"cat: argument 'tensors' must be a list or tuple"),
    ("pad odd length", lambda m, F: F.pad(m.randn(2, 3), (1, 2, 3)), ValueError, r"pad: argument 'pad' must be a tuple of ints of even length"),
    ("pad reflect too large", lambda m, F: F.pad(m.randn(1, 2, 3), (3, 0), mode="reflect"), ValueError, r"pad: reflect padding \(3, 0\) must be smaller"),
    ("pad unknown mode", lambda m, F: F.pad(m.randn(2, 3), (1, 1), mode="wrap"), ValueError, r"pad: mode must be one of"),
    ("dropout p", lambda m, F: F.dropout(m.randn(3), p=1.5), ValueError, r"dropout: probability 'p' must be a number in \[0, 1\], got 1.5"),
    ("softmax dim", lambda m, F: F.softmax(m.randn(2, 3), dim=2), IndexError, r"softmax: dim 2 is out of range"),
    ("leaky_relu slope str", lambda m, F: F.leaky_relu(m.randn(3), "x"), TypeError, r"leaky_relu: argument 'negative_slope' must be a number"),
    ("gelu approximate", lambda m, F: F.gelu(m.randn(3), approximate="fast"), ValueError, r"gelu: approximate must be 'none' or 'tanh'"),
    ("gather float index", lambda m, F: m.gather(m.randn(2, 3), 1, m.tensor([[0.0]])), TypeError, r"gather: argument 'index' must have an integer dtype"),
    ("gather index out of range", lambda m, F: m.gather(m.randn(2, 3), 1, m.tensor([[3]])), IndexError, r"gather: index out of range for dim 1 of size 3"),
    ("mean of integers", lambda m, F: m.mean(m.tensor([1, 2])), TypeError, r"mean: expected a floating input"),
    ("zeros negative size", lambda m, F: m.zeros(2, -1), ValueError, r"zeros: size must be non-negative ints"),
    ("tensor ragged", lambda m, F: m.tensor([[1, 2], [3]]), TypeError, r"tensor: cannot make a tensor from list"),
    ("tensor unknown dtype", lambda m, F: m.tensor([1.0], dtype="complex7"), TypeError, r"tensor: unknown dtype"),
    ("device gpu", lambda m, F: m.device("gpu"), ValueError, r"device: expected 'cpu', 'cuda' or 'cuda:N', got 'gpu'"),
    ("manual_seed float", lambda m, F: m.manual_seed(1.5), TypeError, r"manual_seed: seed must be an int"),
    ("view of an incompatible layout", lambda m, F: m.randn(2, 3).t().view(6), ValueError, r"view: a tensor of shape \(3, 2\) with strides \(1, 3\) cannot be viewed as shape \(6,\)"),
    ("stack shapes", lambda m, F: m.stack([m.randn(2, 3), m.randn(2, 4)]), ValueError, r"stack: tensors\[1\] has shape \(2, 4\), expected \(2, 3\)"),
    ("mm shapes", lambda m, F: m.mm(m.randn(2, 3), m.randn(4, 2)), ValueError, r"mm: shapes \(2, 3\) and \(4, 2\) cannot be multiplied"),
    ("split sizes", lambda m, F: m.split(m.randn(5), [2, 2]), ValueError, r"split: sections \[2, 2\] sum to 4, but dim 0 has size 5"),
    ("narrow past the end", lambda m, F: m.randn(3).narrow(0, 2, 5), ValueError, r"narrow: start \(2\) \+ length \(5\) exceeds dim 0 of size 3"),
    ("where shapes", lambda m, F: m.where(m.tensor([True, False]), m.randn(3), m.randn(3)), ValueError, r"where: shapes \(2,\), \(3,\), \(3,\) cannot be broadcast"),
    ("masked_fill float mask", lambda m, F: m.randn(3).masked_fill(m.tensor([1.0, 0, 0]), 0.0), TypeError, r"masked_fill: mask must be a bool tensor, got minidl.float32"),
    ("index_select float index", lambda m, F: m.index_select(m.randn(3), 0, m.tensor([0.0])), TypeError, r"index_select: index must be a 0-d or 1-D integer tensor"),
    ("embedding 1-D weight", lambda m, F: F.embedding(m.tensor([0]), m.randn(3)), ValueError, r"embedding: weight must be 2-D"),
    ("one_hot class out of range", lambda m, F: F.one_hot(m.tensor([5]), 3), ValueError, r"one_hot: class values must be in \[0, 3\)"),
    ("max over an empty dim", lambda m, F: m.randn(0, 3).max(0), ValueError, r"max: cannot reduce over an empty dimension \(shape \(0, 3\)\)"),
    ("nll_loss class out of range", lambda m, F: F.nll_loss(m.randn(4, 3), m.tensor([0, 1, 2, 3])), ValueError, r"nll_loss: target holds class index 3, outside \[0, 2\]"),
    ("cross_entropy int32 labels", lambda m, F: F.cross_entropy(m.randn(4, 3), m.tensor([0, 1, 2, 0]).int()), TypeError, r"cross_entropy: expected target dtype to be int64 \(Long\) or uint8 \(Byte\), but got minidl.int32; convert the class indices with target.long\(\)"),
    ("nll_loss int16 labels", lambda m, F: F.nll_loss(m.randn(4, 3), m.tensor([0, 1, 2, 0]).short()), TypeError, r"nll_loss: expected target dtype to be int64 \(Long\) or uint8 \(Byte\), but got minidl.int16; .*target.long\(\)"),
    ("cross_entropy uint8 labels per pixel", lambda m, F: F.cross_entropy(m.randn(2, 3, 4), m.zeros(2, 4, dtype=m.uint8)), TypeError, r"cross_entropy: expected target dtype int64 \(Long\) for an input with dims after \(N, C\), but got minidl.uint8; .*target.long\(\)"),
    ("add_ growing the tensor", lambda m, F: m.randn(3).add_(m.randn(2, 3)), ValueError, r"add_: an operand of shape \(2, 3\) does not broadcast to the tensor's shape \(3,\)"),
    ("copy_ unbroadcastable", lambda m, F: m.randn(3).copy_(m.randn(2)), ValueError, r"copy_: an operand of shape \(2,\) does not broadcast to the tensor's shape \(3,\)"),
    ("item of three elements", lambda m, F: m.randn(3).item(), ValueError, r"item\(\): only one-element tensors can be converted to a Python scalar, got shape \(3,\)"),
    ("backward of a non-scalar", lambda m, F: (m.randn(3, requires_grad=True) * 2).backward(), RuntimeError, r"backward: grad can be implicitly created only for scalar outputs"),
    ("backward after an in-place change", _backward_after_an_in_place_change, RuntimeError, r"exp: one of the tensors needed for gradient computation has been modified by an in-place operation"),
    ("requires_grad on integers", lambda m, F: m.tensor([1]).requires_grad_(), RuntimeError, r"requires_grad_: only floating point tensors can require gradients"),
    ("Size of floats", lambda m, F: m.Size([2.5]), TypeError, r"Size\(\) takes an iterable of 'int' \(item 0 is 'float'\)"),
]

# Where torch answers a call otherwise; test_the_error_is_torchs_class_too checks that each entry stays true.
TORCH_ACCEPTS = {
    "adaptive_avg_pool2d size 0": "torch returns an empty tensor; minidl refuses an output size of 0",
    "manual_seed float": "torch truncates 1.5 to 1; minidl refuses a seed that is not an int",
}
TORCH_DIFFERS = {
    "tensor ragged": "torch raises ValueError; minidl's TypeError says that the data is not a grid of numbers",
    "pad unknown mode": "torch raises NotImplementedError, a RuntimeError: `except RuntimeError` catches both",
}


@pytest.mark.parametrize("name, call, exc, pattern", CASES, ids=[c[0] for c in CASES])
def test_bad_input_raises_a_clear_error(name, call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call(minidl, F)


@pytest.mark.filterwarnings("ignore:Using a target size:UserWarning")  # torch's, for mse_loss's mismatched shapes
@pytest.mark.parametrize("name, call, exc, pattern", CASES, ids=[c[0] for c in CASES])
def test_the_error_is_torchs_class_too(name, call, exc, pattern):
    """minidl's error is an instance of the class torch raises for the same call (a torch program's except clause
    catches it) and still the ValueError/TypeError/IndexError above."""
    torch = pytest.importorskip("torch")
    with pytest.raises(exc) as mine:
        call(minidl, F)
    if name in TORCH_ACCEPTS:
        call(torch, torch.nn.functional)
        return
    with pytest.raises(Exception) as theirs:
        call(torch, torch.nn.functional)
    assert isinstance(mine.value, type(theirs.value)) != (name in TORCH_DIFFERS), \
        f"minidl raised {type(mine.value).__mro__}, torch {type(theirs.value).__name__}: {theirs.value}"


def test_the_error_classes_are_public_and_catchable_both_ways():
    errors = minidl.errors
    for cls, bases in ((errors.RuntimeValueError, (ValueError, RuntimeError)),
                       (errors.RuntimeTypeError, (TypeError, RuntimeError)),
                       (errors.RuntimeIndexError, (IndexError, RuntimeError)),
                       (errors.IndexValueError, (ValueError, IndexError))):
        assert all(issubclass(cls, b) for b in bases), cls
    with pytest.raises(RuntimeError) as info:
        minidl.randn(2, 3) @ minidl.randn(4, 2)
    assert type(info.value) is errors.RuntimeValueError


def test_argument_types_stay_type_errors_and_dims_index_errors():
    # as torch: a wrong Python type is a TypeError, a dim out of range an IndexError, neither a RuntimeError
    for call, exc in ((lambda: minidl.randn(3) + "a", TypeError), (lambda: F.leaky_relu(minidl.randn(3), "x"), TypeError),
                      (lambda: minidl.randn(2, 3).sum(2), IndexError), (lambda: minidl.randn(2)[5], IndexError)):
        with pytest.raises(exc) as info:
            call()
        assert not isinstance(info.value, RuntimeError), info.value


def test_errors_are_raised_before_any_numpy_error():
    # a broadcasting mistake deep inside would surface as NumPy's own message; ours names the op
    with pytest.raises(ValueError) as info:
        F.linear(minidl.randn(2, 5), minidl.randn(3, 5), minidl.randn(4))
    assert str(info.value).startswith("linear: bias must have shape (3,)")
