"""Tiny model packages of every pipeline kind, built by hand (no torch, no training), for contract
tests of the toolchain (calibrate, quantize, gate, build plans, bench) on each kind.

Each network is a threshold function of the normalised intensity, spread over four nodes so that
INT8 has something to quantize besides the first and last convolutions:
``Conv(1x1x1: z_c = gain_c * (x - t_c)) -> Conv(identity) -> Add(z, .) -> Conv(0.5 identity)``, so the
logits are exactly ``z``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from kitsrt.io import sha256_of
from kitsrt.runtime.package import demo_package_path
from kitsrt.runtime.pipeline import seed004_preset
from kitsrt.runtime.sliding_window_spec import SlidingWindowSpec

DIMS = ["N", 1, "D", "H", "W"]


def threshold_net(path: Path, thresholds: list[float], gains: list[float]) -> None:
    """Write ``path`` (ONNX, input ``image`` (N, 1, D, H, W) -> ``logits`` (N, C, D, H, W)) and its card;
    channel c's logit is ``gains[c] * (x - thresholds[c])``."""
    channels = len(thresholds)
    eye = np.eye(channels, dtype=np.float32).reshape(channels, channels, 1, 1, 1)
    init = [
        helper.make_tensor("w1", TensorProto.FLOAT, [channels, 1, 1, 1, 1], np.asarray(gains, np.float32)),
        helper.make_tensor("b1", TensorProto.FLOAT, [channels],
                           -np.asarray(gains, np.float32) * np.asarray(thresholds, np.float32)),
        helper.make_tensor("w2", TensorProto.FLOAT, eye.shape, eye.ravel()),
        helper.make_tensor("b2", TensorProto.FLOAT, [channels], np.zeros(channels, np.float32)),
        helper.make_tensor("w3", TensorProto.FLOAT, eye.shape, 0.5 * eye.ravel()),
        helper.make_tensor("b3", TensorProto.FLOAT, [channels], np.zeros(channels, np.float32)),
    ]
    nodes = [helper.make_node("Conv", ["image", "w1", "b1"], ["z"], name="stem", kernel_shape=[1, 1, 1]),
             helper.make_node("Conv", ["z", "w2", "b2"], ["y"], name="body", kernel_shape=[1, 1, 1]),
             helper.make_node("Add", ["z", "y"], ["s"], name="skip"),
             helper.make_node("Conv", ["s", "w3", "b3"], ["logits"], name="head", kernel_shape=[1, 1, 1])]
    out_dims = ["N", channels, "D", "H", "W"]
    graph = helper.make_graph(nodes, "threshold", [helper.make_tensor_value_info("image", TensorProto.FLOAT, DIMS)],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, out_dims)], init)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    card = {"input": {"name": "image", "shape": DIMS, "dtype": "float32", "divisibility": 8},
            "output": {"name": "logits", "shape": out_dims, "dtype": "float32"},
            "architecture": {"architecture": "threshold"}, "disclaimer": "test network"}
    path.with_suffix(".json").write_text(json.dumps(card))


def cascade_package(folder: Path) -> Path:
    """A copy of the bundled seed 002 demo (real VB-Nets), without its reduced-precision files."""
    shutil.copytree(demo_package_path(), folder)
    for variant in [*folder.glob("*.int8.*"), *folder.glob("*.fp16.*"), *folder.glob("*.bf16.*")]:
        variant.unlink()
    return folder


def nested_package(folder: Path) -> Path:
    """Seed 004's nested pipeline (2 mm, 168^3, window [0, 1]) over threshold networks: kidney above
    100 HU, tumor above 160 HU."""
    folder.mkdir(parents=True)
    level = lambda hu: (hu + 200.0) / 700.0  # noqa: E731 - HU -> the [0, 1] window
    threshold_net(folder / "kidney.onnx", [level(100.0)], [10.0])
    threshold_net(folder / "tumor.onnx", [level(160.0)], [10.0])
    spec = seed004_preset()
    networks = {role: net.model_copy(update={"sha256": sha256_of(folder / net.model)})
                for role, net in spec.networks().items()}
    (folder / "pipeline.json").write_text(spec.model_copy(update=networks).to_json())
    return folder


def sliding_window_package(folder: Path, folds: int = 2, mirroring: bool = True) -> Path:
    """An nnU-Net-style sliding-window package: CT z-score, 6 x 8 x 8 mm, 16 x 32 x 32 patches,
    softmax over (background, kidney above ~130 HU, tumor above ~200 HU), ``folds`` folds."""
    folder.mkdir(parents=True)
    files = []
    for n in range(folds):
        name = f"fold_{n}.onnx"
        threshold_net(folder / name, [0.0, 0.3, 1.0 + 0.05 * n], [0.0, 10.0, 20.0])
        files.append({"model": name, "sha256": sha256_of(folder / name)})
    spec = SlidingWindowSpec.model_validate({
        "name": "tiny-sliding-window", "folds": files, "transpose_forward": [0, 1, 2],
        "transpose_backward": [0, 1, 2], "target_spacing_mm": [6.0, 8.0, 8.0],
        "normalization": {"scheme": "ct", "clip": [-200.0, 300.0], "mean": 100.0, "std": 100.0},
        "patch_size": [16, 32, 32], "mirror_axes": [0, 1, 2], "use_mirroring": mirroring, "logits_dtype": "float32",
        "outputs": {"mode": "softmax", "channels": 3, "label_map": {"0": 0, "1": 1, "2": 2}}})
    (folder / "pipeline.json").write_text(json.dumps(spec.model_dump(mode="json"), indent=2))
    return folder


BUILDERS = {"cascade": cascade_package, "nested": nested_package, "sliding-window": sliding_window_package}
