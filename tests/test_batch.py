"""Batch mode: every output checked before the first case, a failing case recorded while the others
finish, resume (finished cases skipped unless --overwrite), and a DICOM folder is one scan."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from kitsrt.cli import app
from kitsrt.io import Scan, write_image


def _inputs(tmp_path, ct):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a", "c"):
        write_image(ct.image, folder / f"{name}.nii.gz")
    raw = Scan.from_array((ct.array.astype(np.int32) + 1024).astype(np.int16), ct.geometry)  # no HU rescale
    write_image(raw.image, folder / "b_not_ct.nrrd")
    return folder


def _infer(*args):
    return CliRunner().invoke(app, ["infer", *map(str, args), "--threads", "2"])


def test_batch_records_a_failing_case_finishes_the_others_and_resumes(tmp_path, small_case):
    _, ct = small_case
    folder, out, summary = _inputs(tmp_path, ct), tmp_path / "out", tmp_path / "summary.json"
    result = _infer(folder, "-o", out, "--report", summary)
    assert result.exit_code == 2 and "1 of 3 scan(s) failed" in result.output, result.output
    entries = json.loads(summary.read_text())
    assert [(e["case"], e["status"]) for e in entries] == [("a", "done"), ("b_not_ct", "failed"), ("c", "done")]
    assert "rescale intercept" in entries[1]["error"] and entries[1]["exit_code"] == 2
    assert (out / "a_seg.nii.gz").exists() and (out / "c_report.json").exists()
    assert not (out / "b_not_ct_seg.nii.gz").exists()

    stamp = (out / "a_seg.nii.gz").stat().st_mtime_ns
    (out / "c_report.json").unlink()  # an unfinished case: its map without its report
    again = _infer(folder, "-o", out, "--report", tmp_path / "again.json")
    entries = json.loads((tmp_path / "again.json").read_text())
    assert [e["status"] for e in entries] == ["skipped", "failed", "done"], again.output
    assert (out / "a_seg.nii.gz").stat().st_mtime_ns == stamp and (out / "c_report.json").exists()

    redo = _infer(folder, "-o", out, "--report", tmp_path / "redo.json", "--overwrite")
    assert [e["status"] for e in json.loads((tmp_path / "redo.json").read_text())] == ["done", "failed", "done"]
    assert (out / "a_seg.nii.gz").stat().st_mtime_ns != stamp and redo.exit_code == 2


def test_outputs_are_checked_before_the_first_case(tmp_path, small_case):
    _, ct = small_case
    folder = _inputs(tmp_path, ct)
    (tmp_path / "summary.json").write_text("precious")
    result = _infer(folder, "-o", tmp_path / "out", "--report", tmp_path / "summary.json")
    assert result.exit_code == 2 and "--overwrite" in result.output
    assert not (tmp_path / "out").exists() and (tmp_path / "summary.json").read_text() == "precious"

    as_file = _infer(folder, "-o", tmp_path / "seg.nii.gz")
    assert as_file.exit_code == 2 and "output folder, not a file name" in as_file.output
    assert not (tmp_path / "seg.nii.gz").exists()

    write_image(ct.image, folder / "a.nrrd")  # a.nii.gz and a.nrrd: same case name
    clash = _infer(folder, "-o", tmp_path / "out")
    assert clash.exit_code == 2 and "collide" in clash.output and not (tmp_path / "out").exists()


def test_an_all_air_scan_over_the_bomb_guard_is_refused_alike_alone_in_a_batch_and_by_the_api(tmp_path, monkeypatch):
    """A constant (all-air) scan big enough for the compression-ratio guard is refused the same way by
    single-scan infer, the batch and ``Segmenter.segment(path)``: all read through ``read_ct``."""
    from kitsrt.errors import InputError
    from kitsrt.io import Geometry, payload
    from kitsrt.runtime.segmenter import Segmenter

    monkeypatch.setattr(payload, "BOMB_MIN_BYTES", 1 << 20)  # the guard's size, scaled down to a small file
    geometry = Geometry((128, 128, 48), (3.0, 3.0, 5.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    folder = tmp_path / "in"
    folder.mkdir()
    scan = folder / "air.nii.gz"
    write_image(Scan.from_array(np.full(geometry.array_shape, -1024, np.int16), geometry).image, scan)
    single = _infer(scan, "-o", tmp_path / "seg.nii.gz")
    batch = _infer(folder, "-o", tmp_path / "out")
    refusal = "mostly constant data or a gzip bomb"
    assert single.exit_code == 2 and refusal in single.output, single.output
    assert batch.exit_code == 2 and refusal in batch.output, batch.output
    with Segmenter.load(threads=1) as segmenter, pytest.raises(InputError, match=refusal):
        segmenter.segment(scan)
    assert not (tmp_path / "seg.nii.gz").exists() and not list((tmp_path / "out").glob("*_seg.*"))
