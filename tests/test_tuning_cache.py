"""The tuner's choices kept on disk (kernels/autotune.py, in the jit's cache folder: kernels/jit_cache.py). A later
process skips the trials; a damaged, altered or stale entry, or one naming an algorithm not offered, means measuring
again: never a wrong number, an exception or a lost choice."""
import json

import numpy as np
import pytest

import minidl
import minidl.nn.functional as F
from minidl.kernels import autotune, jit_cache


@pytest.fixture
def disk(tmp_path, monkeypatch):
    monkeypatch.setattr(jit_cache, "_folder", [str(tmp_path)])
    monkeypatch.setattr(jit_cache, "_said", set())
    stored = []
    real_store = jit_cache.store
    monkeypatch.setattr(jit_cache, "store", lambda key, obj, **kw: stored.append((key, obj)) or
                        real_store(key, obj, **kw))
    old_disk, old_enabled = autotune.set_disk(True), autotune.set_enabled(True)
    autotune.clear()
    yield tmp_path, stored
    autotune.set_disk(old_disk)
    autotune.set_enabled(old_enabled)
    autotune.clear()


def _conv():
    """A convolution with two candidates (im2col and its chunked form): its first call times both."""
    rng = np.random.default_rng(0)
    x = minidl.tensor(rng.standard_normal((8, 4, 9, 9)).astype(np.float32), requires_grad=True)
    w = minidl.tensor(rng.standard_normal((6, 4, 3, 3)).astype(np.float32), requires_grad=True)
    F.conv2d(x, w, padding=1).backward(minidl.tensor(rng.standard_normal((8, 6, 9, 9)).astype(np.float32)))
    (key, (name, times)), = [(k, v) for k, v in autotune.cache().items() if k[0] == "conv2d"]
    return name, times, (F.conv2d(x, w, padding=1).detach().numpy(), x.grad.numpy(), w.grad.numpy())


def _reference():
    with autotune.force("conv2d", "im2col"):
        return _conv()[2]


def _check(numbers, want):
    for got, ref in zip(numbers, want):
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_a_later_process_reads_the_choice_instead_of_timing(disk):
    folder, stored = disk
    name, times, numbers = _conv()
    assert set(times) == {"im2col", "im2col_chunked"}  # measured
    assert len(stored) == 1 and len(list(folder.glob("tune-*.tune"))) == 1
    autotune.clear()  # what a new process starts with
    again, times_again, numbers_again = _conv()
    assert (again, times_again) == (name, {}) and len(stored) == 1  # read back: nothing timed, nothing written
    _check(numbers_again, numbers)


@pytest.mark.parametrize("damage", ["truncated", "emptied", "a flipped bit", "another entry's bytes"])
def test_a_damaged_entry_is_measured_again_and_said_once(disk, capsys, damage):
    folder, stored = disk
    _conv()
    entry, = folder.glob("tune-*.tune")
    data = entry.read_bytes()
    other = jit_cache.MAGIC + jit_cache._digest("another key", b'{"name": "im2col"}') + b'{"name": "im2col"}'
    entry.write_bytes({"truncated": data[:len(data) // 2], "emptied": b"",
                       "a flipped bit": data[:-3] + bytes([data[-3] ^ 4]) + data[-2:],
                       "another entry's bytes": other}[damage])
    autotune.clear()
    capsys.readouterr()
    name, times, numbers = _conv()
    assert set(times) == {"im2col", "im2col_chunked"}  # measured again
    said = [line for line in capsys.readouterr().err.splitlines() if "damaged" in line]
    assert len(said) == 1 and "tuning choice" in said[0] and str(folder) in said[0]
    _check(numbers, _reference())
    assert len(list(folder.glob("tune-*.tune"))) == 1  # written again, whole
    autotune.clear()
    assert _conv()[1] == {}


@pytest.mark.parametrize("content", [b'{"name": "gemm1x1"}', b'{"name": 7}', b'["im2col"]', b"not json"])
def test_an_entry_naming_no_offered_algorithm_is_measured_again(disk, content):
    """An entry with a good digest but a choice this convolution cannot take (gemm1x1 runs 1x1 kernels only) or
    a content that is not a choice: measured again, with the reference's numbers."""
    folder, stored = disk
    _conv()
    (key, _), = stored
    jit_cache.store(key, content, kind="tune")
    autotune.clear()
    name, times, numbers = _conv()
    assert set(times) == {"im2col", "im2col_chunked"} and name in times
    _check(numbers, _reference())


def test_other_kernels_or_threads_make_other_keys(disk, monkeypatch):
    """A choice measured with other kernels (minidl or NumPy or Numba updated) or another thread count is not read."""
    from minidl.kernels import blas
    folder, stored = disk
    _conv()
    monkeypatch.setattr(autotune, "_code_version", lambda: "other kernels")
    autotune.clear()
    assert _conv()[1] != {}
    monkeypatch.undo()  # (the fixture's patches are undone too: set them again)
    monkeypatch.setattr(jit_cache, "_folder", [str(folder)])
    threads = blas.workers()
    monkeypatch.setattr(blas, "workers", lambda: (threads[0] + 1, threads[1]))
    autotune.clear()
    assert _conv()[1] != {}
    assert len(list(folder.glob("tune-*.tune"))) == 3


def test_switched_off_it_neither_reads_nor_writes_and_clear_forgets(disk):
    folder, stored = disk
    autotune.set_disk(False)
    _conv()
    assert stored == [] and list(folder.iterdir()) == []
    autotune.set_disk(True)
    autotune.clear()
    _conv()
    assert len(list(folder.glob("tune-*.tune"))) == 1
    autotune.clear(disk=True)
    assert list(folder.glob("tune-*.tune")) == []


def test_what_is_stored_is_the_choice_and_its_times(disk):
    folder, stored = disk
    name, times, _ = _conv()
    (_, obj), = stored
    assert json.loads(obj) == {"name": name, "times": times}
