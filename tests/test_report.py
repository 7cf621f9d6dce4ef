"""The report end to end: it validates against its JSON Schema, names the files the backends
loaded, and carries the warnings an implausible result deserves; --strict; the preview."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from kitsrt.cli import app
from kitsrt.io import Scan, sha256_of, write_image
from kitsrt.runtime.batch import preview_rows
from kitsrt.runtime.kinds.cascade import capped, own_kidney
from kitsrt.runtime.package import demo_package_path
from kitsrt.runtime.pipeline import KidneyAndNearbyTumor
from kitsrt.runtime.postprocess import kidney_and_nearby_tumor
from kitsrt.runtime.preprocess import Box
from kitsrt.runtime.segmenter import Segmenter

jsonschema = pytest.importorskip("jsonschema", reason="jsonschema (the dev extra) validates the report schema")
SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "kitsrt" / "schemas" / "report.schema.json").read_text())


@pytest.fixture(scope="module")
def segmenter():
    with Segmenter.load(threads=2) as loaded:
        yield loaded


@pytest.fixture(scope="module")
def phantom_report(segmenter, small_case):
    return segmenter.segment(small_case[1]).report


def test_report_validates_and_has_the_expected_fields(phantom_report):
    jsonschema.validate(phantom_report, SCHEMA)
    assert phantom_report["coordinate_system"].startswith("LPS")
    for region in phantom_report["kidneys"]:
        assert region["kidney"]["volume_ml"] > 40 and 60 < region["kidney"]["length_mm"] < 200
        assert region["tumor_count"] == len(region["lesions"])
        assert region["growth_steps"] >= 0 and region["kidney_median_hu"] > 100  # enhanced phantom cortex
    lesion = max((lesion for r in phantom_report["kidneys"] for lesion in r["lesions"]), key=lambda l: l["volume_ml"])
    assert lesion["longest_diameter_mm"] > 10 and lesion["distance_to_kidney_mm"] <= 5
    assert {"demo_model", "spacing_outside_training"} <= {w["code"] for w in phantom_report["warnings"]}
    assert "NOT a clinical model" in phantom_report["disclaimer"]


def test_a_broken_report_fails_the_schema(phantom_report):
    broken = json.loads(json.dumps(phantom_report))
    broken["kidneys"][0]["lesions"].append({"volume_ml": -1})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, SCHEMA)


def test_models_are_hashed_from_the_files_loaded():
    demo = demo_package_path()
    with Segmenter.load(threads=1, precision="int8") as int8:
        models = {m["role"]: m for m in int8.models}
    assert models["fine"]["file"] == "fine.int8.onnx" and models["fine"]["precision"] == "int8"
    assert models["fine"]["sha256"] == sha256_of(demo / "fine.int8.onnx") != sha256_of(demo / "fine.onnx")


def test_a_scan_of_water_is_flagged(segmenter, small_case):
    g = small_case[1].geometry
    k, j, i = np.meshgrid(*[np.arange(n) for n in g.array_shape], indexing="ij")
    body = ((i - 80) / 70.0) ** 2 + ((j - 80) / 50.0) ** 2 <= 1
    report = segmenter.segment(Scan.from_array(np.where(body, 0, -1000).astype(np.int16), g)).report
    jsonschema.validate(report, SCHEMA)
    assert "no_kidney" in {w["code"] for w in report["warnings"]}


def test_a_scan_that_cuts_the_kidneys_is_flagged(segmenter, small_case):
    labels, ct = small_case
    kidney_k = np.flatnonzero((labels.array > 0).any(axis=(1, 2)))
    start = int((kidney_k[0] + kidney_k[-1]) // 2)  # the first slice runs through the middle of the kidneys
    g = ct.geometry
    geometry = replace(g, size=(g.size[0], g.size[1], g.size[2] - start),
                       origin_mm=tuple(g.index_to_physical([[0, 0, start]])[0]))
    report = segmenter.segment(Scan.from_array(np.ascontiguousarray(ct.array[start:]), geometry)).report
    warning = next(w for w in report["warnings"] if w["code"] == "kidney_cut_by_scan")
    assert warning["values"]["slices"] == ["first"]


def test_strict_exits_7_after_writing_everything(tmp_path, small_case):
    scan = tmp_path / "scan.nii.gz"
    write_image(small_case[1].image, scan)
    outputs = [tmp_path / "seg.nii.gz", tmp_path / "r.json", tmp_path / "p.png"]
    result = CliRunner().invoke(app, ["infer", str(scan), "-o", str(outputs[0]), "--report", str(outputs[1]),
                                      "--preview", str(outputs[2]), "--strict", "--threads", "2"])
    assert result.exit_code == 7 and "demo_model" in result.output, result.output
    assert all(p.exists() for p in outputs) and outputs[2].stat().st_size > 20_000
    jsonschema.validate(json.loads(outputs[1].read_text()), SCHEMA)


def test_preview_rows_go_through_each_kidney_and_the_largest_tumors(phantom_report, small_case):
    rows = preview_rows(phantom_report, small_case[1].geometry)
    lesions = sum(len(r["lesions"]) for r in phantom_report["kidneys"])
    assert len(rows) == len(phantom_report["kidneys"]) + min(lesions, 2)
    assert rows[0][0].startswith(phantom_report["kidneys"][0]["side"] + " kidney")
    assert preview_rows({"kidneys": []}, small_case[1].geometry)[0][0].startswith("no kidney")


# --- the anatomy rules, on hand-made label maps ----------------------------------------------------

def test_kidney_and_nearby_tumor():
    labels = np.zeros((20, 20, 60), np.uint8)
    labels[5:15, 5:15, 2:12] = 1  # the kidney: 1000 voxels
    labels[5:10, 5:10, 12:14] = 2  # tumor on it: kept
    labels[5:10, 12:15, 13:16] = 2  # 2 voxels (3.2 mm) from the kidney, not touching: kept
    labels[5:10, 5:10, 30:35] = 2  # 16 voxels away: dropped
    labels[0:20, 0:20, 40:60] = 2  # a tumor-only blob larger than the kidney: not the kidney, dropped
    labels[14, 14, 12] = 2  # a one-voxel speck touching the kidney (the 0.004 mL voxel): becomes kidney
    kidney_and_nearby_tumor(labels, KidneyAndNearbyTumor(margin_mm=5.0, min_tumor_ml=0.01), (1.6, 1.6, 3.0))
    assert (labels == 1).sum() == 1001 and (labels[:, :, 30:] == 0).all()
    assert (labels[5:10, 5:10, 12:14] == 2).all() and (labels[5:10, 12:15, 13:16] == 2).all()


def test_growth_follows_the_kidney_and_stops_at_the_maximum_extent():
    labels = np.zeros((10, 10, 30), np.uint8)
    labels[2:8, 2:8, 2:10] = 1
    labels[2:8, 2:8, 10:12] = 2
    labels[0:10, 0:10, 20:30] = 2  # a stray blob reaching the faces: not the kidney
    kidney = own_kidney(labels)
    assert kidney.sum() == 6 * 6 * 8 and not kidney[:, :, 20:].any()
    box = Box((0.0, 0.0, 0.0), (100.0, 150.0, 190.0))
    grown = box.grown_faces([(0, -1), (1, 1), (2, 1)], 20.0)
    limited = capped(box, grown, 200.0)
    assert np.allclose(limited.low, (-20, 0, 0)) and np.allclose(limited.high, (100, 170, 200))
    assert capped(box, grown, None) == grown


def test_preview_counts_every_tumor_not_only_the_listed_ones(small_case):
    lesion = {"volume_ml": 2.0, "longest_diameter_mm": 20.0, "centre_mm": [0.0, 0.0, 0.0], "distance_to_kidney_mm": 0.0}
    report = {"kidneys": [{"side": "right", "kidney": {"volume_ml": 150.0, "length_mm": 110.0, "centre_mm": [0, 0, 0]},
                           "tumor_count": 40, "lesions": [lesion] * 10, "lesions_not_listed": 30}]}
    captions = [caption for caption, _ in preview_rows(report, small_case[1].geometry)]
    assert captions[1].startswith("right tumor 1 of 40:")
