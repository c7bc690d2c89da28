"""minidl.compile: a captured step replays to the same bits as the eager step, every guard selects or recaptures a plan,
and what a plan cannot hold runs eagerly with one warning that names it (minidl/compiler.py)."""
import math
import warnings

import numpy as np
import pytest

import minidl
import minidl.nn as nn
import minidl.nn.functional as F
from minidl import models
from minidl.compiler import CompileWarning

from suite import exhaustive


@pytest.fixture(autouse=True)
def reproducible():
    """Bit-identical results need fixed algorithms and products (the reproducible mode)."""
    minidl.use_deterministic_algorithms(True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", CompileWarning)  # a test that expects one catches it
            yield
    finally:
        minidl.use_deterministic_algorithms(False)


def _batches(shape, n, steps, classes=10, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return [(minidl.tensor(rng.standard_normal((n, *shape)).astype(dtype)), minidl.tensor(rng.integers(0, classes, n)))
            for _ in range(steps)]


def _train(make_model, batches, compiled, opt="sgd", schedule=False, clip=None, **options):
    """Train a fresh model (seed 0) on ``batches`` with a whole step, eager or compiled (True: the step; "module": only
    the model, ``model = minidl.compile(model)``): (model, losses, what was compiled)."""
    minidl.manual_seed(0)
    model = make_model()
    model.train()
    net = minidl.compile(model, **options) if compiled == "module" else model
    if opt == "sgd":
        optimizer = minidl.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    else:
        optimizer = minidl.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = minidl.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=len(batches)) \
        if schedule else None

    def step(x, y):
        optimizer.zero_grad()
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        if clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        return loss

    if compiled is True:
        step = minidl.compile(step, **options)
    losses = [step(x, y).item() for x, y in batches]
    return model, losses, net._compiled if compiled == "module" else step


def _same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert np.array_equal(sa[k].numpy(), sb[k].numpy()), k


def _check_twins(make_model, shape, n=8, steps=6, how=True, **kw):
    batches = _batches(shape, n, steps)
    eager, eager_losses, _ = _train(make_model, batches, False, **kw)
    compiled, losses, step = _train(make_model, batches, how, **kw)
    assert step.replays == steps - 3, "warm-up, two recorded calls, then replays"
    assert losses == eager_losses
    _same_state(eager, compiled)


SEED_NETS = ["LeNet5", "InceptionNet", "ResidualNet"]


@pytest.mark.parametrize("how", [True, "module"])
@pytest.mark.parametrize("name", SEED_NETS)
def test_seed_nets_train_to_the_same_bits_compiled(name, how):
    _check_twins(getattr(models, name), (1, 28, 28), how=how)


@pytest.mark.parametrize("how", [True, "module"])
def test_batchnorm_statistics_and_count_update_on_every_replay(how):
    def make():
        return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 26 * 26, 10))
    batches = _batches((1, 28, 28), 4, 7)
    eager, _, _ = _train(make, batches, False)
    compiled, _, step = _train(make, batches, how)
    assert step.replays == 4
    assert compiled[1].num_batches_tracked.item() == 7
    _same_state(eager, compiled)


def test_learning_rates_clipping_and_adam_counters_are_read_at_replay():
    """OneCycleLR changes the rate every step, AdamW counts steps, clipping reads this step's gradients: replays
    call them, they are not baked into the plan."""
    _check_twins(models.LeNet5, (1, 28, 28), steps=7, opt="adamw", schedule=True, clip=0.5)


class TinyGPT(nn.Module):
    """Embeddings, causal attention with dropout (scaled_dot_product_attention and the explicit masked softmax),
    LayerNorm, GELU, dropout: every random draw must be drawn again by each replay."""

    def __init__(self, vocab=10, block=6, dim=16, heads=2, flash=True):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, dim), nn.Embedding(block, dim)
        self.ln, self.attn, self.proj = nn.LayerNorm(dim), nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim), nn.Dropout(0.2))
        self.head, self.heads, self.flash = nn.Linear(dim, vocab), heads, flash
        self.register_buffer("mask", minidl.tril(minidl.ones(block, block)).view(1, 1, block, block))

    def forward(self, idx):
        B, T = idx.shape
        x = self.wte(idx) + self.wpe(minidl.arange(T))
        q, k, v = self.attn(self.ln(x)).split(x.shape[-1], dim=2)
        q, k, v = (t.view(B, T, self.heads, -1).transpose(1, 2) for t in (q, k, v))
        if self.flash:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=0.1, is_causal=True)
        else:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.shape[-1]))
            att = F.dropout(F.softmax(att.masked_fill(self.mask[:, :, :T, :T] == 0, float("-inf")), dim=-1), 0.1)
            y = att @ v
        x = x + self.proj(y.transpose(1, 2).contiguous().view(B, T, -1))
        return self.head(x + self.mlp(x))


@pytest.mark.parametrize("flash", [True, False])
def test_attention_with_dropout_draws_again_on_every_replay(flash):
    rng = np.random.default_rng(1)
    batches = [(minidl.tensor(rng.integers(0, 10, (4, 6))), minidl.tensor(rng.integers(0, 10, (4, 6))))
               for _ in range(6)]

    def run(compiled):
        minidl.manual_seed(0)
        model = TinyGPT(flash=flash)
        opt = minidl.optim.AdamW(model.parameters(), lr=1e-2)

        def step(x, y):
            loss = F.cross_entropy(model(x).view(-1, 10), y.view(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            return loss
        step = minidl.compile(step) if compiled else step
        return model, [step(x, y).item() for x, y in batches], step

    eager, eager_losses, _ = run(False)
    compiled, losses, step = run(True)
    assert step.replays == 3 and losses == eager_losses
    _same_state(eager, compiled)


def test_generator_advances_as_in_eager_mode():
    def run(compiled):
        minidl.manual_seed(0)
        x = minidl.ones(4, 8)

        def step(t):
            return F.dropout(t, 0.5) * 2
        step = minidl.compile(step) if compiled else step
        outs = [step(x).numpy().copy() for _ in range(5)]
        return outs, minidl.rand(2).numpy()
    (eager, after_eager), (compiled, after_compiled) = run(False), run(True)
    assert all(np.array_equal(a, b) for a, b in zip(eager, compiled))
    assert not np.array_equal(compiled[3], compiled[4]), "each replay draws a new mask"
    assert np.array_equal(after_eager, after_compiled)


# -- guards -----------------------------------------------------------------------------------------------------------
def _mlp_step(model=None, opt=None):
    minidl.manual_seed(0)
    model = model or nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Dropout(0.1), nn.Linear(8, 3))
    opt = opt or minidl.optim.SGD(model.parameters(), lr=0.1)

    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss
    return model, opt, step


def _xy(n, seed, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return minidl.tensor(rng.standard_normal((n, 6)).astype(dtype)), minidl.tensor(rng.integers(0, 3, n))


def _twin_run(calls, setup=None):
    """Run the same sequence of calls (each: (x, y) or a callable on the model) eagerly and compiled; compare."""
    results = []
    for compiled in (False, True):
        model, opt, step = _mlp_step()
        step = minidl.compile(step) if compiled else step
        losses = []
        for c in calls:
            if callable(c):
                c(model, opt)
            else:
                losses.append(step(*c).item())
        results.append((model, losses, step))
    (em, el, _), (cm, cl, step) = results
    assert el == cl
    _same_state(em, cm)
    return step


def test_a_new_shape_is_a_second_plan_and_the_first_is_kept():
    full, short = [_xy(8, i) for i in range(5)], [_xy(3, 10 + i) for i in range(5)]
    calls = [c for pair in zip(full, short) for c in pair]
    step = _twin_run(calls)
    assert len(step.states) == 2 and all(s.plan is not None for s in step.states.values())
    assert step.replays == 4


def test_dtype_train_eval_and_grad_mode_are_keys():
    def set_eval(m, o):
        m.eval()

    def set_train(m, o):
        m.train()
    calls = [_xy(8, i) for i in range(4)] + [set_eval] + [_xy(8, 10 + i) for i in range(4)] + [set_train] \
        + [_xy(8, 20 + i) for i in range(2)]
    step = _twin_run(calls)
    assert len(step.states) == 2 and step.replays == 1 + 1 + 2
    model, opt, fwd = _mlp_step()
    model.eval()
    f = minidl.compile(lambda x: model(x))
    x64 = _xy(4, 0, np.float64)[0]
    with minidl.no_grad():
        outs = [f(_xy(4, 0)[0]) for _ in range(4)]
    model.double()
    with minidl.no_grad():
        out64 = [f(x64) for _ in range(4)]
    assert len(f.states) == 2 and f.replays == 2
    assert out64[-1].dtype == minidl.float64 and outs[-1].dtype == minidl.float32


def test_a_replaced_parameter_or_a_frozen_one_captures_again():
    def replace(m, o):
        with minidl.no_grad():
            m[3] = nn.Linear(8, 3)
        o.param_groups[0]["params"] = list(m.parameters())

    def freeze(m, o):
        m[0].weight.requires_grad_(False)
    calls = [_xy(8, i) for i in range(5)] + [replace] + [_xy(8, 10 + i) for i in range(5)] + [freeze] \
        + [_xy(8, 20 + i) for i in range(5)]
    step = _twin_run(calls)
    assert step.replays == 2 + 3 + 3  # after a guard fails: no warm-up, two recorded calls


def test_a_learning_rate_set_between_calls_is_used():
    def lower(m, o):
        o.param_groups[0]["lr"] = 0.01
    step = _twin_run([_xy(8, i) for i in range(5)] + [lower] + [_xy(8, 10 + i) for i in range(3)])
    assert step.replays == 5


SCALE = 2.0


def test_a_rebound_global_or_closure_tensor_or_number_captures_again():
    """``x = next_batch`` outside a step that reads x by name: the plan held the old tensor; it must not replay it."""
    global SCALE
    batch = minidl.ones(3)

    def step():
        return batch * SCALE

    f = minidl.compile(step)
    outs = [f().tolist() for _ in range(4)]  # warm-up, two recorded calls, a replay
    batch = minidl.full((3,), 5.0)
    outs += [f().tolist() for _ in range(3)]  # the closure's tensor changed: two recorded calls, a replay
    SCALE = 3.0
    try:
        outs += [f().tolist() for _ in range(3)]  # the global number changed: the same again
    finally:
        SCALE = 2.0
    assert outs == [[2.0] * 3] * 4 + [[10.0] * 3] * 3 + [[15.0] * 3] * 3
    assert f.replays == 3


def test_the_cache_is_bounded():
    model, opt, step = _mlp_step()
    step = minidl.compile(step, cache_size=2, warmup=0)
    with pytest.warns(CompileWarning, match="cache_size=2"):
        for n in (2, 3, 4):
            step(*_xy(n, 0))
    assert len(step.states) == 2


# -- what a plan cannot hold ------------------------------------------------------------------------------------
def _expect_eager(fn, match, calls=5, args=None):
    f = minidl.compile(fn)
    with pytest.warns(CompileWarning, match=match):
        outs = [f(*(args or ())) for _ in range(calls)]
    assert f.replays == 0
    return outs


def test_item_numpy_and_bool_end_the_capture():
    w = nn.Parameter(minidl.ones(3))
    x = minidl.ones(3)
    _expect_eager(lambda: (w * x).sum().item(), r"item\(\)")
    _expect_eager(lambda: (x * 2).numpy(), r"numpy\(\)")
    _expect_eager(lambda: x * 2 if (x.sum() > 0) else x, r"bool\(tensor\)")


def test_in_place_changes_hooks_and_grad_end_the_capture():
    x = minidl.ones(3)

    def inplace():
        y = x * 2
        y.add_(1)
        return y * 3
    assert _expect_eager(inplace, "add_")[-1].tolist() == [9.0, 9.0, 9.0]
    lin = nn.Linear(3, 2)
    lin.register_forward_hook(lambda m, i, o: None)
    _expect_eager(lambda: lin(x), "forward hook")
    w = nn.Parameter(minidl.ones(3))
    w.register_hook(lambda g: g * 2)

    def hooked():
        w.grad = None
        (w * x).sum().backward()
        return w.grad
    assert _expect_eager(hooked, "hook")[-1].tolist() == [2.0, 2.0, 2.0]
    _expect_eager(lambda: minidl.autograd.grad((w * x).sum(), w), "autograd.grad")


def test_a_python_value_that_changes_between_calls_ends_the_capture():
    counter = [0]
    x = minidl.ones(3)

    def step():
        counter[0] += 1
        return x * counter[0]
    outs = _expect_eager(step, "a Python number differs between the two recorded calls")
    assert [o.tolist()[0] for o in outs] == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_data_made_by_raw_code_and_numpy_arrays_end_the_capture():
    x = minidl.ones(3)
    rng = np.random.default_rng(0)
    _expect_eager(lambda: x * minidl.tensor(rng.standard_normal(3).astype(np.float32)), "NumPy|outside the step")
    _expect_eager(lambda: x * minidl.from_numpy(rng.standard_normal(3).astype(np.float32)), "outside minidl's ops")


def test_a_graph_for_a_later_backward_runs_eagerly_and_stays_right():
    lin = nn.Linear(3, 2)

    @minidl.compile
    def f(x):  # a function, not a module: its result's graph is not captured (compile the whole step)
        return lin(x)
    x = minidl.ones(4, 3)
    with pytest.warns(CompileWarning, match="carries a graph"):
        for _ in range(4):
            f(x).sum().backward()
    assert np.allclose(lin.weight.grad.numpy(), 4 * 4 * np.ones((2, 3)))


def test_a_gradient_into_an_argument_ends_the_capture():
    def step(x):
        (x * x).sum().backward()
        return x.grad
    f = minidl.compile(step)
    with pytest.warns(CompileWarning, match="tensor argument"):
        grads = [f(minidl.full((2,), float(i), requires_grad=True)) for i in range(5)]
    assert [g.tolist() for g in grads] == [[2.0 * i] * 2 for i in range(5)]


# -- a compiled module under grad: its forward replayed, its backward one node ----------------------------------
def _inner_twins():
    """pre -> mid -> post, twice (seed 0): eager, and with ``mid`` compiled, so that the compiled module's input is a
    tensor made by earlier ops and its gradient must reach ``pre``."""
    nets = []
    for _ in range(2):
        minidl.manual_seed(0)
        nets.append(nn.Sequential(nn.Linear(5, 6), nn.Sequential(nn.Linear(6, 6), nn.Tanh(), nn.Linear(6, 4)),
                                  nn.Linear(4, 3)))
    nets[1][1] = minidl.compile(nets[1][1])
    return nets


def _grads(net):
    return [None if p.grad is None else p.grad.numpy().copy() for p in net.parameters()]


def test_a_compiled_module_passes_gradients_to_earlier_ops_and_its_own_parameters():
    eager, compiled = _inner_twins()
    for i in range(6):
        x, y = _xy(7, i)[0][:, :5], minidl.tensor(np.arange(7) % 3)
        x.requires_grad_(True)
        got = []
        for net in (eager, compiled):
            net.zero_grad()
            x.grad = None
            F.cross_entropy(net(x), y).backward()
            got.append(_grads(net) + [x.grad.numpy()])
        assert [np.array_equal(a, b) for a, b in zip(*got)] == [True] * 9
    assert compiled[1]._compiled.replays == 3


def test_a_compiled_module_keeps_the_rules_of_a_graph():
    eager, compiled = _inner_twins()
    x = minidl.ones(4, 5)
    for _ in range(3):
        compiled(x).sum().backward()
    for net in (eager, compiled):
        net.zero_grad()
        inner = net[1](net[0](x))
        loss = inner.sum()
        loss.backward(retain_graph=True)
        loss.backward()  # retained: a second backward adds the same gradients again
        with pytest.raises(RuntimeError, match="second time"):
            loss.backward()
    assert inner.grad_fn.grad_fn_name == "CompiledFunctionBackward"
    assert [np.array_equal(a, b) for a, b in zip(_grads(eager)[:6], _grads(compiled)[:6])] == [True] * 6
    inner = compiled[1](compiled[0](x))
    with minidl.no_grad():
        compiled[1]._orig_mod[0].weight.mul_(2)  # read by the backward, changed before it: refused, as eager
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        inner.sum().backward()
    with pytest.raises(RuntimeError, match="compiled module"):  # not differentiable twice: said, not wrong
        h = compiled[0](x)
        g, = minidl.autograd.grad(compiled[1](h).sum(), h, create_graph=True)
        g.sum().backward()


def test_a_compiled_module_reads_each_argument_it_was_given():
    lin = nn.Linear(3, 3)

    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = lin

        def forward(self, a, b):
            return self.lin(a) * b

    f = minidl.compile(Two())
    x = minidl.ones(2, 3)
    for _ in range(4):
        f(x, x)  # one tensor twice: a plan for that, which must not serve two different tensors
    a, b = _xy(2, 1)[0][:, :3], _xy(2, 2)[0][:, :3]
    assert np.array_equal(f(a, b).detach().numpy(), (lin(a) * b).detach().numpy())


def test_a_compiled_module_with_a_hook_on_a_parameter_runs_eagerly():
    lin = nn.Linear(3, 2)
    lin.weight.register_hook(lambda g: g * 2)
    f = minidl.compile(lin)
    x = minidl.ones(4, 3)
    with pytest.warns(CompileWarning, match="hook"):
        for _ in range(4):
            lin.zero_grad()
            f(x).sum().backward()
    assert np.allclose(lin.weight.grad.numpy(), 2 * 4 * np.ones((2, 3)))



class _Pair(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x, label):
        y = self.lin(x)
        return {"y": y, "loss": F.cross_entropy(y * 2, label), "label": label}


@pytest.mark.parametrize("use", ["both", "first", "second"])
def test_a_compiled_module_with_several_outputs_passes_each_its_gradient(use):
    """A module that returns (logits, loss), as minGPT's does: each output carries the graph; those a gradient reaches
    hand it over, the others count as zeros."""
    minidl.manual_seed(0)
    eager = _Pair()
    twin = _Pair()
    twin.load_state_dict(eager.state_dict())
    compiled = minidl.compile(twin)
    for i in range(5):
        x, label = _xy(4, i)[0][:, :3], minidl.tensor(np.arange(4) % 2)
        got = []
        for net, model in ((eager, eager), (compiled, twin)):
            model.zero_grad()
            out = net(x, label)
            loss = {"both": out["y"].sum() + out["loss"], "first": out["y"].sum(), "second": out["loss"]}[use]
            loss.backward()
            got.append([model.lin.weight.grad.numpy().copy(), model.lin.bias.grad.numpy().copy(),
                        out["loss"].item()])
            assert out["label"] is label or np.array_equal(out["label"].numpy(), label.numpy())
        assert [np.array_equal(a, b) for a, b in zip(*got)] == [True] * 3
    assert compiled._compiled.replays == 2


# -- the surface -----------------------------------------------------------------------------------------------
def test_module_compile_replays_inference_and_keeps_torch_keys():
    minidl.manual_seed(0)
    net = models.LeNet5().eval()
    compiled = minidl.compile(net)
    assert list(compiled.state_dict()) == ["_orig_mod." + k for k in net.state_dict()]
    assert compiled.conv1 is net.conv1
    xs = _batches((1, 28, 28), 4, 6)
    with minidl.no_grad():
        outs = [compiled(x) for x, _ in xs]
        want = [net(x) for x, _ in xs]
    assert compiled._compiled.replays == 3
    assert all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(outs, want))


def test_decorator_forms_options_and_the_switch(monkeypatch):
    x = minidl.ones(2)

    @minidl.compile
    def double(t):
        return t * 2

    @minidl.compile(disable=True)
    def triple(t):
        return t * 3

    for _ in range(5):
        double(x), triple(x)
    assert double.replays == 2 and triple.replays == 0 and double.__name__ == "double"
    assert minidl.compile(lambda t: t, fullgraph=True, dynamic=False, mode="reduce-overhead", backend="inductor")
    with pytest.raises(TypeError, match="unexpected keyword argument 'bogus'"):
        minidl.compile(lambda t: t, bogus=1)
    with pytest.raises(ValueError, match="warmup"):
        minidl.compile(lambda t: t, warmup=-1)
    with pytest.raises(TypeError, match="function or a Module"):
        minidl.compile(3)
    monkeypatch.setenv("MINIDL_COMPILE", "0")
    off = minidl.compile(lambda t: t * 2)
    for _ in range(5):
        off(x)
    assert off.replays == 0


def test_the_profiler_shows_replayed_ops_by_name():
    model, opt, step = _mlp_step()
    step = minidl.compile(step)
    for i in range(3):
        step(*_xy(8, i))
    with minidl.profiler.profile() as prof:
        step(*_xy(8, 9))
    assert step.replays == 1
    names = {e.key for e in prof.key_averages()}
    assert {"linear", "relu", "cross_entropy"} <= names


ZOO = {"resnet18": lambda: models.resnet18(num_classes=10, small_input=True),
       "preact_resnet18": lambda: models.preact_resnet18(num_classes=10),
       "mobilenet_v2": lambda: models.mobilenet_v2(num_classes=10, small_input=True),
       "shufflenet_v2_x1_0": lambda: models.shufflenet_v2_x1_0(num_classes=10, small_input=True),
       "googlenet": lambda: models.googlenet(num_classes=10, small_input=True, aux_logits=False),
       "vgg11_bn": lambda: models.vgg11_bn(num_classes=10, small_input=True),
       "densenet_bc": lambda: models.densenet_bc(num_classes=10, in_channels=3)}


@exhaustive
@pytest.mark.parametrize("how", [True, "module"])
@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_trains_to_the_same_bits_compiled(name, how):
    _check_twins(ZOO[name], (3, 32, 32), n=2, steps=5, how=how)


# -- what a compiled module's replay must not get wrong (found in review) ------------------------------------------
class _Outputs(nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.lin, self.kind = nn.Linear(3, 2), kind

    def forward(self, x):
        y = self.lin(x)
        if self.kind == "detached":  # a stop-gradient target of the same array
            return y, y.detach()
        if self.kind == "input":  # a leaf argument handed back as it came
            return x, y
        return (x @ self.lin.weight.t()).sum()  # "view": the backward reads a view of a parameter


@pytest.mark.parametrize("kind", ["detached", "input"])
def test_a_compiled_modules_outputs_keep_their_gradient_rules(kind):
    minidl.manual_seed(0)
    eager = _Outputs(kind)
    twin = _Outputs(kind)
    twin.load_state_dict(eager.state_dict())
    net = minidl.compile(twin)
    got = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CompileWarning)  # "input": the capture ends, saying so
        for m, model in ((eager, eager), (net, twin)):
            for _ in range(5):
                model.zero_grad()
                x = minidl.ones(4, 3, requires_grad=True)
                a, b = m(x)
                assert (a.requires_grad, b.requires_grad) == ((True, False) if kind == "detached" else (True, True))
                ((a * 2).sum() + (b * 5).sum()).backward()
            got.append([model.lin.bias.grad.numpy().copy(), x.grad.numpy().copy()])
    assert [np.array_equal(p, q) for p, q in zip(*got)] == [True, True]
    assert (net._compiled.replays > 0) == (kind == "detached")


def test_a_parameter_changed_in_place_through_a_view_the_backward_reads_is_refused():
    net = minidl.compile(_Outputs("view"))
    x = minidl.ones(4, 3, requires_grad=True)
    for _ in range(3):
        net(x).backward()
    loss = net(x)
    assert net._compiled.replays == 1
    with minidl.no_grad():
        net.lin.weight.mul_(2)
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        loss.backward()


def test_a_forward_hook_added_after_capture_is_not_skipped():
    net = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 2))
    f = minidl.compile(net)
    x = minidl.ones(2, 3)
    with minidl.no_grad():
        for _ in range(4):
            f(x)
        assert f._compiled.replays == 1
        net[2].register_forward_hook(lambda m, a, out: out * 0)
        with pytest.warns(CompileWarning, match="hook"):
            outs = [f(x) for _ in range(4)]
    assert all(np.array_equal(o.numpy(), np.zeros((2, 2))) for o in outs)
