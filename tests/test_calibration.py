"""Calibration sets, FP16 / INT8 Q/DQ variants and their accuracy gate, on procedural phantoms."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from kitsrt.calibration.dataset import load_manifest, stage_arrays
from kitsrt.calibration.precision import check_tensorrt_qdq
from kitsrt.cli import app
from kitsrt.runtime.package import demo_package_path
from kitsrt.runtime.segmenter import Segmenter

runner = CliRunner()


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pkg") / "demo"
    shutil.copytree(demo_package_path(), folder)
    for variant in folder.glob("*.int8.*"):
        variant.unlink()
    for variant in folder.glob("*.fp16.*"):
        variant.unlink()
    return folder


@pytest.fixture(scope="module")
def calibration_set(tmp_path_factory, package):
    out = tmp_path_factory.mktemp("calib") / "set"
    result = runner.invoke(app, ["calibrate", "--procedural", "4", "--model", str(package), "-o", str(out),
                                 "--holdout", "0.5", "--seed", "3", "--threads", "1"])
    assert result.exit_code == 0, result.output
    return out


def test_calibration_set_has_a_manifest_and_runtime_shaped_inputs(calibration_set):
    manifest = load_manifest(calibration_set)
    assert manifest["kind"] == "cascade" and set(manifest["networks"]) == {"coarse", "fine"}
    assert manifest["networks"]["coarse"]["spacing_mm"] == [6.0] * 3 and manifest["networks"]["fine"]["spacing_mm"] == [1.0] * 3
    splits = [e["split"] for e in manifest["sources"]]
    assert splits.count("holdout") == 2 and splits.count("calibration") == 2
    fine = stage_arrays(calibration_set, manifest, "fine", "calibration")
    assert fine and all(a.dtype == np.float32 and a.min() >= -1 and a.max() <= 1 for a in fine)
    assert all(n % manifest["networks"]["fine"]["divisibility"] == 0 for a in fine for n in a.shape)


def test_int8_variant_is_tensorrt_style_qdq_and_gated(calibration_set, package):
    result = runner.invoke(app, ["quantize", "--calibration", str(calibration_set), "--model", str(package),
                                 "--precision", "int8", "--method", "minmax", "--threads", "1",
                                 "--max-dice-drop", "1.0", "--target-agreement", "0"])
    assert result.exit_code == 0, result.output
    for stage in ("coarse", "fine"):
        model = onnx.load(package / f"{stage}.int8.onnx")
        ops = {n.op_type for n in model.graph.node}
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops
        assert check_tensorrt_qdq(model) == []
        card = json.loads((package / f"{stage}.int8.json").read_text())
        gate = card["gate"]
        for key in ("composite_dice_delta", "argmax_agreement", "calibration_method", "heldout_cases"):
            assert key in gate
        assert gate["heldout_cases"] == 2 and gate["calibration_method"] == "minmax"
        assert 0.9 < gate["argmax_agreement"] <= 1.0
    seg = Segmenter.load(package, precision="int8", threads=1)
    assert "int8" in seg.backend_name


def _weight_is_quantized(model: onnx.ModelProto, node_name: str) -> bool:
    node = next(n for n in model.graph.node if n.name == node_name)
    producers = {out: n.op_type for n in model.graph.node for out in n.output}
    return producers.get(node.input[1]) == "DequantizeLinear"


def test_sensitivity_search_keeps_the_layers_it_names_in_float(calibration_set, package, tmp_path):
    mixed = tmp_path / "mixed"
    shutil.copytree(package, mixed)
    result = runner.invoke(app, ["quantize", "--calibration", str(calibration_set), "--model", str(mixed),
                                 "--precision", "int8", "--method", "minmax", "--threads", "1",
                                 "--max-dice-drop", "1.0", "--target-agreement", "0.98", "--probe-inputs", "1",
                                 "--ops", "Conv"])
    assert result.exit_code == 0, result.output
    searched = 0
    for stage in ("coarse", "fine"):
        card = json.loads((mixed / f"{stage}.int8.json").read_text())
        search = card["mixed_precision"]
        assert search["target"] == 0.98 and search["probe_inputs"] == 1
        assert search["agreement"] >= 0.98
        assert card["gate"]["float_nodes"][stage] == search["float_nodes"]
        model = onnx.load(mixed / f"{stage}.int8.onnx")
        convs = [n.name for n in model.graph.node if n.op_type == "Conv"]
        in_float = set(search["float_nodes"]) | {convs[0], convs[-1]}
        assert all(_weight_is_quantized(model, name) != (name in in_float) for name in convs)
        assert search["quantized_nodes"] == len(convs) - len(in_float) > 0
        if search["float_nodes"]:
            searched += 1
            ranking = [agreement for _, agreement in search["ranking"]]
            assert ranking == sorted(ranking) and len(ranking) == search["candidate_nodes"]
            assert search["agreement_all_quantized"] < 0.98
    assert searched, "target 0.98 should force the search on at least one stage"


def test_fp16_variant_keeps_float32_interface(calibration_set, package):
    result = runner.invoke(app, ["quantize", "--calibration", str(calibration_set), "--model", str(package),
                                 "--precision", "fp16", "--threads", "1", "--max-dice-drop", "1.0"])
    assert result.exit_code == 0, result.output
    model = onnx.load(package / "fine.fp16.onnx")
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
    gate = json.loads((package / "fine.fp16.json").read_text())["gate"]
    assert gate["argmax_agreement"] > 0.99


@pytest.mark.parametrize("options, exit_code, message", [
    (["--method", "minmax", "--max-dice-drop", "0", "--target-agreement", "0"], 5, "refused"),
    (["--target-agreement", "1.0", "--probe-inputs", "1", "--ops", "Add"], 4, "lower --target-agreement"),
], ids=["gate", "unreachable-agreement-target"])
def test_int8_refusal_writes_nothing(calibration_set, package, options, exit_code, message):
    before = sorted(p.name for p in package.iterdir())
    result = runner.invoke(app, ["quantize", "--calibration", str(calibration_set), "--model", str(package),
                                 "--precision", "int8", "--threads", "1", *options])
    assert result.exit_code == exit_code and message in result.output
    assert sorted(p.name for p in package.iterdir()) == before


def test_fixed_patches_cover_every_voxel_once():
    from kitsrt.calibration.precision import fixed_patches

    volume = np.random.default_rng(0).uniform(-1, 1, (70, 40, 130)).astype(np.float32)
    patches = fixed_patches([volume], (32, 32, 32))
    assert len(patches) == 3 * 2 * 5 and all(p.shape == (32, 32, 32) for p in patches)
    assert np.isclose(sum(float(p[p > -1].sum()) for p in patches), float(volume[volume > -1].sum()), rtol=1e-5)


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_shipped_demo_variants_passed_their_gate_and_follow_fp32(precision, small_case):
    from kitsrt.io import sha256_of
    from kitsrt.eval.metrics import score_case

    demo = demo_package_path()
    for stage in ("coarse", "fine"):
        model = demo / f"{stage}.{precision}.onnx"
        card = json.loads(model.with_suffix(".json").read_text())
        assert card["precision"] == precision and card["onnx_sha256"] == sha256_of(model)
        assert card["fp32_sha256"] == sha256_of(demo / f"{stage}.onnx")
        gate = card["gate"]
        assert gate["passed"] and gate["composite_dice_delta"] >= -gate["max_dice_drop"] == -0.005
        if precision == "int8":
            assert check_tensorrt_qdq(onnx.load(model)) == []
            assert card["mixed_precision"]["agreement"] >= card["mixed_precision"]["target"]
    labels, ct = small_case
    with Segmenter.load(threads=1) as fp32, Segmenter.load(threads=1, precision=precision) as reduced:
        a, b = fp32.segment(ct), reduced.segment(ct)
    assert b.geometry == ct.geometry
    assert (a.labels == b.labels).mean() > 0.999
    assert score_case(b.labels, a.labels, labels.geometry.array_spacing_mm).kidney_dice > 0.97


def _bf16_here() -> bool:
    import importlib.util

    if importlib.util.find_spec("openvino") is None:
        return False
    from kitsrt.engines.openvino_backend import cpu_supports_bf16, require_openvino

    return cpu_supports_bf16(require_openvino().Core())


needs_bf16 = pytest.mark.skipif(not _bf16_here(), reason="needs openvino and a CPU with native BF16")


@needs_bf16
def test_bf16_gate_writes_cards_only_and_unlocks_bf16(calibration_set, package):
    from kitsrt.io import sha256_of

    before = {p.name for p in package.glob("*.onnx")}
    result = runner.invoke(app, ["quantize", "--calibration", str(calibration_set), "--model", str(package),
                                 "--precision", "bf16", "--threads", "1", "--max-dice-drop", "1.0"])
    assert result.exit_code == 0, result.output
    assert {p.name for p in package.glob("*.onnx")} == before  # a runtime precision: no new file
    for stage in ("coarse", "fine"):
        card = json.loads((package / f"{stage}.bf16.json").read_text())
        assert card["onnx_sha256"] == sha256_of(package / f"{stage}.onnx")
        assert card["runtime_precision"]["backend"] == "openvino" and card["gate"]["backend"] == "openvino"
        assert card["gate"]["heldout_cases"] == 2 and 0.99 < card["gate"]["argmax_agreement"] <= 1.0
    with Segmenter.load(package, backend="openvino", precision="bf16", threads=1) as seg:
        assert "bf16" in seg.backend_name


def test_shipped_demo_bf16_cards_passed_their_gate_on_the_fp32_files():
    from kitsrt.io import sha256_of

    demo = demo_package_path()
    for stage in ("coarse", "fine"):
        card = json.loads((demo / f"{stage}.bf16.json").read_text())
        assert card["precision"] == "bf16" and card["onnx_sha256"] == sha256_of(demo / f"{stage}.onnx")
        gate = card["gate"]
        assert gate["passed"] and gate["composite_dice_delta"] >= -gate["max_dice_drop"] == -0.005
        assert gate["heldout_cases"] == 4 and gate["backend"] == "openvino"
