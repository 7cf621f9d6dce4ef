"""Two demo packages side by side in one run (issue 15): held-out phantoms and one real CT.

* Held-out phantoms: the 6 KiTS19 label maps held out of both demos' training and 4 procedural
  maps (seeds 1000-1003), each as the default phantom (seed = case number, as
  ``demo_accuracy.py``) and as a domain-randomised phantom (``random_style(seed)`` with its label
  edits switched off, so that every case has two kidneys and its tumors: Dice stays comparable; the
  phantom is drawn by the checked-out tree, so a cache of phantoms belongs to one phantom version).
  KiTS19 Dice of the cascade, VOI recall, output grid equal to the input grid.
* The real CT in ``../shared/data/realct`` (a check only, never trained or tuned on): Dice of the
  predicted kidney+tumor against TotalSegmentator's kidneys (its README: a model's output, no
  tumor), Dice of the predicted kidney label alone, "tumor" volume in mL, and per side whether a
  predicted kidney overlaps that side's reference kidney (Dice > 0.5 counts as found).
* Size of each package, parameter count of its networks (from the ONNX initializers) and the
  fine network's latency on one 1 mm VOI of 160 x 128 x 128 voxels (onnxruntime, 2 threads,
  median of 5 after 1 warm-up).

    python benchmarks/demo_v2_accuracy.py --new work/demo_v2 [--old kitsrt/packages/demo] \\
        [--extra NAME=DIR ...] [--cache work/eval] [--out benchmarks/results/demo_v2_accuracy.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from kitsrt.bench.latency import describe_machine
from kitsrt.eval.metrics import dice, score_case
from kitsrt.io import Scan, read_label_map, read_scan
from kitsrt.phantom import procedural_label_map, random_style, synthesize_ct
from kitsrt.runtime.segmenter import Segmenter

from demo_accuracy import voi_recall  # benchmarks/ is on sys.path when run as a script

HELD_OUT = ("case_00021", "case_00043", "case_00055", "case_00063", "case_00142", "case_00188")
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def phantom_cases(kits19: Path, read: bool = True):
    """(name, label map or None when not ``read``, seed) of the held-out cases."""
    for case in HELD_OUT:
        yield case, read_label_map(kits19 / case / "segmentation.nii.gz") if read else None, int(case.split("_")[1])
    for seed in range(1000, 1004):
        yield (f"procedural_{seed}", procedural_label_map((256, 256, 96), (1.6, 1.6, 3.0), seed=seed) if read else None,
               seed)


def score_phantom(segmenter: Segmenter, ct: Scan, labels: Scan, case: str) -> dict:
    start = time.perf_counter()
    result = segmenter.segment(ct)
    seconds = time.perf_counter() - start
    scores = score_case(result.labels, labels.array, labels.geometry.array_spacing_mm, case=case).as_dict()
    return {"kidney_dice": scores["kidney_dice"], "tumor_dice": scores["tumor_dice"],
            "composite_dice": scores["composite_dice"], "voi_recall": voi_recall(labels, result.vois),
            "geometry_equal": result.geometry == labels.geometry, "seconds": seconds}


def physical_x_mm(scan: Scan) -> np.ndarray:
    """The LPS x (mm; +x is the patient's left) of every voxel of ``scan``, array axes (k, j, i)."""
    k, j, i = np.indices(scan.array.shape)
    ijk = np.stack([i.ravel(), j.ravel(), k.ravel()], axis=1)
    return scan.geometry.index_to_physical(ijk)[:, 0].reshape(scan.array.shape)


def real_ct(segmenter: Segmenter, ct: Scan, reference: Scan) -> dict:
    start = time.perf_counter()
    result = segmenter.segment(ct)
    seconds = time.perf_counter() - start
    ref = reference.array > 0
    pred = result.labels
    x_mm = physical_x_mm(reference)
    mid_x = float(x_mm[ref].min() + x_mm[ref].max()) / 2.0  # between the two kidneys
    sides = {}
    for side, half in (("right", x_mm < mid_x), ("left", x_mm >= mid_x)):
        sides[side] = {"dice": dice((pred > 0) & half, ref & half),
                       "found": dice((pred > 0) & half, ref & half) > 0.5}
    return {"kidney_and_tumor_dice": dice(pred > 0, ref), "kidney_label_dice": dice(pred == 1, ref),
            "tumor_ml": float((pred == 2).sum() * ct.geometry.voxel_volume_ml),
            "kidney_ml": float((pred == 1).sum() * ct.geometry.voxel_volume_ml),
            "reference_ml": float(ref.sum() * ct.geometry.voxel_volume_ml),
            "sides": sides, "both_found": all(s["found"] for s in sides.values()),
            "vois": len(result.vois), "geometry_equal": result.geometry == ct.geometry, "seconds": seconds}


def network_facts(package: Path) -> dict:
    """Package size (MB, every file), parameters per network, fine-network latency on one VOI."""
    import onnx
    import onnxruntime as ort

    facts = {"package_mb": sum(f.stat().st_size for f in package.iterdir() if f.is_file()) / 1e6}
    for role in ("coarse", "fine"):
        model = onnx.load(str(package / f"{role}.onnx"))
        facts[f"{role}_parameters"] = int(sum(np.prod(t.dims) for t in model.graph.initializer))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(package / "fine.onnx"), options, providers=["CPUExecutionProvider"])
    voi = np.zeros((1, 1, 160, 128, 128), np.float32)
    session.run(None, {"image": voi})
    times = []
    for _ in range(5):
        start = time.perf_counter()
        session.run(None, {"image": voi})
        times.append(time.perf_counter() - start)
    facts["fine_voi_160x128x128_s"] = float(np.median(times))
    return facts


def held_out_style(seed: int):
    """The randomised held-out phantom's style: ``random_style(seed)`` without its label edits."""
    return replace(random_style(seed), tumor_free=False, nephrectomy=None, horseshoe=False)


def style_key(seeds) -> str:
    """A short hash of the held-out styles: cached phantoms and rows of other styles are not reused."""
    return hashlib.sha256("".join(repr(held_out_style(seed)) for seed in seeds).encode()).hexdigest()[:10]


def phantom_ct(labels: Scan, seed: int, style: str, cache: Path | None) -> tuple[Scan, str]:
    """(phantom, phase) of one held-out case; phantoms are kept in ``cache`` (int16 .npy) once built,
    a randomised one under its style's hash."""
    randomized = held_out_style(seed)
    phase = randomized.phase if style == "randomized" else "default"
    suffix = f"randomized_{style_key([seed])}" if style == "randomized" else style
    path = None if cache is None else cache / f"{labels.source.replace('/', '_')}_{seed}_{suffix}.npy"
    if path is not None and path.exists():
        return Scan.from_array(np.load(path), labels.geometry), phase
    ct = synthesize_ct(labels, seed=seed, style=randomized if style == "randomized" else None)
    if path is not None:
        cache.mkdir(parents=True, exist_ok=True)
        np.save(path, ct.array)
    return ct, phase


def package_rows(name: str, folder: Path, args, cache: Path | None) -> list[dict]:
    """Every held-out phantom scored with one package; reused from ``cache`` when the package's
    pipeline.json (which holds each network's SHA-256) and the held-out styles are unchanged."""
    seeds = [seed for _, _, seed in phantom_cases(Path(args.kits19), read=False)]
    key = hashlib.sha256((folder / "pipeline.json").read_bytes() + style_key(seeds).encode()).hexdigest()[:16]
    path = None if cache is None else cache / f"rows_{name}_{key}.json"
    if path is not None and path.exists():
        return json.loads(path.read_text())
    rows = []
    with Segmenter.load(folder, threads=2) as segmenter:
        for case, labels, seed in phantom_cases(Path(args.kits19)):
            for style in ("default", "randomized"):
                ct, phase = phantom_ct(labels, seed, style, cache)
                rows.append({"case": case, "style": style, "phase": phase} | score_phantom(segmenter, ct, labels, case))
                print(name, case, style, round(rows[-1]["composite_dice"], 4), flush=True)
    if path is not None:
        path.write_text(json.dumps(rows))
    return rows


def summarize(rows: list[dict], style: str) -> dict:
    group = [r for r in rows if r["style"] == style]
    return {key: float(np.mean([g[key] for g in group])) for key in ("kidney_dice", "tumor_dice", "composite_dice")} | {
        "min_voi_recall": min(g["voi_recall"] for g in group), "cases": len(group),
        "all_geometry_equal": all(g["geometry_equal"] for g in group)}


def main() -> None:
    from kitsrt.runtime.package import bundled_package_path

    parser = argparse.ArgumentParser()
    parser.add_argument("--new", required=True, help="the candidate package folder")
    parser.add_argument("--old", default=None, help="the package to compare with (default: the bundled demo)")
    parser.add_argument("--extra", action="append", default=[], metavar="NAME=DIR",
                        help="another package to measure in the same run (repeatable)")
    parser.add_argument("--kits19", default=str(SHARED / "kits19"))
    parser.add_argument("--realct", default=str(SHARED / "realct"))
    parser.add_argument("--cache", default=None, help="folder keeping phantoms and per-package rows between runs")
    parser.add_argument("--out", default="benchmarks/results/demo_v2_accuracy.json")
    args = parser.parse_args()
    cache = Path(args.cache) if args.cache else None
    folders = {"old": Path(args.old) if args.old else bundled_package_path("demo"), "new": Path(args.new)}
    for extra in args.extra:
        name, _, folder = extra.partition("=")
        if not folder or name in folders:
            parser.error(f"--extra {extra!r}: expected NAME=DIR with a new NAME")
        folders[name] = Path(folder)
    summary, cases = {}, {}
    ct_path = Path(args.realct) / "ts_example_ct.nii.gz"
    for name, folder in folders.items():
        cases[name] = package_rows(name, folder, args, cache)
        summary[name] = {"package": str(folder), "default": summarize(cases[name], "default"),
                         "randomized": summarize(cases[name], "randomized")}
    for name, folder in folders.items():  # side by side, in this run
        if ct_path.exists():
            with Segmenter.load(folder, threads=2) as segmenter:
                summary[name]["real_ct"] = real_ct(segmenter, read_scan(ct_path),
                                                   read_label_map(Path(args.realct) / "ts_example_kidneys.nii.gz"))
        summary[name] |= network_facts(folder)
    Path(args.out).write_text(json.dumps({"machine": describe_machine(), "summary": summary, "cases": cases}, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
