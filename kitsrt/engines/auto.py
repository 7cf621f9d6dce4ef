"""``--backend auto``: the fastest installed backend whose outputs match onnxruntime CPU's.

Order, fastest first where each can run: ``tensorrt`` (needs engines from ``kitsrt build`` and a
GPU), ``onnxruntime-cuda`` (GPU), ``openvino`` (CPU: its FP32 networks took 0.74-0.97x onnxruntime's
time in ``benchmarks/results/int8_profile.json`` and ``bench.md``), ``onnxruntime`` (always there: the
reference). Each
candidate loads every network, then runs it once on a fixed input of 32^3 voxels next to
onnxruntime CPU on the same file; a backend that is missing, fails to load or disagrees is skipped
and the reason recorded, so a fallback is never silent (the report's ``backend_choice``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from kitsrt.engines import create_backend
from kitsrt.engines.base import Backend
from kitsrt.errors import BackendUnavailable, KitsrtError

AUTO_ORDER = ("tensorrt", "onnxruntime-cuda", "openvino", "onnxruntime")
PARITY_EDGE = 32  # voxels per spatial axis of the parity input
FP32_TOLERANCE = 1e-3  # max |logit difference| relative to the largest |logit|, at FP32
MIN_AGREEMENT = 0.99  # argmax agreement at a reduced runtime precision (bf16)

log = logging.getLogger("kitsrt")


def parity_input(backend: Backend) -> dict[str, np.ndarray]:
    """A fixed input for each of the network's inputs: dynamic axes 1 (batch, channels) or 32."""
    feed = {}
    for n, info in enumerate(backend.inputs()):
        shape = [d if isinstance(d, int) else (1 if a < 2 else PARITY_EDGE) for a, d in enumerate(info.shape)]
        rng = np.random.default_rng(n)
        feed[info.name] = rng.uniform(-1, 1, shape).astype(info.dtype)
    return feed


def parity_problem(candidate: Backend, reference: Backend, runtime_precision: str) -> str | None:
    """Why ``candidate`` does not match ``reference`` (onnxruntime CPU) on the parity input; None if it does."""
    feed = parity_input(reference)
    want = reference.infer(feed)
    got = candidate.infer(feed)
    for name, expected in want.items():
        actual = got[name]
        if actual.shape != expected.shape:
            return f"output {name} is {list(actual.shape)}, onnxruntime gives {list(expected.shape)}"
        if runtime_precision == "fp32":
            worst = float(np.abs(actual - expected).max()) / max(1.0, float(np.abs(expected).max()))
            if worst > FP32_TOLERANCE:
                return f"output {name} differs from onnxruntime by {worst:.2g} (relative; tolerance {FP32_TOLERANCE})"
        else:
            agreement = float((actual.argmax(1) == expected.argmax(1)).mean())
            if agreement < MIN_AGREEMENT:
                return f"output {name} argmax agrees with onnxruntime on {agreement:.4f} of voxels (< {MIN_AGREEMENT})"
    return None


def _load_all(name: str, files: dict[str, Path], threads: int, runtime_precision: str) -> dict[str, Backend]:
    loaded: dict[str, Backend] = {}
    try:
        for role, path in files.items():
            loaded[role] = create_backend(name, str(path), threads, runtime_precision).load()
    except Exception:
        for backend in loaded.values():
            backend.close()
        raise
    return loaded


def load_auto(files: dict[str, Path], threads: int = 0, runtime_precision: str = "fp32",
              order: tuple[str, ...] = AUTO_ORDER) -> tuple[str, dict[str, Backend], list[dict]]:
    """(chosen backend name, its loaded backends per role, one record per candidate tried)."""
    tried: list[dict] = []
    for name in order:
        try:
            backends = _load_all(name, files, threads, runtime_precision)
        except KitsrtError as exc:
            tried.append({"backend": name, "status": "skipped", "reason": str(exc)})
            continue
        problem = None
        if name != "onnxruntime":
            for role, path in files.items():
                with create_backend("onnxruntime", str(path), threads) as reference:
                    problem = parity_problem(backends[role], reference, runtime_precision)
                if problem:
                    problem = f"{role} network: {problem}"
                    break
        if problem is None:
            tried.append({"backend": name, "status": "chosen", "reason": "parity with onnxruntime CPU"
                          if name != "onnxruntime" else "the reference backend"})
            if any(t["status"] == "skipped" and t["backend"] == "openvino" for t in tried):
                log.warning("--backend auto fell back to %s: %s", name,
                            "; ".join(f"{t['backend']}: {t['reason']}" for t in tried if t["status"] == "skipped"))
            return name, backends, tried
        for backend in backends.values():
            backend.close()
        tried.append({"backend": name, "status": "skipped", "reason": f"parity check failed: {problem}"})
    raise BackendUnavailable("--backend auto: no backend passed its parity check: "
                      + "; ".join(f"{t['backend']}: {t['reason']}" for t in tried))
