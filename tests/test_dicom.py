"""DICOM input by content: series without suffixes or with UID names, several series in a folder,
broken series (gap, duplicate, mixed orientation), identifiers in the report and never patient data,
and an output format that cannot hold DICOM geometry."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from dicom_helpers import write_dicom_series
from kitsrt.cli import app
from kitsrt.errors import InputError
from kitsrt.io import Geometry, Scan, check_written_geometry, geometry_drift, read_label_map, read_scan, write_image
from kitsrt.runtime.batch import is_single_scan, list_scans

SERIES = "1.2.826.0.1.3680043.2.1125.1.4242"
# A DICOM-like origin that float32 cannot hold (-312.6689 comes back 1.5e-5 mm off).
GEOMETRY = Geometry((12, 10, 9), (0.7, 0.8, 2.5), (-312.6689, 5.3311, 30.1),
                    tuple(sitk.VersorTransform((0.3, 0.2, 0.9), 0.4).GetMatrix()))


def _scan(geometry: Geometry = GEOMETRY) -> Scan:
    volume = (np.arange(np.prod(geometry.array_shape)).reshape(geometry.array_shape) % 2000 - 1000)
    return Scan.from_array(volume.astype(np.int16), geometry)


def _assert_same_scan(read: Scan, written: Scan) -> None:
    assert read.geometry.size == written.geometry.size
    np.testing.assert_allclose(read.geometry.origin_mm, written.geometry.origin_mm, atol=1e-3)
    np.testing.assert_allclose(read.geometry.spacing_mm, written.geometry.spacing_mm, atol=1e-4)
    np.testing.assert_allclose(read.geometry.direction, written.geometry.direction, atol=1e-5)
    np.testing.assert_array_equal(read.array, written.array)


@pytest.mark.parametrize("names", [None, lambda k: f"{SERIES}.{k + 1}", lambda k: f"{8 - k:08d}"],
                         ids=["IM0001", "uid-names", "reversed-numbers"])
def test_series_without_suffix_is_one_scan(tmp_path, names):
    scan = _scan()
    write_dicom_series(scan, tmp_path / "series", SERIES, names)
    assert not any(p.suffix == ".dcm" for p in (tmp_path / "series").iterdir())
    assert is_single_scan([tmp_path / "series"]) and list_scans([tmp_path / "series"]) == [tmp_path / "series"]
    read = read_scan(tmp_path / "series")
    _assert_same_scan(read, scan)
    assert read.dicom.series_instance_uid == SERIES and len(read.dicom.sop_instance_uids) == 9
    assert read.dicom.sop_instance_uids[0] == f"{SERIES}.1"  # slice order, whatever the file names


def test_folder_of_series_folders_is_a_batch(tmp_path):
    for name in ("a", "b"):
        write_dicom_series(_scan(), tmp_path / name, f"{SERIES}.{len(name)}{ord(name)}")
    assert not is_single_scan([tmp_path])
    assert list_scans([tmp_path]) == [tmp_path / "a", tmp_path / "b"]


def test_two_series_reads_the_ct_with_most_slices(tmp_path):
    scan = _scan()
    write_dicom_series(scan, tmp_path, SERIES)
    write_dicom_series(scan, tmp_path, SERIES + ".9", names=lambda k: f"MR{k}", modality="MR")
    write_dicom_series(scan, tmp_path, SERIES + ".7", names=lambda k: f"short{k}", slices=range(3))
    read = read_scan(tmp_path)
    _assert_same_scan(read, scan)
    assert read.dicom.series_instance_uid == SERIES
    assert "most slices" in read.dicom.selection and SERIES + ".7" in read.dicom.selection
    short = read_scan(tmp_path, series_uid=SERIES + ".7")
    assert short.geometry.size == (12, 10, 3) and "--series" in short.dicom.selection


def test_two_equal_ct_series_need_series_option(tmp_path):
    write_dicom_series(_scan(), tmp_path, SERIES)
    write_dicom_series(_scan(), tmp_path, SERIES + ".2", names=lambda k: f"phase2_{k}")
    with pytest.raises(InputError, match="several CT series fit equally") as error:
        read_scan(tmp_path)
    message = str(error.value)
    assert SERIES in message and SERIES + ".2" in message and "--series" in message and "\n" not in message
    with pytest.raises(InputError, match="no DICOM series 9.9.9"):
        read_scan(tmp_path, series_uid="9.9.9")


def _positions(skip=None, duplicate=None):
    points = [GEOMETRY.index_to_physical([[0, 0, k]])[0] for k in range(GEOMETRY.size[2])]
    if duplicate is not None:
        points[duplicate + 1] = points[duplicate]
    return points


@pytest.mark.parametrize("case,expected", [
    ("gap", "a gap"), ("duplicate", "duplicate slice position"), ("orientation", "mixed orientations")])
def test_broken_series_is_refused_with_one_line(tmp_path, case, expected):
    folder = tmp_path / "broken"
    if case == "gap":
        write_dicom_series(_scan(), folder, SERIES, slices=[k for k in range(9) if k != 4])
    elif case == "duplicate":
        write_dicom_series(_scan(), folder, SERIES, positions_mm=_positions(duplicate=3))
    else:
        write_dicom_series(_scan(), folder, SERIES, slices=range(5))
        tilted = Geometry(GEOMETRY.size, GEOMETRY.spacing_mm, GEOMETRY.origin_mm, (1, 0, 0, 0, 1, 0, 0, 0, 1))
        write_dicom_series(_scan(tilted), folder, SERIES, slices=range(5, 9), names=lambda k: f"T{k}")
    with pytest.raises(InputError, match=expected) as error:
        read_scan(folder)
    assert str(folder) in str(error.value) and "\n" not in str(error.value)
    result = CliRunner().invoke(app, ["infer", str(folder)])
    assert result.exit_code == 2 and expected in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken"]  # nothing written


def test_folder_without_any_image(tmp_path):
    (tmp_path / "notes.txt").write_text("no image here")
    with pytest.raises(InputError, match="holds no image"):
        list_scans([tmp_path])
    result = CliRunner().invoke(app, ["infer", str(tmp_path)])
    assert result.exit_code == 2 and "holds no image" in result.output


def test_nifti_cannot_hold_a_dicom_origin_but_nrrd_can(tmp_path):
    labels = (np.arange(np.prod(GEOMETRY.array_shape)).reshape(GEOMETRY.array_shape) % 3).astype(np.uint8)
    image = Scan.from_array(labels, GEOMETRY).image
    nifti = check_written_geometry(write_image(image, tmp_path / "seg.nii.gz"), GEOMETRY)
    assert not nifti.within_itk_tolerance and nifti.origin_mm > 1e-6
    for suffix in (".nrrd", ".mha"):
        exact = check_written_geometry(write_image(image, tmp_path / f"seg{suffix}"), GEOMETRY)
        assert exact.within_itk_tolerance and exact.origin_mm == 0.0
    far = Geometry(GEOMETRY.size, GEOMETRY.spacing_mm, (0.0, 0.0, 0.0), GEOMETRY.direction)
    assert not geometry_drift(far, GEOMETRY).within_itk_tolerance
    (tmp_path / "far.nrrd").write_bytes((tmp_path / "seg.nrrd").read_bytes())
    with pytest.raises(InputError, match="written grid differs"):
        check_written_geometry(tmp_path / "far.nrrd", far)
    assert not (tmp_path / "far.nrrd").exists()


@pytest.fixture(scope="module")
def phantom_series(tmp_path_factory, small_case):
    """The small phantom as a suffix-less DICOM series, its origin moved to one float32 cannot hold."""
    _, ct = small_case
    g = ct.geometry
    shifted = Geometry(g.size, g.spacing_mm, (-301.3987, -187.4563, g.origin_mm[2]), g.direction)
    folder = tmp_path_factory.mktemp("dicom") / "CT_SERIES"
    write_dicom_series(Scan.from_array(ct.array, shifted), folder, SERIES)
    return folder


def test_infer_on_a_dicom_series_writes_exact_nrrd_and_uids(tmp_path, phantom_series):
    report, preview = tmp_path / "r.json", tmp_path / "p.png"
    result = CliRunner().invoke(app, ["infer", str(phantom_series), "--report", str(report),
                                      "--preview", str(preview), "--threads", "2", "--format", "image"])
    assert result.exit_code == 0, result.output
    output = phantom_series.parent / "CT_SERIES_seg.nrrd"  # lossless default beside the series folder
    assert output.exists() and preview.exists() and not (phantom_series / "CT_SERIES_seg.nrrd").exists()
    assert read_label_map(output).geometry == read_scan(phantom_series).geometry
    text = report.read_text()
    data = json.loads(text)
    assert data["dicom"]["series_instance_uid"] == SERIES and len(data["dicom"]["sop_instance_uids"]) == 56
    assert "Doe" not in text and "PATIENT-ID" not in text
    schema = json.loads((Path(__file__).resolve().parents[1] / "kitsrt" / "schemas" / "report.schema.json").read_text())
    pytest.importorskip("jsonschema").validate(data, schema)
    codes = {w["code"] for w in data["warnings"]}
    assert "output_geometry_inexact" not in codes and "no_contrast_agent_recorded" in codes  # no (0018,0010)
    output.unlink()


def test_infer_to_nifti_warns_with_the_size_of_the_error(tmp_path, phantom_series):
    report = tmp_path / "r.json"
    result = CliRunner().invoke(app, ["infer", str(phantom_series), "-o", str(tmp_path / "seg.nii.gz"),
                                      "--report", str(report), "--threads", "2"])
    assert result.exit_code == 0, result.output
    assert "warning:" in result.output and "float32" in result.output and ".nrrd" in result.output
    warning = next(w for w in json.loads(report.read_text())["warnings"] if w["code"] == "output_geometry_inexact")
    assert warning["values"]["origin_error_mm"] > warning["values"]["itk_tolerance_mm"]


def test_a_lossless_file_that_fails_its_geometry_check_never_replaces_the_old_output(tmp_path, monkeypatch):
    import kitsrt.io.scan as scan_module

    labels = (np.arange(np.prod(GEOMETRY.array_shape)).reshape(GEOMETRY.array_shape) % 3).astype(np.uint8)
    image = Scan.from_array(labels, GEOMETRY).image
    output = write_image(image, tmp_path / "seg.nrrd")
    before = output.read_bytes()
    far = Geometry(GEOMETRY.size, GEOMETRY.spacing_mm, (0.0, 0.0, 0.0), GEOMETRY.direction)
    monkeypatch.setattr(scan_module, "read_geometry", lambda path: far)  # as if the file came back elsewhere
    with pytest.raises(InputError, match=r"seg\.nrrd: written grid differs"):
        write_image(Scan.from_array(labels[::-1].copy(), GEOMETRY).image, output, overwrite=True)
    assert output.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seg.nrrd"]
