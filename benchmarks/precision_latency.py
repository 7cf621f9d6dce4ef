"""Per-stage latency of the demo cascade in each precision, side by side in one run (onnxruntime CPU).

FP32, FP16 and INT8 Segmenters are loaded in turn, twice over (to even out drift), each with one
warm-up and ``--runs`` timed runs; medians per stage.

    python benchmarks/precision_latency.py SCAN [--runs 3] [--out benchmarks/results/precision_latency.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from kitsrt.bench.latency import describe_machine
from kitsrt.io import read_scan
from kitsrt.runtime.segmenter import Segmenter

PRECISIONS = ("fp32", "fp16", "int8")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("scan")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/precision_latency.json")
    args = parser.parse_args()
    scan = read_scan(args.scan)
    timings: dict[str, list[dict]] = {p: [] for p in PRECISIONS}
    for _ in range(2):
        for precision in PRECISIONS:
            with Segmenter.load(threads=args.threads, precision=precision) as segmenter:
                segmenter.segment(scan)
                timings[precision] += [segmenter.segment(scan).report["timings_s"] for _ in range(args.runs)]
    medians = {p: {stage: statistics.median(run[stage] for run in runs) for stage in runs[0]}
               for p, runs in timings.items()}
    for p in PRECISIONS:
        medians[p]["networks"] = medians[p]["coarse_net"] + medians[p]["fine_net"]
    ratios = {p: {stage: medians[p][stage] / medians["fp32"][stage] for stage in ("coarse_net", "fine_net", "networks")}
              for p in PRECISIONS[1:]}
    report = {"machine": describe_machine(), "scan_size_ijk": list(scan.geometry.size),
              "threads": args.threads, "runs_per_precision": 2 * args.runs,
              "median_s": medians, "time_vs_fp32": ratios}
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({"machine": report["machine"], "time_vs_fp32": ratios}, indent=1))


if __name__ == "__main__":
    main()
