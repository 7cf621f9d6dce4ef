"""Reduced-precision ONNX variants whose precision lives in the file (what TensorRT 11 requires).

* INT8: onnxruntime's ``quantize_static`` in QDQ format, signed INT8 activations and weights,
  per-channel weights, symmetric ranges (zero points 0), no INT32 bias quantization, and only the
  op types TensorRT fuses with Q/DQ (Conv, ConvTranspose, Add), except the first and last
  convolutions (stem and logits head), which stay in float, and any node the sensitivity search
  keeps in float. Ranges come from the calibration split of a calibration set (MinMax, Entropy or
  Percentile), tiled into 64^3 patches.
* FP16: every float32 weight becomes float16 and the graph computes in float16 between a Cast at
  the input and a Cast back to float32 at the output, so softmax/argmax run in FP32 outside it.
  (BatchNorm is already folded into the convolutions at export, so no normalisation runs in FP16.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

METHODS = ("minmax", "entropy", "percentile")
QUANTIZED_OPS = ["Conv", "ConvTranspose", "Add"]
HISTOGRAM_PATCHES = 48  # entropy/percentile keep every activation in memory: at most this many 64^3 patches' voxels


CALIBRATION_PATCH = (64, 64, 64)


def fixed_patches(arrays: list[np.ndarray], size: tuple[int, int, int] = CALIBRATION_PATCH,
                  pad_value: float = -1.0) -> list[np.ndarray]:
    """Tile each (z, y, x) input into non-overlapping patches of one shape (padded with air), so
    histogram calibrators (entropy, percentile), which stack all activations, see equal shapes."""
    patches = []
    for array in arrays:
        counts = [max(1, -(-n // p)) for n, p in zip(array.shape, size)]
        padded = np.full([c * p for c, p in zip(counts, size)], pad_value, np.float32)
        padded[tuple(slice(0, n) for n in array.shape)] = array
        for z in range(counts[0]):
            for y in range(counts[1]):
                for x in range(counts[2]):
                    patches.append(padded[z * size[0]:(z + 1) * size[0], y * size[1]:(y + 1) * size[1],
                                          x * size[2]:(x + 1) * size[2]])
    return patches


class _Reader:
    """onnxruntime CalibrationDataReader over a list of (z, y, x) inputs."""

    def __init__(self, input_name: str, arrays: list[np.ndarray]):
        self._feeds = iter([{input_name: np.ascontiguousarray(a[None, None], np.float32)} for a in arrays])

    def get_next(self):
        return next(self._feeds, None)


def boundary_convolutions(model: onnx.ModelProto) -> list[str]:
    """Names of the first and the last convolution: the stem sees raw intensities and the head
    produces the logits, the two places where INT8 error costs most; they stay in float."""
    convs = [n.name for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose")]
    return sorted({convs[0], convs[-1]}) if convs else []


def quantizable_nodes(model: onnx.ModelProto, op_types: list[str] | None = None) -> list[str]:
    """Nodes INT8 may touch, in graph order: the op types TensorRT fuses, minus the boundary convolutions."""
    keep_float = set(boundary_convolutions(model))
    return [n.name for n in model.graph.node if n.op_type in (op_types or QUANTIZED_OPS) and n.name not in keep_float]


def quantize_int8(fp32: Path, out: Path, arrays: list[np.ndarray], method: str = "minmax",
                  input_name: str = "image", op_types: list[str] | None = None,
                  nodes: list[str] | None = None, ranges_cache: Path | None = None,
                  patch: tuple[int, int, int] = CALIBRATION_PATCH, pad_value: float = -1.0) -> None:
    """Write a Q/DQ model quantizing ``nodes`` (default: every quantizable node).

    Activation ranges are computed from ``arrays`` (tiled into ``patch``-shaped pieces, padded with
    ``pad_value``, the network-input value of air) once and kept in ``ranges_cache`` when given, so
    trying many node subsets (see :mod:`kitsrt.calibration.sensitivity`) calibrates only once.
    """
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

    nodes = quantizable_nodes(onnx.load(str(fp32)), op_types) if nodes is None else nodes
    if not nodes:
        raise ValueError("quantize_int8: no node to quantize")
    reader = None
    if ranges_cache is None or not ranges_cache.exists():
        patches = fixed_patches(arrays, tuple(patch), pad_value)
        most = max(1, HISTOGRAM_PATCHES * int(np.prod(CALIBRATION_PATCH)) // int(np.prod(patch)))
        if method != "minmax" and len(patches) > most:
            keep = np.random.default_rng(0).choice(len(patches), most, replace=False)
            patches = [patches[i] for i in sorted(keep)]
        reader = type("CalibrationReader", (_Reader, CalibrationDataReader), {})(input_name, patches)
    calibration = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                   "percentile": CalibrationMethod.Percentile}[method]
    quantize_static(
        str(fp32), str(out), reader,
        quant_format=QuantFormat.QDQ, op_types_to_quantize=op_types or QUANTIZED_OPS, per_channel=True,
        nodes_to_quantize=nodes,
        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, calibrate_method=calibration,
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False,
                       "CalibMovingAverage": method == "minmax"},
        calibration_cache_path=None if ranges_cache is None else str(ranges_cache),
    )


def check_tensorrt_qdq(model: onnx.ModelProto) -> list[str]:
    """Problems TensorRT's parser would have with this Q/DQ model (empty when fine): non-zero or
    non-INT8 zero points, non-positive scales, INT32 tensors feeding a DequantizeLinear."""
    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    problems = []
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        scale = init.get(node.input[1])
        if scale is not None and np.any(scale <= 0):
            problems.append(f"{node.name}: non-positive scale")
        if len(node.input) > 2 and node.input[2] in init:
            zero = init[node.input[2]]
            if zero.dtype != np.int8 or np.any(zero != 0):
                problems.append(f"{node.name}: zero point {zero.dtype} not all 0")
        if node.op_type == "DequantizeLinear" and node.input[0] in init and init[node.input[0]].dtype == np.int32:
            problems.append(f"{node.name}: INT32 bias")
    return problems


def convert_fp16(fp32: Path, out: Path) -> None:
    model = onnx.load(str(fp32))
    graph = model.graph
    for tensor in graph.initializer:
        if tensor.data_type == TensorProto.FLOAT:
            tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float16), tensor.name))
    for value in list(graph.value_info):
        if value.type.tensor_type.elem_type == TensorProto.FLOAT:
            value.type.tensor_type.elem_type = TensorProto.FLOAT16
    (graph_input,), (graph_output,) = graph.input, graph.output
    half_in, half_out = graph_input.name + "_fp16", graph_output.name + "_fp16"
    for node in graph.node:
        node.input[:] = [half_in if name == graph_input.name else name for name in node.input]
        node.output[:] = [half_out if name == graph_output.name else name for name in node.output]
    graph.node.insert(0, helper.make_node("Cast", [graph_input.name], [half_in], to=TensorProto.FLOAT16,
                                          name="input_to_fp16"))
    graph.node.append(helper.make_node("Cast", [half_out], [graph_output.name], to=TensorProto.FLOAT,
                                       name="output_to_fp32"))
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
