"""Training data for the two cascade stages, prepared by the runtime's own preprocessing.

A case is a CT and its label map: read from a KiTS-layout folder (``case_x/imaging.nii.gz`` +
``case_x/segmentation.nii.gz``) or, where only label maps exist, a phantom synthesized on the label.
* coarse stage: the whole scan on the 6 mm canonical grid (what the runtime's coarse net sees);
* fine stage: each kidney's VOI on the 1 mm canonical grid (what the runtime's fine net sees).
Both are windowed and scaled exactly as at inference.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kitsrt.errors import InputError
from kitsrt.io import Scan, read_label_map, read_scan
from kitsrt.phantom import synthesize_ct
from kitsrt.runtime.pipeline import CascadeSpec
from kitsrt.runtime.preprocess import (
    canonical_grid,
    resample_image,
    resample_labels,
    scan_box,
)
from kitsrt.runtime.voi import kidney_boxes


@dataclass(frozen=True)
class Volume:
    """A network-ready volume (z, y, x): scaled input in [-1, 1] and its uint8 labels."""

    image: np.ndarray
    labels: np.ndarray
    case: str


def find_cases(folder: Path) -> list[tuple[str, Path, Path | None]]:
    """(case, label path, imaging path or None) for every ``case_*/segmentation.nii.gz`` in ``folder``."""
    labels = sorted(folder.glob("*/segmentation.nii.gz"))
    if not labels:
        raise InputError(f"{folder}: no */segmentation.nii.gz label maps found (KiTS19 layout expected)")
    cases = []
    for label in labels:
        imaging = label.parent / "imaging.nii.gz"
        cases.append((label.parent.name, label, imaging if imaging.exists() else None))
    return cases


def load_case(label_path: Path, imaging_path: Path | None, phantom_seed: int) -> tuple[Scan, Scan]:
    labels = read_label_map(label_path)
    ct = read_scan(imaging_path) if imaging_path is not None else synthesize_ct(labels, seed=phantom_seed)
    return ct, labels


def coarse_volume(ct: Scan, labels: Scan, spec: CascadeSpec, case: str) -> Volume:
    stage = spec.coarse
    grid = canonical_grid(scan_box(ct.geometry), stage.spacing_mm, stage.divisibility)
    image = stage.normalization.apply(resample_image(ct.image, grid))
    return Volume(image, resample_labels(labels.image, grid), case)


def fine_volumes(ct: Scan, labels: Scan, spec: CascadeSpec, case: str) -> list[Volume]:
    """One Volume per reference kidney, cropped like the runtime crops a VOI found by the coarse net."""
    stage = spec.fine
    volumes = []
    for box in kidney_boxes(labels.array > 0, labels.geometry, spec.roi):
        grid = canonical_grid(box, stage.spacing_mm, stage.divisibility)
        image = stage.normalization.apply(resample_image(ct.image, grid, anti_alias=False))
        volumes.append(Volume(image, resample_labels(labels.image, grid), case))
    return volumes


STAGES = ("coarse", "fine")


def _load_cached(path: Path, case: str) -> dict[str, list[Volume]]:
    data = np.load(path)
    return {stage: [Volume(data[f"{stage}_image{i}"], data[f"{stage}_labels{i}"], case)
                    for i in range(len([k for k in data.files if k.startswith(f"{stage}_image")]))]
            for stage in STAGES}


def prepare_case(case: str, label_path: Path, imaging_path: Path | None, spec: CascadeSpec,
                 cache: Path | None = None) -> dict[str, list[Volume]]:
    """Both stages' volumes of one case, read from ``cache`` when prepared before.
    Phantoms use the case number as seed, so a cache can always be rebuilt identically."""
    path = None if cache is None else cache / f"{case}.npz"
    if path is not None and path.exists():
        return _load_cached(path, case)
    seed = int("".join(ch for ch in case if ch.isdigit()) or 0)
    ct, labels = load_case(label_path, imaging_path, seed)
    volumes = {"coarse": [coarse_volume(ct, labels, spec, case)], "fine": fine_volumes(ct, labels, spec, case)}
    if path is not None:
        cache.mkdir(parents=True, exist_ok=True)
        arrays = {f"{stage}_{kind}{i}": getattr(v, kind)
                  for stage in STAGES for i, v in enumerate(volumes[stage]) for kind in ("image", "labels")}
        tmp = path.with_name(path.stem + ".partial.npz")
        np.savez(tmp, **arrays)
        tmp.replace(path)
    return volumes


def prepare_volumes(folder: Path, stage: str, spec: CascadeSpec, exclude: set[str],
                    cache: Path | None = None, progress=None) -> list[Volume]:
    """The ``stage`` volumes of every case in ``folder`` not in ``exclude``."""
    volumes = []
    for case, label_path, imaging_path in find_cases(folder):
        if case in exclude:
            continue
        volumes += prepare_case(case, label_path, imaging_path, spec, cache)[stage]
        if progress is not None:
            progress(case)
    if not volumes:
        raise InputError(f"{folder}: no training cases left after excluding {sorted(exclude)}")
    return volumes
