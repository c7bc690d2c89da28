"""The op table: one row per registered op, with its torch reference and sample inputs.

Generic tests in tests/test_ops.py take every row through forward vs torch, backward vs torch with a
random upstream gradient, and a float64 numerical gradcheck, in float32 and float64. Samples cover
values in [-2, 2], broadcasting, batch size 1, non-square kernels, strides and padding, odd sizes and
non-contiguous arrays.
"""
import contextlib
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as TF

import minidl
import minidl.nn.functional as F
from minidl.autograd.function import Function


class A:
    """A floating array to generate: uniform in [low, high] (or |x| >= away), optionally non-contiguous."""

    def __init__(self, *shape, low=-2.0, high=2.0, away=0.0, grad=True, nc=False):
        self.shape, self.low, self.high, self.away, self.grad, self.nc = shape, low, high, away, grad, nc

    def make(self, rng, dtype):
        shape = self.shape + (2,) if self.nc else self.shape
        x = np.asarray(rng.uniform(self.low, self.high, size=shape))
        if self.away:
            x = np.sign(x) * (self.away + np.abs(x) * (self.high - self.away) / self.high)
            x = np.asarray(x)
            x[x == 0] = self.away
        x = x.astype(dtype)
        return x[..., 0] if self.nc else x  # every other element: a non-contiguous view


def channels_last(a):
    """The same values, laid out NHWC in memory (strides make it NCHW in shape), as torch's channels_last."""
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


class I:  # noqa: E742  (I for integer arrays, next to A and B)
    """An int64 array with values in [low, high)."""
    grad = False

    def __init__(self, *shape, high, low=0):
        self.shape, self.low, self.high = shape, low, high

    def make(self, rng, dtype):
        return rng.integers(self.low, self.high, size=self.shape).astype(np.int64)


class B:
    """A bool array."""
    grad = False

    def __init__(self, *shape):
        self.shape = shape

    def make(self, rng, dtype):
        return rng.random(self.shape) < 0.5


class ScatterIndex(I):
    """An int64 index with no repeats along ``dim`` (scatter's result is then well defined): each slice along
    ``dim`` is a random permutation of range(high), cut to the shape."""

    def __init__(self, shape, high, dim):
        super().__init__(*shape, high=high)
        self.dim = dim

    def make(self, rng, dtype):
        if not self.shape:
            return np.zeros((), dtype=np.int64)
        moved = np.moveaxis(np.empty(self.shape), self.dim, -1).shape
        perms = np.argsort(rng.random(moved[:-1] + (self.high,)), axis=-1)[..., :moved[-1]]
        return np.moveaxis(perms, -1, self.dim).astype(np.int64)


@dataclass
class S:
    """One sample: positional args (A/I/B specs become arrays, anything else passes as is) and kwargs."""
    args: tuple
    kwargs: dict = field(default_factory=dict)

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


@dataclass
class OpInfo:
    name: str
    fn: object                # minidl callable
    ref: object               # torch callable, same arguments
    samples: list
    grad: bool = True         # differentiable: backward and gradcheck tests run
    random: bool = False      # seed minidl before each call (the reference reseeds the same way)
    dtypes: tuple = (np.float32, np.float64)
    no_gradcheck: tuple = ()  # sample indices whose float64 finite differences cannot be exact
    variant: str = ""         # tells apart rows of one op (e.g. batch_norm 'eval'); part of test ids
    twice: bool = None        # differentiable twice; None: as the op's Function classes declare
    via: str = ""             # the op whose Functions this one is made of (conv1d: conv2d), for `twice` and errors
    nan_vector: bool = False  # elementwise, and torch's vectorised loop and its scalar tail disagree at NaN: the
    #                           NaN test compares on an input long enough for the vector loop on any CPU

    def __post_init__(self):
        if self.twice is None:
            self.twice = Function.op_differentiable_twice(self.via or self.name)

    @property
    def id(self):
        return f"{self.name}.{self.variant}" if self.variant else self.name


def make_inputs(sample, dtype, seed):
    rng = np.random.default_rng(seed)
    args = [a.make(rng, dtype) if isinstance(a, (A, I, B)) else a for a in sample.args]
    requires = [isinstance(a, A) and a.grad for a in sample.args]
    return args, requires


def _t(x):
    return torch.as_tensor(x)


# The device the op table runs minidl on (tests/test_gpu.py and test_strict_device.py set 'cuda'): the references of
# random ops draw their masks from that device's generator, as minidl does. CuPy's generator gives other numbers
# than NumPy's for the same seed (a real GPU showed it; tests/fake_cupy.py's stand-in now does the same).
DEVICE = "cpu"


def _uniform(shape, dtype):
    """``rand(shape)`` drawn as minidl draws it on DEVICE after manual_seed(0), brought to the host."""
    minidl.manual_seed(0)
    return minidl.backend.to_device(minidl.backend.generator(DEVICE).random(tuple(shape), dtype=dtype), "cpu")


def _dropout_ref(x, p=0.5, training=True):
    keep = _uniform(x.shape, x.detach().numpy().dtype) >= p
    return x * torch.tensor((keep / (1.0 - p)).astype(x.detach().numpy().dtype)) if training else x


def _dropout2d_ref(x, p=0.5, training=True):
    if x.ndim < 2:
        raise RuntimeError("Feature dropout requires at least 2 dimensions in the input")  # as torch
    lead = 1 if x.ndim == 3 else 2
    dt = x.detach().numpy().dtype
    keep = _uniform(tuple(x.shape[:lead]) + (1,) * (x.ndim - lead), dt) >= p
    return x * torch.tensor((keep / (1.0 - p)).astype(dt)) if training else x


def _bn(training):
    def fn(x, rm, rv, w=None, b=None, **kw):
        return F.batch_norm(x, rm, rv, w, b, training=training, **kw)

    def ref(x, rm, rv, w=None, b=None, **kw):
        return TF.batch_norm(x, rm, rv, w, b, training=training, **kw)
    return fn, ref


def _binary(name, tfn, extra=()):
    return OpInfo(name, getattr(F, name), tfn, [
        S(A(2, 3), A(2, 3)),
        S(A(4, 1, 3), A(5, 1)),               # broadcasting both ways
        S(A(1, 3, nc=True), A(3)),            # batch 1, non-contiguous
        S(A(3, 5), 1.5),                      # a Python scalar
        *extra])


_bn_train_fn, _bn_train_ref = _bn(True)
_bn_eval_fn, _bn_eval_ref = _bn(False)
_pos = dict(low=0.2, high=2.0)

def _math_attention(lib):
    """torch's reference (math) attention kernel for the block (a no-op for minidl). Its CPU flash kernel differs at
    NaN only: a query row of NaN scores gives the output of a fully masked row (0) there, with NaN gradients."""
    if lib is torch:
        from torch.nn.attention import SDPBackend, sdpa_kernel
        return sdpa_kernel(SDPBackend.MATH)
    return contextlib.nullcontext()


def _sdpa_ref(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, *, scale=None, enable_gqa=False):
    """torch's attention by its reference (math) kernel; with dropout, written out with the weights dropped by the
    mask minidl draws (``rand(scores.shape) >= p`` on DEVICE after manual_seed(0))."""
    if dropout_p == 0:
        with _math_attention(torch):
            return TF.scaled_dot_product_attention(q, k, v, attn_mask, 0.0, is_causal, scale=scale, enable_gqa=enable_gqa)
    if enable_gqa:
        k = k.repeat_interleave(q.shape[-3] // k.shape[-3], -3)
        v = v.repeat_interleave(q.shape[-3] // v.shape[-3], -3)
    s = q @ k.transpose(-2, -1) * (1 / np.sqrt(q.shape[-1]) if scale is None else scale)
    if is_causal:
        attn_mask = torch.ones(s.shape[-2:], dtype=torch.bool).tril()
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:  # as torch's math kernel: -inf added (gradients pass the masked scores)
            attn_mask = torch.zeros(attn_mask.shape, dtype=s.dtype).masked_fill(~attn_mask, float("-inf"))
        s = s + attn_mask
    w = torch.ops.aten._safe_softmax(s, -1)
    dt = q.detach().numpy().dtype
    keep = _uniform(w.shape, dt) >= dropout_p
    return (w * torch.tensor((keep * (1.0 / (1.0 - dropout_p) if dropout_p < 1 else 0.0)).astype(dt))) @ v


def _mha(lib, need_weights=True):
    """multi_head_attention_forward with packed weights: (output, weights), or the output alone without weights.
    Masks come positionally (the generic tests make tensors of positional arrays only). ``b_qv`` holds the query's
    and value's input biases; the key's is 0: its gradient is 0 in exact arithmetic (softmax ignores a constant
    added to a row), so only float32 rounding noise would be compared."""
    def fn(q, k, v, heads, w, b_qv, out_w, out_b, bias_k=None, bias_v=None, key_padding_mask=None, attn_mask=None,
           **kw):
        e = q.shape[-1] if q.ndim else 0
        b = None if b_qv is None else lib.cat([b_qv[:e], lib.zeros(e, dtype=b_qv.dtype, device=b_qv.device), b_qv[e:]])
        with _math_attention(lib):
            out = lib.nn.functional.multi_head_attention_forward(
                q, k, v, e, heads, w, b, bias_k, bias_v, kw.pop("add_zero_attn", False), 0.0, out_w, out_b,
                key_padding_mask=key_padding_mask, attn_mask=attn_mask, need_weights=need_weights, **kw)
        return out if need_weights else out[0]
    return fn


class Fixed(B):
    """A given bool array (a mask with no fully masked row); zeros where a rule test changes the shape."""

    def __init__(self, array):
        super().__init__(*array.shape)
        self.array = array

    def make(self, rng, dtype):
        return self.array.copy() if self.shape == self.array.shape else np.zeros(self.shape, dtype=bool)


_CAUSAL_4 = Fixed(np.triu(np.ones((4, 4), dtype=bool), 1))  # True above the diagonal: masked out (MHA's convention)
_PAD_2x5 = Fixed(np.array([[False, False, True, False, True], [False, False, False, False, True]]))


OPS = [
    # ---- math ------------------------------------------------------------------------------------
    _binary("add", torch.add, [S(A(3, 4), A(3, 4), alpha=-0.5)]),
    _binary("sub", torch.sub, [S(A(3, 4), A(4), alpha=2)]),
    _binary("mul", torch.mul),
    OpInfo("div", F.div, torch.div, [S(A(2, 3), A(2, 3, away=0.5)), S(A(4, 1, 3), A(5, 1, away=0.5)),
                                     S(A(3, nc=True), 2.5), S(1.5, A(2, 3, away=0.5))]),
    OpInfo("pow", F.pow, torch.pow, [S(A(3, 4, **_pos), 2.5), S(A(3, 4), 3), S(A(2, 3), 2), S(A(2, 3), 0),
                                     S(A(3, 4, **_pos), A(3, 4)), S(A(2, 1, 3, **_pos), A(4, 3, nc=True)),
                                     S(2.0, A(3, 2))]),
    OpInfo("maximum", F.maximum, torch.maximum, [S(A(3, 4), A(3, 4)), S(A(2, 1, 3), A(4, 1)), S(A(1, 5, nc=True), A(5))]),
    OpInfo("minimum", F.minimum, torch.minimum, [S(A(3, 4), A(3, 4)), S(A(2, 1, 3), A(4, 1)), S(A(1, 5, nc=True), A(5))]),
    OpInfo("where", F.where, torch.where, [S(B(3, 4), A(3, 4), A(3, 4)), S(B(2, 1, 3), A(4, 1), A(3, nc=True)),
                                           S(B(3, 4), A(3, 4), 0.5)]),
    OpInfo("matmul", F.matmul, torch.matmul, [
        S(A(3, 4), A(4, 5)), S(A(2, 1, 3, 4), A(5, 4, 2)), S(A(4), A(4, 3)), S(A(3, 4), A(4)), S(A(4), A(4)),
        S(A(5, 3, nc=True), A(3, 2)), S(A(1, 3, 2), A(2, 3))]),
    OpInfo("neg", F.neg, torch.neg, [S(A(3, 4)), S(A(2, 3, nc=True))]),
    OpInfo("exp", F.exp, torch.exp, [S(A(3, 4)), S(A(2, 3, nc=True))]),
    OpInfo("log", F.log, torch.log, [S(A(3, 4, **_pos)), S(A(2, 3, nc=True, **_pos))]),
    OpInfo("sqrt", F.sqrt, torch.sqrt, [S(A(3, 4, **_pos)), S(A(2, 3, nc=True, **_pos))]),
    OpInfo("abs", F.abs, torch.abs, [S(A(3, 4, away=0.1)), S(A(2, 3, nc=True, away=0.1))]),
    OpInfo("erf", F.erf, torch.erf, [S(A(3, 4)), S(A(2, 3, nc=True))]),
    OpInfo("log1p", F.log1p, torch.log1p, [S(A(3, 4, low=-0.8, high=2.0)), S(A(2, 3, nc=True, low=-0.8, high=2.0))]),
    OpInfo("expm1", F.expm1, torch.expm1, [S(A(3, 4)), S(A(2, 3, nc=True))]),
    OpInfo("log2", F.log2, torch.log2, [S(A(3, 4, **_pos)), S(A(2, 3, nc=True, **_pos))]),
    OpInfo("log10", F.log10, torch.log10, [S(A(3, 4, **_pos)), S(A(2, 3, nc=True, **_pos))]),
    OpInfo("sin", F.sin, torch.sin, [S(A(3, 4)), S(A(2, 3, nc=True))]),
    OpInfo("cos", F.cos, torch.cos, [S(A(3, 4)), S(A(2, 3, nc=True))]),
    OpInfo("atan2", F.atan2, torch.atan2, [S(A(3, 4, away=0.3), A(3, 4, away=0.3)),
                                           S(A(2, 1, 3, away=0.3), A(4, 1, away=0.3)), S(A(3, nc=True, away=0.3), A(3))]),
    OpInfo("lerp", F.lerp, torch.lerp, [S(A(3, 4), A(3, 4), 0.3), S(A(2, 1, 3), A(4, 1), A(4, 3)),
                                        S(A(3, nc=True), A(3), 1.5)]),
    OpInfo("addcmul", F.addcmul, torch.addcmul, [S(A(3, 4), A(3, 4), A(3, 4)), S(A(4), A(2, 1), A(2, 4), value=-0.5),
                                                 S(A(2, 3, nc=True), A(3), A(2, 1), value=2)]),
    OpInfo("clamp_min", F.clamp_min, torch.clamp_min, [S(A(3, 4), -0.5), S(A(2, 3, nc=True), A(3))]),
    OpInfo("clamp_max", F.clamp_max, torch.clamp_max, [S(A(3, 4), 0.5), S(A(2, 3, nc=True), A(2, 1))]),
    OpInfo("clamp", F.clamp, torch.clamp, [S(A(3, 4), -0.5, 0.7), S(A(3, 4), min=-1.0), S(A(2, 3, nc=True), max=0.3),
                                           S(A(3, 4), A(3, 4), A(4, low=1.0, high=2.0))]),
    *[OpInfo(n, getattr(F, n), getattr(torch, n), [S(A(3, 4), A(3, 4)), S(A(2, 1, 3), A(4, 1)), S(A(3, 4), 0.0)],
             grad=False) for n in ("eq", "ne", "lt", "le", "gt", "ge")],
    OpInfo("logical_not", F.logical_not, torch.logical_not, [S(B(3, 4))], grad=False),
    # ---- shape -----------------------------------------------------------------------------------
    OpInfo("reshape", F.reshape, lambda x, *s: torch.reshape(x, s),
           [S(A(2, 3, 4), 6, 4), S(A(2, 3, 4), -1), S(A(3, 4, nc=True), 2, -1, 3), S(A(1, 5), 5, 1)]),
    OpInfo("permute", F.permute, lambda x, *d: x.permute(*d), [S(A(2, 3, 4), 2, 0, 1), S(A(2, 3, nc=True), 1, 0)]),
    OpInfo("transpose", F.transpose, torch.transpose, [S(A(2, 3, 4), 0, 2), S(A(2, 3, 4, nc=True), -1, 1)]),
    OpInfo("t", F.t, torch.t, [S(A(3, 4)), S(A(5))]),
    OpInfo("flatten", F.flatten, torch.flatten, [S(A(2, 3, 4)), S(A(2, 3, 4, 5), 1), S(A(2, 3, 4, 5, nc=True), 1, 2)]),
    OpInfo("squeeze", F.squeeze, lambda x, *a: torch.squeeze(x, *a), [S(A(1, 3, 1, 2)), S(A(1, 3, 1, 2), 2), S(A(3, 1), 0)]),
    OpInfo("unsqueeze", F.unsqueeze, torch.unsqueeze, [S(A(3, 4), 0), S(A(3, 4), -1), S(A(3, 4, nc=True), 1)]),
    OpInfo("expand", F.expand, lambda x, *s: x.expand(*s), [S(A(3, 1), 3, 4), S(A(1, 3), 2, -1, 3), S(A(4, nc=True), 2, 4)]),
    OpInfo("sum_to", F.sum_to, lambda x, s: x.sum_to_size(s), [S(A(3, 4), (1, 4)), S(A(2, 3, 4), (3, 1)), S(A(2, 3), (2, 3))]),
    OpInfo("getitem", F.getitem, lambda x, k: x[tuple(_t(i) if isinstance(i, np.ndarray) else i for i in k)
                                                 if isinstance(k, tuple) else _t(k) if isinstance(k, np.ndarray) else k], [
        S(A(4, 5), (slice(1, None, 2), 3)),
        S(A(3, 4, 5), (Ellipsis, slice(None, -1), None)),
        S(A(5, 3), 2),
        S(A(5, 3), np.array([0, 2, 2, 4])),                   # repeated indices add up in backward
        S(A(4, 5, nc=True), (np.array([1, 3]), np.array([0, 4]))),
        S(A(4, 5), (slice(None), np.array([[1, 1], [2, 0]]))),
        S(A(3, 4), np.array([[True, False, True, True]] * 3)),
    ]),
    OpInfo("cat", lambda *xs, dim=0: F.cat(list(xs), dim), lambda *xs, dim=0: torch.cat(list(xs), dim),
           [S(A(2, 3), A(4, 3)), S(A(2, 3), A(2, 1, nc=True), A(2, 2), dim=1), S(A(1, 2, 3), A(1, 2, 3), dim=-1)]),
    OpInfo("stack", lambda *xs, dim=0: F.stack(list(xs), dim), lambda *xs, dim=0: torch.stack(list(xs), dim),
           [S(A(2, 3), A(2, 3)), S(A(2, 3), A(2, 3, nc=True), A(2, 3), dim=2)]),
    OpInfo("split", F.split, torch.split, [S(A(5, 3), 2), S(A(3, 7), [2, 4, 1], 1), S(A(4, 3, nc=True), 4)]),
    OpInfo("chunk", F.chunk, torch.chunk, [S(A(5, 3), 2), S(A(3, 7), 3, 1), S(A(6, 2), 3)]),
    OpInfo("pad", F.pad, TF.pad, [
        S(A(2, 3, 4), (1, 2)), S(A(2, 3, 4, nc=True), (1, 0, 2, 1), value=0.5), S(A(2, 3, 4), (-1, 2, 0, -1)),
        S(A(2, 3, 5), (2, 1), mode="reflect"), S(A(1, 2, 3, 4), (1, 2, 2, 0), mode="replicate"),
        S(A(1, 2, 3, 4), (1, 3, 2, 1), mode="circular")]),
    OpInfo("gather", F.gather, torch.gather, [S(A(3, 4), 1, I(3, 2, high=4)), S(A(3, 4), 0, I(5, 4, high=3)),
                                              S(A(2, 3, 4, nc=True), -1, I(2, 3, 6, high=4))]),
    OpInfo("to", lambda x, d: F.to(x, d), lambda x, d: x.to(getattr(torch, np.dtype(d).name)),
           [S(A(3, 4), np.float64), S(A(3, 4), np.float32)], no_gradcheck=(1,)),  # 1 rounds to float32
    OpInfo("clone", F.clone, torch.clone, [S(A(3, 4)), S(A(3, 4, nc=True))]),
    OpInfo("contiguous", F.contiguous, lambda x: x.contiguous(), [S(A(3, 4)), S(A(3, 4, nc=True))]),
    # ---- reductions ------------------------------------------------------------------------------
    OpInfo("sum", F.sum, torch.sum, [S(A(3, 4)), S(A(3, 4, 5), 1), S(A(3, 4, 5, nc=True), (0, 2), True),
                                     S(A(1, 4), -1)]),
    OpInfo("mean", F.mean, torch.mean, [S(A(3, 4)), S(A(3, 4, 5), 1), S(A(3, 4, 5, nc=True), (0, -1), True)]),
    OpInfo("var", F.var, torch.var, [S(A(3, 4)), S(A(3, 4, 5), 1), S(A(3, 4, 5, nc=True), (0, 2), keepdim=True),
                                     S(A(3, 4), 1, correction=0), S(A(5, 2), 0, unbiased=False)]),
    OpInfo("std", F.std, torch.std, [S(A(3, 4)), S(A(3, 4, 5), 1, keepdim=True), S(A(3, 4, nc=True), 0, correction=0)]),
    OpInfo("max", F.max, torch.max, [S(A(3, 4)), S(A(3, 4, 5), 1), S(A(3, 4, nc=True), -1, True), S(A(3, 4), A(4))]),
    OpInfo("min", F.min, torch.min, [S(A(3, 4)), S(A(3, 4, 5), 1), S(A(3, 4, nc=True), 0, True), S(A(3, 4), A(4))]),
    OpInfo("amax", F.amax, torch.amax, [S(A(3, 4)), S(A(3, 4, 5), (0, 2)), S(A(3, 4, nc=True), 1, True)]),
    OpInfo("amin", F.amin, torch.amin, [S(A(3, 4)), S(A(3, 4, 5), (0, 2)), S(A(3, 4, nc=True), 1, True)]),
    OpInfo("argmax", F.argmax, torch.argmax, [S(A(3, 4)), S(A(3, 4, 5), 1), S(A(3, 4, nc=True), 0, True)], grad=False),
    OpInfo("argmin", F.argmin, torch.argmin, [S(A(3, 4)), S(A(3, 4, 5), 1), S(A(3, 4, nc=True), 0, True)], grad=False),
    OpInfo("logsumexp", F.logsumexp, torch.logsumexp, [S(A(3, 4), 1), S(A(3, 4, 5, nc=True), (0, 2), True),
                                                       S(A(1, 6), -1)]),
    # ---- activations -----------------------------------------------------------------------------
    OpInfo("relu", F.relu, TF.relu, [S(A(3, 4, away=0.01)), S(A(2, 3, 5, nc=True, away=0.01))]),
    OpInfo("leaky_relu", F.leaky_relu, TF.leaky_relu, [S(A(3, 4, away=0.01)), S(A(2, 5, nc=True, away=0.01), 0.2)]),
    OpInfo("elu", F.elu, TF.elu, [S(A(3, 4, away=0.01)), S(A(2, 5, nc=True, away=0.01), alpha=0.7)], nan_vector=True),
    OpInfo("gelu", F.gelu, TF.gelu, [S(A(3, 4)), S(A(2, 5, nc=True), approximate="tanh")]),
    OpInfo("silu", F.silu, TF.silu, [S(A(3, 4)), S(A(2, 5, nc=True))]),
    OpInfo("sigmoid", F.sigmoid, torch.sigmoid, [S(A(3, 4)), S(A(2, 5, nc=True))]),
    OpInfo("tanh", F.tanh, torch.tanh, [S(A(3, 4)), S(A(2, 5, nc=True))]),
    OpInfo("hardtanh", F.hardtanh, TF.hardtanh, [S(A(3, 4)), S(A(2, 5, nc=True), -0.5, 1.5)], nan_vector=True),
    OpInfo("relu6", F.relu6, TF.relu6, [S(A(3, 4, low=-8, high=8)), S(A(2, 5, nc=True, low=-8, high=8))], nan_vector=True),
    OpInfo("hardsigmoid", F.hardsigmoid, TF.hardsigmoid, [S(A(3, 4, low=-5, high=5)), S(A(2, 5, nc=True, low=-5, high=5))], nan_vector=True),
    OpInfo("hardswish", F.hardswish, TF.hardswish, [S(A(3, 4, low=-5, high=5)), S(A(2, 5, nc=True, low=-5, high=5))], nan_vector=True),
    OpInfo("mish", F.mish, TF.mish, [S(A(3, 4)), S(A(2, 5, nc=True))]),
    OpInfo("prelu", F.prelu, TF.prelu, [S(A(2, 3, 4), A(3)), S(A(2, 3, 2, 2, nc=True), A(1)), S(A(5, 3), A(3))]),
    OpInfo("softplus", F.softplus, TF.softplus, [S(A(3, 4)), S(A(2, 5, nc=True), beta=2.0),
                                                 S(A(4, 5, low=-30, high=30, away=3.0), threshold=10.0)]),
    OpInfo("softmax", F.softmax, TF.softmax, [S(A(3, 4), 1), S(A(2, 3, 4, nc=True), 0), S(A(1, 5), -1)]),
    OpInfo("log_softmax", F.log_softmax, TF.log_softmax, [S(A(3, 4), 1), S(A(2, 3, 4, nc=True), 0), S(A(1, 5), -1)]),
    OpInfo("dropout", F.dropout, _dropout_ref, [S(A(4, 5)), S(A(3, 6, nc=True), 0.3), S(A(3, 4), 0.5, False)],
           random=True),
    OpInfo("dropout2d", F.dropout2d, _dropout2d_ref, [S(A(4, 6, 3, 2)), S(A(5, 2, 3, nc=True), 0.3),
                                                      S(A(2, 3, 2, 2), 0.5, False)], random=True),
    # ---- losses ----------------------------------------------------------------------------------
    OpInfo("cross_entropy", F.cross_entropy, TF.cross_entropy, [
        S(A(5, 4), I(5, high=4)),
        S(A(1, 3), I(1, high=3)),                                   # batch 1
        S(A(5, 4, nc=True), I(5, high=4), A(4, low=0.2, grad=False), reduction="sum"),
        S(A(6, 4), I(6, high=4), ignore_index=1),
        S(A(6, 4), I(6, high=4), A(4, low=0.2, grad=False), ignore_index=2, label_smoothing=0.2),
        S(A(6, 4), I(6, high=4), label_smoothing=0.1, reduction="none"),
        S(A(2, 3, 3, 2), I(2, 3, 2, high=3)),                       # (N, C, H, W)
        S(A(4), I(high=4)),                                         # unbatched
        S(A(5, 4), A(5, 4, low=0.0, high=1.0)),                     # class probabilities
        S(A(5, 4), A(5, 4, low=0.0, high=1.0), A(4, low=0.2, grad=False), label_smoothing=0.3),
    ]),
    OpInfo("nll_loss", F.nll_loss, TF.nll_loss, [
        S(A(5, 4), I(5, high=4)), S(A(5, 4, nc=True), I(5, high=4), A(4, low=0.2, grad=False)),
        S(A(6, 3), I(6, high=3), ignore_index=0, reduction="sum"), S(A(2, 3, 4), I(2, 4, high=3), reduction="none")]),
    OpInfo("mse_loss", F.mse_loss, TF.mse_loss, [S(A(3, 4), A(3, 4)), S(A(2, 5, nc=True), A(2, 5), reduction="sum"),
                                                 S(A(4), A(4), reduction="none")]),
    OpInfo("huber_loss", F.huber_loss, TF.huber_loss,
           [S(A(3, 4), A(3, 4)), S(A(2, 5, nc=True), A(2, 5), reduction="sum", delta=0.5),
            S(A(3, 4), A(3, 4), reduction="none", delta=2.0)]),
    OpInfo("smooth_l1_loss", F.smooth_l1_loss, TF.smooth_l1_loss,
           [S(A(3, 4), A(3, 4)), S(A(2, 5, nc=True), A(2, 5), reduction="sum", beta=0.5),
            S(A(3, 4), A(3, 4), reduction="none", beta=0.0)]),
    OpInfo("kl_div", F.kl_div, TF.kl_div,
           [S(A(3, 4), A(3, 4, **_pos)), S(A(2, 5), A(2, 5, **_pos), reduction="batchmean"),
            S(A(3, 4, nc=True), A(3, 4), reduction="sum", log_target=True), S(A(3, 4), A(4, **_pos), reduction="none")]),
    OpInfo("l1_loss", F.l1_loss, TF.l1_loss, [S(A(3, 4), A(3, 4)), S(A(2, 5, nc=True), A(2, 5), reduction="sum"),
                                              S(A(4), A(4), reduction="none")]),
    OpInfo("binary_cross_entropy", F.binary_cross_entropy, TF.binary_cross_entropy, [
        S(A(3, 4, low=0.05, high=0.95), A(3, 4, low=0.0, high=1.0)),
        S(A(2, 5, low=0.05, high=0.95, nc=True), A(2, 5, low=0.0, high=1.0), A(5, low=0.2, grad=False),
          reduction="sum"),
        S(A(4, low=0.05, high=0.95), A(4, low=0.0, high=1.0), reduction="none")]),
    OpInfo("binary_cross_entropy_with_logits",
           lambda x, t, w=None, pw=None, **kw: F.binary_cross_entropy_with_logits(x, t, w, pos_weight=pw, **kw),
           lambda x, t, w=None, pw=None, **kw: TF.binary_cross_entropy_with_logits(x, t, w, pos_weight=pw, **kw), [
               S(A(3, 4), A(3, 4, low=0.0, high=1.0)),
               S(A(2, 5, nc=True), A(2, 5, low=0.0, high=1.0), A(5, low=0.2, grad=False), reduction="sum"),
               S(A(3, 4), A(3, 4, low=0.0, high=1.0), reduction="none"),
               # torch refuses gradients for weight and pos_weight
               S(A(3, 4), A(3, 4, low=0.0, high=1.0), None, A(4, low=0.5, grad=False)),
               S(A(3, 4, low=-30, high=30), A(3, 4, low=0.0, high=1.0), A(3, 1, low=0.2, grad=False),
                 A(4, low=0.5, grad=False))]),
    # ---- linear, conv ----------------------------------------------------------------------------
    OpInfo("linear", F.linear, TF.linear, [S(A(5, 4), A(3, 4), A(3)), S(A(1, 4), A(3, 4)),
                                           S(A(2, 3, 4, nc=True), A(5, 4), A(5))]),
    OpInfo("conv2d", F.conv2d, TF.conv2d, [
        S(A(2, 3, 7, 6), A(4, 3, 3, 2), A(4), stride=(2, 1), padding=(1, 0)),   # non-square kernel/stride
        S(A(1, 1, 9, 9), A(6, 1, 5, 5), A(6), padding=2),                        # LeNet's first layer, batch 1
        S(A(2, 2, 8, 7), A(3, 2, 3, 3), None, padding=2, dilation=(2, 1)),
        S(A(1, 4, 6, 5), A(6, 2, 3, 3), A(6), groups=2, stride=2, padding=1),
        S(A(2, 3, 5, 5), A(3, 1, 3, 3), A(3), groups=3, padding=1),              # depthwise
        S(A(2, 4, 7, 6), A(8, 1, 3, 3), A(8), groups=4, stride=2, padding=1),    # depthwise, multiplier 2
        S(A(1, 6, 6, 7), A(4, 3, 3, 2), None, groups=2, dilation=(1, 2), padding=(1, 0)),  # grouped, 3 per group
        S(A(1, 2, 6, 5), A(3, 2, 4, 2), A(3), padding="same", dilation=2),       # 'same' with even kernel
        S(A(2, 3, 5, 4, nc=True), A(2, 3, 1, 1), A(2)),                          # 1x1, non-contiguous input
        S(A(3, 6, 5), A(2, 3, 2, 3), A(2), padding="valid", stride=(1, 2)),      # unbatched
    ]),
    OpInfo("conv_transpose2d", F.conv_transpose2d, TF.conv_transpose2d, [
        S(A(2, 4, 3, 5), A(4, 3, 3, 2), A(3), stride=2, padding=1, output_padding=1),
        S(A(1, 4, 4, 3), A(4, 2, 3, 3), None, stride=(1, 2), groups=2, dilation=2),
        S(A(1, 2, 3, 3, nc=True), A(2, 3, 2, 2), A(3), stride=3, padding=(0, 1)),
        S(A(3, 4, 5), A(3, 2, 3, 3), A(2)),                                      # unbatched
    ]),
    # ---- pooling ---------------------------------------------------------------------------------
    OpInfo("max_pool2d", F.max_pool2d, TF.max_pool2d, [
        S(A(2, 3, 8, 8), 2),
        S(A(1, 2, 7, 6), (3, 2), (2, 1), 1),                      # non-square, padding with -inf
        S(A(2, 2, 7, 5), 3, 2, ceil_mode=True),                   # ceil_mode on odd sizes
        S(A(1, 2, 9, 8, nc=True), 3, 1, 1, 2),                    # dilation, non-contiguous
        S(A(2, 3, 6, 6), 2, return_indices=True),
        S(A(3, 5, 5), 2, 1),                                      # unbatched
        S(A(2, 3, 6, 7), (2, 3), 2, (1, 1), ceil_mode=True),
    ]),
    OpInfo("avg_pool2d", F.avg_pool2d, TF.avg_pool2d, [
        S(A(2, 3, 8, 8), 2),
        S(A(1, 2, 7, 6), (3, 2), (2, 1), 1),                      # count_include_pad=True (default)
        S(A(1, 2, 7, 6), (3, 2), (2, 1), 1, count_include_pad=False),
        S(A(2, 2, 7, 5, nc=True), 3, 2, 1, ceil_mode=True),
        S(A(2, 2, 7, 5), 3, 2, 1, ceil_mode=True, count_include_pad=False),
        S(A(1, 3, 5, 5), 3, 1, 1, divisor_override=4),
        S(A(3, 5, 5), 2),                                         # unbatched
    ]),
    OpInfo("adaptive_avg_pool2d", F.adaptive_avg_pool2d, TF.adaptive_avg_pool2d, [
        S(A(2, 3, 7, 5), (3, 2)), S(A(2, 3, 6, 6), 1), S(A(1, 2, 8, 8, nc=True), 4), S(A(2, 3, 5, 7), (None, 3)),
        S(A(3, 5, 4), 2)]),
    OpInfo("adaptive_max_pool2d", F.adaptive_max_pool2d, TF.adaptive_max_pool2d, [
        S(A(2, 3, 7, 5), (3, 2)), S(A(2, 3, 6, 6), 1), S(A(1, 2, 8, 8, nc=True), 4, True), S(A(3, 5, 4), 2)]),
    # ---- normalisation ---------------------------------------------------------------------------
    OpInfo("batch_norm", _bn_train_fn, _bn_train_ref, [
        S(A(4, 3, 5, 4), A(3, grad=False), A(3, low=0.5, grad=False), A(3), A(3)),
        S(A(1, 2, 3, 3, nc=True), A(2, grad=False), A(2, low=0.5, grad=False), A(2), A(2), momentum=0.3, eps=1e-3),
        S(A(5, 4), A(4, grad=False), A(4, low=0.5, grad=False)),                     # (N, C), no affine
        S(A(3, 2, 6), None, None, A(2), A(2)),                                       # (N, C, L), no running stats
    ]),
    OpInfo("batch_norm", _bn_eval_fn, _bn_eval_ref, [
        S(A(4, 3, 5, 4), A(3, grad=False), A(3, low=0.5, grad=False), A(3), A(3)),
        S(A(2, 4, nc=True), A(4, grad=False), A(4, low=0.5, grad=False)),
    ], variant="eval"),
    OpInfo("layer_norm", F.layer_norm,
           lambda x, ns, *a: TF.layer_norm(x, (ns,) if isinstance(ns, int) else ns, *a), [
        S(A(2, 3, 4), (4,), A(4), A(4)), S(A(2, 3, 4, nc=True), (3, 4), A(3, 4), A(3, 4)), S(A(1, 5), 5),
        S(A(3, 6), (6,), A(6), None, 1e-3)]),
    OpInfo("group_norm", F.group_norm, TF.group_norm, [
        S(A(2, 6, 3, 3), 3, A(6), A(6)), S(A(1, 4, 5, nc=True), 1, A(4), A(4)), S(A(2, 4, 2, 3), 4), S(A(3, 6), 2, A(6), A(6))]),
    OpInfo("conv1d", F.conv1d, TF.conv1d, [S(A(2, 4, 9), A(6, 2, 3), A(6), groups=2, padding=1),
                                           S(A(1, 3, 10, nc=True), A(4, 3, 2), None, 2, 0, 2),
                                           S(A(3, 8), A(5, 3, 3), padding="same"), S(A(2, 3, 7), A(2, 3, 1), stride=3)],
           via="conv2d"),
    OpInfo("max_pool1d", F.max_pool1d, TF.max_pool1d, [S(A(2, 3, 9), 2), S(A(1, 2, 10, nc=True), 3, 2, 1),
                                                       S(A(3, 8), 3, 1, 1, 2, True)], via="max_pool2d"),
    OpInfo("avg_pool1d", F.avg_pool1d, TF.avg_pool1d, [S(A(2, 3, 9), 2), S(A(1, 2, 10, nc=True), 3, 2, 1),
                                                       S(A(3, 8), 3, 2, 1, True, False)], via="avg_pool2d"),
    OpInfo("channel_shuffle", F.channel_shuffle, TF.channel_shuffle if hasattr(TF, "channel_shuffle") else
           torch.channel_shuffle, [S(A(2, 6, 3, 2), 3), S(A(1, 4, 5, nc=True), 2)]),
    OpInfo("embedding", F.embedding, TF.embedding, [S(I(2, 3, high=5), A(5, 4)), S(I(7, high=3), A(3, 2), padding_idx=1),
                                                     S(I(4, high=6), A(6, 3, nc=True), padding_idx=-1)],
           no_gradcheck=(1, 2)),  # the padding row's values count, its gradient is 0 by definition (as torch)
    OpInfo("unfold", F.unfold, TF.unfold, [S(A(2, 3, 6, 5), 3), S(A(1, 2, 7, 6, nc=True), (2, 3), (1, 2), 1, (2, 1)),
                                           S(A(3, 4, 4), 2, stride=2), S(A(2, 1, 5, 5), 1)]),
    OpInfo("fold", F.fold, TF.fold, [S(A(2, 27, 12), (6, 5), 3), S(A(1, 12, 16, nc=True), (7, 6), (2, 3), (1, 2), 1, (2, 1)),
                                     S(A(8, 4), (4, 4), 2, stride=2), S(A(2, 4, 16), (3, 3), 2, padding=1, stride=1)]),
    OpInfo("interpolate", F.interpolate, TF.interpolate, [
        S(A(2, 3, 4, 5), scale_factor=2), S(A(1, 2, 5, 7, nc=True), size=(3, 9)), S(A(2, 3, 5), size=8),
        S(A(2, 2, 5, 6), scale_factor=(1.7, 0.6)), S(A(1, 3, 4, 4), scale_factor=2.2)],
        variant="nearest"),
    OpInfo("interpolate", lambda x, **k: F.interpolate(x, mode="nearest-exact", **k),
           lambda x, **k: TF.interpolate(x, mode="nearest-exact", **k),
           [S(A(2, 3, 4, 5), scale_factor=2), S(A(1, 2, 5, 7, nc=True), size=(3, 9)), S(A(2, 3, 5), size=8)],
           variant="nearest_exact"),
    OpInfo("interpolate", lambda x, **k: F.interpolate(x, mode="bilinear", **k),
           lambda x, **k: TF.interpolate(x, mode="bilinear", **k), [
               S(A(2, 3, 4, 5), scale_factor=2), S(A(1, 2, 5, 7, nc=True), size=(3, 9)),
               S(A(2, 2, 5, 6), scale_factor=(1.7, 0.6), align_corners=True), S(A(1, 3, 4, 4), size=(8, 1)),
               S(A(1, 3, 4, 4), size=(1, 6), align_corners=True), S(A(2, 1, 6, 5), scale_factor=1.3,
                                                                    recompute_scale_factor=True)],
           variant="bilinear"),
    OpInfo("interpolate", lambda x, **k: F.interpolate(x, mode="linear", **k),
           lambda x, **k: TF.interpolate(x, mode="linear", **k),
           [S(A(2, 3, 5), scale_factor=2), S(A(1, 2, 7, nc=True), size=4, align_corners=True), S(A(2, 3, 4), size=1)],
           variant="linear"),
    OpInfo("interpolate", lambda x, **k: F.interpolate(x, mode="area", **k),
           lambda x, **k: TF.interpolate(x, mode="area", **k),
           [S(A(2, 3, 6, 4), scale_factor=0.5), S(A(1, 2, 5, 7, nc=True), size=(3, 9)), S(A(2, 3, 7), size=3)],
           variant="area", via="adaptive_avg_pool2d"),
    OpInfo("interpolate", lambda x, **k: F.interpolate(x, mode="bicubic", **k),
           lambda x, **k: TF.interpolate(x, mode="bicubic", **k), [
               S(A(2, 3, 4, 5), scale_factor=2), S(A(1, 2, 5, 7, nc=True), size=(3, 9)),
               S(A(2, 2, 5, 6), scale_factor=(1.7, 0.6), align_corners=True), S(A(1, 3, 4, 4), size=(8, 1)),
               S(A(1, 2, 6, 5), size=(1, 7), align_corners=True), S(A(2, 1, 6, 5), scale_factor=1.3,
                                                                    recompute_scale_factor=True),
               S(A(1, 1, 9, 8), scale_factor=0.4)],
           variant="bicubic"),
    OpInfo("instance_norm", F.instance_norm, TF.instance_norm, [
        S(A(2, 3, 4, 5)), S(A(1, 4, 5, 3, nc=True), None, None, A(4), A(4)), S(A(2, 3, 6), None, None, A(3), eps=1e-3),
        S(A(3, 2, 2, 3, 2))]),
    OpInfo("norm", F.norm, torch.norm, [
        S(A(3, 4)), S(A(3, 4), 3, 1), S(A(2, 3, 4, nc=True), 1.5, (0, 2), True), S(A(3, 4, away=0.1), 1, 0),
        S(A(3, 4, away=0.1), 0.5), S(A(5, away=0.1), -1), S(A(3, 4), float("inf"), 1), S(A(3, 4), -float("inf")),
        S(A(2, 3), "fro", (0, 1)), S(A(4, 3), 2, -1, True)]),
    OpInfo("norm", F.norm, torch.norm, [  # the nuclear norm: the sum of singular values (an SVD)
        S(A(3, 4), "nuc"), S(A(2, 3, 4, nc=True), "nuc", (2, 0), True), S(A(5, 3), "nuc", (-1, -2)),
        S(A(2, 4, 3), "nuc", (1, 2))], variant="nuc", via="nuclear_norm"),
    OpInfo("scatter", F.scatter, torch.scatter, [
        S(A(3, 5), 0, ScatterIndex((2, 5), 3, 0), A(2, 5)), S(A(4, 3, nc=True), 1, ScatterIndex((4, 2), 3, 1), A(4, 2)),
        S(A(2, 3, 4), -1, ScatterIndex((2, 3, 4), 4, 2), A(2, 3, 4)), S(A(3, 5), 0, ScatterIndex((2, 5), 3, 0), 1.5)]),
    OpInfo("scatter_add", F.scatter_add, torch.scatter_add, [
        S(A(3, 5), 0, I(2, 5, high=3), A(2, 5)), S(A(4, 3, nc=True), 1, I(4, 3, high=3), A(4, 3)),
        S(A(2, 3, 4), -1, I(2, 3, 4, high=4), A(2, 3, 4))]),
    # PyTorch's everyday ops (issue 12): composed of the ops above, or zero-gradient / bool results
    OpInfo("view", F.view, lambda x, *s: x.view(*s), [S(A(2, 3, 4), 6, 4), S(A(3, 4), -1), S(A(2, 3, nc=True), 6),
                                                     S(A(4, 6), (2, 2, 6))]),
    OpInfo("view_as", F.view_as, lambda x, o: x.view_as(o), [S(A(6), A(2, 3, grad=False)), S(A(2, 3), A(3, 2, grad=False))]),
    OpInfo("expand_as", F.expand_as, lambda x, o: x.expand_as(o),
           [S(A(3, 1), A(3, 4, grad=False)), S(A(4), A(2, 4, grad=False)), S(A(1, 3, nc=True), A(2, 3, grad=False))]),
    OpInfo("narrow", F.narrow, torch.narrow, [S(A(4, 5), 1, 1, 3), S(A(4, 5), 0, -2, 2), S(A(3, 4, nc=True), 1, 0, 4)]),
    OpInfo("unbind", F.unbind, torch.unbind, [S(A(3, 4)), S(A(3, 4), 1), S(A(2, 3, nc=True), -1)]),
    OpInfo("flip", F.flip, torch.flip, [S(A(3, 4), (0,)), S(A(2, 3, 4), (0, 2)), S(A(3, 4, nc=True), [1]), S(A(3), ())]),
    OpInfo("roll", F.roll, torch.roll, [S(A(3, 4), 1, 1), S(A(3, 4), (1, -2), (0, 1)), S(A(3, 4), 5),
                                       S(A(2, 5, nc=True), -1, 1)]),
    OpInfo("repeat", F.repeat, lambda x, *s: x.repeat(*s), [S(A(2, 3), 2, 1), S(A(3), 2, 2), S(A(2, 1, nc=True), 1, 3, 2)]),
    OpInfo("index_select", F.index_select, torch.index_select,
           [S(A(3, 4), 1, I(3, high=4)), S(A(5, 2), 0, I(7, high=5)), S(A(3, 4, nc=True), -1, I(2, high=4))]),
    OpInfo("square", F.square, torch.square, [S(A(3, 4)), S(A(2, 3, nc=True))]),
    OpInfo("reciprocal", F.reciprocal, torch.reciprocal, [S(A(3, 4, away=0.5)), S(A(2, 3, nc=True, away=0.5))]),
    OpInfo("rsqrt", F.rsqrt, torch.rsqrt, [S(A(3, 4, **_pos)), S(A(2, 3, nc=True, **_pos))]),
    *[OpInfo(n, getattr(F, n), getattr(torch, n), [S(A(3, 4, away=0.1)), S(A(2, 3, nc=True, away=0.1))])
      for n in ("sign", "floor", "ceil", "trunc")],
    OpInfo("round", F.round, torch.round, [S(A(3, 4, away=0.1)), S(A(2, 3, nc=True)), S(A(3, 4), decimals=1)]),
    OpInfo("isnan", F.isnan, torch.isnan, [S(A(3, 4))], grad=False),
    OpInfo("mm", F.mm, torch.mm, [S(A(3, 4), A(4, 5)), S(A(2, 3, nc=True), A(3, 2))]),
    OpInfo("bmm", F.bmm, torch.bmm, [S(A(2, 3, 4), A(2, 4, 5)), S(A(1, 2, 3, nc=True), A(1, 3, 2))]),
    OpInfo("outer", F.outer, torch.outer, [S(A(3), A(4)), S(A(5, nc=True), A(1))]),
    OpInfo("tril", F.tril, torch.tril, [S(A(4, 4)), S(A(3, 5), 1), S(A(2, 4, 3, nc=True), -1), S(A(2, 3), -5)]),
    OpInfo("triu", F.triu, torch.triu, [S(A(4, 4)), S(A(3, 5), -1), S(A(2, 4, 3, nc=True), 2), S(A(2, 3), 4)]),
    OpInfo("diag", F.diag, torch.diag, [S(A(4)), S(A(3), 2), S(A(3), -1), S(A(4, 4)), S(A(3, 5), 1),
                                        S(A(5, 3, nc=True), -2), S(A(2, 3), 4)]),
    OpInfo("einsum", F.einsum, torch.einsum, [
        S("ij,jk->ik", A(3, 4), A(4, 5)), S("bij,bjk->bik", A(2, 3, 4), A(2, 4, 2)), S("ij->ji", A(3, 4, nc=True)),
        S("ij->", A(3, 4)), S("i,j->ij", A(3), A(4)), S("ij,ij->i", A(3, 4), A(3, 4)), S("ijk->j", A(2, 3, 4)),
        S("ij,jk,kl->il", A(2, 3), A(3, 4), A(4, 2)), S("ij,jk", A(3, 4), A(4, 2)), S("ij,kl->ijkl", A(2, 3), A(1, 2))]),
    OpInfo("one_hot", F.one_hot, TF.one_hot, [S(I(5, high=4)), S(I(2, 3, high=3), 5)], grad=False),
    OpInfo("cumsum", F.cumsum, torch.cumsum, [S(A(3, 4), 1), S(A(3, 4), 0), S(A(2, 3, nc=True), -1), S(A(5), 0)]),
    *[OpInfo(n, getattr(F, n), getattr(torch, n), [S(B(3, 4)), S(B(3, 4), 1), S(A(3, 4), 0, True)], grad=False)
      for n in ("all", "any")],
    OpInfo("sort", F.sort, torch.sort, [S(A(3, 5)), S(A(4, 3), 0, True), S(A(2, 5, nc=True), descending=True),
                                       S(A(3, 4), dim=-1, stable=True)]),
    OpInfo("argsort", F.argsort, torch.argsort, [S(A(3, 5)), S(A(4, 3), 0, True), S(A(2, 5, nc=True), descending=True)],
           grad=False),
    OpInfo("topk", F.topk, torch.topk, [S(A(3, 5), 2), S(A(4, 3), 3, 0), S(A(2, 5, nc=True), 1, largest=False),
                                       S(A(6), 0)]),
    OpInfo("prod", F.prod, torch.prod, [S(A(3, 4)), S(A(3, 4), 1), S(A(2, 3, nc=True), 0, True), S(A(5), 0)]),
    OpInfo("nonzero", F.nonzero, torch.nonzero, [S(B(3, 4)), S(A(2, 3)), S(B(5), as_tuple=True)], grad=False),
    OpInfo("masked_fill", F.masked_fill, torch.masked_fill,
           [S(A(3, 4), B(3, 4), 0.5), S(A(3, 4), B(4), -1.0), S(A(2, 3, nc=True), B(2, 3), 2.0)]),
    # ---- attention ----------------------------------------------------------------------------------
    OpInfo("scaled_dot_product_attention", F.scaled_dot_product_attention, _sdpa_ref, [
        S(A(2, 3, 4, 5), A(2, 3, 6, 5), A(2, 3, 6, 7)),
        S(A(1, 2, 4, 5), A(1, 2, 6, 5), A(1, 2, 6, 3, nc=True), B(4, 6)),          # bool mask (a row may be all False)
        S(A(4, 5), A(6, 5), A(6, 3)),                                             # 2-D
        S(A(2, 3, 4, 8), A(2, 1, 6, 8), A(2, 1, 6, 8)),                           # heads broadcast
        S(A(2, 2, 3, 4), A(2, 2, 5, 4), A(2, 2, 5, 4), A(2, 1, 3, 5)),            # float mask, differentiated
        S(A(2, 5, 4), A(2, 3, 4), A(2, 3, 4), is_causal=True),                    # causal, L > S: upper left
        S(A(2, 3, 4), A(2, 6, 4), A(2, 6, 2), is_causal=True, scale=0.3),
        S(A(1, 4, 3, 4), A(1, 2, 5, 4), A(1, 2, 5, 6), A(4, 3, 5), enable_gqa=True),  # grouped query heads
    ]),
    OpInfo("scaled_dot_product_attention", F.scaled_dot_product_attention, _sdpa_ref, [
        S(A(2, 3, 4, 5), A(2, 3, 6, 5), A(2, 3, 6, 7), dropout_p=0.3),
        S(A(4, 5), A(6, 5), A(6, 3), None, 0.5, True),
        S(A(1, 4, 3, 4), A(1, 2, 5, 4), A(1, 2, 5, 6), dropout_p=0.4, enable_gqa=True),
        S(A(2, 3, 4), A(2, 3, 4), A(2, 3, 4), dropout_p=1.0),
    ], random=True, variant="dropout"),
    OpInfo("multi_head_attention_forward", _mha(minidl), _mha(torch), [
        S(A(4, 2, 6), A(5, 2, 6), A(5, 2, 6), 2, A(18, 6), A(12), A(6, 6), A(6)),
        S(A(4, 2, 6), A(4, 2, 6), A(4, 2, 6), 3, A(18, 6), None, A(6, 6), None, None, None, None, _CAUSAL_4,
          average_attn_weights=False),
        S(A(3, 4), A(5, 4), A(5, 4, nc=True), 2, A(12, 4), A(8), A(4, 4), A(4), A(1, 1, 4), A(1, 1, 4),
          add_zero_attn=True),                                                    # unbatched, bias_k/v, zero attn
        S(A(4, 2, 6), A(5, 2, 6), A(5, 2, 6), 2, A(18, 6), A(12), A(6, 6), A(6), None, None, _PAD_2x5,
          A(4, 4, 5, grad=False)),                                                # padding + a float (N*heads) mask
    ]),
    OpInfo("multi_head_attention_forward", _mha(minidl, False), _mha(torch, False), [
        S(A(4, 2, 6), A(5, 2, 6), A(5, 2, 6), 2, A(18, 6), A(12), A(6, 6), A(6), None, None, _PAD_2x5),
        S(A(4, 2, 6), A(4, 2, 6), A(4, 2, 6), 3, A(18, 6), A(12), A(6, 6), A(6), None, None, None, _CAUSAL_4,
          is_causal=True),
        S(A(3, 4), A(5, 4), A(5, 4), 2, A(12, 4), A(8), A(4, 4), A(4), A(1, 1, 4), A(1, 1, 4), add_zero_attn=True),
    ], variant="no_weights", via="scaled_dot_product_attention"),
]

ROWS = {}
for _op in OPS:
    ROWS.setdefault(_op.name, []).append(_op)


def cases():
    """(id, op, sample index, sample) for every row and sample."""
    out = []
    for op in OPS:
        for k, s in enumerate(op.samples):
            out.append((f"{op.id}-{k}", op, k, s))
    return out
