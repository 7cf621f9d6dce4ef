"""`kitsrt bench --throughput`: scans per hour through one loaded Segmenter, next to one by one.

A folder of median-size phantoms (the geometry of KiTS19 case_00040 with different phantom seeds,
or procedural 512x512x200 stand-ins) goes through one ``Segmenter`` two ways, each in its own child
process:
* ``one-by-one``: read, segment, write, then the next scan;
* ``overlapped``: ``kitsrt infer FOLDER`` (``kitsrt.runtime.batch.run_batch``): the next scan is read
  and the previous label map written while the current one is segmented.
Each reports wall time, scans per hour, the process's CPU time over wall time x cores (its CPU
utilisation), the whole machine's busy share over the same time (others' load on a shared machine)
and its peak RSS.
"""

from __future__ import annotations

import os
import resource
import tempfile
import time
from pathlib import Path

MEDIAN_CASE = "case_00040"


def throughput_scans(kits19: Path | None, work: Path, count: int = 10, quick: bool = False) -> list[Path]:
    """``count`` median-size phantom CTs in ``work/throughput`` (made once, then reused); ``quick``:
    tiny procedural ones, for a smoke test."""
    from kitsrt.io import read_label_map, write_image
    from kitsrt.phantom import procedural_label_map, synthesize_ct

    folder = work / "throughput"
    folder.mkdir(parents=True, exist_ok=True)
    source = kits19 / MEDIAN_CASE / "segmentation.nii.gz" if kits19 is not None and not quick else None
    labels = read_label_map(source) if source is not None and source.exists() else None
    size, spacing = ((96, 96, 40), (4.0, 4.0, 6.0)) if quick else ((512, 512, 200), (0.75, 0.75, 2.0))
    paths = []
    for seed in range(count):
        path = folder / f"{'tiny' if quick else 'median'}_{seed:02d}.nii.gz"
        if not path.exists():
            truth = labels if labels is not None else procedural_label_map(size, spacing, seed=seed)
            write_image(synthesize_ct(truth, seed=100 + seed).image, path, overwrite=True)
        paths.append(path)
    return paths


def _machine_busy_jiffies() -> tuple[int, int]:
    """(busy, total) CPU jiffies of the whole machine since boot, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def throughput_child(paths: list[str], backend: str, precision: str, threads: int, mode: str) -> dict:
    """Run in a child process: every scan of ``paths`` through one loaded Segmenter, by ``mode``."""
    from kitsrt.bench.latency import _peak_rss_bytes
    from kitsrt.io import read_scan
    from kitsrt.runtime.batch import plan_batch, run_batch
    from kitsrt.runtime.segmenter import Segmenter

    segmenter = Segmenter.load(backend=backend, threads=threads, precision=precision)
    scans = [Path(p) for p in paths]
    with tempfile.TemporaryDirectory() as out:
        busy0, total0 = _machine_busy_jiffies()
        cpu0, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        if mode == "overlapped":
            run_batch(segmenter, plan_batch(scans, Path(out) / "segs"), True, lambda case, entry: None)
        else:
            for path in scans:
                result = segmenter.segment(read_scan(path))
                result.write(Path(out) / f"{path.name.split('.')[0]}_seg.nii.gz", overwrite=True)
                del result
        wall = time.perf_counter() - start
        cpu1, (busy1, total1) = resource.getrusage(resource.RUSAGE_SELF), _machine_busy_jiffies()
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return {"mode": mode, "scans": len(scans), "wall_s": wall, "scans_per_hour": 3600.0 * len(scans) / wall,
            "cpu_s": cpu, "cpu_utilisation": cpu / (wall * os.cpu_count()),
            "machine_busy": (busy1 - busy0) / max(total1 - total0, 1),
            "peak_rss_bytes": _peak_rss_bytes(), "backend": segmenter.backend_name}


def bench_throughput(paths: list[Path], backend: str, precision: str, threads: int, rounds: int = 1,
                     progress=print) -> dict:
    """Both modes, interleaved ``rounds`` times; the best round of each (the least disturbed)."""
    from kitsrt.bench.latency import run_child

    runs: dict[str, list[dict]] = {"one-by-one": [], "overlapped": []}
    for round_ in range(rounds):
        for mode in runs:
            progress(f"throughput: {len(paths)} scans {mode} ({backend}/{precision}), round {round_ + 1}")
            runs[mode].append(run_child("throughput_child", [str(p) for p in paths], backend, precision, threads, mode,
                                        module=__name__))
    best = {mode: max(rs, key=lambda r: r["scans_per_hour"]) for mode, rs in runs.items()}
    return {"config": f"{backend}/{precision}", "scans": len(paths), "rounds": runs, "best": best,
            "overlapped_vs_one_by_one": best["overlapped"]["scans_per_hour"] / best["one-by-one"]["scans_per_hour"]}


def throughput_table(throughput: dict) -> str:
    lines = [f"**Throughput**, {throughput['scans']} median-size phantoms through one loaded Segmenter "
             f"({throughput['config']}); best of {len(throughput['rounds']['overlapped'])} interleaved round(s): "
             f"overlapped {throughput['overlapped_vs_one_by_one']:.2f}x the scans per hour of one by one.", "",
             "| mode | wall (s) | scans/hour | CPU utilisation (process) | machine busy (all processes) | peak RSS (GiB) |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for mode, r in throughput["best"].items():
        lines.append(f"| {mode} | {r['wall_s']:.1f} | {r['scans_per_hour']:.0f} | {100 * r['cpu_utilisation']:.0f}% | "
                     f"{100 * r['machine_busy']:.0f}% | {r['peak_rss_bytes'] / 2**30:.2f} |")
    return "\n".join(lines) + "\n"
