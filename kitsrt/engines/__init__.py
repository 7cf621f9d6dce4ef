"""Backends behind one interface (``kitsrt.engines.base.Backend``), chosen by name.

Heavy optional libraries (torch, tensorrt, cuda-python) are imported inside the backend that needs
them, so this package imports everywhere and fails with a clear message only when asked for one.
"""

from __future__ import annotations

from kitsrt.engines.base import Backend, TensorInfo
from kitsrt.errors import InputError

BACKENDS = ("onnxruntime", "onnxruntime-cuda", "tensorrt", "torch", "torch-cuda")


def create_backend(name: str, model_path: str, threads: int = 0) -> Backend:
    """A not-yet-loaded backend of kind ``name`` for one model file."""
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


__all__ = ["BACKENDS", "Backend", "TensorInfo", "create_backend"]
