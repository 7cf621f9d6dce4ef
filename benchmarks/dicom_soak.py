"""Soak run of `kitsrt serve dicom`: N phantom CT series pushed back to back with dcmtk's storescu,
every SEG forwarded to an Orthanc PACS (both started here, loopback only). Checks that all N SEGs
arrive in Orthanc, none duplicated, each referencing its own series, and records the node's RSS over
time (sampled from /proc every 0.5 s) to show whether memory stays flat after warm-up.

    python benchmarks/dicom_soak.py [--series 20] [--out benchmarks/results/dicom_soak.json]

Needs the dicom extra and the Debian packages dcmtk and orthanc.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import io
import json
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from dicom_tools import MISSING_TOOLS, Node, Orthanc, storescu  # noqa: E402

from kitsrt.io.dicom_series import write_ct_series  # noqa: E402
from kitsrt.phantom import procedural_label_map, synthesize_ct  # noqa: E402

SIZE, SPACING_MM, DISTINCT_PHANTOMS = (160, 160, 56), (2.5, 2.5, 4.0), 4
WARMUP_SERIES = 2 * DISTINCT_PHANTOMS  # onnxruntime's arenas grow until every VOI shape has been seen


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


class RssSampler(threading.Thread):
    def __init__(self, pid: int, period_s: float = 0.5):
        super().__init__(daemon=True)
        self.pid, self.period_s, self.samples, self.stop = pid, period_s, [], threading.Event()
        self.start_s = time.time()

    def run(self) -> None:
        while not self.stop.wait(self.period_s):
            try:
                self.samples.append((round(time.time() - self.start_s, 2), round(rss_mib(self.pid), 1)))
            except OSError:
                return

    def at(self, seconds: float) -> float:
        """RSS (MiB) of the sample closest to ``seconds`` after start."""
        return min(self.samples, key=lambda s: abs(s[0] - seconds))[1]


def make_series(work: Path, count: int) -> list[tuple[Path, str]]:
    """``count`` series folders (DISTINCT_PHANTOMS phantoms, each written with fresh UIDs)."""
    import pydicom

    phantoms = [synthesize_ct(procedural_label_map(SIZE, SPACING_MM, seed), seed) for seed in range(DISTINCT_PHANTOMS)]
    folders = []
    for n in range(count):
        folder = write_ct_series(phantoms[n % DISTINCT_PHANTOMS], work / f"series_{n:02d}")
        uid = str(pydicom.dcmread(next(folder.iterdir()), stop_before_pixels=True).SeriesInstanceUID)
        folders.append((folder, uid))
    return folders


def run(count: int, work: Path) -> dict:
    import pydicom

    series = make_series(work, count)
    pacs = Orthanc(work / "orthanc")
    node = Node("--forward", f"{pacs.ae_title}@127.0.0.1:{pacs.dicom_port}", "--quiet-s", "1", "--threads", "2")
    sampler = RssSampler(node.process.pid)
    sampler.start()
    try:
        t0 = time.monotonic()
        for folder, _ in series:
            sent = storescu(folder, node.port)
            if sent.returncode != 0:
                raise RuntimeError(f"storescu failed for {folder}: {sent.stderr[-500:]}")
        push_s = time.monotonic() - t0
        node.wait_for("forwarded", timeout_s=60 * count, count=count)
        total_s = time.monotonic() - t0
        seg_series = pacs.series_by_modality("SEG")
        referenced = []
        for entry in seg_series:
            for instance_id in entry["Instances"]:
                seg = pydicom.dcmread(io.BytesIO(pacs.instance_file(instance_id)), stop_before_pixels=True)
                referenced.append(str(seg.ReferencedSeriesSequence[0].SeriesInstanceUID))
    finally:
        sampler.stop.set()
        exit_code = node.stop()
        pacs.close()
    sent_uids = [uid for _, uid in series]
    forwarded_at = [datetime.datetime.fromisoformat(e["time"]).timestamp() - sampler.start_s
                    for e in node.find("forwarded")]
    rss_at_result = [sampler.at(s) for s in forwarded_at]
    warm = rss_at_result[WARMUP_SERIES:] or rss_at_result[-1:]
    slope = float(np.polyfit(np.arange(len(warm)), warm, 1)[0]) if len(warm) > 2 else float("nan")
    latency = [e["seconds"] for e in node.find("segmented")]
    return {
        "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version(),
                    "system": platform.platform()},
        "series_sent": count, "voxels_per_series": int(np.prod(SIZE)), "spacing_mm": SPACING_MM,
        "segs_in_orthanc": len(referenced), "distinct_referenced_series": len(set(referenced)),
        "duplicates": sum(n - 1 for n in collections.Counter(referenced).values() if n > 1),
        "all_sent_series_have_a_seg": set(referenced) == set(sent_uids),
        "push_seconds": round(push_s, 1), "total_seconds": round(total_s, 1),
        "segment_seconds_median": round(float(np.median(latency)), 2),
        "rss_mib_at_each_result": rss_at_result,
        "rss_mib_after_warmup": {"warmup_series": WARMUP_SERIES, "min": min(warm), "max": max(warm),
                                 "slope_per_series": round(slope, 2)},
        "rss_mib_peak": max(s[1] for s in sampler.samples), "rss_samples": sampler.samples,
        "node_events": dict(collections.Counter(e["event"] for e in node.events)), "node_exit_code": exit_code,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=20)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "dicom_soak.json")
    args = parser.parse_args()
    if MISSING_TOOLS:
        sys.exit(f"missing {', '.join(MISSING_TOOLS)}: apt-get install dcmtk orthanc")
    with tempfile.TemporaryDirectory() as work:
        report = run(args.series, Path(work))
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    summary = {k: v for k, v in report.items() if k not in ("rss_samples", "rss_mib_at_each_result")}
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
