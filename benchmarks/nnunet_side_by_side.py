"""nnU-Net's own CPU predictor (``nnUNetv2_predict -device cpu``) and the imported kitsrt package on
the same scans, one run: label-map agreement, end-to-end wall time and peak RSS of each.

    python benchmarks/nnunet_side_by_side.py --work work/nnunet_bench [--cases small,median] [--threads 2]

The model folder is the test's (tests/nnunet_model.py: nnU-Net's fingerprint, plans and preprocessing
on procedural phantoms, the stock trainer's checkpoints, two folds; its network is small: patch
24x48x56 at 8x6x6 mm, 4-16 features), so the figures measure nnU-Net's pipeline around a small
network (reading, preprocessing, resampling back, writing, start-up), not a full-size U-Net. Scans:
phantoms at the geometries of the shared KiTS19 label maps (small: case_00021, median: case_00040,
largest: case_00156) when present, else procedural stand-ins. Each tool runs as a child process
with the same thread count; peak RSS is the largest sum of VmRSS over the child's process tree,
sampled every 20 ms. Results: benchmarks/results/nnunet_side_by_side.{json,md}.
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
    """Run ``command``; wall seconds and peak process-tree RSS."""
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               encoding="utf-8", errors="replace")
    peak = [0]

    def sample():
        while process.poll() is None:
            peak[0] = max(peak[0], _tree_rss_bytes(process.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, stderr = process.communicate()
    wall = time.perf_counter() - start
    sampler.join()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])} failed: {stderr[-2000:]}")
    return {"wall_s": round(wall, 2), "peak_rss_gib": round(peak[0] / 2**30, 3)}


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
    rows = []
    for name in args.cases.split(","):
        scan = scan_for(name, work)
        for tta in (True, False):
            out = work / "out" / f"{name}_tta_{'on' if tta else 'off'}"
            out.mkdir(parents=True, exist_ok=True)
            nnunet_cmd = [str(bin_dir / "nnUNetv2_predict"), "-i", str(scan.parent), "-o", str(out / "nnunet"),
                          "-d", "501", "-c", "3d_fullres", "-f", "0", "1", "-device", "cpu", "-npp", "1",
                          "-nps", "1"] + ([] if tta else ["--disable_tta"])
            kitsrt_out = out / "kitsrt.nii.gz"
            kitsrt_cmd = [str(bin_dir / "kitsrt"), "infer", str(scan), "-o", str(kitsrt_out), "--model",
                          str(packages[tta]), "--threads", str(args.threads), "--overwrite", "--quiet"]
            nnunet = measure(nnunet_cmd, env)
            kitsrt = measure(kitsrt_cmd, env)
            rows.append({"case": name, "voxels": int(np.prod(sitk.ReadImage(str(scan)).GetSize())), "tta": tta,
                         "nnunet": nnunet, "kitsrt": kitsrt,
                         "time_ratio": round(nnunet["wall_s"] / kitsrt["wall_s"], 2),
                         **agreement(out / "nnunet" / f"{name}.nii.gz", kitsrt_out)})
            print(json.dumps(rows[-1]), flush=True)
    results = REPO / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    previous = results / "nnunet_side_by_side.json"
    if previous.exists():  # keep other cases' rows from earlier runs
        done = {(r["case"], r["tta"]) for r in rows}
        rows = [r for r in json.loads(previous.read_text())["rows"] if (r["case"], r["tta"]) not in done] + rows
    machine = "AMD EPYC, 2 cores shared with other jobs (load average ~11 during the run), Linux"
    previous.write_text(json.dumps({"threads": args.threads, "machine": machine, "rows": rows}, indent=2))
    lines = ["| case | voxels | TTA | nnU-Net s | kitsrt s | time ratio | nnU-Net peak RSS GiB | kitsrt peak RSS GiB "
             "| Dice label 1 / 2 | voxel agreement |", "|---|---:|---|---:|---:|---:|---:|---:|---|---:|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['voxels'] / 1e6:.0f} M | {'on' if r['tta'] else 'off'} | "
                     f"{r['nnunet']['wall_s']} | {r['kitsrt']['wall_s']} | {r['time_ratio']}x | "
                     f"{r['nnunet']['peak_rss_gib']} | {r['kitsrt']['peak_rss_gib']} | "
                     f"{r['dice_per_label']['1']} / {r['dice_per_label']['2']} | {r['voxel_agreement']} |")
    (results / "nnunet_side_by_side.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
