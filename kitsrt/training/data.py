"""Training data for every network of a pipeline, cut by the runtime's own ``stage_input``.

A case is a CT and its label map: read from a KiTS-layout folder (``case_x/imaging.nii.gz`` +
``case_x/segmentation.nii.gz``) or, where only label maps exist, a phantom synthesized on the label.
* cascade (seed 002): ``coarse``, the whole scan on the 6 mm canonical grid; ``fine``, each
  reference kidney's VOI on the 1 mm canonical grid;
* nested (seed 004): ``kidney``, the whole scan at 2 mm centre-cropped to 168^3 (target: kidney and
  tumor as one structure); ``tumor``, the same volume masked by the reference kidney (target: tumor;
  the loss counts only voxels inside the kidney mask).
All are normalised exactly as at inference.

Domain-randomised training (the demo v2 recipe): each label map gives several phantoms, each in its
own random ``PhantomStyle`` (contrast phase, tumor appearance, noise, slice thickness, body, label
edits), plus procedural label maps; see ``styled_cases``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kitsrt.errors import InputError
from kitsrt.io import Scan, read_label_map, read_scan
from kitsrt.phantom import procedural_label_map, random_style, synthesize_case, synthesize_ct
from kitsrt.phantom.style import STYLE_VERSION
from kitsrt.runtime.pipeline import CascadeSpec, NestedSpec
from kitsrt.runtime.preprocess import Box, scan_box
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


def _load_cached(path: Path, case: str, roles: set[str] | None = None, stamp: str | None = None) -> dict[str, list[Volume]]:
    """The volumes cached in ``path``. A cache stamped with another phantom than ``stamp`` is
    refused; an unstamped one (written before stamps, or by an older tree on purpose) is read."""
    data = np.load(path)
    if stamp is not None and "phantom" in data.files and str(data["phantom"]) != stamp:
        raise InputError(f"{path}: this cache holds a phantom drawn by another phantom version or style "
                         f"({str(data['phantom'])[:60]}...), not {stamp[:60]}...; train with a new --cache "
                         "folder, or delete this one")
    stored = sorted({k.split("_image")[0] for k in data.files if "_image" in k})
    return {role: [Volume(data[f"{role}_image{i}"], data[f"{role}_labels{i}"], case,
                          data[f"{role}_mask{i}"] if f"{role}_mask{i}" in data.files else None)
                   for i in range(len([k for k in data.files if k.startswith(f"{role}_image")]))]
            for role in stored if roles is None or role in roles}


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
        _save_cached(path, volumes)
    return volumes


def _save_cached(path: Path, volumes: dict[str, list[Volume]], stamp: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"{role}_{kind}{i}": getattr(v, kind) for role in volumes for i, v in enumerate(volumes[role])
              for kind in ("image", "labels", "mask") if getattr(v, kind) is not None}
    if stamp is not None:
        arrays["phantom"] = np.array(stamp)
    tmp = path.with_name(f"{path.stem}.partial-{os.getpid()}.npz")  # two trainings may share a cache
    np.savez(tmp, **arrays)
    tmp.replace(path)


PROCEDURAL_SEED0 = 20000  # procedural training label maps; benchmarks hold out seeds 1000-1003
STYLE_SEED0 = 100000  # styled phantom k of KiTS19 case n: seed STYLE_SEED0 + 10 n + k


@dataclass(frozen=True)
class StyledCase:
    """One domain-randomised training phantom: a label map (a KiTS19 file, or procedural when
    ``label_path`` is None) and the seed of its phantom and style."""

    name: str
    label_path: Path | None
    seed: int


def styled_cases(folder: Path, exclude: set[str], styles_per_case: int, procedural: int) -> list[StyledCase]:
    """``styles_per_case`` styled phantoms of every label map in ``folder`` not in ``exclude``, then
    ``procedural`` procedural label maps (seeds from PROCEDURAL_SEED0), each with a random style."""
    cases = []
    for case, label_path, _ in find_cases(folder):
        if case in exclude:
            continue
        number = int("".join(ch for ch in case if ch.isdigit()) or 0)
        cases += [StyledCase(f"{case}_style{k}", label_path, STYLE_SEED0 + 10 * number + k)
                  for k in range(styles_per_case)]
    cases += [StyledCase(f"procedural_{PROCEDURAL_SEED0 + n}", None, PROCEDURAL_SEED0 + n) for n in range(procedural)]
    if not cases:
        raise InputError(f"{folder}: no training cases left after excluding {sorted(exclude)}")
    return cases


def random_procedural_labels(seed: int) -> Scan:
    """A procedural label map on a random grid: 0.9-1.6 mm in plane, 1.5-5 mm slices, about
    380 x 380 x 300 mm."""
    rng = np.random.default_rng([seed, 2])
    in_plane, slice_mm = float(rng.uniform(0.9, 1.6)), float(rng.choice([1.5, 2.5, 3.0, 5.0]))
    size = (int(380 / in_plane), int(380 / in_plane), int(300 / slice_mm))
    return procedural_label_map(size, (in_plane, in_plane, slice_mm), seed=seed)


def prepare_styled_case(case: StyledCase, spec: CascadeSpec | NestedSpec, cache: Path | None = None,
                        roles: set[str] | None = None) -> dict[str, list[Volume]]:
    """The volumes of one styled phantom (``roles`` only, default all), read from ``cache`` when
    prepared before."""
    path = None if cache is None else cache / f"{case.name}.npz"
    stamp = phantom_stamp(case)
    if path is not None and path.exists():
        return _load_cached(path, case.name, roles, stamp)
    labels = random_procedural_labels(case.seed) if case.label_path is None else read_label_map(case.label_path)
    ct, labels = synthesize_case(labels, case.seed, random_style(case.seed))
    volumes = case_volumes(ct, labels, spec, case.name)
    if isinstance(spec, CascadeSpec):
        volumes["fine"].append(decoy_volume(ct, labels, spec, case.name, np.random.default_rng([case.seed, 3])))
    if path is not None:
        _save_cached(path, volumes, stamp)
    return {role: v for role, v in volumes.items() if roles is None or role in roles}


def phantom_stamp(case: StyledCase) -> str:
    """What drew a styled case's phantom: the styles' generation and its style, kept in its cache."""
    return f"styled phantom v{STYLE_VERSION}: {random_style(case.seed)!r}"


def decoy_volume(ct: Scan, labels: Scan, spec: CascadeSpec, case: str, rng: np.random.Generator) -> Volume:
    """A fine-network volume on a VOI the coarse network might wrongly propose: a kidney-sized box
    placed at random in the scan (pelvis, spine, liver, bowel...), with its true labels (mostly none)."""
    scan = scan_box(ct.geometry)
    boxes = kidney_boxes(labels.array > 0, labels.geometry, spec.roi)
    extent = boxes[0].extent_mm if boxes else np.array([110.0, 110.0, 140.0])
    room = np.maximum(scan.extent_mm - extent, 0.0)
    low = np.asarray(scan.low) + rng.uniform(0.0, 1.0, 3) * room
    image, plan = stage_input(ct, Box(tuple(low), tuple(low + extent)), spec.fine)
    return Volume(image, stage_labels(labels, plan), f"{case}_decoy")


def prepare_styled(cases: list[StyledCase], spec: CascadeSpec | NestedSpec, cache: Path | None = None,
                   roles: set[str] | None = None, progress=None, last_first: bool = False) -> dict[str, list[Volume]]:
    """Every network's volumes (``roles`` only, default all), by role, of the styled ``cases``, in
    the order of ``cases``. ``last_first`` prepares them from the last one: a second run started
    at the same time on the same cache then meets the first half way, each reading the other's."""
    prepared: dict[str, dict[str, list[Volume]]] = {}
    for case in (reversed(cases) if last_first else cases):
        prepared[case.name] = prepare_styled_case(case, spec, cache, roles)
        if progress is not None:
            progress(case.name)
    return {role: [v for case in cases for v in prepared[case.name].get(role, [])]
            for role in spec.networks() if roles is None or role in roles}


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
