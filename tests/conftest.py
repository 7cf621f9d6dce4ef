"""Shared fixtures. Tests on the real KiTS19 label maps need ../shared/data/kits19 (this workplace
only) or KITSRT_KITS19_DIR; elsewhere they skip and say why."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kitsrt.phantom import procedural_label_map, synthesize_ct

REPO = Path(__file__).resolve().parents[1]
KITS19_DIR = Path(os.environ.get("KITSRT_KITS19_DIR", REPO.parent / "shared" / "data" / "kits19"))
KITS19_CASES = sorted(p.parent.name for p in KITS19_DIR.glob("case_*/segmentation.nii.gz"))

needs_kits19 = pytest.mark.skipif(
    not KITS19_CASES,
    reason=f"KiTS19 label maps not found at {KITS19_DIR} (set KITSRT_KITS19_DIR to run these tests)",
)


def kits19_label(case: str) -> Path:
    return KITS19_DIR / case / "segmentation.nii.gz"


@pytest.fixture(scope="session")
def small_case():
    """A small procedural label map and its phantom CT: (label Scan, ct Scan)."""
    labels = procedural_label_map((160, 160, 56), (2.5, 2.5, 4.0), seed=5)
    return labels, synthesize_ct(labels, seed=5)
