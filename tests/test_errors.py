"""Bad input gets a ValueError/TypeError that names the op, the argument, what was expected and what came."""
import numpy as np
import pytest

import minidl
import minidl.nn.functional as F

x4 = minidl.randn(2, 3, 8, 8)
w = minidl.randn(6, 1, 5, 5)

CASES = [
    # (call, exception, message pattern)
    (lambda: F.conv2d(x4, w), ValueError, r"conv2d: input has 3 channels, weight expects 1 \(weight shape \(6, 1, 5, 5\)"),
    (lambda: F.conv2d(minidl.randn(8, 8), w), ValueError, r"conv2d: expected input to be 3-D .* or 4-D .* got 2-D"),
    (lambda: F.conv2d(x4, minidl.randn(4, 3, 9, 9)), ValueError, r"conv2d: kernel size \(9, 9\) .* larger than the padded input \(8, 8\)"),
    (lambda: F.conv2d(x4, minidl.randn(4, 3, 3, 3), stride=0), ValueError, r"conv2d: argument 'stride' must be >= 1, got 0"),
    (lambda: F.conv2d(x4, minidl.randn(4, 3, 3, 3), padding=-1), ValueError, r"conv2d: argument 'padding' must be >= 0"),
    (lambda: F.conv2d(x4, minidl.randn(4, 3, 3, 3), padding="full"), ValueError, r"conv2d: padding must be .*'same'.*got 'full'"),
    (lambda: F.conv2d(x4, minidl.randn(4, 3, 3, 3), stride=2, padding="same"), ValueError, r"conv2d: padding='same' needs stride 1"),
    (lambda: F.conv2d(x4, minidl.randn(4, 3, 3, 3), minidl.randn(5)), ValueError, r"conv2d: bias must have shape \(4,\), got \(5,\)"),
    (lambda: F.conv2d(x4, minidl.randn(4, 1, 3, 3), groups=2), ValueError, r"conv2d: input has 3 channels, weight expects 2"),
    (lambda: F.conv2d(x4.numpy(), w), TypeError, r"conv2d: argument 'input' must be a minidl.Tensor, got ndarray"),
    (lambda: F.conv2d(minidl.tensor(np.ones((1, 1, 5, 5), dtype=np.int64)), w), TypeError, r"conv2d: argument 'input' must have a floating dtype"),
    (lambda: F.conv2d(x4.double(), minidl.randn(4, 3, 3, 3)), TypeError, r"conv2d: input dtype minidl.float64 and weight dtype minidl.float32 differ"),
    (lambda: F.conv_transpose2d(x4, minidl.randn(2, 3, 3, 3)), ValueError, r"conv_transpose2d: input has 3 channels, weight expects 2"),
    (lambda: F.conv_transpose2d(x4, minidl.randn(3, 3, 3, 3), stride=2, output_padding=2), ValueError, r"conv_transpose2d: output_padding"),
    (lambda: F.max_pool2d(x4, 2, padding=2), ValueError, r"max_pool2d: padding \(2, 2\) should be at most half of the kernel size"),
    (lambda: F.max_pool2d(x4, 9), ValueError, r"max_pool2d: .*kernel \(9, 9\) is larger than the padded input"),
    (lambda: F.max_pool2d(x4, 2, stride=0), ValueError, r"max_pool2d: argument 'stride' must be >= 1"),
    (lambda: F.max_pool2d(minidl.randn(8, 8), 2), ValueError, r"max_pool2d: expected input to be 3-D"),
    (lambda: F.avg_pool2d(x4, (2, 2, 2)), ValueError, r"avg_pool2d: argument 'kernel_size' must be an int or a pair"),
    (lambda: F.avg_pool2d(x4, 2, divisor_override=0), ValueError, r"avg_pool2d: divisor_override must be a nonzero int"),
    (lambda: F.adaptive_avg_pool2d(x4, 0), ValueError, r"adaptive_avg_pool2d: argument 'output_size' must be >= 1"),
    (lambda: F.batch_norm(x4, minidl.zeros(4), minidl.ones(4)), ValueError, r"batch_norm: running_mean must have shape \(3,\) for an input with 3 channels, got \(4,\)"),
    (lambda: F.batch_norm(x4, None, None), ValueError, r"batch_norm: running_mean and running_var are needed when training=False"),
    (lambda: F.batch_norm(minidl.randn(1, 3), None, None, training=True), ValueError, r"batch_norm: expected more than 1 value per channel"),
    (lambda: F.layer_norm(x4, (7,)), ValueError, r"layer_norm: normalized_shape \(7,\) must equal the last dims"),
    (lambda: F.group_norm(x4, 2), ValueError, r"group_norm: number of channels \(3\) must be divisible by num_groups \(2\)"),
    (lambda: F.linear(minidl.randn(2, 5), minidl.randn(3, 4)), ValueError, r"linear: input has 5 features .* weight expects 4 \(weight shape \(3, 4\)\)"),
    (lambda: F.cross_entropy(minidl.randn(4, 3), minidl.tensor([0, 1, 2, 3])), ValueError, r"cross_entropy: target holds class index 3, outside \[0, 2\]"),
    (lambda: F.cross_entropy(minidl.randn(4, 3), minidl.tensor([0, 1])), ValueError, r"cross_entropy: expected target of shape \(4,\)"),
    (lambda: F.cross_entropy(minidl.randn(4, 3), minidl.tensor([0.0, 1, 2, 0])), TypeError, r"cross_entropy: target \(4,\) of dtype minidl.float32 looks like class indices, which must be integers"),
    (lambda: F.cross_entropy(minidl.randn(4, 3), minidl.tensor([0, 1, 2, 0]), reduction="avg"), ValueError, r"cross_entropy: reduction must be"),
    (lambda: F.nll_loss(minidl.randn(4, 3), minidl.tensor([0, 1, 2, 0]), weight=minidl.ones(4)), ValueError, r"nll_loss: weight must have shape \(3,\)"),
    (lambda: F.mse_loss(minidl.randn(4), minidl.randn(5)), ValueError, r"mse_loss: target shape \(5,\) must equal input shape \(4,\)"),
    (lambda: F.binary_cross_entropy(minidl.randn(4) + 3, minidl.rand(4)), ValueError, r"binary_cross_entropy: input must hold probabilities"),
    (lambda: minidl.randn(2, 3) + minidl.randn(4), ValueError, r"add: shapes \(2, 3\), \(4,\) cannot be broadcast"),
    (lambda: minidl.randn(2, 3) @ minidl.randn(4, 2), ValueError, r"matmul: shapes \(2, 3\) and \(4, 2\) cannot be multiplied"),
    (lambda: minidl.randn(2, 3) + "a", TypeError, r"add: argument 'other' must be a Tensor or a number, got str"),
    (lambda: minidl.randn(2, 3).reshape(4, 2), ValueError, r"reshape: shape \(4, 2\) is invalid for input of size 6"),
    (lambda: minidl.randn(2, 3).sum(2), IndexError, r"sum: dim 2 is out of range for a tensor with 2 dimensions"),
    (lambda: minidl.randn(2, 3).permute(0, 0), ValueError, r"permute: dims .* repeat a dimension"),
    (lambda: minidl.randn(2, 3).expand(4, 3), ValueError, r"expand: size 4 at dim 0 does not match"),
    (lambda: minidl.randn(2, 3)[5], IndexError, r"getitem: index 5 is out of bounds"),
    (lambda: minidl.cat([minidl.randn(2, 3), minidl.randn(2, 4)]), ValueError, r"cat: tensors\[1\] has shape \(2, 4\)"),
    (lambda: minidl.cat(minidl.randn(2, 3)), TypeError, r"cat: argument 'tensors' must be a list or tuple"),
    (lambda: F.pad(minidl.randn(2, 3), (1, 2, 3)), ValueError, r"pad: argument 'pad' must be a tuple of ints of even length"),
    (lambda: F.pad(minidl.randn(1, 2, 3), (3, 0), mode="reflect"), ValueError, r"pad: reflect padding \(3, 0\) must be smaller"),
    (lambda: F.pad(minidl.randn(2, 3), (1, 1), mode="wrap"), ValueError, r"pad: mode must be one of"),
    (lambda: F.dropout(minidl.randn(3), p=1.5), ValueError, r"dropout: probability 'p' must be a number in \[0, 1\], got 1.5"),
    (lambda: F.softmax(minidl.randn(2, 3), dim=2), IndexError, r"softmax: dim 2 is out of range"),
    (lambda: F.leaky_relu(minidl.randn(3), "x"), TypeError, r"leaky_relu: argument 'negative_slope' must be a number"),
    (lambda: F.gelu(minidl.randn(3), approximate="fast"), ValueError, r"gelu: approximate must be 'none' or 'tanh'"),
    (lambda: minidl.gather(minidl.randn(2, 3), 1, minidl.tensor([[0.0]])), TypeError, r"gather: argument 'index' must have an integer dtype"),
    (lambda: minidl.gather(minidl.randn(2, 3), 1, minidl.tensor([[3]])), IndexError, r"gather: index out of range for dim 1 of size 3"),
    (lambda: minidl.mean(minidl.tensor([1, 2])), TypeError, r"mean: expected a floating input"),
    (lambda: minidl.zeros(2, -1), ValueError, r"zeros: size must be non-negative ints"),
    (lambda: minidl.tensor([[1, 2], [3]]), TypeError, r"tensor: cannot make a tensor from list"),
    (lambda: minidl.tensor([1.0], dtype="complex7"), TypeError, r"tensor: unknown dtype"),
    (lambda: minidl.device("gpu"), ValueError, r"device: expected 'cpu', 'cuda' or 'cuda:N', got 'gpu'"),
    (lambda: minidl.manual_seed(1.5), TypeError, r"manual_seed: seed must be an int"),
]


@pytest.mark.parametrize("call, exc, pattern", CASES, ids=[f"{i}" for i in range(len(CASES))])
def test_bad_input_raises_a_clear_error(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def test_errors_are_raised_before_any_numpy_error():
    # a broadcasting mistake deep inside would surface as NumPy's own message; ours names the op
    with pytest.raises(ValueError) as info:
        F.linear(minidl.randn(2, 5), minidl.randn(3, 5), minidl.randn(4))
    assert str(info.value).startswith("linear: bias must have shape (3,)")
