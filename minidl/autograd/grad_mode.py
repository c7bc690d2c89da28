"""Grad mode: whether ops record the graph (no_grad, enable_grad, set_grad_enabled)."""
import functools
import threading

class _State(threading.local):
    enabled = True  # each thread starts with grad on (a class default: reading it costs no failed lookup)


_state = _State()


def is_grad_enabled():
    return _state.enabled


def _set(mode):
    _state.enabled = bool(mode)


class set_grad_enabled:
    """Context manager (and decorator) that turns graph recording on or off."""

    def __init__(self, mode=True):
        self.mode = bool(mode)
        self.prev = is_grad_enabled()
        _set(self.mode)  # like torch, it also works as a plain function call

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _set(self.prev)
        return False


class _Mode:
    mode = True

    def __enter__(self):
        self.prev = is_grad_enabled()
        _set(self.mode)
        return self

    def __exit__(self, *exc):
        _set(self.prev)
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with type(self)():
                return fn(*args, **kwargs)
        return wrapper


class no_grad(_Mode):
    """Ops inside record no graph: ``with minidl.no_grad(): ...`` or ``@minidl.no_grad()``."""
    mode = False


class enable_grad(_Mode):
    """Turns graph recording back on inside a no_grad block."""
    mode = True


class inference_mode(_Mode):
    """torch.inference_mode: here the same as no_grad (``mode=False`` records graphs as usual)."""

    def __init__(self, mode=True):
        self.mode = not mode

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with inference_mode(not self.mode):
                return fn(*args, **kwargs)
        return wrapper
