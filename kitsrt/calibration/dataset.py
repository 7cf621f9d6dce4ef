"""Calibration sets: stage inputs drawn through the runtime's own preprocessing, saved with a manifest.

For each source scan the coarse input is the whole scan on the 6 mm grid, and the fine inputs are
the 1 mm VOIs that the runtime itself cuts: the package's cascade runs on the scan (FP32) exactly as
in ``kitsrt infer``, VOIs grown where the fine network found kidney on a face, and each final VOI is
cut again through ``kitsrt.runtime.regions.stage_input``. The set therefore depends on both models
(their SHA-256 are recorded). A fixed, seeded share of the scans
is held out for the accuracy gate and never used to compute quantization ranges.

Layout of a set folder::

    manifest.json           version, seed, stages (spacing, window), sources (path, sha256, split)
    coarse/<case>.npy       (z, y, x) float32 scaled inputs
    fine/<case>_<n>.npy
    labels/<case>.nii.gz    reference label maps of held-out phantoms (for Dice against truth)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kitsrt.errors import InputError
from kitsrt.io import Scan, sha256_of, write_label_map, write_text_atomic
from kitsrt.runtime.package import ModelPackage
from kitsrt.runtime.preprocess import scan_box
from kitsrt.runtime.regions import stage_input

SET_VERSION = 1


@dataclass(frozen=True)
class Source:
    """One scan for a calibration set; ``labels`` (reference) when it is a phantom with known truth."""

    case: str
    ct: Scan
    labels: Scan | None
    path: str
    phantom_seed: int | None = None


def stage_inputs(source: Source, segmenter) -> dict[str, list[np.ndarray]]:
    """The exact network inputs ``kitsrt infer`` builds for this scan, per stage: the whole scan for
    the coarse network and every VOI the fine network finally ran on (after growth), by ``segmenter``
    (an FP32 ``Segmenter`` of the package)."""
    spec = segmenter.package.spec
    boxes = segmenter.segment(source.ct).vois
    coarse, _ = stage_input(source.ct, scan_box(source.ct.geometry), spec.coarse)
    return {"coarse": [coarse], "fine": [stage_input(source.ct, box, spec.fine)[0] for box in boxes]}


def split_cases(cases: list[str], holdout_fraction: float, seed: int) -> set[str]:
    """A seeded choice of held-out cases (at least one when there are two or more)."""
    rng = np.random.default_rng(seed)
    count = max(1, int(round(holdout_fraction * len(cases)))) if len(cases) > 1 else 0
    return set(rng.choice(sorted(cases), size=count, replace=False).tolist()) if count else set()


def build_set(sources: list[Source], package: ModelPackage, segmenter, out: Path,
              holdout_fraction: float = 0.25, seed: int = 0, progress=None) -> dict:
    """Write a calibration set folder and return its manifest."""
    if out.exists() and any(out.iterdir()):
        raise InputError(f"{out}: calibration set folder exists and is not empty; choose a new folder")
    held_out = split_cases([s.case for s in sources], holdout_fraction, seed)
    for folder in ("coarse", "fine", "labels"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    entries = []
    for source in sources:
        inputs = stage_inputs(source, segmenter)
        files = {"coarse": [], "fine": []}
        for stage, arrays in inputs.items():
            for n, array in enumerate(arrays):
                name = f"{stage}/{source.case}.npy" if stage == "coarse" else f"{stage}/{source.case}_{n}.npy"
                np.save(out / name, array)
                files[stage].append(name)
        entry = {"case": source.case, "path": source.path, "split": "holdout" if source.case in held_out else "calibration",
                 "sha256": sha256_of(source.path) if Path(source.path).is_file() else "", "files": files}
        if source.labels is not None and source.case in held_out:
            entry["labels"] = f"labels/{source.case}.nii.gz"
            entry["phantom_seed"] = source.phantom_seed
            write_label_map(source.labels.array, source.labels.geometry, out / entry["labels"])
        entries.append(entry)
        if progress is not None:
            progress(source.case)
    spec = package.spec
    manifest = {
        "version": SET_VERSION, "seed": seed, "holdout_fraction": holdout_fraction,
        "pipeline": spec.name, "coarse_sha256": spec.coarse.sha256, "fine_sha256": spec.fine.sha256,
        "stages": {name: {"spacing_mm": list(s.spacing_mm), "normalization": s.normalization.model_dump(mode="json"),
                          "divisibility": s.divisibility,
                          "count": sum(len(e["files"][name]) for e in entries)}
                   for name, s in (("coarse", spec.coarse), ("fine", spec.fine))},
        "sources": entries,
    }
    write_text_atomic(json.dumps(manifest, indent=2) + "\n", out / "manifest.json")
    return manifest


def load_manifest(folder: Path) -> dict:
    path = folder / "manifest.json"
    if not path.exists():
        raise InputError(f"{folder}: not a calibration set (no manifest.json); build one with `kitsrt calibrate`")
    manifest = json.loads(path.read_text())
    if manifest.get("version") != SET_VERSION:
        raise InputError(f"{path}: calibration set version {manifest.get('version')} is not {SET_VERSION}; rebuild it")
    return manifest


def stage_arrays(folder: Path, manifest: dict, stage: str, split: str) -> list[np.ndarray]:
    return [np.load(folder / name) for entry in manifest["sources"] if entry["split"] == split
            for name in entry["files"][stage]]


def phantom_sources(folder: Path | None, procedural: int, seed: int) -> list[Source]:
    """Sources from a KiTS-layout folder (phantoms where imaging is missing; seed = case number)
    and/or ``procedural`` random cases (seeds ``seed``, ``seed + 1``, ...)."""
    from kitsrt.phantom import procedural_label_map, synthesize_ct
    from kitsrt.training.data import find_cases, load_case

    sources = []
    if folder is not None:
        for case, label_path, imaging_path in find_cases(folder):
            number = int("".join(ch for ch in case if ch.isdigit()) or 0)
            ct, labels = load_case(label_path, imaging_path, number)
            sources.append(Source(case, ct, labels, str(imaging_path or label_path),
                                  None if imaging_path else number))
    for n in range(procedural):
        labels = procedural_label_map(seed=seed + n)
        sources.append(Source(f"procedural_{seed + n:04d}", synthesize_ct(labels, seed=seed + n), labels,
                              f"procedural(seed={seed + n})", seed + n))
    if not sources:
        raise InputError("no calibration sources: give a folder of cases or --procedural N")
    return sources
