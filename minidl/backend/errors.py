"""minidl's errors, catchable both ways: as the ValueError/TypeError/IndexError that says what went wrong, and as
the class torch raises for the same call (RuntimeError for nearly every shape, size and dtype check in ATen),
so that a torch program's ``except RuntimeError`` catches them too.

Each name reads <torch's class><minidl's class>: a ``RuntimeValueError`` is a ValueError (minidl's) and a
RuntimeError (torch's). Ops raise them from their argument checks; an argument of the wrong Python type stays a
plain TypeError, and a dim out of range a plain IndexError, as in torch. Public as ``minidl.errors``."""


class RuntimeValueError(ValueError, RuntimeError):
    """A shape, size or value an op refuses (torch: RuntimeError): mismatched shapes, a negative size, a stride of
    0, a padding larger than the kernel allows, tensors on different devices."""


class RuntimeTypeError(TypeError, RuntimeError):
    """A tensor dtype an op refuses (torch: RuntimeError, "expected scalar type ..."): an integer input where a
    floating one is needed, float32 meeting float64, a float index or mask."""


class RuntimeIndexError(IndexError, RuntimeError):
    """An index value out of range where torch raises RuntimeError (gather, scatter: "index 3 is out of bounds for
    dimension 1 with size 3")."""


class IndexValueError(ValueError, IndexError):
    """A value out of range where torch raises IndexError: a class index outside [0, C) in a loss's target, a
    reduction over an empty dimension."""


__all__ = ["RuntimeValueError", "RuntimeTypeError", "RuntimeIndexError", "IndexValueError"]
