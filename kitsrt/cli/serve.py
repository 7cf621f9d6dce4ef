"""`kitsrt serve dicom`: the DICOM node."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from kitsrt.cli.app import serve_app, user_errors


@serve_app.command("dicom")
@user_errors
def serve_dicom(
    ae_title: str = typer.Option("KITSRT", "--ae-title", help="This node's AE title."),
    port: int = typer.Option(11112, "--port", min=1, max=65535, help="TCP port to listen on."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (default: loopback only)."),
    forward: Optional[str] = typer.Option(None, "--forward", help="C-STORE each SEG to AE@host:port."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write each SEG to this folder (and keep undelivered ones here)."),
    quiet_s: float = typer.Option(5.0, "--quiet-s", min=0.0, max=86400.0, help="A series is complete after this many seconds without a new instance."),
    allow: Optional[str] = typer.Option(None, "--allow", help="Comma-separated calling AE titles allowed (default: any)."),
    max_instances: int = typer.Option(2000, "--max-instances", min=1, help="Refuse a series with more instances than this."),
    max_series: int = typer.Option(8, "--max-series", min=1, help="Series held at once (arriving, queued or running)."),
    forward_attempts: int = typer.Option(5, "--forward-attempts", min=1, max=100, help="C-STORE attempts before a SEG is kept as a file."),
    forward_backoff_s: float = typer.Option(1.0, "--forward-backoff-s", min=0.0, max=3600.0, help="First retry delay; doubled each time."),
    spool: Optional[Path] = typer.Option(None, "--spool", help="Folder for incoming instances (default: a temporary one)."),
    model: Optional[Path] = typer.Option(None, "--model", help="Model package folder (default: the bundled demo)."),
    backend: str = typer.Option("onnxruntime", "--backend", help="Inference backend."),
    threads: int = typer.Option(0, "--threads", min=0, max=256, help="Threads per network (0: the backend's default)."),
    time_limit_s: Optional[float] = typer.Option(None, "--time-limit-s", min=1.0, max=86400.0,
                                                 help="Fail a series past this many seconds; the node keeps serving."),
    memory_budget_gb: Optional[float] = typer.Option(None, "--memory-budget-gb", min=0.1, max=4096.0,
                                                     help="Refuse a series estimated (from its headers) to need more "
                                                          "memory than this; the node keeps serving."),
):
    """Receive CT series by C-STORE, segment each complete series, send back a DICOM SEG; one JSON
    line per event on stdout. Stops cleanly on SIGTERM or Ctrl-C.

    Example: kitsrt serve dicom --ae-title KITSRT --port 11112 --forward ORTHANC@127.0.0.1:4242
    """
    import signal
    import threading

    from kitsrt.serve.launch import node_config, start_node

    config = node_config(ae_title=ae_title, host=host, port=port, forward=forward, out=out, quiet_s=quiet_s,
                         allow=allow, max_instances=max_instances, max_series=max_series,
                         forward_attempts=forward_attempts, forward_backoff_s=forward_backoff_s, spool=spool,
                         time_limit_s=time_limit_s, memory_budget_gb=memory_budget_gb)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    node = start_node(config, model, backend, threads)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        node.stop()
        node.segmenter.close()
