"""Time and peak memory of `kitsrt phantom` on every shared KiTS19 label map.

Each case runs in its own process so its peak RSS is its own. Usage:
    python benchmarks/phantoms.py [KITS19_DIR] [--out benchmarks/results/phantoms.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import SimpleITK as sitk

from kitsrt.bench.latency import describe_machine

CHILD = """
import resource, sys, time
from kitsrt.io import read_label_map, write_image
from kitsrt.phantom import synthesize_ct
start = time.perf_counter()
labels = read_label_map(sys.argv[1])
ct = synthesize_ct(labels, seed=0)
write_image(ct.image, sys.argv[2], overwrite=True)
print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kits19", nargs="?", default=str(Path(__file__).resolve().parents[2] / "shared/data/kits19"))
    parser.add_argument("--out", default="benchmarks/results/phantoms.json")
    args = parser.parse_args()
    cases = sorted(Path(args.kits19).glob("case_*/segmentation.nii.gz"))
    if not cases:
        sys.exit(f"no KiTS19 label maps under {args.kits19}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label in cases:
            done = subprocess.run([sys.executable, "-c", CHILD, str(label), f"{tmp}/ct.nii.gz"],
                                  capture_output=True, encoding="utf-8", errors="replace", check=True)
            seconds, rss_kb = done.stdout.split()
            reader = sitk.ImageFileReader()
            reader.SetFileName(str(label))
            reader.ReadImageInformation()
            rows.append({"case": label.parent.name, "size": list(reader.GetSize()),
                         "spacing_mm": [round(s, 3) for s in reader.GetSpacing()],
                         "seconds": round(float(seconds), 2), "peak_rss_mb": round(int(rss_kb) / 1024)})
            print(rows[-1], flush=True)
    result = {"machine": describe_machine(), "cases": rows}
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
