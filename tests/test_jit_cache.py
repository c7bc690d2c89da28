"""Fault injection into the disk cache of the generated conv kernels (kernels/jit_cache.py). Before it checked its
entries, a truncated, emptied or overwritten object file made LLVM abort every later process (SIGABRT, SIGSEGV), and
flipped bits gave wrong gradients or crashed. Each damage is done here to every entry, then a process runs the jit
convolution (forward, input and weight gradients) and compares it with the reference algorithm: it must exit 0
with the reference's numbers, say what it repaired in one line, and leave entries that load again."""
import os
import stat
import subprocess
import sys

import pytest

import suite
from minidl.kernels import jit

pytestmark = pytest.mark.skipif(not jit.available(), reason="llvmlite cannot generate code for this CPU")

# The child: runs the convolution with the jit kernels and with im2col (the reference) and compares; with "damage"
# it damages every cache entry in each way below, in turn, and runs again after each.
CHILD = r"""
import os, sys, errno, numpy as np
import minidl, minidl.nn.functional as F
from minidl.kernels import autotune, jit, jit_cache

def run(algo):
    rng = np.random.default_rng(0)
    x = minidl.tensor(rng.standard_normal((4, 3, 9, 9)).astype(np.float32), requires_grad=True)
    w = minidl.tensor(rng.standard_normal((5, 3, 3, 3)).astype(np.float32), requires_grad=True)
    gy = minidl.tensor(rng.standard_normal((4, 5, 9, 9)).astype(np.float32))
    with autotune.force("conv2d", algo):
        y = F.conv2d(x, w, padding=1)
        y.backward(gy)
    return y.detach().numpy(), x.grad.numpy(), w.grad.numpy()

def check():
    jit.kernel.cache_clear()  # the next call loads its kernels from the disk again
    for got, want in zip(run("jit"), run("im2col")):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)

def entries():
    d = jit_cache.folder()
    return sorted(os.path.join(d, n) for n in os.listdir(d) if n.endswith(".o"))

def flip(data, i):
    data = bytearray(data)
    data[i % len(data)] ^= 1 << (i % 8)
    return bytes(data)

check()
if sys.argv[1] == "damage":
    files = entries()
    assert len(files) == 3, files  # forward, input gradient (a forward of its own shape), weight gradient
    good = {f: open(f, "rb").read() for f in files}
    other = {f: good[files[(i + 1) % len(files)]] for i, f in enumerate(files)}
    rng = np.random.default_rng(1)
    damages = {
        "truncated": lambda f, d: d[:len(d) // 2],
        "emptied": lambda f, d: b"",
        "random bytes": lambda f, d: rng.integers(0, 256, len(d), dtype=np.uint8).tobytes(),
        "header only": lambda f, d: d[:jit_cache._HEADER],
        "the raw object, no header": lambda f, d: d[jit_cache._HEADER:],
        "another kernel's valid entry": lambda f, d: other[f],
    }
    for i in (0, 17, jit_cache._HEADER + 1, jit_cache._HEADER + 100, -300, -1):
        damages[f"one bit flipped at {i}"] = lambda f, d, i=i: flip(d, i)
    for name, damage in damages.items():
        for f in files:
            with open(f, "wb") as out:
                out.write(damage(f, good[f]))
        check()
        for f in files:
            assert open(f, "rb").read() == good[f], (name, "not repaired", f)
    print("survived", len(damages))
elif sys.argv[1] == "full disk":
    for f in entries():
        os.unlink(f)
    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    jit_cache.os.fsync = full
    check()
    check()
    left = os.listdir(jit_cache.folder())
    assert left == [], left  # no entry, and no temporary file
    print("survived")
"""


def _child(cache, mode, **env):
    env = dict(os.environ, MINIDL_CACHE_DIR=str(cache), **env)
    return subprocess.run([sys.executable, "-c", CHILD, mode], env=env, capture_output=True, text=True, timeout=300)


def test_damaged_entries_are_detected_deleted_and_compiled_again(tmp_path):
    cache = tmp_path / "cache"
    first = _child(cache, "fill")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "compiling kernels" in first.stderr
    run = _child(cache, "damage")
    assert run.returncode == 0, f"exit {run.returncode}: {run.stderr[-3000:]}"
    assert "survived 12" in run.stdout
    said = [line for line in run.stderr.splitlines() if "damaged" in line]
    assert len(said) == 1 and str(cache) in said[0], run.stderr  # said once, naming the folder
    again = _child(cache, "fill")  # the repaired entries load: nothing compiles, nothing is said
    assert again.returncode == 0 and again.stderr == "", again.stderr


def test_a_failing_write_costs_only_the_cache(tmp_path):
    run = _child(tmp_path / "cache", "full disk")
    assert run.returncode == 0 and "survived" in run.stdout, run.stderr[-3000:]
    said = [line for line in run.stderr.splitlines() if "cannot write the kernel cache" in line]
    assert len(said) == 1 and "No space left on device" in said[0], run.stderr


@pytest.mark.parametrize("mode", [0o777, pytest.param(0o770, marks=suite.exhaustive),
                                  pytest.param(0o757, marks=suite.exhaustive)])
def test_a_folder_others_can_write_is_not_used(tmp_path, mode):
    cache = tmp_path / "shared"
    cache.mkdir()
    planted = cache / "conv-0000.o"
    planted.write_bytes(b"\x7fELF not ours")
    cache.chmod(mode)
    run = _child(cache, "fill")
    assert run.returncode == 0, run.stderr[-3000:]
    said = [line for line in run.stderr.splitlines() if "not using the kernel cache" in line]
    assert len(said) == 1 and "can be written by" in said[0] and "MINIDL_CACHE_DIR" in said[0], run.stderr
    assert sorted(p.name for p in cache.iterdir()) == ["conv-0000.o"]  # nothing read or written there


def test_an_entry_others_can_write_is_ignored(tmp_path):
    cache = tmp_path / "cache"
    assert _child(cache, "fill").returncode == 0
    entry = sorted(cache.glob("*.o"))[0]
    entry.chmod(0o666)
    run = _child(cache, "fill")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "ignoring cached kernel" in run.stderr and "can be written by others" in run.stderr, run.stderr


def test_the_default_folder_is_per_user_and_private(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("MINIDL_CACHE_DIR", "NUMBA_CACHE_DIR")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "home-cache")
    code = "from minidl.kernels import jit_cache; print(jit_cache.folder())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == str(tmp_path / "home-cache" / "minidl"), out.stderr
    assert stat.S_IMODE(os.stat(out.stdout.strip()).st_mode) & 0o077 == 0
