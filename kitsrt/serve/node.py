"""The DICOM node: a C-STORE / C-ECHO SCP that segments each complete CT series and sends back a SEG.

Threads: pynetdicom's server threads answer associations and spool instances (``SeriesSpool``);
a monitor hands each series that has been quiet for ``quiet_s`` to a bounded queue; one worker
segments the queued series one at a time with the models loaded once, and sends or writes the SEG.
Incoming instances are deleted once their result has been sent (or kept as a file), or when the
series fails. ``stop()`` stops listening, lets the running case finish (outputs are written whole
or not at all), abandons the rest, and says so in the log.
"""

from __future__ import annotations

import queue
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from kitsrt.errors import KitsrtError, ResourceLimitError
from kitsrt.runtime.batch import CASE_BASE_BYTES, CASE_BYTES_PER_VOXEL, CaseLimits
from kitsrt.serve.events import EventLog
from kitsrt.serve.forward import Destination, ForwardError, RetryPolicy, c_store, send_with_retry
from kitsrt.serve.spool import Collection, Refused, SeriesSpool, SpoolLimits

SUCCESS = 0x0000
CANNOT_UNDERSTAND = 0xC000  # DIMSE C-STORE failure range 0xCxxx: "cannot understand"
NOT_AN_IMAGE = 0xC001
NOT_CT = 0xC002


@dataclass(frozen=True)
class NodeConfig:
    """How the node listens, what it accepts and where results go."""

    ae_title: str = "KITSRT"
    host: str = "127.0.0.1"  # loopback unless the user says otherwise
    port: int = 11112
    forward: Destination | None = None  # C-STORE the SEG here ...
    out: Path | None = None  # ... and/or write it here (also where undeliverable SEGs are kept)
    spool: Path | None = None  # incoming instances (default: a new temporary folder)
    quiet_s: float = 5.0  # a series is complete when nothing arrived for this long
    allowed_callers: tuple[str, ...] = ()  # calling AE titles allowed; empty: any
    limits: SpoolLimits = field(default_factory=SpoolLimits)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    case_limits: CaseLimits = field(default_factory=CaseLimits)  # per series: seconds, estimated memory


def check_series_memory(collection: Collection, budget_bytes: int | None) -> None:
    """Refuse a spooled series whose estimated peak memory (instances x Rows x Columns voxels, the same
    estimate as the batch's) exceeds ``budget_bytes``: ResourceLimitError, before any pixel is read."""
    if budget_bytes is None:
        return
    from pydicom import dcmread

    first = next((p for p in sorted(collection.folder.iterdir()) if p.is_file()), None)
    if first is None:
        return
    header = dcmread(first, stop_before_pixels=True)
    voxels = collection.instances * int(header.Rows) * int(header.Columns)
    needed = voxels * CASE_BYTES_PER_VOXEL + CASE_BASE_BYTES
    if needed > budget_bytes:
        raise ResourceLimitError(f"series {collection.series_uid}: needs about {needed / 2**30:.2f} GiB for "
                                 f"{voxels} voxels, more than the memory budget of {budget_bytes / 2**30:.2f} GiB "
                                 "(--memory-budget-gb); not segmented")


def instance_problem(ds) -> tuple[int, str] | None:
    """(DIMSE status, reason) when an incoming instance is not a slice of a CT volume, else None."""
    if "PixelData" not in ds or "ImagePositionPatient" not in ds or "ImageOrientationPatient" not in ds:
        return NOT_AN_IMAGE, "not a cross-sectional image (no pixel data or plane position)"
    if str(getattr(ds, "Modality", "")).upper() != "CT":
        return NOT_CT, f"modality {getattr(ds, 'Modality', 'missing')}: kitsrt segments CT only"
    for keyword in ("SeriesInstanceUID", "SOPInstanceUID"):
        problem = uid_problem(str(ds.get(keyword, "") or ""))
        if problem:
            return CANNOT_UNDERSTAND, f"{keyword} {problem}"
    return None


def uid_problem(uid: str) -> str | None:
    """Why ``uid`` cannot name an instance or series (empty, or not a DICOM UID: digits and dots, at
    most 64 characters), else None. The spool files instances by UID: two instances with an empty or
    garbled UID would share a name and one would silently replace the other."""
    if not uid.strip():
        return "is missing or empty"
    if len(uid) > 64 or uid.strip(".") != uid or ".." in uid or not all(ch.isdigit() or ch == "." for ch in uid):
        return f"{uid[:70]!r} is not a DICOM UID (digits and dots, at most 64 characters)"
    return None


def _status(code: int, reason: str):
    from pydicom.dataset import Dataset

    status = Dataset()
    status.Status = code
    status.ErrorComment = reason[:64]
    return status


class DicomNode:
    def __init__(self, config: NodeConfig, segmenter, algorithm, log: EventLog | None = None):
        """``segmenter``: a loaded ``kitsrt.Segmenter``; ``algorithm``: its ``SegAlgorithm``."""
        self.config = config
        self.segmenter = segmenter
        self.algorithm = algorithm
        self.log = log or EventLog()
        self._stop = threading.Event()
        self._queue: queue.Queue[Collection] = queue.Queue(maxsize=config.limits.max_series)
        self._own_spool = config.spool is None
        self._root = Path(config.spool or tempfile.mkdtemp(prefix="kitsrt-spool-"))
        self.spool = SeriesSpool(self._root / "incoming", config.limits)
        self._threads: list[threading.Thread] = []
        self._server = None

    # life cycle -------------------------------------------------------------------------------
    def start(self) -> None:
        from pynetdicom import AE, evt
        from pynetdicom.presentation import AllStoragePresentationContexts, VerificationPresentationContexts

        ae = AE(ae_title=self.config.ae_title)
        ae.supported_contexts = AllStoragePresentationContexts + VerificationPresentationContexts
        ae.require_calling_aet = list(self.config.allowed_callers)
        handlers = [(evt.EVT_C_STORE, self._on_store), (evt.EVT_C_ECHO, self._on_echo),
                    (evt.EVT_REJECTED, self._on_rejected)]
        self._server = ae.start_server((self.config.host, self.config.port), block=False, evt_handlers=handlers)
        for target in (self._monitor, self._work):
            thread = threading.Thread(target=target, name=f"kitsrt-{target.__name__.strip('_')}", daemon=True)
            thread.start()
            self._threads.append(thread)
        self.log("listening", ae_title=self.config.ae_title, host=self.config.host, port=self.config.port,
                 forward=str(self.config.forward) if self.config.forward else None,
                 out=str(self.config.out) if self.config.out else None, quiet_s=self.config.quiet_s,
                 allowed_callers=list(self.config.allowed_callers) or None, spool=str(self._root))

    def stop(self) -> None:
        """Stop listening, finish the running case, abandon queued and incomplete series."""
        if self._server is not None:
            self._server.shutdown()
        self._stop.set()
        for thread in self._threads:
            thread.join()
        for collection in self.spool.abandon_collecting():
            self.log("abandoned", series=collection.series_uid, instances=collection.instances,
                     reason="shutdown while the series was still arriving")
        for collection in self._drain_queue():
            self.log("abandoned", series=collection.series_uid, instances=collection.instances,
                     reason="shutdown before the series was processed")
            self.spool.discard(collection)
        shutil.rmtree(self._root / "incoming", ignore_errors=True)
        if self._own_spool and not any(self._root.rglob("*")):
            shutil.rmtree(self._root, ignore_errors=True)
        self.log("stopped")

    def _drain_queue(self) -> list[Collection]:
        drained = []
        while not self._queue.empty():
            drained.append(self._queue.get_nowait())
        return drained

    # network events (pynetdicom threads) -----------------------------------------------------
    def _on_echo(self, event) -> int:
        self.log("echo", calling_ae=event.assoc.requestor.ae_title, address=event.assoc.requestor.address)
        return SUCCESS

    def _on_rejected(self, event) -> None:
        self.log("association_rejected", calling_ae=event.assoc.requestor.ae_title,
                 address=event.assoc.requestor.address,
                 reason="calling AE title not allowed" if self.config.allowed_callers else "rejected")

    def _on_store(self, event):
        calling_ae = event.assoc.requestor.ae_title
        try:
            ds = event.dataset
            problem = instance_problem(ds)
        except Exception as exc:  # a data set pydicom cannot decode
            problem = CANNOT_UNDERSTAND, f"cannot decode the data set: {exc}"[:200]
            ds = None
        series = str(getattr(ds, "SeriesInstanceUID", "")) or None
        if problem is None:
            try:
                collection = self.spool.add(series, str(ds.SOPInstanceUID), event.encoded_dataset(), calling_ae)
            except Refused as refusal:
                problem = refusal.status, str(refusal)
            else:
                if collection.instances == 1:
                    self.log("series_receiving", series=series, calling_ae=calling_ae)
                return SUCCESS
        code, reason = problem
        self.log("instance_refused", series=series, sop_instance=str(getattr(ds, "SOPInstanceUID", "")) or None,
                 calling_ae=calling_ae, status=f"0x{code:04X}", reason=reason)
        return _status(code, reason)

    # series processing (monitor and worker threads) ------------------------------------------
    def _monitor(self) -> None:
        while not self._stop.wait(0.1):
            for collection in self.spool.take_quiet(self.config.quiet_s):
                self.log("series_complete", series=collection.series_uid, instances=collection.instances,
                         calling_ae=collection.calling_ae)
                self._queue.put(collection)

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                collection = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            try:
                self._process(collection)
            finally:
                self.spool.discard(collection)

    def _process(self, collection: Collection) -> None:
        from kitsrt.runtime.dicom_output import seg_of_result

        series = collection.series_uid
        start = time.perf_counter()
        try:
            check_series_memory(collection, self.config.case_limits.memory_budget_bytes)
            result = self.segmenter.segment(collection.folder, self.config.case_limits.time_limit_s)
            seg = seg_of_result(result, collection.folder, self.algorithm)
        except KitsrtError as exc:
            self.log("series_failed", series=series, error=str(exc))
            return
        except Exception as exc:  # a bug: keep serving, but say so
            self.log("internal_error", series=series, error=f"{type(exc).__name__}: {exc}")
            return
        self.log("segmented", series=series, seconds=round(time.perf_counter() - start, 3),
                 kidney_found=result.kidney_found, frames=int(seg.NumberOfFrames),
                 seg_series=str(seg.SeriesInstanceUID), seg_instance=str(seg.SOPInstanceUID))
        self._deliver(seg, series)

    def _deliver(self, seg, series: str) -> None:
        from kitsrt.io.dicom_seg import write_seg

        name = f"{series}.seg.dcm"
        if self.config.out is not None:
            self.log("written", series=series, path=str(write_seg(seg, self.config.out / name, overwrite=True)))
        destination = self.config.forward
        if destination is None:
            return
        try:
            send_with_retry(lambda: c_store(seg, destination, self.config.ae_title), self.config.retry, self._stop,
                            lambda attempt, error, delay_s: self.log("forward_retry", series=series, attempt=attempt,
                                                                     error=str(error), retry_in_s=delay_s))
        except ForwardError as error:
            keep = self.config.out or self._root / "undelivered"
            keep.mkdir(parents=True, exist_ok=True)
            path = write_seg(seg, keep / name, overwrite=True)
            self.log("forward_failed", series=series, destination=str(destination), error=str(error),
                     kept=str(path))
            return
        self.log("forwarded", series=series, destination=str(destination), seg_instance=str(seg.SOPInstanceUID))
