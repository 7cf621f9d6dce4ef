"""The one interface every backend implements (after Polygraphy's runners).

Life cycle: construct (cheap) -> ``load()`` once (sessions, engines, device buffers) ->
``infer(feed) -> outputs`` any number of times -> ``close()``; also usable as a context manager.
The base class checks inputs against the model's metadata, so subclasses implement only the
``_load`` / ``_infer`` / ``_close`` parts. The cascade never knows which backend it drives.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from kitsrt.errors import KitsrtError


@dataclass(frozen=True)
class TensorInfo:
    """Name, dtype and shape of a model input or output; None (or a string) marks a dynamic axis."""

    name: str
    dtype: np.dtype
    shape: tuple


class Backend(ABC):
    """Runs one network. ``infer`` is safe to call from several threads at once."""

    name = "backend"

    def __init__(self, model_path: str):
        self.model_path = str(model_path)
        self._loaded = False
        self._lock = threading.Lock()  # load and close
        self._calls = threading.Condition()  # guards ``_running`` and ``_open``
        self._running = 0  # ``infer`` calls in flight
        self._open = False  # whether ``infer`` may start: loaded and not closing

    # -- life cycle -------------------------------------------------------------------------------
    def load(self) -> Backend:
        with self._lock:
            if not self._loaded:
                self._load()
                self._loaded = True
                with self._calls:
                    self._open = True
        return self

    def close(self) -> None:
        """Stop new ``infer`` calls, wait for those in flight to finish, then free the backend."""
        with self._lock:
            if self._loaded:
                with self._calls:
                    self._open = False
                    self._calls.wait_for(lambda: self._running == 0)
                self._close()
                self._loaded = False

    def __enter__(self) -> Backend:
        return self.load()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- inference --------------------------------------------------------------------------------
    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the network on ``feed`` (input name -> array); a ``close`` waits until this call returns."""
        with self._calls:
            if not self._open:
                raise KitsrtError(f"{self.name} backend for {self.model_path}: not loaded (never loaded, or "
                                  "closed); call load() before infer()")
            self._running += 1
        try:
            return self._checked_infer(feed)
        finally:
            with self._calls:
                self._running -= 1
                self._calls.notify_all()

    def _checked_infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        expected = {t.name: t for t in self.inputs()}
        if set(feed) != set(expected):
            raise KitsrtError(f"{self.model_path}: inputs {sorted(feed)} given, model takes {sorted(expected)}")
        for name, array in feed.items():
            info = expected[name]
            if array.dtype != info.dtype or array.ndim != len(info.shape):
                raise KitsrtError(f"{self.model_path}: input {name} is {array.dtype}{list(array.shape)}, "
                                  f"model takes {np.dtype(info.dtype)} with {len(info.shape)} dims")
        return self._infer(feed)

    # -- to implement -----------------------------------------------------------------------------
    @abstractmethod
    def _load(self) -> None: ...

    @abstractmethod
    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def _close(self) -> None:
        return None

    def release_memory(self) -> None:
        """Give scratch memory (arenas, intermediate buffers) back between scans; the next ``infer``
        allocates it again. A no-op where the backend keeps none."""
        return None

    @abstractmethod
    def inputs(self) -> list[TensorInfo]: ...

    @abstractmethod
    def outputs(self) -> list[TensorInfo]: ...

    def describe(self) -> str:
        return self.name

    def loaded_file(self) -> str:
        """The file this backend's weights come from (its SHA-256 goes into the report)."""
        return self.model_path
