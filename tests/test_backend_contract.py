"""The contract every backend in ``kitsrt.engines.BACKENDS`` must keep, one test set parametrised over
them all and skipped by capability (with the reason) where a library or device is missing.

The tiny model is the demo's coarse VB-Net (42 k parameters) with its tensors renamed to ``ct`` and
``scores`` in the ONNX file and the card, so a backend that hard-codes ``image`` / ``logits`` or the
class count fails here.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from kitsrt.engines import BACKENDS, create_backend
from kitsrt.errors import KitsrtError
from kitsrt.io import sha256_of
from kitsrt.runtime.package import demo_package_path

INPUT, OUTPUT = "ct", "scores"
SHAPE = (1, 1, 32, 24, 16)  # (N, C, z, y, x), multiples of the divisibility 8


def _cuda_torch() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return torch.cuda.is_available()


def _ort_provider(name: str) -> bool:
    import onnxruntime

    return name in onnxruntime.get_available_providers()


def _tensorrt() -> bool:
    if importlib.util.find_spec("tensorrt") is None:
        return False
    try:
        from kitsrt.engines.tensorrt_build import this_machine

        this_machine()
    except Exception:
        return False
    return True


CAPABILITY = {  # backend name -> (available here?, reason to skip)
    "onnxruntime": (True, ""),
    "onnxruntime-cuda": (_ort_provider("CUDAExecutionProvider"),
                         "onnxruntime here has no CUDAExecutionProvider (needs onnxruntime-gpu and a CUDA GPU)"),
    "openvino": (importlib.util.find_spec("openvino") is not None, "openvino is not installed (the openvino extra)"),
    "torch": (importlib.util.find_spec("torch") is not None, "torch is not installed (the export extra)"),
    "torch-cuda": (_cuda_torch(), "torch has no CUDA device here"),
    "tensorrt": (_tensorrt(), "TensorRT or a CUDA device is missing (cannot be installed on the CPU machines)"),
}
TOLERANCE = {"onnxruntime": 0.0, "torch": 1e-4, "openvino": 1e-4}  # max |logit difference| vs onnxruntime CPU; GPUs: 1e-2


def _renamed_model(source: Path, target: Path) -> None:
    """The ONNX model with its graph input/output renamed to INPUT/OUTPUT."""
    model = onnx.load(str(source))
    old_in, old_out = model.graph.input[0].name, model.graph.output[0].name
    for node in model.graph.node:
        node.input[:] = [INPUT if n == old_in else n for n in node.input]
        node.output[:] = [OUTPUT if n == old_out else n for n in node.output]
    model.graph.input[0].name, model.graph.output[0].name = INPUT, OUTPUT
    onnx.save(model, str(target))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny")
    demo = demo_package_path()
    path = folder / "tiny.onnx"
    _renamed_model(demo / "coarse.onnx", path)
    shutil.copy(demo / "coarse.weights.npz", folder / "tiny.weights.npz")
    card = json.loads((demo / "coarse.json").read_text())
    card["input"]["name"], card["output"]["name"] = INPUT, OUTPUT
    card["onnx_sha256"] = sha256_of(path)
    (folder / "tiny.json").write_text(json.dumps(card))
    return path


@pytest.fixture(scope="module")
def reference(tiny_model) -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(0).uniform(-1, 1, SHAPE).astype(np.float32)
    with create_backend("onnxruntime", str(tiny_model), 1) as oracle:
        return x, oracle.infer({INPUT: x})[OUTPUT]


def _backend(name: str, model: Path):
    available, reason = CAPABILITY[name]
    if not available:
        pytest.skip(f"{name}: {reason}")
    if name == "tensorrt":
        from kitsrt.engines.tensorrt_backend import plan_path
        from kitsrt.engines.tensorrt_build import build_engine, profile_shapes

        if not plan_path(model).exists():
            build_engine(model, plan_path(model), INPUT, profile_shapes((16, 16, 16), (64, 64, 64)), "fp32",
                         model.parent / "timing.cache", 1 << 30)
    return create_backend(name, str(model), 1)


def test_every_backend_has_a_capability_entry():
    assert set(CAPABILITY) == set(BACKENDS)


@pytest.mark.parametrize("name", BACKENDS)
def test_names_shapes_and_dtypes_come_from_the_model(name, tiny_model, reference):
    x, expected = reference
    card = json.loads(tiny_model.with_suffix(".json").read_text())
    classes = card["architecture"]["num_classes"]
    with _backend(name, tiny_model) as backend:
        assert [t.name for t in backend.inputs()] == [INPUT]
        assert [t.name for t in backend.outputs()] == [OUTPUT]
        assert backend.inputs()[0].dtype == np.float32 and len(backend.inputs()[0].shape) == 5
        out = backend.infer({INPUT: x})
        assert set(out) == {OUTPUT}
        assert out[OUTPUT].shape == (1, classes, *SHAPE[2:]) and out[OUTPUT].dtype == np.float32
        batch = backend.infer({INPUT: np.concatenate([x, x[:, :, ::-1].copy()])})[OUTPUT]
        assert batch.shape == (2, classes, *SHAPE[2:])


@pytest.mark.parametrize("name", BACKENDS)
def test_parity_with_onnxruntime_cpu(name, tiny_model, reference):
    x, expected = reference
    with _backend(name, tiny_model) as backend:
        got = backend.infer({INPUT: x})[OUTPUT]
    assert np.abs(got - expected).max() <= TOLERANCE.get(name, 1e-2)
    assert (got.argmax(1) == expected.argmax(1)).mean() > 0.999


@pytest.mark.parametrize("name", BACKENDS)
def test_errors_before_load_and_for_wrong_inputs(name, tiny_model, reference):
    x, _ = reference
    backend = _backend(name, tiny_model)
    with pytest.raises(KitsrtError, match=r"call load\(\) before infer\(\)"):
        backend.infer({INPUT: x})
    with backend:
        with pytest.raises(KitsrtError, match=r"inputs \['image'\] given, model takes \['ct'\]"):
            backend.infer({"image": x})
        with pytest.raises(KitsrtError, match=f"input {INPUT} is float64"):
            backend.infer({INPUT: x.astype(np.float64)})
        with pytest.raises(KitsrtError, match="with 5 dims"):
            backend.infer({INPUT: x[0]})


@pytest.mark.parametrize("name", BACKENDS)
def test_close_is_idempotent_and_final(name, tiny_model, reference):
    x, _ = reference
    backend = _backend(name, tiny_model).load()
    backend.load()  # a second load is a no-op
    backend.close()
    backend.close()
    with pytest.raises(KitsrtError, match="before infer"):
        backend.infer({INPUT: x})
    backend.load()  # and it can be loaded again
    assert backend.infer({INPUT: x})[OUTPUT].shape[0] == 1
    backend.close()
