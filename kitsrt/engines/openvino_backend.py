"""OpenVINO CPU backend: the same ONNX files, compiled once with dynamic shapes, and per static
shape for shapes that come back.

Loaders apart from the runner (after Polygraphy): ``read_model`` reads the ONNX file once,
``compile_for_shape`` compiles it for one static input shape. Measured on this project's machine
(``benchmarks/openvino_shapes.py``): a static compile costs 0.4 s for the demo fine net and runs it
15-25% faster than the dynamic-shape model (0.44 vs 0.54 s on a 168x104x104 VOI), but the cascade
sees a new shape for every VOI and growth step (5 shapes per scan), so compiling every new shape
costs more than it gains. The backend therefore runs a shape on the dynamic model until it has
come ``static_after`` times (repeated geometries, the sliding window's patches) and only then
compiles it statically, keeping the last ``cached_shapes`` such models.

Precisions: ``fp32`` (inference precision forced to f32: OpenVINO's CPU default on a BF16-capable
CPU is bf16, which would change results silently), ``bf16`` (a runtime precision of the FP32 file,
only where the CPU reports BF16), and the file variants (``*.int8.onnx`` Q/DQ, ``*.fp16.onnx``),
run with an f32 inference precision for their float parts.
"""

from __future__ import annotations

import queue
import threading
from collections import OrderedDict

import numpy as np

from kitsrt.engines.base import Backend, TensorInfo
from kitsrt.errors import BackendUnavailable, ModelPackageError

INFERENCE_PRECISIONS = {"fp32": "f32", "bf16": "bf16"}
INSTALL_HINT = "install it with `pip install 'kitsrt[openvino]'` (or use --backend onnxruntime)"


def require_openvino():
    """The ``openvino`` module, or exit 6 saying what to install."""
    try:
        import openvino
    except ImportError:
        raise BackendUnavailable(f"--backend openvino: the openvino package is not installed; {INSTALL_HINT}") from None
    return openvino


def _first_line(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    return (lines[0] if lines else type(exc).__name__)[:200]


def cpu_supports_bf16(core) -> bool:
    """Whether OpenVINO's CPU plugin reports native BF16 (AVX-512 BF16 or AMX) on this machine."""
    return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def compile_config(threads: int, precision: str) -> dict:
    """CPU plugin properties: latency mode, one stream, ``threads`` threads (0: OpenVINO's default)."""
    config = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1, "INFERENCE_PRECISION_HINT": INFERENCE_PRECISIONS[precision]}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    return config


def compile_for_shape(core, model, shape: tuple[int, ...], config: dict):
    """``model`` (an ``openvino.Model`` with one input) compiled for the static input ``shape``."""
    import openvino as ov

    static = model.clone()
    static.reshape({static.inputs[0].any_name: ov.PartialShape(list(shape))})
    return core.compile_model(static, "CPU", config)


class _Compiled:
    """One compiled model and its idle infer requests, reused call after call (one per concurrent
    caller). A static-shape model's requests keep their intermediate buffers between calls (its shape
    comes back: the sliding window's patches); the dynamic model, which sees a new shape per VOI, frees
    them whenever no call runs (``release_when_idle``), so a VOI's activations do not stay resident
    through post-processing and the next VOI's preprocessing (0.3 GiB on the largest case)."""

    def __init__(self, compiled, release_when_idle: bool = False):
        self.compiled = compiled
        self.release_when_idle = release_when_idle
        self.idle: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._busy = 0  # requests running now

    def infer(self, array: np.ndarray) -> tuple[np.ndarray, ...]:
        with self._lock:
            self._busy += 1
        try:
            try:
                request = self.idle.get_nowait()
            except queue.Empty:
                request = self.compiled.create_infer_request()
            try:
                return request.infer({0: array}, share_inputs=True, share_outputs=False).to_tuple()
            finally:
                self.idle.put(request)
        finally:
            with self._lock:
                self._busy -= 1
                if self._busy == 0 and self.release_when_idle:
                    self.compiled.release_memory()

    def release_memory(self) -> None:
        """Free the requests' intermediate buffers, unless one is running (then at the next chance)."""
        with self._lock:
            if self._busy == 0:
                self.compiled.release_memory()


class _Compiling:
    """A static compile in progress: callers of the same shape wait for it, others go on."""

    def __init__(self):
        self.done = threading.Event()
        self.entry: _Compiled | None = None
        self.error: BackendUnavailable | None = None

    def result(self) -> _Compiled:
        self.done.wait()
        if self.error is not None:
            raise self.error
        return self.entry


class OpenVINOBackend(Backend):
    """One ONNX file on OpenVINO's CPU plugin. ``infer`` is thread-safe: each concurrent call takes its
    own infer request from the compiled model's pool; a static compile runs outside the cache lock,
    once per shape (a second caller of that shape waits for it, callers of other shapes do not)."""

    name = "openvino"

    def __init__(self, model_path: str, threads: int = 0, precision: str = "fp32", static_after: int = 3,
                 cached_shapes: int = 4):
        super().__init__(model_path)
        if precision not in INFERENCE_PRECISIONS:
            raise BackendUnavailable(f"--backend openvino: precision {precision!r} is not a runtime precision; "
                                     f"choose one of {', '.join(INFERENCE_PRECISIONS)}")
        self.threads = threads
        self.precision = precision
        self.static_after = static_after
        self.cached_shapes = cached_shapes
        self.compiles = 0  # static shapes compiled so far (for benchmarks and tests)
        self._core = self._model = self._dynamic = None
        self._seen: OrderedDict[tuple[int, ...], int] = OrderedDict()
        self._cache: OrderedDict[tuple[int, ...], _Compiled] = OrderedDict()
        self._compiling: dict[tuple[int, ...], _Compiling] = {}
        self._cache_lock = threading.Lock()

    def _load(self) -> None:
        ov = require_openvino()
        core = ov.Core()
        if self.precision == "bf16" and not cpu_supports_bf16(core):
            raise BackendUnavailable(
                f"--precision bf16: this CPU has no native BF16 (OpenVINO reports "
                f"{', '.join(core.get_property('CPU', 'OPTIMIZATION_CAPABILITIES'))}); use --precision fp32")
        try:
            model = core.read_model(self.model_path)
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses for unreadable files
            raise ModelPackageError(f"{self.model_path}: OpenVINO cannot read it ({_first_line(exc)})") from None
        if len(model.inputs) != 1:
            raise ModelPackageError(f"{self.model_path}: the OpenVINO backend runs single-input networks, "
                                    f"this one has {len(model.inputs)}")
        try:
            dynamic = core.compile_model(model, "CPU", compile_config(self.threads, self.precision))
        except Exception as exc:
            raise BackendUnavailable(f"{self.model_path}: OpenVINO cannot compile it ({_first_line(exc)}); "
                                     "use --backend onnxruntime") from None
        self._core, self._model, self._dynamic = core, model, _Compiled(dynamic, release_when_idle=True)

    def _close(self) -> None:
        with self._cache_lock:
            self._cache.clear()
            self._seen.clear()
        self._core = self._model = self._dynamic = None

    def _compiled_for(self, shape: tuple[int, ...]) -> _Compiled:
        """The static model of ``shape`` once it has come ``static_after`` times, else the dynamic one."""
        with self._cache_lock:
            entry = self._cache.get(shape)
            if entry is not None:
                self._cache.move_to_end(shape)
                return entry
            pending = self._compiling.get(shape)
            if pending is None:
                self._seen[shape] = self._seen.pop(shape, 0) + 1
                while len(self._seen) > 64:
                    self._seen.popitem(last=False)
                if self._seen[shape] < self.static_after:
                    return self._dynamic
                pending = self._compiling[shape] = _Compiling()
                core, model = self._core, self._model
            else:
                core = None  # another caller compiles this shape
        if core is None:
            return pending.result()
        try:
            pending.entry = _Compiled(compile_for_shape(core, model, shape, compile_config(self.threads, self.precision)))
        except Exception as exc:
            pending.error = BackendUnavailable(f"{self.model_path}: OpenVINO cannot compile it for input shape "
                                               f"{list(shape)} ({_first_line(exc)}); use --backend onnxruntime")
        with self._cache_lock:
            del self._compiling[shape]
            if pending.entry is not None:
                self._cache[shape] = pending.entry
                self.compiles += 1
                while len(self._cache) > self.cached_shapes:
                    self._cache.popitem(last=False)  # in-flight requests keep their model alive
        pending.done.set()
        return pending.result()

    def release_memory(self) -> None:
        """Free the intermediate buffers of the idle infer requests (OpenVINO's ``release_memory``)."""
        with self._cache_lock:
            for entry in [self._dynamic, *self._cache.values()]:
                if entry is not None:
                    entry.release_memory()

    def _infer(self, feed):
        (array,) = feed.values()
        array = np.ascontiguousarray(array)
        try:
            outputs = self._compiled_for(tuple(array.shape)).infer(array)
        except BackendUnavailable:
            raise
        except Exception as exc:  # OpenVINO raises RuntimeError for shapes the network cannot take
            raise BackendUnavailable(f"{self.model_path}: OpenVINO cannot run it on input shape {list(array.shape)} "
                                     f"({_first_line(exc)}); use --backend onnxruntime") from None
        return {info.name: out for info, out in zip(self.outputs(), outputs)}

    def _info(self, ports) -> list[TensorInfo]:
        return [TensorInfo(p.any_name, np.dtype(p.get_element_type().to_dtype()),
                           tuple(None if d.is_dynamic else d.get_length() for d in p.partial_shape))
                for p in ports]

    def inputs(self) -> list[TensorInfo]:
        return self._info(self._model.inputs)

    def outputs(self) -> list[TensorInfo]:
        return self._info(self._model.outputs)

    def describe(self) -> str:
        inference = ", bf16 inference" if self.precision == "bf16" else ""
        return f"openvino-cpu ({self.threads or 'all'} threads{inference})"
