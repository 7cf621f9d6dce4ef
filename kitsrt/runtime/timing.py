"""Per-stage wall-clock timings of one run (one object per scan: no shared state), and its time limit.

With ``limit_s``, every stage checks the clock when it starts and when it ends and raises
``ResourceLimitError`` once the run is past its limit: a cooperative stop between stages, so no
thread is killed and nothing is left half-written.
"""

from __future__ import annotations

import time
from contextlib import contextmanager

from kitsrt.errors import ResourceLimitError

STAGES = ("read", "coarse_preprocess", "coarse_net", "voi", "fine_preprocess", "fine_net", "preprocess", "kidney_net",
          "tumor_net", "network", "postprocess", "measure", "write")
NETWORK_STAGES = ("coarse_net", "fine_net", "kidney_net", "tumor_net", "network")  # time inside the networks


class Timings:
    def __init__(self, limit_s: float | None = None, where: str = "scan"):
        self.seconds: dict[str, float] = {}
        self.limit_s, self.where = limit_s, where
        self.deadline = None if limit_s is None else time.monotonic() + limit_s

    def check_deadline(self, stage: str) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise ResourceLimitError(f"{self.where}: stopped at stage {stage}: past the time limit of "
                                     f"{self.limit_s:g} s per case (--time-limit-s)")

    @contextmanager
    def timer(self, stage: str):  # noqa: D401 - context manager
        self.check_deadline(stage)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start
        self.check_deadline(stage)

    def as_dict(self) -> dict[str, float]:
        """Seconds per stage: the cascade's stages in their order, then any other kind's stages."""
        order = [s for s in STAGES if s in self.seconds] + [s for s in self.seconds if s not in STAGES]
        return {stage: round(self.seconds[stage], 4) for stage in order}
