"""`kitsrt bench`: where the time goes, per stage, backend and precision, next to the alternatives.

Each measurement runs in its own child process, so its peak RSS is its own and nothing is warm
that should not be. In one run, per case:
* the package (default: the bundled seed 002 cascade; ``--model``: a package of any kind) on each
  requested backend/precision: per-stage median and p95 over warm runs (read, each kind's own
  preprocessing / network / post-processing stages, write); ``networks`` sums the network stages;
* baseline (c): the bare decode of the input file (the floor no pipeline beats);
and for the default cascade only:
* baseline (b): the same cascade on the PyTorch eager backend (isolates the inference engine);
* baseline (a): the fine network over the WHOLE scan resampled to 1 mm with MONAI's
  ``sliding_window_inference`` (Gaussian, overlap 0.5), the usual way to run such a model. Unless
  ``full_baseline`` is set it is timed on a few windows and scaled by the exact window count (plus
  the measured whole-scan resampling), which can only flatter the baseline (blending is not counted).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from kitsrt.runtime.timing import NETWORK_STAGES, STAGES


def describe_machine() -> str:
    """CPU model, cores, memory and Python: the line every benchmark result carries."""
    cpu = platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        kb = int(meminfo.read_text().split("MemTotal:")[1].split()[0])
        memory = f", {kb / 2**20:.0f} GiB RAM"
    return f"{cpu}, {os.cpu_count()} cores{memory}, Python {platform.python_version()}, {platform.system()}"


def _peak_rss_bytes() -> int:
    """This process's peak resident set. VmHWM, not ru_maxrss: on Linux ru_maxrss survives exec and
    so reports the parent's peak (the phantom generation) in every child."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def cascade_child(scan_path: str, backend: str, precision: str, runs: int, threads: int,
                  model: str | None = None) -> dict:
    """Run in a child process: one warm-up then ``runs`` timed runs of the package ``model`` (None:
    the bundled cascade; any kind), end to end incl. write."""
    from kitsrt.io import read_scan
    from kitsrt.runtime.segmenter import Segmenter
    from kitsrt.runtime.timing import Timings

    segmenter = Segmenter.load(model, backend=backend, threads=threads, precision=precision)
    per_run = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(runs + 1):
            timings = Timings()
            start = time.perf_counter()
            with timings.timer("read"):
                scan = read_scan(scan_path)
            result = segmenter.segment(scan)
            with timings.timer("write"):
                result.write(Path(tmp) / "seg.nii.gz", overwrite=True)
            stages = {**result.report["timings_s"], **timings.as_dict()}
            stages["end_to_end"] = time.perf_counter() - start
            if run > 0:
                per_run.append(stages)
            kidney_found = result.kidney_found
            del scan, result  # one scan at a time, as in `kitsrt infer`: the next read must not stack on this one
    return {"runs": per_run, "peak_rss_bytes": _peak_rss_bytes(), "backend": segmenter.backend_name,
            "kidney_found": kidney_found}


def decode_child(scan_path: str, runs: int) -> dict:
    import SimpleITK as sitk

    seconds = []
    for _ in range(runs + 1):
        start = time.perf_counter()
        image = sitk.ReadImage(scan_path)
        seconds.append(time.perf_counter() - start)
    return {"seconds": seconds[1:], "voxels": int(np.prod(image.GetSize())), "peak_rss_bytes": _peak_rss_bytes()}


def sliding_window_child(scan_path: str, threads: int, windows: int, full: bool) -> dict:
    """Baseline (a): the fine net over the whole scan at 1 mm with MONAI (torch eager)."""
    from monai.inferers import sliding_window_inference

    from kitsrt.training import require_torch

    from kitsrt.models.weights import model_from_package
    from kitsrt.io import read_scan
    from kitsrt.runtime.package import load_package
    from kitsrt.runtime.preprocess import scan_box
    from kitsrt.runtime.regions import stage_input
    from kitsrt.runtime.sliding_window import tile_starts

    torch = require_torch()
    torch.set_num_threads(threads or torch.get_num_threads())
    package = load_package()
    stage = package.spec.fine
    fine = package.model_path(stage)
    model = model_from_package(fine.with_suffix(".weights.npz"), package.card(stage))
    patch = (96, 96, 96)
    start = time.perf_counter()
    scan = read_scan(scan_path)
    volume, _ = stage_input(scan, scan_box(scan.geometry), stage)  # the whole scan at the fine spacing
    prepare = time.perf_counter() - start
    count = int(np.prod([len(tile_starts(max(n, p), p, 0.5)) for n, p in zip(volume.shape, patch)]))
    x = torch.from_numpy(volume[None, None])
    with torch.inference_mode():
        if full:
            start = time.perf_counter()
            sliding_window_inference(x, patch, 1, model, overlap=0.5, mode="gaussian").argmax(1)
            inference, method = time.perf_counter() - start, "measured in full"
        else:
            rng = np.random.default_rng(0)
            tiles = [tuple(int(rng.integers(0, max(n - p, 0) + 1)) for n, p in zip(volume.shape, patch))
                     for _ in range(windows)]
            model(x[..., :patch[0], :patch[1], :patch[2]])  # warm-up
            start = time.perf_counter()
            for z, y, w in tiles:
                model(x[..., z:z + patch[0], y:y + patch[1], w:w + patch[2]])
            per_window = (time.perf_counter() - start) / windows
            inference, method = per_window * count, f"{windows} windows timed, scaled to {count}"
    return {"seconds": prepare + inference, "prepare_seconds": prepare, "inference_seconds": inference,
            "windows": count, "method": method, "grid_voxels": int(volume.size), "peak_rss_bytes": _peak_rss_bytes()}


def run_child(function: str, *args, module: str = "kitsrt.bench.latency") -> dict:
    """Call one of the ``*_child`` functions of ``module`` in a fresh Python process; return its dict."""
    code = (f"import json, sys; import {module} as b; "
            f"print('KITSRT_BENCH ' + json.dumps(b.{function}(*json.loads(sys.argv[1]))))")
    done = subprocess.run([sys.executable, "-c", code, json.dumps(list(args))], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark child {function} failed:\n{done.stderr[-3000:]}")
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("KITSRT_BENCH "))
    return json.loads(line[len("KITSRT_BENCH "):])


def summarize(runs: list[dict]) -> dict:
    keys = [s for s in (*STAGES, "end_to_end") if any(s in r for r in runs)]
    return {k: {"median_s": float(np.median([r.get(k, 0.0) for r in runs])),
                "p95_s": float(np.percentile([r.get(k, 0.0) for r in runs], 95))} for k in keys}


def outside_networks(summary: dict) -> float:
    return summary["end_to_end"]["median_s"] - sum(summary[s]["median_s"] for s in NETWORK_STAGES if s in summary)


def bench_configs(backends: list[str], precisions: list[str]) -> list[tuple[str, str]]:
    """(backend, precision) pairs to time, in order: every backend with every precision it offers
    (bf16 only where a backend applies it at run time; file precisions everywhere but FP16 on
    OpenVINO's CPU plugin, which computes an FP16 file in f32: its CPU half precision is bf16)."""
    from kitsrt.engines import RUNTIME_PRECISIONS

    return [(b, p) for b in backends for p in precisions
            if (p not in RUNTIME_PRECISIONS or b in RUNTIME_PRECISIONS[p]) and (b, p) != ("openvino", "fp16")]


def _networks_s(run: dict) -> float:
    return sum(run.get(s, 0.0) for s in NETWORK_STAGES)


def time_configs(case: str, scan_path: Path, keys: list[str], runs: int, rounds: int, threads: int,
                 progress=print, model: Path | None = None) -> dict:
    """Every ``backend/precision`` in ``keys``, each in its own child process per round, the configs
    interleaved round by round (so drift on a shared machine hits them alike): ``runs`` warm runs per
    config in all. A config that cannot run here is recorded with its reason, not timed."""
    per_round = max(1, -(-runs // rounds))
    raw: dict[str, dict] = {k: {"runs": [], "peak_rss_bytes": 0} for k in keys}
    for round_ in range(rounds):
        for key in keys:
            if "unavailable" in raw[key]:
                continue
            progress(f"{case}: {'cascade' if model is None else model.name} {key} (round {round_ + 1}/{rounds})")
            try:
                child = run_child("cascade_child", str(scan_path), *key.split("/"), per_round, threads,
                                  None if model is None else str(model))
            except RuntimeError as exc:
                raw[key]["unavailable"] = str(exc).strip().splitlines()[-1][:300]
                continue
            raw[key]["runs"] += child["runs"]
            raw[key]["peak_rss_bytes"] = max(raw[key]["peak_rss_bytes"], child["peak_rss_bytes"])
            raw[key].update(backend=child["backend"], kidney_found=child["kidney_found"])
    results = {}
    for key, r in raw.items():
        if "unavailable" in r:
            results[key] = {"unavailable": r["unavailable"]}
            continue
        stages = summarize(r["runs"])
        stages["networks"] = {"median_s": float(np.median([_networks_s(x) for x in r["runs"]])),
                              "p95_s": float(np.percentile([_networks_s(x) for x in r["runs"]], 95))}
        results[key] = {"stages": stages, "peak_rss_bytes": r["peak_rss_bytes"], "backend": r["backend"],
                        "kidney_found": r["kidney_found"], "runs": len(r["runs"])}
    return results


def bench_case(case: str, scan_path: Path, configs: list[tuple[str, str]], runs: int, threads: int,
               baseline_windows: int, full_baseline: bool, progress=print, rounds: int = 1,
               model: Path | None = None) -> dict:
    """All measurements of one case. ``configs`` lists (backend, precision); the first is the subject.
    Ratios to the subject (``vs_subject``) compare medians from the same interleaved rounds. ``model``
    None: the bundled cascade with its baselines (torch eager, whole-scan sliding window); a package
    of any kind: its configurations and the bare decode only."""
    progress(f"{case}: decode")
    decode = run_child("decode_child", str(scan_path), runs)
    baselines = model is None
    keys = list(dict.fromkeys([f"{b}/{p}" for b, p in configs] + (["torch/fp32"] if baselines else [])))
    results = time_configs(case, scan_path, keys, runs, rounds, threads, progress, model)
    window = None
    if baselines:
        progress(f"{case}: baseline sliding window")
        window = run_child("sliding_window_child", str(scan_path), threads, baseline_windows, full_baseline)
    subject_key = keys[0]
    subject = results[subject_key]
    if "unavailable" in subject:
        raise RuntimeError(f"{case}: the subject {subject_key} could not run: {subject['unavailable']}")
    e2e = subject["stages"]["end_to_end"]["median_s"]
    decode_s = float(np.median(decode["seconds"]))
    for key, r in results.items():
        if "stages" in r:
            r["vs_subject"] = {s: r["stages"][s]["median_s"] / subject["stages"][s]["median_s"]
                               for s in ("end_to_end", "networks")}
            r["outside_networks_vs_decode"] = outside_networks(r["stages"]) / decode_s
    torch_eager = results.get("torch/fp32", {}).get("stages")
    return {
        "case": case, "input": str(scan_path), "voxels": decode["voxels"], "subject": subject_key,
        "package": "bundled demo (cascade)" if model is None else str(model),
        "speedup_vs_sliding_window": window["seconds"] / e2e if window else None,
        "speedup_vs_torch_eager": torch_eager["end_to_end"]["median_s"] / e2e if baselines and torch_eager else None,
        "outside_networks_vs_decode": outside_networks(subject["stages"]) / decode_s,
        "peak_rss_bytes": subject["peak_rss_bytes"],
        "rss_budget_bytes": 2 * decode["voxels"] + 2**30,
        "decode_s": decode_s, "configs": results, "sliding_window_baseline": window,
    }


# -- cases and reports ------------------------------------------------------------------------------

KITS19_BENCH_CASES = {"small": "case_00021", "median": "case_00040", "largest": "case_00156"}


def bench_scans(kits19: Path | None, work: Path, quick: bool) -> list[tuple[str, Path]]:
    """(name, CT path) of the phantoms to time: the shared KiTS19 geometries when present (a small
    5 mm case, a median case and the largest), else procedural stand-ins; ``quick``: one tiny case."""
    from kitsrt.io import read_label_map, write_image
    from kitsrt.phantom import procedural_label_map, synthesize_ct

    work.mkdir(parents=True, exist_ok=True)
    if quick:
        plan = {"tiny": procedural_label_map((96, 96, 40), (4.0, 4.0, 6.0), seed=1)}
    elif kits19 is not None and (kits19 / KITS19_BENCH_CASES["largest"]).exists():
        plan = {f"{k} ({c})": kits19 / c / "segmentation.nii.gz" for k, c in KITS19_BENCH_CASES.items()}
    else:
        plan = {"small (procedural 512x512x40, 5 mm)": ((512, 512, 40), (0.8, 0.8, 5.0)),
                "median (procedural 512x512x200, 2 mm)": ((512, 512, 200), (0.75, 0.75, 2.0)),
                "largest (procedural 512x512x900, 0.5 mm)": ((512, 512, 900), (0.8, 0.8, 0.5))}
    scans = []
    for n, (name, source) in enumerate(plan.items()):
        path = work / f"bench_{n}.nii.gz"
        if not path.exists():
            if isinstance(source, Path):
                labels = read_label_map(source)
            elif isinstance(source, tuple):
                labels = procedural_label_map(source[0], source[1], seed=n)
            else:
                labels = source
            write_image(synthesize_ct(labels, seed=n).image, path, overwrite=True)
        scans.append((name, path))
    return scans


def _subject_line(case: dict) -> str:
    package = case.get("package", "bundled demo (cascade)")
    return f"cascade {case['subject']}" if package.startswith("bundled demo") else f"{package} {case['subject']}"


def _baseline_text(case: dict) -> str:
    """The cascade's baselines, where they ran (the bundled demo only)."""
    if case.get("speedup_vs_sliding_window") is None:
        return ""
    return (f"{case['speedup_vs_sliding_window']:.0f}x faster than whole-scan sliding window "
            f"({case['sliding_window_baseline']['method']}); {case['speedup_vs_torch_eager']:.2f}x faster "
            "than the torch eager cascade; ")


def markdown_table(report: dict) -> str:
    lines = [f"Machine: {report['machine']}. {report['runs']} warm runs per configuration; medians (p95) in "
             "seconds.", ""]
    for case in report["cases"]:
        subject = case["configs"][case["subject"]]
        lines += [f"**{case['case']}**, {case['voxels'] / 1e6:.0f} M voxels: {_subject_line(case)} "
                  f"{subject['stages']['end_to_end']['median_s']:.2f} s end to end; {_baseline_text(case)}"
                  f"outside the networks {case['outside_networks_vs_decode']:.2f}x "
                  f"the bare decode ({case['decode_s']:.2f} s); peak RSS {case['peak_rss_bytes'] / 2**30:.2f} GiB "
                  f"(budget {case['rss_budget_bytes'] / 2**30:.2f} GiB).", ""]
        lines += ["| configuration | end to end (s) | networks (s) | end to end vs subject | networks vs subject "
                  "| outside networks vs decode | peak RSS (GiB) |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for key, r in case["configs"].items():
            if "unavailable" in r:
                lines.append(f"| {key} | not run: {r['unavailable']} | | | | | |")
                continue
            st = r["stages"]
            lines.append(f"| {key} | {st['end_to_end']['median_s']:.2f} | {st['networks']['median_s']:.2f} | "
                         f"{r['vs_subject']['end_to_end']:.2f} | {r['vs_subject']['networks']:.2f} | "
                         f"{r['outside_networks_vs_decode']:.2f} | {r['peak_rss_bytes'] / 2**30:.2f} |")
        lines.append("")
        configs = [k for k, r in case["configs"].items() if "stages" in r]
        lines.append("| stage | " + " | ".join(configs) + " |")
        lines.append("| --- |" + " ---: |" * len(configs))
        for stage in (*STAGES, "networks", "end_to_end"):
            if not any(stage in case["configs"][key]["stages"] for key in configs):
                continue  # another pipeline kind's stage
            cells = []
            for key in configs:
                s = case["configs"][key]["stages"].get(stage)
                cells.append("" if s is None else f"{s['median_s']:.3f} ({s['p95_s']:.3f})")
            lines.append(f"| {stage} | " + " | ".join(cells) + " |")
        lines.append("")
    if "throughput" in report:
        from kitsrt.bench.throughput import throughput_table

        lines.append(throughput_table(report["throughput"]))
    return "\n".join(lines)


def plot_png(report: dict, path: Path) -> bool:
    """Stacked per-stage bars, one per case and configuration. False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    labels, rows = [], []
    for case in report["cases"]:
        for key, config in case["configs"].items():
            if "stages" not in config:
                continue
            labels.append(f"{case['case'].split(' ')[0]}\n{key}")
            rows.append([config["stages"].get(s, {"median_s": 0.0})["median_s"] for s in STAGES])
    data = np.array(rows)
    fig, ax = plt.subplots(figsize=(10, 0.6 * len(labels) + 1.5))
    left = np.zeros(len(labels))
    for i, stage in enumerate(STAGES):
        ax.barh(labels, data[:, i], left=left, label=stage)
        left += data[:, i]
    ax.set_xlabel("median seconds per scan")
    ax.invert_yaxis()
    ax.legend(ncol=4, fontsize=8, loc="lower right")
    what = report.get("package", {}).get("kind", "cascade")
    ax.set_title(f"kitsrt {what}, per stage ({report['machine']})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
