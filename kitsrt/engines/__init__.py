"""Backends behind one interface (``kitsrt.engines.base.Backend``), chosen by name.

Heavy optional libraries (torch, tensorrt, cuda-python, openvino) are imported inside the backend that needs
them, so this package imports everywhere and fails with a clear message only when asked for one.
"""

from __future__ import annotations

from kitsrt.engines.base import Backend, TensorInfo
from kitsrt.errors import BackendUnavailable, InputError

BACKENDS = ("onnxruntime", "onnxruntime-cuda", "openvino", "tensorrt", "torch", "torch-cuda")
RUNTIME_PRECISIONS = {"bf16": ("openvino",)}  # precisions a backend applies at run time to the FP32 file


def create_backend(name: str, model_path: str, threads: int = 0, runtime_precision: str = "fp32") -> Backend:
    """A not-yet-loaded backend of kind ``name`` for one model file.

    ``runtime_precision`` is ``fp32`` (compute in the file's own precision) or one of
    ``RUNTIME_PRECISIONS`` for the backends that offer it (exit 6 elsewhere).
    """
    if runtime_precision != "fp32" and name not in RUNTIME_PRECISIONS.get(runtime_precision, ()):
        raise BackendUnavailable(f"--precision {runtime_precision}: a runtime precision that only "
                                 f"{', '.join(RUNTIME_PRECISIONS.get(runtime_precision, ())) or 'no backend'} "
                                 f"offers, not {name}; add --backend openvino")
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
    raise InputError(f"--backend {name!r}: unknown backend; choose one of {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "RUNTIME_PRECISIONS", "Backend", "TensorInfo", "create_backend"]
