"""The GPU kernels (minidl/kernels/_cuda.py) against the NumPy reference, over random small geometries.

Run by tests/test_cuda_kernels.py: under Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1, NumPy arrays, no GPU
needed; this is how CI runs them) or, where a GPU and CuPy are there, on the GPU with CuPy arrays.
Not collected on its own (its name does not start with test_): the simulator must be switched on before
Numba is imported, so it runs in a process of its own.
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from suite import examples, one_dtype_each
from numba import config

from minidl.kernels import Window, _numpy as ref
from test_kernels import check_im2col_col2im, geometry, max_pool_input, pool_geometry_ok

gpu = pytest.importorskip("minidl.kernels._cuda")
SIMULATED = bool(config.ENABLE_CUDASIM)
if SIMULATED:
    xp = np
    gpu.BLOCK = 8  # the simulator runs each thread as a Python thread: small blocks keep it quick
else:
    xp = pytest.importorskip("cupy")


def dev(a):
    return xp.asarray(a)


def host(a):
    return a if xp is np else a.get()


def tol(dtype):
    return dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)


@settings(max_examples=examples(25), deadline=None)
@given(geometry(), st.integers(0, 2 ** 31))
def test_im2col_col2im(geom, seed):
    check_im2col_col2im(gpu, geom, seed, dev, host)


@settings(max_examples=examples(25), deadline=None)
@given(geometry(), st.integers(0, 2 ** 31))
def test_max_pool(geom, seed):
    shape, g, dtype = geom
    if not pool_geometry_ok(shape, g):
        return
    x, rng = max_pool_input(shape, dtype, seed)
    y, arg = gpu.max_pool2d(dev(x), g)
    y_ref, arg_ref = ref.max_pool2d(x, g)
    np.testing.assert_array_equal(host(y), y_ref)
    np.testing.assert_array_equal(host(arg), arg_ref)
    assert arg.dtype == arg_ref.dtype
    gy = rng.uniform(-2, 2, size=y_ref.shape).astype(dtype)
    expected = ref.max_pool2d_backward(gy, arg_ref, shape)
    for win in (g, None):  # gathered by the windows, and scattered (adaptive pooling)
        np.testing.assert_allclose(host(gpu.max_pool2d_backward(dev(gy), arg, shape, win)), expected,
                                   **tol(dtype))


@settings(max_examples=examples(25), deadline=None)
@given(geometry(), st.integers(0, 2 ** 31))
def test_avg_pool(geom, seed):
    shape, g, dtype = geom
    g = g._replace(dh=1, dw=1)  # avg_pool2d has no dilation
    if not pool_geometry_ok(shape, g):
        return
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, size=shape).astype(dtype)
    div = rng.integers(1, 10, size=g.out_hw).astype(dtype)
    np.testing.assert_allclose(host(gpu.avg_pool2d(dev(x), dev(div), g)), ref.avg_pool2d(x, div, g), **tol(dtype))
    gy = rng.uniform(-2, 2, size=(*shape[:2], *g.out_hw)).astype(dtype)
    np.testing.assert_allclose(host(gpu.avg_pool2d_backward(dev(gy), dev(div), shape, g)),
                               ref.avg_pool2d_backward(gy, div, shape, g), **tol(dtype))


@settings(max_examples=examples(10), deadline=None)
@given(geometry(), st.sampled_from([1, 2, 3]), st.integers(1, 2), st.integers(0, 2 ** 31))
def test_direct_conv(geom, groups, per_group_out, seed):
    """Grouped and depthwise convolutions: forward and both gradients against im2col + GEMM."""
    (n, _, h, w), (kh, kw, sh, sw, ph, pw, dh, dw, _, _), dtype = geom
    oh, ow = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1  # conv2d's sizes
    rng = np.random.default_rng(seed)
    cg = int(rng.integers(1, 3))
    c, o = cg * groups, per_group_out * groups
    x = rng.uniform(-2, 2, size=(n, c, h, w)).astype(dtype)
    wt = rng.uniform(-2, 2, size=(o, cg, kh, kw)).astype(dtype)
    gy = rng.uniform(-2, 2, size=(n, o, oh, ow)).astype(dtype)
    win = Window(kh, kw, sh, sw, ph, pw, dh, dw, oh, ow)
    col = ref.im2col(x, win).reshape(groups, cg * kh * kw, -1)
    wg = wt.reshape(groups, o // groups, -1)
    y_ref = np.concatenate([wg[k] @ col[k] for k in range(groups)]).reshape(o, n, oh, ow).transpose(1, 0, 2, 3)
    np.testing.assert_allclose(host(gpu.conv_direct(dev(x), dev(wt), win, groups)), y_ref, **tol(dtype))
    gyg = gy.transpose(1, 0, 2, 3).reshape(groups, o // groups, -1)
    gw_ref = np.concatenate([gyg[k] @ col[k].T for k in range(groups)]).reshape(wt.shape)
    np.testing.assert_allclose(host(gpu.conv_direct_grad_w(dev(x), dev(gy), wt.shape, win, groups)), gw_ref,
                               **tol(dtype))
    gcol = np.concatenate([wg[k].T @ gyg[k] for k in range(groups)])
    gx_ref = ref.col2im(gcol, x.shape, win)
    np.testing.assert_allclose(host(gpu.conv_direct_grad_x(dev(gy), dev(wt), x.shape, win, groups)), gx_ref,
                               **tol(dtype))


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape, dtype", one_dtype_each([(4, 3, 5, 6), (7, 2), (3, 4, 9), (2, 1, 40, 5)]))
def test_batch_norm(shape, training, dtype):
    rng = np.random.default_rng(0)
    x = (rng.normal(size=shape) * 3 + 1).astype(dtype)
    gy = rng.normal(size=shape).astype(dtype)
    c = shape[1]
    w, b = rng.normal(size=c).astype(dtype), rng.normal(size=c).astype(dtype)
    m_ref, v_ref = ref.batch_norm_stats(x)
    m, v = gpu.batch_norm_stats(dev(x))
    np.testing.assert_allclose(host(m), m_ref, **tol(dtype))
    np.testing.assert_allclose(host(v), v_ref, **tol(dtype))
    assert m.dtype == m_ref.dtype and v.dtype == v_ref.dtype
    invstd = (1 / np.sqrt(v_ref + 1e-5)).astype(dtype)
    args = (m_ref, invstd, w)
    np.testing.assert_allclose(host(gpu.batch_norm_apply(dev(x), *map(dev, args), dev(b))),
                               ref.batch_norm_apply(x, *args, b), **tol(dtype))
    for got, want in zip(gpu.batch_norm_backward(dev(x), dev(gy), *map(dev, args), training),
                         ref.batch_norm_backward(x, gy, *args, training)):
        np.testing.assert_allclose(host(got), want, rtol=1e-4 if dtype == np.float32 else 1e-10,
                                   atol=1e-4 if dtype == np.float32 else 1e-10)
        assert got.dtype == want.dtype


OPTIMIZERS = [("SGD", dict(lr=0.1)), ("SGD", dict(lr=0.1, momentum=0.9, weight_decay=0.01)),
              ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.3)), ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
              ("SGD", dict(lr=0.1, momentum=0.9, maximize=True)), ("Adam", dict(lr=0.01)),
              ("Adam", dict(lr=0.01, weight_decay=0.1, amsgrad=True)), ("AdamW", dict(lr=0.01, weight_decay=0.1)),
              ("AdamW", dict(lr=0.01, betas=(0.8, 0.9), amsgrad=True, maximize=True))]


@pytest.mark.parametrize("name, kw", OPTIMIZERS, ids=[f"{n}-{sorted(k)}" for n, k in OPTIMIZERS])
def test_fused_optimizer_steps(name, kw):
    """Four steps of the fused GPU update against the optimizer's own array code (on the CPU), float64."""
    import minidl
    rng = np.random.default_rng(0)
    p0 = rng.normal(size=(3, 5))
    grads = [rng.normal(size=p0.shape) for _ in range(4)]
    ref_p = minidl.nn.Parameter(minidl.tensor(p0.copy()))
    ref_opt = getattr(minidl.optim, name)([ref_p], **kw)
    p, state = dev(p0.copy()), {}
    group = dict(ref_opt.defaults)
    for g in grads:
        ref_p.grad = minidl.tensor(g)
        ref_opt.step()
        gd = dev(-g if kw.get("maximize") else g)  # the base class negates the gradient before _update
        if name == "SGD":
            first = group["momentum"] != 0 and "buf" not in state
            if first:
                state["buf"] = xp.empty_like(p)
            gpu.sgd_step(p, gd, state.get("buf"), group["lr"], group["weight_decay"], group["momentum"],
                         group["dampening"], group["nesterov"], first)
        else:
            if not state:
                state.update(t=0, m=xp.zeros_like(p), v=xp.zeros_like(p),
                             vmax=xp.zeros_like(p) if group["amsgrad"] else None)
            state["t"] += 1
            b1, b2 = group["betas"]
            gpu.adam_step(p, gd, state["m"], state["v"], state["vmax"], group["lr"], b1, b2, group["eps"],
                          group["weight_decay"], name == "AdamW", state["t"])
        np.testing.assert_allclose(host(p), ref_p.detach().numpy(), rtol=1e-12, atol=1e-12)


def test_the_probe_kernel_runs():
    gpu.probe(xp)  # what kernels/__init__.py runs once before it uses these kernels
