"""Send a result to a DICOM destination with C-STORE, retrying with exponential backoff."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

from kitsrt.errors import InputError

_DESTINATION = re.compile(r"^(?P<ae>[^@]{1,16})@(?P<host>[^:@]+):(?P<port>\d{1,5})$")


@dataclass(frozen=True)
class Destination:
    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Destination:
        """``AE@host:port``, e.g. ``ORTHANC@127.0.0.1:4242``."""
        match = _DESTINATION.match(text.strip())
        if not match or not 0 < int(match["port"]) < 65536:
            raise InputError(f"--forward {text!r}: expected AE@host:port, e.g. ORTHANC@127.0.0.1:4242")
        return cls(match["ae"], match["host"], int(match["port"]))

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


class ForwardError(Exception):
    """The destination refused the result or could not be reached."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    first_delay_s: float = 1.0  # doubled after every failed attempt

    def delays_s(self) -> list[float]:
        return [self.first_delay_s * 2 ** n for n in range(self.attempts - 1)]


def c_store(dataset, destination: Destination, calling_ae: str, timeout_s: float = 30.0) -> None:
    """Send one dataset; raises ForwardError unless the destination answers Success (or a warning)."""
    from pynetdicom import AE

    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    ae.connection_timeout = timeout_s
    ae.add_requested_context(dataset.SOPClassUID, [dataset.file_meta.TransferSyntaxUID])
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title)
    if not assoc.is_established:
        raise ForwardError(f"{destination}: association refused or destination unreachable")
    try:
        status = assoc.send_c_store(dataset)
    finally:
        if assoc.is_established:
            assoc.release()
    code = getattr(status, "Status", None)
    if code is None:
        raise ForwardError(f"{destination}: C-STORE not answered: the destination aborted the association "
                           "(refused this sender?) or timed out")
    if code != 0x0000 and not 0xB000 <= code <= 0xBFFF:
        raise ForwardError(f"{destination}: C-STORE failed with status 0x{code:04X}")


def send_with_retry(send, policy: RetryPolicy, stop: threading.Event, on_retry) -> None:
    """Call ``send()`` until it succeeds; after each ForwardError wait the next backoff delay
    (``on_retry(attempt, error, delay_s)`` is told). Raises the last ForwardError when the attempts
    run out or ``stop`` is set while waiting."""
    for attempt, delay_s in enumerate([*policy.delays_s(), None], start=1):
        try:
            send()
            return
        except ForwardError as error:
            if delay_s is None:
                raise
            on_retry(attempt, error, delay_s)
            if stop.wait(delay_s):
                raise ForwardError(f"{error}; gave up at shutdown") from None
