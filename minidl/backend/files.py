"""Files written atomically: a temporary file beside the target, flushed to disk, renamed over it, and the folder
flushed, so that a crash at any moment leaves the old file or the new one (checkpoints, minidl.save, downloads)."""
import glob
import os
import tempfile


def write_atomically(path, write, suffix=""):
    """Call ``write(f)`` on a temporary file next to ``path``, flush it to disk, rename it over ``path`` and flush
    the folder: a crash at any moment leaves the old file or the new one. ``path`` may also be an open binary
    file, written as it is (no rename to make it atomic)."""
    if hasattr(path, "write"):
        write(path)
        return path
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    prefix = f".{os.path.basename(path)}.tmp-"
    for stale in glob.glob(os.path.join(glob.escape(folder), glob.escape(prefix) + "*")):
        try:  # left by a save of this same file that was killed before its rename
            os.remove(stale)
        except OSError:
            pass
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())  # the data is on disk before the rename makes it the file
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 -> what open() would have made
        os.replace(tmp, path)
        fsync_folder(folder)  # and the rename itself survives a power cut
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def _umask():
    try:  # read, not set: os.umask() changes the process's umask for a moment (a race with other threads)
        with open("/proc/self/status") as f:
            return next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError, IndexError):
        return 0o022


def fsync_folder(folder):
    """Flush a folder's entries (a rename in it) to disk, where the platform can."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # a platform that cannot open folders (Windows): the rename is as durable as it gets
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
