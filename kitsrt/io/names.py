"""Case names from file paths, shared by batch inference and evaluation."""

from __future__ import annotations

from pathlib import Path

from kitsrt.io.scan import SUPPORTED_SUFFIXES

KITS_LAYOUT_NAMES = {"segmentation", "prediction", "imaging"}


def case_name(path: Path) -> str:
    """A case's name from its file: the name less its image suffix, or the folder's name for KiTS19's
    ``case_xxxxx/imaging.nii.gz`` layout."""
    name = path.name
    for suffix in sorted(SUPPORTED_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return path.parent.name if name in KITS_LAYOUT_NAMES else name
