"""Synthetic abdominal CT phantoms built around kidney/tumor label maps (tests, benchmarks, demo training)."""

from kitsrt.phantom.ct import (
    AIR_HU,
    OUTSIDE_FOV_HU,
    PHANTOM_BYTES_PER_VOXEL,
    check_phantom_grid,
    procedural_label_map,
    synthesize_ct,
)

__all__ = [
    "AIR_HU",
    "OUTSIDE_FOV_HU",
    "PHANTOM_BYTES_PER_VOXEL",
    "check_phantom_grid",
    "procedural_label_map",
    "synthesize_ct",
]
