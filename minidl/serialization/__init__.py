"""minidl.save and minidl.load in torch's file format, written and read without torch (torch.serialization's place):
``torch.load(path, weights_only=True)`` reads the state_dicts minidl.save writes, and minidl.load reads what torch.save
writes. Whole objects (a model, an optimizer, anything picklable) are saved as torch saves them, by pickle, and load
back with ``weights_only=False`` from a file the user trusts; the default, ``weights_only=True``, loads only tensors
and plain data (and what :func:`add_safe_globals` allows), so that loading a file never runs code from it.

_writer.py writes (Python's Pickler with torch's reductions for tensors), _reader.py reads (pickle's Unpickler,
restricted or not).
"""
import contextlib
import zipfile

from ..utils.checkpoint import _join, _read, write_atomically
from . import _reader
from ._reader import WeightsOnlyError, load_torch_zip
from ._writer import dumps, write_torch_zip

__all__ = ["save", "load", "add_safe_globals", "get_safe_globals", "clear_safe_globals", "safe_globals",
           "WeightsOnlyError"]

SAVE_FORMAT = "minidl-save-1"  # the .npz format minidl.save wrote before; load still reads it
_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"  # torch.save before 1.6


def save(obj, f):
    """torch.save's place: ``obj`` to ``f`` (a path, written atomically, or a binary file object) in torch's file
    format, by pickle as torch.save does. Tensors (and arrays in dicts, lists and tuples) are written as torch writes
    tensors: a state_dict's file (or an optimizer's) is read by ``torch.load(f, weights_only=True)`` (arrays come back
    as tensors, on the CPU; tensors that view one array share one storage, as torch's do). Any other picklable object,
    a whole model or optimizer too, is saved as pickle saves it (its tensors as above; an array inside it stays an
    array) and loads back with ``minidl.load(f, weights_only=False)``. torch is not needed. The object is pickled
    before the file is opened: an object that cannot be pickled leaves the file as it was."""
    data_pkl, storages = dumps(obj)
    write_atomically(f, lambda out: write_torch_zip(out, data_pkl, storages))


def load(f, map_location=None, pickle_module=None, *, weights_only=True, mmap=None, **pickle_load_args):
    """torch.load's place: the object in ``f`` (a path or binary file object) written by :func:`save` or by
    ``torch.save``, Tensors as Tensors (on ``map_location`` when given: 'cpu', 'cuda' or a device).

    ``weights_only=True`` (the default, as in torch; None means True): only tensors and plain data are loaded (dicts,
    lists, tuples, sets, numbers, strings, dtypes), as by ``torch.load(weights_only=True)``, plus the classes and
    functions :func:`add_safe_globals` allows; a file that names anything else is refused with torch's message
    (a ``WeightsOnlyError``, which is pickle's UnpicklingError and a ValueError), never run.
    ``weights_only=False`` loads any pickled object, as pickle does: it can run code, so only for a file you trust
    (a whole model saved by minidl.save). torch's own classes (a torch model pickled whole) are refused either way.
    ``mmap`` is accepted for torch's signature (minidl reads storages into memory). Files of minidl's earlier .npz
    format load too. torch's bfloat16 tensors come back as float32 (exactly)."""
    if pickle_module is not None or pickle_load_args:
        raise TypeError("load: pickle_module and pickle arguments are not supported: minidl reads with its own "
                        "unpickler")
    if map_location is not None and (callable(map_location) or isinstance(map_location, dict)):
        raise TypeError(f"load: map_location must be a device ('cpu', 'cuda:0') or None, got "
                        f"{type(map_location).__name__}")
    weights_only = True if weights_only is None else bool(weights_only)
    start = f.tell() if hasattr(f, "read") else None
    try:
        z = zipfile.ZipFile(f)
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ValueError(f"load: {f} is not a readable minidl file ({_not_a_zip(f, start, exc)})") from None
    with z:
        if "__meta__.npy" not in z.namelist():
            return load_torch_zip(z, f, map_location, weights_only)
    if start is not None:
        f.seek(start)
    return _load_npz(f, map_location)


def add_safe_globals(safe_globals):
    """Allow these classes and functions in files loaded with ``weights_only=True`` (as torch's): each a class or
    function, or a pair (it, "module.name") for one pickled under another name. Only for code you trust: a file may
    call an allowed function, or make an allowed class, with any arguments it holds."""
    for g in safe_globals:
        if isinstance(g, tuple) and not (len(g) == 2 and isinstance(g[1], str)):
            raise TypeError(f"add_safe_globals: expected a class, a function or (it, 'module.name'), got {g!r}")
    _reader._SAFE_GLOBALS.extend(safe_globals)


def get_safe_globals():
    """The list :func:`add_safe_globals` made."""
    return list(_reader._SAFE_GLOBALS)


def clear_safe_globals():
    """Forget every global :func:`add_safe_globals` allowed."""
    _reader._SAFE_GLOBALS.clear()


@contextlib.contextmanager
def safe_globals(safe_globals):
    """``with minidl.serialization.safe_globals([...]):``: :func:`add_safe_globals` for the block only."""
    before = list(_reader._SAFE_GLOBALS)
    add_safe_globals(safe_globals)
    try:
        yield
    finally:
        _reader._SAFE_GLOBALS[:] = before


def _not_a_zip(f, start, exc):
    """Why ``f`` is not a zip archive, naming torch's legacy format when it is that."""
    try:
        if start is None:
            with open(f, "rb") as src:
                head = src.read(len(_LEGACY_TORCH_MAGIC))
        else:
            f.seek(start)
            head = f.read(len(_LEGACY_TORCH_MAGIC))
    except OSError:
        return exc
    if head == _LEGACY_TORCH_MAGIC:
        return ("it is in the format of torch.save before torch 1.6 (or _use_new_zipfile_serialization=False), which "
                "minidl does not read: load and save it again with a current torch")
    return exc


def _load_npz(f, map_location):
    """A file of minidl.save's earlier format (an .npz of arrays and a JSON description)."""
    meta, arrays = _read(f, "load", "file")
    if meta.get("format") != SAVE_FORMAT or "obj" not in meta:
        raise ValueError(f"load: {f} was not written by minidl.save (format {meta.get('format')!r}); checkpoints "
                         "from save_checkpoint load with load_checkpoint")
    try:
        return _join(meta["obj"], arrays, map_location, "obj")
    except ValueError as exc:
        raise ValueError(f"load: {f}: {exc}") from None
