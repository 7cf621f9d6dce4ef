"""Real DICOM software for the node tests and the soak benchmark: an Orthanc PACS with a generated
config on free loopback ports, dcmtk's storescu/echoscu, and `kitsrt serve dicom` as a process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def system_tool(name: str) -> str | None:
    """``name`` from PATH outside this Python environment: pynetdicom installs its own ``storescu`` and
    ``echoscu`` into the venv's bin, which would shadow dcmtk's once the venv is activated."""
    venv_bin = Path(sys.prefix, "bin").resolve()
    folders = [f for f in os.environ.get("PATH", "").split(os.pathsep) if f and Path(f).resolve() != venv_bin]
    return shutil.which(name, path=os.pathsep.join(folders))


TOOLS = {name: system_tool(name) for name in ("storescu", "echoscu", "Orthanc")}
MISSING_TOOLS = [name for name, path in TOOLS.items() if path is None]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(predicate, timeout_s: float, what: str, poll_s: float = 0.1):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll_s)
    raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}")


class Orthanc:
    """An Orthanc process on free loopback ports that accepts C-STORE only from ``allowed`` (AE title,
    127.0.0.1). REST without authentication, from localhost only."""

    def __init__(self, folder: Path, allowed_ae: str = "KITSRT", ae_title: str = "ORTHANC"):
        self.ae_title, self.http_port, self.dicom_port = ae_title, free_port(), free_port()
        folder.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "kitsrt-test", "StorageDirectory": str(folder / "db"), "IndexDirectory": str(folder / "db"),
            "HttpPort": self.http_port, "DicomPort": self.dicom_port, "DicomAet": ae_title,
            "RemoteAccessAllowed": False, "AuthenticationEnabled": False, "HttpServerEnabled": True,
            "DicomServerEnabled": True, "DicomCheckCalledAet": True, "DicomAlwaysAllowStore": False,
            "DicomAlwaysAllowEcho": True, "DicomCheckModalityHost": True, "Plugins": [], "SaveJobs": False,
            "DicomModalities": {"kitsrt": {"AET": allowed_ae, "Host": "127.0.0.1", "Port": 11112,
                                           "AllowStore": True, "AllowEcho": True}},
        }
        (folder / "orthanc.json").write_text(json.dumps(config, indent=2))
        self.log_path = folder / "orthanc.log"
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen([TOOLS["Orthanc"], str(folder / "orthanc.json")], stdout=self._log,
                                        stderr=subprocess.STDOUT)
        wait_until(self._up, 30, "Orthanc's REST API")

    def _up(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"Orthanc exited: {self.log_path.read_text()[-2000:]}")
        try:
            return self.get("/system") is not None
        except OSError:
            return False

    def get(self, path: str):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=10) as response:
            body = response.read()
        return json.loads(body) if response.headers.get_content_type() == "application/json" else body

    def series_by_modality(self, modality: str) -> list[dict]:
        return [s for s in self.get("/series?expand") if s["MainDicomTags"].get("Modality") == modality]

    def instance_file(self, instance_id: str) -> bytes:
        return self.get(f"/instances/{instance_id}/file")

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


class Node:
    """`kitsrt serve dicom` as a child process; its JSON event lines are collected as they come."""

    def __init__(self, *args: str, port: int | None = None):
        self.port = port or free_port()
        env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kitsrt.cli", "serve", "dicom", "--port", str(self.port), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, encoding="utf-8", errors="replace", env=env)
        self.events: list[dict] = []
        self.stderr = ""
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        self.wait_for("listening", timeout_s=60)

    def _read(self) -> None:
        for line in self.process.stdout:
            self.events.append(json.loads(line))

    def _read_stderr(self) -> None:
        self.stderr = self.process.stderr.read()

    def find(self, event: str, **fields) -> list[dict]:
        return [e for e in list(self.events) if e["event"] == event
                and all(e.get(k) == v for k, v in fields.items())]

    def wait_for(self, event: str, timeout_s: float = 60, count: int = 1, **fields) -> list[dict]:
        def seen():
            if self.process.poll() is not None and not self.find(event, **fields):
                raise RuntimeError(f"node exited ({self.process.returncode}): {self.stderr[-2000:]}")
            found = self.find(event, **fields)
            return found if len(found) >= count else None

        return wait_until(seen, timeout_s, f"node event {event!r} {fields or ''}")

    def stop(self, timeout_s: float = 60) -> int:
        """SIGTERM, then wait; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout_s)


def storescu(folder: Path, port: int, calling_ae: str = "TESTER", called_ae: str = "KITSRT"):
    return subprocess.run([TOOLS["storescu"], "-aet", calling_ae, "-aec", called_ae, "+sd", "127.0.0.1", str(port),
                           str(folder)], capture_output=True, encoding="utf-8", errors="replace", timeout=120)


def echoscu(port: int, calling_ae: str = "TESTER", called_ae: str = "KITSRT"):
    return subprocess.run([TOOLS["echoscu"], "-aet", calling_ae, "-aec", called_ae, "127.0.0.1", str(port)],
                          capture_output=True, encoding="utf-8", errors="replace", timeout=60)
