"""The reference trainer (torch). ``require_torch`` gives a clear error where the extra is missing."""

from kitsrt.models import require_torch

__all__ = ["require_torch"]
