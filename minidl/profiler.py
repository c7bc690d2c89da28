"""Where a step's time (and memory) goes, op by op: torch.profiler's names and table.

    with minidl.profiler.profile(record_shapes=True) as prof:
        loss = F.cross_entropy(model(x), y); loss.backward(); opt.step()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=10))
    prof.export_chrome_trace("trace.json")          # chrome://tracing or ui.perfetto.dev

What is recorded, on every thread, while a profile is active:
- every op's forward (``Function.apply``), named as the op (``conv2d``, ``relu``, ``cross_entropy``...);
- every backward node, named as torch names the grad_fn (``ConvolutionBackward0``; a leaf's gradient
  accumulation is ``torch::autograd::AccumulateGrad``);
- ``Optimizer.step#SGD.step`` and ``Optimizer.zero_grad#SGD.zero_grad``, as torch;
- every module call, as ``nn.Module: Conv2d`` (its self time is the module's own Python: hooks, forward's code
  between ops), so that the self times cover nearly all of a step (97% of a LeNet-5 step; the rest is the
  backward engine's bookkeeping and the caller's loop);
- the blocks a user names with :func:`record_function`.
Events nest: an event's *self* time is its time minus that of the events inside it (an op's backward written with
other ops, an op inside a ``record_function`` block), so the self times add up to the time covered, once.
``record_shapes=True`` keeps each op's input shapes (``group_by_input_shape``); ``profile_memory=True`` measures
the bytes each op allocated, net of what it freed, with tracemalloc (NumPy reports its arrays to it); it slows
every allocation down, so it is off by default, as torch's.

When no profile is active nothing runs per op (``Function.apply`` is swapped for a recording one only while
a recorder is installed) and the backward engine reads one global per pass (benchmarks/NOTES.md, change 31). Times
are the CPU's wall clock (``perf_counter_ns``); on a GPU the kernels run asynchronously and an op's time is its
launch, as torch's CPU columns.

Profiles compose with each other and with the other instruments: several may record at once (nested in one thread,
or started in several), each seeing every op of every thread while it records, and ``draw_graph``'s shape pass
records beside them (autograd/function.py's ``add_recorder``). Each removes only its own recorder, so once all have
ended nothing is installed, whatever the order they started and ended in. A call under way keeps the recorders it
started with: a profile that starts during a backward pass records that pass's nodes from the next pass on. (torch
2.13 records only the thread that started the profile, and its profiles do not overlap.)
"""
import functools
import json
import os
import threading
import time
import tracemalloc
from contextlib import ContextDecorator
from enum import Enum

from .autograd import function as _function


class ProfilerActivity(Enum):
    CPU = "cpu"
    CUDA = "cuda"


class ProfilerAction(Enum):
    NONE = 0
    WARMUP = 1
    RECORD = 2
    RECORD_AND_SAVE = 3


def schedule(*, wait, warmup, active, repeat=0, skip_first=0):
    """torch.profiler.schedule: which steps (counted by ``prof.step()``) are skipped, warmed up and recorded. After
    ``skip_first`` steps, cycles of ``wait`` idle, ``warmup`` and ``active`` recorded steps; ``repeat`` cycles
    (0: for ever). The trace of each cycle goes to ``on_trace_ready`` after its last active step."""
    for name, value in (("wait", wait), ("warmup", warmup), ("active", active), ("repeat", repeat),
                        ("skip_first", skip_first)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"schedule: {name} must be a non-negative int, got {value!r}")
    if active < 1:
        raise ValueError(f"schedule: active must be at least 1, got {active}")

    def action(step):
        if step < skip_first:
            return ProfilerAction.NONE
        step -= skip_first
        cycle = wait + warmup + active
        if repeat and step >= cycle * repeat:
            return ProfilerAction.NONE
        pos = step % cycle
        if pos < wait:
            return ProfilerAction.NONE
        if pos < wait + warmup:
            return ProfilerAction.WARMUP
        return ProfilerAction.RECORD_AND_SAVE if pos == cycle - 1 else ProfilerAction.RECORD
    return action


def tensorboard_trace_handler(dir_name, worker_name=None, use_gzip=False):
    """An ``on_trace_ready`` that writes each trace as ``{worker}.{ms since epoch}.pt.trace.json`` in dir_name (what
    TensorBoard's profiler plugin and Perfetto read)."""
    def handler(prof):
        os.makedirs(dir_name, exist_ok=True)
        worker = worker_name or f"{os.uname().nodename}_{os.getpid()}"
        path = os.path.join(dir_name, f"{worker}.{int(time.time() * 1000)}.pt.trace.json")
        if use_gzip:
            import gzip
            with gzip.open(path + ".gz", "wt") as f:
                json.dump(prof._trace(), f)
        else:
            prof.export_chrome_trace(path)
    return handler


class FunctionEvent:
    """One recorded range: name, thread, start and duration (us), self time, input shapes, memory (bytes)."""
    __slots__ = ("name", "thread", "start_ns", "end_ns", "child_ns", "input_shapes", "cpu_memory_usage",
                 "child_memory", "depth", "kind", "_mem0")

    def __init__(self, name, thread, input_shapes, depth, kind):
        self.name, self.thread, self.input_shapes, self.depth, self.kind = name, thread, input_shapes, depth, kind
        self.start_ns = self.end_ns = self.child_ns = 0
        self.cpu_memory_usage = self.child_memory = 0
        self._mem0 = None

    key = property(lambda self: self.name)
    cpu_time_total = property(lambda self: (self.end_ns - self.start_ns) / 1e3)       # us, as torch
    self_cpu_time_total = property(lambda self: (self.end_ns - self.start_ns - self.child_ns) / 1e3)
    self_cpu_memory_usage = property(lambda self: self.cpu_memory_usage - self.child_memory)

    def __repr__(self):
        return (f"<FunctionEvent {self.name} cpu_time_total={self.cpu_time_total:.1f}us "
                f"self={self.self_cpu_time_total:.1f}us shapes={self.input_shapes}>")


class FunctionEventAvg:
    """The events of one name (and input shapes, when grouped by them) together: count, total and self time."""

    def __init__(self, key, input_shapes):
        self.key, self.input_shapes = key, input_shapes
        self.count = 0
        self.cpu_time_total = self.self_cpu_time_total = 0.0
        self.cpu_memory_usage = self.self_cpu_memory_usage = 0

    def add(self, e):
        self.count += 1
        self.cpu_time_total += e.cpu_time_total
        self.self_cpu_time_total += e.self_cpu_time_total
        self.cpu_memory_usage += e.cpu_memory_usage
        self.self_cpu_memory_usage += e.self_cpu_memory_usage
        return self

    @property
    def cpu_time(self):
        return self.cpu_time_total / max(self.count, 1)

    def __repr__(self):
        return (f"<FunctionEventAvg key={self.key} count={self.count} cpu_time_total={self.cpu_time_total:.1f}us "
                f"self_cpu_time_total={self.self_cpu_time_total:.1f}us>")


_SORT_KEYS = ("cpu_time_total", "self_cpu_time_total", "cpu_time", "count", "cpu_memory_usage",
              "self_cpu_memory_usage")


class EventList(list):
    """A list of events (or of their averages) that prints as torch's table."""

    def __init__(self, events=(), profile_memory=False, with_shapes=False):
        super().__init__(events)
        self._profile_memory, self._with_shapes = profile_memory, with_shapes

    @property
    def self_cpu_time_total(self):
        return sum(e.self_cpu_time_total for e in self)

    def table(self, sort_by=None, row_limit=100, max_name_column_width=55, max_shapes_column_width=80, header=None,
              top_level_events_only=False):
        """torch's layout: Name, Self CPU %, Self CPU, CPU total %, CPU total, CPU time avg, (CPU Mem, Self CPU
        Mem with profile_memory), # of Calls, (Input Shapes when grouped by them). Percentages are of the sum of
        every event's self time, which the last line gives."""
        rows = [e for e in self if not top_level_events_only or getattr(e, "depth", 0) == 0]
        if sort_by is not None:
            if sort_by not in _SORT_KEYS:
                raise ValueError(f"table: sort_by must be one of {_SORT_KEYS}, got {sort_by!r}")
            rows.sort(key=lambda e: getattr(e, sort_by), reverse=True)
        if row_limit is not None and row_limit >= 0:
            rows = rows[:row_limit]
        total = self.self_cpu_time_total
        name_w = min(max([len(e.key) for e in self] + [4]) + 4, max_name_column_width)
        shapes_w = min(max([len(str(e.input_shapes)) for e in self] + [12]) + 4, max_shapes_column_width)
        cols = ["Self CPU %", "Self CPU", "CPU total %", "CPU total", "CPU time avg"]
        if self._profile_memory:
            cols += ["CPU Mem", "Self CPU Mem"]
        cols.append("# of Calls")
        shapes = self._with_shapes
        line = "  ".join(["-" * name_w] + ["-" * 12 for _ in cols] + (["-" * shapes_w] if shapes else [])) + "  "
        head = f"{'Name':>{name_w}}  " + "  ".join(f"{c:>12}" for c in cols) + "  "
        if shapes:
            head += f"{'Input Shapes':>{shapes_w}}  "
        out = ([header] if header else []) + [line, head, line]
        for e in rows:
            name = e.key if len(e.key) <= name_w else e.key[:name_w - 3] + "..."
            cells = [_percent(e.self_cpu_time_total, total), _us(e.self_cpu_time_total),
                     _percent(e.cpu_time_total, total), _us(e.cpu_time_total), _us(e.cpu_time)]
            if self._profile_memory:
                cells += [_bytes(e.cpu_memory_usage), _bytes(e.self_cpu_memory_usage)]
            cells.append(str(e.count))
            row = f"{name:>{name_w}}  " + "  ".join(f"{c:>12}" for c in cells) + "  "
            if shapes:
                row += f"{str(e.input_shapes)[:shapes_w]:>{shapes_w}}  "
            out.append(row)
        out += [line, f"Self CPU time total: {_us(total)}"]
        return "\n".join(out) + "\n"

    def __str__(self):
        return self.table()


def _us(us):
    if abs(us) >= 1e6:
        return f"{us / 1e6:.3f}s"
    if abs(us) >= 1e3:
        return f"{us / 1e3:.3f}ms"
    return f"{us:.3f}us"


def _percent(part, total):
    return f"{100 * part / total:.2f}%" if total else "0.00%"


def _bytes(n):
    for unit, size in (("Gb", 2 ** 30), ("Mb", 2 ** 20), ("Kb", 2 ** 10)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


def _shapes(inputs):
    return [list(t.shape) if hasattr(t, "shape") else [] for t in inputs]


class _Recorder:
    """What Function.apply, the backward engine and Module.__call__ call while a profile records (installed with
    autograd/function.py's ``add_recorder``): begin an event, end it; a per-thread stack gives nesting and self
    times."""

    def __init__(self, record_shapes, profile_memory):
        self.record_shapes, self.profile_memory = record_shapes, profile_memory
        self.events = []
        self._local = threading.local()
        self._lock = threading.Lock()

    def _stack(self):
        stack = getattr(self._local, "stack", None)
        if stack is None:
            stack = self._local.stack = []
        return stack

    def begin(self, name, inputs=(), kind="forward"):
        stack = self._stack()
        e = FunctionEvent(name, threading.get_ident(), _shapes(inputs) if self.record_shapes else None, len(stack),
                          kind)
        stack.append(e)
        if self.profile_memory:
            e._mem0 = tracemalloc.get_traced_memory()[0]
        e.start_ns = time.perf_counter_ns()
        return e

    def begin_node(self, node, grad):
        prefix = "torch::autograd::" if isinstance(node, _function.AccumulateGrad) else ""  # torch's event name
        return self.begin(prefix + node.grad_fn_name, (grad,), "backward")

    def end(self, e, result):
        e.end_ns = time.perf_counter_ns()
        if self.profile_memory:
            e.cpu_memory_usage = tracemalloc.get_traced_memory()[0] - e._mem0
        stack = self._stack()
        while stack and stack.pop() is not e:  # an event left open by an exception inside it
            pass
        if stack:
            parent = stack[-1]
            parent.child_ns += e.end_ns - e.start_ns
            parent.child_memory += e.cpu_memory_usage
        with self._lock:
            self.events.append(e)

    def finished(self):
        """The events so far, as a list of their own (an op still running on another thread when the profile
        stopped may end later; it is not added)."""
        with self._lock:
            return list(self.events)


_memory_lock = threading.Lock()
_memory_users = 0           # profiles with profile_memory=True recording now
_started_tracemalloc = False  # whether they started tracemalloc (then the last one stops it; else the user did)


def _trace_memory(on):
    """Count a profile that measures memory in (on=True) or out: tracemalloc runs while any does, and is stopped
    after the last only if a profile started it."""
    global _memory_users, _started_tracemalloc
    with _memory_lock:
        if on:
            if _memory_users == 0 and not tracemalloc.is_tracing():
                tracemalloc.start()
                _started_tracemalloc = True
            _memory_users += 1
            return
        _memory_users -= 1
        if _memory_users == 0 and _started_tracemalloc:
            tracemalloc.stop()
            _started_tracemalloc = False


class profile:
    """torch.profiler.profile: ``with profile(...) as prof:`` records the block's ops (see the module's text).

    Arguments as torch's: ``activities`` (ProfilerActivity.CPU; CUDA is accepted and recorded as CPU time, the
    launch), ``record_shapes``, ``profile_memory``, ``schedule`` with ``on_trace_ready`` and ``prof.step()``.
    ``with_stack``, ``with_flops`` and ``with_modules`` are refused (not built)."""

    def __init__(self, *, activities=None, schedule=None, on_trace_ready=None, record_shapes=False,
                 profile_memory=False, with_stack=False, with_flops=False, with_modules=False, experimental_config=None,
                 use_cuda=None):
        for name, value in (("with_stack", with_stack), ("with_flops", with_flops), ("with_modules", with_modules)):
            if value:
                raise ValueError(f"profile: {name}=True is not supported (minidl records op names, times, shapes "
                                 f"and memory); minidl.utils.summary gives FLOPs per layer")
        for a in activities or ():
            if not isinstance(a, ProfilerActivity):
                raise TypeError(f"profile: activities must be ProfilerActivity values, got {a!r}")
        self.record_shapes, self.profile_memory = bool(record_shapes), bool(profile_memory)
        self.schedule, self.on_trace_ready = schedule, on_trace_ready
        self.step_num = 0
        self._recorder = None
        self._events = []

    # -- recording -------------------------------------------------------------------------------
    def _start(self):
        if self.profile_memory:
            _trace_memory(True)
        self._recorder = _Recorder(self.record_shapes, self.profile_memory)
        _function.add_recorder(self._recorder)

    def _stop(self):
        if self._recorder is None:
            return
        _function.remove_recorder(self._recorder)
        if self.profile_memory:
            _trace_memory(False)
        self._events = self._recorder.finished()
        self._recorder = None

    def _action(self):
        return self.schedule(self.step_num) if self.schedule is not None else ProfilerAction.RECORD

    def _records(self):
        return self._action() in (ProfilerAction.RECORD, ProfilerAction.RECORD_AND_SAVE)

    def start(self):
        if self._records() and self._recorder is None:
            self._start()
        return self

    def stop(self):
        if self._recorder is not None:
            self._stop()
            if self.on_trace_ready is not None:
                self.on_trace_ready(self)

    def step(self):
        """The end of a training step, for ``schedule``: a cycle's trace goes to on_trace_ready after its last
        active step. Warm-up steps are not recorded (minidl's recorder needs no warming up)."""
        last_of_cycle = self._action() == ProfilerAction.RECORD_AND_SAVE
        self.step_num += 1
        if last_of_cycle or not self._records():
            self.stop()
        if self._records() and self._recorder is None:
            self._start()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    # -- reading -----------------------------------------------------------------------------------
    def events(self):
        """Every recorded event, in the order they ended."""
        return EventList(self._events, self.profile_memory)

    def key_averages(self, group_by_input_shape=False):
        """The events grouped by name (and input shapes with ``group_by_input_shape``; needs record_shapes)."""
        if group_by_input_shape and not self.record_shapes:
            raise ValueError("key_averages: group_by_input_shape needs profile(record_shapes=True)")
        groups = {}
        for e in self._events:
            shapes = e.input_shapes if group_by_input_shape else None
            k = (e.name, str(shapes))
            if k not in groups:
                groups[k] = FunctionEventAvg(e.name, shapes)
            groups[k].add(e)
        return EventList(groups.values(), self.profile_memory, group_by_input_shape)

    @property
    def self_cpu_time_total(self):
        return sum(e.self_cpu_time_total for e in self._events)

    def _trace(self):
        pid = os.getpid()
        threads = {}
        out = []
        for e in sorted(self._events, key=lambda e: e.start_ns):
            tid = threads.setdefault(e.thread, len(threads))
            args = {"kind": e.kind}
            if e.input_shapes is not None:
                args["Input Dims"] = e.input_shapes
            if self.profile_memory:
                args["CPU Mem"] = e.cpu_memory_usage
            out.append({"ph": "X", "cat": "cpu_op", "name": e.name, "pid": pid, "tid": tid,
                        "ts": e.start_ns / 1e3, "dur": (e.end_ns - e.start_ns) / 1e3, "args": args})
        meta = [{"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": f"thread {tid}"}}
                for tid in threads.values()]
        return {"traceEvents": meta + out, "displayTimeUnit": "ms"}

    def export_chrome_trace(self, path):
        """Write the events as Chrome's trace-event JSON (complete "X" events, microseconds), which
        chrome://tracing and ui.perfetto.dev open."""
        with open(path, "w") as f:
            json.dump(self._trace(), f)


class record_function(ContextDecorator):
    """A named range in the profile (``with record_function("data"):`` or as a decorator); nothing when no
    profile records."""

    def __init__(self, name, args=None):
        if not isinstance(name, str):
            raise TypeError(f"record_function: name must be a str, got {type(name).__name__}")
        self.name = name
        self._local = threading.local()  # .open: (recorder, event) of each entry not yet left, per thread

    def _open(self):
        return self._local.__dict__.setdefault("open", [])

    def __enter__(self):
        recorder = _function._profiler
        self._open().append((recorder, recorder.begin(self.name, (), "user") if recorder is not None else None))
        return self

    def __exit__(self, *exc):
        recorder, event = self._open().pop()
        if event is not None:
            recorder.end(event, None)
        return False


def profiled_method(method, label):
    """``method`` of an optimizer, as a ``Optimizer.step#SGD.step`` range while a profile records (torch's
    names); a plain call otherwise."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        if _function._profiler is None:
            return method(self, *args, **kwargs)
        with record_function(f"Optimizer.{label}#{type(self).__name__}.{label}"):
            return method(self, *args, **kwargs)
    wrapper.__profiled__ = True
    return wrapper
