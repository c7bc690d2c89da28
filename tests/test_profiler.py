"""minidl.profiler: what it records (forward ops, backward nodes, optimizer ranges, user ranges, on every thread),
self times of nested events, torch's table, memory, the Chrome trace, schedules, that profiles compose with each
other and with the other instruments on several threads, and that it leaves nothing behind when it is off."""
import json
import threading
import time

import numpy as np
import pytest
import torch

import minidl
import minidl.nn.functional as F
from minidl import profiler
from minidl.autograd import function


def _assert_nothing_installed():
    """No recorder, the plain Function.apply, no tracer on this thread: what every op costs nothing beyond."""
    assert function.installed_recorders() == ((), {})
    assert function._profiler is None and minidl.autograd.Function.__dict__["apply"] is function._plain_apply
    assert getattr(function._trace, "record", None) is None


def _lenet_step():
    model = minidl.models.LeNet5()
    opt = minidl.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = minidl.randn(16, 1, 28, 28), minidl.randint(0, 10, (16,))

    def step():
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    step()  # the conv tuner and Numba's first calls out of the way
    return step


def test_a_training_step_is_recorded_forward_backward_and_optimizer_with_torchs_names():
    step = _lenet_step()
    with profiler.profile() as prof:
        step()
    names = {e.key for e in prof.key_averages()}
    assert {"conv2d", "relu", "max_pool2d", "ConvolutionBackward0", "ReluBackward0", "NllLossBackward0",
            "torch::autograd::AccumulateGrad", "Optimizer.step#SGD.step", "Optimizer.zero_grad#SGD.zero_grad",
            "nn.Module: LeNet5", "nn.Module: Conv2d", "nn.Module: Linear"} <= names
    events = prof.events()
    lenet = next(e for e in events if e.name == "nn.Module: LeNet5")
    conv = next(e for e in events if e.name == "conv2d")
    assert lenet.depth == 0 and conv.depth == 2 and lenet.start_ns <= conv.start_ns <= conv.end_ns <= lenet.end_ns
    counts = {e.key: e.count for e in prof.key_averages()}
    assert counts["conv2d"] == 2 and counts["ConvolutionBackward0"] == 2
    assert counts["torch::autograd::AccumulateGrad"] == len(list(minidl.models.LeNet5().parameters()))
    assert function._profiler is None and minidl.autograd.Function.__dict__["apply"] is function._plain_apply


def test_the_self_times_cover_the_step():
    """The table's self times add up to the time covered once (each event's time less its children's), and that
    covers nearly all of a LeNet-5 step: 97% measured (the rest: the backward engine's bookkeeping, the loop)."""
    step = _lenet_step()
    with profiler.profile() as prof:
        start = time.perf_counter_ns()
        step()
        wall_us = (time.perf_counter_ns() - start) / 1e3
    events = prof.events()
    top = [e for e in events if e.depth == 0]
    assert prof.self_cpu_time_total == pytest.approx(sum(e.cpu_time_total for e in top), rel=1e-9)
    assert 0.85 * wall_us < prof.self_cpu_time_total <= wall_us


def test_nested_events_give_self_times_and_record_function_names_a_block():
    x = minidl.randn(50, 50, requires_grad=True)

    @profiler.record_function("decorated")
    def inner():
        return (x * 2).sum()

    with profiler.profile() as prof:
        with profiler.record_function("outer"):
            inner().backward()
    by_name = {e.name: e for e in prof.events()}
    outer, decorated = by_name["outer"], by_name["decorated"]
    assert outer.depth == 0 and decorated.depth == 1 and by_name["mul"].depth == 2
    children = [e for e in prof.events() if e.depth == 1]
    assert outer.self_cpu_time_total == pytest.approx(outer.cpu_time_total - sum(e.cpu_time_total for e in children))
    assert decorated.start_ns >= outer.start_ns and decorated.end_ns <= outer.end_ns


def test_the_table_has_torchs_columns_sorting_and_limit():
    x = torch.randn(8, 8)
    with torch.profiler.profile(record_shapes=True, profile_memory=True) as tprof:
        (x * 2).relu()
    t = minidl.randn(8, 8)
    with profiler.profile(record_shapes=True, profile_memory=True) as prof:
        for _ in range(3):
            (t * 2).relu()
        t.exp()

    def header(table):
        return [c.strip() for c in table.splitlines()[1].split("  ") if c.strip()]
    ours = prof.key_averages(group_by_input_shape=True).table(sort_by="count", row_limit=2)
    assert header(ours) == header(tprof.key_averages(group_by_input_shape=True).table())
    lines = ours.splitlines()
    assert len(lines) == 3 + 2 + 2 and lines[-1].startswith("Self CPU time total: ")
    assert {lines[3].split()[0], lines[4].split()[0]} == {"mul", "relu"}  # called 3 times; exp once, cut off
    assert "[[8, 8]]" in ours
    plain = prof.key_averages().table()
    assert header(plain) == ["Name", "Self CPU %", "Self CPU", "CPU total %", "CPU total", "CPU time avg", "CPU Mem",
                             "Self CPU Mem", "# of Calls"]
    with pytest.raises(ValueError, match="^table: sort_by must be one of"):
        prof.key_averages().table(sort_by="cuda_time")
    with pytest.raises(ValueError, match="group_by_input_shape needs profile.record_shapes=True"):
        with profiler.profile() as p2:
            t.exp()
        p2.key_averages(group_by_input_shape=True)


def test_profile_memory_counts_the_bytes_an_op_allocates():
    x = minidl.randn(1000, 1000)
    with profiler.profile(profile_memory=True) as prof:
        y = x * 2  # 4,000,000 bytes kept alive
        (x + 1).sum()  # a temporary, freed inside the block: sum's own result is a few bytes
    mem = {e.key: e.cpu_memory_usage for e in prof.key_averages()}
    assert 4_000_000 <= mem["mul"] < 4_100_000
    assert mem["sum"] < 1_000
    assert "3.82 Mb" in prof.key_averages().table()  # 4,000,000 bytes and the tensor's own few hundred
    del y


def test_the_chrome_trace_opens_as_trace_event_json(tmp_path):
    x = minidl.randn(20, 20, requires_grad=True)
    with profiler.profile(record_shapes=True) as prof:
        (x.relu() * 3).sum().backward()
    path = tmp_path / "trace.json"
    prof.export_chrome_trace(str(path))
    trace = json.loads(path.read_text())
    ops = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    assert len(ops) == len(prof.events())
    assert {"relu", "mul", "sum", "ReluBackward0", "torch::autograd::AccumulateGrad"} <= {e["name"] for e in ops}
    for e in ops:
        assert e["dur"] >= 0 and isinstance(e["ts"], float) and e["pid"] > 0
    relu = next(e for e in ops if e["name"] == "relu")
    assert relu["args"]["Input Dims"] == [[20, 20]]
    assert any(e["ph"] == "M" and e["name"] == "thread_name" for e in trace["traceEvents"])


def test_ops_on_other_threads_are_recorded_with_their_thread():
    x = minidl.randn(10, 10)
    with profiler.profile() as prof:
        worker = threading.Thread(target=lambda: x.exp())
        worker.start()
        worker.join()
        x.sin()
    threads = {e.name: e.thread for e in prof.events()}
    assert threads["exp"] != threads["sin"]


def test_a_schedule_records_its_active_steps_and_hands_each_cycle_over(tmp_path):
    x = minidl.randn(4, 4)
    seen = []

    def ready(prof):
        seen.append(sorted(e.name for e in prof.events()))
    sched = profiler.schedule(wait=1, warmup=1, active=2, repeat=2)
    with profiler.profile(schedule=sched, on_trace_ready=ready) as prof:
        for step in range(10):
            with profiler.record_function(f"step {step}"):
                x.exp()
            prof.step()
    assert [[n for n in names if n.startswith("step")] for names in seen] == [["step 2", "step 3"],
                                                                              ["step 6", "step 7"]]
    handler = profiler.tensorboard_trace_handler(str(tmp_path), worker_name="w")
    with profiler.profile(on_trace_ready=handler):
        x.exp()
    (written,) = list(tmp_path.iterdir())
    assert written.name.startswith("w.") and written.name.endswith(".pt.trace.json")
    assert json.loads(written.read_text())["traceEvents"]


def test_the_older_spelling_autograd_profiler_is_the_same_module():
    from minidl.autograd.profiler import record_function
    assert minidl.autograd.profiler is profiler and record_function is profiler.record_function


def test_nothing_is_left_behind_and_what_is_not_built_is_refused():
    x = minidl.randn(3)
    with pytest.raises(ZeroDivisionError):
        with profiler.profile():
            x.exp()
            raise ZeroDivisionError("inside the block")
    _assert_nothing_installed()
    with pytest.raises(ValueError, match="^profile: with_stack=True is not supported"):
        profiler.profile(with_stack=True)
    with pytest.raises(TypeError, match="^profile: activities must be ProfilerActivity values"):
        profiler.profile(activities=["cpu"])
    with pytest.raises(ValueError, match="^schedule: active must be at least 1"):
        profiler.schedule(wait=0, warmup=0, active=0)
    with profiler.profile(activities=[profiler.ProfilerActivity.CPU]) as prof:
        y = minidl.randn(2, requires_grad=True)
        with pytest.raises(RuntimeError):
            minidl.randn(2).backward()  # no grad_fn: the failing call still leaves the profile usable
        y.sum()
    assert "sum" in {e.name for e in prof.events()}
    np.testing.assert_array_equal(x.exp().numpy(), np.exp(x.numpy()))


def test_profiles_overlap_each_recording_its_own_span():
    x = minidl.randn(3)
    with profiler.profile() as outer:
        x.exp()
        with profiler.profile() as inner:  # nested: both record the inner block
            x.sin()
        x.cos()
    assert [e.name for e in outer.events()] == ["exp", "sin", "cos"]
    assert [e.name for e in inner.events()] == ["sin"]
    first = profiler.profile().start()  # started and ended out of order
    x.exp()
    second = profiler.profile().start()
    x.sin()
    first.stop()
    x.cos()
    second.stop()
    x.abs()
    assert [e.name for e in first.events()] == ["exp", "sin"]
    assert [e.name for e in second.events()] == ["sin", "cos"]
    _assert_nothing_installed()


def test_overlapping_memory_profiles_keep_tracemalloc_on_until_the_last_ends():
    import tracemalloc
    assert not tracemalloc.is_tracing()
    x = minidl.randn(1000)
    first = profiler.profile(profile_memory=True).start()
    second = profiler.profile(profile_memory=True).start()
    first.stop()
    assert tracemalloc.is_tracing()  # the second still measures
    x.exp()
    second.stop()
    assert not tracemalloc.is_tracing()
    (exp,) = second.events()
    assert exp.cpu_memory_usage >= 1000 * 4
    tracemalloc.start()  # the user's own tracing is left on
    try:
        with profiler.profile(profile_memory=True):
            x.exp()
        assert tracemalloc.is_tracing()
    finally:
        tracemalloc.stop()


def test_instruments_compose_whatever_the_interleaving_across_threads(tmp_path):
    """A profile ends on one thread while draw_graph's shape pass (which records beside it) runs on another, and a
    second profile starts there and ends after it; summary, ONNX export and a Monitor run meanwhile. Each sees
    what it should, and afterwards nothing is installed: ops run the plain apply and a new profile records."""
    minidl.manual_seed(0)
    model = minidl.models.LeNet5()
    x, y = minidl.randn(2, 1, 28, 28), minidl.randint(0, 10, (2,))
    logits = model(x)
    barrier = threading.Barrier(2)
    paused = []

    def pause_once(grad):  # a hook on the logits: runs inside draw_graph's backward pass, in the drawing thread
        if not paused:
            paused.append(True)
            barrier.wait()  # 2: the shape pass is under way
            barrier.wait()  # 3: the first profile has ended and the second begun on the other thread
    logits.register_hook(pause_once)
    loss = F.cross_entropy(logits, y)
    profiles, errors = {}, []

    def profiling():
        try:
            first = profiler.profile().start()
            profiles["first"] = first
            barrier.wait()  # 1
            barrier.wait()  # 2
            first.stop()
            profiles["second"] = profiler.profile().start()
            x.exp()
            barrier.wait()  # 3
            barrier.wait()  # 4: the drawing thread is done with every instrument
            x.cos()
            profiles["second"].stop()
        except BaseException as e:  # handed to the test's thread
            errors.append(e)
            barrier.abort()
    other = threading.Thread(target=profiling)
    other.start()
    try:
        barrier.wait()  # 1
        g = minidl.utils.draw_graph(loss, str(tmp_path / "graph.png"), model=model)
        minidl.utils.summary(model, (1, 1, 28, 28), print_fn=None)
        minidl.onnx.export(model, x, str(tmp_path / "lenet.onnx"))
        monitor = minidl.utils.Monitor(model)
        F.cross_entropy(model(x), y).backward()
        monitor.step()
        monitor.remove()
        barrier.wait()  # 4
    finally:
        other.join()
    if errors:
        raise errors[0]
    assert all(n["shape"] is not None for n in g.nodes if n["kind"] == "op")  # the shape pass saw every node
    assert monitor.steps == [0]
    drawer = threading.get_ident()
    first = {(e.name, e.thread == drawer) for e in profiles["first"].events()}
    second = {(e.name, e.thread == drawer) for e in profiles["second"].events()}
    assert ("NllLossBackward0", True) in first and ("ConvolutionBackward0", True) not in first
    assert {("exp", False), ("cos", False), ("ConvolutionBackward0", True), ("conv2d", True)} <= second
    _assert_nothing_installed()
    assert not any(m._forward_hooks for m in model.modules())
    with profiler.profile() as prof:
        x.exp()
    x.sin()
    assert [e.name for e in prof.events()] == ["exp"]
    _assert_nothing_installed()
