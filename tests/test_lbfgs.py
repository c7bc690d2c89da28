"""optim.LBFGS against torch's, in float64: the same trajectory on Rosenbrock's function, on a small net and on the
pytorch/examples time_sequence_prediction model (LSTMCells on sine waves), with and without the strong Wolfe line
search; its state_dict carries a run on."""
import numpy as np
import pytest

import minidl
from minidl import nn

torch = pytest.importorskip("torch")

LINE_SEARCHES = [None, "strong_wolfe"]


def rosenbrock(x):
    return ((1 - x[:-1]) ** 2).sum() + 100 * ((x[1:] - x[:-1] ** 2) ** 2).sum()


def run_rosenbrock(lib, line_search_fn, steps=6, history_size=5):
    x = lib.tensor(np.array([-1.5, 2.0, 0.5, -0.3, 1.2]), requires_grad=True)
    opt = lib.optim.LBFGS([x], lr=1 if line_search_fn else 0.01, max_iter=10, history_size=history_size,
                          line_search_fn=line_search_fn)

    def closure():
        opt.zero_grad()
        loss = rosenbrock(x)
        loss.backward()
        return loss

    points, losses = [], []
    for _ in range(steps):
        losses.append(opt.step(closure).item())
        points.append(x.detach().numpy().copy())
    state = opt.state[x]
    return np.array(points), losses, (state["func_evals"], state["n_iter"])


@pytest.mark.parametrize("line_search_fn", LINE_SEARCHES)
def test_rosenbrock_trajectory_equals_torch(line_search_fn):
    got, got_losses, got_counts = run_rosenbrock(minidl, line_search_fn)
    want, want_losses, want_counts = run_rosenbrock(torch, line_search_fn)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(got_losses, want_losses, rtol=1e-10)
    assert got_counts == want_counts  # the same evaluations and iterations
    if line_search_fn:
        assert got_losses[-1] < 1e-2 * got_losses[0]  # and it minimises


def twin_net(seed=0):
    """A small float64 MLP in torch and the same one (weights copied) in minidl."""
    torch.manual_seed(seed)
    t = torch.nn.Sequential(torch.nn.Linear(3, 6), torch.nn.Tanh(), torch.nn.Linear(6, 1)).double()
    m = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 1)).double()
    m.load_state_dict({k: minidl.tensor(v.detach().numpy()) for k, v in t.state_dict().items()})
    return m, t


def train_net(lib, model, x, y, line_search_fn):
    xs, ys = lib.tensor(x), lib.tensor(y)
    opt = lib.optim.LBFGS(model.parameters(), lr=0.5, max_iter=8, history_size=4, line_search_fn=line_search_fn)

    def closure():
        opt.zero_grad()
        loss = lib.nn.functional.mse_loss(model(xs), ys)
        loss.backward()
        return loss

    losses = [opt.step(closure).item() for _ in range(4)]
    return losses, [p.detach().numpy().copy() for p in model.parameters()]


@pytest.mark.parametrize("line_search_fn", LINE_SEARCHES)
def test_small_net_equals_torch(line_search_fn):
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-2, 2, (20, 3)), rng.uniform(-1, 1, (20, 1))
    m, t = twin_net()
    got_losses, got_params = train_net(minidl, m, x, y, line_search_fn)
    want_losses, want_params = train_net(torch, t, x, y, line_search_fn)
    np.testing.assert_allclose(got_losses, want_losses, rtol=1e-9)
    for g, w in zip(got_params, want_params):
        np.testing.assert_allclose(g, w, rtol=1e-8, atol=1e-10)


class Sequence:
    """pytorch/examples time_sequence_prediction's model, built from either library (smaller: hidden size 8)."""

    def __init__(self, lib, hidden=8):
        self.lib, self.hidden = lib, hidden
        self.lstm1, self.lstm2 = lib.nn.LSTMCell(1, hidden), lib.nn.LSTMCell(hidden, hidden)
        self.linear = lib.nn.Linear(hidden, 1)
        self.modules = [self.lstm1, self.lstm2, self.linear]
        for m in self.modules:
            m.double()

    def parameters(self):
        return [p for m in self.modules for p in m.parameters()]

    def __call__(self, input, future=0):
        lib, n = self.lib, input.size(0)
        h_t = c_t = h_t2 = c_t2 = lib.zeros(n, self.hidden, dtype=lib.double)
        outputs = []
        for input_t in input.split(1, dim=1):
            h_t, c_t = self.lstm1(input_t, (h_t, c_t))
            h_t2, c_t2 = self.lstm2(h_t, (h_t2, c_t2))
            output = self.linear(h_t2)
            outputs += [output]
        for _ in range(future):
            h_t, c_t = self.lstm1(output, (h_t, c_t))
            h_t2, c_t2 = self.lstm2(h_t, (h_t2, c_t2))
            output = self.linear(h_t2)
            outputs += [output]
        return lib.cat(outputs, dim=1)


def train_sequence(lib, seq, data):
    """Two LBFGS steps of the program's loop; every loss the closure saw, and a prediction 5 steps on."""
    inp, target = lib.tensor(data[:, :-1]), lib.tensor(data[:, 1:])
    criterion = lib.nn.MSELoss()
    opt = lib.optim.LBFGS(seq.parameters(), lr=0.8)
    losses = []

    def closure():
        opt.zero_grad()
        loss = criterion(seq(inp), target)
        losses.append(loss.item())
        loss.backward()
        return loss

    for _ in range(2):
        opt.step(closure)
    with lib.no_grad():
        pred = seq(lib.tensor(data[:2, :-1]), future=5)
    return losses, pred.detach().numpy()


def test_time_sequence_prediction_losses_equal_torch():
    """The program's loop: LBFGS(lr=0.8) on MSE of the next value of sine waves, then a prediction with future."""
    T, L, N = 20, 40, 6
    x = np.empty((N, L), np.int64)
    x[:] = np.arange(L) + np.random.default_rng(2).integers(-4 * T, 4 * T, N).reshape(N, 1)
    data = np.sin(x / 1.0 / T).astype("float64")
    torch.manual_seed(0)
    t_seq, m_seq = Sequence(torch), Sequence(minidl)
    for tm, mm in zip(t_seq.modules, m_seq.modules):
        mm.load_state_dict({k: minidl.tensor(v.detach().numpy()) for k, v in tm.state_dict().items()})
    runs = [train_sequence(torch, t_seq, data), train_sequence(minidl, m_seq, data)]
    (want_losses, want_pred), (got_losses, got_pred) = runs
    assert len(got_losses) == len(want_losses)
    np.testing.assert_allclose(got_losses, want_losses, rtol=1e-8)
    np.testing.assert_allclose(got_pred, want_pred, rtol=1e-7, atol=1e-9)
    assert got_losses[-1] < got_losses[0]


def test_state_dict_carries_a_run_on():
    """Two steps, the state saved and loaded into a new optimizer, two more: as four uninterrupted steps."""
    straight, _, _ = run_rosenbrock(minidl, "strong_wolfe", steps=4)
    x = minidl.tensor(np.array([-1.5, 2.0, 0.5, -0.3, 1.2]), requires_grad=True)

    def make():
        return minidl.optim.LBFGS([x], max_iter=10, history_size=5, line_search_fn="strong_wolfe")

    opt = make()

    def closure():
        opt.zero_grad()
        loss = rosenbrock(x)
        loss.backward()
        return loss

    for _ in range(2):
        opt.step(closure)
    saved = opt.state_dict()
    assert {"d", "t", "old_dirs", "old_stps", "ro", "H_diag", "prev_flat_grad", "prev_loss", "al", "func_evals",
            "n_iter"} <= set(saved["state"][0])
    assert set(saved["param_groups"][0]) == {"lr", "max_iter", "max_eval", "tolerance_grad", "tolerance_change",
                                             "history_size", "line_search_fn", "params"}
    opt = make()
    opt.load_state_dict(saved)
    for _ in range(2):
        opt.step(closure)
    np.testing.assert_array_equal(x.detach().numpy(), straight[-1])


def test_load_state_dict_checks_the_flat_vectors():
    x = minidl.zeros(3, requires_grad=True)
    opt = minidl.optim.LBFGS([x])
    bad = {"state": {0: {"d": np.zeros(4), "n_iter": 1}}, "param_groups": [{**opt.param_groups[0], "params": [0]}]}
    with pytest.raises(ValueError, match="flat float vector of the parameters' 3 elements"):
        opt.load_state_dict(bad)
    assert not opt.state  # nothing changed


def test_refusals_as_torch():
    a, b = minidl.zeros(2, requires_grad=True), minidl.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="parameter groups"):
        minidl.optim.LBFGS([{"params": [a]}, {"params": [b]}])
    with pytest.raises(ValueError, match="Invalid learning rate"):
        minidl.optim.LBFGS([a], lr=-1)
    opt = minidl.optim.LBFGS([a], line_search_fn="armijo")

    def closure():
        opt.zero_grad()
        loss = ((a - 1) ** 2).sum()
        loss.backward()
        return loss

    with pytest.raises(RuntimeError, match="only 'strong_wolfe' is supported"):
        opt.step(closure)


def test_optimal_start_returns_at_once():
    """A gradient already below tolerance_grad: one evaluation, nothing moves (torch's early return)."""
    x = minidl.ones(3, requires_grad=True)
    opt = minidl.optim.LBFGS([x])
    calls = []

    def closure():
        calls.append(1)
        opt.zero_grad()
        loss = ((x - 1) ** 2).sum()
        loss.backward()
        return loss

    assert float(opt.step(closure)) == 0.0
    assert len(calls) == 1 and x.tolist() == [1.0, 1.0, 1.0]
