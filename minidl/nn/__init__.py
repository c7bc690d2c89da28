"""Neural-network building blocks. ``minidl.nn.functional`` holds the ops."""
from . import functional

__all__ = ["functional"]
