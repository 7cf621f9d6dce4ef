"""The command line: phantom and eval work, and user mistakes give one line and an exit code."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from kitsrt.cli import app
from kitsrt.io import read_label_map, read_scan, write_label_map

runner = CliRunner()


def run(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result


@pytest.fixture()
def procedural_files(tmp_path):
    ct, labels = tmp_path / "ct.nii.gz", tmp_path / "labels.nii.gz"
    result = run("phantom", "--procedural", "--size", "64,64,24", "--spacing", "5,5,8", "-o", ct,
                 "--label-out", labels, "--seed", 4)
    assert result.exit_code == 0, result.output
    return ct, labels


def test_phantom_from_label_map_matches_its_grid(tmp_path, procedural_files):
    _, labels = procedural_files
    out, preview = tmp_path / "again.nii.gz", tmp_path / "again.png"
    assert run("phantom", labels, "-o", out, "--preview", preview).exit_code == 0
    assert read_scan(out).geometry == read_label_map(labels).geometry
    assert preview.stat().st_size > 1000


def test_eval_scores_one_case_and_writes_json_and_csv(tmp_path, procedural_files):
    _, labels = procedural_files
    ref = read_label_map(labels)
    pred = ref.array.copy()
    pred[pred == 2] = 1  # tumor missed
    write_label_map(pred, ref.geometry, tmp_path / "pred.nii.gz")
    result = run("eval", tmp_path / "pred.nii.gz", labels, "--json", tmp_path / "s.json", "--csv", tmp_path / "s.csv")
    assert result.exit_code == 0, result.output
    scores = json.loads((tmp_path / "s.json").read_text())
    assert scores["cases"][0]["kidney_dice"] == pytest.approx(1.0)
    assert scores["cases"][0]["tumor_dice"] == 0.0  # missed, or empty vs empty (KiTS19 convention)
    assert "1.0000" in result.output
    assert (tmp_path / "s.csv").read_text().startswith("case,kidney_dice")


def test_eval_pairs_folders_by_case_name(tmp_path, procedural_files):
    _, labels = procedural_files
    ref = read_label_map(labels)
    for case in ("case_a", "case_b"):
        (tmp_path / "ref" / case).mkdir(parents=True)
        write_label_map(ref.array, ref.geometry, tmp_path / "ref" / case / "segmentation.nii.gz")
    (tmp_path / "pred").mkdir()
    for case in ("case_a", "case_b"):
        write_label_map(ref.array, ref.geometry, tmp_path / "pred" / f"{case}.nii.gz")
    result = run("eval", tmp_path / "pred", tmp_path / "ref")
    assert result.exit_code == 0, result.output
    assert "case_a" in result.output and "case_b" in result.output and "mean" in result.output


def _one_line_error(result, code, *words):
    assert result.exit_code == code, result.output
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert lines[-1].startswith("error:")
    for word in words:
        assert word in result.output


def test_bad_inputs_give_one_line_errors(tmp_path, procedural_files):
    ct, labels = procedural_files
    _one_line_error(run("eval", tmp_path / "missing.nii.gz", labels), 2, "no such file")
    _one_line_error(run("eval", ct, labels), 2, "CT image instead of a label map")
    small = read_label_map(labels)
    write_label_map(small.array[:, :, :32], _half_grid(small.geometry), tmp_path / "half.nii.gz")
    _one_line_error(run("eval", tmp_path / "half.nii.gz", labels), 2, "size", "share one grid")
    _one_line_error(run("phantom", labels, "-o", ct), 2, "--overwrite")
    _one_line_error(run("phantom", "-o", tmp_path / "x.nii.gz"), 2, "--procedural")
    _one_line_error(run("phantom", "--procedural", "--spacing", "1,2", "-o", tmp_path / "x.nii.gz"), 2, "--spacing")
    assert not (tmp_path / "x.nii.gz").exists()


def _half_grid(geometry):
    from dataclasses import replace

    return replace(geometry, size=(32,) + geometry.size[1:])


def test_help_lists_exit_codes():
    result = run("--help")
    assert result.exit_code == 0 and "Exit codes" in result.output
