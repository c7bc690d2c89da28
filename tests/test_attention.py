"""Attention and Transformers against torch in float64, with the same weights (torch's state_dict loaded into minidl
and back: the keys are the same): forward values, and gradients of inputs and parameters for a random upstream
gradient. scaled_dot_product_attention is checked against torch's default kernel here (the op table takes its math
kernel), numerically gradchecked, and its dropout for reproducibility and structure."""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import minidl
import minidl.nn as nn
import minidl.nn.functional as F
from minidl.testing import gradcheck

RTOL, ATOL = 1e-7, 1e-9


def _pair(rng, *shape, grad=True):
    a = rng.uniform(-2, 2, size=shape)
    return torch.tensor(a, requires_grad=grad), minidl.tensor(a, requires_grad=grad)


def _np(t):
    return t.detach().numpy()


def _compare(t_outs, m_outs, t_leaves, m_leaves, rng):
    """Outputs equal, then the leaves' gradients for one random upstream gradient per output."""
    t_outs = [o for o in t_outs if o is not None]
    m_outs = [o for o in m_outs if o is not None]
    assert len(t_outs) == len(m_outs)
    for t, m in zip(t_outs, m_outs):
        assert tuple(m.shape) == tuple(t.shape)
        np.testing.assert_allclose(_np(m), _np(t), rtol=RTOL, atol=ATOL, equal_nan=True)
    gs = [rng.uniform(-1, 1, size=tuple(t.shape)) for t in t_outs]
    t_g = torch.autograd.grad(t_outs, t_leaves, [torch.tensor(g) for g in gs], allow_unused=True)
    m_g = minidl.autograd.grad(m_outs, m_leaves, [minidl.tensor(g) for g in gs], allow_unused=True)
    for i, (t, m) in enumerate(zip(t_g, m_g)):
        t = np.zeros(tuple(t_leaves[i].shape)) if t is None else t.numpy()
        m = np.zeros(t.shape) if m is None else _np(m)
        np.testing.assert_allclose(m, t, rtol=RTOL, atol=ATOL, equal_nan=True, err_msg=f"gradient {i}")


# ---- scaled_dot_product_attention ----------------------------------------------------------------------------
_BOOL = np.random.default_rng(7).random((4, 6)) < 0.6
_BOOL[1] = False  # a fully masked row: zeros out, zero gradients (torch's safe softmax)
SDPA_CASES = {
    "plain": ((2, 3, 4, 5), (2, 3, 6, 5), (2, 3, 6, 7), {}),
    "bool mask with a fully masked row": ((2, 3, 4, 5), (2, 3, 6, 5), (2, 3, 6, 7), {"attn_mask": "bool"}),
    "float mask": ((2, 3, 4, 5), (2, 3, 6, 5), (2, 3, 6, 7), {"attn_mask": "float"}),
    "causal L > S": ((2, 3, 6, 5), (2, 3, 4, 5), (2, 3, 4, 7), {"is_causal": True}),
    "causal L < S, scale": ((1, 2, 3, 5), (1, 2, 6, 5), (1, 2, 6, 7), {"is_causal": True, "scale": 0.2}),
    "grouped heads": ((2, 6, 4, 5), (2, 2, 6, 5), (2, 2, 6, 3), {"enable_gqa": True}),
    "3-D broadcast to 4-D": ((4, 3, 8), (2, 4, 6, 8), (2, 4, 6, 8), {}),
    "2-D": ((4, 5), (6, 5), (6, 7), {}),
}


@pytest.mark.parametrize("case", SDPA_CASES)
def test_sdpa_matches_torch_forward_and_backward(case):
    qs, ks, vs, kw = SDPA_CASES[case]
    rng = np.random.default_rng(len(case))
    (tq, mq), (tk, mk), (tv, mv) = _pair(rng, *qs), _pair(rng, *ks), _pair(rng, *vs)
    t_leaves, m_leaves, t_kw, m_kw = [tq, tk, tv], [mq, mk, mv], dict(kw), dict(kw)
    if kw.get("attn_mask") == "bool":
        t_kw["attn_mask"], m_kw["attn_mask"] = torch.tensor(_BOOL), minidl.tensor(_BOOL)
    elif kw.get("attn_mask") == "float":
        tm, mm = _pair(rng, 3, 4, 6)  # broadcast over the batch; its gradient is compared too
        t_kw["attn_mask"], m_kw["attn_mask"] = tm, mm
        t_leaves.append(tm)
        m_leaves.append(mm)
    t_out = TF.scaled_dot_product_attention(tq, tk, tv, **t_kw)
    m_out = F.scaled_dot_product_attention(mq, mk, mv, **m_kw)
    _compare([t_out], [m_out], t_leaves, m_leaves, rng)
    if kw.get("attn_mask") == "bool":
        assert not np.any(_np(m_out)[..., 1, :]), "a fully masked row must give zeros"


def test_sdpa_gradcheck_float64():
    rng = np.random.default_rng(1)
    q, k, v, mask = (minidl.tensor(rng.uniform(-2, 2, s), requires_grad=True)
                     for s in ((2, 3, 4), (2, 5, 4), (2, 5, 3), (3, 5)))
    assert gradcheck(lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, m), (q, k, v, mask))
    assert gradcheck(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.7), (q, k, v))


def test_sdpa_dropout_is_reproducible_and_drops_whole_weights():
    rng = np.random.default_rng(2)
    q, k, v = (minidl.tensor(rng.standard_normal(s), requires_grad=True) for s in ((2, 2, 5, 4), (2, 2, 7, 4),
                                                                                   (2, 2, 7, 3)))
    outs = []
    for _ in range(2):
        minidl.manual_seed(3)
        outs.append(F.scaled_dot_product_attention(q, k, v, dropout_p=0.4))
    np.testing.assert_array_equal(_np(outs[0]), _np(outs[1]))
    # the same numbers by hand: softmax weights, each dropped where rand >= p fails, the rest scaled by 1 / (1 - p)
    minidl.manual_seed(3)
    keep = minidl.rand(2, 2, 5, 7, dtype=minidl.float64) >= 0.4
    w = F.softmax((q @ k.transpose(-1, -2)) / 2.0, dim=-1)
    np.testing.assert_allclose(_np(outs[0]), _np((w * keep / 0.6) @ v), rtol=1e-12, atol=1e-12)
    assert 0 < _np(keep).mean() < 1
    np.testing.assert_array_equal(_np(F.scaled_dot_product_attention(q, k, v, dropout_p=1.0)), 0.0)
    g, = minidl.autograd.grad(outs[0].sum(), [q], create_graph=True)
    with pytest.raises(RuntimeError, match="scaled_dot_product_attention.*not differentiable twice"):
        minidl.autograd.grad(g.sum(), [q])


@pytest.mark.parametrize("call, match", [
    (lambda q: F.scaled_dot_product_attention(q, q.float(), q), "one dtype"),
    (lambda q: F.scaled_dot_product_attention(q, q, q, dropout_p=1.5), "dropout_p"),
    (lambda q: F.scaled_dot_product_attention(q, q, q, minidl.ones(3, 3, dtype=minidl.bool), is_causal=True),
     "is_causal"),
    (lambda q: F.scaled_dot_product_attention(q, q[..., :2], q), "key"),
    (lambda q: F.scaled_dot_product_attention(q, q, q, minidl.ones(3, 3, dtype=minidl.int64)), "attn_mask"),
    (lambda q: F.scaled_dot_product_attention(q, q, q, minidl.ones(5, 3, dtype=minidl.bool)), "attn_mask"),
    (lambda q: F.scaled_dot_product_attention(q[0], q[0], q[0]), "at least 2 dims"),
])
def test_sdpa_refuses_bad_arguments_naming_them(call, match):
    q = minidl.randn(3, 4, dtype=minidl.float64)
    with pytest.raises((ValueError, TypeError), match=f"scaled_dot_product_attention: .*{match}"):
        call(q)


# ---- modules -------------------------------------------------------------------------------------------------
def _twins(t_cls, m_cls, *args, **kwargs):
    """The torch module and minidl's with torch's weights; minidl's state_dict loads back into a fresh torch one."""
    torch.manual_seed(0)
    t = t_cls(*args, **kwargs).double()
    m = m_cls(*args, **kwargs).double()
    state = t.state_dict()
    assert list(m.state_dict()) == list(state), "state_dict keys differ from torch's"
    m.load_state_dict({k: v.numpy() for k, v in state.items()})
    back = t_cls(*args, **kwargs).double()
    back.load_state_dict({k: torch.tensor(_np(v)) for k, v in m.state_dict().items()})
    for k, v in back.state_dict().items():
        assert torch.equal(v, state[k]), k
    return t, m


def _params(t, m):
    names = [n for n, _ in t.named_parameters()]
    m_named = dict(m.named_parameters())
    assert sorted(m_named) == sorted(names)
    return [p for _, p in t.named_parameters()], [m_named[n] for n in names]


MHA_CASES = {
    "self, batch_first, weights averaged": (dict(batch_first=True), dict(self_attention=True)),
    "cross, per-head weights, 3-D bool mask": (dict(), dict(average_attn_weights=False, attn_mask="bool3")),
    "kdim/vdim, float padding mask": (dict(kdim=3, vdim=5), dict(key_padding_mask="float")),
    "bias_k/v, zero attention, both masks": (dict(add_bias_kv=True, add_zero_attn=True),
                                             dict(key_padding_mask="bool", attn_mask="float2")),
    "no weights (attention kernel), padding": (dict(batch_first=True),
                                               dict(need_weights=False, key_padding_mask="bool")),
    "no weights, causal": (dict(bias=False), dict(need_weights=False, attn_mask="causal", is_causal=True)),
    "unbatched": (dict(add_bias_kv=True), dict(unbatched=True, attn_mask="bool3")),
}


def _mha_inputs(rng, ckw, fkw, n=2, L=4, S=5, E=6, heads=2):
    """(torch args, minidl args, torch kwargs, minidl kwargs, leaves) for one MultiheadAttention call."""
    fkw = dict(fkw)
    unbatched, self_attn = fkw.pop("unbatched", False), fkw.pop("self_attention", False)
    bf = ckw.get("batch_first", False) and not unbatched

    def seq(length, dim):
        shape = (length, dim) if unbatched else ((n, length, dim) if bf else (length, n, dim))
        return _pair(rng, *shape)
    q = seq(L, E)
    k, v = (q, q) if self_attn else (seq(S, ckw.get("kdim", E)), seq(S, ckw.get("vdim", E)))
    S = L if self_attn else S
    masks = {"bool3": rng.random((heads if unbatched else n * heads, L, S)) < 0.3,
             "float2": rng.uniform(-1, 1, (L, S)), "causal": np.triu(np.ones((L, S), dtype=bool), 1),
             "bool": np.array([[False, False, True, False, True], [False, True, False, False, False]])[:, :S],
             "float": rng.uniform(-1, 1, (n, S))}
    t_kw, m_kw = dict(fkw), dict(fkw)
    for name in ("attn_mask", "key_padding_mask"):
        if name in fkw:
            a = masks[fkw[name]]
            a = a[0] if unbatched and name == "key_padding_mask" else a
            t_kw[name], m_kw[name] = torch.tensor(a), minidl.tensor(a)
    leaves = [p for p in (q, k, v)]
    leaves = [x for i, x in enumerate(leaves) if all(x[0] is not y[0] for y in leaves[:i])]
    return [x[0] for x in (q, k, v)], [x[1] for x in (q, k, v)], t_kw, m_kw, leaves


@pytest.mark.parametrize("case", MHA_CASES)
def test_multihead_attention_matches_torch(case):
    ckw, fkw = MHA_CASES[case]
    rng = np.random.default_rng(len(case))
    t, m = _twins(torch.nn.MultiheadAttention, nn.MultiheadAttention, 6, 2, **ckw)
    t_args, m_args, t_kw, m_kw, leaves = _mha_inputs(rng, ckw, fkw)
    t_p, m_p = _params(t, m)
    _compare(list(t(*t_args, **t_kw)), list(m(*m_args, **m_kw)), [x[0] for x in leaves] + t_p,
             [x[1] for x in leaves] + m_p, rng)


def test_multihead_attention_init_and_names_are_torchs():
    m = nn.MultiheadAttention(8, 2, kdim=4, vdim=3, add_bias_kv=True)
    assert [n for n, _ in m.named_parameters()] == [
        n for n, _ in torch.nn.MultiheadAttention(8, 2, kdim=4, vdim=3, add_bias_kv=True).named_parameters()]
    assert m.in_proj_weight is None and tuple(m.k_proj_weight.shape) == (8, 4)
    assert not np.any(_np(m.in_proj_bias)) and not np.any(_np(m.out_proj.bias))
    bound = np.sqrt(6 / (8 + 8))  # xavier_uniform_ on (8, 8)
    w = _np(m.q_proj_weight)
    assert np.abs(w).max() <= bound and np.abs(w).max() > bound / 2
    with pytest.raises(ValueError, match="MultiheadAttention: embed_dim .* divisible by num_heads"):
        nn.MultiheadAttention(6, 4)


LAYER_CASES = {
    "encoder post-norm, masks": ("TransformerEncoderLayer", dict(),
                                 dict(src_mask="float", src_key_padding_mask="bool")),
    "encoder pre-norm gelu, batch_first": ("TransformerEncoderLayer", dict(norm_first=True, activation="gelu",
                                                                          batch_first=True), {}),
    "encoder callable activation, no bias": ("TransformerEncoderLayer", dict(activation="tanh", bias=False),
                                             dict(src_mask="causal", is_causal=True)),
    "decoder post-norm, all masks": ("TransformerDecoderLayer", dict(),
                                     dict(tgt_mask="causal", memory_mask="float", tgt_key_padding_mask="bool",
                                          memory_key_padding_mask="bool")),
    "decoder pre-norm, batch_first": ("TransformerDecoderLayer", dict(norm_first=True, batch_first=True),
                                      dict(tgt_mask="causal", tgt_is_causal=True)),
}


def _masks(rng, kw, L, n):
    out_t, out_m = {}, {}
    for name, kind in kw.items():
        if isinstance(kind, str):
            a = {"float": rng.uniform(-1, 1, (L, L)), "causal": np.triu(np.ones((L, L), dtype=bool), 1),
                 "bool": np.array([[False, True, False, False, True], [True, False, False, False, False]])[:, :L]}[kind]
            out_t[name], out_m[name] = torch.tensor(a), minidl.tensor(a)
        else:
            out_t[name] = out_m[name] = kind
    return out_t, out_m


@pytest.mark.parametrize("case", LAYER_CASES)
def test_transformer_layers_match_torch(case):
    cls, ckw, fkw = LAYER_CASES[case]
    rng = np.random.default_rng(len(case))
    act = ckw.pop("activation", "relu")
    ckw = dict(ckw, dropout=0.0)
    t_act, m_act = (torch.tanh, minidl.tanh) if act == "tanh" else (act, act)
    torch.manual_seed(0)
    t = getattr(torch.nn, cls)(8, 2, 16, activation=t_act, **ckw).double()
    m = getattr(nn, cls)(8, 2, 16, activation=m_act, **ckw).double()
    assert list(m.state_dict()) == list(t.state_dict())
    m.load_state_dict({k: v.numpy() for k, v in t.state_dict().items()})
    L, n = 5, 2
    shape = (n, L, 8) if ckw.get("batch_first") else (L, n, 8)
    (tx, mx), (tmem, mmem) = _pair(rng, *shape), _pair(rng, *shape)
    t_kw, m_kw = _masks(rng, fkw, L, n)
    args_t, args_m = ((tx,), (mx,)) if "Encoder" in cls else ((tx, tmem), (mx, mmem))
    t_p, m_p = _params(t, m)
    _compare([t(*args_t, **t_kw)], [m(*args_m, **m_kw)], list(args_t) + t_p, list(args_m) + m_p, rng)


def test_transformer_matches_torch_and_its_mask_is_torchs():
    rng = np.random.default_rng(5)
    kw = dict(d_model=8, nhead=2, num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=12, dropout=0.0)
    t, m = _twins(torch.nn.Transformer, nn.Transformer, **kw)
    assert "encoder.layers.1.self_attn.in_proj_weight" in m.state_dict() and "decoder.norm.weight" in m.state_dict()
    mask = nn.Transformer.generate_square_subsequent_mask(4, dtype=minidl.float64)
    np.testing.assert_array_equal(_np(mask), torch.nn.Transformer.generate_square_subsequent_mask(4).numpy())
    (ts, ms), (tt, mt) = _pair(rng, 6, 2, 8), _pair(rng, 4, 2, 8)
    t_p, m_p = _params(t, m)
    t_out = t(ts, tt, tgt_mask=torch.tensor(_np(mask)), tgt_is_causal=True)
    m_out = m(ms, mt, tgt_mask=mask, tgt_is_causal=True)
    _compare([t_out], [m_out], [ts, tt] + t_p, [ms, mt] + m_p, rng)
    # the encoder stack alone, unbatched, with a causal mask it recognises
    _compare([t.encoder(ts[:, 0], mask=torch.tensor(_np(nn.Transformer.generate_square_subsequent_mask(6))).double())],
             [m.encoder(ms[:, 0], mask=nn.Transformer.generate_square_subsequent_mask(6, dtype=minidl.float64))],
             [ts], [ms], rng)


def test_dropout_in_training_is_reproducible_and_off_in_eval():
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.3).double()
    x = minidl.randn(5, 2, 8, dtype=minidl.float64)
    runs = []
    for _ in range(2):
        minidl.manual_seed(11)
        runs.append(_np(layer(x)))
    np.testing.assert_array_equal(runs[0], runs[1])
    layer.eval()
    e1, e2 = _np(layer(x)), _np(layer(x))
    np.testing.assert_array_equal(e1, e2)
    assert not np.allclose(runs[0], e1), "dropout changed nothing in training mode"
    layer.train()  # with p = 0 training equals eval
    layer.dropout.p = layer.dropout1.p = layer.dropout2.p = layer.self_attn.dropout = 0.0
    np.testing.assert_array_equal(_np(layer(x)), e1)


def test_transformer_refuses_bad_arguments():
    with pytest.raises(ValueError, match="activation"):
        nn.TransformerEncoderLayer(8, 2, activation="swish")
    model = nn.Transformer(8, 2, 1, 1, 16)
    with pytest.raises(ValueError, match="Transformer: the batch number"):
        model(minidl.randn(3, 2, 8), minidl.randn(3, 4, 8))
    with pytest.raises(ValueError, match="multi_head_attention_forward: key_padding_mask"):
        model.encoder(minidl.randn(3, 2, 8), src_key_padding_mask=minidl.zeros(2, 4, dtype=minidl.bool))
