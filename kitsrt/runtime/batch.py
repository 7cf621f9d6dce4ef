"""Inputs and outputs of `kitsrt infer`: which paths are scans, where each result goes, and the batch
loop (models loaded once, the next scan read and the previous results written while the current one
is segmented).

Concurrency lives here, at the edge, not inside the math: one reader thread prefetches one scan and
one writer thread writes one case's outputs, so at most three scans are in memory at once.
Every output path is checked before the first case runs; a case that fails is recorded in the
summary and the batch goes on; a case whose label map and report both exist is skipped (resume)
unless ``overwrite``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kitsrt.errors import InputError, KitsrtError, NoKidneyFound, QualityWarnings, ResourceLimitError
from kitsrt.io.names import case_name
from kitsrt.io import (
    LOSSY_GEOMETRY_SUFFIXES,
    OUTPUT_SUFFIXES,
    SUPPORTED_SUFFIXES,
    Scan,
    check_output_path,
    check_written_geometry,
    header_voxel_count,
    is_dicom_folder,
    read_ct,
    write_text_atomic,
)
from kitsrt.io.outputs import is_own_output
from kitsrt.io.preview import render_report_preview, write_png
from kitsrt.runtime.segmenter import Result, Segmenter


def _image_files(folder: Path) -> list[Path]:
    """The scans of a folder: image files, but not hidden or temporary files, nor kitsrt's own
    outputs (``*_seg.*`` label maps) from an earlier run into the same folder."""
    return [p for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")
            and not is_own_output(p) and any(p.name.lower().endswith(s) for s in SUPPORTED_SUFFIXES)]


def is_single_scan(inputs: list[Path]) -> bool:
    """One input that is an image file or a folder holding a DICOM series (found by content, not by
    suffix), and not a folder of image files."""
    if len(inputs) != 1:
        return False
    item = inputs[0]
    return item.is_file() or (item.is_dir() and not _image_files(item) and is_dicom_folder(item))


def list_scans(inputs: list[Path]) -> list[Path]:
    """Expand the inputs into scans, in name order: a file is a scan; a folder gives its image files,
    else itself when it holds a DICOM series, else its sub-folders that hold one."""
    scans = []
    for item in inputs:
        if not item.exists():
            raise InputError(f"{item}: no such file or folder")
        if item.is_file():
            scans.append(item)
            continue
        found = _image_files(item) or ([item] if is_dicom_folder(item) else
                                       [p for p in sorted(item.iterdir()) if p.is_dir() and is_dicom_folder(p)])
        if not found:
            raise InputError(f"{item}: folder holds no image: no {', '.join(SUPPORTED_SUFFIXES)} file and no "
                             "DICOM series, in it or in its sub-folders; give a scan file or a DICOM series folder")
        scans += found
    return scans


def default_suffix(scan_path: Path) -> str:
    """DICOM input gets a lossless output format (NRRD holds its geometry exactly; NIfTI's float32
    origin cannot), other input the NIfTI that most tools read."""
    return ".nrrd" if scan_path.is_dir() else ".nii.gz"


def default_output(scan_path: Path) -> Path:
    return scan_path.parent / f"{case_name(scan_path)}_seg{default_suffix(scan_path)}"


def add_warning(report: dict, code: str, message: str, values: dict | None = None) -> None:
    report.setdefault("warnings", []).append({"code": code, "message": message, "values": values or {}})


def write_label_output(result: Result, output: Path, overwrite: bool) -> None:
    """Write the label map, check the written grid against the input's, and record the write time.
    A NIfTI file that cannot hold the input's geometry within ITK's tolerance gets a warning with the
    size of the error; any other format must be exact (else it is removed and InputError raised)."""
    start = time.perf_counter()
    result.write(output, overwrite)
    drift = check_written_geometry(output, result.geometry)
    result.report["timings_s"]["write"] = round(time.perf_counter() - start, 4)
    if not drift.within_itk_tolerance and any(output.name.lower().endswith(s) for s in LOSSY_GEOMETRY_SUFFIXES):
        add_warning(result.report, "output_geometry_inexact",
                    f"{output.name}: NIfTI stores the grid as float32, so its origin is off by "
                    f"{drift.origin_mm:.2g} mm (ITK tolerance {drift.tolerance_mm:.2g} mm) and ITK tools will "
                    "refuse to combine it with the input; write .nrrd or .mha for an exact grid", drift.as_dict())


def preview_rows(report: dict, geometry) -> list[tuple[str, tuple]]:
    """(caption, LPS point) per preview row: each kidney's centre, then the two largest tumors; the
    scan's middle when nothing was found."""
    rows = []
    for region in report["kidneys"]:
        kidney = region["kidney"]
        if "centre_mm" in kidney:
            rows.append((f"{region['side']} kidney: {kidney['volume_ml']:.0f} mL of tissue, "
                         f"{kidney['length_mm']:.0f} mm long", tuple(kidney["centre_mm"])))
    tumors = sorted(((lesion, region["side"]) for region in report["kidneys"] for lesion in region["lesions"]),
                    key=lambda item: -item[0]["volume_ml"])
    count = sum(region["tumor_count"] for region in report["kidneys"])  # the listed lesions are the largest
    for n, (lesion, side) in enumerate(tumors[:2]):
        rows.append((f"{side} tumor {n + 1} of {count}: {lesion['volume_ml']:.1f} mL, longest diameter "
                     f"{lesion['longest_diameter_mm']:.0f} mm", tuple(lesion["centre_mm"])))
    if not rows:
        middle = geometry.index_to_physical([(np.asarray(geometry.size) - 1) / 2.0])[0]
        rows.append(("no kidney found: the middle of the scan", tuple(middle)))
    return rows


def write_preview(result: Result, ct: Scan, path: Path, overwrite: bool, case: str) -> None:
    """The readable preview: case name, legend, disclaimer, slices through each kidney and the largest
    tumors with the whole scan in view, and every warning."""
    report = result.report
    title = f"{case}: kidneys and tumors by {report['pipeline']} ({report['backend']})"
    warnings = [w["message"] for w in report["warnings"] if w["code"] != "demo_model"]
    disclaimer = report["disclaimer"] or "Research software: check every result before any use."
    page = render_report_preview(ct, Scan.from_array(result.labels, result.geometry),
                                 preview_rows(report, result.geometry), title, disclaimer, warnings)
    write_png(page, path, overwrite)


def write_outputs(result: Result, scan, output: Path, report: Path | None, preview: Path | None,
                  overwrite: bool, write_labels: Callable[[Result, Path, bool], object] = Result.write) -> None:
    """Write the label map with ``write_labels`` (default: an image file, its grid checked; its write
    time goes into the report), then the report and the preview. ``scan`` (a Scan or its path) is
    only needed for the preview."""
    if write_labels is Result.write:
        write_label_output(result, output, overwrite)
    else:
        start = time.perf_counter()
        write_labels(result, output, overwrite)
        result.report["timings_s"]["write"] = round(time.perf_counter() - start, 4)
    if report is not None:
        write_text_atomic(json.dumps(result.report, indent=2) + "\n", report, overwrite)
    if preview is not None:
        ct = scan if isinstance(scan, Scan) else read_ct(scan)
        write_preview(result, ct, preview, overwrite, case_name(Path(ct.source)) if ct.source else "scan")


@dataclass(frozen=True)
class Case:
    """One scan of a batch and where its results go."""

    name: str
    scan: Path
    output: Path
    report: Path

    @property
    def done(self) -> bool:
        """Both outputs exist: a finished earlier run (the report is written last)."""
        return self.output.exists() and self.report.exists()


def plan_batch(paths: list[Path], out_dir: Path) -> list[Case]:
    """Each scan's outputs in ``out_dir``, all checked before the first case runs: ``out_dir`` is a
    folder (created if missing), no two scans share a case name, every path is writable. A case whose
    label map exists without its report (or the reverse) is an unfinished earlier run: it runs again
    and replaces both."""
    if any(out_dir.name.lower().endswith(s) for s in OUTPUT_SUFFIXES):
        raise InputError(f"-o {out_dir}: {len(paths)} scans need an output folder, not a file name")
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"-o {out_dir}: exists and is not a folder; several scans need an output folder")
    if not out_dir.parent.exists():
        raise InputError(f"{out_dir.parent}: folder does not exist; create it or choose another output folder")
    cases, seen = [], {}
    for path in paths:
        name = case_name(path)
        if name in seen:
            raise InputError(f"{seen[name]} and {path}: both give case name {name!r}, so their outputs would "
                             "collide; rename one or run them separately")
        seen[name] = path
        cases.append(Case(name, path, out_dir / f"{name}_seg{default_suffix(path)}", out_dir / f"{name}_report.json"))
    out_dir.mkdir(exist_ok=True)
    for case in cases:
        check_output_path(case.report, True, (".json",))
        check_output_path(case.output, True)
    return cases


# Peak memory of one case, estimated from its voxel count before it is read: the int16 scan (2 B),
# the uint8 label map (1 B), restore buffers (about 2 B) per voxel, plus the loaded runtime.
CASE_BYTES_PER_VOXEL, CASE_BASE_BYTES = 5, 512 << 20


@dataclass(frozen=True)
class CaseLimits:
    """Per-case resource limits of a batch: wall-clock seconds, and the memory a case may need
    (estimated from its header before reading). None: no limit."""

    time_limit_s: float | None = None
    memory_budget_bytes: int | None = None


def check_memory_budget(path: Path, budget_bytes: int | None) -> None:
    """Refuse a scan whose estimated peak memory exceeds ``budget_bytes`` (ResourceLimitError, exit 8),
    from its header alone. A folder (DICOM series) or an unreadable header is left to the reader."""
    if budget_bytes is None:
        return
    voxels = header_voxel_count(path)
    if voxels is None:
        return
    needed = voxels * CASE_BYTES_PER_VOXEL + CASE_BASE_BYTES
    if needed > budget_bytes:
        raise ResourceLimitError(f"{path}: needs about {needed / 2**30:.2f} GiB for {voxels} voxels, more than the "
                                 f"memory budget of {budget_bytes / 2**30:.2f} GiB (--memory-budget-gb); skipped")


def prefetched(paths: list[Path], limits: CaseLimits = CaseLimits()) -> Iterator[tuple[Path, object]]:
    """Yield (path, Scan or the KitsrtError raised reading it), reading one scan ahead; a scan over
    the memory budget is refused from its header, before it is read."""
    def read(path):
        try:
            check_memory_budget(path, limits.memory_budget_bytes)
            return read_ct(path)
        except KitsrtError as exc:
            return exc
        except MemoryError:
            return ResourceLimitError(f"{path}: ran out of memory reading it; lower --memory-budget-gb")

    with ThreadPoolExecutor(max_workers=1) as reader:
        pending = reader.submit(read, paths[0]) if paths else None
        for i, path in enumerate(paths):
            scan = pending.result()
            pending = reader.submit(read, paths[i + 1]) if i + 1 < len(paths) else None
            yield path, scan


def write_case(result: Result, case: Case) -> dict:
    """Write (or replace) one case's label map, then its report; the summary entry of a finished case."""
    write_label_output(result, case.output, overwrite=True)
    write_text_atomic(json.dumps(result.report, indent=2) + "\n", case.report, overwrite=True)
    return {"status": "done", "output": str(case.output), "report": str(case.report),
            "kidney_found": result.kidney_found, **result.report["totals"],
            "warnings": [w["code"] for w in result.report.get("warnings", [])]}


def run_batch(segmenter: Segmenter, cases: list[Case], overwrite: bool,
              on_case: Callable[[Case, dict], None], limits: CaseLimits = CaseLimits()) -> list[dict]:
    """Run every case of a plan: skip finished ones (unless ``overwrite``), record a failing case
    (unreadable, not CT, write error) with its one-line error and go on. One summary entry per case.
    A case's outputs are written in the background while the next scan is segmented; ``on_case``
    runs once they exist (or its write failed)."""
    summaries = []
    todo = [c for c in cases if overwrite or not c.done]
    for case in cases:
        if case not in todo:
            summaries.append({"case": case.name, "input": str(case.scan), "status": "skipped",
                              "reason": "outputs exist from an earlier run; pass --overwrite to redo"})
            on_case(case, summaries[-1])

    def finish(case: Case, entry: dict, written=None) -> None:
        try:
            if written is not None:
                entry.update(written.result())
        except KitsrtError as exc:
            entry.update({"status": "failed", "error": str(exc), "exit_code": exc.exit_code})
        summaries.append(entry)
        on_case(case, entry)

    with ThreadPoolExecutor(max_workers=1) as writer:
        writing = None  # (case, entry, future) of the write in flight
        for path, scan in prefetched([c.scan for c in todo], limits):
            case = next(c for c in todo if c.scan == path)
            entry = {"case": case.name, "input": str(path)}
            try:
                if isinstance(scan, KitsrtError):
                    raise scan
                result = segmenter.segment(scan, limits.time_limit_s)
            except KitsrtError as exc:
                entry.update({"status": "failed", "error": str(exc), "exit_code": exc.exit_code})
                finish(case, entry)
                continue
            if writing is not None:
                finish(*writing)
            writing = (case, entry, writer.submit(write_case, result, case))
            del scan, result
        if writing is not None:
            finish(*writing)
    order = {c.name: i for i, c in enumerate(cases)}
    return sorted(summaries, key=lambda s: order[s["case"]])


def check_infer_outputs(scans: list[Path], model: Path | None, outputs: list[Path | None]) -> None:
    """No output may be a scan, a file of the model package or another output (same resolved path or inode)."""
    from kitsrt.io.outputs import check_outputs_apart
    from kitsrt.runtime.package import demo_package_path

    package = model if model is not None else demo_package_path()
    package_files = [p for p in package.iterdir() if p.is_file()] if package.is_dir() else []
    check_outputs_apart(outputs, [*scans, *package_files])


def infer_scan(segmenter: Segmenter, path: Path, series: str | None, target: Path, report: Path | None,
               preview: Path | None, overwrite: bool, limits: CaseLimits = CaseLimits(),
               write_labels: Callable[[Result, Path, bool], object] = Result.write) -> Result:
    """Read one scan (refused first when over the memory budget), segment it and write its outputs;
    the read time leads the report's timings."""
    check_memory_budget(path, limits.memory_budget_bytes)
    start = time.perf_counter()
    scan = read_ct(path, series)
    read_s = time.perf_counter() - start
    result = segmenter.segment(scan, limits.time_limit_s)
    result.report["timings_s"] = {"read": round(read_s, 4), **result.report["timings_s"]}
    write_outputs(result, scan, target, report, preview, overwrite, write_labels)
    return result


def check_scan_result(path: Path, target: Path, result: Result, strict: bool) -> None:
    """The exit status of one written scan: NoKidneyFound (3) for an empty map, QualityWarnings (7)
    with ``strict`` and any warning."""
    if not result.kidney_found:
        raise NoKidneyFound(f"{path}: no kidney found; wrote an empty label map to {target}")
    codes = [w["code"] for w in result.report["warnings"]]
    if strict and codes:
        raise QualityWarnings(f"{path}: --strict and {len(codes)} quality warning(s) ({', '.join(codes)}); "
                              f"outputs written, see the report")


def check_batch_result(summaries: list[dict], strict: bool) -> None:
    """The exit status of a batch, from its summary entries: resource limits (8) when every failure
    was one, other failures (2), no kidney (3), then quality warnings with ``strict`` (7)."""
    failed = [s for s in summaries if s["status"] == "failed"]
    if failed and all(s.get("exit_code") == ResourceLimitError.exit_code for s in failed):
        raise ResourceLimitError(f"{len(failed)} of {len(summaries)} scan(s) exceeded a resource limit (the others "
                                 f"ran), e.g. {failed[0]['error']}")
    if failed:
        raise InputError(f"{len(failed)} of {len(summaries)} scan(s) failed (the others ran), e.g. {failed[0]['error']}")
    done = [s for s in summaries if s["status"] == "done"]
    if any(not s["kidney_found"] for s in done):
        raise NoKidneyFound("no kidney found in: " + ", ".join(s["case"] for s in done if not s["kidney_found"]))
    flagged = [s["case"] for s in done if s["warnings"]]
    if strict and flagged:
        raise QualityWarnings(f"--strict: quality warnings in {len(flagged)} case(s) ({', '.join(flagged[:5])}); "
                              "outputs written, see each case's report")
