"""What every pipeline kind is: a spec type and one ``run`` function returning a ``KindResult``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class KindResult:
    """One scan's outcome: ``labels`` (k, j, i) uint8 on the scan's exact grid (0 background,
    1 kidney, 2 tumor), ``regions`` (one dict per VOI / kidney for the report: side, volumes in mL,
    tumor count, box in mm) and ``extra`` (kind-specific facts, e.g. the VOI boxes)."""

    labels: np.ndarray
    regions: list[dict]
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Kind:
    """A pipeline kind: its spec model and ``run(scan, spec, backends, timings) -> KindResult``,
    where ``backends`` maps each role of ``spec.networks()`` to a loaded backend."""

    spec_type: type
    run: Callable
