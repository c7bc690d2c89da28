"""examples/pytorch_style/mnist_hogwild.py: pytorch/examples' Hogwild program, run as its users run it (a script,
processes started by 'spawn'), under minidl and, with its imports changed to torch's, under real torch: both learn
the bundled digits from the steps of both processes on one shared model."""
import os
import re
import subprocess
import sys

import suite

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROGRAM = os.path.join(ROOT, "examples", "pytorch_style", "mnist_hogwild.py")
ARGS = ["--epochs", "1", "--num-processes", "2", "--log-interval", "50"]


def _as_torch_program(path):
    """The program with every minidl import turned into torch's, except the dataset line (the digits bundled with
    minidl, which the torch program reads through minidl as the minidl one does)."""
    src = open(PROGRAM, encoding="utf-8").read()
    src = re.sub(r"^(import|from) minidl(?!\.data import MNISTSubset)", r"\1 torch", src, flags=re.M)
    assert "import torch as torch" in src and "import torch.multiprocessing as mp" in src
    path.write_text(src, encoding="utf-8")
    return str(path)


def _run(program, **env_vars):
    """(test accuracy, steps per process) of one run of the program as a script."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), **env_vars)
    run = subprocess.run([sys.executable, program, *ARGS], capture_output=True, text=True, env=env, cwd=ROOT)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    steps = re.search(r"Steps taken by each process: \[(\d+), (\d+)\]", run.stdout)
    accuracy = re.search(r"Accuracy: (\d+)/(\d+)", run.stdout)
    assert steps and accuracy, run.stdout[-2000:]
    return int(accuracy.group(1)) / int(accuracy.group(2)), [int(steps.group(1)), int(steps.group(2))]


def test_hogwild_learns_under_minidl(tmp_path):
    """One epoch of the 8,000 digits per process (125 steps of 64 each, 250 in all) on the shared model: the parent's
    model reaches about 84% on the 2,000 test digits (chance: 10%); the shared step counters show that each process
    trained it. Without the shared model (before minidl.multiprocessing) minidl's run trained copies and the parent
    tested an untrained model (12% in issue 30)."""
    ours, our_steps = _run(PROGRAM)
    assert our_steps == [125, 125] and ours > 0.6, (ours, our_steps)


@suite.exhaustive
def test_hogwild_learns_under_minidl_as_under_torch(tmp_path):
    """The same run under real torch, imports changed: 86% against minidl's 84%."""
    ours, our_steps = _run(PROGRAM)
    # torch's processes each on one thread: two processes with a thread per core each would crowd a small machine
    theirs, their_steps = _run(_as_torch_program(tmp_path / "mnist_hogwild_torch.py"), OMP_NUM_THREADS="1")
    assert our_steps == their_steps == [125, 125]
    assert ours > 0.6 and theirs > 0.6, (ours, theirs)
    assert abs(ours - theirs) < 0.15, (ours, theirs)
