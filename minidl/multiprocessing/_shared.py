"""How minidl.multiprocessing pickles a tensor for another process: a view of its shared storage
(backend/shared_memory.py), the storage's file descriptor passed on by multiprocessing (DupFd): handed to a child as
it starts (spawn, forkserver), or over a Unix socket for a Queue or Pipe (the sender stays alive until the receiver
has it, as with torch's "file_descriptor" strategy). Under fork nothing is pickled: the child inherits the mapping."""
import numpy as np

from ..backend.shared_memory import refuse_device, map_fd, storage_of


def _rebuild_storage(fd_handle, nbytes):
    return map_fd(fd_handle.detach(), nbytes)


class _StorageHandle:
    """A SharedStorage as it is pickled for another process: its file descriptor, passed on by multiprocessing."""

    def __init__(self, storage):
        self.storage = storage

    def __reduce__(self):
        from multiprocessing.context import get_spawning_popen
        from multiprocessing.reduction import DupFd
        popen, fd = get_spawning_popen(), self.storage.fd
        if popen is None:  # a queue or pipe: the fd goes over a Unix socket when the receiver asks for it
            return _rebuild_storage, (DupFd(fd), self.storage.nbytes)
        handed = popen.__dict__.setdefault("_minidl_fds", {})  # a process starting: each fd is passed to it once
        if fd not in handed:
            handed[fd] = DupFd(fd)
        return _rebuild_storage, (handed[fd], self.storage.nbytes)


def _rebuild_tensor(cls, storage, offset, shape, strides, dtype, requires_grad):
    """A tensor of class ``cls`` viewing ``storage`` (the receiving side of :func:`reduce_tensor`)."""
    arr = np.ndarray(shape, np.dtype(dtype), buffer=storage, offset=offset, strides=strides)
    return cls._make(arr, requires_grad)


def reduce_tensor(t):
    """How a tensor is pickled for another process (registered with multiprocessing's ForkingPickler): a view of
    its shared storage. A tensor not yet in shared memory is moved there first (as torch does), so that the
    receiver's writes reach the sender's tensor; a GPU tensor, and a non-leaf that requires grad, raise."""
    if t.requires_grad and t.grad_fn is not None:
        raise RuntimeError("Cowardly refusing to serialize non-leaf tensor which requires_grad, since autograd does "
                           "not support crossing process boundaries. If you just want to transfer the data, call "
                           "detach() on the tensor before serializing (e.g., putting it on the queue).")
    refuse_device(t._data, "a tensor sent to another process")
    if storage_of(t._data) is None:
        t.share_memory_()
    arr = t._data
    storage = storage_of(arr)
    offset = arr.__array_interface__["data"][0] - storage.address
    return _rebuild_tensor, (type(t), _StorageHandle(storage), offset, arr.shape, arr.strides, arr.dtype.str,
                             bool(t.requires_grad))
