"""Batch inference: models loaded once, the next scan read while the current one is segmented.

Concurrency lives here, at the edge, not inside the math: one reader thread prefetches scans.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kitsrt.errors import InputError
from kitsrt.evaluate import case_name
from kitsrt.io import SUPPORTED_SUFFIXES, Scan, check_output_path, read_scan, write_text_atomic
from kitsrt.io.preview import render_views, volume_center_mm, write_png
from kitsrt.masks import bounding_box
from kitsrt.runtime.postprocess import TUMOR, components_by_size
from kitsrt.runtime.segmenter import Result, Segmenter


def list_scans(inputs: list[Path]) -> list[Path]:
    """Expand folders into the image files (or DICOM sub-folders) they hold, in name order."""
    scans = []
    for item in inputs:
        if not item.exists():
            raise InputError(f"{item}: no such file or folder")
        files = [p for p in sorted(item.iterdir()) if p.is_file() and any(
            p.name.lower().endswith(s) for s in SUPPORTED_SUFFIXES)] if item.is_dir() else []
        if item.is_dir() and not files and not any(item.glob("*.dcm")):
            files = [p for p in sorted(item.iterdir()) if p.is_dir()]
        scans += files if item.is_dir() and files else [item]
    return scans


def prefetched(paths: list[Path]) -> Iterator[tuple[Path, object]]:
    """Yield (path, Scan or the InputError raised reading it), reading one scan ahead."""
    def read(path):
        try:
            return read_scan(path)
        except InputError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=1) as reader:
        pending = reader.submit(read, paths[0]) if paths else None
        for i, path in enumerate(paths):
            scan = pending.result()
            pending = reader.submit(read, paths[i + 1]) if i + 1 < len(paths) else None
            yield path, scan


def preview_centers(result: Result) -> list:
    """Centre points (LPS mm) of each tumor's box, or of each kidney's box when there is none."""
    geometry = result.geometry
    centers = []
    for voi_mask in (result.labels == TUMOR, result.labels > 0):
        if not voi_mask.any():
            continue
        components = components_by_size(voi_mask)
        for lesion in range(1, min(int(components.max()), 4) + 1):
            box = bounding_box(components == lesion)
            center_kji = [(s.start + s.stop - 1) / 2.0 for s in box]
            centers.append(tuple(geometry.index_to_physical([center_kji[::-1]])[0]))
        break
    return centers


def write_outputs(result: Result, scan, output: Path, report: Path | None, preview: Path | None,
                  overwrite: bool, write_labels: Callable[[Result, Path, bool], object] = Result.write) -> None:
    """Write the label map with ``write_labels`` (default: an image file; its write time goes into
    the report), then the report and the preview. ``scan`` (a Scan or its path) is only needed for
    the preview."""
    start = time.perf_counter()
    write_labels(result, output, overwrite)
    result.report["timings_s"]["write"] = round(time.perf_counter() - start, 4)
    if report is not None:
        write_text_atomic(json.dumps(result.report, indent=2) + "\n", report, overwrite)
    if preview is not None:
        ct = scan if isinstance(scan, Scan) else read_scan(scan)
        labels = Scan.from_array(result.labels, result.geometry)
        centers = preview_centers(result) or [volume_center_mm(ct)]
        write_png(render_views(ct, labels, centers), preview, overwrite)


def run_batch(segmenter: Segmenter, paths: list[Path], out_dir: Path, overwrite: bool,
              on_case: Callable[[Path, Result | Exception], None]) -> list[dict]:
    """Segment every scan into ``out_dir/<case>_seg.nii.gz`` (+ ``_report.json``)."""
    summaries = []
    for path, scan in prefetched(paths):
        case = case_name(path)
        if isinstance(scan, Exception):
            summaries.append({"case": case, "input": str(path), "error": str(scan)})
            on_case(path, scan)
            continue
        output = check_output_path(out_dir / f"{case}_seg.nii.gz", overwrite)
        result = segmenter.segment(scan)
        write_outputs(result, scan, output, out_dir / f"{case}_report.json", None, overwrite)
        summaries.append({"case": case, "input": str(path), "output": str(output),
                          "kidney_found": result.kidney_found, **result.report["totals"]})
        on_case(path, result)
    return summaries
