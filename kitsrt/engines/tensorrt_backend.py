"""TensorRT backend: a deserialized engine, cuda-python device buffers and one CUDA stream.

``model_path`` is the ONNX file; its engine is ``<model>.plan`` beside it (``kitsrt build``). The
sidecar is checked at load against this machine and the ONNX file. Device buffers grow to the
largest shape seen; ``infer`` serialises on a lock (one execution context, one stream).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from kitsrt.engines.base import Backend, TensorInfo
from kitsrt.engines.tensorrt_build import (
    check_cuda,
    check_sidecar,
    cuda_runtime,
    import_tensorrt,
    read_sidecar,
    this_machine,
)
from kitsrt.errors import ModelPackageError
from kitsrt.io import sha256_of


def plan_path(onnx_path: Path) -> Path:
    return onnx_path.with_suffix(".plan")


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, model_path: str, threads: int = 0):
        super().__init__(model_path)
        self._run_lock = threading.Lock()
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, bytes)

    def loaded_file(self) -> str:
        return str(plan_path(Path(self.model_path)))

    def _load(self) -> None:
        trt = import_tensorrt()
        self._trt, self._cudart = trt, cuda_runtime()
        onnx_path = Path(self.model_path)
        plan = plan_path(onnx_path)
        if not plan.exists():
            raise ModelPackageError(f"{plan}: no TensorRT engine; build it with `kitsrt build`")
        gpu_name, capability = this_machine()
        check_sidecar(read_sidecar(plan), sha256_of(onnx_path), trt.__version__, gpu_name, capability)
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._engine = self._runtime.deserialize_cuda_engine(plan.read_bytes())
        if self._engine is None:
            raise ModelPackageError(f"{plan}: TensorRT could not deserialize the engine; rebuild it")
        self._context = self._engine.create_execution_context()
        self._stream = check_cuda(self._cudart.cudaStreamCreate())
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        is_input = {n: self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self._inputs = [n for n in names if is_input[n]]
        self._outputs = [n for n in names if not is_input[n]]

    def _device(self, name: str, nbytes: int) -> int:
        pointer, size = self._buffers.get(name, (0, 0))
        if size < nbytes:
            if pointer:
                check_cuda(self._cudart.cudaFree(pointer))
            pointer = check_cuda(self._cudart.cudaMalloc(nbytes))
            self._buffers[name] = (pointer, nbytes)
        return pointer

    def _infer(self, feed):
        cudart, kinds = self._cudart, self._cudart.cudaMemcpyKind
        with self._run_lock:
            for name in self._inputs:
                host = np.ascontiguousarray(feed[name], dtype=self._dtype(name))
                self._context.set_input_shape(name, host.shape)
                pointer = self._device(name, host.nbytes)
                check_cuda(cudart.cudaMemcpyAsync(pointer, host.ctypes.data, host.nbytes,
                                                  kinds.cudaMemcpyHostToDevice, self._stream))
                self._context.set_tensor_address(name, pointer)
            results = {}
            for name in self._outputs:
                host = np.empty(tuple(self._context.get_tensor_shape(name)), dtype=self._dtype(name))
                self._context.set_tensor_address(name, self._device(name, host.nbytes))
                results[name] = host
            if not self._context.execute_async_v3(self._stream):
                raise ModelPackageError(f"{self.model_path}: TensorRT execution failed")
            for name, host in results.items():
                check_cuda(cudart.cudaMemcpyAsync(host.ctypes.data, self._buffers[name][0], host.nbytes,
                                                  kinds.cudaMemcpyDeviceToHost, self._stream))
            check_cuda(cudart.cudaStreamSynchronize(self._stream))
        return {name: array.astype(np.float32, copy=False) for name, array in results.items()}

    def _dtype(self, name: str):
        return np.dtype(self._trt.nptype(self._engine.get_tensor_dtype(name)))

    def _close(self) -> None:
        for pointer, _ in self._buffers.values():
            self._cudart.cudaFree(pointer)
        self._buffers.clear()
        self._cudart.cudaStreamDestroy(self._stream)
        self._context = self._engine = self._runtime = None

    def _info(self, names) -> list[TensorInfo]:
        return [TensorInfo(n, np.dtype(np.float32), tuple(self._engine.get_tensor_shape(n))) for n in names]

    def inputs(self) -> list[TensorInfo]:
        return self._info(self._inputs)

    def outputs(self) -> list[TensorInfo]:
        return self._info(self._outputs)
