"""``minidl.nn.functional`` (import it as ``F``), as torch.nn.functional: the ops of minidl.functional."""
from ..functional import *  # noqa: F403
from ..functional import __all__  # noqa: F401
from ..functional import __getattr__  # noqa: F401  (ops registered later: a user's own, seen here too)
