"""Seed 002 demo outputs before and after a runtime change: SHA-256 of every label map, compared.

Runs the bundled demo cascade (onnxruntime CPU) on procedural phantoms of odd sizes, spacings and
orientations (axes permuted and flipped with SimpleITK, which keeps every voxel's physical place)
and, where ``../shared/data`` exists, on phantoms of the smallest KiTS19 label maps and the one
shared real CT. Phantom
CTs are cached in ``--cache`` so two runs read identical inputs.

    python benchmarks/seed002_parity.py --record before.json      # on the old code
    python benchmarks/seed002_parity.py --compare before.json     # on the new code: exit 1 on any change
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from kitsrt.io import Scan, read_label_map, read_scan, write_image
from kitsrt.phantom import procedural_label_map, synthesize_ct
from kitsrt.runtime.segmenter import Segmenter

KITS19 = Path(__file__).resolve().parents[2] / "shared" / "data" / "kits19"
PROCEDURAL = [  # (name, size ijk, spacing mm, seed, permutation, flips)
    ("proc1", (160, 160, 56), (2.5, 2.5, 4.0), 1, None, None),
    ("proc2_odd", (171, 149, 63), (2.2, 2.4, 3.5), 2, None, None),
    ("proc3_perm", (150, 166, 47), (2.5, 2.3, 4.5), 3, (2, 0, 1), None),
    ("proc4_flip", (158, 142, 51), (2.6, 2.6, 3.0), 4, None, (True, False, True)),
    ("proc7_permflip", (140, 150, 60), (2.8, 2.5, 3.2), 7, (1, 2, 0), (False, True, False)),
]
KITS19_CASES = [("case_00038", 38), ("case_00021", 21)]
REAL_CT = KITS19.parent / "realct" / "ts_example_ct.nii.gz"  # real CT, 3 mm, RAS-stored


def phantoms(cache: Path):
    """Yield (name, CT Scan), building and caching each one once."""
    cache.mkdir(parents=True, exist_ok=True)
    for name, size, spacing, seed, permutation, flips in PROCEDURAL:
        path = cache / f"{name}.nii.gz"
        if not path.exists():
            image = synthesize_ct(procedural_label_map(size, spacing, seed=seed), seed=seed).image
            if permutation:
                image = sitk.PermuteAxes(image, permutation)
            if flips:
                image = sitk.Flip(image, flips)
            write_image(image, path)
        yield name, read_scan(path)
    for case, seed in KITS19_CASES:
        label = KITS19 / case / "segmentation.nii.gz"
        if not label.exists():
            continue
        path = cache / f"{case}.nii.gz"
        if not path.exists():
            write_image(synthesize_ct(read_label_map(label), seed=seed).image, path)
        yield case, read_scan(path)
    if REAL_CT.exists():
        yield "realct", read_scan(REAL_CT)


def fingerprint(labels: np.ndarray) -> dict:
    return {"sha256": hashlib.sha256(np.ascontiguousarray(labels).tobytes()).hexdigest(),
            "shape": list(labels.shape), "counts": np.bincount(labels.ravel(), minlength=3).tolist()}


def run(cache: Path) -> dict:
    results = {}
    with Segmenter.load(backend="onnxruntime", threads=1) as segmenter:
        for name, scan in phantoms(cache):
            results[name] = fingerprint(segmenter.segment(scan).labels)
            print(name, results[name]["counts"], flush=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--record", type=Path)
    action.add_argument("--compare", type=Path)
    parser.add_argument("--cache", type=Path, default=Path("work/parity_cache"))
    args = parser.parse_args()
    results = run(args.cache)
    if args.record:
        args.record.write_text(json.dumps(results, indent=2))
        return 0
    before = json.loads(args.compare.read_text())
    changed = [name for name in before if results.get(name) != before[name]]
    for name in changed:
        print(f"CHANGED {name}: {before[name]['counts']} -> {results.get(name, {}).get('counts')}")
    print(f"{len(before) - len(changed)} of {len(before)} label maps bitwise identical")
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
