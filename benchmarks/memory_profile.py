"""Peak RSS and seconds per stage of the cascade, for source trees side by side (before / after a change).

Each (tree, backend, precision) runs in its own child process with ``PYTHONPATH=tree``: load the
Segmenter, then ``--runs`` times read the scan, segment it and write the label map, as ``kitsrt bench``'s
``cascade_child`` does (the first run is the warm-up). Around every stage the child reads its peak
resident set (``VmHWM`` in ``/proc/self/status``) and resets it (``echo 5 > /proc/self/clear_refs``),
so each stage's peak is its own; the time between stages is measured the same way ("between"). The
process's peak is the largest of them. Seconds per stage are those of the last run, with the bare
decode of the file (``sitk.ReadImage``) timed in the same child, so that "outside the networks vs
decode" (``kitsrt bench``'s ratio) compares figures taken moments apart. Trees are interleaved so
that load on a shared machine hits them alike. Linux only.

    python benchmarks/memory_profile.py SCAN --tree before=/tmp/before --tree after=. \
        --config openvino/fp32 [--runs 2] [--out benchmarks/results/memory_profile.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MARK = "KITSRT_MEMORY "


def _hwm_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _reset_hwm() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def child(scan_path: str, backend: str, precision: str, threads: int, runs: int) -> dict:
    """In the child: per-stage peak RSS (bytes) of the last run, and the process peak over all runs."""
    from kitsrt.io import read_scan
    from kitsrt.runtime import timing
    from kitsrt.runtime.segmenter import Segmenter

    peaks: dict[str, int] = {}
    cpu: dict[str, float] = {}  # process CPU seconds per stage (all threads): steadier than wall time under load
    original = timing.Timings.timer

    @contextlib.contextmanager
    def measured(self, stage):
        peaks["between"] = max(peaks.get("between", 0), _hwm_bytes())
        _reset_hwm()
        start = time.process_time()
        with original(self, stage):
            yield
        cpu[stage] = cpu.get(stage, 0.0) + time.process_time() - start
        peaks[stage] = max(peaks.get(stage, 0), _hwm_bytes())
        _reset_hwm()

    timing.Timings.timer = measured
    load_peak = _hwm_bytes()
    segmenter = Segmenter.load(backend=backend, threads=threads, precision=precision)
    seconds, stages = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(runs):
            peaks.clear()
            cpu.clear()
            timings = timing.Timings()
            start, cpu_start = time.perf_counter(), time.process_time()
            with timings.timer("read"):
                scan = read_scan(scan_path)
            result = segmenter.segment(scan)
            with timings.timer("write"):
                result.write(Path(tmp) / "seg.nii.gz", overwrite=True)
            seconds.append(time.perf_counter() - start)
            cpu_total = time.process_time() - cpu_start
            stages = {**result.report["timings_s"], **timings.as_dict()}
            voxels = scan.image.GetNumberOfPixels()
            del scan, result
            peaks["between"] = max(peaks.get("between", 0), _hwm_bytes())
    import SimpleITK as sitk

    start, cpu_start = time.perf_counter(), time.process_time()
    sitk.ReadImage(scan_path)
    decode_s, decode_cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
    outside_s = seconds[-1] - stages.get("coarse_net", 0.0) - stages.get("fine_net", 0.0)
    outside_cpu_s = cpu_total - cpu.get("coarse_net", 0.0) - cpu.get("fine_net", 0.0)
    return {"stage_peak_bytes": peaks, "peak_bytes": max(max(peaks.values()), load_peak),
            "seconds": seconds, "stage_seconds": stages, "decode_s": decode_s, "outside_networks_s": outside_s,
            "outside_networks_vs_decode": outside_s / decode_s, "stage_cpu_s": cpu, "decode_cpu_s": decode_cpu_s,
            "outside_networks_cpu_s": outside_cpu_s, "outside_networks_cpu_vs_decode": outside_cpu_s / decode_cpu_s,
            "voxels": voxels, "backend": segmenter.backend_name}


def run_child(tree: str, scan: str, config: str, threads: int, runs: int) -> dict:
    backend, precision = config.split("/")
    env = {**os.environ, "PYTHONPATH": str(Path(tree).resolve())}
    args = json.dumps([scan, backend, precision, threads, runs])
    done = subprocess.run([sys.executable, __file__, "--child", args], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"child failed for {tree}:\n{done.stderr[-2000:]}")
    return json.loads(next(ln for ln in done.stdout.splitlines() if ln.startswith(MARK))[len(MARK):])


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        print(MARK + json.dumps(child(*json.loads(sys.argv[2]))))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("scan")
    parser.add_argument("--tree", action="append", required=True, help="NAME=PATH of a kitsrt source tree")
    parser.add_argument("--config", action="append", default=None, help="backend/precision (repeatable)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=2, help="runs per child, the first a warm-up")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--out", default="benchmarks/results/memory_profile.json")
    args = parser.parse_args()
    from kitsrt.bench.latency import describe_machine

    trees = dict(t.split("=", 1) for t in args.tree)
    configs = args.config or ["openvino/fp32"]
    results: dict[str, list] = {f"{name} {c}": [] for c in configs for name in trees}
    for _ in range(args.rounds):
        for config in configs:
            for name, tree in trees.items():
                r = run_child(tree, args.scan, config, args.threads, args.runs)
                results[f"{name} {config}"].append(r)
                budget = 2 * r["voxels"] + 2**30
                print(f"{name:8s} {config:18s} peak {r['peak_bytes'] / 2**30:.3f} GiB (budget {budget / 2**30:.3f}); "
                      + ", ".join(f"{s} {b / 2**30:.2f}" for s, b in r["stage_peak_bytes"].items())
                      + f"\n{'':27s} outside networks {r['outside_networks_s']:.2f} s = "
                      f"{r['outside_networks_vs_decode']:.2f}x decode ({r['decode_s']:.2f} s); CPU: outside "
                      f"{r['outside_networks_cpu_s']:.2f} s = {r['outside_networks_cpu_vs_decode']:.2f}x decode "
                      f"({r['decode_cpu_s']:.2f} s); "
                      + ", ".join(f"{s} {v:.2f}" for s, v in r["stage_seconds"].items()), flush=True)
    report = {"machine": describe_machine(), "scan": args.scan, "threads": args.threads, "runs": args.runs,
              "trees": {name: subprocess.run(["git", "-C", tree, "rev-parse", "--short", "HEAD"], capture_output=True,
                                             text=True).stdout.strip() or tree for name, tree in trees.items()},
              "load_average": os.getloadavg(), "results": results}
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
