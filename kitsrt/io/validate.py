"""Checks every scan passes before kitsrt allocates or resamples anything. Bounds, stated once:

* spacing: finite, between ``SPACING_MIN_MM`` (0.01 mm) and ``SPACING_MAX_MM`` (100 mm) per axis;
* field of view: at most ``FOV_MAX_MM`` (2,000 mm) per axis, so no derived grid can explode;
* origin: finite, within ``ORIGIN_MAX_MM`` (1e6 mm) of zero;
* direction: orthonormal within ``DIRECTION_TOLERANCE`` (1e-3, on every entry of DᵀD - I);
* size: at most ``MAX_VOXELS`` (2**30, four times the largest KiTS19 scan) voxels, and the decoded
  image must fit in the memory currently available;
* values: a float scan holding NaN or infinity is refused (never silently segmented).
"""

from __future__ import annotations

import math
import os
import stat
from pathlib import Path

import numpy as np

from kitsrt.errors import InputError

SPACING_MIN_MM, SPACING_MAX_MM = 0.01, 100.0
FOV_MAX_MM = 2000.0
ORIGIN_MAX_MM = 1e6
DIRECTION_TOLERANCE = 1e-3
MAX_VOXELS = 2**30


def require_regular_file(path: Path, what: str | None = None) -> None:
    """Refuse FIFOs, devices, sockets and folders before anything opens them (a FIFO would hang)."""
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                else "a socket" if stat.S_ISSOCK(mode) else "a folder" if stat.S_ISDIR(mode) else "not a file")
        raise InputError(f"{what or path}: is {kind}, not a regular file; give an image file")


def check_geometry(size, spacing_mm, origin_mm, direction, where) -> None:
    """Refuse a grid no CT can have. ``size``/``spacing_mm``/``origin_mm`` in index order (i, j, k),
    ``direction`` row-major 3x3 (columns are the index axes)."""
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    if not np.all(np.isfinite(spacing)) or np.any(spacing < SPACING_MIN_MM) or np.any(spacing > SPACING_MAX_MM):
        raise InputError(f"{where}: voxel spacing {tuple(float(s) for s in spacing)} mm is outside "
                         f"[{SPACING_MIN_MM:g}, {SPACING_MAX_MM:g}] mm per axis (or not finite); fix the header")
    fov = spacing * np.asarray(size, dtype=np.float64)
    if np.any(fov > FOV_MAX_MM):
        raise InputError(f"{where}: field of view {tuple(round(float(f)) for f in fov)} mm exceeds "
                         f"{FOV_MAX_MM:g} mm per axis; size or spacing in the header is wrong")
    origin = np.asarray(origin_mm, dtype=np.float64)
    if not np.all(np.isfinite(origin)) or np.any(np.abs(origin) > ORIGIN_MAX_MM):
        raise InputError(f"{where}: origin {tuple(float(o) for o in origin)} mm is not finite or beyond "
                         f"{ORIGIN_MAX_MM:g} mm; fix the header")
    matrix = np.asarray(direction, dtype=np.float64).reshape(3, 3)
    if not np.all(np.isfinite(matrix)) or np.abs(matrix.T @ matrix - np.eye(3)).max() > DIRECTION_TOLERANCE:
        raise InputError(f"{where}: direction matrix is not orthonormal (tolerance {DIRECTION_TOLERANCE:g}); "
                         "the axes of the header are sheared, scaled or not finite")


def check_voxel_budget(size, bytes_per_voxel: int, where, max_voxels: int = MAX_VOXELS) -> None:
    """Refuse a size over ``max_voxels`` or whose decoded image would not fit in available memory."""
    voxels = math.prod(int(s) for s in size)
    if voxels > max_voxels:
        raise InputError(f"{where}: {voxels} voxels ({'x'.join(map(str, size))}) exceed the budget of "
                         f"{max_voxels} voxels; refused before reading")
    needed, available = voxels * bytes_per_voxel, available_memory_bytes()
    if available is not None and needed > available:
        raise InputError(f"{where}: decoding needs {needed / 2**30:.1f} GiB, only {available / 2**30:.1f} GiB "
                         "of memory is available; refused before reading")


def available_memory_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (Linux); None where unknown."""
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_finite_values(array: np.ndarray, where) -> None:
    """Refuse NaN or infinite voxels (integer arrays cannot hold them)."""
    if array.dtype.kind not in "fc":
        return
    slab = max(1, (1 << 24) // max(1, array[0].size)) if array.ndim else 1
    flat = array.reshape(array.shape[0], -1) if array.ndim else array.reshape(1, 1)
    bad = sum(flat[i:i + slab].size - int(np.count_nonzero(np.isfinite(flat[i:i + slab])))
              for i in range(0, flat.shape[0], slab))
    if bad:
        raise InputError(f"{where}: {bad} of {array.size} voxels are NaN or infinite; kitsrt does not segment "
                         "them: replace them (e.g. with -1024 HU) and run again")
