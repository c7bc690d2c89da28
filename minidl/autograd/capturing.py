"""What a capture (minidl.compile, in minidl/compiler.py) sees of a running step, and what it cannot hold.

A capture runs the user's step eagerly once and writes down the arrays work it did, so that later calls can replay
that work without building Tensors or graph nodes. It sees the work through a few doors, each costing one
attribute test of a thread-local when no capture runs:

- ``Function.apply`` reports every op (``_trace.record``, the tracer's door, which minidl.onnx uses too);
- the backward engine reports each node it runs, and a once-differentiable node's backward (raw arrays) and a leaf's
  accumulation into ``.grad`` are replayed as calls (``_trace.capture``);
- :func:`replayed` marks a Python function that the plan must call again on every replay because its result depends
  on state the plan cannot see: an optimizer's step (its learning rate and counters are read at replay time), a
  random draw (the generator advances as in eager mode), ``zero_grad``, gradient clipping, tensor creation;
- :func:`not_capturable` is called by what a plan cannot hold (``.item()``, ``.numpy()``, ``bool(tensor)``, an
  in-place write outside an op, a hook): the capture ends there, naming it, and the step stays eager.

This module imports nothing of minidl's, so that creation.py, tensor.py and function.py can all use it.
"""
import functools
import threading


class _Trace(threading.local):
    record = None   # a callable that sees every op this thread applies (minidl.onnx's tracer, a capture), or None
    capture = None  # the capture (minidl.compiler.Recording) writing down this thread's step, or None


_trace = _Trace()


def replayed(func):
    """Decorate ``func`` so that a capture records a call to it (with the same arguments, tensors computed in the step
    swapped for the replay's) instead of the array work inside, which it does not see; outside a capture it is
    ``func`` plus one attribute test."""
    @functools.wraps(func)
    def call(*args, **kwargs):
        cap = _trace.capture
        if cap is None:
            return func(*args, **kwargs)
        return cap.call(func, args, kwargs)
    call.__wrapped_replayed__ = func
    return call


def not_capturable(what):
    """Called by what a replay cannot repeat (``what``: "item()", "add_ (in place)"...): a running capture ends with
    that reason and the step goes on eagerly."""
    cap = _trace.capture
    if cap is not None:
        cap.fail(what)


def constant(array):
    """Mark ``array`` as made from a Python number (``x * 2``): a capture may keep it as a constant of the plan (both
    recorded calls must agree on its value); a small array made by other raw code ends the capture instead, since it
    may have been computed from the data. Returns ``array``."""
    cap = _trace.capture
    if cap is not None:
        cap.constant(array)
    return array


class suspended:
    """Within the block this thread's ops are not reported (a replayed call's own work, a raw backward)."""
    __slots__ = ("saved",)

    def __enter__(self):
        self.saved = _trace.record, _trace.capture
        _trace.record = _trace.capture = None

    def __exit__(self, *exc):
        _trace.record, _trace.capture = self.saved
