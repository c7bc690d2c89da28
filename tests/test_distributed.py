"""minidl.distributed on MPI: a 2-rank job (mpiexec -n 2 tests/mpi_checks.py) checks the collectives,
DistributedDataParallel against one process trained on the global batch, no_sync accumulation and the sampler;
a failing rank must end the job with its error. The single-process parts run here directly."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import minidl
import minidl.distributed as dist

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _mpiexec():
    pytest.importorskip("mpi4py")
    exe = shutil.which("mpiexec") or shutil.which("mpiexec", path=os.path.dirname(sys.executable))
    if exe is None:
        pytest.skip("no mpiexec (pip install -e \".[distributed]\" brings the mpich wheel's)")
    return exe


def _run(*args, timeout=300):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([_mpiexec(), "-n", "2", sys.executable, *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


def test_two_ranks_collectives_ddp_no_sync_and_sampler():
    r = _run(os.path.join(ROOT, "tests", "mpi_checks.py"))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "rank 0/2: all distributed checks passed" in r.stdout and "rank 1/2: all distributed checks passed" in \
        r.stdout, r.stdout


def test_a_failing_rank_ends_the_job_with_its_error():
    r = _run(os.path.join(ROOT, "tests", "mpi_checks.py"), "fail", timeout=120)  # rank 0 waits in a barrier
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert "[rank 1/2] uncaught exception" in out and "ValueError: rank 1 fails on purpose" in out, out[-3000:]


def test_a_killed_rank_ends_the_job():
    r = _run(os.path.join(ROOT, "tests", "mpi_checks.py"), "die", timeout=120)
    assert r.returncode != 0
    assert "signal 9" in r.stdout + r.stderr, (r.stdout + r.stderr)[-3000:]


def test_without_mpi4py_minidl_imports_and_says_how_to_install():
    code = ("import sys; sys.modules['mpi4py'] = None\n"
            "import minidl, minidl.distributed as dist\n"
            "assert not dist.is_available() and not dist.is_initialized()\n"
            "try:\n    dist.init_process_group('mpi')\nexcept RuntimeError as e:\n    print(e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "pip install -e \".[distributed]\"" in r.stdout and "mpiexec" in r.stdout


def test_outside_a_process_group():
    assert dist.rank() == 0 and dist.world_size() == 1
    with pytest.raises(RuntimeError, match="init_process_group"):
        dist.get_rank()
    with pytest.raises(RuntimeError, match="init_process_group"):
        minidl.nn.parallel.DistributedDataParallel(minidl.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="backend"):
        dist.init_process_group("gloo")
    with pytest.raises(RuntimeError, match="init_process_group"):
        dist.all_reduce(minidl.ones(2))
    s = minidl.data.DistributedSampler(list(range(10)), num_replicas=3, rank=2, shuffle=False)
    assert list(s) == [2, 5, 8, 1] and len(s) == 4  # padded with the first indices, as torch
    s = minidl.data.DistributedSampler(list(range(10)), num_replicas=3, rank=0, shuffle=False, drop_last=True)
    assert list(s) == [0, 3, 6]
    with pytest.raises(ValueError, match="rank"):
        minidl.data.DistributedSampler(list(range(10)), num_replicas=2, rank=2)


def test_post_accumulate_grad_hooks_run_once_the_leaf_is_final():
    """DistributedDataParallel's overlap rests on this: a parameter's hook runs as soon as its gradient is in
    .grad, before backward reaches the earlier layers."""
    a, b = minidl.randn(3, 3, requires_grad=True), minidl.randn(3, 3, requires_grad=True)
    seen = []
    # (which, its .grad is set, the other's .grad is set)
    a.register_post_accumulate_grad_hook(lambda t: seen.append(("a", t.grad is not None, b.grad is not None)))
    b.register_post_accumulate_grad_hook(lambda t: seen.append(("b", t.grad is not None, a.grad is not None)))
    x = minidl.randn(4, 3)
    ((x @ a).relu() @ b).sum().backward()  # b's gradient is final before a's is computed
    assert seen == [("b", True, False), ("a", True, True)]
    g = np.array(a.grad.numpy())
    ((x @ a).relu() @ b).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), 2 * g, rtol=1e-6)  # hooks see the accumulated .grad
    with pytest.raises(RuntimeError, match="leaf"):
        (a * 2).register_post_accumulate_grad_hook(print)


def test_the_lenet_example_trains_on_two_ranks_and_its_checkpoint_loads_in_one_process(tmp_path):
    (tmp_path / "nodata").mkdir()  # an empty data folder: the bundled subset (a missing one is refused)
    r = _run(os.path.join(ROOT, "examples", "mnist_lenet.py"), "--distributed", "--epochs", "2", "--no-progress",
             "--train-size", "2000",
             "--no-download", "--out-dir", str(tmp_path), "--data-dir", str(tmp_path / "nodata"), timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "distributed: 2 processes, 64 images each per step" in r.stdout
    assert r.stdout.count("test accuracy:") == 1  # rank 0 alone reports
    acc = float(r.stdout.split("test accuracy: ")[1].split("%")[0])
    assert acc > 75, r.stdout
    model = minidl.models.LeNet5()
    ckpt, = tmp_path.glob("lenet5_mnist_*/checkpoint.npz")  # one run folder, written by rank 0
    state = minidl.utils.load_checkpoint(str(ckpt), model)
    assert abs(state["extra"]["test_acc"] * 100 - acc) < 1e-6


def test_sync_batch_norm_outside_a_process_group_is_batch_norm():
    from minidl.models import resnet18
    m = resnet18(num_classes=3, small_input=True)
    keys = list(m.state_dict())
    m = minidl.nn.SyncBatchNorm.convert_sync_batchnorm(m)
    assert isinstance(m.bn1, minidl.nn.SyncBatchNorm) and isinstance(m.layer1[0].bn2, minidl.nn.SyncBatchNorm)
    assert list(m.state_dict()) == keys
    a, b = minidl.nn.SyncBatchNorm(4), minidl.nn.BatchNorm2d(4)
    x = minidl.randn(3, 4, 5, 5)
    np.testing.assert_array_equal(a(x).detach().numpy(), b(x).detach().numpy())
    np.testing.assert_array_equal(a.running_var.numpy(), b.running_var.numpy())
