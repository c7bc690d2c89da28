"""Runs tests/gpu_kernel_checks.py (the GPU kernels against the NumPy reference) in a process of its own:
on the GPU where CuPy finds one, else under Numba's CUDA simulator, which must be switched on before Numba
is imported (so not in this process, where the CPU kernels already imported it)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

import minidl

HERE = Path(__file__).resolve().parent


def test_gpu_kernels_equal_the_reference():
    pytest.importorskip("numba.cuda")
    env = dict(os.environ)
    if not minidl.cuda.is_available():
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(HERE.parent), env.get("PYTHONPATH", "")])
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                          str(HERE / "gpu_kernel_checks.py")], env=env, capture_output=True, text=True, cwd=HERE.parent)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    assert " passed" in run.stdout and "skipped" not in run.stdout.splitlines()[-1], run.stdout[-2000:]


def test_the_cuda_kernels_take_device_arrays_only_where_a_gpu_is_usable():
    """CuPy-like arrays without a usable GPU run the reference kernels; NumPy arrays never reach _cuda."""
    from minidl import kernels
    import numpy as np

    class DeviceLike:  # an array that says it lives on a GPU
        dtype = np.dtype(np.float32)
        __cuda_array_interface__ = {}

    saved = kernels._gpu
    try:
        kernels._gpu = False  # no GPU usable here
        assert kernels._impl(DeviceLike()) is kernels._numpy
        marker = object()
        kernels._gpu = marker  # a usable GPU
        assert kernels._impl(DeviceLike()) is marker
        assert kernels._impl(np.zeros(2, np.float32)) is not marker
        old = kernels.use("numpy")
        try:
            assert kernels._impl(DeviceLike()) is kernels._numpy
        finally:
            kernels.use(old)
    finally:
        kernels._gpu = saved


def test_a_gpu_whose_numba_cannot_compile_runs_the_reference_kernels_and_says_so(monkeypatch, capsys):
    """On the first real GPU lent to the project, numba-cuda (older than the machine's NumPy) failed its first
    compile in every process: 183 op-table samples failed. The kernels are now probed once; a failing probe means
    the CuPy reference kernels, with one line on stderr that names the cause (not a warning: the op table turns
    warnings into errors)."""
    cuda = pytest.importorskip("numba.cuda")
    from minidl import kernels
    import types

    def broken_probe():
        raise AttributeError("module 'numpy' has no attribute 'row_stack'")

    monkeypatch.setattr(cuda, "is_available", lambda: True)
    monkeypatch.setattr(kernels.importlib, "import_module", lambda name: types.SimpleNamespace(probe=broken_probe))
    monkeypatch.setattr(kernels, "_gpu", None)
    assert kernels._gpu_kernels() is False
    assert kernels._gpu_kernels() is False  # asked once: said once
    said = capsys.readouterr().err.splitlines()
    assert len(said) == 1 and "row_stack" in said[0] and "reference kernels" in said[0], said

    working = types.SimpleNamespace(probe=lambda: None)
    monkeypatch.setattr(kernels.importlib, "import_module", lambda name: working)
    monkeypatch.setattr(kernels, "_gpu", None)
    assert kernels._gpu_kernels() is working
