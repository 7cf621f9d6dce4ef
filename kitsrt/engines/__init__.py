"""Backends behind one interface (``kitsrt.engines.base.Backend``), chosen by name.

Heavy optional libraries (torch, tensorrt, cuda-python, openvino) are imported inside the backend that needs
them, so this package imports everywhere and fails with a clear message only when asked for one.
"""

from __future__ import annotations

from kitsrt.engines.base import Backend, TensorInfo
from kitsrt.errors import BackendUnavailable, InputError

BACKENDS = ("onnxruntime", "onnxruntime-cuda", "openvino", "tensorrt", "torch", "torch-cuda")
RUNTIME_PRECISIONS = {"bf16": ("openvino",)}  # precisions a backend applies at run time to the FP32 file


def check_runtime_precision(name: str, runtime_precision: str) -> None:
    """Exit 6 unless backend ``name`` (or ``auto``) offers ``runtime_precision``."""
    offered = RUNTIME_PRECISIONS.get(runtime_precision, ())
    if runtime_precision != "fp32" and name not in (*offered, "auto"):
        raise BackendUnavailable(f"--precision {runtime_precision}: a runtime precision that only "
                                 f"{', '.join(offered) or 'no backend'} offers, not {name}; "
                                 f"add --backend {offered[0] if offered else 'openvino'}")


def create_backend(name: str, model_path: str, threads: int = 0, runtime_precision: str = "fp32") -> Backend:
    """A not-yet-loaded backend of kind ``name`` for one model file.

    ``runtime_precision`` is ``fp32`` (compute in the file's own precision) or one of
    ``RUNTIME_PRECISIONS`` for the backends that offer it (exit 6 elsewhere).
    """
    check_runtime_precision(name, runtime_precision)
    if name == "openvino":
        from kitsrt.engines.openvino_backend import OpenVINOBackend

        return OpenVINOBackend(model_path, threads, runtime_precision)
    if name == "onnxruntime":
        from kitsrt.engines.onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(model_path, threads)
    if name == "onnxruntime-cuda":
        from kitsrt.engines.onnxruntime_backend import OnnxRuntimeCudaBackend

        return OnnxRuntimeCudaBackend(model_path, threads)
    if name in ("torch", "torch-cuda"):
        from kitsrt.engines.torch_backend import TorchBackend

        return TorchBackend(model_path, threads, device="cuda" if name == "torch-cuda" else "cpu")
    if name == "tensorrt":
        from kitsrt.engines.tensorrt_backend import TensorRTBackend

        return TensorRTBackend(model_path, threads)
    raise InputError(f"--backend {name!r}: unknown backend; choose one of {', '.join(BACKENDS)} (or auto)")


__all__ = ["BACKENDS", "RUNTIME_PRECISIONS", "check_runtime_precision", "Backend", "TensorInfo", "create_backend"]
