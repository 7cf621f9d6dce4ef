"""onnxruntime backends: CPU (the embedded default and the test oracle) and CUDA."""

from __future__ import annotations

import numpy as np

from kitsrt.engines.base import Backend, TensorInfo
from kitsrt.errors import BackendUnavailable, ModelPackageError

_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64}


class OnnxRuntimeBackend(Backend):
    """One ``InferenceSession``, created at ``load()``. onnxruntime's ``run`` is thread-safe.

    CPU tuning: all graph optimisations (Conv+BatchNorm folding, fusions), ``intra_op_num_threads``
    = ``threads``, sequential execution (one network at a time; parallelism inside operators), the
    CPU memory arena on (without it the fine net runs ~2x slower here: every activation page-faults)
    and memory patterns off (they pre-plan one block per input shape: 0.94 -> 0.55 GiB peak on two
    VOI shapes at the same speed), and the arena shrunk at the end of every run: otherwise the
    largest VOI's activations (0.7 GiB on the largest KiTS19 geometry) stay held through
    post-processing and the next scan's read (peak RSS 1.69 -> 1.18 GiB there, fine-net time within
    this shared machine's noise).
    """

    name = "onnxruntime-cpu"
    providers = ("CPUExecutionProvider",)

    def __init__(self, model_path: str, threads: int = 0):
        super().__init__(model_path)
        self.threads = threads
        self._session = None

    def _options(self):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.enable_mem_pattern = False
        options.log_severity_level = 3
        return options

    def _load(self) -> None:
        import onnxruntime as ort

        missing = [p for p in self.providers if p not in ort.get_available_providers()]
        if missing:
            raise BackendUnavailable(f"{self.name}: onnxruntime here lacks {', '.join(missing)} "
                                     f"(available: {', '.join(ort.get_available_providers())}); "
                                     "install onnxruntime-gpu for CUDA")
        self._run_options = ort.RunOptions()
        if "CPUExecutionProvider" in self.providers:  # give the arena back after each run (see the class doc)
            self._run_options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        try:
            self._session = ort.InferenceSession(self.model_path, self._options(), providers=list(self.providers))
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            raise ModelPackageError(f"{self.model_path}: onnxruntime cannot load it "
                                    f"({str(exc).splitlines()[0][:200]})") from None

    def _close(self) -> None:
        self._session = None

    def _infer(self, feed):
        names = [o.name for o in self._session.get_outputs()]
        return dict(zip(names, self._session.run(names, feed, self._run_options)))

    def _info(self, nodes) -> list[TensorInfo]:
        return [TensorInfo(n.name, np.dtype(_DTYPES.get(n.type, np.float32)), tuple(n.shape)) for n in nodes]

    def inputs(self) -> list[TensorInfo]:
        return self._info(self._session.get_inputs())

    def outputs(self) -> list[TensorInfo]:
        return self._info(self._session.get_outputs())

    def describe(self) -> str:
        return f"{self.name} ({self.threads or 'all'} threads)"


class OnnxRuntimeCudaBackend(OnnxRuntimeBackend):
    """onnxruntime with the CUDA execution provider (needs onnxruntime-gpu and a CUDA device)."""

    name = "onnxruntime-cuda"
    providers = ("CUDAExecutionProvider",)
