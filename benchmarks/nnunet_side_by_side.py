"""nnU-Net's own CPU predictor (``nnUNetv2_predict -device cpu``) and the imported kitsrt package on
the same scans, one run: label-map agreement, end-to-end wall time and peak RSS of each, and where
the time goes in both.

    python benchmarks/nnunet_side_by_side.py --work work/nnunet_bench [--cases small,median,largest] [--tta on,off]
        [--threads 2]

The model folder is the test's (tests/nnunet_model.py: nnU-Net's fingerprint, plans and preprocessing
on procedural phantoms, the stock trainer's checkpoints, two folds; its network is small: patch
24x48x56 at 8x6x6 mm, 4-16 features), so the figures measure nnU-Net's pipeline around a small
network (reading, preprocessing, resampling back, writing, start-up), not a full-size U-Net. Scans:
phantoms at the geometries of the shared KiTS19 label maps (small: case_00021, median: case_00040,
largest: case_00156) when present, else procedural stand-ins. Each tool runs as a child process
with the same thread count; peak RSS is the largest sum of VmRSS over the child's process tree,
sampled every 20 ms; the 1-minute load average is sampled alongside (the machine may be shared).

Where the time goes: kitsrt's stages come from its report (``--report``, the same run); for nnU-Net a
third child process, benchmarks/nnunet_stages.py, makes the same calls as ``nnUNetv2_predict`` in one
process and times each (start-up, read, preprocess, network, export, write); its label map is
compared with the CLI's to show the settings are the same. The CLI's wall time minus that run's
stages is, roughly, what the CLI's worker processes cost (spawning, handing arrays over).
Each case's rows are written to benchmarks/results/nnunet_side_by_side.{json,md} as soon as they are
measured (rows of other cases from earlier runs are kept, each row names its run).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[1]
KITS19 = Path(os.environ.get("KITSRT_KITS19_DIR", REPO.parent / "shared" / "data" / "kits19"))
CASES = {"small": "case_00021", "median": "case_00040", "largest": "case_00156"}
STAND_INS = {"small": ((512, 512, 40), (0.8, 0.8, 5.0)), "median": ((512, 512, 200), (0.75, 0.75, 2.0)),
             "largest": ((512, 512, 900), (0.8, 0.8, 0.5))}


def _tree_rss_bytes(root: int) -> int:
    children: dict[int, list[int]] = {}
    rss = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        pid, ppid = int(entry.name), int(fields.get("PPid", "0").strip() or 0)
        children.setdefault(ppid, []).append(pid)
        rss[pid] = int(fields.get("VmRSS", "0 kB").split()[0]) * 1024 if "VmRSS" in fields else 0
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


def measure(command: list[str], env: dict) -> dict:
    """Run ``command``; wall seconds, peak process-tree RSS, the 1-minute load average (mean and max
    of samples taken once a second) and the last line of its stdout."""
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               encoding="utf-8", errors="replace")
    peak, loads = [0], [os.getloadavg()[0]]

    def sample():
        last = time.perf_counter()
        while process.poll() is None:
            peak[0] = max(peak[0], _tree_rss_bytes(process.pid))
            if time.perf_counter() - last >= 1.0:
                loads.append(os.getloadavg()[0])
                last = time.perf_counter()
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = process.communicate()
    wall = time.perf_counter() - start
    sampler.join()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])} failed: {stderr[-2000:]}")
    lines = stdout.strip().splitlines()
    return {"wall_s": round(wall, 2), "peak_rss_gib": round(peak[0] / 2**30, 3),
            "load_1min": {"mean": round(sum(loads) / len(loads), 2), "max": round(max(loads), 2)},
            "last_line": lines[-1] if lines else ""}


def scan_for(name: str, work: Path) -> Path:
    from kitsrt.io import read_label_map, write_image
    from kitsrt.phantom import procedural_label_map, synthesize_ct

    path = work / "scans" / name / f"{name}_0000.nii.gz"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        label_path = KITS19 / CASES[name] / "segmentation.nii.gz"
        labels = (read_label_map(label_path) if label_path.exists()
                  else procedural_label_map(*STAND_INS[name], seed=3))
        write_image(synthesize_ct(labels, seed=3).image, path, overwrite=True)
    return path


def kitsrt_stages(report: Path, wall_s: float) -> dict:
    """kitsrt's stage seconds from its report; ``start-up and rest`` is the wall time they leave
    (interpreter, imports, loading the networks)."""
    timings = json.loads(report.read_text())["timings_s"]
    stages = {k: round(v, 2) for k, v in timings.items()}
    stages["start-up and rest"] = round(wall_s - sum(timings.values()), 2)
    return stages


def agreement(a: Path, b: Path) -> dict:
    x, y = (sitk.GetArrayFromImage(sitk.ReadImage(str(p))) for p in (a, b))
    dice = {}
    for c in (1, 2):
        both = np.count_nonzero((x == c) & (y == c))
        total = np.count_nonzero(x == c) + np.count_nonzero(y == c)
        dice[str(c)] = round(2 * both / total, 5) if total else 1.0
    return {"dice_per_label": dice, "voxel_agreement": round(float(np.mean(x == y)), 6)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, default=Path("work/nnunet_bench"))
    parser.add_argument("--cases", default="small,median")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tta", default="on,off", help="on, off or on,off")
    args = parser.parse_args()
    work = args.work.resolve()
    env = dict(os.environ, PYTHONPATH=str(REPO), nnUNet_compile="false", OMP_NUM_THREADS=str(args.threads),
               nnUNet_raw=str(work / "nnunet" / "raw"), nnUNet_preprocessed=str(work / "nnunet" / "preprocessed"),
               nnUNet_results=str(work / "nnunet" / "results"))
    model = work / "nnunet" / "results" / "Dataset501_KitsPhantom" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    if not model.exists():
        subprocess.run([sys.executable, str(REPO / "tests" / "nnunet_model.py"), "build", str(work / "nnunet"),
                        "--regions"], env=env, check=True, capture_output=True)
    bin_dir = Path(sys.executable).parent
    packages = {}
    for tta in (True, False):
        packages[tta] = work / f"package_tta_{'on' if tta else 'off'}"
        if not packages[tta].exists():
            subprocess.run([str(bin_dir / "kitsrt"), "import", "nnunet", str(model), "-o", str(packages[tta]),
                            "--mirroring" if tta else "--no-mirroring"], env=env, check=True, capture_output=True)
    run_started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows = []
    for name in args.cases.split(","):
        scan = scan_for(name, work)
        for tta in [setting == "on" for setting in args.tta.split(",")]:
            rows.append(measure_case(name, scan, tta, model, packages[tta], work, env, args.threads))
            rows[-1]["run_started"] = run_started
            print(json.dumps(rows[-1]), flush=True)
            write_results(rows, args.threads)


def measure_case(name: str, scan: Path, tta: bool, model: Path, package: Path, work: Path, env: dict,
                 threads: int) -> dict:
    """nnU-Net's CLI, kitsrt, then nnU-Net's stages in one process, one after the other on ``scan``."""
    bin_dir = Path(sys.executable).parent
    out = work / "out" / f"{name}_tta_{'on' if tta else 'off'}"
    out.mkdir(parents=True, exist_ok=True)
    nnunet_cmd = [str(bin_dir / "nnUNetv2_predict"), "-i", str(scan.parent), "-o", str(out / "nnunet"),
                  "-d", "501", "-c", "3d_fullres", "-f", "0", "1", "-device", "cpu", "-npp", "1",
                  "-nps", "1"] + ([] if tta else ["--disable_tta"])
    kitsrt_out, kitsrt_report = out / "kitsrt.nii.gz", out / "kitsrt_report.json"
    kitsrt_cmd = [str(bin_dir / "kitsrt"), "infer", str(scan), "-o", str(kitsrt_out), "--model", str(package),
                  "--threads", str(threads), "--overwrite", "--quiet", "--report", str(kitsrt_report)]
    nnunet = measure(nnunet_cmd, env)
    kitsrt = measure(kitsrt_cmd, env)
    kitsrt["stages_s"] = kitsrt_stages(kitsrt_report, kitsrt["wall_s"])
    staged_out = out / "nnunet_stages" / name
    staged_out.parent.mkdir(parents=True, exist_ok=True)
    staged_cmd = [sys.executable, str(REPO / "benchmarks" / "nnunet_stages.py"), str(model), str(scan),
                  str(staged_out), "--folds", "0", "1", "--launched", str(time.time())] + \
        ([] if tta else ["--disable-tta"])
    staged = measure(staged_cmd, env)
    staged["stages_s"] = json.loads(staged.pop("last_line"))
    staged["voxel_agreement_with_cli"] = agreement(out / "nnunet" / f"{name}.nii.gz",
                                                   staged_out.with_suffix(".nii.gz"))["voxel_agreement"]
    for run in (nnunet, kitsrt):
        run.pop("last_line")
    return {"case": name, "voxels": int(np.prod(sitk.ReadImage(str(scan)).GetSize())), "tta": tta,
            "nnunet": nnunet, "kitsrt": kitsrt, "nnunet_in_one_process": staged,
            "time_ratio": round(nnunet["wall_s"] / kitsrt["wall_s"], 2),
            **agreement(out / "nnunet" / f"{name}.nii.gz", kitsrt_out)}


def write_results(rows: list[dict], threads: int) -> None:
    """Merge ``rows`` into benchmarks/results/nnunet_side_by_side.json (rows of other cases from
    earlier runs kept) and write the Markdown tables."""
    results = REPO / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    path = results / "nnunet_side_by_side.json"
    done = {(r["case"], r["tta"]) for r in rows}
    kept = [r for r in json.loads(path.read_text())["rows"] if (r["case"], r["tta"]) not in done] \
        if path.exists() else []
    merged = sorted(kept + rows, key=lambda r: (list(CASES).index(r["case"]), not r["tta"]))
    machine = f"{cpu_name()}, {os.cpu_count()} cores shared with other jobs (load: see each row), Linux"
    path.write_text(json.dumps({"threads": threads, "machine": machine, "rows": merged}, indent=2) + "\n")
    (results / "nnunet_side_by_side.md").write_text(markdown(merged))


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def markdown(rows: list[dict]) -> str:
    """The comparison table and the two stage splits (seconds) as Markdown."""
    lines = ["| case | voxels | TTA | nnU-Net s | kitsrt s | time ratio | nnU-Net peak RSS GiB | kitsrt peak RSS GiB "
             "| Dice label 1 / 2 | voxel agreement | load 1-min mean (max) | run |",
             "|---|---:|---|---:|---:|---:|---:|---:|---|---:|---|---|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['voxels'] / 1e6:.0f} M | {'on' if r['tta'] else 'off'} | "
                     f"{r['nnunet']['wall_s']} | {r['kitsrt']['wall_s']} | {r['time_ratio']}x | "
                     f"{r['nnunet']['peak_rss_gib']} | {r['kitsrt']['peak_rss_gib']} | "
                     f"{r['dice_per_label']['1']} / {r['dice_per_label']['2']} | {r['voxel_agreement']} | "
                     f"{_load(r)} | {r.get('run_started', 'earlier')} |")
    split = [r for r in rows if "nnunet_in_one_process" in r]
    if split:
        columns = ["start-up", "read", "preprocess", "network", "export", "report statistics", "write"]
        n_stages = ["start-up", "read", "preprocess", "network", "export", None, "write"]  # it writes no report
        k_stages = ["start-up and rest", "read", "preprocess", "network", "postprocess", "measure", "write"]
        lines += ["", "Where the time goes (s). nnU-Net: the same calls in one process "
                  "(benchmarks/nnunet_stages.py), its wall time and peak RSS, and the CLI's wall time minus "
                  "that run's stages (its worker processes); kitsrt: its report's stages in the measured run.", "",
                  "| case | TTA | tool | " + " | ".join(columns) + " | wall | peak RSS GiB | CLI minus stages |",
                  "|---|---|---|" + "---:|" * (len(columns) + 3)]
        for r in split:
            staged = r["nnunet_in_one_process"]
            stages = staged["stages_s"]
            workers = round(r["nnunet"]["wall_s"] - sum(stages.values()), 1)
            tta = "on" if r["tta"] else "off"
            lines.append(f"| {r['case']} | {tta} | nnU-Net | " + " | ".join(str(stages[s]) if s else "-" for s in n_stages)
                         + f" | {staged['wall_s']} | {staged['peak_rss_gib']} | {workers} |")
            k = r["kitsrt"]["stages_s"]
            lines.append(f"| {r['case']} | {tta} | kitsrt | " + " | ".join(str(k.get(s, '')) for s in k_stages)
                         + f" | {r['kitsrt']['wall_s']} | {r['kitsrt']['peak_rss_gib']} | |")
        lines += ["", "kitsrt's columns are its own stages: start-up and rest (interpreter, imports, loading "
                  "the networks), read, preprocess, network, postprocess (nnU-Net's export without the write), "
                  "measure (the report's per-kidney and per-lesion statistics; nnU-Net writes no report), write."]
    return "\n".join(lines) + "\n"


def _load(row: dict) -> str:
    loads = [row[k]["load_1min"] for k in ("nnunet", "kitsrt", "nnunet_in_one_process")
             if k in row and "load_1min" in row[k]]
    if not loads:
        return "~11 (not sampled)"
    mean = sum(x["mean"] for x in loads) / len(loads)
    return f"{mean:.1f} ({max(x['max'] for x in loads):.1f})"


if __name__ == "__main__":
    main()
