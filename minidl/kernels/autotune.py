"""Choosing among implementations of an op by measuring them once per shape (like cuDNN's benchmark
mode, on the CPU). The first call with a new key times every candidate (a warm-up run, then the best of
two) and caches the fastest; later calls reuse it. ``set_enabled(False)`` (or MINIDL_AUTOTUNE=0) always
takes the first candidate, the reference choice, so that runs are reproducible bit for bit.

Choices made on the CPU are also kept on disk, beside the jit's kernels (kernels/jit_cache.py: a per-user folder,
each entry checked against its digest), so that a later process on the same machine skips the trials: keyed by the
op's key, the candidates offered, this CPU, the thread count and the versions of minidl's kernels, NumPy and Numba.
A stored choice is only ever one of the candidates offered (any of them computes the same numbers); a missing,
damaged or stale entry means measuring again. ``set_disk(False)`` (or MINIDL_AUTOTUNE_CACHE=0) keeps choices in the
process; ``clear(disk=True)`` forgets the stored ones."""
import contextlib
import functools
import hashlib
import json
import os
import time

_enabled = os.environ.get("MINIDL_AUTOTUNE", "1") != "0"
_disk = os.environ.get("MINIDL_AUTOTUNE_CACHE", "1") != "0"
_cache = {}
_forced = {}


def set_enabled(flag):
    """Turn per-shape measurement on or off; returns the previous setting."""
    global _enabled
    old, _enabled = _enabled, bool(flag)
    return old


def is_enabled():
    """Whether the tuner measures: on unless switched off, or in the reading mode (which runs the reference)."""
    return _enabled and not _reference


# The reading mode (kernels.use_reference, MINIDL_REFERENCE=1): the NumPy reference kernels, conv2d's first
# algorithm (im2col), one thread, nothing compiled. Kept here, where what runs is decided, so blas.py can read it.
_reference = os.environ.get("MINIDL_REFERENCE", "0") not in ("", "0")


def set_reference(flag):
    """Turn the reading mode on or off; returns the previous setting."""
    global _reference
    old, _reference = _reference, bool(flag)
    return old


def reference():
    return _reference


def forced(op):
    """The algorithm forced for ``op`` (see ``force``), or None."""
    return _forced.get(op)


def cache():
    """A copy of the choices made so far: {key: (name, {name: seconds})}."""
    return dict(_cache)


def clear(disk=False):
    """Forget the choices made in this process; ``disk`` True removes the stored ones too."""
    _cache.clear()
    if disk:
        from . import jit_cache
        d = jit_cache.folder()
        for name in os.listdir(d) if d else ():
            if name.startswith("tune-") and name.endswith(".tune"):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(d, name))


def set_disk(flag):
    """Keep choices on disk (and read them back) or not; returns the previous setting."""
    global _disk
    old, _disk = _disk, bool(flag)
    return old


@functools.lru_cache(maxsize=1)
def _code_version():
    """A hash of the kernels' source (an algorithm made faster or slower makes old choices stale) and the versions
    of what runs them."""
    import numba
    import numpy
    h = hashlib.sha256(f"{numpy.__version__} {numba.__version__}".encode())
    here = os.path.dirname(__file__)
    for name in sorted(os.listdir(here)):
        if name.endswith(".py"):
            with open(os.path.join(here, name), "rb") as f:
                h.update(name.encode() + f.read())
    return h.hexdigest()


@functools.lru_cache(maxsize=1)
def _cpu():
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        model = ""
    import platform
    return f"{platform.machine()} {model or platform.processor()} {os.cpu_count()}"


def _disk_key(key, names):
    from .blas import workers
    return repr((key, tuple(names), _cpu(), workers()[0], _code_version()))


def _load(disk_key, names):
    """The choice stored under ``disk_key`` if it is among ``names``, or None."""
    from . import jit_cache
    try:
        data = jit_cache.load(disk_key, kind="tune")
        name = json.loads(data)["name"] if data is not None else None
    except (ValueError, KeyError, TypeError):  # the digest matched but the content is not ours: measure again
        return None
    return name if name in names else None


def _store(disk_key, name, times):
    from . import jit_cache
    jit_cache.store(disk_key, json.dumps({"name": name, "times": times}).encode(), kind="tune",
                    durable=False)


@contextlib.contextmanager
def force(op, name):
    """Within the block, ``op`` uses algorithm ``name`` wherever it can run (tests use this to check
    every algorithm)."""
    old = _forced.get(op)
    _forced[op] = name
    try:
        yield
    finally:
        if old is None:
            _forced.pop(op, None)
        else:
            _forced[op] = old


# A memory-hungry candidate must beat the best lean one by more than this fraction. Measured (NOTES.md,
# change 8): the one-time timings and the same convs timed in a training loop disagree by up to 30% on this
# shared 2-core machine, and plain vs chunked im2col lie within 20% of each other on most shapes.
# Raised from 0.20 to 0.35 (change 15): resnet18's 3x3 convs measured plain im2col 17-27% faster than the
# chunked one, so half of them kept a column matrix each and the step's peak went from 1.1 to 2.4 GiB.
LEAN_MARGIN = 0.35


def choose(key, candidates, lean=(), keep=False):
    """The name of the fastest of ``candidates`` (a list of (name, thunk)) for ``key`` (whose first item
    names the op). Candidates named in ``lean`` keep less memory alive (for conv2d: no column matrix
    between forward and backward); the others win only when more than LEAN_MARGIN faster, since timings
    within that are noise on a shared machine (benchmarks/NOTES.md, change 8). ``keep``: the key holds only
    Python numbers, strings and tuples of them, and the choice may be kept on disk (a CPU op's)."""
    names = [n for n, _ in candidates]
    if key[0] in _forced:
        return _forced[key[0]] if _forced[key[0]] in names else names[0]
    if not is_enabled() or len(candidates) == 1:
        return names[0]
    hit = _cache.get(key)
    if hit is not None:
        return hit[0]
    disk_key = _disk_key(key, names) if keep and _disk else None
    stored = _load(disk_key, names) if disk_key else None
    if stored is not None:
        return _cache.setdefault(key, (stored, {}))[0]
    times = {}
    for name, thunk in candidates:
        thunk()  # warm-up: compilation, first-touch allocation
        best = float("inf")
        for _ in range(2):
            t0 = time.perf_counter()
            thunk()
            best = min(best, time.perf_counter() - t0)
        times[name] = best
    name = _cache.setdefault(key, (pick(times, lean), times))[0]  # two threads timing one key agree on the first
    if disk_key:
        _store(disk_key, name, times)
    return name


def pick(times, lean=()):
    """The name ``choose`` takes from measured ``times`` ({name: seconds}): the fastest, unless it is not in ``lean``
    and the fastest lean one is within LEAN_MARGIN of it."""
    name = min(times, key=times.get)
    lean_times = {n: t for n, t in times.items() if n in lean}
    if lean_times and name not in lean_times:
        best_lean = min(lean_times, key=lean_times.get)
        if lean_times[best_lean] <= times[name] * (1 + LEAN_MARGIN):
            name = best_lean
    return name
