"""minidl.multiprocessing, as torch.multiprocessing: Python's multiprocessing (Process, Queue, Pipe, Pool,
get_context, set_start_method ... all of it), with tensors that cross processes through shared memory instead of
being copied.

Importing minidl registers how tensors and Parameters are pickled for another process (with multiprocessing's
ForkingPickler, so Python's own multiprocessing queues share them too, as torch's do): a tensor arrives as a view of
the same shared memory, moved there first if it was not yet (``Tensor.share_memory_()``, ``Module.share_memory()``).
Under 'fork', a tensor in shared memory before the fork is shared with the child as it is. A GPU tensor, and a
non-leaf tensor that requires grad, cannot be sent: they raise. So does an optimizer whose state is not in shared
memory, passed to a new process (its copy there would silently diverge): make each process's optimizer in that
process, as Hogwild training does.

Storages are passed as file descriptors ("file_descriptor", torch's default on Linux); "file_system" is accepted for
torch's programs and passes them the same way.
"""
import multiprocessing
from multiprocessing import *  # noqa: F403 (torch.multiprocessing re-exports all of it)
from multiprocessing.reduction import ForkingPickler

from . import _shared
from .spawn import (ProcessContext, ProcessException, ProcessExitedException, ProcessRaisedException, SpawnContext,
                    spawn, start_processes)

__all__ = ["set_sharing_strategy", "get_sharing_strategy", "get_all_sharing_strategies", "spawn",
           "start_processes", "ProcessContext", "SpawnContext", "ProcessException", "ProcessRaisedException",
           "ProcessExitedException"] + multiprocessing.__all__

_STRATEGIES = {"file_descriptor", "file_system"}
_strategy = "file_descriptor"


def get_all_sharing_strategies():
    """The sharing strategies torch names (minidl passes both as file descriptors)."""
    return set(_STRATEGIES)


def get_sharing_strategy():
    return _strategy


def set_sharing_strategy(new_strategy):
    """Choose how storages are shared: one of :func:`get_all_sharing_strategies`."""
    global _strategy
    if new_strategy not in _STRATEGIES:
        raise ValueError(f"set_sharing_strategy: expected one of {sorted(_STRATEGIES)}, got {new_strategy!r}")
    _strategy = new_strategy


def init_reductions():
    """Register the pickling of tensors for other processes with multiprocessing's ForkingPickler (done on import;
    ForkingPickler looks a type up exactly, so each tensor class is registered)."""
    from ..autograd.tensor import Tensor
    from ..nn.parameter import Parameter
    for cls in (Tensor, Parameter):
        ForkingPickler.register(cls, _shared.reduce_tensor)


init_reductions()
