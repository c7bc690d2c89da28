"""DistributedDataParallel: every process holds a replica of the model and trains on its own share of each
batch; after backward the replicas' gradients are averaged, so that every replica takes the same step.

How, as torch's: at construction rank 0's parameters and buffers are broadcast, so the replicas start equal.
Parameters are grouped into buckets of about ``bucket_cap_mb`` (in reverse order, the order in which backward
finishes them); a post-accumulate-grad hook on each parameter counts down its bucket, and a full bucket is
summed across ranks with one non-blocking MPI all-reduce on a flat buffer, while backward goes on with the
rest of the graph. The last hook waits for the buckets, divides by the world size and writes the averages into
``.grad``. Buckets are launched in a fixed order on every rank (MPI requires collectives in the same order).
``no_sync()`` skips the reduction, so gradients accumulate locally over several backward passes and are
averaged at the next synchronised one. BatchNorm statistics stay local to each process, as in torch.
"""
import time
from contextlib import contextmanager

import numpy as np

from ... import backend
from ... import distributed as dist
from ...autograd.tensor import Tensor
from ..module import Module


class _Bucket:
    def __init__(self, params):
        self.params = params
        self.pending = len(params)
        self.work = None
        self.flat = None


class DistributedDataParallel(Module):
    """Wrap ``module`` for data-parallel training across the ranks of the default process group.

    Args:
        module: the model (its parameters are rank 0's after construction).
        bucket_cap_mb: the gradient bytes per all-reduce (25 MiB, torch's default).
        broadcast_buffers: broadcast rank 0's buffers (BatchNorm's running statistics) at every forward in
            training mode, as torch does.
        find_unused_parameters: let parameters that get no gradient in an iteration take part anyway (their
            gradient counts as zero); without it, such a parameter is an error at the next forward, as in torch.
        device_ids, output_device, dim, process_group, gradient_as_bucket_view, static_graph: accepted for
            torch's signature.
    """

    def __init__(self, module, device_ids=None, output_device=None, dim=0, broadcast_buffers=True,
                 process_group=None, bucket_cap_mb=25, find_unused_parameters=False, check_reduction=False,
                 gradient_as_bucket_view=False, static_graph=False):
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"DistributedDataParallel: expected a Module, got {type(module).__name__}")
        if not dist.is_initialized():
            raise RuntimeError("DistributedDataParallel: call minidl.distributed.init_process_group('mpi') first")
        if bucket_cap_mb <= 0:
            raise ValueError(f"DistributedDataParallel: bucket_cap_mb must be positive, got {bucket_cap_mb}")
        self.module = module
        self.broadcast_buffers, self.find_unused_parameters = broadcast_buffers, find_unused_parameters
        self.world = dist.get_world_size()
        self._sync = True
        self._sync_buffers()
        with_grad = [p for p in module.parameters() if p.requires_grad]
        _broadcast_flat([p for p in module.parameters()])
        self._buckets, self._bucket_of = [], {}
        cap = int(bucket_cap_mb * 2 ** 20)
        current, size = [], 0
        for p in reversed(with_grad):  # backward finishes the last layers first
            if current and (size + p.numel() * p._data.itemsize > cap or p.dtype != current[0].dtype):
                self._buckets.append(_Bucket(current))
                current, size = [], 0
            current.append(p)
            size += p.numel() * p._data.itemsize
        if current:
            self._buckets.append(_Bucket(current))
        for i, b in enumerate(self._buckets):
            for p in b.params:
                self._bucket_of[id(p)] = i
        self._handles = [p.register_post_accumulate_grad_hook(self._ready) for p in with_grad]
        self.comm_seconds = 0.0  # time spent in the reduction (packing, waiting, unpacking): for benchmarks
        self._next = 0           # the next bucket to launch (all ranks launch them in this order)
        self._started = False    # some bucket of this backward has reported

    def forward(self, *args, **kwargs):
        self._check_previous_reduction()
        if self.training and self.broadcast_buffers:
            self._sync_buffers()
        return self.module(*args, **kwargs)

    @contextmanager
    def no_sync(self):
        """Within the block, backward passes accumulate gradients locally, without communication."""
        previous, self._sync = self._sync, False
        try:
            yield
        finally:
            self._sync = previous

    # -- the reduction ---------------------------------------------------------------------------------
    def _ready(self, p):
        if not self._sync:
            return
        self._started = True
        b = self._buckets[self._bucket_of[id(p)]]
        b.pending -= 1
        while self._next < len(self._buckets) and self._buckets[self._next].pending == 0:
            self._launch(self._buckets[self._next])
            self._next += 1
        for other in self._buckets[:self._next]:  # let MPI progress the reductions in flight
            if other.work is not None:
                other.work.is_completed()
        if self._next == len(self._buckets):
            self._finish()

    def _launch(self, b):
        t0 = time.perf_counter()
        b.flat = np.concatenate([_host(p.grad._data).reshape(-1) if p.grad is not None else
                                 np.zeros(p.numel(), dtype=p._data.dtype) for p in b.params])
        b.work = dist.all_reduce(b.flat, dist.ReduceOp.SUM, async_op=True)
        self.comm_seconds += time.perf_counter() - t0

    def _finish(self):
        t0 = time.perf_counter()
        for b in self._buckets:
            b.work.wait()
            b.flat /= self.world
            start = 0
            for p in b.params:
                n = p.numel()
                avg = b.flat[start:start + n].reshape(p.shape)
                if p.grad is None:
                    p.grad = Tensor._make(_like(p._data, avg))
                else:
                    p.grad._data[...] = _like(p.grad._data, avg)
                start += n
            b.work, b.flat, b.pending = None, None, len(b.params)
        self._next, self._started = 0, False
        self.comm_seconds += time.perf_counter() - t0

    def _check_previous_reduction(self):
        if not self._started:
            return
        missing = [b for b in self._buckets if b.pending > 0]
        if self.find_unused_parameters:  # parameters without gradient this time take part with zeros
            for b in missing:
                b.pending = 0
            while self._next < len(self._buckets):
                self._launch(self._buckets[self._next])
                self._next += 1
            self._finish()
            return
        names = {id(p): n for n, p in self.module.named_parameters()}
        unused = [names.get(id(p), "?") for b in missing for p in b.params[:b.pending]]
        raise RuntimeError("DistributedDataParallel: the previous backward did not produce gradients for every "
                           f"parameter (e.g. {unused[:5]}), so its reduction never finished; pass "
                           "find_unused_parameters=True if some parameters are unused in some iterations")

    def _sync_buffers(self):
        buffers = [b for b in self.module.buffers() if b is not None]
        if buffers and self.world > 1:
            _broadcast_flat(buffers)


def _host(a):
    return backend.to_device(a, "cpu") if backend.is_device_array(a) else a


def _like(target, host):
    return backend.to_device(host, backend.device_of(target)) if backend.is_device_array(target) else host


def _broadcast_flat(tensors):
    """Rank 0's values into ``tensors`` on every rank: one broadcast per dtype."""
    by_dtype = {}
    for t in tensors:
        by_dtype.setdefault(np.dtype(t.dtype), []).append(t)
    for dtype, group in by_dtype.items():
        flat = np.concatenate([_host(t._data).reshape(-1) for t in group]).astype(dtype, copy=False)
        dist.broadcast(flat, 0)
        start = 0
        for t in group:
            n = t.numel()
            t._data[...] = _like(t._data, flat[start:start + n].reshape(t.shape))
            t._vc[0] += 1
            start += n
