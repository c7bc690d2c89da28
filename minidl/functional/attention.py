"""Attention: scaled_dot_product_attention as one Function (the masked softmax of the score matrix in one in-place
pass, its gradient written out), and multi_head_attention_forward, torch's function behind nn.MultiheadAttention,
composed of linear, softmax and scaled_dot_product_attention.

Shapes: query (..., L, E), key (..., S, E), value (..., S, Ev); L target and S source positions, the leading dims
(batch, heads) broadcast as in matmul."""
import math

from .. import backend, kernels
from ..autograd import Function
from ..autograd.capturing import replayed
from ..autograd.creation import zeros
from ..autograd.tensor import Tensor
from ..backend.errors import RuntimeTypeError, RuntimeValueError
from ._checks import empty_result, float_tensor, optional_tensor, same_device, tensor_arg
from ._registry import register
from .activation import dropout, softmax
from .linear import bmm, linear
from .shape import cat, pad

_SDPA = "scaled_dot_product_attention"


def masked_softmax_(xp, s, mask, scale):
    """softmax(s * scale + mask) over the last axis, in place in the scores ``s`` (..., L, S): scale, mask (bool:
    False drops the score; float: added), subtract the row max, exp, normalise, with no temporary of s's size. A
    row whose every score is -inf (fully masked) gives zeros, as torch's _safe_softmax; a NaN stays NaN."""
    if scale != 1.0 and s.size:
        s *= scale
    if mask is not None:
        if mask.dtype == bool:
            xp.copyto(s, -xp.inf, where=~mask)
        else:
            s += mask
    if not s.shape[-1]:  # no keys: nothing to normalise (the output is zeros)
        return s
    m = s.max(axis=-1, keepdims=True)   # (..., L, 1)
    m[m == -xp.inf] = 0                 # a fully masked row: exp(-inf - 0) = 0, not NaN
    s -= m
    xp.exp(s, out=s)
    z = s.sum(axis=-1, keepdims=True)
    z[z == 0] = 1                       # the fully masked rows stay 0
    s /= z
    return s


def _sum_to(xp, a, shape):
    """``a`` summed over the dims it was broadcast along to reach its shape from ``shape``."""
    lead = a.ndim - len(shape)
    if lead:
        a = a.sum(axis=tuple(range(lead)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and a.shape[i] != 1)
    return a.sum(axis=axes, keepdims=True) if axes else a


class ScaledDotProductAttention(Function):
    """out = dropout(softmax(q k^T * scale + mask)) v. Saves P = softmax(...) (before dropout) and the dropout's
    scaled keep mask; backward: dP = (g v^T) * keep, dS = P * (dP - rowsum(dP * P)), gq = dS k * scale,
    gk = dS^T q * scale, gv = (P * keep)^T g, gmask = dS (a float mask). Raw arrays: differentiable once, as torch's
    CPU kernel (flash attention) is."""
    name = _SDPA
    differentiable_twice = False

    def forward(self, xp, q, k, v, mask, keep, scale):
        self.scale = scale
        p = masked_softmax_(xp, kernels.matmul(q, xp.swapaxes(k, -1, -2)), mask, scale)  # (..., L, S)
        self.save_for_backward(q, k, v, mask, p, keep)
        return kernels.matmul(p if keep is None else p * keep, v)                          # (..., L, Ev)

    def backward(self, gy):
        q, k, v, mask, p, keep = self.saved_arrays
        xp = backend.get_array_module(p)
        g, need = gy._data, self.needs_input_grad
        gv = _sum_to(xp, kernels.matmul(xp.swapaxes(p if keep is None else p * keep, -1, -2), g), v.shape) \
            if need[2] else None
        ds = kernels.matmul(g, xp.swapaxes(v, -1, -2))   # dP (..., L, S)
        if keep is not None:
            ds *= keep
        ds *= p
        ds -= p * ds.sum(axis=-1, keepdims=True)         # dS = P * (dP - rowsum(dP * P)): softmax's gradient
        gmask = _sum_to(xp, ds, mask.shape).astype(mask.dtype, copy=False) if need[3] else None
        if self.scale != 1.0:
            ds *= self.scale
        gq = _sum_to(xp, kernels.matmul(ds, k), q.shape) if need[0] else None
        gk = _sum_to(xp, kernels.matmul(xp.swapaxes(ds, -1, -2), q), k.shape) if need[1] else None
        return gq, gk, gv, gmask, None


def _broadcast(op, *shapes):
    try:
        return backend.np.broadcast_shapes(*shapes)
    except ValueError:
        raise RuntimeValueError(f"{op}: batch dims {' and '.join(str(tuple(s)) for s in shapes)} do not "
                                "broadcast") from None


def _broadcasts_to(shape, target):
    try:
        return backend.np.broadcast_shapes(shape, target) == target
    except ValueError:
        return False


def _check_sdpa(query, key, value, attn_mask, dropout_p, is_causal):
    for name, t in (("query", query), ("key", key), ("value", value)):
        float_tensor(t, _SDPA, name)
    optional_tensor(attn_mask, _SDPA, "attn_mask")
    same_device(_SDPA, query, key, value, attn_mask)
    if min(query.ndim, key.ndim, value.ndim) < 2:
        raise RuntimeValueError(f"{_SDPA}: query, key and value must have at least 2 dims, got shapes "
                                f"{tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}")
    if not query.dtype == key.dtype == value.dtype:
        raise RuntimeTypeError(f"{_SDPA}: query, key and value must have one dtype, got {query.dtype}, {key.dtype}, "
                               f"{value.dtype}")
    if query.shape[-1] != key.shape[-1] or key.shape[-2] != value.shape[-2]:
        raise RuntimeValueError(f"{_SDPA}: expected query (..., L, E), key (..., S, E), value (..., S, Ev), got "
                                f"{tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}")
    if attn_mask is not None and attn_mask.dtype != bool and attn_mask.dtype.kind != "f":
        raise RuntimeTypeError(f"{_SDPA}: attn_mask must be bool or floating, got {attn_mask.dtype}")
    if attn_mask is not None and is_causal:
        raise RuntimeValueError(f"{_SDPA}: attn_mask must be None when is_causal=True (the mask is built)")
    if not isinstance(dropout_p, (int, float)) or isinstance(dropout_p, bool) or not 0.0 <= dropout_p <= 1.0:
        raise RuntimeValueError(f"{_SDPA}: dropout_p must be a number in [0, 1], got {dropout_p!r}")


def _group_heads(query, key, value, attn_mask):
    """Grouped-query attention without copying key and value: query's Hq heads as (Hkv, Hq / Hkv) and key and
    value as (Hkv, 1), so each key/value head serves its group of query heads (torch's repeat_interleave)."""
    hq, hk = query.shape[-3], key.shape[-3]
    if hk != value.shape[-3] or hq % hk:
        raise RuntimeValueError(f"{_SDPA}: with enable_gqa the number of query heads ({hq}) must be a multiple of "
                                f"key's and value's ({hk}, {value.shape[-3]}), which must be equal")
    query = query.reshape(*query.shape[:-3], hk, hq // hk, *query.shape[-2:])
    key, value = key.unsqueeze(-3), value.unsqueeze(-3)
    if attn_mask is not None and attn_mask.ndim >= 3 and attn_mask.shape[-3] == hq:
        attn_mask = attn_mask.reshape(*attn_mask.shape[:-3], hk, hq // hk, *attn_mask.shape[-2:])
    elif attn_mask is not None:
        attn_mask = attn_mask.unsqueeze(-3)
    return query, key, value, attn_mask


@register(method=False)
def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, *, scale=None,
                                 enable_gqa=False):
    """softmax(query key^T * scale + mask) value, with dropout on the attention weights (torch's semantics).

    query (..., Hq, L, E), key (..., H, S, E), value (..., H, S, Ev) -> (..., Hq, L, Ev); leading dims broadcast.
    ``attn_mask`` broadcasts to (..., L, S): bool (True takes part) or float (added to the scores). ``is_causal``:
    position i sees keys 0..i (the upper-left triangle when L != S). ``scale`` defaults to 1/sqrt(E).
    ``dropout_p``: the weights are dropped as F.dropout does, drawn from minidl's generator (``manual_seed``).
    ``enable_gqa``: key and value have H heads, each shared by Hq / H query heads. A fully masked row gives zeros.
    """
    _check_sdpa(query, key, value, attn_mask, dropout_p, is_causal)
    heads = None  # with grouped heads: the number of query heads, to ungroup the output
    if enable_gqa and query.ndim >= 3 and key.ndim >= 3 and query.shape[-3] != key.shape[-3]:
        heads = query.shape[-3]
        query, key, value, attn_mask = _group_heads(query, key, value, attn_mask)
    if not (query.numel() and key.numel() and value.numel()):  # as torch: zeros of query's shape, masks unread
        _broadcast(_SDPA, query.shape[:-2], key.shape[:-2])
        out = empty_result(query.shape[:-1] + value.shape[-1:], query, query, key, value, attn_mask)
        return out if heads is None else out.reshape(*out.shape[:-4], heads, *out.shape[-2:])
    L, S = query.shape[-2], key.shape[-2]
    scores = _broadcast(_SDPA, query.shape[:-2], key.shape[:-2]) + (L, S)
    if attn_mask is not None and not _broadcasts_to(attn_mask.shape, scores):
        raise RuntimeValueError(f"{_SDPA}: attn_mask of shape {tuple(attn_mask.shape)} does not broadcast to the "
                                f"scores' shape {scores}")
    if is_causal:
        attn_mask = _causal_mask(L, S, query.device)
    keep = None
    if dropout_p > 0:
        draw_shape = scores if heads is None else scores[:-4] + (scores[-4] * scores[-3],) + scores[-2:]
        keep = _dropout_keep(draw_shape, scores, query.dtype, query.device, dropout_p)
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else float(scale)
    if query.shape[-1] == 0:
        scale = 1.0  # no features: every score is 0 (torch scales q and k, which are empty)
    out = ScaledDotProductAttention.apply(query, key, value, attn_mask, keep, scale=scale)
    return out if heads is None else out.reshape(*out.shape[:-4], heads, *out.shape[-2:])



@replayed
def _causal_mask(L, S, device):
    """The (L, S) bool mask of is_causal (a step compiled by minidl.compile makes it again on each replay)."""
    xp = backend.array_module_for(device)
    return Tensor._make(xp.tril(xp.ones((L, S), dtype=bool)))


@replayed
def _dropout_keep(draw_shape, shape, dtype, device, p):
    """Attention dropout's scaled keep-mask, drawn from the device's generator (replayed: a new draw each step)."""
    kept = backend.generator(device).random(draw_shape, dtype=dtype) >= p
    keep = (kept * (1.0 / (1.0 - p) if p < 1 else 0.0)).astype(dtype)
    return Tensor._make(keep.reshape(shape))

# ---- multi-head attention (torch.nn.functional.multi_head_attention_forward) ------------------------------------
_MHA = "multi_head_attention_forward"


def canonical_mask(mask, name, dtype, op=_MHA):
    """A bool mask (True: masked out) as a float one (-inf where True, 0 elsewhere); a float mask as it is."""
    if mask is None:
        return None
    tensor_arg(mask, op, name)
    if mask.dtype == bool:
        return zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, float("-inf"))
    if mask.dtype.kind != "f":
        raise RuntimeTypeError(f"{op}: {name} must be bool or floating, got {mask.dtype}")
    return mask


def _check_mha_shapes(query, key, value, key_padding_mask, attn_mask, num_heads):
    """True for batched (L, N, E) inputs, False for unbatched (L, E) ones; refuses other shapes, naming them."""
    for name, t in (("query", query), ("key", key), ("value", value)):
        float_tensor(t, _MHA, name)
    if query.ndim not in (2, 3) or key.ndim != query.ndim or value.ndim != query.ndim:
        raise RuntimeValueError(f"{_MHA}: query, key and value must all be 3-D (L, N, E) or all 2-D (L, E), got "
                                f"shapes {tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}")
    batched = query.ndim == 3
    if key_padding_mask is not None and key_padding_mask.ndim != query.ndim - 1:
        raise RuntimeValueError(f"{_MHA}: key_padding_mask must be {query.ndim - 1}-D for {query.ndim}-D query, got "
                                f"shape {tuple(key_padding_mask.shape)}")
    if attn_mask is not None and attn_mask.ndim not in (2, 3):
        raise RuntimeValueError(f"{_MHA}: attn_mask must be 2-D or 3-D, got shape {tuple(attn_mask.shape)}")
    if not batched and attn_mask is not None and attn_mask.ndim == 3 \
            and tuple(attn_mask.shape) != (num_heads, query.shape[0], key.shape[0]):
        raise RuntimeValueError(f"{_MHA}: a 3-D attn_mask must have shape {(num_heads, query.shape[0], key.shape[0])}"
                                f" for unbatched inputs, got {tuple(attn_mask.shape)}")
    return batched


def _in_projection(query, key, value, w, b, w_q, w_k, w_v):
    """q, k, v = the inputs times their projections: one packed weight w (3E, E) or three (w_q, w_k, w_v)."""
    e = query.shape[-1]
    if w_q is None:
        if w is None or tuple(w.shape) != (3 * e, e):
            raise RuntimeValueError(f"{_MHA}: in_proj_weight must have shape {(3 * e, e)}, got "
                                    f"{None if w is None else tuple(w.shape)}")
        w_q, w_k, w_v = w.chunk(3)
    if b is not None and tuple(b.shape) != (3 * e,):
        raise RuntimeValueError(f"{_MHA}: in_proj_bias must have shape {(3 * e,)}, got {tuple(b.shape)}")
    b_q, b_k, b_v = (None, None, None) if b is None else b.chunk(3)
    return linear(query, w_q, b_q), linear(key, w_k, b_k), linear(value, w_v, b_v)


def _attn_mask_3d(attn_mask, tgt_len, src_len, bsz, num_heads):
    if attn_mask.ndim == 2:
        if tuple(attn_mask.shape) != (tgt_len, src_len):
            raise RuntimeValueError(f"{_MHA}: a 2-D attn_mask must have shape {(tgt_len, src_len)}, got "
                                    f"{tuple(attn_mask.shape)}")
        return attn_mask.unsqueeze(0)
    if tuple(attn_mask.shape) != (bsz * num_heads, tgt_len, src_len):
        raise RuntimeValueError(f"{_MHA}: a 3-D attn_mask must have shape {(bsz * num_heads, tgt_len, src_len)}, got "
                                f"{tuple(attn_mask.shape)}")
    return attn_mask


def _heads(x, length, bsz, num_heads, static, name):
    """(length, N, E) -> (N * heads, length, head_dim), or the given static key/value of that shape."""
    if static is None:
        return x.reshape(length, bsz * num_heads, x.shape[-1] // num_heads).transpose(0, 1)
    if static.shape[0] != bsz * num_heads or static.shape[2] != x.shape[-1] // num_heads:
        raise RuntimeValueError(f"{_MHA}: {name} must have shape ({bsz * num_heads}, S, {x.shape[-1] // num_heads}), "
                                f"got {tuple(static.shape)}")
    return static


def _attend(q, k, v, attn_mask, dropout_p, is_causal, need_weights, average, bsz, num_heads):
    """q (N * heads, L, head_dim), k and v (N * heads, S, head_dim) -> (the heads' outputs side by side (L * N, E),
    the weights or None): an explicit softmax where the weights are wanted, else scaled_dot_product_attention."""
    (_, tgt_len, _), src_len = q.shape, k.shape[1]
    if need_weights:
        weights = bmm(q * math.sqrt(1.0 / q.shape[-1]), k.transpose(-2, -1))          # (N * heads, L, S)
        weights = softmax(weights if attn_mask is None else weights + attn_mask, dim=-1)
        if dropout_p > 0.0:
            weights = dropout(weights, p=dropout_p)
        out = bmm(weights, v).transpose(0, 1).reshape(tgt_len * bsz, num_heads * v.shape[-1])
        weights = weights.reshape(bsz, num_heads, tgt_len, src_len)
        return out, weights.mean(dim=1) if average else weights
    if attn_mask is not None:  # (1, L, S) or (N * heads, L, S) -> broadcasts to (N, heads, L, S)
        attn_mask = attn_mask.unsqueeze(0) if attn_mask.shape[0] == 1 else \
            attn_mask.reshape(bsz, num_heads, -1, src_len)
    q, k, v = (t.reshape(bsz, num_heads, t.shape[1], t.shape[2]) for t in (q, k, v))
    out = scaled_dot_product_attention(q, k, v, attn_mask, dropout_p, is_causal)  # (N, heads, L, head_dim)
    return out.permute(2, 0, 1, 3).reshape(tgt_len * bsz, num_heads * v.shape[-1]), None


@register(method=False)
def multi_head_attention_forward(query, key, value, embed_dim_to_check, num_heads, in_proj_weight, in_proj_bias,
                                 bias_k, bias_v, add_zero_attn, dropout_p, out_proj_weight, out_proj_bias,
                                 training=True, key_padding_mask=None, need_weights=True, attn_mask=None,
                                 use_separate_proj_weight=False, q_proj_weight=None, k_proj_weight=None,
                                 v_proj_weight=None, static_k=None, static_v=None, average_attn_weights=True,
                                 is_causal=False):
    """Multi-head attention as torch computes it (nn.MultiheadAttention's forward): query (L, N, E), key (S, N, kdim),
    value (S, N, vdim), or unbatched (L, E) ... -> (output (L, N, E), weights (N, L, S), per head (N, heads, L, S)
    with ``average_attn_weights=False``, or None without ``need_weights``). Masks: key_padding_mask (N, S) and
    attn_mask (L, S) or (N * heads, L, S), bool (True: masked out) or float (added). With ``need_weights`` the
    weights are an explicit softmax (a fully masked row is NaN, as torch's); without, scaled_dot_product_attention."""
    batched = _check_mha_shapes(query, key, value, key_padding_mask, attn_mask, num_heads)
    if not batched:
        query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
        key_padding_mask = None if key_padding_mask is None else key_padding_mask.unsqueeze(0)
    tgt_len, bsz, embed_dim = query.shape
    src_len = key.shape[0]
    if embed_dim != embed_dim_to_check or embed_dim % num_heads:
        raise RuntimeValueError(f"{_MHA}: expected embed_dim {embed_dim_to_check}, divisible by num_heads "
                                f"({num_heads}), got query of shape {tuple(query.shape)}")
    if key.shape[:2] != value.shape[:2] or (not use_separate_proj_weight and key.shape != value.shape):
        raise RuntimeValueError(f"{_MHA}: key of shape {tuple(key.shape)} does not match value's {tuple(value.shape)}")
    key_padding_mask = canonical_mask(key_padding_mask, "key_padding_mask", query.dtype)
    if is_causal and attn_mask is None:
        raise RuntimeValueError(f"{_MHA}: is_causal needs attn_mask (nn.Transformer.generate_square_subsequent_mask)")
    if is_causal and key_padding_mask is None and not need_weights:
        attn_mask = None  # scaled_dot_product_attention builds the causal mask
    else:
        attn_mask = canonical_mask(attn_mask, "attn_mask", query.dtype)
        is_causal = is_causal and key_padding_mask is None
    q, k, v = _in_projection(query, key, value, in_proj_weight, in_proj_bias,
                             *((q_proj_weight, k_proj_weight, v_proj_weight) if use_separate_proj_weight else
                               (None, None, None)))
    if attn_mask is not None:
        attn_mask = _attn_mask_3d(attn_mask, tgt_len, src_len, bsz, num_heads)
    if bias_k is not None and bias_v is not None:  # one more key and value position, learned
        k, v = cat([k, bias_k.repeat(1, bsz, 1)]), cat([v, bias_v.repeat(1, bsz, 1)])
        attn_mask = None if attn_mask is None else pad(attn_mask, (0, 1))
        key_padding_mask = None if key_padding_mask is None else pad(key_padding_mask, (0, 1))
    q = q.reshape(tgt_len, bsz * num_heads, embed_dim // num_heads).transpose(0, 1)  # (N * heads, L, head_dim)
    k = _heads(k, k.shape[0], bsz, num_heads, static_k, "static_k")                # (N * heads, S, head_dim)
    v = _heads(v, v.shape[0], bsz, num_heads, static_v, "static_v")
    if add_zero_attn:  # one more key and value position, zeros
        k = cat([k, zeros((k.shape[0], 1, k.shape[2]), dtype=k.dtype, device=k.device)], dim=1)
        v = cat([v, zeros((v.shape[0], 1, v.shape[2]), dtype=v.dtype, device=v.device)], dim=1)
        attn_mask = None if attn_mask is None else pad(attn_mask, (0, 1))
        key_padding_mask = None if key_padding_mask is None else pad(key_padding_mask, (0, 1))
    src_len = k.shape[1]
    if key_padding_mask is not None:
        if tuple(key_padding_mask.shape) != (bsz, src_len):
            raise RuntimeValueError(f"{_MHA}: key_padding_mask must have shape {(bsz, src_len)}, got "
                                    f"{tuple(key_padding_mask.shape)}")
        kpm = key_padding_mask.reshape(bsz, 1, 1, src_len).expand(-1, num_heads, -1, -1)
        kpm = kpm.reshape(bsz * num_heads, 1, src_len)
        attn_mask = kpm if attn_mask is None else attn_mask + kpm
    out, weights = _attend(q, k, v, attn_mask, dropout_p if training else 0.0, is_causal, need_weights,
                           average_attn_weights, bsz, num_heads)
    out = linear(out, out_proj_weight, out_proj_bias).reshape(tgt_len, bsz, out_proj_weight.shape[0])
    if not batched:
        out = out.squeeze(1)
        weights = None if weights is None else weights.squeeze(0)
    return out, weights
