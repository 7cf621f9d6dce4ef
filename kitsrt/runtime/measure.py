"""Measurements a radiologist expects, in physical units: volumes in mL, lengths in mm, points in
LPS mm (x towards the patient's left, y towards posterior, z towards superior).

All functions take a label crop (k, j, i) and the crop's own ``Geometry``, so they work on one
VOI at a time without touching the full-size label map.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from kitsrt.io import Geometry, Scan

EXACT_DIAMETER_POINTS = 2500  # above this many boundary points, extreme points are found first
PAIRWISE_DISTANCE_PAIRS = 1 << 16  # up to this many (lesion, kidney) voxel pairs, distances without a map
NEAREST_SHIFTS = 64  # else the lesion shifted by this many shortest voxel offsets, looking for kidney


def _fibonacci_directions(count: int) -> np.ndarray:
    """``count`` unit vectors (count, 3) spread evenly over a half sphere (a diameter has no sign)."""
    n = np.arange(count) + 0.5
    z = n / count
    phi = np.pi * (1 + 5 ** 0.5) * n
    r = np.sqrt(1 - z ** 2)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def longest_diameter_mm(points_mm: np.ndarray, directions: int = 512, chunk: int = 4096) -> float:
    """Largest distance between two of the points (N, 3), mm (the maximum Feret diameter).

    Exact pairwise for up to ``EXACT_DIAMETER_POINTS`` points; above that, the points extreme along
    ``directions`` evenly spread directions are kept first (the two ends of the true diameter are
    extreme along its own direction, so they are almost always among them), then compared pairwise.
    The projections are taken ``chunk`` points at a time (memory: chunk x directions floats).
    """
    points = np.asarray(points_mm, dtype=np.float64)
    if len(points) < 2:
        return 0.0
    if len(points) > EXACT_DIAMETER_POINTS:
        points = points[_extreme_points(points, _fibonacci_directions(directions), chunk)]
    gram = points @ points.T
    squared = np.diag(gram)[:, None] + np.diag(gram)[None, :] - 2 * gram
    return float(np.sqrt(max(squared.max(), 0.0)))


def _extreme_points(points: np.ndarray, directions: np.ndarray, chunk: int) -> np.ndarray:
    """Sorted unique indices of the points (N, 3) with the lowest and the highest projection on each
    of ``directions`` (D, 3); the first such point where several tie (as ``argmin`` / ``argmax``)."""
    best_low = np.full(len(directions), np.inf)
    best_high = np.full(len(directions), -np.inf)
    low_at = np.zeros(len(directions), np.int64)
    high_at = np.zeros(len(directions), np.int64)
    columns = np.arange(len(directions))
    for start in range(0, len(points), chunk):
        projections = directions @ points[start:start + chunk].T  # (D, chunk): reduced along contiguous rows
        low, high = projections.argmin(axis=1), projections.argmax(axis=1)
        low_value, high_value = projections[columns, low], projections[columns, high]
        lower, higher = low_value < best_low, high_value > best_high  # strict: the first one wins ties
        best_low[lower], low_at[lower] = low_value[lower], start + low[lower]
        best_high[higher], high_at[higher] = high_value[higher], start + high[higher]
    return np.unique(np.concatenate([low_at, high_at]))


def _row_end_points_mm(mask: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Physical centres (N, 3) of the first and last mask voxel of every row along array axis 2 (i),
    in (k, j, i) order. Every other voxel of a row lies between these two on a line, so it is never
    the only farthest point: the set has the mask's diameter, from far fewer points than its surface."""
    if not mask.any():
        return np.zeros((0, 3))
    k, j = np.nonzero(mask.any(axis=2))
    first = mask.argmax(axis=2)[k, j]
    last = mask.shape[2] - 1 - mask[..., ::-1].argmax(axis=2)[k, j]
    ends = np.stack([first, last], axis=1).ravel()
    keep = np.ones(ends.size, bool)
    keep[1::2] = last != first  # a one-voxel row has one end
    index_ijk = np.stack([ends, np.repeat(j, 2), np.repeat(k, 2)], axis=1)[keep]
    return geometry.index_to_physical(index_ijk.astype(np.float64))


def _round(values, digits: int = 1) -> list[float]:
    return [round(float(v), digits) for v in values]


def _maurer_mm(target: np.ndarray, spacing_mm) -> np.ndarray:
    image = sitk.GetImageFromArray(target.astype(np.uint8))
    image.SetSpacing(spacing_mm)
    return sitk.GetArrayFromImage(sitk.SignedMaurerDistanceMap(image, insideIsPositive=False, squaredDistance=False,
                                                               useImageSpacing=True))


def _nearest_mm(target: np.ndarray, component: np.ndarray, offset_kji, spacing_kji: np.ndarray) -> float:
    """Shortest centre-to-centre distance (mm) from the voxels of ``component`` (placed at
    ``offset_kji`` in ``target``) to those of ``target``, from every pair: exact, no map."""
    inside = (np.argwhere(component) + np.asarray(offset_kji)) * spacing_kji
    kidney = np.argwhere(target) * spacing_kji
    return float(np.sqrt((((inside[:, None, :] - kidney[None, :, :]) ** 2).sum(axis=2)).min()))


def _nearest_by_shifts(target: np.ndarray, component: np.ndarray, offset_kji, spacing_kji: np.ndarray,
                       max_mm: float) -> float | None:
    """Shortest distance (mm) from ``component`` (placed at ``offset_kji`` in ``target``) to
    ``target``, found by shifting the component by the ``NEAREST_SHIFTS`` shortest voxel offsets of
    at most ``max_mm``, shortest first: the first shift that meets target is the distance (exact).
    None when none does (the caller then uses a distance map). A lesion touching its kidney costs
    one or two shifts."""
    reach = np.floor(max_mm / spacing_kji).astype(int)
    shifts = np.stack(np.meshgrid(*[np.arange(-r, r + 1) for r in reach], indexing="ij"), -1).reshape(-1, 3)
    lengths = np.sqrt(((shifts * spacing_kji) ** 2).sum(axis=1))
    order = np.argsort(lengths, kind="stable")[:NEAREST_SHIFTS]
    start, size, bounds = np.asarray(offset_kji), np.asarray(component.shape), np.asarray(target.shape)
    for shift, length in zip(shifts[order], lengths[order]):
        low, high = start + shift, start + shift + size
        inside_low, inside_high = np.maximum(low, 0), np.minimum(high, bounds)
        if length > max_mm or np.any(inside_low >= inside_high):
            continue
        part = component[tuple(slice(a - b, c - b) for a, c, b in zip(inside_low, inside_high, low))]
        if np.any(part & target[tuple(slice(a, c) for a, c in zip(inside_low, inside_high))]):
            return float(length)
    return None


def _grown(box: tuple[slice, ...], margin_mm: float, spacing_kji: np.ndarray, shape) -> tuple[slice, ...]:
    grow = np.ceil(margin_mm / spacing_kji).astype(int)
    return tuple(slice(max(s.start - g, 0), min(s.stop + g, n)) for s, g, n in zip(box, grow, shape))


def distance_to_mm(target: np.ndarray, component: np.ndarray, box: tuple[slice, ...], geometry: Geometry) -> float | None:
    """Shortest distance (mm, centre to centre; 0 when they overlap) from the voxels of
    ``component`` (a mask of ``target[box]``'s shape) to the nearest ``target`` voxel; None when
    ``target`` has none. Exact, and local: the distance is computed on a window around ``box``
    that grows until it holds a target voxel nearer than the window's own margin, so a lesion
    next to its kidney costs a few thousand voxels, not the whole crop. In the window, from every
    voxel pair when there are few (``PAIRWISE_DISTANCE_PAIRS``), else by shifting the lesion
    (``_nearest_by_shifts``), else from a distance map."""
    spacing_kji = np.asarray(geometry.spacing_mm[::-1], float)
    margin_mm = 2.0 * float(spacing_kji.max())
    whole = tuple(slice(0, n) for n in target.shape)
    while True:
        window = _grown(box, margin_mm, spacing_kji, target.shape)
        if target[window].any():
            inner = tuple(slice(b.start - w.start, b.stop - w.start) for b, w in zip(box, window))
            start = [s.start for s in inner]
            nearest = None
            if np.count_nonzero(component) * np.count_nonzero(target[window]) <= PAIRWISE_DISTANCE_PAIRS:
                nearest = _nearest_mm(target[window], component, start, spacing_kji)
            elif NEAREST_SHIFTS:
                nearest = _nearest_by_shifts(target[window], component, start, spacing_kji,
                                             min(margin_mm, 2.0 * float(spacing_kji.max())))
            if nearest is None:
                nearest = max(float(_maurer_mm(target[window], geometry.spacing_mm)[inner][component].min()), 0.0)
            if nearest <= margin_mm or window == whole:  # a target voxel outside is farther than the margin
                return nearest
            margin_mm = nearest
        elif window == whole:
            return None
        else:
            margin_mm *= 4.0


def lesions(labels: np.ndarray, geometry: Geometry, label: int, near: np.ndarray | None = None,
            limit: int | None = None) -> tuple[list[dict], int]:
    """Connected components (26-connectivity) of ``labels == label``, largest first: volume (mL),
    longest diameter (mm), centre of mass (LPS mm) and, with a ``near`` mask (the kidney), the
    shortest distance to it in mm (None when ``near`` is empty). Returns the ``limit`` largest
    (all with None) and the number of components: a failed segmentation may have thousands."""
    mask = labels == label
    if not mask.any():
        return [], 0
    components = sitk.RelabelComponent(sitk.ConnectedComponent(Scan.from_array(mask.astype(np.uint8), geometry).image,
                                                               True))
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(components)
    array = sitk.GetArrayViewFromImage(components)
    near_any = near is not None and bool(near.any())
    found = []
    for index in stats.GetLabels()[:limit]:
        x0, y0, z0, nx, ny, nz = stats.GetBoundingBox(index)
        box = (slice(z0, z0 + nz), slice(y0, y0 + ny), slice(x0, x0 + nx))
        origin = geometry.index_to_physical([[x0, y0, z0]])[0]
        sub = Geometry((nx, ny, nz), geometry.spacing_mm, tuple(origin), geometry.direction)
        component = array[box] == index
        found.append({
            "volume_ml": round(stats.GetNumberOfPixels(index) * geometry.voxel_volume_ml, 2),
            "longest_diameter_mm": round(longest_diameter_mm(_row_end_points_mm(component, sub)), 1),
            "centre_mm": _round(stats.GetCentroid(index)),
        })
        if near is not None:
            gap = distance_to_mm(near, component, box, geometry) if near_any else None
            found[-1]["distance_to_kidney_mm"] = None if gap is None else round(gap, 1)
    return found, stats.GetNumberOfLabels()


def organ(mask: np.ndarray, geometry: Geometry) -> dict:
    """Volume (mL), length (the longest diameter, mm) and centre of mass (LPS mm) of one organ mask."""
    found = {"volume_ml": round(float(np.count_nonzero(mask)) * geometry.voxel_volume_ml, 2),
             "length_mm": round(longest_diameter_mm(_row_end_points_mm(mask, geometry)), 1)}
    count = np.count_nonzero(mask)
    if count:
        k, j, i = (float(np.count_nonzero(mask, axis=tuple(a for a in range(3) if a != axis)) @ np.arange(n)) / count
                   for axis, n in enumerate(mask.shape))
        found["centre_mm"] = _round(geometry.index_to_physical([[i, j, k]])[0])
    return found


def slice_axis(geometry: Geometry) -> int:
    """The index axis (0 i, 1 j, 2 k) closest to the patient's superior-inferior axis (LPS z)."""
    return int(np.argmax(np.abs(geometry.direction_matrix[2, :])))
