"""Check your own ops: ``gradcheck`` (float64 finite differences) and ``assert_matches_torch``."""
from .gradcheck import gradcheck, GradcheckError
from .torch_compare import assert_matches_torch

__all__ = ["gradcheck", "GradcheckError", "assert_matches_torch"]
