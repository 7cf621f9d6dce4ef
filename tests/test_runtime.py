"""The cascade runtime with the bundled demo package: exact geometry, determinism, thread safety,
orientation independence, and clear failures."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
import pytest
from typer.testing import CliRunner

from kitsrt.cli import app
from kitsrt.errors import InputError, ModelPackageError
from kitsrt.io import Geometry, Scan, read_label_map, read_scan, write_image
from kitsrt.runtime.package import demo_package_path, load_package
from kitsrt.runtime.segmenter import Segmenter
from kitsrt.runtime.sliding_window import sliding_window, tile_starts


@pytest.fixture(scope="module")
def segmenter():
    with Segmenter.load(threads=1) as loaded:
        yield loaded


def test_output_is_on_the_input_grid_and_finds_both_kidneys(segmenter, small_case):
    labels, ct = small_case
    result = segmenter.segment(ct)
    assert result.geometry == ct.geometry
    assert result.labels.shape == ct.array.shape and result.labels.dtype == np.uint8
    assert result.kidney_found and len(result.report["kidneys"]) == 2
    assert {k["side"] for k in result.report["kidneys"]} == {"left", "right"}
    overlap = (result.labels > 0) & (labels.array > 0)
    assert overlap.sum() > 0.5 * (labels.array > 0).sum()  # the demo model finds the kidneys


def test_same_output_twice_and_from_four_threads(segmenter, small_case):
    _, ct = small_case
    first = segmenter.segment(ct).labels
    np.testing.assert_array_equal(segmenter.segment(ct).labels, first)
    with ThreadPoolExecutor(4) as pool:
        for labels in pool.map(lambda _: segmenter.segment(ct).labels, range(4)):
            np.testing.assert_array_equal(labels, first)


def _slices_first(scan: Scan) -> Scan:
    """The same voxels at the same physical places, stored slice axis first like KiTS19 files."""
    g = scan.geometry
    d = g.direction_matrix
    geometry = Geometry((g.size[2], g.size[1], g.size[0]), (g.spacing_mm[2], g.spacing_mm[1], g.spacing_mm[0]),
                        g.origin_mm, tuple(d[:, [2, 1, 0]].ravel()))
    return Scan.from_array(np.ascontiguousarray(scan.array.transpose(2, 1, 0)), geometry)


def test_axis_order_of_the_file_does_not_change_the_result(segmenter, small_case):
    _, ct = small_case
    expected = segmenter.segment(ct).labels
    permuted = _slices_first(ct)
    got = segmenter.segment(permuted)
    assert got.geometry == permuted.geometry
    agreement = (got.labels.transpose(2, 1, 0) == expected).mean()
    assert agreement > 0.999


def test_kidney_at_the_edge_of_the_scan(segmenter, small_case):
    labels, ct = small_case
    kidney_i = np.flatnonzero((labels.array > 0).any(axis=(0, 1)))
    cut = int(kidney_i[0] + 4)  # cut the field of view through the patient's right kidney
    g = ct.geometry
    geometry = replace(g, size=(g.size[0] - cut, g.size[1], g.size[2]),
                       origin_mm=tuple(g.index_to_physical([[cut, 0, 0]])[0]))
    cropped = Scan.from_array(np.ascontiguousarray(ct.array[:, :, cut:]), geometry)
    result = segmenter.segment(cropped)
    assert result.geometry == geometry and result.kidney_found


def test_no_kidney_gives_an_empty_map(segmenter, small_case):
    _, ct = small_case
    air = Scan.from_array(np.full(ct.array.shape, -1000, np.int16), ct.geometry)
    result = segmenter.segment(air)
    assert not result.kidney_found and not result.labels.any()
    assert result.report["kidneys"] == []


def test_refuses_scans_that_are_not_ct_in_hu(segmenter, small_case):
    _, ct = small_case
    raw = Scan.from_array((ct.array.astype(np.int32) + 1024).astype(np.int16), ct.geometry, source="raw.nii")
    with pytest.raises(InputError, match="rescale intercept"):
        segmenter.segment(raw)


def test_package_with_a_changed_model_is_refused(tmp_path):
    import shutil

    package = tmp_path / "pkg"
    shutil.copytree(demo_package_path(), package)
    load_package(package)
    with open(package / "fine.onnx", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ModelPackageError, match="SHA-256 does not match"):
        load_package(package)
    (package / "fine.onnx").unlink()
    with pytest.raises(ModelPackageError, match="missing"):
        load_package(package)


def test_sliding_window_tiles_and_blending():
    assert tile_starts(200, 96, 0.5) == [0, 48, 96, 104]
    assert tile_starts(50, 96, 0.5) == [0]
    volume = np.random.default_rng(0).normal(size=(70, 40, 110)).astype(np.float32)
    doubled = sliding_window(volume, (32, 32, 32), 0.5, 0.125, lambda tile: np.concatenate([tile, 2 * tile], 1))
    np.testing.assert_allclose(doubled[0], volume, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(doubled[1], 2 * volume, rtol=1e-5, atol=1e-5)


def test_sliding_window_agrees_with_whole_voi(small_case):
    labels, ct = small_case
    whole = Segmenter.load(threads=1)
    windowed = Segmenter.load(threads=1)
    spec = windowed.package.spec
    small_budget = spec.fine.tiling.model_copy(update={"max_voxels": 1, "patch_size": (64, 64, 64)})
    fine = spec.fine.model_copy(update={"tiling": small_budget})
    windowed.package = replace(windowed.package, spec=spec.model_copy(update={"fine": fine}))
    a, b = whole.segment(ct).labels, windowed.segment(ct).labels
    assert ((a > 0) == (b > 0)).mean() > 0.995


def test_infer_cli_writes_map_report_and_preview(tmp_path, small_case):
    _, ct = small_case
    scan = tmp_path / "scan.nii.gz"
    write_image(ct.image, scan)
    out, report, preview = tmp_path / "seg.nii.gz", tmp_path / "r.json", tmp_path / "p.png"
    result = CliRunner().invoke(app, ["infer", str(scan), "-o", str(out), "--report", str(report),
                                      "--preview", str(preview), "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert read_label_map(out).geometry == read_scan(scan).geometry
    data = json.loads(report.read_text())
    for key in ("kidneys", "totals", "timings_s", "backend", "model_sha256", "kitsrt_version"):
        assert key in data
    assert preview.stat().st_size > 1000
    again = CliRunner().invoke(app, ["infer", str(scan), "-o", str(out)])
    assert again.exit_code == 2 and "--overwrite" in again.output


def test_infer_cli_no_kidney_exit_code(tmp_path, small_case):
    _, ct = small_case
    scan = tmp_path / "air.nii.gz"
    write_image(Scan.from_array(np.full(ct.array.shape, -1000, np.int16), ct.geometry).image, scan)
    result = CliRunner().invoke(app, ["infer", str(scan), "-o", str(tmp_path / "seg.nii.gz")])
    assert result.exit_code == 3 and "no kidney found" in result.output
    assert not read_label_map(tmp_path / "seg.nii.gz").array.any()


def test_batch_over_a_folder(tmp_path, small_case):
    _, ct = small_case
    (tmp_path / "in").mkdir()
    for name in ("a", "b"):
        write_image(ct.image, tmp_path / "in" / f"{name}.nii.gz")
    (tmp_path / "in" / "broken.nii.gz").write_text("nope")
    result = CliRunner().invoke(app, ["infer", str(tmp_path / "in"), "-o", str(tmp_path / "out"),
                                      "--report", str(tmp_path / "summary.json")])
    assert result.exit_code == 2, result.output  # one unreadable scan
    assert (tmp_path / "out" / "a_seg.nii.gz").exists() and (tmp_path / "out" / "b_seg.nii.gz").exists()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [s.get("error") is not None for s in summary] == [False, False, True]


def test_segmenter_runs_without_torch(tmp_path, small_case):
    _, ct = small_case
    write_image(ct.image, tmp_path / "scan.nii.gz")
    code = ("import sys; sys.modules['torch'] = None\n"
            "from kitsrt import Segmenter\n"
            f"r = Segmenter.load(threads=1).segment({str(tmp_path / 'scan.nii.gz')!r})\n"
            "assert r.kidney_found and 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, encoding="utf-8", errors="replace")
    assert done.returncode == 0, done.stderr
