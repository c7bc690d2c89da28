"""Shared memory for tensors (torch's shared storages): ``Tensor.share_memory_()`` moves a tensor's array here, and
minidl.multiprocessing passes it to other processes (multiprocessing/_shared.py: how).

A shared storage is a block of memory with no name: a memfd (or a file in /dev/shm unlinked as soon as it is made),
mapped MAP_SHARED into this process. A tensor in shared memory is a NumPy array viewing that mapping. Three ways it
reaches another process, all without copying the elements:

- fork: the child inherits the mapping itself (writes on either side are seen by the other);
- spawn / forkserver (a Process's arguments): the file descriptor is handed to the child as the process starts
  (multiprocessing.reduction.DupFd) and the child maps the same memory;
- a Queue or Pipe: the file descriptor is passed over a Unix socket (multiprocessing's resource sharer).

Each process maps one storage once (``_MAPPED``, keyed by the file's device and inode): a tensor and its views that
arrive separately still share memory, and a storage that comes back to the process that made it is its own mapping.
The memory is freed when the last mapping and file descriptor, in every process, are gone.
"""
import ctypes
import mmap
import os
import tempfile
import threading
import weakref

import numpy as np


class SharedStorage(mmap.mmap):
    """A mapping of one shared-memory block; ``fd`` stays open (to pass it on), ``key`` names the block across
    processes, ``address`` is where it starts in this process."""


_MAPPED = weakref.WeakValueDictionary()  # (st_dev, st_ino) -> SharedStorage mapped in this process
_LOCK = threading.Lock()


def _new_fd(nbytes):
    """A file descriptor of a fresh, nameless block of ``nbytes`` bytes of shared memory."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("minidl-shared", os.MFD_CLOEXEC)
    else:  # no memfd: a file in /dev/shm (memory), gone from the file system at once
        fd, path = tempfile.mkstemp(prefix="minidl-shared-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
        os.unlink(path)
    try:
        os.ftruncate(fd, max(nbytes, 1))
    except OSError:
        os.close(fd)
        raise
    return fd


def map_fd(fd, nbytes):
    """The SharedStorage of the block behind ``fd`` (which it takes over): the one this process already maps, when it
    does (``fd`` is then closed), else a new mapping of its ``nbytes`` bytes."""
    st = os.fstat(fd)
    key = (st.st_dev, st.st_ino)
    with _LOCK:
        storage = _MAPPED.get(key)
        if storage is not None:
            if fd != storage.fd:  # (a storage sent twice to a spawned child arrives as one fd, already taken)
                os.close(fd)
            return storage
        if st.st_size < max(nbytes, 1):
            os.close(fd)
            raise RuntimeError(f"minidl.multiprocessing: a shared storage of {nbytes} bytes arrived as a block of "
                               f"{st.st_size} bytes")
        storage = SharedStorage(fd, max(nbytes, 1))
        storage.fd, storage.key, storage.nbytes = fd, key, nbytes
        storage.address = ctypes.addressof(ctypes.c_char.from_buffer(storage))
        weakref.finalize(storage, os.close, fd)
        _MAPPED[key] = storage
        return storage


def storage_of(arr):
    """The SharedStorage whose memory ``arr`` views, or None when ``arr`` is not in shared memory."""
    while isinstance(arr, np.ndarray):
        arr = arr.base
    if isinstance(arr, memoryview):
        arr = arr.obj
    return arr if isinstance(arr, SharedStorage) else None


def _device_of(arr):
    """The GPU device of a CuPy array (None for a NumPy one)."""
    from . import device_of, is_device_array
    return device_of(arr) if is_device_array(arr) and device_of(arr).type != "cpu" else None


def refuse_device(arr, what):
    """Raise for an array on a GPU: its memory cannot be shared as CPU memory is."""
    if _device_of(arr) is not None:
        raise RuntimeError(f"minidl.multiprocessing: {what} is on {_device_of(arr)}; minidl shares only "
                           "CPU memory between processes (it has no CUDA IPC). Move it to the CPU first "
                           "(.cpu()), or give each process its own GPU tensors")


def share_array(arr):
    """``arr`` itself when it is in shared memory, else a copy of it in a new shared storage (the same shape,
    dtype and memory layout)."""
    refuse_device(arr, "a tensor to share")
    if storage_of(arr) is not None:
        return arr
    layout = np.empty_like(arr, order="K")  # a dense layout in arr's order (channels_last stays channels_last)
    storage = map_fd(_new_fd(arr.nbytes), arr.nbytes)
    out = np.ndarray(arr.shape, arr.dtype, buffer=storage, strides=layout.strides)
    out[...] = arr
    return out


