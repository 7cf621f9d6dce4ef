"""Per-stage wall-clock timings of one run (one object per scan: no shared state)."""

from __future__ import annotations

import time
from contextlib import contextmanager

STAGES = ("read", "coarse_preprocess", "coarse_net", "voi", "fine_preprocess", "fine_net", "postprocess", "write")


class Timings:
    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def timer(self, stage: str):  # noqa: D401 - context manager
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start

    def as_dict(self) -> dict[str, float]:
        return {stage: round(self.seconds.get(stage, 0.0), 4) for stage in STAGES if stage in self.seconds}
