"""`kitsrt eval`: score predicted label maps against references, one case or two folders.

Folders are paired by case name: a file's name without its suffix (``case_00021.nii.gz`` ->
``case_00021``), or its folder's name for KiTS-layout files (``case_00021/segmentation.nii.gz``).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from kitsrt.errors import InputError
from kitsrt.io import SUPPORTED_SUFFIXES, Geometry, read_label_map
from kitsrt.io.names import case_name
from kitsrt.eval.metrics import CaseScores, check_tolerance, score_case

GEOMETRY_TOLERANCE = 1e-4  # mm (and unitless for direction cosines): float32 header round-off


def _label_files(folder: Path) -> dict[str, Path]:
    files = [p for p in sorted(folder.rglob("*"))
             if p.is_file() and any(p.name.lower().endswith(s) for s in SUPPORTED_SUFFIXES)
             and not p.name.startswith(".")]
    return {case_name(p): p for p in files}


def pair_cases(pred: Path, ref: Path) -> list[tuple[str, Path, Path]]:
    """(case, prediction file, reference file) triples; files, or folders paired by case name."""
    if pred.is_dir() != ref.is_dir():
        raise InputError(f"{pred} and {ref}: give two files or two folders, not one of each")
    if not pred.is_dir():
        return [(case_name(ref), pred, ref)]
    preds, refs = _label_files(pred), _label_files(ref)
    missing = sorted(set(refs) - set(preds))
    if missing:
        raise InputError(f"{pred}: no prediction for {len(missing)} reference case(s), "
                         f"e.g. {', '.join(missing[:3])}; every case in {ref} needs one")
    if not refs:
        raise InputError(f"{ref}: folder holds no label maps ({', '.join(SUPPORTED_SUFFIXES)})")
    return [(case, preds[case], refs[case]) for case in sorted(refs)]


def check_same_grid(a: Geometry, b: Geometry, a_name: str, b_name: str) -> None:
    """Raise InputError naming the first geometry field in which two grids differ."""
    if a.size != b.size:
        raise InputError(f"{a_name}: size {a.size} differs from {b_name} size {b.size}; "
                         "prediction and reference must share one grid")
    for field in ("spacing_mm", "origin_mm", "direction"):
        va, vb = np.asarray(getattr(a, field)), np.asarray(getattr(b, field))
        if not np.allclose(va, vb, rtol=0, atol=GEOMETRY_TOLERANCE):
            raise InputError(f"{a_name}: {field} {tuple(np.round(va, 4))} differs from {b_name} "
                             f"{tuple(np.round(vb, 4))}; prediction and reference must share one grid")


def evaluate_pairs(pairs: list[tuple[str, Path, Path]], tolerance_mm: float) -> list[CaseScores]:
    check_tolerance(tolerance_mm)
    scores = []
    for case, pred_path, ref_path in pairs:
        pred, ref = read_label_map(pred_path), read_label_map(ref_path)
        check_same_grid(pred.geometry, ref.geometry, str(pred_path), str(ref_path))
        scores.append(score_case(pred.array, ref.array, ref.geometry.array_spacing_mm, tolerance_mm, case))
    return scores


def mean_scores(scores: list[CaseScores]) -> dict[str, float]:
    fields = ("kidney_dice", "tumor_dice", "composite_dice", "kidney_surface_dice", "tumor_surface_dice")
    return {f: float(np.mean([getattr(s, f) for s in scores])) for f in fields}


def scores_json(scores: list[CaseScores]) -> str:
    return json.dumps({"cases": [s.as_dict() for s in scores], "mean": mean_scores(scores),
                       "convention": "KiTS19: kidney = label>0, tumor = label>1; empty/empty scores 0.0"},
                      indent=2)


def scores_csv(scores: list[CaseScores]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(scores[0].as_dict()))
    writer.writeheader()
    for s in scores:
        writer.writerow(s.as_dict())
    return buffer.getvalue()


def check_eval_request(prediction: Path, reference: Path, tolerance_mm: float, json_out: Path | None,
                       csv_out: Path | None, overwrite: bool) -> None:
    """Refuse, before scoring, a bad tolerance, a missing input or an output that clashes."""
    from kitsrt.io import check_output_path
    from kitsrt.io.outputs import check_outputs_apart

    check_tolerance(tolerance_mm)
    for path, suffix in ((json_out, ".json"), (csv_out, ".csv")):
        if path is not None:
            check_output_path(path, overwrite, (suffix,))
    for path in (prediction, reference):
        if not path.exists():
            raise InputError(f"{path}: no such file or folder")
    check_outputs_apart([json_out, csv_out], [prediction, reference])


def write_scores(scores: list[CaseScores], json_out: Path | None, csv_out: Path | None, overwrite: bool) -> None:
    from kitsrt.io import write_text_atomic

    if json_out is not None:
        write_text_atomic(scores_json(scores), json_out, overwrite)
    if csv_out is not None:
        write_text_atomic(scores_csv(scores), csv_out, overwrite)
