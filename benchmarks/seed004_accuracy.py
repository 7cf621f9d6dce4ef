"""The seed 004 demo (nested V-Nets) next to the seed 002 demo (VB-Net cascade), on the same held-out
phantoms in one run: KiTS19 Dice per case and end-to-end latency (onnxruntime CPU, median of warm runs).

Cases: phantoms of held-out KiTS19 label maps (phantom seed = case number; neither demo trained on
them) and procedural phantoms (seeds 1000.., as ``demo_accuracy.py``). Phantom CTs are cached in
``--cache`` so a rerun reads identical inputs.

    python benchmarks/seed004_accuracy.py --cases case_00021,case_00055 --procedural 4
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from kitsrt.bench.latency import describe_machine
from kitsrt.io import read_label_map, read_scan, write_image
from kitsrt.eval.metrics import score_case
from kitsrt.phantom import procedural_label_map, synthesize_ct
from kitsrt.runtime.package import bundled_package_path
from kitsrt.runtime.segmenter import Segmenter

KITS19 = Path(__file__).resolve().parents[2] / "shared" / "data" / "kits19"
SEED004 = bundled_package_path("seed004_demo")


def cases(names: list[str], procedural: int, cache: Path):
    """Yield (name, CT Scan, label Scan), building and caching each phantom once."""
    cache.mkdir(parents=True, exist_ok=True)
    for name in names:
        labels = read_label_map(KITS19 / name / "segmentation.nii.gz")
        path = cache / f"{name}_ct.nii.gz"
        if not path.exists():
            write_image(synthesize_ct(labels, seed=int(name.split("_")[1])).image, path)
        yield name, read_scan(path), labels
    for seed in range(1000, 1000 + procedural):
        labels = procedural_label_map((256, 256, 96), (1.6, 1.6, 3.0), seed=seed)
        path = cache / f"procedural_{seed}_ct.nii.gz"
        if not path.exists():
            write_image(synthesize_ct(labels, seed=seed).image, path)
        yield f"procedural_{seed}", read_scan(path), labels


def timed(segmenter: Segmenter, ct, runs: int):
    seconds = []
    for _ in range(runs + 1):  # one warm-up
        start = time.perf_counter()
        result = segmenter.segment(ct)
        seconds.append(time.perf_counter() - start)
    return result, float(np.median(seconds[1:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="case_00021,case_00055")
    parser.add_argument("--procedural", type=int, default=4)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=Path("work/seed004_eval"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/seed004_accuracy.json"))
    args = parser.parse_args()
    packages = {"seed002_demo": None, "seed004_demo": SEED004}
    segmenters = {name: Segmenter.load(path, threads=args.threads) for name, path in packages.items()}
    rows = []
    for name, ct, labels in cases([c for c in args.cases.split(",") if c], args.procedural, args.cache):
        row = {"case": name, "size": list(ct.geometry.size), "spacing_mm": list(ct.geometry.spacing_mm)}
        for package, segmenter in segmenters.items():
            result, seconds = timed(segmenter, ct, args.runs)
            score = score_case(result.labels, labels.array, labels.geometry.array_spacing_mm, case=name).as_dict()
            row[package] = {"seconds": round(seconds, 3), "geometry_equal": result.geometry == ct.geometry,
                            **{k: score[k] for k in ("kidney_dice", "tumor_dice", "composite_dice")}}
        rows.append(row)
        print(json.dumps(row), flush=True)
    summary = {package: {key: float(np.mean([r[package][key] for r in rows]))
                         for key in ("kidney_dice", "tumor_dice", "composite_dice", "seconds")}
               for package in packages}
    for package in packages:
        summary[package]["median_seconds"] = float(np.median([r[package]["seconds"] for r in rows]))
        summary[package]["all_geometry_equal"] = all(r[package]["geometry_equal"] for r in rows)
    for segmenter in segmenters.values():
        segmenter.close()
    args.out.write_text(json.dumps({"machine": describe_machine(), "threads": args.threads, "runs": args.runs,
                                    "summary": summary, "cases": rows}, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
