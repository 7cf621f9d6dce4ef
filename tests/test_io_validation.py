"""Validation at the edge: files from other tools are read, hostile headers refused before reading.

Valid files come from nibabel (dev extra) and ITK; every refusal names the file in one line.
"""

from __future__ import annotations

import gzip
import os
import struct
import threading

import numpy as np
import pytest
import SimpleITK as sitk

from kitsrt.errors import InputError
from kitsrt.io import Geometry, Scan, read_ct, read_scan, write_image

nib = pytest.importorskip("nibabel", reason="nibabel (dev extra) writes the foreign test files")

AFFINE = np.diag([0.8, 0.9, 2.5, 1.0])


def _ct(shape=(20, 24, 16), seed=0) -> np.ndarray:
    """Noisy int16 HU, axes as nibabel stores them (i, j, k)."""
    return np.random.default_rng(seed).integers(-1024, 1500, shape).astype(np.int16)


def _nib_save(array, path, slope=None, inter=0.0):
    image = nib.Nifti1Image(array, AFFINE)
    if slope is not None:
        image.header.set_slope_inter(slope, inter)
    nib.save(image, str(path))
    return path


def _patched(path, out, offset, fmt, *values):
    """Copy an uncompressed NIfTI with header bytes at ``offset`` replaced."""
    data = bytearray(path.read_bytes())
    struct.pack_into("<" + fmt, data, offset, *values)
    out.write_bytes(bytes(data))
    return out


def _refused_before_reading(monkeypatch):
    def never(*args):
        raise AssertionError("voxels were read although the header should have been refused")

    monkeypatch.setattr(sitk.ImageFileReader, "Execute", never)


# --- valid files written by other tools: read, with the values nibabel sees -------------------

def test_int16_with_scl_slope_reads_scaled_values(tmp_path):
    path = _nib_save(_ct(), tmp_path / "scaled.nii.gz", slope=0.5, inter=-10.0)
    scan = read_scan(path)
    expected = np.asarray(nib.load(str(path)).dataobj, dtype=np.float64)   # (i, j, k)
    np.testing.assert_allclose(scan.array, expected.transpose(2, 1, 0), atol=1e-4)


def test_two_member_gzip_reads(tmp_path):
    plain = _nib_save(_ct(), tmp_path / "plain.nii")
    data = plain.read_bytes()
    two = tmp_path / "two.nii.gz"
    two.write_bytes(gzip.compress(data[:1000]) + gzip.compress(data[1000:]))
    np.testing.assert_array_equal(read_scan(two).array, read_scan(plain).array)


def test_plain_nifti_named_nii_gz_reads(tmp_path):
    plain = _nib_save(_ct(), tmp_path / "plain.nii")
    named = tmp_path / "named.nii.gz"
    named.write_bytes(plain.read_bytes())
    np.testing.assert_array_equal(read_scan(named).array, read_scan(plain).array)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16, np.int16, np.int32, np.uint32,
                                   np.float32, np.float64])
def test_nibabel_pixel_types_read(tmp_path, dtype):
    array = (np.arange(6 * 5 * 4) % 100).reshape(6, 5, 4).astype(dtype)
    scan = read_scan(_nib_save(array, tmp_path / "typed.nii.gz"))
    np.testing.assert_array_equal(scan.array, array.transpose(2, 1, 0))
    np.testing.assert_allclose(scan.geometry.spacing_mm, (0.8, 0.9, 2.5), atol=1e-6)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha", ".mhd", ".nhdr"])
def test_itk_written_formats_read(tmp_path, suffix):
    geometry = Geometry((7, 6, 5), (0.7, 0.8, 3.0), (-5.0, 2.0, 9.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    array = _ct((5, 6, 7))
    path = tmp_path / f"scan{suffix}"
    sitk.WriteImage(Scan.from_array(array, geometry).image, str(path))
    np.testing.assert_array_equal(read_scan(path).array, array)


# --- header fields ITK would accept or silently replace --------------------------------------

@pytest.mark.parametrize("pixdim", [0.0, float("nan"), float("inf")])
def test_bad_pixdim_refused_not_replaced_by_one_mm(tmp_path, pixdim):
    plain = _nib_save(_ct(), tmp_path / "plain.nii")
    bad = _patched(plain, tmp_path / "bad.nii", 80, "f", pixdim)   # pixdim[1]
    with pytest.raises(InputError, match=r"bad\.nii: .*spacing"):
        read_scan(bad)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
@pytest.mark.parametrize("offset", [280, 292, 316])   # srow_x[0], srow_x[3] (offset), srow_z[1]
def test_non_finite_sform_refused_without_hanging(tmp_path, offset, value):
    plain = _nib_save(_ct(), tmp_path / "plain.nii")
    data = bytearray(plain.read_bytes())
    struct.pack_into("<h", data, 254, 1)    # sform_code
    struct.pack_into("<f", data, offset, value)
    bad = tmp_path / "sform.nii"
    bad.write_bytes(bytes(data))
    outcome = []
    worker = threading.Thread(target=lambda: outcome.append(_error_of(read_scan, bad)), daemon=True)
    worker.start()
    worker.join(timeout=30)
    assert outcome, "read_scan hung on a non-finite sform"
    assert isinstance(outcome[0], InputError) and "sform" in str(outcome[0])


def _error_of(function, *args):
    try:
        function(*args)
    except Exception as exc:  # noqa: BLE001 - the test inspects the type
        return exc
    return None


@pytest.mark.parametrize("spacing", [(1e-4, 1, 1), (1e5, 1, 1), (1, 1, 250.0)])
def test_spacing_outside_sane_bounds_refused(tmp_path, spacing):
    path = tmp_path / "odd.mha"
    image = sitk.GetImageFromArray(_ct((8, 8, 8)))
    image.SetSpacing(spacing)
    sitk.WriteImage(image, str(path))
    with pytest.raises(InputError, match=r"odd\.mha: (voxel spacing|field of view)"):
        read_scan(path)


def test_sheared_direction_refused(tmp_path):
    path = tmp_path / "shear.mha"
    sitk.WriteImage(sitk.GetImageFromArray(_ct((8, 8, 8))), str(path))
    text = path.read_bytes().replace(b"TransformMatrix = 1 0 0 0 1 0 0 0 1", b"TransformMatrix = 1 0.5 0 0 1 0 0 0 1")
    path.write_bytes(text)
    with pytest.raises(InputError, match="not orthonormal"):
        read_scan(path)


def test_origin_beyond_bounds_refused(tmp_path):
    plain = _nib_save(_ct(), tmp_path / "plain.nii")
    data = bytearray(plain.read_bytes())
    struct.pack_into("<h", data, 254, 1)       # sform_code
    struct.pack_into("<f", data, 292, 5e7)    # srow_x[3]: the x origin
    far = tmp_path / "far.nii"
    far.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"far\.nii: origin"):
        read_scan(far)


# --- sizes, budgets and bombs: refused before decompressing ----------------------------------

def _zero_bomb(path, dims, datatype=4, bitpix=16):
    """A gzip NIfTI of zeros, made of 64 MiB gzip members (cheap to build, huge to inflate)."""
    header = bytearray(352)
    struct.pack_into("<i", header, 0, 348)
    struct.pack_into("<8h", header, 40, 3, *dims, 1, 1, 1, 1)
    struct.pack_into("<2h", header, 70, datatype, bitpix)
    struct.pack_into("<8f", header, 76, 1, 1, 1, 1, 1, 1, 1, 1)
    struct.pack_into("<f", header, 108, 352)
    header[344:348] = b"n+1\0"
    total = int(np.prod(dims)) * bitpix // 8
    member = gzip.compress(bytes(64 << 20), 9)
    with open(path, "wb") as handle:
        handle.write(gzip.compress(bytes(header)))
        for _ in range(total // (64 << 20)):
            handle.write(member)
    return path


def test_gzip_bomb_refused_before_decompressing(tmp_path, monkeypatch):
    bomb = _zero_bomb(tmp_path / "bomb.nii.gz", (1024, 1024, 512))    # 1 GiB of zeros in ~1 MiB
    assert bomb.stat().st_size < 2 << 20
    _refused_before_reading(monkeypatch)
    with pytest.raises(InputError, match=r"bomb\.nii\.gz: .*refused before decompressing"):
        read_ct(bomb)


def test_size_over_the_voxel_budget_refused(tmp_path, monkeypatch):
    plain = _nib_save(_ct(), tmp_path / "plain.nii")
    huge = _patched(plain, tmp_path / "huge.nii", 40, "4h", 3, 32767, 32767, 32767)
    _refused_before_reading(monkeypatch)
    with pytest.raises(InputError, match=r"huge\.nii: .*exceed the budget"):
        read_scan(huge)


def test_header_promising_more_than_deflate_can_hold_refused(tmp_path, monkeypatch):
    path = _nib_save(_ct(), tmp_path / "small.nii.gz")
    data = bytearray(gzip.decompress(path.read_bytes()))
    struct.pack_into("<4h", data, 40, 3, 2000, 1000, 200)     # 400 M int16 voxels from a few KiB
    path.write_bytes(gzip.compress(bytes(data)))
    _refused_before_reading(monkeypatch)
    with pytest.raises(InputError, match="deflate"):
        read_scan(path)


# --- not regular files, data files outside the header's folder -------------------------------

def test_fifo_refused_without_hanging(tmp_path):
    fifo = tmp_path / "scan.nii.gz"
    os.mkfifo(fifo)
    outcome = []
    worker = threading.Thread(target=lambda: outcome.append(_error_of(read_scan, fifo)), daemon=True)
    worker.start()
    worker.join(timeout=20)
    if not outcome:   # unblock a reader stuck on the FIFO so the test process can end
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass
    assert outcome and isinstance(outcome[0], InputError) and "FIFO" in str(outcome[0])


def test_device_refused():
    with pytest.raises(InputError, match="device"):
        read_scan("/dev/zero")


def _mhd_pointing_to(tmp_path, target: str):
    source = tmp_path / "inner" / "scan.mhd"
    source.parent.mkdir()
    sitk.WriteImage(sitk.GetImageFromArray(_ct((8, 8, 8))), str(source))
    text = source.read_text().replace("ElementDataFile = scan.raw", f"ElementDataFile = {target}")
    source.write_text(text)
    return source


@pytest.mark.parametrize("target", ["../outside.raw", "/etc/passwd", "LIST"])
def test_metaimage_data_file_outside_its_folder_refused(tmp_path, target):
    (tmp_path / "outside.raw").write_bytes(bytes(8 * 8 * 8 * 2))
    header = _mhd_pointing_to(tmp_path, target)
    with pytest.raises(InputError, match=r"scan\.mhd: .*(outside its folder|list or pattern)"):
        read_scan(header)


def test_metaimage_symlinked_data_file_leaving_the_folder_refused(tmp_path):
    (tmp_path / "outside.raw").write_bytes(bytes(8 * 8 * 8 * 2))
    header = _mhd_pointing_to(tmp_path, "link.raw")
    (header.parent / "link.raw").symlink_to(tmp_path / "outside.raw")
    with pytest.raises(InputError, match="outside its folder"):
        read_scan(header)


def test_nrrd_detached_data_outside_its_folder_refused(tmp_path):
    header = tmp_path / "inner" / "scan.nhdr"
    header.parent.mkdir()
    sitk.WriteImage(sitk.GetImageFromArray(_ct((8, 8, 8))), str(header))
    raw_name = next(line.split(":", 1)[1].strip() for line in header.read_text().splitlines()
                    if line.startswith("data file"))
    os.replace(header.parent / raw_name, tmp_path / raw_name)
    header.write_text(header.read_text().replace(f"data file: {raw_name}", f"data file: ../{raw_name}"))
    with pytest.raises(InputError, match="outside its folder"):
        read_scan(header)
    assert read_scan(header, allow_external_data=True).geometry.size == (8, 8, 8)


# --- values -----------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".mha", ".nrrd"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_voxels_refused(tmp_path, bad, suffix):
    """ITK's NIfTI reader turns NaN and Inf into 0 without a word: kitsrt counts them in the file."""
    array = _ct().astype(np.float32)
    array[3, 4, 5] = bad
    path = tmp_path / f"nan{suffix}"
    if suffix.startswith(".nii"):
        _nib_save(array, path)
    else:
        sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    with pytest.raises(InputError, match=rf"nan{suffix.replace('.', '[.]')}: 1 of \d+ voxels are NaN or infinite"):
        read_scan(path)


def test_itk_multi_line_error_condensed_to_one_line(tmp_path):
    path = tmp_path / "junk.mha"
    path.write_text("ObjectType = Image\nNDims = 3\nDimSize = 4 4\nElementType = MET_WHAT\n"
                    "ElementDataFile = LOCAL\n")
    with pytest.raises(InputError) as caught:
        read_scan(path)
    assert "\n" not in str(caught.value) and str(caught.value).startswith(str(path))


def test_geometry_of_a_written_scan_survives(tmp_path):
    geometry = Geometry((6, 5, 4), (0.5, 0.5, 1.25), (1.0, 2.0, 3.0), (0, 1, 0, 1, 0, 0, 0, 0, -1))
    path = write_image(Scan.from_array(_ct((4, 5, 6)), geometry).image, tmp_path / "g.nii.gz")
    assert read_scan(path).geometry.direction == geometry.direction
