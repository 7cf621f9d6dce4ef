"""Calibration sets: every network's inputs drawn through the runtime's own stage-input path, by role.

For each source scan, the package's kind builds the inputs its ``run`` feeds each network
(``Kind.network_inputs``, the same functions the runtime calls): for a ``cascade`` the whole scan on
the coarse grid and every VOI as the fine network finally ran it (the cascade runs once, FP32, to place
and grow the VOIs); for ``nested`` the cropped 168^3 scan for ``kidney`` and the kidney-masked volume
the tumor network runs on; for ``sliding-window`` a bounded, evenly spread sample of the preprocessed
patches the folds are fed. The set therefore depends on the package's networks (their SHA-256 are
recorded, and a set is refused for another package). A fixed, seeded share of the scans is held out
for the accuracy gate and never used to compute quantization ranges.

Layout of a set folder::

    manifest.json           version, kind, seed, networks (role -> sha256, counts, input facts),
                            sources (case, path, sha256, split, files per role)
    <role>/<case>_<n>.npy   (z, y, x) float32 network inputs (an input shared by several roles,
                            as a sliding window's patches are by its folds, is stored once)
    labels/<case>.nii.gz    reference label maps of held-out cases (for Dice against truth)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kitsrt.errors import InputError, ModelPackageError
from kitsrt.io import Scan, sha256_of, write_label_map, write_text_atomic
from kitsrt.io.files import temporary_sibling
from kitsrt.runtime.kinds import kind_of, roles_of
from kitsrt.runtime.package import ModelPackage

SET_VERSION = 2
TILES_PER_CASE = 8  # sliding-window patches kept per case


@dataclass(frozen=True)
class Source:
    """One scan for a calibration set; ``labels`` (reference) when it is a phantom with known truth."""

    case: str
    ct: Scan
    labels: Scan | None
    path: str
    phantom_seed: int | None = None


def split_cases(cases: list[str], holdout_fraction: float, seed: int) -> set[str]:
    """A seeded choice of held-out cases (at least one when there are two or more)."""
    rng = np.random.default_rng(seed)
    count = max(1, int(round(holdout_fraction * len(cases)))) if len(cases) > 1 else 0
    return set(rng.choice(sorted(cases), size=count, replace=False).tolist()) if count else set()


def network_facts(package: ModelPackage) -> dict[str, dict]:
    """What the manifest records per role: the file's SHA-256 and how its input is prepared."""
    facts = {}
    for name, role in roles_of(package.spec).items():
        net = role.network
        entry = {"model": net.model, "sha256": net.sha256, "input_shapes": {
            "min": list(role.shapes.min), "opt": list(role.shapes.opt), "max": list(role.shapes.max)},
            "pad_value": role.pad_value}
        if hasattr(net, "spacing_mm"):
            entry.update(spacing_mm=list(net.spacing_mm), normalization=net.normalization.model_dump(mode="json"),
                         divisibility=net.divisibility)
        facts[name] = entry
    return facts


def _save_inputs(folder: Path, case: str, inputs: dict[str, list[np.ndarray]]) -> dict[str, list[str]]:
    """Write each distinct array once as ``<role>/<case>_<n>.npy``; returns role -> file names."""
    files: dict[str, list[str]] = {}
    saved: dict[int, str] = {}
    for role, arrays in inputs.items():
        (folder / role).mkdir(exist_ok=True)
        files[role] = []
        for n, array in enumerate(arrays):
            if id(array) not in saved:
                saved[id(array)] = f"{role}/{case}_{n}.npy"
                np.save(folder / saved[id(array)], np.ascontiguousarray(array, np.float32))
            files[role].append(saved[id(array)])
    return files


def build_set(sources: list[Source], package: ModelPackage, segmenter, out: Path,
              holdout_fraction: float = 0.25, seed: int = 0, progress=None,
              tiles_per_case: int = TILES_PER_CASE) -> dict:
    """Write a calibration set folder for ``package`` (whole or not at all) and return its manifest.
    ``segmenter``: an FP32 ``Segmenter`` of the package, whose backends place what depends on a
    network (the cascade's VOIs, the nested kind's kidney mask)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out}: calibration set folder exists and is not empty; choose a new folder")
    held_out = split_cases([s.case for s in sources], holdout_fraction, seed)
    spec = package.spec
    kind = kind_of(spec)
    entries = []
    with temporary_sibling(out) as tmp:
        (tmp / "labels").mkdir(parents=True)
        for source in sources:
            inputs = kind.network_inputs(source.ct, spec, segmenter.backends, tiles_per_case)
            entry = {"case": source.case, "path": source.path,
                     "split": "holdout" if source.case in held_out else "calibration",
                     "sha256": sha256_of(source.path) if Path(source.path).is_file() else "",
                     "files": _save_inputs(tmp, source.case, inputs)}
            if source.labels is not None and source.case in held_out:
                entry["labels"] = f"labels/{source.case}.nii.gz"
                entry["phantom_seed"] = source.phantom_seed
                write_label_map(source.labels.array, source.labels.geometry, tmp / entry["labels"])
            entries.append(entry)
            if progress is not None:
                progress(source.case)
        networks = network_facts(package)
        for role, facts in networks.items():
            facts["count"] = sum(len(e["files"][role]) for e in entries)
        manifest = {"version": SET_VERSION, "kind": spec.kind, "pipeline": spec.name, "seed": seed,
                    "holdout_fraction": holdout_fraction, "tiles_per_case": tiles_per_case,
                    "networks": networks, "sources": entries}
        write_text_atomic(json.dumps(manifest, indent=2) + "\n", tmp / "manifest.json")
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    return manifest


def upgrade_v1(manifest: dict) -> dict:
    """A version-1 set (seed 002 cascade only: ``stages`` and ``<role>_sha256``) as version 2."""
    networks = {role: {**facts, "sha256": manifest.get(f"{role}_sha256", "")}
                for role, facts in manifest.get("stages", {}).items()}
    rest = {k: v for k, v in manifest.items() if k not in ("stages", "coarse_sha256", "fine_sha256")}
    return {**rest, "version": SET_VERSION, "kind": "cascade", "networks": networks}


def load_manifest(folder: Path) -> dict:
    """The manifest of a set folder (a version-1 set upgraded); InputError (exit 2) if unreadable."""
    path = Path(folder) / "manifest.json"
    if not path.exists():
        raise InputError(f"{folder}: not a calibration set (no manifest.json); build one with `kitsrt calibrate`")
    try:
        manifest = json.loads(path.read_text())
    except (ValueError, OSError) as exc:
        raise InputError(f"{path}: calibration manifest is not readable JSON ({exc}); rebuild the set") from None
    version = manifest.get("version") if isinstance(manifest, dict) else None
    if version == 1:
        return upgrade_v1(manifest)
    if version != SET_VERSION:
        raise InputError(f"{path}: calibration set version {version!r} is not {SET_VERSION}; rebuild it")
    return manifest


def check_set_matches(manifest: dict, package: ModelPackage, folder: Path) -> None:
    """Refuse (ModelPackageError, exit 4) a set made for another kind or package: same kind, every
    role of the package present, each drawn with the same network file (SHA-256)."""
    spec = package.spec
    if manifest.get("kind") != spec.kind:
        raise ModelPackageError(f"{folder}: calibration set was made for a {manifest.get('kind')} pipeline, "
                                f"{package.folder} is {spec.kind}; build one for this package with "
                                f"`kitsrt calibrate --model {package.folder}`")
    recorded = manifest.get("networks", {})
    for role, network in spec.networks().items():
        if role not in recorded:
            raise ModelPackageError(f"{folder}: calibration set has no inputs for role {role!r} (it has "
                                    f"{', '.join(recorded) or 'none'}); build one for this package with "
                                    f"`kitsrt calibrate --model {package.folder}`")
        if recorded[role].get("sha256") != network.sha256:
            raise ModelPackageError(f"{folder}: calibration set's {role} inputs were drawn with another {role} "
                                    f"model ({recorded[role].get('sha256')}); rebuild it with "
                                    f"`kitsrt calibrate --model {package.folder}`")


def role_arrays(folder: Path, manifest: dict, role: str, split: str) -> list[np.ndarray]:
    """Every stored input of ``role`` in ``split`` (calibration or holdout), in case order."""
    return [np.load(Path(folder) / name) for entry in manifest["sources"] if entry["split"] == split
            for name in entry["files"].get(role, [])]


stage_arrays = role_arrays  # the name before pipeline kinds


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
