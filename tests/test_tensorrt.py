"""TensorRT: the sidecar rules run everywhere; building and running engines needs TensorRT and a
CUDA GPU and skips, saying which is missing, elsewhere."""

from __future__ import annotations

import importlib.util
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from kitsrt.cli import app
from kitsrt.engines.tensorrt_build import Sidecar, check_sidecar
from kitsrt.errors import ModelPackageError
from kitsrt.runtime.package import demo_package_path


def _gpu_reason() -> str | None:
    if importlib.util.find_spec("tensorrt") is None:
        return "TensorRT is not installed (it cannot be installed on this project's CPU machines)"
    try:
        from kitsrt.engines.tensorrt_build import this_machine

        this_machine()
    except Exception as exc:  # no driver, no device
        return f"no usable CUDA device: {exc}"
    return None


needs_tensorrt = pytest.mark.skipif(_gpu_reason() is not None, reason=str(_gpu_reason()))

SIDECAR = Sidecar("10.9.0", "NVIDIA H100 80GB HBM3", "9.0", "abc", "int8")


def test_sidecar_accepts_its_own_machine_and_file():
    check_sidecar(SIDECAR, "abc", "10.9.0", "NVIDIA H100 80GB HBM3", "9.0")


@pytest.mark.parametrize("field, args", [
    ("onnx_sha256", ("other", "10.9.0", "NVIDIA H100 80GB HBM3", "9.0")),
    ("tensorrt_version", ("abc", "11.0.0", "NVIDIA H100 80GB HBM3", "9.0")),
    ("gpu_name", ("abc", "10.9.0", "NVIDIA L4", "8.9")),
])
def test_sidecar_refuses_other_machines_and_files(field, args):
    with pytest.raises(ModelPackageError, match=f"{field}.*rebuild"):
        check_sidecar(SIDECAR, *args)


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_build_says_clearly_that_tensorrt_is_missing():
    result = CliRunner().invoke(app, ["build"])
    assert result.exit_code == 6
    assert "TensorRT is not installed" in result.output and "onnxruntime" in result.output


@needs_tensorrt
def test_engine_matches_onnxruntime(tmp_path):
    from kitsrt.engines import create_backend

    package = tmp_path / "pkg"
    shutil.copytree(demo_package_path(), package)
    result = CliRunner().invoke(app, ["build", "--model", str(package)])
    assert result.exit_code == 0, result.output
    x = np.random.default_rng(0).uniform(-1, 1, (1, 1, 64, 64, 64)).astype(np.float32)
    with create_backend("tensorrt", str(package / "fine.onnx")) as trt_backend, \
            create_backend("onnxruntime", str(package / "fine.onnx")) as ort_backend:
        a = trt_backend.infer({"image": x})["logits"]
        b = ort_backend.infer({"image": x})["logits"]
    assert np.abs(a - b).max() < 1e-2
    assert (a.argmax(1) == b.argmax(1)).mean() > 0.999
    (package / "fine.onnx").write_bytes((package / "fine.onnx").read_bytes() + b"\0")
    with pytest.raises(ModelPackageError, match="rebuild"):
        create_backend("tensorrt", str(package / "fine.onnx")).load()
