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
    VOI shapes at the same speed). ``release_memory`` shrinks the arena between scans.
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
        try:
            self._session = ort.InferenceSession(self.model_path, self._options(), providers=list(self.providers))
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            raise ModelPackageError(f"{self.model_path}: onnxruntime cannot load it "
                                    f"({str(exc).splitlines()[0][:200]})") from None

    def _close(self) -> None:
        self._session = None

    def _infer(self, feed, run_options=None):
        names = [o.name for o in self._session.get_outputs()]
        return dict(zip(names, self._session.run(names, feed, run_options)))

    def release_memory(self) -> None:
        """Shrink the CPU arena: onnxruntime frees unused arena chunks at the end of a run that asks
        for it, so run the network once on the smallest input it takes (a few ms)."""
        import onnxruntime as ort

        if self._session is None or "CPUExecutionProvider" not in self.providers:
            return
        options = ort.RunOptions()
        options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        (info,) = self._session.get_inputs()
        shape = [d if isinstance(d, int) else (1 if n < 2 else 32) for n, d in enumerate(info.shape)]
        self._infer({info.name: np.zeros(shape, _DTYPES.get(info.type, np.float32))}, options)

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
