"""`kitsrt export --factory`: a network kitsrt does not define (MONAI UNet, SegResNet) exported with
the parity check and card; a factory that does not import or a checkpoint that does not fit is a
one-line exit 4 with nothing written."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from kitsrt.cli import app

torch = pytest.importorskip("torch")
pytest.importorskip("monai", reason="monai is not installed (the bench extra)")

runner = CliRunner()
UNET = ("monai.networks.nets:UNet", {"spatial_dims": 3, "in_channels": 1, "out_channels": 3,
                                     "channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 1})
SEGRESNET = ("monai.networks.nets:SegResNet", {"spatial_dims": 3, "in_channels": 1, "out_channels": 3,
                                               "init_filters": 8, "blocks_down": [1, 1, 1], "blocks_up": [1, 1]})


def run(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result


def _checkpoint(tmp_path, factory: str, kwargs: dict, wrap: bool = False):
    from kitsrt.export.factory import resolve_factory

    torch.manual_seed(0)
    model = resolve_factory(factory)(**kwargs)
    state = model.state_dict()
    path = tmp_path / "net.pt"
    torch.save({"state_dict": state} if wrap else state, path)
    return path, model.eval()


@pytest.mark.parametrize("factory, kwargs", [UNET, SEGRESNET], ids=["UNet", "SegResNet"])
def test_factory_network_exports_with_parity(tmp_path, factory, kwargs):
    import onnxruntime as ort

    checkpoint, model = _checkpoint(tmp_path, factory, kwargs, wrap=factory.endswith("UNet"))
    out = tmp_path / "net.onnx"
    result = run("export", checkpoint, "--factory", factory, "--factory-kwargs", json.dumps(kwargs),
                 "--input-shape", "1,32,32,32", "-o", out)
    assert result.exit_code == 0, result.output
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["factory"] == factory and card["parity_vs_torch"]["max_abs_logit_diff"] <= 1e-4
    x = np.random.default_rng(3).standard_normal((1, 1, 48, 32, 64)).astype(np.float32)  # another shape
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(["logits"], {"image": x})[0]
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    assert np.abs(got - expected).max() <= 1e-4


def test_factory_that_does_not_import_or_fit_is_refused(tmp_path):
    checkpoint, _ = _checkpoint(tmp_path, *UNET)
    out = tmp_path / "net.onnx"
    result = run("export", checkpoint, "--factory", "no_such_package.nets:UNet", "-o", out)
    assert result.exit_code == 4 and "does not import" in result.output
    other = dict(UNET[1], channels=[4, 8, 32])  # a deeper last level: shapes differ
    result = run("export", checkpoint, "--factory", UNET[0], "--factory-kwargs", json.dumps(other), "-o", out)
    assert result.exit_code == 4 and "does not fit" in result.output and "shape mismatch" in result.output
    result = run("export", checkpoint, "--factory", SEGRESNET[0], "--factory-kwargs", json.dumps(SEGRESNET[1]),
                 "-o", out)
    assert result.exit_code == 4 and "missing key" in result.output
    assert not out.exists() and not list(tmp_path.glob(".net.onnx*"))
