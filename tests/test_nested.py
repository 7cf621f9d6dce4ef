"""The nested kind (seed 004) end to end on hand-built threshold networks (no torch, no training):
geometry, the kidney-masked tumor, the "three largest over 10 mL" rule, the report, the CLI."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from typer.testing import CliRunner

from kitsrt.cli import app
from kitsrt.io import Geometry, Scan, read_label_map, sha256_of, write_image
from kitsrt.runtime.pipeline import seed004_preset
from kitsrt.runtime.segmenter import Segmenter

WINDOW = (-200.0, 500.0)


def threshold_model(path, hu: float) -> None:
    """A 1x1x1 convolution whose logit is > 0 where the [0, 1]-windowed input is above ``hu``."""
    level = (hu - WINDOW[0]) / (WINDOW[1] - WINDOW[0])
    dims = ["N", 1, "D", "H", "W"]
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "w", "b"], ["logits"], kernel_shape=[1, 1, 1])], "threshold",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, dims)],
        [helper.make_tensor("w", TensorProto.FLOAT, [1, 1, 1, 1, 1], [10.0]),
         helper.make_tensor("b", TensorProto.FLOAT, [1], [-10.0 * level])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    card = {"input": {"name": "image", "shape": dims, "dtype": "float32", "divisibility": 8},
            "output": {"name": "logits", "shape": dims, "dtype": "float32"}, "architecture": {"architecture": "test"}}
    path.with_suffix(".json").write_text(json.dumps(card))


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    folder = tmp_path_factory.mktemp("seed004")
    threshold_model(folder / "kidney.onnx", 100.0)  # kidney and tumor tissue (> 100 HU) as one structure
    threshold_model(folder / "tumor.onnx", 250.0)  # tumor: brighter than 250 HU
    spec = seed004_preset()
    networks = {role: net.model_copy(update={"sha256": sha256_of(folder / net.model)})
                for role, net in spec.networks().items()}
    (folder / "pipeline.json").write_text(spec.model_copy(update=networks).to_json())
    return folder


def _ball(shape, spacing, center_mm, radius_mm):
    z, y, x = np.meshgrid(*(np.arange(n) * s for n, s in zip(shape, spacing)), indexing="ij")
    return (x - center_mm[0]) ** 2 + (y - center_mm[1]) ** 2 + (z - center_mm[2]) ** 2 <= radius_mm**2


@pytest.fixture(scope="module")
def scan():
    """Air, a body at 40 HU, two kidneys at 150 HU (one with a 300 HU tumor on its surface), blobs of
    29, 15 and 4 mL at 150 HU, and a 7 mL blob at 300 HU far from any kidney."""
    spacing_kji = (3.0, 2.5, 2.5)
    shape = (60, 110, 120)
    hu = np.full(shape, -1000, np.int16)
    hu[_ball(shape, spacing_kji, (150, 137, 90), 130)] = 40
    kidneys = [((95, 170, 90), 30), ((205, 170, 90), 30)]
    for center, radius in kidneys:
        hu[_ball(shape, spacing_kji, center, radius)] = 150
    hu[_ball(shape, spacing_kji, (225, 170, 110), 14)] = 300  # tumor, partly outside the left kidney
    hu[_ball(shape, spacing_kji, (150, 80, 60), 10)] = 150  # 4 mL: below 10 mL, dropped
    hu[_ball(shape, spacing_kji, (150, 90, 130), 19)] = 150  # 29 mL: third largest, kept
    hu[_ball(shape, spacing_kji, (60, 80, 40), 15.3)] = 150  # 15 mL: fourth largest, dropped
    hu[_ball(shape, spacing_kji, (150, 230, 40), 12)] = 300  # bright blob: only 7 mL, dropped with its tumor
    geometry = Geometry((120, 110, 60), (2.5, 2.5, 3.0), (-150.0, -137.0, -90.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    return Scan.from_array(hu, geometry, source="synthetic")


def test_nested_kind_on_threshold_networks(package, scan):
    with Segmenter.load(package, threads=1) as segmenter:
        assert set(segmenter.backends) == {"kidney", "tumor"}
        result = segmenter.segment(scan)
    assert result.geometry == scan.geometry and result.labels.shape == scan.array.shape
    labels, hu = result.labels, scan.array
    assert result.report["kind"] == "nested" and len(result.report["kidneys"]) == 3
    assert {k["side"] for k in result.report["kidneys"]} >= {"left", "right"}
    assert (labels[hu == 40] > 0).mean() < 0.02  # body tissue below the kidney threshold (edges: partial volume)
    kidneys = _ball(hu.shape, (3.0, 2.5, 2.5), (95, 170, 90), 30) | _ball(hu.shape, (3.0, 2.5, 2.5), (205, 170, 90), 30)
    assert (labels[kidneys & (hu == 150)] == 1).mean() > 0.95
    tumor = _ball(hu.shape, (3.0, 2.5, 2.5), (225, 170, 110), 14)
    assert (labels[tumor] == 2).mean() > 0.8  # the tumor on the kidney is found (inside the kidney structure)
    far_blob = _ball(hu.shape, (3.0, 2.5, 2.5), (150, 230, 40), 12)
    assert not labels[far_blob].any()  # not one of the three largest over 10 mL, and masked out of tumor
    for center, radius in (((150, 80, 60), 10), ((60, 80, 40), 15.3)):
        assert not labels[_ball(hu.shape, (3.0, 2.5, 2.5), center, radius)].any()  # under 10 mL; fourth largest
    third = _ball(hu.shape, (3.0, 2.5, 2.5), (150, 90, 130), 19)
    assert (labels[third] == 1).mean() > 0.9  # the third structure over 10 mL is kept
    totals = result.report["totals"]
    assert totals["tumor_ml"] > 5 and totals["kidney_ml"] > 150


def test_nested_package_runs_from_the_cli(package, scan, tmp_path):
    write_image(scan.image, tmp_path / "ct.nii.gz")
    out, report = tmp_path / "seg.nii.gz", tmp_path / "report.json"
    result = CliRunner().invoke(app, ["infer", str(tmp_path / "ct.nii.gz"), "--model", str(package), "-o", str(out),
                                      "--report", str(report), "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert read_label_map(out).geometry == scan.geometry
    assert json.loads(report.read_text())["pipeline"] == "vnet-nested-seed004"


def test_shipped_seed004_demo_and_seed002_demo_run_on_the_same_phantom(small_case, tmp_path):
    from kitsrt.runtime.package import bundled_package_path

    labels, ct = small_case
    write_image(ct.image, tmp_path / "ct.nii.gz")
    seed004 = bundled_package_path("seed004_demo")
    for name, model in (("seed004", ["--model", str(seed004)]), ("seed002", [])):
        out, report = tmp_path / f"{name}.nii.gz", tmp_path / f"{name}.json"
        result = CliRunner().invoke(app, ["infer", str(tmp_path / "ct.nii.gz"), "-o", str(out), "--report", str(report),
                                          "--threads", "1", *model])
        assert result.exit_code == 0, result.output
        assert read_label_map(out).geometry == ct.geometry
        data = json.loads(report.read_text())
        assert data["kind"] == ("nested" if name == "seed004" else "cascade") and data["kidney_found"]
    found = read_label_map(tmp_path / "seed004.nii.gz").array > 0
    assert (found & (labels.array > 0)).sum() > 0.3 * (labels.array > 0).sum()  # a weak demo, but it finds kidney
