"""One JSON object per line for every event of the DICOM node (stdout by default)."""

from __future__ import annotations

import datetime
import json
import sys
import threading
from typing import TextIO


class EventLog:
    """Thread-safe JSON-lines event log: ``log("stored", series=..., count=3)`` writes
    ``{"time": "...", "event": "stored", "series": "...", "count": 3}`` and flushes."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stdout
        self._lock = threading.Lock()

    def __call__(self, event: str, **fields) -> None:
        record = {"time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds"),
                  "event": event, **fields}
        line = json.dumps(record, default=str)
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()
