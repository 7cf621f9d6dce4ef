"""`kitsrt infer`: segment one scan or a batch with a model package."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from kitsrt.cli.app import app, err, user_errors
from kitsrt.errors import InputError

FORMATS = ("auto", "image", "dicom-seg")


@app.command()
@user_errors
def infer(
    scans: list[Path] = typer.Argument(..., help="CT scan(s): NIfTI/NRRD/MHA files, DICOM series folders (any file "
                                                 "names), or a folder of scans."),
    output: Optional[Path] = typer.Option(None, "-o", "--output",
                                          help="Label map to write (one scan; default SCAN_seg.nii.gz beside it, "
                                               "SERIES_seg.nrrd for DICOM), or the output folder (batch)."),
    model: Optional[Path] = typer.Option(None, "--model", help="Model package folder (default: the bundled demo)."),
    backend: str = typer.Option("onnxruntime", "--backend", help="onnxruntime, openvino (the openvino extra), onnxruntime-cuda, tensorrt, torch, torch-cuda, or auto (the fastest installed one that passes a parity check)."),
    threads: int = typer.Option(0, "--threads", min=0, max=256, help="Threads per network (0: the backend's default)."),
    precision: str = typer.Option("fp32", "--precision", help="fp32, a variant made by `kitsrt quantize` (fp16, int8), or bf16 (OpenVINO inference precision, gated by `kitsrt quantize --precision bf16`)."),
    series: Optional[str] = typer.Option(None, "--series", help="DICOM folder with several series: the Series "
                                                                "Instance UID to read (default: the best-fitting CT series)."),
    report: Optional[Path] = typer.Option(None, "--report", help="Write the report JSON here (batch: the summary)."),
    preview: Optional[Path] = typer.Option(None, "--preview", help="Write a PNG through each kidney and the largest "
                                                                   "tumors, with legend, R/L A/P S/I markers and the "
                                                                   "warnings (one scan; the preview extra)."),
    output_format: str = typer.Option("auto", "--format", help="auto: a DICOM SEG for one DICOM series (NRRD where "
                                                               "the dicom extra is missing), else by the -o suffix "
                                                               "(.dcm: SEG); image: NIfTI/NRRD/MHA by the -o suffix; "
                                                               "dicom-seg: a DICOM SEG referencing the input series."),
    time_limit_s: Optional[float] = typer.Option(None, "--time-limit-s", min=1.0, max=86400.0,
                                                 help="Stop a case past this many seconds (exit 8; a batch goes on)."),
    memory_budget_gb: Optional[float] = typer.Option(None, "--memory-budget-gb", min=0.1, max=4096.0,
                                                     help="Refuse, from its header, a case estimated to need more "
                                                          "memory than this (exit 8; a batch goes on)."),
    strict: bool = typer.Option(False, "--strict", help="Exit with code 7 when the result carries quality warnings "
                                                         "(outputs are still written)."),
    quiet: bool = typer.Option(False, "--quiet", help="Print nothing but errors and warnings."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs (batch: redo finished cases)."),
):
    """Segment kidneys and tumors with the model package's pipeline (default: the bundled seed 002
    cascade); the label map is written on the input's exact grid. Exit code 3 (with an empty map
    written) when no kidney is found; with --strict, 7 when the report carries quality warnings. A
    batch skips cases whose outputs exist (resume) and records a failing case and goes on.

    Example: kitsrt infer scan.nii.gz -o seg.nii.gz --report report.json --preview preview.png
    Example: kitsrt infer series_folder/ --format dicom-seg -o seg.dcm
    """
    from kitsrt.io import OUTPUT_SUFFIXES, check_output_path, write_text_atomic
    from kitsrt.runtime.batch import (CaseLimits, check_batch_result, check_infer_outputs, check_scan_result,
                                      default_output, infer_scan, is_single_scan, list_scans, plan_batch)
    from kitsrt.runtime.segmenter import Result, Segmenter

    if output_format not in FORMATS:
        raise InputError(f"--format {output_format!r}: expected {', '.join(FORMATS[:-1])} or {FORMATS[-1]}")
    paths = list_scans(scans)
    single = is_single_scan(scans)
    dicom_seg = _wants_dicom_seg(output_format, single and paths[0].is_dir(), output)
    if dicom_seg and not (single and paths[0].is_dir()):
        raise InputError("--format dicom-seg: give one DICOM series folder (a SEG references its source series)")
    if report is not None:
        check_output_path(report, overwrite, (".json",))
    if single:
        target = output or (paths[0].parent / f"{paths[0].name}_seg.dcm" if dicom_seg else default_output(paths[0]))
        check_output_path(target, overwrite, (".dcm",) if dicom_seg else OUTPUT_SUFFIXES)
        if preview is not None:
            check_output_path(preview, overwrite, (".png",))
        outputs = [target]
    else:
        if output is None:
            raise InputError(f"{len(paths)} scans: give an output folder with -o")
        if series is not None or preview is not None:
            raise InputError("--series and --preview apply to one scan; run that scan on its own")
        cases = plan_batch(paths, output)
        outputs = [c.output for c in cases] + [c.report for c in cases]
    check_infer_outputs(paths, model, [*outputs, report, preview])
    limits = CaseLimits(time_limit_s, None if memory_budget_gb is None else int(memory_budget_gb * 2**30))
    with Segmenter.load(model, backend=backend, threads=threads, precision=precision) as segmenter:
        if single:
            if dicom_seg:
                from kitsrt.runtime.dicom_output import seg_writer

                write_labels = seg_writer(paths[0], segmenter.package)
            else:
                write_labels = Result.write
            result = infer_scan(segmenter, paths[0], series, target, report, preview, overwrite, limits, write_labels)
            _print_result(paths[0], target, result, quiet)
            check_scan_result(paths[0], target, result, strict)
            return
        summaries = _run_batch_with_progress(segmenter, cases, overwrite, quiet, limits)
    if report is not None:
        import json

        write_text_atomic(json.dumps(summaries, indent=2) + "\n", report, overwrite)
    check_batch_result(summaries, strict)


def _wants_dicom_seg(output_format: str, one_dicom_series: bool, output: Optional[Path]) -> bool:
    """Whether to write a DICOM SEG: asked for, or ``auto`` on one DICOM series (unless -o names an
    image file); ``auto`` falls back to NRRD, saying so, where highdicom is not installed."""
    if output_format != "auto":
        return output_format == "dicom-seg"
    if not one_dicom_series:
        return False
    if output is not None:
        return output.name.lower().endswith(".dcm")
    try:
        import highdicom  # noqa: F401
    except ImportError:
        err.print(escape("note: writing NRRD; a DICOM SEG output needs the dicom extra: pip install 'kitsrt[dicom]'"),
                  soft_wrap=True)
        return False
    return True


def _print_result(path: Path, target: Path, result, quiet: bool) -> None:
    for warning in result.report.get("warnings", []):
        err.print(f"[yellow]warning:[/] {escape(warning['message'])}", soft_wrap=True)
    if quiet:
        return
    totals, timings = result.report["totals"], result.report["timings_s"]
    sides = ", ".join(f"{k['side']}: kidney {k['kidney_ml']:.1f} mL, tumor {k['tumor_ml']:.1f} mL"
                      for k in result.report["kidneys"]) or "none"
    err.print(escape(f"{path.name} -> {target}  [{sides}]  tumors {totals['tumor_count']}  "
              f"in {sum(timings.values()):.1f} s ({result.report['backend']})"))


def _run_batch_with_progress(segmenter, cases, overwrite, quiet, limits):
    from rich.progress import Progress

    from kitsrt.runtime.batch import run_batch

    with Progress(console=err, disable=quiet) as bar:
        task = bar.add_task("segmenting", total=len(cases))

        def done(case, entry):
            bar.advance(task)
            if entry["status"] == "failed":
                err.print(f"[red]failed[/] {escape(case.name)}: {escape(entry['error'])}", soft_wrap=True)
            elif entry["status"] == "skipped":
                err.print(f"skipped {escape(case.name)}: {entry['reason']}")
            elif entry.get("warnings"):
                err.print(f"[yellow]warnings[/] {escape(case.name)}: {', '.join(entry['warnings'])}")

        return run_batch(segmenter, cases, overwrite, done, limits)
