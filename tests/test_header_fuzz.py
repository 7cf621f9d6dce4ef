"""Property-based fuzzing of the scan reader (hypothesis, dev extra): whatever a header holds,
``read_scan`` returns a scan on a sane grid or raises a one-line KitsrtError naming the file.

A bounded number of examples runs here; ``benchmarks/fuzz_headers.py`` runs 100,000 mutations.
"""

from __future__ import annotations

import functools
import re
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from kitsrt.errors import KitsrtError
from kitsrt.io import read_scan
from kitsrt.io.validate import check_geometry

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis (dev extra) drives the property tests")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
NIFTI1_FLOAT_FIELDS = [76, 80, 84, 88, 108, 112, 116, 256, 260, 264, 268, 272, 276] + [280 + 4 * i for i in range(12)]
NIFTI1_SHORT_FIELDS = [40, 42, 44, 46, 48, 70, 72, 252, 254]
SPECIAL = st.sampled_from([float("nan"), float("inf"), -float("inf"), 0.0, -1.0, 1e-30, 1e30, 3.4e38])


@functools.cache
def _seeds() -> dict[str, bytes]:
    """Small valid files, written once: {suffix: bytes}."""
    folder = Path(tempfile.mkdtemp(prefix="kitsrt-hyp-"))
    image = sitk.GetImageFromArray(np.random.default_rng(0).integers(-1024, 1500, (6, 7, 8)).astype(np.int16))
    image.SetSpacing((0.8, 0.9, 2.5))
    seeds = {}
    for suffix in (".nii", ".nii.gz", ".mha", ".nrrd"):
        sitk.WriteImage(image, str(folder / f"seed{suffix}"), useCompression=suffix == ".nii.gz")
        seeds[suffix] = (folder / f"seed{suffix}").read_bytes()
    return seeds


def _outcome_is_clean(path: Path) -> None:
    try:
        scan = read_scan(path)
    except KitsrtError as exc:
        text = str(exc)
        assert "\n" not in text and str(path) in text, text
        return
    g = scan.geometry
    check_geometry(g.size, g.spacing_mm, g.origin_mm, g.direction, path)   # what was read is sane
    assert np.isfinite(scan.array[::2, ::2, ::2].astype(np.float64)).all()


@FUZZ
@given(edits=st.lists(st.tuples(st.integers(0, 347), st.integers(0, 255)), min_size=1, max_size=8))
def test_random_nifti_header_bytes(tmp_path_factory, edits):
    data = bytearray(_seeds()[".nii"])
    for offset, value in edits:
        data[offset] = value
    path = tmp_path_factory.mktemp("nii") / "case.nii"
    path.write_bytes(bytes(data))
    _outcome_is_clean(path)


@FUZZ
@given(floats=st.lists(st.tuples(st.sampled_from(NIFTI1_FLOAT_FIELDS), SPECIAL), max_size=3),
       shorts=st.lists(st.tuples(st.sampled_from(NIFTI1_SHORT_FIELDS), st.integers(-32768, 32767)), max_size=3),
       gzipped=st.booleans())
def test_special_values_in_nifti_fields(tmp_path_factory, floats, shorts, gzipped):
    import gzip

    data = bytearray(_seeds()[".nii"])
    for offset, value in floats:
        struct.pack_into("<f", data, offset, value)
    for offset, value in shorts:
        struct.pack_into("<h", data, offset, value)
    path = tmp_path_factory.mktemp("nii") / ("case.nii.gz" if gzipped else "case.nii")
    path.write_bytes(gzip.compress(bytes(data)) if gzipped else bytes(data))
    _outcome_is_clean(path)


@FUZZ
@given(suffix=st.sampled_from([".mha", ".nrrd"]), picks=st.lists(st.integers(0, 10_000), min_size=1, max_size=3),
       tokens=st.lists(st.sampled_from(["nan", "inf", "-inf", "0", "-1", "1e308", "99999999999", "", "x", "³"]),
                       min_size=3, max_size=3))
def test_numbers_in_text_headers(tmp_path_factory, suffix, picks, tokens):
    data = _seeds()[suffix]
    end = data.find(b"\n\n") if suffix == ".nrrd" else data.find(b"ElementDataFile")
    numbers = list(re.finditer(rb"-?\d+(\.\d+)?", data[:end]))
    out = bytearray(data)
    for pick, token in sorted(zip(picks, tokens), key=lambda p: -numbers[p[0] % len(numbers)].start()):
        match = numbers[pick % len(numbers)]
        out[match.start():match.end()] = token.encode()
    path = tmp_path_factory.mktemp("txt") / f"case{suffix}"
    path.write_bytes(bytes(out))
    _outcome_is_clean(path)


@FUZZ
@given(suffix=st.sampled_from([".nii", ".nii.gz", ".mha", ".nrrd"]), keep=st.floats(0, 1),
       flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 7)), max_size=6))
def test_truncated_and_bit_flipped_files(tmp_path_factory, suffix, keep, flips):
    data = bytearray(_seeds()[suffix])
    for position, bit in flips:
        data[position % len(data)] ^= 1 << bit
    path = tmp_path_factory.mktemp("cut") / f"case{suffix}"
    path.write_bytes(bytes(data[: int(len(data) * keep)]))
    _outcome_is_clean(path)
