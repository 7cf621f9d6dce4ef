"""`kitsrt serve dicom` against real DICOM software, loopback only: dcmtk's storescu/echoscu send a
phantom CT series, the node forwards its SEG to an Orthanc PACS started by the test, and the SEG is
fetched back through Orthanc's REST API. Bad input is answered with a DIMSE status or a log line,
and the node keeps serving."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pynetdicom", reason="pynetdicom not installed (pip install -e '.[dicom]')")
hd = pytest.importorskip("highdicom", reason="highdicom not installed (pip install -e '.[dicom]')")

import pydicom  # noqa: E402
from dicom_tools import MISSING_TOOLS, Node, Orthanc, echoscu, free_port, storescu  # noqa: E402

from kitsrt.io import read_scan  # noqa: E402
from kitsrt.io.dicom_seg import labels_from_seg  # noqa: E402
from kitsrt.io.dicom_series import write_ct_series  # noqa: E402
from kitsrt.phantom import procedural_label_map, synthesize_ct  # noqa: E402

pytestmark = pytest.mark.skipif(bool(MISSING_TOOLS), reason=f"{', '.join(MISSING_TOOLS)} not found: install "
                                "the Debian packages dcmtk and orthanc (.ci/run does)")


@pytest.fixture(scope="module")
def ct_series(tmp_path_factory):
    """A small phantom CT series (96x96x40 voxels, 4x4x6 mm) and the label map kitsrt makes of it."""
    from kitsrt.runtime.segmenter import Segmenter

    folder = write_ct_series(synthesize_ct(procedural_label_map((96, 96, 40), (4.0, 4.0, 6.0), seed=5), seed=5),
                             tmp_path_factory.mktemp("dicom") / "series")
    with Segmenter.load() as segmenter:
        result = segmenter.segment(folder)
    assert result.kidney_found
    return folder, result.labels


def _variant(series, folder, keep=lambda i, ds: True, change=lambda i, ds: None):
    """A copy of the series with new UIDs (one new series), some instances dropped or changed."""
    from pydicom.uid import generate_uid

    folder.mkdir()
    series_uid = generate_uid()
    for i, path in enumerate(sorted(series.iterdir())):
        ds = pydicom.dcmread(path)
        if not keep(i, ds):
            continue
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        change(i, ds)
        ds.save_as(folder / path.name)
    return folder, series_uid


@pytest.fixture(scope="module")
def pacs(tmp_path_factory):
    """Orthanc on free loopback ports, accepting C-STORE only from AE KITSRT at 127.0.0.1."""
    orthanc = Orthanc(tmp_path_factory.mktemp("orthanc"))
    yield orthanc
    orthanc.close()


def _source_uid(series) -> str:
    return str(pydicom.dcmread(next(series.iterdir()), stop_before_pixels=True).SeriesInstanceUID)


def _seg_sources(pacs) -> list[str]:
    """The source series UID each SEG stored in Orthanc references."""
    return [str(pydicom.dcmread(io.BytesIO(pacs.instance_file(i))).ReferencedSeriesSequence[0].SeriesInstanceUID)
            for series in pacs.series_by_modality("SEG") for i in series["Instances"]]


def test_series_in_seg_out_through_orthanc(ct_series, pacs):
    series, labels = ct_series
    node = None
    try:
        node = Node("--forward", f"{pacs.ae_title}@127.0.0.1:{pacs.dicom_port}", "--quiet-s", "1")
        assert echoscu(node.port).returncode == 0
        node.wait_for("echo", calling_ae="TESTER")
        sent = storescu(series, node.port)
        assert sent.returncode == 0, sent.stderr
        source_uid = _source_uid(series)
        node.wait_for("forwarded", timeout_s=120, series=source_uid)

        (seg_series,) = pacs.series_by_modality("SEG")
        (instance_id,) = seg_series["Instances"]
        seg = hd.seg.Segmentation.from_dataset(pydicom.dcmread(io.BytesIO(pacs.instance_file(instance_id))))
        assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source_uid
        assert np.array_equal(labels_from_seg(seg, read_scan(series).geometry), labels)
        spool = node.find("listening")[0]["spool"]
        assert not any((Path(spool) / "incoming").glob("*")), "incoming data kept after the SEG was sent"
        assert node.stop() == 0
        assert node.find("stopped")
    finally:
        if node is not None:
            node.stop()


def test_forward_refused_by_the_pacs_is_kept(tmp_path, ct_series, pacs):
    series, _ = _variant(ct_series[0], tmp_path / "series")
    out = tmp_path / "out"
    out.mkdir()
    # Orthanc accepts C-STORE from AE KITSRT only: a node calling itself STRANGER is refused
    node = Node("--ae-title", "STRANGER", "--forward", f"{pacs.ae_title}@127.0.0.1:{pacs.dicom_port}",
                "--quiet-s", "1", "--forward-attempts", "2", "--forward-backoff-s", "0.2", "--out", str(out))
    try:
        assert storescu(series, node.port, called_ae="STRANGER").returncode == 0
        source_uid = _source_uid(series)
        gave_up = node.wait_for("forward_failed", series=source_uid, timeout_s=120)[0]
        assert gave_up["destination"] == f"{pacs.ae_title}@127.0.0.1:{pacs.dicom_port}"
        assert len(node.find("forward_retry", series=source_uid)) == 1  # 2 attempts: one retry
        assert hd.seg.segread(gave_up["kept"]).ReferencedSeriesSequence[0].SeriesInstanceUID == source_uid
        assert source_uid not in _seg_sources(pacs)
    finally:
        assert node.stop() == 0


def test_bad_input_is_refused_and_the_node_keeps_serving(tmp_path, ct_series):
    series, _ = ct_series
    out = tmp_path / "out"
    out.mkdir()
    dead_port = free_port()  # nothing listens there: the forward destination is down
    node = Node("--allow", "TESTER", "--max-instances", "39", "--quiet-s", "1", "--out", str(out),
                "--forward", f"PACS@127.0.0.1:{dead_port}", "--forward-attempts", "2", "--forward-backoff-s", "0.2")
    try:
        assert echoscu(node.port, calling_ae="INTRUDER").returncode != 0
        node.wait_for("association_rejected", calling_ae="INTRUDER")

        mr, _ = _variant(series, tmp_path / "mr", change=lambda i, ds: setattr(ds, "Modality", "MR"))
        assert storescu(mr, node.port).returncode != 0  # storescu halts at the first refused instance
        assert "CT only" in node.wait_for("instance_refused", status="0xC002")[0]["reason"]

        def strip_pixels(i, ds):
            del ds.PixelData

        no_image, _ = _variant(series, tmp_path / "no-image", keep=lambda i, ds: i < 3, change=strip_pixels)
        assert storescu(no_image, node.port).returncode != 0
        assert "not a cross-sectional image" in node.wait_for("instance_refused", status="0xC001")[0]["reason"]

        assert storescu(series, node.port).returncode != 0  # 40 instances, limit 39
        too_large = node.wait_for("instance_refused", status="0xA700")
        assert "too large" in too_large[0]["reason"]

        gap, gap_uid = _variant(series, tmp_path / "gap", keep=lambda i, ds: i != 20)
        storescu(gap, node.port)
        failed = node.wait_for("series_failed", series=gap_uid, timeout_s=60)
        assert "missing slice" in failed[0]["error"]

        def tilt(i, ds):
            if i < 3:
                ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]

        mixed, mixed_uid = _variant(series, tmp_path / "mixed", keep=lambda i, ds: i < 39, change=tilt)
        storescu(mixed, node.port)
        failed = node.wait_for("series_failed", series=mixed_uid, timeout_s=60)
        assert "orientations" in failed[0]["error"]

        good, good_uid = _variant(series, tmp_path / "good", keep=lambda i, ds: i < 39)
        storescu(good, node.port)
        assert node.wait_for("forward_retry", series=good_uid, timeout_s=120)
        gave_up = node.wait_for("forward_failed", series=good_uid, timeout_s=60)[0]
        kept = hd.seg.segread(gave_up["kept"])  # the finished result is kept, not lost
        assert kept.ReferencedSeriesSequence[0].SeriesInstanceUID == good_uid

        assert echoscu(node.port).returncode == 0  # still serving
    finally:
        assert node.stop() == 0
    assert node.find("stopped")
    assert not [p for p in out.iterdir() if "partial" in p.name]


def test_sigterm_while_a_case_runs_leaves_no_partial_output(tmp_path, ct_series):
    series, _ = ct_series
    out = tmp_path / "out"
    out.mkdir()
    node = Node("--quiet-s", "0.5", "--out", str(out))
    try:
        storescu(series, node.port)
        node.wait_for("series_complete")
    finally:
        assert node.stop() == 0
    assert node.find("stopped")
    written = [p for p in out.iterdir()]
    assert all(p.name.endswith(".seg.dcm") for p in written), written
    for path in written:  # whatever was written is whole
        hd.seg.segread(path)
    assert len(written) == len(node.find("written"))
    spool = node.find("listening")[0]["spool"]
    assert not Path(spool).exists(), "the temporary spool folder was left behind"


def test_a_series_over_the_memory_budget_fails_and_the_node_keeps_serving(tmp_path, ct_series):
    series, _ = ct_series
    out = tmp_path / "out"
    out.mkdir()
    node = Node("--quiet-s", "1", "--out", str(out), "--memory-budget-gb", "0.1")
    try:
        assert storescu(series, node.port).returncode == 0
        failed = node.wait_for("series_failed", timeout_s=60)[0]
        assert "memory budget" in failed["error"] and "0.10 GiB" in failed["error"]
        assert echoscu(node.port).returncode == 0
        assert list(out.iterdir()) == []
    finally:
        assert node.stop() == 0
