"""Do two source trees give the same outputs? Label maps and reports on several phantoms and orientations.

A speed change outside the networks must not change a voxel. This segments the same scans with each
tree (a child process per tree, ``PYTHONPATH=tree``, onnxruntime FP32) and compares the label maps
voxel for voxel (SHA-256 of the array) and the reports without their timings and run facts.

Scans: the bench phantoms (``kitsrt bench``'s small and median KiTS19 geometries, and the largest with
``--largest``) when given with ``--scan``, plus procedural phantoms made here, each also re-oriented
(axes permuted and flipped: the same voxels at the same physical places).

    python benchmarks/outputs_identical.py --tree before=/tmp/before --tree after=. [--scan CT ...] \
        [--out benchmarks/results/outputs_identical.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

MARK = "KITSRT_OUTPUTS "
REORIENTATIONS = {"permuted (j, i, k), i flipped": ((1, 0, 2), (1, 0, 0)),
                  "permuted (k, j, i), j and k flipped": ((2, 1, 0), (0, 1, 1))}
VOLATILE = ("timings_s", "created", "kitsrt_version", "host", "started", "finished")


def _stable(report: dict) -> dict:
    """The report without timings and run facts (those differ between any two runs)."""
    return {k: v for k, v in report.items() if k not in VOLATILE}


def child(paths: list[str]) -> dict:
    from kitsrt.io import read_scan
    from kitsrt.runtime.segmenter import Segmenter

    out = {}
    with Segmenter.load(backend="onnxruntime", threads=2) as segmenter:
        for path in paths:
            result = segmenter.segment(read_scan(path))
            out[path] = {"labels_sha256": hashlib.sha256(np.ascontiguousarray(result.labels).tobytes()).hexdigest(),
                         "foreground_voxels": int(np.count_nonzero(result.labels)),
                         "report": json.loads(json.dumps(_stable(result.report), default=str))}
    return out


def reoriented(scan, perm, flips):
    """The same voxels at the same physical places; new index axis a = old axis perm[a], reversed where
    flips[a]."""
    from kitsrt.io import Geometry, Scan

    g = scan.geometry
    ijk = np.flip(scan.array.transpose(2, 1, 0).transpose(perm), [a for a in range(3) if flips[a]])
    columns = np.stack([g.direction_matrix[:, perm[a]] * (-1 if flips[a] else 1) for a in range(3)], axis=1)
    first = [0, 0, 0]
    for a in range(3):
        if flips[a]:
            first[perm[a]] = g.size[perm[a]] - 1
    geometry = Geometry(tuple(g.size[p] for p in perm), tuple(g.spacing_mm[p] for p in perm),
                        tuple(float(o) for o in g.index_to_physical([first])[0]), tuple(columns.ravel()))
    return Scan.from_array(np.ascontiguousarray(ijk.transpose(2, 1, 0)), geometry)


def make_scans(work: Path) -> list[Path]:
    """Procedural phantoms (two seeds, two grids) and re-oriented copies, written once into ``work``."""
    from kitsrt.io import write_image
    from kitsrt.phantom import procedural_label_map, synthesize_ct

    work.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed, (size, spacing) in enumerate([((256, 256, 96), (1.4, 1.4, 3.0)), ((320, 320, 120), (1.0, 1.0, 2.5))]):
        base = work / f"procedural_{seed}.nii.gz"
        if not base.exists():
            write_image(synthesize_ct(procedural_label_map(size, spacing, seed=seed), seed=seed).image, base)
        paths.append(base)
        if seed == 0:
            from kitsrt.io import read_scan

            scan = read_scan(base)
            for n, (perm, flips) in enumerate(REORIENTATIONS.values()):
                path = work / f"procedural_{seed}_reoriented_{n}.nii.gz"
                if not path.exists():
                    write_image(reoriented(scan, perm, flips).image, path)
                paths.append(path)
    return paths


def run_child(tree: str, paths: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(Path(tree).resolve())}
    done = subprocess.run([sys.executable, __file__, "--child", json.dumps(paths)], capture_output=True, text=True,
                          env=env)
    if done.returncode != 0:
        raise RuntimeError(f"child failed for {tree}:\n{done.stderr[-2000:]}")
    return json.loads(next(ln for ln in done.stdout.splitlines() if ln.startswith(MARK))[len(MARK):])


def differences(a, b, where: str = "") -> list[str]:
    """Paths (``report.kidneys.0.volume_ml``) where two JSON values differ, with both values."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in differences(a.get(k), b.get(k), f"{where}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for n, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{where}.{n}")]
    return [] if a == b else [f"{where}: {a!r} != {b!r}"]


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        print(MARK + json.dumps(child(json.loads(sys.argv[2]))))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--tree", action="append", required=True, help="NAME=PATH of a kitsrt source tree")
    parser.add_argument("--scan", action="append", default=[], help="more CT files to compare on")
    parser.add_argument("--work", default="/tmp/kitsrt_outputs_identical")
    parser.add_argument("--out", default="benchmarks/results/outputs_identical.json")
    args = parser.parse_args()
    trees = dict(t.split("=", 1) for t in args.tree)
    paths = [str(p) for p in [*map(Path, args.scan), *make_scans(Path(args.work))]]
    outputs = {name: run_child(tree, paths) for name, tree in trees.items()}
    (first, a), *others = outputs.items()
    cases = {}
    for path in paths:
        found = [d for name, b in others for d in differences(a[path], b[path], name)]
        cases[path] = {"identical": not found, "differences": found, "foreground_voxels": a[path]["foreground_voxels"]}
        print(f"{path}: {'identical' if not found else 'DIFFERS: ' + '; '.join(found[:5])}", flush=True)
    Path(args.out).write_text(json.dumps({"trees": list(trees), "reference": first, "cases": cases}, indent=2) + "\n")


if __name__ == "__main__":
    main()
