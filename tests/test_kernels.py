"""The Numba kernels against the NumPy reference, over random geometries (hypothesis)."""
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
import suite
from suite import examples

import minidl
import minidl.nn.functional as F
from minidl import kernels
from minidl.kernels import Window, _numpy as ref

numba_k = pytest.importorskip("minidl.kernels._numba")


@st.composite
def geometry(draw):
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    h = draw(st.integers(dh * (kh - 1) + 1, 9))
    w = draw(st.integers(dw * (kw - 1) + 1, 9))
    ceil = draw(st.booleans())
    extra = (sh - 1) if ceil else 0
    oh = (h + 2 * ph - dh * (kh - 1) - 1 + extra) // sh + 1
    ow = (w + 2 * pw - dw * (kw - 1) - 1 + extra) // sw + 1
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    return (n, c, h, w), Window(kh, kw, sh, sw, ph, pw, dh, dw, oh, ow), dtype


def max_pool_input(shape, dtype, seed):
    """Values in [-2, 2]; every third seed small integers with NaNs instead: ties (the first maximum wins)
    and NaNs (the last NaN wins), as torch. Returns the generator too, for the test's further draws."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, size=shape).astype(dtype)
    if seed % 3 == 1:
        x = rng.integers(-1, 2, size=shape).astype(dtype)
        x[rng.uniform(size=shape) < 0.2] = np.nan
    return x, rng


def pool_geometry_ok(shape, g):
    """Whether pooling has this output size: torch drops a last window that starts in the right padding (so does
    minidl's size rule), which ceil-mode geometries above can produce."""
    kh, kw, sh, sw, ph, pw, dh, dw, oh, ow = g
    return (oh - 1) * sh < shape[2] + ph and (ow - 1) * sw < shape[3] + pw


def check_im2col_col2im(impl, geom, seed, dev=lambda a: a, host=lambda a: a):
    """``impl``'s im2col (zero and -inf padding) equals the reference exactly, its col2im within rounding; shared
    with the GPU kernels' checks (``dev``/``host`` move arrays there and back). Returns (col, c, x, shape, g)."""
    shape, g, dtype = geom
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, size=shape).astype(dtype)
    for pad in (0.0, -np.inf):
        np.testing.assert_array_equal(host(impl.im2col(dev(x), g, pad_value=pad)), ref.im2col(x, g, pad_value=pad))
    col = ref.im2col(x, g)
    c = rng.uniform(-2, 2, size=col.shape).astype(dtype)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(host(impl.col2im(dev(c), shape, g)), ref.col2im(c, shape, g), rtol=tol, atol=tol)
    return col, c, x, shape, g


@settings(max_examples=examples(60), deadline=None)
@given(geometry(), st.integers(0, 2 ** 31))
def test_im2col_col2im_numba_equal_reference(geom, seed):
    col, c, x, shape, g = check_im2col_col2im(numba_k, geom, seed)
    # col2im is the adjoint of im2col: <im2col(x), c> == <x, col2im(c)>
    lhs = float((col.astype(np.float64) * c).sum())
    rhs = float((x.astype(np.float64) * ref.col2im(c.astype(np.float64), shape, g)).sum())
    assert lhs == pytest.approx(rhs, rel=1e-6, abs=1e-9)


@settings(max_examples=examples(60), deadline=None)
@given(geometry(), st.integers(0, 2 ** 31))
def test_max_pool_numba_equals_reference(geom, seed):
    shape, g, dtype = geom
    if not pool_geometry_ok(shape, g):
        return
    x, rng = max_pool_input(shape, dtype, seed)
    y1, a1 = numba_k.max_pool2d(x, g)
    y2, a2 = ref.max_pool2d(x, g)
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(a1, a2)
    gy = rng.uniform(-2, 2, size=y1.shape).astype(dtype)
    np.testing.assert_allclose(numba_k.max_pool2d_backward(gy, a1, shape), ref.max_pool2d_backward(gy, a2, shape),
                               rtol=1e-6, atol=1e-6)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the reference's inf - inf and empty rows: NaN, as meant
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("affine", ["both", "weight", "bias", "none"])
def test_layer_norm_rows_numba_equals_reference(dtype, affine):
    """The Numba layer norm rows (sums in float64, reassociated) against the NumPy reference: rows with a large mean
    (no cancellation), a constant row (variance 0), a NaN and an inf row (NaN across the row, as torch), one column."""
    rng = np.random.default_rng(4)
    tol = dict(rtol=2e-6, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    for rows, n in ((37, 48), (5, 1), (0, 7), (3, 0)):
        x = (rng.standard_normal((rows, n)) * 3).astype(dtype)
        if rows > 4:
            x[0] += 1e4
            x[1] = 2.5
            x[2, 3 % n], x[3, -1] = np.nan, np.inf
        w = rng.standard_normal(n).astype(dtype) if affine in ("both", "weight") else None
        b = rng.standard_normal(n).astype(dtype) if affine in ("both", "bias") else None
        g = rng.standard_normal((rows, n)).astype(dtype)
        got, want = numba_k.layer_norm_rows(x, w, b, 1e-5), ref.layer_norm_rows(x, w, b, 1e-5)
        for a, e in zip(got, want):
            assert a.dtype == e.dtype == dtype and a.shape == e.shape
            np.testing.assert_allclose(a, e, equal_nan=True, **tol)
        mean, invstd = want[1:]
        for a, e in zip(numba_k.layer_norm_rows_backward(g, x, w, mean, invstd),
                        ref.layer_norm_rows_backward(g, x, w, mean, invstd)):
            assert a.dtype == e.dtype == dtype and a.shape == e.shape
            np.testing.assert_allclose(a, e, equal_nan=True, **tol)
        if rows > 4:
            assert np.isnan(got[0][2:4]).all() and np.isfinite(got[0][[0, 1, 4]]).all()


def test_erf_numba_equals_reference():
    x = np.linspace(-4, 4, 101)
    np.testing.assert_allclose(numba_k.erf(x), ref.erf(x), rtol=1e-15)
    np.testing.assert_allclose(numba_k.erf(x.astype(np.float32)), ref.erf(x.astype(np.float32)), rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_backward_numba_equals_reference_on_every_layout(dtype):
    """One pass over contiguous arrays, split across threads (odd sizes leave a remainder); NaN, -0.0 and 0 in y;
    a channels_last gy keeps its layout (the reference's NumPy expression); a 0-d gy stays 0-d."""
    rng = np.random.default_rng(0)
    y = np.maximum(rng.uniform(-2, 2, (3, 5, 7, 9)), 0).astype(dtype)
    y.reshape(-1)[:4] = [np.nan, -0.0, 0.0, np.inf]
    gy = rng.uniform(-2, 2, y.shape).astype(dtype)
    np.testing.assert_array_equal(numba_k.relu_backward(gy, y), ref.relu_backward(gy, y))
    last = [np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2) for a in (gy, y)]  # channels_last
    out = numba_k.relu_backward(*last)
    np.testing.assert_array_equal(out, ref.relu_backward(gy, y))
    assert out.strides == last[0].strides
    assert numba_k.relu_backward(np.array(2.0, dtype), np.array(np.nan, dtype)).shape == ()


def test_the_rational_tanh_is_within_3e_7_of_tanh_over_float32s_range():
    """The LSTM kernel's float32 tanh (_numba._tanh32), against float64 tanh: every float32 in [-1, 1] at a
    stride of 7 bits of mantissa, a log grid out to float32's largest value both ways, tiny values, 0, -0.0,
    +-inf and NaN. 2.7e-7 measured (NumPy's own float32 tanh: 6e-8)."""
    from numba import njit

    @njit
    def apply(x, out):
        for i in range(x.size):
            out[i] = numba_k._tanh32(x[i])
    bits = np.arange(0, 0x3F800001, 128, dtype=np.uint32).view(np.float32)  # [0, 1]
    grid = np.geomspace(1e-38, 3.4e38, 200_001).astype(np.float32)
    x = np.concatenate([bits, -bits, grid, -grid, np.float32([0.0, -0.0, np.inf, -np.inf])])
    out = np.empty_like(x)
    apply(x, out)
    err = np.abs(out.astype(np.float64) - np.tanh(x.astype(np.float64)))
    assert err.max() < 3e-7, (x[err.argmax()], err.max())
    assert np.all(np.abs(out) <= 1) and np.signbit(out[x == 0]).tolist() == np.signbit(x[x == 0]).tolist()
    nan = np.empty(1, np.float32)
    apply(np.float32([np.nan]), nan)
    assert np.isnan(nan[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lstm_step_kernels_equal_the_reference(dtype):
    """Forward: float32 within the rational tanh's error of the reference (float64 runs the reference itself);
    backward: exact arithmetic, equal to the reference to rounding, both dtypes, over a whole sequence."""
    rng = np.random.default_rng(0)
    L, N, H = 5, 3, 7
    a_in = rng.normal(0, 2, (L, N, 4 * H)).astype(dtype)
    w = rng.normal(0, 0.5, (4 * H, H)).astype(dtype)
    runs = []
    for k in (numba_k, ref):
        hc, cs = np.empty((L + 1, N, H), dtype), np.empty((L + 1, N, H), dtype)
        gates, tc = np.empty((L, N, 4 * H), dtype), np.empty((L, N, H), dtype)
        cs[0] = rng.normal(size=(N, H)) if k is numba_k else runs[0][1][0]
        h = np.zeros((N, H), dtype)
        for t in range(L):
            a = h @ w.T
            k.lstm_forward_step(a, a_in, t, hc, cs, gates, tc)
            h = hc[t]
        runs.append((hc, cs, gates, tc))
    tol = dict(rtol=0, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-15, atol=0)
    for got, want in zip(*runs):  # hc's row L is the Function's (c_L), not the step kernel's
        np.testing.assert_allclose(got[:L] if got is runs[0][0] else got, want[:L] if want is runs[1][0] else want,
                                   **tol)
    hc, cs, gates, tc = runs[1]
    g = rng.normal(size=(L + 1, N, H)).astype(dtype)
    grads = []
    for k in (numba_k, ref):
        dh, dc, da = np.zeros((N, H), dtype), g[L].copy(), np.empty((L, N, 4 * H), dtype)
        for t in range(L - 1, -1, -1):
            k.lstm_backward_step(g, t, dh, dc, gates, tc, cs, da)
            dh = np.ascontiguousarray(da[t] @ w)
        grads.append((da, dh, dc))
    for got, want in zip(*grads):
        np.testing.assert_allclose(got, want, rtol=1e-6 if dtype == np.float32 else 1e-14, atol=1e-6 if
                                   dtype == np.float32 else 1e-14)


def test_float_cpu_arrays_take_the_numba_kernels():
    for dtype in (np.float32, np.float64):  # the compiled kernels themselves (no lock around them: change 58)
        assert kernels._impl(np.zeros(3, dtype)) is numba_k
    assert kernels._impl(np.zeros(3, np.int64)) is ref
    old = kernels.use("numpy")
    try:
        assert kernels._impl(np.zeros(3, np.float32)) is ref
    finally:
        kernels.use(old)


def test_ops_give_the_same_numbers_with_the_reference_kernels():
    minidl.manual_seed(0)
    x = minidl.randn(2, 3, 9, 8, requires_grad=True)
    w = minidl.randn(4, 3, 3, 2, requires_grad=True)

    def run():
        x.grad = w.grad = None
        y = F.max_pool2d(F.conv2d(x, w, stride=(2, 1), padding=1), 2, ceil_mode=True)
        (y * y).sum().backward()
        return y.detach().numpy().copy(), x.grad.numpy().copy(), w.grad.numpy().copy()
    fast = run()
    old = kernels.use("numpy")
    try:
        slow = run()
    finally:
        kernels.use(old)
    for a, b in zip(fast, slow):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_switching_to_the_reference_kernels_after_the_tuner_picked_a_compiled_algorithm():
    """A choice cached for the Numba kernels (here: the direct conv, which has no NumPy version) must not
    be reused once kernels.use('numpy') is set."""
    autotune.clear()
    x, w = minidl.randn(2, 3, 9, 8), minidl.randn(4, 3, 3, 2)
    fast = F.conv2d(x, w, padding=1).numpy()
    keys = [k for k in autotune.cache() if k[0] == "conv2d"]
    assert keys and all("numba" in k for k in keys)
    for k in keys:
        autotune._cache[k] = ("direct", autotune._cache[k][1])
    old = kernels.use("numpy")
    try:
        slow = F.conv2d(x, w, padding=1).numpy()
    finally:
        kernels.use(old)
        autotune.clear()
    np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-5)


def test_kernels_use_rejects_unknown_names():
    with pytest.raises(ValueError, match="kernels.use"):
        kernels.use("fortran")


# ---- every convolution algorithm, forced, over the op table's conv2d samples ---------------------------
from minidl.kernels import autotune, jit  # noqa: E402
from minidl.kernels.conv import ALGORITHMS  # noqa: E402
from minidl.testing import assert_matches_torch, gradcheck  # noqa: E402

import opinfo  # noqa: E402

CONV_SAMPLES = [(name, k, s) for name in ("conv2d", "conv1d") for k, s in enumerate(opinfo.ROWS[name][0].samples)]


def test_the_conv_table_starts_with_the_reference_and_offers_only_its_algorithms():
    from minidl.kernels import conv as conv_kernels
    assert list(conv_kernels.ALGORITHMS)[0] == "im2col"
    assert all(len(pair) == 2 and all(callable(f) for f in pair) for pair in conv_kernels.ALGORITHMS.values())
    x, w = np.zeros((2, 4, 6, 6), np.float32), np.zeros((4, 1, 1, 1), np.float32)
    for args in [(x, np.zeros((3, 4, 1, 1), np.float32), Window(1, 1, 1, 1, 0, 0, 1, 1, 6, 6), 1),
                 (x, w, Window(1, 1, 1, 1, 1, 1, 1, 1, 8, 8), 4)]:
        offered = conv_kernels.algorithms(*args)
        assert offered[0] == "im2col" and set(offered) <= set(conv_kernels.ALGORITHMS)


@pytest.mark.parametrize("algo", list(ALGORITHMS))
@pytest.mark.parametrize("row, k, sample", CONV_SAMPLES, ids=[f"{r}-{k}" for r, k, _ in CONV_SAMPLES])
def test_every_conv_algorithm_matches_torch(algo, row, k, sample):
    op = opinfo.ROWS[row][0]
    chosen, offered = [], []
    from minidl.kernels import conv as conv_kernels
    original_choose, original_algorithms = conv_kernels.choose, conv_kernels.algorithms

    def spy_choose(*args, **kwargs):
        chosen.append(original_choose(*args, **kwargs))
        return chosen[-1]

    def spy_algorithms(*args):
        algos = original_algorithms(*args)
        offered.append(algos)
        return algos
    conv_kernels.choose, conv_kernels.algorithms = spy_choose, spy_algorithms
    chunk_bytes, conv_kernels.CHUNK_BYTES = conv_kernels.CHUNK_BYTES, 64  # several chunks even for small samples
    try:
        with autotune.force("conv2d", algo):
            for dtype in (np.float32, np.float64):
                args, requires = opinfo.make_inputs(sample, dtype, 1234 + k)
                assert_matches_torch(lambda *a: op.fn(*a, **sample.kwargs), lambda *a: op.ref(*a, **sample.kwargs),
                                     args, requires_grad=requires)
            args, requires = opinfo.make_inputs(sample, np.float64, 99 + k)
            ins = [minidl.tensor(a, requires_grad=r) if isinstance(a, np.ndarray) else a
                   for a, r in zip(args, requires)]
            assert gradcheck(lambda *a: op.fn(*a, **sample.kwargs), ins)
    finally:
        conv_kernels.choose, conv_kernels.algorithms = original_choose, original_algorithms
        conv_kernels.CHUNK_BYTES = chunk_bytes
    if algo in offered[0]:  # where the op can run it, the forced algorithm is the one that ran
        assert set(chosen) == {algo}


@pytest.mark.skipif(not jit.available(), reason="llvmlite cannot generate code for this CPU")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", [
    dict(x=(3, 5, 9, 8), w=(7, 5, 3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2)),
    dict(x=(2, 1, 12, 11), w=(6, 1, 5, 5), stride=(1, 1), padding=(2, 2), dilation=(1, 1)),   # LeNet's first
    dict(x=(2, 16, 6, 6), w=(33, 16, 3, 3), stride=(1, 1), padding=(1, 1), dilation=(1, 1)),  # 3 blocks, 1 lane
    dict(x=(1, 3, 7, 5), w=(2, 3, 4, 2), stride=(3, 2), padding=(3, 1), dilation=(2, 1)),     # padding > kernel
])
def test_jit_kernels_equal_the_reference_on_both_layouts_and_with_nan_and_inf(case, dtype):
    """Forward (with the bias added in registers), input and weight gradients of kernels/jit.py against the
    im2col reference, on C-contiguous and channels-last inputs, with NaN and inf among the inputs."""
    from minidl.kernels import conv as conv_kernels
    rng = np.random.default_rng(7)
    x = rng.uniform(-2, 2, case["x"]).astype(dtype)
    w = rng.uniform(-1, 1, case["w"]).astype(dtype)
    b = rng.uniform(-1, 1, case["w"][0]).astype(dtype)
    out_hw = [(case["x"][2 + d] + 2 * case["padding"][d] - case["dilation"][d] * (case["w"][2 + d] - 1) - 1)
              // case["stride"][d] + 1 for d in range(2)]
    win = Window.of(case["w"][2:], case["stride"], case["padding"], case["dilation"], out_hw)
    gy = rng.uniform(-1, 1, (case["x"][0], case["w"][0], *out_hw)).astype(dtype)
    x[0, 0, 1, 1], x[-1, -1, -1, -2] = np.nan, np.inf
    tol = dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    ref_y, saved = conv_kernels.im2col_forward(np, x, w, b, win, 1)
    ref_gx, ref_gw = conv_kernels.im2col_backward(np, saved, gy, x.shape, win, 1, True, True)
    for layout in (np.ascontiguousarray, opinfo.channels_last):
        xl = layout(x)
        y, saved = conv_kernels.jit_forward(np, xl, w, b, win, 1)
        gx, gw = conv_kernels.jit_backward(np, saved, gy, x.shape, win, 1, True, True)
        np.testing.assert_allclose(y, ref_y, equal_nan=True, **tol)
        np.testing.assert_allclose(gx, ref_gx, equal_nan=True, **tol)  # gy is finite: gx is
        np.testing.assert_allclose(gw, ref_gw, equal_nan=True, **tol)
        assert np.isnan(y).any() and np.isnan(gw).any() and np.isinf(y).any()


@pytest.mark.skipif(not jit.available(), reason="llvmlite cannot generate code for this CPU")
def test_a_strided_input_gradient_by_phases_equals_the_reference():
    """jit's input gradient of a strided convolution as one stride-1 convolution per phase of the input, over random
    geometries (strides 2-3 on either axis, padding beyond the kernel, kernels smaller than the stride so that some
    phases get no tap, maps smaller than a stride), in float64 against im2col's col2im: 40 in the default run (each
    compiles its phases' kernels: 150 took 16 s on a cold kernel cache), 300 in the exhaustive one; and through
    conv2d, where the phases run (maps of at least PHASE_MIN_PIXELS per phase), against torch."""
    import torch
    from minidl.kernels import conv as conv_kernels
    rng = np.random.default_rng(11)
    checked = 0
    while checked < (300 if suite.EXHAUSTIVE else 40):
        n, c, o = (int(v) for v in rng.integers(1, 5, 3))
        h, wd, kh, kw = (int(v) for v in rng.integers(1, 14, 2).tolist() + rng.integers(1, 6, 2).tolist())
        (sh, sw), (ph, pw) = rng.integers(1, 4, 2).tolist(), rng.integers(0, 4, 2).tolist()
        oh, ow = (h + 2 * ph - kh) // sh + 1, (wd + 2 * pw - kw) // sw + 1
        if (sh, sw) == (1, 1) or oh < 1 or ow < 1:
            continue
        win = Window.of((kh, kw), (sh, sw), (ph, pw), (1, 1), (oh, ow))
        x, w, gy = rng.standard_normal((n, c, h, wd)), rng.standard_normal((o, c, kh, kw)), \
            rng.standard_normal((n, o, oh, ow))
        _, saved = conv_kernels.im2col_forward(np, x, w, None, win, 1)
        ref = conv_kernels.im2col_backward(np, saved, gy, x.shape, win, 1, True, False)[0]
        np.testing.assert_allclose(conv_kernels.jit_grad_input_phases(gy, w, x.shape, win), ref, rtol=1e-10,
                                   atol=1e-10, err_msg=str((x.shape, w.shape, win)))
        checked += 1
    x, w = rng.standard_normal((4, 6, 16, 15)), rng.standard_normal((7, 6, 3, 3))
    ins, refs = [minidl.tensor(a, requires_grad=True) for a in (x, w)], [torch.tensor(a, requires_grad=True)
                                                                        for a in (x, w)]
    with autotune.force("conv2d", "jit"):
        y = F.conv2d(*ins, stride=2, padding=1)
    ty = torch.nn.functional.conv2d(*refs, stride=2, padding=1)
    gy = rng.standard_normal(tuple(ty.shape))
    y.backward(minidl.tensor(gy))
    ty.backward(torch.tensor(gy))
    np.testing.assert_allclose(ins[0].grad.numpy(), refs[0].grad.numpy(), rtol=1e-10, atol=1e-10)


@pytest.mark.skipif(not jit.available(), reason="llvmlite cannot generate code for this CPU")
def test_jit_kernels_run_a_large_batch_on_worker_threads():
    """Every stack slot of a kernel is made once, in its entry block: one made inside the loops grew the stack per
    block, and a batch of 300 overflowed a worker thread's stack (a segfault in torch's MNIST example's test pass)."""
    from minidl.kernels import conv as conv_kernels
    x = np.random.default_rng(0).standard_normal((1000, 1, 28, 28)).astype(np.float32)
    w = np.random.default_rng(1).standard_normal((32, 1, 3, 3)).astype(np.float32)
    win = Window(3, 3, 1, 1, 0, 0, 1, 1, 26, 26)
    y, _ = conv_kernels.jit_forward(np, x, w, None, win, 1)
    ref_y, _ = conv_kernels.im2col_forward(np, x, w, None, win, 1)
    np.testing.assert_allclose(y, ref_y, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not jit.available(), reason="llvmlite cannot generate code for this CPU")
@pytest.mark.parametrize("pad_bytes", [1, 3 * 4 * 7 * 7 * 4, jit.PAD_BYTES])  # x's padded samples: 4 x 7 x 7 float32
def test_jit_pads_in_chunks_to_the_same_bits(monkeypatch, pad_bytes):
    """Each thread pads its samples a chunk of about PAD_BYTES at a time into one buffer whose border stays zero: one
    sample a chunk, a few (three of x's, two of gy's for the input gradient; the last chunk shorter) and the default
    give the bits of padding each thread's whole part at once, forward, input gradient (whose zero frame is padding
    too) and weight gradient."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((11, 4, 5, 5)).astype(np.float32)
    w = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)
    gy = rng.standard_normal((11, 6, 5, 5)).astype(np.float32)
    win = Window(3, 3, 1, 1, 1, 1, 1, 1, 5, 5)

    def three():
        return jit.conv(x, w, win), jit.conv_grad_input(gy, w, x.shape, win), jit.conv_grad_weight(x, gy, w.shape, win)
    monkeypatch.setattr(jit, "PAD_BYTES", 1 << 40)
    want = three()
    monkeypatch.setattr(jit, "PAD_BYTES", pad_bytes)
    for g, e in zip(three(), want):
        np.testing.assert_array_equal(g, e)

@pytest.mark.skipif(not jit.available(), reason="llvmlite cannot generate code for this CPU")
def test_jit_kernels_show_their_ir_and_assembly():
    ir = jit.show("forward", (8, 6, 14, 14), (16, 6, 5, 5))
    assert "llvm.fma.v" in ir and 'define void @"conv_forward"' in ir
    asm = jit.show("grad_weight", (8, 6, 14, 14), (16, 6, 5, 5), asm=True)
    assert "conv_grad_weight" in asm


@pytest.mark.skipif(not jit.available(), reason="llvmlite cannot generate code for this CPU")
def test_a_second_process_loads_jit_kernels_from_the_disk_cache(tmp_path):
    """The first process compiles (and says so on stderr); the second loads the machine code and says nothing."""
    code = ("import numpy as np; from minidl.kernels import Window, jit; x = np.ones((2, 3, 9, 9), np.float32); "
            "w = np.ones((5, 3, 3, 3), np.float32); y = jit.conv(x, w, Window(3, 3, 1, 1, 1, 1, 1, 1, 9, 9)); "
            "assert y[0, 0, 4, 4] == 27 and y[0, 0, 0, 0] == 12")
    env = dict(os.environ, MINIDL_CACHE_DIR=str(tmp_path))
    runs = [subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
            for _ in range(2)]
    assert [r.returncode for r in runs] == [0, 0], [r.stderr for r in runs]
    assert "compiling kernels" in runs[0].stderr and "compiling" not in runs[1].stderr
    assert len(list(tmp_path.glob("conv-*.o"))) == 1


def test_autotune_caches_one_choice_per_shape_and_can_be_switched_off():
    autotune.clear()
    x = minidl.randn(4, 1, 12, 12)
    w = minidl.randn(3, 1, 3, 3)
    F.conv2d(x, w)
    F.conv2d(x, w)
    choices = [v for k, v in autotune.cache().items() if k[0] == "conv2d"]
    assert len(choices) == 1 and set(choices[0][1]) == {"im2col", "im2col_chunked"}  # too small for jit
    old = autotune.set_enabled(False)
    try:
        autotune.clear()
        F.conv2d(x, w)
        assert not autotune.cache()
    finally:
        autotune.set_enabled(old)


@pytest.mark.parametrize("slower, expected", [
    (0.5, "lean"),     # within the margin: the candidate that keeps less memory
    (0.99, "lean"),
    (1.01, "hungry"),  # beyond it: speed wins
    (-0.5, "lean"),    # the lean one is faster anyway
])
def test_autotune_prefers_lean_candidates_within_the_margin(monkeypatch, slower, expected):
    hungry_ms, lean_ms = 10.0, 10.0 * (1 + slower * autotune.LEAN_MARGIN)
    clock = [0.0]
    monkeypatch.setattr(autotune.time, "perf_counter", lambda: clock[0])

    def thunk(ms):
        def run():
            clock[0] += ms / 1e3
        return run
    autotune.clear()
    try:
        got = autotune.choose(("test-op", 1), [("hungry", thunk(hungry_ms)), ("lean", thunk(lean_ms))], lean=("lean",))
        assert got == expected
        assert autotune.cache()[("test-op", 1)][1] == pytest.approx({"hungry": hungry_ms / 1e3, "lean": lean_ms / 1e3})
    finally:
        autotune.clear()


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(4, 3, 5, 6), (7, 2), (3, 4, 9)])
def test_batch_norm_kernels_equal_reference(shape, training):
    rng = np.random.default_rng(0)
    x = (rng.normal(size=shape) * 3 + 1).astype(np.float32)
    gy = rng.normal(size=shape).astype(np.float32)
    c = shape[1]
    w, b = rng.normal(size=c).astype(np.float32), rng.normal(size=c).astype(np.float32)
    m1, v1 = numba_k.batch_norm_stats(x)
    m2, v2 = ref.batch_norm_stats(x)
    np.testing.assert_allclose(m1, m2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(v1, v2, rtol=1e-5, atol=1e-6)
    invstd = (1 / np.sqrt(v2 + 1e-5)).astype(np.float32)
    np.testing.assert_allclose(numba_k.batch_norm_apply(x, m2, invstd, w, b), ref.batch_norm_apply(x, m2, invstd, w, b),
                               rtol=1e-5, atol=1e-5)
    for a1, a2 in zip(numba_k.batch_norm_backward(x, gy, m2, invstd, w, training),
                      ref.batch_norm_backward(x, gy, m2, invstd, w, training)):
        np.testing.assert_allclose(a1, a2, rtol=1e-4, atol=1e-4)
    if not training:  # the running statistics are constants: an infinite input does not reach gx
        x.flat[0] = np.inf
        assert np.isfinite(numba_k.batch_norm_backward(x, gy, m2, invstd, w, False)[0]).all()


@settings(max_examples=examples(40), deadline=None)
@given(geometry(), st.integers(0, 2 ** 31))
def test_avg_pool_numba_equals_reference(geom, seed):
    shape, g, dtype = geom  # with dilation: avg_pool2d passes 1, the kernels take any
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, size=shape).astype(dtype)
    div = rng.integers(1, 10, size=g.out_hw).astype(dtype)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    y1 = numba_k.avg_pool2d(x, div, g)
    np.testing.assert_allclose(y1, ref.avg_pool2d(x, div, g), rtol=tol, atol=tol)
    gy = rng.uniform(-2, 2, size=y1.shape).astype(dtype)
    np.testing.assert_allclose(numba_k.avg_pool2d_backward(gy, div, shape, g),
                               ref.avg_pool2d_backward(gy, div, shape, g), rtol=tol, atol=tol)


# ---- matrix products: split across minidl's threads, OpenBLAS on one thread ------------------------------
@pytest.mark.parametrize("sa, sb", [
    ((300, 200), (200, 250)),          # tall enough to split by rows
    ((20, 400), (400, 3000)),          # wide: blocks of columns
    ((7, 40), (5, 40, 600)),           # broadcast batch, split along it
    ((3, 1, 50, 60), (4, 60, 70)),     # broadcast on both sides
    ((64,), (64, 32)),                 # 1-D operand
])
def test_blas_matmul_split_equals_numpy(monkeypatch, sa, sb):
    from minidl.kernels import blas
    blas._setup()
    monkeypatch.setattr(blas, "SPLIT_FLOPS", 1)  # split everything that can be split
    monkeypatch.setattr(blas, "own_threads", lambda cores: True)  # as on a busy machine
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(sa), rng.standard_normal(sb)
    expect = np.matmul(a, b)
    got = blas.matmul(a, b)
    assert got.shape == expect.shape and got.dtype == expect.dtype
    np.testing.assert_allclose(got, expect, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(blas.matmul(a, b), got)  # the same split, the same bits
    assert all(c.num_threads == 1 for c in blas._state["libs"])  # this thread's products: one BLAS thread


def test_blas_uses_its_own_threads_in_reproducible_mode_or_on_a_busy_machine(monkeypatch):
    from minidl.kernels import blas
    import builtins
    import io
    real_open = builtins.open
    monkeypatch.setattr(blas, "openblas_spins", False)  # as when minidl is imported before NumPy

    def machine(loadavg):
        monkeypatch.setattr(blas, "_load", {"at": -1e9, "until": -1e9})
        monkeypatch.setattr(builtins, "open", lambda path, *a, **k: io.StringIO(loadavg)
                            if path == "/proc/loadavg" else real_open(path, *a, **k))
    machine("0.40 0.40 0.40 2/77 100")
    assert blas.own_threads(2) is False           # idle: OpenBLAS's own threads
    machine("0.40 0.40 0.40 11/98 100")
    assert blas.own_threads(2) is True            # 11 runnable threads on 2 cores, before the average rises
    machine("4.10 3.00 2.00 1/98 100")
    assert blas.own_threads(2) is False           # a high average, but nothing runs now (the average lags)
    machine("0.40 0.40 0.40 2/77 100")
    old = autotune.set_enabled(False)
    try:
        assert blas.own_threads(2) is True        # reproducible mode: always one OpenBLAS thread
    finally:
        autotune.set_enabled(old)


def _forked_product(queue):
    from minidl.kernels import blas
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((300, 200)), rng.standard_normal((200, 250))
    queue.put(bool(np.allclose(blas.matmul(a, b), a @ b)))


def test_blas_split_works_in_a_forked_child(monkeypatch):
    """A pool made before fork has no threads in the child: the child must make its own, not hang."""
    import multiprocessing
    from minidl.kernels import blas
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork on this platform")
    monkeypatch.setattr(blas, "SPLIT_FLOPS", 1)
    monkeypatch.setattr(blas, "own_threads", lambda cores: True)
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((300, 200)), rng.standard_normal((200, 250))
    blas.matmul(a, b)  # the parent's pool exists now
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_forked_product, args=(queue,))
    child.start()
    child.join(60)
    alive = child.is_alive()
    if alive:
        child.kill()
    assert not alive and queue.get(timeout=5) is True


def _started(code, **env):
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True,
                         env={k: v for k, v in os.environ.items() if k not in ("OPENBLAS_THREAD_TIMEOUT",
                                                                                "MALLOC_MMAP_THRESHOLD_")} | env)
    return out.stdout.split()


def test_products_avoid_spinning_openblas_threads_when_numpy_came_first():
    """minidl's OPENBLAS_THREAD_TIMEOUT takes effect only when minidl is imported before NumPy; after NumPy, its
    products run on one OpenBLAS thread (own_threads), unless the user set the timeout."""
    ask = "import minidl; from minidl.kernels import blas; print(blas.openblas_spins, blas.own_threads(64))"
    assert _started(ask) == ["False", "False"]
    assert _started("import numpy; " + ask) == ["True", "True"]
    assert _started("import numpy; " + ask, OPENBLAS_THREAD_TIMEOUT="4") == ["False", "False"]


def test_a_thread_limit_set_before_the_first_kernel_holds_for_minidls_own_threads():
    """threadpool_limits(1) entered after `import minidl`: the convolutions' worker pool has one thread, though
    Numba's import loads a second OpenBLAS (SciPy's) at its default count after the limit was set."""
    ask = ("import minidl; import minidl.nn.functional as F; from minidl.kernels import blas; "
           "from threadpoolctl import threadpool_limits\n"
           "with threadpool_limits(1, user_api='blas'):\n"
           "    F.conv2d(minidl.randn(2, 1, 8, 8), minidl.randn(2, 1, 3, 3)); print(blas.workers()[0])")
    assert _started(ask) == ["1"]


def test_freed_memory_is_kept_for_the_next_step_unless_the_user_tuned_malloc():
    import platform
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("glibc's malloc only")
    ask = "import minidl; print(minidl.backend.keep_freed_memory())"
    assert _started(ask) == ["True"]
    assert _started(ask, MALLOC_MMAP_THRESHOLD_="131072") == ["False"]


def test_the_tuner_does_not_keep_a_large_column_matrix(monkeypatch):
    """Above COL_KEEP_BYTES of columns the reference is not a candidate (a lean algorithm runs), unless forced."""
    from minidl.kernels import conv as conv_kernels
    monkeypatch.setattr(conv_kernels, "COL_KEEP_BYTES", 1024)
    autotune.clear()
    x, w = np.ones((4, 3, 12, 12), np.float32), np.ones((5, 3, 3, 3), np.float32)  # columns: 27 x 400 > 1 KiB
    args = (np, x, w, Window(3, 3, 1, 1, 0, 0, 1, 1, 10, 10), 1)
    assert conv_kernels.choose(*args) in ("im2col_chunked", "jit")  # the lean candidates left
    with autotune.force("conv2d", "im2col"):
        assert conv_kernels.choose(*args) == "im2col"
    monkeypatch.setattr(conv_kernels, "COL_KEEP_BYTES", 1 << 30)
    assert "im2col" in conv_kernels.algorithms(x, w, args[3], 1)
    autotune.clear()


def test_a_first_compile_says_so_in_one_line_and_a_cached_run_says_nothing(tmp_path):
    """A fresh install waits for Numba before its first step: one line says why; a second process loads the
    kernels from Numba's cache, compiles nothing and says nothing."""
    import subprocess
    import sys
    code = "import minidl, minidl.nn.functional as F; F.max_pool2d(minidl.randn(1, 1, 4, 4), 2); F.max_pool2d(" \
           "minidl.randn(1, 2, 6, 6).double(), 3)"
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))  # an empty cache: every kernel compiles
    runs = [subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True) for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr[-2000:]
    line = "minidl: compiling kernels for this CPU (first run only; later runs load them from Numba's cache)\n"
    assert runs[0].stderr == line, runs[0].stderr
    assert runs[1].stderr == "", runs[1].stderr


@pytest.mark.skipif(not jit.available(), reason="llvmlite cannot generate code for this CPU")
@pytest.mark.parametrize("x_shape, w_shape, stride, padding, dilation", [
    ((2, 3, 9, 9), (5, 3, 3, 3), (1, 1), (1, 1), (1, 1)),
    ((2, 4, 11, 13), (19, 4, 3, 2), (2, 1), (1, 0), (1, 1)),   # O over one block of lanes, a partial last block
    ((1, 2, 12, 12), (16, 2, 3, 3), (1, 2), (2, 1), (2, 1)),   # two whole blocks (two per input value), dilation
    ((2, 3, 20, 20), (4, 3, 7, 7), (1, 1), (3, 3), (1, 1)),    # a kernel wider than the register budget's rows
])
@pytest.mark.parametrize("frame", [False, True])
def test_the_generated_kernels_run_the_loops_of_their_numpy_twins(x_shape, w_shape, stride, padding, dilation, frame):
    """kernels/jit_blocking.py's forward_blocked and grad_weight_blocked walk the blocks the IR walks, in the same
    order; in float64 they give the compiled kernels' numbers but for the rounding of fused multiply-adds. With
    ``frame`` (the input gradient's zero frame) both skip the kernel rows and columns that read only the frame."""
    from minidl.kernels import jit_blocking
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal(w_shape)
    out_hw = [(x_shape[2 + d] + 2 * padding[d] - dilation[d] * (w_shape[2 + d] - 1) - 1) // stride[d] + 1
              for d in range(2)]
    win = Window.of(w_shape[2:], stride, padding, dilation, out_hw)
    pads = jit._pads(x.shape, win)
    s = jit._shape(x, w.shape, win, pads, frame=frame)
    xp = np.pad(x, ((0, 0), (0, 0), pads[:2], pads[2:]))
    registers = jit._target()["registers"]
    y = jit_blocking.forward_blocked(xp, jit.pack_weight(w, s.lanes), s, registers)
    np.testing.assert_allclose(y, jit.conv(x, w, win, frame=frame), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y, jit.conv(x, w, win), rtol=1e-12, atol=1e-12)  # the frame's products add nothing
    rows = jit_blocking.tiling(s, registers)[1]
    skipped = [jit_blocking.live_kernel_rows(s, oh0, min(rows, s.oh - oh0)) != (0, s.kh)
               for oh0 in range(0, s.oh, rows)]
    assert any(skipped) <= frame and any(skipped) >= (frame and w_shape[2] == 7)  # the 7x7's first rows skip one
    s = jit._shape(x, w.shape, win, pads)
    gy = rng.standard_normal((x_shape[0], w_shape[0], *out_hw))
    blocks = jit_blocking.ceil_div(w_shape[0], s.lanes)
    gyt = np.zeros((*gy.shape[:1], *out_hw, blocks * s.lanes))
    gyt[..., :w_shape[0]] = gy.transpose(0, 2, 3, 1)
    gwp = jit_blocking.grad_weight_blocked(xp, gyt, s, registers)
    gw = gwp.transpose(0, 4, 1, 2, 3).reshape(blocks * s.lanes, *w_shape[1:])[:w_shape[0]]
    np.testing.assert_allclose(gw, jit.conv_grad_weight(x, gy, w_shape, win), rtol=1e-11,
                               atol=1e-11)


@pytest.mark.parametrize("poison", ["none", "inf weight on a padding tap", "nan input and -inf weight", "inf gradient"])
@pytest.mark.parametrize("h, w, k, padding", [(2, 2, 3, 1), (1, 2, 3, 1), (3, 3, 5, 2)])
def test_dense_runs_maps_no_bigger_than_the_kernel_with_torch_numbers_and_nans(h, w, k, padding, poison):
    """``dense`` (the weight unrolled over a tiny map, one GEMM: resnet18's layer3 on 28x28 digits, 2x2 maps) equals
    torch's forward and gradients, and puts NaN where torch does: torch, like im2col, multiplies the taps that read
    padding by zeros, so an inf weight there makes NaN though the dense product never reads it."""
    import torch
    from minidl.kernels import conv as conv_kernels
    rng = np.random.default_rng(5)
    x, wt, gy = rng.standard_normal((3, 4, h, w)), rng.standard_normal((5, 4, k, k)), rng.standard_normal((3, 5, h, w))
    if poison == "inf weight on a padding tap":  # a live tap (the taps that read only padding are dropped first)
        wt[0, 0, k // 2, 0] = np.inf
    elif poison == "nan input and -inf weight":
        x[1, 2, 0, 0], wt[2, 1, k // 2, -1] = np.nan, -np.inf
    elif poison == "inf gradient":  # on the 1-row map, with the tap rows that read only padding dropped too
        gy[0, 1, -1, -1] = np.inf
    ins, refs = [minidl.tensor(a, requires_grad=True) for a in (x, wt)], [torch.tensor(a, requires_grad=True)
                                                                         for a in (x, wt)]
    with autotune.force("conv2d", "dense"):
        y = F.conv2d(*ins, padding=padding)
    assert y.grad_fn.algo == "dense"
    ty = torch.nn.functional.conv2d(*refs, padding=padding)
    y.backward(minidl.tensor(gy))
    ty.backward(torch.tensor(gy))
    for mine, theirs in [(y.detach(), ty.detach())] + [(a.grad, b.grad) for a, b in zip(ins, refs)]:
        np.testing.assert_allclose(mine.numpy(), theirs.numpy(), rtol=1e-12, atol=1e-12, equal_nan=True)
    if poison != "none":
        assert np.isnan(y.detach().numpy()).any() or np.isnan(ins[1].grad.numpy()).any()
    win = Window(k, k, 1, 1, padding, padding, 1, 1, h, w)
    assert gradcheck(lambda a, b: F.conv2d(a, b, padding=padding), [minidl.tensor(x[:1, :2], requires_grad=True),
                                                                     minidl.tensor(wt[:2, :2], requires_grad=True)]) \
        if poison == "none" else "dense" in conv_kernels.algorithms(x, wt, win, 1)


@pytest.mark.parametrize("poison", ["none", "inf input in a column tap 0 never reads", "inf weight on a padding tap",
                                    "nan gradient", "inf weight, input gradient"])
@pytest.mark.parametrize("shape, groups, k, padding, dilation, stride", [
    ((2, 6, 7, 5), 6, 3, 1, 1, 1),   # depthwise 3x3, the wide planes
    ((2, 6, 7, 5), 3, 3, 0, 1, 1),   # two input channels a group, no padding: wide columns read real inputs
    ((2, 4, 6, 6), 4, 3, 2, 2, 1),   # dilated, and each channel's weights twice (8 outputs)
    ((2, 6, 8, 8), 6, 3, 1, 1, 2),   # strided: the row kernels
])
def test_direct_convolution_equals_torch_with_its_nans(shape, groups, k, padding, dilation, stride, poison):
    """``direct`` (few input channels per group: depthwise) equals torch's forward and gradients in float64, and its
    wide planes (kernels/_numba_depthwise.py) put NaN only where torch does: the dropped columns of a wide row meet
    real inputs and weights, never with an effect on a result."""
    import torch
    rng = np.random.default_rng(11)
    cout = shape[1] * (2 if dilation == 2 else 1)
    x, wt = rng.standard_normal(shape), rng.standard_normal((cout, shape[1] // groups, k, k))
    ty0 = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(wt), stride=stride, padding=padding,
                                     dilation=dilation, groups=groups)
    gy = rng.standard_normal(tuple(ty0.shape))
    if poison == "inf input in a column tap 0 never reads":
        x[0, 1, 2, -1] = np.inf
    elif poison == "inf weight on a padding tap":
        wt[1, 0, 0, 0] = np.inf
    elif poison == "nan gradient":
        gy[1, 2, 0, 0] = np.nan
    elif poison == "inf weight, input gradient":
        wt[2, 0, 1, 1] = -np.inf
    ins = [minidl.tensor(a, requires_grad=True) for a in (x, wt)]
    refs = [torch.tensor(a, requires_grad=True) for a in (x, wt)]
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    with autotune.force("conv2d", "direct"):
        y = F.conv2d(*ins, **kw)
    assert y.grad_fn.algo == "direct"
    ty = torch.nn.functional.conv2d(*refs, **kw)
    y.backward(minidl.tensor(gy))
    ty.backward(torch.tensor(gy))
    for mine, theirs in [(y.detach(), ty.detach())] + [(a.grad, b.grad) for a, b in zip(ins, refs)]:
        np.testing.assert_allclose(mine.numpy(), theirs.numpy(), rtol=1e-12, atol=1e-12, equal_nan=True)


def test_dense_is_offered_only_where_every_output_reads_every_input():
    from minidl.kernels import conv as conv_kernels
    offered = lambda x, k, p, s=1: "dense" in conv_kernels.algorithms(  # noqa: E731
        np.zeros(x), np.zeros((2, x[1], k, k)), Window(k, k, s, s, p, p, 1, 1, (x[2] + 2 * p - k) // s + 1,
                                                       (x[3] + 2 * p - k) // s + 1), 1)
    assert offered((1, 3, 2, 2), 3, 1) and offered((1, 3, 3, 3), 5, 2)
    assert not offered((1, 3, 3, 3), 3, 1)   # a corner output does not read the far corner: zeros in the product
    assert not offered((1, 3, 4, 4), 3, 1)   # a map bigger than the kernel: im2col's columns are mostly live
    assert not offered((1, 3, 4, 4), 3, 1, 2)


@pytest.mark.parametrize("algo", list(ALGORITHMS))
@pytest.mark.parametrize("h, w, k, stride, padding, dilation", [
    (1, 1, 3, 1, 1, 1),   # resnet18's layer4 on 28x28 digits: only the centre tap reads the map
    (2, 2, 3, 2, 1, 1),   # its strided downsample: the first row and column of taps read padding only
    (3, 3, 3, 1, 1, 2),   # dilated: only the centre tap is live and reads row 1 (the input is cropped instead)
    (3, 2, 3, 3, 2, 1),   # asymmetric dead taps
    (1, 1, 2, 2, 3, 3),   # the live tap's windows run past the map's end (padding after it): not gemm1x1's case
    (1, 1, 1, 10, 2, 1),  # no tap reads the map at all: the output is the bias, the gradients zero
])
def test_taps_that_read_only_padding_are_dropped_with_torch_numbers(algo, h, w, k, stride, padding, dilation):
    """conv2d drops the kernel taps that multiply padding only (functional/conv.py, _live_window): forward and
    both gradients still equal torch's, whichever algorithm runs the smaller convolution (a 1x1 map takes gemm1x1's
    one-pixel product)."""
    import torch
    rng = np.random.default_rng(3)
    x, wt, b = rng.standard_normal((3, 4, h, w)), rng.standard_normal((5, 4, k, k)), rng.standard_normal(5)
    ins = [minidl.tensor(a, requires_grad=True) for a in (x, wt, b)]
    refs = [torch.tensor(a, requires_grad=True) for a in (x, wt, b)]
    with autotune.force("conv2d", algo):
        y = F.conv2d(*ins, stride=stride, padding=padding, dilation=dilation)
    ty = torch.nn.functional.conv2d(*refs, stride=stride, padding=padding, dilation=dilation)
    g = rng.standard_normal(tuple(ty.shape))
    (y * minidl.tensor(g)).sum().backward()
    (ty * torch.tensor(g)).sum().backward()
    np.testing.assert_allclose(y.detach().numpy(), ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    for mine, theirs in zip(ins, refs):
        np.testing.assert_allclose(mine.grad.numpy(), theirs.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("algo", list(ALGORITHMS))
@pytest.mark.parametrize("poison", ["inf weight on a dropped tap", "nan weight on a dropped tap",
                                    "inf gradient", "nan gradient", "inf input"])
@pytest.mark.parametrize("h, w, k, stride, padding", [(1, 1, 3, 1, 1), (2, 2, 3, 2, 1), (1, 2, 3, 1, 1)])
def test_dropped_taps_keep_torchs_nans(algo, poison, h, w, k, stride, padding):
    """torch (float64, and float32 outside oneDNN) multiplies the taps that read only padding by zeros, as every
    minidl algorithm does with the padding it reads: an inf weight on such a tap makes its output channel NaN, an
    inf upstream gradient makes those taps' weight gradients NaN. conv2d drops the taps, and adds their 0 x w and
    0 x gy back where they are not zeros, so the NaNs land where torch's do."""
    import torch
    rng = np.random.default_rng(7)
    x, wt = rng.standard_normal((3, 4, h, w)), rng.standard_normal((5, 4, k, k))
    out = ((h + 2 * padding - k) // stride + 1, (w + 2 * padding - k) // stride + 1)
    gy = rng.standard_normal((3, 5, *out))
    if poison.endswith("weight on a dropped tap"):  # tap (0, 0) reads only padding on these maps
        wt[1, 2, 0, 0] = np.inf if poison.startswith("inf") else np.nan
    elif poison.endswith("gradient"):
        gy[2, 3, -1, -1] = np.inf if poison.startswith("inf") else np.nan
    else:
        x[0, 1, -1, -1] = -np.inf
    ins, refs = [minidl.tensor(a, requires_grad=True) for a in (x, wt)], [torch.tensor(a, requires_grad=True)
                                                                         for a in (x, wt)]
    with autotune.force("conv2d", algo):
        y = F.conv2d(*ins, stride=stride, padding=padding)
    ty = torch.nn.functional.conv2d(*refs, stride=stride, padding=padding)
    y.backward(minidl.tensor(gy))
    ty.backward(torch.tensor(gy))
    # the case has NaNs; an inf input (read only through live taps) has none, and infs where torch has them
    assert (np.isnan(ty.detach().numpy()).any() or np.isnan(refs[1].grad.numpy()).any()) != (poison == "inf input")
    for mine, theirs in [(y.detach(), ty.detach())] + [(a.grad, b.grad) for a, b in zip(ins, refs)]:
        np.testing.assert_allclose(mine.numpy(), theirs.numpy(), rtol=1e-12, atol=1e-12, equal_nan=True)


@pytest.mark.parametrize("algo", list(ALGORITHMS))
@pytest.mark.parametrize("poison", [np.inf, -np.inf, np.nan])
@pytest.mark.parametrize("h, k, stride, padding, dilation", [(9, 3, 1, 0, 1), (9, 5, 1, 1, 1), (8, 3, 2, 1, 1),
                                                             (10, 3, 1, 2, 2), (6, 1, 1, 0, 1)])
def test_a_non_finite_weight_gives_torchs_input_gradient(algo, poison, h, k, stride, padding, dilation):
    """torch's input gradient adds w x gy over the (output, tap) pairs that read each input, and nothing for the
    padding: an inf weight makes infs (and NaNs only where inf meets -inf or a zero gradient), not NaN wherever its
    tap meets padding. jit's input gradient is a convolution over gy padded (and, for a stride, zero-inserted) with
    zeros, which would add 0 x inf: it hands a non-finite weight to the chunked im2col, which multiplies no padding."""
    import torch
    rng = np.random.default_rng(3)
    x, wt = rng.standard_normal((3, 4, h, h)), rng.standard_normal((5, 4, k, k))
    wt[1, 2, k // 2, k - 1] = poison
    kw = dict(stride=stride, padding=padding, dilation=dilation)
    ins = [minidl.tensor(a, requires_grad=True) for a in (x, wt)]
    refs = [torch.tensor(a, requires_grad=True) for a in (x, wt)]
    ty = torch.nn.functional.conv2d(*refs, **kw)
    gy = rng.standard_normal(tuple(ty.shape))
    gy[0, 1] = 0  # a zero gradient meets the weight: 0 x inf is NaN in torch too
    ty.backward(torch.tensor(gy))
    with autotune.force("conv2d", algo):
        y = F.conv2d(*ins, **kw)
    y.backward(minidl.tensor(gy))
    gx = refs[0].grad.numpy()
    assert not np.isfinite(gx).all() and np.isfinite(gx).any()  # poisoned, with numbers beside
    for mine, theirs in [(y.detach(), ty.detach())] + [(a.grad, b.grad) for a, b in zip(ins, refs)]:
        np.testing.assert_allclose(mine.numpy(), theirs.numpy(), rtol=1e-12, atol=1e-12, equal_nan=True)


def test_the_tuner_times_the_forward_alone_under_no_grad_and_shares_a_choice_across_a_batch_class(monkeypatch):
    """An evaluation under no_grad times only the forwards of the candidates (no backward will be asked for); a new
    batch size of the same class (a power of two) reuses the choice instead of timing every algorithm again."""
    from minidl.kernels import conv as conv_kernels
    backwards = []

    def counting(pair):
        fwd, bwd = pair
        return fwd, lambda *a: backwards.append(1) or bwd(*a)
    monkeypatch.setattr(conv_kernels, "ALGORITHMS", {k: counting(v) for k, v in conv_kernels.ALGORITHMS.items()})
    autotune.clear()
    x, w = minidl.randn(6, 3, 10, 10), minidl.randn(4, 3, 3, 3, requires_grad=True)
    conv_keys = lambda: [k for k in autotune.cache() if k[0] == "conv2d"]  # noqa: E731
    with minidl.no_grad():
        F.conv2d(x, w)
    assert len(conv_keys()) == 1 and not backwards  # timed, forwards only
    F.conv2d(x, w).sum().backward()
    assert len(conv_keys()) == 2 and len(backwards) > 1  # a training call: its own trial, backward included
    timed = len(backwards)
    F.conv2d(minidl.randn(7, 3, 10, 10), w).sum().backward()  # batch 7: the class of 6 (8)
    assert len(conv_keys()) == 2 and len(backwards) == timed + 1  # no new trial: only the call's own backward
    autotune.clear()


def test_the_trials_time_only_the_gradients_the_call_will_ask_for(monkeypatch):
    """A network's first convolution (its input needs no gradient) and a frozen layer (its weight needs none) are
    timed with the gradients their backward will compute, and tuned apart from a convolution that needs both."""
    from minidl.kernels import conv as conv_kernels
    asked = []

    def counting(pair):
        fwd, bwd = pair
        return fwd, lambda *a: asked.append(a[-2:]) or bwd(*a)
    monkeypatch.setattr(conv_kernels, "ALGORITHMS", {k: counting(v) for k, v in conv_kernels.ALGORITHMS.items()})
    autotune.clear()
    for x_grad, w_grad in [(False, True), (True, False), (True, True)]:
        asked.clear()
        x, w = minidl.randn(6, 3, 10, 10, requires_grad=x_grad), minidl.randn(4, 3, 3, 3, requires_grad=w_grad)
        F.conv2d(x, w).sum().backward()
        assert asked and set(asked) == {(x_grad, w_grad)}  # the trials' backwards, then the call's own
    asked.clear()
    b = minidl.randn(4, requires_grad=True)  # a bias alone: a backward comes, with neither kernel gradient
    F.conv2d(minidl.randn(6, 3, 10, 10), minidl.randn(4, 3, 3, 3), b).sum().backward()
    assert asked and set(asked) == {(False, False)}
    assert len([k for k in autotune.cache() if k[0] == "conv2d"]) == 4
    autotune.clear()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_kernel_equals_the_reference_bit_for_bit_and_keeps_torchs_signed_zero_and_nan(dtype):
    import torch
    x = np.random.default_rng(0).standard_normal(1000).astype(dtype)
    x[:6] = [-0.0, 0.0, np.nan, -np.inf, np.inf, -1e-45]
    got, want = numba_k.relu(x), ref.relu(x)
    np.testing.assert_array_equal(got, want)
    assert np.array_equal(np.signbit(got), np.signbit(want))
    theirs = torch.relu(torch.tensor(x)).numpy()
    np.testing.assert_array_equal(got, theirs)
    assert np.array_equal(np.signbit(got), np.signbit(theirs))  # relu(-0.0) is -0.0 in torch
    np.testing.assert_array_equal(numba_k.relu(x[::2]), ref.relu(x[::2]))  # not contiguous: the reference runs


def test_index_add_of_repeated_rows_equals_numpys_add_at():
    """kernels/_numpy.py's _add_rows (an embedding's gradient: one integer array of rows, repeats adding up, negative
    rows counted from the end) against np.add.at, within rounding (the sums are grouped by row)."""
    rng = np.random.default_rng(1)
    for _ in range(200):
        n = int(rng.integers(1, 12))
        tail = tuple(int(v) for v in rng.integers(1, 4, size=int(rng.integers(0, 3))))
        rows = rng.integers(-n, n, size=tuple(int(v) for v in rng.integers(1, 5, size=int(rng.integers(1, 3)))))
        for dtype, tol in ((np.float32, 1e-6), (np.float64, 1e-13)):
            values = rng.standard_normal(rows.shape + tail).astype(dtype)
            got = rng.standard_normal((n, *tail)).astype(dtype)
            want = got.copy()
            ref.index_add(got, rows, values)
            np.add.at(want, rows, values)
            np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def test_every_contract_kernel_that_the_numba_module_has_is_the_one_that_runs():
    """kernels._kernel(name, x) for a float32 array resolves to _numba's kernel wherever _numba has one, wherever it
    is defined (its value-by-value kernels live in _numba_pointwise.py): a kernel left out of the dispatch falls back
    to the reference silently (relu, erf and the LSTM steps did, for an hour: LeNet-5's relu 51 -> 399 us)."""
    x = np.zeros(4, np.float32)
    for name in kernels.CONTRACT:
        own = getattr(numba_k, name, None)
        if own is not None:
            assert kernels._kernel(name, x) is own, name


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_2x2_stride_2_max_pool_kernel_equals_the_reference(dtype):
    """_numba's max_pool2d takes a loop of its own for 2x2 windows with stride 2 inside the map (LeNet's pools): the
    same maxima and argmaxes as the reference, with ties (the first wins) and NaNs (the last wins), on even and odd
    maps (an odd last row or column is left out, as floor mode does)."""
    rng = np.random.default_rng(5)
    for h, w in [(28, 28), (10, 10), (7, 9), (2, 2), (3, 2)]:
        x = rng.integers(-1, 2, size=(3, 4, h, w)).astype(dtype)
        x[rng.uniform(size=x.shape) < 0.2] = np.nan
        win = Window(2, 2, 2, 2, 0, 0, 1, 1, h // 2, w // 2)
        (y1, a1), (y2, a2) = numba_k.max_pool2d(x, win), ref.max_pool2d(x, win)
        np.testing.assert_array_equal(y1, y2)
        np.testing.assert_array_equal(a1, a2)


def _count_parts(monkeypatch):
    """A list that gets the number of parts of every blas.split the Numba kernels make."""
    from minidl.kernels import _numba_depthwise, blas
    parts, real = [], blas.split
    for module in (numba_k, _numba_depthwise):
        monkeypatch.setattr(module, "split", lambda n, run, items=None: parts.append(real(n, run, items)) or parts[-1])
    return parts


def test_max_pool_kernels_run_small_maps_on_the_calling_thread_and_large_ones_split(monkeypatch):
    """Below blas.SPLIT_MIN_ITEMS elements a pooling kernel runs as one part (handing half to a worker costs more
    than it saves: NOTES.md, change 48), above it in as many parts as there are threads; both give the reference's
    maxima, argmaxes and gradients."""
    from minidl.kernels import blas
    threads, pool = blas.workers()
    if pool is None:
        pytest.skip("one kernel thread: nothing to split")
    parts = _count_parts(monkeypatch)
    rng = np.random.default_rng(6)
    x = rng.standard_normal((8, 6, 24, 24)).astype(np.float32)
    for win in [Window(2, 2, 2, 2, 0, 0, 1, 1, 12, 12), Window(3, 3, 2, 2, 1, 1, 1, 1, 12, 12)]:
        for min_items, want in [(1 << 40, 1), (1, min(threads, 48))]:
            monkeypatch.setattr(blas, "SPLIT_MIN_ITEMS", min_items)
            parts.clear()
            (y1, a1), (y2, a2) = numba_k.max_pool2d(x, win), ref.max_pool2d(x, win)
            np.testing.assert_array_equal(y1, y2)
            np.testing.assert_array_equal(a1, a2)
            gy = rng.standard_normal(y1.shape).astype(np.float32)
            np.testing.assert_array_equal(numba_k.max_pool2d_backward(gy, a1, x.shape),
                                          ref.max_pool2d_backward(gy, a2, x.shape))
            assert parts == [want, want], (win, min_items, parts)


def test_kernels_that_were_numba_parallel_loops_give_the_same_bits_split_or_on_one_thread(monkeypatch):
    """im2col, col2im, the direct convolutions, BatchNorm's and average pooling's kernels run a range of planes or
    channels each, split across minidl's threads above SPLIT_MIN_ITEMS and on the calling thread below (they were
    Numba parallel loops: NOTES.md, change 49). Each part owns its outputs, so both give the same bits, and the
    reference's values."""
    from minidl.kernels import blas
    rng = np.random.default_rng(7)
    x = rng.standard_normal((6, 4, 9, 8))
    gy = rng.standard_normal(x.shape)
    win = Window(3, 3, 1, 1, 1, 1, 1, 1, 9, 8)
    pool = Window(2, 2, 2, 2, 1, 0, 1, 1, 5, 4)
    div = rng.uniform(1, 4, size=(5, 4))
    gp = rng.standard_normal((6, 4, 5, 4))
    wd = rng.standard_normal((4, 1, 3, 3))
    w1, m, inv = rng.uniform(0.5, 2, size=4), x.mean(axis=(0, 2, 3)), rng.uniform(0.5, 2, size=4)
    calls = {
        "im2col": lambda k: k.im2col(x, win),
        "col2im": lambda k: k.col2im(ref.im2col(x, win), x.shape, win),
        "conv_direct": lambda k: k.conv_direct(x, wd, win, 4),
        "conv_direct_grad_w": lambda k: k.conv_direct_grad_w(x, gy, wd.shape, win, 4),
        "conv_direct_grad_x": lambda k: k.conv_direct_grad_x(gy, wd, x.shape, win, 4),
        "batch_norm_stats": lambda k: k.batch_norm_stats(x),
        "batch_norm_apply": lambda k: k.batch_norm_apply(x, m, inv, w1, w1),
        "batch_norm_backward": lambda k: k.batch_norm_backward(x, gy, m, inv, w1, True),
        "avg_pool2d": lambda k: k.avg_pool2d(x, div, pool),
        "avg_pool2d_backward": lambda k: k.avg_pool2d_backward(gp, div, x.shape, pool),
    }
    parts = _count_parts(monkeypatch)
    col = ref.im2col(x, win).reshape(4, 9, 6, 9, 8)  # (c, tap, n, oh, ow)
    depthwise = np.einsum("ct,ctnhw->nchw", wd.reshape(4, 9), col)
    for name, call in calls.items():
        monkeypatch.setattr(blas, "SPLIT_MIN_ITEMS", 1 << 60)
        one = call(numba_k)
        assert parts and set(parts) == {1}, name
        monkeypatch.setattr(blas, "SPLIT_MIN_ITEMS", 1)
        parts.clear()
        split = call(numba_k)
        assert parts and min(parts) == min(blas.workers()[0], 4), (name, parts)
        parts.clear()
        # the reference has no direct convolution: its forward is a depthwise im2col product here; its gradients
        # are compared with torch's where this file forces each conv2d algorithm (ALGORITHMS)
        want = call(ref) if hasattr(ref, name) else (depthwise,) if name == "conv_direct" else None
        for a, b, r in zip(*(v if isinstance(v, tuple) else (v,) for v in (one, split, one if want is None else want))):
            np.testing.assert_array_equal(a, b, err_msg=name)
            np.testing.assert_allclose(a, r, rtol=1e-10, atol=1e-10, err_msg=name)


def test_two_convolutions_that_differ_only_in_their_output_size_do_not_share_a_tuning_choice():
    """With dead taps dropped, a 2x2 kernel with padding 3 and dilation 3 on a 1x1 map becomes a 1x1 kernel without
    padding, as a 1x1 kernel with dilation 3 is, but with a 2x2 output that reads past the map: gemm1x1 (offered for
    the second, chosen and cached) cannot run it. The tuning key holds the whole window, output size included."""
    import torch
    autotune.clear()
    for k, p in [(1, 0), (2, 3)]:
        x, w = np.random.default_rng(k).standard_normal((2, 3, 1, 1)), np.ones((4, 3, k, k))
        y = F.conv2d(minidl.tensor(x), minidl.tensor(w), stride=2, padding=p, dilation=3)
        want = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w), stride=2, padding=p, dilation=3)
        np.testing.assert_allclose(y.numpy(), want.numpy(), rtol=1e-12, atol=1e-12)
        for key, (_, times) in autotune.cache().items():  # as if gemm1x1 had won the first: a key it cannot run
            autotune._cache[key] = ("gemm1x1", times)   # must not be the second's
    autotune.clear()


def test_index_add_with_a_small_integer_key_and_many_rows():
    """An int16 key into 40,000 rows: negative rows are counted from the end in the index's own width no longer
    (flat + n overflowed int16)."""
    x = minidl.randn(40000, 3, requires_grad=True)
    x[np.array([1, 2, 2, -1], np.int16)].sum().backward()
    g = x.grad.numpy()
    assert g[1].tolist() == [1, 1, 1] and g[2].tolist() == [2, 2, 2] and g[-1].tolist() == [1, 1, 1]
    assert g.sum() == 12


def test_relu_keeps_a_channels_last_layout():
    x = minidl.randn(2, 3, 4, 4).to(memory_format=minidl.channels_last)
    assert F.relu(x).is_contiguous(memory_format=minidl.channels_last)
    assert F.relu(x[:, :, ::2]).shape == (2, 3, 2, 4)  # neither layout: the reference, the same values

