"""The disk cache of kernels/jit.py's machine code. What LLVM loads from it is byte for byte what this user's minidl
wrote there for the same kernel, generator, CPU and llvmlite; anything else is compiled afresh, and the process never
sees a damaged object file (LLVM aborts the process on one, or runs it: a flipped bit gave wrong gradients).

An entry is one file, ``conv-<40 hex digits>.o`` (the name: a hash of the key), holding a header and the object file
that LLVM wrote::

    MAGIC (16 bytes) | SHA-256 of (MAGIC, key, object) (32 bytes) | object

``load`` checks the header before LLVM sees a byte: a truncated, emptied, overwritten or bit-flipped entry, or a
valid object file put under another kernel's name, fails the digest; the entry is deleted and the kernel compiled
again (one line on stderr says so). The digest is no signature: someone who can write the folder can write a
matching entry. That is what the folder check is for: as ssh does with its keys, the cache is used only in a folder
that this user owns and that neither group nor others can write, and only files this user owns that others cannot
write; otherwise kernels are compiled in memory, and one line says why. The default folder is per user
(``$XDG_CACHE_HOME/minidl``, else ``~/.cache/minidl``), made with mode 0o700; ``$MINIDL_CACHE_DIR`` or
``$NUMBA_CACHE_DIR/minidl`` replace it when set.

``store`` writes atomically (a temporary file in the same folder, fsync, rename, then the folder fsynced) and removes
its temporary file when anything fails: a full or read-only disk costs the cache, nothing else. Temporary files that a
killed process left behind are removed once they are an hour old.
"""
import hashlib
import os
import sys
import tempfile
import threading
import time

from ..backend.files import fsync_folder

MAGIC = b"minidl-jit-obj1\n"
_HEADER = len(MAGIC) + 32
_STALE_SECONDS = 3600  # a temporary file this old belongs to no running write
_said = set()
_lock = threading.Lock()
_folder = []  # [path or None], decided once per process


def _say(kind, text):
    """One line on stderr, once per process for each kind of problem."""
    with _lock:
        if kind in _said:
            return
        _said.add(kind)
    print(f"minidl: {text}", file=sys.stderr, flush=True)


def _unsafe(st, what):
    """Why a folder or file with stat ``st`` must not be trusted, or None."""
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        return f"{what} belongs to another user (uid {st.st_uid})"
    if st.st_mode & 0o022:
        who = "others" if st.st_mode & 0o002 else "its group"
        return f"{what} can be written by {who} (mode {st.st_mode & 0o777:o})"
    return None


def _candidate():
    """The folder asked for: $MINIDL_CACHE_DIR, else $NUMBA_CACHE_DIR/minidl, else the per-user cache folder."""
    if os.environ.get("MINIDL_CACHE_DIR"):
        return os.environ["MINIDL_CACHE_DIR"]
    if os.environ.get("NUMBA_CACHE_DIR"):
        return os.path.join(os.environ["NUMBA_CACHE_DIR"], "minidl")
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "minidl")


def folder():
    """The cache folder, or None when there is none to trust (kernels are then compiled in memory); decided once."""
    if not _folder:
        d = _candidate()
        try:
            os.makedirs(d, mode=0o700, exist_ok=True)
            st = os.stat(d)
            why = _unsafe(st, "the folder")
            if why is None and not os.access(d, os.W_OK):
                why = "the folder cannot be written"
        except OSError as e:
            why = f"cannot make it ({e.strerror or e})"
        if why is not None:
            _say("folder", f"not using the kernel cache {d}: {why}; kernels are compiled in memory in each process "
                           "(set MINIDL_CACHE_DIR to a folder of your own)")
            d = None
        _folder.append(d)
    return _folder[0]


# What is kept, by the first word of an entry's name: the jit's object files, and the tuner's choices (one per
# tuning key: kernels/autotune.py); each kind has the same header and checks. Per kind: the file suffix, what an
# entry is, and what happens without it (for the one-line messages).
KINDS = {"conv": (".o", "cached kernel", "compiling it in memory", "kernels are compiled"),
         "tune": (".tune", "cached tuning choice", "measuring again", "convolutions are measured")}


def _path(key, kind="conv"):
    d = folder()
    return d and os.path.join(d, f"{kind}-{hashlib.sha256(key.encode()).hexdigest()[:40]}{KINDS[kind][0]}")


def _digest(key, obj):
    return hashlib.sha256(MAGIC + key.encode() + b"\0" + obj).digest()


def _read_own(path, kind="conv"):
    """The bytes of ``path`` if this user owns it and no one else can write it; None if it is absent or refused."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None  # absent (or a link: not ours to follow)
    with os.fdopen(fd, "rb") as f:
        _, what, instead, _ = KINDS[kind]
        why = _unsafe(os.fstat(f.fileno()), f"{what} {path}")
        if why is not None:
            _say("file", f"ignoring {why}; {instead}")
            return None
        return f.read()


def load(key, kind="conv"):
    """The bytes stored for ``key`` (an object file, for kind "conv"), checked against their digest; None when there
    are none (or they were damaged: then the entry is deleted, and one line says so)."""
    path = _path(key, kind)
    data = _read_own(path, kind) if path else None
    if data is None:
        return None
    obj = data[_HEADER:]
    if data[:len(MAGIC)] == MAGIC and data[len(MAGIC):_HEADER] == _digest(key, obj) and obj:
        return obj
    _say("damaged", f"a {KINDS[kind][1]} was damaged ({path}, {len(data)} bytes): deleted, "
                    f"{'compiling it' if kind == 'conv' else 'measuring'} again")
    try:
        os.unlink(path)
    except OSError:
        pass
    return None


def store(key, obj, kind="conv", durable=True):
    """Keep ``obj`` (an object file, for kind "conv") for ``key``, atomically; a failure (a full or read-only disk)
    costs only the cache. ``durable`` False skips the fsyncs (a tuning choice: one lost to a crash is measured
    again, and a damaged one fails its digest)."""
    path = _path(key, kind)
    if not path or not obj:
        return
    d = os.path.dirname(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=d, prefix=f"{kind}-", suffix=".tmp")  # mode 0o600
        with os.fdopen(fd, "wb") as f:
            f.write(MAGIC + _digest(key, obj) + obj)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        if durable:
            fsync_folder(d)
    except OSError as e:
        _say("write", f"cannot write the kernel cache in {d} ({e.strerror or e}): {KINDS[kind][3]} in each process "
                      "until it can")
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    _remove_stale(d)


def _remove_stale(d):
    """Remove temporary files of writes that a killed process left, once they are an hour old."""
    now = time.time()
    try:
        with os.scandir(d) as entries:
            for e in entries:
                if e.name.endswith(".tmp") and e.name.split("-")[0] in KINDS:
                    try:
                        if now - e.stat(follow_symlinks=False).st_mtime > _STALE_SECONDS:
                            os.unlink(e.path)
                    except OSError:
                        pass
    except OSError:
        pass
