"""Data-parallel training across processes and machines on MPI (mpi4py), with torch.distributed's names.

    $ mpiexec -n 2 python train.py

    import minidl.distributed as dist
    dist.init_process_group("mpi")            # rank and world size come from MPI
    model = minidl.nn.parallel.DistributedDataParallel(model)

Collectives work on minidl tensors (in place, as torch's) and NumPy arrays. MPI is an optional extra
(``pip install -e ".[distributed]"``: mpi4py and the mpich wheel); ``import minidl`` never imports it.
Tensors on a GPU are reduced through host copies: the NCCL path needs a GPU to be built and tested on.

A rank that raises an uncaught exception prints it (with its rank) and aborts the whole MPI job, so the
other ranks do not wait forever in a collective.
"""
import sys
import time
import traceback

import numpy as np

from .. import backend
from ..autograd.tensor import Tensor


class ReduceOp:
    """Reduction operations for all_reduce (AVG is SUM divided by the world size)."""
    SUM, AVG, PRODUCT, MIN, MAX = "sum", "avg", "product", "min", "max"


class Backend:
    MPI = "mpi"


_group = None  # the default process group: the MPI communicator


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError:
        raise RuntimeError("minidl.distributed needs mpi4py and an MPI library: pip install -e \".[distributed]\" "
                           "(mpi4py and the mpich wheel), then start the processes with mpiexec -n N python "
                           "script.py") from None
    return MPI


def is_available():
    """Whether the MPI backend can be used (mpi4py imports)."""
    try:
        import mpi4py
    except ImportError:
        return False
    return True


def is_mpi_available():
    return is_available()


def is_initialized():
    return _group is not None


def _comm(op):
    if _group is None:
        raise RuntimeError(f"{op}: the default process group has not been initialized; call "
                           "minidl.distributed.init_process_group('mpi') first")
    return _group


def init_process_group(backend="mpi", init_method=None, timeout=None, world_size=-1, rank=-1, store=None,
                       group_name="", **kwargs):
    """Join the MPI job: rank and world size come from MPI (``mpiexec -n N``); ``world_size``/``rank``, when
    given, must agree with it. Installs an exception hook that aborts the job when this rank fails."""
    global _group
    if backend not in ("mpi", Backend.MPI, None):
        raise ValueError(f"init_process_group: backend must be 'mpi' (the only one minidl has; GPU tensors are "
                         f"reduced through host copies), got {backend!r}")
    if _group is not None:
        raise RuntimeError("init_process_group: the default process group is already initialized")
    MPI = _mpi()
    comm = MPI.COMM_WORLD
    if world_size not in (-1, None) and world_size != comm.Get_size():
        raise ValueError(f"init_process_group: world_size={world_size}, but MPI started {comm.Get_size()} "
                         f"processes (mpiexec -n)")
    if rank not in (-1, None) and rank != comm.Get_rank():
        raise ValueError(f"init_process_group: rank={rank}, but MPI says this process is rank {comm.Get_rank()}")
    _group = comm
    _install_abort_hook(comm)


ABORT_GRACE_S = 1.0


def _install_abort_hook(comm):
    previous = sys.excepthook

    def hook(exc_type, exc, tb):
        if comm.Get_size() > 1 and not issubclass(exc_type, KeyboardInterrupt):
            sys.stderr.write(f"[rank {comm.Get_rank()}/{comm.Get_size()}] uncaught exception; aborting the MPI "
                             f"job so that the other ranks do not hang:\n"
                             + "".join(traceback.format_exception(exc_type, exc, tb)))
            sys.stderr.flush()
            # mpiexec's proxy forwards this rank's stderr through a pipe; Abort kills the proxy, and on a busy machine
            # the message was lost with it (the test saw no output at all, about once in a few full-suite runs)
            time.sleep(ABORT_GRACE_S)
            comm.Abort(1)
        previous(exc_type, exc, tb)
    sys.excepthook = hook


def destroy_process_group(group=None):
    """Leave the process group (MPI itself is finalized when the process exits)."""
    global _group
    _group = None


def get_rank(group=None):
    return _comm("get_rank").Get_rank()


def get_world_size(group=None):
    return _comm("get_world_size").Get_size()


def get_backend(group=None):
    _comm("get_backend")
    return Backend.MPI


def barrier(group=None, async_op=False):
    comm = _comm("barrier")
    if async_op:
        return Work(comm.Ibarrier())
    comm.Barrier()


def rank():
    """This process's rank, or 0 when no process group is initialized (for code that runs either way)."""
    return _group.Get_rank() if _group is not None else 0


def world_size():
    """The number of processes, or 1 when no process group is initialized."""
    return _group.Get_size() if _group is not None else 1


class Work:
    """A collective in flight (``async_op=True``): ``wait()`` completes it (and copies results into place)."""

    def __init__(self, request, finish=None):
        self._request, self._finish, self._done = request, finish, False

    def is_completed(self):
        if not self._done and self._request.Test():
            self._complete()
        return self._done

    def wait(self, timeout=None):
        if not self._done:
            self._request.Wait()
            self._complete()
        return True

    def _complete(self):
        self._done = True
        if self._finish is not None:
            self._finish()


def _host_buffer(t, op):
    """(contiguous host array to communicate, function that puts the result back into ``t``)."""
    if isinstance(t, Tensor):
        arr = t._data
    elif isinstance(t, np.ndarray) or backend.is_device_array(t):
        arr = t
    else:
        raise TypeError(f"{op}: expected a minidl Tensor or a NumPy array, got {type(t).__name__}")
    on_device = backend.is_device_array(arr)
    host = backend.to_device(arr, "cpu") if on_device else arr
    if not host.flags.c_contiguous or not host.flags.writeable:
        host = np.ascontiguousarray(host).copy()
    same = host is arr

    def put_back():
        if not same:
            arr[...] = backend.to_device(host, backend.device_of(arr)) if on_device else host
        if isinstance(t, Tensor):
            t._vc[0] += 1  # changed in place: a graph that saved it must not run backward on the new values
    return host, put_back


def _mpi_op(op):
    MPI = _mpi()
    table = {ReduceOp.SUM: MPI.SUM, ReduceOp.AVG: MPI.SUM, ReduceOp.PRODUCT: MPI.PROD, ReduceOp.MIN: MPI.MIN,
             ReduceOp.MAX: MPI.MAX}
    if op not in table:
        raise ValueError(f"all_reduce: op must be one of ReduceOp.SUM, AVG, PRODUCT, MIN, MAX, got {op!r}")
    return table[op]


def all_reduce(tensor, op=ReduceOp.SUM, group=None, async_op=False):
    """Reduce ``tensor`` across all ranks, in place: every rank ends with the sum (or the op's result)."""
    comm = _comm("all_reduce")
    MPI = _mpi()
    buf, put_back = _host_buffer(tensor, "all_reduce")
    mpi_op = _mpi_op(op)
    if op == ReduceOp.AVG and buf.dtype.kind != "f":
        raise TypeError(f"all_reduce: ReduceOp.AVG needs a floating tensor, got {buf.dtype}")

    def finish():
        if op == ReduceOp.AVG:
            buf[...] = buf / comm.Get_size()
        put_back()
    if async_op:
        return Work(comm.Iallreduce(MPI.IN_PLACE, buf, mpi_op), finish)
    comm.Allreduce(MPI.IN_PLACE, buf, mpi_op)
    finish()


def broadcast(tensor, src, group=None, async_op=False):
    """Copy ``tensor`` from rank ``src`` into the same tensor on every rank (in place)."""
    comm = _comm("broadcast")
    if not 0 <= src < comm.Get_size():
        raise ValueError(f"broadcast: src={src} is not a rank of a world of size {comm.Get_size()}")
    buf, put_back = _host_buffer(tensor, "broadcast")
    if async_op:
        return Work(comm.Ibcast(buf, root=src), put_back)
    comm.Bcast(buf, root=src)
    put_back()


def all_gather(tensor_list, tensor, group=None, async_op=False):
    """Every rank's ``tensor`` into ``tensor_list`` (one per rank, same shape and dtype), on every rank."""
    comm = _comm("all_gather")
    n = comm.Get_size()
    if len(tensor_list) != n:
        raise ValueError(f"all_gather: tensor_list must hold {n} tensors (one per rank), got {len(tensor_list)}")
    send, _ = _host_buffer(tensor, "all_gather")
    for i, t in enumerate(tensor_list):
        if tuple(t.shape) != tuple(send.shape) or np.dtype(t.dtype) != send.dtype:
            raise ValueError(f"all_gather: tensor_list[{i}] has shape {tuple(t.shape)} and dtype {t.dtype}; the "
                             f"tensor has {tuple(send.shape)} and {send.dtype}")
    recv = np.empty((n, *send.shape), dtype=send.dtype)

    def finish():
        for i, t in enumerate(tensor_list):
            buf, put_back = _host_buffer(t, "all_gather")
            buf[...] = recv[i]
            put_back()
    if async_op:
        return Work(comm.Iallgather(send, recv), finish)
    comm.Allgather(send, recv)
    finish()


def all_gather_object(object_list, obj, group=None):
    """Every rank's picklable ``obj`` into ``object_list`` (length world size)."""
    comm = _comm("all_gather_object")
    gathered = comm.allgather(obj)
    if len(object_list) != len(gathered):
        raise ValueError(f"all_gather_object: object_list must have {len(gathered)} entries, got {len(object_list)}")
    object_list[:] = gathered


def broadcast_object_list(object_list, src=0, group=None):
    """Rank ``src``'s picklable objects into ``object_list`` on every rank (in place)."""
    comm = _comm("broadcast_object_list")
    object_list[:] = comm.bcast(list(object_list), root=src)


__all__ = ["ReduceOp", "Backend", "Work", "is_available", "is_mpi_available", "is_initialized", "init_process_group",
           "destroy_process_group", "get_rank", "get_world_size", "get_backend", "barrier", "all_reduce",
           "broadcast", "all_gather", "all_gather_object", "broadcast_object_list", "rank", "world_size"]
