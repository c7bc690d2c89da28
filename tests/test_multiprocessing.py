"""minidl.multiprocessing, as torch.multiprocessing: tensors cross processes through shared memory (fork, spawn,
queues), Module.share_memory() makes Hogwild training possible, and what cannot be shared raises instead of training
a copy. torch is imported only inside the test that compares with it (spawned children import this module)."""
import multiprocessing
import multiprocessing.connection
import pickle

import numpy as np
import pytest

import minidl
import minidl.multiprocessing as mp
import minidl.nn as nn
import minidl.nn.functional as F
from minidl import data


def _write_and_report(shared, view, plain, out):
    """Child: write through each tensor it got, report what it sees."""
    out.put((shared.is_shared(), view.is_shared(), np.shares_memory(shared.numpy(), view.numpy()), plain.is_shared()))
    shared[0] = 7.0
    view[0] = 8.0  # view = shared[2:]
    plain[0] = 9.0


def _child_of_queue(inbox, outbox, done):
    t = inbox.get()
    t.mul_(10)
    outbox.put((t.is_shared(), minidl.arange(3.0)))  # and one back: the parent gets it in shared memory too
    done.wait()  # a sender stays alive until its tensors are received (their file descriptors come from it)


def _receive(queue, process):
    """The next object from ``queue``, or a failure (not a hang) when ``process`` exits without sending one."""
    ready = multiprocessing.connection.wait([queue._reader, process.sentinel])
    if queue._reader not in ready and not queue._reader.poll():
        raise AssertionError(f"the child exited with code {process.exitcode} without sending anything")
    return queue.get()


def _raises(i, message):
    if i == 1:
        raise ValueError(message)


def test_share_memory_moves_the_data_and_keeps_values_and_layout():
    t = minidl.arange(6.0).reshape(2, 3)
    assert not t.is_shared()
    assert t.share_memory_() is t and t.is_shared() and t.tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    data_before = t.numpy()
    assert t.share_memory_().numpy() is data_before  # a second call changes nothing
    assert t[1:].is_shared()  # a view of shared memory is shared
    x = minidl.randn(2, 3, 4, 5).to(memory_format=minidl.channels_last).share_memory_()
    assert x.is_shared() and x.is_contiguous(memory_format=minidl.channels_last)
    assert minidl.zeros(0, 3).share_memory_().is_shared()
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    model(minidl.randn(4, 3)).sum().backward()
    weight = model[0].weight
    assert model.share_memory() is model and model[0].weight is weight  # the same Parameters, as torch
    assert all(p.is_shared() and p.grad.is_shared() for p in model.parameters())
    assert all(b.is_shared() for b in model.buffers())
    assert minidl.ones(1).nelement() == 1 and not minidl.ones(1).is_shared()


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_tensors_passed_to_a_child_are_the_parents_memory(method):
    """Under fork the child inherits the shared mapping; under spawn each tensor argument arrives as a view of the
    same shared memory (its file descriptor passed on). A tensor not yet shared is moved into shared memory when it
    is sent (spawn), as torch moves it; under fork nothing is sent, so the child writes its own copy (as torch)."""
    ctx = mp.get_context(method)
    shared = minidl.zeros(5).share_memory_()
    plain = minidl.zeros(2)
    out = ctx.Queue()
    p = ctx.Process(target=_write_and_report, args=(shared, shared[2:], plain, out))
    p.start()
    seen = _receive(out, p)
    p.join()
    assert p.exitcode == 0
    assert seen == (True, True, True, method == "spawn")
    assert shared.tolist() == [7.0, 0.0, 8.0, 0.0, 0.0]
    assert plain.tolist() == ([9.0, 0.0] if method == "spawn" else [0.0, 0.0])
    assert plain.is_shared() == (method == "spawn")


def test_tensors_sent_through_queues_share_memory_both_ways():
    ctx = mp.get_context("spawn")
    inbox, outbox, done = ctx.SimpleQueue(), ctx.SimpleQueue(), ctx.Event()  # put() pickles here, errors raise here
    t = minidl.ones(3)
    p = ctx.Process(target=_child_of_queue, args=(inbox, outbox, done))
    p.start()
    inbox.put(t)
    child_saw_shared, back = _receive(outbox, p)
    done.set()
    p.join()
    assert child_saw_shared and t.is_shared() and t.tolist() == [10.0, 10.0, 10.0]
    assert back.is_shared() and back.tolist() == [0.0, 1.0, 2.0]


def test_what_cannot_cross_raises_instead_of_copying():
    y = minidl.ones(2, requires_grad=True) * 2
    with pytest.raises(RuntimeError, match="Cowardly refusing to serialize non-leaf tensor which requires_grad"):
        multiprocessing.reduction.ForkingPickler.dumps(y)
    model = nn.Linear(2, 2)
    opt = minidl.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    ctx = mp.get_context("spawn")
    p = ctx.Process(target=print, args=(opt,))
    p.start()  # no state yet: the optimizer may go
    p.join()
    model(minidl.ones(1, 2)).sum().backward()
    opt.step()  # momentum buffers now: a child would step a copy of them
    p = ctx.Process(target=print, args=(opt,))
    with pytest.raises(RuntimeError, match="state .* is not in shared memory.*Make the optimizer inside each process"):
        p.start()
    assert pickle.loads(pickle.dumps(opt)).state  # plain pickling still keeps everything


def test_spawn_runs_fn_in_each_process_and_raises_a_childs_error_with_its_traceback():
    assert mp.spawn(_raises, args=("fine",), nprocs=1) is None
    with pytest.raises(mp.ProcessRaisedException, match=r"(?s)Process 1 terminated.*ValueError: boom"):
        mp.spawn(_raises, args=("boom",), nprocs=2)
    assert {"Process", "Queue", "Pool", "get_context", "set_start_method", "Pipe"} <= set(mp.__all__)
    assert mp.get_sharing_strategy() in mp.get_all_sharing_strategies()


# ---- Hogwild: several processes step one set of shared parameters, lock-free -----------------------------------
def _digits(n):
    d = data.MNISTSubset(train=True)
    x = minidl.tensor((d.data[:n].numpy().reshape(n, -1) / 255.0 - 0.1307) / 0.3081, dtype=minidl.float32)
    return x, d.targets[:n]


def _hogwild_worker(rank, model, x, y, steps):
    minidl.manual_seed(rank)
    opt = minidl.optim.SGD(model.parameters(), lr=0.05, momentum=0.5)  # its own optimizer, as Hogwild does
    for _ in range(3):
        for i in minidl.randperm(len(x)).split(50):
            opt.zero_grad()
            F.cross_entropy(model(x[i]), y[i]).backward()
            opt.step()
            steps[rank] += 1


def _train_two_processes(share):
    minidl.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))
    if share:
        model.share_memory()
    x, y = _digits(1000)
    steps = minidl.zeros(2, dtype=minidl.int64).share_memory_()
    before = [p.detach().numpy().copy() for p in model.parameters()]
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_hogwild_worker, args=(rank, model, x, y, steps)) for rank in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert [p.exitcode for p in procs] == [0, 0]
    changed = any(not np.array_equal(b, p.detach().numpy()) for b, p in zip(before, model.parameters()))
    with minidl.no_grad():
        accuracy = (model(x).argmax(1) == y).float().mean().item()
    return steps.tolist(), changed, accuracy


def test_hogwild_two_forked_processes_train_one_shared_model():
    """2 processes x 60 steps of SGD on one model in shared memory: the parent's model learns the 1,000 digits
    (chance: 10%; about 90% measured) from both processes' steps. Without share_memory() each forked child trains
    its own copy and the parent's model does not change, as in torch."""
    steps, changed, accuracy = _train_two_processes(share=True)
    assert steps == [60, 60] and changed and accuracy > 0.6, (steps, accuracy)
    steps, changed, accuracy = _train_two_processes(share=False)
    assert steps == [60, 60] and not changed and accuracy < 0.3


def _torch_child(model):
    import torch
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)


def test_torch_behaves_the_same_without_and_with_share_memory_under_fork():
    """The rule the test above holds minidl to, shown on torch itself."""
    import torch
    for share in (False, True):
        model = torch.nn.Linear(2, 2)
        if share:
            model.share_memory()
        before = model.weight.detach().clone()
        p = torch.multiprocessing.get_context("fork").Process(target=_torch_child, args=(model,))
        p.start()
        p.join()
        assert torch.equal(model.weight.detach(), before + 1) == share
