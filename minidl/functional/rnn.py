"""Recurrent sequences, one Function per layer and direction: the time loop of an RNN, LSTM or GRU layer runs inside
forward, and backward runs it in reverse (backpropagation through time) with the gradients written out. The
input-to-hidden products of every step come in precomputed as ``gi`` (L, N, gates * H), from linear (whose own
backward takes them on to x, W_ih and b_ih). One node per sequence instead of about fifteen per time step: measured
(benchmarks/NOTES.md, change 29), an LSTM over 28 steps took 19x torch's time built from per-step ops.

Not differentiable twice (the backward is array code): nn.RNN/LSTM/GRU say so when asked.

Equations (torch's, gates in its order in the weights):
- RNN:  h_t = act(gi_t + W_hh h_{t-1} + b_hh), act tanh or relu
- LSTM: i, f, g, o = sigmoid, sigmoid, tanh, sigmoid of gi_t + W_hh h_{t-1} + b_hh (in four chunks);
        c_t = f c_{t-1} + i g; h_t = o tanh(c_t), or with a projection (proj_size) h_t = W_hr (o tanh(c_t))
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
    """h for every step of one LSTM layer and direction, then the last c: (L + 1, N, H), rows 0..L-1 h_1..h_L and
    row L c_L.

    Each step is the recurrent product, then one kernel (kernels.lstm_forward_step; backward
    kernels.lstm_backward_step): the Numba kernels make the gates, the cell and the output in one pass, where
    NumPy took nine calls forward and fifteen backward (each 2-7 us on these small blocks; benchmarks/NOTES.md,
    changes 29, 30 and 32)."""
    name = "lstm"
    differentiable_twice = False

    def forward(self, xp, gi, h0, c0, w_hh, b_hh):
        L, N = gi.shape[:2]
        H = h0.shape[-1]
        a_in = xp.ascontiguousarray(gi) if b_hh is None else gi + b_hh  # a reversed direction comes as a view
        w_t = w_hh.T
        hc = xp.empty((L + 1, N, H), dtype=gi.dtype)
        cs = xp.empty((L + 1, N, H), dtype=gi.dtype)  # c_0 .. c_L
        cs[0] = c0
        gates = xp.empty((L, N, 4 * H), dtype=gi.dtype)  # i, f, g, o after their activations
        tc = xp.empty((L, N, H), dtype=gi.dtype)  # tanh(c_t)
        a = xp.empty((N, 4 * H), dtype=gi.dtype)
        h = h0
        for t in range(L):
            xp.matmul(h, w_t, out=a)
            kernels.lstm_forward_step(a, a_in, t, hc, cs, gates, tc)
            h = hc[t]
        hc[L] = cs[L]
        self.save_for_backward(hc, cs, gates, tc, h0, w_hh, b_hh)
        return hc

    def backward(self, g):
        hc, cs, gates, tc, h0, w_hh, b_hh = self.saved_arrays
        xp = kernels.get_array_module(hc)
        g = xp.ascontiguousarray(g._data)
        L = gates.shape[0]
        da = xp.empty_like(gates)
        dh = xp.zeros_like(h0)
        dc = g[L].copy()
        for t in range(L - 1, -1, -1):
            kernels.lstm_backward_step(g, t, dh, dc, gates, tc, cs, da)
            xp.matmul(da[t], w_hh, out=dh)
        dw, db = _weight_grads(xp, da, _previous(xp, hc[:L], h0), b_hh)
        return da, dh, dc, dw, db


class LSTMProjSequence(Function):
    """One LSTM layer and direction with a projection (torch's proj_size > 0): each step's h_t = W_hr (o tanh(c_t))
    has proj_size P < H, and h_t is what the next step's recurrent product and the next layer read (W_hh is
    (4H, P)). Returns every step's h_t and c_t side by side: (L, N, P + H).

    The step is LSTMSequence's (the recurrent product, then kernels.lstm_forward_step, which writes the unprojected
    u_t = o tanh(c_t)), then the projection. Backward: h_t's gradient (from the output and from step t + 1) goes
    through W_hr to u_t, which the step kernel takes as its h gradient."""
    name = "lstm"
    differentiable_twice = False

    def forward(self, xp, gi, h0, c0, w_hh, b_hh, w_hr):
        L, N = gi.shape[:2]
        H, P = c0.shape[-1], h0.shape[-1]
        a_in = xp.ascontiguousarray(gi) if b_hh is None else gi + b_hh
        w_t, r_t = w_hh.T, w_hr.T
        us = xp.empty((L, N, H), dtype=gi.dtype)  # u_t = o tanh(c_t), before the projection
        hs = xp.empty((L, N, P), dtype=gi.dtype)  # h_t = u_t W_hr^T
        cs = xp.empty((L + 1, N, H), dtype=gi.dtype)  # c_0 .. c_L
        cs[0] = c0
        gates = xp.empty((L, N, 4 * H), dtype=gi.dtype)
        tc = xp.empty((L, N, H), dtype=gi.dtype)
        a = xp.empty((N, 4 * H), dtype=gi.dtype)
        h = h0
        for t in range(L):
            xp.matmul(h, w_t, out=a)
            kernels.lstm_forward_step(a, a_in, t, us, cs, gates, tc)
            xp.matmul(us[t], r_t, out=hs[t])
            h = hs[t]
        self.save_for_backward(us, hs, cs, gates, tc, h0, w_hh, b_hh, w_hr)
        return xp.concatenate([hs, cs[1:]], axis=-1)

    def backward(self, g):
        us, hs, cs, gates, tc, h0, w_hh, b_hh, w_hr = self.saved_arrays
        xp = kernels.get_array_module(us)
        L, P = hs.shape[0], hs.shape[-1]
        gh, gc = g._data[..., :P], g._data[..., P:]
        dhs = xp.empty_like(hs)  # the whole gradient of each h_t
        gu = xp.empty_like(us)  # ... taken back through W_hr to u_t
        da = xp.empty_like(gates)
        no_dh = xp.zeros_like(us[0])  # the step kernel's recurrent h gradient: all of it is in gu already
        dh = xp.zeros_like(h0)
        dc = xp.zeros_like(us[0])
        for t in range(L - 1, -1, -1):
            xp.add(gh[t], dh, out=dhs[t])
            xp.matmul(dhs[t], w_hr, out=gu[t])
            dc += gc[t]
            kernels.lstm_backward_step(gu, t, no_dh, dc, gates, tc, cs, da)
            xp.matmul(da[t], w_hh, out=dh)
        dw, db = _weight_grads(xp, da, _previous(xp, hs, h0), b_hh)
        dw_hr = kernels.matmul(dhs.reshape(-1, P).T, us.reshape(-1, us.shape[-1]))
        return da, dh, dc, dw, db, dw_hr


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
