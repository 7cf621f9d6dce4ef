"""The `kitsrt` command. Parsing and printing only: the work lives in the library modules.

Every command turns a KitsrtError into a one-line message on stderr and its documented exit code
(see ``kitsrt.errors.EXIT_CODES``); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from kitsrt.errors import EXIT_CODES, InputError, KitsrtError, NoKidneyFound, QualityWarnings, ResourceLimitError

EXIT_CODE_HELP = "Exit codes: " + "; ".join(f"{code} {text.split(':')[0]}" for code, text in EXIT_CODES.items())

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="kitsrt: deploy kidney and kidney-tumor CT segmentation. " + EXIT_CODE_HELP)
err = Console(stderr=True, highlight=False)
out = Console(highlight=False)


def _user_errors(command):
    """Run a command; a KitsrtError becomes 'error: ...' on stderr and its exit code."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from kitsrt.io.files import install_signal_cleanup

        install_signal_cleanup()
        try:
            return command(*args, **kwargs)
        except KitsrtError as exc:
            err.print(f"[bold red]error:[/] {escape(_one_line(str(exc)))}", soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except OSError as exc:  # the machine refused: permissions, disk full, a folder where a file was meant
            where = f"{exc.filename}: " if exc.filename else ""
            err.print(f"[bold red]error:[/] {escape(_one_line(where + (exc.strerror or str(exc))))}", soft_wrap=True)
            raise typer.Exit(InputError.exit_code) from None

    return wrapper


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _triple_plus_channels(text: str) -> tuple[int, int, int, int]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4 or min(values) <= 0:
        raise InputError(f"--input-shape {text!r}: expected four positive integers C,D,H,W, e.g. 1,64,64,64")
    return values


def _json_file(path: Optional[Path]) -> dict:
    """A JSON object from ``path`` ({} for None), or a one-line InputError."""
    import json

    if path is None:
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read it as JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object")
    return data


def _triple(text: str, what: str, cast=float) -> tuple:
    try:
        values = tuple(cast(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(math.isfinite(v) and v > 0 for v in values):
        raise InputError(f"--{what} {text!r}: expected three finite positive numbers separated by commas, "
                         "e.g. 2.5,2.5,5")
    return values


def _finite(value: float, what: str, low: float | None = None, high: float | None = None) -> float:
    """A float option: finite and within [low, high] (typer's FloatRange lets NaN through)."""
    if not math.isfinite(value) or (low is not None and value < low) or (high is not None and value > high):
        bounds = f" in [{low if low is not None else '-inf'}, {high if high is not None else 'inf'}]"
        raise InputError(f"--{what} {value}: expected a finite number{bounds}")
    return value


@app.command()
@_user_errors
def phantom(
    label: Optional[Path] = typer.Argument(None, help="Label map (0 background, 1 kidney, 2 tumor) to build the CT around."),
    output: Path = typer.Option(..., "-o", "--output", help="Synthetic CT to write (.nii.gz, .nrrd, .mha), or a "
                                                            "folder with --format dicom."),
    output_format: str = typer.Option("image", "--format", help="image (by the output's suffix) or dicom "
                                                                "(a CT series folder; needs the dicom extra)."),
    seed: int = typer.Option(0, min=0, max=2**32 - 1, help="Random seed; the same seed gives the same phantom."),
    procedural: bool = typer.Option(False, help="Draw random kidneys and tumors instead of reading LABEL."),
    size: str = typer.Option("256,256,96", help="Procedural grid size i,j,k (voxels)."),
    spacing: str = typer.Option("1.6,1.6,3.0", help="Procedural spacing i,j,k (mm)."),
    label_out: Optional[Path] = typer.Option(None, help="Procedural mode: where to write the drawn label map."),
    preview: Optional[Path] = typer.Option(None, help="Also write a PNG with axial and coronal slices."),
    overwrite: bool = typer.Option(False, help="Replace existing output files."),
):
    """Synthesize a contrast-enhanced abdominal CT on exactly a label map's grid.

    Example: kitsrt phantom case_00021/segmentation.nii.gz -o case_00021_ct.nii.gz --seed 1
    """
    from kitsrt.io import check_output_path, read_label_map, write_image, write_label_map
    from kitsrt.phantom import procedural_label_map, synthesize_ct

    if output_format not in ("image", "dicom"):
        raise InputError(f"--format {output_format!r}: expected image or dicom")
    if output_format == "dicom":
        _check_dicom_folder_output(output, overwrite)
    else:
        check_output_path(output, overwrite)
    if procedural == (label is not None):
        raise InputError("give a LABEL map or --procedural, not both and not neither")
    if label_out is not None:
        check_output_path(label_out, overwrite)
    if preview is not None:
        check_output_path(preview, overwrite, (".png",))
    from kitsrt.io.outputs import check_outputs_apart

    check_outputs_apart([output, label_out, preview], [label] if label is not None else [])
    labels = (procedural_label_map(_triple(size, "size", int), _triple(spacing, "spacing"), seed)
              if procedural else read_label_map(label))
    ct = synthesize_ct(labels, seed)
    if output_format == "dicom":
        from kitsrt.io.dicom_series import write_ct_series

        write_ct_series(ct, output, overwrite, patient_name=f"KITSRT^PHANTOM {seed}")
    else:
        write_image(ct.image, output, overwrite)
    if label_out is not None:
        write_label_map(labels.array, labels.geometry, label_out, overwrite)
    if preview is not None:
        _write_phantom_preview(ct, labels, preview, overwrite)
    err.print(f"wrote {output} ({'x'.join(map(str, ct.geometry.size))} voxels, seed {seed})")


def _check_dicom_folder_output(folder: Path, overwrite: bool) -> None:
    from kitsrt.io.dicom_series import require_pydicom

    require_pydicom()
    if folder.exists() and not overwrite:
        raise InputError(f"{folder}: output already exists; pass --overwrite to replace it")
    if not folder.parent.exists():
        raise InputError(f"{folder.parent}: output folder does not exist")


def _write_phantom_preview(ct, labels, path: Path, overwrite: bool) -> None:
    from kitsrt.io.preview import render_views, volume_center_mm, write_png
    from kitsrt.io.masks import bounding_box

    box = bounding_box(labels.array > 0)
    if box is None:
        center = volume_center_mm(ct)
    else:
        center_kji = [(s.start + s.stop - 1) / 2.0 for s in box]
        center = tuple(ct.geometry.index_to_physical([list(reversed(center_kji))])[0])
    write_png(render_views(ct, None, [center]), path, overwrite)


@app.command("eval")
@_user_errors
def evaluate(
    prediction: Path = typer.Argument(..., help="Predicted label map, or a folder of them."),
    reference: Path = typer.Argument(..., help="Reference label map, or a folder of them (paired by case name)."),
    tolerance_mm: float = typer.Option(2.0, min=0.0, help="Surface-Dice tolerance in mm (finite, above 0)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write per-case and mean scores as JSON."),
    csv_out: Optional[Path] = typer.Option(None, "--csv", help="Write per-case scores as CSV."),
    overwrite: bool = typer.Option(False, help="Replace existing output files."),
):
    """Score predictions with the KiTS19 Dice (kidney = label>0, tumor = label>1, composite = mean)
    and a surface Dice at --tolerance-mm.

    Example: kitsrt eval seg.nii.gz case_00021/segmentation.nii.gz --json scores.json
    """
    from kitsrt.eval.evaluate import evaluate_pairs, mean_scores, pair_cases, scores_csv, scores_json
    from kitsrt.io import write_text_atomic

    from kitsrt.io import check_output_path
    from kitsrt.io.outputs import check_outputs_apart
    from kitsrt.eval.metrics import check_tolerance

    check_tolerance(tolerance_mm)
    for path, suffix in ((json_out, ".json"), (csv_out, ".csv")):
        if path is not None:
            check_output_path(path, overwrite, (suffix,))
    for path in (prediction, reference):
        if not path.exists():
            raise InputError(f"{path}: no such file or folder")
    check_outputs_apart([json_out, csv_out], [prediction, reference])
    scores = evaluate_pairs(pair_cases(prediction, reference), tolerance_mm)
    table = Table(title=f"KiTS19 Dice (surface Dice at {tolerance_mm:g} mm)")
    for column in ("case", "kidney", "tumor", "composite", "kidney SD", "tumor SD"):
        table.add_column(column, justify="left" if column == "case" else "right")
    rows = [(s.case, s.kidney_dice, s.tumor_dice, s.composite_dice, s.kidney_surface_dice,
             s.tumor_surface_dice) for s in scores]
    if len(scores) > 1:
        m = mean_scores(scores)
        rows.append(("mean", m["kidney_dice"], m["tumor_dice"], m["composite_dice"],
                     m["kidney_surface_dice"], m["tumor_surface_dice"]))
    for case, *values in rows:
        table.add_row(case, *(f"{v:.4f}" for v in values))
    out.print(table)
    if json_out is not None:
        write_text_atomic(scores_json(scores), json_out, overwrite)
    if csv_out is not None:
        write_text_atomic(scores_csv(scores), csv_out, overwrite)


@app.command()
@_user_errors
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
    """Segment kidneys and tumors with the coarse-to-fine cascade; the label map is written on the
    input's exact grid. Exit code 3 (with an empty map written) when no kidney is found; with
    --strict, 7 when the report carries quality warnings. A batch skips cases whose outputs exist
    (resume) and records a failing case and goes on.

    Example: kitsrt infer scan.nii.gz -o seg.nii.gz --report report.json --preview preview.png
    Example: kitsrt infer series_folder/ --format dicom-seg -o seg.dcm
    """
    from kitsrt.io import OUTPUT_SUFFIXES, check_output_path
    from kitsrt.runtime.batch import default_output, is_single_scan, list_scans, plan_batch
    from kitsrt.runtime.segmenter import Result, Segmenter

    if output_format not in ("auto", "image", "dicom-seg"):
        raise InputError(f"--format {output_format!r}: expected auto, image or dicom-seg")
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
    else:
        if output is None:
            raise InputError(f"{len(paths)} scans: give an output folder with -o")
        if series is not None or preview is not None:
            raise InputError("--series and --preview apply to one scan; run that scan on its own")
        cases = plan_batch(paths, output)
    _check_infer_outputs(paths, model, [target] if single else [c.output for c in cases] + [c.report for c in cases],
                         report, preview)
    from kitsrt.runtime.batch import CaseLimits

    limits = CaseLimits(time_limit_s, None if memory_budget_gb is None else int(memory_budget_gb * 2**30))
    with Segmenter.load(model, backend=backend, threads=threads, precision=precision) as segmenter:
        if single:
            write_labels = _seg_writer(paths[0], segmenter) if dicom_seg else Result.write
            _infer_one(segmenter, paths[0], series, target, report, preview, overwrite, quiet, write_labels, limits,
                       strict)
            return
        summaries = _run_batch_with_progress(segmenter, cases, overwrite, quiet, limits)
    if report is not None:
        write_text_atomic_json(summaries, report, overwrite)
    failed = [s for s in summaries if s["status"] == "failed"]
    if failed and all(s.get("exit_code") == ResourceLimitError.exit_code for s in failed):
        raise ResourceLimitError(f"{len(failed)} of {len(summaries)} scan(s) exceeded a resource limit (the others "
                                 f"ran), e.g. {failed[0]['error']}")
    if failed:
        raise InputError(f"{len(failed)} of {len(summaries)} scan(s) failed (the others ran), e.g. {failed[0]['error']}")
    if any(not s["kidney_found"] for s in summaries if s["status"] == "done"):
        raise NoKidneyFound("no kidney found in: " + ", ".join(
            s["case"] for s in summaries if s["status"] == "done" and not s["kidney_found"]))
    flagged = [s["case"] for s in summaries if s["status"] == "done" and s["warnings"]]
    if strict and flagged:
        raise QualityWarnings(f"--strict: quality warnings in {len(flagged)} case(s) ({', '.join(flagged[:5])}); "
                              "outputs written, see each case's report")


def _check_infer_outputs(paths, model, outputs, report, preview) -> None:
    """No output may be a scan, a package file or another output (same resolved path or inode)."""
    from kitsrt.io.outputs import check_outputs_apart
    from kitsrt.runtime.package import demo_package_path

    package = model if model is not None else demo_package_path()
    package_files = [p for p in package.iterdir() if p.is_file()] if package.is_dir() else []
    check_outputs_apart([*outputs, report, preview], [*paths, *package_files])


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


def _seg_writer(series_folder: Path, segmenter):
    """write_labels for write_outputs: the result as a DICOM SEG referencing ``series_folder``."""
    from kitsrt.io.dicom_seg import require_highdicom
    from kitsrt.runtime.dicom_output import seg_algorithm, write_result_seg

    require_highdicom()
    algorithm = seg_algorithm(segmenter.package)
    return lambda result, path, overwrite: write_result_seg(result, series_folder, path, algorithm, overwrite)


def _infer_one(segmenter, path: Path, series, target: Path, report, preview, overwrite: bool, quiet: bool,
               write_labels, limits, strict: bool) -> None:
    import time

    from kitsrt.io import read_ct
    from kitsrt.runtime.batch import check_memory_budget, write_outputs

    check_memory_budget(path, limits.memory_budget_bytes)
    start = time.perf_counter()
    scan = read_ct(path, series)
    read_s = time.perf_counter() - start
    result = segmenter.segment(scan, limits.time_limit_s)
    result.report["timings_s"] = {"read": round(read_s, 4), **result.report["timings_s"]}
    write_outputs(result, scan, target, report, preview, overwrite, write_labels)
    _print_result(path, target, result, quiet)
    if not result.kidney_found:
        raise NoKidneyFound(f"{path}: no kidney found; wrote an empty label map to {target}")
    codes = [w["code"] for w in result.report["warnings"]]
    if strict and codes:
        raise QualityWarnings(f"{path}: --strict and {len(codes)} quality warning(s) ({', '.join(codes)}); "
                              f"outputs written, see the report")


def write_text_atomic_json(data, path: Path, overwrite: bool) -> None:
    import json

    from kitsrt.io import write_text_atomic

    write_text_atomic(json.dumps(data, indent=2) + "\n", path, overwrite)


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


def _run_batch_with_progress(segmenter, cases, overwrite, quiet, limits=None):
    from rich.progress import Progress

    from kitsrt.runtime.batch import CaseLimits, run_batch

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

        return run_batch(segmenter, cases, overwrite, done, limits or CaseLimits())


@app.command()
@_user_errors
def train(
    data: Path = typer.Argument(..., help="KiTS-layout folder: case_*/segmentation.nii.gz (+ imaging.nii.gz; "
                                          "a phantom is synthesized where imaging is missing)."),
    stage: Optional[str] = typer.Option(None, help="coarse (6 mm, whole scan) or fine (1 mm, kidney VOIs); with "
                                                   "--preset seed004: kidney or tumor (default: both)."),
    output: Path = typer.Option(..., "-o", "--output", help="Folder for checkpoint.pt and config.json "
                                                            "(seed004: one subfolder per network)."),
    exclude: str = typer.Option("", help="Comma-separated cases to hold out (never trained on)."),
    steps: int = typer.Option(300, min=1, help="Optimizer steps."),
    batch_size: int = typer.Option(2, min=1, max=1024, help="Crops per step."),
    crop: str = typer.Option("64,64,64", help="Training crop z,y,x in voxels (multiple of the divisibility)."),
    preset: Optional[str] = typer.Option(None, help="seed004 (nested V-Nets), or a seed 002 VB-Net size (coarse, "
                                                    "fine, tiny; default: the stage's)."),
    learning_rate: float = typer.Option(2e-3, help="Adam learning rate (cosine-decayed)."),
    seed: int = typer.Option(0, min=0, max=2**32 - 1, help="Random seed."),
    threads: int = typer.Option(2, min=1, max=256, help="CPU threads for torch."),
    cache: Optional[Path] = typer.Option(None, help="Folder caching the preprocessed volumes between runs."),
    resume: bool = typer.Option(False, help="Continue from output/checkpoint.pt."),
):
    """Train with a seed's recipe (needs the export extra: torch): a seed 002 VB-Net stage, or the
    seed 004 nested V-Nets (--preset seed004: kidney, then tumor on the kidney-masked volume).

    Example: kitsrt train ../shared/data/kits19 --stage fine -o work/fine --exclude case_00021 --steps 400

    Example: kitsrt train ../shared/data/kits19 --preset seed004 -o work/seed004 --steps 400
    """
    from rich.progress import Progress

    from kitsrt.training import require_torch

    require_torch()
    from kitsrt.training.data import prepare_all
    from kitsrt.training.trainer import preset_config, train as run_training, training_plan

    _finite(learning_rate, "learning-rate", 1e-8, 10.0)
    spec, roles = training_plan(preset, stage)
    configs = {role: preset_config(role, preset, steps=steps, batch_size=batch_size, crop=_triple(crop, "crop", int),
                                   learning_rate=learning_rate, seed=seed, threads=threads) for role in roles}
    for config in configs.values():
        if any(c % config.model.divisibility for c in config.crop):
            raise InputError(f"--crop {crop}: each size must be a multiple of {config.model.divisibility}")
    excluded = {c for c in exclude.split(",") if c}
    with Progress(console=err, transient=False) as bar:
        task = bar.add_task("preparing cases", total=None)
        volumes = prepare_all(data, spec, excluded, cache,
                              progress=lambda case: bar.update(task, description=f"prepared {case}"))
        bar.update(task, total=1, completed=1)
        for role, config in configs.items():
            folder = output / role if preset == "seed004" else output
            task = bar.add_task(f"training {role}", total=steps)
            summary = run_training(volumes[role], config, folder, resume,
                                   progress=lambda step, loss, t=task, r=role: bar.update(
                                       t, completed=step, description=f"training {r} loss {loss:.3f}"))
            err.print(f"{role}: trained {summary['steps']} steps in {summary['seconds']:.0f} s "
                      f"({summary['cpu_seconds']:.0f} s CPU) on {len(volumes[role])} volumes; "
                      f"final loss {summary['final_loss']:.3f}; wrote {folder / 'checkpoint.pt'}")


@app.command()
@_user_errors
def export(
    checkpoint: Path = typer.Argument(..., help="Checkpoint (.pt) written by `kitsrt train` (or a bare state_dict)."),
    output: Path = typer.Option(..., "-o", "--output", help="ONNX file to write; its model card goes beside it (.json)."),
    stage: Optional[str] = typer.Option(None, help="coarse or fine (seed 002), kidney or tumor (seed 004): sets the "
                                                   "card's spacing, normalisation and labels from the seed's preset."),
    config: Optional[Path] = typer.Option(None, help="config.json of the checkpoint (default: beside it)."),
    factory: Optional[str] = typer.Option(None, help="package.module:callable building a network kitsrt does not "
                                                     "define (e.g. monai.networks.nets:UNet); replaces --stage."),
    factory_kwargs: str = typer.Option("{}", help="--factory: keyword arguments as a JSON object."),
    input_shape: str = typer.Option("1,64,64,64", help="--factory: example input C,D,H,W to trace on."),
    provenance: str = typer.Option("", help="Free text for the card: data, command, duration."),
    demo: bool = typer.Option(False, help="Mark the card as a demo model trained on synthetic phantoms."),
    training_data: Optional[Path] = typer.Option(None, help="JSON for the card's training_data (contrast_enhanced, "
                                                            "spacing_mm {in_plane, slice}): the runtime warns outside it."),
    overwrite: bool = typer.Option(False, help="Replace an existing ONNX file and card."),
):
    """Export a checkpoint to ONNX (opset 17, dynamic spatial axes), check parity against PyTorch
    through onnxruntime on random and phantom inputs, and write a model card beside it.

    Example:

        kitsrt export work/fine/checkpoint.pt --stage fine -o models/fine.onnx

    Writes models/fine.onnx and models/fine.json; fails (exit 5, nothing written) when the largest
    |logit difference| exceeds 1e-4. Any other PyTorch network:

        kitsrt export unet.pt --factory monai.networks.nets:UNet --factory-kwargs '{"spatial_dims": 3,
        "in_channels": 1, "out_channels": 3, "channels": [8, 16, 32], "strides": [2, 2]}' -o unet.onnx
    """
    from kitsrt.training import require_torch

    require_torch()
    if factory is not None:
        from kitsrt.export.factory import export_factory, parse_kwargs

        shape = _triple_plus_channels(input_shape)
        card = export_factory(factory, parse_kwargs(factory_kwargs), checkpoint, output, shape, overwrite)
        parity = card["parity_vs_torch"]
        err.print(f"wrote {output} and {output.with_suffix('.json')}: parity max |Δlogit| "
                  f"{parity['max_abs_logit_diff']:.2e} on {parity['inputs']} inputs")
        return
    if stage is None:
        raise InputError("kitsrt export: pass --stage coarse|fine|kidney|tumor (a kitsrt VB-Net or V-Net) or "
                         "--factory module:callable")
    from kitsrt.export.card import DEMO_DISCLAIMER
    from kitsrt.export.onnx_export import card_facts, export as run_export, load_checkpoint, parity_volume

    loaded = load_checkpoint(checkpoint, config)
    facts = card_facts(stage, provenance, DEMO_DISCLAIMER if demo else "")
    facts["training_data"] = _json_file(training_data)
    card = run_export(loaded, output, facts, parity_volume(stage), overwrite)
    parity = card["parity_vs_torch"]
    err.print(f"wrote {output} and {output.with_suffix('.json')}: parity max |Δlogit| "
              f"{parity['max_abs_logit_diff']:.2e}, argmax agreement {parity['argmax_agreement']:.6f} "
              f"on {parity['inputs']} inputs")


@app.command()
@_user_errors
def calibrate(
    output: Path = typer.Option(..., "-o", "--output", help="New folder for the calibration set."),
    cases: Optional[Path] = typer.Option(None, "--cases", help="KiTS-layout folder (case_*/segmentation.nii.gz "
                                                               "[+ imaging.nii.gz]; phantoms where imaging is missing)."),
    procedural: int = typer.Option(0, min=0, max=10_000, help="Add N procedural phantom cases."),
    model: Optional[Path] = typer.Option(None, "--model", help="Model package whose coarse net places the VOIs (default: demo)."),
    holdout: float = typer.Option(0.25, min=0.0, max=1.0, help="Share of cases held out for the accuracy gate."),
    seed: int = typer.Option(0, min=0, max=2**32 - 1, help="Seed for the hold-out split and procedural cases."),
    threads: int = typer.Option(0, min=0, max=256, help="onnxruntime threads."),
):
    """Build a calibration set: coarse 6 mm inputs and fine 1 mm VOIs drawn through the runtime's
    own preprocessing (the VOIs the package's cascade finally ran on, after growth), with a manifest.

    Example: kitsrt calibrate --cases ../shared/data/kits19 -o calib/ --holdout 0.25
    """
    from kitsrt.calibration.dataset import build_set, phantom_sources
    from kitsrt.runtime.package import load_package
    from kitsrt.runtime.segmenter import Segmenter

    _finite(holdout, "holdout", 0.0, 1.0)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise InputError(f"{output}: folder exists and is not empty; choose a new folder")
    package = load_package(model)
    sources = phantom_sources(cases, procedural, seed)
    with Segmenter.load(model, backend="onnxruntime", threads=threads) as segmenter:
        manifest = build_set(sources, package, segmenter, output, holdout, seed,
                             progress=lambda case: err.print(f"  drew {case}"))
    counts = {k: v["count"] for k, v in manifest["stages"].items()}
    held = sum(1 for e in manifest["sources"] if e["split"] == "holdout")
    err.print(f"wrote {output}: {len(sources)} cases ({held} held out), inputs per stage {counts}")


@app.command()
@_user_errors
def quantize(
    calibration: Path = typer.Option(..., "--calibration", help="Calibration set folder from `kitsrt calibrate`."),
    precision: str = typer.Option("int8", help="int8 (Q/DQ), fp16, or bf16 (OpenVINO runtime precision: gate only, no file)."),
    method: str = typer.Option("minmax", help="INT8 calibration: minmax, entropy or percentile."),
    model: Optional[Path] = typer.Option(None, "--model", help="Model package (default: demo); variants are written into it."),
    max_dice_drop: float = typer.Option(0.005, min=-1.0, max=1.0, help="Refuse when composite Dice falls by more than this (negative: demand a gain)."),
    force: bool = typer.Option(False, help="Keep the variant even when the gate fails (recorded in its card)."),
    ops: str = typer.Option("Conv,ConvTranspose,Add", help="INT8: op types to quantize (TensorRT fuses these)."),
    target_agreement: float = typer.Option(
        0.99, help="INT8: keep the most sensitive layers in float until each stage's labels on calibration "
                   "inputs agree with FP32 at least this much (worst class Dice); 0 quantizes every layer."),
    probe_inputs: int = typer.Option(4, min=1, max=1000, help="INT8: calibration inputs the sensitivity search measures on."),
    threads: int = typer.Option(0, min=0, max=256, help="onnxruntime threads."),
):
    """Make FP16 or INT8 Q/DQ variants of both networks and gate them on the held-out split (bf16:
    gate OpenVINO's BF16 inference of the FP32 files and record it in <stage>.bf16.json).

    Writes <stage>.<precision>.onnx and its card (with a `gate` object) into the package; exit 5 and
    no file when the composite Dice drops by more than --max-dice-drop. INT8 runs a per-layer
    sensitivity search first (minutes): layers that cost most accuracy stay in float.

    Example: kitsrt quantize --calibration calib/ --precision int8 --method entropy
    """
    from kitsrt.calibration.variants import gate_runtime_precision, make_variants

    if precision not in ("int8", "fp16", "bf16"):
        raise InputError(f"--precision {precision!r}: expected int8, fp16 or bf16")
    _finite(max_dice_drop, "max-dice-drop", -1.0, 1.0)
    if precision == "bf16":
        gate = gate_runtime_precision(model, calibration, precision, max_dice_drop, force, threads)
        err.print(f"bf16 (OpenVINO) gate on {gate['heldout_cases']} held-out cases: composite Dice delta "
                  f"{gate['composite_dice_delta']:+.4f}, argmax agreement {gate['argmax_agreement']:.4f}, "
                  f"{'passed' if gate['passed'] else 'FAILED (kept: --force)'}")
        return
    from kitsrt.calibration.precision import METHODS

    if method not in METHODS:
        raise InputError(f"--method {method!r}: expected one of {', '.join(METHODS)}")
    if not 0 <= target_agreement <= 1 or probe_inputs < 1:
        raise InputError(f"--target-agreement {target_agreement} / --probe-inputs {probe_inputs}: expected "
                         "an agreement in [0, 1] and at least one probe input")
    gate = make_variants(model, calibration, precision, method, max_dice_drop, force, threads,
                         [op for op in ops.split(",") if op], target_agreement, probe_inputs)
    err.print(f"{precision} gate on {gate['heldout_cases']} held-out cases: composite Dice delta "
              f"{gate['composite_dice_delta']:+.4f}, argmax agreement {gate['argmax_agreement']:.4f}, "
              f"{'passed' if gate['passed'] else 'FAILED (kept: --force)'}")
    for stage, nodes in (gate.get("float_nodes") or {}).items():
        err.print(f"{stage}: {len(nodes)} sensitive layer(s) kept in float")


@app.command()
@_user_errors
def build(
    model: Optional[Path] = typer.Option(None, "--model", help="Model package (default: demo); engines go beside the ONNX files."),
    precision: str = typer.Option("fp32", help="Which ONNX variant to compile: fp32, fp16 or int8 (precision lives in the file)."),
    workspace_gb: float = typer.Option(2.0, min=0.0, max=1024.0, help="Builder workspace limit in GiB."),
):
    """Compile TensorRT engines (<stage>[.<precision>].plan + sidecar) for both networks, with
    optimisation profiles from the pipeline spec and a timing cache. Needs TensorRT and a GPU.

    Example: kitsrt build --precision int8
    """
    from kitsrt.engines.tensorrt_backend import plan_path
    from kitsrt.engines.tensorrt_build import build_engine, import_tensorrt, profile_shapes
    from kitsrt.runtime.package import load_package
    from kitsrt.runtime.segmenter import variant_path

    _finite(workspace_gb, "workspace-gb", 0.01, 1024.0)
    import_tensorrt()
    package = load_package(model)
    for name in ("coarse", "fine"):
        stage = getattr(package.spec, name)
        onnx_path = package.model_path(stage) if precision == "fp32" else variant_path(package, name, precision)
        sidecar = build_engine(onnx_path, plan_path(onnx_path), stage.input_name,
                               profile_shapes(stage.min_shape, stage.max_shape), precision,
                               package.folder / "timing.cache", int(workspace_gb * 2**30))
        err.print(f"built {plan_path(onnx_path)} (TensorRT {sidecar.tensorrt_version}, {sidecar.gpu_name}, "
                  f"sm {sidecar.compute_capability})")


@app.command()
@_user_errors
def bench(
    out: Path = typer.Option(Path("benchmarks/results"), "--out", help="Folder for bench.json, bench.md and bench.png."),
    kits19: Optional[Path] = typer.Option(None, help="KiTS19 label-map folder (default: ../shared/data/kits19 when present)."),
    runs: int = typer.Option(3, min=1, max=1000, help="Warm runs per configuration (after one warm-up)."),
    threads: int = typer.Option(2, min=1, max=256, help="Threads per network, for every backend alike."),
    backends: str = typer.Option("onnxruntime", help="Comma-separated backends to time (torch eager is always the baseline)."),
    precisions: str = typer.Option("fp32", help="Comma-separated precisions to time (fp32, fp16, int8, bf16); "
                                   "each backend runs those it offers."),
    baseline_windows: int = typer.Option(6, min=1, help="Sliding-window baseline: windows timed before scaling to the full count."),
    full_baseline: bool = typer.Option(False, help="Run the sliding-window baseline over the whole scan (slow)."),
    work: Optional[Path] = typer.Option(None, help="Folder to keep the phantom scans between runs."),
    quick: bool = typer.Option(False, help="One tiny procedural case, for a smoke test."),
    cases: str = typer.Option("", help="Comma-separated cases to run (small, median, largest; default all)."),
    rounds: int = typer.Option(1, min=1, max=100, help="Interleave the configurations over this many rounds (each a fresh process)."),
    throughput: bool = typer.Option(False, "--throughput", help="Also time 10 median-size phantoms through one "
                                    "loaded Segmenter, overlapped and one by one (scans per hour, CPU use)."),
):
    """Time the cascade per stage on phantoms at real KiTS19 geometries, next to the whole-scan
    sliding window (MONAI), the torch eager cascade and the bare decode, in one run.

    Example: kitsrt bench --runs 3   (needs the bench extra: pip install -e '.[bench]')
    """
    import json
    import tempfile

    from kitsrt.bench.latency import bench_case, bench_configs, bench_scans, describe_machine, markdown_table, plot_png
    from kitsrt.io import write_text_atomic
    from kitsrt.training import require_torch

    require_torch()
    try:
        import monai  # noqa: F401
    except ImportError:
        raise InputError("kitsrt bench needs MONAI for its sliding-window baseline: pip install -e '.[bench]'") from None
    if not out.exists():
        out.mkdir(parents=True)
    default_kits = Path(__file__).resolve().parents[2] / "shared" / "data" / "kits19"
    kits19 = kits19 or (default_kits if default_kits.exists() else None)
    configs = bench_configs(backends.split(","), precisions.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        scans = bench_scans(kits19, work or Path(tmp), quick)
        if cases:
            wanted = cases.split(",")
            scans = [(name, path) for name, path in scans if name.split(" ")[0] in wanted]
        results = [bench_case(name, path, configs, runs, threads, 1 if quick else baseline_windows, full_baseline,
                              progress=lambda text: err.print(text), rounds=rounds) for name, path in scans]
        report = {"machine": describe_machine(), "runs": runs, "rounds": rounds, "threads": threads, "cases": results}
        if throughput:
            from kitsrt.bench.throughput import bench_throughput, throughput_scans

            paths = throughput_scans(kits19, work or Path(tmp), 2 if quick else 10, quick)
            report["throughput"] = bench_throughput(paths, *configs[0], threads, 1 if quick else min(runs, 2),
                                                    progress=lambda text: err.print(text))
    write_text_atomic(json.dumps(report, indent=2) + "\n", out / "bench.json", overwrite=True)
    table = markdown_table(report)
    write_text_atomic(table + "\n", out / "bench.md", overwrite=True)
    plotted = plot_png(report, out / "bench.png")
    out_console = Console(highlight=False, width=200)
    out_console.print(table)
    err.print(f"wrote {out / 'bench.json'}, {out / 'bench.md'}" + (f", {out / 'bench.png'}" if plotted else
                                                                      " (no PNG: matplotlib missing)"))


import_app = typer.Typer(no_args_is_help=True, help="Turn models trained elsewhere into kitsrt packages.")
app.add_typer(import_app, name="import")


@import_app.command("nnunet")
@_user_errors
def import_nnunet(
    model_folder: Path = typer.Argument(..., help="nnU-Net v2 trained-model folder "
                                                  "(.../DatasetXXX_Name/<trainer>__<plans>__<configuration>)."),
    output: Path = typer.Option(..., "-o", "--output", help="Package folder to write."),
    folds: str = typer.Option("", help="Comma-separated folds to ensemble (default: every fold with a checkpoint)."),
    checkpoint: str = typer.Option("checkpoint_final.pth", help="Checkpoint file name inside each fold_N folder."),
    label_map: str = typer.Option("", help="nnU-Net label VALUE:kitsrt LABEL for values other than 0, 1, 2 (e.g. 3:1)."),
    mirroring: bool = typer.Option(True, help="Mirroring test-time augmentation, as nnU-Net does by default."),
    overwrite: bool = typer.Option(False, help="Replace an existing package folder."),
):
    """Import an nnU-Net v2 model folder as a torch-free `sliding-window` package: one ONNX file per
    fold (parity-checked, with a card) and a pipeline.json reproducing nnU-Net's predictor.

    Example:

        kitsrt import nnunet nnUNet_results/Dataset220_KiTS2019/nnUNetTrainer__nnUNetPlans__3d_fullres -o kits19_pkg

    Needs the nnunet extra (torch, nnunetv2) at import time only; `kitsrt infer --model kits19_pkg` runs
    without either.
    """
    from kitsrt.training import require_torch

    require_torch()
    from kitsrt.export.nnunet import import_nnunet as run_import
    from kitsrt.export.nnunet import parse_label_map

    try:
        import nnunetv2  # noqa: F401
    except ImportError:
        from kitsrt.errors import BackendUnavailable

        raise BackendUnavailable("kitsrt import nnunet needs nnunetv2: pip install 'kitsrt[nnunet]'") from None
    chosen = [f.strip() for f in folds.split(",") if f.strip()] or None
    spec = run_import(model_folder, output, chosen, checkpoint, parse_label_map(label_map), mirroring, overwrite)
    err.print(f"wrote {output}: {len(spec.folds)} fold(s), patch {list(spec.patch_size)} at "
              f"{list(spec.target_spacing_mm)} mm, {spec.normalization.scheme} normalisation, "
              f"{spec.outputs.mode} outputs, mirroring {'on' if spec.use_mirroring else 'off'}")


serve_app = typer.Typer(no_args_is_help=True, help="Run kitsrt as a network service.")
app.add_typer(serve_app, name="serve")


@serve_app.command("dicom")
@_user_errors
def serve_dicom(
    ae_title: str = typer.Option("KITSRT", "--ae-title", help="This node's AE title."),
    port: int = typer.Option(11112, "--port", min=1, max=65535, help="TCP port to listen on."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (default: loopback only)."),
    forward: Optional[str] = typer.Option(None, "--forward", help="C-STORE each SEG to AE@host:port."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write each SEG to this folder (and keep undelivered ones here)."),
    quiet_s: float = typer.Option(5.0, "--quiet-s", min=0.0, max=86400.0, help="A series is complete after this many seconds without a new instance."),
    allow: Optional[str] = typer.Option(None, "--allow", help="Comma-separated calling AE titles allowed (default: any)."),
    max_instances: int = typer.Option(2000, "--max-instances", min=1, help="Refuse a series with more instances than this."),
    max_series: int = typer.Option(8, "--max-series", min=1, help="Series held at once (arriving, queued or running)."),
    forward_attempts: int = typer.Option(5, "--forward-attempts", min=1, max=100, help="C-STORE attempts before a SEG is kept as a file."),
    forward_backoff_s: float = typer.Option(1.0, "--forward-backoff-s", min=0.0, max=3600.0, help="First retry delay; doubled each time."),
    spool: Optional[Path] = typer.Option(None, "--spool", help="Folder for incoming instances (default: a temporary one)."),
    model: Optional[Path] = typer.Option(None, "--model", help="Model package folder (default: the bundled demo)."),
    backend: str = typer.Option("onnxruntime", "--backend", help="Inference backend."),
    threads: int = typer.Option(0, "--threads", min=0, max=256, help="Threads per network (0: the backend's default)."),
    time_limit_s: Optional[float] = typer.Option(None, "--time-limit-s", min=1.0, max=86400.0,
                                                 help="Fail a series past this many seconds; the node keeps serving."),
    memory_budget_gb: Optional[float] = typer.Option(None, "--memory-budget-gb", min=0.1, max=4096.0,
                                                     help="Refuse a series estimated (from its headers) to need more "
                                                          "memory than this; the node keeps serving."),
):
    """Receive CT series by C-STORE, segment each complete series, send back a DICOM SEG; one JSON
    line per event on stdout. Stops cleanly on SIGTERM or Ctrl-C.

    Example: kitsrt serve dicom --ae-title KITSRT --port 11112 --forward ORTHANC@127.0.0.1:4242
    """
    import signal
    import threading

    from kitsrt.serve.launch import node_config, start_node

    config = node_config(ae_title=ae_title, host=host, port=port, forward=forward, out=out, quiet_s=quiet_s,
                         allow=allow, max_instances=max_instances, max_series=max_series,
                         forward_attempts=forward_attempts, forward_backoff_s=forward_backoff_s, spool=spool,
                         time_limit_s=time_limit_s, memory_budget_gb=memory_budget_gb)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    node = start_node(config, model, backend, threads)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        node.stop()
        node.segmenter.close()


def main(args: list[str] | None = None) -> None:
    """The console entry point: ``app``, with typer's usage errors (an option out of its range, a
    missing argument) printed as one ``error:`` line with exit code 2 like every other user error."""
    try:
        code = app(args=args, standalone_mode=False)
    except typer.Abort:
        raise SystemExit(130) from None
    except typer.TyperException as exc:  # typer's (vendored click) usage errors
        if type(exc).__name__ == "NoArgsIsHelpError" or not hasattr(exc, "format_message"):
            exc.show()
        else:
            err.print(f"[bold red]error:[/] {escape(_one_line(exc.format_message()))}", soft_wrap=True)
        raise SystemExit(getattr(exc, "exit_code", 2)) from None
    raise SystemExit(code if isinstance(code, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
