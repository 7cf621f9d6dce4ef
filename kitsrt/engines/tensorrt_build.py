"""ONNX -> serialized TensorRT engine (.plan) plus a sidecar JSON that pins it to its machine.

Written against the TensorRT 10/11 Python API. Precision lives in the ONNX file (FP16 casts or INT8
Q/DQ nodes): the network is created STRONGLY_TYPED (required on TensorRT 10, implicit on 11, where
the FP16/INT8 builder flags and calibrators no longer exist). One optimisation profile per input
comes from the pipeline spec's shape range; the timing cache is loaded and saved so rebuilds are fast.

The sidecar records TensorRT version, GPU name, compute capability, the ONNX file's SHA-256 and the
precision; ``check_sidecar`` refuses an engine built elsewhere or from another ONNX file.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from kitsrt.errors import BackendUnavailable, ModelPackageError
from kitsrt.io import sha256_of, write_bytes_atomic, write_text_atomic

WORKSPACE_BYTES = 2 << 30


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError:
        raise BackendUnavailable("TensorRT is not installed here (pip install 'kitsrt[gpu]' on a machine with an "
                                 "NVIDIA GPU); use --backend onnxruntime instead") from None
    return trt


def cuda_runtime():
    """cuda-python's runtime API module (``cuda.bindings.runtime``, or ``cuda.cudart`` before 12.6)."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart
        except ImportError:
            raise BackendUnavailable("cuda-python is not installed (pip install 'kitsrt[gpu]')") from None
    return cudart


def check_cuda(result):
    """cuda-python calls return (error, *values); raise on error, return the values."""
    error, *values = result
    if int(error) != 0:
        raise BackendUnavailable(f"CUDA error {error}")
    return values[0] if len(values) == 1 else tuple(values)


@dataclass(frozen=True)
class Sidecar:
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    onnx_sha256: str
    precision: str


def this_machine() -> tuple[str, str]:
    """(GPU name, compute capability 'major.minor') of device 0."""
    cudart = cuda_runtime()
    props = check_cuda(cudart.cudaGetDeviceProperties(0))
    name = props.name.decode(errors="replace").rstrip("\x00") if isinstance(props.name, bytes) else str(props.name)
    return name, f"{props.major}.{props.minor}"


def sidecar_path(plan: Path) -> Path:
    return plan.with_suffix(".plan.json")


def check_sidecar(sidecar: Sidecar, onnx_sha256: str, tensorrt_version: str, gpu_name: str,
                  compute_capability: str) -> None:
    """Refuse an engine that does not belong to this machine and ONNX file (a pure comparison)."""
    expected = {"tensorrt_version": tensorrt_version, "gpu_name": gpu_name,
                "compute_capability": compute_capability, "onnx_sha256": onnx_sha256}
    for field, value in expected.items():
        if getattr(sidecar, field) != value:
            raise ModelPackageError(f"engine was built for {field} {getattr(sidecar, field)!r}, this is {value!r}; "
                                    "rebuild it here with `kitsrt build`")


def read_sidecar(plan: Path) -> Sidecar:
    path = sidecar_path(plan)
    if not path.exists():
        raise ModelPackageError(f"{path}: engine sidecar missing; rebuild the engine with `kitsrt build`")
    return Sidecar(**json.loads(path.read_text()))


def build_engine(onnx_path: Path, plan: Path, input_name: str, shapes: dict[str, tuple], precision: str,
                 timing_cache: Path | None = None, workspace_bytes: int = WORKSPACE_BYTES) -> Sidecar:
    """Parse ``onnx_path``, build with one optimisation profile (``shapes`` has min/opt/max NCDHW
    shapes), serialize to ``plan`` and write its sidecar. Raises with the parser's errors."""
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelPackageError(f"{onnx_path}: TensorRT's ONNX parser failed: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, shapes["min"], shapes["opt"], shapes["max"])
    config.add_optimization_profile(profile)
    cache_bytes = timing_cache.read_bytes() if timing_cache is not None and timing_cache.exists() else b""
    config.set_timing_cache(config.create_timing_cache(cache_bytes), False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ModelPackageError(f"{onnx_path}: TensorRT could not build an engine (see the log above)")
    write_bytes_atomic(bytes(serialized), plan, overwrite=True)
    if timing_cache is not None:
        write_bytes_atomic(bytes(config.get_timing_cache().serialize()), timing_cache, overwrite=True)
    gpu_name, capability = this_machine()
    sidecar = Sidecar(trt.__version__, gpu_name, capability, sha256_of(onnx_path), precision)
    write_text_atomic(json.dumps(asdict(sidecar), indent=2) + "\n", sidecar_path(plan), overwrite=True)
    return sidecar


def profile_shapes(min_shape, max_shape, opt_shape=None) -> dict[str, tuple]:
    """NCDHW shapes for one optimisation profile from a stage's spatial (z, y, x) range."""
    opt = opt_shape or tuple((a + b) // 2 for a, b in zip(min_shape, max_shape))
    return {"min": (1, 1, *min_shape), "opt": (1, 1, *opt), "max": (1, 1, *max_shape)}
