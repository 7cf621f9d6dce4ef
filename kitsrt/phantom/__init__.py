"""Synthetic abdominal CT phantoms built around kidney/tumor label maps (tests, benchmarks, demo training)."""

from kitsrt.phantom.ct import (
    AIR_HU,
    OUTSIDE_FOV_HU,
    PHANTOM_BYTES_PER_VOXEL,
    check_phantom_grid,
    procedural_label_map,
    synthesize_ct,
)
from kitsrt.phantom.style import PhantomStyle, random_style, styled_labels, synthesize_case

__all__ = [
    "AIR_HU",
    "OUTSIDE_FOV_HU",
    "PHANTOM_BYTES_PER_VOXEL",
    "check_phantom_grid",
    "procedural_label_map",
    "synthesize_ct",
    "PhantomStyle",
    "random_style",
    "styled_labels",
    "synthesize_case",
]
