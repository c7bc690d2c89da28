"""Recurrent layers: RNN, LSTM, GRU and their one-step cells, with torch's arguments, equations and parameter names
(``weight_ih_l0``, ``weight_hh_l0_reverse``, ...), so torch's state_dict loads. Built from minidl's ops (linear,
sigmoid, tanh, mul, add, stack), so backward and double backward come from theirs.

One step, per layer and direction, with x the input and h (c) the state:

- RNN:  h' = tanh(W_ih x + b_ih + W_hh h + b_hh)  (or relu)
- LSTM: i, f, g, o = chunks of W_ih x + b_ih + W_hh h + b_hh; c' = sigmoid(f) c + sigmoid(i) tanh(g);
        h' = sigmoid(o) tanh(c'), with proj_size h' = W_hr (sigmoid(o) tanh(c'))
- GRU:  r, z = sigmoid(chunks of W_ih x + b_ih + W_hh h + b_hh over the first two thirds);
        n = tanh(W_in x + b_in + r (W_hn h + b_hn)); h' = (1 - z) n + z h

The input-to-hidden products of a whole sequence are one matrix product per layer and direction; the time loop
of a layer and direction is one Function (functional/rnn.py: backward through time written out, so not
differentiable twice). The cells compose minidl's ops (differentiable twice).
"""
import math

from .. import functional as F
from ..autograd.creation import empty, zeros
from ..autograd.tensor import Tensor
from ..backend.errors import RuntimeValueError
from ..functional.rnn import GRUSequence, LSTMProjSequence, LSTMSequence, RNNSequence
from . import init
from .module import Module
from .parameter import Parameter

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


def _rnn_step(mode):
    act = F.relu if mode == "RNN_RELU" else F.tanh

    def step(gi, h, w_hh, b_hh):
        return act(gi + F.linear(h, w_hh, b_hh))
    return step


def _lstm_step(gi, state, w_hh, b_hh):
    h, c = state
    i, f, g, o = (gi + F.linear(h, w_hh, b_hh)).chunk(4, -1)
    c = F.sigmoid(f) * c + F.sigmoid(i) * F.tanh(g)
    return F.sigmoid(o) * F.tanh(c), c


def _gru_step(gi, h, w_hh, b_hh):
    gh = F.linear(h, w_hh, b_hh)
    i_r, i_z, i_n = gi.chunk(3, -1)
    h_r, h_z, h_n = gh.chunk(3, -1)
    r, z = F.sigmoid(i_r + h_r), F.sigmoid(i_z + h_z)
    n = F.tanh(i_n + r * h_n)
    return (1 - z) * n + z * h


def _check_sizes(name, input_size, hidden_size, num_layers):
    for arg, v, low in (("input_size", input_size, 1), ("hidden_size", hidden_size, 1), ("num_layers", num_layers, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise RuntimeValueError(f"{name}: {arg} must be an int >= {low}, got {v!r}")


def _check_proj_size(name, proj_size, hidden_size):
    """torch's rules for LSTM's proj_size: an int, 0 (no projection) or below hidden_size."""
    if isinstance(proj_size, bool) or not isinstance(proj_size, int):
        raise TypeError(f"{name}: proj_size must be an int, got {type(proj_size).__name__}")
    if proj_size < 0:
        raise ValueError(f"{name}: proj_size should be a positive integer or zero to disable projections, got "
                         f"{proj_size}")
    if proj_size >= hidden_size:
        raise ValueError(f"{name}: proj_size has to be smaller than hidden_size ({hidden_size}), got {proj_size}")


def _init_uniform(module):
    """Every weight and bias uniform in +-1/sqrt(hidden_size), as torch."""
    bound = 1.0 / math.sqrt(module.hidden_size) if module.hidden_size > 0 else 0
    for p in module.parameters():
        init.uniform_(p, -bound, bound)


class RNNBase(Module):
    """The common part of RNN, LSTM and GRU: parameters per layer and direction, the sequence loop, batch_first,
    unbatched inputs, dropout between layers."""

    def __init__(self, mode, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, device=None, dtype=None):
        super().__init__()
        name = type(self).__name__
        _check_sizes(name, input_size, hidden_size, num_layers)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout <= 1:
            raise RuntimeValueError(f"{name}: dropout must be a number in [0, 1], got {dropout!r}")
        _check_proj_size(name, proj_size, hidden_size)
        self.mode, self.input_size, self.hidden_size, self.num_layers = mode, input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional, self.proj_size = bool(bidirectional), proj_size
        gate, out = _GATES[mode] * hidden_size, proj_size or hidden_size  # out: the size of h
        directions = 2 if bidirectional else 1
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else out * directions
            for suffix in ["", "_reverse"][:directions]:  # torch's order: w_ih, w_hh, b_ih, b_hh, w_hr
                shapes = [("weight_ih", (gate, layer_input)), ("weight_hh", (gate, out))]
                shapes += [("bias_ih", (gate,)), ("bias_hh", (gate,))] if bias else []
                shapes += [("weight_hr", (proj_size, hidden_size))] if proj_size else []
                for kind, shape in shapes:
                    setattr(self, f"{kind}_l{layer}{suffix}", Parameter(empty(*shape, dtype=dtype, device=device)))
        self.reset_parameters()

    def reset_parameters(self):
        _init_uniform(self)

    def flatten_parameters(self):
        """Nothing to do, as in torch on the CPU (torch packs the weights into one buffer for cuDNN; minidl's
        recurrent kernels read the parameters as they are, on every device)."""

    def _weights(self, layer, suffix):
        get = lambda n: getattr(self, f"{n}_l{layer}{suffix}", None)  # noqa: E731
        return get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh"), get("weight_hr")

    def _state_shape(self, batch, size=None):
        """The shape of h_0 (or, with ``size`` hidden_size, of an LSTM's c_0): h has proj_size where there is one."""
        n, size = self.num_layers * (2 if self.bidirectional else 1), size or self.proj_size or self.hidden_size
        return (n, size) if batch is None else (n, batch, size)

    def _check_input(self, input):
        name = type(self).__name__
        if not isinstance(input, Tensor):
            raise TypeError(f"{name}: input must be a Tensor, got {type(input).__name__}")
        if input.ndim not in (2, 3):
            raise RuntimeValueError(f"{name}: expected a 2-D (unbatched) or 3-D input, got shape {tuple(input.shape)}")
        if input.shape[-1] != self.input_size:
            raise RuntimeValueError(f"{name}: input.size(-1) must be equal to input_size ({self.input_size}), got "
                                    f"{input.shape[-1]}")

    def _check_state(self, h, batch, what, size=None):
        want = self._state_shape(batch, size)
        if not isinstance(h, Tensor) or tuple(h.shape) != want:
            got = tuple(h.shape) if isinstance(h, Tensor) else type(h).__name__
            raise RuntimeValueError(f"{type(self).__name__}: expected {what} of shape {want}, got {got}")

    def forward(self, input, hx=None):
        self._check_input(input)
        unbatched = input.ndim == 2
        x = input.unsqueeze(1) if unbatched else (input.transpose(0, 1) if self.batch_first else input)
        batch = x.shape[1]
        states = self._initial_states(hx, None if unbatched else batch, x)
        x, finals = self._layers(x, states)
        out = x.squeeze(1) if unbatched else (x.transpose(0, 1) if self.batch_first else x)
        return out, self._final_states(finals, unbatched)

    def _initial_states(self, hx, batch, x, size=None, what="hx"):
        """One state per layer and direction (LSTM: an (h, c) pair), from hx or zeros; ``size`` as _state_shape's."""
        n, size = self._state_shape(batch, size)[0], self._state_shape(None, size)[1]
        if hx is None:
            return [zeros(x.shape[1], size, dtype=x.dtype, device=x.device) for _ in range(n)]
        self._check_state(hx, batch, what, size)
        h = hx if batch is not None else hx.unsqueeze(1)
        return [h[k] for k in range(n)]

    def _final_states(self, finals, unbatched):
        h = F.stack(finals, 0)
        return h.squeeze(1) if unbatched else h

    def _layers(self, x, states):
        directions = 2 if self.bidirectional else 1
        finals = []
        for layer in range(self.num_layers):
            outs = []
            for d, suffix in enumerate(["", "_reverse"][:directions]):
                w_ih, w_hh, b_ih, b_hh, w_hr = self._weights(layer, suffix)
                gi = F.linear(x, w_ih, b_ih)  # every time step's input product at once
                seq, final = self._sequence(gi.flip(0) if d else gi, states[layer * directions + d], w_hh, b_hh, w_hr)
                outs.append(seq.flip(0) if d else seq)
                finals.append(final)
            x = outs[0] if directions == 1 else F.cat(outs, -1)
            if self.dropout and self.training and layer < self.num_layers - 1:
                x = F.dropout(x, self.dropout, True)
        return x, finals

    def _sequence(self, gi, h0, w_hh, b_hh, w_hr=None):
        """(h of every step, the final state) of one layer and direction: the time loop is one Function
        (functional/rnn.py). ``w_hr``: an LSTM's projection, or None."""
        hs = RNNSequence.apply(gi, h0, w_hh, b_hh, relu=self.mode == "RNN_RELU")
        return hs, hs[-1]

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        for arg, default in (("bias", True), ("batch_first", False), ("dropout", 0.0), ("bidirectional", False)):
            if getattr(self, arg) != default:
                s += f", {arg}={getattr(self, arg)}"
        return s


class RNN(RNNBase):
    """Elman RNN: h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh) (``nonlinearity='relu'``: relu). Input (L, N,
    input_size), (N, L, input_size) with batch_first, or (L, input_size); returns (output, h_n), output holding the
    last layer's h_t for every t (both directions side by side), h_n (num_layers * directions, N, hidden_size)."""

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, device=None, dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise RuntimeValueError(f"RNN: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", input_size, hidden_size, num_layers,
                         bias, batch_first, dropout, bidirectional, device=device, dtype=dtype)


class GRU(RNNBase):
    """Gated recurrent unit (torch's equations, gates r, z, n in that order in the weights); arguments and shapes
    as RNN."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, device=None, dtype=None):
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         device=device, dtype=dtype)

    def _sequence(self, gi, h0, w_hh, b_hh, w_hr=None):
        hs = GRUSequence.apply(gi, h0, w_hh, b_hh)
        return hs, hs[-1]


class LSTM(RNNBase):
    """Long short-term memory (torch's equations, gates i, f, g, o in that order in the weights). Takes and returns
    (h, c) pairs: ``output, (h_n, c_n) = lstm(input, (h_0, c_0))``; shapes as RNN, c like h. With ``proj_size``
    P > 0 (torch's LSTM with projections) each step's h is W_hr (o tanh(c)), of size P (weight_hr_l{k}: (P,
    hidden_size)): the output and h have size P, c keeps hidden_size, and the next layer reads P (2P both ways)."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, device=None, dtype=None):
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         proj_size, device, dtype)

    def _sequence(self, gi, state, w_hh, b_hh, w_hr=None):
        if w_hr is not None:  # every step's h and c side by side
            out, p = LSTMProjSequence.apply(gi, state[0], state[1], w_hh, b_hh, w_hr), self.proj_size
            return out[..., :p], (out[-1, :, :p], out[-1, :, p:])
        out = LSTMSequence.apply(gi, state[0], state[1], w_hh, b_hh)  # every h, then the last c
        return out[:-1], (out[-2], out[-1])

    def _initial_states(self, hx, batch, x):
        if hx is not None and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
            raise TypeError(f"LSTM: hx must be a tuple (h_0, c_0), got {type(hx).__name__}")
        h0, c0 = (None, None) if hx is None else hx
        hs = super()._initial_states(h0, batch, x)
        cs = hs if hx is None and not self.proj_size else super()._initial_states(c0, batch, x, self.hidden_size,
                                                                                  "c_0")
        return list(zip(hs, cs))

    def _final_states(self, finals, unbatched):
        h = super()._final_states([s[0] for s in finals], unbatched)
        c = super()._final_states([s[1] for s in finals], unbatched)
        return h, c


class RNNCellBase(Module):
    """One time step of a recurrent layer: parameters weight_ih, weight_hh, bias_ih, bias_hh."""

    def __init__(self, mode, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__()
        _check_sizes(type(self).__name__, input_size, hidden_size, 1)
        self.mode, self.input_size, self.hidden_size, self.bias = mode, input_size, hidden_size, bias
        gate = _GATES[mode] * hidden_size
        self.weight_ih = Parameter(empty(gate, input_size, dtype=dtype, device=device))
        self.weight_hh = Parameter(empty(gate, hidden_size, dtype=dtype, device=device))
        if bias:
            self.bias_ih = Parameter(empty(gate, dtype=dtype, device=device))
            self.bias_hh = Parameter(empty(gate, dtype=dtype, device=device))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self):
        _init_uniform(self)

    def _prepare(self, input, hx):
        name = type(self).__name__
        if not isinstance(input, Tensor) or input.ndim not in (1, 2) or input.shape[-1] != self.input_size:
            got = tuple(input.shape) if isinstance(input, Tensor) else type(input).__name__
            raise RuntimeValueError(f"{name}: expected an input of shape (N, {self.input_size}) or "
                                    f"({self.input_size},), got {got}")
        unbatched = input.ndim == 1
        x = input.unsqueeze(0) if unbatched else input
        want = (x.shape[0], self.hidden_size)

        def state(h):
            if h is None:
                return zeros(*want, dtype=x.dtype, device=x.device)
            h = h.unsqueeze(0) if unbatched and isinstance(h, Tensor) and h.ndim == 1 else h
            if not isinstance(h, Tensor) or tuple(h.shape) != want:
                raise RuntimeValueError(f"{name}: expected a state of shape {want[1:] if unbatched else want}, got "
                                        f"{tuple(h.shape) if isinstance(h, Tensor) else type(h).__name__}")
            return h
        return x, unbatched, state

    def forward(self, input, hx=None):
        """One step of a cell with one state (RNNCell, GRUCell; LSTMCell has its own)."""
        x, unbatched, state = self._prepare(input, hx)
        h = self._step(F.linear(x, self.weight_ih, self.bias_ih), state(hx))
        return h.squeeze(0) if unbatched else h

    def extra_repr(self):
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")


class RNNCell(RNNCellBase):
    """h' = tanh(W_ih x + b_ih + W_hh h + b_hh) (or relu) for one step; input (N, input_size) or (input_size,)."""

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", device=None, dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise RuntimeValueError(f"RNNCell: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", input_size, hidden_size, bias,
                         device, dtype)

    def _step(self, gi, h):
        return _rnn_step(self.mode)(gi, h, self.weight_hh, self.bias_hh)


class GRUCell(RNNCellBase):
    """One GRU step (equations in this module's docstring); input (N, input_size) or (input_size,)."""

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__("GRU", input_size, hidden_size, bias, device, dtype)

    def _step(self, gi, h):
        return _gru_step(gi, h, self.weight_hh, self.bias_hh)


class LSTMCell(RNNCellBase):
    """One LSTM step: ``h', c' = cell(input, (h, c))``; input (N, input_size) or (input_size,)."""

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__("LSTM", input_size, hidden_size, bias, device, dtype)

    def forward(self, input, hx=None):
        x, unbatched, state = self._prepare(input, hx)
        if hx is not None and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
            raise TypeError(f"LSTMCell: hx must be a tuple (h, c), got {type(hx).__name__}")
        h, c = (None, None) if hx is None else hx
        h, c = _lstm_step(F.linear(x, self.weight_ih, self.bias_ih), (state(h), state(c)), self.weight_hh,
                          self.bias_hh)
        return (h.squeeze(0), c.squeeze(0)) if unbatched else (h, c)
