"""Checked construction of a DICOM node from command-line values, and starting it."""

from __future__ import annotations

import re
from pathlib import Path

from kitsrt.errors import BackendUnavailable, InputError
from kitsrt.serve.forward import Destination, RetryPolicy
from kitsrt.serve.node import DicomNode, NodeConfig
from kitsrt.runtime.batch import CaseLimits
from kitsrt.serve.spool import SpoolLimits

_AE_TITLE = re.compile(r"^[ -~]{1,16}$")  # 1-16 printable ASCII characters


def _ae_title(text: str, what: str) -> str:
    text = text.strip()
    if not _AE_TITLE.match(text) or "\\" in text:
        raise InputError(f"{what} {text!r}: an AE title is 1 to 16 printable ASCII characters")
    return text


def node_config(ae_title: str, host: str, port: int, forward: str | None, out: Path | None, quiet_s: float,
                allow: str | None, max_instances: int, max_series: int, forward_attempts: int,
                forward_backoff_s: float, spool: Path | None, time_limit_s: float | None = None,
                memory_budget_gb: float | None = None) -> NodeConfig:
    """A NodeConfig from command-line values; InputError naming the option for a bad one."""
    if not 0 < port < 65536:
        raise InputError(f"--port {port}: expected 1 to 65535")
    if out is not None and not out.is_dir():
        raise InputError(f"--out {out}: folder does not exist")
    if spool is not None and spool.exists() and not spool.is_dir():
        raise InputError(f"--spool {spool}: exists and is not a folder")
    for name, value in (("--quiet-s", quiet_s), ("--max-instances", max_instances), ("--max-series", max_series),
                        ("--forward-attempts", forward_attempts), ("--forward-backoff-s", forward_backoff_s)):
        if value <= 0:
            raise InputError(f"{name} {value}: expected a positive number")
    callers = tuple(_ae_title(a, "--allow") for a in allow.split(",")) if allow else ()
    return NodeConfig(ae_title=_ae_title(ae_title, "--ae-title"), host=host, port=port,
                      forward=Destination.parse(forward) if forward else None, out=out, spool=spool,
                      quiet_s=quiet_s, allowed_callers=callers,
                      limits=SpoolLimits(max_instances=max_instances, max_series=max_series),
                      retry=RetryPolicy(attempts=forward_attempts, first_delay_s=forward_backoff_s),
                      case_limits=CaseLimits(time_limit_s, None if memory_budget_gb is None
                                             else int(memory_budget_gb * 2**30)))


def start_node(config: NodeConfig, model: Path | None = None, backend: str = "onnxruntime",
               threads: int = 0) -> DicomNode:
    """Load the models once and start listening; InputError when the address cannot be bound."""
    try:
        import highdicom  # noqa: F401
        import pynetdicom  # noqa: F401
    except ImportError:
        raise BackendUnavailable("kitsrt serve dicom needs pynetdicom and highdicom: "
                                 "pip install 'kitsrt[dicom]'") from None
    from kitsrt.runtime.dicom_output import seg_algorithm
    from kitsrt.runtime.segmenter import Segmenter

    segmenter = Segmenter.load(model, backend=backend, threads=threads)
    node = DicomNode(config, segmenter, seg_algorithm(segmenter.package))
    try:
        node.start()
    except OSError as exc:
        segmenter.close()
        raise InputError(f"--host {config.host} --port {config.port}: cannot listen there ({exc.strerror or exc}); "
                         "choose a free port") from None
    return node
