"""Incoming instances on disk, one folder per series, until the series' result has been sent.

A series is complete when no instance of it has arrived for a quiet period. Limits (instances and
bytes per series, series held at once) are checked as instances arrive, so an oversized series is
refused while it is being sent, not after it filled the disk.
"""

from __future__ import annotations

import itertools
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path


class Refused(Exception):
    """An instance the node will not take; ``status`` is the DIMSE status to answer with."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status


OUT_OF_RESOURCES = 0xA700


@dataclass
class Collection:
    """The instances of one series received so far, in ``folder``."""

    series_uid: str
    folder: Path
    calling_ae: str
    instances: int = 0
    size_bytes: int = 0
    last_arrival_s: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class SpoolLimits:
    max_instances: int = 2000  # per series
    max_bytes: int = 2 << 30  # per series
    max_series: int = 8  # held at once: collecting, queued or running


class SeriesSpool:
    """Thread-safe: C-STORE handlers ``add``, the node's monitor ``take_quiet``, its worker ``discard``."""

    def __init__(self, root: Path, limits: SpoolLimits):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.limits = limits
        self._collecting: dict[str, Collection] = {}
        self._held = 0
        self._refused: dict[str, float] = {}  # series UID -> last refused arrival (monotonic s)
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()

    def add(self, series_uid: str, sop_uid: str, data: bytes, calling_ae: str) -> Collection:
        """Store one encoded instance (DICOM file bytes); raises Refused when a limit is reached."""
        with self._lock:
            if series_uid in self._refused:
                self._refused[series_uid] = time.monotonic()
                raise Refused(OUT_OF_RESOURCES, "series already refused as too large")
            collection = self._collecting.get(series_uid)
            if collection is None:
                if self._held >= self.limits.max_series:
                    raise Refused(OUT_OF_RESOURCES, f"node busy: {self._held} series held "
                                  f"(limit {self.limits.max_series}); send again later")
                folder = self.root / f"series-{next(self._numbers):06d}"
                folder.mkdir()
                collection = self._collecting[series_uid] = Collection(series_uid, folder, calling_ae)
                self._held += 1
            if (collection.instances + 1 > self.limits.max_instances
                    or collection.size_bytes + len(data) > self.limits.max_bytes):
                self._drop_locked(collection)
                self._refused[series_uid] = time.monotonic()
                raise Refused(OUT_OF_RESOURCES, f"series too large: limits are {self.limits.max_instances} "
                              f"instances and {self.limits.max_bytes} bytes per series")
            path = collection.folder / f"{_safe(sop_uid)}.dcm"
            if not path.exists():  # an instance sent twice is stored once
                collection.instances += 1
                collection.size_bytes += len(data)
            _write_atomic(path, data)
            collection.last_arrival_s = time.monotonic()
            return collection

    def take_quiet(self, quiet_s: float) -> list[Collection]:
        """Hand over (and stop collecting) every series with no arrival for ``quiet_s`` seconds."""
        now = time.monotonic()
        with self._lock:
            done = [c for c in self._collecting.values() if now - c.last_arrival_s >= quiet_s]
            for collection in done:
                del self._collecting[collection.series_uid]
            self._refused = {uid: t for uid, t in self._refused.items() if now - t < quiet_s}
            return done

    def discard(self, collection: Collection) -> None:
        """Delete a handed-over series' instances (its result was sent, or it failed)."""
        with self._lock:
            self._held -= 1
            shutil.rmtree(collection.folder, ignore_errors=True)

    def abandon_collecting(self) -> list[Collection]:
        """Delete every series still being collected (shutdown); returns what was dropped."""
        with self._lock:
            dropped = list(self._collecting.values())
            for collection in dropped:
                self._drop_locked(collection)
            return dropped

    def _drop_locked(self, collection: Collection) -> None:
        self._collecting.pop(collection.series_uid, None)
        self._held -= 1
        shutil.rmtree(collection.folder, ignore_errors=True)


def _safe(uid: str) -> str:
    return "".join(ch for ch in uid if ch.isdigit() or ch == ".")[:64] or "instance"


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_bytes(data)
    os.replace(tmp, path)
