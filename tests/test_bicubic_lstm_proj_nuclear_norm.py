"""Three refusals lifted (issue 30): interpolate(mode='bicubic') and Resize(interpolation=BICUBIC), LSTM(proj_size>0)
and norm(p='nuc'), each twin-checked against torch (values and gradients, float64 and float32) and gradchecked.
The generic op tests take the new interpolate and norm rows of tests/opinfo.py; these add what a row cannot say."""
import numpy as np
import pytest

import minidl
import minidl.nn as nn
import minidl.nn.functional as F
from minidl.data import transforms as T
from minidl.testing import gradcheck

torch = pytest.importorskip("torch")
TF = torch.nn.functional


def _twin(m_fn, t_fn, x, seed=0):
    """(minidl output, torch output, minidl input gradient, torch input gradient) for one random upstream gradient."""
    mx, tx = minidl.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    my, ty = m_fn(mx), t_fn(tx)
    g = np.random.default_rng(seed).uniform(-1, 1, size=tuple(ty.shape)).astype(x.dtype)
    my.backward(minidl.tensor(g))
    ty.backward(torch.tensor(g))
    return my.detach().numpy(), ty.detach().numpy(), mx.grad.numpy(), tx.grad.numpy()


# ---- interpolate(mode='bicubic') ------------------------------------------------------------------
BICUBIC = [((2, 3, 4, 5), dict(scale_factor=2)), ((1, 2, 5, 7), dict(size=(3, 9))),
           ((2, 2, 5, 6), dict(scale_factor=(1.7, 0.6))), ((1, 3, 4, 4), dict(scale_factor=2.2)),
           ((1, 1, 6, 5), dict(size=(1, 1))), ((2, 1, 6, 5), dict(scale_factor=1.3, recompute_scale_factor=True)),
           ((1, 1, 8, 8), dict(scale_factor=0.3)), ((1, 2, 5, 5), dict(size=(5, 5))), ((1, 1, 1, 1), dict(size=(3, 4))),
           ((1, 1, 30, 31), dict(scale_factor=(0.77, 3.14)))]


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("shape, kw", BICUBIC, ids=[f"{s}-{k}" for s, k in BICUBIC])
def test_bicubic_interpolate_matches_torch_in_float64_and_float32(shape, kw, align_corners):
    if align_corners and "recompute_scale_factor" in kw:
        kw = dict(kw, recompute_scale_factor=None)
    for dtype, tol in ((np.float64, 1e-12), (np.float32, 2e-5)):
        x = np.random.default_rng(1).uniform(-2, 2, size=shape).astype(dtype)
        y, ty, gx, tgx = _twin(lambda a: F.interpolate(a, mode="bicubic", align_corners=align_corners, **kw),
                               lambda a: TF.interpolate(a, mode="bicubic", align_corners=align_corners, **kw), x)
        assert y.dtype == ty.dtype and y.shape == ty.shape
        np.testing.assert_allclose(y, ty, rtol=tol, atol=tol)
        np.testing.assert_allclose(gx, tgx, rtol=tol, atol=tol)


def test_bicubic_reads_four_taps_per_dim_so_a_nan_spreads_as_in_torch():
    x = np.zeros((1, 1, 5, 6))
    x[0, 0, 2, 3] = np.nan
    for kw in (dict(size=(5, 6)), dict(scale_factor=2), dict(size=(3, 4), align_corners=True)):
        y = F.interpolate(minidl.tensor(x), mode="bicubic", **kw).numpy()
        ty = TF.interpolate(torch.tensor(x), mode="bicubic", **kw)
        np.testing.assert_array_equal(np.isnan(y), ty.isnan().numpy())


def test_bicubic_gradcheck_and_second_derivative():
    x = minidl.tensor(np.random.default_rng(2).uniform(-2, 2, (1, 2, 4, 5)), requires_grad=True)
    assert gradcheck(lambda a: F.interpolate(a, size=(7, 3), mode="bicubic"), [x])
    assert gradcheck(lambda a: F.interpolate(a, scale_factor=1.5, mode="bicubic", align_corners=True), [x])
    # the resize is linear in x: its second derivative is 0, and asking for it works (as torch's)
    g, = minidl.autograd.grad(F.interpolate(x, scale_factor=2, mode="bicubic").pow(2).sum(), [x], create_graph=True)
    h, = minidl.autograd.grad(g.sum(), [x])
    tx = torch.tensor(x.detach().numpy(), requires_grad=True)
    tg, = torch.autograd.grad(TF.interpolate(tx, scale_factor=2, mode="bicubic").pow(2).sum(), [tx], create_graph=True)
    th, = torch.autograd.grad(tg.sum(), [tx])
    np.testing.assert_allclose(h.numpy(), th.numpy(), rtol=1e-10, atol=1e-12)


def test_bicubic_refuses_what_it_cannot_do_naming_it():
    with pytest.raises(ValueError, match=r"interpolate: mode 'bicubic' needs a 4-D input"):
        F.interpolate(minidl.randn(2, 3, 5), scale_factor=2, mode="bicubic")
    with pytest.raises(ValueError, match="interpolate: antialias=True is not supported"):
        F.interpolate(minidl.randn(1, 1, 8, 8), size=(3, 3), mode="bicubic", antialias=True)


# ---- transforms.Resize(interpolation=...) ---------------------------------------------------------
@pytest.mark.parametrize("mode", ["bicubic", "bilinear", "nearest", "nearest-exact"])
@pytest.mark.parametrize("size", [(10, 15), 8, (37, 41), (7, 50)])
def test_resize_tensor_images_as_torchvision_tensor_path(mode, size):
    """torchvision resizes a tensor by interpolate (antialiased for bilinear / bicubic, align_corners=False)."""
    x = np.random.default_rng(3).uniform(0, 1, size=(3, 20, 30)).astype(np.float32)
    out = T.Resize(size, interpolation=T.InterpolationMode(mode))(minidl.tensor(x))
    aa = mode in ("bilinear", "bicubic")
    ref = TF.interpolate(torch.tensor(x)[None], size=tuple(out.shape[-2:]), mode=mode, antialias=aa,
                         **({"align_corners": False} if aa else {}))[0]
    np.testing.assert_allclose(out.numpy(), ref.numpy(), atol=1e-5)
    assert out.dtype == minidl.float32


def test_resize_bicubic_uint8_images_and_pillow_images():
    from PIL import Image
    rng = np.random.default_rng(4)
    u8 = rng.integers(0, 256, size=(3, 20, 30)).astype(np.uint8)
    out = T.Resize((13, 17), interpolation=T.InterpolationMode.BICUBIC)(minidl.tensor(u8))
    ref = TF.interpolate(torch.tensor(u8)[None].float(), size=(13, 17), mode="bicubic", antialias=True)
    assert out.dtype == minidl.uint8
    assert np.abs(out.numpy().astype(int) - ref.clamp(0, 255).round()[0].numpy().astype(int)).max() <= 1
    img = Image.fromarray(u8.transpose(1, 2, 0))
    got = T.Resize(8, interpolation=Image.BICUBIC)(img)  # Pillow's filter number, as torchvision takes it
    np.testing.assert_array_equal(np.asarray(got), np.asarray(img.resize((12, 8), Image.BICUBIC)))
    arr = T.Resize(8, T.InterpolationMode.BICUBIC)(u8.transpose(1, 2, 0))
    np.testing.assert_array_equal(arr, np.asarray(got))
    assert repr(T.Resize(8, T.InterpolationMode.BICUBIC)) == \
        "Resize(size=8, interpolation=bicubic, max_size=None, antialias=True)"


def test_resize_refusals_name_the_argument():
    x = minidl.rand(3, 8, 8)
    with pytest.raises(TypeError, match="Resize: interpolation must be a transforms.InterpolationMode"):
        T.Resize(4, interpolation="bicubic")
    with pytest.raises(ValueError, match="Resize: antialias=False is not supported for tensor images"):
        T.Resize(4, T.InterpolationMode.BICUBIC, antialias=False)(x)
    with pytest.raises(ValueError, match="Resize: tensor images resize with NEAREST"):
        T.Resize(4, T.InterpolationMode.LANCZOS)(x)


# ---- LSTM(proj_size > 0) --------------------------------------------------------------------------
LSTM_CASES = [dict(num_layers=2, proj_size=2), dict(num_layers=2, proj_size=2, bidirectional=True),
              dict(num_layers=3, proj_size=3, bidirectional=True, batch_first=True), dict(proj_size=1, bias=False)]


def _lstm_pair(kw, dtype):
    torch.manual_seed(0)
    t = torch.nn.LSTM(3, 5, **kw).to(torch.float64 if dtype == np.float64 else torch.float32)
    m = nn.LSTM(3, 5, **kw).to(dtype)
    m.load_state_dict({k: v.detach().numpy() for k, v in t.state_dict().items()})
    return m, t


@pytest.mark.parametrize("unbatched", [False, True])
@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("kw", LSTM_CASES, ids=[str(k) for k in LSTM_CASES])
def test_lstm_with_projections_matches_torch(kw, with_state, unbatched):
    rng = np.random.default_rng(5)
    D, layers, P, L, N = 1 + kw.get("bidirectional", False), kw.get("num_layers", 1), kw["proj_size"], 4, 2
    for dtype, tol in ((np.float64, 1e-12), (np.float32, 1e-5)):
        m, t = _lstm_pair(kw, dtype)
        assert [(n, tuple(p.shape)) for n, p in m.named_parameters()] == \
            [(n, tuple(p.shape)) for n, p in t.named_parameters()]
        shape = (L, 3) if unbatched else ((N, L, 3) if kw.get("batch_first") else (L, N, 3))
        lead = (D * layers,) if unbatched else (D * layers, N)
        arrays = [rng.uniform(-2, 2, size=shape)]
        arrays += [rng.uniform(-1, 1, size=lead + (P,)), rng.uniform(-1, 1, size=lead + (5,))] if with_state else []
        arrays = [a.astype(dtype) for a in arrays]
        mt, tt = [minidl.tensor(a, requires_grad=True) for a in arrays], [torch.tensor(a, requires_grad=True)
                                                                           for a in arrays]
        mo, to = m(mt[0], tuple(mt[1:]) or None), t(tt[0], tuple(tt[1:]) or None)
        m_outs, t_outs = [mo[0], *mo[1]], [to[0], *to[1]]
        for a, b in zip(m_outs, t_outs):
            assert tuple(a.shape) == tuple(b.shape)
            np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=tol, atol=tol)
        gs = [rng.uniform(-1, 1, size=tuple(o.shape)).astype(dtype) for o in t_outs]
        m_g = minidl.autograd.grad(m_outs, mt + list(m.parameters()), [minidl.tensor(g) for g in gs])
        t_g = torch.autograd.grad(t_outs, tt + list(t.parameters()), [torch.tensor(g) for g in gs])
        for a, b in zip(m_g, t_g):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=tol, atol=tol)


def test_lstm_with_projections_state_dict_moves_both_ways_and_gradchecks():
    m = nn.LSTM(3, 4, num_layers=2, proj_size=2, bidirectional=True).to(np.float64)
    bound = 1 / np.sqrt(4)  # torch's init: every parameter, weight_hr too, uniform in +-1/sqrt(hidden_size)
    assert all(np.abs(p.detach().numpy()).max() <= bound for p in m.parameters())
    assert tuple(m.weight_hr_l1_reverse.shape) == (2, 4) and tuple(m.weight_ih_l1.shape) == (16, 4)
    t = torch.nn.LSTM(3, 4, num_layers=2, proj_size=2, bidirectional=True).double()
    t.load_state_dict({k: torch.tensor(v.detach().numpy()) for k, v in m.state_dict().items()})
    x = np.random.default_rng(6).uniform(-2, 2, (5, 2, 3))
    np.testing.assert_allclose(m(minidl.tensor(x))[0].detach().numpy(), t(torch.tensor(x))[0].detach().numpy(),
                               rtol=1e-12, atol=1e-14)
    assert repr(m) == repr(t).replace("torch.", "")
    small = nn.LSTM(2, 3, proj_size=1, num_layers=2).to(np.float64)
    xs = minidl.tensor(np.random.default_rng(7).uniform(-1, 1, (3, 2, 2)), requires_grad=True)
    assert gradcheck(lambda a: small(a)[1][1], [xs])  # c_n, through both layers' projections
    assert gradcheck(lambda a: small(a)[0], [xs])


def test_lstm_with_projections_refuses_bad_sizes_and_states_naming_them():
    with pytest.raises(ValueError, match=r"LSTM: proj_size has to be smaller than hidden_size \(4\), got 4"):
        nn.LSTM(3, 4, proj_size=4)
    with pytest.raises(ValueError, match="LSTM: proj_size should be a positive integer or zero"):
        nn.LSTM(3, 4, proj_size=-1)
    with pytest.raises(TypeError, match="LSTM: proj_size must be an int, got float"):
        nn.LSTM(3, 4, proj_size=1.5)
    lstm = nn.LSTM(3, 4, proj_size=2)
    x = minidl.randn(5, 2, 3)
    with pytest.raises(ValueError, match=r"LSTM: expected hx of shape \(1, 2, 2\), got \(1, 2, 4\)"):
        lstm(x, (minidl.zeros(1, 2, 4), minidl.zeros(1, 2, 4)))
    with pytest.raises(ValueError, match=r"LSTM: expected c_0 of shape \(1, 2, 4\), got \(1, 2, 2\)"):
        lstm(x, (minidl.zeros(1, 2, 2), minidl.zeros(1, 2, 2)))


# ---- norm(p='nuc') --------------------------------------------------------------------------------
NUC = [((3, 4), {}), ((4, 3), dict(keepdim=True)), ((2, 3, 4), dict(dim=(2, 0), keepdim=True)),
       ((2, 3, 4), dict(dim=(-1, -2))), ((3, 3), {}), ((0, 3), {}), ((2, 0, 3), dict(dim=(1, 2)))]


@pytest.mark.parametrize("shape, kw", NUC, ids=[f"{s}-{k}" for s, k in NUC])
def test_nuclear_norm_matches_torch(shape, kw):
    for dtype, tol in ((np.float64, 1e-12), (np.float32, 1e-5)):
        x = np.random.default_rng(8).uniform(-2, 2, size=shape).astype(dtype)
        y, ty, gx, tgx = _twin(lambda a: minidl.norm(a, "nuc", **kw), lambda a: torch.norm(a, "nuc", **kw), x)
        assert y.shape == ty.shape and y.dtype == ty.dtype
        np.testing.assert_allclose(y, ty, rtol=tol, atol=tol)
        np.testing.assert_allclose(gx, tgx, rtol=tol, atol=tol)
    assert gradcheck(lambda a: a.norm("nuc", **kw), [minidl.tensor(x.astype(np.float64), requires_grad=True)])


def test_nuclear_norm_gradient_at_repeated_singular_values_is_the_polar_factor():
    """All singular values equal (2 Q, Q orthogonal): torch's formula U V^T has no gap to divide by; it is Q."""
    q, _ = np.linalg.qr(np.random.default_rng(9).normal(size=(4, 4)))
    x = minidl.tensor(2 * q, requires_grad=True)
    x.norm("nuc").backward()
    tx = torch.tensor(2 * q, requires_grad=True)
    torch.norm(tx, "nuc").backward()
    np.testing.assert_allclose(x.grad.numpy(), q, atol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), atol=1e-12)


def test_nuclear_norm_refusals_name_the_argument():
    with pytest.raises(ValueError, match="norm: p='nuc' needs dim to be the pair of the matrices' dims"):
        minidl.norm(minidl.randn(2, 3, 4), "nuc")
    with pytest.raises(ValueError, match="norm: p='nuc' .* at least 2 dims"):
        minidl.norm(minidl.randn(4), "nuc")
    with pytest.raises(ValueError, match="norm: p='nuc' needs two different dims"):
        minidl.norm(minidl.randn(2, 3, 4), "nuc", dim=(1, -2))
    with pytest.raises(RuntimeError, match="norm: p='nuc': the SVD did not converge"):
        minidl.norm(minidl.tensor([[np.nan, 1.0], [2.0, 3.0]]), "nuc")
    with pytest.raises(ValueError, match="norm: p must be a number, inf, -inf, 'fro' or 'nuc', got 'nucc'"):
        minidl.norm(minidl.randn(3, 4), "nucc")
    x = minidl.randn(3, 3, dtype=minidl.float64, requires_grad=True)
    g, = minidl.autograd.grad(x.norm("nuc"), [x], create_graph=True)
    with pytest.raises(RuntimeError, match="nuclear_norm.*not differentiable twice"):
        minidl.autograd.grad(g.sum(), [x])
