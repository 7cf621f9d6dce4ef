"""pipeline.json as a validated tagged union: version 1 still loads, every mistake is one line naming
the file and the key (exit 4), and the shared primitives the kinds are built from."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from kitsrt.cli import app
from kitsrt.errors import ModelPackageError
from kitsrt.io import write_image
from kitsrt.runtime.package import demo_package_path, load_package
from kitsrt.runtime.pipeline import (
    CascadeSpec,
    CtZScore,
    DropUnlessTouching,
    FillHoles,
    LargestComponents,
    NestedSpec,
    WindowSymmetric,
    WindowUnit,
    load_pipeline,
    parse_pipeline,
    seed002_preset,
)
from kitsrt.runtime.postprocess import apply_rules
from kitsrt.runtime.preprocess import Box, canonical_grid, centre_crop_or_pad, uncrop

V1 = Path(__file__).parent / "data" / "pipeline_v1.json"


def demo_dict() -> dict:
    return json.loads((demo_package_path() / "pipeline.json").read_text())


def test_version_1_file_loads_as_the_same_cascade_as_the_shipped_version_2():
    old = load_pipeline(V1)
    assert isinstance(old, CascadeSpec) and old.kind == "cascade" and old.version == 2
    shipped = demo_dict()  # minus what the demo package added since: quality limits, bounded growth, anatomy rule
    shipped.pop("quality")
    shipped["roi"].pop("max_extent_mm")
    shipped["postprocess"] = json.loads(old.to_json())["postprocess"]
    assert old == parse_pipeline(shipped)
    assert old.fine.tiling.max_voxels == 8_000_000 and old.fine.spacing_mm == (1.0, 1.0, 1.0)
    assert old.postprocess == (LargestComponents(labels=(1, 2), count=1), DropUnlessTouching(label=2, touching=1))
    assert parse_pipeline(json.loads(old.to_json())) == old  # round trip


def test_version_1_booleans_become_rules():
    data = json.loads(V1.read_text())
    data["postprocess"] = {"largest_component_per_kidney": False, "tumor_must_touch_kidney": True}
    assert parse_pipeline(data).postprocess == (DropUnlessTouching(label=2, touching=1),)


def _broken(edit) -> str:
    data = demo_dict()
    edit(data)
    with pytest.raises(ModelPackageError) as info:
        parse_pipeline(data, "pkg/pipeline.json")
    message = str(info.value)
    assert "\n" not in message and message.startswith("pkg/pipeline.json: ")
    return message


@pytest.mark.parametrize("edit, expected", [
    (lambda d: d.update(kind="pyramid"), "kind: 'pyramid' is not one of 'cascade', 'nested'"),
    (lambda d: d["fine"].update(spacing=1.0), "fine.spacing: unknown key"),
    (lambda d: d["roi"].update(margin_mm="wide"), "roi.margin_mm"),
    (lambda d: d.update(version=7), "version: 7 is not supported"),
    (lambda d: d["coarse"].pop("model"), "coarse.model: required key is missing"),
    (lambda d: d["coarse"]["normalization"].update(kind="minmax"), "coarse.normalization.kind: 'minmax' is not"),
    (lambda d: d["coarse"]["normalization"].update(hu_window=[500, -200]), "low < high"),
    (lambda d: d["fine"].update(max_shape=[250, 256, 256]), "multiples of divisibility 8"),
    (lambda d: d["fine"]["tiling"].update(patch_size=[512, 512, 512]), "outside the shape range"),
    (lambda d: d["postprocess"].append({"rule": "drop-unless-touching", "label": 3, "touching": 1}),
     "postprocess[1] (drop-unless-touching) names label(s) [3]"),
    (lambda d: d["postprocess"].append({"rule": "dilate"}), "postprocess[1]"),
    (lambda d: d["quality"].update(kidney_volume_ml=[60]), "quality.kidney_volume_ml"),
    (lambda d: d["quality"].pop("max_tumors_per_side"), "quality.max_tumors_per_side: required key is missing"),
])
def test_bad_spec_is_one_line_naming_the_key(edit, expected):
    assert expected in _broken(edit)


def test_version_1_file_with_a_kind_is_refused():
    data = json.loads(V1.read_text())
    data["kind"] = "cascade"
    with pytest.raises(ModelPackageError, match="version-1 pipelines have no kind"):
        parse_pipeline(data)


def test_bad_package_exits_4_naming_file_and_key(tmp_path, small_case):
    package = tmp_path / "pkg"
    shutil.copytree(demo_package_path(), package)
    data = demo_dict()
    data["fine"]["model"] = "finer.onnx"
    (package / "pipeline.json").write_text(json.dumps(data))
    with pytest.raises(ModelPackageError, match=r"pipeline.json: fine.model: file 'finer.onnx' is missing"):
        load_package(package)
    write_image(small_case[1].image, tmp_path / "ct.nii.gz")
    data["fine"]["model"] = "fine.onnx"
    data["fine"]["tilling"] = {}
    (package / "pipeline.json").write_text(json.dumps(data))
    result = CliRunner().invoke(app, ["infer", str(tmp_path / "ct.nii.gz"), "-o", str(tmp_path / "seg.nii.gz"),
                                      "--model", str(package)])
    assert result.exit_code == 4 and "fine.tilling: unknown key" in result.output
    assert not (tmp_path / "seg.nii.gz").exists()


def test_normalisations():
    hu = np.array([-1024.0, -200.0, 150.0, 500.0, 3000.0], np.float32)
    np.testing.assert_allclose(WindowSymmetric(hu_window=(-200, 500)).apply(hu), [-1, -1, 0, 1, 1])
    np.testing.assert_allclose(WindowUnit(hu_window=(-200, 500)).apply(hu), [0, 0, 0.5, 1, 1])
    z = CtZScore(clip_hu=(-100, 300), mean_hu=100.0, std_hu=50.0).apply(hu)
    np.testing.assert_allclose(z, [-4, -4, 1, 4, 4])
    assert all(n.apply(hu).dtype == np.float32 for n in (WindowUnit(hu_window=(0, 1)),))


def test_per_axis_spacing_grid():
    grid = canonical_grid(Box((0, 0, 0), (99, 49, 30)), (1.0, 0.5, 3.0), 8)
    assert grid.spacing_mm == (1.0, 0.5, 3.0) and grid.size == (104, 104, 16)
    assert grid == canonical_grid(Box((0, 0, 0), (99, 49, 30)), np.array([1.0, 0.5, 3.0]), 8)


@pytest.mark.parametrize("shape", [(200, 100, 168), (7, 300, 169), (168, 168, 168)])
def test_centre_crop_or_pad_is_inverted_exactly(shape):
    volume = np.random.default_rng(0).random(shape).astype(np.float32)
    cropped, plan = centre_crop_or_pad(volume, (168, 168, 168), fill=-1.0)
    assert cropped.shape == (168, 168, 168)
    back = uncrop(cropped[None], plan, fill=0)[0]
    kept = np.zeros(shape, bool)
    kept[plan.source] = True
    np.testing.assert_array_equal(back[kept], volume[kept])
    assert not back[~kept].any()
    if shape[0] == 200:
        assert plan.source[0] == slice(16, 184) and plan.target[1] == slice(34, 134)


def test_rules_in_order():
    labels = np.zeros((20, 20, 40), np.uint8)
    labels[2:10, 2:10, 2:10] = 1  # 512 voxels
    labels[4:8, 4:8, 4:8] = 0  # a hole
    labels[2:6, 2:6, 20:24] = 1  # 64 voxels
    labels[12:14, 12:14, 30:32] = 2  # 8 voxels of tumor touching nothing
    voxel_ml = 0.01
    kept = apply_rules(labels, (LargestComponents(labels=(1, 2), count=2, min_volume_ml=0.5),), voxel_ml)
    assert (kept == 1).sum() == 512 - 64 + 64 and not (kept == 2).any()  # 8 voxels = 0.08 mL < 0.5
    two = apply_rules(labels, (LargestComponents(labels=(1, 2), count=1),), voxel_ml)
    assert (two == 1).sum() == 448 and not two[2:6, 2:6, 20:24].any()
    filled = apply_rules(labels, (FillHoles(labels=(1,), fill_with=2),), voxel_ml)
    assert (filled[4:8, 4:8, 4:8] == 2).all()
    dropped = apply_rules(labels, (DropUnlessTouching(label=2, touching=1),), voxel_ml)
    assert not (dropped == 2).any() and (dropped == 1).sum() == 512
    assert labels[12, 12, 30] == 2  # input untouched


def test_nested_spec_validates_and_lists_its_networks():
    base = json.loads(seed002_preset().coarse.model_dump_json())
    data = {"version": 2, "kind": "nested", "name": "n", "kidney": {**base, "model": "kidney.onnx"},
            "tumor": {**base, "model": "tumor.onnx"}}
    spec = parse_pipeline(data)
    assert isinstance(spec, NestedSpec) and list(spec.networks()) == ["kidney", "tumor"]
    assert spec.restore == "labels-nearest" and spec.crop_shape == (168, 168, 168)
