"""Run by tests/test_distributed.py under ``mpiexec -n 2``: collectives, DistributedDataParallel against one
process trained on the whole batch, no_sync accumulation, DistributedSampler shards. Every rank checks; any
failure raises, which aborts the job (minidl.distributed's exception hook) with a non-zero exit."""
import sys

import numpy as np

import minidl
import minidl.distributed as dist
from minidl import nn
from minidl.nn.parallel import DistributedDataParallel as DDP


def check_collectives(rank, world):
    t = minidl.full((3,), float(rank + 1), dtype=minidl.float64)
    dist.all_reduce(t)
    assert t.numpy().tolist() == [sum(range(1, world + 1))] * 3, t
    a = np.full(4, rank + 1, dtype=np.float32)
    dist.all_reduce(a, dist.ReduceOp.MAX)
    assert (a == world).all()
    t = minidl.full((2, 2), float(rank), dtype=minidl.float64)
    dist.all_reduce(t, dist.ReduceOp.AVG, async_op=True).wait()
    np.testing.assert_allclose(t.numpy(), (world - 1) / 2)
    b = minidl.tensor(np.arange(5) * (rank + 1))
    dist.broadcast(b, src=world - 1)
    assert b.numpy().tolist() == (np.arange(5) * world).tolist()
    out = [minidl.zeros(2, dtype=minidl.int64) for _ in range(world)]
    dist.all_gather(out, minidl.tensor(np.array([rank, 10 * rank])))
    assert [o.numpy().tolist() for o in out] == [[r, 10 * r] for r in range(world)]
    objs = [None] * world
    dist.all_gather_object(objs, {"rank": rank})
    assert objs == [{"rank": r} for r in range(world)]
    try:  # refused before any communication, on every rank alike
        dist.all_reduce(minidl.ones(2, dtype=minidl.int64), dist.ReduceOp.AVG)
    except TypeError as e:
        assert "floating" in str(e)
    else:
        raise AssertionError("an integer average went through")
    dist.barrier()


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc1, self.fc2 = nn.Linear(4 * 3 * 3, 16), nn.Linear(16, 5)

    def forward(self, x):
        x = minidl.nn.functional.max_pool2d(minidl.nn.functional.relu(self.conv(x)), 2)
        return self.fc2(minidl.nn.functional.relu(self.fc1(x.flatten(1))))


def _data(seed, n):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 1, 8, 8)), rng.integers(0, 5, n)


def _params(m):
    return {k: v.detach().numpy().copy() for k, v in m.named_parameters()}


def _train_side_by_side(model, reference, rank, world, seeds, per_rank):
    """SGD steps of ``model`` (DDP: this rank's slice of each global batch) and of ``reference`` (one process:
    the whole global batch), one global batch per seed."""
    opt = minidl.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    ref_opt = minidl.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9)
    for seed in seeds:
        x, y = _data(seed, per_rank * world)
        mine = slice(rank * per_rank, (rank + 1) * per_rank)
        opt.zero_grad()
        nn.functional.cross_entropy(model(minidl.tensor(x[mine])), minidl.tensor(y[mine])).backward()
        opt.step()
        ref_opt.zero_grad()
        nn.functional.cross_entropy(reference(minidl.tensor(x)), minidl.tensor(y)).backward()
        ref_opt.step()


def check_ddp_equals_one_process_on_the_global_batch(rank, world, steps=6, per_rank=4):
    minidl.manual_seed(100 + rank)  # different initial weights per rank: DDP must broadcast rank 0's
    model = DDP(Net().double(), bucket_cap_mb=0.001)  # tiny buckets: several all-reduces per step
    assert len(model._buckets) > 1
    minidl.manual_seed(100)
    reference = Net().double()  # rank 0's initial weights, trained in one process on the global batch
    for k, v in _params(reference).items():
        np.testing.assert_array_equal(v, _params(model.module)[k], err_msg=f"broadcast {k}")
    _train_side_by_side(model, reference, rank, world, range(steps), per_rank)
    for k, v in _params(reference).items():
        np.testing.assert_allclose(_params(model.module)[k], v, rtol=1e-6, atol=1e-9, err_msg=k)
    return model


def check_no_sync_accumulation(rank, world, micro=3, per_rank=2):
    minidl.manual_seed(5)
    model = DDP(Net().double())
    minidl.manual_seed(5)
    reference = Net().double()
    x, y = _data(42, micro * per_rank * world)
    for m in range(micro):  # rank r's micro-batch m: a slice of the global batch
        lo = (m * world + rank) * per_rank
        xb, yb = minidl.tensor(x[lo:lo + per_rank]), minidl.tensor(y[lo:lo + per_rank])
        if m < micro - 1:
            with model.no_sync():
                nn.functional.cross_entropy(model(xb), yb).backward()
            assert model._next == 0 and not model._started  # nothing was communicated
        else:
            nn.functional.cross_entropy(model(xb), yb).backward()
    for m in range(micro * world):  # the same gradient in one process: sum over micro-batches, mean over ranks
        lo = m * per_rank
        loss = nn.functional.cross_entropy(reference(minidl.tensor(x[lo:lo + per_rank])),
                                           minidl.tensor(y[lo:lo + per_rank])) / world
        loss.backward()
    for (k, p), q in zip(model.module.named_parameters(), reference.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-6, atol=1e-10, err_msg=k)


def check_sampler_shards(rank, world):
    ds = minidl.data.TensorDataset(minidl.arange(11))
    for drop_last in (False, True):
        sampler = minidl.data.DistributedSampler(ds, shuffle=True, seed=3, drop_last=drop_last)
        for epoch in (0, 1):
            sampler.set_epoch(epoch)
            mine = list(sampler)
            assert len(mine) == len(sampler)
            shards = [None] * world
            dist.all_gather_object(shards, mine)
            together = [i for s in shards for i in s]
            if drop_last:
                assert len(set(together)) == len(together) == (11 // world) * world  # disjoint
            else:
                assert set(together) == set(range(11)) and len(together) == -(-11 // world) * world
        loader = minidl.data.DataLoader(ds, batch_size=2, sampler=sampler)
        assert sum(len(b[0]) for b in loader) == len(sampler)


class BNNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(1, 4, 3, bias=False), nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 6 * 6, 5)

    def forward(self, x):
        return self.fc(minidl.nn.functional.relu(self.bn(self.conv(x))).flatten(1))


def check_sync_batch_norm_equals_one_process(rank, world, steps=4, per_rank=3):
    """With SyncBatchNorm, N ranks train as one process on the concatenated batch, running statistics too."""
    minidl.manual_seed(9)
    model = DDP(nn.SyncBatchNorm.convert_sync_batchnorm(BNNet().double()))
    assert isinstance(model.module.bn, nn.SyncBatchNorm)
    minidl.manual_seed(9)
    reference = BNNet().double()
    _train_side_by_side(model, reference, rank, world, range(50, 50 + steps), per_rank)
    ours, theirs = model.module.state_dict(), reference.state_dict()
    for k, v in theirs.items():
        np.testing.assert_allclose(ours[k].numpy(), v.numpy(), rtol=1e-6, atol=1e-10, err_msg=k)
    model.eval()  # eval: the (equal) running statistics, no communication
    x = minidl.tensor(_data(99, 2)[0])
    np.testing.assert_allclose(model(x).detach().numpy(), reference.eval()(x).detach().numpy(), rtol=1e-6)


def check_unused_parameter_is_reported(rank, world):
    class Partly(nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.unused = nn.Linear(3, 2), nn.Linear(3, 2)

        def forward(self, x):
            return self.used(x)
    model = DDP(Partly())
    model(minidl.randn(4, 3)).sum().backward()
    try:
        model(minidl.randn(4, 3))
    except RuntimeError as e:
        assert "unused" in str(e) and "find_unused_parameters" in str(e), e
    else:
        raise AssertionError("an unused parameter went unnoticed")
    model = DDP(Partly(), find_unused_parameters=True)
    for _ in range(2):
        model(minidl.randn(4, 3)).sum().backward()
    model(minidl.randn(4, 3))
    assert model.module.unused.weight.grad is not None and not model.module.unused.weight.grad.numpy().any()


def main():
    dist.init_process_group("mpi")
    rank, world = dist.get_rank(), dist.get_world_size()
    assert world >= 2, "run under mpiexec -n 2"
    what = sys.argv[1] if len(sys.argv) > 1 else "all"
    if what in ("fail", "die"):  # rank 1 fails or dies while rank 0 waits in a collective: the job must end
        if rank == 1 and what == "fail":
            raise ValueError("rank 1 fails on purpose")
        if rank == 1:
            import os
            import signal
            os.kill(os.getpid(), signal.SIGKILL)
        dist.barrier()
        return
    check_collectives(rank, world)
    check_ddp_equals_one_process_on_the_global_batch(rank, world)
    check_no_sync_accumulation(rank, world)
    check_sampler_shards(rank, world)
    check_sync_batch_norm_equals_one_process(rank, world)
    check_unused_parameter_is_reported(rank, world)
    dist.barrier()
    print(f"rank {rank}/{world}: all distributed checks passed", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
