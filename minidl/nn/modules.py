"""``minidl.nn.modules``: torch.nn.modules' namespace, for programs that import from it
(``from torch.nn.modules import Linear``, ``torch.nn.modules.loss._Loss``, ``torch.nn.modules.module.Module``).

Nothing is loaded twice: a torch submodule whose name minidl has too (``loss``, ``module``, ``linear``, ``conv``,
``rnn``, ...) IS minidl's module (the same object, under both names in ``sys.modules``); the others
(``batchnorm``, ``dropout``, ``flatten``, ``upsampling``, ...) are small namespaces that hand out the classes of
the minidl modules that hold them; ``utils`` has torch's ``_single``/``_pair``/``_triple``/``_ntuple``.
``minidl.nn.modules.X`` is ``minidl.nn.X`` for every layer.
"""
import collections.abc
import importlib
import importlib.util
import sys
import types

_PACKAGE = __name__.rpartition(".")[0]  # minidl.nn

# torch.nn.modules.<name> -> the minidl.nn modules that hold its classes, the first being the one it aliases when
# the names agree
_SUBMODULES = {
    "module": ("module",), "linear": ("linear",), "conv": ("conv",), "loss": ("loss",),
    "activation": ("activation",), "container": ("container",), "normalization": ("normalization",),
    "pooling": ("pooling",), "rnn": ("rnn",), "sparse": ("sparse",), "transformer": ("transformer",),
    "batchnorm": ("normalization",), "instancenorm": ("normalization",), "dropout": ("activation",),
    "flatten": ("linear",), "padding": ("linear",), "channelshuffle": ("linear",), "fold": ("conv",),
    "upsampling": ("pooling",),
}


def _ntuple(n, name="parse"):
    """torch.nn.modules.utils' helper: an int becomes an n-tuple of it, an iterable a tuple (``_pair(3)``: (3, 3))."""
    def parse(x):
        return tuple(x) if isinstance(x, collections.abc.Iterable) else (x,) * n
    parse.__name__ = name
    return parse


def _reverse_repeat_tuple(t, n):
    """Each element of ``t`` n times, in reverse order (torch's padding helper)."""
    return tuple(x for x in reversed(t) for _ in range(n))


def _minidl_module(name):
    """minidl.nn.<name>, imported (it is already, through minidl.nn), or None where minidl has no such file."""
    full = f"{_PACKAGE}.{name}"
    if full in sys.modules:
        return sys.modules[full]
    return importlib.import_module(full) if importlib.util.find_spec(full) is not None else None


class _Namespace(types.ModuleType):
    """A torch submodule minidl spreads over other modules: each name is looked up in them, then in minidl.nn."""

    def __init__(self, name, sources):
        super().__init__(name, f"torch's {name.rpartition('.')[2]} module: minidl's classes from "
                               + ", ".join(m.__name__ for m in sources))
        self._sources = sources

    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        for m in self._sources + [sys.modules[_PACKAGE]]:
            if attr in vars(m):
                return vars(m)[attr]
        raise AttributeError(f"module {self.__name__!r} has no attribute {attr!r}")


def _install():
    here = sys.modules[__name__]
    for torch_name, homes in _SUBMODULES.items():
        sources = [m for m in (_minidl_module(h) for h in homes) if m is not None]
        if homes == (torch_name,) and sources:
            module = sources[0]  # the same module object
        else:
            module = _Namespace(f"{__name__}.{torch_name}", sources)
        sys.modules[f"{__name__}.{torch_name}"] = module
        setattr(here, torch_name, module)
    utils = types.ModuleType(f"{__name__}.utils", "torch.nn.modules.utils: the int-or-tuple helpers")
    utils.__dict__.update(_ntuple=_ntuple, _single=_ntuple(1, "_single"), _pair=_ntuple(2, "_pair"),
                          _triple=_ntuple(3, "_triple"), _quadruple=_ntuple(4, "_quadruple"),
                          _reverse_repeat_tuple=_reverse_repeat_tuple)
    sys.modules[utils.__name__] = here.utils = utils


def __getattr__(name):
    """Every layer of minidl.nn: ``minidl.nn.modules.Linear`` is ``minidl.nn.Linear``."""
    try:
        return getattr(sys.modules[_PACKAGE], name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


def __dir__():
    return sorted(set(globals()) | {n for n in dir(sys.modules[_PACKAGE]) if not n.startswith("_")})


_install()
