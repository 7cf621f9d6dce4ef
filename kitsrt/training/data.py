"""Training data for every network of a pipeline, cut by the runtime's own ``stage_input``.

A case is a CT and its label map: read from a KiTS-layout folder (``case_x/imaging.nii.gz`` +
``case_x/segmentation.nii.gz``) or, where only label maps exist, a phantom synthesized on the label.
* cascade (seed 002): ``coarse``, the whole scan on the 6 mm canonical grid; ``fine``, each
  reference kidney's VOI on the 1 mm canonical grid;
* nested (seed 004): ``kidney``, the whole scan at 2 mm centre-cropped to 168^3 (target: kidney and
  tumor as one structure); ``tumor``, the same volume masked by the reference kidney (target: tumor;
  the loss counts only voxels inside the kidney mask).
All are normalised exactly as at inference.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kitsrt.errors import InputError
from kitsrt.io import Scan, read_label_map, read_scan
from kitsrt.phantom import synthesize_ct
from kitsrt.runtime.pipeline import CascadeSpec, NestedSpec
from kitsrt.runtime.preprocess import scan_box
from kitsrt.runtime.regions import mask_volume, stage_input, stage_labels
from kitsrt.runtime.voi import kidney_boxes


@dataclass(frozen=True)
class Volume:
    """A network-ready volume (z, y, x): normalised input, its uint8 labels and, where the loss
    counts only part of it (seed 004's tumor network), a uint8 ``mask`` of that part."""

    image: np.ndarray
    labels: np.ndarray
    case: str
    mask: np.ndarray | None = None


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
    image, plan = stage_input(ct, scan_box(ct.geometry), spec.coarse)
    return Volume(image, stage_labels(labels, plan), case)


def fine_volumes(ct: Scan, labels: Scan, spec: CascadeSpec, case: str) -> list[Volume]:
    """One Volume per reference kidney, cropped like the runtime crops a VOI found by the coarse net."""
    volumes = []
    for box in kidney_boxes(labels.array > 0, labels.geometry, spec.roi):
        image, plan = stage_input(ct, box, spec.fine)
        volumes.append(Volume(image, stage_labels(labels, plan), case))
    return volumes


def _same_input(a, b) -> bool:
    keys = ("spacing_mm", "normalization", "divisibility", "anti_alias")
    return all(getattr(a, k) == getattr(b, k) for k in keys)


def nested_volumes(ct: Scan, labels: Scan, spec: NestedSpec, case: str) -> dict[str, list[Volume]]:
    """The kidney and tumor networks' volumes of one case (seed 004)."""
    region = scan_box(ct.geometry)
    image, plan = stage_input(ct, region, spec.kidney, spec.crop_shape)
    target = stage_labels(labels, plan)
    kidney = (target > 0).astype(np.uint8)
    tumor_image = image if _same_input(spec.kidney, spec.tumor) else stage_input(ct, region, spec.tumor,
                                                                                  spec.crop_shape)[0]
    return {"kidney": [Volume(image, kidney, case)],
            "tumor": [Volume(mask_volume(tumor_image, kidney > 0, spec.tumor), (target == 2).astype(np.uint8),
                             case, mask=kidney)]}


def case_volumes(ct: Scan, labels: Scan, spec: CascadeSpec | NestedSpec, case: str) -> dict[str, list[Volume]]:
    """Every network's training volumes of one case, by role."""
    if isinstance(spec, NestedSpec):
        return nested_volumes(ct, labels, spec, case)
    return {"coarse": [coarse_volume(ct, labels, spec, case)], "fine": fine_volumes(ct, labels, spec, case)}


def _load_cached(path: Path, case: str) -> dict[str, list[Volume]]:
    data = np.load(path)
    roles = sorted({k.split("_image")[0] for k in data.files if "_image" in k})
    return {role: [Volume(data[f"{role}_image{i}"], data[f"{role}_labels{i}"], case,
                          data[f"{role}_mask{i}"] if f"{role}_mask{i}" in data.files else None)
                   for i in range(len([k for k in data.files if k.startswith(f"{role}_image")]))]
            for role in roles}


def prepare_case(case: str, label_path: Path, imaging_path: Path | None, spec: CascadeSpec | NestedSpec,
                 cache: Path | None = None) -> dict[str, list[Volume]]:
    """Both stages' volumes of one case, read from ``cache`` when prepared before.
    Phantoms use the case number as seed, so a cache can always be rebuilt identically."""
    path = None if cache is None else cache / f"{case}.npz"
    if path is not None and path.exists():
        return _load_cached(path, case)
    seed = int("".join(ch for ch in case if ch.isdigit()) or 0)
    ct, labels = load_case(label_path, imaging_path, seed)
    volumes = case_volumes(ct, labels, spec, case)
    if path is not None:
        cache.mkdir(parents=True, exist_ok=True)
        arrays = {f"{role}_{kind}{i}": getattr(v, kind) for role in volumes for i, v in enumerate(volumes[role])
                  for kind in ("image", "labels", "mask") if getattr(v, kind) is not None}
        tmp = path.with_name(path.stem + ".partial.npz")
        np.savez(tmp, **arrays)
        tmp.replace(path)
    return volumes


def prepare_all(folder: Path, spec: CascadeSpec | NestedSpec, exclude: set[str], cache: Path | None = None,
                progress=None) -> dict[str, list[Volume]]:
    """Every network's volumes, by role, of every case in ``folder`` not in ``exclude``."""
    volumes: dict[str, list[Volume]] = {role: [] for role in spec.networks()}
    for case, label_path, imaging_path in find_cases(folder):
        if case in exclude:
            continue
        for role, prepared in prepare_case(case, label_path, imaging_path, spec, cache).items():
            volumes[role] += prepared
        if progress is not None:
            progress(case)
    if not any(volumes.values()):
        raise InputError(f"{folder}: no training cases left after excluding {sorted(exclude)}")
    return volumes


def prepare_volumes(folder: Path, stage: str, spec: CascadeSpec | NestedSpec, exclude: set[str],
                    cache: Path | None = None, progress=None) -> list[Volume]:
    """The ``stage`` volumes of every case in ``folder`` not in ``exclude``."""
    return prepare_all(folder, spec, exclude, cache, progress)[stage]
