"""Train a tiny VB-Net for a few steps, export it, and check that parity is enforced."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch", reason="export tests need the export extra (torch)")

from kitsrt.errors import AccuracyGateError, InputError, ModelPackageError  # noqa: E402
from kitsrt.export.onnx_export import PARITY_TOLERANCE, export, load_checkpoint, parity, parity_inputs  # noqa: E402
from kitsrt.runtime.pipeline import seed002_preset  # noqa: E402
from kitsrt.training.data import coarse_volume  # noqa: E402
from kitsrt.training.trainer import preset_config, train  # noqa: E402

STAGE = {"name": "coarse", "spacing_mm": 6.0, "hu_window": (-200.0, 500.0)}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, small_case):
    labels, ct = small_case
    volume = coarse_volume(ct, labels, seed002_preset(), "small")
    out = tmp_path_factory.mktemp("tiny")
    config = preset_config("coarse", "tiny", steps=4, batch_size=1, crop=(16, 16, 16), checkpoint_every=2)
    summary = train([volume], config, out)
    assert summary["steps"] == 4
    return out, volume


def test_trained_checkpoint_exports_with_parity(tmp_path, trained):
    out, volume = trained
    checkpoint = load_checkpoint(out / "checkpoint.pt")
    card = export(checkpoint, tmp_path / "tiny.onnx", STAGE, volume.image)
    assert card["parity_vs_torch"]["max_abs_logit_diff"] <= PARITY_TOLERANCE
    assert card["parity_vs_torch"]["argmax_agreement"] > 0.999
    model = onnx.load(tmp_path / "tiny.onnx")
    assert model.opset_import[0].version >= 17
    ops = [node.op_type for node in model.graph.node]
    assert "ConvTranspose" in ops and "BatchNormalization" not in ops  # BN folded, also after ConvTranspose
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 1, "depth", "height", "width"]
    saved = json.loads((tmp_path / "tiny.json").read_text())
    assert saved["spacing_mm"] == 6.0 and saved["hu_window"] == [-200.0, 500.0]
    assert saved["training"]["steps"] == 4
    from kitsrt.io import sha256_of

    assert saved["onnx_sha256"] == sha256_of(tmp_path / "tiny.onnx")


def test_parity_check_catches_a_wrong_graph(tmp_path, trained):
    out, _ = trained
    checkpoint = load_checkpoint(out / "checkpoint.pt")
    export(checkpoint, tmp_path / "tiny.onnx", STAGE)
    model = onnx.load(tmp_path / "tiny.onnx")
    for weight in model.graph.initializer:  # scale every float weight by 1.1: a subtly wrong graph
        values = onnx.numpy_helper.to_array(weight)
        if values.dtype == np.float32 and values.ndim == 5:
            weight.CopyFrom(onnx.numpy_helper.from_array(values * np.float32(1.1), weight.name))
    onnx.save(model, tmp_path / "broken.onnx")
    report = parity(checkpoint.model, tmp_path / "broken.onnx", parity_inputs(4, None))
    assert report["max_abs_logit_diff"] > PARITY_TOLERANCE


def test_parity_failure_leaves_nothing(tmp_path, trained, monkeypatch):
    out, _ = trained
    checkpoint = load_checkpoint(out / "checkpoint.pt")
    import kitsrt.export.onnx_export as exporter

    monkeypatch.setattr(exporter, "PARITY_TOLERANCE", -1.0)
    with pytest.raises(AccuracyGateError, match="parity failed"):
        exporter.export(checkpoint, tmp_path / "tiny.onnx", STAGE)
    assert list(tmp_path.iterdir()) == []


def test_bad_checkpoints(tmp_path, trained):
    out, _ = trained
    (tmp_path / "config.json").write_text((out / "config.json").read_text())
    (tmp_path / "junk.pt").write_bytes(b"definitely not a checkpoint")
    with pytest.raises(ModelPackageError, match="not a loadable PyTorch checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    state = torch.load(out / "checkpoint.pt", weights_only=True)["model"]
    state.pop(next(iter(state)))
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "edited.pt")
    with pytest.raises(ModelPackageError, match="missing key.*unexpected key"):
        load_checkpoint(tmp_path / "edited.pt")
    config = json.loads((out / "config.json").read_text())
    config["model"]["base_channels"] = 6
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelPackageError, match="shape mismatch"):
        load_checkpoint(out / "checkpoint.pt", tmp_path / "config.json")
    config["model"]["architecture"] = "unet9000"
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelPackageError, match="unknown architecture"):
        load_checkpoint(out / "checkpoint.pt", tmp_path / "config.json")
    with pytest.raises(InputError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")


def test_export_help_shows_a_worked_example():
    from typer.testing import CliRunner

    from kitsrt.cli import app

    result = CliRunner().invoke(app, ["export", "--help"])
    assert result.exit_code == 0 and "Example" in result.output and "kitsrt export" in result.output


def test_runtime_imports_without_torch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "import kitsrt, kitsrt.io, kitsrt.runtime, kitsrt.engines, kitsrt.cli, kitsrt.phantom, kitsrt.eval.metrics\n"
            "import kitsrt.runtime.pipeline, kitsrt.runtime.preprocess, kitsrt.runtime.voi\n"
            "assert sys.modules['torch'] is None\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, encoding="utf-8", errors="replace")
    assert done.returncode == 0, done.stderr


def test_seed004_vnet_trains_masked_and_exports_with_one_sigmoid_channel(tmp_path, small_case):
    from kitsrt.runtime.pipeline import seed004_preset
    from kitsrt.training.data import nested_volumes

    labels, ct = small_case
    volumes = nested_volumes(ct, labels, seed004_preset(), "small")
    tumor = volumes["tumor"][0]
    assert tumor.image.shape == (168, 168, 168) and tumor.mask is not None
    assert not tumor.image[tumor.mask == 0].any()  # kidney-masked input: air (0) outside the kidney
    assert not tumor.labels[tumor.mask == 0].any()
    config = preset_config("tumor", "seed004", steps=2, batch_size=1, crop=(32, 32, 32), checkpoint_every=2)
    train(volumes["tumor"], config, tmp_path / "tumor")
    checkpoint = load_checkpoint(tmp_path / "tumor" / "checkpoint.pt")
    stage = {"name": "tumor", "spacing_mm": [2.0] * 3, "hu_window": [-200.0, 500.0],
             "normalization": {"kind": "window-unit", "hu_window": [-200.0, 500.0]}}
    card = export(checkpoint, tmp_path / "tumor.onnx", stage, tumor.image[:64, :64, :64])
    assert card["output"]["shape"][1] == 1 and card["architecture"]["architecture"] == "vnet"
    assert card["scaling"].endswith("[0, 1]")
    ops = [node.op_type for node in onnx.load(tmp_path / "tumor.onnx").graph.node]
    assert "BatchNormalization" not in ops
