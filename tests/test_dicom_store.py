"""The DICOM node's C-STORE handler on its own (no network, no dcmtk): which instances it spools and
which it refuses, with a DIMSE failure status and a log line."""

from __future__ import annotations

import copy
import io
import json
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("pynetdicom", reason="pynetdicom not installed (pip install -e '.[dicom]')")
import pydicom  # noqa: E402

from kitsrt.io import Geometry, Scan  # noqa: E402
from kitsrt.io.dicom_series import write_ct_series  # noqa: E402
from kitsrt.serve.events import EventLog  # noqa: E402
from kitsrt.serve.node import CANNOT_UNDERSTAND, SUCCESS, DicomNode, NodeConfig  # noqa: E402


class _StoreEvent:
    """What pynetdicom hands ``_on_store``: the data set, its encoding and the calling AE."""

    def __init__(self, ds):
        self.dataset = ds
        self.assoc = SimpleNamespace(requestor=SimpleNamespace(ae_title="TESTER", address="127.0.0.1"))

    def encoded_dataset(self) -> bytes:
        buffer = io.BytesIO()
        self.dataset.save_as(buffer)
        return buffer.getvalue()


@pytest.fixture
def node(tmp_path):
    log = io.StringIO()
    node = DicomNode(NodeConfig(spool=tmp_path / "spool"), segmenter=None, algorithm=None, log=EventLog(log))
    node.log_text = log
    yield node
    node.stop()


@pytest.fixture(scope="module")
def slices(tmp_path_factory):
    geometry = Geometry((8, 8, 3), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    folder = write_ct_series(Scan.from_array(np.full((3, 8, 8), -1000, np.int16), geometry),
                             tmp_path_factory.mktemp("dicom") / "series")
    return [pydicom.dcmread(p) for p in sorted(folder.iterdir())]


def _status(result) -> int:
    return result if isinstance(result, int) else int(result.Status)


def _spooled(node) -> list[str]:
    return sorted(p.name for p in (node._root / "incoming").rglob("*.dcm"))


@pytest.mark.parametrize("uid", ["", "   ", "1.2.abc", "1..2", "1." + "2" * 70])
def test_instances_without_a_usable_sop_instance_uid_are_refused_not_spooled_under_one_name(node, slices, uid):
    """Two such instances used to be stored under one file name, the second silently replacing the first."""
    for ds in slices[:2]:
        ds = copy.deepcopy(ds)
        ds.SOPInstanceUID = uid
        assert _status(node._on_store(_StoreEvent(ds))) == CANNOT_UNDERSTAND
    refused = [json.loads(line) for line in node.log_text.getvalue().splitlines()]
    assert [r["event"] for r in refused] == ["instance_refused", "instance_refused"]
    assert all("SOPInstanceUID" in r["reason"] and r["status"] == "0xC000" for r in refused)
    assert _spooled(node) == []


def test_instances_with_their_own_uids_are_each_spooled(node, slices):
    for ds in slices:
        assert _status(node._on_store(_StoreEvent(ds))) == SUCCESS
    assert _spooled(node) == sorted(f"{ds.SOPInstanceUID}.dcm" for ds in slices)
