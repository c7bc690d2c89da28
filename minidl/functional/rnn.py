"""Recurrent sequences, one Function per layer and direction: the time loop of an RNN, LSTM or GRU layer runs inside
forward, and backward runs it in reverse (backpropagation through time) with the gradients written out. The
input-to-hidden products of every step come in precomputed as ``gi`` (L, N, gates * H), from linear (whose own
backward takes them on to x, W_ih and b_ih). One node per sequence instead of about fifteen per time step: measured
(benchmarks/NOTES.md, change 29), an LSTM over 28 steps took 19x torch's time built from per-step ops.

Not differentiable twice (the backward is array code): nn.RNN/LSTM/GRU say so when asked.

Equations (torch's, gates in its order in the weights):
- RNN:  h_t = act(gi_t + W_hh h_{t-1} + b_hh), act tanh or relu
- LSTM: i, f, g, o = sigmoid, sigmoid, tanh, sigmoid of gi_t + W_hh h_{t-1} + b_hh (in four chunks);
        c_t = f c_{t-1} + i g; h_t = o tanh(c_t)
- GRU:  r, z = sigmoid(gi_r + gh_r), sigmoid(gi_z + gh_z) with gh = W_hh h_{t-1} + b_hh;
        n = tanh(gi_n + r gh_n); h_t = (1 - z) n + z h_{t-1}
"""
from .. import kernels
from ..autograd import Function


def _sigmoid(xp, a):
    return 0.5 * (xp.tanh(0.5 * a) + 1)  # no overflow warning for large |a|, as exp would give


def _hidden(h, w_hh, b_hh):
    gh = kernels.matmul(h, w_hh.T)
    return gh if b_hh is None else gh + b_hh


def _previous(xp, hs, h0):
    """h_{t-1} for every t: h0, then the outputs but the last."""
    return xp.concatenate([h0[None], hs[:-1]], axis=0)


def _weight_grads(xp, dgh, hprev, b_hh):
    """dW_hh = sum over t of dgh_t^T h_{t-1} (one product), db_hh = sum of dgh."""
    g2 = dgh.reshape(-1, dgh.shape[-1])
    dw = kernels.matmul(g2.T, hprev.reshape(-1, hprev.shape[-1]))
    return dw, (None if b_hh is None else g2.sum(axis=0))


class RNNSequence(Function):
    """h for every step of one RNN layer and direction: (L, N, H)."""
    name = "rnn"
    differentiable_twice = False

    def forward(self, xp, gi, h0, w_hh, b_hh, relu=False):
        self.relu = relu
        hs = xp.empty(gi.shape[:2] + (h0.shape[-1],), dtype=gi.dtype)
        h = h0
        for t in range(gi.shape[0]):
            a = gi[t] + _hidden(h, w_hh, b_hh)
            h = xp.maximum(a, 0) if relu else xp.tanh(a)
            hs[t] = h
        self.save_for_backward(hs, h0, w_hh, b_hh)
        return hs

    def backward(self, g):
        hs, h0, w_hh, b_hh = self.saved_arrays
        xp = kernels.get_array_module(hs)
        g = g._data
        da = xp.empty_like(hs)
        dh = xp.zeros_like(h0)
        for t in range(hs.shape[0] - 1, -1, -1):
            d = g[t] + dh
            da[t] = d * (hs[t] > 0) if self.relu else d * (1 - hs[t] * hs[t])
            dh = kernels.matmul(da[t], w_hh)
        dw, db = _weight_grads(xp, da, _previous(xp, hs, h0), b_hh)
        return da, dh, dw, db


class LSTMSequence(Function):
    """h and c for every step of one LSTM layer and direction, side by side: (L, N, 2H) (h first)."""
    name = "lstm"
    differentiable_twice = False

    def forward(self, xp, gi, h0, c0, w_hh, b_hh):
        L, N = gi.shape[:2]
        H = h0.shape[-1]
        out = xp.empty((L, N, 2 * H), dtype=gi.dtype)
        gates = xp.empty((L, N, 4 * H), dtype=gi.dtype)  # i, f, g, o after their activations
        h, c = h0, c0
        for t in range(L):
            a = gi[t] + _hidden(h, w_hh, b_hh)
            gt = gates[t]
            gt[:, :2 * H] = _sigmoid(xp, a[:, :2 * H])
            gt[:, 2 * H:3 * H] = xp.tanh(a[:, 2 * H:3 * H])
            gt[:, 3 * H:] = _sigmoid(xp, a[:, 3 * H:])
            c = gt[:, H:2 * H] * c + gt[:, :H] * gt[:, 2 * H:3 * H]
            h = gt[:, 3 * H:] * xp.tanh(c)
            out[t, :, :H], out[t, :, H:] = h, c
        self.save_for_backward(out, gates, h0, c0, w_hh, b_hh)
        return out

    def backward(self, g):
        out, gates, h0, c0, w_hh, b_hh = self.saved_arrays
        xp = kernels.get_array_module(out)
        g = g._data
        H = h0.shape[-1]
        hs, cs = out[..., :H], out[..., H:]
        da = xp.empty_like(gates)
        dh, dc = xp.zeros_like(h0), xp.zeros_like(c0)
        for t in range(out.shape[0] - 1, -1, -1):
            i, f, gg, o = (gates[t][:, k * H:(k + 1) * H] for k in range(4))
            dh = g[t, :, :H] + dh
            tc = xp.tanh(cs[t])
            dc = g[t, :, H:] + dc + dh * o * (1 - tc * tc)
            c_prev = cs[t - 1] if t else c0
            dt = da[t]
            dt[:, :H] = dc * gg * i * (1 - i)
            dt[:, H:2 * H] = dc * c_prev * f * (1 - f)
            dt[:, 2 * H:3 * H] = dc * i * (1 - gg * gg)
            dt[:, 3 * H:] = dh * tc * o * (1 - o)
            dc = dc * f
            dh = kernels.matmul(dt, w_hh)
        dw, db = _weight_grads(xp, da, _previous(xp, hs, h0), b_hh)
        return da, dh, dc, dw, db


class GRUSequence(Function):
    """h for every step of one GRU layer and direction: (L, N, H)."""
    name = "gru"
    differentiable_twice = False

    def forward(self, xp, gi, h0, w_hh, b_hh):
        L, N = gi.shape[:2]
        H = h0.shape[-1]
        hs = xp.empty((L, N, H), dtype=gi.dtype)
        saved = xp.empty((L, N, 4 * H), dtype=gi.dtype)  # r, z, n and gh_n of every step
        h = h0
        for t in range(L):
            gh = _hidden(h, w_hh, b_hh)
            rz = _sigmoid(xp, gi[t, :, :2 * H] + gh[:, :2 * H])
            r, z = rz[:, :H], rz[:, H:]
            n = xp.tanh(gi[t, :, 2 * H:] + r * gh[:, 2 * H:])
            h = (1 - z) * n + z * h
            hs[t] = h
            saved[t, :, :2 * H], saved[t, :, 2 * H:3 * H], saved[t, :, 3 * H:] = rz, n, gh[:, 2 * H:]
        self.save_for_backward(hs, saved, h0, w_hh, b_hh)
        return hs

    def backward(self, g):
        hs, saved, h0, w_hh, b_hh = self.saved_arrays
        xp = kernels.get_array_module(hs)
        g = g._data
        H = h0.shape[-1]
        dgi = xp.empty_like(saved[..., :3 * H])
        dgh = xp.empty_like(dgi)
        dh = xp.zeros_like(h0)
        for t in range(hs.shape[0] - 1, -1, -1):
            r, z, n, ghn = (saved[t][:, k * H:(k + 1) * H] for k in range(4))
            h_prev = hs[t - 1] if t else h0
            d = g[t] + dh
            dan = d * (1 - z) * (1 - n * n)
            dar = dan * ghn * r * (1 - r)
            daz = d * (h_prev - n) * z * (1 - z)
            dgi[t, :, :H], dgi[t, :, H:2 * H], dgi[t, :, 2 * H:] = dar, daz, dan
            dgh[t, :, :H], dgh[t, :, H:2 * H], dgh[t, :, 2 * H:] = dar, daz, dan * r
            dh = d * z + kernels.matmul(dgh[t], w_hh)
        dw, db = _weight_grads(xp, dgh, _previous(xp, hs, h0), b_hh)
        return dgi, dh, dw, db
