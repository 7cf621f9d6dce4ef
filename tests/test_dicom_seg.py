"""DICOM SEG output: references to the source series, and a round trip that rebuilds the label map
voxel for voxel on the source grid, for axial, coronal, sagittal and oblique series and for series
whose slice order runs against the normal."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from kitsrt.io import Geometry, Scan, read_label_map, read_scan
from kitsrt.phantom import procedural_label_map, synthesize_ct

hd = pytest.importorskip("highdicom", reason="highdicom not installed (pip install -e '.[dicom]')")

from kitsrt.io.dicom_seg import SegAlgorithm, build_seg, labels_from_seg, source_instances, write_seg  # noqa: E402
from kitsrt.io.dicom_series import read_series_headers, write_ct_series  # noqa: E402


def _rotation(axis: int, degrees: float) -> np.ndarray:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    a, b = [x for x in range(3) if x != axis]
    rotation = np.eye(3)
    rotation[a, a], rotation[a, b], rotation[b, a], rotation[b, b] = c, -s, s, c
    return rotation


# Columns: the LPS directions of index axes i (image columns), j (image rows), k (slices).
ORIENTATIONS = {
    "axial": np.eye(3),
    "axial, slices against the normal": np.diag([1.0, 1.0, -1.0]),
    "coronal": np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], dtype=float),
    "sagittal": np.array([[0, 0, 1], [1, 0, 0], [0, -1, 0]], dtype=float),
    "sagittal, slices against the normal": np.array([[0, 0, -1], [1, 0, 0], [0, -1, 0]], dtype=float),
    "oblique": _rotation(0, 25) @ _rotation(2, 15),
}
SPACING_MM = (4.0, 4.0, 5.0)


def _reoriented(image: sitk.Image, direction: np.ndarray, interpolator) -> sitk.Image:
    """``image`` resampled onto a grid with ``direction`` (columns i, j, k) covering its physical box."""
    size = np.asarray(image.GetSize())
    corners = np.array([image.TransformContinuousIndexToPhysicalPoint([float(c) for c in corner])
                        for corner in np.array(np.meshgrid(*[[0, s - 1] for s in size])).reshape(3, -1).T])
    local = corners @ direction  # coordinates along the new axes
    low, high = local.min(axis=0), local.max(axis=0)
    new_size = [int(np.floor((high[a] - low[a]) / SPACING_MM[a])) + 1 for a in range(3)]
    reference = sitk.Image(new_size, image.GetPixelID())
    reference.SetSpacing(SPACING_MM)
    reference.SetDirection(direction.flatten().tolist())
    reference.SetOrigin((direction @ low).tolist())
    default = -1024 if interpolator != sitk.sitkNearestNeighbor else 0
    return sitk.Resample(image, reference, sitk.Transform(), interpolator, default, image.GetPixelID())


@pytest.fixture(scope="module")
def small_phantom():
    labels = procedural_label_map((80, 80, 32), (5.0, 5.0, 7.0), seed=3)
    return labels, synthesize_ct(labels, seed=3)


def _series(tmp_path, small_phantom, direction):
    """Write the phantom as a DICOM series on a grid with ``direction``; return (folder, read scan,
    reference label map on the read scan's grid)."""
    labels, ct = small_phantom
    folder = write_ct_series(Scan(_reoriented(ct.image, direction, sitk.sitkLinear)), tmp_path / "series")
    scan = read_scan(folder)
    on_grid = sitk.Resample(_reoriented(labels.image, direction, sitk.sitkNearestNeighbor), scan.image,
                            sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return folder, scan, sitk.GetArrayFromImage(on_grid)


ALGORITHM = SegAlgorithm("test-cascade", "0.1.0", {"coarse.onnx": "ab" * 32}, demo=True)


@pytest.mark.parametrize("orientation", list(ORIENTATIONS))
def test_seg_round_trip_rebuilds_label_map(tmp_path, small_phantom, orientation):
    folder, scan, reference = _series(tmp_path, small_phantom, ORIENTATIONS[orientation])
    assert reference.max() == 2 and np.count_nonzero(reference == 1) > 100
    instances = source_instances(folder, scan.geometry)
    path = write_seg(build_seg(reference, scan.geometry, instances, ALGORITHM), tmp_path / "seg.dcm")
    assert np.array_equal(labels_from_seg(path, scan.geometry), reference)

    seg = hd.seg.segread(path)
    source = instances[0]
    assert (seg.StudyInstanceUID, seg.FrameOfReferenceUID) == (source.StudyInstanceUID, source.FrameOfReferenceUID)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
    # every frame references the source instance at its own plane position, and none is empty
    position_of = {ds.SOPInstanceUID: np.asarray(ds.ImagePositionPatient, float) for ds in instances}
    pixels = seg.pixel_array.reshape(int(seg.NumberOfFrames), -1)
    assert pixels.any(axis=1).all()
    for frame in seg.PerFrameFunctionalGroupsSequence:
        referenced = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        assert np.allclose(position_of[referenced], frame.PlanePositionSequence[0].ImagePositionPatient, atol=1e-4)
    slices_with_labels = sum(bool(f.any()) for f in _frames_by_instance(seg, instances))
    assert int(seg.NumberOfFrames) >= slices_with_labels > 0


def _frames_by_instance(seg, instances):
    """highdicom's own reading, by source instance (omitted frames come back empty)."""
    return seg.get_pixels_by_source_instance([ds.SOPInstanceUID for ds in instances], combine_segments=True,
                                             assert_missing_frames_are_empty=True)


def test_seg_segments_are_coded_and_identify_the_algorithm(tmp_path, small_phantom):
    folder, scan, reference = _series(tmp_path, small_phantom, ORIENTATIONS["axial"])
    seg = build_seg(reference, scan.geometry, source_instances(folder, scan.geometry), ALGORITHM)
    kidney, tumor = seg.SegmentSequence
    assert kidney.SegmentedPropertyTypeCodeSequence[0].CodeValue == "64033007"  # SNOMED CT kidney
    assert kidney.SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator == "SCT"
    assert tumor.SegmentedPropertyTypeCodeSequence[0].CodeValue == "108369006"  # neoplasm
    assert tumor.AnatomicRegionSequence[0].CodeValue == "64033007"  # ... of the kidney
    algorithm = kidney.SegmentationAlgorithmIdentificationSequence[0]
    assert algorithm.AlgorithmVersion == "0.1.0" and "demo" in algorithm.AlgorithmName
    assert "ab" * 32 in algorithm.AlgorithmParameters
    assert seg.SegmentationType == "BINARY"


def test_seg_refuses_series_off_the_grid(tmp_path, small_phantom):
    folder, scan, reference = _series(tmp_path, small_phantom, ORIENTATIONS["axial"])
    g = scan.geometry
    shifted = Geometry(g.size, g.spacing_mm, tuple(o + 1.3 for o in g.origin_mm), g.direction)
    from kitsrt.errors import InputError

    with pytest.raises(InputError, match="no DICOM series there lies on the scan's grid"):
        source_instances(folder, shifted)


def test_infer_dicom_seg_equals_nrrd_output(tmp_path):
    from kitsrt.cli import app

    runner = CliRunner()
    series = tmp_path / "series"
    result = runner.invoke(app, ["phantom", "--procedural", "--size", "96,96,40", "--spacing", "4,4,6",
                                 "--seed", "5", "--format", "dicom", "-o", str(series)])
    assert result.exit_code == 0, result.output
    headers = next(iter(read_series_headers(series).values()))
    assert {h.Modality for h in headers} == {"CT"} and headers[0].PatientID == ""
    assert float(headers[0].RescaleIntercept) == -1024
    assert all(h.ContrastBolusAgent for h in headers)  # an enhanced phantom says so: no missing-agent warning
    for fmt, name in (("dicom-seg", "seg.dcm"), ("image", "seg.nrrd")):
        result = runner.invoke(app, ["infer", str(series), "--format", fmt, "-o", str(tmp_path / name), "--quiet"])
        assert result.exit_code == 0, result.output
    nrrd = read_label_map(tmp_path / "seg.nrrd")
    scan = read_scan(series)
    assert nrrd.geometry == scan.geometry and nrrd.array.max() > 0
    assert np.array_equal(labels_from_seg(tmp_path / "seg.dcm", scan.geometry), nrrd.array)
    seg = hd.seg.segread(tmp_path / "seg.dcm")
    algorithm = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert "demo" in algorithm.AlgorithmName and "sha256" in algorithm.AlgorithmParameters
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == headers[0].SeriesInstanceUID

    again = runner.invoke(app, ["infer", str(series), "--format", "dicom-seg", "-o", str(tmp_path / "seg.dcm")])
    assert again.exit_code == 2 and "already exists" in again.output
    nifti_input = runner.invoke(app, ["infer", str(tmp_path / "seg.nrrd"), "--format", "dicom-seg"])
    assert nifti_input.exit_code == 2 and "one DICOM series folder" in nifti_input.output


def test_dicom_input_defaults_to_seg_and_falls_back_to_nrrd_without_highdicom(tmp_path, small_phantom,
                                                                             monkeypatch):
    from kitsrt.cli import app

    folder, scan, _ = _series(tmp_path, small_phantom, ORIENTATIONS["axial"])
    runner = CliRunner()
    result = runner.invoke(app, ["infer", str(folder), "--quiet"])
    assert result.exit_code in (0, 3), result.output
    seg = hd.seg.segread(tmp_path / "series_seg.dcm")
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == next(iter(read_series_headers(folder)))

    monkeypatch.setitem(__import__("sys").modules, "highdicom", None)  # as if the dicom extra were absent
    result = runner.invoke(app, ["infer", str(folder), "--quiet"])
    assert result.exit_code in (0, 3), result.output
    assert "writing NRRD" in result.output and "kitsrt[dicom]" in result.output
    assert read_label_map(tmp_path / "series_seg.nrrd").geometry == scan.geometry


@pytest.mark.parametrize("orientation", ["coronal", "sagittal, slices against the normal"])
def test_cascade_seg_equals_nrrd_on_other_orientations(tmp_path, small_phantom, orientation):
    from kitsrt.cli import app

    folder, scan, _ = _series(tmp_path, small_phantom, ORIENTATIONS[orientation])
    runner = CliRunner()
    for name in ("seg.dcm", "seg.nrrd"):  # the format follows the suffix
        result = runner.invoke(app, ["infer", str(folder), "-o", str(tmp_path / name), "--quiet"])
        assert result.exit_code in (0, 3), result.output
    nrrd = read_label_map(tmp_path / "seg.nrrd")
    assert nrrd.geometry == scan.geometry and nrrd.array.max() > 0
    assert np.array_equal(labels_from_seg(tmp_path / "seg.dcm", scan.geometry), nrrd.array)


def test_empty_result_keeps_every_frame(tmp_path, small_phantom):
    folder, scan, reference = _series(tmp_path, small_phantom, ORIENTATIONS["axial"])
    instances = source_instances(folder, scan.geometry)
    seg = build_seg(np.zeros_like(reference), scan.geometry, instances, ALGORITHM)
    assert int(seg.NumberOfFrames) == 2 * len(instances)  # no kidney found: a SEG with empty frames, not none
    assert not labels_from_seg(seg, scan.geometry).any()
