"""Scan I/O: exact geometry round trips, DICOM series, and a clear error for every bad input."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import KITS19_CASES, kits19_label, needs_kits19
from kitsrt.errors import InputError
from kitsrt.io import Geometry, Scan, read_label_map, read_scan, write_image, write_label_map

OBLIQUE = Geometry(
    size=(7, 6, 5),
    spacing_mm=(0.75, 0.875, 2.5),
    origin_mm=(-101.5, 33.25, -7.0),
    direction=tuple(sitk.VersorTransform((0.3, 0.2, 0.9), 0.4).GetMatrix()),
)


def _ramp(geometry: Geometry, dtype=np.int16) -> np.ndarray:
    return np.arange(np.prod(geometry.array_shape)).reshape(geometry.array_shape).astype(dtype)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".nrrd", ".mha"])
def test_round_trip_keeps_voxels_and_geometry(tmp_path, suffix):
    path = tmp_path / f"scan{suffix}"
    write_image(Scan.from_array(_ramp(OBLIQUE), OBLIQUE).image, path)
    back = read_scan(path)
    assert back.geometry.size == OBLIQUE.size
    np.testing.assert_allclose(back.geometry.spacing_mm, OBLIQUE.spacing_mm, atol=1e-6)
    np.testing.assert_allclose(back.geometry.origin_mm, OBLIQUE.origin_mm, atol=1e-4)
    np.testing.assert_allclose(back.geometry.direction, OBLIQUE.direction, atol=1e-6)
    np.testing.assert_array_equal(back.array, _ramp(OBLIQUE))


def test_index_and_physical_points_are_inverse():
    index = np.array([[0, 0, 0], [6, 5, 4], [1.5, 2.25, 3.0]])
    np.testing.assert_allclose(OBLIQUE.physical_to_index(OBLIQUE.index_to_physical(index)), index, atol=1e-9)
    image = Scan.from_array(_ramp(OBLIQUE), OBLIQUE).image
    np.testing.assert_allclose(OBLIQUE.index_to_physical(index[1:2])[0],
                               image.TransformIndexToPhysicalPoint((6, 5, 4)), atol=1e-9)


def test_array_is_a_read_only_view_in_kji_order():
    scan = Scan.from_array(_ramp(OBLIQUE), OBLIQUE)
    assert scan.array.shape == (5, 6, 7)
    assert scan.geometry.array_spacing_mm == (2.5, 0.875, 0.75)
    with pytest.raises(ValueError):
        scan.array[0, 0, 0] = 1


@needs_kits19
@pytest.mark.parametrize("case", KITS19_CASES[:4] + ["case_00156"])
def test_kits19_label_round_trip_is_exact(tmp_path, case):
    original = read_label_map(kits19_label(case))
    out = write_label_map(original.array, original.geometry, tmp_path / "seg.nii.gz")
    back = read_label_map(out)
    assert back.geometry == original.geometry  # size, spacing, origin, direction: bit for bit
    np.testing.assert_array_equal(back.array, original.array)
    # The slice axis is index axis i (stored first), as the shared README warns.
    assert original.geometry.size[1:] == (512, 512)


def test_dicom_series_folder(tmp_path):
    geometry = Geometry((8, 6, 4), (0.7, 0.7, 2.0), (-10.0, 5.0, 30.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    volume = _ramp(geometry)
    series = "1.2.826.0.1.3680043.2.1125.1.99"
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()  # else every slice gets a new series UID
    for k in range(geometry.size[2]):
        plane = sitk.GetImageFromArray(volume[k : k + 1])
        plane.SetSpacing(geometry.spacing_mm)
        position = geometry.index_to_physical([[0, 0, k]])[0]
        for tag, value in {"0008|0060": "CT", "0020|000e": series, "0020|000d": series + ".0",
                           "0020|0013": str(k), "0020|0037": "1\\0\\0\\0\\1\\0",
                           "0020|0032": "\\".join(f"{p:.4f}" for p in position),
                           "0018|0050": "2.0"}.items():
            plane.SetMetaData(tag, value)
        plane.SetMetaData("0008|0018", f"{series}.{k + 1}")
        writer.SetFileName(str(tmp_path / f"slice{k:03d}.dcm"))
        writer.Execute(plane)
    scan = read_scan(tmp_path)
    assert scan.geometry.size == geometry.size
    np.testing.assert_allclose(scan.geometry.spacing_mm, geometry.spacing_mm, atol=1e-4)
    np.testing.assert_allclose(scan.geometry.origin_mm, geometry.origin_mm, atol=1e-3)
    np.testing.assert_array_equal(scan.array, volume)


# --- bad input --------------------------------------------------------------------------------

def _write(path, array, spacing=None):
    image = sitk.GetImageFromArray(array)
    if spacing:
        image.SetSpacing(spacing)
    sitk.WriteImage(image, str(path))
    return path


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_scan(tmp_path / "nope.nii.gz")


def test_not_an_image(tmp_path):
    bad = tmp_path / "notes.nii.gz"
    bad.write_text("not an image")
    with pytest.raises(InputError, match="cannot read it as an image"):
        read_scan(bad)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".mha", ".nrrd"])
def test_truncated_file(tmp_path, suffix):
    full = _write(tmp_path / f"full{suffix}", np.random.default_rng(0).integers(-1000, 1000, (20, 30, 30)).astype(np.int16))
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(InputError, match="truncated"):
        read_scan(cut)


def test_2d_image(tmp_path):
    with pytest.raises(InputError, match="2-D"):
        read_scan(_write(tmp_path / "slice.nii.gz", np.zeros((10, 10), np.int16)))


def test_4d_image(tmp_path):
    image = sitk.JoinSeries([sitk.Image(4, 4, 4, sitk.sitkInt16)] * 3)
    sitk.WriteImage(image, str(tmp_path / "dyn.nii.gz"))
    with pytest.raises(InputError, match="4-D"):
        read_scan(tmp_path / "dyn.nii.gz")


def test_single_slice_volume(tmp_path):
    with pytest.raises(InputError, match="single slice"):
        read_scan(_write(tmp_path / "one.nii.gz", np.zeros((1, 10, 10), np.int16)))


def test_non_integer_label_map(tmp_path):
    path = _write(tmp_path / "soft.nii.gz", np.full((4, 4, 4), 0.5, np.float32))
    with pytest.raises(InputError, match="non-integer"):
        read_label_map(path)


def test_ct_given_as_label_map(tmp_path):
    path = _write(tmp_path / "ct.nii.gz", np.full((4, 4, 4), -1024, np.int16))
    with pytest.raises(InputError, match="CT image instead of a label map"):
        read_label_map(path)


def test_existing_output_is_not_replaced(tmp_path):
    path = tmp_path / "seg.nii.gz"
    path.write_bytes(b"precious")
    with pytest.raises(InputError, match="--overwrite"):
        write_label_map(np.zeros(OBLIQUE.array_shape, np.uint8), OBLIQUE, path)
    assert path.read_bytes() == b"precious"


def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    def half_write(image, name, *args, **kwargs):
        with open(name, "wb") as handle:
            handle.write(b"half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(sitk, "WriteImage", half_write)
    with pytest.raises(InputError, match="disk full"):
        write_label_map(np.zeros(OBLIQUE.array_shape, np.uint8), OBLIQUE, tmp_path / "seg.nii.gz")
    assert list(tmp_path.iterdir()) == []


def test_unknown_output_format(tmp_path):
    with pytest.raises(InputError, match="unsupported output format"):
        write_label_map(np.zeros(OBLIQUE.array_shape, np.uint8), OBLIQUE, tmp_path / "seg.tiff")
