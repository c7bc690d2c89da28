"""Optimizers and schedulers follow torch's trajectories: same model, same weights, same gradients,
a few dozen steps, float64, tight tolerance."""
import numpy as np
import pytest
import torch

import minidl
import minidl.nn as nn
from minidl import optim



def _pair():
    minidl.manual_seed(0)
    m = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    t = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).double()
    t.load_state_dict({k: torch.tensor(v.numpy()) for k, v in m.state_dict().items()})
    return m, t


OPTIMIZERS = [
    ("sgd", dict(lr=0.1)),
    ("sgd", dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=1e-2)),
    ("sgd", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)),
    ("adam", dict(lr=1e-2)),
    ("adam", dict(lr=1e-2, betas=(0.8, 0.9), weight_decay=1e-2, amsgrad=True)),
    ("adamw", dict(lr=1e-2, weight_decay=0.1)),
    ("adamw", dict(lr=1e-2, amsgrad=True)),
    ("rmsprop", dict(lr=1e-2)),
    ("rmsprop", dict(lr=1e-2, momentum=0.9, centered=True, weight_decay=1e-2)),
    ("adagrad", dict(lr=0.1, lr_decay=1e-2, weight_decay=1e-2, initial_accumulator_value=0.1)),
    ("adadelta", dict()),
    ("adadelta", dict(lr=0.5, rho=0.8, eps=1e-4, weight_decay=1e-2, maximize=True)),
    ("adamax", dict(lr=1e-2)),
    ("adamax", dict(lr=1e-2, betas=(0.8, 0.95), eps=1e-3, weight_decay=1e-2)),
    ("nadam", dict(lr=1e-2)),
    ("nadam", dict(lr=1e-2, betas=(0.8, 0.95), weight_decay=1e-2, momentum_decay=1e-2)),
    ("nadam", dict(lr=1e-2, weight_decay=1e-1, decoupled_weight_decay=True)),
    ("radam", dict(lr=1e-2)),
    ("radam", dict(lr=1e-2, betas=(0.8, 0.9), weight_decay=1e-2)),
    ("radam", dict(lr=1e-2, weight_decay=1e-1, decoupled_weight_decay=True, maximize=True)),
]
NAMES = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop", "adagrad": "Adagrad",
         "adadelta": "Adadelta", "adamax": "Adamax", "nadam": "NAdam", "radam": "RAdam"}


@pytest.mark.parametrize("name, kw", OPTIMIZERS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(OPTIMIZERS)])
def test_optimizer_follows_torch(name, kw):
    m, t = _pair()
    om = getattr(optim, NAMES[name])(m.parameters(), **kw)
    ot = getattr(torch.optim, NAMES[name])(t.parameters(), **kw)
    rng = np.random.default_rng(0)
    for _ in range(40):
        x = rng.normal(size=(16, 5))
        y = rng.integers(0, 3, size=16)
        om.zero_grad()
        ot.zero_grad()
        nn.functional.cross_entropy(m(minidl.tensor(x)), minidl.tensor(y)).backward()
        torch.nn.functional.cross_entropy(t(torch.tensor(x)), torch.tensor(y)).backward()
        om.step()
        ot.step()
    for (k, a), b in zip(m.named_parameters(), t.parameters()):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-9, atol=1e-11, err_msg=k)


def test_parameter_groups_and_state_dict_round_trip():
    m, t = _pair()
    groups = [{"params": m[0].parameters(), "lr": 0.1}, {"params": m[2].parameters()}]
    tgroups = [{"params": t[0].parameters(), "lr": 0.1}, {"params": t[2].parameters()}]
    om, ot = optim.SGD(groups, lr=0.01, momentum=0.9), torch.optim.SGD(tgroups, lr=0.01, momentum=0.9)
    rng = np.random.default_rng(1)

    def step(o_m, o_t):
        x = rng.normal(size=(8, 5))
        for o in (o_m, o_t):
            o.zero_grad()
        m(minidl.tensor(x)).pow(2).sum().backward()
        t(torch.tensor(x)).pow(2).sum().backward()
        o_m.step()
        o_t.step()
    for _ in range(5):
        step(om, ot)
    sd = om.state_dict()
    assert [g["lr"] for g in sd["param_groups"]] == [0.1, 0.01] and sd["param_groups"][1]["params"] == [2, 3]
    om2 = optim.SGD([{"params": m[0].parameters()}, {"params": m[2].parameters()}], lr=0.5, momentum=0.9)
    om2.load_state_dict(sd)  # lr and momentum buffers come back
    for _ in range(5):
        step(om2, ot)
    for a, b in zip(m.parameters(), t.parameters()):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("make, exc, message", [
    (lambda p: optim.SGD(p, lr=-1), ValueError, r"^SGD: lr must be a number >= 0, got -1$"),
    (lambda p: optim.SGD(p, lr=0.1, momentum=-0.5), ValueError, r"^SGD: momentum must be a number >= 0, got -0.5$"),
    (lambda p: optim.SGD(p, lr=0.1, weight_decay=-1e-4), ValueError, r"^SGD: weight_decay must be a number >= 0"),
    (lambda p: optim.SGD(p, lr="0.1"), TypeError, r"^SGD: lr must be a number >= 0, got '0.1'$"),
    (lambda p: optim.SGD(p, lr=0.1, nesterov=True), ValueError, "Nesterov"),
    (lambda p: optim.Adam([]), ValueError, "empty parameter list"),
    (lambda p: optim.Adam(p, betas=(1.0, 0.9)), ValueError, r"^Adam: betas must be a pair of numbers in \[0, 1\), got "
                                                            r"\(1.0, 0.9\)$"),
    (lambda p: optim.AdamW(p, eps=-1), ValueError, r"^AdamW: eps must be a number >= 0, got -1$"),
    (lambda p: optim.Adadelta(p, rho=1.5), ValueError, r"^Adadelta: rho must be a number in \[0, 1\], got 1.5$"),
    (lambda p: optim.RMSprop(p, alpha=-0.1), ValueError, r"^RMSprop: alpha must be a number >= 0, got -0.1$"),
    (lambda p: optim.Adagrad(p, lr_decay=-1), ValueError, r"^Adagrad: lr_decay must be a number >= 0, got -1$"),
    (lambda p: optim.NAdam(p, momentum_decay=-1), ValueError, r"^NAdam: momentum_decay must be a number >= 0"),
])
def test_optimizer_argument_errors_name_the_setting_and_what_is_allowed(make, exc, message):
    with pytest.raises(exc, match=message):
        make([nn.Parameter(minidl.zeros(2))])


SCHEDULERS = [
    ("StepLR", dict(step_size=3, gamma=0.5)),
    ("MultiStepLR", dict(milestones=[2, 5, 9], gamma=0.3)),
    ("ExponentialLR", dict(gamma=0.9)),
    ("CosineAnnealingLR", dict(T_max=7, eta_min=0.01)),
    ("CosineAnnealingWarmRestarts", dict(T_0=3, T_mult=2, eta_min=0.001)),
    ("LinearLR", dict(start_factor=0.25, total_iters=4)),
    ("OneCycleLR", dict(max_lr=1.0, total_steps=20)),
    ("OneCycleLR", dict(max_lr=[1.0, 0.5], epochs=4, steps_per_epoch=5, anneal_strategy="linear", three_phase=True)),
    ("LambdaLR", dict(lr_lambda=lambda e: 0.9 ** e + 0.01 * e)),
    ("LambdaLR", dict(lr_lambda=[lambda e: 1 / (1 + e), lambda e: 0.5])),
    ("MultiplicativeLR", dict(lr_lambda=lambda e: 0.95)),
    ("ConstantLR", dict(factor=0.5, total_iters=4)),
    ("PolynomialLR", dict(total_iters=10, power=2.0)),
    ("CyclicLR", dict(base_lr=0.01, max_lr=0.1, step_size_up=4)),
    ("CyclicLR", dict(base_lr=[0.01, 0.02], max_lr=[0.1, 0.3], step_size_up=3, step_size_down=5, mode="triangular2",
                      base_momentum=[0.8, 0.85], max_momentum=0.95)),
    ("CyclicLR", dict(base_lr=0.01, max_lr=0.1, step_size_up=2, mode="exp_range", gamma=0.9)),
    ("CyclicLR", dict(base_lr=0.01, max_lr=0.1, step_size_up=3, scale_fn=lambda x: 1 / (1 + 0.1 * x),
                      scale_mode="iterations", cycle_momentum=False)),
]


@pytest.mark.parametrize("opt_name", ["SGD", "Adam"])
@pytest.mark.parametrize("name, kw", SCHEDULERS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(SCHEDULERS)])
def test_scheduler_follows_torch(name, kw, opt_name):
    m, t = _pair()
    extra = dict(momentum=0.9) if opt_name == "SGD" else {}
    om = getattr(optim, opt_name)([{"params": m[0].parameters()}, {"params": m[2].parameters(), "lr": 0.05}], lr=0.1,
                                  **extra)
    ot = getattr(torch.optim, opt_name)([{"params": t[0].parameters()}, {"params": t[2].parameters(), "lr": 0.05}],
                                        lr=0.1, **extra)
    sm = getattr(optim.lr_scheduler, name)(om, **kw)
    st = getattr(torch.optim.lr_scheduler, name)(ot, **kw)
    steps = 19 if name == "OneCycleLR" else 25
    for _ in range(steps):
        assert sm.get_last_lr() == pytest.approx(st.get_last_lr(), rel=1e-12, abs=1e-15)
        for gm, gt in zip(om.param_groups, ot.param_groups):
            key = "betas" if opt_name == "Adam" else "momentum"
            assert gm[key] == pytest.approx(gt[key], rel=1e-12)
        om.step()
        ot.step()
        sm.step()
        st.step()


@pytest.mark.parametrize("opt_name", ["SGD", "Adam"])
def test_sequential_lr_follows_torch(opt_name, tmp_path):
    m, t = _pair()
    runs = []
    for lib, model in ((optim, m), (torch.optim, t)):
        opt = getattr(lib, opt_name)([{"params": model[0].parameters()}, {"params": model[2].parameters(), "lr": 0.05}],
                                     lr=0.1)
        s = lib.lr_scheduler
        seq = s.SequentialLR(opt, [s.LinearLR(opt, start_factor=0.1, total_iters=4), s.ExponentialLR(opt, gamma=0.8),
                                   s.CosineAnnealingLR(opt, T_max=6, eta_min=0.001)], milestones=[4, 9])
        lrs = []
        for _ in range(20):
            lrs += seq.get_last_lr() + [g["lr"] for g in opt.param_groups]
            opt.step()
            seq.step()
        runs.append((lrs, seq))
    assert runs[0][0] == pytest.approx(runs[1][0], rel=1e-12)
    state = runs[0][1].state_dict()
    assert state["last_epoch"] == runs[1][1].state_dict()["last_epoch"] == 20
    minidl.save({"scheduler": state}, tmp_path / "s.pt")  # plain numbers and lists: a checkpoint keeps them
    fresh, seq = runs[0][1]._schedulers, runs[0][1]
    seq.load_state_dict(minidl.load(tmp_path / "s.pt")["scheduler"])
    assert seq.state_dict() == state and fresh[2].last_epoch == state["_schedulers"][2]["last_epoch"]
    with pytest.raises(ValueError, match="SequentialLR"):
        optim.lr_scheduler.SequentialLR(runs[0][1].optimizer, runs[0][1]._schedulers, milestones=[4])


@pytest.mark.parametrize("kw", [dict(), dict(mode="max", factor=0.5, patience=2, threshold=0.1, threshold_mode="abs",
                                             cooldown=2, min_lr=[0.0, 0.02])])
def test_reduce_lr_on_plateau_follows_torch(kw):
    m, t = _pair()
    om = optim.SGD([{"params": m[0].parameters()}, {"params": m[2].parameters(), "lr": 0.05}], lr=0.1)
    ot = torch.optim.SGD([{"params": t[0].parameters()}, {"params": t[2].parameters(), "lr": 0.05}], lr=0.1)
    sm = optim.lr_scheduler.ReduceLROnPlateau(om, **kw)
    st = torch.optim.lr_scheduler.ReduceLROnPlateau(ot, **kw)
    metrics = [1.0, 0.9, 0.95, 0.95, 0.96, 0.97, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.2] * 2
    for x in metrics:
        sm.step(minidl.tensor(x))
        st.step(x)
        assert sm.get_last_lr() == pytest.approx(st.get_last_lr(), rel=1e-12)
    sm2 = optim.lr_scheduler.ReduceLROnPlateau(om, **kw)
    sm2.load_state_dict(sm.state_dict())
    assert sm2.best == sm.best and sm2.num_bad_epochs == sm.num_bad_epochs


def test_torchs_implementation_flags_are_accepted_and_checked():
    """nanoGPT builds AdamW(..., fused=use_fused); programs pass foreach=... : minidl accepts them (one in-place
    implementation runs) and refuses what torch refuses or what it cannot do, with a message naming the optimizer."""
    w = minidl.nn.Parameter(minidl.ones(3))
    for cls, kw in [(minidl.optim.SGD, dict(lr=0.1, momentum=0.9)), (minidl.optim.Adam, {}), (minidl.optim.AdamW, {})]:
        for flags in (dict(fused=True), dict(foreach=False), dict(foreach=True, fused=False), dict(fused=None)):
            opt = cls([w], **kw, **flags)
            w.grad = minidl.ones(3)
            opt.step()
        with pytest.raises(RuntimeError, match="cannot be `True` together"):
            cls([w], foreach=True, fused=True)
        with pytest.raises(RuntimeError):  # torch refuses the same
            getattr(torch.optim, cls.__name__)([torch.nn.Parameter(torch.ones(3))], foreach=True, fused=True)
        with pytest.raises(NotImplementedError, match=f"{cls.__name__}: differentiable=True"):
            cls([w], differentiable=True)


FLAT_CASES = [(optim.SGD, dict(lr=0.1)), (optim.SGD, dict(lr=0.1, momentum=0.9, weight_decay=1e-2)),
              (optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True, maximize=True)),
              (optim.SGD, dict(lr=0.1, momentum=0.5, dampening=0.3)),
              (optim.Adam, dict(lr=1e-2)), (optim.Adam, dict(lr=1e-2, weight_decay=0.1, amsgrad=True)),
              (optim.AdamW, dict(lr=1e-2)), (optim.AdamW, dict(lr=1e-2, maximize=True, amsgrad=True))]


def _flat_twins(shapes, seed=0):
    rng = np.random.default_rng(seed)
    values = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    return [[nn.Parameter(minidl.tensor(v.copy())) for v in values] for _ in range(2)]


@pytest.mark.parametrize("flag", ["fused", "foreach"])
@pytest.mark.parametrize("cls, kw", FLAT_CASES)
def test_flat_step_gives_the_per_parameter_steps_bits(cls, kw, flag):
    """fused=True / foreach=True (one flat array per group, optim/flat.py) against the reference loop, bit for bit,
    over steps after a state reloaded and a parameter replaced (the group is made flat again), a step where a parameter
    has no gradient (that step runs the loop on the shared state), and a group large enough to be split across
    threads; 0-d and empty parameters too."""
    shapes = [(3, 4), (5,), (), (0,), (400, 400)]
    ref, flat = _flat_twins(shapes)
    a, b = cls(ref, **kw), cls(flat, **{flag: True}, **kw)
    assert all(p._data.base is not None for p in flat)  # the parameters are views into the group's array
    rng = np.random.default_rng(1)
    for step in range(7):
        grads = [rng.standard_normal(p.shape).astype(np.float32) for p in ref]
        for i, (p, q) in enumerate(zip(ref, flat)):
            missing = step == 6 and i == 1
            p.grad = None if missing else minidl.tensor(grads[i].copy())
            q.grad = None if missing else minidl.tensor(grads[i].copy())
        a.step()
        b.step()
        if step < 6:
            assert b._flats[id(b.param_groups[0])][1] is not None, "the flat step ran"
        if step == 3:  # a reloaded state (new arrays) and a replaced parameter array: flat again, same numbers
            b.load_state_dict(b.state_dict())
            flat[0].data = minidl.tensor(flat[0].detach().numpy().copy())
        for p, q in zip(ref, flat):
            np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy())
    sa, sb = a.state_dict(), b.state_dict()
    for i in sa["state"]:
        for k, v in sa["state"][i].items():
            np.testing.assert_array_equal(np.asarray(v), np.asarray(sb["state"][i][k]), err_msg=f"{i} {k}")


def test_a_group_that_cannot_be_flat_runs_the_loop():
    """Mixed dtypes (or a view of another array, or shared memory): the reference loop, the same numbers."""
    p32 = nn.Parameter(minidl.ones(3))
    p64 = nn.Parameter(minidl.ones(3, dtype=minidl.float64))
    opt = optim.Adam([p32, p64], lr=0.1, fused=True)
    assert p32._data.base is None
    for p in (p32, p64):
        p.grad = minidl.ones(3, dtype=p.dtype)
    opt.step()
    assert np.allclose(p32.detach().numpy(), 0.9) and np.allclose(p64.detach().numpy(), 0.9)


def test_a_copied_flat_optimizer_updates_its_own_parameters():
    import copy
    model = nn.Linear(3, 2)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, fused=True)
    model2, opt2 = copy.deepcopy((model, opt))
    for m, o in ((model, opt), (model2, opt2)):
        m(minidl.ones(1, 3)).sum().backward()
        o.step()
    np.testing.assert_array_equal(model.weight.detach().numpy(), model2.weight.detach().numpy())
    assert model2.weight._data.base is not model.weight._data.base


@pytest.mark.parametrize("kw", [dict(momentum=0.9, weight_decay=1e-2), dict(momentum=0.9, maximize=True)])
def test_sgd_momentum_of_a_0d_parameter_moves(kw):
    """A 0-d parameter's decayed or negated gradient is a NumPy scalar: its momentum buffer was once a scalar copy
    that the in-place updates never changed (silently wrong steps); torch's numbers."""
    p, t = nn.Parameter(minidl.tensor(np.float32(0.7))), torch.nn.Parameter(torch.tensor(np.float32(0.7)))
    a, b = optim.SGD([p], lr=0.1, **kw), torch.optim.SGD([t], lr=0.1, **kw)
    for g in np.random.default_rng(0).standard_normal(5).astype(np.float32):
        p.grad, t.grad = minidl.tensor(g), torch.tensor(g)
        a.step()
        b.step()
    np.testing.assert_allclose(p.item(), t.item(), rtol=1e-6)


def test_a_flat_group_never_breaks_shared_memory():
    """Two Parameters over one array, or a view of a parameter taken before: the group stays per parameter (re-pointed
    to a flat array, they would silently stop sharing)."""
    a = nn.Parameter(minidl.ones(3))
    b = nn.Parameter(minidl.zeros(3))
    b.data = a.data
    c = nn.Parameter(minidl.ones(4))
    view = c[:2]
    for params in ([a, b], [c]):
        opt = optim.SGD(params, lr=0.1, momentum=0.9, fused=True)
        for p in params:
            p.grad = minidl.ones(p.shape)
        opt.step()
        assert opt._flats[id(opt.param_groups[0])][1] is None
    assert np.shares_memory(a._data, b._data) and np.array_equal(view.detach().numpy(), c.detach().numpy()[:2])


def test_a_plain_sgd_group_with_a_frozen_parameter_stays_flat():
    w, frozen = nn.Parameter(minidl.ones(3)), nn.Parameter(minidl.ones(2))
    opt = optim.SGD([w, frozen], lr=0.1, fused=True)
    flat = opt._flats[id(opt.param_groups[0])][1]
    for _ in range(3):
        w.grad = minidl.ones(3)
        opt.step()
    assert opt._flats[id(opt.param_groups[0])][1] is flat and np.allclose(w.detach().numpy(), 0.7)
