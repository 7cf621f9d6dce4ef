"""Why INT8 is slow in onnxruntime and fast in OpenVINO on this CPU: per-operator profiles of the demo
fine net, FP32 vs INT8, on both runtimes, and the INT8 layouts each one accelerates.

Inputs: the fine net's real input for the first kidney VOI of a phantom (cut by the runtime). Files:
the shipped FP32 and INT8 (Q/DQ, symmetric S8 activations, per-channel S8 weights, 16 of 41 nodes kept
in float) and, with ``--layouts``, experimental INT8 variants made here from two procedural phantoms
(MinMax; not gated, not shipped): every node quantized (S8S8 and U8S8), U8 activations on the shipped
node set, and per-tensor weights. Each (runtime, file) is timed interleaved, min and median of
``--runs``; then onnxruntime's profiler and OpenVINO's performance counters give the time per
operator type / kernel. Needs the openvino extra.

    python benchmarks/int8_profile.py [--layouts] [--runs 5] [--out benchmarks/results/int8_profile.json]
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import openvino as ov

from kitsrt.bench.latency import describe_machine
from kitsrt.calibration.precision import fixed_patches, quantizable_nodes
from kitsrt.phantom import procedural_label_map, synthesize_ct
from kitsrt.runtime.kinds import kind_of
from kitsrt.runtime.package import load_package
from kitsrt.runtime.segmenter import Segmenter

THREADS = 2


def phantom_vois(package, seeds=(1, 2)) -> list[np.ndarray]:
    """The fine network's inputs (the grown VOIs) on procedural phantoms, as the runtime feeds them."""
    with Segmenter.load(package.folder, threads=THREADS) as segmenter:
        spec = segmenter.package.spec
        return [v for seed in seeds for v in kind_of(spec).network_inputs(
            synthesize_ct(procedural_label_map((256, 256, 96), (1.5, 1.5, 3.0), seed=seed), seed=seed), spec,
            segmenter.backends)["fine"]]


def layouts(fine: Path, arrays: list[np.ndarray], folder: Path) -> dict[str, Path]:
    """Experimental INT8 variants (see the module docstring)."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

    shipped_float = set(json.loads(fine.with_name(f"{fine.stem}.int8.json").read_text())["mixed_precision"]["float_nodes"])
    every = quantizable_nodes(onnx.load(str(fine)))
    plans = {"s8s8_all_nodes": (every, QuantType.QInt8, True, True),
             "u8s8_all_nodes": (every, QuantType.QUInt8, False, True),
             "u8s8_all_nodes_per_tensor": (every, QuantType.QUInt8, False, False),
             "u8s8_shipped_nodes": ([n for n in every if n not in shipped_float], QuantType.QUInt8, False, True)}
    made = {}
    for name, (nodes, activations, symmetric, per_channel) in plans.items():
        feeds = iter([{"image": p[None, None]} for p in fixed_patches(arrays)])
        reader = type("Reader", (CalibrationDataReader,), {"get_next": lambda self: next(feeds, None)})()
        made[name] = folder / f"{name}.onnx"
        quantize_static(str(fine), str(made[name]), reader, quant_format=QuantFormat.QDQ, per_channel=per_channel,
                        op_types_to_quantize=["Conv", "ConvTranspose", "Add"], nodes_to_quantize=nodes,
                        activation_type=activations, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True, "QuantizeBias": False})
    return made


def ort_session(path: Path, profile_prefix: str | None = None):
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = THREADS, 1
    if profile_prefix:
        options.enable_profiling, options.profile_file_prefix = True, profile_prefix
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ov_request(core, path: Path, shape, precision: str, perf_counters: bool = False):
    model = core.read_model(str(path))
    model.reshape({model.inputs[0].any_name: ov.PartialShape(list(shape))})
    config = {"INFERENCE_NUM_THREADS": THREADS, "INFERENCE_PRECISION_HINT": precision, "NUM_STREAMS": 1,
              "PERFORMANCE_HINT": "LATENCY", "PERF_COUNT": perf_counters}
    return core.compile_model(model, "CPU", config).create_infer_request()


def ort_profile(path: Path, x: np.ndarray, scratch: Path) -> dict:
    """Milliseconds per run by operator type after onnxruntime's graph optimisations, and the op count."""
    session = ort_session(path, str(scratch / path.stem))
    for _ in range(3):
        session.run(None, {"image": x})
    events = json.loads(Path(session.end_profiling()).read_text())
    per_op, count = collections.Counter(), collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_op[event["args"]["op_name"]] += event["dur"] / 1000 / 3
            count[event["args"]["op_name"]] += 1 / 3
    return {op: {"ms": round(ms, 1), "nodes": round(count[op])} for op, ms in per_op.most_common()}


def ov_profile(core, path: Path, x: np.ndarray, precision: str) -> dict:
    """Milliseconds per run by (layer type, kernel) from OpenVINO's performance counters."""
    request = ov_request(core, path, x.shape, precision, perf_counters=True)
    request.infer({0: x})
    request.infer({0: x})
    per_kernel, count = collections.Counter(), collections.Counter()
    for info in request.profiling_info:
        if info.status == ov.ProfilingInfo.Status.EXECUTED:
            key = f"{info.node_type} / {info.exec_type}"
            per_kernel[key] += info.real_time.total_seconds() * 1000
            count[key] += 1
    return {k: {"ms": round(ms, 1), "nodes": count[k]} for k, ms in per_kernel.most_common(10)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layouts", action="store_true", help="also build and time experimental INT8 layouts")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results/int8_profile.json")
    args = parser.parse_args()
    package = load_package()
    fine = package.model_path(package.spec.fine)
    arrays = phantom_vois(package)
    x = np.ascontiguousarray(arrays[0][None, None], np.float32)
    core = ov.Core()
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        files = {"fp32": fine, "int8_shipped": fine.with_name(f"{fine.stem}.int8.onnx")}
        if args.layouts:
            files.update(layouts(fine, arrays, scratch))
        runners = {}
        for name, path in files.items():
            session = ort_session(path)
            runners[f"onnxruntime/{name}"] = lambda s=session: s.run(None, {"image": x})[0]
            request = ov_request(core, path, x.shape, "f32")
            runners[f"openvino/{name}"] = lambda r=request: r.infer({0: x}).to_tuple()[0]
        request = ov_request(core, fine, x.shape, "bf16")
        runners["openvino/fp32 file, bf16 inference"] = lambda r=request: r.infer({0: x}).to_tuple()[0]
        reference = runners["onnxruntime/fp32"]().argmax(1)
        agreement = {k: float((run().argmax(1) == reference).mean()) for k, run in runners.items()}
        seconds = {k: [] for k in runners}
        for _ in range(args.runs):
            for k, run in runners.items():
                start = time.perf_counter()
                run()
                seconds[k].append(time.perf_counter() - start)
        base = float(np.median(seconds["onnxruntime/fp32"]))
        timing = {k: {"min_s": min(v), "median_s": float(np.median(v)), "median_vs_onnxruntime_fp32": float(np.median(v)) / base,
                      "argmax_agreement_vs_onnxruntime_fp32": agreement[k]} for k, v in seconds.items()}
        profiles = {"onnxruntime": {name: ort_profile(files[name], x, scratch) for name in ("fp32", "int8_shipped", *(
                        ["u8s8_all_nodes"] if args.layouts else []))},
                    "openvino": {name: ov_profile(core, files[name], x, "f32") for name in ("fp32", "int8_shipped")}}
        profiles["openvino"]["fp32 file, bf16 inference"] = ov_profile(core, fine, x, "bf16")
    report = {"machine": describe_machine(), "threads": THREADS, "input_shape": list(x.shape), "runs": args.runs,
              "timing": timing, "profiles": profiles}
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    for k, t in timing.items():
        print(f"{k:42s} median {t['median_s']:.3f} s  x{t['median_vs_onnxruntime_fp32']:.2f} of onnxruntime FP32  "
              f"agreement {t['argmax_agreement_vs_onnxruntime_fp32']:.5f}")


if __name__ == "__main__":
    main()
