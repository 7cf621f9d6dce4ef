"""What compiling per input shape costs and gains in OpenVINO, on the shapes a real cascade asks for.

The cascade's fine net sees a new shape per VOI (and per growth step), so the OpenVINO backend's
per-shape compile cache (``kitsrt.engines.openvino_backend``) pays a compile the first time each
shape comes. This runs the cascade once on a scan to record the (network, shape) calls it makes, then,
for those exact shapes and interleaved: one model compiled with dynamic shapes (compiled once at
load) against one compiled per static shape (compile time, first call, warm calls).

    python benchmarks/openvino_shapes.py SCAN [--runs 3] [--out benchmarks/results/openvino_shapes.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import openvino as ov

from kitsrt.bench.latency import describe_machine
from kitsrt.engines.openvino_backend import OpenVINOBackend, compile_config, compile_for_shape
from kitsrt.io import read_scan
from kitsrt.runtime.segmenter import Segmenter

THREADS = 2


def cascade_calls(scan_path: str) -> list[tuple[str, tuple[int, ...]]]:
    """(model file, input shape) of every network call one cascade makes on the scan, in order."""
    calls = []
    original = OpenVINOBackend._infer

    def recording(self, feed):
        calls.append((self.model_path, tuple(next(iter(feed.values())).shape)))
        return original(self, feed)

    OpenVINOBackend._infer = recording
    try:
        with Segmenter.load(backend="openvino", threads=THREADS) as segmenter:
            segmenter.segment(read_scan(scan_path))
    finally:
        OpenVINOBackend._infer = original
    return calls


def timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("scan")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/openvino_shapes.json")
    args = parser.parse_args()
    calls = cascade_calls(args.scan)
    core, config = ov.Core(), compile_config(THREADS, "fp32")
    rows = []
    for path in sorted({p for p, _ in calls}):
        model = core.read_model(path)
        start = time.perf_counter()
        dynamic = core.compile_model(model, "CPU", config).create_infer_request()
        load_dynamic = time.perf_counter() - start
        for shape in [s for p, s in calls if p == path]:
            x = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
            start = time.perf_counter()
            static = compile_for_shape(core, model, shape, config).create_infer_request()
            compile_s = time.perf_counter() - start
            first = {"static": timed(lambda: static.infer({0: x})), "dynamic": timed(lambda: dynamic.infer({0: x}))}
            warm = {"static": [], "dynamic": []}
            for _ in range(args.runs):
                for kind, request in (("static", static), ("dynamic", dynamic)):
                    warm[kind].append(timed(lambda r=request: r.infer({0: x})))
            rows.append({"model": Path(path).name, "shape": list(shape), "static_compile_s": compile_s,
                         "dynamic_compile_once_s": load_dynamic, "first_call_s": first,
                         "warm_median_s": {k: float(np.median(v)) for k, v in warm.items()}})
    first_scan = {"static": sum(r["static_compile_s"] + r["first_call_s"]["static"] for r in rows),
                  "dynamic": sum(r["first_call_s"]["dynamic"] for r in rows)}
    warm_scan = {k: sum(r["warm_median_s"][k] for r in rows) for k in ("static", "dynamic")}
    report = {"machine": describe_machine(), "scan": args.scan, "threads": THREADS, "calls": len(calls),
              "first_scan_network_s": first_scan, "warm_scan_network_s": warm_scan, "rows": rows}
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: report[k] for k in ("calls", "first_scan_network_s", "warm_scan_network_s")}, indent=1))


if __name__ == "__main__":
    main()
