"""`kitsrt serve dicom` refuses bad options with a one-line error and exit code 2, before listening."""

from __future__ import annotations

import socket

import pytest
from typer.testing import CliRunner

pytest.importorskip("pynetdicom", reason="pynetdicom not installed (pip install -e '.[dicom]')")

from kitsrt.cli import app  # noqa: E402


@pytest.mark.parametrize("args, message", [
    (["--forward", "ORTHANC:4242"], "expected AE@host:port"),
    (["--forward", "ORTHANC@127.0.0.1:99999"], "expected AE@host:port"),
    (["--ae-title", "A_TITLE_LONGER_THAN_16"], "1 to 16 printable ASCII"),
    (["--allow", "SCANNER,"], "1 to 16 printable ASCII"),
    (["--out", "/no/such/folder"], "folder does not exist"),
    (["--quiet-s", "0"], "expected a positive number"),
    (["--port", "0"], "Invalid value for '--port'"),
])
def test_bad_option(args, message):
    result = CliRunner().invoke(app, ["serve", "dicom", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_port_in_use():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["serve", "dicom", "--port", str(port)])
    assert result.exit_code == 2, result.output
    assert "cannot listen there" in result.output
